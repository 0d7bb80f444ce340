"""What happens to a simulated scene mid-episode (light change, motion blur, a look-alike beside the target) and
the perturbation protocol built from them (issue 11)."""

import dataclasses

import numpy as np
import pytest

from dfbvs.bench.protocols import PERTURBATIONS, make_protocol
from dfbvs.config import apply_overrides
from dfbvs.errors import ConfigError
from dfbvs.geometry import make_pose, se3_exp, so3_exp
from dfbvs.render.backend import DirectionalLight, Lighting
from dfbvs.render.objects import load_builtin
from dfbvs.render.scene import SceneConfig, build_scene, render_scene
from dfbvs.sim.episode import EpisodeConfig, StartConfig, occlusion_drift_mm, run_episode
from dfbvs.sim.perturbations import LightChangeConfig, MotionBlur, MotionBlurConfig, Occluder, OcclusionConfig
from dfbvs.stop import EpisodeStatus


def test_light_change_turns_and_dims_every_light_from_its_start():
    change = LightChangeConfig(start_s=2.0, rotate_deg=90.0, intensity_gain=0.5, ambient_gain=0.8)
    assert not change.active(1.99) and change.active(2.0) and not LightChangeConfig().active(100.0)
    lighting = Lighting(ambient=0.2, lights=(DirectionalLight((1.0, 0.0, -1.0), 0.6),))
    changed = change.changed(lighting)
    assert changed.ambient == pytest.approx(0.16)
    assert np.allclose(changed.lights[0].direction_world, (0.0, 1.0, -1.0))  # 90 deg about the vertical
    assert changed.lights[0].intensity == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="-1"):
        LightChangeConfig(intensity_gain=-1)


def test_motion_blur_spreads_the_exposure_back_along_the_executed_motion():
    blur = MotionBlur(MotionBlurConfig(exposure_s=0.03, samples=4))
    T0 = make_pose(so3_exp([0.1, 0.2, 0.3]), [0.1, 0.0, 0.2])
    assert len(blur.poses(T0, 0.0)) == 1  # no motion known yet
    v = np.array([0.05, -0.02, 0.01, 0.0, 0.1, 0.3])
    T1 = T0 @ se3_exp(v * 0.1)
    poses = blur.poses(T1, 0.1)
    assert len(poses) == 4 and np.allclose(poses[0], T1)
    assert np.allclose(poses[-1], T1 @ se3_exp(-v * 0.03), atol=1e-9)
    assert len(blur.poses(T1, 0.2)) == 1  # standing still: a sharp frame
    assert len(MotionBlur(MotionBlurConfig()).poses(T1, 0.3)) == 1  # off by default
    with pytest.raises(ConfigError, match="samples"):
        MotionBlurConfig(exposure_s=0.01, samples=1)


def test_blurred_frame_is_the_mean_of_the_exposure():
    mesh = load_builtin("bracket")
    config = EpisodeConfig()
    scene = build_scene(mesh, SceneConfig.clean(), seed=0)
    T = config.goal.T_object_camera()
    sharp = render_scene(scene, config.camera, T).rgb
    same = render_scene(scene, config.camera, T, exposure_poses=[T, T]).rgb
    assert np.array_equal(sharp, same)
    moved = T @ se3_exp(np.array([0.004, 0.0, 0.0, 0.0, 0.0, 0.0]))
    blurred = render_scene(scene, config.camera, T, exposure_poses=[moved]).rgb.astype(float)
    other = render_scene(scene, config.camera, moved).rgb.astype(float)
    assert np.abs(blurred - 0.5 * (sharp + other)).max() <= 1.0  # rounding only
    assert np.abs(blurred - sharp).mean() > 1.0


