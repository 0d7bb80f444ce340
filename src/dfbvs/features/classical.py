"""Classical OpenCV baselines: ORB, SIFT and (where the installed OpenCV has it) AKAZE.

- Licence: OpenCV is Apache-2.0 (SIFT's patent expired in 2020); no weights.
- Pixel convention: OpenCV's ``KeyPoint.pt`` is a pixel index at the detection scale multiplied by that
  scale, which is not the pixel-centre mapping ``(u + 0.5) * s - 0.5``. Corrections applied here (each one
  measured with a flip test, pinned in ``tests/test_features.py``): ORB ``+0.5 * (s - 1)`` with
  ``s = scale_factor ** octave``; SIFT ``-0.25`` px (its first octave is the image upsampled x2: measured
  bias +0.25 px before correction). AKAZE works at full resolution in every octave's reported coordinates
  (no correction).
- Descriptors: SIFT 128-D float, L2-normalised. ORB (256 bit) and AKAZE (MLDB, 486 bit) are binary: each
  bit becomes +-1/sqrt(bits), so that the squared L2 distance is 4/bits times the Hamming distance and
  nearest neighbours are unchanged.
- Scores: the detector response (Harris for ORB, DoG contrast for SIFT, Hessian for AKAZE).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..imaging import grey_float32
from ._base import Extractor, FeatureConfig, RawDetections


@dataclass(frozen=True)
class OrbConfig(FeatureConfig):
    """ORB settings: ``fast_threshold`` (grey levels), pyramid ``scale_factor`` and ``num_levels``."""

    fast_threshold: int = 10
    scale_factor: float = 1.2
    num_levels: int = 8


@dataclass(frozen=True)
class SiftConfig(FeatureConfig):
    """SIFT settings: ``contrast_threshold`` (Lowe's, on [0, 1] images) and ``edge_threshold``."""

    contrast_threshold: float = 0.02
    edge_threshold: float = 10.0


@dataclass(frozen=True)
class AkazeConfig(FeatureConfig):
    """AKAZE settings: detector ``threshold`` on the Hessian response."""

    threshold: float = 0.0005


def akaze_available() -> bool:
    import cv2

    return hasattr(cv2, "AKAZE_create")


def _binary_to_unit(packed: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(packed.astype(np.uint8), axis=1).astype(np.float32)
    return (2.0 * bits - 1.0) / np.sqrt(bits.shape[1])


class _OpenCVExtractor(Extractor):
    binary: bool = False

    @abc.abstractmethod
    def _make(self):
        """The cv2 Feature2D object of the backend."""

    def __init__(self, config: FeatureConfig, name: str = "") -> None:
        super().__init__(config, name)
        self._detector = self._make()

    def _detect(self, rgb: np.ndarray) -> RawDetections:
        gray = np.clip(np.rint(grey_float32(rgb)), 0, 255).astype(np.uint8)
        keypoints, desc = self._detector.detectAndCompute(gray, None)
        if desc is None or len(keypoints) == 0:
            return RawDetections(np.zeros((0, 2)), np.zeros((0, self.descriptor_dim), np.float32), np.zeros(0))
        uv = np.array([k.pt for k in keypoints], dtype=np.float64) + self._offset_px(keypoints)
        scores = np.array([k.response for k in keypoints], dtype=np.float32)
        desc = _binary_to_unit(desc) if self.binary else desc.astype(np.float32)
        return RawDetections(uv, desc, scores)


    def _offset_px(self, keypoints) -> np.ndarray:
        """Correction (N, 1) from the backend's reported coordinates to pixel centres (none by default)."""
        return np.zeros((len(keypoints), 1))


class OrbExtractor(_OpenCVExtractor):
    binary = True
    descriptor_dim = 256

    def _make(self):
        import cv2

        c: OrbConfig = self.config  # type: ignore[assignment]
        edge = max(31, int(np.ceil(c.border_px)))  # ORB needs a 31 px patch around each keypoint
        return cv2.ORB.create(nfeatures=c.max_keypoints, scaleFactor=c.scale_factor, nlevels=c.num_levels,
                              edgeThreshold=edge, patchSize=31, fastThreshold=c.fast_threshold)

    def _offset_px(self, keypoints) -> np.ndarray:
        # ORB scales level coordinates by s = scale_factor**level: u0 = s * u_level, whereas pixel centres map
        # as u0 = s * (u_level + 0.5) - 0.5; the difference is 0.5 * (s - 1)
        s = np.array([self.config.scale_factor ** k.octave for k in keypoints])  # type: ignore[attr-defined]
        return (0.5 * (s - 1.0))[:, None]


class SiftExtractor(_OpenCVExtractor):
    descriptor_dim = 128

    def _make(self):
        import cv2

        c: SiftConfig = self.config  # type: ignore[assignment]
        return cv2.SIFT.create(nfeatures=c.max_keypoints, contrastThreshold=c.contrast_threshold,
                               edgeThreshold=c.edge_threshold)

    def _offset_px(self, keypoints) -> np.ndarray:
        # SIFT's first octave is the image upsampled x2 and its coordinates are halved: u0 = u_up / 2, whereas
        # pixel centres map as u0 = (u_up + 0.5) / 2 - 0.5 = u_up / 2 - 0.25 (measured: +0.25 px bias)
        return np.full((len(keypoints), 1), -0.25)


class AkazeExtractor(_OpenCVExtractor):
    binary = True
    descriptor_dim = 486

    def _make(self):
        import cv2

        if not akaze_available():
            raise RuntimeError(f"the installed OpenCV {cv2.__version__} has no AKAZE (OpenCV 5 moved it to "
                               "contrib); use 'orb' or 'sift'")
        c: AkazeConfig = self.config  # type: ignore[assignment]
        opencv: Any = cv2  # AKAZE is absent from OpenCV 5's main module and type stubs (see akaze_available)
        return opencv.AKAZE_create(threshold=c.threshold)
