"""Sub-pixel refinement of correspondences and guided candidates (beyond the paper).

Features are detected and matched at the working resolution (320x240), where a keypoint is only good to a
fraction of a working pixel. Refinement re-measures each target keypoint in the current image by aligning
its target patch (pyramidal Lucas-Kanade on contrast-normalised grey images) on the camera's own
image, so the current position measures the *same* surface point. *Guided* candidates: once PnP has the
pose ``T_current_target``, every target keypoint (not only the descriptor matches) is predicted into the
current image and refined there, a classic guided-matching step. A PnP re-check at ``recheck_threshold_px``
keeps the refined points that agree on one rigid motion.

Data flow: :func:`refine_correspondences` = :func:`guided_candidates` -> :func:`refine_subpixel` -> PnP
re-check (:func:`refine_and_verify`), repeated from the re-checked pose (:func:`refine_guided`); pixels go in and
out at the working resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .camera import Camera
from .errors import ConfigError
from .estimation import PnPConfig, PnPResult, reject_pnp
from .geometry import near_identity, transform_points
from .imaging import grey_uint8, resize_area, resize_nearest
from .matching import Correspondences

if TYPE_CHECKING:
    from .target import PreparedTarget


@dataclass(frozen=True)
class RefineConfig:
    """Sub-pixel refinement (units in the names; pixels of the image refined unless said otherwise).

    - ``enabled``: refine at all (off = the paper's pipeline).
    - ``at_native_resolution``: refine on the camera's own image (the target render's resolution) rather
      than the working-resolution one: features are found at 320x240 but measured where the sensor has
      more pixels (4x smaller final rotation error, docs/servo.md).
    - ``guided``: add every target keypoint predicted by the PnP pose as a candidate (``index_current = -1``
      for those without a descriptor match).
    - ``recheck_threshold_px``: PnP inlier threshold applied again to the refined points, in *working* px.
    - ``window_px``: side of the aligned patch (odd); ``levels``: pyramid levels above the base. 15 px at
      640x480 measured best (13-27 tried, docs/servo.md).
    - ``normalise_sigma_px``: Gaussian scale of the local mean/contrast normalisation (lighting changes).
    - ``max_shift_px``: drop a correspondence whose refined position moved further than this.
    - ``mask_margin_px``: only patches lying entirely on the target object (its render mask eroded by this)
      are refined; others are dropped, since the target's plain background differs from the live scene's.
    - ``min_eigen_ratio``: only patches whose gradient structure tensor has ``lambda_min / lambda_max`` above
      this are refined. A patch on a straight edge (ratio ~0) is free to slide along the edge (the aperture
      problem): such patches were ~25 % of the refined points and caused nearly all of the final pose
      error (measured with benchmarks/goal_bias.py, docs/servo.md).
    - ``appearance``: what is aligned: ``intensity`` (the contrast-normalised grey image) or ``gradient`` (the
      locally normalised gradient magnitude: edges align whatever their contrast and polarity, which a change
      of light direction flips between the faces of a part).
    - ``min_ncc``: after alignment, drop a patch whose normalised cross-correlation with the target patch
      (both contrast-normalised) is below this: the aligned patches that still look different (a shadow,
      a highlight, shading the target render does not have) are the ones that bias the pose (0: off).
    - ``guided_rounds``: rounds of guided refinement (with a pose to guide it). Each round after the first
      predicts every candidate from the pose the previous round's refined points agreed on and refines again;
      the round with the most verified points is kept. The pose a cycle starts from (descriptor PnP, or the
      tracked prediction) can be several pixels off: under the parts protocol's turned key light shiny-P3's
      descriptor pose put the guided guesses 5.8 px (median) from the truth, where the alignment found the truth
      (0.1 px) but moved beyond ``max_shift_px`` and was dropped: 15 of 45 alignable points verified, against 43
      with the light as the target's (docs/parts.md). 1 = one round (as before).
    - ``reguide_within_ratio`` / ``reguide_within_deg``: the rounds after the first run only when the first
      round's pose is this near the goal (translation as a share of the target's median depth; rotation). Far from
      it, on a weak start, a second round guided by a few points' pose added points that agreed with a wrong pose,
      the next cycle's lock disagreed, and accuracy18's connector-G2-T3 ended lost at its start (docs/parts.md).
    """

    enabled: bool = True
    at_native_resolution: bool = True
    guided: bool = True
    recheck_threshold_px: float = 0.5
    window_px: int = 15
    levels: int = 1
    normalise_sigma_px: float = 4.0
    max_shift_px: float = 3.0
    mask_margin_px: int = 1
    iterations: int = 30
    min_eigen_ratio: float = 0.05
    min_ncc: float = 0.0
    appearance: str = "intensity"
    guided_rounds: int = 2
    reguide_within_ratio: float = 0.05
    reguide_within_deg: float = 3.0

    def __post_init__(self) -> None:
        if self.window_px < 5 or self.window_px % 2 == 0:
            raise ConfigError(f"window_px={self.window_px!r}: must be an odd number >= 5")
        if self.max_shift_px <= 0:
            raise ConfigError(f"max_shift_px={self.max_shift_px!r}: must be > 0")
        if not 0 <= self.min_eigen_ratio < 1:
            raise ConfigError(f"min_eigen_ratio={self.min_eigen_ratio!r}: must be in [0, 1)")
        if self.appearance not in ("intensity", "gradient"):
            raise ConfigError(f"appearance={self.appearance!r}: use intensity or gradient")
        if not -1 <= self.min_ncc < 1:
            raise ConfigError(f"min_ncc={self.min_ncc!r}: must be in [-1, 1)")
        if self.guided_rounds < 1:
            raise ConfigError(f"guided_rounds={self.guided_rounds!r}: must be >= 1")
        if not (self.reguide_within_ratio > 0 and self.reguide_within_deg > 0):
            raise ConfigError(f"reguide_within_ratio={self.reguide_within_ratio!r} and reguide_within_deg="
                              f"{self.reguide_within_deg!r} must be > 0")
        if not self.recheck_threshold_px > 0:
            raise ConfigError(f"recheck_threshold_px={self.recheck_threshold_px!r}: must be > 0")


def normalise_contrast(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Grey image with local mean removed and local contrast equalised, as uint8 centred on 128."""
    import cv2

    g = grey_uint8(image).astype(np.float32)
    mean = cv2.GaussianBlur(g, (0, 0), sigma_px)
    centred = g - mean
    std = np.sqrt(cv2.GaussianBlur(centred * centred, (0, 0), sigma_px)) + 4.0
    return np.clip(128.0 + 40.0 * centred / std, 0, 255).astype(np.uint8)


