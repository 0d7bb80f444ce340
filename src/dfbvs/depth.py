"""Depth registration: the goal view's surface fitted to a live depth image (an RGB-D camera).

A measurement that does not come from the part's appearance. A smooth, untextured part (the ``housing``, the
``shaft`` of the parts protocol) has keypoints that are its shading, which any light unlike the render's moves
(docs/parts.md); its *shape* does not move. When the frame source gives metric depth, the servo fits the surface
the target render saw (the target's depth map, back-projected: points and normals in the goal camera frame) to the
live depth by point-to-plane ICP and gets ``T_current_target`` from geometry alone.

- :class:`DepthModel` (:func:`depth_model`): the target's object pixels as 3-D points (goal camera frame, m), their
  normals (toward the goal camera) and their target pixels, sampled once.
- :func:`register_depth`: from a prior pose (the last lock carried forward), live points near where the model
  projects, the dominant plane (the table) left out, then ICP with a shrinking gate; robust (Huber) weights.
- :func:`acquire_depth`: no prior: the live points above the dominant plane grouped in image components, one ICP
  started on each (the goal's orientation, the component's centroid), the best-supported fit kept.
- A fit is judged by what it explains both ways (:class:`DepthFit`): the share of the model's points in view that
  the live depth confirms (``coverage``: a fit on a distractor or through the part sees the table behind it) and
  the share of the live points near it that lie on it (``fitted_fraction``).

Frames: ``T_current_target`` maps goal-camera points to the current camera (as PnP's in ``estimation``); live
depth is Z along the optical axis (m), NaN or 0 where the sensor has none, at the camera's own resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from .camera import Camera
from .errors import ConfigError, FrameError
from .geometry import inverse, make_pose, se3_exp, transform_points


@dataclass(frozen=True)
class DepthConfig:
    """How a live depth image is used (``servo.depth``).

    - ``enabled``: serve a goal view the shading guard refuses (``servo.shading_guard``) on depth when frames
      carry it; without depth such a view is still refused.
    - ``model_points``: goal-view surface points sampled for the fit; ``live_stride_px``: every this many camera
      pixels of the live depth used.
    - ``plane_threshold_m``: live points within this of the dominant plane (a table) are not part candidates at
      acquisition. A plane is the dominant one only with ``plane_min_share`` of the points. In the fit, pairs whose
      *model* point lies less than ``model_min_height_m`` above the plane are left out: a part lying on the table
      touches it, and table points would pull the fit; chosen by the live points' own height instead, the noise
      biased the fit toward the camera (the shaft: 0.26 deg / 0.9 mm of bias with 0.5 mm of depth noise).
    - ``gates_m``: correspondences farther than this from the model are outliers, one ICP stage per gate, largest
      first (acquisition starts at the first; a tracked fit from a prior pose at ``tracking_gate_m``), each of
      ``iterations`` Gauss-Newton steps, on at most ``live_max_points`` live points (a seeded sample); then the
      ``projective_gates_m`` stages pair every model point with the live point through its pixel (unbiased by
      the noise, and a few milliseconds).
    - ``smoothing``: a fit within ``smooth_within_m`` and ``smooth_within_deg`` of the prior (the last pose carried
      forward through the twist commanded since: a disagreement the size of the sensor's noise) moves the estimate
      only this share of the way to it (an exponential average over frames; 1 = none). The shaft's pose about its
      axis rests on its flat, and one frame's fit scatters by 0.1-0.3 deg there at 0.5 mm of depth noise.
    - A fit is credible with ``min_points`` fitted live points, ``min_coverage`` of the model points in view
      confirmed by the live depth within ``confirm_m``, and ``min_fitted_fraction`` of the live points near the
      model on it.
    - ``alignment_max_px``: depth whose steps line up with the colour image's edges only when shifted by this many
      pixels or more (:func:`depth_colour_offset_px`, with a correlation ``alignment_min_gain`` times the unshifted
      one) is not aligned to the colour frames, and its fits would put the part millimetres off (a review measured
      1.1 mm / 0.10 deg at 8 px, 5.4 mm / 0.70 deg at 40 px, status OK): the servo holds still. Checked on the first
      depth frame, then every ``alignment_every`` frames (~30 ms at 640x480); 0: never.
    - ``control_points``: model points handed to the control law as correspondences (their target pixels and
      where the fitted pose projects them).
    """

    enabled: bool = True
    model_points: int = 4000
    live_stride_px: int = 2
    plane_threshold_m: float = 0.002
    plane_min_share: float = 0.2
    model_min_height_m: float = 0.004
    gates_m: tuple[float, ...] = (0.03, 0.015, 0.008, 0.004, 0.002)
    tracking_gate_m: float = 0.008
    projective_gates_m: tuple[float, ...] = (0.004, 0.002)
    live_max_points: int = 2500
    smoothing: float = 0.25
    smooth_within_m: float = 0.002
    smooth_within_deg: float = 0.6
    iterations: int = 8
    min_points: int = 200
    min_coverage: float = 0.6
    min_fitted_fraction: float = 0.6
    confirm_m: float = 0.003
    alignment_max_px: int = 3
    alignment_min_gain: float = 1.2
    alignment_every: int = 20
    control_points: int = 150

    def __post_init__(self) -> None:
        if not (self.gates_m and all(g > 0 for g in self.gates_m) and self.tracking_gate_m > 0):
            raise ConfigError(f"depth gates must be > 0 m, got gates_m={self.gates_m!r}, "
                              f"tracking_gate_m={self.tracking_gate_m!r}")
        if self.model_points < 50 or self.control_points < 4 or self.live_stride_px < 1 or self.iterations < 1:
            raise ConfigError(f"depth: model_points={self.model_points!r} (>= 50), control_points="
                              f"{self.control_points!r} (>= 4), live_stride_px={self.live_stride_px!r} (>= 1), "
                              f"iterations={self.iterations!r} (>= 1)")
        if self.live_max_points < 100 or not 0.0 < self.smoothing <= 1.0:
            raise ConfigError(f"depth: live_max_points={self.live_max_points!r} (>= 100), smoothing="
                              f"{self.smoothing!r} (in (0, 1])")
        for name in ("plane_min_share", "min_coverage", "min_fitted_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"depth.{name}={getattr(self, name)!r}: a fraction in [0, 1]")


@dataclass(frozen=True)
class DepthModel:
    """The goal view's surface: ``points_m`` (N, 3) and unit ``normals`` (N, 3) in the goal camera frame (normals
    toward it), ``uv_target_px`` (N, 2) their pixels in the target render (its camera, ``camera``)."""

    points_m: np.ndarray
    normals: np.ndarray
    uv_target_px: np.ndarray
    camera: Camera
    tree: cKDTree

    @property
    def centroid_m(self) -> np.ndarray:
        return self.points_m.mean(axis=0)


@dataclass(frozen=True)
class DepthFit:
    """One registration: ``T_current_target`` (4x4), the live points it fitted (``n_fitted``, within the last gate),
    the share of live points near the model that it fitted (``fitted_fraction``), the share of the model points in
    view the live depth confirms (``coverage``), their RMS point-to-plane residual (m)."""

    T_current_target: np.ndarray
    n_fitted: int
    fitted_fraction: float
    coverage: float
    rms_m: float

    def credible(self, config: DepthConfig) -> str:
        """Why the fit is not credible (a sentence naming the values), or ""."""
        if self.n_fitted < config.min_points:
            return f"depth fit: {self.n_fitted} live points fitted < depth.min_points={config.min_points}"
        if self.coverage < config.min_coverage:
            return (f"depth fit: the live depth confirms {self.coverage:.2f} of the model in view < "
                    f"depth.min_coverage={config.min_coverage}")
        if self.fitted_fraction < config.min_fitted_fraction:
            return (f"depth fit: {self.fitted_fraction:.2f} of the live points near the model lie on it < "
                    f"depth.min_fitted_fraction={config.min_fitted_fraction}")
        return ""

    @property
    def score(self) -> float:
        return self.coverage * self.fitted_fraction * np.log1p(self.n_fitted)


def as_depth_image(depth_m: object, height_px: int, width_px: int) -> np.ndarray:
    """A live depth image as (H, W) float64 metres with NaN where there is none, or a :class:`FrameError` naming
    what was given: it must be as large as the colour frame it is aligned to (``height_px`` x ``width_px``)."""
    d = np.asarray(depth_m) if isinstance(depth_m, np.ndarray) else None
    if d is None or d.ndim != 2 or d.dtype.kind not in "fiu":
        shape = getattr(depth_m, "shape", None)
        raise FrameError(f"depth image: expected an (H, W) array of metres, got {type(depth_m).__name__} "
                         f"with shape {shape}")
    if d.shape != (height_px, width_px):
        raise FrameError(f"depth image is {d.shape[1]}x{d.shape[0]}, its colour frame {width_px}x{height_px}: depth "
                         "must be aligned to the colour image (same size)")
    d = d.astype(np.float64)
    largest = float(np.max(np.where(np.isfinite(d), d, 0.0), initial=0.0))
    if largest > 100.0:
        raise FrameError(f"depth image holds values up to {largest:.0f}: metres are expected (a raw sensor image "
                         "times its depth unit: 0.001 for millimetres, 0.0001 for 0.1 mm)")
    return np.where(np.isfinite(d) & (d > 0), d, np.nan)


def depth_colour_offset_px(rgb: np.ndarray, depth_m: np.ndarray, max_shift_px: int = 16,
                           ) -> tuple[int, int, float] | None:
    """Where the depth image's steps (object boundaries) line up with the colour image's edges: the shift (dx, dy)
    px of the colour edges relative to the depth steps that correlates them best, within ``max_shift_px``, and how
    much better it correlates than no shift (a ratio >= 1); None without steps in the depth. Aligned depth gives
    (0, 0) or a pixel off (measured on the parts protocol's 21 start frames: |shift| <= 1 px, ratio <= 1.27); depth
    shifted by 3 / 8 px gave that shift on all but the 1.2 m views (ratio 1.0-1.02, nothing flagged there)."""
    from scipy.signal import fftconvolve

    grey = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    magnitude /= float(magnitude.mean()) + 1e-6
    filled = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, 0.0).astype(np.float32)
    for _ in range(3):  # a stereo sensor has no depth at steps: fill the holes from their farther side
        filled = np.where(filled > 0, filled, cv2.dilate(filled, np.ones((3, 3), np.uint8)))
    log_depth = np.log(np.maximum(filled, 1e-3))
    step = np.hypot(cv2.Sobel(log_depth, cv2.CV_32F, 1, 0), cv2.Sobel(log_depth, cv2.CV_32F, 0, 1)) / 8.0
    steps = ((step > 0.01) & (filled > 0)).astype(np.float32)
    if steps.sum() < 50:
        return None
    correlation = fftconvolve(magnitude, steps[::-1, ::-1], mode="same")
    cy, cx = correlation.shape[0] // 2, correlation.shape[1] // 2
    window = correlation[cy - max_shift_px:cy + max_shift_px + 1, cx - max_shift_px:cx + max_shift_px + 1]
    ky, kx = np.unravel_index(int(np.argmax(window)), window.shape)
    at_zero = float(window[max_shift_px, max_shift_px])
    return int(kx - max_shift_px), int(ky - max_shift_px), float(window[ky, kx]) / max(at_zero, 1e-12)


def _backproject(camera: Camera, depth_m: np.ndarray, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    z = depth_m[v, u].astype(np.float64)
    return np.column_stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z])


def depth_model(depth_m: np.ndarray, mask: np.ndarray, camera: Camera, n_points: int = 4000) -> DepthModel:
    """The model of a target render (its ``depth_m``, object ``mask`` and ``camera``): object pixels whose four
    neighbours are on the object without a depth step (> 2 % of the depth), with normals from them, about
    ``n_points`` of them on a regular pixel grid."""
    d = np.where(mask & np.isfinite(depth_m), depth_m, np.nan).astype(np.float64)
    H, W = d.shape
    vv, uu = np.mgrid[0:H, 0:W]
    P = np.dstack([(uu - camera.cx) / camera.fx * d, (vv - camera.cy) / camera.fy * d, d])
    du = P[1:-1, 2:] - P[1:-1, :-2]
    dv = P[2:, 1:-1] - P[:-2, 1:-1]
    n = np.cross(du, dv)
    z = d[1:-1, 1:-1]
    smooth = np.isfinite(n).all(axis=2) & (np.abs(du[..., 2]) < 0.04 * z) & (np.abs(dv[..., 2]) < 0.04 * z)
    ok = np.zeros_like(mask, dtype=bool)
    ok[1:-1, 1:-1] = smooth
    count = int(ok.sum())
    if count < 50:
        raise ValueError(f"the target shows {count} smooth object pixels: too few for a depth model")
    stride = max(1, int(np.sqrt(count / n_points)))
    grid = np.zeros_like(ok)
    grid[::stride, ::stride] = True
    v, u = np.nonzero(ok & grid)
    normals = n[v - 1, u - 1]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    points = P[v, u]
    flip = np.einsum("ij,ij->i", normals, points) > 0  # toward the camera
    normals[flip] *= -1
    return DepthModel(points, normals, np.column_stack([u, v]).astype(np.float64), camera, cKDTree(points))


def dominant_plane(points_m: np.ndarray, threshold_m: float, min_share: float,
                   rng: np.random.Generator, iterations: int = 60) -> tuple[np.ndarray, float] | None:
    """The plane most points lie on (RANSAC): unit normal ``n`` toward the camera (origin) and offset ``d``
    with ``n . p + d`` the signed distance of ``p`` (m, > 0 on the camera's side); None when no plane holds
    ``min_share`` of them."""
    if len(points_m) < 50:
        return None
    best, best_count = None, 0
    for _ in range(iterations):
        a, b, c = points_m[rng.choice(len(points_m), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n /= norm
        d = -float(n @ a)
        count = int(np.sum(np.abs(points_m @ n + d) < threshold_m))
        if count > best_count:
            best, best_count = (n, d), count
    if best is None or best_count < min_share * len(points_m):
        return None
    n, d = best
    near = np.abs(points_m @ n + d) < threshold_m  # refit on its inliers (least squares)
    centre = points_m[near].mean(axis=0)
    n = np.linalg.svd(points_m[near] - centre, full_matrices=False)[2][2]
    d = -float(n @ centre)
    return (n, d) if d > 0 else (-n, -d)  # the camera (origin) on the positive side


def _live_points(depth_m: np.ndarray, camera: Camera, stride: int, window: tuple[int, int, int, int] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Back-projected live points (camera frame, m) with valid depth, every ``stride`` px within ``window``
    (u0, v0, u1, v1; the whole image without one), and their (v, u) pixels."""
    H, W = depth_m.shape
    u0, v0, u1, v1 = window if window is not None else (0, 0, W, H)
    vv, uu = np.mgrid[max(v0, 0):min(v1, H):stride, max(u0, 0):min(u1, W):stride]
    v, u = vv.ravel(), uu.ravel()
    z = depth_m[v, u]
    ok = np.isfinite(z) & (z > 0)
    v, u = v[ok], u[ok]
    return _backproject(camera, depth_m, v, u), np.column_stack([v, u])


#: a plane in the current camera frame: unit normal toward the camera and offset (``n . p + d``: height, m)
Plane = tuple[np.ndarray, float]


def _associate(model: DepthModel, X: np.ndarray, live_m: np.ndarray, gate_m: float, plane: Plane | None,
               min_height_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each live point (current camera) moved by ``X`` into the goal camera frame, its nearest model point and
    whether the pair is used: within ``gate_m``, and (with a ``plane``) the model point at least ``min_height_m``
    above it where the pose puts it. Chosen on the model's side: choosing by the live point's own height keeps the
    points that noise lifts off the table and drops those it lowers, a bias toward the camera."""
    S = transform_points(X, live_m)
    dist, idx = model.tree.query(S, distance_upper_bound=gate_m)
    used = np.isfinite(dist)
    if plane is not None and used.any():
        n, d = plane
        m_current = transform_points(inverse(X), model.points_m[idx[used]])
        used[used] = m_current @ n + d > min_height_m
    return S, idx, used


def _icp(model: DepthModel, live_m: np.ndarray, T_current_target: np.ndarray, gates_m: tuple[float, ...],
         iterations: int, plane: Plane | None = None, min_height_m: float = 0.0,
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point-to-plane ICP of live points (current camera) onto the model (goal camera): the pose, and for the last
    gate the mask of live points fitted and their residuals (m). With a ``plane`` (the table), pairs whose model
    point lies lower than ``min_height_m`` above it are left out (:func:`_associate`)."""
    X = inverse(T_current_target)  # current camera -> goal camera
    fitted, res = np.zeros(len(live_m), dtype=bool), np.zeros(0)
    for gate in gates_m:
        for _ in range(iterations):
            S, idx, fitted = _associate(model, X, live_m, gate, plane, min_height_m)
            if fitted.sum() < 6:
                return inverse(X), fitted, np.zeros(0)
            s, m, n = S[fitted], model.points_m[idx[fitted]], model.normals[idx[fitted]]
            res = np.einsum("ij,ij->i", n, s - m)
            J = np.hstack([n, np.cross(s, n)])
            huber = gate / 4.0
            w = np.minimum(1.0, huber / np.maximum(np.abs(res), 1e-12))
            H = (J * w[:, None]).T @ J + 1e-9 * np.eye(6)
            delta = np.linalg.solve(H, -(J * w[:, None]).T @ res)
            X = se3_exp(delta) @ X
            if np.linalg.norm(delta[:3]) < 1e-6 and np.linalg.norm(delta[3:]) < 1e-6:
                break
    return inverse(X), fitted, res


def _projective_pairs(model: DepthModel, depth_m: np.ndarray, camera: Camera, T_current_target: np.ndarray,
                      gate_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model points where the pose puts them (current camera, m), their normals there, and the live points seen
    through their pixels, for the pairs within ``gate_m`` in depth."""
    T = np.asarray(T_current_target, dtype=np.float64)
    H, W = depth_m.shape
    P = transform_points(T, model.points_m)
    N = model.normals @ T[:3, :3].T
    front = P[:, 2] > 1e-3
    uv = camera.project(P[front]) if front.any() else np.zeros((0, 2))
    u, v = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    rows = np.flatnonzero(front)[inside]
    u, v = u[inside], v[inside]
    z = depth_m[v, u]
    ok = np.isfinite(z) & (np.abs(z - P[rows, 2]) < gate_m)
    rows, u, v = rows[ok], u[ok], v[ok]
    return P[rows], N[rows], _backproject(camera, depth_m, v, u)


def _icp_projective(model: DepthModel, depth_m: np.ndarray, camera: Camera, T_current_target: np.ndarray,
                    gates_m: tuple[float, ...], iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Point-to-plane ICP with projective association (a model point paired with the live point seen through the
    pixel the pose projects it to, used within ``gate_m`` in depth): the pose and the last residuals (m). Unlike a
    nearest neighbour in 3-D, this pairing does not depend on the noise of the live points (nearest neighbours near a
    crease, the shaft's flat, paired noisy points across it: 0.25 deg of bias at 0.5 mm of noise); it needs a prior
    within a few millimetres, which the nearest-neighbour stages give."""
    T = np.asarray(T_current_target, dtype=np.float64)
    res = np.zeros(0)
    for gate in gates_m:
        for _ in range(iterations):
            p, n, s = _projective_pairs(model, depth_m, camera, T, gate)
            if len(p) < 6:
                return T, np.zeros(0)
            res = np.einsum("ij,ij->i", n, s - p)
            J = -np.hstack([n, np.cross(p, n)])
            w = np.minimum(1.0, (gate / 4.0) / np.maximum(np.abs(res), 1e-12))
            delta = np.linalg.solve((J * w[:, None]).T @ J + 1e-9 * np.eye(6), -(J * w[:, None]).T @ res)
            T = se3_exp(delta) @ T
            if np.linalg.norm(delta[:3]) < 1e-7 and np.linalg.norm(delta[3:]) < 1e-7:
                break
    return T, res


def _judge(model: DepthModel, T_current_target: np.ndarray, depth_m: np.ndarray, camera: Camera,
           live_m: np.ndarray, fitted: np.ndarray, res: np.ndarray, gate_m: float, config: DepthConfig,
           plane: Plane | None = None) -> DepthFit:
    """A :class:`DepthFit` of a pose: the model points it puts in view whose live depth confirms them (within
    ``confirm_m``), and the live points near it (paired as :func:`_associate` pairs them) that it fitted."""
    P = transform_points(T_current_target, model.points_m)
    front = P[:, 2] > 1e-3
    uv = camera.project(P[front]) if front.any() else np.zeros((0, 2))
    u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    H, W = depth_m.shape
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    z_live = depth_m[v[inside], u[inside]]
    z_model = P[front][inside, 2]
    valid = np.isfinite(z_live) & (z_live > 0)
    seen = np.abs(z_live[valid] - z_model[valid]) < config.confirm_m
    coverage = float(seen.mean()) if valid.any() else 0.0
    near = int(_associate(model, inverse(T_current_target), live_m, 4 * gate_m, plane,
                          config.model_min_height_m)[2].sum())
    n_fitted = int(fitted.sum())
    rms = float(np.sqrt(np.mean(res ** 2))) if len(res) else float("nan")
    return DepthFit(T_current_target, n_fitted, n_fitted / near if near else 0.0, coverage, rms)


def _window(model: DepthModel, T_current_target: np.ndarray, camera: Camera, margin: float = 0.25,
            ) -> tuple[int, int, int, int] | None:
    """The image window (u0, v0, u1, v1) around where a pose projects the model, or None when it is behind."""
    P = transform_points(T_current_target, model.points_m)
    P = P[P[:, 2] > 1e-3]
    if len(P) < 10:
        return None
    uv = camera.project(P)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    pad = margin * (hi - lo) + 10
    return int(lo[0] - pad[0]), int(lo[1] - pad[1]), int(np.ceil(hi[0] + pad[0])), int(np.ceil(hi[1] + pad[1]))


def _table(live_m: np.ndarray, config: DepthConfig, rng: np.random.Generator) -> Plane | None:
    """The dominant plane of the live points (:func:`dominant_plane` on up to 3000 of them), or None."""
    sample = live_m[rng.choice(len(live_m), min(len(live_m), 3000), replace=False)] if len(live_m) else live_m
    return dominant_plane(sample, config.plane_threshold_m, config.plane_min_share, rng)


def _off_plane(live_m: np.ndarray, config: DepthConfig, plane: Plane | None) -> np.ndarray:
    """The mask of live points not on the plane (on its camera side by more than the threshold); all without one."""
    if plane is None:
        return np.ones(len(live_m), dtype=bool)
    n, d = plane
    return live_m @ n + d > config.plane_threshold_m


def register_depth(model: DepthModel, depth_m: np.ndarray, camera: Camera, T_prior: np.ndarray,
                   config: DepthConfig = DepthConfig(), seed: int = 0) -> DepthFit | None:
    """The model fitted to ``depth_m`` (the live camera ``camera``'s) from the prior pose ``T_prior``
    (``T_current_target``), gates from ``tracking_gate_m`` down; None when the prior puts the model out of view."""
    window = _window(model, T_prior, camera)
    if window is None:
        return None
    rng = np.random.default_rng(seed)
    live_m, _ = _live_points(depth_m, camera, config.live_stride_px)
    plane = _table(live_m, config, rng)
    u0, v0, u1, v1 = window
    uv = camera.project(live_m) if len(live_m) else np.zeros((0, 2))
    live_m = live_m[(uv[:, 0] >= u0) & (uv[:, 0] < u1) & (uv[:, 1] >= v0) & (uv[:, 1] < v1)]
    if int(_off_plane(live_m, config, plane).sum()) < config.min_points:
        return DepthFit(T_prior, 0, 0.0, 0.0, float("nan"))
    if len(live_m) > config.live_max_points:
        live_m = live_m[np.sort(rng.choice(len(live_m), config.live_max_points, replace=False))]
    gates = tuple(g for g in config.gates_m if g <= config.tracking_gate_m) or (config.tracking_gate_m,)
    T, fitted, res = _icp(model, live_m, T_prior, gates, config.iterations, plane, config.model_min_height_m)
    if config.projective_gates_m:
        T, _ = _icp_projective(model, depth_m, camera, T, config.projective_gates_m, config.iterations)
    return _judge(model, T, depth_m, camera, live_m, fitted, res, gates[-1], config, plane)


def acquire_depth(model: DepthModel, depth_m: np.ndarray, camera: Camera, config: DepthConfig = DepthConfig(),
                  seed: int = 0, max_candidates: int = 6) -> DepthFit | None:
    """The model found in ``depth_m`` without a prior: the live points off the dominant plane grouped by image
    components (every ``live_stride_px * 2`` px), an ICP from each of the ``max_candidates`` largest (the goal's
    orientation, the component's centroid under the model's), then the best-supported fit refined on every live
    point; None when nothing stands off the plane."""
    rng = np.random.default_rng(seed)
    stride = config.live_stride_px * 2
    live_m, vu = _live_points(depth_m, camera, stride)
    if len(live_m) < config.min_points // 4:
        return None
    off = _off_plane(live_m, config, _table(live_m, config, rng))
    H, W = depth_m.shape
    grid = np.zeros(((H + stride - 1) // stride, (W + stride - 1) // stride), np.uint8)
    grid[vu[off, 0] // stride, vu[off, 1] // stride] = 1
    grid = cv2.morphologyEx(grid, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(grid, connectivity=8)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:max_candidates] + 1
    cells = labels[vu[:, 0] // stride, vu[:, 1] // stride]
    best: DepthFit | None = None
    for label in order:
        members = off & (cells == label)
        if members.sum() < 20:
            continue
        T0 = make_pose(np.eye(3), live_m[members].mean(axis=0) - model.centroid_m)
        T, fitted, res = _icp(model, live_m[off], T0, config.gates_m, config.iterations)
        fit = _judge(model, T, depth_m, camera, live_m[off], fitted, res, config.gates_m[-1], config)
        if best is None or fit.score > best.score:
            best = fit
    if best is None:
        return None
    return register_depth(model, depth_m, camera, best.T_current_target, config, seed)
