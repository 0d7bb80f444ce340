"""One DFBVS cycle: an image in, a :class:`ServoStep` out. It never drives anything itself, so the same
servo runs in simulation, in replay and on hardware (:mod:`dfbvs.runtime` runs the loop).

Per cycle (paper, Sections III-IV), each stage in its own module:
extract (:mod:`.features`, at the working resolution) -> match (:mod:`.matching`; only the tracked target
features in tracking mode, :mod:`.tracking_mode`) -> reject (:mod:`.estimation`, PnP with the rendered depth
gives ``T_current_target``) -> refine (:mod:`.refine`, guided and sub-pixel) -> control (:mod:`.control`,
``v_camera = -lambda pinv(L*) e`` by default). Every backend is chosen by the type of its config in
:class:`ServoConfig` through its registry.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import numpy as np

from .control import CONTROL_LAWS, ControlInput, GainConfig, IBVSConfig, InteractionChoice, build_control_law
from .errors import ConfigError
from .estimation import REJECTORS, PnPConfig, TargetGeometry, build_rejector
from .features import EXTRACTORS, Extractor, FeatureConfig, build_extractor
from .features.aliked import AlikedConfig
from .imaging import resize_area
from .matching import MATCHERS, Correspondences, MutualNNConfig, build_matcher
from .refine import RefineConfig, refine_correspondences
from .registry import Registry
from .render.target import TargetRender
from .target import PreparedTarget, prepare_target
from .tracking_mode import TrackingConfig, TrackingModeState


class StepStatus(str, enum.Enum):
    """Outcome of one cycle. Anything but OK returns a zero twist."""

    OK = "ok"
    TOO_FEW_MATCHES = "too_few_matches"
    TOO_FEW_INLIERS = "too_few_inliers"
    NOT_LOCKED = "not_locked"  # no pose yet (waiting for a detection): hold still


class CorrespondenceSource(str, enum.Enum):
    """Where a step's correspondences came from."""

    DETECTION = "detection"  # the deep network ran on this frame and its features were matched
    TRACKING = "tracking"  # predicted from the previous pose and re-measured without the network
    NONE = "none"  # no correspondences (a failed cycle, or a whole-image method)


def _registry_field(registry: Registry, default_factory) -> object:
    """A config field whose value is a backend config of ``registry`` (``--set path=NAME`` swaps backend)."""
    return field(default_factory=default_factory, metadata={"registry": registry})


def _default_control() -> IBVSConfig:
    return IBVSConfig(gain=GainConfig(gain_at_zero=1.0, gain_at_infinity=0.5, slope_at_zero=20.0),
                      max_linear_m_s=0.05, max_angular_rad_s=0.3)


@dataclass(frozen=True)
class ServoConfig:
    """Everything the DFBVS cycle needs besides the target and the images. Backends are nested configs
    whose type names the backend (``features: AlikedConfig`` is ALIKED)."""

    working_width_px: int = 320
    working_height_px: int = 240
    features: FeatureConfig = _registry_field(EXTRACTORS, AlikedConfig)  # type: ignore[assignment]
    matcher: object = _registry_field(MATCHERS, MutualNNConfig)  # mutual nearest neighbour (the paper)
    rejection: object = _registry_field(REJECTORS, lambda: PnPConfig(threshold_px=2.0))  # PnP with Z*
    control: object = _registry_field(CONTROL_LAWS, _default_control)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)  # beyond the paper: see dfbvs.refine
    min_inliers: int = 6

    def __post_init__(self) -> None:
        if self.working_width_px <= 0 or self.working_height_px <= 0:
            raise ConfigError(f"working resolution must be positive, got "
                              f"{self.working_width_px}x{self.working_height_px}")
        if self.min_inliers < 4:
            raise ConfigError(f"min_inliers must be >= 4 (3 points give 6 equations, 4 for robustness), "
                              f"got {self.min_inliers}")
        for name, registry in (("features", EXTRACTORS), ("matcher", MATCHERS), ("rejection", REJECTORS),
                               ("control", CONTROL_LAWS)):
            registry.name_of(getattr(self, name))  # a ConfigError naming the type when nothing builds it
        interaction = getattr(self.control, "interaction", InteractionChoice.DESIRED)
        if interaction is not InteractionChoice.DESIRED and not isinstance(self.rejection, PnPConfig):
            raise ConfigError(f"control interaction {interaction.value!r} needs the current depths from the PnP "
                              f"pose; rejection is {REJECTORS.name_of(self.rejection)!r}: use rejection=pnp")


