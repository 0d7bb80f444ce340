"""A simulated DFBVS episode: an object, a goal pose on it, a start pose, a cluttered scene with a
sim-to-real gap, and the servo loop driving a free-flying camera. Ground truth is known, so the episode
reports the final camera pose error as well as the paper's image-space metric.

The world frame of the simulation is the object frame: ``T_object_camera`` is the camera pose.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..camera import Camera
from ..config import describe
from ..errors import ConfigError, RobotError
from ..geometry import as_rigid_pose, inverse, look_at_spherical, make_pose, pose_error, so3_exp, transform_points
from ..goal import CenterKind, GoalSpec
from ..liveview import RerunRecorder
from ..photometric import PhotometricConfig
from ..recorder import RecorderGroup, RunRecorder
from ..relight import basis_directions, basis_renderer, second_basis
from ..render import load_builtin, load_mesh
from ..render.mesh import Mesh, reframed
from ..render.scene import Scene, SceneConfig, build_scene, render_scene
from ..render.target import TargetCheckConfig, TargetRender, check_target_render, render_target
from ..robot.grasp import camera_goal_from_grasp, execute_grasp, grasp_error, grasp_from_camera_goal
from ..runtime import Cycle, Frame, FrameSource, MotionSink, Probe, ProbeReading, combine_probes, run_servo_loop
from ..servo import SERVOS, ServoConfig, build_servo, light_turns
from ..stop import EpisodeStatus, StopConfig, StopMonitor
from ..symmetry import Symmetry, pose_error_modulo, symmetric_error_fields, symmetry_of
from .depth_sensor import DepthSensorConfig, sensed_depth
from .free_camera import FreeFlyingCamera
from .perturbations import LightChangeConfig, MotionBlur, MotionBlurConfig, Occluder, OcclusionConfig
from .robot import ArmCamera, ArmRig, RobotConfig, RobotKind, believed_camera, believed_hand_eye, build_arm_rig
from .timing import RealtimeBody, RealtimeCamera, SimClock, TimingConfig, TimingMode


@dataclass(frozen=True)
class GoalConfig:
    """Goal camera pose in the object frame: look-at angles around the object's centre (``center``: bbox,
    centroid or origin; see :mod:`dfbvs.goal`) from ``distance_m``, or, with ``distance_m=none``, from the
    distance at which the object's bounding sphere spans ``fill_ratio`` of the image's shorter side (what a
    user mesh gets by default: any size, any origin). The built-in objects are modelled about their centre.
    ``look_at_m`` (a point of the object frame, m) replaces the centre; ``T_object_camera_given`` (4x4, metres)
    is the goal pose itself and overrides every look-at parameter (``dfbvs sim --goal FILE``, or a grasp and a
    hand-eye: ``--grasp-pose``)."""

    distance_m: float | None = 0.22
    azimuth_deg: float = 30.0
    elevation_deg: float = 60.0
    roll_deg: float = 0.0
    fill_ratio: float = 0.9
    center: CenterKind = CenterKind.BBOX
    look_at_m: tuple[float, float, float] | None = None
    T_object_camera_given: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.fill_ratio) and 0 < self.fill_ratio <= 1):
            raise ConfigError(f"goal.fill_ratio={self.fill_ratio!r}: the object's share of the image, in (0, 1]")
        if self.distance_m is not None and not (np.isfinite(self.distance_m) and self.distance_m > 0):
            raise ConfigError(f"goal.distance_m={self.distance_m!r}: a distance > 0 m (none: framed by fill_ratio)")
        if self.look_at_m is not None and not (len(self.look_at_m) == 3 and np.all(np.isfinite(self.look_at_m))):
            raise ConfigError(f"goal.look_at_m={self.look_at_m!r}: a point x, y, z of the object frame (m)")
        if self.T_object_camera_given is not None:
            as_rigid_pose(self.T_object_camera_given, "goal.T_object_camera_given")  # a PoseError naming it

    def spec(self) -> GoalSpec:
        return GoalSpec(self.azimuth_deg, self.elevation_deg, self.roll_deg, self.distance_m, self.fill_ratio,
                        self.center, self.look_at_m)

    def T_object_camera(self, mesh: Mesh | None = None, camera: Camera | None = None) -> np.ndarray:
        """The goal pose; without a mesh, around the object frame's origin (or ``look_at_m``) at ``distance_m``
        (which must be set); ``T_object_camera_given`` when set."""
        if self.T_object_camera_given is not None:
            return as_rigid_pose(self.T_object_camera_given, "goal.T_object_camera_given")
        if mesh is None:
            if self.distance_m is None:
                raise ConfigError("goal.distance_m=none frames the object: the goal needs the mesh")
            return look_at_spherical(self.distance_m, self.azimuth_deg, self.elevation_deg, self.roll_deg,
                                     target_m=self.look_at_m if self.look_at_m is not None else (0.0, 0.0, 0.0))
        return self.spec().T_object_camera(mesh, camera if camera is not None else Camera.default())


@dataclass(frozen=True)
class StartConfig:
    """Start pose relative to the goal: a translation of ``offset_mm`` in a random direction and a rotation
    of ``offset_deg`` about a random axis (both drawn with ``seed``), resampled until the object's centre
    stays inside the image with ``margin_px`` to spare. ``T_goal_start`` overrides all of that."""

    offset_mm: float = 50.0
    offset_deg: float = 8.0
    margin_px: float = 50.0
    T_goal_start: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.offset_mm) and self.offset_mm >= 0):
            raise ConfigError(f"start.offset_mm={self.offset_mm!r}: a distance, >= 0 mm (its direction is random)")
        if not (np.isfinite(self.offset_deg) and 0 <= self.offset_deg <= 180):
            raise ConfigError(f"start.offset_deg={self.offset_deg!r}: a rotation angle in [0, 180] deg (its axis is "
                              "random)")


@dataclass(frozen=True)
class EpisodeConfig:
    """Everything that defines a simulated episode (the run stores it as config.json)."""

    object_name: str = "bracket"
    mesh_path: str | None = None
    mesh_unit: str = "m"
    # the part scaled about its origin, then its frame moved to this point of the scaled part (metres): another
    # size, an origin elsewhere (as CAD sub-parts have); the goal still frames the part (render.mesh.reframed)
    mesh_scale: float = 1.0
    mesh_origin_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    goal: GoalConfig = field(default_factory=GoalConfig)
    start: StartConfig = field(default_factory=StartConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    # the renderer of the target (goal) image: moderngl, or blender[:samples=N,...] for a path-traced target whose
    # shading (self-shadowing, the BRDF) is closer to a photoreal scene's (docs/photoreal.md)
    target_renderer: str = "moderngl"
    # the servo: ServoConfig (DFBVS) or PhotometricConfig (the whole-image baseline); `--set servo=photometric`
    servo: ServoConfig | PhotometricConfig = field(default_factory=ServoConfig, metadata={"registry": SERVOS})
    stop: StopConfig = field(default_factory=StopConfig)
    # The simulated sensor: the working camera's lens at 640x480. Features are found at the working
    # resolution (320x240) and refined on this image (docs/servo.md: 4x smaller final rotation error).
    camera: Camera = field(default_factory=lambda: Camera.default().rescaled(640, 480))
    dt_s: float = 0.1  # stepped timing: each twist moves the camera for this long
    timing: TimingConfig = field(default_factory=TimingConfig)  # stepped, or a camera at fps with latency
    occlusion: OcclusionConfig = field(default_factory=OcclusionConfig)  # none unless occlusion.start_s is set
    light_change: LightChangeConfig = field(default_factory=LightChangeConfig)  # none unless its start_s is set
    motion_blur: MotionBlurConfig = field(default_factory=MotionBlurConfig)  # none unless exposure_s > 0
    robot: RobotConfig = field(default_factory=RobotConfig)  # the free-flying camera, or a simulated UR5e
    # a depth sensor beside the colour camera (an RGB-D camera; off: frames are colour only), sim/depth_sensor.py
    depth_sensor: DepthSensorConfig = field(default_factory=DepthSensorConfig)
    goal_tolerance_mm: float = 1.0  # time_to_goal_s: within this and goal_tolerance_deg of the goal for good
    goal_tolerance_deg: float = 0.1
    max_distance_from_goal_m: float = 0.25  # leaving this ball around the goal counts as diverged
    seed: int = 0
    video_stride: int = 2
    # errors modulo the object's symmetry (docs/symmetry.md): "declared" (the built-ins' table, none for a user
    # mesh), "auto" (find_symmetries on the mesh) or "none"; a converged run within the lock tolerance of
    # no equivalent is a "false lock"
    symmetry: str = "declared"
    lock_tolerance_mm: float = 2.0
    lock_tolerance_deg: float = 0.5


@dataclass(frozen=True)
class EpisodeResult:
    """What an episode achieved. Pixel figures are at the working resolution (``ServoConfig``'s, 320x240 by
    default) whatever the sensor's: ``final_mean_px_error`` the measured correspondence error (the paper's
    metric), ``final_true_reprojection_px`` the ground-truth image error of the object's visible surface."""

    status: EpisodeStatus
    iterations: int
    final_translation_error_mm: float
    final_rotation_error_deg: float
    final_mean_px_error: float
    initial_translation_mm: float
    initial_rotation_deg: float
    median_cycle_ms: float
    median_stage_ms: dict
    final_n_inliers: int
    final_true_reprojection_px: float
    out_dir: str | None
    p95_cycle_ms: float = float("nan")
    time_to_goal_s: float = float("nan")  # simulated s until within the goal tolerance for good (NaN: never)
    servo_stats: dict = field(default_factory=dict)  # the servo's own counters (detections, re-acquisitions)
    robot_stats: dict = field(default_factory=dict)  # on an arm: commands sent / scaled by safety, the fault
    grasp_success: bool | None = None  # robot.grasp: within the grasp tolerance (None: no grasp asked)
    grasp_error: dict = field(default_factory=dict)  # lateral_mm, axial_mm, rotation_deg, or why no grasp
    converged_by: str | None = None  # the stop rule that ended a converged run: pose, settled or twist
    # cycles on which a rule would have converged but the lock was not pinned down (few, clustered inliers), why
    unpinned_cycles: int = 0
    unpinned_reason: str = ""
    # cycles on which a rule would have converged but the servo's step was pending (ServoStep.pending), why
    pending_cycles: int = 0
    pending_reason: str = ""
    # with an occlusion: how far the camera moved away from the goal while the occluder passed (the largest
    # translation error during the pass minus the error when it began; mm; NaN without an occlusion)
    occlusion_drift_mm: float = float("nan")
    # modulo the object's symmetry (docs/symmetry.md): errors to the nearest equivalent goal, its index (0: the
    # goal itself), the number of equivalents, and for a converged run "goal", "symmetric equivalent" or
    # "false lock" (beyond lock_tolerance_mm / _deg of every equivalent)
    final_translation_error_mm_sym: float = float("nan")
    final_rotation_error_deg_sym: float = float("nan")
    symmetric_equivalent: int = 0
    symmetry_order: int = 1
    lock: str | None = None
    # the last cycle's step status and the servo's reason for it ("" when it gave none): why a run that did not
    # converge stopped moving (e.g. ``unreliable``: "4 of the last 6 detections ... disagreed")
    final_step_status: str = ""
    final_reason: str = ""

    @property
    def converged(self) -> bool:
        return self.status is EpisodeStatus.CONVERGED

    def summary(self) -> dict:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        d["converged"] = self.converged
        return d


