"""The target relit to the camera image's lighting (dfbvs.relight): the shading basis, the fit, the servo's use."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from _locking import locked_step
from dfbvs.camera import Camera
from dfbvs.errors import ConfigError
from dfbvs.geometry import se3_exp
from dfbvs.imaging import grey_float32
from dfbvs.relight import RelightConfig, fit_lighting, relit_rgb, shading_samples
from dfbvs.render.backend import DirectionalLight, Lighting
from dfbvs.render.objects import load_builtin
from dfbvs.render.target import light_directions, render_target
from dfbvs.sim.episode import EpisodeConfig

DIRECTIONS = 26


@pytest.fixture(scope="module")
def bracket_with_basis():
    mesh = load_builtin("bracket")
    camera = Camera.default().rescaled(640, 480)
    T_goal = EpisodeConfig().goal.T_object_camera()
    return mesh, camera, T_goal, render_target(mesh, camera, T_goal, shading_basis_directions=DIRECTIONS)


def test_light_directions_are_unit_and_spread():
    d = light_directions(50)
    assert d.shape == (50, 3) and np.allclose(np.linalg.norm(d, axis=1), 1.0)
    assert abs(d.mean(axis=0)).max() < 0.05  # spread over the whole sphere
    nearest = np.sort(d @ d.T, axis=1)[:, -2]  # the cosine to each one's nearest other
    assert np.rad2deg(np.arccos(nearest.max())) > 15


def test_the_basis_is_linear_in_the_lights(bracket_with_basis):
    """The default lighting's render equals the basis combination of its parts: ambient plus its two lights
    (rendered as basis images of their own directions), to a grey level."""
    mesh, camera, T_goal, target = bracket_with_basis
    assert target.shading_basis is not None and target.shading_basis.shape == (DIRECTIONS + 1, 480, 640)
    lit = Lighting()
    parts = [render_target(mesh, camera, T_goal, lighting=Lighting(ambient=lit.ambient, lights=())).rgb]
    parts += [render_target(mesh, camera, T_goal, lighting=Lighting(ambient=0.0, lights=(light,))).rgb
              for light in lit.lights]
    summed = sum(grey_float32(p).astype(np.float64) for p in parts)
    whole = grey_float32(target.rgb).astype(np.float64)
    on = target.mask
    assert np.median(np.abs(summed[on] - whole[on])) < 1.0


def test_the_fit_relights_the_target_as_the_camera_sees_it(bracket_with_basis):
    """A camera image lit by a key light turned 35 deg and dimmer, with a brighter ambient: the relit target is
    3x closer to it, grey level by grey level on the object, than the target as rendered."""
    mesh, camera, T_goal, target = bracket_with_basis
    base = Lighting()
    key = base.lights[0]
    turned = se3_exp([0, 0, 0, 0.0, np.deg2rad(35.0), 0.0])[:3, :3] @ key.unit_direction
    other = Lighting(ambient=0.35, lights=(DirectionalLight(tuple(turned), 0.5), base.lights[1]))
    seen = render_target(mesh, camera, T_goal, lighting=other).rgb
    config = RelightConfig(enabled=True, directions=DIRECTIONS)
    samples = shading_samples(target, np.zeros((0, 2)), config)
    assert samples is not None
    fit = fit_lighting(samples, camera, seen, np.eye(4), config)
    assert fit is not None and np.all(fit.weights >= 0) and fit.n_pixels > 10000
    relit = relit_rgb(target, fit)
    on = target.mask
    truth = grey_float32(seen)[on].astype(np.float64)
    error_relit = np.sqrt(np.mean((grey_float32(relit)[on] - truth) ** 2))
    error_nominal = np.sqrt(np.mean((grey_float32(target.rgb)[on] - truth) ** 2))
    assert error_relit < error_nominal / 3, (error_relit, error_nominal)
    # nothing to fit without a basis, or when the pose puts the object out of view
    assert shading_samples(replace(target, shading_basis=None), np.zeros((0, 2)), config) is None
    assert fit_lighting(samples, camera, seen, se3_exp([1.0, 0, 0, 0, 0, 0]), config) is None


def test_the_relit_outline_mixes_the_background_as_a_render_under_that_light_does(bracket_with_basis):
    """The outline's pixels, partly object and partly background: each basis image mixes its own background into
    them, so the weighted sum alone mixes it in by the weights' total; with the render's coverage the relit target
    matches the render under the camera's light there too (the edge fit reads those pixels, docs/parts.md)."""
    from dfbvs.relight import relit_grey

    mesh, camera, T_goal, target = bracket_with_basis
    assert target.shading_coverage is not None and target.shading_coverage.shape == (480, 640)
    inner = target.shading_coverage >= 1.0
    assert 0.9 < inner.sum() / target.mask.sum() <= 1.0 and target.shading_coverage.min() == 0.0
    base = Lighting()
    turned = se3_exp([0, 0, 0, 0.0, np.deg2rad(25.0), 0.0])[:3, :3] @ base.lights[0].unit_direction
    other = Lighting(ambient=0.3, lights=(DirectionalLight(tuple(turned), 0.8), base.lights[1]))
    seen = grey_float32(render_target(mesh, camera, T_goal, lighting=other).rgb).astype(np.float64)
    config = RelightConfig(enabled=True, directions=DIRECTIONS)
    fit = fit_lighting(shading_samples(target, np.zeros((0, 2)), config), camera, seen[..., None].repeat(3, 2)
                       .astype(np.uint8), np.eye(4), config)
    assert fit is not None and fit.weights.sum() > 1.5  # the sum alone would mix the background in 1.5x or more
    outline = (target.shading_coverage > 0.05) & (target.shading_coverage < 0.95)  # partly the object
    error = np.abs(relit_grey(target, fit)[outline] - seen[outline])
    plain = np.tensordot(fit.weights, target.shading_basis, axes=1)  # type: ignore[arg-type]
    error_plain = np.abs(np.where(target.mask, plain, grey_float32(target.rgb))[outline] - seen[outline])
    # measured: 0.6 grey levels against 13 (the weights sum to 3.0)
    assert np.median(error) < 2.0 and np.median(error) < 0.2 * np.median(error_plain), (np.median(error),
                                                                                      np.median(error_plain))
    # a target without a coverage (a folder saved before it existed) composites by the mask, as before
    older = relit_grey(replace(target, shading_coverage=None), fit)
    assert np.array_equal(older[~target.mask], grey_float32(target.rgb)[~target.mask])


