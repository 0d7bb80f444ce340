"""The run loop shared by simulation, replay and hardware. It knows nothing about simulation.

One run: a :class:`FrameSource` gives timestamped images; the servo turns each into a
:class:`~dfbvs.servo.ServoStep`; the :class:`~dfbvs.stop.StopMonitor` decides whether to go on; a
:class:`MotionSink` executes the camera twist; an optional recorder writes every cycle as it happens; an
optional probe (ground truth in simulation, a safety envelope on a robot) may add figures to a cycle and end
the run. The sink is told to stop on every exit path, an exception or Ctrl-C included.

A frame source and a motion sink for a new setting (a real camera, a robot arm, a log to replay) are two
small classes with the methods below; nothing here changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Protocol

import numpy as np

from .servo import ServoStep
from .stop import EpisodeStatus, StopMonitor


@dataclass(frozen=True)
class Frame:
    """One image (HxWx3 uint8 RGB, the camera's own resolution) and its timestamp (s, the source's clock); with an
    RGB-D camera also ``depth_m`` (HxW float, metres along the optical axis, aligned to the colour image; NaN or 0
    where the sensor has none)."""

    rgb: np.ndarray
    timestamp_s: float
    depth_m: Optional[np.ndarray] = None


class FrameSource(Protocol):
    """Gives timestamped images; ``grab()`` returns None when there are no more (the end of a replay)."""

    def grab(self) -> Optional[Frame]: ...


class MotionSink(Protocol):
    """Executes camera body twists (m/s, rad/s, OpenCV camera axes, see CONVENTIONS.md)."""

    def apply(self, v_camera: np.ndarray) -> None:
        """Move with ``v_camera`` until the next command."""

    def pose(self) -> Optional[np.ndarray]:
        """``T_world_camera`` (4x4) when the sink knows it (a simulator, a robot's forward kinematics); read
        before ``apply``, so it is the pose at which the frame was taken. Return a new array after moving
        (a cycle keeps the one it was given)."""

    def stop(self) -> None:
        """Zero motion now. Called at the end of every run, whatever ended it."""


class Servo(Protocol):
    def step(self, image: np.ndarray, timestamp_s: float = ..., depth_m: Optional[np.ndarray] = ...) -> ServoStep: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class ProbeReading:
    """What a probe says about a cycle: figures to record (name -> value, units in the names) and, when the
    run must end, the status to end it with."""

    fields: Mapping[str, float] = field(default_factory=dict)
    end_with: Optional[EpisodeStatus] = None


Probe = Callable[[Optional[np.ndarray]], ProbeReading]  # T_world_camera (or None) -> reading


def combine_probes(*probes: Optional[Probe]) -> Probe:
    """One probe from several (ground truth and a robot's safety, say): every figure of each, and the first
    end status any of them gives."""
    active = [p for p in probes if p is not None]

    def probe(T_world_camera: Optional[np.ndarray]) -> ProbeReading:
        fields: dict[str, float] = {}
        end_with: Optional[EpisodeStatus] = None
        for p in active:
            reading = p(T_world_camera)
            fields.update(reading.fields)
            end_with = end_with or reading.end_with
        return ProbeReading(fields, end_with)

    return probe


@dataclass(frozen=True)
class Cycle:
    """One cycle of a run: the frame, the servo's step, the run status after it, the sink's pose when the
    step was computed, and the probe's figures."""

    iteration: int
    frame: Frame
    step: ServoStep
    status: EpisodeStatus
    T_world_camera: Optional[np.ndarray]
    extras: Mapping[str, float]

    @property
    def finished(self) -> bool:
        return self.status is not EpisodeStatus.RUNNING


class Recorder(Protocol):
    def record(self, cycle: Cycle) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: status, cycle count, the last cycle (None if none ran) and per-stage timings (ms)."""

    status: EpisodeStatus
    iterations: int
    last: Optional[Cycle]
    stage_ms: Mapping[str, list[float]]

    @property
    def median_stage_ms(self) -> dict[str, float]:
        return {k: float(np.median(v)) for k, v in self.stage_ms.items()}

    @property
    def median_cycle_ms(self) -> float:
        total = self.stage_ms.get("total_ms", [])
        return float(np.median(total)) if total else float("nan")

    @property
    def p95_cycle_ms(self) -> float:
        total = self.stage_ms.get("total_ms", [])
        return float(np.percentile(total, 95)) if total else float("nan")


def run_servo_loop(source: FrameSource, servo: Servo, sink: MotionSink, monitor: StopMonitor,
                   recorder: Optional[Recorder] = None, probe: Optional[Probe] = None,
                   progress: Optional[Callable[[Cycle], None]] = None) -> RunOutcome:
    """Run until the stop monitor, the probe or the source ends it; the sink is stopped on every exit."""
    status = EpisodeStatus.RUNNING
    last: Optional[Cycle] = None
    stage_ms: dict[str, list[float]] = {}
    try:
        while status is EpisodeStatus.RUNNING:
            frame = source.grab()
            if frame is None:
                status = EpisodeStatus.STOPPED
                break
            # depth only when the frame has it: a servo written for colour frames keeps its two-argument step
            step = (servo.step(frame.rgb, frame.timestamp_s) if frame.depth_m is None
                    else servo.step(frame.rgb, frame.timestamp_s, frame.depth_m))
            status = monitor.update(step)
            T_world_camera = sink.pose()
            reading = probe(T_world_camera) if probe is not None else ProbeReading()
            if status is EpisodeStatus.RUNNING and reading.end_with is not None:
                status = reading.end_with
            if status is EpisodeStatus.RUNNING:  # command first, record after: recording adds no latency
                sink.apply(step.v_camera if step.ok else np.zeros(6))  # a step unsure of its lock: no motion
            for k, v in step.timings_ms.items():
                stage_ms.setdefault(k, []).append(v)
            last = Cycle(monitor.iterations, frame, step, status, T_world_camera, dict(reading.fields))
            if recorder is not None:
                recorder.record(last)
            if progress is not None:
                progress(last)
    finally:
        sink.stop()
        if recorder is not None:
            recorder.close()
    return RunOutcome(status, monitor.iterations, last, stage_ms)
