"""A simulated UR5e controller: joint state integrated at the controller's 500 Hz, driven by ``speedL``.

What it models of the real controller: ``speedL(xd, acceleration)`` takes the TCP's linear velocity (m/s)
and angular velocity (rad/s), both in base axes; the TCP accelerates towards it at ``acceleration`` (m/s^2,
and the same number in rad/s^2 for the rotation, as URScript's ``aRot`` default) and keeps that speed until
the next command; ``speedStop(a)`` decelerates to rest. A command takes effect ``command_latency_s`` after it
is sent. Joint speeds beyond the joint limit slow the whole motion down (the direction is kept); a joint past
its position limit, or a configuration near a singularity, triggers a *protective stop*: the arm halts and
ignores commands until it is reset, and says why.

Time is explicit: the arm moves only in :meth:`SimulatedUR5e.advance_to` (simulated seconds), so a simulated
run is deterministic and a fake RTDE client can drive it from any clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, RobotError
from ..geometry import make_pose, so3_exp
from .ur5e import (
    UR5E_HOME_Q_RAD,
    UR5E_JOINT_LIMIT_RAD,
    UR5E_JOINT_SPEED_LIMIT_RAD_S,
    forward_kinematics,
    jacobian,
    min_singular_value,
)


@dataclass(frozen=True)
class ArmSimConfig:
    """The simulated controller. ``command_latency_s``: from sending a command to the arm acting on it (a
    real UR over RTDE: 2-10 ms, more with a busy network). ``min_singular_value``: the Jacobian's smallest
    singular value below which the arm protective-stops (mixed units, ~0.01-0.02 is where a UR complains)."""

    control_period_s: float = 0.002
    command_latency_s: float = 0.004
    joint_speed_limit_rad_s: float = UR5E_JOINT_SPEED_LIMIT_RAD_S
    joint_limit_rad: float = UR5E_JOINT_LIMIT_RAD
    min_singular_value: float = 0.01

    def __post_init__(self) -> None:
        for name in ("control_period_s", "joint_speed_limit_rad_s", "joint_limit_rad", "min_singular_value"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"arm.{name}={v!r}: must be > 0")
        if not (np.isfinite(self.command_latency_s) and self.command_latency_s >= 0):
            raise ConfigError(f"arm.command_latency_s={self.command_latency_s!r}: must be >= 0 s")


@dataclass(frozen=True)
class _Command:
    t_effect_s: float
    xd_base: np.ndarray  # target TCP velocity (m/s, rad/s, base axes)
    acceleration: float  # m/s^2 (and rad/s^2)


class SimulatedUR5e:
    """Joint state ``q_rad`` of a UR5e at simulated time ``t_s``; see the module docstring."""

    def __init__(self, q_rad: np.ndarray = UR5E_HOME_Q_RAD, config: ArmSimConfig | None = None,
                 t_s: float = 0.0) -> None:
        self.config = config or ArmSimConfig()
        self.q_rad = np.asarray(q_rad, dtype=np.float64).copy()
        if self.q_rad.shape != (6,) or not np.all(np.isfinite(self.q_rad)):
            raise RobotError(f"joint angles must be 6 finite values, got {np.asarray(q_rad).tolist()}")
        self.t_s = float(t_s)
        self.xd_base = np.zeros(6)  # the TCP velocity the arm has now
        self._target = _Command(self.t_s, np.zeros(6), 1.0)
        self._pending: deque[_Command] = deque()
        self.protective_stop_reason: str | None = None
        self.speed_scaled_cycles = 0  # control cycles in which joint speed limits slowed the motion
        self.commands = 0

    # --- commands (what RTDE sends) ------------------------------------------------------------------------
    def speed_l(self, xd_base: np.ndarray, acceleration: float, t_sent_s: float) -> bool:
        """Queue a ``speedL`` sent at ``t_sent_s``; False (ignored) while protective-stopped."""
        xd = np.asarray(xd_base, dtype=np.float64).reshape(6)
        if not np.all(np.isfinite(xd)):
            raise RobotError(f"speedL needs 6 finite values, got {xd.tolist()}")
        if not (np.isfinite(acceleration) and acceleration > 0):
            raise RobotError(f"speedL acceleration={acceleration!r}: must be > 0")
        if self.protective_stop_reason is not None:
            return False
        self.advance_to(t_sent_s)
        self._pending.append(_Command(t_sent_s + self.config.command_latency_s, xd.copy(), float(acceleration)))
        self.commands += 1
        return True

    def speed_stop(self, deceleration: float, t_sent_s: float) -> bool:
        """Decelerate to rest at ``deceleration`` (m/s^2, rad/s^2)."""
        self.advance_to(t_sent_s)
        self._pending.append(_Command(t_sent_s + self.config.command_latency_s, np.zeros(6), float(deceleration)))
        return True

    def protective_stop(self, reason: str) -> None:
        """Halt now (a real arm brakes within a few ms) and ignore commands until :meth:`reset`."""
        self.protective_stop_reason = reason
        self.xd_base = np.zeros(6)
        self._target = _Command(self.t_s, np.zeros(6), 1.0)
        self._pending.clear()

    def reset(self) -> None:
        self.protective_stop_reason = None

    # --- state ---------------------------------------------------------------------------------------------
    def T_base_tool(self) -> np.ndarray:
        return forward_kinematics(self.q_rad)

    @property
    def moving(self) -> bool:
        return bool(np.any(self.xd_base) or np.any(self._target.xd_base) or self._pending)

    def advance_to(self, t_s: float) -> None:
        """Integrate the joints in control periods until simulated time ``t_s``."""
        cfg = self.config
        while self.t_s < t_s - 1e-12:
            dt = min(cfg.control_period_s, t_s - self.t_s)
            while self._pending and self._pending[0].t_effect_s <= self.t_s + 1e-12:
                self._target = self._pending.popleft()
            if self.protective_stop_reason is None:
                self._ramp(dt)
                self._move_joints(dt)
            self.t_s += dt

    def _ramp(self, dt: float) -> None:
        """Move the TCP velocity towards the target at the command's acceleration (linear and angular parts
        separately, each keeping its direction of change)."""
        step = self._target.acceleration * dt
        for part in (slice(0, 3), slice(3, 6)):
            delta = self._target.xd_base[part] - self.xd_base[part]
            n = np.linalg.norm(delta)
            self.xd_base[part] = self._target.xd_base[part] if n <= step else self.xd_base[part] + delta * (step / n)

    def _move_joints(self, dt: float) -> None:
        if not np.any(self.xd_base):
            return
        cfg = self.config
        if min_singular_value(self.q_rad) < cfg.min_singular_value:
            self.protective_stop(f"near a singularity at q={np.round(self.q_rad, 3).tolist()} rad")
            return
        qd = np.linalg.solve(jacobian(self.q_rad), self.xd_base)  # midpoint rule: second order in dt
        qd = np.linalg.solve(jacobian(self.q_rad + qd * (dt / 2)), self.xd_base)
        peak = float(np.max(np.abs(qd)))
        if peak > cfg.joint_speed_limit_rad_s:
            qd *= cfg.joint_speed_limit_rad_s / peak
            self.speed_scaled_cycles += 1
        q_new = self.q_rad + qd * dt
        if np.any(np.abs(q_new) > cfg.joint_limit_rad):
            joint = int(np.argmax(np.abs(q_new) - cfg.joint_limit_rad))
            self.protective_stop(f"joint {joint} at {np.rad2deg(q_new[joint]):.1f} deg beyond its limit")
            return
        self.q_rad = q_new


def T_base_tool_after_speedl(T_base_tool: np.ndarray, xd_base: np.ndarray, dt_s: float) -> np.ndarray:
    """Where an ideal controller holding ``speedL(xd_base)`` for ``dt_s`` puts the tool: the TCP origin moves
    along the constant base-axes velocity, the orientation turns about the constant base-axes angular
    velocity (the reference the simulated arm is tested against)."""
    T = np.asarray(T_base_tool, dtype=np.float64)
    xd = np.asarray(xd_base, dtype=np.float64).reshape(6)
    return make_pose(so3_exp(xd[3:] * dt_s) @ T[:3, :3], T[:3, 3] + xd[:3] * dt_s)
