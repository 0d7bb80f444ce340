"""The target: the CAD model alone at the goal camera pose, on a clean uniform background.

It gives the target image and the exact depth ``Z*`` of every target pixel. On disk a target is a folder
with ``rgb.png``, ``depth.npy`` (float32 metres, NaN off the object), ``mask.png`` (0/255) and
``meta.json`` (intrinsics, image size, ``T_object_camera`` as a 4x4 list, renderer, time per frame).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..camera import Camera
from ..errors import ConfigError, TargetError
from ..geometry import as_rigid_pose
from ..imaging import grey_float32
from .backend import DirectionalLight, DrawItem, Lighting, Material, get_renderer
from .mesh import Mesh

#: uniform background of target renders (0..1 RGB): a neutral dark grey that a light-grey print stands out on
TARGET_BACKGROUND_RGB: tuple[float, float, float] = (0.30, 0.30, 0.32)
TARGET_SUPERSAMPLE = 3  # the target is rendered once: supersample it well (edges exact to ~0.02 px)


@dataclass(frozen=True, eq=False)
class TargetRender:
    """A rendered target seen by ``camera`` (H = camera.height_px, W = camera.width_px).

    - ``rgb`` (H, W, 3) uint8; ``depth_m`` (H, W) float32 depth Z along the optical axis (m), NaN off the
      object; ``mask`` (H, W) bool, True on the object.
    - ``T_object_camera`` (4, 4): the goal camera pose in the object frame (OpenCV camera axes).
    - ``renderer``: backend name; ``time_ms``: render time of the frame.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    mask: np.ndarray
    camera: Camera
    T_object_camera: np.ndarray
    renderer: str = "moderngl"
    time_ms: float = float("nan")
    # (K, H, W) float32 grey levels: the target lit by the ambient term alone, then by one directional light per
    # direction of :func:`light_directions` (ambient 0); None unless asked for (``shading_basis_directions``)
    shading_basis: np.ndarray | None = None
    # > 0: ``shading_basis`` holds two bases drawn by two renderers, images [:split] and [split:] (each its own
    # ambient term first), fitted apart (:func:`~dfbvs.relight.fit_lighting`)
    shading_basis_split: int = 0
    # (H, W) float32 in [0, 1]: the share of each pixel the object covers (drawn with the basis, by the
    # rasteriser at the target's supersampling), so a relit target's outline mixes the relit object with the
    # background as the render's does (:func:`~dfbvs.relight.relit_grey`); None without a basis, or loaded from a
    # folder written before it existed
    shading_coverage: np.ndarray | None = None
    # (n, H, W, 3) uint8: the target drawn again with its key light turned by :data:`LIGHT_TURN_DEG` in ``n`` seeded
    # directions (``render_target``'s ``light_turns``), for :func:`dfbvs.target.light_stability` (the servo's
    # ``shading_guard``); None unless asked for, and for a target not drawn by the rasteriser
    light_turned_rgb: np.ndarray | None = None

    def meta(self) -> dict:
        return {"camera": self.camera.to_dict(), "width_px": self.camera.width_px,
                "height_px": self.camera.height_px, "T_object_camera": np.asarray(self.T_object_camera).tolist(),
                "renderer": self.renderer, "time_per_frame_ms": float(self.time_ms),
                "depth_unit": "m, Z along the optical axis, NaN off the object"}

    def save(self, directory: Path | str) -> Path:
        """Write rgb.png, depth.npy, mask.png and meta.json into ``directory`` (created), shading_basis.npz
        when the target has one (a replay relights as the run did) and light_turned.npz when it has turned-light
        renders (a replay checks the view as the run did); returns it."""
        from PIL import Image

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.rgb).save(out / "rgb.png")
        np.save(out / "depth.npy", self.depth_m.astype(np.float32))
        Image.fromarray(self.mask.astype(np.uint8) * 255).save(out / "mask.png")
        (out / "meta.json").write_text(json.dumps(self.meta(), indent=2) + "\n")
        if self.shading_basis is not None:
            basis, split = self.shading_basis.astype(np.float32), np.int64(self.shading_basis_split)
            if self.shading_coverage is None:
                np.savez_compressed(out / "shading_basis.npz", basis=basis, split=split)
            else:
                np.savez_compressed(out / "shading_basis.npz", basis=basis, split=split,
                                    coverage=self.shading_coverage.astype(np.float32))
        if self.light_turned_rgb is not None:
            np.savez_compressed(out / "light_turned.npz", rgb=self.light_turned_rgb.astype(np.uint8))
        return out

    @classmethod
    def load(cls, directory: Path | str) -> TargetRender:
        """Read a folder written by :meth:`save`; errors name the missing or inconsistent file."""
        from PIL import Image

        d = Path(directory)
        for name in ("rgb.png", "depth.npy", "mask.png", "meta.json"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"target folder {d} has no {name}")
        meta = json.loads((d / "meta.json").read_text())
        camera = Camera.from_dict(meta["camera"])
        rgb = np.asarray(Image.open(d / "rgb.png").convert("RGB"))
        depth = np.load(d / "depth.npy").astype(np.float32)
        mask = np.asarray(Image.open(d / "mask.png").convert("L")) > 127
        shape = (camera.height_px, camera.width_px)
        for name, arr in (("rgb.png", rgb), ("depth.npy", depth), ("mask.png", mask)):
            if arr.shape[:2] != shape:
                raise ValueError(f"{d / name}: size {arr.shape[1]}x{arr.shape[0]} does not match the camera's "
                                 f"{shape[1]}x{shape[0]} in meta.json")
        T = np.asarray(meta["T_object_camera"], dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"{d / 'meta.json'}: T_object_camera must be 4x4, got shape {T.shape}")
        basis, split, coverage = None, 0, None
        if (d / "shading_basis.npz").is_file():
            with np.load(d / "shading_basis.npz") as stored:
                basis = np.asarray(stored["basis"], dtype=np.float32)
                split = int(stored["split"]) if "split" in stored.files else 0
                if "coverage" in stored.files:
                    coverage = np.asarray(stored["coverage"], dtype=np.float32)
            if basis.ndim != 3 or basis.shape[1:] != shape or not 0 <= split < len(basis):
                raise ValueError(f"{d / 'shading_basis.npz'}: shape {basis.shape} (split {split}) is not "
                                 f"(K, {shape[0]}, {shape[1]}) with 0 <= split < K")
            if coverage is not None and coverage.shape != shape:
                raise ValueError(f"{d / 'shading_basis.npz'}: coverage of shape {coverage.shape}, not {shape}")
        turned = None
        if (d / "light_turned.npz").is_file():
            with np.load(d / "light_turned.npz") as stored:
                turned = np.asarray(stored["rgb"])
            if turned.ndim != 4 or turned.shape[1:] != (*shape, 3) or turned.dtype != np.uint8:
                raise ValueError(f"{d / 'light_turned.npz'}: {turned.dtype} of shape {turned.shape}, not uint8 "
                                 f"(n, {shape[0]}, {shape[1]}, 3)")
        return cls(rgb, depth, mask, camera, T, meta.get("renderer", "unknown"),
                   float(meta.get("time_per_frame_ms", float("nan"))), basis, split, coverage, turned)