def test_the_servo_relights_near_the_goal_only(bracket_with_basis):
    """With ``servo.relight.enabled`` a cycle near the goal fits the lighting and aligns on the relit target from
    then on; a pose far from the goal fits nothing."""
    from dfbvs.config import apply_overrides
    from dfbvs.render.scene import build_scene, render_scene
    from dfbvs.servo import DFBVSServo

    mesh, camera, T_goal, target = bracket_with_basis
    config = apply_overrides(EpisodeConfig(), ["servo.relight.enabled=true", f"servo.relight.directions={DIRECTIONS}"])
    servo = DFBVSServo.from_render(target, config.servo)
    before = servo.target.refinement.normalised.copy()
    scene = build_scene(mesh, config.scene, seed=config.seed)
    frame = render_scene(scene, camera, T_goal @ se3_exp([0.03, 0.0, 0.0, 0.0, 0.0, 0.0])).rgb
    step = locked_step(servo, frame)  # 30 mm from the goal: beyond relight's 5 % of the 0.22 m goal distance
    assert step.ok and servo.lighting is None and "relight_ms" not in step.timings_ms
    frame = render_scene(scene, camera, T_goal @ se3_exp([0.001, -0.001, 0.0, 0.002, 0.0, 0.0])).rgb
    step = servo.step(frame)
    assert step.ok and servo.lighting is not None and "relight_ms" in step.timings_ms
    assert servo.views[0] is servo.target and servo.target.refinement is not None
    assert not np.array_equal(servo.target.refinement.normalised, before)  # aligned on the relit target now


