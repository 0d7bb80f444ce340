"""Files a servo run leaves behind, for every run (simulation, replay, hardware): ``config.json``,
``trajectory.jsonl`` (append-only), ``summary.json``, ``profile.png`` and ``servo.gif``.

``trajectory.jsonl`` is written one line per cycle and flushed, so a crash or Ctrl-C keeps every finished
cycle. The plot mirrors the paper's Fig. 6 (twist components; mean correspondence error and correspondence
count), the video its Fig. 7 (current image beside the target, inlier feature errors drawn as lines).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from .signals import handling_stop_signals

if TYPE_CHECKING:
    from .camera import Camera
    from .runtime import Cycle

TWIST_LABELS = ("vx", "vy", "vz", "wx", "wy", "wz")


class JsonlWriter:
    """Append-only JSON-lines file; each record is flushed to disk as soon as it is written."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a truncated last line (a run killed mid-write) is ignored."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_profile(records: list[dict], path: Path, title: str = "") -> Path:
    """Twist components over iterations, and mean correspondence error + correspondence count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = np.array([r["iteration"] for r in records])
    v = np.array([r["v_camera"] for r in records]).reshape(-1, 6)
    err = np.array([np.nan if r["mean_error_px"] is None else r["mean_error_px"] for r in records], dtype=float)
    count = np.array([r["n_inliers"] for r in records])
    tracking = np.array([bool(r["tracking_mode"]) for r in records])

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k in range(6):
        ax1.plot(it, v[:, k], label=TWIST_LABELS[k], lw=1.2, ls="-" if k < 3 else "--")
    ax1.set_xlabel("iterations")
    ax1.set_ylabel("camera twist [m/s or rad/s]")
    ax1.legend(ncol=2, fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.plot(it, err, color="tab:red", label="mean correspondence error")
    ax2.set_yscale("log")
    ax2.set_xlabel("iterations")
    ax2.set_ylabel("avg correspondence error [px]", color="tab:red")
    if tracking.any():
        ax2.fill_between(it, 0, 1, where=tracking, transform=ax2.get_xaxis_transform(), color="tab:green",
                         alpha=0.1, label="tracking mode")
    ax2.grid(alpha=0.3)
    ax3 = ax2.twinx()
    ax3.plot(it, count, color="tab:blue", lw=1.0, label="correspondence count")
    ax3.set_ylabel("correspondence count", color="tab:blue")
    ax3.set_ylim(bottom=0)
    h1, l1 = ax2.get_legend_handles_labels()
    h3, l3 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h3, l1 + l3, fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def draw_servo_frame(current_rgb: np.ndarray, target_rgb: np.ndarray, uv_current_px: np.ndarray,
                     uv_target_px: np.ndarray, text: str = "") -> np.ndarray:
    """Current image (left) beside the target (right); on the current image each inlier's feature error is
    a line from its current position (green dot) to its target position (red end), as the paper's Fig. 7."""
    import cv2

    h, w = target_rgb.shape[:2]
    cur = np.ascontiguousarray(current_rgb[..., :3]).copy()
    tgt = np.ascontiguousarray(target_rgb[..., :3]).copy()
    for (uc, vc), (ut, vt) in zip(np.asarray(uv_current_px), np.asarray(uv_target_px)):
        cv2.line(cur, (int(round(uc)), int(round(vc))), (int(round(ut)), int(round(vt))), (255, 60, 60), 1,
                 cv2.LINE_AA)
        cv2.circle(cur, (int(round(uc)), int(round(vc))), 2, (40, 220, 40), -1, cv2.LINE_AA)
        cv2.circle(tgt, (int(round(ut)), int(round(vt))), 2, (40, 220, 40), -1, cv2.LINE_AA)
    frame = np.concatenate([cur, np.full((h, 4, 3), 255, np.uint8), tgt], axis=1)
    if text:
        cv2.putText(frame, text, (5, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
    return frame


class GifWriter:
    """Collects every ``stride``-th frame and writes an animated GIF (Pillow; no external encoder)."""

    def __init__(self, path: Path, stride: int = 1, fps: float = 10.0):
        self.path = Path(path)
        self.stride = max(1, int(stride))
        self.fps = fps
        self.frames: list[np.ndarray] = []
        self._count = 0

    def add(self, make_frame, force: bool = False) -> None:
        """Count one cycle; call ``make_frame()`` (-> HxWx3 uint8) only for the frames that are kept."""
        if force or self._count % self.stride == 0:
            self.frames.append(make_frame())
        self._count += 1

    def close(self) -> Path | None:
        if not self.frames:
            return None
        from PIL import Image

        images = [Image.fromarray(f) for f in self.frames]
        images[0].save(self.path, save_all=True, append_images=images[1:], duration=int(1000 / self.fps), loop=0,
                       optimize=False)
        return self.path


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, enums, numpy values and paths to plain JSON types. A backend config (a dataclass whose
    type a registry knows) is written as it is; :func:`dfbvs.config.describe` adds backend names."""
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
    if isinstance(obj, float) and not np.isfinite(obj):
        return None  # JSON has no NaN
    return obj


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(to_jsonable(data), indent=2) + "\n")


#: recorded depth images are 16-bit PNGs in units of this (m): 0.1 mm, up to 6.5 m
RECORDED_DEPTH_UNIT_M = 0.0001
#: what a run writes into its folder besides config.json and frames/: removed when a new run starts there
STALE_OUTPUTS = ("trajectory.jsonl", "summary.json", "profile.png", "servo.gif", "replay.jsonl")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back while a few writes that belong together run, then delivered to the handlers
    in place before (the arm's stop, KeyboardInterrupt). Deferred in Python, not masked: in a process with other
    threads (the watchdog, torch, the detector) the kernel hands a signal masked on the main thread to another
    thread, and Python still runs its handler in the main thread at once. Only in the main thread (elsewhere
    Python does not deliver signals anyway)."""
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    try:
        with handling_stop_signals(hold):
            yield
    finally:
        for signum in caught:  # now, to whoever handled it before (the handlers are back in place)
            signal.raise_signal(signum)


class RunRecorder:
    """Records one run in ``out_dir``: ``config.json`` at the start, one ``trajectory.jsonl`` line per cycle
    as it happens (with a GIF frame every ``video_stride`` cycles), and at the end ``summary.json``,
    ``profile.png`` and ``servo.gif``.

    ``target_rgb`` is drawn beside each frame; correspondences are in the servo's working pixels
    (``work_camera``) and drawn on frames of ``frame_camera``'s size.

    ``save_frames``: every frame also goes to ``frames/NNNNNN.png`` (lossless) with its timestamp appended to
    ``frames/timestamps.txt``, so ``dfbvs replay`` can run the servo on them again. ``annotate()`` returns
    more fields for each cycle's line (a robot sink's last command, say).
    """

    def __init__(self, out_dir: Path | str, config: Any, target_rgb: np.ndarray, frame_camera: Camera,
                 work_camera: Camera, video_stride: int = 2, save_frames: bool = False,
                 annotate: Callable[[], dict] | None = None) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", config)
        # a run recorded into a folder that held another: none of the earlier run's results may pass for this one's
        for stale in STALE_OUTPUTS:
            (self.out / stale).unlink(missing_ok=True)
        self._trajectory = JsonlWriter(self.out / "trajectory.jsonl")
        self._annotate = annotate
        self._frames_dir: Path | None = None
        self._timestamps = None
        if save_frames:
            self._frames_dir = self.out / "frames"
            self._frames_dir.mkdir(exist_ok=True)
            for old in self._frames_dir.glob("*.png"):
                old.unlink()
            import shutil

            from .cameras import DEPTH_FOLDER  # an earlier run's depth would be read as this run's (or be missing)

            shutil.rmtree(self._frames_dir / DEPTH_FOLDER, ignore_errors=True)
            self._timestamps = open(self._frames_dir / "timestamps.txt", "w", encoding="utf-8")
        self._gif = GifWriter(self.out / "servo.gif", stride=video_stride)
        self._target_rgb = target_rgb
        self._frame_camera, self._work_camera = frame_camera, work_camera

    def record(self, cycle: Cycle) -> None:
        """Append one cycle (and maybe a video frame); the last cycle of a run always gets a frame."""
        step = cycle.step
        self._trajectory.write(to_jsonable({
            "iteration": cycle.iteration, "timestamp_s": cycle.frame.timestamp_s, "status": step.status,
            "reason": step.reason,
            "episode_status": cycle.status, "source": step.source, "v_camera": step.v_camera,
            "mean_error_px": step.mean_error_px, "n_matches": len(step.all_matches), "n_inliers": step.n_inliers,
            "tracking_mode": step.tracking_mode, "gain": step.gain, "condition_number": step.condition_number,
            "zoom": step.zoom,
            **cycle.extras, "T_world_camera": cycle.T_world_camera, "T_current_target": step.T_current_target,
            "timings_ms": step.timings_ms, **(self._annotate() if self._annotate is not None else {}),
        }))
        if self._frames_dir is not None and self._timestamps is not None:
            from PIL import Image

            name = f"{cycle.iteration:06d}.png"
            part = self._frames_dir / f".{name}.part"  # not a frame until renamed, with its timestamp
            Image.fromarray(cycle.frame.rgb).save(part, format="PNG", compress_level=1)
            depth_part = None if cycle.frame.depth_m is None else self._write_depth(cycle.frame.depth_m, name)
            with signals_deferred():  # a SIGINT/SIGTERM lands before or after both, never between
                if depth_part is not None:  # (the depth first: a frame is there only once its depth is)
                    os.replace(depth_part, depth_part.parent / name)
                os.replace(part, self._frames_dir / name)
                self._timestamps.write(f"{cycle.frame.timestamp_s!r}\n")
                self._timestamps.flush()
        mm = cycle.extras.get("translation_error_mm")
        caption = (f"it {cycle.iteration}  {step.mean_error_px:.2f}px"
                   + (f"  {mm:.1f}mm" if mm is not None else "") + ("  TRACK" if step.tracking_mode else ""))
        fc, wc = self._frame_camera, self._work_camera
        self._gif.add(lambda: draw_servo_frame(
            cycle.frame.rgb, self._target_rgb, fc.pixels_from(wc, step.correspondences.uv_current_px),
            fc.pixels_from(wc, step.correspondences.uv_target_px), caption), force=cycle.finished)

    def _write_depth(self, depth_m: np.ndarray, name: str) -> Path:
        """A frame's depth as ``frames/depth/.NAME.part`` (16-bit PNG in units of :data:`RECORDED_DEPTH_UNIT_M`, 0
        where none, what :class:`~dfbvs.cameras.ImageFolderCamera` reads back); the caller renames it to NAME."""
        from PIL import Image

        from .cameras import DEPTH_FOLDER, DEPTH_SCALE_FILE

        assert self._frames_dir is not None
        folder = self._frames_dir / DEPTH_FOLDER
        if not folder.is_dir():
            folder.mkdir()
            (folder / DEPTH_SCALE_FILE).write_text(f"{RECORDED_DEPTH_UNIT_M!r}\n", encoding="utf-8")
        d = np.asarray(depth_m, dtype=np.float64)
        units = np.rint(np.where(np.isfinite(d) & (d > 0), d, 0.0) / RECORDED_DEPTH_UNIT_M)
        units[units > 65535] = 0  # beyond 6.55 m: recorded as no depth, not as 6.55 m
        part = folder / f".{name}.part"
        Image.fromarray(units.astype(np.uint16)).save(part, format="PNG", compress_level=1)
        return part

    def close(self) -> None:
        """Close the trajectory (safe to call twice); everything recorded so far is on disk."""
        self._trajectory.close()
        if self._timestamps is not None:
            self._timestamps.close()

    def finish(self, summary: dict, title: str = "") -> None:
        """Write summary.json, profile.png and servo.gif."""
        self.close()
        write_json(self.out / "summary.json", summary)
        plot_profile(read_jsonl(self.out / "trajectory.jsonl"), self.out / "profile.png", title=title)
        self._gif.close()


class RecorderGroup:
    """Several recorders as one (the run's files and a live view): each gets every cycle; all are closed."""

    def __init__(self, *recorders: Any) -> None:
        self.recorders = [r for r in recorders if r is not None]

    def record(self, cycle: Cycle) -> None:
        for r in self.recorders:
            r.record(cycle)

    def close(self) -> None:
        for r in self.recorders:
            r.close()
