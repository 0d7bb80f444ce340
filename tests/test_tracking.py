"""Camera-rate servoing: the tracking servo on a simulated 30 fps camera with the compute latency counted,
the background detector, the verification of the tracked pose, and an occlusion."""

import numpy as np
import pytest

from dfbvs.config import apply_overrides, apply_preset
from dfbvs.servo import CorrespondenceSource, StepStatus
from dfbvs.sim.episode import EpisodeConfig, run_episode
from dfbvs.stop import EpisodeStatus

# deterministic: declared compute latency (20 ms) and detection time (0.3 s); ORB detections (fast, no torch)
DECLARED = ("servo.detection.features=orb", "timing.latency_s=0.02", "servo.command_latency_s=0.02",
            "servo.detection_latency_s=0.3", "start.offset_mm=20", "start.offset_deg=3")


def tracking_config(*overrides: str) -> EpisodeConfig:
    return apply_overrides(apply_preset(EpisodeConfig(), "tracking"), (*DECLARED, *overrides))


@pytest.mark.slow
def test_tracking_at_30fps_with_latency_converges_with_few_detections():
    cycles = []
    r = run_episode(tracking_config("stop.max_iterations=240"), progress=cycles.append)
    assert r.status is EpisodeStatus.CONVERGED, r.summary()
    assert r.final_translation_error_mm < 1.0 and r.final_rotation_error_deg < 0.1, r.summary()
    stamps = [c.frame.timestamp_s for c in cycles]
    assert np.allclose(np.diff(stamps) * 30, np.round(np.diff(stamps) * 30))  # frames of a 30 fps camera
    assert cycles[0].step.status is StepStatus.NOT_LOCKED and not np.any(cycles[0].step.v_camera)
    assert cycles[-1].step.source is CorrespondenceSource.TRACKING
    stats = r.servo_stats
    assert stats["acquisitions"] == 1 and stats["losses"] == 0 and stats["tracked_cycles"] > len(cycles) / 2
    assert stats["detections"] < len(cycles) / 5, (stats, len(cycles))  # one detection per ~9 frames
    assert np.isfinite(r.time_to_goal_s) and r.time_to_goal_s < stamps[-1], r.summary()


def test_a_run_that_does_not_converge_reports_its_last_step_status():
    """Three frames, the first detection still running (0.3 s): a timeout whose result says the servo was waiting
    for a lock (``dfbvs sim`` prints it), not only "timeout"."""
    r = run_episode(tracking_config("stop.max_iterations=3"))
    assert r.status is EpisodeStatus.TIMEOUT and r.final_step_status == "not_locked", r.summary()
    assert "no detection confirmed" in r.summary()["final_reason"]


