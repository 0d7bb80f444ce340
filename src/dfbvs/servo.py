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
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .control import CONTROL_LAWS, ControlInput, IBVSConfig, InteractionChoice, build_control_law, tuned_ibvs_config
from .depth import (
    DepthConfig,
    DepthModel,
    acquire_depth,
    as_depth_image,
    depth_colour_offset_px,
    depth_model,
    register_depth,
)
from .edges import EdgeConfig, EdgeFit, ModelEdges, model_edges, near_goal, refine_pose_with_edges
from .errors import ConfigError
from .estimation import REJECTORS, PnPConfig, TargetGeometry, build_rejector
from .features import EXTRACTORS, Extractor, FeatureConfig, Features, build_extractor
from .features.aliked import AlikedConfig
from .geometry import (
    inverse,
    median_depth_m,
    planar_rotation_rad,
    pose_error,
    poses_agree,
    se3_exp,
    se3_log,
    transform_points,
)
from .imaging import as_rgb_frame, grey_float32, resize_area, rgb8_from_grey, zoom_window_px
from .matching import MATCHERS, Correspondences, MutualNNConfig, build_matcher
from .refine import RefineConfig, RefinementTarget, aligned_representation, refine_correspondences
from .registry import Registry
from .relight import (
    LightingFit,
    RelightConfig,
    ShadingSamples,
    fit_each_basis,
    goal_nearness,
    least_residual,
    relit_grey,
    shading_samples,
)
from .render.target import LIGHT_TURNS, TargetCheckConfig, TargetRender
from .symmetry import Symmetry, goal_frame_symmetries, nearest_equivalent_pose
from .target import (
    LIGHT_STABLE_FRACTION,
    AcquisitionConfig,
    LightStability,
    PreparedTarget,
    alignable_keypoints,
    light_stability,
    nearest_view,
    prepare_target_views,
)
from .tracking_mode import TrackingConfig, TrackingModeState

#: with rolled target views, sub-pixel refinement runs only while the image's measured roll is within this (deg)
MAX_REFINE_ROLL_DEG = 15.0


class StepStatus(str, enum.Enum):
    """Outcome of one cycle. Anything but OK returns a zero twist."""

    OK = "ok"
    TOO_FEW_MATCHES = "too_few_matches"
    TOO_FEW_INLIERS = "too_few_inliers"
    NOT_LOCKED = "not_locked"  # no pose yet (waiting for a detection): hold still
    IMPLAUSIBLE = "implausible"  # a lock that is not credible (see LockConfig; the step's reason says why)
    UNCONFIRMED = "unconfirmed"  # a credible lock whose pose the previous cycle does not confirm (LockConfig.confirm)
    # the target's measurements keep disagreeing, or its goal view's features are its shading
    # (ServoConfig.shading_guard): no lock on it is trusted (the reason says)
    UNRELIABLE = "unreliable"


class CorrespondenceSource(str, enum.Enum):
    """Where a step's correspondences came from."""

    DETECTION = "detection"  # the deep network ran on this frame and its features were matched
    TRACKING = "tracking"  # predicted from the previous pose and re-measured without the network
    DEPTH = "depth"  # the goal view's surface fitted to the live depth (an RGB-D camera), projected at that pose
    NONE = "none"  # no correspondences (a failed cycle, or a whole-image method)


def _registry_field(registry: Registry, default_factory) -> object:
    """A config field whose value is a backend config of ``registry`` (``--set path=NAME`` swaps backend)."""
    return field(default_factory=default_factory, metadata={"registry": registry})


def _default_control() -> IBVSConfig:
    return tuned_ibvs_config()


@dataclass(frozen=True)
class LockConfig:
    """When a cycle's lock is credible enough to move the camera; otherwise the step's status is
    ``too_few_inliers`` or ``implausible`` with a reason, and its twist is zero.

    - ``min_inliers``: correspondences the law would use (refined ones when refinement verified them). Measured
      (docs/robustness.md): genuine starts 5 cm / 8 deg from the goal in clutter gave 18-49 with ALIKED and
      15-88 with ORB; a mirrored frame, a random-noise frame or another object gave 4-10.
    - ``strong_match_inliers``: a lock of this many descriptor (rejection) inliers stands on them, unrefined,
      when sub-pixel refinement verifies fewer than ``min_inliers`` (the patches of a thin sheet-metal part
      before gravel do not align: 55-73 inliers, 6 refined, measured in docs/parts.md); a weaker one is vetoed
      (a mirrored frame: 16 inliers).
    - ``min_inlier_ratio``: rejection inliers / descriptor matches of the cycle (genuine: 0.42-0.65 ALIKED,
      0.15-0.46 ORB; wrong images: 0.05-0.20).
    - ``min_depth_ratio`` / ``max_depth_ratio``: the PnP pose must put every inlier point in front of the camera,
      with the median depth of the inlier points between these multiples of their median target depth ``Z*``
      (the working range around the goal distance).
    - ``max_linear_m_s`` / ``max_angular_rad_s``: bounds on the law's twist, checked before any robot-side clamp
      (the IBVS law saturates to its own, lower limits; a law that does not is caught here); a twist that is not
      finite is never credible.
    - ``confirm``: a lock moves the camera only when its pose agrees with the previous credible cycle's (a lock's,
      or an unconfirmed one's), carried forward through the twist commanded since (by the frames' timestamps),
      within ``confirm_translation_ratio`` of the object's median depth at that pose and ``confirm_rotation_deg``,
      modulo the declared symmetry; otherwise the step is ``unconfirmed``, its twist zero, and the next cycle
      may confirm it (two independent measurements of one pose). A first lock always waits one cycle. Wrong
      locks on a feature-poor part pass every other check but disagree from cycle to cycle (a shaft before
      gravel: 144-222 mm from the truth, 24-204 mm / 8-77 deg between consecutive locks), and their twists drove
      the camera 15-20 mm further away (docs/parts.md); genuine locks on the small connector 55 mm from its goal
      are 6-30 mm off and disagree by up to 22 mm / 6.7 deg (11.6 % of the depth), so the tolerances are 12 %
      and 8 deg (5 % and 3 deg held that episode still until it was lost). Without timestamps (NaN) a moving
      lock's continuity is not checked.
    """

    min_inliers: int = 12
    min_inlier_ratio: float = 0.1
    strong_match_inliers: int = 30
    min_depth_ratio: float = 0.25
    max_depth_ratio: float = 4.0
    max_linear_m_s: float = 0.25
    max_angular_rad_s: float = 1.0
    confirm: bool = True
    confirm_translation_ratio: float = 0.12
    confirm_rotation_deg: float = 8.0

    def __post_init__(self) -> None:
        if self.min_inliers < 4:
            raise ConfigError(f"lock.min_inliers={self.min_inliers!r}: must be >= 4")
        if not (self.confirm_translation_ratio > 0 and self.confirm_rotation_deg > 0):
            raise ConfigError(f"lock confirm tolerances must be > 0, got {self.confirm_translation_ratio!r}, "
                              f"{self.confirm_rotation_deg!r} deg")
        if self.strong_match_inliers < self.min_inliers:
            raise ConfigError(f"lock.strong_match_inliers={self.strong_match_inliers!r}: must be >= lock.min_inliers="
                              f"{self.min_inliers}")
        if not 0.0 <= self.min_inlier_ratio <= 1.0:
            raise ConfigError(f"lock.min_inlier_ratio={self.min_inlier_ratio!r}: must be in [0, 1]")
        if not 0.0 < self.min_depth_ratio < 1.0 < self.max_depth_ratio:
            raise ConfigError(f"lock depth range: need 0 < min_depth_ratio < 1 < max_depth_ratio, got "
                              f"{self.min_depth_ratio!r}, {self.max_depth_ratio!r}")
        if not (self.max_linear_m_s > 0 and self.max_angular_rad_s > 0):
            raise ConfigError(f"lock twist bounds must be > 0, got {self.max_linear_m_s!r} m/s, "
                              f"{self.max_angular_rad_s!r} rad/s")