@dataclass(frozen=True)
class TargetCheckConfig:
    """Floors a target must pass before anything is servoed on it (:func:`check_target_render`, and the
    keypoint count in :func:`dfbvs.target.prepare_target`).

    - ``min_object_fraction``: the object must cover at least this fraction of the image (1 %: a 1 cm cube at
      the default 0.22 m goal covers 0.88 %; the built-in parts cover 19-35 %).
    - ``max_object_fraction``: at most this fraction (a camera inside the object, e.g. a millimetre file read as
      metres, sees the object in every pixel).
    - ``min_depth_m`` / ``max_depth_m``: the median depth of the object's pixels must lie in this range.
    - ``min_target_features``: keypoints on the object (with a rendered depth) at the working resolution
      (the built-in parts give 150-300 at 320x240).
    """

    min_object_fraction: float = 0.01
    max_object_fraction: float = 0.995
    min_depth_m: float = 0.02
    max_depth_m: float = 5.0
    min_target_features: int = 20

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_object_fraction < self.max_object_fraction <= 1.0:
            raise ConfigError(f"target check: need 0 <= min_object_fraction < max_object_fraction <= 1, got "
                              f"{self.min_object_fraction!r}, {self.max_object_fraction!r}")
        if not 0.0 <= self.min_depth_m < self.max_depth_m:
            raise ConfigError(f"target check: need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m!r}, "
                              f"{self.max_depth_m!r}")
        if self.min_target_features < 0:
            raise ConfigError(f"target check: min_target_features={self.min_target_features!r} must be >= 0")