@pytest.mark.parametrize("refit_closer", [0.5, 0.0])
def test_the_lighting_is_refitted_as_the_pose_nears_the_goal(bracket_with_basis, refit_closer):
    """Between due refits (every ``refit_cycles`` calls) the lighting is fitted again once the pose is nearer the
    goal than ``refit_closer`` of where it was last fitted (the basis is the goal view's); not with it off."""
    from dfbvs.config import apply_overrides
    from dfbvs.geometry import inverse
    from dfbvs.relight import goal_nearness
    from dfbvs.render.scene import build_scene, render_scene
    from dfbvs.servo import DFBVSServo

    mesh, camera, T_goal, target = bracket_with_basis
    config = apply_overrides(EpisodeConfig(), [f"servo.relight.directions={DIRECTIONS}",
                                               f"servo.relight.refit_closer={refit_closer}"])
    servo = DFBVSServo.from_render(target, config.servo)
    scene = build_scene(mesh, config.scene, seed=config.seed)
    depth_m = float(np.median(servo.target.Z_star_m))
    fits = []
    for nearness in (0.8, 0.6, 0.3):  # offsets along the camera's x, as a share of relight's near-goal region
        T_object_camera = T_goal @ se3_exp([nearness * 0.05 * depth_m, 0.0, 0.0, 0.0, 0.0, 0.0])
        T_current_target = inverse(T_object_camera) @ T_goal
        assert goal_nearness(T_current_target, depth_m, config.servo.relight) == pytest.approx(nearness)
        servo.relight(render_scene(scene, camera, T_object_camera).rgb, T_current_target)
        fits.append(servo.relight_fits)
    assert fits == ([1, 1, 2] if refit_closer > 0 else [1, 1, 1])


def test_relight_config_refuses_bad_values():
    with pytest.raises(ConfigError, match="directions=0"):
        RelightConfig(directions=0)
    with pytest.raises(ConfigError, match="refit_cycles=0"):
        RelightConfig(refit_cycles=0)
    with pytest.raises(ConfigError, match="refit_closer=1"):
        RelightConfig(refit_closer=1.0)


def test_episodes_render_the_basis_their_servo_relights_with():
    """The default servo relights, so its episodes' targets carry a 50-direction basis; off, none is rendered;
    the tracking servo's detections follow their own setting."""
    from dfbvs.config import apply_overrides, apply_preset
    from dfbvs.relight import basis_directions

    assert basis_directions(EpisodeConfig().servo) == 50
    assert basis_directions(apply_overrides(EpisodeConfig(), ["servo.relight.enabled=false"]).servo) == 0
    tracking = apply_preset(EpisodeConfig(), "tracking").servo
    assert basis_directions(tracking) == (50 if tracking.detection.relight.enabled else 0)
    assert basis_directions(object()) == 0


def test_a_saved_target_keeps_its_basis(bracket_with_basis, tmp_path):
    """A target folder (a recording's) keeps the shading basis, so a replay relights as the run did."""
    from dfbvs.render.target import TargetRender

    target = bracket_with_basis[3]
    loaded = TargetRender.load(target.save(tmp_path / "target"))
    assert loaded.shading_basis is not None and np.array_equal(loaded.shading_basis, target.shading_basis)
    assert loaded.shading_coverage is not None and np.array_equal(loaded.shading_coverage, target.shading_coverage)
    plain = TargetRender.load(replace(target, shading_basis=None).save(tmp_path / "plain"))
    assert plain.shading_basis is None