def test_a_detection_that_disagrees_holds_still_until_a_second_one_decides():
    """Tracking that drifted onto a wrong pose is caught by the next detection: the servo is not sure of its lock
    and holds still (zero twist) until a second detection agrees with the first, whose pose then replaces the
    tracked one, carried forward through the motion tracked since its frame; a second detection that agrees with
    the track instead ends the dispute and tracking goes on. ``hold_on_dispute=false``: corrected at once."""
    from dfbvs.camera import Camera
    from dfbvs.geometry import inverse, make_pose, se3_exp, transform_points
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig
    from dfbvs.tracking import Detection, TrackingServo

    render = render_target(load_builtin("bracket"), Camera.default().rescaled(640, 480), GoalConfig().T_object_camera())
    T_true_then = make_pose(t=[0.004, -0.002, 0.01])  # T_current_target at the detection's frame, t = 1.0 s
    motion = se3_exp([0.001, 0.0, 0.0, 0.0, 0.0, 0.002])  # what tracking measured between then and now
    T_drifted_then = se3_exp([0.003, 0.0, 0.0, 0.0, 0.02, 0.0]) @ T_true_then  # 3 mm and 1.1 deg off

    def drifted(*overrides):
        servo = TrackingServo(apply_overrides(tracking_config().servo, overrides), render)
        servo.T_current_target = motion @ T_drifted_then
        servo._established = True
        servo._history = {1.0: T_drifted_then, 1.5: T_drifted_then}
        return servo

    servo = drifted("hold_on_dispute=false")
    points = servo.target.points_camera_goal_m[:40]
    seen = servo.target.camera.project(transform_points(T_true_then, points))  # where the detector saw them
    servo._use_detection(Detection(1.0, T_true_then, seen, points, 0.25))
    assert servo.stats["corrections"] == 1
    np.testing.assert_allclose(servo.T_current_target, motion @ T_true_then, atol=1e-9)  # carried forward
    servo._history = {2.0: T_true_then}  # tracking agrees with the detection: kept as it is
    servo.T_current_target = motion @ T_true_then
    servo._use_detection(Detection(2.0, inverse(motion) @ T_true_then, seen, points, 0.25))
    assert servo.stats["corrections"] == 1 and np.allclose(servo.T_current_target, motion @ T_true_then)
    servo.close()

    servo = drifted()  # the default: one detection against the track is a dispute, not a correction
    servo._use_detection(Detection(1.0, T_true_then, seen, points, 0.25))
    assert servo.stats["corrections"] == 0 and servo.stats["disputes"] == 1 and servo._disputed is not None
    np.testing.assert_allclose(servo.T_current_target, motion @ T_drifted_then)  # untouched
    servo.T_current_target, servo._pose_time_s = se3_exp([0.0005, 0, 0, 0, 0.001, 0]), 1.2  # near the goal render
    step = servo._track(render.rgb, 1.2, {})
    assert step is not None and step.status is StepStatus.NOT_LOCKED and not np.any(step.v_camera), step
    assert "disagrees" in step.reason
    servo.T_current_target = motion @ T_drifted_then
    servo._use_detection(Detection(1.5, T_true_then, seen, points, 0.25))  # a second detection agrees with the first
    assert servo.stats["corrections"] == 1 and servo._disputed is None
    np.testing.assert_allclose(servo.T_current_target, motion @ T_true_then, atol=1e-9)
    servo.close()

    servo = drifted()  # a dispute that the next detection settles in the track's favour
    servo._use_detection(Detection(1.0, T_true_then, seen, points, 0.25))
    track_seen = servo.target.camera.project(transform_points(T_drifted_then, points))
    servo._use_detection(Detection(1.5, T_drifted_then, track_seen, points, 0.25))
    assert servo._disputed is None and servo.stats["corrections"] == 0
    np.testing.assert_allclose(servo.T_current_target, motion @ T_drifted_then)
    servo._use_detection(Detection(1.0, make_pose(t=[0.05, 0.0, 0.0]), seen, points, 0.25))  # two wrong ones that
    servo._use_detection(Detection(1.5, make_pose(t=[-0.05, 0.0, 0.0]), seen, points, 0.25))  # disagree: hold on
    assert servo._disputed is not None and servo.stats["corrections"] == 0 and servo.stats["disputes"] == 3
    servo.close()


