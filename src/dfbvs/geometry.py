"""SO(3)/SE(3) Lie group tools in float64 NumPy (no I/O).

Conventions (see CONVENTIONS.md): ``T_a_b`` is the 4x4 pose of frame b in frame a, so
``p_a = T_a_b @ p_b``. Twists are ``(vx, vy, vz, wx, wy, wz)``: linear first, m/s and rad/s.
A *body* twist ``v_b`` of frame b moves it as ``T_a_b(t + dt) = T_a_b(t) @ exp(v_b * dt)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_SMALL_ANGLE_RAD = 1e-6


def skew(w: np.ndarray) -> np.ndarray:
    """3x3 skew-symmetric matrix ``[w]x`` such that ``skew(w) @ p == cross(w, p)``."""
    w = np.asarray(w, dtype=np.float64).reshape(3)
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def unskew(W: np.ndarray) -> np.ndarray:
    """Inverse of :func:`skew` (takes the antisymmetric part)."""
    W = np.asarray(W, dtype=np.float64)
    return 0.5 * np.array([W[2, 1] - W[1, 2], W[0, 2] - W[2, 0], W[1, 0] - W[0, 1]])


def so3_exp(w_rad: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``w_rad`` (axis * angle, radians); Rodrigues."""
    w = np.asarray(w_rad, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(w))
    W = skew(w)
    if theta < _SMALL_ANGLE_RAD:
        # Taylor series: sin(t)/t ~ 1 - t^2/6, (1-cos t)/t^2 ~ 1/2 - t^2/24
        a = 1.0 - theta**2 / 6.0
        b = 0.5 - theta**2 / 24.0
    else:
        a = np.sin(theta) / theta
        b = (1.0 - np.cos(theta)) / theta**2
    return np.eye(3) + a * W + b * (W @ W)


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation vector (radians) of rotation matrix ``R``; angle in [0, pi], stable near 0 and pi."""
    R = np.asarray(R, dtype=np.float64)
    # (R - R^T)/2 = sin(theta) [a]x: atan2 keeps the angle accurate near 0 (arccos is not)
    sin_axis = 0.5 * unskew(R - R.T)
    cos_theta = np.clip((np.trace(R) - 1.0) * 0.5, -1.0, 1.0)
    sin_theta = float(np.linalg.norm(sin_axis))
    theta = float(np.arctan2(sin_theta, cos_theta))
    if theta < _SMALL_ANGLE_RAD:
        return sin_axis * (1.0 + theta**2 / 6.0)  # theta / sin(theta) ~ 1 + theta^2 / 6
    if np.pi - theta < 1e-3:
        # Near pi, sin(theta) ~ 0: the symmetric part of R is cos I + (1 - cos) a a^T, which gives a a^T.
        B = (0.5 * (R + R.T) - cos_theta * np.eye(3)) / (1.0 - cos_theta)
        k = int(np.argmax(np.diag(B)))
        axis = B[:, k] / np.sqrt(max(B[k, k], 1e-300))
        axis /= np.linalg.norm(axis)
        if np.dot(sin_axis, axis) < 0:  # the sign, from the antisymmetric part where it is informative
            axis = -axis
        return axis * theta
    return sin_axis * (theta / sin_theta)


def _so3_left_jacobian(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    W = skew(w)
    if theta < 1e-4:
        return np.eye(3) + 0.5 * W + (W @ W) / 6.0
    return (
        np.eye(3)
        + (1.0 - np.cos(theta)) / theta**2 * W
        + (theta - np.sin(theta)) / theta**3 * (W @ W)
    )


def _so3_left_jacobian_inv(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    W = skew(w)
    if theta < 1e-4:
        return np.eye(3) - 0.5 * W + (W @ W) / 12.0
    half = 0.5 * theta
    coef = (1.0 - half * np.cos(half) / np.sin(half)) / theta**2
    return np.eye(3) - 0.5 * W + coef * (W @ W)


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """4x4 pose ``exp(xi)`` of the twist ``xi = (v, w)`` (linear first; metres, radians)."""
    xi = np.asarray(xi, dtype=np.float64).reshape(6)
    v, w = xi[:3], xi[3:]
    T = np.eye(4)
    T[:3, :3] = so3_exp(w)
    T[:3, 3] = _so3_left_jacobian(w) @ v
    return T


def se3_log(T: np.ndarray) -> np.ndarray:
    """Twist ``(v, w)`` with ``se3_exp(twist) == T`` (rotation angle in [0, pi])."""
    T = np.asarray(T, dtype=np.float64)
    w = so3_log(T[:3, :3])
    v = _so3_left_jacobian_inv(w) @ T[:3, 3]
    return np.concatenate([v, w])


def make_pose(R: np.ndarray | None = None, t: ArrayLike | None = None) -> np.ndarray:
    """4x4 pose from a rotation matrix and a translation (metres)."""
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = np.asarray(R, dtype=np.float64)
    if t is not None:
        T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def pose_from_xyz_rotvec(xyz_m: np.ndarray, rotvec_rad: np.ndarray) -> np.ndarray:
    """4x4 pose from a translation (m) and a rotation vector (rad)."""
    return make_pose(so3_exp(rotvec_rad), xyz_m)


def inverse(T_a_b: np.ndarray) -> np.ndarray:
    """``T_b_a`` from ``T_a_b`` (uses R^T, exact for rigid transforms)."""
    T_a_b = np.asarray(T_a_b, dtype=np.float64)
    R, t = T_a_b[:3, :3], T_a_b[:3, 3]
    T = np.eye(4)
    T[:3, :3] = R.T
    T[:3, 3] = -R.T @ t
    return T


def transform_points(T_a_b: np.ndarray, p_b: np.ndarray) -> np.ndarray:
    """Points ``p_b`` (N, 3) expressed in frame b, returned in frame a: ``p_a = R_a_b p_b + t_a_b`` (N, 3)."""
    T_a_b = np.asarray(T_a_b, dtype=np.float64)
    p = np.asarray(p_b, dtype=np.float64).reshape(-1, 3)
    return p @ T_a_b[:3, :3].T + T_a_b[:3, 3]


def adjoint(T_a_b: np.ndarray) -> np.ndarray:
    """6x6 adjoint mapping a twist in frame b to the same motion in frame a: ``v_a = adjoint(T_a_b) @ v_b``.

    With linear-first twists: ``[[R, [t]x R], [0, R]]``.
    """
    T_a_b = np.asarray(T_a_b, dtype=np.float64)
    R, t = T_a_b[:3, :3], T_a_b[:3, 3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[:3, 3:] = skew(t) @ R
    A[3:, 3:] = R
    return A


def integrate_body_twist(T_world_body: np.ndarray, v_body: np.ndarray, dt_s: float) -> np.ndarray:
    """Pose after moving with constant body twist ``v_body`` (m/s, rad/s) for ``dt_s`` seconds."""
    if not np.isfinite(dt_s) or dt_s < 0:
        raise ValueError(f"dt must be a finite, non-negative number of seconds, got {dt_s!r}")
    return np.asarray(T_world_body, dtype=np.float64) @ se3_exp(np.asarray(v_body, dtype=np.float64) * dt_s)


def pose_error(T_world_a: np.ndarray, T_world_b: np.ndarray) -> tuple[float, float]:
    """Translation distance (m) and rotation angle (rad) between two poses."""
    T_a_b = inverse(T_world_a) @ np.asarray(T_world_b, dtype=np.float64)
    return float(np.linalg.norm(T_a_b[:3, 3])), float(np.linalg.norm(so3_log(T_a_b[:3, :3])))


def near_identity(T_a_b: np.ndarray, translation_m: float, rotation_deg: float) -> bool:
    """Whether ``T_a_b`` moves by at most ``translation_m`` and turns by at most ``rotation_deg`` (e.g. a pose
    ``T_current_target`` near the goal, which is the identity)."""
    distance_m, angle_rad = pose_error(T_a_b, np.eye(4))
    return bool(distance_m <= translation_m and np.rad2deg(angle_rad) <= rotation_deg)


def median_depth_m(T_camera_object: np.ndarray, points_m: np.ndarray) -> float:
    """Median depth (m, along the camera's z) of ``points_m`` (object frame, metres) seen from ``T_camera_object``."""
    return float(np.median(transform_points(T_camera_object, points_m)[:, 2]))


def poses_agree(T_a: np.ndarray, T_b: np.ndarray, points_m: np.ndarray, translation_ratio: float,
                rotation_deg: float, equivalents: tuple[np.ndarray, ...] = ()) -> bool:
    """Whether two measurements ``T_a``, ``T_b`` of one camera-from-object pose (e.g. ``T_current_target``)
    agree: within ``translation_ratio`` times the median depth of ``points_m`` (object frame, metres) seen from
    ``T_b`` (a far object's pose is noisier) and ``rotation_deg``, as ``T_b`` or as ``T_b @ G`` for any
    symmetry ``G`` of the object in ``equivalents`` (a lock on another gear tooth is the same pose)."""
    depth_m = median_depth_m(T_b, points_m)
    T_a_b = inverse(T_a) @ np.asarray(T_b, dtype=np.float64)
    return any(near_identity(T_a_b @ G, translation_ratio * depth_m, rotation_deg)
               for G in (np.eye(4), *equivalents))


def look_at(
    eye_m: ArrayLike, target_m: ArrayLike, up: ArrayLike = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """``T_world_camera`` of an OpenCV camera (z forward, y down) at ``eye_m`` looking at ``target_m``.

    ``up`` is the world direction that should appear upwards in the image (-y of the camera).
    """
    eye = np.asarray(eye_m, dtype=np.float64).reshape(3)
    z = np.asarray(target_m, dtype=np.float64).reshape(3) - eye
    nz = np.linalg.norm(z)
    if nz < 1e-12:
        raise ValueError(f"look_at: eye and target coincide at {eye.tolist()}")
    z /= nz
    up = np.asarray(up, dtype=np.float64).reshape(3)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking along up: pick any perpendicular
        x = np.cross(z, np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_pose(np.column_stack([x, y, z]), eye)


def look_at_spherical(
    distance_m: float, azimuth_deg: float, elevation_deg: float, roll_deg: float = 0.0,
    target_m: ArrayLike = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """``T_object_camera`` for a camera on a sphere around ``target_m`` in the object frame.

    Elevation 90 deg looks straight down the object's -z (camera above the object); azimuth turns about z;
    roll rotates the camera about its optical axis (positive: image content turns clockwise).
    """
    if not distance_m > 0:
        raise ValueError(f"look-at distance must be > 0 m, got {distance_m!r}")
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    target = np.asarray(target_m, dtype=np.float64)
    eye = target + distance_m * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    # Image "up" is the world direction pointing away from the azimuth, so that at el=90 the image is
    # well defined: up = +x rotated by azimuth.
    up = np.array([np.cos(az), np.sin(az), 0.0]) if abs(np.sin(el)) > 0.999 else np.array([0.0, 0.0, 1.0])
    T = look_at(eye, target, up)
    return T @ make_pose(so3_exp(np.array([0.0, 0.0, np.deg2rad(roll_deg)])))


def as_rigid_pose(T: object, name: str = "pose", atol: float = 1e-5) -> np.ndarray:
    """``T`` as a float64 4x4 rigid transform, or a :class:`~dfbvs.errors.PoseError` naming ``name`` and what is
    wrong: not 4x4 numbers, not finite, a rotation block that is not orthonormal with determinant +1 (within
    ``atol``: a scale or a reflection), or a last row other than ``0 0 0 1``."""
    from .errors import PoseError

    try:
        M = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError):
        raise PoseError(f"{name} must be a 4x4 matrix of numbers, got {type(T).__name__}") from None
    if M.shape != (4, 4):
        raise PoseError(f"{name} must be a 4x4 matrix, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise PoseError(f"{name} has {int(np.sum(~np.isfinite(M)))} entries that are not finite (NaN or inf)")
    R = M[:3, :3]
    if not (np.allclose(R @ R.T, np.eye(3), atol=atol) and np.linalg.det(R) > 0):
        raise PoseError(f"{name} is not rigid: its rotation block is not orthonormal with determinant +1 "
                        f"(singular values {np.round(np.linalg.svd(R, compute_uv=False), 6).tolist()}, "
                        f"det {np.linalg.det(R):.6g})")
    if not np.allclose(M[3], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise PoseError(f"{name}: last row must be 0 0 0 1, got {M[3].tolist()}")
    return M


def planar_rotation_rad(uv_from: np.ndarray, uv_to: np.ndarray) -> float:
    """The angle (rad, in ``(-pi, pi]``) of the 2D rotation that best maps the centred points ``uv_from``
    (N, 2) onto the centred ``uv_to`` (N, 2) in least squares (Procrustes), in the convention
    ``[[cos, -sin], [sin, cos]]`` of the points' own axes; 0 for fewer than 2 points."""
    a = np.asarray(uv_from, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(uv_to, dtype=np.float64).reshape(-1, 2)
    if len(a) < 2 or len(a) != len(b):
        return 0.0
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    cross = float(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]))
    dot = float(np.sum(a * b))
    return float(np.arctan2(cross, dot))
