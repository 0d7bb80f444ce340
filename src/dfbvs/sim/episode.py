"""A simulated DFBVS episode: an object, a goal pose on it, a start pose, a cluttered scene with a
sim-to-real gap, and the servo loop driving a free-flying camera. Ground truth is known, so the episode
reports the final camera pose error as well as the paper's image-space metric.

The world frame of the simulation is the object frame: ``T_object_camera`` is the camera pose.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..camera import Camera
from ..geometry import inverse, look_at_spherical, make_pose, pose_error, so3_exp
from ..render import load_builtin, load_mesh
from ..render.scene import SceneConfig, build_scene, render_scene
from ..render.target import render_target
from ..servo import (DFBVSServo, EpisodeStatus, PhotometricConfig, PhotometricServo, ServoConfig, ServoStep,
                     StopConfig, StopMonitor)
from .artifacts import GifWriter, JsonlWriter, draw_servo_frame, plot_profile
from .free_camera import FreeFlyingCamera


@dataclass(frozen=True)
class GoalConfig:
    """Goal camera pose in the object frame, as look-at parameters around the object's origin."""

    distance_m: float = 0.22
    azimuth_deg: float = 30.0
    elevation_deg: float = 60.0
    roll_deg: float = 0.0

    def T_object_camera(self) -> np.ndarray:
        return look_at_spherical(self.distance_m, self.azimuth_deg, self.elevation_deg, self.roll_deg)


@dataclass(frozen=True)
class StartConfig:
    """Start pose relative to the goal: a translation of ``offset_mm`` in a random direction and a rotation
    of ``offset_deg`` about a random axis (both drawn with ``seed``), resampled until the object's centre
    stays inside the image with ``margin_px`` to spare. ``T_goal_start`` overrides all of that."""

    offset_mm: float = 50.0
    offset_deg: float = 8.0
    margin_px: float = 50.0
    T_goal_start: tuple[tuple[float, ...], ...] | None = None