def target_hints(mesh: Mesh | None, T_object_camera: np.ndarray | None) -> str:
    """What to try when a target is empty or unframed, specific to ``mesh`` and the goal pose when given."""
    if mesh is None or T_object_camera is None:
        return ("check the mesh unit (a file in mm read as m is 1000x too large, the reverse 1000x too small: "
                "--mesh-unit), the goal distance, and whether the mesh origin lies on its geometry (the goal "
                "looks at the origin)")
    lo, hi = mesh.bounds_m
    size = float(np.max(hi - lo))
    centre = 0.5 * (lo + hi)
    eye = np.asarray(T_object_camera, dtype=np.float64)[:3, 3]
    distance = float(np.linalg.norm(eye - centre))
    hints = []
    if size > 5.0:
        hints.append(f"the mesh is {size:.3g} m across: a file in mm read as m? try --mesh-unit mm")
    elif size < 0.005:
        hints.append(f"the mesh is {size * 1e3:.3g} mm across: a file in m read as mm (or cm)? try --mesh-unit m")
    axis = np.asarray(T_object_camera, dtype=np.float64)[:3, 2]  # the optical axis (+z), object frame

    def off_axis_m(p: np.ndarray) -> float:  # how far the optical axis passes from p (inf: p is behind)
        d = p - eye
        along = float(d @ axis)
        return float(np.linalg.norm(d - along * axis)) if along > 0 else float("inf")

    misses_centre = off_axis_m(centre) > 0.5 * max(size, 1e-9)
    offset = float(np.linalg.norm(centre))
    if misses_centre and offset > max(size, 1e-9) and off_axis_m(np.zeros(3)) < 0.25 * max(size, 1e-9):
        hints.append(f"the goal camera looks at the mesh origin, which is {offset:.3g} m from its geometry's centre "
                     f"({size:.3g} m across): re-centre the mesh or aim the goal at the centre")
    elif misses_centre:
        hints.append(f"the goal camera does not look at the object: its optical axis passes "
                     f"{off_axis_m(centre):.3g} m from the object's centre" if np.isfinite(off_axis_m(centre))
                     else "the object is behind the goal camera")
    if np.all(eye > lo) and np.all(eye < hi):
        hints.append("the camera is inside the object's bounding box")
    if 0.005 <= size <= 5.0:  # a size in the right unit: the distance that frames it
        hints.append(f"the goal camera is {distance:.3g} m from an object {size:.3g} m across; a distance of about "
                     f"{3 * size:.2g}-{5 * size:.2g} m frames it (goal distance)")
    return "; ".join(hints)


