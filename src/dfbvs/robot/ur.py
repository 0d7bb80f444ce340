"""A Universal Robots arm over RTDE, through the ``ur-rtde`` package (``rtde_control``, ``rtde_receive``,
``rtde_io``), or through any clients with the same methods (the fake of ``fake_rtde.py`` in tests).

Frames: the controller's base frame and its configured TCP. The hand-eye transform ``T_tool_camera`` must be
calibrated against that same TCP (set the TCP offset to zero to use the flange, ``tool0``).

In a dry run no control interface is created at all: the controller's script is not replaced and no motion
command can be sent; poses are still read.
"""

from __future__ import annotations

import time
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

    def __init__(self, receive: Any, control: Any | None = None, io: Any | None = None, host: str = "fake",
                 watchdog_min_hz: float | None = None, poll_s: float = 0.008) -> None:
        self.receive, self.control, self.io, self.host = receive, control, io, host
        # the controller's own RTDE watchdog, armed with the first motion command (not at connect: the target
        # render and the goal preview take seconds before any command, which would let it shut the control down)
        self.watchdog_min_hz = watchdog_min_hz
        self._watchdog_armed = False
        self.poll_s = poll_s  # how often a blocking move is polled (and the watchdog kicked), s of wall time

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
        return cls(receive, control, io, host, watchdog_min_hz=watchdog_min_hz)

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

    def _arm_watchdog(self) -> None:
        if self.control is not None and self.watchdog_min_hz and not self._watchdog_armed:
            self.control.setWatchdog(self.watchdog_min_hz)
            self._watchdog_armed = True

    def speed_l(self, xd_base: np.ndarray, acceleration_m_s2: float) -> None:
        control = self._require_control("speedL")
        self._arm_watchdog()
        ok = control.speedL([float(x) for x in xd_base], float(acceleration_m_s2), 0.0)
        if ok is False:
            raise RobotError(f"the controller at {self.host} refused speedL {np.round(xd_base, 4).tolist()}")

    def speed_stop(self, deceleration_m_s2: float) -> None:
        """Decelerate to rest; a no-op in a dry run (nothing was sent)."""
        if self.control is not None:
            self.control.speedStop(float(deceleration_m_s2))

    def kick_watchdog(self) -> None:
        if self.control is not None and (self._watchdog_armed or not self.watchdog_min_hz):
            self.control.kickWatchdog()

    def move_l(self, T_base_tool: np.ndarray, speed_m_s: float, acceleration_m_s2: float,
               stop_deceleration_m_s2: float = 2.0, tolerance_m: float = 0.002) -> None:
        """A straight-line move of the TCP to ``T_base_tool``, sent asynchronously and waited for here: the
        watchdog is kicked and the arm's safety state read every ``poll_s`` while it runs, so neither watchdog
        stops a long move, a protective stop ends it with a :class:`RobotError`, and any exception meanwhile
        (Ctrl-C included) stops it (``stopL``) before propagating. Raises :class:`RobotError` when the move is
        refused, takes more than twice its nominal time plus 5 s, or ends further than ``tolerance_m`` from the
        target."""
        control = self._require_control("moveL")
        self._arm_watchdog()
        T_target = np.asarray(T_base_tool, dtype=np.float64)
        where = np.round(T_target[:3, 3], 4).tolist()
        start = self.T_base_tool()
        distance = float(np.linalg.norm(T_target[:3, 3] - start[:3, 3]))
        ok = control.moveL(pose_vector(T_target), float(speed_m_s), float(acceleration_m_s2), True)
        if ok is False:
            raise RobotError(f"the controller at {self.host} refused moveL to {where}")
        t0 = time.monotonic()
        deadline = t0 + 2.0 * distance / max(float(speed_m_s), 1e-6) + 5.0
        try:
            while True:
                self.kick_watchdog()
                running = control.getAsyncOperationProgressEx().isAsyncOperationRunning()
                fault = self.fault()
                if fault is not None:
                    raise RobotError(f"moveL to {where} ended by the arm: {fault}")
                near = float(np.linalg.norm(self.T_base_tool()[:3, 3] - T_target[:3, 3])) <= tolerance_m
                if not running and (near or time.monotonic() - t0 > 0.5):  # a move is reported running late
                    break
                if time.monotonic() > deadline:
                    raise RobotError(f"moveL to {where} did not finish within {deadline - t0:.1f} s")
                if self.poll_s > 0:
                    time.sleep(self.poll_s)
        except BaseException:
            control.stopL(float(stop_deceleration_m_s2))
            raise
        off = float(np.linalg.norm(self.T_base_tool()[:3, 3] - T_target[:3, 3]))
        if off > tolerance_m:
            raise RobotError(f"moveL to {where} ended {off * 1e3:.1f} mm from it (the controller stopped it: its "
                             "watchdog, a limit or a stop)")

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
