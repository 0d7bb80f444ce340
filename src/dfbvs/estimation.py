"""Robust rejection of false correspondences by fitting a geometric model with RANSAC or MAGSAC (OpenCV).

Three models, all on :class:`~dfbvs.matching.Correspondences` (current image <- target image):

- fundamental matrix ``F_current_target``: ``[u_c, v_c, 1] @ F @ [u_t, v_t, 1] = 0`` (any rigid scene);
- homography ``H_current_target``: ``uv_current ~ H @ uv_target`` (planar object or pure rotation);
- PnP with the target's 3D points (target keypoints unprojected with the target camera and the rendered
  depth ``Z*``): the geometrically exact model for a rigid object; it yields ``T_current_target``, the pose
  of the target camera in the current camera frame (``p_current = T_current_target @ p_target``).

Each returns a typed result with an :class:`EstimationStatus`, an inlier mask over the input
correspondences and the model. Too few correspondences is a status (``INSUFFICIENT``), not an exception.
Thresholds are in pixels.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from functools import partial
from typing import Callable, Optional, Protocol, TypeVar, Union

import numpy as np

from .camera import Camera
from .errors import ConfigError
from .geometry import transform_points
from .matching import Correspondences
from .registry import Registry


class EstimationStatus(enum.Enum):
    OK = "ok"
    INSUFFICIENT = "insufficient"  # fewer correspondences (or valid 3D points) than the model needs
    FAILED = "failed"  # the robust fit found no model (degenerate configuration)
    NOT_ESTIMATED = "not_estimated"  # the pass-through rejector: every correspondence kept


class RobustMethod(enum.Enum):
    RANSAC = "ransac"
    MAGSAC = "magsac"  # MAGSAC++ (cv2.USAC_MAGSAC)


# --- configuration -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustConfig:
    """``threshold_px``: inlier threshold on the model's pixel error (for MAGSAC, the maximum threshold);
    ``confidence`` of the sampling; ``max_iterations``; ``seed`` of OpenCV's RNG (reproducible results)."""

    method: RobustMethod = RobustMethod.MAGSAC
    threshold_px: float = 1.0
    confidence: float = 0.999
    max_iterations: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", RobustMethod(self.method))
        if not (np.isfinite(self.threshold_px) and self.threshold_px > 0):
            raise ConfigError(f"threshold_px={self.threshold_px!r}: must be > 0")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence={self.confidence!r}: must be in (0, 1)")
        if int(self.max_iterations) != self.max_iterations or self.max_iterations <= 0:
            raise ConfigError(f"max_iterations={self.max_iterations!r}: must be a positive integer")


@dataclass(frozen=True)
class FundamentalConfig(RobustConfig):
    """Sampson-distance threshold (px)."""

    threshold_px: float = 1.0


@dataclass(frozen=True)
class HomographyConfig(RobustConfig):
    """Transfer-error threshold (px) in the current image."""

    threshold_px: float = 3.0


@dataclass(frozen=True)
class PnPConfig(RobustConfig):
    """Reprojection-error threshold (px) in the current image; ``refine`` re-fits the pose on the inliers
    (Levenberg-Marquardt)."""

    threshold_px: float = 2.0
    refine: bool = True


# --- results -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RejectionResult:
    """``inlier_mask``: (M,) bool over the input correspondences; ``method``: what was fitted."""

    status: EstimationStatus
    inlier_mask: np.ndarray
    method: str

    def __post_init__(self) -> None:
        mask = np.asarray(self.inlier_mask, dtype=bool).reshape(-1)
        mask.setflags(write=False)
        object.__setattr__(self, "inlier_mask", mask)

    @property
    def num_inliers(self) -> int:
        return int(self.inlier_mask.sum())

    @property
    def ok(self) -> bool:
        return self.status in (EstimationStatus.OK, EstimationStatus.NOT_ESTIMATED)

    def inliers(self, correspondences: Correspondences) -> Correspondences:
        if len(correspondences) != len(self.inlier_mask):
            raise ValueError(f"mask of {len(self.inlier_mask)} for {len(correspondences)} correspondences")
        return correspondences.subset(self.inlier_mask)

    def model_dict(self) -> dict:
        """The estimated model as JSON-ready lists (empty when there is none)."""
        return {}


