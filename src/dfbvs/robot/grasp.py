"""The grasp after convergence (the paper's Section V-B): from the converged camera pose, move the tool along
its approach axis to the grasp pose, close the gripper (a digital output), lift.

Frames: ``T_object_tool_grasp`` is where the tool must be, on the object, to grasp it; the goal camera pose
is derived from it and the hand-eye transform: the camera's goal is where the camera is when the tool stands
``standoff_m`` back from the grasp along the tool's approach axis (+z of the tool, as on a UR flange).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, RobotError
from ..geometry import inverse, make_pose, so3_log
from .safety import SafetyConfig
from .ur import URArm

#: ceilings of the grasp motion's lengths (m): beyond them a value is a unit mistake, not a grasp
MAX_STANDOFF_M = 0.5
MAX_LIFT_M = 0.3


@dataclass(frozen=True)
class GraspConfig:
    """The grasp motion and, in simulation, what counts as a success (the paper's +-1.5 mm lateral)."""

    standoff_m: float = 0.12  # converged tool pose -> grasp pose, along the tool's +z
    approach_speed_m_s: float = 0.05  # at most the safety layer's max_linear_speed_m_s (clamped to it)
    approach_acceleration_m_s2: float = 0.3  # at most the safety layer's max_linear_accel_m_s2 (clamped to it)
    lift_m: float = 0.05  # after closing, straight up in the base frame
    # the approach is refused (nothing moves) when it would take the tool further than standoff_m plus this, or
    # turn it by more than max_approach_rotation_deg: the object's estimated pose is not where the servo converged
    max_extra_travel_m: float = 0.02
    max_approach_rotation_deg: float = 5.0
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
        if not (np.isfinite(self.lift_m) and 0 <= self.lift_m <= MAX_LIFT_M):
            raise ConfigError(f"grasp.lift_m={self.lift_m!r}: must be in [0, {MAX_LIFT_M:g}] m")
        if not self.standoff_m <= MAX_STANDOFF_M:
            raise ConfigError(f"grasp.standoff_m={self.standoff_m!r}: at most {MAX_STANDOFF_M:g} m (an eye-in-hand "
                              "camera's goal stands a few centimetres back from the grasp; metres expected)")
        for name in ("max_extra_travel_m", "max_approach_rotation_deg"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ConfigError(f"grasp.{name}={v!r}: must be >= 0")
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
                  T_current_goal: np.ndarray | None = None, safety: SafetyConfig = SafetyConfig()) -> GraspResult:
    """Approach, close, lift. The object's pose in the base frame comes from the converged camera: at the goal,
    corrected by ``T_current_goal`` (the servo's last PnP pose of the goal camera in the current camera, when
    it has one). The moves obey ``safety`` as the servo's commands do: speed and acceleration clamped to its
    limits, both end poses inside its workspace box; an approach that is not the short straight move the
    standoff asks for (:func:`check_grasp_motion`) raises :class:`~dfbvs.errors.RobotError` before anything moves."""
    T_camera_goal = np.eye(4) if T_current_goal is None else np.asarray(T_current_goal, dtype=np.float64)
    T_base_tool = arm.T_base_tool()
    T_base_object = T_base_tool @ T_tool_camera @ T_camera_goal @ inverse(T_object_camera_goal)
    T_base_grasp = T_base_object @ T_object_tool_grasp
    lifted = T_base_grasp.copy()
    lifted[2, 3] += config.lift_m
    check_grasp_motion(T_base_tool, T_base_grasp, lifted, config, safety)
    speed = min(config.approach_speed_m_s, safety.max_linear_speed_m_s)
    acceleration = min(config.approach_acceleration_m_s2, safety.max_linear_accel_m_s2)
    arm.move_l(T_base_grasp, speed, acceleration, safety.stop_deceleration_m_s2)
    reached = arm.T_base_tool()
    arm.set_digital_out(config.gripper_output, True)
    if config.lift_m > 0:
        lifted = reached.copy()
        lifted[2, 3] += config.lift_m
        check_grasp_motion(reached, reached, lifted, config, safety)  # the box, from where the tool is
        arm.move_l(lifted, speed, acceleration, safety.stop_deceleration_m_s2)
    return GraspResult(T_base_grasp, reached)


def check_grasp_motion(T_base_tool: np.ndarray, T_base_grasp: np.ndarray, T_base_lifted: np.ndarray,
                       config: GraspConfig, safety: SafetyConfig) -> None:
    """Raise :class:`~dfbvs.errors.RobotError` (naming the poses) unless the approach from ``T_base_tool`` to
    ``T_base_grasp`` is at most ``standoff_m + max_extra_travel_m`` long and turns the tool at most
    ``max_approach_rotation_deg``, and the grasp and the lift's end (``T_base_lifted``) lie in ``safety``'s
    workspace box (straight moves between points of a box stay in it)."""
    travel = float(np.linalg.norm(T_base_grasp[:3, 3] - T_base_tool[:3, 3]))
    turn = float(np.rad2deg(np.linalg.norm(so3_log(T_base_tool[:3, :3].T @ T_base_grasp[:3, :3]))))
    if travel > config.standoff_m + config.max_extra_travel_m or turn > config.max_approach_rotation_deg:
        raise RobotError(f"grasp refused: the approach would move the tool {travel * 1e3:.1f} mm and turn it "
                         f"{turn:.1f} deg (limits: standoff {config.standoff_m * 1e3:.0f} mm + "
                         f"{config.max_extra_travel_m * 1e3:.0f} mm, {config.max_approach_rotation_deg:g} deg): the "
                         "object's estimated pose is not where the servo converged")
    lo, hi = np.asarray(safety.workspace_min_m, float), np.asarray(safety.workspace_max_m, float)
    for what, T in (("grasp pose", T_base_grasp), ("lift's end", T_base_lifted)):
        p = np.asarray(T, dtype=np.float64)[:3, 3]
        if np.any(p < lo) or np.any(p > hi):
            raise RobotError(f"grasp refused: the {what} {np.round(p, 4).tolist()} m (base) is outside the workspace "
                             f"box {np.round(lo, 3).tolist()}..{np.round(hi, 3).tolist()} m")


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
