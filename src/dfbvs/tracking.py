"""Camera-rate servoing: track the target every frame without the network; deep detection in the background.

Per frame (:meth:`TrackingServo.step`), no deep network: predict the pose ``T_current_target`` from the
last estimate and the twist commanded since, project every target keypoint with it, align each keypoint's
target patch on the camera's full-resolution image (:mod:`.refine`), fit one rigid motion to the aligned
points (PnP), and apply the control law. ~10-20 ms instead of a network pass.

Beside it, a :class:`BackgroundDetector` runs the deep path (a :class:`~dfbvs.servo.DFBVSServo`: features,
matching, PnP with the rendered depth) on one frame at a time, on its own thread, as often as the CPU
allows. Its result arrives late, for the frame it was computed on. It *acquires* (no lock yet, or lost),
*verifies* the tracked pose at that frame (an independent measurement), and *replaces* the tracked pose when
the two disagree by more than ``verify_px``: the correction is carried forward to now through the motion
tracked since that frame.

Far from the goal the target's patches can look too different from the live image to align (scale,
rotation); then the servo is in its *coarse phase*: every frame it carries the latest detection's pose forward
to now through the motion commanded since that detection's frame, applies the per-frame law to the target
points projected with that predicted pose (a closed loop at the camera's rate on a dead-reckoned estimate,
corrected by each new detection), and tries to lock tracking from it. Once tracking holds, the network only
verifies. (``coarse_from_prediction=False``: the old coarse phase, the latest detection's own twist held
until the next detection, which overshoots when detections are slow.) While nothing is locked, or when an
established track is lost (until a detection of a frame taken after the loss), the servo commands zero
velocity (statuses ``not_locked``, ``too_few_inliers``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np

from .control import CONTROL_LAWS, ControlInput, GainConfig, IBVSConfig, build_control_law
from .errors import ConfigError
from .estimation import PnPConfig
from .geometry import inverse, pose_error, poses_agree, se3_exp, transform_points
from .imaging import as_rgb_frame
from .matching import Correspondences
from .refine import guided_candidates, refine_and_verify
from .render.target import TargetRender
from .servo import (
    CorrespondenceSource,
    DFBVSServo,
    ServoConfig,
    ServoStep,
    StepStatus,
    at_pose,
    check_law_within_lock,
    implausible_pose,
    implausible_twist,
)


def _fast_control() -> IBVSConfig:
    # measured for the ~30 Hz loop (docs/realtime.md): 5 -> 2.5 /s, against 3 -> 1.5 before, cut the median time to
    # goal on accuracy18 from 2.63 s to 1.73 s with the same final errors (the per-frame loop's gain: 0.5-1.0)
    return IBVSConfig(gain=GainConfig(gain_at_zero=5.0, gain_at_infinity=2.5, slope_at_zero=20.0),
                      max_linear_m_s=0.1, max_angular_rad_s=0.5)


@dataclass(frozen=True)
class TrackerConfig:
    """The tracking servo (units in the names; pixels are working pixels, 320x240 by default).

    - ``detection``: the deep path run in the background (its features, matcher, PnP and refinement
      settings; its control law is not used).
    - ``control``: the law of the per-frame loop.
    - ``min_inliers``: fewer aligned points that agree on one rigid motion than this = tracking lost.
    - ``min_inlier_fraction``: fewer than this fraction of the median count of the last ``recent_cycles``
      tracked cycles = not sure of the lock (something covers part of the object): zero twist, the pose
      kept as predicted, until the count recovers or falls below ``min_inliers``.
    - ``verify_px``: when the tracked pose, at the frame a detection was computed on, puts the detection's
      matched target points further than this (median) from where the detection saw them, the two disagree.
      With ``hold_on_dispute`` the servo is then not sure of its lock: zero twist (status ``not_locked``, tracking
      goes on measuring) until the next detection decides: if it agrees with the track, the track goes on; if it
      agrees with the disputing detection (the same tolerances as ``confirm_detections``), its pose replaces the
      tracked one, carried forward; otherwise the hold goes on. On the smooth housing single wrong detections
      "corrected" a track 3-14 times an episode and drove the camera from 39 to 58-72 mm (docs/parts.md); on
      textured parts no detection ever disagreed. ``hold_on_dispute=False``: the disputing detection's pose
      replaces the tracked one at once (bench flag ``-trustcorrection``).
    - ``detection_latency_s``: declared time a detection takes (deterministic tests); None = as it takes.
    - ``detector_threads``: torch threads of the background detection (the per-frame loop keeps a core).
    - ``search_levels`` / ``search_max_shift_px``: the patch alignment searches from the predicted position
      over this many pyramid levels and up to this far (px of the image aligned): a prediction is a few
      pixels off where a detection-based guess is a fraction of one.
    - ``command_latency_s``: how long after a frame its twist takes effect, for the prediction (the
      previous twist moves the camera until then); None = this servo's own measured compute time.
    - ``confirm_detections``: before a track is established, a detection's pose drives (or seeds tracking) only
      when it agrees with the previous detection's, carried forward through the motion commanded since, within
      ``confirm_translation_ratio`` of the object's median depth seen from the new pose and
      ``confirm_rotation_deg`` (:func:`~dfbvs.geometry.poses_agree`, as the per-frame servo's ``lock.confirm``):
      two independent measurements of one pose. A false lock on a feature-poor part gives poses that do not
      agree, and its twist, held until the next detection, drove a camera 77 mm away (docs/parts.md). 1 = every
      detection drives. 5 % / 3 deg, tighter than the per-frame servo's 12 % / 8 deg: with those, housing-P2 of
      the parts protocol was driven from 39 to 47 mm (docs/realtime.md; bench flag ``-looseconfirm``).
    - ``coarse_from_prediction``: in the coarse phase, each frame's twist is the law applied to the target points
      projected with the latest detection's pose carried forward through the motion commanded since, and each
      frame tries to lock tracking from that pose; False = the detection's own twist (the per-frame servo's law on
      the detection's frame) held until the next detection, and tracking tried once per detection. A held twist
      ignores the motion it has already caused: with detections taking 1-2 s on a loaded machine it overshot
      (bracket-G2-T1 diverged to 251 mm, connector-G2-T3 timed out, both in the coarse phase; docs/realtime.md).
    - ``confirm_by_tracking``: the second measurement may also be a tracked cycle: the patches of every target
      keypoint aligned from the unconfirmed detection's pose on the next frame, fitted to one rigid motion, and
      agreeing with that pose within the same tolerances (tens of ms instead of a second detection's hundreds).
      A wrong pose's patches do not align onto one motion near it (a false lock on a feature-poor part never
      tracked, docs/parts.md), so it holds still as before. On by default since the coarse phase closes the loop
      on the predicted pose (docs/realtime.md: accuracy18 median time to goal 3.27 -> 2.63 s, the same 17/18 within
      1 mm and 0.1 deg; before, with the held twist, connector-G2-T3 had timed out in the coarse phase).
      A tracked cycle is not independent of the pose it starts from: on a smooth part 23-37 patches slid along the
      shading and the outline onto one motion near a wrong detection's pose and "confirmed" it (housing-P2 of the
      parts protocol, driven from 39 to 72 mm, docs/parts.md). The next detection that disagrees with such a track
      stops it (``hold_on_dispute``).
    - ``provisional_tracked_confirmation`` (off; bench flag ``-provisional``): a track confirmed by a tracked cycle
      is dropped (zero twist) when the next detection computed on one of its frames disagrees with its pose there
      (the confirmation tolerances, 5 % / 3 deg); that detection becomes the first of a new pair, and tracked cycles
      confirm nothing more in the episode. Measured, not adopted (docs/parts.md): genuine tracks of the small
      connector were dropped on 2 of 18 accuracy18 episodes (a far detection's pose is less precise than the
      track's: 7.4 and 9.2 s to the goal against a median of 2.9 s), and on housing-P2 the camera had already
      been driven ~20 mm in the tracked cycles before the next detection; the px test of ``hold_on_dispute``
      stops such a track as soon, without dropping the genuine ones.

    - ``unverified_motion_ratio`` / ``unverified_motion_deg``: a track confirmed by a tracked cycle (not by two
      detections) moves the camera at most this far (this fraction of the object's median depth at the goal, this
      angle) from where it was confirmed, then holds still (status ``not_locked``) until a detection computed on one
      of its frames agrees with it (``verify_px``); from then on it is verified and drives freely. On the smooth
      housing such a track drove the camera ~20 mm in 23 tracked cycles, before any detection could dispute it
      (docs/parts.md). 0 = no limit.
    - ``unreliable_window`` / ``unreliable_disagreements``: when this many of the last ``unreliable_window``
      detections checked against an established track (``verify_px``, or the provisional check) disagreed with it,
      the target's tracks cannot be told apart from false locks: the servo holds still with status ``unreliable``
      until :meth:`TrackingServo.reset` or ``retarget``, and the run ends lost (:mod:`dfbvs.stop`). On housing-P2
      of the parts protocol 4-15 detections disputed its tracks an episode; on the textured parts and accuracy18
      none ever has. Detections before a track are not counted: far from the goal a small part's genuine
      detections disagree with each other (5 of 8 on accuracy18's connector-G2-T3, docs/parts.md). 0 = off.

    - ``relight_before_converging`` / ``relight_within``: near the goal (the tracked pose within
      ``detection.relight``'s near-goal region) the tracked patches must be aligned on the target relit to the
      camera's lighting, fitted at a pose within ``relight_within`` of the goal (:func:`~dfbvs.relight.goal_nearness`:
      1 at the edge of that region), before the run may converge: until then the tracked steps are ``pending``
      (:mod:`dfbvs.stop` does not converge on them), and once the track is that near, the next background job first
      fits the lighting of its frame at the tracked pose, then detects. Without it the loop reached the goal at camera
      rate between two detections and converged on an unlit target, or one lit by a detection 10 mm out: shiny-P3 of
      the parts protocol ended at 0.15-0.16 deg in 3 of 6 runs, against 0 of 6 with it (docs/parts.md). A fit tried
      by the job is not tried again, failed or not. Nothing changes where the target has no shading basis or
      ``detection.relight`` is off.

    A tracked pose must also be plausible and its twist bounded as ``detection.lock`` says
    (:class:`~dfbvs.servo.LockConfig`); frames are checked like the per-frame servo's
    (:func:`~dfbvs.imaging.as_rgb_frame`).
    """

    detection: ServoConfig = field(default_factory=ServoConfig)
    control: object = field(default_factory=_fast_control, metadata={"registry": CONTROL_LAWS})
    min_inliers: int = 12
    min_inlier_fraction: float = 0.5
    recent_cycles: int = 10
    verify_px: float = 2.0
    detection_latency_s: Optional[float] = None
    detector_threads: int = 1
    search_levels: int = 3
    search_max_shift_px: float = 15.0
    command_latency_s: Optional[float] = None
    confirm_detections: int = 2
    confirm_translation_ratio: float = 0.05
    confirm_rotation_deg: float = 3.0
    confirm_by_tracking: bool = True
    provisional_tracked_confirmation: bool = False
    hold_on_dispute: bool = True
    coarse_from_prediction: bool = True
    unverified_motion_ratio: float = 0.05
    unverified_motion_deg: float = 3.0
    unreliable_window: int = 8
    unreliable_disagreements: int = 4
    relight_before_converging: bool = True
    relight_within: float = 0.2

    def __post_init__(self) -> None:
        if self.confirm_detections not in (1, 2):
            raise ConfigError(f"confirm_detections={self.confirm_detections!r}: 1 (off) or 2")
        if not (self.confirm_translation_ratio > 0 and self.confirm_rotation_deg > 0):
            raise ConfigError(f"confirm tolerances must be > 0, got {self.confirm_translation_ratio!r}, "
                              f"{self.confirm_rotation_deg!r}")
        if not self.detection.refine.enabled:
            raise ConfigError("the tracking servo measures by refinement: detection.refine.enabled must be true")
        if self.min_inliers < 4:
            raise ConfigError(f"min_inliers={self.min_inliers!r}: must be >= 4")
        if not self.verify_px > 0:
            raise ConfigError(f"verify_px={self.verify_px!r}: must be > 0")
        if not (self.unverified_motion_ratio >= 0 and self.unverified_motion_deg >= 0):
            raise ConfigError(f"unverified motion limits must be >= 0 (0: no limit), got "
                              f"{self.unverified_motion_ratio!r}, {self.unverified_motion_deg!r}")
        if not 0 < self.relight_within <= 1:
            raise ConfigError(f"relight_within={self.relight_within!r}: must be in (0, 1] (relight.goal_nearness)")
        if not 0 <= self.unreliable_disagreements <= self.unreliable_window:
            raise ConfigError(f"unreliable_disagreements={self.unreliable_disagreements!r}: between 0 (off) and "
                              f"unreliable_window={self.unreliable_window!r}")
        CONTROL_LAWS.name_of(self.control)


@dataclass(frozen=True)
class Detection:
    """A deep detection of the frame taken at ``timestamp_s`` (the loop's clock): the pose (None when it
    found none), its inliers as current pixels (N, 2, working px) and target points (N, 3, goal camera frame,
    m), how long it took (wall s), and the per-frame servo's step on that frame (its twist drives the
    coarse phase)."""

    timestamp_s: float
    T_current_target: Optional[np.ndarray]
    uv_current_px: np.ndarray
    points_target_m: np.ndarray
    duration_s: float
    step: Optional[ServoStep] = None


class BackgroundDetector:
    """Runs ``detect(rgb, timestamp_s, *args) -> Detection`` on one frame at a time on a worker thread.

    ``poll(now_s)`` hands out a finished detection once ``now_s`` (the loop's clock) has reached the frame's
    timestamp plus its duration: the measured wall time, or ``declared_latency_s`` (then it waits for the
    worker if needed, so simulated runs are deterministic). The same rule serves a real camera (monotonic
    clock) and a simulated one.
    """

    def __init__(self, detect, declared_latency_s: Optional[float] = None) -> None:
        self._detect = detect
        self.declared_latency_s = declared_latency_s
        self._thread: Optional[threading.Thread] = None
        self._result: Optional[Detection] = None
        self._error: Optional[BaseException] = None
        self._submitted_s = float("nan")
        self.submitted = 0

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def submit(self, rgb: np.ndarray, timestamp_s: float, *args: Any) -> None:
        """Start ``detect(rgb, timestamp_s, *args)`` on a copy of ``rgb``."""
        if self.busy:
            raise RuntimeError("BackgroundDetector.submit while a detection is running")
        self._result, self._error, self._submitted_s = None, None, timestamp_s
        frame = np.array(rgb, copy=True)

        def work() -> None:
            try:
                self._result = self._detect(frame, timestamp_s, *args)
            except BaseException as exc:  # handed to the loop's thread by poll
                self._error = exc

        self._thread = threading.Thread(target=work, name="dfbvs-detector", daemon=True)
        self._thread.start()
        self.submitted += 1

    def poll(self, now_s: float) -> Optional[Detection]:
        if self._thread is None:
            return None
        if self.declared_latency_s is not None:
            if now_s < self._submitted_s + self.declared_latency_s:
                return None
            self._thread.join()
        elif self._thread.is_alive():
            return None
        elif self._result is not None and now_s < self._submitted_s + self._result.duration_s:
            return None  # a simulated clock that has not yet reached the moment the detection finished
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise self._error
        return self._result

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def median_reprojection_px(T_current_target: np.ndarray, points_target_m: np.ndarray, uv_current_px: np.ndarray,
                           camera) -> float:
    """Median image distance (px of ``camera``) between where a pose puts target points and where they were
    seen (inf when none is in front of the camera)."""
    p = transform_points(T_current_target, points_target_m)
    front = p[:, 2] > 1e-6
    if not front.any():
        return float("inf")
    return float(np.median(np.linalg.norm(camera.project(p[front]) - uv_current_px[front], axis=1)))


class TrackingServo:
    """``step(image, timestamp_s)``: tracked per frame, detected in the background (module docstring).
    Timestamps must increase: they time the prediction and the detections."""

    def __init__(self, config: TrackerConfig, render: TargetRender) -> None:
        import torch

        check_law_within_lock(config.control, config.detection.lock, "control", "detection.lock")
        self.config = config
        torch.set_num_threads(max(1, config.detector_threads))  # the per-frame path keeps the other core
        # each detection is one measurement: the tracker confirms them itself (confirm_detections, through the motion
        # between detections), so the deep servo's own per-cycle confirmation (lock.confirm) is off
        self.deep = DFBVSServo.from_render(render, replace(config.detection,
                                                           lock=replace(config.detection.lock, confirm=False)))
        self.law = build_control_law(config.control)
        pnp = config.detection.rejection
        self._pnp = pnp if isinstance(pnp, PnPConfig) else PnPConfig()
        self.detector = BackgroundDetector(self._detect, config.detection_latency_s)
        refinement = self.deep.target.refinement
        assert refinement is not None  # TrackerConfig requires refinement
        self._search = replace(refinement.config, levels=config.search_levels,
                               max_shift_px=config.search_max_shift_px)
        self.reset()

    # --- state ----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.detector.close()
        self.T_current_target: Optional[np.ndarray] = None  # the tracked (or being acquired) pose ...
        self._pose_time_s = float("nan")  # ... at the frame taken at this time
        self._established = False  # tracking has held since the pose was acquired
        self._coarse: Optional[Detection] = None  # the detection whose twist drives the coarse phase
        self._previous: Optional[Detection] = None  # the last detection with a pose, to confirm the next one
        self._probing = False  # T_current_target is an unconfirmed detection's pose, for a tracked cycle to confirm
        self._reported_detection_s = float("nan")  # the detection whose error a coarse step reported
        self._disputed: Optional[Detection] = None  # a detection that disagreed with the track, awaiting a second
        self._provisional = False  # the track was confirmed by a tracked cycle: the next detection must agree with it
        self._confirm_by_tracking = self.config.confirm_by_tracking  # off once a tracked confirmation was contradicted
        self._unverified = False  # the track was confirmed by a tracked cycle and no detection has agreed with it yet
        self._established_s = float("nan")  # the frame time the track was established at
        # per detection checked against an established track: whether it disagreed with it (unreliable_window)
        self._disagreed: deque[bool] = deque(maxlen=max(1, self.config.unreliable_window))
        # why the target's measurements are not trusted ("" = they are); a goal view of shading, from the start
        self._unreliable = self.deep.unservable
        # (frame time, twist commanded on it, the time it took to take effect after the frame)
        self._commands: deque[tuple[float, np.ndarray, float]] = deque(maxlen=600)
        self._history: dict[float, np.ndarray] = {}  # frame time -> tracked T_current_target
        self._recent_counts: deque[int] = deque(maxlen=self.config.recent_cycles)
        self._tracked_ms: list[float] = []  # compute time of every tracked cycle
        self.stats = {"detections": 0, "acquisitions": 0, "reacquisitions": 0, "corrections": 0, "losses": 0,
                      "unsure": 0, "coarse_cycles": 0, "tracked_cycles": 0, "unconfirmed": 0,
                      "confirmed_by_tracking": 0, "provisional_dropped": 0,
                      "disputes": 0, "unverified_holds": 0, "unreliable": int(bool(self._unreliable)),
                      "depth_cycles": 0}  # "unreliable": the colour path's verdict; depth_cycles: served on depth
        self._ever_established = False
        self._unlocked_since_s = -np.inf
        self._failed: Optional[StepStatus] = None  # a failed detection, reported by the next step
        # relight_before_converging: the job has fitted (or tried) the lighting near the goal since the reset, or a
        # detection has, within relight_within (seen in the deep servo's count of fits)
        self._lit = False
        self._fits_at_reset = self.deep.relight_fits

    def retarget(self, render: TargetRender) -> None:
        self.detector.close()
        self.deep.retarget(render)
        self.reset()

    @property
    def target(self):
        return self.deep.target

    def motion(self, t_from_s: float, t_to_s: float) -> np.ndarray:
        """The camera's motion ``T_camera(t_from)_camera(t_to)`` from the twists commanded since (each takes
        effect its latency after its frame; the one before holds until then)."""
        moved = np.eye(4)
        active = np.zeros(6)
        switches = []
        for t_k, v_k, lag_k in self._commands:
            if t_k + lag_k <= t_from_s:
                active = v_k
            elif t_k + lag_k < t_to_s:
                switches.append((t_k + lag_k, v_k))
        t = t_from_s
        for t_switch, v in switches:
            moved = moved @ se3_exp(active * (t_switch - t))
            t, active = t_switch, v
        return moved @ se3_exp(active * (t_to_s - t))

    # --- the background path --------------------------------------------------------------------------------
    def _detect(self, rgb: np.ndarray, timestamp_s: float, T_relight: Optional[np.ndarray] = None) -> Detection:
        """The background job: with ``T_relight`` (the tracked pose at this frame, owed a lighting fit:
        ``relight_before_converging``), first fit the frame's lighting at that pose and relight the target; then
        detect."""
        t0 = time.perf_counter()
        if T_relight is not None:
            self.deep.relight(rgb, T_relight, due=True)
            self._lit = True  # tried: a fit that failed is not tried again on every job
        step = self.deep.step(rgb, timestamp_s)
        T = step.T_current_target if step.ok else None
        inliers = step.correspondences
        return Detection(timestamp_s, T, inliers.uv_current_px,
                         self.deep.view.points_camera_goal_m[inliers.index_target], time.perf_counter() - t0,
                         step)

    def _use_detection(self, det: Detection) -> None:
        self.stats["detections"] += 1
        if self._established:
            if self._provisional:
                self._check_provisional(det)
            else:
                self._verify(det)
            return
        if det.timestamp_s < self._unlocked_since_s:
            return  # a frame from before an established track was lost: the camera has moved since
        if det.T_current_target is None:
            # the detector did not find the object either: hold still (a failed detection says nothing against the
            # previous pose, which the next one may still confirm)
            self._coarse = None
            self._failed = det.step.status if det.step is not None else StepStatus.TOO_FEW_MATCHES
            return
        confirmed = self._confirms(det)
        self._previous = det
        self._probing = False
        if not confirmed:  # hold still until a second measurement (detection or tracked cycle) agrees
            self._coarse, self.T_current_target = None, None
            self.stats["unconfirmed"] += 1
            if self._confirm_by_tracking:  # the next frame's tracked cycle from this pose may confirm it
                self.T_current_target, self._pose_time_s = det.T_current_target, det.timestamp_s
                self._probing = True
            return
        # acquire: tracking tries from the detection's pose (carried forward to each frame through the motion
        # commanded since), the detection's twist drives meanwhile
        self.T_current_target, self._pose_time_s = det.T_current_target, det.timestamp_s
        self._coarse = det
        if self.stats["acquisitions"] == 0:
            self.stats["acquisitions"] = 1

    def _record_agreement(self, agreed: bool) -> None:
        """A detection agreed (or not) with the established track at its frame; too many disagreements in the
        window make the target unreliable (``unreliable_disagreements``)."""
        self._disagreed.append(not agreed)
        n, c = sum(self._disagreed), self.config
        if c.unreliable_disagreements and n >= c.unreliable_disagreements and not self._unreliable:
            self._unreliable = (f"{n} of the last {len(self._disagreed)} detections checked against the track "
                                f"disagreed with it: no lock on this target is trusted (holding still)")
            self.stats["unreliable"] = 1

    def _confirms(self, det: Detection) -> bool:
        """Whether ``det``'s pose agrees with the previous detection's carried forward to its frame (always,
        with ``confirm_detections=1``)."""
        return self.config.confirm_detections <= 1 or self._detections_agree(self._previous, det)

    def _detections_agree(self, earlier: Optional[Detection], det: Detection) -> bool:
        """Two detections measured the same pose: ``earlier``'s carried forward to ``det``'s frame through the
        motion commanded since agrees with ``det``'s (False when either has none)."""
        if earlier is None or earlier.T_current_target is None or det.T_current_target is None:
            return False
        T_pred = inverse(self.motion(earlier.timestamp_s, det.timestamp_s)) @ earlier.T_current_target
        return self._agree(T_pred, det.T_current_target)

    def _agree(self, T_a: np.ndarray, T_b: np.ndarray) -> bool:
        """Two measurements of ``T_current_target`` for one frame are of the same pose (the confirm tolerances)."""
        return poses_agree(T_a, T_b, self.target.points_camera_goal_m, self.config.confirm_translation_ratio,
                           self.config.confirm_rotation_deg)

    def _check_provisional(self, det: Detection) -> None:
        """A track confirmed by a tracked cycle meets its first independent measurement: trusted from now on when
        ``det`` agrees with the tracked pose at ``det``'s frame, dropped otherwise (``det`` then waits for a second
        detection to confirm it, and tracked cycles no longer confirm anything)."""
        tracked_then = self._history.get(det.timestamp_s)
        if tracked_then is None or det.T_current_target is None:
            return  # computed on a frame from before the track, or no pose: the next detection decides
        agreed = self._agree(tracked_then, det.T_current_target)
        self._record_agreement(agreed)
        if agreed:
            self._provisional = self._unverified = False
            return
        self.stats["provisional_dropped"] += 1
        self._established = self._provisional = self._confirm_by_tracking = False
        self.T_current_target, self._coarse, self._previous = None, None, det
        self._recent_counts.clear()
        self._unlocked_since_s = det.timestamp_s

    def _verify(self, det: Detection) -> None:
        tracked_then = self._history.get(det.timestamp_s)
        if tracked_then is None or det.T_current_target is None or self.T_current_target is None:
            return
        gap = median_reprojection_px(tracked_then, det.points_target_m, det.uv_current_px, self.target.camera)
        disputed, self._disputed = self._disputed, None
        self._record_agreement(not gap > self.config.verify_px)
        if not gap > self.config.verify_px:
            self._unverified = False
            return  # the detection agrees with the track (and settles a dispute in its favour)
        if self.config.hold_on_dispute and not self._detections_agree(disputed, det):
            self._disputed = det  # one measurement against the track: not sure of the lock until the next one
            self.stats["disputes"] += 1
            return
        # carry the correction forward through the motion tracked since then
        self.T_current_target = self.T_current_target @ inverse(tracked_then) @ det.T_current_target
        self._unverified = False  # two detections agreed on this pose
        self.stats["corrections"] += 1

    # --- the per-frame path ---------------------------------------------------------------------------------
    def step(self, image: np.ndarray, timestamp_s: float = float("nan"), depth_m: np.ndarray | None = None,
             ) -> ServoStep:
        """One frame; ``depth_m`` (an RGB-D camera's, aligned to ``image``) serves a goal view of shading: every
        frame is then the per-frame servo's depth cycle (``detection.depth``; no network runs, so nothing runs in
        the background either)."""
        t0 = time.perf_counter()
        image = as_rgb_frame(image, self.target.render.camera)  # before the detector thread sees it
        if self.deep.unservable and depth_m is not None and self.deep.config.depth.enabled:
            self.stats["depth_cycles"] += 1
            return self.deep.step(image, timestamp_s, depth_m)
        det = self.detector.poll(timestamp_s) if not self._unreliable else None
        if det is not None:
            self._use_detection(det)
        if self._unreliable:  # for good (until reset or retarget): no more detections, zero twist
            held = replace(self._hold(StepStatus.UNRELIABLE, timestamp_s, {}), reason=self._unreliable)
            self._commands.append((timestamp_s, held.v_camera, 0.0))
            return held
        T_pred = self._predicted(timestamp_s)
        if not self.detector.busy:
            T_relight = None
            if T_pred is not None and self._established:
                if self._unlit(T_pred) and self.deep.goal_nearness(T_pred) <= self.config.relight_within:
                    T_relight = T_pred
            self.detector.submit(image, timestamp_s, T_relight)
        timings = {"detector_ms": (time.perf_counter() - t0) * 1e3}
        step = self._track(image, timestamp_s, timings, T_pred) if T_pred is not None else None
        if step is None:
            step = self._coarse_step(timestamp_s, timings)
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        if step.source is CorrespondenceSource.TRACKING:
            self._tracked_ms.append(timings["total_ms"])
        latency = self.config.command_latency_s
        self._commands.append((timestamp_s, step.v_camera, latency if latency is not None else
                               time.perf_counter() - t0))
        return step

    def _predicted(self, timestamp_s: float) -> Optional[np.ndarray]:
        """The tracked camera-from-target pose predicted for the frame at ``timestamp_s``: the last estimate
        carried through the motion commanded since (None with no estimate)."""
        if self.T_current_target is None:
            return None
        return inverse(self.motion(self._pose_time_s, timestamp_s)) @ self.T_current_target

    def _track(self, image: np.ndarray, timestamp_s: float, timings: dict[str, float],
               T_pred: Optional[np.ndarray] = None) -> Optional[ServoStep]:
        """One tracked cycle from ``T_pred``, the camera-from-target pose predicted for this frame (predicted
        here when not given); None when tracking does not lock (the caller falls back to the coarse phase)."""
        assert self.T_current_target is not None
        t1 = time.perf_counter()
        T_pred = self._predicted(timestamp_s) if T_pred is None else T_pred
        assert T_pred is not None
        target = self.target
        candidates = guided_candidates(Correspondences.empty(), np.arange(len(target.features)), target, T_pred)
        t2 = time.perf_counter()
        # one guided round: the search reaches search_max_shift_px, so a prediction a few pixels off is found
        # (refine.refine_guided's second round is for the detections' 3 px search)
        tracked, fit = refine_and_verify(candidates, image, None, target, self._pnp, self._search)
        t3 = time.perf_counter()
        timings.update(predict_ms=(t2 - t1) * 1e3, track_ms=(t3 - t2) * 1e3)
        lock = self.config.detection.lock
        if fit is None or fit.T_current_target is None or len(tracked) < self.config.min_inliers or implausible_pose(
                fit.T_current_target, target.points_camera_goal_m[tracked.index_target],
                target.Z_star_m[tracked.index_target], lock):
            self._probing = False
            self._recent_counts.clear()
            if self.config.coarse_from_prediction and self._coarse is not None and not self._established:
                return None  # keep the detection's pose: the next frame tries again from it, carried forward
            self.T_current_target = None
            if self._established:  # an established track lost: hold still until a fresh detection
                self._established, self._coarse, self._previous, self._provisional = False, None, None, False
                self._disputed, self._unverified = None, False
                self._unlocked_since_s = timestamp_s
                self.stats["losses"] += 1
                return self._hold(StepStatus.TOO_FEW_INLIERS, timestamp_s, timings, tracked)
            return None  # the acquisition did not lock: the coarse phase goes on
        if self._probing:  # this cycle is the second measurement of an unconfirmed detection's pose
            self._probing = False
            if not self._agree(T_pred, fit.T_current_target):
                self.T_current_target = None
                return self._hold(StepStatus.NOT_LOCKED, timestamp_s, timings, tracked)
            self.stats["confirmed_by_tracking"] += 1
            self._provisional = self.config.provisional_tracked_confirmation
            self._unverified, self._established_s = True, timestamp_s
            self.stats["acquisitions"] = max(self.stats["acquisitions"], 1)
        typical = np.median(self._recent_counts) if self._recent_counts else 0.0
        if len(tracked) < self.config.min_inlier_fraction * typical:  # part of the object hidden: not sure
            self.T_current_target, self._pose_time_s = T_pred, timestamp_s
            self.stats["unsure"] += 1
            return self._hold(StepStatus.TOO_FEW_INLIERS, timestamp_s, timings, tracked)
        self._recent_counts.append(len(tracked))
        T_fit, n_edges = fit.T_current_target, 0  # the pose the law and the stop rule see
        if self.deep.config.edges.enabled:  # near the goal, the outline with the aligned points (maybe feature_poor)
            t_edges = time.perf_counter()
            edge_fit = self.deep.fit_edges(image, target, tracked, T_fit, refined=True)
            if edge_fit is not None and edge_fit.usable(self.deep.config.edges):
                T_fit, n_edges = edge_fit.T_current_target, edge_fit.n_edges
                tracked = at_pose(tracked, target, T_fit)
            timings["edges_ms"] = (time.perf_counter() - t_edges) * 1e3
        if not self._established:
            self._established, self._coarse = True, None
            if self._ever_established:
                self.stats["reacquisitions"] += 1
            self._ever_established = True
        self.stats["tracked_cycles"] += 1
        # the aligned points' pose is the tracked state (the next frame's prediction, the detections' check): an
        # outline fit that pulls a little off is then not fed back into where the patches are searched
        self.T_current_target, self._pose_time_s = fit.T_current_target, timestamp_s
        self._history[timestamp_s] = fit.T_current_target
        if len(self._history) > 256:  # detections take well under 256 frames
            self._history.pop(next(iter(self._history)))
        if self._disputed is not None:  # tracking goes on measuring, the camera holds still
            return replace(self._hold(StepStatus.NOT_LOCKED, timestamp_s, timings, tracked),
                           reason="a detection disagrees with the tracked pose: holding still until the next decides")
        moved = self._unverified_moved_too_far(timestamp_s)
        if moved:
            self.stats["unverified_holds"] += 1
            return replace(self._hold(StepStatus.NOT_LOCKED, timestamp_s, timings, tracked), reason=moved)
        idx = tracked.index_target
        out = self.law(ControlInput(xy=target.camera.pixel_to_normalized(tracked.uv_current_px),
                                    xy_star=target.xy_star[idx], Z_star_m=target.Z_star_m[idx],
                                    points_target_m=target.points_camera_goal_m[idx],
                                    T_current_target=T_fit))
        why = implausible_twist(out.v_camera, lock)
        if why:
            step = self._hold(StepStatus.IMPLAUSIBLE, timestamp_s, timings, tracked)
            return replace(step, reason=why)
        mean_err = float(np.mean(np.linalg.norm(tracked.uv_current_px - tracked.uv_target_px, axis=1)))
        timings["control_ms"] = (time.perf_counter() - t3) * 1e3
        return ServoStep(v_camera=out.v_camera, status=StepStatus.OK, correspondences=tracked,
                         all_matches=candidates, mean_error_px=mean_err, tracking_mode=False, timings_ms=timings,
                         timestamp_s=timestamp_s, T_current_target=T_fit,
                         source=CorrespondenceSource.TRACKING, gain=out.gain,
                         condition_number=out.condition_number, n_edges=n_edges, pending=self._unlit(T_fit))

    def _unlit(self, T_current_target: np.ndarray) -> str:
        """Why a tracked pose ``T_current_target`` near the goal still owes a lighting fit
        (``relight_before_converging``), or ""."""
        relight = self.deep.config.relight
        if (not self.config.relight_before_converging or not relight.enabled
                or self.target.render.shading_basis is None or self._lit):
            return ""
        if self.deep.relight_fits > self._fits_at_reset and self.deep.relit_nearness <= self.config.relight_within:
            self._lit = True  # a detection near the goal relit it
            return ""
        if self.deep.goal_nearness(T_current_target) > 1.0:
            return ""
        return ("near the goal with the target not yet relit to the camera's lighting this near: the lighting is being "
                "fitted in the background")

    def _unverified_moved_too_far(self, timestamp_s: float) -> str:
        """Why an unverified track must hold still (it has moved the camera past ``unverified_motion_*`` since it
        was confirmed), or ""."""
        c = self.config
        if not self._unverified or not (c.unverified_motion_ratio > 0 or c.unverified_motion_deg > 0):
            return ""
        t_m, r_rad = pose_error(np.eye(4), self.motion(self._established_s, timestamp_s))
        r_deg = float(np.rad2deg(r_rad))
        limit_m = c.unverified_motion_ratio * float(np.median(self.target.Z_star_m))
        if (c.unverified_motion_ratio > 0 and t_m > limit_m) or (c.unverified_motion_deg > 0 and
                                                                  r_deg > c.unverified_motion_deg):
            return (f"the track confirmed by a tracked cycle has moved the camera {t_m * 1e3:.1f} mm / {r_deg:.1f} deg "
                    f"(limits {limit_m * 1e3:.1f} mm / {c.unverified_motion_deg:g} deg) with no detection agreeing "
                    f"yet: holding still until one does")
        return ""

    def _coarse_step(self, timestamp_s: float, timings: dict[str, float]) -> ServoStep:
        """The latest detection's step, its twist held until the next detection; zero twist without one."""
        coarse = self._coarse.step if self._coarse is not None else None
        if coarse is None or not coarse.ok:
            failed, self._failed = self._failed, None  # one failed measurement per failed detection
            why = (f"the last detection found no pose ({failed.value})" if failed else
                   "no detection confirmed by a second measurement yet: holding still")
            return replace(self._hold(failed or StepStatus.NOT_LOCKED, timestamp_s, timings), reason=why)
        self.stats["coarse_cycles"] += 1
        det = self._coarse
        if self.config.coarse_from_prediction and det is not None and det.T_current_target is not None:
            return self._predicted_step(det.T_current_target, det.timestamp_s, coarse, timestamp_s, timings)
        return ServoStep(v_camera=coarse.v_camera, status=StepStatus.OK, correspondences=coarse.correspondences,
                         all_matches=coarse.all_matches, mean_error_px=coarse.mean_error_px, tracking_mode=False,
                         timings_ms=timings, timestamp_s=timestamp_s, T_current_target=self.T_current_target,
                         source=CorrespondenceSource.DETECTION, gain=coarse.gain,
                         condition_number=coarse.condition_number)

    def _predicted_step(self, T_detected: np.ndarray, detected_at_s: float, detection: ServoStep, timestamp_s: float,
                        timings: dict[str, float]) -> ServoStep:
        """The coarse phase's law on a detection's pose (``T_detected``, of the frame taken at ``detected_at_s``,
        its step ``detection``) carried forward to this frame through the motion commanded since: every target point
        projected with that pose is the current feature. The step's ``mean_error_px`` is the detection's measured
        error on the first frame after it arrived and NaN (no new measurement) on the others, so the stop rule
        counts each detection once (:mod:`dfbvs.stop`: the frames between continue a converged run on the pose
        estimate, ``stop.converged_min_measured`` detections within end it): a part that tracking never locks (the
        sheet's 5-8 alignable keypoints) ends converged."""
        T_pred = inverse(self.motion(detected_at_s, timestamp_s)) @ T_detected
        target = self.target
        points_now_m = transform_points(T_pred, target.points_camera_goal_m)
        if np.any(points_now_m[:, 2] <= 0):  # the prediction put the object behind the camera: not a pose to drive on
            return replace(self._hold(StepStatus.IMPLAUSIBLE, timestamp_s, timings),
                           reason="the predicted pose puts target points behind the camera")
        xy = points_now_m[:, :2] / points_now_m[:, 2:3]
        out = self.law(ControlInput(xy=xy, xy_star=target.xy_star, Z_star_m=target.Z_star_m,
                                    points_target_m=target.points_camera_goal_m, T_current_target=T_pred))
        why = implausible_twist(out.v_camera, self.config.detection.lock)
        if why:
            return replace(self._hold(StepStatus.IMPLAUSIBLE, timestamp_s, timings), reason=why)
        fresh = detected_at_s != self._reported_detection_s
        self._reported_detection_s = detected_at_s
        return ServoStep(v_camera=out.v_camera, status=StepStatus.OK, correspondences=detection.correspondences,
                         all_matches=Correspondences.empty(),
                         mean_error_px=detection.mean_error_px if fresh else float("nan"), tracking_mode=False,
                         timings_ms=timings, timestamp_s=timestamp_s, T_current_target=T_pred,
                         source=CorrespondenceSource.DETECTION, gain=out.gain, condition_number=out.condition_number)

    def _hold(self, status: StepStatus, timestamp_s: float, timings: dict[str, float],
              tracked: Correspondences | None = None) -> ServoStep:
        empty = Correspondences.empty()
        return ServoStep(v_camera=np.zeros(6), status=status, correspondences=tracked or empty, all_matches=empty,
                         mean_error_px=float("nan"), tracking_mode=False, timings_ms=timings,
                         timestamp_s=timestamp_s, source=CorrespondenceSource.NONE)

    def summary(self) -> dict[str, Any]:
        """Counters for the run's summary (detections used, acquisitions, re-acquisitions, corrections, ...)
        and the compute time of the tracked cycles alone (median, p95; ms)."""
        ms = self._tracked_ms
        return dict(self.stats, detections_submitted=self.detector.submitted, relight_fits=self.deep.relight_fits,
                    tracked_cycle_ms_median=float(np.median(ms)) if ms else None,
                    tracked_cycle_ms_p95=float(np.percentile(ms, 95)) if ms else None)

    def close(self) -> None:
        self.detector.close()
