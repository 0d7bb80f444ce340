"""The simulated "live camera": the target object on a textured table among distractors, seen under
lighting and through a sensor that differ from the clean target render (the sim-to-real gap).

The world frame of a scene IS the object frame: the object sits at the origin, the table top is the plane
``z = min z`` of the object mesh, so the object stands on it. Every random choice is drawn from the seed
given to :func:`build_scene`; per-frame sensor noise comes from the scene's own generator (seeded too),
so an episode is reproducible frame by frame.

Ids in :attr:`RenderOutput.ids`: 0 nothing, 1 target, 2 table, 3 gripper fingertips, 4.. distractors.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence, cast

import numpy as np

from ..camera import Camera
from ..geometry import as_rigid_pose, make_pose, so3_exp
from .backend import DirectionalLight, DrawItem, Lighting, Material, RenderOutput, get_renderer
from .mesh import Mesh
from .target import TARGET_BACKGROUND_RGB, TARGET_SUPERSAMPLE

ID_TABLE = 2
ID_FINGERTIPS = 3
ID_FIRST_DISTRACTOR = 4

#: distractors that look like the built-in targets (drawn in the same 3D-print grey)
_PRINT_LIKE = ("bracket", "gear", "connector", "gear_small", "plate")
_DISTRACTOR_PALETTE = ((0.80, 0.78, 0.74), (0.62, 0.62, 0.64), (0.15, 0.15, 0.17), (0.75, 0.20, 0.15),
                       (0.15, 0.35, 0.70), (0.90, 0.75, 0.20), (0.25, 0.55, 0.30), (0.95, 0.95, 0.93))


@dataclass(frozen=True)
class SceneConfig:
    """A cluttered scene and its sim-to-real gap. Every knob is explicit; randomness comes from the seed.

    Background and clutter:
      - ``background``: ``"procedural"`` (seeded workbench-mat texture), ``"photo"`` (a photograph of
        gravel, grass, bricks, ... chosen and tinted by the seed, :data:`TABLE_PHOTOS`), ``"plain"`` (uniform
        ``table_rgb``), ``"none"`` (no table: uniform ``background_rgb``, as in the target render) or the
        path of an image stretched over the table.
      - ``table_size_m``: side of the square table top (m); ``texture_tile_m``: side of one repeat of the
        procedural texture on the table (m); ``table_rgb``, ``background_rgb``: 0..1 colours.
      - ``n_distractors`` meshes drawn from ``distractors`` (built-in names; the target's own name is
        skipped), placed at random on the table within ``placement_radius_m`` of the object's centre (around
        an object larger than about ``placement_radius_m``, in a ring ``placement_radius_m / 2`` wide around it),
        at least ``distractor_gap_m`` from the object and from each other (footprint circles).
    Sim-to-real gap (all at their identity value = no gap):
      - ``light_rotation_deg``: the key light's direction turned by this angle about a random axis;
        ``light_intensity_gain`` and ``ambient_gain`` scale the target render's lights.
      - ``object_color_shift``: each RGB channel of the object's colour moves by a random amount in
        ``[-shift, shift]`` (0..1 units); ``object_specular_gain`` scales its highlight; ``object_shininess``
        (None: the target render's) is its Blinn-Phong exponent: with a large gain, a shiny machined part whose
        highlights the target render does not have.
      - ``exposure_gain`` multiplies the image; ``vignetting`` darkens the corners by this fraction
        (quadratic fall-off); ``blur_sigma_px`` Gaussian blur (px); ``noise_std_levels`` Gaussian sensor
        noise (std in 8-bit intensity levels), drawn fresh each frame.
      - ``gripper_fingertips``: two dark fingertips fixed to the camera occlude the bottom
        ``fingertip_coverage`` fraction of the image at ``fingertip_depth_m`` in front of the camera.
    Lights and materials drawn from the seed (the renderer decides what it can show: ``moderngl`` draws the
    lights' directions, colours and intensities; ``blender`` also their softness, the shadows and the roughness):
      - ``light_count`` 0 keeps the target render's two lights (turned and scaled by the gap knobs above);
        1..4 draws that many lights instead: a key light 25-70 deg above the table from any side, weaker
        fill lights anywhere above it, each a colour temperature in ``light_kelvin`` and an angular diameter
        (softness) in ``light_angle_deg``;
      - ``object_roughness``: a range the object's microfacet roughness is drawn from (None: from its
        Blinn-Phong shininess); ``object_specular_gain`` scales its highlight either way.
    ``lookalikes``: that many copies of the target itself (random yaw, the target's colour) right beside its
    footprint, the first towards ``lookalike_azimuth_deg`` (world frame, about the vertical; 180 deg from a goal's
    azimuth puts it behind the object in that goal's view), the others spread evenly around: the same features in
    two places. Scenes without them draw exactly as before.
    ``layer_pitch_m`` > 0 draws 3D-print layer lines on the object (also pass it to the target render).
    ``antialias`` multisamples the RGB image. It is on by default: a real sensor integrates light over each
    pixel, and aliased edges shifted ALIKED keypoints by 0.16 px on average at the goal pose (measured), a
    bias the servo loop turns into pose error. Turning it off roughly halves the frame time. The renderer's
    4 samples still quantize an edge pixel's coverage to quarters (edges off by up to 0.12 px, depending on
    the sub-pixel pose); ``supersample`` = 2 (default) draws the RGB image at twice the size and box-filters
    it, for ~2.5x the frame time; 1 turns it off.
    """

    background: str = "procedural"
    table_size_m: float = 1.2
    texture_tile_m: float = 0.4
    table_rgb: tuple[float, float, float] = (0.42, 0.40, 0.38)
    background_rgb: tuple[float, float, float] = TARGET_BACKGROUND_RGB
    n_distractors: int = 6
    distractors: tuple[str, ...] = ("gear_small", "plate", "block", "cylinder", "hex_nut", "sphere",
                                    "bracket", "gear", "connector")
    placement_radius_m: float = 0.22
    distractor_gap_m: float = 0.01
    light_rotation_deg: float = 20.0
    light_intensity_gain: float = 0.85
    ambient_gain: float = 1.15
    object_color_shift: float = 0.04
    object_specular_gain: float = 1.5
    object_shininess: float | None = None
    exposure_gain: float = 1.08
    vignetting: float = 0.25
    blur_sigma_px: float = 0.6
    noise_std_levels: float = 2.0
    gripper_fingertips: bool = False
    fingertip_coverage: float = 0.15
    fingertip_depth_m: float = 0.07
    light_count: int = 0
    light_kelvin: tuple[float, float] = (3500.0, 7000.0)
    light_angle_deg: tuple[float, float] = (0.5, 15.0)
    object_roughness: tuple[float, float] | None = None
    layer_pitch_m: float = 0.0
    lookalikes: int = 0
    lookalike_azimuth_deg: float = 120.0
    renderer: str = "moderngl"
    antialias: bool = True  # a real sensor integrates over the pixel: aliased edges bias keypoints
    supersample: int = 2  # RGB drawn at this many times the resolution and box-filtered down (1: off)

    def __post_init__(self) -> None:
        checks = {
            "table_size_m": self.table_size_m > 0, "texture_tile_m": self.texture_tile_m > 0,
            "n_distractors": int(self.n_distractors) == self.n_distractors and self.n_distractors >= 0,
            "lookalikes": int(self.lookalikes) == self.lookalikes and self.lookalikes >= 0,
            "placement_radius_m": self.placement_radius_m > 0, "distractor_gap_m": self.distractor_gap_m >= 0,
            "light_rotation_deg": 0 <= self.light_rotation_deg <= 180,
            "light_intensity_gain": self.light_intensity_gain >= 0, "ambient_gain": self.ambient_gain >= 0,
            "object_color_shift": 0 <= self.object_color_shift <= 1,
            "object_specular_gain": self.object_specular_gain >= 0, "exposure_gain": self.exposure_gain > 0,
            "object_shininess": self.object_shininess is None or self.object_shininess > 0,
            "vignetting": 0 <= self.vignetting <= 1, "blur_sigma_px": self.blur_sigma_px >= 0,
            "noise_std_levels": self.noise_std_levels >= 0, "fingertip_coverage": 0 < self.fingertip_coverage < 1,
            "fingertip_depth_m": self.fingertip_depth_m > 0.02, "layer_pitch_m": self.layer_pitch_m >= 0,
            "supersample": int(self.supersample) == self.supersample and 1 <= self.supersample <= 8,
            "light_count": int(self.light_count) == self.light_count and 0 <= self.light_count <= 4,
            "light_kelvin": len(self.light_kelvin) == 2 and 1000 <= min(self.light_kelvin) <= max(self.light_kelvin)
            <= 20000,
            "light_angle_deg": len(self.light_angle_deg) == 2 and 0 <= min(self.light_angle_deg)
            <= max(self.light_angle_deg) <= 180,
            "object_roughness": self.object_roughness is None or (
                len(self.object_roughness) == 2 and 0 <= min(self.object_roughness) <= max(self.object_roughness) <= 1),
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not np.isfinite(value)):
                raise ValueError(f"SceneConfig.{name}={value!r} is out of range")
        if self.n_distractors > 0 and not self.distractors:
            raise ValueError(f"SceneConfig: n_distractors={self.n_distractors} but no distractor names given")
        for rgb_name in ("table_rgb", "background_rgb"):
            rgb = getattr(self, rgb_name)
            if len(rgb) != 3 or not all(0 <= c <= 1 for c in rgb):
                raise ValueError(f"SceneConfig.{rgb_name}={rgb!r}: need 3 values in [0, 1]")
        if self.background not in ("procedural", "photo", "plain", "none") and not Path(self.background).is_file():
            raise ValueError(f"SceneConfig.background={self.background!r}: use procedural, photo, plain, none or "
                             f"the path of an existing image file (the command line's --background cluttered, "
                             f"similar, clean and photo set this and the distractors together)")

    def without_gap(self) -> SceneConfig:
        """The same scene (background, distractors) with every sim-to-real knob at its identity value."""
        return replace(self, light_rotation_deg=0.0, light_intensity_gain=1.0, ambient_gain=1.0,
                       object_color_shift=0.0, object_specular_gain=1.0, exposure_gain=1.0, vignetting=0.0,
                       blur_sigma_px=0.0, noise_std_levels=0.0, gripper_fingertips=False)

    @classmethod
    def clean(cls) -> SceneConfig:
        """No table, no distractors, no gap: renders exactly what :func:`render_target` renders."""
        return replace(cls(), background="none", n_distractors=0, antialias=True,
                       supersample=TARGET_SUPERSAMPLE).without_gap()

    @classmethod
    def similar_to_target(cls) -> SceneConfig:
        """A plain table close to the target render's background, no distractors, the default gap."""
        return replace(cls(), background="plain", table_rgb=(0.33, 0.33, 0.35), n_distractors=0)


@dataclass(frozen=True, eq=False)
class Scene:
    """A built scene: draw ``items`` (the target with id 1 first), under ``lighting``, on
    ``background_rgb``; ``fingertips`` is the fingertip mesh (camera frame) or None; ``noise_rng``
    draws the per-frame sensor noise."""

    config: SceneConfig
    seed: int
    items: tuple[DrawItem, ...]
    lighting: Lighting
    background_rgb: tuple[float, float, float]
    fingertips: Mesh | None = None
    noise_rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


def procedural_table_texture(seed: int, size_px: int = 512) -> np.ndarray:
    """(size_px, size_px, 3) uint8 seeded workbench-mat texture that tiles: smooth colour noise, a grid of
    thin lines, and scattered marks (stains, labels, screws) that give background keypoints."""
    rng = np.random.default_rng(seed)
    import cv2

    base = np.asarray(rng.choice([(0.35, 0.42, 0.38), (0.45, 0.40, 0.34), (0.30, 0.33, 0.40), (0.42, 0.42, 0.42)]))
    img = np.ones((size_px, size_px, 3)) * base
    for cells, amp in ((4, 0.08), (16, 0.05), (64, 0.03)):  # tileable noise: wrap-around upsampling
        noise = rng.normal(0, 1, (cells, cells, 3)).astype(np.float32)
        noise = np.concatenate([noise, noise[:1]], axis=0)
        noise = np.concatenate([noise, noise[:, :1]], axis=1)
        up = cv2.resize(noise, (size_px + size_px // cells, size_px + size_px // cells),
                        interpolation=cv2.INTER_CUBIC)[:size_px, :size_px]
        img += amp * up.mean(axis=2, keepdims=True) + 0.3 * amp * up
    step = size_px // 8
    for k in range(0, size_px, step):
        img[k:k + 2, :, :] *= 0.75
        img[:, k:k + 2, :] *= 0.75
    for _ in range(int(rng.integers(18, 30))):
        colour = np.asarray(_DISTRACTOR_PALETTE[int(rng.integers(len(_DISTRACTOR_PALETTE)))]) * rng.uniform(0.6, 1.1)
        x, y = rng.integers(0, size_px, 2)
        r = int(rng.integers(4, 26))
        kind = rng.integers(3)
        overlay = img.copy()
        if kind == 0:
            cv2.circle(overlay, (int(x), int(y)), r, colour.tolist(), -1, lineType=cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(overlay, (int(x), int(y)), (int(x + 2 * r), int(y + r)), colour.tolist(), -1)
        else:
            cv2.line(overlay, (int(x), int(y)), (int(x + rng.integers(-60, 60)), int(y + rng.integers(-60, 60))),
                     colour.tolist(), int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
        alpha = rng.uniform(0.4, 0.9)
        img = (1 - alpha) * img + alpha * overlay
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


#: photographs of surfaces shipped with scikit-image (grey, 512x512): real textures under a part on a table
TABLE_PHOTOS = ("gravel", "grass", "brick")


def table_photo(seed: int) -> np.ndarray:
    """(H, W, 3) uint8: one of :data:`TABLE_PHOTOS` chosen by ``seed``, tinted (a warm or cool cast, the
    contrast scaled by 0.6-1.0) and mirrored so that each seed gives a different table."""
    import importlib.util

    from ..imaging import read_image_rgb8

    rng = np.random.default_rng(seed)
    name = TABLE_PHOTOS[int(rng.integers(len(TABLE_PHOTOS)))]
    spec = importlib.util.find_spec("skimage")
    folder = Path(spec.submodule_search_locations[0]) / "data" if spec and spec.submodule_search_locations else None
    path = folder / f"{name}.png" if folder is not None else None
    if path is None or not path.is_file():
        from ..errors import ConfigError

        raise ConfigError(f"background 'photo' needs the photographs shipped with scikit-image ({name}.png); "
                          f"install it: pip install scikit-image (part of the bench extra)")
    grey = read_image_rgb8(path, what="table photo").astype(np.float64) / 255.0
    tint = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.15, 0.15, 3)
    contrast = rng.uniform(0.6, 1.0)
    img = (grey.mean() + contrast * (grey - grey.mean())) * tint * rng.uniform(0.75, 1.0)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _table_mesh(config: SceneConfig, table_z_m: float, seed: int, target: Mesh | None = None) -> Mesh:
    """The table top: ``table_size_m`` square (at least 8 footprint radii of the target, so a framed 40 cm part
    still has table around it), centred under the target's footprint (a part whose origin is far from its
    geometry stands in the middle of it; without a target, at the origin)."""
    cx = cy = 0.0
    half = config.table_size_m / 2
    if target is not None:
        lo, hi = target.bounds_m
        cx, cy = 0.5 * (lo[:2] + hi[:2])
        half = max(half, 4.0 * 0.5 * float(np.linalg.norm(hi[:2] - lo[:2])))
    v = np.array([[cx - half, cy - half, table_z_m], [cx + half, cy - half, table_z_m],
                  [cx + half, cy + half, table_z_m], [cx - half, cy + half, table_z_m]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    if config.background == "plain":
        return Mesh(v, f, base_rgb=config.table_rgb, name="table")
    if config.background == "procedural":
        texture = procedural_table_texture(seed)
        repeats = 2 * half / config.texture_tile_m
    elif config.background == "photo":  # one photo covers ~texture_tile_m of table: stones a few mm wide
        texture = table_photo(seed)
        repeats = 2 * half / config.texture_tile_m
    else:
        from ..imaging import read_image_rgb8

        # 16-bit files are scaled over their range (PIL's convert("RGB") clipped them to white)
        texture = read_image_rgb8(config.background, what="background image")
        repeats = 1.0
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]) * repeats
    return Mesh(v, f, uv=uv, texture=texture, base_rgb=(1.0, 1.0, 1.0), name="table")


_FINGERTIP_LENGTH_M = 0.04


def _fingertip_mesh() -> Mesh:
    """One fingertip: a 20 x 60 x 40 mm box (x, y, z in the camera frame), origin at its top-front-centre."""
    import trimesh

    box = trimesh.creation.box(extents=(0.02, 0.06, _FINGERTIP_LENGTH_M))
    v = np.asarray(box.vertices) + np.array([0.0, 0.03, _FINGERTIP_LENGTH_M / 2])
    return Mesh(v, np.asarray(box.faces), base_rgb=(0.12, 0.12, 0.13), name="fingertip")


def kelvin_rgb(kelvin: float) -> tuple[float, float, float]:
    """An approximate colour (0..1, max channel 1) of a black body at ``kelvin`` (1000-20000 K): warm
    below ~6500 K, blue-ish above, interpolated between tabulated values."""
    table_k = np.array([1000, 2000, 3000, 4000, 5000, 6500, 8000, 10000, 20000], dtype=np.float64)
    table_rgb = np.array([[1.0, 0.22, 0.0], [1.0, 0.54, 0.17], [1.0, 0.71, 0.42], [1.0, 0.82, 0.64],
                          [1.0, 0.89, 0.81], [1.0, 0.98, 1.0], [0.89, 0.92, 1.0], [0.79, 0.85, 1.0],
                          [0.66, 0.76, 1.0]])
    k = float(np.clip(kelvin, table_k[0], table_k[-1]))
    rgb = [float(np.interp(k, table_k, table_rgb[:, c])) for c in range(3)]
    return (rgb[0], rgb[1], rgb[2])


def _drawn_lights(config: SceneConfig, rng: np.random.Generator) -> tuple[DirectionalLight, ...]:
    """``config.light_count`` lights drawn from ``rng``: the first a key light, the others fill lights."""
    lights = []
    for k in range(config.light_count):
        elevation = np.deg2rad(rng.uniform(25, 70) if k == 0 else rng.uniform(10, 80))
        azimuth = rng.uniform(0, 2 * np.pi)
        towards_scene = -np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                   np.sin(elevation)])
        intensity = rng.uniform(0.5, 0.75) if k == 0 else rng.uniform(0.1, 0.3)
        lights.append(DirectionalLight(
            cast("tuple[float, float, float]", tuple(float(x) for x in towards_scene)),
            float(intensity * config.light_intensity_gain), kelvin_rgb(rng.uniform(*config.light_kelvin)),
            float(rng.uniform(*config.light_angle_deg))))
    return tuple(lights)


def _gap_lighting(config: SceneConfig, rng: np.random.Generator) -> Lighting:
    base = Lighting()
    if config.light_count > 0:
        return Lighting(ambient=base.ambient * config.ambient_gain, lights=_drawn_lights(config, rng))
    lights = list(base.key_light_turned(config.light_rotation_deg, rng).lights)
    lights = [replace(l, intensity=l.intensity * config.light_intensity_gain) for l in lights]
    return Lighting(ambient=base.ambient * config.ambient_gain, lights=tuple(lights))


def _place_distractors(target: Mesh, config: SceneConfig, table_z_m: float, rng: np.random.Generator,
                       target_material: Material = Material()) -> list[DrawItem]:
    """The distractors (``n_distractors`` drawn from ``distractors``), then ``lookalikes`` copies of the target
    in ``target_material``, each on a free spot of the table around the target (see :class:`SceneConfig`)."""
    from .objects import load_builtin

    names = [n for n in config.distractors if n != target.name]
    lo, hi = target.bounds_m
    centre = 0.5 * (lo[:2] + hi[:2])
    r_target = 0.5 * np.linalg.norm(hi[:2] - lo[:2])
    # distractors go within placement_radius_m of the centre; around an object whose footprint reaches past half
    # of that (a 50 cm part, a mm file read as m), in a ring half as wide around its footprint instead
    outer_m = max(float(config.placement_radius_m),
                  float(r_target) + config.distractor_gap_m + 0.5 * config.placement_radius_m)
    placed: list[tuple[np.ndarray, np.floating]] = [(centre, r_target)]

    def place(mesh: Mesh, azimuth_deg: float | None = None) -> np.ndarray | None:
        """A pose on a free spot of the table for ``mesh`` (its footprint centre there, resting on the table):
        at random, or right beside the target's footprint towards ``azimuth_deg``; None when there is none."""
        d_lo, d_hi = mesh.bounds_m
        r = 0.5 * np.linalg.norm(d_hi[:2] - d_lo[:2])
        d_centre = 0.5 * (d_lo[:2] + d_hi[:2])
        for _ in range(200):
            if azimuth_deg is None:
                rho = rng.uniform(r_target + r + config.distractor_gap_m, outer_m + r)
                phi = rng.uniform(0, 2 * np.pi)
            else:
                rho, phi = r_target + r + config.distractor_gap_m, np.deg2rad(azimuth_deg)
            xy = centre + rho * np.array([np.cos(phi), np.sin(phi)])
            if all(np.linalg.norm(xy - c) >= r + rc + config.distractor_gap_m for c, rc in placed):
                break
        else:
            return None
        placed.append((xy, r))
        yaw = rng.uniform(0, 2 * np.pi)
        R = so3_exp(np.array([0.0, 0.0, yaw]))
        t = np.array([xy[0], xy[1], table_z_m - d_lo[2]]) - R @ np.array([d_centre[0], d_centre[1], 0.0])
        return make_pose(R, t)

    items = []
    for k in range(config.lookalikes):  # first: right beside the target, the distractors around them
        T = place(target, config.lookalike_azimuth_deg + 360.0 * k / config.lookalikes)
        if T is not None:
            items.append(DrawItem(target, T, ID_FIRST_DISTRACTOR + config.n_distractors + k, target_material))
    for k in range(config.n_distractors if names else 0):
        name = names[int(rng.integers(len(names)))]
        mesh = load_builtin(name)
        T = place(mesh)
        if T is None:
            continue  # no free spot left on the table for this one
        if name in _PRINT_LIKE:
            rgb = tuple(np.clip(np.asarray(target.base_rgb) + rng.uniform(-0.05, 0.05, 3), 0, 1))
        else:
            rgb = _DISTRACTOR_PALETTE[int(rng.integers(len(_DISTRACTOR_PALETTE)))]
        items.append(DrawItem(mesh, T, ID_FIRST_DISTRACTOR + k,
                              Material(rgb=cast("tuple[float, float, float]", tuple(float(c) for c in rgb)),
                                       specular=float(rng.uniform(0.1, 0.5)))))
    return items


def build_scene(target_mesh: Mesh, config: SceneConfig = SceneConfig(), seed: int = 0) -> Scene:
    """Place ``target_mesh`` at the world (= object) origin standing on the table, add the distractors and
    draw every random choice of the sim-to-real gap from ``seed``."""
    rng = np.random.default_rng(seed)
    rng_gap, rng_place, rng_noise = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 3))
    table_z = float(target_mesh.bounds_m[0, 2])
    base_material = Material(layer_pitch_m=config.layer_pitch_m)
    shift = rng_gap.uniform(-config.object_color_shift, config.object_color_shift, 3) \
        if config.object_color_shift > 0 else np.zeros(3)
    lighting = _gap_lighting(config, rng_gap)
    material = base_material
    if config.object_color_shift > 0 or config.object_specular_gain != 1.0:
        rgb = np.clip(np.asarray(target_mesh.base_rgb) + shift, 0.0, 1.0)
        material = replace(base_material, rgb=cast("tuple[float, float, float]", tuple(float(c) for c in rgb)),
                           specular=base_material.specular * config.object_specular_gain)
    if config.object_shininess is not None:
        material = replace(material, shininess=float(config.object_shininess))
    if config.object_roughness is not None:
        material = replace(material, roughness=float(rng_gap.uniform(*config.object_roughness)))
    items = [DrawItem(target_mesh, np.eye(4), 1, material)]
    items += _place_distractors(target_mesh, config, table_z, rng_place, material)
    if config.background != "none":  # last: drawing front to back lets the depth test skip hidden fragments
        items.append(DrawItem(_table_mesh(config, table_z, seed, target_mesh), np.eye(4), ID_TABLE,
                              Material(specular=0.05, shininess=8.0)))
    return Scene(config, int(seed), tuple(items), lighting,
                 cast("tuple[float, float, float]", tuple(config.background_rgb)),
                 _fingertip_mesh() if config.gripper_fingertips else None, rng_noise)


