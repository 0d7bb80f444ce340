"""A simulated depth sensor beside the colour camera: what an eye-in-hand RGB-D camera (an active stereo camera
with its depth aligned to the colour image, as RealSense drivers give it) returns for a rendered depth map.

Off by default (``EpisodeConfig.depth_sensor.enabled``): the paper's system and the bench's figures are RGB only.
With it, frames carry ``Frame.depth_m`` and a servo whose goal view is the part's shading serves on it
(:mod:`dfbvs.depth`, docs/parts.md).

The errors, all seeded (``noise_seed`` of the frame):

- noise that grows with the square of the depth, as stereo's does (``sigma_z = z^2 sigma_d / (f b)``):
  ``noise_m_at_0_2m`` RMS at 0.2 m. The default 0.5 mm is that formula with an 18 mm baseline, a 337 px focal
  length (640 px over 87 deg) and 0.08 px of sub-pixel disparity noise, figures typical of a short-range stereo
  camera; spatially correlated over ``noise_correlation_px`` (the matching window), not independent per pixel;
- a depth scale error of the whole sensor, ``scale_error`` (relative, one per episode from ``seed``): what a
  calibration leaves (0.2 %: 0.4 mm at 0.2 m);
- no depth at depth discontinuities (stereo cannot match where one view sees what the other does not):
  pixels within ``edge_band_px`` of a step larger than ``edge_step_ratio`` of the depth, and a random
  ``dropout`` share of the others;
- quantisation to ``unit_m``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class DepthSensorConfig:
    """The simulated depth sensor (module docstring for each error and its default)."""

    enabled: bool = False
    noise_m_at_0_2m: float = 0.0005
    noise_correlation_px: float = 1.5
    scale_error: float = 0.002
    edge_step_ratio: float = 0.02
    edge_band_px: int = 1
    dropout: float = 0.02
    unit_m: float = 0.0001

    def __post_init__(self) -> None:
        for name in ("noise_m_at_0_2m", "noise_correlation_px", "scale_error", "unit_m", "edge_step_ratio"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"depth_sensor.{name}={value!r}: must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"depth_sensor.dropout={self.dropout!r}: a fraction in [0, 1)")
        if self.edge_band_px < 0:
            raise ConfigError(f"depth_sensor.edge_band_px={self.edge_band_px!r}: must be >= 0")

    def scale(self, seed: int) -> float:
        """The sensor's depth scale for an episode (1 + a draw of ``scale_error`` RMS)."""
        return 1.0 + float(np.random.default_rng([int(seed), 7919]).normal(0.0, self.scale_error))


def sensed_depth(depth_m: np.ndarray, config: DepthSensorConfig, seed: int, noise_seed: int) -> np.ndarray:
    """What the sensor returns for the true depth ``depth_m`` (H, W float, m, NaN where nothing is hit): float32
    metres, NaN where it has no depth. ``seed``: the episode's (the scale error); ``noise_seed``: the frame's."""
    true = np.asarray(depth_m, dtype=np.float64)
    rng = np.random.default_rng([int(seed), int(noise_seed)])
    valid = np.isfinite(true) & (true > 0)
    z = np.where(valid, true, 0.0)
    # no depth at steps: where a neighbour is nearer or farther by more than the ratio (or has none)
    filled = np.where(valid, z, 1e6)
    step = np.zeros_like(valid)
    for axis in (0, 1):
        diff = np.abs(np.diff(filled, axis=axis)) > config.edge_step_ratio * np.minimum(
            np.delete(filled, -1, axis=axis), np.delete(filled, 0, axis=axis))
        pad_lo = [(0, 0), (0, 0)]
        pad_lo[axis] = (1, 0)
        pad_hi = [(0, 0), (0, 0)]
        pad_hi[axis] = (0, 1)
        step |= np.pad(diff, pad_lo) | np.pad(diff, pad_hi)
    if config.edge_band_px > 1:
        k = 2 * config.edge_band_px - 1
        step = cv2.dilate(step.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    keep = valid & ~step & (rng.random(z.shape) >= config.dropout)
    noise = rng.standard_normal(z.shape)
    if config.noise_correlation_px > 0:
        noise = np.asarray(cv2.GaussianBlur(noise, (0, 0), config.noise_correlation_px), dtype=np.float64)
        noise /= max(float(noise.std()), 1e-12)
    sensed = config.scale(seed) * z + noise * config.noise_m_at_0_2m * (z / 0.2) ** 2
    if config.unit_m > 0:
        sensed = np.round(sensed / config.unit_m) * config.unit_m
    return np.where(keep, sensed, np.nan).astype(np.float32)
