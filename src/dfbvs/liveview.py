"""A live view of a run in rerun (the ``rerun-sdk`` package), optional and off by default: the camera image
with the inlier correspondences drawn, the target image, the mean error, the inlier count and the twist as
curves, and the camera's trajectory in 3D (world frame: the object in simulation, the robot base on an arm).
Written to an ``.rrd`` file (open it with ``rerun FILE.rrd``) or streamed to a running viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .camera import Camera
    from .runtime import Cycle

TWIST_NAMES = ("vx_m_s", "vy_m_s", "vz_m_s", "wx_rad_s", "wy_rad_s", "wz_rad_s")


class RerunRecorder:
    """A run recorder (``record(cycle)``, ``close()``) that logs to rerun. ``target`` is ``.rrd`` path to write,
    or ``"spawn"`` / ``"connect"`` for a viewer. Correspondences are in ``work_camera`` pixels, drawn on frames
    of ``frame_camera``'s size."""

    def __init__(self, target: str | Path, target_rgb: np.ndarray, frame_camera: Camera, work_camera: Camera,
                 application: str = "dfbvs") -> None:
        try:
            import rerun as rr
        except ImportError as exc:
            raise ConfigError("the live view needs the rerun-sdk package: pip install rerun-sdk") from exc
        self.rr = rr
        self.stream: Any = rr.RecordingStream(application)
        if str(target) == "spawn":
            self.stream.spawn()
        elif str(target) == "connect":
            self.stream.connect_grpc()
        else:
            path = Path(target)
            if path.suffix != ".rrd":
                raise ConfigError(f"live view target {str(target)!r}: a .rrd file, 'spawn' or 'connect'")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.stream.save(path)
        self.frame_camera, self.work_camera = frame_camera, work_camera
        self.positions: list[list[float]] = []
        self.stream.log("target", rr.Image(np.asarray(target_rgb)), static=True)
        c = frame_camera
        self.stream.log("world/camera/image", rr.Pinhole(focal_length=[c.fx, c.fy], principal_point=[c.cx, c.cy],
                                                         resolution=[c.width_px, c.height_px]), static=True)

    def record(self, cycle: Cycle) -> None:
        rr, s = self.rr, self.stream
        step = cycle.step
        s.set_time("iteration", sequence=int(cycle.iteration))
        if np.isfinite(cycle.frame.timestamp_s):
            s.set_time("frame_time", duration=float(cycle.frame.timestamp_s))
        s.log("world/camera/image", rr.Image(cycle.frame.rgb))
        fc, wc = self.frame_camera, self.work_camera
        uv_cur = fc.pixels_from(wc, step.correspondences.uv_current_px)
        uv_tgt = fc.pixels_from(wc, step.correspondences.uv_target_px)
        if len(uv_cur):
            s.log("world/camera/image/errors", rr.LineStrips2D(np.stack([uv_cur, uv_tgt], axis=1),
                                                               colors=[255, 200, 0]))
            s.log("world/camera/image/inliers", rr.Points2D(uv_cur, colors=[0, 255, 0], radii=1.5))
        else:
            s.log("world/camera/image/errors", rr.Clear(recursive=False))
            s.log("world/camera/image/inliers", rr.Clear(recursive=False))
        s.log("curves/mean_error_px", rr.Scalars(float(step.mean_error_px) if np.isfinite(step.mean_error_px)
                                                 else np.nan))
        s.log("curves/inliers", rr.Scalars(float(step.n_inliers)))
        for name, value in zip(TWIST_NAMES, np.asarray(step.v_camera, dtype=float)):
            s.log(f"curves/twist/{name}", rr.Scalars(float(value)))
        for name, value in cycle.extras.items():
            s.log(f"curves/{name}", rr.Scalars(float(value)))
        s.log("status", rr.TextLog(f"{cycle.iteration}: {step.status.value} ({cycle.status.value})"))
        if cycle.T_world_camera is not None:
            T = np.asarray(cycle.T_world_camera, dtype=float)
            s.log("world/camera", rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]))
            self.positions.append(T[:3, 3].tolist())
            s.log("world/trajectory", rr.LineStrips3D([self.positions], colors=[80, 160, 255]))

    def close(self) -> None:
        self.stream.flush()
        self.stream.disconnect()
