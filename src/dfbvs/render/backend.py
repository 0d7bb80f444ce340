"""What a render backend takes and returns, and the registry of backends by name.

A backend draws a list of :class:`DrawItem` (a mesh at a pose in the world frame, with an id and a
material) seen by a pinhole :class:`~dfbvs.camera.Camera` at ``T_world_camera`` under :class:`Lighting`,
and returns a :class:`RenderOutput`. Backends are created lazily, once per name and process, so that a GPU
context and the meshes uploaded to it are reused between frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..camera import Camera
from ..geometry import so3_exp
from ..registry import Registry
from .mesh import Mesh

#: id image values
ID_NOTHING = 0
ID_TARGET = 1


@dataclass(frozen=True)
class Material:
    """Surface appearance (Blinn-Phong).

    ``rgb`` overrides the mesh's ``base_rgb`` (0..1) when given. ``specular`` (0..1) scales the highlight,
    ``shininess`` is the Blinn-Phong exponent. ``roughness`` (0..1, microfacet) is used by renderers with a
    physical material model (``blender``); None derives it from ``shininess``. ``layer_pitch_m`` > 0 adds
    3D-print layer lines along the item's own z axis (brightness modulated by ``layer_contrast``, a
    fraction), a subtle surface texture.
    """

    rgb: tuple[float, float, float] | None = None
    specular: float = 0.25
    shininess: float = 24.0
    roughness: float | None = None
    layer_pitch_m: float = 0.0
    layer_contrast: float = 0.06

    def __post_init__(self) -> None:
        if self.rgb is not None and (len(self.rgb) != 3 or not all(0.0 <= float(c) <= 1.0 for c in self.rgb)):
            raise ValueError(f"material rgb must be 3 values in [0, 1], got {self.rgb!r}")
        if not (0.0 <= self.specular and self.shininess > 0 and self.layer_pitch_m >= 0):
            raise ValueError(f"material: need specular >= 0, shininess > 0, layer_pitch_m >= 0; got "
                             f"{self.specular!r}, {self.shininess!r}, {self.layer_pitch_m!r}")
        if self.roughness is not None and not 0.0 <= self.roughness <= 1.0:
            raise ValueError(f"material roughness must be in [0, 1] or None, got {self.roughness!r}")


@dataclass(frozen=True, eq=False)
class DrawItem:
    """A mesh placed in the world: ``T_world_item`` (4x4) is the pose of the mesh frame in the world.

    ``object_id`` is written to the id image (1 = the target object, 2.. = table, distractors, ...).
    """

    mesh: Mesh
    T_world_item: np.ndarray = field(default_factory=lambda: np.eye(4))
    object_id: int = ID_TARGET
    material: Material = Material()

    def __post_init__(self) -> None:
        T = np.asarray(self.T_world_item, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_world_item must be a finite 4x4 matrix, got shape {T.shape}")
        if not (0 < int(self.object_id) < 2**24):
            raise ValueError(f"object_id must be in [1, 2^24), got {self.object_id!r}")
        object.__setattr__(self, "T_world_item", T)


@dataclass(frozen=True)
class DirectionalLight:
    """A light at infinity. ``direction_world`` is the direction the light travels (towards the scene),
    in world axes; ``intensity`` scales ``rgb`` (0..1 each). ``angle_deg`` is the angular diameter of the
    source as seen from the scene (0: a point at infinity, hard shadows; the sun is 0.5 deg, an overcast window
    tens of degrees); renderers that cast shadows (``blender``) draw their penumbra, ``moderngl`` ignores it."""

    direction_world: tuple[float, float, float] = (-0.3, 0.2, -1.0)
    intensity: float = 0.8
    rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    angle_deg: float = 0.0

    def __post_init__(self) -> None:
        d = np.asarray(self.direction_world, dtype=np.float64)
        if d.shape != (3,) or not np.all(np.isfinite(d)) or np.linalg.norm(d) < 1e-12:
            raise ValueError(f"light direction must be a finite non-zero 3-vector, got {self.direction_world!r}")
        if not (np.isfinite(self.intensity) and self.intensity >= 0):
            raise ValueError(f"light intensity must be >= 0, got {self.intensity!r}")
        if not (np.isfinite(self.angle_deg) and 0.0 <= self.angle_deg <= 180.0):
            raise ValueError(f"light angle_deg must be in [0, 180], got {self.angle_deg!r}")

    @property
    def unit_direction(self) -> np.ndarray:
        d = np.asarray(self.direction_world, dtype=np.float64)
        return d / np.linalg.norm(d)


@dataclass(frozen=True)
class Lighting:
    """Ambient light (0..1, on the albedo) plus up to :data:`MAX_LIGHTS` directional lights."""

    ambient: float = 0.22
    lights: tuple[DirectionalLight, ...] = (
        DirectionalLight((-0.3, 0.2, -1.0), 0.62),   # key light from above
        DirectionalLight((0.8, -0.5, -0.3), 0.24),   # fill light from the side
    )

    def __post_init__(self) -> None:
        if len(self.lights) > MAX_LIGHTS:
            raise ValueError(f"at most {MAX_LIGHTS} directional lights, got {len(self.lights)}")
        if not (np.isfinite(self.ambient) and self.ambient >= 0):
            raise ValueError(f"ambient must be >= 0, got {self.ambient!r}")

    def key_light_turned(self, angle_deg: float, rng: np.random.Generator) -> Lighting:
        """This lighting with its first (key) light's direction turned by ``angle_deg`` about a random axis
        perpendicular to it (drawn from ``rng``); the other lights and the ambient as they are."""
        if angle_deg <= 0 or not self.lights:
            return self
        d = self.lights[0].unit_direction
        axis = np.cross(d, rng.normal(size=3))
        axis /= np.linalg.norm(axis)
        x, y, z = (float(c) for c in so3_exp(axis * np.deg2rad(angle_deg)) @ d)
        key = DirectionalLight((x, y, z), self.lights[0].intensity, self.lights[0].rgb, self.lights[0].angle_deg)
        return Lighting(self.ambient, (key, *self.lights[1:]))


MAX_LIGHTS = 4


@dataclass(frozen=True)
class RenderOutput:
    """One rendered frame seen by ``camera`` (H = camera.height_px, W = camera.width_px).

    - ``rgb`` (H, W, 3) uint8.
    - ``depth_m`` (H, W) float32: Z along the optical axis of the OpenCV camera frame (m) of the surface
      seen through each pixel centre; NaN where nothing is hit.
    - ``ids`` (H, W) int32: the ``object_id`` of the item seen at each pixel centre, 0 for nothing.
    - ``time_ms``: wall time of the render call.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    ids: np.ndarray
    camera: Camera
    time_ms: float = float("nan")

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: pixels showing the target object (id 1)."""
        return self.ids == ID_TARGET


@runtime_checkable
class Renderer(Protocol):
    """A render backend. ``render`` must reproduce ``camera.project`` at pixel centres exactly."""

    name: str

    def render(self, items: Sequence[DrawItem], camera: Camera, T_world_camera: np.ndarray,
               lighting: Lighting = Lighting(), background_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0),
               antialias: bool = True, supersample: int = 1) -> RenderOutput:
        """Draw ``items``; ``background_rgb`` (0..1) fills pixels where nothing is hit. ``antialias``
        smooths edges of the RGB image only (depth and ids are always sampled at pixel centres);
        ``supersample`` > 1 also draws the RGB image at that many times the resolution and box-filters it
        down, so an edge's coverage of a pixel is not quantized to the few multisample positions."""
        ...


