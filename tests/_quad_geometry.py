"""Shared by the render backend tests: a tilted quad in the camera frame and exact point-in-polygon at pixel
centres, the references a renderer's ids are checked against."""

from __future__ import annotations

import numpy as np

from dfbvs.geometry import make_pose, so3_exp
from dfbvs.render import Mesh


def tilted_quad(depth_m: float, half_m: float, tilt_rad: float, offset=(0.0, 0.0)):
    """Quad in the camera frame: centred at (offset, depth), tilted about a skew axis. Returns (mesh, T)."""
    v = np.array([[-half_m, -half_m * 0.7, 0], [half_m, -half_m, 0], [half_m * 0.8, half_m, 0], [-half_m, half_m, 0]])
    R = so3_exp(tilt_rad * np.array([0.6, 0.8, 0.0]))
    T = make_pose(R, [offset[0], offset[1], depth_m])
    return Mesh(v, np.array([[0, 1, 2], [0, 2, 3]]), name="quad"), T


def inside_polygon(uv: np.ndarray, poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convex polygon (counter-clockwise or clockwise): inside mask and distance (px) to the nearest edge."""
    inside_pos = np.ones(len(uv), bool)
    inside_neg = np.ones(len(uv), bool)
    dist = np.full(len(uv), np.inf)
    for k in range(len(poly)):
        a, b = poly[k], poly[(k + 1) % len(poly)]
        e = b - a
        cross = e[0] * (uv[:, 1] - a[1]) - e[1] * (uv[:, 0] - a[0])
        inside_pos &= cross > 0
        inside_neg &= cross < 0
        dist = np.minimum(dist, np.abs(cross) / np.linalg.norm(e))
    return inside_pos | inside_neg, dist