def start_pose(config: EpisodeConfig, camera: Camera, T_object_goal: np.ndarray,
               center_m: np.ndarray | None = None) -> np.ndarray:
    """``T_object_camera`` at the start of the episode (see :class:`StartConfig`); ``center_m``: the object's
    centre (object frame), which must stay in view (default: the origin)."""
    s = config.start
    if s.T_goal_start is not None:
        return T_object_goal @ as_rigid_pose(s.T_goal_start, "start.T_goal_start")
    rng = np.random.default_rng([config.seed, 7919])
    for _ in range(1000):
        d = rng.normal(size=3)
        a = rng.normal(size=3)
        T_goal_start = make_pose(so3_exp(a / np.linalg.norm(a) * np.deg2rad(s.offset_deg)),
                                 d / np.linalg.norm(d) * s.offset_mm * 1e-3)
        T = T_object_goal @ T_goal_start
        centre = np.zeros(3) if center_m is None else np.asarray(center_m, dtype=np.float64)
        centre_camera = transform_points(inverse(T), centre[None])[0]
        if centre_camera[2] > 0 and camera.in_image(camera.project(centre_camera), s.margin_px)[0]:
            return T
    raise ConfigError(f"no start pose {s.offset_mm} mm / {s.offset_deg} deg from the goal keeps the object in view")


