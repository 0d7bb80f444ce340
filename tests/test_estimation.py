"""Robust rejection: injected outliers, insufficient points, PnP pose, and the `dfbvs match` command."""

import json

import numpy as np
import pytest

from _feature_pairs import apply_homography, cached, homography_pair, homography_precision
from dfbvs.camera import Camera
from dfbvs.estimation import (
    EstimationStatus,
    RobustMethod,
    TargetGeometry,
    get_rejector,
    reject_fundamental,
    reject_homography,
    reject_pnp,
    sample_depth,
    target_points_m,
)
from dfbvs.geometry import so3_exp
from dfbvs.matching import Correspondences, get_matcher

CAM = Camera(277.0, 277.0, 159.5, 119.5, 320, 240)  # 60 deg: the scene below fills the image


def with_outliers(corr: Correspondences, fraction: float, seed: int = 0):
    """Replace a fraction of the current pixels by random ones; returns (corrupted, is_outlier)."""
    rng = np.random.default_rng(seed)
    bad = rng.random(len(corr)) < fraction
    uv = corr.uv_current_px.copy()
    uv[bad] = rng.uniform([0, 0], [319, 239], size=(bad.sum(), 2))
    return Correspondences(uv, corr.uv_target_px, corr.index_current, corr.index_target, corr.scores), bad


def test_rejection_raises_precision_on_real_matches_with_injected_outliers():
    current, target, H = homography_pair(seed=1)
    ex = cached("extractor", "aliked")
    corr = get_matcher("mnn")(ex(current), ex(target))
    noisy, _ = with_outliers(corr, 0.4)
    before = homography_precision(noisy, H).mean()
    for name in ("fundamental", "homography"):
        result = get_rejector(name)(noisy)
        after = homography_precision(result.inliers(noisy), H).mean()
        assert result.status is EstimationStatus.OK
        floor = 0.8 if name == "homography" else 0.7  # F only constrains a line: random outliers survive more
        assert after >= before + 0.2 and after >= floor and result.num_inliers >= 80, (name, before, after)
    # the estimated homography is close to the true one (measured: 0.4 px at the centre, 3.3 px at a corner)
    res = reject_homography(noisy)
    grid = np.array([[160, 120], [0, 0], [319, 0], [0, 239], [319, 239]], float)
    err = np.linalg.norm(apply_homography(res.H_current_target, grid) - apply_homography(H, grid), axis=1)
    assert err[0] < 1.0 and err.max() < 6.0, err


def _scene(seed=0, n=120):
    """Random 3D points seen by a target camera and by a current camera 5 cm / 8 deg away."""
    rng = np.random.default_rng(seed)
    p_target = np.column_stack([rng.uniform(-0.12, 0.12, n), rng.uniform(-0.09, 0.09, n), rng.uniform(0.35, 0.5, n)])
    T = np.eye(4)
    T[:3, :3] = so3_exp(np.deg2rad(8.0) * np.array([0.3, -0.8, 0.52]) / np.linalg.norm([0.3, -0.8, 0.52]))
    T[:3, 3] = [0.03, -0.03, 0.028]
    p_current = p_target @ T[:3, :3].T + T[:3, 3]
    uv_t, uv_c = CAM.project(p_target), CAM.project(p_current)
    corr = Correspondences(uv_c, uv_t, np.arange(n), np.arange(n), np.ones(n))
    return corr, p_target, T


@pytest.mark.parametrize("method", [RobustMethod.MAGSAC, RobustMethod.RANSAC])
def test_pnp_recovers_pose_and_rejects_outliers(method):
    corr, p_target, T_true = _scene()
    noisy, bad = with_outliers(corr, 0.3, seed=2)
    res = reject_pnp(noisy, p_target, CAM, get_rejector("pnp", method=method).config)
    assert res.status is EstimationStatus.OK
    np.testing.assert_allclose(res.T_current_target, T_true, atol=1e-6)
    assert np.all(res.inlier_mask == ~bad | (res.reprojection_error_px < 2.0))
    assert res.inlier_mask[~bad].all() and res.inlier_mask[bad].mean() < 0.05