@dataclass(frozen=True)
class FundamentalResult(RejectionResult):
    """``F_current_target`` (3x3, pixels) or None."""

    F_current_target: Optional[np.ndarray] = None

    def model_dict(self) -> dict:
        return {} if self.F_current_target is None else {"F_current_target": self.F_current_target.tolist()}


@dataclass(frozen=True)
class HomographyResult(RejectionResult):
    """``H_current_target`` (3x3, pixels): ``uv_current ~ H @ uv_target``, or None."""

    H_current_target: Optional[np.ndarray] = None

    def model_dict(self) -> dict:
        return {} if self.H_current_target is None else {"H_current_target": self.H_current_target.tolist()}


@dataclass(frozen=True)
class PnPResult(RejectionResult):
    """``T_current_target`` (4x4): pose of the target camera in the current camera frame, or None;
    ``reprojection_error_px`` (M,): error of every correspondence under that pose (NaN where the target
    has no depth or no pose was found); ``has_depth`` (M,): target keypoints with a valid ``Z*``."""

    T_current_target: Optional[np.ndarray] = None
    reprojection_error_px: Optional[np.ndarray] = None
    has_depth: Optional[np.ndarray] = None

    def model_dict(self) -> dict:
        return {} if self.T_current_target is None else {"T_current_target": self.T_current_target.tolist()}


# --- shared helpers ----------------------------------------------------------------------------------------
FUNDAMENTAL_MIN_POINTS = 8
HOMOGRAPHY_MIN_POINTS = 4
PNP_MIN_POINTS = 4


def _cv2_method(method: RobustMethod) -> int:
    import cv2

    return cv2.USAC_MAGSAC if method is RobustMethod.MAGSAC else cv2.RANSAC


def _mask_from_cv2(mask: Optional[np.ndarray], n: int) -> np.ndarray:
    return np.zeros(n, bool) if mask is None else np.asarray(mask).reshape(-1).astype(bool)


def _seed(config: RobustConfig) -> None:
    import cv2

    cv2.setRNGSeed(int(config.seed))


# --- the three models --------------------------------------------------------------------------------------
_R = TypeVar("_R", bound=RejectionResult)


def _fit_two_view(correspondences: Correspondences, config: RobustConfig, min_points: int, name: str,
                  result_cls: Callable[..., _R], fit) -> _R:
    """Shared path of the 3x3 two-view models: too few points -> INSUFFICIENT; an OpenCV failure (None, or
    a ``cv2.error`` that MAGSAC raises on some degenerate sets, e.g. '!model.empty()') -> FAILED.
    ``fit(cv2, uv_target_px, uv_current_px, method)`` returns ``(model, mask)``."""
    import cv2

    n = len(correspondences)
    if n < min_points:
        return result_cls(EstimationStatus.INSUFFICIENT, np.zeros(n, bool), name)
    _seed(config)
    try:
        model, mask = fit(cv2, correspondences.uv_target_px, correspondences.uv_current_px,
                          _cv2_method(config.method))
    except cv2.error:
        model, mask = None, None
    if model is None or model.shape != (3, 3):
        return result_cls(EstimationStatus.FAILED, np.zeros(n, bool), name)
    return result_cls(EstimationStatus.OK, _mask_from_cv2(mask, n), name, model.astype(np.float64))


def reject_fundamental(correspondences: Correspondences,
                       config: FundamentalConfig = FundamentalConfig()) -> FundamentalResult:
    """Fit ``F_current_target`` robustly; inliers have a Sampson error below ``threshold_px``.
    OpenCV's convention: x2^T F x1 = 0 with x1 = first argument (target), x2 = second (current)."""
    return _fit_two_view(correspondences, config, FUNDAMENTAL_MIN_POINTS, "fundamental", FundamentalResult,
                         lambda cv2, uv_t, uv_c, method: cv2.findFundamentalMat(
                             uv_t, uv_c, method, config.threshold_px, config.confidence, config.max_iterations))


