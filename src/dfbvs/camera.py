"""Pinhole camera model (OpenCV axes: x right, y down, z forward) with optional distortion.

Pixel coordinates ``(u, v)`` have integer values at pixel centres (OpenCV convention): the centre of the
top-left pixel is ``(0, 0)`` and the image spans ``[-0.5, width - 0.5]``. Points are row-stacked:
``(N, 2)`` pixels, ``(N, 3)`` metres in the camera frame. Depth ``Z`` is the coordinate along the optical
axis, not the ray length.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .errors import CalibrationError

#: two image sizes are the same camera model at two resolutions when their aspect ratios (width / height)
#: differ by less than this fraction (1 %: 4000x3000 -> 320x240 is exact, 1280x720 -> 320x240 is refused)
ASPECT_TOLERANCE = 0.01


def aspect_mismatch(width_a_px: int, height_a_px: int, width_b_px: int, height_b_px: int) -> float:
    """Relative difference of the aspect ratios (width / height) of two image sizes (0 = the same shape)."""
    a, b = width_a_px / height_a_px, width_b_px / height_b_px
    return abs(a - b) / b


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels for an image of ``width_px`` x ``height_px``.

    ``dist`` holds OpenCV distortion coefficients ``(k1, k2, p1, p2, k3)``; all zero by default.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width_px: int
    height_px: int
    dist: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0, 0.0))

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise CalibrationError(f"intrinsics {name}={value!r}: focal length must be a positive number of pixels")
        for name in ("cx", "cy"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise CalibrationError(f"intrinsics {name}={value!r}: principal point must be finite")
        for name in ("width_px", "height_px"):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise CalibrationError(f"camera {name}={value!r}: image size must be a positive integer")
        if len(self.dist) not in (4, 5) or not all(np.isfinite(self.dist)):
            raise CalibrationError(
                f"distortion must be 4 or 5 finite coefficients (k1,k2,p1,p2[,k3]), got {self.dist!r}")
        object.__setattr__(self, "dist", tuple(float(d) for d in self.dist) + (0.0,) * (5 - len(self.dist)))
        object.__setattr__(self, "width_px", int(self.width_px))
        object.__setattr__(self, "height_px", int(self.height_px))

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def from_fov(cls, width_px: int, height_px: int, hfov_deg: float) -> Camera:
        """Centred camera with square pixels and horizontal field of view ``hfov_deg``."""
        if not 0 < hfov_deg < 180:
            raise CalibrationError(f"horizontal field of view must be in (0, 180) deg, got {hfov_deg!r}")
        f = 0.5 * width_px / np.tan(np.deg2rad(hfov_deg) / 2)
        return cls(f, f, (width_px - 1) / 2.0, (height_px - 1) / 2.0, width_px, height_px)

    @classmethod
    def default(cls) -> Camera:
        """The working camera of the project: 320x240 with a ~34 deg horizontal field of view, like the
        paper's FLIR BFS-U3-120S4C (4000x3000, 1.85 um pixels, 7.4 mm wide) behind a 12 mm lens.

        (A 60 deg lens at 0.15 m was tried: fewer refined inliers on the object and a worse final pose,
        3.2 mm / 1.1 deg against 0.4-0.9 mm / 0.1-0.25 deg; see docs/servo.md.)"""
        return cls(fx=520.0, fy=520.0, cx=159.5, cy=119.5, width_px=320, height_px=240)

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return any(d != 0.0 for d in self.dist)

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width_px": self.width_px,
                "height_px": self.height_px, "dist": list(self.dist)}

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        return cls(d["fx"], d["fy"], d["cx"], d["cy"], d["width_px"], d["height_px"], tuple(d.get("dist", (0,) * 5)))

    def rescaled(self, width_px: int, height_px: int) -> Camera:
        """The same physical camera sampled at another resolution (e.g. 1280x960 served at 320x240).

        With integer pixel centres, pixel ``u`` at the old resolution maps to ``(u + 0.5) * s - 0.5``.
        Only sizes of the same aspect ratio (within :data:`ASPECT_TOLERANCE`) are the same camera: another
        aspect would silently make non-square pixels (e.g. a 320x240 lens at 640x240), a
        :class:`~dfbvs.errors.CalibrationError` naming both sizes.
        """
        if int(width_px) != width_px or int(height_px) != height_px or width_px <= 0 or height_px <= 0:
            raise CalibrationError(f"image size {width_px!r}x{height_px!r}: must be positive integers")
        if aspect_mismatch(width_px, height_px, self.width_px, self.height_px) > ASPECT_TOLERANCE:
            raise CalibrationError(
                f"a {width_px}x{height_px} image (aspect {width_px / height_px:.2f}) is not the {self.width_px}x"
                f"{self.height_px} camera (aspect {self.width_px / self.height_px:.2f}) at another resolution: "
                f"the pixels would not be square; use a size of aspect {self.width_px / self.height_px:.2f}, "
                f"e.g. {self.width_px * height_px // self.height_px}x{height_px}")
        sx, sy = width_px / self.width_px, height_px / self.height_px
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                       cy=(self.cy + 0.5) * sy - 0.5, width_px=width_px, height_px=height_px)

    def pixels_from(self, other: Camera, uv_px: np.ndarray) -> np.ndarray:
        """Pixels ``(N, 2)`` of ``other`` (this physical camera sampled at another resolution, see
        :meth:`rescaled`) expressed in this camera's pixels."""
        sx, sy = self.width_px / other.width_px, self.height_px / other.height_px
        uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)
        return np.column_stack([(uv[:, 0] + 0.5) * sx - 0.5, (uv[:, 1] + 0.5) * sy - 0.5])

    # --- distortion ---------------------------------------------------------------------------------
    def _distort(self, xy: np.ndarray) -> np.ndarray:
        k1, k2, p1, p2, k3 = self.dist
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return np.column_stack([xd, yd])

    def _undistort(self, xy_d: np.ndarray, iterations: int = 20) -> np.ndarray:
        xy = xy_d.copy()
        for _ in range(iterations):  # fixed point, as OpenCV's undistortPoints
            err = self._distort(xy) - xy_d
            xy = xy - err
        return xy

    # --- projections --------------------------------------------------------------------------------
    def normalized_to_pixel(self, xy: np.ndarray) -> np.ndarray:
        """Normalized image coordinates ``(x, y) = (X/Z, Y/Z)`` (N, 2) to pixels (N, 2), distorting if set."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        if self.has_distortion:
            xy = self._distort(xy)
        return np.column_stack([self.fx * xy[:, 0] + self.cx, self.fy * xy[:, 1] + self.cy])

    def pixel_to_normalized(self, uv_px: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) to undistorted normalized coordinates (N, 2)."""
        uv = np.atleast_2d(np.asarray(uv_px, dtype=np.float64))
        xy = np.column_stack([(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy])
        return self._undistort(xy) if self.has_distortion else xy

    def project(self, p_camera_m: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) of points (N, 3) in the camera frame (metres). Points need Z > 0."""
        p = np.atleast_2d(np.asarray(p_camera_m, dtype=np.float64))
        return self.normalized_to_pixel(p[:, :2] / p[:, 2:3])

    def unproject(self, uv_px: np.ndarray, Z_m: np.ndarray) -> np.ndarray:
        """Points (N, 3) in the camera frame from pixels (N, 2) and depths along the optical axis (N,)."""
        xy = self.pixel_to_normalized(uv_px)
        Z = np.asarray(Z_m, dtype=np.float64).reshape(-1)
        return np.column_stack([xy * Z[:, None], Z])

    def in_image(self, uv_px: np.ndarray, margin_px: float = 0.0) -> np.ndarray:
        """Boolean mask (N,) of pixels inside the image, at least ``margin_px`` from its border."""
        uv = np.atleast_2d(np.asarray(uv_px, dtype=np.float64))
        lo = -0.5 + margin_px
        return ((uv[:, 0] >= lo) & (uv[:, 0] <= self.width_px - 0.5 - margin_px)
                & (uv[:, 1] >= lo) & (uv[:, 1] <= self.height_px - 0.5 - margin_px))