def test_acquisition_waits_for_two_detections_that_agree():
    """A detection's pose drives only when the previous detection, carried forward through the motion commanded
    since, measured the same pose: a false lock on a feature-poor part gives poses that do not agree, and its
    held twist drove a camera 77 mm away (docs/parts.md)."""
    from dfbvs.camera import Camera
    from dfbvs.errors import ConfigError
    from dfbvs.geometry import make_pose, se3_exp
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig
    from dfbvs.tracking import Detection, TrackerConfig, TrackingServo

    with pytest.raises(ConfigError, match="confirm_detections=3"):
        TrackerConfig(confirm_detections=3)
    assert tracking_config().servo.confirm_by_tracking  # the default: a detection or a tracked cycle confirms
    config = tracking_config("servo.confirm_by_tracking=false").servo  # the two-detection rule alone
    render = render_target(load_builtin("bracket"), Camera.default().rescaled(640, 480), GoalConfig().T_object_camera())
    servo = TrackingServo(config, render)
    empty, T = np.zeros((0, 2)), make_pose(t=[0.01, -0.02, 0.03])

    def detection(t_s, pose):
        return Detection(t_s, pose, empty, np.zeros((0, 3)), 0.2)

    servo._use_detection(detection(1.0, T))  # the first: nothing to agree with, hold still
    assert servo._coarse is None and servo.T_current_target is None and servo.stats["unconfirmed"] == 1
    step = servo._coarse_step(1.0, {})
    assert step.status is StepStatus.NOT_LOCKED and not np.any(step.v_camera)
    servo._use_detection(detection(1.15, None))  # a detection that found nothing in between says nothing against
    servo._use_detection(detection(1.3, se3_exp([0.001, 0, 0, 0, 0.002, 0]) @ T))  # 1 mm, 0.1 deg: the same
    assert servo._coarse is not None and servo.T_current_target is not None
    servo._use_detection(detection(1.6, make_pose(t=[0.05, -0.02, 0.03])))  # 40 mm elsewhere: a false lock
    assert servo._coarse is None and servo.T_current_target is None and servo.stats["unconfirmed"] == 2
    servo._use_detection(detection(1.9, se3_exp([0, 0, 0, 0.1, 0, 0]) @ make_pose(t=[0.05, -0.02, 0.03])))
    assert servo._coarse is None, "5.7 deg apart: not the same pose"

    servo.close()
    once = TrackingServo(apply_overrides(config, ("confirm_detections=1",)), render)
    once._use_detection(detection(1.0, T))
    assert once._coarse is not None
    once.close()

    # a tracked cycle from the unconfirmed pose is the second measurement when confirm_by_tracking: the goal
    # frame's patches align onto the detection's (right) pose and the servo moves on; from a pose 40 mm off
    # they do not, and it holds still
    probe = TrackingServo(apply_overrides(config, ("confirm_by_tracking=true",
                                                   "provisional_tracked_confirmation=true")), render)
    probe._use_detection(detection(1.0, se3_exp([0.0005, 0, 0, 0, 0.001, 0])))
    assert probe._coarse is None and probe._probing and probe.stats["unconfirmed"] == 1
    step = probe._track(render.rgb, 1.0, {})
    assert step is not None and step.ok and probe.stats["confirmed_by_tracking"] == 1 and probe._established
    assert probe.stats["acquisitions"] == 1 and probe._provisional  # until a detection agrees with the track
    probe._use_detection(detection(0.5, make_pose(t=[0.04, 0.0, 0.0])))  # a frame from before the track: no say
    assert probe._established and probe._provisional
    probe._use_detection(detection(1.0, se3_exp([0.001, 0, 0, 0, 0.002, 0])))  # 1 mm, 0.1 deg: trusted
    assert probe._established and not probe._provisional and probe.stats["provisional_dropped"] == 0
    # a track confirmed by its own tracked cycle that the next detection contradicts: dropped, and from then on
    # only a second detection confirms (a smooth part's patches slid onto a wrong detection's pose, docs/parts.md)
    probe.reset()
    probe._use_detection(detection(1.0, se3_exp([0.0005, 0, 0, 0, 0.001, 0])))
    assert probe._track(render.rgb, 1.0, {}).ok and probe._provisional
    probe._use_detection(detection(1.0, make_pose(t=[0.04, 0.0, 0.0])))  # 40 mm elsewhere
    assert not probe._established and probe.T_current_target is None and probe.stats["provisional_dropped"] == 1
    step = probe._coarse_step(1.1, {})
    assert step.status is StepStatus.NOT_LOCKED and not np.any(step.v_camera)
    probe._use_detection(detection(1.2, se3_exp([0.0005, 0, 0, 0, 0.001, 0])))  # unconfirmed: no tracked probe now
    assert not probe._probing and probe.T_current_target is None and probe.stats["unconfirmed"] == 2
    probe._use_detection(detection(1.4, se3_exp([0.0007, 0, 0, 0, 0.001, 0])))  # a second detection agrees
    assert probe._coarse is not None and probe.T_current_target is not None
    probe.reset()
    assert probe._confirm_by_tracking  # a new episode trusts tracked confirmations again
    probe._use_detection(detection(2.0, make_pose(t=[0.04, 0.0, 0.0])))
    step = probe._track(render.rgb, 2.0, {}) or probe._coarse_step(2.0, {})
    assert not step.ok and not np.any(step.v_camera) and probe.T_current_target is None
    assert probe.stats["confirmed_by_tracking"] == 0 and not probe._established
    probe.close()
    assert not tracking_config().servo.provisional_tracked_confirmation  # measured, not adopted (docs/parts.md)
    trusting = TrackingServo(apply_overrides(config, ("confirm_by_tracking=true",)), render)
    trusting._use_detection(detection(1.0, se3_exp([0.0005, 0, 0, 0, 0.001, 0])))
    assert trusting._track(render.rgb, 1.0, {}).ok and not trusting._provisional  # the default: trusted at once
    trusting._use_detection(detection(1.0, make_pose(t=[0.04, 0.0, 0.0])))
    assert trusting._established and trusting.stats["disputes"] == 1  # a dispute (hold_on_dispute), not a drop
    trusting.close()