def reject_homography(correspondences: Correspondences,
                      config: HomographyConfig = HomographyConfig()) -> HomographyResult:
    """Fit ``H_current_target`` robustly; inliers have a transfer error below ``threshold_px``."""
    return _fit_two_view(correspondences, config, HOMOGRAPHY_MIN_POINTS, "homography", HomographyResult,
                         lambda cv2, uv_t, uv_c, method: cv2.findHomography(
                             uv_t, uv_c, method, config.threshold_px, maxIters=config.max_iterations,
                             confidence=config.confidence))


def sample_depth(depth_m: np.ndarray, uv_px: np.ndarray) -> np.ndarray:
    """Depth (N,) at the nearest pixel of each ``uv_px`` (N, 2); NaN outside the image or where the depth
    is NaN / not positive. Nearest, not bilinear: interpolating across an object's silhouette would invent
    points between the object and the background."""
    depth = np.asarray(depth_m, dtype=np.float64)
    uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(uv), np.nan)
    if len(uv) == 0 or depth.ndim != 2:
        return out
    cols, rows = np.rint(uv[:, 0]), np.rint(uv[:, 1])
    inside = np.isfinite(cols) & np.isfinite(rows) & (cols >= 0) & (rows >= 0) \
        & (cols < depth.shape[1]) & (rows < depth.shape[0])
    z = depth[rows[inside].astype(int), cols[inside].astype(int)]
    out[inside] = np.where(np.isfinite(z) & (z > 0), z, np.nan)
    return out


def target_points_m(uv_target_px: np.ndarray, depth_target_m: np.ndarray, camera_target: Camera) -> np.ndarray:
    """3D points (N, 3) in the target camera frame of target keypoints, from the rendered depth ``Z*``
    (rows of NaN where there is no depth)."""
    z = sample_depth(depth_target_m, uv_target_px)
    pts = np.full((len(z), 3), np.nan)
    ok = np.isfinite(z)
    if ok.any():
        pts[ok] = camera_target.unproject(np.asarray(uv_target_px, dtype=np.float64).reshape(-1, 2)[ok], z[ok])
    return pts


def reject_pnp(correspondences: Correspondences, points_target_m: np.ndarray, camera_current: Camera,
               config: PnPConfig = PnPConfig()) -> PnPResult:
    """Fit ``T_current_target`` from target 3D points (M, 3) (target camera frame, NaN rows = no depth) and
    the current pixels; inliers reproject within ``threshold_px`` in the current image."""
    import cv2

    from .geometry import so3_exp

    n = len(correspondences)
    pts = np.asarray(points_target_m, dtype=np.float64).reshape(-1, 3)
    if len(pts) != n:
        raise ValueError(f"{len(pts)} target points for {n} correspondences")
    has_depth = np.all(np.isfinite(pts), axis=1)
    mask = np.zeros(n, bool)
    nan_err = np.full(n, np.nan)
    if has_depth.sum() < PNP_MIN_POINTS:
        return PnPResult(EstimationStatus.INSUFFICIENT, mask, "pnp", None, nan_err, has_depth)
    obj = pts[has_depth]
    img = correspondences.uv_current_px[has_depth]
    K, dist = camera_current.K, np.asarray(camera_current.dist, dtype=np.float64)
    _seed(config)
    try:
        if config.method is RobustMethod.MAGSAC:
            params = cv2.UsacParams()
            params.sampler = cv2.SAMPLING_UNIFORM
            params.score = cv2.SCORE_METHOD_MAGSAC
            params.threshold = config.threshold_px
            params.confidence = config.confidence
            params.maxIterations = config.max_iterations
            params.loMethod = cv2.LOCAL_OPTIM_SIGMA
            params.randomGeneratorState = int(config.seed)
            found, _, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, dist, params=params)  # also returns K
        else:
            found, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, dist, iterationsCount=config.max_iterations,
                                                        reprojectionError=config.threshold_px,
                                                        confidence=config.confidence, flags=cv2.SOLVEPNP_EPNP)
    except cv2.error:
        found = False
    if not found or rvec is None or inl is None or len(inl) < PNP_MIN_POINTS:
        return PnPResult(EstimationStatus.FAILED, mask, "pnp", None, nan_err, has_depth)
    inl = np.asarray(inl).reshape(-1)
    if config.refine:
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K, dist, rvec, tvec)
    T = np.eye(4)
    T[:3, :3] = so3_exp(np.asarray(rvec, dtype=np.float64).reshape(3))
    T[:3, 3] = np.asarray(tvec, dtype=np.float64).reshape(3)
    p_current = transform_points(T, obj)
    err = np.full(n, np.nan)
    in_front = p_current[:, 2] > 0
    sub = np.full(len(obj), np.inf)
    if in_front.any():
        sub[in_front] = np.linalg.norm(camera_current.project(p_current[in_front]) - img[in_front], axis=1)
    err[has_depth] = sub
    mask = np.zeros(n, bool)
    mask[has_depth] = sub <= config.threshold_px
    return PnPResult(EstimationStatus.OK, mask, "pnp", T, err, has_depth)


