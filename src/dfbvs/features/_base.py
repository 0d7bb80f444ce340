"""The feature-extraction interface shared by every backend: typed results, configuration and the common
post-processing (validation, border margin, flat-region rejection, top-K, descriptor normalisation).

Pixel convention of every :class:`Features` (whatever the backend does internally): ``(u, v)`` with
integer values at pixel centres, the top-left pixel's centre at ``(0, 0)`` (see ``CONVENTIONS.md``).
Each backend converts its own convention and says so in its docstring.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import ConfigError
from ..imaging import grey_float32

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Features:
    """Keypoints of one image with their descriptors.

    - ``keypoints_px``: (N, 2) float64 pixel coordinates ``(u, v)``, integer values at pixel centres.
    - ``descriptors``: (N, D) float32, each row L2-normalised (binary descriptors become +-1/sqrt(D)).
    - ``scores``: (N,) float32 detector confidence (backend specific scale; higher is better); rows are
      sorted by decreasing score.
    - ``image_size``: ``(width, height)`` in pixels of the image the keypoints come from.
    - ``extractor``: registry name of the backend that produced them (matchers check compatibility).
    """

    keypoints_px: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]
    extractor: str = ""

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints_px, dtype=np.float64).reshape(-1, 2)
        desc = np.asarray(self.descriptors, dtype=np.float32)
        if desc.ndim != 2:
            desc = desc.reshape(len(kp), -1) if desc.size else np.zeros((len(kp), 0), np.float32)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(kp) == len(desc) == len(scores)):
            raise ValueError(f"Features: {len(kp)} keypoints, {len(desc)} descriptors and {len(scores)} scores "
                             "must have the same count")
        width, height = (int(s) for s in self.image_size)
        if width < 0 or height < 0:
            raise ValueError(f"Features: image_size={self.image_size!r} must be (width, height) >= 0")
        for name, value in (("keypoints_px", kp), ("descriptors", desc), ("scores", scores)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "image_size", (width, height))

    def __len__(self) -> int:
        return len(self.keypoints_px)

    @property
    def descriptor_dim(self) -> int:
        return int(self.descriptors.shape[1])

    @classmethod
    def empty(cls, image_size: tuple[int, int], descriptor_dim: int = 0, extractor: str = "") -> Features:
        return cls(np.zeros((0, 2)), np.zeros((0, descriptor_dim), np.float32), np.zeros(0, np.float32),
                   image_size, extractor)

    def subset(self, index: np.ndarray) -> Features:
        """The features selected by ``index`` (integer indices or a boolean mask)."""
        return Features(self.keypoints_px[index], self.descriptors[index], self.scores[index], self.image_size,
                        self.extractor)


DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class FeatureConfig:
    """Settings shared by every extractor (each backend's config adds its own fields).

    - ``max_keypoints``: keep the top-K keypoints by score (the paper: 500 at 320x240).
    - ``border_px``: drop keypoints closer than this to the image border (pixels).
    - ``nms_radius_px``: non-maximum suppression radius of the detector (pixels; backends that have one).
    - ``min_contrast``: drop keypoints whose 7x7 neighbourhood has a grey-level standard deviation below this
      (0-255 scale), so that a flat, textureless region yields no keypoints whatever the network says.
    - ``device``: "cpu", "cuda" or "auto" (CUDA when available); deep backends only.
    - ``num_threads``: torch intra-op threads on the CPU (deep backends only).
    """

    max_keypoints: int = 500
    border_px: float = 4.0
    nms_radius_px: int = 2
    min_contrast: float = 1.0
    device: str = "auto"
    num_threads: int = 2

    def __post_init__(self) -> None:
        if int(self.max_keypoints) != self.max_keypoints or self.max_keypoints <= 0:
            raise ConfigError(f"max_keypoints={self.max_keypoints!r}: must be a positive integer")
        if not (np.isfinite(self.border_px) and self.border_px >= 0):
            raise ConfigError(f"border_px={self.border_px!r}: must be >= 0")
        if int(self.nms_radius_px) != self.nms_radius_px or self.nms_radius_px < 0:
            raise ConfigError(f"nms_radius_px={self.nms_radius_px!r}: must be an integer >= 0")
        if not (np.isfinite(self.min_contrast) and self.min_contrast >= 0):
            raise ConfigError(f"min_contrast={self.min_contrast!r}: must be >= 0")
        if self.device not in DEVICES:
            raise ConfigError(f"device={self.device!r}: choose one of {DEVICES}")
        if int(self.num_threads) != self.num_threads or self.num_threads <= 0:
            raise ConfigError(f"num_threads={self.num_threads!r}: must be a positive integer")


@dataclass(frozen=True)
class RawDetections:
    """What a backend returns before the common post-processing: keypoints already in the project's pixel
    convention (N, 2), descriptors (N, D) (any float scale), scores (N,)."""

    keypoints_px: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Validate an image and return it as contiguous HxWx3 uint8 RGB (grayscale is replicated)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a NumPy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8 (0-255), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxW (grey) or HxWx3 (RGB), got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


def local_contrast(gray: np.ndarray, uv_px: np.ndarray, half_window_px: int = 3) -> np.ndarray:
    """Standard deviation (0-255 grey levels) of the (2h+1)^2 window around each keypoint's nearest pixel."""
    if len(uv_px) == 0:
        return np.zeros(0)
    height, width = gray.shape
    h = half_window_px
    padded = np.pad(gray.astype(np.float64), h, mode="reflect" if min(height, width) > h else "edge")
    cols = np.clip(np.rint(uv_px[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.rint(uv_px[:, 1]).astype(int), 0, height - 1)
    offsets = np.arange(-h, h + 1)
    patches = padded[(rows[:, None, None] + h + offsets[None, :, None]),
                     (cols[:, None, None] + h + offsets[None, None, :])]
    return patches.reshape(len(uv_px), -1).std(axis=1)


def normalise_rows(descriptors: np.ndarray) -> np.ndarray:
    """L2-normalise each row (rows of zeros stay zero)."""
    d = np.asarray(descriptors, dtype=np.float32)
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    return np.divide(d, norms, out=np.zeros_like(d), where=norms > 0)


class Extractor(abc.ABC):
    """A feature extractor: ``extractor(image) -> Features``.

    Subclasses implement :meth:`_detect` on a validated RGB uint8 image and return keypoints in the project's
    pixel convention; the base class applies the border margin, the flat-region filter, top-K by score and
    descriptor normalisation, and turns degenerate inputs (empty or too small images) into empty results.
    """

    #: images smaller than this on either side give empty features (networks need a few cells).
    min_image_side_px: ClassVar[int] = 1
    #: descriptor length (for empty results); subclasses set it.
    descriptor_dim: int = 0

    def __init__(self, config: FeatureConfig, name: str = "") -> None:
        self.name = name or type(self).__name__.lower()
        self.config = config

    @abc.abstractmethod
    def _detect(self, rgb: np.ndarray) -> RawDetections:
        """Detect and describe keypoints on an HxWx3 uint8 RGB image (H, W >= min_image_side_px)."""

    def __call__(self, image: np.ndarray) -> Features:
        return self.extract(image)

    def extract(self, image: np.ndarray) -> Features:
        """Features of an RGB uint8 HxWx3 (or grayscale HxW) image."""
        rgb = as_rgb_uint8(image)
        height, width = rgb.shape[:2]
        size = (width, height)
        if min(height, width) < self.min_image_side_px:
            return Features.empty(size, self.descriptor_dim, self.name)
        raw = self._detect(rgb)
        kp = np.asarray(raw.keypoints_px, dtype=np.float64).reshape(-1, 2)
        if len(kp) == 0:
            return Features.empty(size, self.descriptor_dim, self.name)
        desc = np.asarray(raw.descriptors, dtype=np.float32).reshape(len(kp), -1)
        scores = np.asarray(raw.scores, dtype=np.float32).reshape(-1)
        margin = self.config.border_px
        keep = (np.all(np.isfinite(kp), axis=1) & np.all(np.isfinite(desc), axis=1) & np.isfinite(scores)
                & (kp[:, 0] >= -0.5 + margin) & (kp[:, 0] <= width - 0.5 - margin)
                & (kp[:, 1] >= -0.5 + margin) & (kp[:, 1] <= height - 0.5 - margin))
        if self.config.min_contrast > 0 and keep.any():
            contrast = local_contrast(grey_float32(rgb), kp[keep])
            keep[np.flatnonzero(keep)[contrast < self.config.min_contrast]] = False
        kp, desc, scores = kp[keep], desc[keep], scores[keep]
        if len(kp) == 0:
            return Features.empty(size, desc.shape[1], self.name)
        order = np.argsort(-scores, kind="stable")[: self.config.max_keypoints]
        return Features(kp[order], normalise_rows(desc[order]), scores[order], size, self.name)


# --- torch helpers for the deep backends (imported lazily by them) -----------------------------------------
def torch_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but torch sees no CUDA device; use device='cpu' or 'auto'")
    return torch.device(device)


def limit_torch_threads(num_threads: int) -> None:
    """Cap torch's CPU threads (never raise the count someone else chose lower)."""
    import torch

    if torch.get_num_threads() > num_threads:
        torch.set_num_threads(num_threads)


def rgb_to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float32 tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)[None].to(device)