def true_reprojection_px(target_render, camera: Camera, T_object_goal: np.ndarray, T_object_camera: np.ndarray,
                         stride_px: int = 4) -> float:
    """Ground-truth image-space error: mean pixel distance (px) between where the object's visible surface
    points (from the target depth, every ``stride_px``) lie in the goal image and in the current camera."""
    Z = target_render.depth_m[::stride_px, ::stride_px]
    vv, uu = np.mgrid[0:target_render.depth_m.shape[0]:stride_px, 0:target_render.depth_m.shape[1]:stride_px]
    valid = np.isfinite(Z) & (Z > 0)
    if not valid.any():
        return float("nan")
    uv_goal = np.column_stack([uu[valid], vv[valid]]).astype(np.float64)
    p_goal = camera.unproject(uv_goal, Z[valid])
    T_camera_goal = inverse(T_object_camera) @ T_object_goal
    p_cur = transform_points(T_camera_goal, p_goal)
    return float(np.mean(np.linalg.norm(camera.project(p_cur) - uv_goal, axis=1)))


class SimulatedCamera:
    """A frame source for stepped timing: ``render(T_world_camera, t_s)`` (a :class:`Frame`) at the pose the body
    reports, one frame every ``dt_s`` of simulated time (timestamps ``0, dt_s, 2 dt_s, ...``)."""

    def __init__(self, render: Callable[[np.ndarray, float], Frame], body: FreeFlyingCamera,
                 dt_s: float) -> None:
        self.render, self.body, self.dt_s = render, body, dt_s
        self._count = 0

    def grab(self) -> Frame:
        t = self._count * self.dt_s
        self._count += 1
        return self.render(self.body.T_world_camera, t)