# --- rejectors: one interface, one registry -----------------------------------------------------------------
@dataclass(frozen=True)
class TargetGeometry:
    """What PnP needs beyond the correspondences: the 3D point (target camera frame, metres) of each target
    keypoint, given either as ``points_by_target_index_m`` (N_target, 3), row ``i`` for target keypoint
    ``i`` (NaN rows: no depth), or as the target's rendered depth ``Z*`` (H, W, metres, NaN background)
    sampled at the target pixels; the target camera; the current camera (the target camera when None)."""

    depth_target_m: Optional[np.ndarray]
    camera_target: Camera
    camera_current: Optional[Camera] = None
    points_by_target_index_m: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if (self.depth_target_m is None) == (self.points_by_target_index_m is None):
            raise ConfigError("TargetGeometry needs exactly one of depth_target_m or points_by_target_index_m")

    def points_m(self, correspondences: Correspondences) -> np.ndarray:
        """(M, 3) target points of the correspondences (NaN rows where the target has no depth)."""
        if self.points_by_target_index_m is not None:
            return np.asarray(self.points_by_target_index_m)[correspondences.index_target]
        if self.depth_target_m is None:  # excluded by __post_init__
            raise ConfigError("TargetGeometry needs exactly one of depth_target_m or points_by_target_index_m")
        return target_points_m(correspondences.uv_target_px, self.depth_target_m, self.camera_target)


class Rejector(Protocol):
    """``rejector(correspondences, geometry=None) -> RejectionResult``."""

    @property
    def config(self) -> object: ...  # read-only here, so that implementations may narrow its type

    def __call__(self, correspondences: Correspondences,
                 geometry: Optional[TargetGeometry] = None) -> RejectionResult: ...


@dataclass(frozen=True)
class NoRejectionConfig:
    """The pass-through rejector has no settings."""


class NoRejection:
    """Keeps every correspondence (a baseline)."""

    def __init__(self, config: NoRejectionConfig = NoRejectionConfig()) -> None:
        self.config = config

    def __call__(self, correspondences: Correspondences,
                 geometry: Optional[TargetGeometry] = None) -> RejectionResult:
        return RejectionResult(EstimationStatus.NOT_ESTIMATED, np.ones(len(correspondences), bool), "none")


class TwoViewRejector:
    """A model fitted on the pixels alone (no 3D points): ``fit(correspondences, config)`` is
    :func:`reject_fundamental` or :func:`reject_homography`."""

    def __init__(self, fit: Callable[..., RejectionResult], config: RobustConfig) -> None:
        self.fit = fit
        self.config = config

    def __call__(self, correspondences: Correspondences,
                 geometry: Optional[TargetGeometry] = None) -> RejectionResult:
        return self.fit(correspondences, self.config)


class PnPRejector:
    """PnP with the target's 3D points (needs the :class:`TargetGeometry`); its result carries
    ``T_current_target``."""

    def __init__(self, config: PnPConfig = PnPConfig()) -> None:
        self.config = config

    def __call__(self, correspondences: Correspondences,
                 geometry: Optional[TargetGeometry] = None) -> PnPResult:
        if geometry is None:
            raise ConfigError("rejector 'pnp' needs the target geometry (rendered depth Z* and cameras), got None")
        return reject_pnp(correspondences, geometry.points_m(correspondences),
                          geometry.camera_current or geometry.camera_target, self.config)