@dataclass(frozen=True)
class ServoStep:
    """The result of one cycle.

    - ``v_camera`` (6,): camera body twist (m/s, rad/s); zero unless ``status`` is OK.
    - ``correspondences``: the inliers used by the law (current/target pixels at the working resolution);
      ``all_matches`` before rejection; ``source`` where they came from.
    - ``mean_error_px``: mean inlier correspondence distance (working px; NaN when none).
    - ``timestamp_s``: the frame's timestamp (the frame source's clock; NaN when not given).
    - ``T_current_target`` (4x4): the goal camera's pose in the current camera frame from PnP
      (``p_current = T_current_target @ p_goal``; fitted to the refined points when refinement ran), or
      None when no pose was estimated.
    - ``gain`` (1/s) and ``condition_number`` of the inverted interaction matrix (NaN without control).
    - ``tracking_mode``: the paper's tracking mode restricted the matches; ``timings_ms`` per stage.
    """

    v_camera: np.ndarray
    status: StepStatus
    correspondences: Correspondences
    all_matches: Correspondences
    mean_error_px: float
    tracking_mode: bool
    timings_ms: dict[str, float]
    timestamp_s: float = float("nan")
    T_current_target: np.ndarray | None = None
    source: CorrespondenceSource = CorrespondenceSource.DETECTION
    gain: float = float("nan")
    condition_number: float = float("nan")

    @property
    def n_inliers(self) -> int:
        return len(self.correspondences)

    @property
    def ok(self) -> bool:
        return self.status is StepStatus.OK


