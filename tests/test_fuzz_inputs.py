"""Fuzzing the servo, target and render entry points with seeded generators (issue 16).

Every input must end in a typed dfbvs error (a subclass of :class:`dfbvs.errors.DfbvsError`; a missing file is
the built-in FileNotFoundError naming the path), or in a documented result: an image the library converts, a
servo step whose status is not OK with a zero twist, a target that passes its checks. Never a traceback from a
dependency (cv2, numpy, moderngl, trimesh, torch), a crash, or a twist on a bad lock. docs/robustness.md lists
what each input gets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dfbvs.camera import Camera
from dfbvs.errors import DfbvsError, FrameError, MeshError, PoseError, TargetError
from dfbvs.imaging import as_rgb_frame

SEED = 16
DTYPES = (np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, bool,
          np.complex64)
SIZES = ((240, 320), (480, 640), (120, 160), (360, 640), (240, 640), (3000, 4), (1, 1), (0, 0), (16, 16))
CHANNELS = (None, 1, 2, 3, 4, 5)


def _array(rng: np.random.Generator, dtype, hw, channels) -> np.ndarray:
    shape = hw if channels is None else (*hw, channels)
    if np.dtype(dtype) == np.bool_:
        return rng.random(shape) > 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype)
    return (rng.random(shape) * 255).astype(dtype)


def test_fuzz_every_image_dtype_shape_and_size():
    """Every dtype x size x channel count (plus non-arrays): a uint8 HxWx3 image or a FrameError."""
    rng = np.random.default_rng(SEED)
    camera = Camera.default()
    inputs: list[object] = [None, [], [[1, 2], [3, 4]], "rgb.png", 3.0, {"rgb": 1}, np.float64(1.0),
                            np.zeros(()), np.zeros(5, np.uint8), np.zeros((2, 2, 2, 2), np.uint8)]
    inputs += [_array(rng, d, hw, c) for d, hw, c in itertools.product(DTYPES, SIZES, CHANNELS)]
    accepted = 0
    for image in inputs:
        for cam in (None, camera):
            try:
                out = as_rgb_frame(image, cam)
            except FrameError as exc:
                assert str(exc)
                continue
            accepted += 1
            assert isinstance(image, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
            assert out.shape[:2] == image.shape[:2] and out.flags.c_contiguous
            assert image.dtype in (np.uint8, np.uint16)
            if cam is not None:
                assert abs(out.shape[1] / out.shape[0] - 4 / 3) < 0.02
    assert accepted > 20


def _bad_lock_frames(aliked_bracket) -> dict[str, object]:
    from dfbvs.render.scene import render_scene
    from dfbvs.sim.episode import EpisodeConfig, start_pose

    servo, scene, camera, T_goal = aliked_bracket
    rng = np.random.default_rng(SEED)
    start = render_scene(scene, camera, start_pose(EpisodeConfig(), camera, T_goal)).rgb
    return {
        "noise 640x480 uint8": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "noise 320x240 uint16": rng.integers(0, 65536, (240, 320, 3), dtype=np.uint16),
        "noise 160x120 grey": rng.integers(0, 256, (120, 160), dtype=np.uint8),
        "noise 640x480 rgba": rng.integers(0, 256, (480, 640, 4), dtype=np.uint8),
        "black": np.zeros((480, 640, 3), np.uint8),
        "white": np.full((480, 640, 3), 255, np.uint8),
        "mirrored": np.ascontiguousarray(start[:, ::-1]),
        "upside down": np.ascontiguousarray(start[::-1]),
        "mirrored view (negative strides)": start[::-1, ::-1],
    }


def test_fuzz_servo_frames(aliked_bracket):
    """Bad frames to DFBVSServo.step: a FrameError, or (an image of the right camera showing no credible lock)
    a non-OK status with a zero twist and a reason."""
    servo = aliked_bracket[0]
    rng = np.random.default_rng(SEED + 1)
    refused = [None, [[0] * 640] * 480, np.zeros((0, 640, 3), np.uint8), np.zeros((480, 640, 2), np.uint8),
               np.zeros((480, 640, 3), np.float32), np.zeros((360, 640, 3), np.uint8),
               np.zeros((480, 480, 3), np.uint8), np.zeros((240, 640), np.uint8), np.zeros((480, 640, 3), np.int32),
               np.zeros((6, 8, 3), np.uint8), rng.random((480, 640, 3))]
    for frame in refused:
        servo.reset()
        with pytest.raises(FrameError):
            servo.step(frame)  # type: ignore[arg-type]
    for name, frame in _bad_lock_frames(aliked_bracket).items():
        servo.reset()
        step = servo.step(frame)  # type: ignore[arg-type]
        assert not step.ok and not np.any(step.v_camera), (name, step.status, step.n_inliers)
        assert step.reason, name


def test_fuzz_photometric_frames():
    """The photometric baseline checks frames the same way; it has no lock (a whole-image law), so for an image
    of its camera it returns its law's saturated twist (documented in docs/robustness.md)."""
    from dfbvs.photometric import PhotometricConfig, PhotometricServo
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import GoalConfig

    config = PhotometricConfig()
    servo = PhotometricServo(config, render_target(load_builtin("bracket"), Camera.default(),
                                                   GoalConfig().T_object_camera()))
    rng = np.random.default_rng(SEED + 2)
    for d, hw, c in itertools.product(DTYPES, SIZES, (None, 1, 3, 4)):
        frame = _array(rng, d, hw, c)
        try:
            step = servo.step(frame)
        except FrameError:
            continue
        v = step.v_camera
        assert np.all(np.isfinite(v))
        assert np.linalg.norm(v[:3]) <= config.max_linear_m_s + 1e-9
        assert np.linalg.norm(v[3:]) <= config.max_angular_rad_s + 1e-9


