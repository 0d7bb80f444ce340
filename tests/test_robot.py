"""The UR5e model, the twist conversion, the safety layer and the arm sink, against the simulated arm through
the fake RTDE clients (no robot needed)."""

from __future__ import annotations

import inspect
import os
import signal
import time

import numpy as np
import pytest

from dfbvs.errors import ConfigError, RobotError
from dfbvs.geometry import adjoint, integrate_body_twist, inverse, make_pose, pose_error, so3_exp, so3_log
from dfbvs.matching import Correspondences
from dfbvs.robot.arm_sim import ArmSimConfig, SimulatedUR5e, T_base_tool_after_speedl
from dfbvs.robot.convert import camera_twist_to_speedl, speedl_to_camera_twist
from dfbvs.robot.fake_rtde import FakeRTDE, SimTime
from dfbvs.robot.safety import SafetyConfig, SafetyLayer, stop_on_signals
from dfbvs.robot.sink import ArmSink
from dfbvs.robot.ur import URArm
from dfbvs.robot.ur5e import (
    UR5E_HOME_Q_RAD,
    forward_kinematics,
    inverse_kinematics,
    jacobian,
    pose_from_vector,
    pose_vector,
)
from dfbvs.runtime import Frame, run_servo_loop
from dfbvs.servo import ServoStep, StepStatus
from dfbvs.stop import EpisodeStatus, StopConfig, StopMonitor


def _random_pose(rng, t_scale=0.1):
    return make_pose(so3_exp(rng.normal(size=3)), rng.normal(size=3) * t_scale)


def _arm(q=UR5E_HOME_Q_RAD, latency_s=0.0, **safety):
    sim = FakeRTDE(SimulatedUR5e(q, ArmSimConfig(command_latency_s=latency_s)), SimTime())
    control, receive, io = sim.clients()
    return sim, URArm(receive, control, io, poll_s=0.0)


# --- kinematics -----------------------------------------------------------------------------------------------
def test_forward_kinematics_matches_published_zero_pose():
    # UR5e at all-zero joints: the arm stretched along -x (a2 + a3), the flange offset by d4 + d6 and d1 - d5.
    T = forward_kinematics(np.zeros(6))
    np.testing.assert_allclose(T[:3, 3], [-0.425 - 0.3922, -(0.1333 + 0.0996), 0.1625 - 0.0997], atol=1e-12)


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = UR5E_HOME_Q_RAD + rng.normal(scale=0.3, size=6)
        dq = rng.normal(size=6) * 1e-7
        T0, T1 = forward_kinematics(q), forward_kinematics(q + dq)
        twist = np.concatenate([T1[:3, 3] - T0[:3, 3], T0[:3, :3] @ so3_log(T0[:3, :3].T @ T1[:3, :3])])
        np.testing.assert_allclose(twist, jacobian(q) @ dq, atol=1e-12)


def test_inverse_kinematics_round_trip_and_refuses_unreachable():
    rng = np.random.default_rng(2)
    for _ in range(5):
        q = UR5E_HOME_Q_RAD + rng.normal(scale=0.2, size=6)
        T = forward_kinematics(q)
        q_ik = inverse_kinematics(T, UR5E_HOME_Q_RAD).q_rad
        t, r = pose_error(T, forward_kinematics(q_ik))
        assert t < 1e-8 and r < 1e-8
    with pytest.raises(RobotError, match="beyond the UR5e's reach"):
        inverse_kinematics(make_pose(np.eye(3), [1.2, 0.0, 0.3]))


def test_pose_vector_round_trip():
    T = _random_pose(np.random.default_rng(3))
    np.testing.assert_allclose(pose_from_vector(pose_vector(T)), T, atol=1e-12)
    with pytest.raises(RobotError, match="6 finite values"):
        pose_from_vector([0.1, 0.2, np.nan, 0, 0, 0])


