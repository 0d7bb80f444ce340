"""Model edges as measurements: the object's outline, measured in the live image at the estimated pose, refines
the pose jointly with the keypoints (issue 13: parts whose structure is all outline).

A thin sheet, a smooth housing or a plain shaft has few keypoints, and patches along its outline do not
align against a background unlike the render's. Their outline is the measurement: the target render's mask
boundary (the silhouette and the rims of holes) gives contour points with 3D positions (rendered depth) and
image normals. Each cycle, with a pose ``T_current_target`` from PnP, every contour point is projected into the
camera's image and the strongest grey-level step along its normal, within ``search_px``, is its measured edge
(polarity-free: the background beside the part may be darker or brighter than the render's). The same search
run on the target render at the point gives its reference offset, so both images are read by the same
detector and a sub-pixel bias of the detector cancels at the goal. A robust Gauss-Newton then fits the pose to
the edges' normal distances and the keypoints' reprojections together (:func:`refine_pose_with_edges`).

Data flow: :func:`model_edges` (once per target) -> :func:`measure_edges` -> :func:`refine_pose_with_edges`.
Pixels of the edges are those of the refinement image (the camera's own resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .camera import Camera
from .control import interaction_matrix_pixel
from .errors import ConfigError
from .geometry import near_identity, se3_exp, transform_points
from .imaging import grey_float32


@dataclass(frozen=True)
class EdgeConfig:
    """Model-edge measurements (pixels of the camera's own image).

    - ``enabled``: off by default (measured in docs/parts.md).
    - ``spacing_px``: one contour point per ``spacing_px`` square cell of the target image; ``max_points``
      caps them (evenly thinned).
    - ``search_px``: how far along the normal from the predicted position an edge is searched, both ways.
    - ``min_step``: the smallest grey-level step (0-255 per pixel) that counts as an edge.
    - ``rounds``: measure-then-fit rounds (each measures at the pose of the previous one).
    - ``huber_px``: residuals beyond this are down-weighted (Huber), edges and keypoints alike.
    - ``keypoint_sigma_px`` / ``refined_keypoint_sigma_px``: the keypoints' measurement noise relative to the
      edges' (px of the camera's image; their residuals are divided by it): descriptor matches found at the
      working resolution (~1 working px) and sub-pixel refined ones (~0.1 working px), so where refinement
      verified the keypoints they, not the outline, hold the pose; ``min_edges``: fewer measured edges than
      this = no edge fit (the pose is left as it was).
    - ``min_fit_fraction``: the fit is used only when at least this fraction of the outline's points in view fit
      it within ``huber_px`` (a fit that pulled onto wrong edges leaves most of them off; measured on the sheet
      and the housing: good fits 0.6-0.95, bad ones 0.3).
    - ``keypoint_gate_px``: the fit is used only when the keypoints still agree with it: the median
      reprojection error of the inliers at the fitted pose at most this (px of the keypoints' image, the
      working one). In clutter the outline, partly out of view far from the goal, fitted background edges and
      moved a 0.6 mm-accurate PnP pose 21 mm (bracket-G1-T1 of accuracy18, docs/parts.md).
    - ``near_goal_rotation_deg`` / ``near_goal_translation_ratio``: edges are measured only when the PnP pose is
      this close to the goal (rotation; translation as a fraction of the target's median depth). The contour
      points are the goal view's silhouette: from another viewpoint a 3D part shows other edges as its outline
      (the bracket 60 mm / 11 deg away: the fit, taken from a 0.6 mm-accurate pose, ended 29 mm off with the
      keypoints still within 1.3 px, docs/parts.md).
    - ``veto_fraction``: when even the best fit leaves fewer than this fraction of the outline in view on an
      edge, the cycle is not a credible lock (zero twist). Off (0) by default: wrong descriptor locks on the
      smooth housing and the shaft fitted 0.22-0.30, but so did genuine locks before clutter far from the goal
      (0.35 lost bracket-G1-T1 and -T3 of accuracy18, docs/parts.md).
    - ``depth_jump_ratio``: > 0: the object's own depth edges are contour points too, where its surface steps back
      by more than this share of its depth (e.g. 0.01: the rim of the housing's slot, 2 mm at 0.2 m); 0 (the
      default) = the outline alone. On the housing under a light turned 20 deg, fitted from 1 mm / 0.3 deg off:
      the outline alone 0.72 mm / 0.21 deg, with the slot's rim 0.41 mm / 0.13 deg; on the sheet (served by its
      outline) one run of the tracking preset ended sheet-P2 at 0.117 deg with them against 0.068 without
      (docs/parts.md), so not the default.
    - ``relit_reference``: once the servo has relit the target to the camera image's lighting
      (``ServoConfig.relight``), read the edges' reference offsets on the relit target
      (:meth:`ModelEdges.with_reference`): at a smooth part's rounded outline the step the detector finds moves
      with the shading. Off by default: on the housing under a light turned 20 deg, relit at the true pose it
      halved the fit's error, but relit at the pose being fitted (1 mm / 0.3 deg off) the fits ranged
      0.11-0.96 mm / 0.03-0.31 deg, no better than the target's own reference in the median (docs/parts.md).
    """

    enabled: bool = False
    spacing_px: float = 4.0
    max_points: int = 400
    search_px: float = 4.0
    min_step: float = 6.0
    rounds: int = 3
    huber_px: float = 0.5
    keypoint_sigma_px: float = 2.0
    refined_keypoint_sigma_px: float = 0.2
    min_edges: int = 20
    min_fit_fraction: float = 0.5
    keypoint_gate_px: float = 2.0
    near_goal_rotation_deg: float = 3.0
    near_goal_translation_ratio: float = 0.05
    veto_fraction: float = 0.0
    relit_reference: bool = False
    depth_jump_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not (self.spacing_px >= 1 and self.search_px >= 1 and self.max_points >= 4 and self.rounds >= 1):
            raise ConfigError(f"edges: spacing_px={self.spacing_px!r} >= 1, search_px={self.search_px!r} >= 1, "
                              f"max_points={self.max_points!r} >= 4, rounds={self.rounds!r} >= 1 required")
        if not (0 <= self.min_fit_fraction <= 1 and 0 <= self.veto_fraction <= self.min_fit_fraction):
            raise ConfigError(f"edges: need 0 <= veto_fraction ({self.veto_fraction!r}) <= min_fit_fraction "
                              f"({self.min_fit_fraction!r}) <= 1")
        if not (self.keypoint_gate_px > 0 and self.near_goal_rotation_deg > 0 and self.near_goal_translation_ratio > 0):
            raise ConfigError(f"edges: keypoint_gate_px={self.keypoint_gate_px!r}, near_goal_rotation_deg="
                              f"{self.near_goal_rotation_deg!r} and near_goal_translation_ratio="
                              f"{self.near_goal_translation_ratio!r} must be > 0")
        if not self.depth_jump_ratio >= 0:
            raise ConfigError(f"edges: depth_jump_ratio={self.depth_jump_ratio!r} must be >= 0 (0: the outline alone)")
        sigmas_px = min(self.keypoint_sigma_px, self.refined_keypoint_sigma_px)
        if not (self.min_step > 0 and self.huber_px > 0 and sigmas_px > 0 and self.min_edges >= 6):
            raise ConfigError(f"edges: min_step={self.min_step!r}, huber_px={self.huber_px!r}, keypoint_sigma_px="
                              f"{self.keypoint_sigma_px!r} and refined_keypoint_sigma_px="
                              f"{self.refined_keypoint_sigma_px!r} must be > 0, min_edges={self.min_edges!r} >= 6")


@dataclass(frozen=True)
class ModelEdges:
    """Contour points of the target: ``points_goal_m`` (M, 3) in the goal camera frame, their target-image
    pixels ``uv_target_px`` (M, 2), outward unit normals ``normals_target`` (M, 2) in the target image, and the
    offset ``offset_target_px`` (M,) along the normal at which :func:`edge_offsets` finds the edge in the
    target render itself; ``camera`` is the target render's."""

    points_goal_m: np.ndarray
    uv_target_px: np.ndarray
    normals_target: np.ndarray
    offset_target_px: np.ndarray
    camera: Camera

    def __len__(self) -> int:
        return len(self.points_goal_m)

    def with_reference(self, grey: np.ndarray, config: EdgeConfig) -> ModelEdges:
        """These contour points with their reference offsets read on ``grey`` (H, W, the target image
        drawn otherwise, e.g. relit: :func:`~dfbvs.relight.relit_grey`) by the same detector; a point whose edge
        it does not find there keeps its offset."""
        offsets, found = edge_offsets(grey, self.uv_target_px, self.normals_target, config.search_px,
                                      config.min_step)
        return replace(self, offset_target_px=np.where(found, offsets, self.offset_target_px))