def test_an_unverified_track_moves_only_so_far_and_disagreeing_detections_make_the_target_unreliable():
    """A track confirmed by its own tracked cycle drives the camera at most ``unverified_motion_*`` from where it was
    confirmed, then holds still until a detection agrees with it (on the smooth housing such a track drove ~20 mm
    before any detection could dispute it, docs/parts.md). A target whose detections keep disagreeing with its
    established tracks is unreliable: zero twist for good, with a reason, and the run ends lost."""
    from dfbvs.camera import Camera
    from dfbvs.errors import ConfigError
    from dfbvs.geometry import make_pose, se3_exp, transform_points
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig
    from dfbvs.stop import StopConfig, StopMonitor
    from dfbvs.tracking import Detection, TrackerConfig, TrackingServo

    with pytest.raises(ConfigError, match="unreliable_disagreements=9"):
        TrackerConfig(unreliable_disagreements=9)
    with pytest.raises(ConfigError, match="-0.1"):
        TrackerConfig(unverified_motion_ratio=-0.1)
    render = render_target(load_builtin("bracket"), Camera.default().rescaled(640, 480), GoalConfig().T_object_camera())
    servo = TrackingServo(tracking_config().servo, render)
    near = se3_exp([0.0005, 0, 0, 0, 0.001, 0])
    points = servo.target.points_camera_goal_m[:40]
    seen = servo.target.camera.project(transform_points(near, points))
    servo._use_detection(Detection(1.0, near, seen, points, 0.2))  # the first: a tracked cycle may confirm it
    assert servo._probing
    first = servo._track(render.rgb, 1.0, {})
    assert first is not None and first.ok and servo._established and servo._unverified
    servo._commands.append((1.0, np.array([0.05, 0.0, 0.0, 0.0, 0.0, 0.0]), 0.0))  # 5 cm/s along x for 0.5 s
    servo.T_current_target, servo._pose_time_s = near, 1.5  # (tracking followed it: the same view at 1.5 s)
    held = servo._track(render.rgb, 1.5, {})
    assert held is not None and held.status is StepStatus.NOT_LOCKED and not np.any(held.v_camera), held
    assert "25.0 mm" in held.reason and "no detection agreeing" in held.reason and servo.stats["unverified_holds"] == 1
    servo._use_detection(Detection(1.5, near, seen, points, 0.2))  # computed on a tracked frame, agrees: verified
    assert not servo._unverified
    servo.T_current_target, servo._pose_time_s = near, 1.6
    free = servo._track(render.rgb, 1.6, {})
    assert free is not None and free.ok and np.any(free.v_camera), free
    servo.close()
    unlimited = TrackingServo(apply_overrides(tracking_config().servo, ("unverified_motion_ratio=0",
                                                                         "unverified_motion_deg=0")), render)
    unlimited._use_detection(Detection(1.0, near, seen, points, 0.2))
    assert unlimited._track(render.rgb, 1.0, {}).ok
    unlimited._commands.append((1.0, np.array([0.05, 0.0, 0.0, 0.0, 0.0, 0.0]), 0.0))
    unlimited.T_current_target, unlimited._pose_time_s = near, 1.5
    assert unlimited._track(render.rgb, 1.5, {}).ok  # the limit off: the track drives on
    unlimited.close()

    # detections before a track do not count (a small part's far detections disagree with each other); four of the
    # last eight detections checked against an established track disagreeing with it (the housing: 4-15 disputes an
    # episode, textured parts none) make the target unreliable
    servo = TrackingServo(apply_overrides(tracking_config().servo, ("confirm_by_tracking=false",)), render)
    for k, x_m in enumerate([0.0, 0.04, 0.0, 0.05, -0.05, 0.05]):  # five disagreeing in a row, before any track
        servo._use_detection(Detection(1.0 + 0.3 * k, make_pose(t=[x_m, 0.0, 0.03]), seen, points, 0.2))
    assert not servo._unreliable and len(servo._disagreed) == 0
    T_track = make_pose(t=[0.0, 0.0, 0.03])
    servo._established, servo.T_current_target, servo._pose_time_s = True, T_track, 3.0
    servo._history = {3.0 + 0.1 * k: T_track for k in range(8)}
    on_track = servo.target.camera.project(transform_points(T_track, points))
    off_track = servo.target.camera.project(transform_points(make_pose(t=[0.01, 0.0, 0.03]), points))  # ~20 px off
    for k, uv in enumerate([on_track, off_track, off_track, on_track, off_track]):
        servo._use_detection(Detection(3.0 + 0.1 * k, T_track, uv, points, 0.2))
        assert not servo._unreliable, k
    servo._use_detection(Detection(3.5, T_track, off_track, points, 0.2))
    assert servo._unreliable and servo.stats["unreliable"] == 1 and servo.stats["disputes"] >= 1
    monitor = StopMonitor(StopConfig(lost_cycles=10))
    for k in range(10):
        step = servo.step(render.rgb, 4.0 + k / 30)
        assert step.status is StepStatus.UNRELIABLE and not np.any(step.v_camera), step
        assert "4 of the last 6 detections checked against the track disagreed" in step.reason
        status = monitor.update(step)
    assert status is EpisodeStatus.LOST
    servo.reset()
    assert not servo._unreliable and servo.step(render.rgb, 5.0).status is not StepStatus.UNRELIABLE
    servo.close()


