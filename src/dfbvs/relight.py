"""The target relit to the live image's lighting: the appearance gap behind the last tenths of a degree.

Sub-pixel refinement (:mod:`.refine`) aligns the target render's patches on the camera's image. Lit differently,
a corner where faces meet looks different (which face is brighter changes with the light's direction), and the
alignment follows the look: the patches agree with each other and disagree with the truth. Measured with
``benchmarks/goal_bias.py`` on accuracy18 episodes: a target rendered under the scene's own lights halves the
settled-pose bias (docs/convergence.md). A real scene's lights are unknown, so they are fitted.

The target's *shading basis* (:attr:`~dfbvs.render.target.TargetRender.shading_basis`: the object under the
ambient term alone, then under one directional light from each of K directions) is linear in the lights: a
rasteriser's Lambert and Blinn-Phong terms add up over lights. Near the goal, with the pose ``T_current_target``
the refined points agree on, every object pixel of the target is looked up in the camera's image, and the
non-negative combination of basis images that best explains those grey levels is found
(:func:`fit_lighting`: non-negative least squares, re-weighted so occluders, shadows and highlights the basis
cannot make do not pull; the pixels around the target's keypoints weighted up, since they are what the
alignment reads). That combination is the relit target (:func:`relit_rgb`); the servo aligns on it from then on
(``ServoConfig.relight``).

Data flow: ``TargetRender.shading_basis`` (once, :func:`~dfbvs.render.target.render_target`) ->
:func:`shading_samples` (once per target) -> :func:`fit_lighting` (near the goal, every ``refit_cycles`` cycles)
-> :func:`relit_rgb` -> the refinement target's aligned image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Camera
from .errors import ConfigError
from .geometry import pose_error, transform_points
from .imaging import grey_float32, rgb8_from_grey
from .render.target import TargetRender

#: How :class:`RelightConfig` chooses between two shading bases (``second_basis_choice``).
SECOND_BASIS_CHOICES = ("residual", "verified")


@dataclass(frozen=True)
class RelightConfig:
    """Fitting the target's lighting to the camera's image (pixels of the camera's own image).

    - ``enabled``: on by default since accuracy18 went 16/18 -> 18/18 within 1 mm and 0.1 deg, median 0.18 ->
      0.09 mm (docs/convergence.md); the target render then also carries its shading basis, ``directions`` light
      directions (+ the ambient term), ~0.1 s of rendering per direction. A target without a basis (rendered
      without it, or loaded from a folder) is simply not relit.
    - ``keypoint_weight``: pixels within ``keypoint_window_px`` (square side) of a target keypoint count this
      many times more in the fit than the rest of the object (the keypoints' patches are what is aligned).
    - ``refit_cycles``: the lighting is fitted on the first cycle near the goal, then again every this many
      cycles (the pose keeps improving; the lights do not move).
    - ``near_goal_rotation_deg`` / ``near_goal_translation_ratio``: fitted only when the pose is this close to the
      goal (translation as a fraction of the target's median depth): the basis is the goal view's.
    - ``max_level``: live grey levels at or above this are clipped by the sensor and not fitted.
    - ``iterations``: re-weighted rounds (weights ``min(1, 2 s / |r|)``, ``s`` the residuals' robust scale).
    - ``min_pixels``: fewer object pixels seen in the image than this = no fit.
    - ``stride_px``: the fit samples every this-many-th object pixel in each direction.
    - ``image_gain``: fit the image's own smooth gain over the object (vignetting) apart from the lights; without
      it, the default scene's 25 % vignetting was taken for lighting and the relit bracket settled 0.22 mm from
      the goal instead of 0.14 mm (``benchmarks/goal_bias.py``, docs/convergence.md).
    - ``basis_renderer``: what draws the basis (a renderer spec, :func:`~dfbvs.render.backend.parse_renderer`): the
      ``moderngl`` rasteriser (~0.1 s a direction, no shadows), or a path tracer in linear light, e.g.
      ``blender:transfer=linear,samples=8`` (~3 s a direction here, once per target: cast shadows and
      interreflection in the basis; on path-traced frames it halved the connector's measurement error near the
      goal, docs/photoreal.md).
    - ``second_basis_renderer`` (off when empty) / ``second_basis_directions``: a second basis drawn by another
      renderer (e.g. the path tracer, 20 directions), fitted beside the first at every refit; the relit target
      comes from the second only where its fit's residual scale is at most ``second_basis_margin`` times the
      first's, i.e. where it explains the object's shading clearly better (on path-traced frames the path
      tracer's basis helped the connector's cavities and hurt the bracket, whose residual it barely lowered; on
      rasterised frames the rasteriser's basis is exact: docs/photoreal.md).
    - ``second_basis_choice``: how the basis is chosen at each refit when there are two: ``residual`` (the margin
      rule above) or ``verified`` (the target is relit with each basis's fit and the cycle's points refined on
      each; the one with more verified refined points is kept, the first on a tie; the margin is then unused).
      On path-traced frames the better basis had the more verified points on all four goals measured, while the
      residuals told them apart by 6 % on one (docs/photoreal.md).
    - ``outline_coverage``: the relit target's outline mixes the relit object with the background by the render's
      coverage of each pixel (:func:`relit_grey`; the target then has one more image,
      :attr:`~dfbvs.render.target.TargetRender.shading_coverage`); off: by the weighted sum of the basis images,
      whose backgrounds add up (the behaviour before, 13 grey levels off in the bracket's outline pixels).
    - ``refit_closer``: also refit, whenever due or not, once the pose is nearer the goal than this fraction of
      where the last fit was made (nearness: the larger of translation / (``near_goal_translation_ratio`` x depth)
      and rotation / ``near_goal_rotation_deg``, 1 at the edge of the near-goal region; a fit made nearer than
      0.05 of it is not refitted for this). The basis is the goal view's: a fit made 10 mm from the goal, where
      view-dependent highlights sit elsewhere, lasted the tracking servo's whole approach (its detections count
      the refit cycles, ~3 a second). 0: off, the default: on shiny-P3 with the tracking servo 0.5 ended once
      within and once outside (0.047 and 0.16 deg), as the servo without it does from run to run, and the per-frame
      servo a little further (0.085 -> 0.091 deg; docs/parts.md). Bench flag ``-closer``: 0.5.
    """

    enabled: bool = True
    directions: int = 50
    keypoint_weight: float = 10.0
    keypoint_window_px: int = 15
    refit_cycles: int = 20
    near_goal_rotation_deg: float = 3.0
    near_goal_translation_ratio: float = 0.05
    max_level: float = 250.0
    iterations: int = 4
    min_pixels: int = 500
    stride_px: int = 1
    image_gain: bool = True
    basis_renderer: str = "moderngl"
    second_basis_renderer: str = ""
    second_basis_directions: int = 20
    second_basis_margin: float = 0.8
    second_basis_choice: str = "residual"
    outline_coverage: bool = True
    refit_closer: float = 0.0

    def __post_init__(self) -> None:
        if self.second_basis_choice not in SECOND_BASIS_CHOICES:
            raise ConfigError(f"relight.second_basis_choice={self.second_basis_choice!r}: one of "
                              f"{', '.join(SECOND_BASIS_CHOICES)}")
        if not self.basis_renderer.strip():
            raise ConfigError("relight.basis_renderer is empty: a renderer, e.g. moderngl")
        if self.second_basis_directions < 1 or not 0 < self.second_basis_margin <= 1:
            raise ConfigError(f"relight.second_basis_directions={self.second_basis_directions!r} must be >= 1 and "
                              f"relight.second_basis_margin={self.second_basis_margin!r} in (0, 1]")
        if self.directions < 1:
            raise ConfigError(f"relight.directions={self.directions!r}: must be >= 1")
        if self.keypoint_weight < 0:
            raise ConfigError(f"relight.keypoint_weight={self.keypoint_weight!r}: must be >= 0")
        if self.refit_cycles < 1:
            raise ConfigError(f"relight.refit_cycles={self.refit_cycles!r}: must be >= 1")
        if not 0 <= self.refit_closer < 1:
            raise ConfigError(f"relight.refit_closer={self.refit_closer!r}: must be in [0, 1) (0: off)")
        if self.stride_px < 1:
            raise ConfigError(f"relight.stride_px={self.stride_px!r}: must be >= 1")
        if self.keypoint_window_px < 1:
            raise ConfigError(f"relight.keypoint_window_px={self.keypoint_window_px!r}: must be >= 1")


@dataclass(frozen=True)
class LightingFit:
    """Non-negative weights (K,) of the shading basis images, the residuals' robust scale (grey levels), the
    number of object pixels fitted, and which basis of a target with two (``TargetRender.shading_basis_split``)
    the weights use (0: the first, 1: the second; the other's weights are 0)."""

    weights: np.ndarray
    residual_levels: float
    n_pixels: int
    basis: int = 0


def goal_nearness(T_current_target: np.ndarray, depth_m: float, config: RelightConfig) -> float:
    """How near the goal (the identity) the pose ``T_current_target`` is, on the relight's near-goal scale: the
    larger of its translation / (``near_goal_translation_ratio`` x ``depth_m``) and its rotation /
    ``near_goal_rotation_deg``; 0 at the goal, 1 at the edge of the region where lighting is fitted."""
    distance_m, angle_rad = pose_error(T_current_target, np.eye(4))
    return float(max(distance_m / (config.near_goal_translation_ratio * depth_m),
                     np.rad2deg(angle_rad) / config.near_goal_rotation_deg))


def _bilinear(grey: np.ndarray, uv_px: np.ndarray) -> np.ndarray:
    """Grey levels (N,) of ``grey`` at pixels ``uv_px`` (N, 2) (OpenCV pixel centres), NaN outside."""
    h, w = grey.shape
    u, v = uv_px[:, 0], uv_px[:, 1]
    inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    u0 = np.clip(np.floor(u), 0, w - 2).astype(int)
    v0 = np.clip(np.floor(v), 0, h - 2).astype(int)
    a, b = np.clip(u - u0, 0, 1), np.clip(v - v0, 0, 1)
    out = ((1 - a) * (1 - b) * grey[v0, u0] + a * (1 - b) * grey[v0, u0 + 1]
           + (1 - a) * b * grey[v0 + 1, u0] + a * b * grey[v0 + 1, u0 + 1])
    return np.where(inside, out, np.nan)


def _nnls_normal(A: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """argmin_{x >= 0} sum w (A x - b)^2, through the (K, K) normal equations (fast for many rows)."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import nnls

    M = A.T @ (w[:, None] * A)
    M += 1e-9 * np.trace(M) * np.eye(len(M))
    c = A.T @ (w * b)
    U = cholesky(M)  # M = U^T U: ||U x - U^-T c||^2 = x^T M x - 2 c^T x + const
    x, _ = nnls(U, solve_triangular(U, c, trans="T"))
    return np.asarray(x)


@dataclass(frozen=True)
class ShadingSamples:
    """What the fit reads of the target, prepared once (:func:`shading_samples`): the object pixels' 3D points
    ``points_m`` (N, 3) in the goal camera frame, their basis grey levels ``basis`` (N, K) and their prior weights
    ``prior`` (N,) (``keypoint_weight`` near a target keypoint, else 1)."""

    points_m: np.ndarray
    basis: np.ndarray
    prior: np.ndarray


def shading_samples(render: TargetRender, keypoints_px: np.ndarray, config: RelightConfig) -> ShadingSamples | None:
    """The fit's samples of ``render`` (with a shading basis; None without, or with fewer than
    ``config.min_pixels`` object pixels): every ``config.stride_px``-th object pixel in each direction;
    ``keypoints_px`` (N, 2): the target's keypoints in the render's pixels."""
    if render.shading_basis is None:
        return None
    valid = render.mask & np.isfinite(render.depth_m)
    grid = np.zeros_like(valid)
    grid[::config.stride_px, ::config.stride_px] = True
    ys, xs = np.nonzero(valid & grid)
    if len(ys) < config.min_pixels:
        return None
    near = np.zeros(valid.shape, bool)
    half = config.keypoint_window_px // 2
    for u, v in np.rint(np.asarray(keypoints_px, np.float64)).astype(int):
        near[max(v - half, 0):v + half + 1, max(u - half, 0):u + half + 1] = True
    points = render.camera.unproject(np.stack([xs, ys], axis=1).astype(np.float64), render.depth_m[ys, xs])
    return ShadingSamples(points, np.ascontiguousarray(render.shading_basis[:, ys, xs].T, np.float64),
                          1.0 + config.keypoint_weight * near[ys, xs])


def fit_lighting(samples: ShadingSamples, camera: Camera, image: np.ndarray, T_current_target: np.ndarray,
                 config: RelightConfig, split: int = 0) -> LightingFit | None:
    """The lighting (weights of the target's shading basis) that explains the object's grey levels in ``image``
    (the camera's RGB image, seen by ``camera``, the target render's) where the pose ``T_current_target`` puts
    the ``samples``; None when fewer than ``config.min_pixels`` of them are seen unclipped. With two bases
    (``split`` > 0: columns ``[:split]`` the first, ``[split:]`` the second), each is fitted alone
    (:func:`fit_each_basis`) and the second kept only when its residual scale is at most
    ``config.second_basis_margin`` times the first's."""
    fits = fit_each_basis(samples, camera, image, T_current_target, config, split)
    return least_residual(fits, config) if fits else None


def least_residual(fits: tuple[LightingFit, ...], config: RelightConfig) -> LightingFit:
    """Of :func:`fit_each_basis`'s fits (one or two), the first, or the second when its residual scale is at most
    ``config.second_basis_margin`` times the first's (``second_basis_choice=residual``)."""
    first, *other = fits
    return other[0] if other and other[0].residual_levels <= config.second_basis_margin * first.residual_levels \
        else first


def fit_each_basis(samples: ShadingSamples, camera: Camera, image: np.ndarray, T_current_target: np.ndarray,
                   config: RelightConfig, split: int = 0) -> tuple[LightingFit, ...]:
    """:func:`fit_lighting`'s fit of each basis alone: one fit (the whole basis) when ``split`` is 0, else the
    first basis's and the second's (each with the other's weights 0); empty when fewer than
    ``config.min_pixels`` samples are seen unclipped."""
    # the camera's grey levels where the pose puts the samples: looked up once, whichever bases are fitted
    p = transform_points(T_current_target, samples.points_m)
    front = p[:, 2] > 1e-6
    live = np.full(len(p), np.nan)
    uv = np.full((len(p), 2), np.nan)
    uv[front] = camera.project(p[front])
    live[front] = _bilinear(grey_float32(np.asarray(image)[..., :3]), uv[front])
    ok = np.isfinite(live) & (live < config.max_level)
    if ok.sum() < config.min_pixels:
        return ()
    basis, b, prior = samples.basis[ok], live[ok], samples.prior[ok]
    # the image's own smooth gain over the object (vignetting, an exposure gradient) is not the lights': the
    # image is modelled as the shading times 1 + a x + b y + c (x^2 + y^2) (x, y from the image centre over its
    # larger side), fitted in turn with the lights; the relit target is the shading alone
    xy = (uv[ok] - [camera.cx, camera.cy]) / max(camera.width_px, camera.height_px)
    field = np.stack([np.ones(len(b)), xy[:, 0], xy[:, 1], (xy ** 2).sum(axis=1)], axis=1)
    if split <= 0:
        return (_fit_columns(basis, b, prior, field, config),)
    fits = []
    for index, columns in enumerate((slice(0, split), slice(split, None))):
        fit = _fit_columns(basis[:, columns], b, prior, field, config)
        weights = np.zeros(basis.shape[1])
        weights[columns] = fit.weights
        fits.append(LightingFit(weights, fit.residual_levels, fit.n_pixels, index))
    return tuple(fits)


def _fit_columns(A: np.ndarray, b: np.ndarray, prior: np.ndarray, field: np.ndarray,
                 config: RelightConfig) -> LightingFit:
    """:func:`fit_lighting`'s fit of the live grey levels ``b`` (N,) by the basis images ``A`` (N, K) with prior
    weights ``prior`` (N,) and the image gain field's terms ``field`` (N, 4)."""
    gain = np.ones(len(b))
    robust = np.ones(len(b))
    scale = float("inf")
    weights = np.zeros(A.shape[1])
    for _ in range(max(1, config.iterations)):
        weights = _nnls_normal(A * gain[:, None], b, prior * robust)
        shading = A @ weights
        w = np.sqrt(prior * robust)
        coef = np.linalg.lstsq(shading[:, None] * field * w[:, None], b * w, rcond=None)[0]
        if config.image_gain and abs(coef[0]) > 1e-9:
            gain = field @ (coef / coef[0])  # 1 at the image centre; the scale stays with the lights
        r = b - shading * gain
        scale = float(1.4826 * np.median(np.abs(r))) + 1e-6
        robust = np.minimum(1.0, 2.0 * scale / np.maximum(np.abs(r), 1e-12))
    return LightingFit(weights, scale, len(b))


def relit_grey(render: TargetRender, fit: LightingFit, outline_coverage: bool = True) -> np.ndarray:
    """The target image's grey levels (H, W) float64 with its object lit as ``fit`` says, the background as
    rendered. Each basis image mixes the object and its own background in the outline's pixels by the object's
    coverage ``a`` (``a o_k + (1 - a) g_k``), so their weighted sum would mix in the background ``sum w_k g_k``
    times: with the render's coverage (:attr:`TargetRender.shading_coverage`) the outline's pixels get the
    background ``g`` of the render instead, ``a sum w_k o_k + (1 - a) g``, as a render under the fitted light
    draws them (the bracket's outline pixels relit to a turned light: 0.6 grey levels off instead of 13,
    docs/convergence.md). Without a coverage (or ``outline_coverage`` False) the pixels off the mask are the
    render's and the outline's keep the mix."""
    assert render.shading_basis is not None  # a fit exists only with a basis
    lit = np.tensordot(fit.weights, render.shading_basis, axes=1)
    rendered = grey_float32(render.rgb)
    coverage = render.shading_coverage if outline_coverage else None
    if coverage is None:
        return np.where(render.mask, lit, rendered)
    off = coverage <= 0.0
    if not off.any():
        return lit
    # each basis image's own background level (the rasteriser's is the render's; a path tracer's may differ),
    # from ~2000 pixels off the object
    sample = np.flatnonzero(off)
    sample = sample[::max(1, len(sample) // 2000)]
    backgrounds = np.median(render.shading_basis.reshape(len(render.shading_basis), -1)[:, sample], axis=1)
    background = float(np.median(rendered.reshape(-1)[sample]))
    return np.where(off, rendered, lit + (1.0 - coverage) * (background - float(fit.weights @ backgrounds)))


def relit_rgb(render: TargetRender, fit: LightingFit, outline_coverage: bool = True) -> np.ndarray:
    """:func:`relit_grey` as an image (H, W, 3) uint8."""
    return rgb8_from_grey(relit_grey(render, fit, outline_coverage))


def _relight_of(servo_config: object) -> RelightConfig | None:
    """A servo config's relighting when it is on (the tracking servo's: its ``detection.relight``), else None."""
    deep = servo_config if hasattr(servo_config, "relight") else getattr(servo_config, "detection", None)
    relight = getattr(deep, "relight", None)
    return relight if isinstance(relight, RelightConfig) and relight.enabled else None


def basis_directions(servo_config: object) -> int:
    """How many light directions the target's shading basis needs for a servo's config (``render_target``'s
    ``shading_basis_directions``): its ``relight.directions`` when relighting is on, the tracking servo's
    ``detection.relight``'s likewise, else 0 (no basis)."""
    relight = _relight_of(servo_config)
    return int(relight.directions) if relight is not None else 0


def basis_renderer(servo_config: object) -> str:
    """What draws the shading basis for a servo's config (``render_target``'s ``basis_renderer``)."""
    relight = _relight_of(servo_config)
    return relight.basis_renderer if relight is not None else "moderngl"


def second_basis(servo_config: object) -> tuple[str, int]:
    """The second shading basis a servo's config asks for (``render_target``'s ``second_basis``): its renderer
    and directions, ``("", 0)`` for none."""
    relight = _relight_of(servo_config)
    if relight is None or not relight.second_basis_renderer.strip():
        return "", 0
    return relight.second_basis_renderer, int(relight.second_basis_directions)
