"""The one conversion from a camera body twist to a UR ``speedL`` command (the adjoint trap of
CONVENTIONS.md, point 3).

``speedL`` takes the velocity of the TCP origin and the angular velocity of the tool, both expressed in base
axes. A camera body twist ``v_camera`` (camera axes, about the camera origin) is first moved to the tool's
body twist with the hand-eye transform, ``v_tool = adjoint(T_tool_camera) @ v_camera`` (same rigid motion,
reference point and axes of the tool), then both of its parts are *rotated* into base axes by ``R_base_tool``.
That is not ``adjoint(T_base_camera) @ v_camera``: the adjoint to the base would give the velocity of the
point of the moving body that is at the base origin, not of the TCP.
"""

from __future__ import annotations

import numpy as np

from ..errors import RobotError
from ..geometry import adjoint


def camera_twist_to_speedl(v_camera: np.ndarray, T_base_tool: np.ndarray, T_tool_camera: np.ndarray) -> np.ndarray:
    """``xd_base`` = (TCP linear velocity m/s, angular velocity rad/s), base axes, for camera body twist
    ``v_camera`` (m/s, rad/s, camera axes), given the measured ``T_base_tool`` and the hand-eye
    ``T_tool_camera``."""
    v = np.asarray(v_camera, dtype=np.float64).reshape(-1)
    if v.shape != (6,) or not np.all(np.isfinite(v)):
        raise RobotError(f"camera twist must be 6 finite values, got {np.asarray(v_camera).tolist()}")
    v_tool = adjoint(T_tool_camera) @ v
    R_base_tool = np.asarray(T_base_tool, dtype=np.float64)[:3, :3]
    return np.concatenate([R_base_tool @ v_tool[:3], R_base_tool @ v_tool[3:]])


def speedl_to_camera_twist(xd_base: np.ndarray, T_base_tool: np.ndarray, T_tool_camera: np.ndarray) -> np.ndarray:
    """The inverse of :func:`camera_twist_to_speedl` (for recording what the arm was actually told)."""
    xd = np.asarray(xd_base, dtype=np.float64).reshape(6)
    R_tool_base = np.asarray(T_base_tool, dtype=np.float64)[:3, :3].T
    v_tool = np.concatenate([R_tool_base @ xd[:3], R_tool_base @ xd[3:]])
    return np.linalg.solve(adjoint(T_tool_camera), v_tool)
