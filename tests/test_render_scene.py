"""Target render save/load, the simulated scene and its sim-to-real knobs, and the ``dfbvs render`` CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from dfbvs.camera import Camera
from dfbvs.geometry import look_at_spherical
from dfbvs.render import load_builtin
from dfbvs.render.scene import ID_FINGERTIPS, ID_FIRST_DISTRACTOR, ID_TABLE, SceneConfig, build_scene, render_scene
from dfbvs.render.target import TargetRender, render_target

CAM = Camera.default()
T_GOAL = look_at_spherical(0.30, 30.0, 55.0)


@pytest.fixture(scope="module")
def gear():
    return load_builtin("gear")


@pytest.fixture(scope="module")
def target(gear):
    return render_target(gear, CAM, T_GOAL)


def test_target_save_load_round_trip(target, tmp_path):
    assert target.mask.sum() > 1000
    assert np.array_equal(target.mask, np.isfinite(target.depth_m))
    assert 0.25 < np.nanmin(target.depth_m) < np.nanmax(target.depth_m) < 0.36
    from scipy.ndimage import binary_dilation

    away = ~binary_dilation(target.mask, iterations=2)  # antialiased edges blend into the background
    assert len(np.unique(target.rgb[away].reshape(-1, 3), axis=0)) == 1  # clean uniform background
    target.save(tmp_path / "t")
    back = TargetRender.load(tmp_path / "t")
    assert np.array_equal(back.rgb, target.rgb) and np.array_equal(back.mask, target.mask)
    assert np.array_equal(back.depth_m, target.depth_m, equal_nan=True) and back.depth_m.dtype == np.float32
    assert back.camera == target.camera and np.allclose(back.T_object_camera, T_GOAL)
    meta = json.loads((tmp_path / "t" / "meta.json").read_text())
    assert meta["renderer"] == "moderngl" and meta["width_px"] == 320 and len(meta["T_object_camera"]) == 4
    (tmp_path / "t" / "depth.npy").unlink()
    with pytest.raises(FileNotFoundError, match="depth.npy"):
        TargetRender.load(tmp_path / "t")


def test_clean_scene_reproduces_the_target_render_exactly(gear, target):
    frame = render_scene(build_scene(gear, SceneConfig.clean(), seed=5), CAM, T_GOAL)
    assert np.array_equal(frame.rgb, target.rgb)
    assert np.array_equal(frame.depth_m, target.depth_m, equal_nan=True)
    assert np.array_equal(frame.mask, target.mask)


def test_cluttered_scene_has_table_and_distractors_off_the_object(gear):
    config = SceneConfig()
    scene = build_scene(gear, config, seed=3)
    frame = render_scene(scene, CAM, look_at_spherical(0.45, 30.0, 50.0))
    ids = set(np.unique(frame.ids).tolist())
    assert {1, ID_TABLE} <= ids and any(i >= ID_FIRST_DISTRACTOR for i in ids)
    # the table is at the object's min z: table depth pixels back-project to z = min z (object frame)
    T = look_at_spherical(0.45, 30.0, 50.0)
    vv, uu = np.nonzero(frame.ids == ID_TABLE)
    p = CAM.unproject(np.column_stack([uu, vv]).astype(float), frame.depth_m[vv, uu])
    z_object = (T[:3, :3] @ p.T).T[:, 2] + T[2, 3]
    assert np.allclose(z_object, gear.bounds_m[0, 2], atol=1e-4)
    # distractors stand on the table and keep clear of the object's footprint circle
    lo, hi = gear.bounds_m
    r_obj = 0.5 * np.linalg.norm(hi[:2] - lo[:2])
    for item in scene.items[1:]:
        if item.object_id < ID_FIRST_DISTRACTOR:
            continue
        v = item.mesh.vertices_m @ item.T_world_item[:3, :3].T + item.T_world_item[:3, 3]
        assert abs(v[:, 2].min() - lo[2]) < 1e-9
        assert np.linalg.norm(v[:, :2], axis=1).min() > r_obj
    # seeded: same seed, same scene and noise; another seed, another scene
    again = render_scene(build_scene(gear, config, seed=3), CAM, T)
    assert np.array_equal(again.rgb, frame.rgb)
    other = render_scene(build_scene(gear, config, seed=4), CAM, T)
    assert not np.array_equal(other.ids, frame.ids)


GAP_KNOBS = {
    "light_rotation_deg": 25.0, "light_intensity_gain": 0.7, "ambient_gain": 1.5, "object_color_shift": 0.1,
    "object_specular_gain": 3.0, "exposure_gain": 1.2, "vignetting": 0.4, "blur_sigma_px": 1.0,
    "noise_std_levels": 3.0, "gripper_fingertips": True,
}


def test_each_sim_to_real_knob_changes_the_image_and_all_off_is_clean(gear):
    base = replace(SceneConfig(), n_distractors=2).without_gap()
    T = look_at_spherical(0.35, 30.0, 55.0)
    clean = render_scene(build_scene(gear, base, seed=1), CAM, T)
    again = render_scene(build_scene(gear, base, seed=1), CAM, T)
    assert np.array_equal(clean.rgb, again.rgb)
    for knob, value in GAP_KNOBS.items():
        frame = render_scene(build_scene(gear, replace(base, **{knob: value}), seed=1), CAM, T)
        changed = np.abs(frame.rgb.astype(int) - clean.rgb).mean()
        assert changed > 0.3, f"{knob}={value} barely changes the image ({changed:.3f} levels)"
        if knob != "gripper_fingertips":
            assert np.array_equal(frame.ids, clean.ids), knob  # ground truth untouched
    tips = render_scene(build_scene(gear, replace(base, gripper_fingertips=True), seed=1), CAM, T)
    rows = np.nonzero((tips.ids == ID_FINGERTIPS).any(axis=1))[0]
    assert rows.min() > CAM.height_px * 0.6 and rows.max() == CAM.height_px - 1  # bottom of the image only
    assert (tips.ids == ID_FINGERTIPS).mean() < 0.2


def test_default_scene_differs_from_target_on_the_object(gear, target):
    frame = render_scene(build_scene(gear, SceneConfig(), seed=0), CAM, T_GOAL)
    both = frame.mask & target.mask
    assert both.sum() > 0.95 * target.mask.sum()
    assert np.abs(frame.rgb[both].astype(int) - target.rgb[both]).mean() > 2.0


def test_similar_background_and_image_background(gear, tmp_path):
    from PIL import Image

    frame = render_scene(build_scene(gear, SceneConfig.similar_to_target(), seed=0), CAM, T_GOAL)
    assert set(np.unique(frame.ids).tolist()) == {1, ID_TABLE}
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :, 2] = 220
    Image.fromarray(image).save(tmp_path / "bg.png")
    config = replace(SceneConfig(), background=str(tmp_path / "bg.png"), n_distractors=0,
                     antialias=False, supersample=1).without_gap()  # no blended edges
    frame = render_scene(build_scene(gear, config, seed=0), CAM, T_GOAL)
    table = frame.rgb[frame.ids == ID_TABLE].astype(int)
    assert (table[:, 2] > table[:, 0] + 50).all()


def test_scene_config_validation_names_the_value():
    with pytest.raises(ValueError, match="noise_std_levels=-1"):
        SceneConfig(noise_std_levels=-1.0)
    with pytest.raises(ValueError, match="background='/no/such.png'"):
        SceneConfig(background="/no/such.png")


def test_cli_render_writes_parseable_outputs(tmp_path):
    from typer.testing import CliRunner

    from dfbvs.cli import _register, app

    _register()
    runner = CliRunner()
    out = tmp_path / "r"
    res = runner.invoke(app, ["render", "--object", "connector", "--distance", "0.3", "--azimuth", "20",
                              "--elevation", "50", "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "meta.json").read_text())
    T = np.asarray(meta["T_object_camera"])
    assert np.allclose(T, look_at_spherical(0.3, 20, 50))
    assert meta["width_px"] == 320 and meta["height_px"] == 240 and meta["renderer"] == "moderngl"
    assert meta["time_per_frame_ms"] > 0 and "fx" in meta["camera"]
    depth = np.load(out / "depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (240, 240 * 4 // 3)
    loaded = TargetRender.load(out)
    assert loaded.mask.sum() > 500

    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps(T.tolist()))
    res = runner.invoke(app, ["render", "--object", "connector", "--pose-matrix", str(pose), "--scene",
                              "cluttered", "--seed", "2", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert np.array_equal(TargetRender.load(tmp_path / "c").mask, loaded.mask)

    for args, needle in ((["--object", "teapot"], "teapot"), (["--mesh", str(tmp_path / "x.stl")], "x.stl"),
                         (["--object", "gear", "--pose", "1 2 3"], "1 2 3"),
                         (["--object", "gear", "--distance", "-1"], "-1"),
                         (["--mesh", str(pose), "--mesh-unit", "km"], "km")):
        res = runner.invoke(app, ["render", *args, "--out", str(tmp_path / "bad")])
        assert res.exit_code != 0 and needle in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_photo_table_lights_and_roughness_are_drawn_from_the_seed(gear):
    """``background=photo``: a real photograph (scikit-image's) under the part, different per seed and the same
    for the same seed; ``light_count`` random lights within the configured colour temperature and softness;
    ``object_roughness`` within its range; the default scene's random draws are unchanged by these knobs."""
    from dfbvs.bench.methods import canonical_background, scene_for_background
    from dfbvs.render.scene import kelvin_rgb, table_photo

    assert canonical_background("photo") == "photo" and scene_for_background("photo", 0).background == "photo"
    a, b, a2 = table_photo(1), table_photo(2), table_photo(1)
    assert a.shape[2] == 3 and a.dtype == np.uint8 and np.array_equal(a, a2) and not np.array_equal(a, b)
    assert a.std() > 20  # a textured photograph, not a flat colour
    config = replace(SceneConfig(), background="photo", light_count=3, light_kelvin=(3000.0, 4000.0),
                     light_angle_deg=(2.0, 5.0), object_roughness=(0.2, 0.3))
    scene = build_scene(gear, config, seed=5)
    assert len(scene.lighting.lights) == 3
    warm = kelvin_rgb(4000.0)
    for light in scene.lighting.lights:
        assert 2.0 <= light.angle_deg <= 5.0 and light.unit_direction[2] < 0  # shining down onto the table
        assert light.rgb[0] == 1.0 and light.rgb[2] <= warm[2] + 1e-9  # warm: red full, blue at most 4000 K's
    assert 0.2 <= scene.items[0].material.roughness <= 0.3
    table = next(item for item in scene.items if item.object_id == ID_TABLE)
    assert table.mesh.texture is not None and table.mesh.texture.shape == table_photo(5).shape
    # the default scene draws what it drew before these knobs existed
    plain = build_scene(gear, SceneConfig(), seed=5)
    assert plain.items[0].material.roughness is None and len(plain.lighting.lights) == 2