# --- the twist conversion against the simulated arm ----------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_camera_twist_moves_camera_by_se3_exp_through_the_arm(seed):
    """Commanding v_camera for dt through the conversion, URArm and the fake controller moves the camera by
    se3_exp(v_camera dt). speedL holds the TCP velocity constant in base axes while a body twist turns with the
    body, so the two differ at second order: |w| |v| dt^2 / 2 bounds it."""
    rng = np.random.default_rng(seed)
    T_tool_camera = make_pose(so3_exp(rng.normal(size=3)), rng.normal(size=3) * 0.08)
    sim, arm = _arm(UR5E_HOME_Q_RAD + rng.normal(scale=0.2, size=6))
    sim.arm = SimulatedUR5e(sim.arm.q_rad, ArmSimConfig(command_latency_s=0.0, control_period_s=0.0005))
    v_camera = np.concatenate([rng.normal(size=3) * 0.03, rng.normal(size=3) * 0.1])
    dt = 0.02
    T_base_camera0 = arm.T_base_tool() @ T_tool_camera
    sim.arm.xd_base = camera_twist_to_speedl(v_camera, arm.T_base_tool(), T_tool_camera)  # already at speed
    arm.speed_l(sim.arm.xd_base, 1e6)
    sim.time.now_s += dt
    T_base_camera1 = arm.T_base_tool() @ T_tool_camera
    expected = integrate_body_twist(T_base_camera0, v_camera, dt)
    t_err, r_err = pose_error(expected, T_base_camera1)
    bound = np.linalg.norm(v_camera[3:]) * (np.linalg.norm(v_camera[:3]) + 0.2 * np.linalg.norm(v_camera[3:])) * dt**2
    assert t_err < bound + 1e-7, (t_err, bound)
    assert r_err < 1e-7
    # the trap: the adjoint to the base frame is not what speedL takes
    naive = adjoint(T_base_camera0) @ v_camera
    assert np.linalg.norm(naive[:3] - sim.arm.xd_base[:3]) > 1e-3


def test_conversion_inverse():
    rng = np.random.default_rng(9)
    T_bt, T_tc = _random_pose(rng), _random_pose(rng)
    v = rng.normal(size=6)
    np.testing.assert_allclose(speedl_to_camera_twist(camera_twist_to_speedl(v, T_bt, T_tc), T_bt, T_tc), v, atol=1e-12)
    with pytest.raises(RobotError, match="6 finite"):
        camera_twist_to_speedl([0, 0, np.inf, 0, 0, 0], T_bt, T_tc)


def test_simulated_arm_tracks_ideal_speedl_motion():
    arm = SimulatedUR5e(UR5E_HOME_Q_RAD, ArmSimConfig(command_latency_s=0.0))
    xd = np.array([0.02, -0.01, 0.015, 0.05, -0.1, 0.08])
    arm.xd_base = xd.copy()
    arm.speed_l(xd, 1.0, 0.0)
    T0 = arm.T_base_tool()
    arm.advance_to(0.2)
    t, r = pose_error(T_base_tool_after_speedl(T0, xd, 0.2), arm.T_base_tool())
    assert t < 1e-6 and r < 1e-6


def test_simulated_arm_latency_and_acceleration():
    arm = SimulatedUR5e(UR5E_HOME_Q_RAD, ArmSimConfig(command_latency_s=0.008))
    arm.speed_l([0.1, 0, 0, 0, 0, 0], 0.5, 0.0)
    arm.advance_to(0.008)
    assert np.allclose(arm.xd_base, 0)  # not acted on before the latency
    arm.advance_to(0.108)
    assert arm.xd_base[0] == pytest.approx(0.05, abs=1e-3)  # 0.5 m/s^2 for 0.1 s
    arm.speed_stop(1.0, 0.108)
    arm.advance_to(0.3)
    assert np.allclose(arm.xd_base, 0)


def test_simulated_arm_protective_stops_at_singularity_and_joint_limit():
    # wrist 2 at zero is a wrist singularity: rotating about the aligned wrist axes cannot be done
    arm = SimulatedUR5e(np.array([0.0, -1.9, 1.9, -1.571, 0.005, 0.0]), ArmSimConfig(command_latency_s=0.0))
    arm.speed_l([0.0, 0.0, 0.0, 0.0, 0.0, 0.2], 5.0, 0.0)
    arm.advance_to(0.5)
    assert arm.protective_stop_reason is not None and "singularity" in arm.protective_stop_reason
    assert arm.speed_l([0.01, 0, 0, 0, 0, 0], 1.0, 0.5) is False  # commands ignored while stopped
    q = UR5E_HOME_Q_RAD.copy()
    q[5] = 2 * np.pi - 0.01
    arm = SimulatedUR5e(q, ArmSimConfig(command_latency_s=0.0))
    w = forward_kinematics(q)[:3, 2] * 0.5  # turn about the flange axis: wrist 3 runs into its limit
    arm.speed_l([0, 0, 0, *w], 10.0, 0.0)
    arm.advance_to(0.5)
    assert arm.protective_stop_reason is not None and "joint 5" in arm.protective_stop_reason


