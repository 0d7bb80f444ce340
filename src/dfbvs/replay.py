"""Replay a recorded run: the servo runs again on the recorded frames, against the recorded target, and every
cycle's decision (step status, camera twist) is compared with what the recorded run did. For offline
debugging of a real session: change a setting (``overrides``) and see where the decisions part.

A recording (``dfbvs servo --record DIR``) holds ``session.json`` (preset and overrides), ``target/``,
``frames/`` (PNG, timestamps.txt) and ``trajectory.jsonl``. Nothing moves: the replay's motion sink only
counts commands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ConfigError
from .recorder import JsonlWriter, read_jsonl, to_jsonable
from .render.target import TargetRender


@dataclass(frozen=True)
class ReplayReport:
    """``cycles`` compared; ``status_differs``: cycles whose step status differs; ``twist_differs``: cycles
    whose twist differs by more than ``tolerance`` (m/s, rad/s, largest component); ``first_difference``:
    the first such cycle, both sides."""

    cycles: int
    recorded_cycles: int
    status_differs: int
    twist_differs: int
    max_twist_difference: float
    tolerance: float
    first_difference: Optional[dict]

    @property
    def identical(self) -> bool:
        return self.status_differs == 0 and self.twist_differs == 0 and self.cycles == self.recorded_cycles


class _CountingSink:
    def __init__(self) -> None:
        self.commands = 0

    def apply(self, v_camera: np.ndarray) -> None:
        self.commands += 1

    def pose(self) -> None:
        return None

    def stop(self) -> None:
        pass


def replay_run(run_dir: Path | str, overrides: tuple[str, ...] | list[str] = (), tolerance: float = 1e-6,
               out_jsonl: Optional[Path] = None) -> ReplayReport:
    """Re-run the recorded session's servo (its preset and overrides, then ``overrides``) on its frames."""
    from .cameras import ImageFolderCamera
    from .robot.session import session_config
    from .runtime import run_servo_loop
    from .servo import build_servo
    from .stop import StopConfig, StopMonitor

    d = Path(run_dir)
    for need in ("session.json", "target/meta.json", "frames/timestamps.txt", "trajectory.jsonl"):
        if not (d / need).exists():
            raise ConfigError(f"{d} is not a recorded run: {need} is missing (record with dfbvs servo --record DIR)")
    meta = json.loads((d / "session.json").read_text())
    config = session_config(meta.get("preset"), [*meta.get("overrides", []), *overrides])
    recorded = read_jsonl(d / "trajectory.jsonl")
    target = TargetRender.load(d / "target")
    servo = build_servo(config.servo, target)
    source = ImageFolderCamera(d / "frames", pattern="*.png")
    replayed: list[dict] = []

    def collect(cycle) -> None:
        replayed.append({"iteration": cycle.iteration, "status": cycle.step.status.value,
                         "v_camera": np.asarray(cycle.step.v_camera).tolist()})

    # the recorded run's own ending decides the length: run every recorded frame, stop rules off
    monitor = StopMonitor(StopConfig(max_iterations=len(recorded) + 1, lost_cycles=10**6, diverged_cycles=10**6,
                                     converged_cycles=10**6))
    try:
        run_servo_loop(source, servo, _CountingSink(), monitor, progress=collect)
    finally:
        if hasattr(servo, "close"):
            servo.close()
    status_differs = twist_differs = 0
    worst = 0.0
    first = None
    if out_jsonl is not None:  # this replay's comparison, not appended to an earlier one's
        Path(out_jsonl).unlink(missing_ok=True)
    writer = JsonlWriter(out_jsonl) if out_jsonl is not None else None
    for rec, rep in zip(recorded, replayed):
        dv = float(np.max(np.abs(np.asarray(rec["v_camera"], float) - np.asarray(rep["v_camera"], float))))
        worst = max(worst, dv)
        s_diff, v_diff = rec["status"] != rep["status"], dv > tolerance
        status_differs += s_diff
        twist_differs += v_diff
        row = {"iteration": rec["iteration"], "recorded_status": rec["status"], "replayed_status": rep["status"],
               "recorded_v_camera": rec["v_camera"], "replayed_v_camera": rep["v_camera"], "max_difference": dv}
        if (s_diff or v_diff) and first is None:
            first = row
        if writer is not None:
            writer.write(to_jsonable(row))
    if writer is not None:
        writer.close()
    return ReplayReport(len(replayed), len(recorded), status_differs, twist_differs, worst, tolerance, first)