def _fingertip_items(scene: Scene, camera: Camera, T_world_camera: np.ndarray) -> list[DrawItem]:
    if scene.fingertips is None:  # callers check first
        raise ValueError("the scene has no fingertip mesh")
    c = scene.config
    z = c.fingertip_depth_m
    v_top = camera.height_px * (1.0 - c.fingertip_coverage) - 0.5
    y_top = (v_top - camera.cy) / camera.fy * (z + _FINGERTIP_LENGTH_M)  # the far top edge at v_top
    items = []
    for side, u in ((-1.0, 0.25 * camera.width_px), (1.0, 0.75 * camera.width_px)):
        x = (u - camera.cx) / camera.fx * z  # fingertips a quarter of the image from each side
        T_camera_tip = make_pose(so3_exp(np.array([0.0, 0.0, side * 0.15])), np.array([x, y_top, z]))
        items.append(DrawItem(scene.fingertips, T_world_camera @ T_camera_tip, ID_FINGERTIPS,
                              Material(specular=0.6, shininess=40.0)))
    return items


@functools.lru_cache(maxsize=8)
def _vignetting_gain(height_px: int, width_px: int, strength: float) -> np.ndarray:
    """(H, W, 1) float32 gain ``1 - strength * r^2``, r = 1 in the image corners."""
    y, x = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    cx, cy = (width_px - 1) / 2, (height_px - 1) / 2
    r2 = ((x - cx) ** 2 + (y - cy) ** 2) / (cx**2 + cy**2)
    gain = (1.0 - strength * r2)[:, :, None].astype(np.float32)
    gain.setflags(write=False)
    return gain


