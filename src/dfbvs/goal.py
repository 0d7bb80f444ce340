"""Goals that fit the object, whatever its size and wherever its origin.

A CAD part exported from an assembly has its origin anywhere (a mounting hole, the assembly's origin) and a
size from 1 cm to 40 cm. A goal that looks at the origin from a fixed distance then sees a corner of the
part, or nothing. Here the goal camera looks at the object's *centre* (:func:`object_center_m`: the centre
of the axis-aligned bounding box, or the area-weighted centroid of the surface) from the distance at which
the object's bounding sphere fills ``fill_ratio`` of the image's shorter side (:func:`framing_distance_m`).

:class:`GoalSpec` is what a user gives: look-at angles around that centre (or around a given point) with an
optional explicit distance, or a pose file read elsewhere (``calibration.load_rigid_transform``).

:func:`pose_precision` says how precisely a goal view can pin the camera's pose at all: the spread of the pose
fitted to N image points with independent pixel noise (first order, the Cramer-Rao bound of a least-squares
fit), about what the final error of a servo that measures those points settles to at that noise (less noise per
point, e.g. a relit target, gets below it). A small part far away, or a large one at the distance that frames it,
can allow less than a user's tolerance.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .camera import Camera
from .control import interaction_matrix_pixel
from .errors import ConfigError
from .geometry import look_at_spherical
from .render.mesh import Mesh


class CenterKind(str, enum.Enum):
    ORIGIN = "origin"  # the mesh frame's origin (the old behaviour; right only for parts modelled about it)
    BBOX = "bbox"  # centre of the axis-aligned bounding box of the vertices
    CENTROID = "centroid"  # area-weighted centroid of the surface triangles


def object_center_m(mesh: Mesh, kind: CenterKind | str = CenterKind.BBOX) -> np.ndarray:
    """The object's centre (3,) in its own frame, metres."""
    kind = CenterKind(kind)
    if kind is CenterKind.ORIGIN:
        return np.zeros(3)
    v = mesh.vertices_m
    if kind is CenterKind.BBOX:
        return 0.5 * (v.min(axis=0) + v.max(axis=0))
    tri = v[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not area.sum() > 0:
        return 0.5 * (v.min(axis=0) + v.max(axis=0))
    return (tri.mean(axis=1) * area[:, None]).sum(axis=0) / area.sum()


def bounding_radius_m(mesh: Mesh, center_m: np.ndarray) -> float:
    """Radius (m) of the smallest sphere about ``center_m`` that holds every vertex."""
    return float(np.max(np.linalg.norm(mesh.vertices_m - np.asarray(center_m), axis=1)))


def framing_distance_m(radius_m: float, camera: Camera, fill_ratio: float) -> float:
    """Distance (m) from which a sphere of ``radius_m`` spans ``fill_ratio`` of the image's shorter side."""
    if not (np.isfinite(fill_ratio) and 0 < fill_ratio <= 1):
        raise ConfigError(f"fill_ratio={fill_ratio!r}: the object's share of the image must be in (0, 1]")
    if not (np.isfinite(radius_m) and radius_m > 0):
        raise ConfigError(f"object radius {radius_m!r} m: the mesh has no extent")
    half_px = 0.5 * min(camera.width_px, camera.height_px) * fill_ratio
    f_px = camera.fy if camera.height_px <= camera.width_px else camera.fx
    sin_half = np.sin(np.arctan(half_px / f_px))  # the sphere's silhouette half-angle
    return float(radius_m / sin_half)


@dataclass(frozen=True)
class GoalSpec:
    """The goal camera as look-at parameters around the object's centre: ``azimuth_deg``, ``elevation_deg``,
    ``roll_deg``, and ``distance_m`` (None: the framing distance for ``fill_ratio``). ``center`` picks the
    centre; ``target_m`` overrides it with a point of the object frame."""

    azimuth_deg: float = 30.0
    elevation_deg: float = 60.0
    roll_deg: float = 0.0
    distance_m: Optional[float] = None
    fill_ratio: float = 0.5
    center: CenterKind = CenterKind.BBOX
    target_m: Optional[tuple[float, float, float]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", CenterKind(self.center))
        if self.distance_m is not None and not (np.isfinite(self.distance_m) and self.distance_m > 0):
            raise ConfigError(f"goal distance_m={self.distance_m!r}: must be > 0 m")
        framing_distance_m(1.0, Camera.default(), self.fill_ratio)  # validates fill_ratio

    def look_at_point_m(self, mesh: Mesh) -> np.ndarray:
        return np.asarray(self.target_m, dtype=np.float64) if self.target_m is not None else object_center_m(
            mesh, self.center)

    def T_object_camera(self, mesh: Mesh, camera: Camera) -> np.ndarray:
        """The goal camera pose in the object frame."""
        point = self.look_at_point_m(mesh)
        distance = self.distance_m if self.distance_m is not None else framing_distance_m(
            bounding_radius_m(mesh, point), camera, self.fill_ratio)
        return look_at_spherical(distance, self.azimuth_deg, self.elevation_deg, self.roll_deg, target_m=point)


@dataclass(frozen=True)
class FramingReport:
    """What a user must check on a goal view: the object's share of the image, how many target keypoints
    land on it, its depth range, and warnings (empty when it looks right)."""

    coverage: float
    keypoints_on_object: int
    keypoints_total: int
    depth_min_m: float
    depth_max_m: float
    warnings: tuple[str, ...]


def check_framing(mask: np.ndarray, depth_m: np.ndarray, keypoints_px: Optional[np.ndarray] = None,
                  min_coverage: float = 0.03, max_coverage: float = 0.85, min_keypoints: int = 30) -> FramingReport:
    """Judge a goal render (``mask`` HxW bool, ``depth_m`` HxW, target keypoints (N, 2) px at that size)."""
    coverage = float(np.mean(mask))
    valid = depth_m[np.isfinite(depth_m)]
    d0, d1 = (float(valid.min()), float(valid.max())) if valid.size else (float("nan"), float("nan"))
    on = total = 0
    if keypoints_px is not None and len(keypoints_px):
        uv = np.rint(np.asarray(keypoints_px)).astype(int)
        h, w = mask.shape
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        total = len(uv)
        on = int(mask[uv[inside, 1], uv[inside, 0]].sum())
    warnings = []
    if coverage == 0:
        warnings.append("the object is not in view: check the mesh unit (mm vs m), the goal and the origin")
    elif coverage < min_coverage:
        warnings.append(f"the object covers only {coverage:.1%} of the image (< {min_coverage:.0%}): move the goal "
                        "closer or raise the fill ratio")
    elif coverage > max_coverage:
        warnings.append(f"the object covers {coverage:.1%} of the image (> {max_coverage:.0%}): the goal is inside "
                        "or too close; check the mesh unit and the distance")
    if coverage > 0:
        cut = [side for side, edge in (("left", mask[:, 0]), ("right", mask[:, -1]), ("top", mask[0, :]),
                                       ("bottom", mask[-1, :])) if edge.any()]
        if cut:
            warnings.append(f"the object is cut by the image's {', '.join(cut)} border{'s' if len(cut) > 1 else ''}: "
                            "part of it is out of view; frame it smaller (a larger distance or a smaller fill ratio)")
    if keypoints_px is not None and on < min_keypoints:
        warnings.append(f"only {on} of {total} target keypoints land on the object (< {min_keypoints}): a "
                        "feature-poor view; try another viewing angle or a closer goal")
    return FramingReport(coverage, on, total, d0, d1, tuple(warnings))


@dataclass(frozen=True)
class PosePrecision:
    """How precisely ``n_points`` image points with ``noise_px`` of independent noise per coordinate (pixels of
    the camera they were given in) pin the camera's pose at the goal: the RMS of the camera's translation error
    (mm, the norm) and rotation error (deg, the angle) of a least-squares pose fit, to first order; and the
    worst direction of each (the 1-sigma spread along the least-determined axis)."""

    translation_mm: float
    rotation_deg: float
    worst_translation_mm: float
    worst_rotation_deg: float
    n_points: int
    noise_px: float

    def exceeds(self, tolerance_mm: float, tolerance_deg: float) -> bool:
        """Whether the expected final error is beyond a tolerance (the view cannot be relied on to reach it)."""
        return self.translation_mm > tolerance_mm or self.rotation_deg > tolerance_deg


def pose_precision(camera: Camera, uv_px: np.ndarray, Z_m: np.ndarray, noise_px: float) -> PosePrecision:
    """The precision (:class:`PosePrecision`) of the camera pose fitted to the points ``uv_px`` (N, 2, pixels of
    ``camera``) at the goal, at depths ``Z_m`` (N,): the covariance ``noise_px^2 (L^T L)^-1`` of the camera
    twist, ``L`` the (2N, 6) interaction matrix in pixels. Infinite when fewer than 3 points or a degenerate
    layout leave the pose undetermined."""
    uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)
    if not noise_px > 0:
        raise ConfigError(f"noise_px={noise_px!r}: must be > 0")
    n = len(uv)
    inf = PosePrecision(float("inf"), float("inf"), float("inf"), float("inf"), n, float(noise_px))
    if n < 3:
        return inf
    L = interaction_matrix_pixel(camera, uv, Z_m)
    info = L.T @ L
    if np.linalg.cond(info) > 1e12:
        return inf
    cov = noise_px ** 2 * np.linalg.inv(info)
    c_t, c_r = cov[:3, :3], cov[3:, 3:]
    return PosePrecision(
        translation_mm=float(np.sqrt(np.trace(c_t)) * 1e3), rotation_deg=float(np.degrees(np.sqrt(np.trace(c_r)))),
        worst_translation_mm=float(np.sqrt(np.linalg.eigvalsh(c_t)[-1]) * 1e3),
        worst_rotation_deg=float(np.degrees(np.sqrt(np.linalg.eigvalsh(c_r)[-1]))), n_points=n,
        noise_px=float(noise_px))