def gradient_magnitude_normalised(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Grey image's gradient magnitude (Sobel after a 1 px Gaussian) divided by its local mean (Gaussian of
    ``sigma_px``), as uint8: contrast- and polarity-free edges."""
    import cv2

    g = cv2.GaussianBlur(grey_uint8(image).astype(np.float32), (0, 0), 1.0)
    magnitude = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    local = cv2.GaussianBlur(magnitude, (0, 0), sigma_px) + 2.0
    return np.clip(64.0 * magnitude / local, 0, 255).astype(np.uint8)


def aligned_representation(image: np.ndarray, config: RefineConfig) -> np.ndarray:
    """The image that patches are aligned on (``config.appearance``), uint8."""
    if config.appearance == "gradient":
        return gradient_magnitude_normalised(image, config.normalise_sigma_px)
    return normalise_contrast(image, config.normalise_sigma_px)


@dataclass(frozen=True)
class RefinementTarget:
    """What refinement needs from the target, computed once: its normalised grey image and the boolean
    map (H, W) of pixels whose whole window lies on the object and is not edge-like (see
    :class:`RefineConfig`), at the resolution of ``camera`` (the image refinement works on)."""

    normalised: np.ndarray
    refinable: np.ndarray
    config: RefineConfig
    camera: Camera | None = None

    @classmethod
    def from_render(cls, rgb: np.ndarray, mask: np.ndarray, config: RefineConfig = RefineConfig(),
                    camera: Camera | None = None) -> RefinementTarget:
        import cv2

        k = config.window_px + 2 * config.mask_margin_px
        refinable = cv2.erode(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        normalised = aligned_representation(rgb, config)
        if config.min_eigen_ratio > 0:
            eig = cv2.cornerEigenValsAndVecs(normalised, config.window_px, 3)  # (H, W, 6): l1, l2, vectors
            l_max, l_min = np.maximum(eig[..., 0], eig[..., 1]), np.minimum(eig[..., 0], eig[..., 1])
            refinable &= l_min > config.min_eigen_ratio * np.maximum(l_max, 1e-12)
        return cls(normalised, refinable, config, camera)

    def refinable_at(self, uv_px: np.ndarray) -> np.ndarray:
        """(N,) bool: whether a patch centred at each pixel (N, 2) of this target's image can be aligned."""
        h, w = self.refinable.shape
        uv = np.clip(np.rint(np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)).astype(int), [0, 0], [w - 1, h - 1])
        return self.refinable[uv[:, 1], uv[:, 0]]


