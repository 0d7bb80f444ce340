"""Model edges (dfbvs.edges): the outline of a feature-poor part measured at the estimated pose."""

from __future__ import annotations

import numpy as np
import pytest

from _locking import locked_step
from dfbvs.bench.methods import episode_config
from dfbvs.bench.protocols import make_protocol
from dfbvs.edges import EdgeConfig, edge_offsets, measure_edges, model_edges, refine_pose_with_edges
from dfbvs.errors import ConfigError
from dfbvs.geometry import inverse, pose_error, se3_exp
from dfbvs.imaging import grey_float32
from dfbvs.render.scene import build_scene, render_scene
from dfbvs.render.target import render_target
from dfbvs.sim.episode import episode_mesh


def test_edge_offsets_find_a_step_of_either_polarity_to_a_tenth_of_a_pixel():
    u = np.arange(64, dtype=np.float64)
    for polarity in (1.0, -1.0):
        for step_at in (30.0, 30.3, 31.7):
            row = 100 + polarity * 60 * np.clip(u - step_at + 0.5, 0, 1)  # a step between pixels, area-sampled
            grey = np.tile(row, (32, 1)).astype(np.float32)
            offset, found = edge_offsets(grey, np.array([[29.0, 16.0]]), np.array([[1.0, 0.0]]), 4.0, 6.0)
            assert found[0] and abs(29.0 + offset[0] - (step_at - 0.0)) < 0.1, (polarity, step_at, offset)
    flat = np.full((32, 64), 90, np.float32)
    assert not edge_offsets(flat, np.array([[29.0, 16.0]]), np.array([[1.0, 0.0]]), 4.0, 6.0)[1][0]
    with pytest.raises(ConfigError, match="min_fit_fraction"):
        EdgeConfig(min_fit_fraction=1.5)
    with pytest.raises(ConfigError, match="veto_fraction"):
        EdgeConfig(veto_fraction=0.6, min_fit_fraction=0.5)
    # the goal's outline is used only near the goal (another viewpoint shows other edges as a 3D part's outline)
    from dfbvs.edges import near_goal

    assert near_goal(se3_exp([0.005, 0, 0, 0, 0.03, 0]), 0.22, EdgeConfig())
    assert not near_goal(se3_exp([0.02, 0, 0, 0, 0, 0]), 0.22, EdgeConfig())
    assert not near_goal(se3_exp([0, 0, 0, 0.07, 0, 0]), 0.22, EdgeConfig())


@pytest.fixture(scope="module")
def sheet_on_gravel():
    spec = next(s for s in make_protocol("parts", ["bracket"]) if s.episode_id == "sheet-P1")
    config = episode_config(spec, "dfbvs")  # the thin sheet-metal strip before a photo of gravel
    mesh = episode_mesh(config)
    T_object_goal = config.goal.T_object_camera(mesh, config.camera)
    target = render_target(mesh, config.camera, T_object_goal)
    return config, mesh, T_object_goal, target


def test_the_outline_pins_the_pose_of_a_sheet_whose_patches_do_not_align(sheet_on_gravel):
    """From a pose 1 mm / 0.3 deg off (a PnP pose on unrefined matches), the outline alone brings the pose of
    the sheet before gravel to within 0.3 mm / 0.1 deg of the truth; measured at the true pose, the edges agree
    with the prediction to a fraction of a pixel."""
    config, mesh, T_object_goal, target = sheet_on_gravel
    edges = model_edges(target.rgb, target.depth_m, target.mask, target.camera, EdgeConfig())
    assert len(edges) > 200  # the outline and the holes' rims
    scene = build_scene(mesh, config.scene, seed=config.seed)
    rng = np.random.default_rng(3)
    for _ in range(2):
        d = rng.normal(size=6)
        d[:3] *= 3e-3 / np.linalg.norm(d[:3])
        d[3:] *= np.deg2rad(1.0) / np.linalg.norm(d[3:])
        T_object_camera = T_object_goal @ se3_exp(d)  # the camera 3 mm / 1 deg from the goal
        grey = grey_float32(render_scene(scene, config.camera, T_object_camera).rgb)
        T_true = inverse(T_object_camera) @ T_object_goal  # T_current_target
        at_truth = measure_edges(edges, T_true, grey, EdgeConfig())
        residual = np.einsum("ij,ij->i", at_truth.normals, at_truth.uv_predicted_px - at_truth.uv_measured_px)
        assert len(at_truth.index) > 0.8 * len(edges) and np.median(np.abs(residual)) < 0.25
        e = rng.normal(size=6)
        e[:3] *= 1e-3 / np.linalg.norm(e[:3])
        e[3:] *= np.deg2rad(0.3) / np.linalg.norm(e[3:])
        fit = refine_pose_with_edges(se3_exp(e) @ T_true, edges, grey, np.zeros((0, 3)), np.zeros((0, 2)),
                                     target.camera, EdgeConfig())
        assert fit is not None and fit.n_edges > 0.6 * len(edges)
        t_m, r_rad = pose_error(fit.T_current_target, T_true)
        assert t_m < 0.3e-3 and np.rad2deg(r_rad) < 0.1, (t_m, np.rad2deg(r_rad))
        assert fit.usable(EdgeConfig())
    # a pose 15 mm / 5 deg off (a wrong descriptor lock): the outline does not fit it, whatever the fit tries
    wrong = se3_exp([0.012, -0.008, 0.004, 0.05, 0.06, -0.03]) @ T_true
    fit = refine_pose_with_edges(wrong, edges, grey, np.zeros((0, 3)), np.zeros((0, 2)), target.camera, EdgeConfig())
    assert fit is not None and fit.fit_fraction < 0.35 and not fit.usable(EdgeConfig()), fit and fit.fit_fraction


