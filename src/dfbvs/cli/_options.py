"""Option definitions shared by several commands: one name, one help text, one check each.

- ``--background`` (``sim``, ``render``, ``bench run``): the vocabulary of
  :data:`dfbvs.bench.methods.BACKGROUNDS` plus an image path; old names are accepted with a note.
- The lists of valid names in help texts (objects, extractors, matchers, rejectors, protocols, mesh units) are
  read from the registries and tables that define them, never copied by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import typer


def names(values: Any) -> str:
    """``a, b, c`` for help texts and messages."""
    return ", ".join(str(v) for v in values)


def background_help() -> str:
    """The help text of every ``--background`` option."""
    from ..bench.methods import BACKGROUND_ALIASES, BACKGROUNDS

    listed = "; ".join(f"{name}: {meaning}" for name, meaning in BACKGROUNDS.items())
    aliases = ", ".join(f"{old} (= {new})" for old, new in BACKGROUND_ALIASES.items())
    return (f"Background of the simulated scene: {listed}; or the path of an image file stretched over the table "
            f"(with distractors). Deprecated names still accepted: {aliases}.")


def parse_background(value: str, label: str = "--background") -> str:
    """The canonical name of background ``value`` (or the image path); a usage error naming the value and the
    valid names otherwise. An old name is accepted with a note on stderr."""
    from ..bench.methods import BACKGROUND_ALIASES, canonical_background
    from ..errors import ConfigError

    try:
        name = canonical_background(value)
    except ConfigError as exc:
        raise typer.BadParameter(f"{label} {str(exc).removeprefix('background ')}") from None
    if value.strip() in BACKGROUND_ALIASES:
        typer.echo(f"note: {label} {value!r} is the old name of {name!r}; use {name!r}", err=True)
    return name


def background_callback(param: typer.CallbackParam,
                        value: Union[str, list[str], tuple[str, ...], None]) -> Union[str, list[str], None]:
    """Typer callback of ``--background``: canonical names (aliases replaced), a usage error on a bad one."""
    label = max(param.opts, key=len) if param.opts else "--background"
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [parse_background(v, label) for v in value] or None
    return parse_background(value, label)


def background_option(default: Optional[str]) -> Any:
    """The ``--background`` option (``default`` None: several may be given, e.g. ``bench run``)."""
    return typer.Option(default, "--background", help=background_help(), callback=background_callback,
                        metavar="NAME|IMAGE")


def _renderer_callback(ctx: typer.Context, param: typer.CallbackParam, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    from ..errors import ConfigError
    from ..render import check_renderer

    try:
        return check_renderer(value)
    except ConfigError as exc:
        raise typer.BadParameter(f"{value!r}: {exc}") from None


def renderer_option(what: str, flag: str, setting: str) -> Any:
    """A ``--scene-renderer`` / ``--target-renderer`` option (``setting``: the config path it sets)."""
    from ..render import available_renderers

    return typer.Option(None, flag, callback=_renderer_callback, metavar="NAME[:K=V,...]",
                        help=f"Renderer of {what}: {', '.join(available_renderers())}, settings after a colon "
                             f"(blender:samples=16; blender = photoreal Cycles, needs `make blender`; "
                             f"= --set {setting}=NAME).")


def scene_renderer_option() -> Any:
    """``--scene-renderer``: the backend that draws the simulated camera's scene (``scene.renderer``)."""
    return renderer_option("the simulated camera's scene", "--scene-renderer", "scene.renderer")


def target_renderer_option() -> Any:
    """``--target-renderer``: the backend that draws the target (goal) image (``target_renderer``)."""
    return renderer_option("the target (goal) image", "--target-renderer", "target_renderer")


def object_help(prefix: str = "Built-in object") -> str:
    """``<prefix>: bracket, gear, ...`` from the built-in object table, with the hard parts."""
    from ..render import builtin_object_names

    return (f"{prefix}: {names(builtin_object_names())}; hard parts: "
            f"{names(builtin_object_names(hard_parts=True)[len(builtin_object_names()):])}.")


def extractor_names() -> str:
    """The registered feature extractors."""
    from ..features import available_extractors

    return names(available_extractors())


def matcher_names() -> str:
    """The registered matchers."""
    from ..matching import available_matchers

    return names(available_matchers())


def rejector_names() -> str:
    """The registered outlier rejectors."""
    from ..estimation import available_rejectors

    return names(available_rejectors())


def protocol_names() -> str:
    """The benchmark protocols."""
    from ..bench.protocols import PROTOCOLS

    return names(PROTOCOLS)


def mesh_unit_names() -> str:
    """The units a mesh file may be in."""
    from ..render.mesh import MESH_UNITS_M

    return names(MESH_UNITS_M)


def check_mesh_unit(value: Optional[str], label: str = "--mesh-unit") -> Optional[str]:
    """``value`` when it is a known mesh unit (or None); a usage error naming it and the units otherwise."""
    from ..render.mesh import MESH_UNITS_M

    if value is not None and value not in MESH_UNITS_M:
        raise typer.BadParameter(f"{label} {value!r}: use one of {mesh_unit_names()}")
    return value


def mesh_unit_callback(param: typer.CallbackParam, value: Optional[str]) -> Optional[str]:
    """Typer callback of ``--mesh-unit``."""
    return check_mesh_unit(value)


def mesh_paths_exist(paths: Optional[list[Path]], label: str = "--mesh") -> None:
    """A usage error naming the first mesh path that is not a file."""
    for p in paths or []:
        if p.is_dir():
            raise typer.BadParameter(f"{label} {str(p)!r}: a folder, not a mesh file (STL, OBJ, PLY, glTF/GLB)")
        if not p.is_file():
            raise typer.BadParameter(f"{label} {str(p)!r}: no such file")


def check_object_or_mesh(object_name: Optional[str], mesh: Optional[Path]) -> None:
    """Exactly one of ``--object NAME`` (a built-in) and ``--mesh PATH``; a usage error naming the value."""
    from ..render import builtin_object_names

    if (object_name is None) == (mesh is None):
        raise typer.BadParameter("give exactly one of --object NAME or --mesh PATH")
    if object_name is not None and object_name not in builtin_object_names(hard_parts=True):
        raise typer.BadParameter(f"--object {object_name!r}: built-in objects are "
                                 f"{builtin_object_names(hard_parts=True)}")


def px_text(value: object) -> str:
    """A mean correspondence error for a person: ``0.123 px``, or ``- (none measured)`` for None or NaN."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "- (none measured)"
    return f"{v:.3f} px" if v == v else "- (none measured)"
