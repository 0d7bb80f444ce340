"""Feature extractors: well-formed output, pixel conventions, degenerate inputs, registry errors."""

import numpy as np
import pytest

from _feature_pairs import cached, textured_image, write_random_keypointnet_checkpoint
from dfbvs.features import Features, available_extractors, get_extractor

IMAGE = textured_image(seed=3)
BACKENDS = ["aliked", "aliked-t16", "disk", "orb", "sift", "keypointnet"] + (
    ["akaze"] if "akaze" in available_extractors() else [])


@pytest.fixture(scope="module")
def kp2d_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("kp2d") / "random_v4.ckpt"
    write_random_keypointnet_checkpoint(path)
    return str(path)


def _extractor(name, kp2d_checkpoint, **settings):
    if name == "keypointnet":
        settings["checkpoint_path"] = kp2d_checkpoint
    return cached("extractor", name, **settings)


def check_well_formed(f: Features, width: int, height: int, max_keypoints: int = 500) -> None:
    assert f.image_size == (width, height)
    assert f.keypoints_px.dtype == np.float64 and f.keypoints_px.shape == (len(f), 2)
    assert f.descriptors.dtype == np.float32 and f.descriptors.shape[0] == len(f)
    assert f.scores.dtype == np.float32 and f.scores.shape == (len(f),)
    assert len(f) <= max_keypoints
    assert np.all(np.isfinite(f.keypoints_px)) and np.all(np.isfinite(f.descriptors)) and np.all(np.isfinite(f.scores))
    assert np.all(f.keypoints_px >= -0.5) and np.all(f.keypoints_px[:, 0] <= width - 0.5)
    assert np.all(f.keypoints_px[:, 1] <= height - 0.5)
    if len(f):
        np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-4)
        assert np.all(np.diff(f.scores) <= 0), "sorted by decreasing score"


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_returns_well_formed_features(name, kp2d_checkpoint):
    f = _extractor(name, kp2d_checkpoint)(IMAGE)
    check_well_formed(f, 320, 240)
    assert len(f) >= 100, f"{name}: only {len(f)} keypoints on a textured 320x240 image"
    assert f.extractor == name
    # border margin (default 4 px) respected
    assert np.all(f.keypoints_px >= -0.5 + 4) and np.all(f.keypoints_px <= np.array([319.5, 239.5]) - 4)


@pytest.mark.parametrize("name", ["aliked", "disk", "orb", "sift"])
def test_top_k_and_grayscale(name):
    ex = cached("extractor", name, max_keypoints=50)
    f = ex(IMAGE[:, :, 1])  # grayscale input is accepted
    check_well_formed(f, 320, 240, max_keypoints=50)
    assert 30 <= len(f) <= 50


@pytest.mark.parametrize("name", BACKENDS)
def test_degenerate_images_give_empty_features(name, kp2d_checkpoint):
    ex = _extractor(name, kp2d_checkpoint)
    for image in (np.zeros((0, 0, 3), np.uint8), np.zeros((240, 0, 3), np.uint8),
                  np.full((240, 320, 3), 97, np.uint8),  # textureless: no keypoints at all
                  np.full((5, 7), 200, np.uint8)):  # too small for a network
        f = ex(image)
        assert len(f) == 0, f"{name}: {len(f)} keypoints on an image of shape {image.shape}"
        assert f.descriptors.shape == (0, f.descriptor_dim)
        assert f.image_size == (image.shape[1], image.shape[0])


def test_flat_regions_have_no_keypoints():
    image = IMAGE.copy()
    image[:, 160:] = 97  # right half flat
    f = cached("extractor", "aliked")(image)
    assert len(f) > 50 and np.all(f.keypoints_px[:, 0] < 160 + 4)


