"""Rendering: meshes in, images out (RGB, metric depth Z, object ids).

- :mod:`.mesh`: :class:`Mesh` and :func:`load_mesh` (STL, OBJ+MTL, PLY, glTF/GLB; m, cm or mm).
- :mod:`.backend`: the :class:`Renderer` interface, :class:`DrawItem`, :class:`Lighting`,
  :class:`RenderOutput` and the registry of backends (default ``moderngl``, headless EGL; ``blender``:
  Cycles in Blender's own interpreter, :mod:`.blender_backend` over :mod:`.blender_worker`).
- :mod:`.gl`: the one place where OpenGL axes meet OpenCV axes (:func:`opencv_to_opengl`).
- :mod:`.target`: the CAD model alone at the goal pose (:func:`render_target`, :class:`TargetRender`).
- :mod:`.scene`: the simulated camera's cluttered scene with a seeded sim-to-real gap.
- :mod:`.objects`: built-in "unseen" 3D-printed parts and distractors.

Heavy libraries (moderngl, trimesh, manifold3d) are imported only when used.
"""

from __future__ import annotations

from .backend import (
    ID_NOTHING,
    ID_TARGET,
    RENDERERS,
    DirectionalLight,
    DrawItem,
    Lighting,
    Material,
    Renderer,
    RenderOutput,
    available_renderers,
    check_renderer,
    get_renderer,
    register_renderer,
)
from .mesh import Mesh, load_mesh, mesh_from_trimesh


def __getattr__(name: str):
    # lazy, so that ``python -m dfbvs.render.objects`` does not import the module twice
    if name in ("builtin_distractor_names", "builtin_object_names", "load_builtin"):
        from . import objects

        return getattr(objects, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ID_NOTHING", "ID_TARGET", "RENDERERS", "DirectionalLight", "DrawItem", "Lighting", "Material", "Mesh", "Renderer",
    "RenderOutput", "available_renderers", "builtin_distractor_names", "check_renderer", "builtin_object_names",
    "get_renderer", "load_builtin", "load_mesh", "mesh_from_trimesh", "register_renderer",
]