class DFBVSServo:
    """Stateful DFBVS controller: ``step(image, timestamp_s)`` returns a :class:`ServoStep` per camera image.

    The image must come from the target's camera model (same intrinsics up to a change of resolution);
    it is resized to the working resolution.
    """

    def __init__(self, target: PreparedTarget, config: ServoConfig, extractor: Extractor, matcher=None):
        self.config = config
        self.extractor = extractor
        self.matcher = matcher or build_matcher(config.matcher)
        self.rejector = build_rejector(config.rejection)
        self.law = build_control_law(config.control)
        self._serve(target)
        self._recheck_pnp = config.rejection if isinstance(config.rejection, PnPConfig) else PnPConfig()
        self._tracking = TrackingModeState(config.tracking)

    @classmethod
    def from_render(cls, render: TargetRender, config: ServoConfig = ServoConfig()) -> DFBVSServo:
        """Load the extractor and matcher once, prepare the target, return a ready servo."""
        extractor = build_extractor(config.features)
        return cls(cls._prepare(render, config, extractor), config, extractor)

    @staticmethod
    def _prepare(render: TargetRender, config: ServoConfig, extractor: Extractor) -> PreparedTarget:
        return prepare_target(render, extractor, config.working_width_px, config.working_height_px, config.refine)

    def _serve(self, target: PreparedTarget) -> None:
        self.target = target
        self._geometry = TargetGeometry(None, target.camera, points_by_target_index_m=target.points_camera_goal_m)

    def retarget(self, render: TargetRender) -> None:
        """Serve a new target with the already loaded networks."""
        self._serve(self._prepare(render, self.config, self.extractor))
        self.reset()

    @property
    def tracking_mode(self) -> bool:
        return self._tracking.active

    def reset(self) -> None:
        self._tracking.reset()

    def step(self, image: np.ndarray, timestamp_s: float = float("nan")) -> ServoStep:
        cfg, target = self.config, self.target
        t0 = time.perf_counter()
        rgb = resize_area(np.asarray(image), cfg.working_width_px, cfg.working_height_px)
        feats = self.extractor(rgb)
        t1 = time.perf_counter()

        tracking = self._tracking.active
        tracked_idx = self._tracking.target_idx
        target_feats = target.features if tracked_idx is None else target.features.subset(tracked_idx)
        matches = self.matcher(feats, target_feats)
        if tracked_idx is not None:  # back to indices of the full target feature set
            matches = Correspondences(matches.uv_current_px, matches.uv_target_px, matches.index_current,
                                      tracked_idx[matches.index_target], matches.scores)
        t2 = time.perf_counter()

        timings = {"extract_ms": (t1 - t0) * 1e3, "match_ms": (t2 - t1) * 1e3}

        def failed(status: StepStatus, inliers: Correspondences, T: np.ndarray | None = None) -> ServoStep:
            if self._tracking.active:  # the tracked set no longer works: match the full target again
                self._tracking.leave()
            timings["total_ms"] = (time.perf_counter() - t0) * 1e3
            return ServoStep(v_camera=np.zeros(6), status=status, correspondences=inliers, all_matches=matches,
                             mean_error_px=float("nan"), tracking_mode=tracking, timings_ms=timings,
                             timestamp_s=timestamp_s, T_current_target=T, source=CorrespondenceSource.NONE)

        if len(matches) < cfg.min_inliers:
            return failed(StepStatus.TOO_FEW_MATCHES, Correspondences.empty())

        rejection = self.rejector(matches, self._geometry)
        inliers = matches.subset(np.flatnonzero(rejection.inlier_mask))
        T_current_target = getattr(rejection, "T_current_target", None)
        t3 = time.perf_counter()
        timings["reject_ms"] = (t3 - t2) * 1e3
        if target.refinement is not None:
            candidates = tracked_idx if tracked_idx is not None else np.arange(len(target.features))
            inliers, T_refined = refine_correspondences(inliers, image, rgb, target, T_current_target, candidates,
                                                        self._recheck_pnp, cfg.min_inliers)
            if T_refined is not None:  # the pose that the refined points agree on: the more accurate one
                T_current_target = T_refined
            t4 = time.perf_counter()
            timings["refine_ms"] = (t4 - t3) * 1e3
            t3 = t4
        if len(inliers) < cfg.min_inliers:
            return failed(StepStatus.TOO_FEW_INLIERS, inliers, T_current_target)

        idx_t = inliers.index_target
        out = self.law(ControlInput(xy=target.camera.pixel_to_normalized(inliers.uv_current_px),
                                    xy_star=target.xy_star[idx_t], Z_star_m=target.Z_star_m[idx_t],
                                    points_target_m=target.points_camera_goal_m[idx_t],
                                    T_current_target=T_current_target))
        mean_err = float(np.mean(np.linalg.norm(inliers.uv_current_px - inliers.uv_target_px, axis=1)))
        timings["control_ms"] = (time.perf_counter() - t3) * 1e3
        self._tracking.update(mean_err, idx_t)
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        return ServoStep(v_camera=out.v_camera, status=StepStatus.OK, correspondences=inliers, all_matches=matches,
                         mean_error_px=mean_err, tracking_mode=tracking, timings_ms=timings, timestamp_s=timestamp_s,
                         T_current_target=T_current_target, source=CorrespondenceSource.DETECTION, gain=out.gain,
                         condition_number=out.condition_number)


def _build_dfbvs(config: ServoConfig, render: TargetRender) -> DFBVSServo:
    return DFBVSServo.from_render(render, config)


#: Servos (whole controllers: image in, ServoStep out), built from their config and a target render.
SERVOS: Registry = Registry("servo")
SERVOS.register("dfbvs", _build_dfbvs, ServoConfig, help="deep feature-based visual servoing")
SERVOS.register("tracking", "dfbvs.tracking:TrackingServo", "dfbvs.tracking:TrackerConfig",
                help="track every frame without the network; deep detection in the background")
SERVOS.register("photometric", "dfbvs.photometric:PhotometricServo", "dfbvs.photometric:PhotometricConfig",
                help="photometric visual servoing (Collewet & Marchand 2011), the whole-image baseline")


def build_servo(config: object, render: TargetRender):
    """The servo a config describes (``ServoConfig`` -> DFBVS, ``PhotometricConfig`` -> photometric)."""
    return SERVOS.build(config, render=render)
