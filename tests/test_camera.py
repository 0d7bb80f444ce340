import numpy as np
import pytest

from dfbvs.camera import Camera


def random_points(rng, n=50):
    return np.column_stack([rng.uniform(-0.2, 0.2, n), rng.uniform(-0.15, 0.15, n), rng.uniform(0.3, 1.0, n)])


def test_project_unproject_roundtrip_with_distortion(rng):
    cam = Camera(300.0, 310.0, 158.3, 121.7, 320, 240, dist=(-0.1, 0.02, 0.001, -0.002, 0.0))
    p = random_points(rng)
    uv = cam.project(p)
    np.testing.assert_allclose(cam.unproject(uv, p[:, 2]), p, atol=1e-9)


def test_project_sign_and_principal_point():
    cam = Camera(300.0, 310.0, 158.3, 121.7, 320, 240)
    uv = cam.project([[0, 0, 1.0], [0.1, 0.2, 1.0]])
    np.testing.assert_allclose(uv[0], [158.3, 121.7])
    assert uv[1, 0] > uv[0, 0] and uv[1, 1] > uv[0, 1]  # +x right, +y down
    np.testing.assert_allclose(uv[1], [158.3 + 30, 121.7 + 62])


def test_rescale_consistency(rng):
    cam = Camera(1100.0, 1110.0, 640.7, 470.2, 1280, 960)
    small = cam.rescaled(320, 240)
    p = random_points(rng)
    uv_big = cam.project(p)
    uv_small = small.project(p)
    # integer pixel centres: u_small = (u_big + 0.5) * s - 0.5
    np.testing.assert_allclose(uv_small, (uv_big + 0.5) * 0.25 - 0.5, atol=1e-9)
    # the image corners map to the image corners
    np.testing.assert_allclose(small.rescaled(1280, 960).K, cam.K, atol=1e-9)
    # pixels_from converts pixels between the two resolutions of the same camera, both ways
    np.testing.assert_allclose(small.pixels_from(cam, uv_big), uv_small, atol=1e-9)
    np.testing.assert_allclose(cam.pixels_from(small, uv_small), uv_big, atol=1e-9)


def test_in_image():
    cam = Camera.default()
    m = cam.in_image([[0, 0], [-0.6, 10], [319.4, 239.4], [320, 10]])
    assert m.tolist() == [True, False, True, False]


@pytest.mark.parametrize("kwargs, msg", [
    (dict(fx=-3.0), "fx=-3"), (dict(fy=0.0), "fy=0"), (dict(width_px=0), "width_px=0"),
    (dict(cx=float("nan")), "cx=nan"), (dict(dist=(1, 2)), "distortion"),
])
def test_bad_intrinsics(kwargs, msg):
    base = dict(fx=300.0, fy=300.0, cx=160.0, cy=120.0, width_px=320, height_px=240)
    base.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        Camera(**base)


def test_dict_roundtrip():
    cam = Camera(300.0, 310.0, 158.3, 121.7, 320, 240, dist=(0.1, 0, 0, 0))
    assert Camera.from_dict(cam.to_dict()) == cam