def test_the_coarse_phase_closes_the_loop_on_the_predicted_pose():
    """Far from the goal (tracking does not lock) each frame's twist comes from the latest detection's pose carried
    forward through the motion commanded since: over 2 s with no new detection the camera closes in on the goal
    at the camera's rate without overshooting, where the old rule (the detection's own twist held until the next
    detection) keeps driving the way it pointed at the detection's frame and passes the goal."""
    from dfbvs.camera import Camera
    from dfbvs.control import ControlInput
    from dfbvs.geometry import inverse, pose_error, se3_exp, transform_points
    from dfbvs.matching import Correspondences
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.servo import ServoStep
    from dfbvs.sim.episode import GoalConfig
    from dfbvs.tracking import Detection, TrackingServo

    render = render_target(load_builtin("bracket"), Camera.default().rescaled(640, 480), GoalConfig().T_object_camera())
    T_start = se3_exp([0.02, -0.01, 0.015, 0.03, -0.05, 0.08])  # 27 mm and 5.6 deg from the goal (T = identity)
    dt = 1.0 / 30

    def run(coarse_from_prediction: bool) -> list[float]:
        flag = f"coarse_from_prediction={str(coarse_from_prediction).lower()}"
        config = apply_overrides(tracking_config().servo, (flag,))
        servo = TrackingServo(config, render)
        # the detection's own step: the law's twist on its frame, which the old rule holds
        t = servo.target
        p = transform_points(T_start, t.points_camera_goal_m)
        held = servo.law(ControlInput(xy=p[:, :2] / p[:, 2:3], xy_star=t.xy_star, Z_star_m=t.Z_star_m,
                                      points_target_m=t.points_camera_goal_m, T_current_target=T_start))
        step = ServoStep(v_camera=held.v_camera, status=StepStatus.OK, correspondences=Correspondences.empty(),
                         all_matches=Correspondences.empty(), mean_error_px=1.0, tracking_mode=False, timings_ms={})
        servo._coarse = Detection(0.0, T_start, np.zeros((0, 2)), np.zeros((0, 3)), 0.2, step)
        T_true, errors = T_start, []
        for k in range(60):
            out = servo._coarse_step(k * dt, {})
            assert out.ok and out.source is CorrespondenceSource.DETECTION
            if coarse_from_prediction:  # the detection's measured error once, then no new measurement
                assert out.mean_error_px == 1.0 if k == 0 else np.isnan(out.mean_error_px), (k, out.mean_error_px)
            servo._commands.append((k * dt, out.v_camera, 0.0))
            T_true = inverse(se3_exp(out.v_camera * dt)) @ T_true  # the camera moves by the twist for one frame
            errors.append(pose_error(T_true, np.eye(4))[0] * 1e3)
        servo.close()
        return errors

    predicted, held = run(True), run(False)
    assert predicted[-1] < 0.2 * predicted[0], predicted  # > 5x closer after 2 s at 30 fps, no new detection
    assert np.all(np.diff(predicted) <= 1e-9), "the error never grows"
    assert held[-1] > predicted[-1] and min(held) < held[-1], "the held twist overshoots"