def test_the_servo_uses_the_outline_only_when_most_of_it_fits(sheet_on_gravel, monkeypatch):
    """With ``servo.edges.enabled`` a cycle near the goal reports the fitted outline points and moves toward the
    goal; a frame where the part is hidden under a flat grey plate gets no edge fit (and no twist)."""
    from dfbvs.config import apply_overrides
    from dfbvs.servo import DFBVSServo

    config, mesh, T_object_goal, target = sheet_on_gravel
    servo_config = apply_overrides(config, ["servo.edges.enabled=true", "servo.live_max_keypoints=2000"]).servo
    servo = DFBVSServo.from_render(target, servo_config)
    scene = build_scene(mesh, config.scene, seed=config.seed)
    d = np.array([2e-3, -1e-3, 1e-3, 0.004, -0.003, 0.002])
    frame = render_scene(scene, config.camera, T_object_goal @ se3_exp(d)).rgb
    step = locked_step(servo, frame)
    assert step.ok and step.n_edges > 0.5 * len(servo._edges)
    t_m, _ = pose_error(step.T_current_target, inverse(se3_exp(d)))
    assert t_m < 0.5e-3
    # the twist moves the camera back toward the goal: its translation opposes the offset
    assert float(np.dot(step.v_camera[:3], d[:3])) < 0
    hidden = frame.copy()
    ys, xs = np.nonzero(target.mask)
    hidden[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = 128
    step = servo.step(hidden)
    assert step.n_edges == 0 and (not step.ok and not np.any(step.v_camera))


def test_edges_imports_only_earlier_stages():
    """docs/architecture.md: edges sits after control (it uses its interaction matrix), before the servo."""
    import ast
    from pathlib import Path

    import dfbvs.edges

    tree = ast.parse(Path(str(dfbvs.edges.__file__)).read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
    assert imported <= {"camera", "control", "errors", "geometry", "imaging"}, imported


def test_an_edge_fit_that_runs_behind_the_camera_returns_its_start_pose():
    """A cylinder's outline is two lines: from a pose 20 mm off (an outline search's guess on shaft-P1's start
    frame) Gauss-Newton slid along the axis until points went behind the camera and the Jacobian raised; the
    fit now stops there and reports its start pose with nothing fitted."""
    from dfbvs.goal import object_center_m
    from dfbvs.sim.episode import start_pose

    spec = next(s for s in make_protocol("parts", ["bracket"]) if s.episode_id == "shaft-P1")
    config = episode_config(spec, "dfbvs")
    mesh = episode_mesh(config)
    T_object_goal = config.goal.T_object_camera(mesh, config.camera)
    target = render_target(mesh, config.camera, T_object_goal)
    edges = model_edges(target.rgb, target.depth_m, target.mask, target.camera, EdgeConfig())
    T_object_start = start_pose(config, config.camera, T_object_goal, object_center_m(mesh))
    grey = grey_float32(render_scene(build_scene(mesh, config.scene, seed=config.seed), config.camera,
                                     T_object_start).rgb)
    guess = se3_exp([0.044251, -0.029298, -0.039157, 0.0, 0.0, 0.0])
    fit = refine_pose_with_edges(guess, edges, grey, np.zeros((0, 3)), np.zeros((0, 2)), target.camera,
                                 EdgeConfig(search_px=8, rounds=4), iterations_per_round=5)
    assert fit is not None and np.allclose(fit.T_current_target, guess) and fit.n_edges == 0
    assert not fit.usable(EdgeConfig())




@pytest.mark.slow
def test_the_slots_rim_pins_the_housing_where_its_outline_follows_the_light():
    """The smooth housing, its key light turned 20 deg (nothing else different): the steps of its rounded outline
    move with the shading, and edges fitted from a pose 1 mm / 0.3 deg off land ~0.7 mm / 0.2 deg from the truth on
    the outline alone; with the object's own depth edges (the slot's rim, ``edges.depth_jump_ratio=0.01``) ~0.4 mm /
    0.13 deg. With ``edges.relit_reference`` the servo reads the edges' reference on the target it relit."""
    from dataclasses import replace

    from dfbvs.matching import Correspondences
    from dfbvs.relight import basis_directions, relit_grey
    from dfbvs.render.scene import SceneConfig
    from dfbvs.servo import DFBVSServo, ServoConfig

    spec = next(s for s in make_protocol("parts", ["bracket"]) if s.episode_id == "housing-P1")
    config = episode_config(spec, "dfbvs")
    mesh = episode_mesh(config)
    T_object_goal = config.goal.T_object_camera(mesh, config.camera)
    base = ServoConfig()
    assert base.edges.depth_jump_ratio == 0 and not base.edges.relit_reference  # the defaults: off
    rim_config = replace(base, edges=replace(base.edges, enabled=True, depth_jump_ratio=0.01))
    target = render_target(mesh, config.camera, T_object_goal, shading_basis_directions=basis_directions(base))
    rim = DFBVSServo.from_render(target, rim_config)
    outline = DFBVSServo(rim.target, replace(rim_config, edges=replace(rim_config.edges, depth_jump_ratio=0.0)),
                         rim.extractor)
    relit_config = replace(rim_config, edges=replace(rim_config.edges, relit_reference=True))
    relit = DFBVSServo(rim.target, relit_config, rim.extractor)
    none = Correspondences(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64),
                           np.zeros(0))
    scene_config = replace(SceneConfig.clean(), light_rotation_deg=20.0)
    rng = np.random.default_rng(0)
    errors: dict[str, list[tuple[float, float]]] = {"outline": [], "rim": []}
    for k in range(4):
        d = rng.normal(size=6)
        d[:3] *= 4e-3 / np.linalg.norm(d[:3])
        d[3:] *= np.deg2rad(1.0) / np.linalg.norm(d[3:])
        T_object_camera = T_object_goal @ se3_exp(d)  # the camera 4 mm / 1 deg from the goal
        image = render_scene(build_scene(mesh, scene_config, seed=50 + k), config.camera, T_object_camera).rgb
        T_true = inverse(T_object_camera) @ T_object_goal
        e = rng.normal(size=6)
        e[:3] *= 1e-3 / np.linalg.norm(e[:3])
        e[3:] *= np.deg2rad(0.3) / np.linalg.norm(e[3:])
        T_start = se3_exp(e) @ T_true  # a pose 1 mm / 0.3 deg off
        for name, servo in (("outline", outline), ("rim", rim)):
            fit = servo.fit_edges(image, servo.target, none, T_start, refined=True)
            assert fit is not None and fit.usable(servo.config.edges), name
            t_m, r_rad = pose_error(fit.T_current_target, T_true)
            errors[name].append((t_m * 1e3, float(np.rad2deg(r_rad))))
    median = {name: np.median(np.array(v), axis=0) for name, v in errors.items()}
    # measured: the outline 0.72 mm / 0.207 deg, with the rim 0.41 mm / 0.128 deg
    assert median["outline"][1] > 0.15 and median["rim"][1] < 0.8 * median["outline"][1], median
    assert median["rim"][0] < 0.8 * median["outline"][0], median
    # relit_reference: after a relight the next fit reads the outline's steps on the relit target
    assert relit.relight(image, T_start) is not None and relit.lighting is not None
    fit = relit.fit_edges(image, relit.target, none, T_start, refined=True)
    edges = model_edges(target.rgb, target.depth_m, target.mask, target.camera, relit_config.edges)
    relit_edges = edges.with_reference(relit_grey(target, relit.lighting), relit_config.edges)
    assert not np.allclose(relit_edges.offset_target_px, edges.offset_target_px)
    expected = refine_pose_with_edges(T_start, relit_edges, grey_float32(image), np.zeros((0, 3)), np.zeros((0, 2)),
                                      relit.target.camera, relit_config.edges)
    assert fit is not None and expected is not None
    assert np.allclose(fit.T_current_target, expected.T_current_target, atol=1e-12)
