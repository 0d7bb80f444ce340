"""Bad input and wrong-but-plausible input (issue 16): frames that do not fit the camera, locks that are not
credible, empty or unframed targets, unbounded images and renders, scenes for 1 cm to 50 cm objects.

Each test failed before the change it pins (docs/robustness.md lists them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfbvs.camera import Camera
from dfbvs.errors import CalibrationError, ConfigError, DfbvsError, FrameError, PoseError, TargetError
from dfbvs.imaging import as_rgb_frame, read_image_rgb8
from dfbvs.servo import LockConfig, StepStatus, implausible_pose, implausible_twist


def _scene_frame(aliked_bracket, T=None):
    from dfbvs.render.scene import render_scene

    servo, scene, camera, T_goal = aliked_bracket
    return render_scene(scene, camera, T_goal if T is None else T).rgb


def _start_pose(camera, T_goal):
    from dfbvs.sim.episode import EpisodeConfig, start_pose

    return start_pose(EpisodeConfig(), camera, T_goal)


# --- 1. frames that do not fit the camera ------------------------------------------------------------------
def test_servo_refuses_a_frame_of_another_aspect(aliked_bracket):
    """A 640x360 frame given to a servo prepared for a 640x480 camera returned OK with a wrong twist."""
    servo = aliked_bracket[0]
    servo.reset()
    frame = _scene_frame(aliked_bracket)[60:420]
    with pytest.raises(FrameError, match=r"640x360 \(aspect 1.78\).*640x480 camera"):
        servo.step(frame)


@pytest.mark.parametrize("bad, match", [
    (None, "None"), ([[0, 1], [2, 3]], "list"), (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((240, 320, 2), np.uint8), "shape"), (np.zeros((240, 320, 3), np.float32), "dtype float32"),
    (np.zeros((240, 320, 3), np.int16), "dtype int16"), (np.zeros((240, 320, 3), bool), "dtype bool"),
    (np.zeros((4, 4, 3), np.uint8), "each side"),
])
def test_frames_that_are_not_images_are_frame_errors(bad, match):
    with pytest.raises(FrameError, match=match):
        as_rgb_frame(bad, Camera.default())


def test_grey_and_16_bit_frames_are_converted_not_clipped():
    grey = np.full((240, 320), 77, np.uint8)
    assert np.array_equal(as_rgb_frame(grey), np.full((240, 320, 3), 77, np.uint8))
    assert np.array_equal(as_rgb_frame(grey[:, :, None]), as_rgb_frame(grey))
    wide = np.array([[0, 257, 32768, 65535]], np.uint16).repeat(16, 0).repeat(4, 1)
    out = as_rgb_frame(wide)
    assert out.dtype == np.uint8 and out[0, ::4, 0].tolist() == [0, 1, 128, 255]
    rgba = np.zeros((240, 320, 4), np.uint8)
    assert as_rgb_frame(rgba).shape == (240, 320, 3)
    # the same camera at another resolution (same aspect) is accepted
    assert as_rgb_frame(np.zeros((480, 640, 3), np.uint8), Camera.default()).shape == (480, 640, 3)


def test_every_servo_checks_frames_the_same_way():
    from dfbvs.photometric import PhotometricConfig, PhotometricServo
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig

    render = render_target(load_builtin("bracket"), Camera.default(), GoalConfig().T_object_camera())
    servo = PhotometricServo(PhotometricConfig(), render)
    with pytest.raises(FrameError, match="320x180"):
        servo.step(np.zeros((180, 320, 3), np.uint8))
    with pytest.raises(FrameError, match="None"):
        servo.step(None)
    assert servo.step(np.zeros((480, 640), np.uint16)).v_camera.shape == (6,)  # grey 16-bit: converted


def test_tracking_servo_refuses_bad_frames_before_its_detector_sees_them():
    from dfbvs.config import apply_overrides, apply_preset
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import EpisodeConfig, GoalConfig
    from dfbvs.tracking import TrackingServo

    config = apply_overrides(apply_preset(EpisodeConfig(), "tracking"), ["servo.detection.features=orb"]).servo
    servo = TrackingServo(config, render_target(load_builtin("bracket"), Camera.default(),
                                                GoalConfig().T_object_camera()))
    try:
        with pytest.raises(FrameError, match="640x360"):
            servo.step(np.zeros((360, 640, 3), np.uint8), 0.0)
        with pytest.raises(FrameError, match="dtype float64"):
            servo.step(np.zeros((240, 320, 3)), 0.0)
        assert servo.detector.submitted == 0
    finally:
        servo.close()


# --- 2. a lock is OK only when credible ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mirrored", "noise", "other_object"])
def test_wrong_but_plausible_frames_give_no_twist(aliked_bracket, kind):
    """A mirrored frame returned OK with 6-8 inliers and a large twist; so did another object (6-9)."""
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.scene import SceneConfig, build_scene, render_scene

    servo, scene, camera, T_goal = aliked_bracket
    servo.reset()
    if kind == "mirrored":
        frame = np.ascontiguousarray(_scene_frame(aliked_bracket, _start_pose(camera, T_goal))[:, ::-1])
    elif kind == "noise":
        frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        frame = render_scene(build_scene(load_builtin("gear"), SceneConfig(), seed=0), camera, T_goal).rgb
    steps = [servo.step(frame) for _ in range(2)]  # (twice: a credible first lock would be confirmed by the second)
    for step in steps:  # refused by the lock's own checks, not merely waiting for a confirmation
        assert step.status not in (StepStatus.OK, StepStatus.UNCONFIRMED), (step.status, step.n_inliers)
        assert not np.any(step.v_camera) and step.reason


def test_a_genuine_start_frame_still_locks(aliked_bracket):
    servo, scene, camera, T_goal = aliked_bracket
    servo.reset()
    frame = _scene_frame(aliked_bracket, _start_pose(camera, T_goal))
    first, second = servo.step(frame), servo.step(frame)
    assert first.status is StepStatus.UNCONFIRMED and not np.any(first.v_camera) and "first lock" in first.reason
    assert second.ok and second.n_inliers >= servo.config.lock.min_inliers and np.any(second.v_camera)


def test_a_lock_moves_only_when_the_next_cycle_agrees(aliked_bracket):
    """Two cycles that measure different poses do not move the camera (a wrong lock on a feature-poor part
    disagrees from cycle to cycle); a lock that moved the camera is confirmed through the twist it commanded."""
    from dfbvs.geometry import se3_exp

    servo, scene, camera, T_goal = aliked_bracket
    servo.reset()
    T_a = _start_pose(camera, T_goal)
    T_b = T_a @ se3_exp(np.array([0.0, 0.0, 0.0, 0.0, 0.0, np.deg2rad(15.0)]))  # rolled 15 deg: another pose
    assert servo.step(_scene_frame(aliked_bracket, T_a), 0.0).status is StepStatus.UNCONFIRMED
    moved = servo.step(_scene_frame(aliked_bracket, T_b), 0.1)
    assert moved.status is StepStatus.UNCONFIRMED and not np.any(moved.v_camera) and "deg from" in moved.reason
    locked = servo.step(_scene_frame(aliked_bracket, T_b), 0.2)  # the camera held still: this one agrees
    assert locked.ok and np.any(locked.v_camera), locked.reason
    dt_s = 0.5  # the commanded twist executed for dt_s: the next frame's pose is where it carries the lock
    carried = servo.step(_scene_frame(aliked_bracket, T_b @ se3_exp(locked.v_camera * dt_s)), 0.2 + dt_s)
    assert carried.ok, carried.reason
    # the same frame claimed to come much later: the twist would have moved the camera beyond the tolerance
    servo.step(_scene_frame(aliked_bracket, T_b @ se3_exp(locked.v_camera * dt_s)), 0.2 + dt_s)
    late = servo.step(_scene_frame(aliked_bracket, T_b @ se3_exp(locked.v_camera * dt_s)), 0.2 + 40 * dt_s)
    assert late.status is StepStatus.UNCONFIRMED and not np.any(late.v_camera), late.reason


def test_lock_rules_pose_and_twist():
    cfg = LockConfig()
    pts = np.array([[0.0, 0.0, 0.2], [0.01, 0.0, 0.21], [0.0, 0.01, 0.2]])
    Z = pts[:, 2]
    assert implausible_pose(np.eye(4), pts, Z, cfg) == ""
    behind = np.diag([1.0, -1.0, -1.0, 1.0])  # turned 180 deg about x: the points end up behind the camera
    assert "behind the camera" in implausible_pose(behind, pts, Z, cfg)
    far = np.eye(4)
    far[2, 3] = 1.0  # 1.2 m for a 0.2 m goal depth: 6x
    assert "working range" in implausible_pose(far, pts, Z, cfg)
    assert "not a finite" in implausible_pose(np.full((4, 4), np.nan), pts, Z, cfg)
    assert implausible_twist(np.array([0.01, 0, 0, 0, 0, 0.1]), cfg) == ""
    assert "exceeds" in implausible_twist(np.array([1.0, 0, 0, 0, 0, 0]), cfg)
    assert "finite" in implausible_twist(np.array([np.nan, 0, 0, 0, 0, 0]), cfg)
    with pytest.raises(ConfigError):
        LockConfig(min_depth_ratio=2.0)


def test_a_law_whose_twist_is_beyond_the_bounds_is_not_ok(aliked_bracket):
    """The bound holds before any robot-side clamp: a law that returns a huge twist is refused."""
    from dfbvs.control import ControlOutput

    servo, scene, camera, T_goal = aliked_bracket
    servo.reset()
    law = servo.law
    servo.law = lambda inputs: ControlOutput(np.array([2.0, 0, 0, 0, 0, 0]), np.zeros(2), 1.0, False)  # type: ignore
    try:
        step = servo.step(_scene_frame(aliked_bracket, _start_pose(camera, T_goal)))
    finally:
        servo.law = law
    assert step.status is StepStatus.IMPLAUSIBLE and not np.any(step.v_camera) and "exceeds" in step.reason


def _write_png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def test_match_does_not_trust_random_noise_and_downscales_large_images(tmp_path):
    """Two random-noise images 'matched' with status OK (11-43 fundamental inliers); a large image ran the
    network at full size."""
    from typer.testing import CliRunner

    from dfbvs.cli import _register, app

    _register()
    rng = np.random.default_rng(3)
    a = _write_png(tmp_path / "a.png", rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8))
    b = _write_png(tmp_path / "b.png", rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    result = CliRunner().invoke(app, ["match", str(a), str(b), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "1280x960 downscaled to 640x480" in result.output
    report = json.loads((tmp_path / "out" / "matches.json").read_text())
    assert report["status"] == "too_few_inliers_to_trust", report["num_inliers"]
    assert report["working_current_size"] == [640, 480] and report["image_current_size"] == [1280, 960]
    assert "too_few_inliers_to_trust" in result.output


def test_match_refuses_images_beyond_the_limit(tmp_path):
    from typer.testing import CliRunner

    from dfbvs.cli import _register, app

    _register()
    big = _write_png(tmp_path / "big.png", np.zeros((16, 17000, 3), np.uint8))
    result = CliRunner().invoke(app, ["match", str(big), str(big), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "16384" in result.output


# --- 3. every target is checked ----------------------------------------------------------------------------
def _scaled(mesh, scale, shift=(0.0, 0.0, 0.0)):
    from dfbvs.render.mesh import Mesh

    return Mesh(mesh.vertices_m * scale + np.asarray(shift), mesh.faces, name=mesh.name)


@pytest.mark.parametrize("case, match", [
    ("mm_read_as_m", "fills .*mm read as m"), ("m_read_as_mm", "not in view|covers only"),
    ("origin_far", "goal camera looks at the mesh origin"), ("looking_away", "not in view"),
])
def test_unframed_targets_are_errors_with_hints(case, match):
    from dfbvs.geometry import make_pose, so3_exp
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import check_target_render, render_target
    from dfbvs.sim.episode import GoalConfig

    mesh = load_builtin("bracket")
    T = GoalConfig().T_object_camera()
    if case == "mm_read_as_m":
        mesh = _scaled(mesh, 1000.0)
    elif case == "m_read_as_mm":
        mesh = _scaled(mesh, 0.001)
    elif case == "origin_far":
        mesh = _scaled(mesh, 1.0, (0.8, 0.0, 0.0))
    else:
        T = T @ make_pose(so3_exp([np.pi, 0.0, 0.0]))
    render = render_target(mesh, Camera.default(), T)
    with pytest.raises(TargetError, match=match):
        check_target_render(render, mesh)


def test_the_hint_blames_the_mesh_origin_only_when_the_goal_looks_at_it():
    """A part 0.3 m from its origin, seen from 3 m by a goal that looks at its centre: the part is too small in
    the image, and the hint says so without blaming the origin (a new user's review: it did, whatever the goal)."""
    from dfbvs.geometry import look_at_spherical
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import check_target_render, render_target

    mesh = _scaled(load_builtin("bracket"), 1.0, (0.3, 0.0, 0.0))
    lo, hi = mesh.bounds_m
    T = look_at_spherical(3.0, 30.0, 60.0, 0.0, target_m=0.5 * (lo + hi))
    with pytest.raises(TargetError) as info:
        check_target_render(render_target(mesh, Camera.default(), T), mesh)
    assert "covers only" in str(info.value) and "origin" not in str(info.value), str(info.value)
    assert "a distance of about" in str(info.value)


def test_two_meshes_that_would_share_episode_ids_are_refused():
    from dfbvs.bench.protocols import make_protocol

    with pytest.raises(ValueError, match="would share the episode ids 'small20mm'"):
        make_protocol("parts", ["a/small_20mm.stl", "b/small20mm.stl"])


def test_a_servo_is_never_built_on_an_empty_target():
    from dfbvs.config import apply_overrides
    from dfbvs.geometry import make_pose, so3_exp
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import TargetCheckConfig, render_target
    from dfbvs.servo import DFBVSServo, ServoConfig
    from dfbvs.sim.episode import GoalConfig

    config = apply_overrides(ServoConfig(), ["features=orb"])
    away = GoalConfig().T_object_camera() @ make_pose(so3_exp([np.pi, 0.0, 0.0]))
    with pytest.raises(TargetError, match="not in view"):
        DFBVSServo.from_render(render_target(load_builtin("bracket"), Camera.default(), away), config)
    render = render_target(load_builtin("bracket"), Camera.default(), GoalConfig().T_object_camera())
    from dataclasses import replace

    with pytest.raises(TargetError, match="keypoints on the object"):
        DFBVSServo.from_render(render, replace(config, target_check=TargetCheckConfig(min_target_features=10_000)))


def test_sim_with_a_wrong_mesh_unit_says_why(tmp_path):
    """`dfbvs sim` ended 'LOST ... 0 inliers' with no reason."""
    from dfbvs.render.objects import load_builtin
    from dfbvs.sim.episode import EpisodeConfig, run_episode

    mesh = load_builtin("bracket")
    path = tmp_path / "bracket_mm.stl"
    mesh.to_trimesh().apply_scale(1000.0).export(path)  # a CAD export in millimetres ...
    config = EpisodeConfig(mesh_path=str(path), mesh_unit="m")  # ... read as metres
    with pytest.raises(TargetError, match="mesh-unit mm"):
        run_episode(config)


def test_render_cli_exits_non_zero_when_the_object_is_not_in_view(tmp_path):
    from typer.testing import CliRunner

    from dfbvs.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["render", "--object", "bracket", "--pose", "0 0 0.3 0 0 0",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "not in view" in result.output
    result = CliRunner().invoke(app, ["render", "--object", "bracket", "--width", "640", "--height", "240",
                                      "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "square" in result.output


# --- 4. bounded render sizes ---------------------------------------------------------------------------------
def test_render_sizes_beyond_the_gl_limit_are_refused_up_front():
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig

    with pytest.raises(ConfigError, match="exceeds the largest image side"):
        render_target(load_builtin("bracket"), Camera.default().rescaled(9600, 7200), GoalConfig().T_object_camera())


# --- 5. scenes for 1 cm to 50 cm objects, backgrounds, sensors --------------------------------------------------
@pytest.mark.parametrize("size_m", [0.01, 0.5, 2.0])
def test_distractors_are_placed_around_objects_of_any_size(size_m):
    """Objects larger than ~30 cm failed with numpy's 'high - low < 0'."""
    import trimesh

    from dfbvs.render.mesh import Mesh
    from dfbvs.render.scene import SceneConfig, build_scene

    box = trimesh.creation.box(extents=(size_m, size_m, size_m / 2))
    mesh = Mesh(np.asarray(box.vertices), np.asarray(box.faces), name="box")
    scene = build_scene(mesh, SceneConfig(), seed=1)
    distractors = [item for item in scene.items if item.object_id >= 4]
    assert distractors
    r = np.sqrt(2) * size_m / 2
    for item in distractors:  # none overlaps the object's footprint
        assert np.linalg.norm(item.T_world_item[:2, 3]) > r


def test_a_16_bit_grey_background_is_scaled_not_white(tmp_path):
    from PIL import Image

    from dfbvs.render.scene import SceneConfig, _table_mesh

    grey16 = np.full((64, 64), 16448, np.uint16)  # 16448 / 65535 = 64 / 255
    path = tmp_path / "bg16.png"
    Image.fromarray(grey16).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.all(read_image_rgb8(path) == 64)
    texture = _table_mesh(SceneConfig(background=str(path)), 0.0, 0).texture
    assert texture is not None and np.all(texture == 64)


def test_a_sensor_size_that_would_make_non_square_pixels_is_refused():
    with pytest.raises(CalibrationError, match="640x240.*not square|square"):
        Camera.default().rescaled(640, 240)
    assert Camera.default().rescaled(1280, 960).fx == pytest.approx(Camera.default().fx * 4)


def test_poses_that_are_not_rigid_are_pose_errors():
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig

    T = GoalConfig().T_object_camera()
    scaled = T.copy()
    scaled[:3, :3] *= 1.5
    for bad in (scaled, T[:3], np.full((4, 4), np.nan)):
        with pytest.raises(PoseError):
            render_target(load_builtin("bracket"), Camera.default(), bad)
    assert issubclass(PoseError, DfbvsError) and issubclass(PoseError, ValueError)


def test_a_law_faster_than_the_lock_bound_is_refused_when_the_servo_is_built():
    from dfbvs.config import apply_overrides
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.servo import DFBVSServo, ServoConfig
    from dfbvs.sim.episode import GoalConfig

    render = render_target(load_builtin("bracket"), Camera.default(), GoalConfig().T_object_camera())
    fast = apply_overrides(ServoConfig(), ["features=orb", "control.max_linear_m_s=2.0"])  # any order of overrides
    with pytest.raises(ConfigError, match="lock.max_linear_m_s"):
        DFBVSServo.from_render(render, fast)
    DFBVSServo.from_render(render, apply_overrides(fast, ["lock.max_linear_m_s=2.0"]))


def test_a_working_resolution_of_another_aspect_names_the_setting():
    from dfbvs.target import working_camera

    with pytest.raises(ConfigError, match="working_width_px / working_height_px.*e.g. 320x180"):
        working_camera(Camera(900.0, 900.0, 639.5, 359.5, 1280, 720), 320, 240)  # a 16:9 camera, 4:3 working size


def test_sim_cli_with_a_wrong_mesh_unit_says_why(tmp_path):
    from typer.testing import CliRunner

    from dfbvs.cli import _register, app
    from dfbvs.render.objects import load_builtin

    _register()
    path = tmp_path / "bracket_mm.stl"
    load_builtin("bracket").to_trimesh().apply_scale(1000.0).export(path)
    result = CliRunner().invoke(app, ["sim", "--mesh", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "mesh-unit mm" in result.output and "LOST" not in result.output


def test_a_goal_under_the_table_is_refused_before_anything_is_rendered():
    """A review ran `dfbvs sim --goal 0.2,30,-90,0`: the live camera saw the table's underside, the target the part's
    bottom, with no warning."""
    from dfbvs.errors import ConfigError
    from dfbvs.sim.episode import EpisodeConfig, GoalConfig, setup_episode

    with pytest.raises(ConfigError, match="under the table the object stands on"):
        setup_episode(EpisodeConfig(goal=GoalConfig(distance_m=0.2, elevation_deg=-90.0)))