# --- safety layer ----------------------------------------------------------------------------------------------
def test_safety_scales_speed_keeping_direction_and_bounds_acceleration():
    layer = SafetyLayer(SafetyConfig(max_linear_speed_m_s=0.1, max_angular_speed_rad_s=0.5,
                                     max_linear_accel_m_s2=1.0, max_angular_accel_rad_s2=5.0))
    T = forward_kinematics(UR5E_HOME_Q_RAD)
    cmd = layer.limit(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0]), T, 0.0)
    cmd = layer.limit(np.array([0.4, 0.0, 0.0, 0.0, 0.0, 0.4]), T, 1.0)  # 4x too fast linearly
    assert cmd.scaled and cmd.fault is None
    np.testing.assert_allclose(cmd.xd_base, [0.1, 0, 0, 0, 0, 0.1])
    cmd = layer.limit(np.array([-0.1, 0.0, 0.0, 0.0, 0.0, 0.0]), T, 1.01)  # reversal in 10 ms: 1 m/s^2 allows 0.01
    assert cmd.scaled
    assert np.linalg.norm(cmd.xd_base[:3] - [0.1, 0, 0]) == pytest.approx(0.01, rel=1e-6)


def test_safety_faults_on_workspace_and_nan():
    layer = SafetyLayer(SafetyConfig(workspace_min_m=(-0.5, -0.5, 0.46), workspace_max_m=(0.5, 0.5, 0.8)))
    T = forward_kinematics(UR5E_HOME_Q_RAD)  # TCP at z = 0.465
    assert layer.limit(np.zeros(6), T, 0.0).fault is None
    cmd = layer.limit(np.array([0, 0, -0.5, 0, 0, 0]), T, 0.1)  # heading down through the floor of the box
    assert cmd.fault is not None and "out of the workspace" in cmd.fault and not np.any(cmd.xd_base)
    outside = make_pose(np.eye(3), [0.0, 0.0, 0.3])
    assert "outside the workspace" in layer.limit(np.zeros(6), outside, 0.2).fault
    assert "non-finite" in layer.limit(np.array([np.nan] * 6), T, 0.3).fault
    with pytest.raises(ConfigError, match="workspace"):
        SafetyConfig(workspace_min_m=(0, 0, 1), workspace_max_m=(1, 1, 0.5))


# --- the sink in the run loop ------------------------------------------------------------------------------------
class _ConstantServo:
    """A servo that asks for a constant twist (or misbehaves on request) — the safety layer must not care."""

    def __init__(self, v_camera, raise_at=None, signal_at=None, signal_kind=signal.SIGTERM):
        self.v = np.asarray(v_camera, float)
        self.n = 0
        self.raise_at, self.signal_at, self.signal_kind = raise_at, signal_at, signal_kind

    def step(self, image, timestamp_s=float("nan")):
        self.n += 1
        if self.raise_at == self.n:
            raise RuntimeError("boom inside the servo")
        if self.signal_at == self.n:
            os.kill(os.getpid(), self.signal_kind)
        empty = Correspondences.empty()
        return ServoStep(self.v.copy(), StepStatus.OK, empty, empty, 1.0, False, {"total_ms": 1.0}, timestamp_s)

    def reset(self):
        pass


class _SimFrames:
    def __init__(self, sim, dt_s=0.05):
        self.sim, self.dt_s = sim, dt_s

    def grab(self):
        self.sim.time.now_s += self.dt_s
        return Frame(np.zeros((4, 4, 3), np.uint8), self.sim.time.now_s)


