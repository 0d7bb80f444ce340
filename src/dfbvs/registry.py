"""One generic registry of backends by name, used by extractors, matchers, rejectors, control laws,
renderers and servos.

A backend is a *factory* (a class or function taking its config) and a frozen *config dataclass* that lives
beside it. Either may be given as ``"module:attribute"`` so that registering never imports a heavy library:
the module is imported on first use. An entry may fix some config values (``defaults``), which is how
``aliked-n32`` is ALIKED with ``variant="aliked-n32"``.

>>> EXTRACTORS.register("mine", "mypkg.features:MyExtractor", "mypkg.features:MyConfig")  # doctest: +SKIP
>>> EXTRACTORS.build(MyConfig(max_keypoints=200))                                          # doctest: +SKIP

A config identifies its backend by its type: ``build(config)`` finds the entry whose config class is exactly
``type(config)`` (the first registered one; aliases that only fix values come after it).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def _resolve(ref: Any) -> Any:
    """An object, or the attribute ``"module:attr"`` names (imported now)."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class _Entry:
    name: str
    factory: Any  # callable(config) or "module:attr"
    config: Any  # config dataclass or "module:attr"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    available: Callable[[], bool] | None = None
    help: str = ""


class Registry(Generic[T]):
    """Backends of one kind (``kind`` names it in error messages, e.g. "feature extractor")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, factory: Callable[..., T] | str, config: type | str,
                 defaults: Mapping[str, Any] | None = None, available: Callable[[], bool] | None = None,
                 help: str = "") -> None:
        """Make backend ``name`` available; a later registration under the same name replaces it."""
        key = name.strip().lower()
        if not key:
            raise ConfigError(f"{self.kind}: empty backend name {name!r}")
        self._entries[key] = _Entry(key, factory, config, dict(defaults or {}), available, help)

    def unregister(self, name: str) -> None:
        self._entries.pop(name.strip().lower(), None)

    def names(self) -> list[str]:
        """Names usable in this environment (entries whose ``available()`` says no are left out)."""
        return [n for n, e in self._entries.items() if e.available is None or e.available()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _entry(self, name: str) -> _Entry:
        key = str(name).strip().lower()
        if key not in self.names():
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._entries[key]

    def config_class(self, name: str) -> type:
        """The config dataclass of backend ``name``."""
        return _resolve(self._entry(name).config)

    def fixed_values(self, name: str) -> dict[str, Any]:
        """The config values entry ``name`` fixes (empty for a plain backend)."""
        return dict(self._entry(name).defaults)

    def default_config(self, name: str, **overrides: Any) -> Any:
        """Backend ``name``'s config: its defaults, the entry's fixed values, then ``overrides``."""
        entry = self._entry(name)
        cls = _resolve(entry.config)
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise ConfigError(f"{self.kind} {name!r} has no setting {unknown}; settings: {sorted(allowed)}")
        return cls(**{**entry.defaults, **overrides})

    def name_of(self, config: Any) -> str:
        """The backend a config belongs to (the first entry registered with exactly its type)."""
        for entry in self._entries.values():
            if not isinstance(entry.config, str) and entry.config is type(config):
                return entry.name
        for entry in self._entries.values():  # lazy entries: resolve only when needed
            if isinstance(entry.config, str) and _resolve(entry.config) is type(config):
                return entry.name
        raise ConfigError(f"no {self.kind} is registered for a {type(config).__name__} config; "
                          f"available: {', '.join(self.names())}")

    def build(self, config: Any, **kwargs: Any) -> T:
        """An instance of the backend ``config`` belongs to, built from it (``kwargs`` go to the factory)."""
        entry = self._entry(self.name_of(config))
        return _resolve(entry.factory)(config, **kwargs)

    def create(self, name: str, **overrides: Any) -> T:
        """Shorthand: ``build(default_config(name, **overrides))``."""
        return self.build(self.default_config(name, **overrides))