def refinement_target(render_rgb: np.ndarray, render_mask: np.ndarray, render_camera: Camera,
                      working_camera: Camera, config: RefineConfig) -> RefinementTarget | None:
    """The refinement data of a target render, at the render's resolution or the working one
    (``config.at_native_resolution``); None when refinement is off."""
    if not config.enabled:
        return None
    if config.at_native_resolution:
        return RefinementTarget.from_render(render_rgb, render_mask, config, render_camera)
    w, h = working_camera.width_px, working_camera.height_px
    return RefinementTarget.from_render(resize_area(render_rgb, w, h), resize_nearest(render_mask, w, h), config,
                                        working_camera)


def refine_subpixel(correspondences: Correspondences, current_rgb: np.ndarray,
                    target: RefinementTarget, search: RefineConfig | None = None) -> Correspondences:
    """Correspondences whose current pixels are re-measured by aligning the target patch (see
    :class:`RefineConfig`); those that cannot be refined are dropped. Target pixels are unchanged.
    ``search`` overrides the alignment's search settings (``levels``, ``max_shift_px``, ``iterations``) of
    ``target.config``, e.g. to track from a predicted position further away."""
    import cv2

    c = target.config if search is None else search
    n = len(correspondences)
    if n == 0:
        return correspondences
    ok = target.refinable_at(correspondences.uv_target_px)
    if not ok.any():
        return correspondences.subset(np.zeros(0, dtype=np.int64))
    idx = np.flatnonzero(ok)
    prev = correspondences.uv_target_px[idx].astype(np.float32).reshape(-1, 1, 2)
    guess = correspondences.uv_current_px[idx].astype(np.float32).reshape(-1, 1, 2)
    current = aligned_representation(current_rgb, target.config)
    refined, status, _ = cv2.calcOpticalFlowPyrLK(
        target.normalised, current, prev, guess.copy(), winSize=(c.window_px, c.window_px), maxLevel=c.levels,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, c.iterations, 1e-3),
        flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    refined = refined.reshape(-1, 2).astype(np.float64)
    moved = np.linalg.norm(refined - guess.reshape(-1, 2), axis=1)
    good = (status.reshape(-1) == 1) & (moved <= c.max_shift_px) & np.all(np.isfinite(refined), axis=1)
    if target.config.min_ncc > 0 and good.any():
        ncc = patch_ncc(target.normalised, prev.reshape(-1, 2), current, refined, c.window_px)
        good &= ncc >= target.config.min_ncc
    keep = idx[good]
    sub = correspondences.subset(keep)
    return Correspondences(refined[good], sub.uv_target_px, sub.index_current, sub.index_target, sub.scores)


