"""The motion sink that drives an arm (:class:`dfbvs.runtime.MotionSink`): camera twist -> ``speedL`` through
the hand-eye transform (``convert.py``) -> the safety layer (``safety.py``) -> the arm (``ur.py``).

Once anything is wrong (a protective stop on the arm, a workspace fault, a watchdog timeout, a malformed
twist) the sink stops the arm, keeps the reason in :attr:`ArmSink.fault`, sends nothing more, and its
:meth:`probe` ends the run with status ``stopped`` and that reason. ``dry_run`` computes and records every
command but sends none (and the arm should be connected without a control interface at all).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..geometry import inverse
from ..runtime import ProbeReading
from ..stop import EpisodeStatus
from .convert import camera_twist_to_speedl
from .safety import SafetyConfig, SafetyLayer, Watchdog
from .ur import URArm


@dataclass(frozen=True)
class ArmCommand:
    """The last command: the servo's camera twist, the requested and the sent TCP velocity (base axes),
    whether the safety layer scaled it, and whether it was actually sent (not in a dry run or on a fault)."""

    v_camera: np.ndarray
    xd_requested_base: np.ndarray
    xd_sent_base: np.ndarray
    scaled: bool
    sent: bool


class ArmSink:
    """``pose()`` is ``T_world_base @ T_base_tool @ T_tool_camera`` from the arm's measured TCP pose."""

    def __init__(self, arm: URArm, T_tool_camera: np.ndarray, safety: SafetyConfig | None = None,
                 T_world_base: np.ndarray | None = None, dry_run: bool = False,
                 clock: Callable[[], float] = time.monotonic, watchdog: bool = True) -> None:
        self.arm = arm
        self.T_tool_camera = np.asarray(T_tool_camera, dtype=np.float64)
        self.T_world_base = np.eye(4) if T_world_base is None else np.asarray(T_world_base, dtype=np.float64)
        self.safety = SafetyLayer(safety or SafetyConfig())
        self.dry_run = dry_run
        self.clock = clock
        self.fault: str | None = None
        self.last: ArmCommand | None = None
        self.commands_sent = 0
        self.commands_scaled = 0
        # the watchdog runs on the session's clock: wall time on hardware; in a stepped simulation time stands
        # still while the loop computes, as the simulated arm does
        self.watchdog = Watchdog(self.safety.config.watchdog_timeout_s, self._on_watchdog, clock) if watchdog else None

    def _on_watchdog(self, reason: str) -> None:
        self._halt(reason)

    def _halt(self, reason: str) -> None:
        if self.fault is None:
            self.fault = reason
        self.arm.speed_stop(self.safety.config.stop_deceleration_m_s2)

    # --- the motion-sink interface --------------------------------------------------------------------------
    def apply(self, v_camera: np.ndarray) -> None:
        if self.fault is None:
            self.fault = self.arm.fault()
        if self.fault is not None:
            self.arm.speed_stop(self.safety.config.stop_deceleration_m_s2)
            return
        T_base_tool = self.arm.T_base_tool()
        v = np.asarray(v_camera, dtype=np.float64).reshape(-1)
        xd = camera_twist_to_speedl(v, T_base_tool, self.T_tool_camera) if v.shape == (6,) and np.all(
            np.isfinite(v)) else np.full(6, np.nan)
        cmd = self.safety.limit(xd, T_base_tool, self.clock())
        if cmd.fault is not None:
            self._halt(cmd.fault)
            self.last = ArmCommand(v, xd, np.zeros(6), False, False)
            return
        if not self.dry_run:
            self.arm.speed_l(cmd.xd_base, self.safety.config.max_linear_accel_m_s2)
            self.arm.kick_watchdog()
            self.commands_sent += 1
        self.commands_scaled += int(cmd.scaled)
        self.last = ArmCommand(v, xd, cmd.xd_base, cmd.scaled, not self.dry_run)
        if self.watchdog is not None:
            self.watchdog.kick()

    def pose(self) -> np.ndarray:
        return self.T_world_base @ self.arm.T_base_tool() @ self.T_tool_camera

    def stop(self) -> None:
        """Zero motion now (every exit path of the run loop); the watchdog ends with it."""
        if self.watchdog is not None:
            self.watchdog.close()
        self.arm.speed_stop(self.safety.config.stop_deceleration_m_s2)

    def probe(self, T_world_camera: np.ndarray | None = None) -> ProbeReading:
        """Ends the run (``stopped``) once the sink has a fault; reports the speeds of the command in effect while
        this cycle's frame was taken (the previous cycle's: the probe runs before this cycle's command is sent, so
        the fields are named ``in_effect_*``; a recorded session's ``arm`` field holds this cycle's own)."""
        if self.fault is None:
            self.fault = self.arm.fault()
        fields = {}
        if self.last is not None:
            fields = {"in_effect_tcp_speed_sent_m_s": float(np.linalg.norm(self.last.xd_sent_base[:3])),
                      "in_effect_tcp_speed_requested_m_s": float(np.linalg.norm(self.last.xd_requested_base[:3])),
                      "in_effect_safety_scaled": float(self.last.scaled)}
        return ProbeReading(fields, EpisodeStatus.STOPPED if self.fault is not None else None)

    def T_world_camera_from_tool(self, T_base_tool: np.ndarray) -> np.ndarray:
        return self.T_world_base @ T_base_tool @ self.T_tool_camera

    def T_base_tool_for_camera(self, T_world_camera: np.ndarray) -> np.ndarray:
        return inverse(self.T_world_base) @ T_world_camera @ inverse(self.T_tool_camera)
