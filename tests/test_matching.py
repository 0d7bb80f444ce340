"""Matching on a synthetic pair with ground truth (a textured image warped by a known homography)."""

import numpy as np
import pytest

from _feature_pairs import cached, homography_pair, homography_precision
from dfbvs.features import Features
from dfbvs.matching import Correspondences, available_matchers, get_matcher

CURRENT, TARGET, H_CURRENT_TARGET = homography_pair(seed=0)


@pytest.fixture(scope="module")
def aliked_pair():
    ex = cached("extractor", "aliked")
    return ex(CURRENT), ex(TARGET)


def test_mutual_nn_quality_floor(aliked_pair):
    # measured: 209 matches, 84 % within 2 px (12 deg, x1.1, perspective warp)
    corr = get_matcher("mnn")(*aliked_pair)
    good = homography_precision(corr, H_CURRENT_TARGET)
    assert len(corr) >= 150 and good.mean() >= 0.75, (len(corr), good.mean())
    # mutual: no keypoint used twice, and indices point at the pixels given
    assert len(np.unique(corr.index_current)) == len(corr) == len(np.unique(corr.index_target))
    np.testing.assert_array_equal(corr.uv_current_px, aliked_pair[0].keypoints_px[corr.index_current])
    np.testing.assert_array_equal(corr.uv_target_px, aliked_pair[1].keypoints_px[corr.index_target])


def test_ratio_and_lightglue(aliked_pair):
    ratio = get_matcher("ratio", ratio=0.9, mutual=True)(*aliked_pair)
    assert len(ratio) >= 80 and homography_precision(ratio, H_CURRENT_TARGET).mean() >= 0.75
    lg = cached("matcher", "lightglue")(*aliked_pair)  # measured: 216 matches, 86 %
    assert len(lg) >= 150 and homography_precision(lg, H_CURRENT_TARGET).mean() >= 0.75
    assert np.all((lg.scores >= 0) & (lg.scores <= 1))


def test_lightglue_refuses_other_descriptors():
    orb = cached("extractor", "orb")(TARGET)
    with pytest.raises(ValueError, match="cannot match current features from 'orb'"):
        cached("matcher", "lightglue")(orb, orb)


@pytest.mark.parametrize("name", ["mnn", "ratio", "lightglue"])
def test_empty_and_one_keypoint(name, aliked_pair):
    matcher = cached("matcher", name)
    current, target = aliked_pair
    empty = Features.empty(current.image_size, current.descriptor_dim, current.extractor)
    assert len(matcher(empty, target)) == 0 and len(matcher(current, empty)) == 0
    one = current.subset(np.array([0]))
    corr = matcher(one, target)
    assert len(corr) <= 1 and corr.uv_current_px.shape == (len(corr), 2)
    assert len(matcher(one, one.subset(np.array([0])))) <= 1


def test_mnn_exact_on_identical_features(aliked_pair):
    f = aliked_pair[1]
    corr = get_matcher("mnn")(f, f)
    assert len(corr) == len(f)
    np.testing.assert_array_equal(corr.index_current, corr.index_target)


def test_errors():
    with pytest.raises(ValueError, match="unknown matcher 'flann'.*mnn"):
        get_matcher("flann")
    with pytest.raises(ValueError, match="ratio=1.5"):
        get_matcher("ratio", ratio=1.5)
    a = Features(np.zeros((2, 2)), np.eye(2, 4, dtype=np.float32), np.ones(2), (4, 4))
    b = Features(np.zeros((2, 2)), np.eye(2, 3, dtype=np.float32), np.ones(2), (4, 4))
    with pytest.raises(ValueError, match="descriptor sizes differ"):
        get_matcher("mnn")(a, b)
    assert available_matchers() == ["mnn", "ratio", "lightglue"]
    with pytest.raises(ValueError, match="different lengths"):
        Correspondences(np.zeros((2, 2)), np.zeros((1, 2)), [0, 1], [0, 1], [1, 1])


def test_correspondences_concatenate_keeps_order_and_fields():
    a = Correspondences([[1.0, 2.0]], [[3.0, 4.0]], [0], [5], [0.9])
    b = Correspondences([[5.0, 6.0], [7.0, 8.0]], [[1.0, 1.0], [2.0, 2.0]], [-1, -1], [7, 8], [0.0, 0.0])
    c = Correspondences.concatenate([a, b])
    assert len(c) == 3 and c.index_target.tolist() == [5, 7, 8] and c.index_current.tolist() == [0, -1, -1]
    np.testing.assert_array_equal(c.uv_current_px[1], [5.0, 6.0])
    assert len(Correspondences.concatenate([])) == 0


def test_refinement_skips_edge_like_patches_that_slide_along_the_edge():
    """A bright square on a dark object: its corner is refinable, the middle of its straight sides is not
    (the aperture problem), and with ``min_eigen_ratio=0`` both are."""
    from dfbvs.refine import RefineConfig, RefinementTarget

    img = np.full((120, 160, 3), 60, np.uint8)
    img[40:90, 50:120] = 200
    mask = np.ones((120, 160), bool)
    t = RefinementTarget.from_render(img, mask, RefineConfig())
    corner, edge_middle = (40, 50), (65, 50)  # (row, col)
    assert t.refinable[corner] and not t.refinable[edge_middle]
    loose = RefinementTarget.from_render(img, mask, RefineConfig(min_eigen_ratio=0.0))
    assert loose.refinable[corner] and loose.refinable[edge_middle]
    with pytest.raises(ValueError, match="min_eigen_ratio=1.5"):
        RefineConfig(min_eigen_ratio=1.5)