@pytest.mark.slow
def test_occlusion_holds_still_then_converges():
    """A plate covers the whole object from 0.8 s to 1.8 s: the servo loses the lock, commands zero velocity
    while the object is hidden, re-acquires after, and converges."""
    cycles = []
    r = run_episode(tracking_config("occlusion.start_s=0.8", "occlusion.duration_s=1.0", "stop.max_iterations=240"),
                    progress=cycles.append)
    hidden = [c for c in cycles if 1.2 <= c.frame.timestamp_s <= 1.6]  # the plate covers everything
    assert hidden and all(c.step.status is not StepStatus.OK and not np.any(c.step.v_camera) for c in hidden)
    pose_mm = [c.extras["translation_error_mm"] for c in hidden]
    assert max(pose_mm) - min(pose_mm) < 1e-9, pose_mm  # held still
    # while the plate comes and goes, no twist beyond what the loop commanded before it (a partial view is
    # not a lock to trust: measured 0.14 m/s on 19 points before the inlier-fraction rule)
    speed = [np.linalg.norm(c.step.v_camera) for c in cycles]
    before = max(s for c, s in zip(cycles, speed) if c.frame.timestamp_s < 0.8)
    assert max(s for c, s in zip(cycles, speed) if c.frame.timestamp_s >= 0.8) <= before
    assert r.servo_stats["losses"] >= 1 and r.servo_stats["reacquisitions"] >= 1, r.servo_stats
    assert r.status is EpisodeStatus.CONVERGED, r.summary()
    assert r.final_translation_error_mm < 1.0 and r.final_rotation_error_deg < 0.1, r.summary()


