"""Triangle meshes for rendering, and loading them from the files CAD users have (STL, OBJ+MTL, PLY, glTF/GLB).

A :class:`Mesh` lives in its own frame (for a CAD model: the ``object`` frame), in metres. Loading converts
the file's unit (``m``, ``cm`` or ``mm``) to metres and validates everything a renderer relies on, failing
with a message that names the file and the offending value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import MeshError

#: metres per unit of a mesh file
MESH_UNITS_M: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254}

#: light grey / off-white, the colour of a typical 3D print (linear 0..1 RGB)
DEFAULT_BASE_RGB: tuple[float, float, float] = (0.78, 0.77, 0.74)


@dataclass(frozen=True, eq=False)
class Mesh:
    """An indexed triangle mesh in its own frame, in metres.

    - ``vertices_m`` (V, 3) float64, ``faces`` (F, 3) int64 indices into the vertices (counter-clockwise
      seen from outside, though renderers here do not cull back faces).
    - ``vertex_normals`` (V, 3) float64 unit vectors, or None: the renderer then derives normals from the
      faces, keeping sharp edges (crease angle) sharp, which suits CAD parts.
    - ``vertex_colors`` (V, 3) uint8 RGB, or None.
    - ``uv`` (V, 2) float64 texture coordinates (OpenGL convention, v up) with ``texture`` (H, W, 3) uint8
      RGB image (first row = top of the image), or both None.
    - ``base_rgb``: uniform colour in 0..1, multiplied with vertex colours / texture when present.
    - ``name``: for messages (usually the file name).

    Equality and hashing are by identity (a renderer caches GPU buffers per mesh object).
    """

    vertices_m: np.ndarray
    faces: np.ndarray
    vertex_normals: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    base_rgb: tuple[float, float, float] = DEFAULT_BASE_RGB
    name: str = "mesh"

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(self.vertices_m, dtype=np.float64)
        f = np.ascontiguousarray(self.faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise MeshError(f"mesh {self.name}: vertices must be (V, 3), got shape {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise MeshError(f"mesh {self.name}: faces must be (F, 3) triangles, got shape {f.shape}")
        if len(f) == 0:
            raise MeshError(f"mesh has 0 faces: {self.name}")
        if not np.all(np.isfinite(v)):
            bad = int(np.sum(~np.all(np.isfinite(v), axis=1)))
            raise MeshError(f"mesh {self.name}: {bad} vertices are not finite (NaN or inf)")
        if f.min() < 0 or f.max() >= len(v):
            raise MeshError(f"mesh {self.name}: face indices must be in [0, {len(v) - 1}], "
                             f"got [{f.min()}, {f.max()}]")
        used = v[np.unique(f)]
        extent = used.max(axis=0) - used.min(axis=0)
        if not np.any(extent > 0):
            raise MeshError(f"mesh {self.name}: degenerate, zero extent (all faces collapse to a point)")
        if np.sum(extent > 0) < 2:
            raise MeshError(f"mesh {self.name}: degenerate, zero extent in two axes (extent {extent.tolist()} m)")
        areas = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
        if not np.any(areas > 0):
            raise MeshError(f"mesh {self.name}: degenerate, all {len(f)} faces have zero area")
        object.__setattr__(self, "vertices_m", v)
        object.__setattr__(self, "faces", f)
        if self.vertex_normals is not None:
            n = np.asarray(self.vertex_normals, dtype=np.float64)
            if n.shape != v.shape or not np.all(np.isfinite(n)):
                raise MeshError(f"mesh {self.name}: vertex normals must be finite (V, 3) = {v.shape}, got {n.shape}")
            object.__setattr__(self, "vertex_normals", n)
        if self.vertex_colors is not None:
            c = np.asarray(self.vertex_colors)
            if c.ndim != 2 or c.shape[0] != len(v) or c.shape[1] not in (3, 4):
                raise MeshError(f"mesh {self.name}: vertex colours must be (V, 3) RGB, got shape {c.shape}")
            if c.dtype != np.uint8:
                c = np.clip(np.round(c * 255.0 if c.max() <= 1.0 else c), 0, 255)
            object.__setattr__(self, "vertex_colors", np.ascontiguousarray(c[:, :3], dtype=np.uint8))
        if (self.uv is None) != (self.texture is None):
            raise MeshError(f"mesh {self.name}: uv and texture must be given together")
        if self.uv is not None:
            uv = np.asarray(self.uv, dtype=np.float64)
            if uv.shape != (len(v), 2) or not np.all(np.isfinite(uv)):
                raise MeshError(f"mesh {self.name}: uv must be finite (V, 2) = ({len(v)}, 2), got {uv.shape}")
            tex = np.asarray(self.texture)
            if tex.ndim == 2:
                tex = np.repeat(tex[:, :, None], 3, axis=2)
            if tex.ndim != 3 or tex.shape[2] not in (3, 4) or tex.shape[0] == 0 or tex.shape[1] == 0:
                raise MeshError(f"mesh {self.name}: texture must be an (H, W, 3) image, got shape {tex.shape}")
            if tex.dtype != np.uint8:
                tex = np.clip(np.round(tex * 255.0 if tex.max() <= 1.0 else tex), 0, 255).astype(np.uint8)
            object.__setattr__(self, "uv", uv)
            object.__setattr__(self, "texture", np.ascontiguousarray(tex[:, :, :3]))
        rgb = tuple(float(x) for x in self.base_rgb)
        if len(rgb) != 3 or not all(0.0 <= x <= 1.0 for x in rgb):
            raise MeshError(f"mesh {self.name}: base_rgb must be 3 values in [0, 1], got {self.base_rgb!r}")
        object.__setattr__(self, "base_rgb", rgb)

    @property
    def bounds_m(self) -> np.ndarray:
        """(2, 3) axis-aligned bounding box ``[min, max]`` in the mesh frame (m)."""
        return np.stack([self.vertices_m.min(axis=0), self.vertices_m.max(axis=0)])

    @property
    def extent_m(self) -> np.ndarray:
        """(3,) size of the bounding box (m)."""
        b = self.bounds_m
        return b[1] - b[0]

    def with_base_rgb(self, rgb: tuple[float, float, float]) -> Mesh:
        """The same geometry with another uniform colour (shares the arrays)."""
        return Mesh(self.vertices_m, self.faces, self.vertex_normals, self.vertex_colors, self.uv, self.texture,
                    cast("tuple[float, float, float]", tuple(rgb)), self.name)

    def to_trimesh(self):
        """A ``trimesh.Trimesh`` of the geometry (no colours), e.g. for proximity queries."""
        import trimesh

        return trimesh.Trimesh(self.vertices_m, self.faces, process=False)


def _unit_scale(unit: str, path: Path | str) -> float:
    if unit not in MESH_UNITS_M:
        raise MeshError(f"unknown mesh unit {unit!r} for {path}: use one of {sorted(MESH_UNITS_M)}")
    return MESH_UNITS_M[unit]


def mesh_from_trimesh(tm, name: str = "mesh", scale: float = 1.0) -> Mesh:
    """A :class:`Mesh` from a ``trimesh.Trimesh``, keeping vertex colours or a texture when it has them."""
    import trimesh

    if not isinstance(tm, trimesh.Trimesh):
        raise TypeError(f"mesh {name}: expected a trimesh.Trimesh, got {type(tm).__name__}")
    vertices = np.asarray(tm.vertices, dtype=np.float64) * scale
    faces = np.asarray(tm.faces, dtype=np.int64)
    colors = uv = texture = None
    base = DEFAULT_BASE_RGB
    visual: Any = tm.visual  # ColorVisuals or TextureVisuals, told apart by ``kind`` below
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        mat = getattr(visual, "material", None)
        image = None
        if mat is not None:
            image = getattr(mat, "image", None) or getattr(mat, "baseColorTexture", None)
            diffuse = getattr(mat, "main_color", None)
            if diffuse is not None and image is None:
                base = tuple(np.asarray(diffuse[:3], dtype=np.float64) / 255.0)
        if image is not None and visual.uv is not None and len(visual.uv) == len(vertices):
            uv = np.asarray(visual.uv, dtype=np.float64)
            # Images come with row 0 at the top; UV v=0 is the bottom of the image (OpenGL convention).
            texture = np.asarray(image.convert("RGB"))
            base = (1.0, 1.0, 1.0)
    elif kind == "vertex":
        vc = np.asarray(visual.vertex_colors)
        if len(vc) == len(vertices) and not np.all(vc[:, :3] == vc[0, :3]):
            colors = vc[:, :3].astype(np.uint8)
            base = (1.0, 1.0, 1.0)
        elif len(vc):
            base = tuple(vc[0, :3] / 255.0)
    elif kind == "face":
        fc = np.asarray(visual.face_colors)
        if len(fc) and np.all(fc[:, :3] == fc[0, :3]):
            base = tuple(fc[0, :3] / 255.0)
        elif len(fc):  # per-face colours: give each face its own vertices
            vertices = vertices[faces].reshape(-1, 3)
            colors = np.repeat(fc[:, :3], 3, axis=0).astype(np.uint8)
            faces = np.arange(len(vertices)).reshape(-1, 3)
            base = (1.0, 1.0, 1.0)
    return Mesh(vertices, faces, None, colors, uv, texture, base, name)


def reframed(mesh: Mesh, scale: float = 1.0, origin_m: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Mesh:
    """``mesh`` scaled by ``scale`` about its origin, then expressed in a frame whose origin is the point
    ``origin_m`` of the scaled part (vertices ``scale * v - origin_m``): a part of another size, with its origin
    somewhere else (e.g. a mounting hole, as CAD sub-parts have). Colours, texture and normals are kept."""
    s = float(scale)
    o = np.asarray(origin_m, dtype=np.float64).reshape(3)
    if not (np.isfinite(s) and s > 0) or not np.all(np.isfinite(o)):
        raise MeshError(f"mesh {mesh.name}: reframing needs scale > 0 and a finite origin, got scale={scale!r}, "
                        f"origin_m={tuple(origin_m)!r}")
    return dataclasses.replace(mesh, vertices_m=mesh.vertices_m * s - o)


def load_mesh(path: Path | str, unit: str = "m") -> Mesh:
    """Load a mesh file (STL, OBJ with MTL/texture, PLY, glTF/GLB, anything trimesh reads) in metres.

    ``unit`` is the unit of the file's coordinates: ``m``, ``cm``, ``mm`` or ``in`` (CAD exports are often mm).
    Scenes with several meshes are merged into one, with their transforms applied. Errors name the file:
    missing, unreadable, no triangles, degenerate (zero extent) or non-finite vertices.
    """
    import trimesh

    path = Path(path)
    scale = _unit_scale(unit, path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file not found: {path}")
    if not path.is_file():
        raise MeshError(f"mesh path is not a file: {path}")
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises many types for bad files
        raise MeshError(f"cannot read mesh {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)] if loaded.geometry else []
        if not geoms:
            raise MeshError(f"mesh has 0 faces: {path} (the file holds no triangle geometry)")
        if len(geoms) == 1:
            loaded = geoms[0]
        else:
            # Mixed visuals cannot be concatenated faithfully: keep vertex colours where possible.
            loaded = trimesh.util.concatenate(geoms)
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshError(f"mesh has 0 faces: {path} (read a {type(loaded).__name__}, not a triangle mesh)")
    if len(loaded.faces) == 0:
        raise MeshError(f"mesh has 0 faces: {path}")
    return mesh_from_trimesh(loaded, name=path.name, scale=scale)