def test_a_second_basis_is_used_only_where_it_fits_clearly_better(bracket_with_basis, tmp_path):
    """``relight.second_basis_renderer``: the target carries two bases; each is fitted alone and the second is
    kept only when its residual scale is at most ``second_basis_margin`` times the first's. A 4-direction basis
    beside the 26-direction one: as the second it loses, as the first it gives way, and the relit target is the
    chosen basis's own; a folder keeps both."""
    from dfbvs.render.target import TargetRender

    mesh, camera, T_goal, target = bracket_with_basis
    base = Lighting()
    turned = se3_exp([0, 0, 0, 0.0, np.deg2rad(35.0), 0.0])[:3, :3] @ base.lights[0].unit_direction
    seen = render_target(mesh, camera, T_goal, lighting=Lighting(
        ambient=0.35, lights=(DirectionalLight(tuple(turned), 0.5), base.lights[1]))).rgb
    coarse = render_target(mesh, camera, T_goal, shading_basis_directions=4)
    both = render_target(mesh, camera, T_goal, shading_basis_directions=DIRECTIONS, second_basis=("moderngl", 4))
    assert both.shading_basis is not None and both.shading_basis_split == DIRECTIONS + 1
    assert np.array_equal(both.shading_basis[both.shading_basis_split:], coarse.shading_basis)
    config = RelightConfig(directions=DIRECTIONS)

    def fit(render, margin=0.8):
        c = replace(config, second_basis_margin=margin)
        samples = shading_samples(render, np.zeros((0, 2)), c)
        assert samples is not None
        return fit_lighting(samples, camera, seen, np.eye(4), c, render.shading_basis_split)

    fine_alone = fit(target)
    kept = fit(both)  # the 4 directions explain the turned light worse: the first basis stays
    assert kept is not None and kept.basis == 0 and not kept.weights[both.shading_basis_split:].any()
    assert np.array_equal(relit_rgb(both, kept), relit_rgb(target, fine_alone))
    swapped = replace(both, shading_basis=np.concatenate([coarse.shading_basis, target.shading_basis]),
                      shading_basis_split=5)
    better = fit(swapped)  # the 26 directions as the second basis fit clearly better: they are used
    assert better is not None and better.basis == 1 and not better.weights[:5].any()
    assert better.residual_levels <= 0.8 * fit(coarse).residual_levels
    assert np.array_equal(relit_rgb(swapped, better), relit_rgb(target, fine_alone))
    assert fit(swapped, margin=better.residual_levels / fit(coarse).residual_levels * 0.99).basis == 0
    loaded = TargetRender.load(both.save(tmp_path / "two"))
    assert loaded.shading_basis_split == both.shading_basis_split
    with pytest.raises(ConfigError, match="second_basis_margin=1.5"):
        RelightConfig(second_basis_margin=1.5)


def test_verified_choice_keeps_the_basis_on_which_more_points_verify(bracket_with_basis):
    """``relight.second_basis_choice=verified``: at a refit the target is relit with each basis's fit and the
    cycle's points refined on each; the basis with more verified points is kept, whatever the residuals say. A
    first basis that is flat on the object (its relit target has no texture to align) beside the real one: with
    a margin the second can never meet (residual rule) the flat one is kept; chosen by verified points, the real
    one, on which many more points verify."""
    from dfbvs.config import apply_overrides
    from dfbvs.render.scene import build_scene, render_scene
    from dfbvs.servo import DFBVSServo

    mesh, camera, T_goal, target = bracket_with_basis
    flat = np.where(target.mask, 128.0, 0.0).astype(target.shading_basis.dtype)[None]
    two = replace(target, shading_basis=np.concatenate([flat, target.shading_basis]), shading_basis_split=1)
    config = apply_overrides(EpisodeConfig(), [f"servo.relight.directions={DIRECTIONS}",
                                               "servo.relight.second_basis_margin=0.01"])
    scene = build_scene(mesh, config.scene, seed=config.seed)
    far = render_scene(scene, camera, T_goal @ se3_exp([0.03, 0.0, 0.0, 0.0, 0.0, 0.0])).rgb
    near = render_scene(scene, camera, T_goal @ se3_exp([0.001, -0.001, 0.0, 0.002, 0.0, 0.0])).rgb
    chosen = {}
    for choice in ("residual", "verified"):
        servo = DFBVSServo.from_render(two, apply_overrides(
            config, [f"servo.relight.second_basis_choice={choice}"]).servo)
        locked_step(servo, far)
        assert servo.step(near).ok and servo.lighting is not None
        chosen[choice] = (servo.lighting.basis, servo.basis_verified_points)
    assert chosen["residual"] == (0, ())  # (the margin keeps the first basis)
    basis, (on_flat, on_real) = chosen["verified"]
    assert basis == 1 and on_real > on_flat + 10, (on_flat, on_real)
    with pytest.raises(ConfigError, match="second_basis_choice='best'"):
        RelightConfig(second_basis_choice="best")