# --- registry ----------------------------------------------------------------------------------------------
RENDERERS: Registry[Renderer] = Registry("renderer")
RENDERERS.register("moderngl", "dfbvs.render.moderngl_backend:build_moderngl",
                   "dfbvs.render.moderngl_backend:ModernGLConfig")
RENDERERS.register("blender", "dfbvs.render.blender_backend:build_blender",
                   "dfbvs.render.blender_backend:BlenderConfig",
                   help="Cycles path tracer in Blender's own interpreter (make blender)")
_INSTANCES: dict[str, Renderer] = {}  # one per backend and process: a GL context and its uploaded meshes


def register_renderer(name: str, factory: Callable[..., Renderer], config: type | str) -> None:
    """Make a backend available under ``name``; ``factory(config)`` is called once, on first use, with the
    default ``config`` (a dataclass, or "module:Class")."""
    RENDERERS.register(name, factory, config)
    for spec in [s for s in _INSTANCES if s.partition(":")[0].strip().lower() == name.strip().lower()]:
        _INSTANCES.pop(spec)


def available_renderers() -> list[str]:
    return sorted(RENDERERS.names())


def parse_renderer(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name:key=value,key=value"`` (settings of the backend's config, e.g.
    ``blender:samples=16,denoise=false``) as (canonical name, settings); a :class:`~dfbvs.errors.ConfigError`
    names an unknown backend or setting."""
    import json

    from ..errors import ConfigError

    name, _, settings_text = str(spec).strip().partition(":")
    key = name.strip().lower()
    settings: dict = {}
    for part in filter(None, (p.strip() for p in settings_text.split(","))):
        field_name, eq, text = part.partition("=")
        if not eq or not field_name.strip():
            raise ConfigError(f"renderer {spec!r}: settings are key=value pairs separated by commas, got {part!r}")
        try:
            settings[field_name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            settings[field_name.strip()] = text.strip()
    RENDERERS.default_config(key, **settings)  # unknown names and settings, out-of-range values: ConfigError
    return key, settings


def check_renderer(name: str) -> str:
    """``name`` (see :func:`parse_renderer`) after checking that the backend exists, its settings are valid and
    it can run here; a :class:`~dfbvs.errors.ConfigError` names the value and says what is missing (e.g. how to
    install Blender's interpreter for ``blender``), before any work is done."""
    key, settings = parse_renderer(name)
    if key == "blender":
        from .blender_backend import find_blender_python

        find_blender_python(str(settings.get("python", "")))
    return str(name).strip()


def get_renderer(name: str = "moderngl") -> Renderer:
    """The process-wide instance of the backend ``name`` (created on first use), with its default config or
    the settings ``name`` gives (``"blender:samples=16"``, see :func:`parse_renderer`); one per distinct spec."""
    spec = name.strip()
    if spec not in _INSTANCES:
        key, settings = parse_renderer(spec)
        _INSTANCES[spec] = RENDERERS.create(key, **settings)
    return _INSTANCES[spec]