REJECTORS: Registry[Rejector] = Registry("rejector")
REJECTORS.register("none", NoRejection, NoRejectionConfig)
REJECTORS.register("fundamental", partial(TwoViewRejector, reject_fundamental), FundamentalConfig)
REJECTORS.register("homography", partial(TwoViewRejector, reject_homography), HomographyConfig)
REJECTORS.register("pnp", PnPRejector, PnPConfig)
DEFAULT_REJECTOR = "fundamental"


def available_rejectors() -> list[str]:
    return REJECTORS.names()


def build_rejector(config: object) -> Rejector:
    """The rejector a config describes (its type names the model)."""
    return REJECTORS.build(config)


def get_rejector(name: str = DEFAULT_REJECTOR, config: Optional[RobustConfig] = None,
                 **overrides: Union[float, int, str, bool]) -> Rejector:
    """Rejector by name ("none", "fundamental", "homography", "pnp") with config and/or overrides
    (e.g. ``threshold_px=2.0, method="ransac"``)."""
    values = {} if config is None else {f.name: getattr(config, f.name) for f in fields(REJECTORS.config_class(name))
                                        if hasattr(config, f.name)}
    values.update(overrides)
    return REJECTORS.build(REJECTORS.default_config(name, **values))


# --- when a fitted model is trusted --------------------------------------------------------------------------
@dataclass(frozen=True)
class TrustConfig:
    """When a fitted model's inliers are enough to trust that the two images show the same object: at least
    ``min_inliers`` inliers and ``min_inlier_ratio`` of the matches. A model fitted to random matches still finds
    some inliers: with 53-180 ALIKED matches between two random-noise images (320x240 and 640x480, 20 pairs),
    MAGSAC found 14-43 fundamental inliers (ratio 0.11-0.33) and 6-15 homography inliers (0.04-0.08); genuine
    pairs of the same part 5 cm / 8 deg apart in clutter gave 33-60 fundamental (0.45-0.69) and 28-47 homography
    inliers (0.38-0.67).
    """

    min_inliers: int = 12
    min_inlier_ratio: float = 0.2

    def __post_init__(self) -> None:
        if self.min_inliers < 0 or not 0.0 <= self.min_inlier_ratio <= 1.0:
            raise ConfigError(f"trust: need min_inliers >= 0 and min_inlier_ratio in [0, 1], got "
                              f"{self.min_inliers!r}, {self.min_inlier_ratio!r}")


#: the default trust per model: a fundamental matrix fits random matches far more easily than the others
DEFAULT_TRUST: dict[str, TrustConfig] = {
    "fundamental": TrustConfig(min_inliers=20, min_inlier_ratio=0.4),
    "homography": TrustConfig(min_inliers=12, min_inlier_ratio=0.2),
    "pnp": TrustConfig(min_inliers=12, min_inlier_ratio=0.1),
}

#: the status of a fitted model whose inliers are too few to trust (:func:`trust_status`)
TOO_FEW_INLIERS_TO_TRUST = "too_few_inliers_to_trust"


def trust_status(result: RejectionResult, n_matches: int, trust: Optional[TrustConfig] = None) -> tuple[str, str]:
    """``(status, reason)`` of a fitted model: its own status when it is not OK (``insufficient``, ``failed``,
    ``not_estimated``), :data:`TOO_FEW_INLIERS_TO_TRUST` with the reason when its inliers are below ``trust``
    (default: :data:`DEFAULT_TRUST` for the model), else ``("ok", "")``."""
    if result.status is not EstimationStatus.OK:
        return result.status.value, ""
    trust = trust or DEFAULT_TRUST.get(result.method, TrustConfig())
    n = result.num_inliers
    ratio = n / n_matches if n_matches else 0.0
    if n < trust.min_inliers or ratio < trust.min_inlier_ratio:
        return TOO_FEW_INLIERS_TO_TRUST, (f"{n} {result.method} inliers of {n_matches} matches ({ratio:.2f}); "
                                          f"trusted from {trust.min_inliers} inliers and a ratio of "
                                          f"{trust.min_inlier_ratio}")
    return "ok", ""