def _run(servo, sim, sink, max_iterations=20):
    monitor = StopMonitor(StopConfig(max_iterations=max_iterations, lost_cycles=1000))
    return run_servo_loop(_SimFrames(sim), servo, sink, monitor, probe=sink.probe)


def _sink(sim, arm, **kw):
    T_tool_camera = make_pose(np.eye(3), [0.0, 0.05, 0.1])
    return ArmSink(arm, T_tool_camera, clock=lambda: sim.time.now_s, **kw)


def test_sink_moves_camera_as_commanded_and_stops_at_end():
    sim, arm = _arm()
    sink = _sink(sim, arm, watchdog=False)
    T0 = sink.pose()
    v = np.array([0.01, 0.0, 0.0, 0.0, 0.0, 0.02])
    outcome = _run(_ConstantServo(v), sim, sink, max_iterations=10)
    assert outcome.status is EpisodeStatus.TIMEOUT
    T_camera0_camera1 = inverse(T0) @ sink.pose()
    assert T_camera0_camera1[0, 3] > 0.003  # moved along the camera's +x
    assert sim.calls[-1][0] == "speedStop"  # stopped on the way out
    assert sum(c[0] == "speedL" for c in sim.calls) == 9


def test_dry_run_sends_no_motion_at_all():
    sim, _ = _arm()
    _, receive, _ = sim.clients()
    arm = URArm(receive, control=None, io=None)
    sink = _sink(sim, arm, dry_run=True, watchdog=False)
    T0 = sink.pose()
    outcome = _run(_ConstantServo([0.01, 0, 0, 0, 0, 0]), sim, sink, max_iterations=5)
    assert outcome.status is EpisodeStatus.TIMEOUT and sink.last is not None and not sink.last.sent
    assert sim.calls == []  # no speedL, no speedStop: nothing was sent to the controller
    np.testing.assert_allclose(sink.pose(), T0)
    with pytest.raises(RobotError, match="dry run"):
        arm.speed_l(np.zeros(6), 1.0)


def test_protective_stop_ends_run_with_reason():
    sim, arm = _arm()
    sink = _sink(sim, arm, watchdog=False)
    servo = _ConstantServo([0.0, 0.0, 0.01, 0, 0, 0])
    original = servo.step

    def step(image, timestamp_s=float("nan")):
        if servo.n == 3:
            sim.arm.protective_stop("collision detected (test)")
        return original(image, timestamp_s)

    servo.step = step  # type: ignore[method-assign]
    outcome = _run(servo, sim, sink)
    assert outcome.status is EpisodeStatus.STOPPED and outcome.iterations <= 5
    assert sink.fault == "protective stop on the arm"


def test_workspace_violation_stops_the_arm():
    sim, arm = _arm()
    z = arm.T_base_tool()[2, 3]
    sink = _sink(sim, arm, watchdog=False, safety=SafetyConfig(workspace_min_m=(-0.9, -0.9, z - 0.01)))
    # the camera looks down with the tool: +z of the camera goes down in the base frame
    outcome = _run(_ConstantServo([0.0, 0.0, 0.05, 0, 0, 0]), sim, sink)
    assert outcome.status is EpisodeStatus.STOPPED
    assert "workspace" in sink.fault
    assert arm.T_base_tool()[2, 3] > z - 0.01
    assert sim.calls[-1][0] == "speedStop"


def test_exception_in_loop_stops_the_arm():
    sim, arm = _arm()
    sink = _sink(sim, arm, watchdog=False)
    with pytest.raises(RuntimeError, match="boom"):
        _run(_ConstantServo([0.01, 0, 0, 0, 0, 0], raise_at=4), sim, sink)
    assert sim.calls[-1][0] == "speedStop"
    sim.time.now_s += 1.0
    assert np.allclose(sim.sync().xd_base, 0)


def test_sigterm_and_sigint_stop_the_arm():
    for sig in (signal.SIGTERM, signal.SIGINT):
        sim, arm = _arm()
        sink = _sink(sim, arm, watchdog=False)
        servo = _ConstantServo([0.01, 0, 0, 0, 0, 0], signal_at=4, signal_kind=sig)
        with pytest.raises(KeyboardInterrupt), stop_on_signals(sink.stop):
            _run(servo, sim, sink)
        stops = [i for i, c in enumerate(sim.calls) if c[0] == "speedStop"]
        assert stops and stops[-1] == len(sim.calls) - 1


