"""A servo session on an arm, real or simulated: the run loop with the arm sink and its safety layer, signal
handling, recording for replay, and the grasp after convergence. ``dfbvs servo`` is a thin layer over
:func:`run_session`; the simulated UR5e goes through exactly the same code with fake RTDE clients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..config import apply_overrides, apply_preset, describe
from ..errors import RobotError
from ..liveview import RerunRecorder
from ..photometric import PhotometricConfig
from ..recorder import RecorderGroup, RunRecorder, write_json
from ..render.target import TargetRender
from ..runtime import Cycle, FrameSource, Probe, combine_probes, run_servo_loop
from ..servo import SERVOS, ServoConfig, build_servo
from ..stop import EpisodeStatus, StopConfig, StopMonitor
from .grasp import GraspConfig, GraspResult, execute_grasp
from .safety import SafetyConfig, stop_on_signals
from .sink import ArmSink
from .ur import URArm


@dataclass(frozen=True)
class SessionConfig:
    """What ``dfbvs servo --set PATH=VALUE`` changes: the servo, the stop rules, the safety limits, the grasp."""

    servo: ServoConfig | PhotometricConfig = field(default_factory=ServoConfig, metadata={"registry": SERVOS})
    stop: StopConfig = field(default_factory=lambda: StopConfig(max_iterations=400))
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    grasp: GraspConfig = field(default_factory=GraspConfig)


def session_config(preset: Optional[str] = None, overrides: tuple[str, ...] | list[str] = ()) -> SessionConfig:
    """The session config for a preset and overrides (what a recording stores to be replayed)."""
    config = SessionConfig()
    if preset:
        config = apply_preset(config, preset)
    return apply_overrides(config, list(overrides))


@dataclass(frozen=True)
class SessionResult:
    """How a session ended: the run's status and cycle count, the safety fault that stopped it (None if none),
    the commands sent and scaled, the grasp (None when none was made, with ``grasp_skipped`` saying why), the
    last step's figures, and the recording folder."""

    status: EpisodeStatus
    iterations: int
    fault: Optional[str]
    commands_sent: int
    commands_scaled: int
    grasp: Optional[GraspResult]
    grasp_skipped: Optional[str]
    final_mean_px_error: float
    final_n_inliers: int
    record_dir: Optional[str]
    # cycles whose computation (wall time) took longer than safety.watchdog_timeout_s: on a real arm the watchdog
    # stops it then; a simulated arm runs on simulated time and would not show it otherwise
    slow_cycles: int = 0

    def summary(self) -> dict:
        return {"status": self.status.value, "iterations": self.iterations, "fault": self.fault,
                "slow_cycles": self.slow_cycles,
                "commands_sent": self.commands_sent, "commands_scaled": self.commands_scaled,
                "grasped": self.grasp is not None, "grasp_skipped": self.grasp_skipped,
                "T_base_tool_grasp_commanded": None if self.grasp is None else self.grasp.T_base_tool_commanded,
                "final_mean_px_error": self.final_mean_px_error, "final_n_inliers": self.final_n_inliers}


def _arm_fields(sink: ArmSink) -> dict:
    last = sink.last
    if last is None:
        return {"arm": None}
    return {"arm": {"xd_requested_base": last.xd_requested_base, "xd_sent_base": last.xd_sent_base,
                    "scaled": last.scaled, "sent": last.sent, "fault": sink.fault}}


def run_session(config: SessionConfig, source: FrameSource, arm: URArm, T_tool_camera: np.ndarray,
                target: TargetRender, *, T_object_tool_grasp: Optional[np.ndarray] = None, dry_run: bool = False,
                record_dir: Optional[Path] = None, record_meta: Optional[dict] = None,
                T_world_base: Optional[np.ndarray] = None, clock: Callable[[], float] = time.monotonic,
                probe: Optional[Probe] = None, progress: Optional[Callable[[Cycle], None]] = None,
                servo=None, live_view: Optional[str] = None) -> SessionResult:
    """Servo the arm to ``target`` from the frames of ``source``; then, when converged and a grasp is given,
    grasp (never in a dry run). With ``record_dir``: the config, every cycle with its frame and the arm's
    command, the target and ``session.json`` (``record_meta``: what replay needs to rebuild the servo).
    ``live_view``: also log to rerun (a ``.rrd`` path, or ``spawn``)."""
    servo = servo if servo is not None else build_servo(config.servo, target)
    sink = ArmSink(arm, T_tool_camera, config.safety, T_world_base=T_world_base, dry_run=dry_run, clock=clock)
    work = config.servo if isinstance(config.servo, ServoConfig) else ServoConfig()
    recorder = None
    if record_dir is not None:
        recorder = RunRecorder(record_dir, describe(config), target.rgb, target.camera,
                               target.camera.rescaled(work.working_width_px, work.working_height_px),
                               save_frames=True, annotate=lambda: _arm_fields(sink))
        target.save(Path(record_dir) / "target")
        write_json(Path(record_dir) / "session.json", {**(record_meta or {}), "dry_run": dry_run,
                                                         "T_tool_camera": T_tool_camera})
    live = None if live_view is None else RerunRecorder(
        live_view, target.rgb, target.camera, target.camera.rescaled(work.working_width_px, work.working_height_px))
    slow = [0]
    watchdog_ms = config.safety.watchdog_timeout_s * 1e3

    def counted(cycle: Cycle) -> None:
        if cycle.step.timings_ms.get("total_ms", 0.0) > watchdog_ms:
            slow[0] += 1
        if progress is not None:
            progress(cycle)

    try:
        with stop_on_signals(sink.stop):
            monitor = StopMonitor(config.stop, goal_distance_m=float(np.nanmedian(target.depth_m)))
            outcome = run_servo_loop(source, servo, sink, monitor, RecorderGroup(recorder, live),
                                     combine_probes(sink.probe, probe), counted)
    finally:
        if hasattr(servo, "close"):
            servo.close()
    grasp, skipped = None, None
    last = outcome.last.step if outcome.last is not None else None
    if T_object_tool_grasp is None:
        skipped = "no grasp asked"
    elif dry_run:
        skipped = "dry run"
    elif outcome.status is not EpisodeStatus.CONVERGED or sink.fault is not None:
        skipped = f"the servo ended {outcome.status.value}" + (f" ({sink.fault})" if sink.fault else "")
    else:
        with stop_on_signals(lambda: arm.speed_stop(config.safety.stop_deceleration_m_s2)):
            try:
                grasp = execute_grasp(arm, T_tool_camera, target.T_object_camera, T_object_tool_grasp, config.grasp,
                                      last.T_current_target if last is not None else None, config.safety)
            except RobotError as exc:  # refused before moving, or the controller refused a move: the arm is stopped
                arm.speed_stop(config.safety.stop_deceleration_m_s2)
                skipped = str(exc)
    result = SessionResult(outcome.status, outcome.iterations, sink.fault, sink.commands_sent, sink.commands_scaled,
                           grasp, skipped, float(last.mean_error_px) if last is not None else float("nan"),
                           last.n_inliers if last is not None else 0,
                           str(record_dir) if record_dir is not None else None, slow[0])
    if recorder is not None:
        recorder.finish(result.summary(), title=f"servo on {arm.host}: {outcome.status.value}")
    return result
