"""A safety layer that does not depend on the servo being right.

Every command to the arm passes :meth:`SafetyLayer.limit`: a non-finite twist, a TCP outside the workspace
box (base frame), or one that the command would take out of it within ``workspace_lookahead_s``, is a fault
(the arm is stopped, the run ends); speeds beyond the limits are scaled down as a whole (the direction of
motion is kept); the change from the previous command is bounded by the acceleration limits. A
:class:`Watchdog` thread stops the arm when no fresh command arrives within ``watchdog_timeout_s`` (a frozen
camera, a stuck process). :func:`stop_on_signals` turns SIGTERM into the same path as Ctrl-C, and stops the
arm at once, before the Python stack unwinds.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..errors import ConfigError
from ..signals import handling_stop_signals

#: what each safety limit may be set to (its unit as in the name): a value outside is a typo or a unit mistake,
#: not a limit (a UR's TCP is safe to servo near an object at centimetres per second; the controller's own stop
#: decelerates at a few m/s^2)
SAFETY_RANGES: dict[str, tuple[float, float]] = {
    "max_linear_speed_m_s": (1e-3, 0.5),
    "max_angular_speed_rad_s": (1e-3, 3.0),
    "max_linear_accel_m_s2": (1e-2, 5.0),
    "max_angular_accel_rad_s2": (1e-2, 20.0),
    "watchdog_timeout_s": (0.01, 5.0),
    "stop_deceleration_m_s2": (0.5, 10.0),
}
#: the workspace box's corners lie within this distance of the base on each axis (m; a UR30 reaches 1.3 m)
MAX_WORKSPACE_M = 2.0


@dataclass(frozen=True)
class SafetyConfig:
    """Limits enforced on every command (TCP velocity in base axes). The defaults suit a first run near an
    object: 10 cm/s, 0.5 rad/s (29 deg/s)."""

    max_linear_speed_m_s: float = 0.10
    max_angular_speed_rad_s: float = 0.5
    max_linear_accel_m_s2: float = 0.5  # also the acceleration handed to speedL
    max_angular_accel_rad_s2: float = 2.0
    workspace_min_m: tuple[float, float, float] = (-0.9, -0.9, 0.02)  # TCP box in the base frame
    workspace_max_m: tuple[float, float, float] = (0.9, 0.9, 1.0)
    workspace_lookahead_s: float = 0.2  # a command that would leave the box within this is refused
    watchdog_timeout_s: float = 0.5  # no command for this long: the arm is stopped
    stop_deceleration_m_s2: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_linear_speed_m_s", "max_angular_speed_rad_s", "max_linear_accel_m_s2",
                     "max_angular_accel_rad_s2", "watchdog_timeout_s", "stop_deceleration_m_s2"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"safety.{name}={v!r}: must be > 0")
            low, high = SAFETY_RANGES[name]
            if not low <= v <= high:
                raise ConfigError(f"safety.{name}={v!r}: outside [{low:g}, {high:g}], the range a servoing arm "
                                  "near an object is safe in (SAFETY_RANGES in dfbvs.robot.safety)")
        if not (np.isfinite(self.workspace_lookahead_s) and self.workspace_lookahead_s >= 0):
            raise ConfigError(f"safety.workspace_lookahead_s={self.workspace_lookahead_s!r}: must be >= 0 s")
        lo, hi = np.asarray(self.workspace_min_m, float), np.asarray(self.workspace_max_m, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo) & np.isfinite(hi)) or np.any(lo >= hi):
            raise ConfigError("safety workspace box must be 3 finite min < max values, got "
                              f"min={self.workspace_min_m!r} max={self.workspace_max_m!r}")
        if np.any(np.abs(lo) > MAX_WORKSPACE_M) or np.any(np.abs(hi) > MAX_WORKSPACE_M):
            raise ConfigError(f"safety workspace box min={self.workspace_min_m!r} max={self.workspace_max_m!r} m "
                              f"reaches beyond {MAX_WORKSPACE_M:g} m from the base, further than any UR arm reaches "
                              "(metres expected)")


@dataclass(frozen=True)
class SafeCommand:
    """What the safety layer lets through: ``xd_base`` (zero on a fault), whether it was scaled down, and the
    fault that ends the run (None when the command is fine)."""

    xd_base: np.ndarray
    scaled: bool
    fault: str | None = None


class SafetyLayer:
    def __init__(self, config: SafetyConfig) -> None:
        self.config = config
        self._last_xd = np.zeros(6)
        self._last_t_s: float | None = None

    def reset(self) -> None:
        self._last_xd = np.zeros(6)
        self._last_t_s = None

    def limit(self, xd_base: np.ndarray, T_base_tool: np.ndarray, t_s: float) -> SafeCommand:
        """The command to send at time ``t_s`` (s, any monotonic clock) for the requested ``xd_base``."""
        cfg = self.config
        xd = np.asarray(xd_base, dtype=np.float64).reshape(-1)
        p = np.asarray(T_base_tool, dtype=np.float64)[:3, 3]
        lo, hi = np.asarray(cfg.workspace_min_m), np.asarray(cfg.workspace_max_m)
        if xd.shape != (6,) or not np.all(np.isfinite(xd)):
            return self._fault(f"non-finite or malformed twist {xd.tolist()}")
        if np.any(p < lo) or np.any(p > hi):
            return self._fault(f"TCP at {np.round(p, 3).tolist()} m is outside the workspace box "
                               f"{np.round(lo, 3).tolist()}..{np.round(hi, 3).tolist()}")
        ratio = max(float(np.linalg.norm(xd[:3])) / cfg.max_linear_speed_m_s,
                    float(np.linalg.norm(xd[3:])) / cfg.max_angular_speed_rad_s, 1.0)
        scaled = ratio > 1.0
        xd = xd / ratio
        dt = 0.0 if self._last_t_s is None else max(t_s - self._last_t_s, 0.0)
        delta = xd - self._last_xd
        if self._last_t_s is not None:
            a_ratio = max(float(np.linalg.norm(delta[:3])) / (cfg.max_linear_accel_m_s2 * max(dt, 1e-3)),
                          float(np.linalg.norm(delta[3:])) / (cfg.max_angular_accel_rad_s2 * max(dt, 1e-3)), 1.0)
            if a_ratio > 1.0:
                xd = self._last_xd + delta / a_ratio
                scaled = True
        p_ahead = p + xd[:3] * cfg.workspace_lookahead_s
        if np.any(p_ahead < lo) or np.any(p_ahead > hi):
            return self._fault(f"the command {np.round(xd[:3], 4).tolist()} m/s would take the TCP from "
                               f"{np.round(p, 3).tolist()} m out of the workspace box {np.round(lo, 3).tolist()}.."
                               f"{np.round(hi, 3).tolist()}")
        self._last_xd, self._last_t_s = xd, t_s
        return SafeCommand(xd, scaled)

    def _fault(self, reason: str) -> SafeCommand:
        self._last_xd = np.zeros(6)
        return SafeCommand(np.zeros(6), False, reason)


class Watchdog:
    """Calls ``on_timeout(reason)`` once when :meth:`kick` has not been called for ``timeout_s`` (wall time);
    a daemon thread checks every ``timeout_s / 5``. Start it with the first command; :meth:`close` ends it."""

    def __init__(self, timeout_s: float, on_timeout: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s, self.on_timeout, self.clock = timeout_s, on_timeout, clock
        self._last = clock()
        self._stop = threading.Event()
        self.fired = False
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        self._last = self.clock()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dfbvs-watchdog", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.timeout_s / 5):
            silent = self.clock() - self._last
            if silent > self.timeout_s and not self.fired:
                self.fired = True
                self.on_timeout(f"watchdog: no command for {silent * 1e3:.0f} ms (limit {self.timeout_s * 1e3:.0f} ms)")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """While active, SIGINT and SIGTERM call ``stop()`` at once (zero motion before anything else) and then
    raise KeyboardInterrupt, so the run loop's ``finally`` runs as on Ctrl-C. Only in the main thread (Python
    delivers signals there); elsewhere it does nothing."""

    def handler(signum: int, frame: object) -> None:
        try:
            stop()
        finally:
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    with handling_stop_signals(handler):
        yield