def goal_probe(T_object_goal: np.ndarray, max_distance_from_goal_m: float, symmetry: Symmetry | None = None) -> Probe:
    """Ground truth of a simulated run: the camera's pose error to the goal in every cycle
    (``translation_error_mm``, ``rotation_error_deg``), and DIVERGED once it leaves the ball around the goal.
    With a ``symmetry`` of more than one element, also the error modulo symmetry (``translation_error_mm_sym``,
    ``rotation_error_deg_sym``, ``symmetric_equivalent``; docs/symmetry.md)."""

    def probe(T_object_camera: np.ndarray | None) -> ProbeReading:
        if T_object_camera is None:
            return ProbeReading()
        t_err, r_err = pose_error(T_object_goal, T_object_camera)
        extras = {"translation_error_mm": t_err * 1e3, "rotation_error_deg": float(np.rad2deg(r_err))}
        if symmetry is not None and symmetry.order > 1:
            t_sym, r_sym, k = pose_error_modulo(T_object_goal, T_object_camera, symmetry)
            extras.update(translation_error_mm_sym=t_sym * 1e3, rotation_error_deg_sym=float(np.rad2deg(r_sym)),
                          symmetric_equivalent=k)
        return ProbeReading(extras, EpisodeStatus.DIVERGED if t_err > max_distance_from_goal_m else None)

    return probe


def _servo(config: EpisodeConfig, target_render: TargetRender, servo_cache: dict | None):
    """The episode's servo, reusing one (its loaded networks) from ``servo_cache`` when it has one for the same
    config and can serve a new target."""
    if servo_cache is not None and config.servo in servo_cache:
        servo = servo_cache[config.servo]
        servo.retarget(target_render)
        return servo
    servo = build_servo(config.servo, target_render)
    if servo_cache is not None and hasattr(servo, "retarget"):
        servo_cache[config.servo] = servo
    return servo