def patch_ncc(image_a: np.ndarray, uv_a_px: np.ndarray, image_b: np.ndarray, uv_b_px: np.ndarray,
              window_px: int) -> np.ndarray:
    """(N,) normalised cross-correlation of the ``window_px`` square patches of ``image_a`` at ``uv_a_px`` and
    ``image_b`` at ``uv_b_px`` (sub-pixel centres, bilinear), in [-1, 1]; NaN positions give -1."""
    import cv2

    out = np.full(len(uv_a_px), -1.0)
    a_img, b_img = image_a.astype(np.float32), image_b.astype(np.float32)
    for k, (pa, pb) in enumerate(zip(uv_a_px, uv_b_px)):
        if not (np.all(np.isfinite(pa)) and np.all(np.isfinite(pb))):
            continue
        a = cv2.getRectSubPix(a_img, (window_px, window_px), (float(pa[0]), float(pa[1])))
        b = cv2.getRectSubPix(b_img, (window_px, window_px), (float(pb[0]), float(pb[1])))
        a, b = a - a.mean(), b - b.mean()
        denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
        out[k] = float((a * b).sum() / denom) if denom > 0 else -1.0
    return out


def guided_candidates(inliers: Correspondences, candidate_target_idx: np.ndarray, target: PreparedTarget,
                      T_current_target: np.ndarray) -> Correspondences:
    """The inliers plus every other candidate target keypoint at the position the pose ``T_current_target``
    predicts in the current image (working px), to be refined like the matches (``index_current = -1``)."""
    extra = np.setdiff1d(candidate_target_idx, inliers.index_target)
    if len(extra) == 0:
        return inliers
    p = transform_points(T_current_target, target.points_camera_goal_m[extra])
    front = p[:, 2] > 0
    extra, p = extra[front], p[front]
    uv = target.camera.project(p)
    inside = target.camera.in_image(uv, margin_px=0.5)  # pixel centres 0 .. width - 1
    extra, uv = extra[inside], uv[inside]
    guided = Correspondences(uv, target.features.keypoints_px[extra], np.full(len(extra), -1, np.int64),
                             extra, np.zeros(len(extra)))
    return Correspondences.concatenate([inliers, guided])


def _rescaled(correspondences: Correspondences, to: Camera, frm: Camera) -> Correspondences:
    return replace(correspondences, uv_current_px=to.pixels_from(frm, correspondences.uv_current_px),
                   uv_target_px=to.pixels_from(frm, correspondences.uv_target_px))


def refine_and_verify(candidates: Correspondences, image: np.ndarray, working_rgb: np.ndarray | None,
                      target: PreparedTarget, pnp: PnPConfig,
                      search: RefineConfig | None = None) -> tuple[Correspondences, PnPResult | None]:
    """Sub-pixel refinement of ``candidates`` (working px) on the camera's image (or the working one), then a
    PnP fit on the refined points at ``recheck_threshold_px``: the refined correspondences that agree on one
    rigid motion (working px) and that fit (its ``T_current_target``); empty and None when nothing refines.
    ``working_rgb``: the image already resized to the working resolution, if the caller has it."""
    refinement = target.refinement
    if refinement is None or refinement.camera is None:
        raise ConfigError("refinement is off for this target (servo.refine.enabled=false): nothing to refine")
    work, fine = target.camera, refinement.camera
    native = (fine.width_px, fine.height_px) != (work.width_px, work.height_px)
    fine_image = working_rgb if not native and working_rgb is not None else \
        resize_area(np.asarray(image), fine.width_px, fine.height_px)  # a no-op for the camera's own image
    refined = refine_subpixel(_rescaled(candidates, fine, work) if native else candidates, fine_image, refinement,
                              search)
    if len(refined) < 4:
        return Correspondences.empty(), None
    threshold_px = refinement.config.recheck_threshold_px * fine.width_px / work.width_px
    fit = reject_pnp(refined, target.points_camera_goal_m[refined.index_target], fine,  # one rigid motion
                     replace(pnp, threshold_px=threshold_px))
    refined = refined.subset(np.flatnonzero(fit.inlier_mask))
    return (_rescaled(refined, work, fine) if native else refined), fit


