"""How simulated time passes between the camera, the computation and the motion.

``stepped`` (the original model): one frame per cycle; the camera waits for the computation, and each twist
moves it for ``dt_s``. A slow loop and a fast loop look the same.

``realtime``: a camera at ``fps`` frames per second on a simulated clock. The loop takes the next frame that
arrives after it is free (frames that arrive while it computes are dropped, as a real driver does); the twist
computed from a frame takes effect only when its computation ends: after the measured wall time of the cycle,
or after a declared ``latency_s`` (deterministic tests). Until then the previous twist goes on moving the
camera. The pair :class:`RealtimeCamera` (frame source) and :class:`RealtimeBody` (motion sink) share one
:class:`SimClock`.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import ConfigError
from ..geometry import integrate_body_twist
from ..runtime import Frame


class TimingMode(str, enum.Enum):
    STEPPED = "stepped"
    REALTIME = "realtime"


@dataclass(frozen=True)
class TimingConfig:
    """``mode``: see the module docstring. ``fps``: camera frame rate (realtime). ``latency_s``: declared
    compute latency of every cycle (realtime; None = the measured wall time of each cycle)."""

    mode: TimingMode = TimingMode.STEPPED
    fps: float = 30.0
    latency_s: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", TimingMode(self.mode))
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"timing.fps={self.fps!r}: must be > 0")
        if self.latency_s is not None and not (np.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ConfigError(f"timing.latency_s={self.latency_s!r}: must be >= 0 s or none (measured)")


class SimClock:
    """Simulated time (s) shared by a realtime camera and body; it also notes the wall time at which the last
    frame was handed out, so the compute time of a cycle can be measured."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.wall_at_frame_s = time.perf_counter()


class RealtimeBody:
    """A free-flying camera driven on a simulated clock: the active twist moves it continuously; a new
    twist becomes active ``latency`` after the frame it was computed from (a motion sink)."""

    def __init__(self, T_world_camera: np.ndarray, clock: SimClock, latency_s: Optional[float] = None) -> None:
        T = np.asarray(T_world_camera, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ConfigError(f"T_world_camera must be a finite 4x4 matrix, got shape {T.shape}")
        self.T_world_camera = T
        self.clock = clock
        self.latency_s = latency_s
        self.v_camera = np.zeros(6)
        self._t_pose_s = clock.now_s  # simulated time of T_world_camera
        self.commands = 0

    def advance_to(self, t_s: float) -> None:
        """Move with the active twist until simulated time ``t_s``."""
        dt = t_s - self._t_pose_s
        if dt > 0 and np.any(self.v_camera):
            self.T_world_camera = integrate_body_twist(self.T_world_camera, self.v_camera, dt)
        self._t_pose_s = max(self._t_pose_s, t_s)

    # --- the motion-sink interface --------------------------------------------------------------------------
    def apply(self, v_camera: np.ndarray) -> None:
        v = np.asarray(v_camera, dtype=np.float64).reshape(6)
        if not np.all(np.isfinite(v)):
            raise ConfigError(f"camera twist must be finite, got {v.tolist()}")
        latency = self.latency_s if self.latency_s is not None else time.perf_counter() - self.clock.wall_at_frame_s
        t_effect = self.clock.now_s + latency
        self.advance_to(t_effect)
        self.v_camera = v
        self.clock.now_s = t_effect
        self.commands += 1

    def pose(self) -> np.ndarray:
        return self.T_world_camera

    def stop(self) -> None:
        self.v_camera = np.zeros(6)


class RealtimeCamera:
    """Frames every ``1 / fps`` s of simulated time; ``grab`` returns the first frame that arrives after the
    loop is free (earlier ones are dropped), ``render(T_world_camera, t_s)`` (a :class:`Frame`) at the body's pose
    at that instant (a frame source)."""

    def __init__(self, render: Callable[[np.ndarray, float], Frame], body: RealtimeBody, fps: float) -> None:
        self.render, self.body, self.fps = render, body, fps
        self._last_index = -1
        self.dropped = 0

    def grab(self) -> Frame:
        clock = self.body.clock
        index = max(self._last_index + 1, math.ceil(clock.now_s * self.fps - 1e-9))
        self.dropped += index - self._last_index - 1
        self._last_index = index
        t = index / self.fps
        self.body.advance_to(t)
        clock.now_s = t
        frame = self.render(self.body.T_world_camera, t)
        clock.wall_at_frame_s = time.perf_counter()
        return frame