def test_pnp_from_rendered_depth_map():
    corr, p_target, T_true = _scene(n=60)
    depth = np.full((240, 320), np.nan, np.float32)
    uv = np.rint(corr.uv_target_px).astype(int)
    depth[uv[:, 1], uv[:, 0]] = p_target[:, 2]
    # snap target pixels to pixel centres so that the depth lookup is exact
    snapped = Correspondences(
        CAM.project(CAM.unproject(uv.astype(float), p_target[:, 2]) @ T_true[:3, :3].T + T_true[:3, 3]),
        uv.astype(float), corr.index_current, corr.index_target, corr.scores)
    res = get_rejector("pnp")(snapped, TargetGeometry(depth, CAM))
    assert res.status is EstimationStatus.OK and res.num_inliers >= 58  # two points may share a depth pixel
    np.testing.assert_allclose(res.T_current_target, T_true, atol=1e-4)
    assert np.isnan(sample_depth(depth, [[-3.0, 5.0], [1000.0, 5.0]])).all()
    assert np.isnan(target_points_m(np.array([[0.0, 0.0]]), depth, CAM)).all()  # background: no depth


def test_too_few_points_is_a_status_not_an_exception():
    corr, p_target, _ = _scene(n=3)
    for result in (reject_fundamental(corr), reject_homography(corr), reject_pnp(corr, p_target, CAM)):
        assert result.status is EstimationStatus.INSUFFICIENT and result.num_inliers == 0
        assert result.inlier_mask.shape == (3,)
    empty = Correspondences.empty()
    for name in ("none", "fundamental", "homography"):
        assert get_rejector(name)(empty).num_inliers == 0
    no_depth = np.full((5, 3), np.nan)
    corr5, _, _ = _scene(n=5)
    assert reject_pnp(corr5, no_depth, CAM).status is EstimationStatus.INSUFFICIENT


def test_degenerate_points_fail_cleanly():
    uv = np.tile([[100.0, 100.0]], (20, 1))
    corr = Correspondences(uv, uv, np.arange(20), np.arange(20), np.ones(20))
    for result in (reject_fundamental(corr), reject_homography(corr)):  # 20 copies of one point: no model
        assert result.status is EstimationStatus.FAILED, result.status
        assert result.inlier_mask.shape == (20,) and result.num_inliers == 0 and not result.ok


def test_rejector_errors():
    with pytest.raises(ValueError, match="unknown rejector 'lmeds'.*fundamental"):
        get_rejector("lmeds")
    with pytest.raises(ValueError, match="threshold_px=-1"):
        get_rejector("homography", threshold_px=-1)
    with pytest.raises(ValueError, match="needs the target geometry"):
        get_rejector("pnp")(_scene()[0])


def test_match_command(tmp_path):
    import cv2
    from typer.testing import CliRunner

    from dfbvs.cli import _register, app

    _register()
    current, target, _ = homography_pair(seed=2)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), current[:, :, ::-1])
    cv2.imwrite(str(b), target[:, :, ::-1])
    runner = CliRunner(env={"COLUMNS": "300"})
    out = tmp_path / "out"
    r = runner.invoke(app, ["match", str(a), str(b), "--features", "orb", "--reject", "homography", "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "matches.json").read_text())
    assert report["num_matches"] == len(report["matches"]) > 20 and 0 < report["num_inliers"] <= report["num_matches"]
    picture = cv2.imread(str(out / "match.png"))
    assert picture.shape == (240, 640, 3)
    r = runner.invoke(app, ["match", str(a), str(tmp_path / "missing.png"), "--out", str(out)])
    assert r.exit_code != 0 and "missing.png" in r.output
    (tmp_path / "bad.png").write_text("not an image")
    r = runner.invoke(app, ["match", str(a), str(tmp_path / "bad.png"), "--out", str(out)])
    assert r.exit_code != 0 and "not a readable image" in r.output
    r = runner.invoke(app, ["match", str(a), str(b), "--features", "surf", "--out", str(out)])
    assert r.exit_code != 0 and "surf" in r.output and "aliked" in r.output
    r = runner.invoke(app, ["match", str(a), str(b), "--reject", "pnp", "--out", str(out)])
    assert r.exit_code != 0 and "--depth-b" in r.output