#: rendered targets a ``target_cache`` keeps (the oldest leaves first when full); one with its shading basis
#: is ~70 MB at 640x480
TARGET_CACHE_SIZE = 3


def _target(mesh: Mesh, camera: Camera, T_object_goal: np.ndarray, config: EpisodeConfig,
            target_cache: dict | None) -> TargetRender:
    """The episode's target render (with the shading basis its servo relights with), reused from
    ``target_cache`` when one was rendered for the same mesh geometry and look, camera, goal pose and renderer:
    the render is deterministic, and the basis (51 supersampled renders) costs ~15 s a target here. A cached
    target's arrays are read-only, so a servo that wrote into them would fail rather than change the next
    episode's target."""
    directions, drawer = basis_directions(config.servo), basis_renderer(config.servo)
    second, turns = second_basis(config.servo), light_turns(config.servo)
    key = None
    if target_cache is not None:
        digest = hashlib.sha256()
        for a in (mesh.vertices_m, mesh.faces, mesh.vertex_normals, mesh.vertex_colors, mesh.uv, mesh.texture,
                  np.asarray(T_object_goal, dtype=np.float64)):
            digest.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
        digest.update(repr((mesh.base_rgb, camera, config.target_renderer, directions, drawer, second, turns)).encode())
        key = ("target", digest.hexdigest())
        if key in target_cache:
            return target_cache[key]
    render = render_target(mesh, camera, T_object_goal, renderer=config.target_renderer,
                           shading_basis_directions=directions, basis_renderer=drawer, second_basis=second,
                           light_turns=turns)
    if target_cache is not None:
        for a in (render.rgb, render.depth_m, render.mask, render.shading_basis, render.shading_coverage,
                  render.light_turned_rgb):
            if a is not None:
                a.setflags(write=False)
        while len(target_cache) >= TARGET_CACHE_SIZE:
            target_cache.pop(next(iter(target_cache)))
        target_cache[key] = render
    return render


def time_to_goal_s(timestamps_s: list[float], errors: list[tuple[float, float]], tolerance_mm: float,
                   tolerance_deg: float) -> float:
    """The first timestamp from which every later cycle is within both tolerances (``errors``: (mm, deg) per
    cycle); NaN when the last cycle is not."""
    t_goal = float("nan")
    for t, (mm, deg) in zip(reversed(timestamps_s), reversed(errors)):
        if mm > tolerance_mm or deg > tolerance_deg:
            break
        t_goal = t
    return t_goal


def occlusion_drift_mm(timestamps_s: list[float], errors: list[tuple[float, float]], occluder: Occluder) -> float:
    """The largest translation error (mm) of the cycles during the occluder's pass minus the error of the last
    cycle before it (NaN when nothing was occluded during the run): > 0 means the camera moved away."""
    during = [mm for t, (mm, _) in zip(timestamps_s, errors) if occluder.active(t)]
    before = [mm for t, (mm, _) in zip(timestamps_s, errors) if not occluder.active(t) and
              occluder.config.start_s is not None and t < occluder.config.start_s]
    if not during or not before:
        return float("nan")
    return float(max(during) - before[-1])


