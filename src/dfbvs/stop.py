"""Stop rules: when a servo run ends, decided from the stream of :class:`~dfbvs.servo.ServoStep` results.

Converged: for ``converged_cycles`` cycles the mean correspondence error stayed below ``converged_px`` *and*
the pose the servo measured (``T_current_target`` from PnP, when the step has one) was within
``converged_pose_translation_ratio`` of the goal distance and ``converged_pose_rotation_deg`` of the goal:
a small image error alone does not mean the pose is there (the image is weakly sensitive to rotation about
the camera's x with translation along its y). A run has *settled* at what its measurements can tell, and also
ends converged, when for ``converged_settled_cycles`` cycles its image error stayed below ``settled_px``, the
second half of those cycles did not lower the mean error by more than ``settled_min_progress`` and the
measured pose (median of each half) moved less than the pose tolerance: on photoreal or real images the
aligned patches keep a floor of disagreement (0.2-0.25 px measured, docs/photoreal.md) that no threshold in
pixels fits, while a loop still crawling along its weak direction still moves its pose
(:attr:`StopMonitor.converged_by` says which rule ended it). Alternatively the twist below the twist bounds
for ``converged_cycles`` cycles. Lost: no usable lock for ``lost_cycles`` cycles (a lock the next cycle did not
confirm, status ``unconfirmed``, is not usable; a cycle that is only waiting for a first measurement, status
``not_locked``, counts for neither). Diverged: the
mean error over the last ``diverged_cycles`` usable cycles is beyond the bound (losing the object while
diverging is DIVERGED, not LOST). Timeout: ``max_iterations`` cycles.

No rule declares convergence on a lock its correspondences do not pin down: the cycle must have at least
``converged_min_inliers`` inliers and an interaction matrix ``L`` whose condition number is at most
``converged_max_condition`` (few points, points clustered in one spot or along a line make ``L`` nearly
singular: ~100-250 for a framed object's spread keypoints, ~1000 for a cluster of 30 px standard deviation at
320x240, ~20000 along a line). Such cycles keep the run going (:attr:`StopMonitor.unpinned_cycles` counts
them, :attr:`StopMonitor.unpinned_reason` says why). Nor on a step the servo marks ``pending`` (its estimate may
still move: the tracking servo near the goal before the target is relit to the camera's lighting);
:attr:`StopMonitor.pending_cycles` counts those, :attr:`StopMonitor.pending_reason` says why.

A usable cycle without an error measurement (NaN ``mean_error_px``: the tracking servo's coarse phase driving on a
detection's pose carried forward between detections, a whole-image method) cannot start a converged run of
cycles; it continues one while its pose estimate stays within the pose tolerance, and the run converges only
with at least ``converged_min_measured`` measured cycles in it (every cycle of the per-frame and tracked loops is
measured, so for them this changes nothing). The settled rule counts measured cycles only.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError
from .servo import CorrespondenceSource, StepStatus

if TYPE_CHECKING:
    from .servo import ServoStep


class EpisodeStatus(str, enum.Enum):
    RUNNING = "running"
    CONVERGED = "converged"
    DIVERGED = "diverged"
    LOST = "lost"
    TIMEOUT = "timeout"
    STOPPED = "stopped"  # ended from outside the rules: a frame source ran dry, a user or a safety layer


@dataclass(frozen=True)
class StopConfig:
    """When an episode ends (units in the names)."""

    converged_px: float = 0.2  # mean correspondence error (working px) below this ...
    converged_cycles: int = 5  # ... held for this many consecutive cycles
    converged_twist_m_s: float = 0.0  # alternatively |v_lin| below this (0 disables) ...
    converged_twist_rad_s: float = 0.0  # ... and |w| below this, for converged_cycles cycles
    # the measured pose (PnP) within this fraction of the goal distance (0.0015: 0.33 mm at 0.22 m) and this
    # angle, together with converged_px (0 disables the pose condition)
    converged_pose_translation_ratio: float = 0.0015
    converged_pose_rotation_deg: float = 0.05
    converged_settled_cycles: int = 40  # settled (0 disables): below settled_px this long, no progress, pose still
    settled_px: float = 0.5
    settled_min_progress: float = 0.05  # the second half's mean error below (1 - this) x the first half's: progress
    lost_cycles: int = 10  # consecutive cycles with no usable inliers
    # diverged: the mean error averaged over the last diverged_cycles usable cycles is above diverged_factor
    # times the best error seen before those cycles (the first error while there is none) and above
    # diverged_min_px. Averaging catches the oscillating divergence of a too-high gain, which never stays
    # above the bound for many cycles in a row; comparing with the errors *before* the window does not take a
    # fast convergence (a window's mean far above its own last, best error) for a divergence.
    diverged_factor: float = 2.0
    diverged_min_px: float = 20.0
    diverged_cycles: int = 10
    max_iterations: int = 300
    converged_min_inliers: int = 15  # a converged cycle's lock must be pinned down by this many inliers ...
    converged_max_condition: float = 3000.0  # ... and cond(L) at most this (inf: off)
    # a converged run of cycles holds at least this many measured ones (at most converged_cycles): a part the
    # tracking servo never tracks (the sheet) is measured only by its detections, one per 30-60 frames
    converged_min_measured: int = 3

    def __post_init__(self) -> None:
        for name in ("max_iterations", "lost_cycles", "converged_cycles", "diverged_cycles"):
            if not getattr(self, name) >= 1:
                raise ConfigError(f"stop.{name}={getattr(self, name)!r}: must be >= 1 cycle")


class StopMonitor:
    """Decides when a servo run ends, from the stream of :class:`ServoStep` results.

    Losing the object while the recent errors are past the divergence bound counts as DIVERGED (the loop
    drove the object out of view), not LOST."""

    def __init__(self, config: StopConfig = StopConfig(), goal_distance_m: float = 0.22):
        """``goal_distance_m``: the goal camera's distance to the object (the target's median depth), which
        scales the pose tolerance."""
        self.config = config
        self.goal_distance_m = float(goal_distance_m) if np.isfinite(goal_distance_m) and goal_distance_m > 0 else 0.22
        self.converged_by: str | None = None  # "pose" ("image" with the pose rule off), "settled" or "twist"
        self._settled = 0
        self._settle_window: deque[tuple[float, np.ndarray | None]] = deque(
            maxlen=max(config.converged_settled_cycles, 2))
        self.iterations = 0
        self._recent_errors_px: deque[float] = deque(maxlen=config.diverged_cycles)
        self._reference_px = np.inf  # best error before the window (the first error until one leaves it)
        self._below = 0
        self._measured = 0  # measured cycles in the current converged run
        self._slow = 0
        self._lost = 0
        self.best_error_px = np.inf
        self.unpinned_cycles = 0  # cycles a rule would have converged on, refused: the lock is not pinned down
        self.unpinned_reason = ""
        self.pending_cycles = 0  # cycles a rule would have converged on, refused: the servo said it is not done
        self.pending_reason = ""

    def update(self, step: ServoStep) -> EpisodeStatus:
        c = self.config
        self.iterations += 1
        if step.status is StepStatus.NOT_LOCKED:  # waiting for a first measurement: neither lost nor progress
            return EpisodeStatus.TIMEOUT if self.iterations >= c.max_iterations else EpisodeStatus.RUNNING
        if not step.ok:
            self._lost += 1
            self._below = self._measured = 0
            if self._lost >= c.lost_cycles:
                return EpisodeStatus.DIVERGED if self._diverging() else EpisodeStatus.LOST
        else:
            self._lost = 0
            err = step.mean_error_px  # NaN for methods without correspondences (photometric)
            self.best_error_px = min(self.best_error_px, err) if np.isfinite(err) else self.best_error_px
            if np.isfinite(err):  # a measured cycle
                within = err < c.converged_px and self._pose_within(step)
                self._below, self._measured = (self._below + 1, self._measured + 1) if within else (0, 0)
                self._settled = self._settled + 1 if err < c.settled_px else 0
                if err < c.settled_px:
                    T = step.T_current_target
                    self._settle_window.append((float(err), None if T is None else np.asarray(T, dtype=np.float64)))
                else:
                    self._settle_window.clear()
            elif self._below and self._pose_within(step):  # no new measurement: the run goes on on the pose estimate
                self._below += 1
            else:
                self._below = self._measured = 0
            slow = (c.converged_twist_m_s > 0 and np.linalg.norm(step.v_camera[:3]) < c.converged_twist_m_s
                    and np.linalg.norm(step.v_camera[3:]) < c.converged_twist_rad_s)
            self._slow = self._slow + 1 if slow else 0
            image_rule = "pose" if c.converged_pose_translation_ratio > 0 else "image"  # which condition held
            enough = self._measured >= min(c.converged_min_measured, c.converged_cycles)
            for rule, count, needed in ((image_rule, self._below if enough else 0, c.converged_cycles),
                                        ("settled", self._settled if self._plateau() else 0,
                                         c.converged_settled_cycles),
                                        ("twist", self._slow, c.converged_cycles)):
                if needed > 0 and count >= needed:
                    if step.pending:
                        self.pending_cycles += 1
                        self.pending_reason = step.pending
                        break
                    why = self._unpinned(step)
                    if why:
                        self.unpinned_cycles += 1
                        self.unpinned_reason = why
                        break
                    self.converged_by = rule
                    return EpisodeStatus.CONVERGED
            if np.isfinite(err):
                window = self._recent_errors_px
                if not np.isfinite(self._reference_px) and not window:
                    self._reference_px = err
                if len(window) == window.maxlen:  # the oldest error leaves the window
                    self._reference_px = min(self._reference_px, window[0])
                window.append(err)
            if len(self._recent_errors_px) >= c.diverged_cycles and self._diverging():
                return EpisodeStatus.DIVERGED
        if self.iterations >= c.max_iterations:
            return EpisodeStatus.TIMEOUT
        return EpisodeStatus.RUNNING

    def _plateau(self) -> bool:
        """The settle window is full, its second half made no progress on the error and the measured pose
        (median translation and rotation of each half) moved less than the pose tolerance."""
        c = self.config
        window = list(self._settle_window)
        if c.converged_settled_cycles <= 0 or len(window) < c.converged_settled_cycles:
            return False
        half = len(window) // 2
        first, second = window[:half], window[half:]
        if np.mean([e for e, _ in second]) < (1.0 - c.settled_min_progress) * np.mean([e for e, _ in first]):
            return False
        poses = [[T for _, T in part if T is not None] for part in (first, second)]
        if c.converged_pose_translation_ratio <= 0 or not poses[0] or not poses[1]:
            return True
        t = [np.median([T[:3, 3] for T in part], axis=0) for part in poses]
        from .geometry import so3_log

        r = [np.median([so3_log(T[:3, :3]) for T in part], axis=0) for part in poses]
        return bool(np.linalg.norm(t[1] - t[0]) < c.converged_pose_translation_ratio * self.goal_distance_m
                    and np.degrees(np.linalg.norm(r[1] - r[0])) < c.converged_pose_rotation_deg)

    def _unpinned(self, step: ServoStep) -> str:
        """Why the step's lock does not pin the pose down ("" when it does; a whole-image method, which has no
        correspondences, is not judged here)."""
        c = self.config
        if step.source is CorrespondenceSource.NONE:
            return ""
        n = len(step.correspondences)
        if n < c.converged_min_inliers:
            return f"{n} inliers < stop.converged_min_inliers={c.converged_min_inliers}"
        cond = step.condition_number
        if np.isfinite(c.converged_max_condition) and not np.isnan(cond) and not cond <= c.converged_max_condition:
            return (f"cond(L)={cond:.0f} > stop.converged_max_condition={c.converged_max_condition:g}: the "
                    f"inliers are clustered or aligned")
        return ""

    def _pose_within(self, step: ServoStep) -> bool:
        """The measured pose is within the tolerance (True when the step has no pose or the rule is off)."""
        c = self.config
        T = step.T_current_target
        if T is None or c.converged_pose_translation_ratio <= 0:
            return True
        T = np.asarray(T, dtype=np.float64)
        cos_angle = np.clip((np.trace(T[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
        return bool(np.linalg.norm(T[:3, 3]) < c.converged_pose_translation_ratio * self.goal_distance_m
                    and np.degrees(np.arccos(cos_angle)) < c.converged_pose_rotation_deg)

    def _diverging(self) -> bool:
        """The recent mean error is beyond the bound (``diverged_factor`` x the reference error and
        ``diverged_min_px``)."""
        c = self.config
        if not self._recent_errors_px:
            return False
        bound = max(c.diverged_factor * self._reference_px, c.diverged_min_px)
        return bool(np.mean(self._recent_errors_px) > bound)