def implausible_pose(T_current_target: np.ndarray | None, points_target_m: np.ndarray, Z_star_m: np.ndarray,
                     config: LockConfig) -> str:
    """Why a PnP pose of the inlier target points (goal camera frame, (N, 3) m, depths ``Z_star_m`` (N,)) is
    not plausible, or "" when it is (no pose: nothing to check)."""
    if T_current_target is None or len(points_target_m) == 0:
        return ""
    T = np.asarray(T_current_target, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return "the PnP pose is not a finite 4x4 matrix"
    z = transform_points(T, points_target_m)[:, 2]
    if np.any(z <= 0):
        return f"the pose puts {int(np.sum(z <= 0))} of {len(z)} inlier points behind the camera"
    ratio = float(np.median(z) / np.median(Z_star_m))
    if not config.min_depth_ratio <= ratio <= config.max_depth_ratio:
        return (f"the pose puts the object at {ratio:.2f} x its goal depth, outside the working range "
                f"[{config.min_depth_ratio}, {config.max_depth_ratio}] (servo.lock.min/max_depth_ratio)")
    return ""


def check_law_within_lock(control: object, lock: LockConfig, control_path: str = "control",
                          lock_path: str = "lock") -> None:
    """A :class:`~dfbvs.errors.ConfigError` when a law's own speed limits exceed the lock's bounds (every fast
    twist would then be refused as implausible): checked when a servo is built, once every override is applied."""
    for limit in ("max_linear_m_s", "max_angular_rad_s"):
        law_limit, bound = getattr(control, limit, None), getattr(lock, limit)
        if isinstance(law_limit, (int, float)) and law_limit > bound:
            raise ConfigError(f"{control_path}.{limit}={law_limit} exceeds {lock_path}.{limit}={bound}: twists "
                              f"beyond the lock's bound are refused as implausible; raise {lock_path}.{limit} too")


def implausible_twist(v_camera: np.ndarray, config: LockConfig) -> str:
    """Why a law's twist (6,) is not credible (not finite, or beyond the lock's bounds), or "" when it is."""
    v = np.asarray(v_camera, dtype=np.float64)
    if v.shape != (6,) or not np.all(np.isfinite(v)):
        return f"the control law returned a twist that is not 6 finite numbers: {v.tolist()}"
    lin, ang = float(np.linalg.norm(v[:3])), float(np.linalg.norm(v[3:]))
    if lin > config.max_linear_m_s or ang > config.max_angular_rad_s:
        return (f"the twist ({lin:.3f} m/s, {ang:.3f} rad/s) exceeds servo.lock.max_linear_m_s="
                f"{config.max_linear_m_s} / "
                f"servo.lock.max_angular_rad_s={config.max_angular_rad_s}")
    return ""


@dataclass(frozen=True)
class FeaturePoorConfig:
    """What the servo adds on a feature-poor goal view: one with fewer than ``max_alignable_keypoints`` target
    keypoints that patch refinement can align (:func:`~dfbvs.target.alignable_keypoints`; 0 = never).

    - ``live_max_keypoints``: at least this many keypoints on the live image (``ServoConfig.live_max_keypoints``).
    - ``edges``: the object's outline fitted with the keypoints near the goal (``ServoConfig.edges.enabled``).

    Measured (docs/parts.md): the sheet-metal part's goal views have 5-8 alignable keypoints and were reached
    within 1 mm / 0.1 deg on 3 of 3 starts only with both (0 of 3 without); every other goal of the bench has
    39 or more (accuracy18's 78-106), where the outline's bias cost textured small parts precision (tiny-P1
    0.058 -> 0.121 deg) and the extra keypoints a third more time per detection, so they stay off there.
    """

    max_alignable_keypoints: int = 30
    live_max_keypoints: int = 2000
    edges: bool = True

    def __post_init__(self) -> None:
        if self.max_alignable_keypoints < 0 or self.live_max_keypoints < 0:
            raise ConfigError(f"feature_poor counts must be >= 0, got max_alignable_keypoints="
                              f"{self.max_alignable_keypoints!r}, live_max_keypoints={self.live_max_keypoints!r}")


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
    min_inliers: int = 6  # fewer inliers than this: too few to fit or refine at all
    lock: LockConfig = field(default_factory=LockConfig)  # when a lock is credible enough to move
    target_check: TargetCheckConfig = field(default_factory=TargetCheckConfig)  # floors of a usable target
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)  # rolled target views (any roll)
    # top-K keypoints of the live image (0: features.max_keypoints, as the target). On a busy background (gravel)
    # a feature-poor part loses the top 500 to it; more live keypoints keep its corners while the target's set,
    # drawn on a plain background, stays the same (docs/parts.md)
    live_max_keypoints: int = 0
    # the object's outline measured at the PnP pose, fitted with the keypoints (off by default; dfbvs.edges)
    edges: EdgeConfig = field(default_factory=EdgeConfig)
    # the target relit to the camera image's lighting near the goal (on by default; dfbvs.relight)
    relight: RelightConfig = field(default_factory=RelightConfig)
    # more live keypoints and the outline on a goal view with few alignable keypoints (FeaturePoorConfig)
    feature_poor: FeaturePoorConfig = field(default_factory=FeaturePoorConfig)
    # hold still (status ``unreliable``, zero twist, from the first cycle) on a goal view whose alignable keypoints
    # hold in fewer than this fraction when the target's key light turns (:func:`~dfbvs.target.light_stability` on
    # ``TargetRender.light_turned_rgb``; no check on a target without them, or on a feature-poor view, which the
    # outline serves): the view's features are the part's shading, which any other light moves, and the loop
    # settles off the goal or is driven away (the housing and the shaft: 0-8 % hold; every part the servo brings
    # within 1 mm / 0.1 deg: 45-85 %; docs/parts.md). 0 = off
    shading_guard: float = LIGHT_STABLE_FRACTION
    # a goal view the shading guard refuses is served on the live depth when frames carry it (an RGB-D camera):
    # the goal view's surface fitted to it (dfbvs.depth; docs/parts.md)
    depth: DepthConfig = field(default_factory=DepthConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.shading_guard <= 1.0:
            raise ConfigError(f"shading_guard={self.shading_guard!r}: a fraction in [0, 1] (0: off)")
        if self.working_width_px <= 0 or self.working_height_px <= 0:
            raise ConfigError(f"working resolution must be positive, got "
                              f"{self.working_width_px}x{self.working_height_px}")
        if self.min_inliers < 4:
            raise ConfigError(f"min_inliers must be >= 4 (3 points give 6 equations, 4 for robustness), "
                              f"got {self.min_inliers}")
        if int(self.live_max_keypoints) != self.live_max_keypoints or self.live_max_keypoints < 0:
            raise ConfigError(f"live_max_keypoints={self.live_max_keypoints!r}: a count >= 0 (0: as the target)")
        for name, registry in (("features", EXTRACTORS), ("matcher", MATCHERS), ("rejection", REJECTORS),
                               ("control", CONTROL_LAWS)):
            registry.name_of(getattr(self, name))  # a ConfigError naming the type when nothing builds it
        interaction = getattr(self.control, "interaction", InteractionChoice.DESIRED)
        if interaction is not InteractionChoice.DESIRED and not isinstance(self.rejection, PnPConfig):
            raise ConfigError(f"control interaction {interaction.value!r} needs the current depths from the PnP "
                              f"pose; rejection is {REJECTORS.name_of(self.rejection)!r}: use rejection=pnp")


def adapted_to_target(config: ServoConfig, target: PreparedTarget) -> ServoConfig:
    """``config`` with what ``config.feature_poor`` adds when ``target`` is feature-poor; ``config`` otherwise."""
    poor = config.feature_poor
    if int(np.count_nonzero(alignable_keypoints(target))) >= poor.max_alignable_keypoints:
        return config
    return replace(config, live_max_keypoints=max(config.live_max_keypoints, poor.live_max_keypoints),
                   edges=replace(config.edges, enabled=config.edges.enabled or poor.edges))


def light_turns(servo_config: object) -> int:
    """How many turned-light renders of the target a servo's config needs (``render_target``'s ``light_turns``):
    :data:`~dfbvs.render.target.LIGHT_TURNS` when its ``shading_guard`` is on (the tracking servo's
    ``detection.shading_guard`` likewise), else 0."""
    deep = servo_config if isinstance(servo_config, ServoConfig) else getattr(servo_config, "detection", None)
    return LIGHT_TURNS if isinstance(deep, ServoConfig) and deep.shading_guard > 0 else 0


def shading_check(target: PreparedTarget, config: ServoConfig) -> tuple[LightStability | None, str]:
    """How the goal view ``target`` holds under a turned light (:func:`~dfbvs.target.light_stability` on
    ``target.render.light_turned_rgb``) and why a servo with ``config`` must not move on it (its
    ``shading_guard``), or "". No check (None, "") with the guard off, without turned renders, without refinement
    (nothing is aligned) or on a feature-poor view (``config.feature_poor``: its outline serves it)."""
    turned = target.render.light_turned_rgb
    if (not config.shading_guard > 0 or turned is None or target.refinement is None
            or int(np.count_nonzero(alignable_keypoints(target))) < config.feature_poor.max_alignable_keypoints):
        return None, ""
    light = light_stability(target, list(turned))
    if not light.n_points or light.stable_fraction >= config.shading_guard:
        return light, ""
    return light, (f"the goal view's features are the part's shading: {light.n_stable} of {light.n_points} alignable "
                   f"keypoints hold when the light turns {light.turn_deg:g} deg ({light.stable_fraction:.0%} < "
                   f"servo.shading_guard={config.shading_guard:g}), and any light unlike the render's moves them: "
                   "holding still rather than servo on them (choose a goal view with texture, holes or sharp edges, "
                   "or give frames with depth from an RGB-D camera: the part's shape is then fitted to it, "
                   "servo.depth; in simulation dfbvs sim --rgbd; `dfbvs target` measures a view; to servo on the "
                   "shading anyway: --set servo.shading_guard=0, or servo.detection.shading_guard=0 for the tracking "
                   "servo)")


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
    - ``reason``: why the status is not OK, in words ("" when OK or obvious).
    - ``n_edges``: outline points that fit the pose when the model edges refined it (``ServoConfig.edges``;
      the correspondences are then the inliers' target points projected at that pose), else 0.
    - ``zoom``: the live features were extracted on a crop this many times narrower than the image
      (``AcquisitionConfig.zoom_max``); 1: the whole image.
    - ``pending``: why the servo's estimate may still move although its error is small (e.g. the tracking servo
      near the goal with a target not yet relit to the camera's lighting), in words; "" when nothing is pending.
      The stop rules do not converge on a pending step (:mod:`dfbvs.stop`).
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
    reason: str = ""
    n_edges: int = 0
    zoom: float = 1.0
    pending: str = ""

    @property
    def n_inliers(self) -> int:
        return len(self.correspondences)

    @property
    def ok(self) -> bool:
        return self.status is StepStatus.OK


def at_pose(inliers: Correspondences, target: PreparedTarget, T_current_target: np.ndarray) -> Correspondences:
    """The inliers with their current positions where ``T_current_target`` puts their target points (pixels of
    ``target.camera``): what the law sees when a fit on more than the keypoints (the outline) gave the pose."""
    p = transform_points(T_current_target, target.points_camera_goal_m[inliers.index_target])
    return replace(inliers, uv_current_px=target.camera.project(p))


class DFBVSServo:
    """Stateful DFBVS controller: ``step(image, timestamp_s)`` returns a :class:`ServoStep` per camera image.

    The image must come from the target's camera model (same intrinsics up to a change of resolution, so the
    same aspect ratio); it is resized to the working resolution. Anything else is a
    :class:`~dfbvs.errors.FrameError` (:func:`~dfbvs.imaging.as_rgb_frame`). A step is OK only on a credible
    lock (:class:`LockConfig`); otherwise its status says why and its twist is zero.
    """

    def __init__(self, target: PreparedTarget | tuple[PreparedTarget, ...], config: ServoConfig,
                 extractor: Extractor, matcher=None, live_extractor: Extractor | None = None):
        check_law_within_lock(config.control, config.lock)
        self.base_config = config  # as given; ``config`` is it adapted to the target served (adapted_to_target)
        self.config = config
        self.extractor = extractor  # the target's features
        # the live image's, by top-K: the target's unless live_max_keypoints asks for another
        self._live_extractors: dict[int, Extractor] = {}
        if live_extractor is not None:
            self._live_extractors[config.live_max_keypoints] = live_extractor
        self.live_extractor = extractor
        self.matcher = matcher or build_matcher(config.matcher)
        self.rejector = build_rejector(config.rejection)
        self.law = build_control_law(config.control)
        self._serve(target)
        self._recheck_pnp = config.rejection if isinstance(config.rejection, PnPConfig) else PnPConfig()
        self._tracking = TrackingModeState(config.tracking)
        self.declare_symmetry(Symmetry.none())

    @classmethod
    def from_render(cls, render: TargetRender, config: ServoConfig = ServoConfig()) -> DFBVSServo:
        """Load the extractor and matcher once, prepare the target, return a ready servo."""
        extractor = build_extractor(config.features)
        return cls(cls._prepare(render, config, extractor), config, extractor)

    @staticmethod
    def _prepare(render: TargetRender, config: ServoConfig, extractor: Extractor) -> tuple[PreparedTarget, ...]:
        return prepare_target_views(render, extractor, config.working_width_px, config.working_height_px,
                                    config.refine, config.target_check, config.acquisition)

    def _serve(self, target: PreparedTarget | tuple[PreparedTarget, ...]) -> None:
        """Serve the upright target (``target``, or the first of its views) and its rolled views."""
        self.views = target if isinstance(target, tuple) else (target,)
        self.target = self.views[0]  # the upright target: what the goal looks like
        self.config = adapted_to_target(self.base_config, self.target)
        self.live_extractor = self._live_extractor(self.config.live_max_keypoints)
        self.view = self.target  # the view of the last step (its correspondences index its features)
        self._geometries = [TargetGeometry(None, v.camera, points_by_target_index_m=v.points_camera_goal_m)
                            for v in self.views]
        self._roll_rad: float | None = None  # the roll of the image w.r.t. the target while locked
        # where the last cycle's pose (a lock's, or a failed cycle's as a hint) puts the target's points
        self._object_px: np.ndarray | None = None
        # the last credible pose (a lock's or an unconfirmed one's), its frame's time and the twist commanded on it
        self._reference: tuple[np.ndarray, float, np.ndarray] | None = None
        self._edges: ModelEdges | None = None  # the upright target's outline, prepared on first use
        self._edge_reference: np.ndarray | None = None  # the relit target's grey, for the outline's next fit
        self._relight_calls = 0  # calls of relight() ...
        self._relit_at: int | None = None  # ... and the one the target was last relit on (ServoConfig.relight)
        self.relit_nearness = 0.0  # relight.goal_nearness of the pose the lighting was last fitted (or tried) at
        self.relight_fits = 0  # lightings fitted (and the target relit with) so far
        self.lighting: LightingFit | None = None  # the last lighting fitted ...
        self._shading: ShadingSamples | None = None  # ... on these samples of the target, prepared on first use
        # with two bases chosen by verified points (relight.second_basis_choice): each one's count at the last refit
        self.basis_verified_points: tuple[int, ...] = ()
        self.light_check, self.unservable = shading_check(self.target, self.config)
        self._depth: DepthModel | None = None  # the goal view's surface, for the live depth (built on first use)
        self._depth_frames, self._depth_aligned = 0, False  # depth frames seen; the last alignment check passed


    def _live_extractor(self, k: int) -> Extractor:
        """The extractor of the live image's top ``k`` keypoints (0: the target's), built once."""
        if not k or k == getattr(self.base_config.features, "max_keypoints", k):
            return self.extractor
        if k not in self._live_extractors:
            self._live_extractors[k] = build_extractor(replace(self.base_config.features, max_keypoints=k))
        return self._live_extractors[k]

    def retarget(self, render: TargetRender) -> None:
        """Serve a new target with the already loaded networks."""
        self._serve(self._prepare(render, self.base_config, self.extractor))
        self.declare_symmetry(self.symmetry)
        self.reset()

    def declare_symmetry(self, symmetry: Symmetry) -> None:
        """The object's symmetry (object frame, :mod:`dfbvs.symmetry`): the control law then gets the pose
        against the equivalent goal nearest the camera (:func:`~dfbvs.symmetry.nearest_equivalent_pose`), so
        the law's pose-based far phase aims at the nearest equivalent whichever tooth a gear's matches locked on
        this cycle, instead of chasing the teeth (:class:`~dfbvs.control.HybridConfig`). Near the goal the law
        follows the measured correspondences. Only an exact symmetry is used (``symmetry.exact``): the gear's is
        visual (its holes and glyph break it), and aiming at its "equivalents" conflicted with the matches near
        the goal; with a visual symmetry the far phase is off altogether (``ControlInput.pose_ambiguous``: the
        PnP pose jumps between teeth and the loop chased them, docs/convergence.md). The tracking servo does
        not use it."""
        self.symmetry = symmetry
        # a symmetry with at least as many elements as there are rolled views (the gear's 20 teeth against 8 views
        # 45 deg apart): the upright view matches an equivalent within half a period at any roll, and the rolled
        # views' locks on other equivalents drove the loop away (wide protocol, gear: 0/7 converged with the
        # views, 8/12 at an equivalent without; docs/convergence.md)
        self._upright_only = symmetry.order >= len(self.views) > 1
        exact = symmetry if symmetry.exact else Symmetry.none()  # a visual one (the gear's) would mislead the law
        self._goal_symmetries = goal_frame_symmetries(exact, self.target.render.T_object_camera)
        # every equivalent, visual ones too: a lock on another tooth is the same pose for the confirmation
        self._equivalents = goal_frame_symmetries(symmetry, self.target.render.T_object_camera)

    @property
    def tracking_mode(self) -> bool:
        return self._tracking.active

    def reset(self) -> None:
        self._tracking.reset()
        self._roll_rad = None
        self._object_px = None
        self.view = self.target
        self._reference = None
        self._depth_frames, self._depth_aligned = 0, False  # another run may have another camera: check again

    def _reference_at(self, timestamp_s: float) -> np.ndarray | None:
        """The last credible pose carried forward to the frame at ``timestamp_s`` through the twist commanded
        on its frame (held since, as failed cycles command zero); None without one or without a clock."""
        if self._reference is None:
            return None
        T_ref, t_ref_s, v_ref = self._reference
        if not np.any(v_ref):
            return T_ref
        dt_s = timestamp_s - t_ref_s
        if not (np.isfinite(dt_s) and dt_s >= 0):
            return None
        return inverse(se3_exp(v_ref * dt_s)) @ T_ref

    def _unconfirmed(self, T_current_target: np.ndarray, timestamp_s: float, always: bool = False) -> str:
        """Why this cycle's credible pose may not move the camera yet (:attr:`LockConfig.confirm`, or ``always``;
        "" when it may): it disagrees with the last credible pose carried forward to this frame, or there is none
        yet."""
        lock = self.config.lock
        moving = self._reference is not None and bool(np.any(self._reference[2]))
        T_pred = self._reference_at(timestamp_s)
        if not (lock.confirm or always) or (T_pred is None and moving):  # (no clock to carry a moving lock forward)
            return ""
        if T_pred is None:
            return ("a first lock: held still until the next cycle's pose agrees with it "
                    f"({'a depth fit always waits for a second' if always else 'servo.lock.confirm'})")
        points_m = self.target.points_camera_goal_m
        if poses_agree(T_pred, T_current_target, points_m, lock.confirm_translation_ratio,
                       lock.confirm_rotation_deg, self._equivalents):
            return ""
        tol_m = lock.confirm_translation_ratio * median_depth_m(T_current_target, points_m)
        distance_m, angle_rad = pose_error(T_pred, T_current_target)
        return (f"the pose is {distance_m * 1e3:.1f} mm / {np.rad2deg(angle_rad):.1f} deg from the previous cycle's "
                f"> servo.lock.confirm_translation_ratio={lock.confirm_translation_ratio} x depth "
                f"({tol_m * 1e3:.1f} mm) or "
                f"servo.lock.confirm_rotation_deg={lock.confirm_rotation_deg}: held still until two cycles agree")

    def _views_to_try(self) -> list[int]:
        """Indices of the views this cycle matches: the one nearest the roll measured while locked, or every
        view while acquiring (the one with most inliers is kept); only the upright one for an object whose
        symmetry makes the others redundant (:meth:`declare_symmetry`)."""
        if len(self.views) == 1 or self._upright_only:
            return [0]
        if self._roll_rad is not None:
            return [nearest_view(self.views, self._roll_rad)]
        return list(range(len(self.views)))

    def _live_features(self, image: np.ndarray, rgb: np.ndarray) -> tuple[Features, float]:
        """The live image's features, keypoints in working pixels, and the zoom they were extracted at: of the
        working image ``rgb``, or (``acquisition.zoom_max`` > 1, after a cycle with a pose) of the crop of the camera
        image ``image`` around where that pose put the object (:func:`~dfbvs.imaging.zoom_window_px`),
        resized to the working size."""
        cfg, acq = self.config, self.config.acquisition
        window = None if self._object_px is None else zoom_window_px(
            self._object_px, image.shape[1], image.shape[0], cfg.working_width_px, cfg.working_height_px,
            acq.zoom_max, acq.zoom_margin)
        if window is None:
            return self.live_extractor(rgb), 1.0
        x0, y0, w, h = window
        feats = self.live_extractor(resize_area(image[y0:y0 + h, x0:x0 + w], cfg.working_width_px,
                                                cfg.working_height_px))
        # crop-resized px -> camera px -> working px (pixel centres at integers in each)
        to_image = np.array([w / cfg.working_width_px, h / cfg.working_height_px])
        to_working = np.array([cfg.working_width_px / image.shape[1], cfg.working_height_px / image.shape[0]])
        uv_image = np.array([x0, y0]) + (feats.keypoints_px + 0.5) * to_image - 0.5
        uv_working = (uv_image + 0.5) * to_working - 0.5
        return replace(feats, keypoints_px=uv_working,
                       image_size=(cfg.working_width_px, cfg.working_height_px)), image.shape[1] / w

    def _object_at(self, view: PreparedTarget, T_current_target: np.ndarray | None) -> np.ndarray | None:
        """The camera-image pixels (N, 2) where ``T_current_target`` puts the points of ``view`` in front of the
        camera; None when there is no pose or zoom is off (``acquisition.zoom_max`` 1)."""
        if T_current_target is None or self.config.acquisition.zoom_max <= 1.0:
            return None
        pts = transform_points(T_current_target, view.points_camera_goal_m)
        return view.render.camera.project(pts[pts[:, 2] > 1e-3])

    def _match_and_reject(self, feats, view_index: int):
        """Match the image's features to one view (only the tracked features in tracking mode) and reject:
        ``(matches, rejection)`` with the matches' target indices into that view's features."""
        view = self.views[view_index]
        tracked_idx = self._tracking.target_idx if view is self.view else None
        target_feats = view.features if tracked_idx is None else view.features.subset(tracked_idx)
        matches = self.matcher(feats, target_feats)
        if tracked_idx is not None:  # back to indices of the full target feature set
            matches = Correspondences(matches.uv_current_px, matches.uv_target_px, matches.index_current,
                                      tracked_idx[matches.index_target], matches.scores)
        if len(matches) < self.config.min_inliers:
            return matches, None
        return matches, self.rejector(matches, self._geometries[view_index])

    def _control_input(self, inliers: Correspondences, T_current_target: np.ndarray | None,
                       points_target_m: np.ndarray | None = None) -> ControlInput:
        """The law's input over the inliers (their target points: the view's features', or ``points_target_m``
        (N, 3), goal camera frame, given with them); with a declared symmetry and a pose, also the pose against
        the equivalent goal nearest the camera (:func:`~dfbvs.symmetry.nearest_equivalent_pose`), the same
        whichever equivalent the matches of a gear's teeth locked on this cycle."""
        target, idx_t = self.view, inliers.index_target
        if points_target_m is None:
            P, xy_star, Z_star_m = target.points_camera_goal_m[idx_t], target.xy_star[idx_t], target.Z_star_m[idx_t]
        else:
            P, xy_star, Z_star_m = points_target_m, points_target_m[:, :2] / points_target_m[:, 2:3], \
                points_target_m[:, 2].copy()
        T_equivalent = None
        if T_current_target is not None and len(self._goal_symmetries) > 1:
            T_equivalent, _ = nearest_equivalent_pose(T_current_target, self._goal_symmetries)
        return ControlInput(xy=target.camera.pixel_to_normalized(inliers.uv_current_px),
                            xy_star=xy_star, Z_star_m=Z_star_m, points_target_m=P, T_current_target=T_current_target,
                            T_current_equivalent=T_equivalent,
                            pose_ambiguous=self.symmetry.order > 1 and not self.symmetry.exact)

    def fit_edges(self, image: np.ndarray, target: PreparedTarget, inliers: Correspondences,
                  T_current_target: np.ndarray, refined: bool) -> EdgeFit | None:
        """The pose refined on the object's outline (measured in ``image``, the camera's own) and the inliers
        (:func:`~dfbvs.edges.refine_pose_with_edges`; ``refined``: sub-pixel refinement verified them); None when
        the outline is off (``edges.enabled``), the pose is not near the goal (:func:`~dfbvs.edges.near_goal`: the
        goal view's outline is not the object's from elsewhere) or too little of it is measured to say.
        ``target``: an upright view (its render is the target's), whose points the inliers index. Also used by the
        tracking servo on its tracked cycles."""
        render, cfg = target.render, self.config.edges
        if not cfg.enabled or not near_goal(T_current_target, float(np.median(target.Z_star_m)), cfg):
            return None
        if self._edges is None:
            self._edges = model_edges(render.rgb, render.depth_m, render.mask, render.camera, cfg)
        # the target relit since (by this thread or the tracking servo's detector): read the outline's steps there
        reference, self._edge_reference = self._edge_reference, None
        if reference is not None and cfg.relit_reference:
            self._edges = self._edges.with_reference(reference, cfg)
        cam = render.camera
        native = resize_area(image, cam.width_px, cam.height_px)
        return refine_pose_with_edges(T_current_target, self._edges, grey_float32(native),
                                      target.points_camera_goal_m[inliers.index_target], inliers.uv_current_px,
                                      target.camera, cfg,
                                      cfg.refined_keypoint_sigma_px if refined else cfg.keypoint_sigma_px)

    def goal_nearness(self, T_current_target: np.ndarray) -> float:
        """:func:`~dfbvs.relight.goal_nearness` of a pose for this target (1 at the edge of the region near the goal
        where the lighting is fitted)."""
        return goal_nearness(T_current_target, float(np.median(self.target.Z_star_m)), self.config.relight)

    def relight(self, image: np.ndarray, T_current_target: np.ndarray,
                verified_points: Callable[[PreparedTarget], int] | None = None,
                due: bool = False) -> LightingFit | None:
        """Near the goal, every ``relight.refit_cycles`` calls (one per cycle whose points refinement verified) and
        (``relight.refit_closer`` > 0) whenever the pose is nearer the goal than that share of where the last fit was:
        fit the lighting of ``image`` (the camera's own) at the pose ``T_current_target`` and align the patches on
        the target relit with it from then on (:mod:`dfbvs.relight`); the fit, or None when nothing was done (off,
        no shading basis, not near the goal, not due). With two bases and ``relight.second_basis_choice=verified``,
        ``verified_points`` (the cycle's points refined and verified on a target: how many) chooses between the
        target relit with each. The tracking servo's detections relight in the background thread; its tracked
        cycles align on the relit target they find (the fit takes longer than a frame). ``due``: fit now (near the goal)
        whenever the last fit was made."""
        cfg, target = self.config.relight, self.target
        render, refinement = target.render, target.refinement
        if not cfg.enabled or render.shading_basis is None or refinement is None:
            return None
        self._relight_calls += 1
        nearness = self.goal_nearness(T_current_target)
        closer = (cfg.refit_closer > 0 and self.relit_nearness > 0.05
                  and nearness <= cfg.refit_closer * self.relit_nearness)
        if (self._relit_at is not None and self._relight_calls - self._relit_at < cfg.refit_cycles and not closer
                and not due):
            return None
        if nearness > 1.0:  # not near the goal: the basis is the goal view's
            return None
        if self._shading is None:
            scale = render.camera.fx / target.camera.fx  # working px -> the render's
            self._shading = shading_samples(render, (target.features.keypoints_px + 0.5) * scale - 0.5, cfg)
        self._relit_at, self.relit_nearness = self._relight_calls, nearness
        fits = () if self._shading is None else fit_each_basis(self._shading, render.camera, image, T_current_target,
                                                                cfg, render.shading_basis_split)
        if not fits:
            return None

        def relit_with(fit: LightingFit) -> tuple[np.ndarray, RefinementTarget]:
            grey = relit_grey(render, fit, cfg.outline_coverage)  # the relit target's grey levels, and its patches
            return grey, replace(refinement, normalised=aligned_representation(rgb8_from_grey(grey),
                                                                               refinement.config))

        if len(fits) > 1 and cfg.second_basis_choice == "verified" and verified_points is not None:
            options = [(fit, *relit_with(fit)) for fit in fits]
            counts = [verified_points(replace(self.view, refinement=relit)) for _, _, relit in options]
            fit, grey, relit = options[int(np.argmax(counts))]  # (the first on a tie)
            self.basis_verified_points = tuple(counts)
        else:
            fit = least_residual(fits, cfg)
            grey, relit = relit_with(fit)
        self.relight_fits += 1
        if self.config.edges.enabled:  # the outline's reference from the relit target too (at the next fit)
            self._edge_reference = grey
        index = next(i for i, v in enumerate(self.views) if v is self.view)
        self.views = tuple(replace(v, refinement=relit) for v in self.views)
        self.target, self.view, self.lighting = self.views[0], self.views[index], fit
        return fit

    def _hold_reference(self, status: StepStatus, T: np.ndarray | None, timestamp_s: float) -> None:
        """The reference after a cycle that does not move the camera: an unconfirmed credible pose becomes it (for
        the next cycle to confirm); otherwise the last one, carried to this frame, stops moving (the camera holds
        still from here)."""
        if status is StepStatus.UNCONFIRMED and T is not None:
            self._reference = (np.asarray(T, dtype=np.float64), timestamp_s, np.zeros(6))
            return
        T_ref = self._reference_at(timestamp_s)
        self._reference = None if T_ref is None else (T_ref, timestamp_s, np.zeros(6))

    def _smoothed(self, T_prior: np.ndarray | None, T_fit: np.ndarray) -> np.ndarray:
        """A depth fit averaged with the prior when they differ by the sensor's noise (``depth.smoothing``)."""
        cfg = self.config.depth
        if T_prior is None or cfg.smoothing >= 1.0:
            return T_fit
        distance_m, angle_rad = pose_error(T_prior, T_fit)
        if distance_m > cfg.smooth_within_m or np.rad2deg(angle_rad) > cfg.smooth_within_deg:
            return T_fit
        return T_prior @ se3_exp(cfg.smoothing * se3_log(inverse(T_prior) @ T_fit))

    def _depth_misaligned(self, image: np.ndarray, depth_m: np.ndarray) -> str:
        """Why the depth is not aligned to the colour frame (:func:`~dfbvs.depth.depth_colour_offset_px`), or "";
        checked while it has not passed, then every ``depth.alignment_every`` depth frames."""
        cfg = self.config.depth
        self._depth_frames += 1
        if not cfg.alignment_max_px or (self._depth_aligned and self._depth_frames % cfg.alignment_every):
            return ""
        found = depth_colour_offset_px(image, depth_m)
        self._depth_aligned = found is None or max(abs(found[0]), abs(found[1])) < cfg.alignment_max_px or \
            found[2] < cfg.alignment_min_gain
        if self._depth_aligned or found is None:
            return ""
        return (f"the depth image's steps line up with the colour image's edges {found[0]:+d}, {found[1]:+d} px away "
                f"(>= depth.alignment_max_px={cfg.alignment_max_px}): depth not aligned to the colour frames (align "
                "it to the colour stream, e.g. rs.align, or register it), or from another instant")

    def _depth_step(self, image: np.ndarray, depth_m: object, timestamp_s: float, t0: float) -> ServoStep:
        """One cycle on the live depth (:mod:`dfbvs.depth`), for a goal view the shading guard refuses: the goal
        view's surface fitted from the last credible pose carried forward (found without one,
        :func:`~dfbvs.depth.acquire_depth`), ``depth.control_points`` of its points projected at the fitted pose as
        the law's correspondences, the lock's checks; a fit moves the camera only when it agrees with the previous
        one (always, whatever ``lock.confirm``: two independent depth frames)."""
        cfg, target = self.config, self.target
        model_camera = target.render.camera
        H, W = image.shape[:2]
        depth = as_depth_image(depth_m, H, W)
        camera = model_camera if (W, H) == (model_camera.width_px, model_camera.height_px) else \
            model_camera.rescaled(W, H)
        if self._depth is None:
            self._depth = depth_model(target.render.depth_m, target.render.mask, model_camera,
                                      cfg.depth.model_points)
        model = self._depth
        timings: dict[str, float] = {}
        none = Correspondences.empty()

        def held(status: StepStatus, T: np.ndarray | None, reason: str) -> ServoStep:
            self._hold_reference(status, T, timestamp_s)
            timings["total_ms"] = (time.perf_counter() - t0) * 1e3
            return ServoStep(v_camera=np.zeros(6), status=status, correspondences=none, all_matches=none,
                             mean_error_px=float("nan"), tracking_mode=False, timings_ms=timings,
                             timestamp_s=timestamp_s, T_current_target=T, source=CorrespondenceSource.NONE,
                             reason=reason)

        valid = np.isfinite(depth)
        if int(valid.sum()) < cfg.depth.min_points:
            return held(StepStatus.TOO_FEW_INLIERS, None, f"the depth image has {int(valid.sum())} pixels with depth "
                        "(no depth stream, or one not aligned to the colour frames?)")
        misaligned = self._depth_misaligned(image, depth)
        if misaligned:
            return held(StepStatus.IMPLAUSIBLE, None, misaligned)
        prior = self._reference_at(timestamp_s)
        fit = None if prior is None else register_depth(model, depth, camera, prior, cfg.depth)
        if fit is None or fit.credible(cfg.depth):  # no prior, or lost from it: look for the part anew
            fit = acquire_depth(model, depth, camera, cfg.depth)
        timings["depth_ms"] = (time.perf_counter() - t0) * 1e3
        why = "depth: nothing stands off the dominant plane (the table) in the live depth image" if fit is None \
            else fit.credible(cfg.depth)
        if why:
            live_m, goal_m = float(np.median(depth[valid])), float(np.median(model.points_m[:, 2]))
            if not 1 / 3 < live_m / goal_m < 3:  # a unit off: centimetres, 0.1 mm, an unscaled raw image
                why += (f"; the live depth's median is {live_m:.3g} m where the goal view's part is {goal_m:.3g} m "
                        "away: depth in another unit?")
            return held(StepStatus.TOO_FEW_INLIERS, None, why)
        assert fit is not None
        T = self._smoothed(prior, fit.T_current_target)
        idx = np.unique(np.linspace(0, len(model.points_m) - 1, cfg.depth.control_points).astype(np.int64))
        P = model.points_m[idx]
        why = implausible_pose(T, P, P[:, 2], cfg.lock)
        if why:
            return held(StepStatus.IMPLAUSIBLE, T, why)
        uv_target = target.camera.pixels_from(model_camera, model.uv_target_px[idx])
        uv_current = target.camera.project(transform_points(T, P))
        inliers = Correspondences(uv_current, uv_target, idx, idx, np.ones(len(idx)))
        out = self.law(self._control_input(inliers, T, points_target_m=P))
        why = implausible_twist(out.v_camera, cfg.lock)
        if why:
            return held(StepStatus.IMPLAUSIBLE, T, why)
        why = self._unconfirmed(T, timestamp_s, always=True)
        if why:
            return held(StepStatus.UNCONFIRMED, T, why)
        self._reference = (np.asarray(T, dtype=np.float64), timestamp_s, np.array(out.v_camera))
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        return ServoStep(v_camera=out.v_camera, status=StepStatus.OK, correspondences=inliers, all_matches=inliers,
                         mean_error_px=float(np.mean(np.linalg.norm(uv_current - uv_target, axis=1))),
                         tracking_mode=False, timings_ms=timings, timestamp_s=timestamp_s, T_current_target=T,
                         source=CorrespondenceSource.DEPTH, gain=out.gain, condition_number=out.condition_number)

    def step(self, image: np.ndarray, timestamp_s: float = float("nan"), depth_m: np.ndarray | None = None,
             ) -> ServoStep:
        """One cycle on ``image`` (the camera's colour frame) taken at ``timestamp_s``; ``depth_m``, an RGB-D
        camera's depth aligned to it, serves a goal view of shading (``servo.depth``) and is otherwise unused."""
        cfg = self.config
        t0 = time.perf_counter()
        image = as_rgb_frame(image, self.target.render.camera)
        if self.unservable and depth_m is not None and cfg.depth.enabled:
            return self._depth_step(image, depth_m, timestamp_s, t0)
        if self.unservable:  # the goal view cannot be trusted under another light: never move on it
            none = Correspondences.empty()
            return ServoStep(v_camera=np.zeros(6), status=StepStatus.UNRELIABLE, correspondences=none,
                             all_matches=none, mean_error_px=float("nan"), tracking_mode=False,
                             timings_ms={"total_ms": (time.perf_counter() - t0) * 1e3}, timestamp_s=timestamp_s,
                             source=CorrespondenceSource.NONE, reason=self.unservable)
        rgb = resize_area(image, cfg.working_width_px, cfg.working_height_px)
        feats, zoom = self._live_features(image, rgb)
        t1 = time.perf_counter()

        tried = [(i, *self._match_and_reject(feats, i)) for i in self._views_to_try()]
        view_index, matches, rejection = max(tried, key=lambda r: -1 if r[2] is None else r[2].num_inliers)
        if self.views[view_index] is not self.view:  # another view: its own feature indices
            self._tracking.reset()
            self.view = self.views[view_index]
        target = self.view
        tracking = self._tracking.active
        tracked_idx = self._tracking.target_idx
        t2 = time.perf_counter()

        timings = {"extract_ms": (t1 - t0) * 1e3, "match_ms": (t2 - t1) * 1e3}

        def failed(status: StepStatus, inliers: Correspondences, T: np.ndarray | None = None,
                   reason: str = "") -> ServoStep:
            if self._tracking.active:  # the tracked set no longer works: match the full target again
                self._tracking.leave()
            self._roll_rad = None  # acquire again, from every view ...
            # ... in the whole image, or once zoomed where a weak lock's pose puts the object (a hint, not a lock)
            self._object_px = self._object_at(target, T) if zoom == 1.0 and len(inliers) else None
            if status is StepStatus.UNCONFIRMED:  # credible: the next cycle looks where it is, to confirm it
                self._object_px = self._object_at(target, T)
            self._hold_reference(status, T, timestamp_s)
            timings["total_ms"] = (time.perf_counter() - t0) * 1e3
            return ServoStep(v_camera=np.zeros(6), status=status, correspondences=inliers, all_matches=matches,
                             mean_error_px=float("nan"), tracking_mode=tracking, timings_ms=timings,
                             timestamp_s=timestamp_s, T_current_target=T, source=CorrespondenceSource.NONE,
                             reason=reason, zoom=zoom)

        if rejection is None:
            return failed(StepStatus.TOO_FEW_MATCHES, Correspondences.empty(),
                          reason=f"{len(matches)} matches < min_inliers={cfg.min_inliers}")

        inliers = matches.subset(np.flatnonzero(rejection.inlier_mask))
        inlier_ratio = len(inliers) / len(matches)
        T_current_target = getattr(rejection, "T_current_target", None)
        t3 = time.perf_counter()
        timings["reject_ms"] = (t3 - t2) * 1e3
        # patches align (translation only) on the upright view and, with rolled views, within ~15 deg of roll;
        # there a refinement that cannot verify a weak lock vetoes it (fewer refined points than a lock needs end the
        # step: a mirrored frame does that), beyond it the descriptor matches are used unrefined, as they are when
        # a strong descriptor lock's patches do not align (a thin sheet before a busy background)
        upright = target.inplane_rad == 0.0 and (len(self.views) == 1 or abs(planar_rotation_rad(
            inliers.uv_target_px, inliers.uv_current_px)) < np.deg2rad(MAX_REFINE_ROLL_DEG))
        refined_used = False  # the inliers are sub-pixel refined and verified
        descriptor_inliers, T_descriptor = inliers, T_current_target
        candidates = tracked_idx if tracked_idx is not None else np.arange(len(target.features))

        def verified_points(on: PreparedTarget) -> int:
            """How many of this cycle's points refine and verify on the target ``on`` (0: too few to verify)."""
            refined, T_refined = refine_correspondences(descriptor_inliers, image, rgb, on, T_descriptor, candidates,
                                                        self._recheck_pnp, cfg.min_inliers)
            return 0 if T_refined is None else len(refined)

        if target.refinement is not None and upright:
            refined, T_refined = refine_correspondences(inliers, image, rgb, target, T_current_target, candidates,
                                                        self._recheck_pnp, cfg.min_inliers)
            if len(refined) >= cfg.lock.min_inliers or len(inliers) < cfg.lock.strong_match_inliers:
                inliers = refined  # (a veto when too few refined points verify a weak lock)
                if T_refined is not None:  # the pose that the refined points agree on: the more accurate one
                    T_current_target, refined_used = T_refined, True
            t4 = time.perf_counter()
            timings["refine_ms"] = (t4 - t3) * 1e3
            t3 = t4
        if len(inliers) < cfg.min_inliers:
            return failed(StepStatus.TOO_FEW_INLIERS, inliers, T_current_target,
                          f"{len(inliers)} inliers < min_inliers={cfg.min_inliers}")
        n_edges = 0
        if cfg.edges.enabled and upright and T_current_target is not None:
            fit = self.fit_edges(image, target, inliers, T_current_target, refined_used)
            t4 = time.perf_counter()
            timings["edges_ms"] = (t4 - t3) * 1e3
            t3 = t4
            if fit is not None and fit.fit_fraction < cfg.edges.veto_fraction:  # (off by default)
                return failed(StepStatus.IMPLAUSIBLE, inliers, T_current_target,
                              f"{fit.n_edges} of the {fit.n_in_view} outline points in view fit the pose "
                              f"< edges.veto_fraction={cfg.edges.veto_fraction}: not the object's pose")
            if fit is not None and fit.usable(cfg.edges):
                # the law sees the inliers' points where the outline-and-keypoint pose puts them
                T_current_target, n_edges = fit.T_current_target, fit.n_edges
                inliers = at_pose(inliers, target, T_current_target)
        lock = cfg.lock
        if len(inliers) < lock.min_inliers:
            return failed(StepStatus.TOO_FEW_INLIERS, inliers, T_current_target,
                          f"{len(inliers)} inliers < servo.lock.min_inliers={lock.min_inliers}: too few to trust")
        if inlier_ratio < lock.min_inlier_ratio:
            return failed(StepStatus.IMPLAUSIBLE, inliers, T_current_target,
                          f"{inlier_ratio:.2f} of the {len(matches)} matches are inliers < "
                          f"servo.lock.min_inlier_ratio={lock.min_inlier_ratio}: too few to trust")
        idx_t = inliers.index_target
        why = implausible_pose(T_current_target, target.points_camera_goal_m[idx_t], target.Z_star_m[idx_t], lock)
        if why:
            return failed(StepStatus.IMPLAUSIBLE, inliers, T_current_target, why)

        out = self.law(self._control_input(inliers, T_current_target))
        why = implausible_twist(out.v_camera, lock)
        if why:
            return failed(StepStatus.IMPLAUSIBLE, inliers, T_current_target, why)
        if T_current_target is not None:
            why = self._unconfirmed(T_current_target, timestamp_s)
            if why:
                return failed(StepStatus.UNCONFIRMED, inliers, T_current_target, why)
            self._reference = (np.asarray(T_current_target, dtype=np.float64), timestamp_s, np.array(out.v_camera))
        self._object_px = self._object_at(target, T_current_target)  # the next cycle's zoom window
        if len(self.views) > 1:  # the image's roll w.r.t. the target: the next cycle's view
            self._roll_rad = planar_rotation_rad(inliers.uv_target_px, inliers.uv_current_px)
        # the next cycles align on the target relit to this image's lighting (near the goal, when due)
        if refined_used and cfg.relight.enabled and T_current_target is not None:
            t4 = time.perf_counter()
            if self.relight(image, T_current_target, verified_points) is not None:
                timings["relight_ms"] = (time.perf_counter() - t4) * 1e3
        mean_err = float(np.mean(np.linalg.norm(inliers.uv_current_px - inliers.uv_target_px, axis=1)))
        timings["control_ms"] = (time.perf_counter() - t3) * 1e3
        self._tracking.update(mean_err, idx_t)
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        return ServoStep(v_camera=out.v_camera, status=StepStatus.OK, correspondences=inliers, all_matches=matches,
                         mean_error_px=mean_err, tracking_mode=tracking, timings_ms=timings, timestamp_s=timestamp_s,
                         T_current_target=T_current_target, source=CorrespondenceSource.DETECTION, gain=out.gain,
                         condition_number=out.condition_number, n_edges=n_edges, zoom=zoom)


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