# --- meshes ------------------------------------------------------------------------------------------------------
def _mesh_cases(rng: np.random.Generator) -> dict[str, tuple[object, object]]:
    from dfbvs.render.objects import load_builtin

    b = load_builtin("bracket")
    v, f = b.vertices_m, b.faces
    tri = np.array([[0, 1, 2]])
    cases: dict[str, tuple[object, object]] = {
        "empty": (np.zeros((0, 3)), np.zeros((0, 3), int)),
        "no faces": (v, np.zeros((0, 3), int)),
        "nan vertex": (np.where(np.arange(len(v))[:, None] == 3, np.nan, v), f),
        "inf vertex": (np.where(np.arange(len(v))[:, None] == 0, np.inf, v), f),
        "index out of range": (v, np.vstack([f, [[0, 1, len(v)]]])),
        "negative index": (v, np.vstack([f, [[0, 1, -1]]])),
        "2d vertices": (v[:, :2], f),
        "quads": (v, np.hstack([f, f[:, :1]])),
        "one point": (np.zeros((3, 3)), tri),
        "collinear": (np.array([[0.0, 0, 0], [0.01, 0, 0], [0.02, 0, 0]]), tri),
        "zero-area faces": (np.array([[0.0, 0, 0], [0.01, 0, 0], [0.02, 0, 0], [0, 0.01, 0]]),
                            np.array([[0, 1, 2], [0, 0, 3]])),
        "single triangle": (np.array([[0.0, 0, 0], [0.05, 0, 0], [0, 0.05, 0]]), tri),
        "non-manifold fan": (np.array([[0.0, 0, 0], [0.05, 0, 0], [0, 0.05, 0], [0, -0.05, 0], [0, 0, 0.05]]),
                             np.array([[0, 1, 2], [0, 1, 3], [0, 1, 4]])),
        "huge coordinates": (v * 1e6, f),
        "mm read as m": (v * 1000.0, f),
        "m read as mm": (v * 0.001, f),
        "far from origin": (v + [5.0, 0.0, 0.0], f),
        "random soup": (rng.normal(0.0, 0.03, (60, 3)), rng.integers(0, 60, (40, 3))),
        "float faces": (v, f.astype(float) + 0.5),
    }
    return cases


def test_fuzz_meshes_to_target():
    """Each mesh: a MeshError when it cannot be a CAD model; otherwise rendered at the default goal and prepared
    as a target (ORB): either it passes the target checks or a TargetError says why."""
    from dfbvs.features import get_extractor
    from dfbvs.render.mesh import Mesh
    from dfbvs.render.target import check_target_render, render_target
    from dfbvs.sim.episode import GoalConfig
    from dfbvs.target import prepare_target

    orb = get_extractor("orb")
    T_goal = GoalConfig().T_object_camera()
    outcome = {}
    for name, (vertices, faces) in _mesh_cases(np.random.default_rng(SEED)).items():
        try:
            mesh = Mesh(vertices, faces, name=name)  # type: ignore[arg-type]
            render = render_target(mesh, Camera.default(), T_goal)
            check_target_render(render, mesh)
            prepare_target(render, orb, 320, 240)
            outcome[name] = "ok"
        except (MeshError, TargetError) as exc:
            assert name in str(exc) or isinstance(exc, TargetError), exc
            outcome[name] = type(exc).__name__
    for name in ("empty", "no faces", "nan vertex", "inf vertex", "index out of range", "negative index",
                 "2d vertices", "quads", "one point", "collinear"):
        assert outcome[name] == "MeshError", (name, outcome[name])
    for name in ("huge coordinates", "mm read as m", "m read as mm", "far from origin"):
        assert outcome[name] == "TargetError", (name, outcome[name])


