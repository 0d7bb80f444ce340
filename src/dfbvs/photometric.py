"""The whole-image baseline the paper argues against: photometric visual servoing (Collewet & Marchand
2011). The feature is every pixel's intensity of a downsampled, blurred grey image; ``L*`` comes from the
target's gradients and rendered depth. It is a servo like :class:`~dfbvs.servo.DFBVSServo` (image in,
:class:`~dfbvs.servo.ServoStep` out), registered in :data:`~dfbvs.servo.SERVOS` as ``photometric``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .camera import Camera
from .control import interaction_matrix_normalized, saturate_twist
from .errors import ConfigError
from .imaging import as_rgb_frame, grey_uint8, resize_area, resize_nearest
from .matching import Correspondences
from .render.target import TargetCheckConfig, TargetRender, check_target_render
from .servo import CorrespondenceSource, ServoStep, StepStatus


@dataclass(frozen=True)
class PhotometricConfig:
    """Photometric (luminance) servoing on a downsampled, blurred grey image; ``L*`` from the target's
    gradients and rendered depth (background pixels get the median object depth)."""

    working_width_px: int = 160
    working_height_px: int = 120
    blur_sigma_px: float = 1.0
    gain: float = 3.0  # 1/s; measured: 1.0 had not converged after 300 cycles from 2 cm / 3 deg, 3.0 did in 202
    lm_mu: float = 0.01
    max_linear_m_s: float = 0.05
    max_angular_rad_s: float = 0.3
    target_check: TargetCheckConfig = field(default_factory=TargetCheckConfig)  # floors of a usable target


def photometric_interaction_matrix(
    camera: Camera, grad_u: np.ndarray, grad_v: np.ndarray, Z_m: np.ndarray, stride_px: int = 1
) -> np.ndarray:
    """``(H*W, 6)`` interaction matrix of the luminance at every pixel (brightness constancy):
    ``L_I = -(dI/dx L_x + dI/dy L_y)`` with ``dI/dx = fx dI/du`` (normalized coordinates), ``L_x, L_y`` the
    point interaction rows at depth ``Z_m`` (H, W). ``grad_u``/``grad_v`` are intensity gradients per pixel.
    ``stride_px`` subsamples pixels (rows of the result follow the subsampled raster)."""
    h, w = grad_u.shape
    vv, uu = np.mgrid[0:h:stride_px, 0:w:stride_px]
    xy = camera.pixel_to_normalized(np.column_stack([uu.ravel(), vv.ravel()]).astype(np.float64))
    Z = Z_m[::stride_px, ::stride_px].ravel().astype(np.float64)
    Ix = grad_u[::stride_px, ::stride_px].ravel() * camera.fx
    Iy = grad_v[::stride_px, ::stride_px].ravel() * camera.fy
    L = interaction_matrix_normalized(xy, Z)
    return -(Ix[:, None] * L[0::2] + Iy[:, None] * L[1::2])


def photometric_control(L_I: np.ndarray, error: np.ndarray, gain: float, mu: float,
                        max_linear_m_s: float, max_angular_rad_s: float) -> np.ndarray:
    """Levenberg-Marquardt photometric law ``v = -gain (H + mu diag(H))^-1 L^T e``, ``H = L^T L``;
    returns the saturated camera twist (m/s, rad/s)."""
    H = L_I.T @ L_I
    v = -gain * np.linalg.solve(H + mu * np.diag(np.diag(H)), L_I.T @ error)
    return saturate_twist(v, max_linear_m_s, max_angular_rad_s)


def _grey_float(image: np.ndarray, width_px: int, height_px: int, blur_sigma_px: float) -> np.ndarray:
    import cv2

    grey = grey_uint8(resize_area(np.asarray(image), width_px, height_px)).astype(np.float64) / 255.0
    return cv2.GaussianBlur(grey, (0, 0), blur_sigma_px) if blur_sigma_px > 0 else grey


class PhotometricServo:
    """``step(image)`` returns a :class:`ServoStep` with no correspondences and ``mean_error_px`` NaN (the
    method has no feature positions); stop it on twist magnitude (:class:`~dfbvs.stop.StopConfig`). Frames are
    checked as the DFBVS servo's (:func:`~dfbvs.imaging.as_rgb_frame`: same camera, any resolution); the target
    render as every target (:func:`~dfbvs.render.target.check_target_render`)."""

    def __init__(self, config: PhotometricConfig, render: TargetRender):
        import cv2

        check_target_render(render, None, config.target_check)
        self.config = config
        self.render_camera = render.camera
        w, h = config.working_width_px, config.working_height_px
        from .target import working_camera

        self.camera = working_camera(render.camera, w, h)
        self.I_star = _grey_float(render.rgb, w, h, config.blur_sigma_px)
        Z = resize_nearest(render.depth_m, w, h).astype(np.float64)
        valid = np.isfinite(Z) & (Z > 0)
        if not valid.any():
            raise ConfigError("photometric servoing: the target render shows no object (empty depth)")
        Z[~valid] = np.median(Z[valid])
        grad_u = cv2.Sobel(self.I_star, cv2.CV_64F, 1, 0, ksize=3) / 8.0
        grad_v = cv2.Sobel(self.I_star, cv2.CV_64F, 0, 1, ksize=3) / 8.0
        self.L_star = photometric_interaction_matrix(self.camera, grad_u, grad_v, Z)

    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def step(self, image: np.ndarray, timestamp_s: float = float("nan"), depth_m: np.ndarray | None = None,
             ) -> ServoStep:
        """One cycle on ``image``; ``depth_m`` (an RGB-D camera's) is not used by this method."""
        c = self.config
        t0 = time.perf_counter()
        image = as_rgb_frame(image, self.render_camera)  # the target's camera at any resolution, or a FrameError
        I = _grey_float(image, c.working_width_px, c.working_height_px, c.blur_sigma_px)
        e = (I - self.I_star).ravel()
        v = photometric_control(self.L_star, e, c.gain, c.lm_mu, c.max_linear_m_s, c.max_angular_rad_s)
        total = (time.perf_counter() - t0) * 1e3
        empty = Correspondences.empty()
        return ServoStep(v_camera=v, status=StepStatus.OK, correspondences=empty, all_matches=empty,
                         mean_error_px=float("nan"), tracking_mode=False,
                         timings_ms={"control_ms": total, "total_ms": total}, timestamp_s=timestamp_s,
                         source=CorrespondenceSource.NONE, gain=c.gain)
