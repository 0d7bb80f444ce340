"""The target as the servo sees it: the rendered target's features at the working resolution, the depth
``Z*`` and 3D point of each kept keypoint, and what sub-pixel refinement needs (computed once per target).

:mod:`dfbvs.render.target` renders the target; this module prepares it for the cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .camera import Camera
from .errors import CalibrationError, ConfigError, TargetError
from .estimation import target_points_m
from .features import Extractor, Features
from .goal import FramingReport, PosePrecision, pose_precision
from .imaging import apply_affine_px, invert_affine_px, resize_area, resize_nearest, rotated_canvas
from .matching import Correspondences
from .refine import RefineConfig, RefinementTarget, refine_subpixel, refinement_target
from .render.mesh import Mesh
from .render.target import (
    LIGHT_TURN_DEG,
    LIGHT_TURNS,
    TargetCheckConfig,
    TargetRender,
    check_target_render,
    key_light_turned_renders,
    target_hints,
)


@dataclass(frozen=True)
class PreparedTarget:
    """A rendered target with its features and the depth ``Z*`` (m) of each kept keypoint.

    ``camera`` is the working camera (the render's lens at the working resolution); ``features`` holds only
    target keypoints with valid depth, in working pixels; ``Z_star_m`` (N,) and ``xy_star`` (N, 2,
    normalized) align with them; ``points_camera_goal_m`` (N, 3) are their 3D points in the goal camera
    frame. ``refinement`` holds what sub-pixel refinement needs (None when it is off), at the resolution of
    its own camera (the render's, or the working one). ``inplane_rad`` is the roll of the view the descriptors
    were computed on: 0 for the target image itself, ``a`` for the target image turned by ``a`` about the
    principal point (:func:`~dfbvs.imaging.rotation_affine_px`), whose keypoints are mapped back to the target
    image (so they and everything else here are in the target image's pixels, as for the upright view).
    """

    render: TargetRender
    camera: Camera
    features: Features
    Z_star_m: np.ndarray
    xy_star: np.ndarray
    points_camera_goal_m: np.ndarray
    refinement: RefinementTarget | None = None
    inplane_rad: float = 0.0


@dataclass(frozen=True)
class AcquisitionConfig:
    """How many target views the servo can acquire from.

    ``inplane_views``: feature sets of the target image turned by ``k * 360 / n`` degrees (k = 0..n-1) about
    the principal point, each the target as a camera rolled by that angle about its optical axis sees it.
    Deep features match up to ~45 degrees of in-plane rotation (docs/features-eval.md), so 1 (the paper: the
    upright target only) loses starts rolled further; 8 views cover any roll. Without a lock the servo
    matches every view and keeps the one with most inliers; with one, the view nearest the measured roll
    (docs/convergence.md).

    ``zoom_max``: with a pose from the previous cycle, the live features are extracted on a crop of the camera
    image around where that pose puts the object (its target points projected, padded by ``zoom_margin`` of
    their extent on each side), resized to the working size: a far, small object is seen with up to
    ``zoom_max`` x the working resolution and more of the top-K keypoints land on it, for the cost of one
    working-size extraction as before. 1: off (the whole image, always). A cycle that fails, or an object that
    already fills the image, uses the whole image (docs/convergence.md). 2 by default: it rescued the one start
    of the 8-per-batch distance sweep the whole image lost, and on the six accuracy18 starts where it acts it
    ended each episode as close or closer (docs/bench.md)."""

    inplane_views: int = 1
    zoom_max: float = 2.0
    zoom_margin: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= int(self.inplane_views) <= 36:
            raise ConfigError(f"acquisition.inplane_views={self.inplane_views!r}: must be 1..36")
        if not (np.isfinite(self.zoom_max) and 1.0 <= self.zoom_max <= 8.0):
            raise ConfigError(f"acquisition.zoom_max={self.zoom_max!r}: must be 1..8 (1: off)")
        if not (np.isfinite(self.zoom_margin) and 0.0 <= self.zoom_margin <= 2.0):
            raise ConfigError(f"acquisition.zoom_margin={self.zoom_margin!r}: a fraction 0..2 of the object's "
                              "extent")


def working_camera(camera: Camera, working_width_px: int, working_height_px: int) -> Camera:
    """``camera`` at the servo's working resolution; a :class:`~dfbvs.errors.ConfigError` when that resolution
    has another aspect ratio (it would be another camera, with non-square pixels), saying which setting to
    change."""
    try:
        return camera.rescaled(working_width_px, working_height_px)
    except CalibrationError:
        w = working_width_px
        h = max(1, round(w * camera.height_px / camera.width_px))
        raise ConfigError(f"working resolution {working_width_px}x{working_height_px} (aspect "
                          f"{working_width_px / working_height_px:.2f}) does not fit the {camera.width_px}x"
                          f"{camera.height_px} camera (aspect {camera.width_px / camera.height_px:.2f}): set "
                          f"working_width_px / working_height_px to the camera's aspect, e.g. {w}x{h}") from None


def prepare_target(render: TargetRender, extractor: Extractor, working_width_px: int, working_height_px: int,
                   refine: RefineConfig = RefineConfig(),
                   check: TargetCheckConfig = TargetCheckConfig(), features: Features | None = None) -> PreparedTarget:
    """Extract target features at the working resolution and keep those with valid rendered depth
    (``features``: the extractor's output on the working-size render already, not extracted again).

    The render is checked first (:func:`~dfbvs.render.target.check_target_render`: object in view, not filling
    the image, depth in range), then the keypoints on the object: fewer than ``check.min_target_features`` is a
    :class:`~dfbvs.errors.TargetError` saying what to try, never a target a servo could not lock on."""
    check_target_render(render, None, check)
    camera = working_camera(render.camera, working_width_px, working_height_px)
    feats = features if features is not None else extractor(resize_area(render.rgb, camera.width_px,
                                                                        camera.height_px))
    n_detected = len(feats)
    depth = resize_nearest(render.depth_m, camera.width_px, camera.height_px)  # Z*, never blended
    points = target_points_m(feats.keypoints_px, depth, camera)
    keep = np.flatnonzero(np.all(np.isfinite(points), axis=1))
    feats, points = feats.subset(keep), points[keep]
    if len(feats) < check.min_target_features:
        raise TargetError(f"target: {len(feats)} keypoints on the object at {camera.width_px}x{camera.height_px} "
                          f"({n_detected} detected in the image), fewer than "
                          f"min_target_features={check.min_target_features}; a plain or tiny object in the image? "
                          f"{target_hints(None, None)}")
    xy = camera.pixel_to_normalized(feats.keypoints_px) if len(feats) else np.zeros((0, 2))
    return PreparedTarget(render=render, camera=camera, features=feats, Z_star_m=points[:, 2], xy_star=xy,
                          points_camera_goal_m=points,
                          refinement=refinement_target(render.rgb, render.mask, render.camera, camera, refine))


def rolled_view(upright: PreparedTarget, extractor: Extractor, inplane_rad: float) -> PreparedTarget:
    """The target as a camera rolled by ``inplane_rad`` about its optical axis sees it: features extracted
    on the working target image turned about the principal point (:func:`~dfbvs.imaging.rotated_canvas`),
    their keypoints mapped back to the target image and kept where the object is (valid ``Z*``). The
    descriptors are the turned image's; positions, depths and 3D points are the target's."""
    camera = upright.camera
    rgb = resize_area(upright.render.rgb, camera.width_px, camera.height_px)
    canvas, affine = rotated_canvas(rgb, (camera.cx, camera.cy), inplane_rad)
    feats = extractor(canvas)
    uv = apply_affine_px(invert_affine_px(affine), feats.keypoints_px)
    w, h = camera.width_px, camera.height_px
    inside = np.flatnonzero((uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1))
    depth = resize_nearest(upright.render.depth_m, w, h)
    points = target_points_m(uv[inside], depth, camera)
    keep = inside[np.all(np.isfinite(points), axis=1)]
    points = points[np.all(np.isfinite(points), axis=1)]
    back = Features(uv[keep], feats.descriptors[keep], feats.scores[keep], (w, h), feats.extractor)
    xy = camera.pixel_to_normalized(back.keypoints_px) if len(back) else np.zeros((0, 2))
    return replace(upright, features=back, Z_star_m=points[:, 2], xy_star=xy, points_camera_goal_m=points,
                   inplane_rad=float(inplane_rad))


def prepare_target_views(render: TargetRender, extractor: Extractor, working_width_px: int,
                         working_height_px: int, refine: RefineConfig = RefineConfig(),
                         check: TargetCheckConfig = TargetCheckConfig(),
                         acquisition: AcquisitionConfig = AcquisitionConfig()) -> tuple[PreparedTarget, ...]:
    """The upright target (:func:`prepare_target`, checked) and its ``acquisition.inplane_views - 1`` rolled
    views (:func:`rolled_view`), in order of roll ``k * 2 pi / n``; they share the render and the refinement
    data."""
    upright = prepare_target(render, extractor, working_width_px, working_height_px, refine, check)
    n = int(acquisition.inplane_views)
    return (upright,) + tuple(rolled_view(upright, extractor, 2.0 * np.pi * k / n) for k in range(1, n))


def nearest_view(views: tuple[PreparedTarget, ...], roll_rad: float) -> int:
    """Index of the view whose roll is nearest ``roll_rad`` (on the circle)."""
    gaps = [abs(float(np.angle(np.exp(1j * (roll_rad - v.inplane_rad))))) for v in views]
    return int(np.argmin(gaps))


#: the final correspondence noise the precision of a goal is judged at, px of the working image: the aligned
#: patches' error at convergence on the rasterised accuracy18 (0.10-0.15 working px, docs/parts.md)
PRECISION_NOISE_WORKING_PX = 0.1


def alignable_keypoints(target: PreparedTarget) -> np.ndarray:
    """Mask of the target keypoints whose patch refinement can align (all of them when refinement is off): the
    points the servo's final cycles measure."""
    uv = target.features.keypoints_px
    keep = np.ones(len(uv), dtype=bool)
    if target.refinement is not None and len(uv):
        fine = target.refinement.camera or target.camera
        keep = target.refinement.refinable_at(fine.pixels_from(target.camera, uv))
    return keep


def target_precision(target: PreparedTarget, noise_working_px: float = PRECISION_NOISE_WORKING_PX,
                     only: np.ndarray | None = None) -> PosePrecision:
    """How precisely the goal view ``target`` pins the camera pose (:func:`~dfbvs.goal.pose_precision`) over its
    :func:`alignable_keypoints` (and, with ``only``, a mask over its keypoints, over those of them it keeps, e.g.
    :attr:`LightStability.stable`), at ``noise_working_px`` per coordinate."""
    keep = alignable_keypoints(target)
    if only is not None:
        keep &= np.asarray(only, dtype=bool)
    return pose_precision(target.camera, target.features.keypoints_px[keep], target.Z_star_m[keep], noise_working_px)


#: the light-stability check (:func:`light_stability`; how far the key light turns and in how many directions:
#: :data:`~dfbvs.render.target.LIGHT_TURN_DEG`, :data:`~dfbvs.render.target.LIGHT_TURNS`): the largest move of an
#: aligned patch (px of the camera's image) that still counts as holding
LIGHT_STABLE_PX = 0.3
#: below this fraction of holding keypoints a goal view is the part's shading (``dfbvs target`` warns): the housing
#: and the shaft 3-8 %, the parts the servo brings within 1 mm / 0.1 deg 45-82 % (docs/parts.md)
LIGHT_STABLE_FRACTION = 0.25


@dataclass(frozen=True)
class LightStability:
    """Whether a goal view's alignable keypoints (:func:`alignable_keypoints`) are features of the part or of its
    lighting: of ``n_points``, ``n_stable`` aligned within ``stable_px`` (px of the camera's image) on the target
    rendered with its key light turned by ``turn_deg`` in each of ``n_turns`` directions; ``stable`` marks them
    among all of ``target.features`` (False where not alignable). ``median_shift_px`` is the median over the
    points of their largest move (inf for a point whose patch did not align on some turn).
    Texture and sharp geometry hold (the textured parts' patches move 0.1-0.3 px); the shading of a smooth,
    rounded part moves with the light or stops aligning (docs/parts.md)."""

    n_points: int
    median_shift_px: float
    turn_deg: float
    n_turns: int
    stable_px: float
    stable: np.ndarray = field(repr=False)  # (N,) bool over target.features

    def summary(self) -> dict:
        """The figures without the per-keypoint mask (for a report)."""
        return {"n_points": self.n_points, "n_stable": self.n_stable, "median_shift_px": self.median_shift_px,
                "turn_deg": self.turn_deg, "n_turns": self.n_turns, "stable_px": self.stable_px}

    @property
    def n_stable(self) -> int:
        return int(np.count_nonzero(self.stable))

    @property
    def stable_fraction(self) -> float:
        return self.n_stable / self.n_points if self.n_points else 0.0


def light_stability(target: PreparedTarget, turned_rgbs: list[np.ndarray], turn_deg: float = LIGHT_TURN_DEG,
                    stable_px: float = LIGHT_STABLE_PX) -> LightStability:
    """How the alignable keypoints of ``target`` hold on ``turned_rgbs``: the target render drawn again (same
    camera, pose and size) with its key light turned by ``turn_deg`` (:meth:`~dfbvs.render.backend.Lighting.
    key_light_turned`). Each point's patch is aligned from the target onto each image, as refinement aligns it on a
    live frame (:func:`~dfbvs.refine.refine_subpixel`, started where it is); its move is how far the light alone
    shifts it. Needs refinement on (``target.refinement``)."""
    if target.refinement is None:
        raise ConfigError("light_stability: the target was prepared with refinement off; nothing is aligned")
    fine = target.refinement.camera or target.camera
    alignable = np.flatnonzero(alignable_keypoints(target))
    uv = fine.pixels_from(target.camera, target.features.keypoints_px[alignable])
    idx = np.arange(len(uv), dtype=np.int64)
    worst = np.zeros(len(uv))
    for rgb in turned_rgbs:
        if rgb.shape[:2] != target.render.rgb.shape[:2]:
            raise ConfigError(f"light_stability: a turned render of {rgb.shape[1]}x{rgb.shape[0]} px for a target "
                              f"of {target.render.rgb.shape[1]}x{target.render.rgb.shape[0]} px")
        if rgb.shape[:2] != (fine.height_px, fine.width_px):  # refinement at the working resolution
            rgb = resize_area(rgb, fine.width_px, fine.height_px)
        aligned = refine_subpixel(Correspondences(uv.copy(), uv, idx, idx, np.ones(len(uv))), rgb,
                                  target.refinement)
        moved = np.full(len(uv), np.inf)
        moved[aligned.index_target] = np.linalg.norm(aligned.uv_current_px - aligned.uv_target_px, axis=1)
        worst = np.maximum(worst, moved)
    stable = np.zeros(len(target.features), dtype=bool)
    stable[alignable[worst <= stable_px]] = True
    return LightStability(len(uv), float(np.median(worst)) if len(uv) else float("nan"), turn_deg,
                          len(turned_rgbs), stable_px, stable)


def goal_light_stability(target: PreparedTarget, mesh: Mesh) -> LightStability:
    """:func:`light_stability` of ``target`` (rendered from ``mesh``) with the check's defaults: the key light
    turned :data:`LIGHT_TURN_DEG` in :data:`LIGHT_TURNS` seeded directions (``dfbvs target``, the benchmarks)."""
    return light_stability(target, list(key_light_turned_renders(mesh, target.render, LIGHT_TURNS)))


@dataclass(frozen=True)
class GoalViewCheck:
    """What a user must check on a goal view before servoing to it (``dfbvs target``, the goal preview of
    ``dfbvs servo``): its ``framing`` (coverage, target keypoints on the object, depth range), the pose
    ``precision`` its alignable keypoints allow, whether they hold when the light turns (``light``) and the
    precision of those that hold (``precision_light_stable``); the last three are None when the view could not be
    prepared (``warnings`` says why). ``warnings`` holds every warning, framing's first."""

    framing: FramingReport
    precision: PosePrecision | None
    light: LightStability | None
    precision_light_stable: PosePrecision | None
    warnings: tuple[str, ...]


def check_goal_view(render: TargetRender, mesh: Mesh, extractor: Extractor, working_width_px: int,
                    working_height_px: int, refine: RefineConfig = RefineConfig(), need_mm: float = 1.0,
                    need_deg: float = 0.1, feature_poor_keypoints: int = 30) -> GoalViewCheck:
    """Judge the goal view ``render`` of ``mesh`` as a servo with ``extractor`` at ``working_width_px`` x
    ``working_height_px`` and ``refine`` would prepare it: :func:`~dfbvs.goal.check_framing`,
    :func:`target_precision` against the accuracy needed (``need_mm`` / ``need_deg``; a view with fewer than
    ``feature_poor_keypoints`` alignable keypoints is served by its outline, the warning says so) and
    :func:`goal_light_stability` (a warning below :data:`LIGHT_STABLE_FRACTION`: the view's features are the part's
    shading)."""
    from .errors import DfbvsError
    from .goal import check_framing
    from .render.backend import Lighting

    keypoints = features = None
    if render.mask.any():
        work = working_camera(render.camera, working_width_px, working_height_px)
        features = extractor(resize_area(render.rgb, work.width_px, work.height_px))
        keypoints = render.camera.pixels_from(work, features.keypoints_px)
    framing = check_framing(render.mask, render.depth_m, keypoints)
    warnings = list(framing.warnings)
    if keypoints is None:
        return GoalViewCheck(framing, None, None, None, tuple(warnings))
    try:  # the points the servo's last cycles align, as a servo prepares them
        prepared = prepare_target(render, extractor, working_width_px, working_height_px, refine, features=features)
        precision = target_precision(prepared)
        light = goal_light_stability(prepared, mesh)
    except DfbvsError as exc:
        return GoalViewCheck(framing, None, None, None, tuple(warnings + [str(exc)]))
    held = target_precision(prepared, only=light.stable)  # what the view allows under another light
    if light.n_points and light.stable_fraction < LIGHT_STABLE_FRACTION:
        key_light = tuple(round(float(x), 2) for x in Lighting().lights[0].unit_direction)
        warnings.append(f"only {light.n_stable} of {light.n_points} alignable keypoints hold when the light "
                        f"turns {light.turn_deg:g} deg ({light.stable_fraction:.0%} < {LIGHT_STABLE_FRACTION:.0%}): "
                        "this view's features are the part's shading, not its texture or edges, and move under "
                        "any light unlike the render's (a smooth, rounded part); expect the loop to settle off the "
                        f"goal: light the scene as the target is lit (its key light shines along {key_light} in "
                        "the object's frame, a fill light from the side), choose a view with texture, holes or "
                        "sharp edges, or use an RGB-D camera (the servo then fits the part's shape to its depth: "
                        f"servo.depth, docs/parts.md); the {light.n_stable} that hold pin the pose to "
                        f"{held.translation_mm:.2f} mm / "
                        f"{held.rotation_deg:.3f} deg RMS")
    if precision.exceeds(need_mm, need_deg):
        plain = "" if precision.n_points >= feature_poor_keypoints else (
            f"; only {precision.n_points} keypoints can be aligned (< servo.feature_poor.max_alignable_keypoints="
            f"{feature_poor_keypoints}): the servo adds the part's outline and more live keypoints, a plain part is "
            "pinned by its outline")
        warnings.append(f"this goal view pins the pose to {precision.translation_mm:.2f} mm / "
                        f"{precision.rotation_deg:.3f} deg RMS at {PRECISION_NOISE_WORKING_PX} px per point, beyond "
                        f"the {need_mm} mm / {need_deg} deg needed: frame the part larger (--fill-ratio, a closer "
                        f"--distance) or view it where it has more texture{plain}")
    return GoalViewCheck(framing, precision, light, held, tuple(warnings))
