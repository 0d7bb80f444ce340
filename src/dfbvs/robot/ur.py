"""A Universal Robots arm over RTDE, through the ``ur-rtde`` package (``rtde_control``, ``rtde_receive``,
``rtde_io``), or through any clients with the same methods (the fake of ``fake_rtde.py`` in tests).

Frames: the controller's base frame and its configured TCP. The hand-eye transform ``T_tool_camera`` must be
calibrated against that same TCP (set the TCP offset to zero to use the flange, ``tool0``).

In a dry run no control interface is created at all: the controller's script is not replaced and no motion
command can be sent; poses are still read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import RobotError
from .ur5e import pose_from_vector, pose_vector

# UR safety modes (RTDE ``safety_mode``) that mean the arm will not move.
SAFETY_MODES = {1: "normal", 2: "reduced", 3: "protective stop", 4: "recovery", 5: "safeguard stop",
                6: "system emergency stop", 7: "robot emergency stop", 8: "violation", 9: "fault",
                10: "validate joint id", 11: "undefined", 12: "automatic mode safeguard stop",
                13: "system three-position enabling stop"}
_MOVING_OK = {1, 2}


class URArm:
    """Reads the TCP pose and the safety mode; sends ``speedL`` / ``speedStop`` / ``moveL``; drives a digital
    output (the gripper). ``control`` is None in a dry run."""

    def __init__(self, receive: Any, control: Any | None = None, io: Any | None = None, host: str = "fake") -> None:
        self.receive, self.control, self.io, self.host = receive, control, io, host

    @classmethod
    def connect(cls, host: str, dry_run: bool = False, watchdog_min_hz: float | None = 5.0) -> URArm:
        """Connect to the controller at ``host`` (RTDE ports). With ``watchdog_min_hz`` the controller's own
        RTDE watchdog also stops the arm when commands stop arriving (a second layer under ours)."""
        try:
            import rtde_control
            import rtde_io
            import rtde_receive
        except ImportError as exc:
            raise RobotError("talking to a UR arm needs the ur-rtde package: pip install ur-rtde") from exc
        try:
            receive = rtde_receive.RTDEReceiveInterface(host)
            control = None if dry_run else rtde_control.RTDEControlInterface(host)
            io = None if dry_run else rtde_io.RTDEIOInterface(host)
        except Exception as exc:  # ur-rtde raises RuntimeError with its own text
            raise RobotError(f"could not connect to the UR controller at {host!r}: {exc}") from exc
        if control is not None and watchdog_min_hz:
            control.setWatchdog(watchdog_min_hz)
        return cls(receive, control, io, host)

    # --- state ---------------------------------------------------------------------------------------------
    def T_base_tool(self) -> np.ndarray:
        return pose_from_vector(self.receive.getActualTCPPose())

    def q_rad(self) -> np.ndarray:
        return np.asarray(self.receive.getActualQ(), dtype=np.float64)

    def fault(self) -> str | None:
        """Why the arm cannot move (protective or emergency stop, ...), None when it can."""
        if self.receive.isProtectiveStopped():
            return "protective stop on the arm"
        if self.receive.isEmergencyStopped():
            return "emergency stop on the arm"
        mode = int(self.receive.getSafetyMode())
        if mode not in _MOVING_OK:
            return f"arm safety mode {mode} ({SAFETY_MODES.get(mode, 'unknown')})"
        return None

    # --- commands ------------------------------------------------------------------------------------------
    def _require_control(self, what: str) -> Any:
        if self.control is None:
            raise RobotError(f"{what}: this arm is connected for a dry run (no control interface)")
        return self.control

    def speed_l(self, xd_base: np.ndarray, acceleration_m_s2: float) -> None:
        ok = self._require_control("speedL").speedL([float(x) for x in xd_base], float(acceleration_m_s2), 0.0)
        if ok is False:
            raise RobotError(f"the controller at {self.host} refused speedL {np.round(xd_base, 4).tolist()}")

    def speed_stop(self, deceleration_m_s2: float) -> None:
        """Decelerate to rest; a no-op in a dry run (nothing was sent)."""
        if self.control is not None:
            self.control.speedStop(float(deceleration_m_s2))

    def kick_watchdog(self) -> None:
        if self.control is not None:
            self.control.kickWatchdog()

    def move_l(self, T_base_tool: np.ndarray, speed_m_s: float, acceleration_m_s2: float) -> None:
        """A straight-line move of the TCP to ``T_base_tool`` (blocks until done)."""
        ok = self._require_control("moveL").moveL(pose_vector(T_base_tool), float(speed_m_s), float(acceleration_m_s2))
        if ok is False:
            raise RobotError(f"the controller at {self.host} refused moveL to {np.round(T_base_tool[:3, 3], 4)}")

    def set_digital_out(self, pin: int, level: bool) -> None:
        if self.io is None:
            raise RobotError("digital output: this arm is connected for a dry run (no IO interface)")
        self.io.setStandardDigitalOut(int(pin), bool(level))

    def close(self) -> None:
        """Stop, end the control script, disconnect."""
        try:
            if self.control is not None:
                self.control.speedStop(2.0)
                self.control.stopScript()
        finally:
            for client in (self.control, self.io, self.receive):
                if client is not None and hasattr(client, "disconnect"):
                    client.disconnect()
