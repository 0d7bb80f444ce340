"""Fake ``ur-rtde`` clients backed by :class:`~dfbvs.robot.arm_sim.SimulatedUR5e`: the same method names and
arguments as ``rtde_control.RTDEControlInterface``, ``rtde_receive.RTDEReceiveInterface`` and
``rtde_io.RTDEIOInterface`` (a test checks them against the installed package), so :class:`URArm` runs
unchanged against a simulated arm. Every call is logged in ``calls``.

Time comes from a :class:`SimTime` shared with the rest of a simulation: each call first brings the arm to
``time.now_s``; a blocking ``moveL`` advances it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..geometry import make_pose, so3_exp, so3_log
from .arm_sim import SimulatedUR5e
from .ur5e import inverse_kinematics, pose_from_vector, pose_vector


@dataclass
class SimTime:
    """Simulated seconds, shared by a simulated camera, the fake controller and the run."""

    now_s: float = 0.0


@dataclass
class FakeRTDE:
    """The simulated arm, its clock, and the log of every call through any of the three fakes."""

    arm: SimulatedUR5e
    time: SimTime = field(default_factory=SimTime)
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    digital_out: dict[int, bool] = field(default_factory=dict)
    watchdog_min_hz: float | None = None
    last_kick_s: float = 0.0  # simulated time of the last watchdog kick (or of arming it)
    control_shut_down: bool = False  # the RTDE watchdog expired: no more motion commands are executed
    lock: Any = field(default_factory=threading.RLock, repr=False)  # calls from a watchdog thread too

    def sync(self) -> SimulatedUR5e:
        with self.lock:
            self.arm.advance_to(self.time.now_s)
        return self.arm

    def clients(self) -> tuple[FakeRTDEControl, FakeRTDEReceive, FakeRTDEIO]:
        return FakeRTDEControl(self), FakeRTDEReceive(self), FakeRTDEIO(self)

    def motion_calls(self) -> list[tuple[str, tuple]]:
        return [c for c in self.calls if c[0] in ("speedL", "moveL", "speedJ", "moveJ", "servoL", "servoJ")]


@dataclass(frozen=True)
class _AsyncStatus:
    """What ``getAsyncOperationProgressEx`` returns (``rtde_control.AsyncOperationStatus``), as far as it is read."""

    running: bool

    def isAsyncOperationRunning(self) -> bool:
        return self.running


class FakeRTDEControl:
    def __init__(self, sim: FakeRTDE) -> None:
        self.sim = sim

    def speedL(self, xd: list[float], acceleration: float = 0.25, time: float = 0.0) -> bool:
        with self.sim.lock:
            self.sim.calls.append(("speedL", (list(xd), acceleration, time)))
            return self.sim.arm.speed_l(np.asarray(xd), acceleration, self.sim.time.now_s)

    def speedStop(self, a: float = 10.0) -> bool:
        with self.sim.lock:
            self.sim.calls.append(("speedStop", (a,)))
            return self.sim.arm.speed_stop(a, self.sim.time.now_s)

    def moveL(self, pose: list[float], speed: float = 0.25, acceleration: float = 1.2,
              asynchronous: bool = False) -> bool:
        """A straight line (position) with the orientation turned uniformly, at ``speed``. Blocking: the simulated
        clock advances by the move's duration. ``asynchronous``: returns at once; each
        :meth:`getAsyncOperationProgressEx` poll advances the clock (and the arm along the line) by one control
        period, and an armed RTDE watchdog (:meth:`setWatchdog`) not kicked for longer than its period of
        simulated time shuts the control down, stopping the arm where it is, as the controller does."""
        self.sim.calls.append(("moveL", (list(pose), speed, acceleration, asynchronous)))
        arm = self.sim.sync()
        if arm.protective_stop_reason is not None or self.sim.control_shut_down:
            return False
        T0, T1 = arm.T_base_tool(), pose_from_vector(pose)
        distance = float(np.linalg.norm(T1[:3, 3] - T0[:3, 3]))
        angle = float(np.linalg.norm(so3_log(T0[:3, :3].T @ T1[:3, :3])))
        duration = max(distance / speed, angle / max(speed * 4, 1e-6), arm.config.control_period_s)
        n = max(int(np.ceil(duration / arm.config.control_period_s)), 1)
        w = so3_log(T0[:3, :3].T @ T1[:3, :3])
        q = arm.q_rad
        path = []
        for k in range(1, n + 1):
            s = k / n
            T = make_pose(T0[:3, :3] @ so3_exp(w * s), T0[:3, 3] + s * (T1[:3, 3] - T0[:3, 3]))
            q = inverse_kinematics(T, q).q_rad
            path.append(q)
        if asynchronous:
            self._path, self._period_s = path, duration / n
            return True
        self._go(q, duration)
        return True

    def _go(self, q: np.ndarray, dt_s: float) -> None:
        arm = self.sim.arm
        arm.q_rad = q
        arm.xd_base = np.zeros(6)
        self.sim.time.now_s += dt_s
        arm.t_s = self.sim.time.now_s

    def getAsyncOperationProgressEx(self) -> _AsyncStatus:
        """Whether the asynchronous move runs; each call advances it one control period (see :meth:`moveL`)."""
        path = getattr(self, "_path", [])
        if path:
            self._go(path.pop(0), self._period_s)
            hz = self.sim.watchdog_min_hz
            if hz and self.sim.time.now_s - self.sim.last_kick_s > 1.0 / hz:
                self.sim.control_shut_down = True
                self.sim.calls.append(("watchdog expired", (self.sim.time.now_s,)))
                self._path = []
        return _AsyncStatus(bool(getattr(self, "_path", [])))

    def stopL(self, a: float = 10.0, asynchronous: bool = False) -> None:
        self.sim.calls.append(("stopL", (a, asynchronous)))
        self._path = []

    def stopScript(self) -> None:
        self.sim.calls.append(("stopScript", ()))

    def setWatchdog(self, min_frequency: float = 10.0) -> bool:
        self.sim.calls.append(("setWatchdog", (min_frequency,)))
        self.sim.watchdog_min_hz = min_frequency
        self.sim.last_kick_s = self.sim.time.now_s
        return True

    def kickWatchdog(self) -> bool:
        self.sim.calls.append(("kickWatchdog", ()))
        self.sim.last_kick_s = self.sim.time.now_s
        return True

    def triggerProtectiveStop(self) -> bool:
        self.sim.calls.append(("triggerProtectiveStop", ()))
        self.sim.sync().protective_stop("triggered by the program")
        return True

    def isProgramRunning(self) -> bool:
        return True

    def isConnected(self) -> bool:
        return True

    def disconnect(self) -> None:
        self.sim.calls.append(("disconnect", ()))


class FakeRTDEReceive:
    def __init__(self, sim: FakeRTDE) -> None:
        self.sim = sim

    def getActualTCPPose(self) -> list[float]:
        return pose_vector(self.sim.sync().T_base_tool())

    def getActualQ(self) -> list[float]:
        return self.sim.sync().q_rad.tolist()

    def getActualTCPSpeed(self) -> list[float]:
        return self.sim.sync().xd_base.tolist()

    def isProtectiveStopped(self) -> bool:
        return self.sim.sync().protective_stop_reason is not None

    def isEmergencyStopped(self) -> bool:
        return False

    def getSafetyMode(self) -> int:
        return 3 if self.isProtectiveStopped() else 1

    def getTimestamp(self) -> float:
        return self.sim.time.now_s

    def isConnected(self) -> bool:
        return True

    def disconnect(self) -> None:
        self.sim.calls.append(("disconnect", ()))


class FakeRTDEIO:
    def __init__(self, sim: FakeRTDE) -> None:
        self.sim = sim

    def setStandardDigitalOut(self, output_id: int, signal_level: bool) -> bool:
        self.sim.calls.append(("setStandardDigitalOut", (output_id, signal_level)))
        self.sim.digital_out[int(output_id)] = bool(signal_level)
        return True

    def isConnected(self) -> bool:
        return True

    def disconnect(self) -> None:
        self.sim.calls.append(("disconnect", ()))