def model_edges(rgb: np.ndarray, depth_m: np.ndarray, mask: np.ndarray, camera: Camera,
                config: EdgeConfig = EdgeConfig()) -> ModelEdges:
    """The contour points of a target render (its ``rgb``, ``depth_m``, ``mask`` seen by ``camera``): pixels
    of the object next to a pixel off it (the outline, outward normals), and with ``config.depth_jump_ratio`` > 0
    pixels of the object next to one of it that is deeper by more than that share of their depth (the rim of a
    slot or a step: the object's own depth edges, normals toward the deeper side), one per
    ``config.spacing_px`` cell of each kind, with a depth, and whose edge the detector finds in the render
    itself."""
    m = np.asarray(mask, bool)
    z_m = np.asarray(depth_m, np.float64)
    outline = _contour_pixels(m, m.astype(np.float32), m & ~_eroded(m), z_m, config)
    kinds = [outline]
    if config.depth_jump_ratio > 0:
        z_on = np.where(m & np.isfinite(z_m), z_m, np.inf)
        rim = np.zeros_like(m)
        for axis in (0, 1):
            for shift in (1, -1):
                neighbour = np.roll(z_on, shift, axis=axis)
                both = np.isfinite(z_on) & np.isfinite(neighbour)
                rim[both] |= neighbour[both] - z_on[both] > config.depth_jump_ratio * z_on[both]
        # the depth falls off across a rim: the "mask" whose boundary it is, is the near side (nearer is 1)
        z_fill = np.where(np.isfinite(z_on), z_on, float(np.max(z_m[np.isfinite(z_m)], initial=1.0)))
        kinds.append(_contour_pixels(m, (-z_fill).astype(np.float32), rim, z_m, config))
    uv = np.concatenate([k[0] for k in kinds])
    normals = np.concatenate([k[1] for k in kinds])
    z = np.concatenate([k[2] for k in kinds])
    if len(uv) > config.max_points:
        keep = np.linspace(0, len(uv) - 1, config.max_points).round().astype(int)
        uv, normals, z = uv[keep], normals[keep], z[keep]
    points = camera.unproject(uv, z)
    grey = grey_float32(np.asarray(rgb)[..., :3])
    offsets, found = edge_offsets(grey, uv, normals, config.search_px, config.min_step)
    return ModelEdges(points[found], uv[found], normals[found], offsets[found], camera)