def apply_sensor_effects(rgb: np.ndarray, config: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    """Exposure and vignetting (optics), Gaussian blur, then Gaussian sensor noise on an (H, W, 3) uint8
    image; returns the input itself when every sensor knob is at its identity value."""
    if (config.exposure_gain == 1.0 and config.vignetting == 0 and config.blur_sigma_px == 0
            and config.noise_std_levels == 0):
        return rgb
    import cv2

    img: np.ndarray = rgb.astype(np.float32)
    if config.exposure_gain != 1.0:
        img *= np.float32(config.exposure_gain)
    if config.vignetting > 0:
        img *= _vignetting_gain(img.shape[0], img.shape[1], float(config.vignetting))
    if config.blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), config.blur_sigma_px, borderType=cv2.BORDER_REFLECT)
    if config.noise_std_levels > 0:
        noise = rng.standard_normal(img.shape, dtype=np.float32)
        noise *= np.float32(config.noise_std_levels)
        img += noise
    np.clip(img, 0, 255, out=img)
    return np.rint(img).astype(np.uint8)


def render_scene(scene: Scene, camera: Camera, T_object_camera: np.ndarray,
                 rng: np.random.Generator | None = None, extra_items: Sequence[DrawItem] = (),
                 exposure_poses: Sequence[np.ndarray] = ()) -> RenderOutput:
    """Render the scene from ``T_object_camera`` (= ``T_world_camera``) and apply the sensor effects,
    with noise from ``rng`` (default: the scene's own seeded generator, advancing each frame).
    ``extra_items`` are drawn too (e.g. an occluder passing in front of the object at this instant).
    ``exposure_poses``: more camera poses during the exposure (motion blur): the image is the mean of the
    renders at ``T_object_camera`` and at each of them, before the sensor effects.

    Depth and ids are exact (no sensor effect touches them), at ``T_object_camera``; the fingertips appear in them
    too.
    """
    T = as_rigid_pose(T_object_camera, "T_object_camera")  # a PoseError for NaN, wrong shapes, non-rigid
    backend = get_renderer(scene.config.renderer)

    def draw(T_pose: np.ndarray) -> RenderOutput:
        items = list(scene.items) + list(extra_items)
        if scene.fingertips is not None:
            items += _fingertip_items(scene, camera, T_pose)
        return backend.render(items, camera, T_pose, scene.lighting, scene.background_rgb, scene.config.antialias,
                              scene.config.supersample)

    out = draw(T)
    rgb = out.rgb
    if len(exposure_poses):
        total = rgb.astype(np.float32)
        for T_pose in exposure_poses:
            total += draw(as_rigid_pose(T_pose, "exposure pose")).rgb
        rgb = np.clip(np.round(total / (1 + len(exposure_poses))), 0, 255).astype(np.uint8)
    rgb = apply_sensor_effects(rgb, scene.config, rng if rng is not None else scene.noise_rng)
    return dataclasses.replace(out, rgb=rgb)
