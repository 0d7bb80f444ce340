"""KeyPointNet, the network of the DFBVS paper (Tang et al., "Neural Outlier Rejection for Self-Supervised
Keypoint Learning", ICLR 2020; KP2D), re-implemented here so that the official checkpoints load unchanged.

- Licence: this code is ours (MIT, as the project). It follows the architecture of the official KP2D code
  (TRI-ML/KP2D, MIT) so that its parameter names match: ``conv1a.0.weight`` ... ``convFbb.bias``. No
  weights ship with dfbvs: the official v0-v4 checkpoints (KP2D release, MIT) must be downloaded by the
  user and given as ``checkpoint_path``; they are never fetched from the network.
- Checkpoint format: ``{'state_dict': {...}, 'config': {'model': {'params': {'use_color', 'do_upsample',
  'do_cross', ...}}}}`` as written by KP2D's training code (a bare ``KeypointNetwithIOLoss`` state dict
  with ``keypoint_net.`` prefixes is accepted too).
- Input normalisation (official): ``(rgb / 255 - 0.5) * 0.225``; grey-input models average the channels.
  Images are padded (edge replication) at the bottom/right to a multiple of 8 px.
- Pixel convention: the network predicts one keypoint per 8x8 cell as ``8 * cell + 3.5 + shift`` (shift in
  +-7 px with ``do_cross``), i.e. integer values at pixel centres, the project's convention; no conversion.
- There is no non-maximum suppression (one keypoint per cell); ``nms_radius_px`` is unused.
- Descriptors: 256-D, sampled bilinearly at the keypoints from the 1/4-resolution map, L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from ..errors import ConfigError, WeightsError
from ._base import Extractor, FeatureConfig, RawDetections, limit_torch_threads, torch_device

#: the official KP2D input normalisation: (x - 0.5) * 0.225 (sic: a multiplication, not a division)
INPUT_MEAN = 0.5
INPUT_SCALE = 0.225
CELL_PX = 8

_ARCH_DEFAULTS = {"use_color": True, "do_upsample": True, "do_cross": True}


@dataclass(frozen=True)
class KeyPointNetConfig(FeatureConfig):
    """KeyPointNet settings.

    - ``checkpoint_path``: an official KP2D checkpoint (``v0.ckpt`` ... ``v4.ckpt``); required.
    - ``min_score``: drop keypoints whose score (sigmoid, in [0, 1]) is below this.
    - ``trust_checkpoint_pickle``: the official files pickle a yacs config object, which torch's safe loader
      refuses; set True to allow full unpickling of a file you trust.
    """

    checkpoint_path: Optional[str] = None
    min_score: float = 0.0
    trust_checkpoint_pickle: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"min_score={self.min_score!r}: must be in [0, 1]")


class KeyPointNetCheckpointError(WeightsError, ValueError):
    """A checkpoint file that is not an official KP2D KeyPointNet checkpoint."""


def build_keypointnet(use_color: bool = True, do_upsample: bool = True, do_cross: bool = True):
    """The KeyPointNet module (torch ``nn.Module``) with the official parameter names; eval mode."""
    import torch
    from torch import nn

    def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))

    class KeyPointNet(nn.Module):
        """Encoder of four VGG stages (3 max-pools: 1/8 resolution) and three heads: score, location offset
        within the cell, and a dense descriptor map (upsampled to 1/4 and fused with the 1/4 skip)."""

        # the encoder stages, registered with add_module below (declared for the type checker)
        conv1a: nn.Sequential
        conv1b: nn.Sequential
        conv2a: nn.Sequential
        conv2b: nn.Sequential
        conv3a: nn.Sequential
        conv3b: nn.Sequential
        conv4a: nn.Sequential
        conv4b: nn.Sequential

        def __init__(self) -> None:
            super().__init__()
            c_in = 3 if use_color else 1
            widths = [(c_in, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
            for name, (a, b) in zip(("conv1a", "conv1b", "conv2a", "conv2b", "conv3a", "conv3b", "conv4a",
                                     "conv4b"), widths):
                self.add_module(name, conv_bn(a, b))
            self.convDa, self.convDb = conv_bn(256, 256), nn.Conv2d(256, 1, 3, padding=1)  # score head
            self.convPa, self.convPb = conv_bn(256, 256), nn.Conv2d(256, 2, 3, padding=1)  # location head
            self.convFa, self.convFb = conv_bn(256, 256), conv_bn(256, 512)  # descriptor head
            self.convFaa, self.convFbb = conv_bn(256, 256), nn.Conv2d(256, 256, 3, padding=1)
            self.act = nn.LeakyReLU()
            self.pool = nn.MaxPool2d(2, 2)
            self.shuffle = nn.PixelShuffle(2)
            self.cross_ratio = 2.0 if do_cross else 1.0
            self.do_upsample = do_upsample

        def forward(self, x):
            _, _, height, width = x.shape
            f = self.act(self.conv1b(self.act(self.conv1a(x))))
            f = self.act(self.conv2b(self.act(self.conv2a(self.pool(f)))))
            skip = self.act(self.conv3b(self.act(self.conv3a(self.pool(f)))))  # 1/4 resolution, 128 ch
            f = self.act(self.conv4b(self.act(self.conv4a(self.pool(skip)))))  # 1/8 resolution, 256 ch

            score = torch.sigmoid(self.convDb(self.act(self.convDa(f))))
            border = torch.zeros_like(score)
            border[:, :, 1:-1, 1:-1] = 1.0  # the outermost cells never hold keypoints
            score = score * border

            shift = torch.tanh(self.convPb(self.act(self.convPa(f))))
            rows, cols = score.shape[-2:]
            half = (CELL_PX - 1) / 2.0
            ys, xs = torch.meshgrid(torch.arange(rows, dtype=f.dtype, device=f.device),
                                    torch.arange(cols, dtype=f.dtype, device=f.device), indexing="ij")
            centre = torch.stack([xs, ys])[None] * CELL_PX + half
            uv = centre + shift * (self.cross_ratio * half)
            uv = torch.stack([uv[:, 0].clamp(0, width - 1), uv[:, 1].clamp(0, height - 1)], dim=1)

            d = self.act(self.convFa(f))
            if self.do_upsample:
                d = torch.cat([self.shuffle(self.convFb(d)), skip], dim=1)
            d = self.convFbb(self.act(self.convFaa(d)))
            grid = torch.stack([uv[:, 0] / ((width - 1) / 2.0) - 1, uv[:, 1] / ((height - 1) / 2.0) - 1], dim=-1)
            desc = torch.nn.functional.grid_sample(d, grid, align_corners=True)
            desc = torch.nn.functional.normalize(desc, dim=1)
            return score, uv, desc

    return KeyPointNet().eval()


def _get(container: Any, key: str) -> Any:
    if isinstance(container, dict) or hasattr(container, "__getitem__"):
        try:
            return container[key]
        except (KeyError, TypeError, IndexError):
            pass
    return getattr(container, key, None)


def _architecture_params(checkpoint: dict, path: Path) -> dict:
    params = _get(_get(_get(checkpoint, "config"), "model"), "params")
    out = dict(_ARCH_DEFAULTS)
    if params is None:
        return out
    net_type = _get(params, "keypoint_net_type")
    if net_type not in (None, "KeypointNet"):
        raise KeyPointNetCheckpointError(f"{path}: keypoint_net_type={net_type!r}; only the official "
                                         "'KeypointNet' architecture is supported")
    for key in out:
        value = _get(params, key)
        if value is not None:
            out[key] = bool(value)
    return out


def load_keypointnet(checkpoint_path: Optional[str | Path], trust_pickle: bool = False):
    """Build KeyPointNet and load an official KP2D checkpoint; returns ``(module, architecture_params)``.

    Raises ``ValueError`` when no path is given, ``FileNotFoundError`` when the file is missing and
    :class:`KeyPointNetCheckpointError` when the file does not hold the official structure.
    """
    import torch

    if checkpoint_path is None or str(checkpoint_path) == "":
        raise ConfigError("keypointnet needs checkpoint_path=<an official KP2D checkpoint, e.g. v4.ckpt>; no "
                         "weights ship with dfbvs (get them from the TRI-ML/KP2D release)")
    path = Path(checkpoint_path).expanduser()
    if not path.is_file():
        raise WeightsError(f"KeyPointNet checkpoint not found: {path}")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... on bad files
        hint = ("" if trust_pickle else "; if this is an official KP2D file you trust (it pickles a yacs "
                "config), pass trust_checkpoint_pickle=True")
        raise KeyPointNetCheckpointError(f"cannot read {path} as a torch checkpoint: {exc}{hint}") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise KeyPointNetCheckpointError(f"{path}: expected a KP2D checkpoint {{'state_dict', 'config'}}, "
                                         f"got {keys}")
    state = checkpoint["state_dict"]
    if not isinstance(state, dict):
        raise KeyPointNetCheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a mapping")
    for prefix in ("module.", "keypoint_net."):  # DataParallel / KeypointNetwithIOLoss wrappers
        if "conv1a.0.weight" not in state and any(str(k).startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if str(k).startswith(prefix)}
    params = _architecture_params(checkpoint, path)
    first = state.get("conv1a.0.weight")
    if first is not None and hasattr(first, "shape") and len(first.shape) == 4:
        params["use_color"] = int(first.shape[1]) == 3
    model = build_keypointnet(**params)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state)
                         if tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape))
    if missing or unexpected or wrong_shape:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        problems = [f"{label}: {show(keys)}" for label, keys in (("missing", missing), ("unexpected", unexpected),
                                                                   ("wrong shape", wrong_shape)) if keys]
        raise KeyPointNetCheckpointError(f"{path} is not an official KeyPointNet checkpoint ("
                                         f"{'; '.join(problems)})")
    model.load_state_dict(state, strict=True)
    return model.eval(), params


class KeyPointNetExtractor(Extractor):
    min_image_side_px: ClassVar[int] = 3 * CELL_PX
    descriptor_dim = 256

    def __init__(self, config: KeyPointNetConfig, name: str = "") -> None:
        super().__init__(config, name)
        import torch

        limit_torch_threads(config.num_threads)
        self._device = torch_device(config.device)
        model, self.architecture = load_keypointnet(config.checkpoint_path, config.trust_checkpoint_pickle)
        self._model = model.to(self._device)
        self._torch = torch

    def _detect(self, rgb: np.ndarray) -> RawDetections:
        torch = self._torch
        height, width = rgb.shape[:2]
        pad_h, pad_w = (-height) % CELL_PX, (-width) % CELL_PX
        if pad_h or pad_w:
            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        x = (rgb.astype(np.float32) / 255.0 - INPUT_MEAN) * INPUT_SCALE
        if not self.architecture["use_color"]:
            x = x.mean(axis=2, keepdims=True)
        tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self._device)
        with torch.inference_mode():
            score, uv, desc = self._model(tensor)
        scores = score[0, 0].flatten().float().cpu().numpy()
        uv_px = uv[0].flatten(1).T.double().cpu().numpy()
        desc = desc[0].flatten(1).T.float().cpu().numpy()
        keep = (scores > 0) & (scores >= self.config.min_score)  # type: ignore[attr-defined]
        return RawDetections(uv_px[keep], desc[keep], scores[keep])
