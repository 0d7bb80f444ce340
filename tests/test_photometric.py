"""The photometric interaction matrix against finite differences of an analytically rendered textured plane."""

import numpy as np

from dfbvs.camera import Camera
from dfbvs.geometry import make_pose, se3_exp, so3_exp
from dfbvs.photometric import photometric_interaction_matrix

CAM = Camera(200.0, 190.0, 31.0, 23.0, 64, 48)


def texture(p_world):
    x, y = p_world[..., 0], p_world[..., 1]
    return 0.5 + 0.25 * np.sin(40 * x + 3 * y) + 0.2 * np.cos(25 * y - 10 * x)


def render_plane(T_world_camera):
    """Intensity (H, W) and depth of the world plane z = 0 seen from T_world_camera (analytic ray cast)."""
    vv, uu = np.mgrid[0:CAM.height_px, 0:CAM.width_px]
    xy = CAM.pixel_to_normalized(np.column_stack([uu.ravel(), vv.ravel()]).astype(float))
    rays_c = np.column_stack([xy, np.ones(len(xy))])
    R, t = T_world_camera[:3, :3], T_world_camera[:3, 3]
    rays_w = rays_c @ R.T
    Z = -t[2] / rays_w[:, 2]  # ray parameter equals depth along the optical axis since rays_c has z = 1
    p = t + rays_w * Z[:, None]
    return texture(p).reshape(CAM.height_px, CAM.width_px), Z.reshape(CAM.height_px, CAM.width_px)


def test_photometric_interaction_matrix_matches_finite_differences():
    T = make_pose(so3_exp([np.pi - 0.1, 0.05, 0.2]), [0.01, -0.02, 0.5])  # looking down at the plane from 0.5 m
    I, Z = render_plane(T)
    assert np.all(Z > 0.3)
    h = 1e-3
    # analytic image gradient in pixels by central differences of the analytic render in u, v
    vv, uu = np.mgrid[0:CAM.height_px, 0:CAM.width_px].astype(float)

    def intensity_at(uv):
        xy = CAM.pixel_to_normalized(uv)
        rays_w = np.column_stack([xy, np.ones(len(xy))]) @ T[:3, :3].T
        Zs = -T[2, 3] / rays_w[:, 2]
        return texture(T[:3, 3] + rays_w * Zs[:, None])

    uv = np.column_stack([uu.ravel(), vv.ravel()])
    d = 1e-4
    grad_u = ((intensity_at(uv + [d, 0]) - intensity_at(uv - [d, 0])) / (2 * d)).reshape(I.shape)
    grad_v = ((intensity_at(uv + [0, d]) - intensity_at(uv - [0, d])) / (2 * d)).reshape(I.shape)
    L = photometric_interaction_matrix(CAM, grad_u, grad_v, Z)
    for k in range(6):
        v = np.zeros(6)
        v[k] = h
        dI = (render_plane(T @ se3_exp(v))[0] - render_plane(T @ se3_exp(-v))[0]).ravel() / (2 * h)
        np.testing.assert_allclose(dI, L[:, k], rtol=1e-3, atol=1e-3 * np.abs(L[:, k]).max())
