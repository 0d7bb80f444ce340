"""The target as the servo sees it: the rendered target's features at the working resolution, the depth
``Z*`` and 3D point of each kept keypoint, and what sub-pixel refinement needs (computed once per target).

:mod:`dfbvs.render.target` renders the target; this module prepares it for the cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Camera
from .errors import CalibrationError, ConfigError, TargetError
from .estimation import target_points_m
from .features import Extractor, Features
from .imaging import resize_area, resize_nearest
from .refine import RefineConfig, RefinementTarget, refinement_target
from .render.target import TargetCheckConfig, TargetRender, check_target_render, target_hints


@dataclass(frozen=True)
class PreparedTarget:
    """A rendered target with its features and the depth ``Z*`` (m) of each kept keypoint.

    ``camera`` is the working camera (the render's lens at the working resolution); ``features`` holds only
    target keypoints with valid depth, in working pixels; ``Z_star_m`` (N,) and ``xy_star`` (N, 2,
    normalized) align with them; ``points_camera_goal_m`` (N, 3) are their 3D points in the goal camera
    frame. ``refinement`` holds what sub-pixel refinement needs (None when it is off), at the resolution of
    its own camera (the render's, or the working one).
    """

    render: TargetRender
    camera: Camera
    features: Features
    Z_star_m: np.ndarray
    xy_star: np.ndarray
    points_camera_goal_m: np.ndarray
    refinement: RefinementTarget | None = None


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
                   check: TargetCheckConfig = TargetCheckConfig()) -> PreparedTarget:
    """Extract target features at the working resolution and keep those with valid rendered depth.

    The render is checked first (:func:`~dfbvs.render.target.check_target_render`: object in view, not filling
    the image, depth in range), then the keypoints on the object: fewer than ``check.min_target_features`` is a
    :class:`~dfbvs.errors.TargetError` saying what to try, never a target a servo could not lock on."""
    check_target_render(render, None, check)
    camera = working_camera(render.camera, working_width_px, working_height_px)
    rgb = resize_area(render.rgb, camera.width_px, camera.height_px)
    feats = extractor(rgb)
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