@dataclass(frozen=True)
class EpisodeConfig:
    """Everything that defines a simulated episode (the run stores it as config.json)."""

    controller: str = "dfbvs"  # or "photometric" (the whole-image baseline)
    object_name: str = "bracket"
    mesh_path: str | None = None
    mesh_unit: str = "m"
    goal: GoalConfig = field(default_factory=GoalConfig)
    start: StartConfig = field(default_factory=StartConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    servo: ServoConfig = field(default_factory=ServoConfig)
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    # The simulated sensor: the working camera's lens at 640x480. Features are found at the working
    # resolution (320x240) and refined on this image (docs/servo.md: 4x smaller final rotation error).
    camera: dict = field(default_factory=lambda: Camera.default().rescaled(640, 480).to_dict())
    dt_s: float = 0.1
    max_distance_from_goal_m: float = 0.25  # leaving this ball around the goal counts as diverged
    seed: int = 0
    video_stride: int = 2


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

    @property
    def converged(self) -> bool:
        return self.status is EpisodeStatus.CONVERGED

    def summary(self) -> dict:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        d["converged"] = self.converged
        return d


def to_jsonable(obj):
    """Dataclasses, enums, numpy values and paths to plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def start_pose(config: EpisodeConfig, camera: Camera, T_object_goal: np.ndarray) -> np.ndarray:
    """``T_object_camera`` at the start of the episode (see :class:`StartConfig`)."""
    s = config.start
    if s.T_goal_start is not None:
        T = np.asarray(s.T_goal_start, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"start.T_goal_start must be 4x4, got shape {T.shape}")
        return T_object_goal @ T
    rng = np.random.default_rng([config.seed, 7919])
    for _ in range(1000):
        d = rng.normal(size=3)
        a = rng.normal(size=3)
        T_goal_start = make_pose(so3_exp(a / np.linalg.norm(a) * np.deg2rad(s.offset_deg)),
                                 d / np.linalg.norm(d) * s.offset_mm * 1e-3)
        T = T_object_goal @ T_goal_start
        centre_camera = (inverse(T) @ np.array([0.0, 0.0, 0.0, 1.0]))[:3]
        if centre_camera[2] > 0 and camera.in_image(camera.project(centre_camera), s.margin_px)[0]:
            return T
    raise ValueError(f"no start pose {s.offset_mm} mm / {s.offset_deg} deg from the goal keeps the object in view")


ProgressFn = Callable[[int, ServoStep, float, float], None]


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
    p_cur = p_goal @ T_camera_goal[:3, :3].T + T_camera_goal[:3, 3]
    return float(np.mean(np.linalg.norm(camera.project(p_cur) - uv_goal, axis=1)))


def run_episode(config: EpisodeConfig, out_dir: Path | str | None = None, progress: ProgressFn | None = None,
                servo_cache: dict | None = None) -> EpisodeResult:
    """Run one episode; with ``out_dir``, write summary.json, trajectory.jsonl (appended as cycles finish),
    config.json, profile.png and servo.gif there. ``servo_cache`` (a dict kept by the caller) reuses loaded
    networks between episodes with the same servo config."""
    camera = Camera.from_dict(config.camera)
    mesh = load_mesh(config.mesh_path, unit=config.mesh_unit) if config.mesh_path else load_builtin(config.object_name)
    T_object_goal = config.goal.T_object_camera()
    target_render = render_target(mesh, camera, T_object_goal)
    if config.controller == "photometric":
        servo = PhotometricServo(target_render, config.photometric)
    elif config.controller != "dfbvs":
        raise ValueError(f"unknown controller {config.controller!r}: use dfbvs or photometric")
    elif servo_cache is not None and config.servo in servo_cache:
        servo = servo_cache[config.servo]
        servo.retarget(target_render)
    else:
        servo = DFBVSServo.from_render(target_render, config.servo)
        if servo_cache is not None:
            servo_cache[config.servo] = servo
    scene = build_scene(mesh, config.scene, seed=config.seed)
    body = FreeFlyingCamera(start_pose(config, camera, T_object_goal), dt_s=config.dt_s)
    t0_err, r0_err = pose_error(T_object_goal, body.T_world_camera)
    monitor = StopMonitor(config.stop)

    work_camera = camera.rescaled(config.servo.working_width_px, config.servo.working_height_px)  # px figures
    out = Path(out_dir) if out_dir is not None else None
    traj = gif = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_jsonable(config), indent=2) + "\n")
        (out / "trajectory.jsonl").unlink(missing_ok=True)
        traj = JsonlWriter(out / "trajectory.jsonl")
        gif = GifWriter(out / "servo.gif", stride=config.video_stride)
        target_rgb = target_render.rgb

    status = EpisodeStatus.RUNNING
    cycle_ms, stage_ms = [], {}
    last_step: ServoStep | None = None
    t_err, r_err = t0_err, r0_err
    try:
        while status is EpisodeStatus.RUNNING:
            frame = render_scene(scene, camera, body.T_world_camera)
            step = servo.step(frame.rgb)
            last_step = step
            t_err, r_err = pose_error(T_object_goal, body.T_world_camera)
            status = monitor.update(step)
            if status is EpisodeStatus.RUNNING and t_err > config.max_distance_from_goal_m:
                status = EpisodeStatus.DIVERGED
            cycle_ms.append(step.timings_ms["total_ms"])
            for k, v in step.timings_ms.items():
                stage_ms.setdefault(k, []).append(v)
            if traj is not None:
                traj.write({
                    "iteration": monitor.iterations, "status": step.status.value, "episode_status": status.value,
                    "v_camera": step.v_camera.tolist(),
                    "mean_error_px": None if not np.isfinite(step.mean_error_px) else step.mean_error_px,
                    "n_matches": len(step.all_matches), "n_inliers": step.n_inliers, "tracking": step.tracking,
                    "translation_error_mm": t_err * 1e3, "rotation_error_deg": float(np.rad2deg(r_err)),
                    "T_object_camera": body.T_world_camera.tolist(), "timings_ms": step.timings_ms,
                })
                caption = (f"it {monitor.iterations}  {step.mean_error_px:.2f}px  "
                           f"{t_err * 1e3:.1f}mm{'  TRACK' if step.tracking else ''}")
                gif.add(lambda: draw_servo_frame(  # correspondences are in working pixels, the frames are not
                            frame.rgb, target_rgb, camera.pixels_from(work_camera, step.correspondences.uv_current_px),
                            camera.pixels_from(work_camera, step.correspondences.uv_target_px), caption),
                        force=status is not EpisodeStatus.RUNNING)
            if progress is not None:
                progress(monitor.iterations, step, t_err, r_err)
            if status is EpisodeStatus.RUNNING:
                body.step(step.v_camera)
    finally:
        if traj is not None:
            traj.close()

    final_px = last_step.mean_error_px if last_step is not None else float("nan")
    result = EpisodeResult(
        status=status, iterations=monitor.iterations, final_translation_error_mm=t_err * 1e3,
        final_rotation_error_deg=float(np.rad2deg(r_err)), final_mean_px_error=float(final_px),
        initial_translation_mm=t0_err * 1e3, initial_rotation_deg=float(np.rad2deg(r0_err)),
        median_cycle_ms=float(np.median(cycle_ms)) if cycle_ms else float("nan"),
        median_stage_ms={k: float(np.median(v)) for k, v in stage_ms.items()},
        final_n_inliers=last_step.n_inliers if last_step is not None else 0,
        final_true_reprojection_px=true_reprojection_px(target_render, camera, T_object_goal, body.T_world_camera)
        * work_camera.width_px / camera.width_px,
        out_dir=str(out) if out is not None else None)
    if out is not None:
        (out / "summary.json").write_text(json.dumps(to_jsonable(result.summary()), indent=2) + "\n")
        from .artifacts import read_jsonl

        plot_profile(read_jsonl(out / "trajectory.jsonl"), out / "profile.png",
                     title=f"{config.object_name if not config.mesh_path else Path(config.mesh_path).name}: "
                           f"{status.value} after {monitor.iterations} iterations")
        gif.close()
    return result
