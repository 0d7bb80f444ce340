"""Typed configs made usable from the command line: one override syntax everywhere, presets by name, and a
JSON form that names each backend.

An override is ``PATH=VALUE`` where ``PATH`` walks the nested frozen dataclasses
(``servo.refine.window_px=15``, ``stop.max_iterations=150``). ``VALUE`` is parsed by the type of the field
it sets: numbers, ``true``/``false``, enum values, ``none`` for optional fields, JSON for tuples. A field
that holds a backend config (marked with its registry) takes a backend name and gets that backend's default
config (``servo.features=disk``, ``servo.matcher=lightglue``, ``servo=photometric``); later overrides then
set its fields (``servo.features.max_keypoints=300``). Unknown paths and bad values raise
:class:`~dfbvs.errors.ConfigError` naming what was received and what is allowed.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import TYPE_CHECKING, Any, Iterable, cast

from .errors import ConfigError
from .recorder import to_jsonable

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


#: Named override lists over an episode config (``--preset NAME``); applied before ``--set`` overrides.
PRESETS: dict[str, tuple[str, ...]] = {
    "default": (),
    # the paper's pipeline: no refinement, tracking mode with the paper's rule R(t) within R(t-1)
    "paper": ("servo.refine.enabled=false", "servo.tracking.enabled=true", "servo.tracking.mode=previous"),
    # classical features in place of the network (no torch at run time)
    "sift": ("servo.features=sift",),
    "photometric": ("servo=photometric", "stop.converged_twist_m_s=2e-4", "stop.converged_twist_rad_s=2e-3"),
    # camera-rate servoing: track every frame, deep detection in the background, a 30 fps camera with the
    # compute latency counted; stop rules in cycles of a 30 Hz loop (converged after 1 s below 0.2 px, as
    # the per-frame loop's 5 cycles at 3-4 Hz; at most 20 s). Lost still counts failed measurements.
    # a wider basin (docs/convergence.md): 16 rolled target views (acquire at any in-plane roll, none more than
    # 11 deg away), detection zoomed on a far object (up to 2x), pose-based with the object's centroid kept in view
    # beyond 15 deg or 25 % of the goal distance, IBVS between, PBVS at the goal
    "wide": ("servo.acquisition.inplane_views=16", "servo.acquisition.zoom_max=2", "servo.control=hybrid",
             "servo.control.far_rotation_deg=15", "servo.control.far_translation_ratio=0.25"),
    # for images with real light (path-traced scenes, a real camera; docs/photoreal.md): the per-frame servo with the
    # object's outline fitted with the keypoints near the goal, and the target relit by its shading basis alone,
    # without the smooth gain field over the image that helped on rasterised scenes but absorbs shadows here; beside
    # the rasteriser's shading basis a second one drawn by the path tracer (cast shadows, interreflection; needs
    # `make blender`, ~1 min once per target), the one kept at each refit being the one on which more of the cycle's
    # points refine and verify (accuracy18 photoreal 16/18 within, median 0.17 mm / 0.038 deg)
    "photoreal": ("servo.edges.enabled=true", "servo.relight.image_gain=false",
                  "servo.relight.second_basis_renderer=blender:transfer=linear,samples=8",
                  "servo.relight.second_basis_choice=verified",
                  # measured (docs/photoreal.md) before the coverage image; not measured on path-traced scenes since
                  "servo.relight.outline_coverage=false"),
    # the camera on a simulated UR5e (RTDE code path, safety layer), ideal calibration; and with the errors of a
    # real cell: hand-eye off by 2 mm / 0.2 deg, intrinsics by up to 1 %, one frame of command latency
    "ur5e": ("robot.kind=ur5e",),
    "ur5e-errors": ("robot.kind=ur5e", "robot.hand_eye_error_mm=2", "robot.hand_eye_error_deg=0.2",
                    "robot.intrinsics_error_pct=1", "robot.latency_frames=1"),
    "tracking": ("servo=tracking", "timing.mode=realtime", "stop.converged_cycles=30", "stop.diverged_cycles=30",
                 "stop.max_iterations=600"),
}

_TRUE, _FALSE, _NONE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}, {"none", "null"}


def _registry_of(field: dataclasses.Field) -> Any:
    return field.metadata.get("registry") if field.metadata else None


def _parse(text: str, annotation: Any, what: str) -> Any:
    """``text`` as a value of type ``annotation`` (``what`` names the path in errors)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.strip().lower() in _NONE and len(args) < len(typing.get_args(annotation)):
            return None
        errors = []
        for arg in args:
            try:
                return _parse(text, arg, what)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{what}={text!r}: not a valid value ({'; '.join(errors)})")
    if annotation is bool:
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ConfigError(f"{what}={text!r}: expected true or false")
    if annotation in (int, float, str):
        try:
            value = annotation(text)
        except ValueError:
            raise ConfigError(f"{what}={text!r}: expected {annotation.__name__}") from None
        return value
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(text)
        except ValueError:
            raise ConfigError(f"{what}={text!r}: choose one of {[m.value for m in annotation]}") from None
    if origin in (tuple, list) or annotation in (tuple, list):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"{what}={text!r}: expected a JSON list, e.g. [1, 2]") from None
        return tuple(tuple(v) if isinstance(v, list) else v for v in value) if origin is tuple else value
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set(obj: Any, path: list[str], text: str, full: str) -> Any:
    """A copy of dataclass ``obj`` with the field at ``path`` set from ``text``."""
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"--set {full}: {type(obj).__name__} has no settings below it")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    name = path[0]
    if name not in fields:
        raise ConfigError(f"--set {full}: {type(obj).__name__} has no setting {name!r}; settings: {sorted(fields)}")
    field = fields[name]
    if len(path) > 1:
        return dataclasses.replace(cast("DataclassInstance", obj),
                                   **{name: _set(getattr(obj, name), path[1:], text, full)})
    registry = _registry_of(field)
    if registry is not None:
        try:
            value = registry.default_config(text)
        except ConfigError as exc:
            raise ConfigError(f"--set {full}: {exc}") from None
    elif dataclasses.is_dataclass(getattr(obj, name)):
        raise ConfigError(f"--set {full}: {name!r} is a group of settings; set one of them, e.g. "
                          f"{full.split('=')[0]}.{dataclasses.fields(getattr(obj, name))[0].name}=...")
    else:
        hints = typing.get_type_hints(type(obj))
        value = _parse(text, hints.get(name, str), full.split("=")[0])
    try:
        return dataclasses.replace(cast("DataclassInstance", obj), **{name: value})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--set {full}: {exc}") from None