def _source_and_sink(config: EpisodeConfig, scene: Scene, occluder: Occluder, T_start: np.ndarray,
                     rig: ArmRig | None) -> tuple[FrameSource, MotionSink]:
    """The simulated camera and the body it rides on, for the episode's timing and robot."""

    relit = dataclasses.replace(scene, lighting=config.light_change.changed(scene.lighting))
    blur = MotionBlur(config.motion_blur)

    def render(T_world_camera: np.ndarray, t_s: float) -> Frame:
        exposure = blur.poses(T_world_camera, t_s)[1:]  # the frame's own pose first
        out = render_scene(relit if config.light_change.active(t_s) else scene, config.camera, T_world_camera,
                           extra_items=occluder.items(t_s), exposure_poses=exposure)
        depth = None
        if config.depth_sensor.enabled:  # an RGB-D camera: its depth, aligned to the colour image
            depth = sensed_depth(out.depth_m, config.depth_sensor, config.seed, int(round(t_s * 1e3)))
        return Frame(out.rgb, t_s, depth)

    if rig is not None:
        return ArmCamera(render, rig, config.dt_s), rig.sink
    if config.timing.mode is TimingMode.STEPPED:
        body = FreeFlyingCamera(T_start, dt_s=config.dt_s)
        return SimulatedCamera(render, body, config.dt_s), body
    realtime = RealtimeBody(T_start, SimClock(), config.timing.latency_s)
    return RealtimeCamera(render, realtime, config.timing.fps), realtime


def episode_mesh(config: EpisodeConfig) -> Mesh:
    """The episode's object: the user's mesh file or the built-in, scaled and reframed by ``mesh_scale`` and
    ``mesh_origin_m``."""
    mesh = load_mesh(config.mesh_path, unit=config.mesh_unit) if config.mesh_path else load_builtin(config.object_name)
    if config.mesh_scale == 1.0 and not any(config.mesh_origin_m):
        return mesh
    return reframed(mesh, config.mesh_scale, config.mesh_origin_m)


@dataclass(frozen=True)
class EpisodeSetup:
    """Everything an episode is made of before its servo runs (:func:`setup_episode`): the object's ``mesh`` and
    ``symmetry``, the goal ``T_object_goal`` the servo aims at (with a grasp on the arm: derived from
    ``T_object_tool_grasp`` with the hand-eye the servo believes), the object's ``center_m`` (object frame), the
    checked ``target_render``, the ``scene`` and the start ``T_object_start``."""

    mesh: Mesh
    symmetry: Symmetry
    T_object_goal: np.ndarray
    center_m: np.ndarray
    target_render: TargetRender
    scene: Scene
    T_object_start: np.ndarray
    T_object_tool_grasp: np.ndarray | None = None


def setup_episode(config: EpisodeConfig, target_cache: dict | None = None) -> EpisodeSetup:
    """The episode's object, goal, target render (checked: an empty or unframed target is an error naming the
    reason), scene and start pose, as :func:`run_episode` runs them; also what the scripts that study an
    episode's first frame or goal view start from (``benchmarks/``)."""
    camera = config.camera
    on_arm = config.robot.kind is RobotKind.UR5E
    mesh = episode_mesh(config)
    symmetry = symmetry_of(None if config.mesh_path else config.object_name, mesh, config.symmetry)
    if config.symmetry == "declared":  # declared in the part's own frame
        symmetry = symmetry.reframed(config.mesh_scale, config.mesh_origin_m)
    T_object_goal = config.goal.T_object_camera(mesh, camera)
    center_m = config.goal.spec().look_at_point_m(mesh)
    T_object_tool_grasp = None
    if on_arm and config.robot.grasp:  # the user's grasp; the servo's goal derived from it with the believed hand-eye
        standoff = config.robot.grasp_motion.standoff_m
        T_object_tool_grasp = grasp_from_camera_goal(T_object_goal, config.robot.T_tool_camera(), standoff)
        T_object_goal = camera_goal_from_grasp(T_object_tool_grasp, believed_hand_eye(config.robot, config.seed),
                                               standoff)
    table_z = float(mesh.bounds_m[0, 2])  # the object stands on the table (render.scene.build_scene)
    if config.scene.background != "none" and float(T_object_goal[2, 3]) <= table_z + 1e-3:
        raise ConfigError(f"the goal camera is at z={T_object_goal[2, 3]:.3f} m, at or under the table the object "
                          f"stands on (z={table_z:.3f} m): the live camera would see the table's underside; give the "
                          "goal an elevation above 0 deg (or scene.background=none)")
    # the target is rendered with the calibration the servo believes; frames come from the true camera
    servo_camera = believed_camera(camera, config.robot.intrinsics_error_pct, config.seed) if on_arm else camera
    target_render = _target(mesh, servo_camera, T_object_goal, config, target_cache)
    check = getattr(config.servo, "target_check", None) or getattr(
        getattr(config.servo, "detection", None), "target_check", None) or TargetCheckConfig()
    check_target_render(target_render, mesh, check)
    return EpisodeSetup(mesh=mesh, symmetry=symmetry, T_object_goal=T_object_goal, center_m=center_m,
                        target_render=target_render, scene=build_scene(mesh, config.scene, seed=config.seed),
                        T_object_start=start_pose(config, camera, T_object_goal, center_m),
                        T_object_tool_grasp=T_object_tool_grasp)


