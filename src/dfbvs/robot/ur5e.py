"""UR5e kinematics from the manufacturer's published Denavit-Hartenberg parameters.

Frames: ``base`` is the controller's base frame (the one ``getActualTCPPose`` reports in), ``tool`` is the
tool flange (``tool0``, TCP offset zero). Joint angles ``q`` in rad, in the controller's order (base,
shoulder, elbow, wrist 1, wrist 2, wrist 3). The geometric Jacobian maps joint speeds (rad/s) to the TCP's
linear velocity (m/s) and angular velocity (rad/s), both in base axes: exactly what ``speedL`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RobotError
from ..geometry import pose_from_xyz_rotvec, so3_log

# UR5e: standard DH, theta_i = q_i (no offsets); metres and rad.
UR5E_D_M = np.array([0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996])
UR5E_A_M = np.array([0.0, -0.425, -0.3922, 0.0, 0.0, 0.0])
UR5E_ALPHA_RAD = np.array([np.pi / 2, 0.0, 0.0, np.pi / 2, -np.pi / 2, 0.0])
UR5E_REACH_M = 0.85  # published working radius from the shoulder axis
UR5E_JOINT_LIMIT_RAD = 2 * np.pi  # +-360 deg on every joint
UR5E_JOINT_SPEED_LIMIT_RAD_S = np.pi  # 180 deg/s on every joint

# A comfortable configuration: elbow up, the flange pointing down at the table in front of the robot.
UR5E_HOME_Q_RAD = np.array([0.0, -1.9, 1.9, -1.571, -1.571, 0.0])


def _dh(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    return np.array([[ct, -st * ca, st * sa, a * ct],
                     [st, ct * ca, -ct * sa, a * st],
                     [0.0, sa, ca, d],
                     [0.0, 0.0, 0.0, 1.0]])


def _check_q(q_rad: np.ndarray) -> np.ndarray:
    q = np.asarray(q_rad, dtype=np.float64).reshape(-1)
    if q.shape != (6,) or not np.all(np.isfinite(q)):
        raise RobotError(f"joint angles must be 6 finite values in rad, got {np.asarray(q_rad).tolist()}")
    return q


def joint_frames(q_rad: np.ndarray) -> list[np.ndarray]:
    """``T_base_joint_i`` for i = 0..6 (0 is the base itself, 6 the tool flange)."""
    q = _check_q(q_rad)
    frames = [np.eye(4)]
    for i in range(6):
        frames.append(frames[-1] @ _dh(q[i], UR5E_D_M[i], UR5E_A_M[i], UR5E_ALPHA_RAD[i]))
    return frames


def forward_kinematics(q_rad: np.ndarray) -> np.ndarray:
    """``T_base_tool`` (4x4) for joint angles ``q_rad``."""
    return joint_frames(q_rad)[-1]


def jacobian(q_rad: np.ndarray) -> np.ndarray:
    """Geometric Jacobian (6x6): ``[v_tool_base; w_base] = J @ qd`` (TCP linear velocity and angular velocity,
    both in base axes)."""
    frames = joint_frames(q_rad)
    p_tool = frames[-1][:3, 3]
    J = np.zeros((6, 6))
    for i in range(6):
        z = frames[i][:3, 2]
        J[:3, i] = np.cross(z, p_tool - frames[i][:3, 3])
        J[3:, i] = z
    return J


def min_singular_value(q_rad: np.ndarray) -> float:
    """The Jacobian's smallest singular value: how close ``q`` is to a singularity (0 at one; mixed units)."""
    return float(np.linalg.svd(jacobian(q_rad), compute_uv=False)[-1])


@dataclass(frozen=True)
class IKResult:
    q_rad: np.ndarray
    translation_error_m: float
    rotation_error_rad: float


def inverse_kinematics(T_base_tool: np.ndarray, q_seed_rad: np.ndarray = UR5E_HOME_Q_RAD, iterations: int = 200,
                       tolerance_m: float = 1e-9) -> IKResult:
    """Joint angles reaching ``T_base_tool`` from ``q_seed_rad`` by damped least squares (the solution on the
    seed's branch). Raises :class:`RobotError` when the pose is out of reach or the iteration fails."""
    T_goal = np.asarray(T_base_tool, dtype=np.float64)
    if T_goal.shape != (4, 4) or not np.all(np.isfinite(T_goal)):
        raise RobotError(f"T_base_tool must be a finite 4x4 matrix, got shape {T_goal.shape}")
    reach = np.linalg.norm(T_goal[:3, 3] - np.array([0.0, 0.0, UR5E_D_M[0]]))
    if reach > UR5E_REACH_M:
        raise RobotError(f"tool pose {T_goal[:3, 3].round(3).tolist()} m is {reach:.3f} m from the shoulder, beyond "
                         f"the UR5e's reach of {UR5E_REACH_M} m")
    q = _check_q(q_seed_rad).copy()
    t_err = r_err = np.inf
    for _ in range(iterations):
        T = forward_kinematics(q)
        e_lin = T_goal[:3, 3] - T[:3, 3]
        e_rot = T[:3, :3] @ so3_log(T[:3, :3].T @ T_goal[:3, :3])  # in base axes
        t_err, r_err = float(np.linalg.norm(e_lin)), float(np.linalg.norm(e_rot))
        if t_err < tolerance_m and r_err < tolerance_m:
            break
        J = jacobian(q)
        err = np.concatenate([e_lin, e_rot])
        damping = 1e-4
        q = q + J.T @ np.linalg.solve(J @ J.T + damping * np.eye(6), err)
    if t_err > 1e-6 or r_err > 1e-6:
        raise RobotError(f"no UR5e joint solution near the seed for tool pose {T_goal[:3, 3].round(3).tolist()} m "
                         f"(left {t_err * 1e3:.2f} mm / {np.rad2deg(r_err):.3f} deg)")
    if np.any(np.abs(q) > UR5E_JOINT_LIMIT_RAD):
        raise RobotError(f"the joint solution {np.round(q, 3).tolist()} rad is beyond the +-2 pi joint limits")
    return IKResult(q, t_err, r_err)


def pose_vector(T_base_tool: np.ndarray) -> list[float]:
    """A UR pose vector ``[x, y, z, rx, ry, rz]`` (m, axis-angle rad) from ``T_base_tool``."""
    T = np.asarray(T_base_tool, dtype=np.float64)
    return [*T[:3, 3].tolist(), *so3_log(T[:3, :3]).tolist()]


def pose_from_vector(pose: list[float] | np.ndarray) -> np.ndarray:
    """``T_base_tool`` from a UR pose vector ``[x, y, z, rx, ry, rz]`` (m, axis-angle rad)."""
    p = np.asarray(pose, dtype=np.float64).reshape(-1)
    if p.shape != (6,) or not np.all(np.isfinite(p)):
        raise RobotError(f"a UR pose is 6 finite values [x, y, z, rx, ry, rz], got {np.asarray(pose).tolist()}")
    return pose_from_xyz_rotvec(p[:3], p[3:])