def apply_overrides(config: Any, overrides: Iterable[str]) -> Any:
    """``config`` with each ``PATH=VALUE`` override applied in order (see the module docstring)."""
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise ConfigError(f"--set {item!r}: expected PATH=VALUE, e.g. servo.refine.window_px=15")
        config = _set(config, [p for p in path.strip().split(".")], text.strip(), item)
    return config


def apply_preset(config: Any, name: str) -> Any:
    """``config`` with the overrides of preset ``name`` (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return apply_overrides(config, PRESETS[name])


def describe(config: Any) -> Any:
    """JSON form of a config tree; a backend config gets a ``"backend"`` key with its registry name."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return to_jsonable(config)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        registry = _registry_of(f)
        described = describe(value)
        if registry is not None and isinstance(described, dict):
            described = {"backend": registry.name_of(value), **described}
        out[f.name] = described
    return out


def settings(config: Any, prefix: str = "") -> list[tuple[str, str, Any]]:
    """Every settable path below ``config``: ``(path, type name, current value)``, in field order; a
    backend field is listed with its backend name and then its own settings."""
    rows: list[tuple[str, str, Any]] = []
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, path = getattr(config, f.name), f"{prefix}{f.name}"
        registry = _registry_of(f)
        if registry is not None:
            rows.append((path, f"one of {registry.names()}", registry.name_of(value)))
        if dataclasses.is_dataclass(value):
            rows.extend(settings(value, path + "."))
        else:
            hint = hints.get(f.name, type(value))
            rows.append((path, getattr(hint, "__name__", str(hint).replace("typing.", "")), to_jsonable(value)))
    return rows