def test_watchdog_stops_arm_when_commands_stop():
    sim, arm = _arm()
    sink = ArmSink(arm, np.eye(4), SafetyConfig(watchdog_timeout_s=0.1), clock=time.monotonic)
    sink.apply(np.array([0.01, 0, 0, 0, 0, 0]))  # one command, then a frozen camera
    deadline = time.monotonic() + 3.0
    while sink.fault is None and time.monotonic() < deadline:
        time.sleep(0.02)
    sink.stop()
    assert sink.fault is not None and sink.fault.startswith("watchdog")
    assert any(c[0] == "speedStop" for c in sim.calls)
    assert sink.probe().end_with is EpisodeStatus.STOPPED


def test_fake_clients_have_the_real_ur_rtde_methods():
    rtde_control = pytest.importorskip("rtde_control")
    rtde_receive = pytest.importorskip("rtde_receive")
    rtde_io = pytest.importorskip("rtde_io")
    sim, _ = _arm()
    for fake, real in zip(sim.clients(), (rtde_control.RTDEControlInterface, rtde_receive.RTDEReceiveInterface,
                                          rtde_io.RTDEIOInterface)):
        for name, member in inspect.getmembers(type(fake), inspect.isfunction):
            if name.startswith("_"):
                continue
            assert hasattr(real, name), f"{type(fake).__name__}.{name} is not in {real.__name__}"
            doc = getattr(real, name).__doc__ or ""
            params = [p for p in inspect.signature(member).parameters if p != "self"]
            for p in params:  # pybind11 signatures name the arguments in the docstring (argN when unnamed)
                assert p in doc or "arg" in doc, f"{name}({p}) not in {doc.splitlines()[0]}"


# --- the grasp obeys the safety limits ------------------------------------------------------------------------
def test_the_grasp_moves_obey_the_workspace_box_and_the_speed_limit_and_refuse_a_long_approach():
    """The grasp's straight moves went past the workspace box and at the grasp's own speed (0.8 m/s against a
    0.1 m/s limit; a new user's review): they now obey the safety layer's limits, and an approach that is not the
    short move the standoff asks for is refused before anything moves."""
    from dfbvs.robot.grasp import GraspConfig, camera_goal_from_grasp, execute_grasp

    sim, arm = _arm()
    T_tool_camera = make_pose(np.eye(3), [0.0, 0.05, 0.1])
    T_base_tool = arm.T_base_tool()  # the converged tool; the grasp stands standoff ahead along its +z
    grasp = GraspConfig(approach_speed_m_s=0.8, approach_acceleration_m_s2=3.0)
    T_base_object = np.eye(4)
    T_object_tool_grasp = T_base_tool @ make_pose(np.eye(3), [0.0, 0.0, grasp.standoff_m])
    T_object_camera_goal = camera_goal_from_grasp(T_object_tool_grasp, T_tool_camera, grasp.standoff_m)
    safety = SafetyConfig(max_linear_speed_m_s=0.1, max_linear_accel_m_s2=0.5)
    done = execute_grasp(arm, T_tool_camera, inverse(T_base_object) @ T_object_camera_goal, T_object_tool_grasp,
                         grasp, safety=safety)
    moves = [c[1] for c in sim.calls if c[0] == "moveL"]
    assert len(moves) == 2 and all(speed == 0.1 and accel == 0.5 for _, speed, accel, _ in moves), moves
    assert np.linalg.norm(done.T_base_tool_reached[:3, 3] - T_object_tool_grasp[:3, 3]) < 1e-3

    sim, arm = _arm()  # a box whose floor is above the grasp: refused, nothing moves
    z_grasp = float(T_object_tool_grasp[2, 3])
    floor = SafetyConfig(workspace_min_m=(-0.9, -0.9, z_grasp + 0.01), workspace_max_m=(0.9, 0.9, 1.0))
    with pytest.raises(RobotError, match="grasp pose .* outside the workspace box"):
        execute_grasp(arm, T_tool_camera, T_object_camera_goal, T_object_tool_grasp, grasp, safety=floor)
    assert not any(c[0] == "moveL" for c in sim.calls)
    # the servo's last pose says the object is 5 cm off where it converged: a 17 cm approach is refused
    with pytest.raises(RobotError, match="approach would move the tool 1[67][0-9].[0-9] mm"):
        execute_grasp(arm, T_tool_camera, T_object_camera_goal, T_object_tool_grasp, grasp,
                      T_current_goal=make_pose(np.eye(3), [0.0, 0.0, 0.05]), safety=safety)
    assert not any(c[0] == "moveL" for c in sim.calls)