def test_sift_orb_pixel_convention_on_gaussian_blobs():
    """Blobs drawn at known sub-pixel centres (pixel-centre convention): SIFT finds them to < 0.05 px and ORB
    (FAST corners, not blob centres) without a half-pixel bias once the per-octave correction is applied."""
    rng = np.random.default_rng(1)
    h, w = 240, 320
    centres = np.array([(c + rng.uniform(-3, 3), r + rng.uniform(-3, 3))
                        for r in range(20, h - 20, 20) for c in range(20, w - 20, 20)])
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.full((h, w), 40.0)
    for u, v in centres:
        img += 200 * np.exp(-((uu - u) ** 2 + (vv - v) ** 2) / (2 * 2.0**2))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for name, tol in (("sift", 0.05), ("orb", 0.15)):
        f = get_extractor(name, min_contrast=0)(img)
        d = np.linalg.norm(centres[:, None] - f.keypoints_px[None], axis=2)
        j = d.argmin(1)
        ok = d[np.arange(len(centres)), j] < 2
        assert ok.sum() >= 50
        bias = (f.keypoints_px[j[ok]] - centres[ok]).mean(axis=0)
        assert np.all(np.abs(bias) < tol), f"{name}: mean offset {bias} px"


def test_deep_backends_pixel_convention_by_rotation():
    """Rotating an image by 180 deg maps pixel centre u to (W-1) - u. A corner convention (u + 0.5 at pixel
    centres) would show up as a 1 px offset between the keypoints of the image and those of its rotation;
    ALIKED's own anisotropy is measured at ~0.3 px, DISK's keypoints are pixel indices."""
    disk = cached("extractor", "disk")(IMAGE)
    np.testing.assert_array_equal(disk.keypoints_px, np.round(disk.keypoints_px))
    ex = cached("extractor", "aliked", max_keypoints=1000)
    offsets = []
    for seed in (0, 1):
        img = textured_image(seed=seed)
        a = ex(img).keypoints_px
        b = np.array([319.0, 239.0]) - ex(np.ascontiguousarray(img[::-1, ::-1])).keypoints_px
        d = np.linalg.norm(a[:, None] - b[None], axis=2)
        j = d.argmin(1)
        ok = d[np.arange(len(a)), j] < 1.5
        offsets.append(b[j[ok]] - a[ok])
    off = np.concatenate(offsets)
    assert len(off) >= 100
    assert np.all(np.abs(off.mean(axis=0)) < 0.7), f"mean offset {off.mean(axis=0)} px"


def test_registry_errors_name_the_value():
    with pytest.raises(ValueError, match="unknown feature extractor 'superglue'.*aliked"):
        get_extractor("superglue")
    with pytest.raises(ValueError, match="no setting .*max_kps"):
        get_extractor("orb", max_kps=3)
    with pytest.raises(ValueError, match="max_keypoints=0"):
        get_extractor("orb", max_keypoints=0)
    with pytest.raises(ValueError, match="aliked-x99"):
        get_extractor("aliked", variant="aliked-x99")
    with pytest.raises(TypeError, match="float64"):
        cached("extractor", "orb")(IMAGE.astype(np.float64))
    if "akaze" not in available_extractors():
        with pytest.raises(ValueError, match="akaze"):
            get_extractor("akaze")


def test_features_validation():
    with pytest.raises(ValueError, match="same count"):
        Features(np.zeros((3, 2)), np.zeros((2, 4), np.float32), np.zeros(3), (10, 10))
    f = Features(np.zeros((1, 2)), np.ones((1, 4), np.float32) / 2, np.ones(1), (10, 10), "x")
    assert len(f) == 1 and len(f.subset(np.array([False]))) == 0


def test_aliked_channels_last_gives_the_same_keypoints():
    """The adopted speed option (docs/deep-speed.md): channels-last memory format, same keypoints and
    descriptors as the contiguous model up to float rounding."""
    from dfbvs.camera import Camera
    from dfbvs.features import build_extractor
    from dfbvs.features.aliked import AlikedConfig
    from dfbvs.render import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig

    image = render_target(load_builtin("gear"), Camera.default().rescaled(320, 240), GoalConfig().T_object_camera()).rgb
    a = build_extractor(AlikedConfig(channels_last=False))(image)
    b = build_extractor(AlikedConfig(channels_last=True))(image)
    assert len(a.keypoints_px) == len(b.keypoints_px) > 100
    assert np.abs(a.keypoints_px - b.keypoints_px).max() < 1e-3
    assert np.abs(a.descriptors - b.descriptors).max() < 1e-4