def check_target_render(render: TargetRender, mesh: Mesh | None = None,
                        config: TargetCheckConfig = TargetCheckConfig()) -> None:
    """Raise :class:`~dfbvs.errors.TargetError` when ``render`` cannot serve as a target: the object covers
    less than ``min_object_fraction`` of the image (not in view, too small or too far) or more than
    ``max_object_fraction`` (the camera inside it, or far too close), or its median depth is outside
    ``[min_depth_m, max_depth_m]``. The message says what was measured and what to try (:func:`target_hints`,
    specific when ``mesh`` is given)."""
    mask = np.asarray(render.mask, dtype=bool)
    fraction = float(mask.mean()) if mask.size else 0.0
    n = int(mask.sum())
    size = f"{render.camera.width_px}x{render.camera.height_px}"
    hints = target_hints(mesh, render.T_object_camera)
    if fraction < config.min_object_fraction:
        what = "the object is not in view" if n == 0 else f"the object covers only {100 * fraction:.2f} %"
        raise TargetError(f"target render: {what} ({n} object pixels of the {size} image, floor "
                          f"{100 * config.min_object_fraction:g} %: TargetCheckConfig.min_object_fraction); {hints}")
    if fraction > config.max_object_fraction:
        raise TargetError(f"target render: the object fills {100 * fraction:.1f} % of the {size} image (ceiling "
                          f"{100 * config.max_object_fraction:g} %): the camera is inside it or far too close; "
                          f"{hints}")
    z = np.asarray(render.depth_m, dtype=np.float64)[mask]
    z = z[np.isfinite(z)]
    median = float(np.median(z)) if len(z) else float("nan")
    if not config.min_depth_m <= median <= config.max_depth_m:
        raise TargetError(f"target render: the object's median depth is {median:.3g} m, outside the working range "
                          f"[{config.min_depth_m}, {config.max_depth_m}] m (TargetCheckConfig); {hints}")


def target_items(mesh: Mesh, material: Material = Material()) -> list[DrawItem]:
    """The draw list of a target render: the mesh at the object-frame origin with id 1."""
    return [DrawItem(mesh, np.eye(4), 1, material)]