def test_safety_limits_outside_a_plausible_range_are_refused_naming_the_value():
    for name, value in (("max_linear_speed_m_s", 100.0), ("max_linear_accel_m_s2", 1e6),
                        ("stop_deceleration_m_s2", 0.001), ("watchdog_timeout_s", 60.0)):
        with pytest.raises(ConfigError, match=f"safety.{name}={value!r}: outside"):
            SafetyConfig(**{name: value})
    with pytest.raises(ConfigError, match="reaches beyond 2 m"):
        SafetyConfig(workspace_min_m=(-50.0, -50.0, 0.0), workspace_max_m=(50.0, 50.0, 50.0))
    from dfbvs.robot.grasp import GraspConfig

    with pytest.raises(ConfigError, match="grasp.lift_m=50"):
        GraspConfig(lift_m=50.0)
    layer = SafetyLayer(SafetyConfig(workspace_min_m=(0, 0, 0), workspace_max_m=(0.9, 0.9, 0.9)))
    fault = layer.limit(np.zeros(6), make_pose(np.eye(3), [-0.1, 0.1, 0.1]), 0.0).fault
    assert fault is not None and "box [0, 0, 0]..[0.9, 0.9, 0.9]" in fault and "np." not in fault, fault


def test_a_grasp_move_kicks_the_controllers_watchdog_which_is_armed_with_the_first_command():
    """The controller's RTDE watchdog was armed at connect, seconds before the first command (target render, goal
    preview), and the blocking grasp moves ran seconds with no kick: on a real controller it shuts the control down.
    It is now armed with the first motion command, and a move is sent asynchronously and waited for with a kick and a
    safety check every poll; the fake controller shuts down like the real one when not kicked."""
    sim, _ = _arm()
    control, receive, io = sim.clients()
    arm = URArm(receive, control, io, watchdog_min_hz=5.0, poll_s=0.0)
    assert not any(c[0] == "setWatchdog" for c in sim.calls)  # not armed before anything moves
    T0 = arm.T_base_tool()
    T1 = T0 @ make_pose(np.eye(3), [0.0, 0.0, 0.12])
    arm.move_l(T1, 0.05, 0.3)  # 2.4 s of simulated motion, 12 times the watchdog's 0.2 s
    assert sim.calls[0][0] == "setWatchdog" and sim.calls[1][0] == "moveL" and sim.calls[1][1][3] is True
    assert sum(c[0] == "kickWatchdog" for c in sim.calls) > 2.4 / 0.2 and not sim.control_shut_down
    assert np.linalg.norm(arm.T_base_tool()[:3, 3] - T1[:3, 3]) < 1e-3
    # a client that never kicks: the fake shuts the control down mid-move, and the move says so
    sim2, _ = _arm()
    control2, receive2, io2 = sim2.clients()
    silent = URArm(receive2, control2, io2, watchdog_min_hz=5.0, poll_s=0.0)
    silent.kick_watchdog = lambda: None  # type: ignore[method-assign]
    with pytest.raises(RobotError, match="mm from it"):
        silent.move_l(silent.T_base_tool() @ make_pose(np.eye(3), [0.0, 0.0, 0.12]), 0.05, 0.3)
    assert sim2.control_shut_down
    # an exception while the move runs (Ctrl-C) stops it before propagating
    sim3, arm3 = _arm()
    calls = {"n": 0}
    real_fault = arm3.fault

    def interrupted():
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("signal SIGINT")
        return real_fault()

    arm3.fault = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        arm3.move_l(arm3.T_base_tool() @ make_pose(np.eye(3), [0.0, 0.0, 0.12]), 0.05, 0.3)
    assert sim3.calls[-1][0] == "stopL"
