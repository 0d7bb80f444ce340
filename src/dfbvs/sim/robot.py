"""The body that carries the simulated camera: the ideal free-flying camera, or a simulated UR5e driven
through the same code path as a real arm (fake RTDE clients -> :class:`~dfbvs.robot.ur.URArm` ->
:class:`~dfbvs.robot.sink.ArmSink` with its safety layer), with the errors a real setup has as seeded knobs:
a hand-eye error (the servo converts twists and computes the grasp with a believed ``T_tool_camera`` that is
off by ``hand_eye_error_mm`` / ``hand_eye_error_deg``), an intrinsics error (the target is rendered and the
servo works with a camera whose fx, fy, cx, cy are off by up to ``intrinsics_error_pct``), and a command
latency of ``latency_frames`` frames on top of the controller's own few ms.

The arm stands where its ``q_goal_rad`` configuration puts the (true) camera at the goal; it starts at the
joint solution of the episode's start pose nearest that configuration.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

import numpy as np

from ..camera import Camera
from ..errors import ConfigError
from ..geometry import inverse, make_pose, so3_exp
from ..robot.arm_sim import ArmSimConfig, SimulatedUR5e
from ..robot.fake_rtde import FakeRTDE, SimTime
from ..robot.grasp import GraspConfig
from ..robot.safety import SafetyConfig
from ..robot.sink import ArmSink
from ..robot.ur import URArm
from ..robot.ur5e import UR5E_HOME_Q_RAD, forward_kinematics, inverse_kinematics
from ..runtime import Frame


class RobotKind(str, enum.Enum):
    FREE = "free"  # the ideal robot: the camera moves exactly and at once by every twist
    UR5E = "ur5e"  # a simulated UR5e over the RTDE code path


@dataclass(frozen=True)
class RobotConfig:
    """``kind`` and, for an arm, the hand-eye transform (camera on the flange: ``T_tool_camera_xyz_m``
    translation and ``T_tool_camera_rotvec_deg`` rotation vector), the error knobs, the safety limits and
    the grasp after convergence (``grasp=true``)."""

    kind: RobotKind = RobotKind.FREE
    T_tool_camera_xyz_m: tuple[float, float, float] = (0.0, 0.06, 0.10)
    T_tool_camera_rotvec_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hand_eye_error_mm: float = 0.0
    hand_eye_error_deg: float = 0.0
    intrinsics_error_pct: float = 0.0
    latency_frames: float = 0.0
    q_goal_rad: tuple[float, ...] = tuple(UR5E_HOME_Q_RAD.tolist())
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    grasp: bool = False
    grasp_motion: GraspConfig = field(default_factory=GraspConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RobotKind(self.kind))
        for name in ("hand_eye_error_mm", "hand_eye_error_deg", "intrinsics_error_pct", "latency_frames"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ConfigError(f"robot.{name}={v!r}: must be >= 0")
        if len(self.q_goal_rad) != 6:
            raise ConfigError(f"robot.q_goal_rad must have 6 joint angles, got {self.q_goal_rad!r}")
        if self.grasp and self.kind is RobotKind.FREE:
            raise ConfigError("robot.grasp=true needs an arm: set robot.kind=ur5e (--robot ur5e)")

    def T_tool_camera(self) -> np.ndarray:
        return make_pose(so3_exp(np.deg2rad(self.T_tool_camera_rotvec_deg)), self.T_tool_camera_xyz_m)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def believed_hand_eye(config: RobotConfig, seed: int) -> np.ndarray:
    """The hand-eye transform the servo believes: the true one off by exactly the configured error, in a
    seeded random direction."""
    rng = np.random.default_rng([seed, 4241])
    error = make_pose(so3_exp(_random_unit(rng) * np.deg2rad(config.hand_eye_error_deg)),
                      _random_unit(rng) * config.hand_eye_error_mm * 1e-3)
    return config.T_tool_camera() @ error


def believed_camera(camera: Camera, error_pct: float, seed: int) -> Camera:
    """The calibration the servo believes: fx, fy, cx, cy each off by a seeded uniform draw in +-``error_pct``."""
    if error_pct == 0:
        return camera
    rng = np.random.default_rng([seed, 4243])
    k = 1 + rng.uniform(-error_pct, error_pct, size=4) / 100
    return replace(camera, fx=camera.fx * k[0], fy=camera.fy * k[1], cx=camera.cx * k[2], cy=camera.cy * k[3])


@dataclass
class ArmRig:
    """A simulated UR5e carrying the camera: the fake controller, the arm adapter and the sink the servo
    drives (with the believed hand-eye), and the truth the simulation renders and scores with."""

    fake: FakeRTDE
    arm: URArm
    sink: ArmSink
    T_world_base: np.ndarray
    T_tool_camera_true: np.ndarray
    T_tool_camera_believed: np.ndarray

    def T_world_camera_true(self) -> np.ndarray:
        return self.T_world_base @ self.fake.sync().T_base_tool() @ self.T_tool_camera_true

    def T_world_tool_true(self) -> np.ndarray:
        return self.T_world_base @ self.fake.sync().T_base_tool()


def build_arm_rig(config: RobotConfig, T_world_camera_goal: np.ndarray, T_world_camera_start: np.ndarray,
                  frame_period_s: float, seed: int) -> ArmRig:
    """The arm placed so that ``q_goal_rad`` puts the true camera at the goal, started at the start pose."""
    T_tool_camera = config.T_tool_camera()
    q_goal = np.asarray(config.q_goal_rad, dtype=np.float64)
    T_world_base = T_world_camera_goal @ inverse(forward_kinematics(q_goal) @ T_tool_camera)
    T_base_tool_start = inverse(T_world_base) @ T_world_camera_start @ inverse(T_tool_camera)
    q_start = inverse_kinematics(T_base_tool_start, q_goal).q_rad
    latency_s = ArmSimConfig().command_latency_s + config.latency_frames * frame_period_s
    fake = FakeRTDE(SimulatedUR5e(q_start, ArmSimConfig(command_latency_s=latency_s)), SimTime())
    control, receive, io = fake.clients()
    arm = URArm(receive, control, io, host="ur5e-sim", poll_s=0.0)  # simulated time: no need to wait
    believed = believed_hand_eye(config, seed)
    sink = ArmSink(arm, believed, config.safety, T_world_base=T_world_base, clock=lambda: fake.time.now_s,
                   watchdog=False)  # simulated time cannot freeze; the watchdog is tested on wall time
    return ArmRig(fake, arm, sink, T_world_base, T_tool_camera, believed)


class ArmCamera:
    """Stepped frames from the camera on a simulated arm: one every ``dt_s`` of simulated time, rendered at
    the camera's true pose (the arm moves in between with whatever it was last commanded)."""

    def __init__(self, render, rig: ArmRig, dt_s: float) -> None:
        self.render, self.rig, self.dt_s = render, rig, dt_s
        self._count = 0

    def grab(self) -> Frame:
        t = self._count * self.dt_s
        self._count += 1
        self.rig.fake.time.now_s = t
        return self.render(self.rig.T_world_camera_true(), t)


def simulated_arm_camera(mesh, camera: Camera, T_world_camera_goal: np.ndarray, T_world_camera_start: np.ndarray,
                         scene_config, robot: RobotConfig, dt_s: float, seed: int) -> tuple[ArmRig, ArmCamera]:
    """A simulated UR5e and the camera it carries, rendering the cluttered scene around ``mesh`` (world =
    object frame): what ``dfbvs servo --robot ur5e-sim`` drives through the hardware code path."""
    from ..render.scene import build_scene, render_scene

    scene = build_scene(mesh, scene_config, seed=seed)
    rig = build_arm_rig(robot, T_world_camera_goal, T_world_camera_start, dt_s, seed)

    def render(T_world_camera: np.ndarray, t_s: float) -> Frame:
        return Frame(render_scene(scene, camera, T_world_camera).rgb, t_s)

    return rig, ArmCamera(render, rig, dt_s)
