"""The grasp after convergence (the paper's Section V-B): from the converged camera pose, move the tool along
its approach axis to the grasp pose, close the gripper (a digital output), lift.

Frames: ``T_object_tool_grasp`` is where the tool must be, on the object, to grasp it; the goal camera pose
is derived from it and the hand-eye transform: the camera's goal is where the camera is when the tool stands
``standoff_m`` back from the grasp along the tool's approach axis (+z of the tool, as on a UR flange).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..geometry import inverse, make_pose, so3_log
from .ur import URArm


@dataclass(frozen=True)
class GraspConfig:
    """The grasp motion and, in simulation, what counts as a success (the paper's +-1.5 mm lateral)."""

    standoff_m: float = 0.12  # converged tool pose -> grasp pose, along the tool's +z
    approach_speed_m_s: float = 0.05
    approach_acceleration_m_s2: float = 0.3
    lift_m: float = 0.05  # after closing, straight up in the base frame
    gripper_output: int = 0  # UR standard digital output that closes the gripper (True = close)
    tolerance_lateral_mm: float = 1.5
    tolerance_axial_mm: float = 5.0
    tolerance_deg: float = 2.0

    def __post_init__(self) -> None:
        for name in ("standoff_m", "approach_speed_m_s", "approach_acceleration_m_s2", "tolerance_lateral_mm",
                     "tolerance_axial_mm", "tolerance_deg"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"grasp.{name}={v!r}: must be > 0")
        if not (np.isfinite(self.lift_m) and self.lift_m >= 0):
            raise ConfigError(f"grasp.lift_m={self.lift_m!r}: must be >= 0 m")
        if not 0 <= self.gripper_output <= 7:
            raise ConfigError(f"grasp.gripper_output={self.gripper_output!r}: UR standard outputs are 0..7")


def _along_tool_z(distance_m: float) -> np.ndarray:
    return make_pose(np.eye(3), [0.0, 0.0, distance_m])


def camera_goal_from_grasp(T_object_tool_grasp: np.ndarray, T_tool_camera: np.ndarray, standoff_m: float) -> np.ndarray:
    """``T_object_camera`` of the goal: the camera when the tool stands ``standoff_m`` back from the grasp."""
    return np.asarray(T_object_tool_grasp, dtype=np.float64) @ _along_tool_z(-standoff_m) @ T_tool_camera


def grasp_from_camera_goal(T_object_camera_goal: np.ndarray, T_tool_camera: np.ndarray,
                           standoff_m: float) -> np.ndarray:
    """The inverse of :func:`camera_goal_from_grasp`: the grasp a camera goal stands for."""
    return np.asarray(T_object_camera_goal, dtype=np.float64) @ inverse(T_tool_camera) @ _along_tool_z(standoff_m)


@dataclass(frozen=True)
class GraspResult:
    """``T_base_tool_commanded``: where the tool was sent to grasp (from the measured TCP pose, the hand-eye
    transform and the last PnP pose); ``T_base_tool_reached``: the arm's TCP pose when the gripper closed."""

    T_base_tool_commanded: np.ndarray
    T_base_tool_reached: np.ndarray


def execute_grasp(arm: URArm, T_tool_camera: np.ndarray, T_object_camera_goal: np.ndarray,
                  T_object_tool_grasp: np.ndarray, config: GraspConfig,
                  T_current_goal: np.ndarray | None = None) -> GraspResult:
    """Approach, close, lift. The object's pose in the base frame comes from the converged camera: at the goal,
    corrected by ``T_current_goal`` (the servo's last PnP pose of the goal camera in the current camera, when
    it has one)."""
    T_camera_goal = np.eye(4) if T_current_goal is None else np.asarray(T_current_goal, dtype=np.float64)
    T_base_object = arm.T_base_tool() @ T_tool_camera @ T_camera_goal @ inverse(T_object_camera_goal)
    T_base_grasp = T_base_object @ T_object_tool_grasp
    arm.move_l(T_base_grasp, config.approach_speed_m_s, config.approach_acceleration_m_s2)
    reached = arm.T_base_tool()
    arm.set_digital_out(config.gripper_output, True)
    if config.lift_m > 0:
        lifted = reached.copy()
        lifted[2, 3] += config.lift_m
        arm.move_l(lifted, config.approach_speed_m_s, config.approach_acceleration_m_s2)
    return GraspResult(T_base_grasp, reached)


@dataclass(frozen=True)
class GraspError:
    """The tool's error at the grasp, in the true grasp frame: lateral (across the approach axis), axial
    (along it) and rotation; ``success`` within the configured tolerances."""

    lateral_mm: float
    axial_mm: float
    rotation_deg: float
    success: bool


def grasp_error(T_true_grasp: np.ndarray, T_reached: np.ndarray, config: GraspConfig) -> GraspError:
    T_err = inverse(T_true_grasp) @ T_reached
    lateral = float(np.linalg.norm(T_err[:2, 3])) * 1e3
    axial = float(abs(T_err[2, 3])) * 1e3
    rot = float(np.rad2deg(np.linalg.norm(so3_log(T_err[:3, :3]))))
    ok = lateral <= config.tolerance_lateral_mm and axial <= config.tolerance_axial_mm and rot <= config.tolerance_deg
    return GraspError(lateral, axial, rot, ok)