def render_target(mesh: Mesh, camera: Camera, T_object_camera: np.ndarray, *, lighting: Lighting = Lighting(),
                  material: Material = Material(),
                  background_rgb: tuple[float, float, float] = TARGET_BACKGROUND_RGB,
                  renderer: str = "moderngl", antialias: bool = True,
                  supersample: int = TARGET_SUPERSAMPLE, shading_basis_directions: int = 0,
                  basis_renderer: str = "moderngl", second_basis: tuple[str, int] = ("", 0),
                  light_turns: int = 0) -> TargetRender:
    """Render ``mesh`` (object frame) alone, seen from ``T_object_camera``, on a uniform background.

    The target is rendered once, so it is supersampled by default (``supersample``, see
    :class:`~dfbvs.render.backend.Renderer`): its edges are where they truly are to a few hundredths of a pixel.
    For a large image the factor is lowered so that the supersampled image fits the backend's ``max_side_px``
    (8192 px for moderngl); an image larger than that is a :class:`~dfbvs.errors.ConfigError`.
    Lights are fixed in the object frame (the default :class:`Lighting`: a key light from above and a side
    fill), so a scene rendered with the same lighting shows the object exactly as the target does.
    ``shading_basis_directions`` > 0 also renders the shading basis (:attr:`TargetRender.shading_basis`) with
    that many light directions (by ``basis_renderer``, the ``moderngl`` rasteriser by default: its shading adds up
    over lights; a path tracer's adds up in linear light, e.g. ``blender:transfer=linear``, drawn without
    supersampling), which :mod:`dfbvs.relight` fits to the live image's lighting. ``second_basis`` (a renderer
    and a number of directions) appends a second basis (:attr:`TargetRender.shading_basis_split`).
    ``light_turns`` > 0 also draws the target that many times with the key light of ``lighting`` turned by
    :data:`LIGHT_TURN_DEG` (:attr:`TargetRender.light_turned_rgb`, ~0.1 s each), for a target drawn by the
    rasteriser only: a path tracer's sampling noise would move the patches as much as the light does, and the
    check would refuse any view.
    """
    T = as_rigid_pose(T_object_camera, "T_object_camera")  # a PoseError for NaN, wrong shapes, non-rigid
    backend = get_renderer(renderer)
    max_side = getattr(backend, "max_side_px", None)
    if isinstance(max_side, int) and supersample > 1:  # a large target: supersample less rather than fail
        supersample = max(1, min(int(supersample), max_side // max(camera.width_px, camera.height_px)))
    items = target_items(mesh, material)
    out = backend.render(items, camera, T, lighting, background_rgb, antialias, supersample)
    basis, split = None, 0

    def draw_basis(spec: str, directions: int) -> np.ndarray:
        lightings = [Lighting(ambient=1.0, lights=())] + [
            Lighting(ambient=0.0, lights=(DirectionalLight((float(x), float(y), float(z)), BASIS_LIGHT_INTENSITY),))
            for x, y, z in light_directions(directions)]
        # by the rasteriser whatever drew the target unless asked: 51 path-traced frames take minutes
        drawer = get_renderer(spec)
        basis_ss = supersample if spec == "moderngl" else 1
        return np.stack([grey_float32(drawer.render(items, camera, T, lit, background_rgb, antialias,
                                                    basis_ss).rgb) for lit in lightings])

    coverage = None
    if shading_basis_directions > 0:
        basis = draw_basis(basis_renderer, shading_basis_directions)
        if second_basis[0].strip() and second_basis[1] > 0:
            split = len(basis)
            basis = np.concatenate([basis, draw_basis(*second_basis)])
        # the object white (ambient 1, no highlight) on black: its share of each pixel
        white = target_items(mesh, Material(rgb=(1.0, 1.0, 1.0), specular=0.0))
        coverage = grey_float32(get_renderer("moderngl").render(white, camera, T, Lighting(ambient=1.0, lights=()),
                                                                (0.0, 0.0, 0.0), antialias, supersample).rgb) / 255.0
    turned = None
    if light_turns > 0 and renderer == "moderngl":  # a path tracer's noise moves patches as much as the light
        rng = np.random.default_rng([0, 20])  # the same turns for every target: a seeded check, not a sample
        turned = np.stack([backend.render(items, camera, T, lighting.key_light_turned(LIGHT_TURN_DEG, rng),
                                          background_rgb, antialias, supersample).rgb for _ in range(light_turns)])
    return TargetRender(out.rgb, out.depth_m, out.mask, camera, T, renderer, out.time_ms, basis, split, coverage,
                        turned)


#: the light-stability check (:func:`dfbvs.target.light_stability`): how far the key light turns (deg; the default
#: scene's and the parts protocol's gap, ``SceneConfig.light_rotation_deg``) and in how many random directions
LIGHT_TURN_DEG = 20.0
LIGHT_TURNS = 6


def key_light_turned_renders(mesh: Mesh, render: TargetRender, n: int = LIGHT_TURNS) -> np.ndarray:
    """(n, H, W, 3) uint8: the target ``render`` of ``mesh`` drawn again (its camera, pose and renderer, the default
    lighting) with the key light turned by :data:`LIGHT_TURN_DEG` in ``n`` seeded directions (the render's own
    :attr:`TargetRender.light_turned_rgb` when it has ``n``): what the target looks like under another light, for
    :func:`dfbvs.target.light_stability`. ~0.1 s a render with the rasteriser."""
    if render.light_turned_rgb is not None and len(render.light_turned_rgb) == n:
        return render.light_turned_rgb
    # by the rasteriser (the check is meaningful for a target it drew: see render_target's light_turns)
    turned = render_target(mesh, render.camera, render.T_object_camera, renderer="moderngl", light_turns=n)
    assert turned.light_turned_rgb is not None
    return turned.light_turned_rgb


#: a basis light's intensity: half of full scale, so that albedo times it (plus its highlight) stays below 255
BASIS_LIGHT_INTENSITY = 0.5


def light_directions(n: int) -> np.ndarray:
    """``n`` unit directions (n, 3) spread evenly over the sphere (a Fibonacci lattice), object axes."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)