@pytest.mark.parametrize("edges", [True, False])
def test_a_tracked_cycle_near_the_goal_fits_the_outline_with_the_aligned_points(edges):
    """With ``detection.edges`` on, a tracked cycle near the goal fits the object's outline with the aligned
    points: it reports the outline points that fit, and its pose (from a prediction 0.5 mm / 0.1 deg off) is the
    true one to 0.2 mm / 0.05 deg; off, the cycle fits none."""
    from dfbvs.geometry import inverse, pose_error, se3_exp
    from dfbvs.render.scene import build_scene, render_scene
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import episode_mesh
    from dfbvs.tracking import TrackingServo

    config = tracking_config(f"servo.detection.edges.enabled={str(edges).lower()}")
    mesh = episode_mesh(config)
    T_object_goal = config.goal.T_object_camera(mesh, config.camera)
    servo = TrackingServo(config.servo, render_target(mesh, config.camera, T_object_goal))
    try:
        d = np.array([1e-3, -1e-3, 1e-3, 0.004, -0.003, 0.002])  # the camera 1.7 mm / 0.3 deg from the goal
        frame = render_scene(build_scene(mesh, config.scene, seed=config.seed), config.camera,
                             T_object_goal @ se3_exp(d)).rgb
        T_true = inverse(se3_exp(d))
        servo.T_current_target = se3_exp([5e-4, 0.0, 0.0, 0.0, 0.0017, 0.0]) @ T_true  # the prediction
        servo._pose_time_s, servo._established = 0.0, True
        step = servo._track(frame, 0.0, {})
        assert step is not None and step.ok and step.source is CorrespondenceSource.TRACKING
        t_m, r_rad = pose_error(step.T_current_target, T_true)
        if edges:
            assert step.n_edges > 100, step.n_edges
            assert t_m < 0.2e-3 and np.rad2deg(r_rad) < 0.05, (t_m, np.rad2deg(r_rad))
        else:
            assert step.n_edges == 0
        assert float(np.dot(step.v_camera[:3], d[:3])) < 0  # back toward the goal
    finally:
        servo.close()


@pytest.mark.parametrize("owed", [True, False])
def test_a_tracked_run_near_the_goal_waits_for_the_lighting_to_be_fitted(owed):
    """``relight_before_converging``: a tracked cycle near the goal on a target not yet relit that near is ``pending``
    (the stop rules do not converge on it); once the track is within ``relight_within`` the background job of that
    frame fits the lighting at the tracked pose before detecting, and nothing is pending after. Off, nothing is
    pending and the jobs only detect (the detections relight as they find due)."""
    from dfbvs.geometry import inverse, se3_exp
    from dfbvs.render.scene import build_scene, render_scene
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import episode_mesh
    from dfbvs.tracking import TrackingServo

    config = tracking_config("servo.detection.relight.directions=8",
                             f"servo.relight_before_converging={str(owed).lower()}")
    mesh = episode_mesh(config)
    T_object_goal = config.goal.T_object_camera(mesh, config.camera)
    servo = TrackingServo(config.servo, render_target(mesh, config.camera, T_object_goal, shading_basis_directions=8))
    scene = build_scene(mesh, config.scene, seed=config.seed)
    try:
        detect, fits_when_detecting = servo.deep.step, []

        def recording_detect(*args):
            fits_when_detecting.append(servo.deep.relight_fits)
            return detect(*args)

        servo.deep.step = recording_detect
        fits_after_far = -1
        # 6 mm from the goal (nearness ~0.5: near, not within relight_within), then 1.4 mm / 0.1 deg (~0.13)
        for k, d in enumerate((np.array([6e-3, 0.0, 0.0, 0.0, 0.0, 0.0]),
                               np.array([1e-3, -1e-3, 0.0, 0.002, 0.0, 0.0]))):
            frame = render_scene(scene, config.camera, T_object_goal @ se3_exp(d)).rgb
            servo.T_current_target, servo._pose_time_s, servo._established = inverse(se3_exp(d)), float(k), True
            step = servo.step(frame, float(k))
            assert step.ok and step.source is CorrespondenceSource.TRACKING
            if k == 0:  # (on the near frame the job may have fitted already: it runs beside the tracked cycle)
                assert ("not yet relit" in step.pending) == owed, step.pending
            servo.detector.close()  # the job of this frame done
            if k == 0:
                fits_after_far = servo.deep.relight_fits
        # the far frame's job only detected (its detection may have relit, 6 mm out); the near one's fitted the
        # lighting at the tracked pose before detecting (off: it only detected)
        assert fits_when_detecting == [0, fits_after_far + (1 if owed else 0)]
        if owed:
            assert servo.deep.relit_nearness <= config.servo.relight_within
        step = servo.step(frame, 1.0 + 1.0 / 30.0)  # the next frame (the camera held still)
        assert step.ok and step.pending == ""
    finally:
        servo.close()