@pytest.mark.parametrize("content, suffix", [(b"", ".stl"), (b"\x00\xff" * 300, ".stl"), (b"solid x\nendsolid", ".stl"),
                                             (b"v 0 0 0\nf 1 2 3\n", ".obj"), (b"ply\nformat ascii 1.0\n", ".ply"),
                                             (b"{", ".gltf"), (b"hello", ".xyz")])
def test_fuzz_mesh_files(tmp_path, content, suffix):
    from dfbvs.render.mesh import load_mesh

    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(MeshError, match="bad"):
        load_mesh(path)


def test_fuzz_mesh_paths(tmp_path):
    from dfbvs.render.mesh import load_mesh

    with pytest.raises(FileNotFoundError, match="nope.stl"):
        load_mesh(tmp_path / "nope.stl")
    with pytest.raises(MeshError):
        load_mesh(tmp_path)
    with pytest.raises(MeshError, match="unit"):
        load_mesh(tmp_path / "x.stl", unit="inch")


# --- poses -------------------------------------------------------------------------------------------------------
def _bad_poses(rng: np.random.Generator) -> list[object]:
    from dfbvs.sim.episode import GoalConfig

    T = GoalConfig().T_object_camera()
    poses: list[object] = [None, "identity", [[1, 0], [0, 1]], np.eye(3), np.eye(4)[:3], np.zeros((4, 5)),
                           np.eye(4).ravel(), [["a"] * 4] * 4, np.zeros((4, 4))]
    for _ in range(12):
        M = T.copy()
        kind = rng.integers(5)
        if kind == 0:
            M[:3, :3] *= rng.uniform(1.1, 3.0)  # scaled
        elif kind == 1:
            M[:3, :3] = M[:3, :3] @ np.diag([1.0, 1.0, -1.0])  # reflected
        elif kind == 2:
            M[rng.integers(4), rng.integers(4)] = rng.choice([np.nan, np.inf, -np.inf])
        elif kind == 3:
            M[3, :3] = rng.normal(size=3)  # projective last row
        else:
            M[:3, :3] += rng.normal(0.0, 0.2, (3, 3))  # sheared
        poses.append(M)
    return poses


def test_fuzz_poses_to_render_and_start():
    from dfbvs.render.objects import load_builtin
    from dfbvs.render.scene import SceneConfig, build_scene, render_scene
    from dfbvs.render.target import render_target
    from dfbvs.sim.episode import EpisodeConfig, StartConfig, start_pose

    mesh = load_builtin("bracket")
    scene = build_scene(mesh, SceneConfig.clean(), seed=0)
    camera = Camera.default().rescaled(160, 120)
    config = EpisodeConfig()
    for T in _bad_poses(np.random.default_rng(SEED)):
        with pytest.raises(PoseError):
            render_target(mesh, camera, T)  # type: ignore[arg-type]
        with pytest.raises(PoseError):
            render_scene(scene, camera, T)  # type: ignore[arg-type]
        if T is None:  # T_goal_start=None means "a random start pose"
            continue
        try:
            start = StartConfig(T_goal_start=T)  # type: ignore[arg-type]
        except DfbvsError:
            continue
        with pytest.raises(PoseError):
            start_pose(EpisodeConfig(start=start), config.camera, config.goal.T_object_camera())


def test_fuzz_target_renders():
    """Target renders that show nothing usable: empty masks, NaN or absurd depths, an object filling the image."""
    from dfbvs.render.target import TargetRender, check_target_render

    cam = Camera.default().rescaled(160, 120)
    shape = (120, 160)
    rgb = np.zeros((*shape, 3), np.uint8)
    full = np.ones(shape, bool)
    disk = np.hypot(*np.mgrid[0:120, 0:160] - np.array([60, 80])[:, None, None]) < 30
    cases = {
        "empty mask": (np.full(shape, np.nan, np.float32), np.zeros(shape, bool)),
        "full mask": (np.full(shape, 0.2, np.float32), full),
        "nan depth": (np.full(shape, np.nan, np.float32), disk),
        "depth 1 mm": (np.full(shape, 0.001, np.float32), disk),
        "depth 100 m": (np.full(shape, 100.0, np.float32), disk),
        "one pixel": (np.full(shape, 0.2, np.float32), np.pad(np.ones((1, 1), bool), ((60, 59), (80, 79)))),
    }
    for name, (depth, mask) in cases.items():
        with pytest.raises(TargetError):
            check_target_render(TargetRender(rgb, depth, mask, cam, np.eye(4)))
            pytest.fail(f"{name}: accepted")
    check_target_render(TargetRender(rgb, np.where(disk, 0.2, np.nan).astype(np.float32), disk, cam, np.eye(4)))