#: Another guided round is run only when the refined pose moves the predictions by at least this (median, working
#: px): a guide that was right (a tracked frame's prediction, usually) has nothing more to give.
REGUIDE_MIN_SHIFT_PX = 0.25


def _prediction_shift_px(camera: Camera, points_m: np.ndarray, T_a: np.ndarray, T_b: np.ndarray) -> float:
    """Median distance (px of ``camera``) between ``points_m`` (goal camera frame) projected by two poses."""
    pa, pb = transform_points(T_a, points_m), transform_points(T_b, points_m)
    front = (pa[:, 2] > 0) & (pb[:, 2] > 0)
    if not front.any():
        return float("inf")
    return float(np.median(np.linalg.norm(camera.project(pa[front]) - camera.project(pb[front]), axis=1)))


def refine_guided(seeds: Correspondences, candidate_target_idx: np.ndarray, image: np.ndarray,
                  working_rgb: np.ndarray | None, target: PreparedTarget, T_current_target: np.ndarray,
                  pnp: PnPConfig) -> tuple[Correspondences, PnPResult | None]:
    """Guided refinement from the pose ``T_current_target``: the ``seeds`` (e.g. descriptor inliers, working px)
    and every ``candidate_target_idx`` keypoint predicted by the pose, refined and verified
    (:func:`refine_and_verify`); then, for ``guided_rounds`` - 1 more rounds, every candidate predicted by the
    pose the last round's points agreed on, refined again, when that pose is near the goal (``reguide_within_*``)
    and moves the predictions by at least :data:`REGUIDE_MIN_SHIFT_PX`. The round with the most verified points is
    kept."""
    assert target.refinement is not None
    best, best_fit = refine_and_verify(guided_candidates(seeds, candidate_target_idx, target, T_current_target),
                                       image, working_rgb, target, pnp)
    fit, T_guide = best_fit, T_current_target
    points_m = target.points_camera_goal_m[candidate_target_idx]
    config, depth_m = target.refinement.config, float(np.median(target.Z_star_m))
    for _ in range(config.guided_rounds - 1):
        if fit is None or fit.T_current_target is None or not near_identity(
                fit.T_current_target, config.reguide_within_ratio * depth_m, config.reguide_within_deg):
            break
        if _prediction_shift_px(target.camera, points_m, T_guide, fit.T_current_target) < REGUIDE_MIN_SHIFT_PX:
            break  # (the guide already predicted where this round's pose does: nothing more to find)
        T_guide = fit.T_current_target
        candidates = guided_candidates(Correspondences.empty(), candidate_target_idx, target, T_guide)
        refined, fit = refine_and_verify(candidates, image, working_rgb, target, pnp)
        if fit is None or len(refined) <= len(best):
            break
        best, best_fit = refined, fit
    return best, best_fit


def refine_correspondences(inliers: Correspondences, image: np.ndarray, working_rgb: np.ndarray,
                           target: PreparedTarget, T_current_target: np.ndarray | None,
                           candidate_target_idx: np.ndarray, pnp: PnPConfig,
                           min_inliers: int) -> tuple[Correspondences, np.ndarray | None]:
    """Guided candidates (with a pose: :func:`refine_guided`), sub-pixel refinement on the camera's image (or the
    working one) and a PnP re-check of the refined points: the refined correspondences in working-resolution
    pixels and the re-checked pose ``T_current_target``. When fewer than ``min_inliers`` survive, the unrefined
    descriptor ``inliers`` and None are returned (an unverified refined point is never used)."""
    if target.refinement is None or len(inliers) < min_inliers:
        return inliers, None
    if target.refinement.config.guided and T_current_target is not None:
        refined, fit = refine_guided(inliers, candidate_target_idx, image, working_rgb, target, T_current_target,
                                     pnp)
    else:
        refined, fit = refine_and_verify(inliers, image, working_rgb, target, pnp)
    if len(refined) < min_inliers or fit is None:
        return inliers, None
    return refined, fit.T_current_target