def run_episode(config: EpisodeConfig, out_dir: Path | str | None = None,
                progress: Callable[[Cycle], None] | None = None, servo_cache: dict | None = None,
                live_view: str | None = None, target_cache: dict | None = None) -> EpisodeResult:
    """Run one episode; with ``out_dir``, write summary.json, trajectory.jsonl (appended as cycles finish),
    config.json, profile.png and servo.gif there. ``servo_cache`` (a dict kept by the caller) reuses loaded
    networks between episodes with the same servo config, ``target_cache`` (another) the rendered targets of
    episodes with the same goal (:data:`TARGET_CACHE_SIZE`). ``live_view``: also log every cycle to rerun (a
    ``.rrd`` path, or ``spawn``), see :mod:`dfbvs.liveview`."""
    camera = config.camera
    on_arm = config.robot.kind is RobotKind.UR5E
    if on_arm and config.timing.mode is not TimingMode.STEPPED:
        raise ConfigError(f"robot.kind=ur5e runs with timing.mode=stepped, got timing.mode={config.timing.mode.value}")
    setup = setup_episode(config, target_cache)
    mesh, symmetry, T_object_goal, target_render = setup.mesh, setup.symmetry, setup.T_object_goal, setup.target_render
    T_object_tool_grasp, scene, T_start = setup.T_object_tool_grasp, setup.scene, setup.T_object_start
    servo = _servo(config, target_render, servo_cache)
    if hasattr(servo, "declare_symmetry"):  # a pose-based phase aims at the nearest equivalent goal
        servo.declare_symmetry(symmetry)
    occluder = Occluder(config.occlusion, T_object_goal, float(np.max(mesh.extent_m)))
    rig = build_arm_rig(config.robot, T_object_goal, T_start, config.dt_s, config.seed) if on_arm else None
    source, sink = _source_and_sink(config, scene, occluder, T_start, rig)
    t0_err, r0_err = pose_error(T_object_goal, T_start)
    # pixel figures at the DFBVS working resolution (the paper's 320x240 for a whole-image method)
    work = config.servo if isinstance(config.servo, ServoConfig) else ServoConfig()
    work_camera = camera.rescaled(work.working_width_px, work.working_height_px)
    recorder = None if out_dir is None else RunRecorder(out_dir, describe(config), target_render.rgb, camera,
                                                        work_camera, video_stride=config.video_stride)
    times: list[float] = []
    errors: list[tuple[float, float]] = []

    def observe(cycle: Cycle) -> None:
        times.append(cycle.frame.timestamp_s)
        errors.append((cycle.extras["translation_error_mm"], cycle.extras["rotation_error_deg"]))
        if progress is not None:
            progress(cycle)

    truth = goal_probe(T_object_goal, config.max_distance_from_goal_m, symmetry)
    probe = truth if rig is None else combine_probes(lambda _believed: truth(rig.T_world_camera_true()),
                                                     rig.sink.probe)
    try:
        live = None if live_view is None else RerunRecorder(live_view, target_render.rgb, camera, work_camera)
        loop_recorder = recorder if live is None else RecorderGroup(recorder, live)
        monitor = StopMonitor(config.stop, goal_distance_m=float(np.nanmedian(target_render.depth_m)))
        outcome = run_servo_loop(source, servo, sink, monitor, loop_recorder, probe, observe)
    finally:
        if hasattr(servo, "close"):
            servo.close()
    T_final = T_start
    if rig is not None:
        T_final = rig.T_world_camera_true()
    elif outcome.last:
        if outcome.last.T_world_camera is None:  # the simulated body always reports its pose
            raise RuntimeError("the simulated camera reported no pose")
        T_final = outcome.last.T_world_camera
    robot_stats: dict = {}
    grasp_success: bool | None = None
    grasp_err: dict = {}
    if rig is not None:
        robot_stats = {"commands_sent": rig.sink.commands_sent, "commands_scaled": rig.sink.commands_scaled,
                       "fault": rig.sink.fault, "joint_speed_scaled_cycles": rig.fake.arm.speed_scaled_cycles}
        if T_object_tool_grasp is not None:
            grasp_success, grasp_err = _grasp(rig, config, outcome, T_object_goal, T_object_tool_grasp)
    t_err, r_err = pose_error(T_object_goal, T_final)
    last_step = outcome.last.step if outcome.last else None
    result = EpisodeResult(
        status=outcome.status, iterations=outcome.iterations, final_translation_error_mm=t_err * 1e3,
        final_rotation_error_deg=float(np.rad2deg(r_err)),
        final_mean_px_error=float(last_step.mean_error_px) if last_step is not None else float("nan"),
        initial_translation_mm=t0_err * 1e3, initial_rotation_deg=float(np.rad2deg(r0_err)),
        median_cycle_ms=outcome.median_cycle_ms, median_stage_ms=outcome.median_stage_ms,
        final_n_inliers=last_step.n_inliers if last_step is not None else 0,
        final_true_reprojection_px=true_reprojection_px(target_render, camera, T_object_goal, T_final)
        * work_camera.width_px / camera.width_px,
        out_dir=str(recorder.out) if recorder is not None else None, p95_cycle_ms=outcome.p95_cycle_ms,
        time_to_goal_s=time_to_goal_s(times, errors, config.goal_tolerance_mm, config.goal_tolerance_deg),
        servo_stats=servo.summary() if hasattr(servo, "summary") else {}, robot_stats=robot_stats,
        grasp_success=grasp_success, grasp_error=grasp_err, converged_by=monitor.converged_by,
        unpinned_cycles=monitor.unpinned_cycles, unpinned_reason=monitor.unpinned_reason,
        pending_cycles=monitor.pending_cycles, pending_reason=monitor.pending_reason,
        occlusion_drift_mm=occlusion_drift_mm(times, errors, occluder),
        final_step_status=last_step.status.value if last_step is not None else "",
        final_reason=last_step.reason if last_step is not None else "",
        **symmetric_error_fields(symmetry, T_object_goal, T_final, outcome.status is EpisodeStatus.CONVERGED,
                                 config.lock_tolerance_mm, config.lock_tolerance_deg))
    if recorder is not None:
        name = config.object_name if not config.mesh_path else Path(config.mesh_path).name
        recorder.finish(result.summary(), title=f"{name}: {outcome.status.value} after {outcome.iterations} iterations")
    return result


def _grasp(rig: ArmRig, config: EpisodeConfig, outcome, T_object_goal: np.ndarray,
           T_object_tool_grasp: np.ndarray) -> tuple[bool, dict]:
    """After a converged run: approach, close, lift on the simulated arm; scored against the true grasp."""
    if outcome.status is not EpisodeStatus.CONVERGED:
        return False, {"reason": f"no grasp: the servo ended {outcome.status.value}"}
    last = outcome.last.step if outcome.last is not None else None
    motion = config.robot.grasp_motion
    try:
        done = execute_grasp(rig.arm, rig.T_tool_camera_believed, T_object_goal, T_object_tool_grasp, motion,
                             last.T_current_target if last is not None else None, config.robot.safety)
    except RobotError as exc:  # refused before moving (the motion's checks)
        return False, {"reason": str(exc)}
    err = grasp_error(T_object_tool_grasp, rig.T_world_base @ done.T_base_tool_reached, motion)
    gripper = rig.fake.digital_out.get(motion.gripper_output, False)
    return bool(err.success and gripper), {"lateral_mm": err.lateral_mm, "axial_mm": err.axial_mm,
                                           "rotation_deg": err.rotation_deg, "gripper_closed": gripper}