def test_lookalike_is_a_copy_of_the_target_beside_it():
    mesh = load_builtin("connector")
    plain = build_scene(mesh, SceneConfig(), seed=4)
    again = build_scene(mesh, SceneConfig(lookalikes=0), seed=4)
    assert [(i.object_id, i.mesh.name) for i in again.items] == [(i.object_id, i.mesh.name) for i in plain.items]
    assert all(np.array_equal(a.T_world_item, b.T_world_item) for a, b in zip(again.items, plain.items))
    twin = build_scene(mesh, SceneConfig(lookalikes=1, lookalike_azimuth_deg=90.0), seed=4)
    copies = [item for item in twin.items if item.mesh is mesh and item.object_id != 1]
    assert len(copies) == 1
    xy = copies[0].T_world_item[:2, 3]
    assert abs(np.rad2deg(np.arctan2(xy[1], xy[0])) - 90.0) < 25.0  # towards the azimuth (footprint centre offset)
    lo, hi = mesh.bounds_m
    assert np.linalg.norm(xy) < 2.0 * np.linalg.norm(hi[:2] - lo[:2])  # right beside it
    with pytest.raises(ValueError, match="lookalikes"):
        SceneConfig(lookalikes=-1)


def test_perturb_protocol_runs_every_perturbation_on_the_same_starts():
    specs = make_protocol("perturb", ["bracket", "gear", "connector"])
    assert len(specs) == 3 * 2 * len(PERTURBATIONS)
    assert {s.batch for s in specs} == set(PERTURBATIONS)
    by_start: dict = {}
    for s in specs:
        by_start.setdefault((s.object, s.episode_id.rsplit("-", 1)[1]), set()).add(s.T_goal_start)
    assert all(len(starts) == 1 for starts in by_start.values())
    lookalike = [s for s in specs if s.batch == "lookalike"][0]
    assert f"scene.lookalike_azimuth_deg={lookalike.goal[1] + 180:g}" in lookalike.overrides
    from dfbvs.bench.methods import episode_config

    config = episode_config(lookalike, "dfbvs")
    assert config.scene.lookalikes == 1 and config.scene.n_distractors > 0  # the background's scene kept
    occluded = episode_config([s for s in specs if s.batch == "occlusion"][0], "tracking")
    assert occluded.occlusion.start_s == 1.0 and occluded.occlusion.size == 0.6


def test_occlusion_drift_is_the_motion_away_while_occluded():
    occluder = Occluder(OcclusionConfig(start_s=1.0, duration_s=0.5), make_pose(None, [0, 0, 0.2]), 0.1)
    t = [0.8, 0.9, 1.0, 1.2, 1.4, 1.6]
    errors = [(5.0, 1.0), (4.0, 1.0), (4.5, 1.0), (6.0, 1.0), (3.0, 1.0), (2.0, 1.0)]
    assert occlusion_drift_mm(t, errors, occluder) == pytest.approx(2.0)  # 6.0 during, 4.0 just before
    never = Occluder(OcclusionConfig(), make_pose(None, [0, 0, 0.2]), 0.1)
    assert np.isnan(occlusion_drift_mm(t, errors, never))


@pytest.mark.slow
def test_episode_survives_a_light_change_under_motion_blur(tmp_path):
    config = apply_overrides(EpisodeConfig(start=StartConfig(offset_mm=30.0, offset_deg=5.0)),
                             ["light_change.start_s=2.0", "light_change.rotate_deg=70", "motion_blur.exposure_s=0.03",
                              "stop.max_iterations=150"])
    r = run_episode(config, out_dir=tmp_path)
    assert r.status is EpisodeStatus.CONVERGED, r.summary()
    assert r.iterations > 20, "converged before the lights changed: the test would not test it"
    # the lights turned by 70 deg leave a larger shading gap than the scene's own 20 deg: measured 0.63 mm /
    # 0.16 deg on this episode (the appearance bias of docs/photoreal.md), so the bound is looser than 0.1 deg
    assert r.final_translation_error_mm < 1.0 and r.final_rotation_error_deg < 0.25, r.summary()
    assert dataclasses.asdict(config.light_change)["start_s"] == 2.0
