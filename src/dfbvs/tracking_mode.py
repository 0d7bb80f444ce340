"""The paper's tracking mode (Section IV-D): near the goal, match only against target features that were
inliers before, so that the set of 3D points behind the control law stops switching.

This is still deep detection every cycle (the correspondences' source is DETECTION); it only restricts
which target features may be matched.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class TrackingMode(str, enum.Enum):
    """Which target features a tracking cycle may match.

    ``previous``: the paper's rule, ``R(t) ⊆ R(t-1)``: only the previous cycle's inliers (the set can only
    shrink). ``entry``: the inliers of the cycle that entered tracking; the set of 3D points still cannot
    switch to new ones, but a point missed in one cycle may come back (beyond the paper; measured in docs/).
    """

    PREVIOUS = "previous"
    ENTRY = "entry"


@dataclass(frozen=True)
class TrackingConfig:
    """Tracking mode (paper IV-D): enter below ``enter_px`` mean error; leave when fewer than
    ``min_inliers`` inliers remain or the error rose for ``max_rising_cycles`` cycles in a row."""

    enabled: bool = False  # off by default: it cost final pose accuracy in our simulations (docs/servo.md)
    mode: TrackingMode = TrackingMode.ENTRY
    enter_px: float = 3.0
    min_inliers: int = 12
    max_rising_cycles: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", TrackingMode(self.mode))


class TrackingModeState:
    """Whether the servo is in tracking mode, and which target features (indices into the prepared
    target's features) it may match while it is."""

    def __init__(self, config: TrackingConfig) -> None:
        self.config = config
        self.target_idx: np.ndarray | None = None  # target indices kept in tracking mode
        self._last_error_px = np.inf
        self._rising = 0

    @property
    def active(self) -> bool:
        return self.target_idx is not None

    def reset(self) -> None:
        self.target_idx = None
        self._last_error_px = np.inf
        self._rising = 0

    def leave(self) -> None:
        """The tracked set no longer works: match against the full target again."""
        self.target_idx = None
        self._rising = 0

    def update(self, mean_err_px: float, inlier_target_idx: np.ndarray) -> None:
        """After a successful cycle with mean error ``mean_err_px`` over the inliers ``inlier_target_idx``."""
        tc = self.config
        self._rising = self._rising + 1 if mean_err_px > self._last_error_px else 0
        self._last_error_px = mean_err_px
        if not tc.enabled:
            return
        if self.active:
            if len(inlier_target_idx) < tc.min_inliers or self._rising >= tc.max_rising_cycles:
                self.leave()
                return
            if tc.mode is TrackingMode.PREVIOUS:
                self.target_idx = np.unique(inlier_target_idx)
        elif mean_err_px < tc.enter_px and len(inlier_target_idx) >= tc.min_inliers:
            self.target_idx = np.unique(inlier_target_idx)
            self._rising = 0
