"""The DFBVS loop: a prepared target and a stream of images in, one camera twist per image out.

It never drives a robot itself, so the same loop runs in simulation, in replay and on hardware.

Per cycle (paper, Sections III-IV): extract features on the current image (resized to the working
resolution), match them to the target's by descriptor, reject false matches, build ``e = s - s*`` over the
inliers in normalized coordinates and ``L* = L(s*, Z*)`` from the target features and the rendered depth, and
return ``v_camera = -lambda pinv(L*) e``. Near the goal the *tracking mode* (Section IV-D) matches only
against the target features that were inliers in the previous cycle, so the set of 3D points stops switching.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from .camera import Camera
from .control import ControlConfig, GainConfig, ibvs_control
from .estimation import PnPConfig, get_rejector, reject_pnp, target_points_m
from .features import Features, get_extractor
from .matching import Correspondences, RefineConfig, RefinementTarget, get_matcher, refine_subpixel
from .render.target import TargetRender


class StepStatus(str, enum.Enum):
    """Outcome of one cycle. Anything but OK returns a zero twist."""

    OK = "ok"
    TOO_FEW_MATCHES = "too_few_matches"
    TOO_FEW_INLIERS = "too_few_inliers"


class EpisodeStatus(str, enum.Enum):
    RUNNING = "running"
    CONVERGED = "converged"
    DIVERGED = "diverged"
    LOST = "lost"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class StopConfig:
    """When an episode ends (units in the names)."""

    converged_px: float = 0.2  # mean correspondence error (working px) below this ...
    converged_cycles: int = 5  # ... held for this many consecutive cycles
    converged_twist_m_s: float = 0.0  # alternatively |v_lin| below this (0 disables) ...
    converged_twist_rad_s: float = 0.0  # ... and |w| below this, for converged_cycles cycles
    lost_cycles: int = 10  # consecutive cycles with no usable inliers
    # diverged: the mean error averaged over the last diverged_cycles usable cycles is above diverged_factor
    # times the best error seen so far and above diverged_min_px (averaging catches the oscillating
    # divergence of a too-high gain, which never stays above the bound for many cycles in a row)
    diverged_factor: float = 2.0
    diverged_min_px: float = 20.0
    diverged_cycles: int = 10
    max_iterations: int = 300


@dataclass(frozen=True)
class ServoConfig:
    """Everything the loop needs besides the target and the images."""

    working_width_px: int = 320
    working_height_px: int = 240
    features: str = "aliked"
    max_keypoints: int = 500
    keypointnet_checkpoint: str | None = None  # path of a KP2D checkpoint, for features="keypointnet"
    matcher: str = "mnn"  # mutual nearest neighbour (the paper), ratio, lightglue
    rejection: str = "pnp"  # pnp (with the target's 3D points), fundamental, homography, none
    rejection_threshold_px: float = 2.0
    control: ControlConfig = field(default_factory=lambda: ControlConfig(
        gain=GainConfig(gain_at_zero=1.0, gain_at_infinity=0.5, slope_at_zero=20.0),
        max_linear_m_s=0.05, max_angular_rad_s=0.3))
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    min_inliers: int = 6
    refine: bool = True  # sub-pixel refinement of the inliers (beyond the paper; see matching.RefineConfig)
    refine_config: RefineConfig = field(default_factory=RefineConfig)
    refined_threshold_px: float = 0.5  # PnP inlier threshold (working px) applied again to the refined points
    # Refine on the camera's own image (the target render's resolution) rather than the working-resolution
    # one: features are found and matched at 320x240, but measured where the sensor has more pixels.
    refine_at_native_resolution: bool = True
    # Guided refinement: once PnP has the current pose, every target keypoint (not only the descriptor
    # matches) is predicted into the current image and refined there; a classic guided-matching step that
    # brings several times more sub-pixel correspondences (index_current = -1 for those without a match).
    guided_refinement: bool = True

    def __post_init__(self) -> None:
        if self.working_width_px <= 0 or self.working_height_px <= 0:
            raise ValueError(f"working resolution must be positive, got "
                             f"{self.working_width_px}x{self.working_height_px}")
        if self.min_inliers < 4:
            raise ValueError(f"min_inliers must be >= 4 (3 points give 6 equations, 4 for robustness), "
                             f"got {self.min_inliers}")


@dataclass(frozen=True)
class PreparedTarget:
    """A rendered target with its features and the depth ``Z*`` (m) of each kept keypoint.

    ``features`` holds only target keypoints with valid depth; ``Z_star_m`` (N,) and ``xy_star`` (N, 2,
    normalized) align with them; ``points_camera_goal_m`` (N, 3) are their 3D points in the goal camera frame.
    ``refinement`` holds what sub-pixel refinement needs (None when it is off), at the resolution of
    ``refine_camera`` (the render's own camera, or the working one).
    """

    render: TargetRender
    camera: Camera
    features: Features
    Z_star_m: np.ndarray
    xy_star: np.ndarray
    points_camera_goal_m: np.ndarray
    refinement: RefinementTarget | None = None
    refine_camera: Camera | None = None


def resize_image(image: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """Area-resample an image to the working resolution (no-op when it already has that size)."""
    if image.shape[1] == width_px and image.shape[0] == height_px:
        return image
    import cv2

    return cv2.resize(image, (width_px, height_px), interpolation=cv2.INTER_AREA)


def make_extractor(config: ServoConfig):
    """The feature extractor a servo config names (loads its network once)."""
    options = {"max_keypoints": config.max_keypoints}
    if config.features == "keypointnet":
        options["checkpoint_path"] = config.keypointnet_checkpoint
    return get_extractor(config.features, **options)


def _resize_nearest(array: np.ndarray, camera: Camera) -> np.ndarray:
    """A depth map or mask at ``camera``'s size, nearest neighbour: never blend object and background."""
    if array.shape[:2] == (camera.height_px, camera.width_px):
        return array
    import cv2

    size = (camera.width_px, camera.height_px)
    if array.dtype == bool:
        return cv2.resize(array.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(array.astype(np.float32), size, interpolation=cv2.INTER_NEAREST)


def prepare_target(render: TargetRender, config: ServoConfig, extractor) -> PreparedTarget:
    """Extract target features at the working resolution and keep those with valid rendered depth."""
    camera = render.camera.rescaled(config.working_width_px, config.working_height_px)
    rgb = resize_image(render.rgb, camera.width_px, camera.height_px)
    feats = extractor(rgb)
    points = target_points_m(feats.keypoints_px, _resize_nearest(render.depth_m, camera), camera)  # Z*, nearest
    keep = np.flatnonzero(np.all(np.isfinite(points), axis=1))
    feats, points = feats.subset(keep), points[keep]
    xy = camera.pixel_to_normalized(feats.keypoints_px) if len(feats) else np.zeros((0, 2))
    refinement = refine_camera = None
    if config.refine:
        if config.refine_at_native_resolution:
            refine_camera = render.camera
            refinement = RefinementTarget.from_render(render.rgb, render.mask, config.refine_config)
        else:
            refine_camera = camera
            refinement = RefinementTarget.from_render(rgb, _resize_nearest(render.mask, camera), config.refine_config)
    return PreparedTarget(render=render, camera=camera, features=feats, Z_star_m=points[:, 2], xy_star=xy,
                          points_camera_goal_m=points, refinement=refinement, refine_camera=refine_camera)


@dataclass(frozen=True)
class ServoStep:
    """The result of one cycle.

    ``v_camera`` (6,) camera body twist (m/s, rad/s; zero unless status is OK); ``correspondences`` are the
    inliers used by the law (current/target pixels at the working resolution); ``all_matches`` before
    rejection; ``mean_error_px`` the mean inlier correspondence distance (NaN when none); ``timings_ms``
    per stage.
    """

    v_camera: np.ndarray
    status: StepStatus
    correspondences: Correspondences
    all_matches: Correspondences
    mean_error_px: float
    tracking: bool
    timings_ms: dict[str, float]

    @property
    def n_inliers(self) -> int:
        return len(self.correspondences)


class DFBVSServo:
    """Stateful DFBVS controller: ``step(image)`` returns a :class:`ServoStep` per camera image.

    The image must come from the target's camera model (same intrinsics up to a change of resolution);
    it is resized to the working resolution.
    """

    def __init__(self, target: PreparedTarget, config: ServoConfig, extractor, matcher=None):
        self.target = target
        self.config = config
        self.extractor = extractor
        self.matcher = matcher or get_matcher(config.matcher)
        self._pnp_config = PnPConfig(threshold_px=config.rejection_threshold_px)
        self.rejector = None
        if config.rejection != "pnp":
            self.rejector = get_rejector(config.rejection, **(
                {} if config.rejection == "none" else {"threshold_px": config.rejection_threshold_px}))
        self._tracked_target_idx: np.ndarray | None = None  # target indices kept in tracking mode
        self._last_error_px = np.inf
        self._rising = 0

    @classmethod
    def from_render(cls, render: TargetRender, config: ServoConfig = ServoConfig()) -> "DFBVSServo":
        """Load the extractor and matcher once, prepare the target, return a ready servo."""
        extractor = make_extractor(config)
        return cls(prepare_target(render, config, extractor), config, extractor)

    def retarget(self, render: TargetRender) -> None:
        """Serve a new target with the already loaded networks."""
        self.target = prepare_target(render, self.config, self.extractor)
        self.reset()

    @property
    def tracking(self) -> bool:
        return self._tracked_target_idx is not None

    def reset(self) -> None:
        self._tracked_target_idx = None
        self._last_error_px = np.inf
        self._rising = 0

    def _leave_tracking(self) -> None:
        self._tracked_target_idx = None
        self._rising = 0

    def step(self, image: np.ndarray) -> ServoStep:
        cfg, target = self.config, self.target
        t0 = time.perf_counter()
        rgb = resize_image(np.asarray(image), cfg.working_width_px, cfg.working_height_px)
        feats = self.extractor(rgb)
        t1 = time.perf_counter()

        tracking = self.tracking
        target_feats = target.features
        if tracking:
            target_feats = target.features.subset(self._tracked_target_idx)
        matches = self.matcher(feats, target_feats)
        if tracking:  # back to indices of the full target feature set
            matches = Correspondences(matches.uv_current_px, matches.uv_target_px, matches.index_current,
                                      self._tracked_target_idx[matches.index_target], matches.scores)
        t2 = time.perf_counter()

        timings = {"extract_ms": (t1 - t0) * 1e3, "match_ms": (t2 - t1) * 1e3}
        if len(matches) < cfg.min_inliers:
            return self._failed(StepStatus.TOO_FEW_MATCHES, Correspondences.empty(), matches, tracking, timings, t0)

        if self.rejector is None:  # PnP with the target's 3D points from the rendered depth
            rejection = reject_pnp(matches, target.points_camera_goal_m[matches.index_target], target.camera,
                                   self._pnp_config)
        else:
            rejection = self.rejector(matches)
        inliers = matches.subset(np.flatnonzero(rejection.inlier_mask))
        t3 = time.perf_counter()
        timings["reject_ms"] = (t3 - t2) * 1e3
        if target.refinement is not None:
            inliers = self._refine(inliers, image, rgb, getattr(rejection, "T_current_target", None))
            t4 = time.perf_counter()
            timings["refine_ms"] = (t4 - t3) * 1e3
            t3 = t4
        if len(inliers) < cfg.min_inliers:
            return self._failed(StepStatus.TOO_FEW_INLIERS, inliers, matches, tracking, timings, t0)

        idx_t = inliers.index_target
        out = ibvs_control(target.camera.pixel_to_normalized(inliers.uv_current_px), target.xy_star[idx_t],
                           target.Z_star_m[idx_t], cfg.control)
        mean_err = float(np.mean(np.linalg.norm(inliers.uv_current_px - inliers.uv_target_px, axis=1)))
        timings["control_ms"] = (time.perf_counter() - t3) * 1e3
        self._update_tracking(mean_err, idx_t)
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        return ServoStep(v_camera=out.v_camera, status=StepStatus.OK, correspondences=inliers, all_matches=matches,
                         mean_error_px=mean_err, tracking=tracking, timings_ms=timings)

    def _guided(self, inliers: Correspondences, T_current_target: np.ndarray) -> Correspondences:
        """The inliers plus every other target keypoint (the tracked ones in tracking mode) at the position
        the PnP pose predicts in the current image (working px), to be refined like the matches."""
        target = self.target
        candidates = self._tracked_target_idx if self.tracking else np.arange(len(target.features))
        extra = np.setdiff1d(candidates, inliers.index_target)
        if len(extra) == 0:
            return inliers
        p = target.points_camera_goal_m[extra] @ T_current_target[:3, :3].T + T_current_target[:3, 3]
        front = p[:, 2] > 0
        extra, p = extra[front], p[front]
        uv = target.camera.project(p)
        inside = target.camera.in_image(uv, margin_px=0.5)  # pixel centres 0 .. width - 1
        extra, uv = extra[inside], uv[inside]
        guided = Correspondences(uv, target.features.keypoints_px[extra], np.full(len(extra), -1, np.int64),
                                 extra, np.zeros(len(extra)))
        return Correspondences.concatenate([inliers, guided])

    def _refine(self, inliers: Correspondences, image: np.ndarray, rgb: np.ndarray,
                T_current_target: np.ndarray | None) -> Correspondences:
        """Guided candidates (with a PnP pose), sub-pixel refinement at ``target.refine_camera``'s resolution
        and a PnP re-check of the refined points at ``refined_threshold_px``; returned in working-resolution
        pixels. When fewer than ``min_inliers`` pass, the unrefined descriptor inliers are returned."""
        cfg, target = self.config, self.target
        if len(inliers) < cfg.min_inliers:
            return inliers
        candidates = inliers
        if cfg.guided_refinement and T_current_target is not None:
            candidates = self._guided(inliers, T_current_target)
        work, fine = target.camera, target.refine_camera
        native = (fine.width_px, fine.height_px) != (work.width_px, work.height_px)
        image = resize_image(np.asarray(image), fine.width_px, fine.height_px) if native else rgb
        if native:
            candidates = replace(candidates, uv_current_px=fine.pixels_from(work, candidates.uv_current_px),
                                 uv_target_px=fine.pixels_from(work, candidates.uv_target_px))
        refined = refine_subpixel(candidates, image, target.refinement)
        if len(refined) < cfg.min_inliers:
            return inliers
        again = reject_pnp(refined, target.points_camera_goal_m[refined.index_target], fine,  # one rigid motion
                           replace(self._pnp_config, threshold_px=cfg.refined_threshold_px * fine.width_px / work.width_px))
        refined = refined.subset(np.flatnonzero(again.inlier_mask))
        if len(refined) < cfg.min_inliers:
            return inliers
        if native:
            refined = replace(refined, uv_current_px=work.pixels_from(fine, refined.uv_current_px),
                              uv_target_px=work.pixels_from(fine, refined.uv_target_px))
        return refined

    def _failed(self, status, inliers, matches, tracking, timings, t0) -> ServoStep:
        if self.tracking:  # the tracked set no longer works: match against the full target again
            self._leave_tracking()
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        return ServoStep(v_camera=np.zeros(6), status=status, correspondences=inliers, all_matches=matches,
                         mean_error_px=float("nan"), tracking=tracking, timings_ms=timings)

    def _update_tracking(self, mean_err_px: float, inlier_target_idx: np.ndarray) -> None:
        tc = self.config.tracking
        self._rising = self._rising + 1 if mean_err_px > self._last_error_px else 0
        self._last_error_px = mean_err_px
        if not tc.enabled:
            return
        if self.tracking:
            if len(inlier_target_idx) < tc.min_inliers or self._rising >= tc.max_rising_cycles:
                self._leave_tracking()
                return
            if tc.mode is TrackingMode.PREVIOUS:
                self._tracked_target_idx = np.unique(inlier_target_idx)
        elif mean_err_px < tc.enter_px and len(inlier_target_idx) >= tc.min_inliers:
            self._tracked_target_idx = np.unique(inlier_target_idx)
            self._rising = 0


class StopMonitor:
    """Decides when a servo run ends, from the stream of :class:`ServoStep` results.

    Losing the object while the recent errors are past the divergence bound counts as DIVERGED (the loop
    drove the object out of view), not LOST."""

    def __init__(self, config: StopConfig = StopConfig()):
        self.config = config
        self.iterations = 0
        self._recent_errors_px: deque[float] = deque(maxlen=config.diverged_cycles)
        self._below = 0
        self._slow = 0
        self._lost = 0
        self.best_error_px = np.inf

    def update(self, step: ServoStep) -> EpisodeStatus:
        c = self.config
        self.iterations += 1
        if step.status is not StepStatus.OK:
            self._lost += 1
            self._below = 0
            if self._lost >= c.lost_cycles:
                return EpisodeStatus.DIVERGED if self._diverging() else EpisodeStatus.LOST
        else:
            self._lost = 0
            err = step.mean_error_px  # NaN for methods without correspondences (photometric)
            self.best_error_px = min(self.best_error_px, err) if np.isfinite(err) else self.best_error_px
            self._below = self._below + 1 if err < c.converged_px else 0
            slow = (c.converged_twist_m_s > 0 and np.linalg.norm(step.v_camera[:3]) < c.converged_twist_m_s
                    and np.linalg.norm(step.v_camera[3:]) < c.converged_twist_rad_s)
            self._slow = self._slow + 1 if slow else 0
            if self._below >= c.converged_cycles or self._slow >= c.converged_cycles:
                return EpisodeStatus.CONVERGED
            if np.isfinite(err):
                self._recent_errors_px.append(err)
            if len(self._recent_errors_px) >= c.diverged_cycles and self._diverging():
                return EpisodeStatus.DIVERGED
        if self.iterations >= c.max_iterations:
            return EpisodeStatus.TIMEOUT
        return EpisodeStatus.RUNNING

    def _diverging(self) -> bool:
        """The recent mean error is beyond the bound (``diverged_factor`` x best and ``diverged_min_px``)."""
        c = self.config
        if not self._recent_errors_px:
            return False
        return bool(np.mean(self._recent_errors_px) > max(c.diverged_factor * self.best_error_px, c.diverged_min_px))


# --- the whole-image baseline: photometric visual servoing (Collewet & Marchand 2011) ------------------------


@dataclass(frozen=True)
class PhotometricConfig:
    """Photometric (luminance) servoing on a downsampled, blurred grey image; ``L*`` from the target's
    gradients and rendered depth (background pixels get the median object depth)."""

    working_width_px: int = 160
    working_height_px: int = 120
    blur_sigma_px: float = 1.0
    gain: float = 3.0  # 1/s; measured: 1.0 had not converged after 300 cycles from 2 cm / 3 deg, 3.0 did in 202
    lm_mu: float = 0.01
    max_linear_m_s: float = 0.05
    max_angular_rad_s: float = 0.3


def _grey_float(image: np.ndarray, width_px: int, height_px: int, blur_sigma_px: float) -> np.ndarray:
    import cv2

    img = resize_image(np.asarray(image), width_px, height_px)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    grey = grey.astype(np.float64) / 255.0
    return cv2.GaussianBlur(grey, (0, 0), blur_sigma_px) if blur_sigma_px > 0 else grey


class PhotometricServo:
    """Whole-image baseline the paper argues against: the feature is every pixel's intensity.

    ``step(image)`` returns a :class:`ServoStep` with no correspondences and ``mean_error_px`` NaN (the
    method has no feature positions); stop it on twist magnitude (:class:`StopConfig`).
    """

    def __init__(self, render: TargetRender, config: PhotometricConfig = PhotometricConfig()):
        import cv2

        from .control import photometric_interaction_matrix

        self.config = config
        self.camera = render.camera.rescaled(config.working_width_px, config.working_height_px)
        self.I_star = _grey_float(render.rgb, config.working_width_px, config.working_height_px,
                                  config.blur_sigma_px)
        Z = cv2.resize(render.depth_m.astype(np.float32), (config.working_width_px, config.working_height_px),
                       interpolation=cv2.INTER_NEAREST).astype(np.float64)
        valid = np.isfinite(Z) & (Z > 0)
        if not valid.any():
            raise ValueError("photometric servoing: the target render shows no object (empty depth)")
        Z[~valid] = np.median(Z[valid])
        grad_u = cv2.Sobel(self.I_star, cv2.CV_64F, 1, 0, ksize=3) / 8.0
        grad_v = cv2.Sobel(self.I_star, cv2.CV_64F, 0, 1, ksize=3) / 8.0
        self.L_star = photometric_interaction_matrix(self.camera, grad_u, grad_v, Z)

    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def step(self, image: np.ndarray) -> ServoStep:
        from .control import photometric_control

        c = self.config
        t0 = time.perf_counter()
        I = _grey_float(image, c.working_width_px, c.working_height_px, c.blur_sigma_px)
        e = (I - self.I_star).ravel()
        v = photometric_control(self.L_star, e, c.gain, c.lm_mu, c.max_linear_m_s, c.max_angular_rad_s)
        total = (time.perf_counter() - t0) * 1e3
        empty = Correspondences.empty()
        return ServoStep(v_camera=v, status=StepStatus.OK, correspondences=empty, all_matches=empty,
                         mean_error_px=float("nan"), tracking=False,
                         timings_ms={"control_ms": total, "total_ms": total})
