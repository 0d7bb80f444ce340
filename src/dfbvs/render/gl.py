"""The only place where OpenGL conventions meet the project's OpenCV conventions.

OpenCV camera axes: x right, y down, z forward; pixel ``(u, v)`` with integer values at pixel centres.
OpenGL camera axes: x right, y up, z backward; window coordinates with pixel centres at ``i + 0.5`` and the
window's row 0 at the *bottom*. Render backends build their clip transform with
:func:`clip_from_camera_cv`, which is ``opengl_projection(camera) @ opencv_to_opengl()``.
"""

from __future__ import annotations

import numpy as np

from ..camera import Camera


def opencv_to_opengl() -> np.ndarray:
    """4x4 ``T_gl_cv``: maps a point in OpenCV camera axes to OpenGL camera axes (flips y and z).

    ``p_gl = opencv_to_opengl() @ p_cv``; it is its own inverse.
    """
    return np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_projection(camera: Camera, near_m: float, far_m: float) -> np.ndarray:
    """4x4 OpenGL projection (camera OpenGL axes -> clip space) matching ``camera.project`` exactly.

    A point at OpenCV pixel ``(u, v)`` lands at window ``x = u + 0.5`` and, for a framebuffer read back
    bottom-up and flipped to top-down rows, at image row ``v``: NDC ``x = 2 (u + 0.5) / W - 1`` and
    ``y = 1 - 2 (v + 0.5) / H``. ``near_m`` / ``far_m`` bound the depth buffer (occlusion only; metric
    depth is written separately by the backends).
    """
    if camera.has_distortion:
        raise ValueError(f"rasterisation needs a pinhole camera without distortion, got dist={camera.dist}")
    if not (0 < near_m < far_m and np.isfinite(far_m)):
        raise ValueError(f"need 0 < near < far (m), got near={near_m!r}, far={far_m!r}")
    W, H = camera.width_px, camera.height_px
    P = np.zeros((4, 4))
    P[0, 0] = 2.0 * camera.fx / W
    P[0, 2] = 1.0 - 2.0 * (camera.cx + 0.5) / W
    P[1, 1] = 2.0 * camera.fy / H
    P[1, 2] = 2.0 * (camera.cy + 0.5) / H - 1.0
    P[2, 2] = -(far_m + near_m) / (far_m - near_m)
    P[2, 3] = -2.0 * far_m * near_m / (far_m - near_m)
    P[3, 2] = -1.0
    return P


def clip_from_camera_cv(camera: Camera, near_m: float, far_m: float) -> np.ndarray:
    """4x4 transform from OpenCV camera coordinates (m) to OpenGL clip space."""
    return opengl_projection(camera, near_m, far_m) @ opencv_to_opengl()