def _eroded(mask: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def _contour_pixels(mask: np.ndarray, field: np.ndarray, candidates: np.ndarray, depth_m: np.ndarray,
                    config: EdgeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of the ``candidates`` (H, W bool) on ``mask`` with a depth, one per ``config.spacing_px`` cell: their
    pixels (N, 2), unit normals (N, 2) pointing where the smoothed ``field`` (higher inside) decreases, and
    depths (N,) (m)."""
    import cv2

    v, u = np.nonzero(candidates & mask)
    z = depth_m[v, u]
    ok = np.isfinite(z) & (z > 0)
    u, v, z = u[ok], v[ok], z[ok]
    cell = np.floor(u / config.spacing_px).astype(np.int64) * 100003 + np.floor(v / config.spacing_px).astype(np.int64)
    _, first = np.unique(cell, return_index=True)
    u, v, z = u[first], v[first], z[first]
    soft = cv2.GaussianBlur(field, (0, 0), 1.5)
    gx = cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3)[v, u]
    gy = cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)[v, u]
    norm = np.hypot(gx, gy)
    ok = norm > 1e-6
    normals = -np.stack([gx, gy], axis=1)[ok] / norm[ok, None]
    return np.stack([u, v], axis=1).astype(np.float64)[ok], normals, z[ok]


def edge_offsets(grey: np.ndarray, uv_px: np.ndarray, normals: np.ndarray, search_px: float,
                 min_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Along each unit ``normals`` (N, 2) from ``uv_px`` (N, 2), the signed offset (px, sub-pixel) of the
    strongest grey-level step of ``grey`` within ``search_px``, and whether one of at least ``min_step``
    exists (polarity-free: the step's sign does not matter)."""
    import cv2

    step = 0.5
    t = np.arange(-search_px - 1.0, search_px + 1.0 + 1e-9, step)  # sample positions along the normal
    n = len(uv_px)
    if n == 0:
        return np.zeros(0), np.zeros(0, bool)
    mx = (uv_px[:, 0, None] + t[None, :] * normals[:, 0, None]).astype(np.float32)
    my = (uv_px[:, 1, None] + t[None, :] * normals[:, 1, None]).astype(np.float32)
    profile = cv2.remap(np.ascontiguousarray(grey, np.float32), mx, my, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    derivative = np.abs(profile[:, 2:] - profile[:, :-2]) / (2 * step)  # at t[1:-1], per px
    # smoothed (Gaussian, 1 px): the derivative of a linearly interpolated step is a plateau between samples
    kernel = np.exp(-0.5 * (np.arange(-4, 5) * step) ** 2)
    derivative = np.asarray(cv2.filter2D(derivative, -1, (kernel / kernel.sum())[None, :],
                                         borderType=cv2.BORDER_REPLICATE), np.float64)
    centres = t[1:-1]
    inside = np.abs(centres) <= search_px
    derivative[:, ~inside] = -1.0
    k = np.argmax(derivative, axis=1)
    peak = derivative[np.arange(n), k]
    k = np.clip(k, 1, len(centres) - 2)
    a, b, c = (derivative[np.arange(n), k - 1], derivative[np.arange(n), k], derivative[np.arange(n), k + 1])
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (a - c) / np.where(np.abs(denom) > 1e-9, denom, 1.0), 0.0)
    offset = centres[k] + np.clip(shift, -0.5, 0.5) * step
    in_range = np.isfinite(profile).all(axis=1)
    return offset, (peak >= min_step) & in_range


def near_goal(T_current_target: np.ndarray, depth_m: float, config: EdgeConfig) -> bool:
    """Whether the pose ``T_current_target`` is close enough to the goal (identity) for the goal's outline to be
    the object's outline (``config.near_goal_*``; ``depth_m``: the target's median depth)."""
    return near_identity(T_current_target, config.near_goal_translation_ratio * depth_m, config.near_goal_rotation_deg)


@dataclass(frozen=True)
class EdgeMeasurement:
    """Edges measured at a pose: for the contour points ``index`` (K,) into :class:`ModelEdges`, the predicted
    pixels ``uv_predicted_px`` (K, 2), unit normals ``normals`` (K, 2) in the current image and the measured
    edge positions ``uv_measured_px`` (K, 2) (on the normal through the prediction, the target's own edge offset
    removed); ``n_in_view``: contour points the pose puts in the image (measured or not)."""

    index: np.ndarray
    uv_predicted_px: np.ndarray
    normals: np.ndarray
    uv_measured_px: np.ndarray
    n_in_view: int = 0


def measure_edges(edges: ModelEdges, T_current_target: np.ndarray, grey: np.ndarray,
                  config: EdgeConfig) -> EdgeMeasurement:
    """Project the contour points with ``T_current_target`` into ``grey`` (the camera's image, float32, seen
    by ``edges.camera``) and find the edge along each one's normal (see :func:`edge_offsets`)."""
    cam = edges.camera
    p = transform_points(T_current_target, edges.points_goal_m)
    front = p[:, 2] > 1e-6
    uv = np.full((len(p), 2), np.nan)
    uv[front] = cam.project(p[front])
    # the normal in the current image: where a point a pixel outward in the target image goes
    Z = edges.points_goal_m[:, 2]
    q = transform_points(T_current_target, cam.unproject(edges.uv_target_px + edges.normals_target, Z))
    uv_q = np.full_like(uv, np.nan)
    ok_q = q[:, 2] > 1e-6
    uv_q[ok_q] = cam.project(q[ok_q])
    d = uv_q - uv
    length = np.linalg.norm(d, axis=1)
    good = front & ok_q & (length > 1e-6) & cam.in_image(np.nan_to_num(uv, nan=-1e9), margin_px=config.search_px + 2)
    idx = np.flatnonzero(good)
    normals = d[idx] / length[idx, None]
    offsets, found = edge_offsets(grey, uv[idx], normals, config.search_px, config.min_step)
    idx, normals, offsets = idx[found], normals[found], offsets[found]
    measured = uv[idx] + (offsets - edges.offset_target_px[idx])[:, None] * normals
    return EdgeMeasurement(idx, uv[idx], normals, measured, int(good.sum()))


@dataclass(frozen=True)
class EdgeFit:
    """The pose ``T_current_target`` fitted to edges and keypoints, the number of edges that fit within
    ``huber_px`` at it, their median normal distance (px), the contour points in view at it, and the median
    reprojection error of the keypoints at it (px of their camera; 0 without keypoints)."""

    T_current_target: np.ndarray
    n_edges: int
    median_edge_px: float
    n_in_view: int = 0
    median_keypoint_px: float = 0.0

    @property
    def fit_fraction(self) -> float:
        """Share of the outline in view that fits the pose (0 when none is in view)."""
        return self.n_edges / self.n_in_view if self.n_in_view else 0.0

    def usable(self, config: EdgeConfig) -> bool:
        """Whether the fit may replace the pose: enough of the outline fits it and the keypoints agree."""
        return self.fit_fraction >= config.min_fit_fraction and self.median_keypoint_px <= config.keypoint_gate_px


def _projection_jacobian(camera: Camera, p: np.ndarray) -> np.ndarray:
    """(N, 2, 6) derivative of the pixel projection of camera-frame points ``p`` (N, 3) w.r.t. a left twist
    ``(v, w)`` applied to the pose (``p -> p + v + w x p``): the points move as they would if the camera moved
    by the opposite twist, so this is minus the interaction matrix."""
    return -interaction_matrix_pixel(camera, camera.project(p), p[:, 2]).reshape(-1, 2, 6)


def _robust_weights(r: np.ndarray, k: float, redescending: bool) -> np.ndarray:
    """Huber weights at ``k``, or Tukey's biweight at ``4 k`` (zero beyond: a wrong edge stops pulling)."""
    a = np.abs(r)
    if redescending:
        return np.where(a < 4 * k, (1 - (a / (4 * k)) ** 2) ** 2, 0.0)
    return np.where(a <= k, 1.0, k / np.maximum(a, 1e-12))


def refine_pose_with_edges(T_current_target: np.ndarray, edges: ModelEdges, grey: np.ndarray,
                           points_goal_m: np.ndarray, uv_current_px: np.ndarray, keypoint_camera: Camera,
                           config: EdgeConfig, keypoint_sigma_px: float | None = None,
                           iterations_per_round: int = 3) -> EdgeFit | None:
    """``T_current_target`` refined on the edges measured in ``grey`` (the camera's image, seen by
    ``edges.camera``) together with keypoints (3D ``points_goal_m`` (N, 3) seen at ``uv_current_px`` (N, 2) by
    ``keypoint_camera``, e.g. the working one; their noise ``keypoint_sigma_px`` in px of the edges' image,
    ``config.keypoint_sigma_px`` when None): robust (Huber) Gauss-Newton, the edges re-measured at the
    start of each round. None when fewer than ``config.min_edges`` edges are measured at the start pose; an
    :class:`EdgeFit` at the start pose with no edge fitting when a later round measures fewer."""
    T = np.asarray(T_current_target, np.float64)
    sigma_px = config.keypoint_sigma_px if keypoint_sigma_px is None else keypoint_sigma_px
    scale_kp = edges.camera.fx / keypoint_camera.fx  # keypoint px -> edge px
    T_start = T
    for round_ in range(config.rounds):
        # the first round searches twice as far (the start pose may be a few pixels off), later ones reject
        # the edges that do not fit (Tukey) where the first only down-weights them (Huber)
        search = replace(config, search_px=2 * config.search_px) if round_ == 0 and config.rounds > 1 else config
        measurement = measure_edges(edges, T, grey, search)
        if len(measurement.index) < config.min_edges:
            return None if round_ == 0 else EdgeFit(T_start, 0, float("inf"), measurement.n_in_view)
        P_e = edges.points_goal_m[measurement.index]
        for _ in range(iterations_per_round):
            p_e = transform_points(T, P_e)
            r_e = np.einsum("ij,ij->i", measurement.normals, edges.camera.project(p_e) - measurement.uv_measured_px)
            J_e = np.einsum("ij,ijk->ik", measurement.normals, _projection_jacobian(edges.camera, p_e))
            rows, res = [J_e], [r_e]
            if len(points_goal_m):
                p_k = transform_points(T, points_goal_m)
                r_k = ((keypoint_camera.project(p_k) - uv_current_px) * scale_kp / sigma_px).reshape(-1)
                J_k = (_projection_jacobian(keypoint_camera, p_k) * scale_kp / sigma_px).reshape(-1, 6)
                rows.append(J_k)
                res.append(r_k)
            J, r = np.concatenate(rows), np.concatenate(res)
            w = _robust_weights(r, config.huber_px, redescending=round_ > 0)
            H = J.T @ (w[:, None] * J)
            try:
                dx = -np.linalg.solve(H + 1e-9 * np.trace(H) * np.eye(6), J.T @ (w * r))
            except np.linalg.LinAlgError:
                return EdgeFit(T_start, 0, float("inf"), measurement.n_in_view)
            T = se3_exp(dx) @ T
            if np.any(transform_points(T, P_e)[:, 2] <= 1e-6) or (
                    len(points_goal_m) and np.any(transform_points(T, points_goal_m)[:, 2] <= 1e-6)):
                return EdgeFit(T_start, 0, float("inf"), measurement.n_in_view)  # diverged behind the camera
            if np.linalg.norm(dx[:3]) < 1e-7 and np.linalg.norm(dx[3:]) < 1e-7:
                break
    final = measure_edges(edges, T, grey, config)
    if len(final.index) < config.min_edges:
        return EdgeFit(T_start, 0, float("inf"), final.n_in_view)
    r = np.abs(np.einsum("ij,ij->i", final.normals, final.uv_predicted_px - final.uv_measured_px))
    keypoint_px = float(np.median(np.linalg.norm(keypoint_camera.project(transform_points(T, points_goal_m))
                                                 - uv_current_px, axis=1))) if len(points_goal_m) else 0.0
    return EdgeFit(T, int(np.sum(r <= config.huber_px)), float(np.median(r)), final.n_in_view, keypoint_px)
