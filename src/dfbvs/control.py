"""Interaction matrices and image-based visual servoing (IBVS) control laws.

Features are points. ``s`` and ``e = s - s*`` interleave ``[x0, y0, x1, y1, ...]`` and the interaction
matrix ``L`` is ``(2N, 6)``, mapping the camera body twist ``v_camera = (vx, vy, vz, wx, wy, wz)`` (m/s,
rad/s, camera frame, OpenCV axes) to the feature velocity: ``ds/dt = L @ v_camera``.
The law is ``v_camera = -lambda * pinv(L_hat) @ e`` (Chaumette & Hutchinson 2006).

Control laws sit behind one interface, :class:`ControlLaw`: a :class:`ControlInput` (the inlier features in
normalized coordinates, the target depths and, when PnP found it, the pose ``T_current_target``) in, a
:class:`ControlOutput` (camera twist, gain, conditioning of ``L_hat``) out. They are registered in
:data:`CONTROL_LAWS` and chosen by the type of ``ServoConfig.control``; a new law (PBVS, ...) is a config
dataclass, a class taking it, and one ``CONTROL_LAWS.register`` line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Protocol

import numpy as np

from .camera import Camera
from .errors import ConfigError
from .geometry import inverse, se3_log, so3_log, transform_points
from .registry import Registry


class InteractionChoice(str, enum.Enum):
    """Which interaction matrix estimate ``L_hat`` the law inverts."""

    DESIRED = "desired"  # L* = L(s*, Z*): constant, the paper's choice (Z* from the rendered target depth)
    CURRENT = "current"  # L(s, Z): needs the current depth of each feature
    MEAN = "mean"  # (L* + L) / 2 (Malis' efficient second-order approximation)


def interaction_matrix_normalized(xy: np.ndarray, Z_m: np.ndarray) -> np.ndarray:
    """``(2N, 6)`` interaction matrix of normalized points ``xy`` (N, 2) at depths ``Z_m`` (N,) metres."""
    xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
    Z = np.asarray(Z_m, dtype=np.float64).reshape(-1)
    if xy.shape[0] != Z.shape[0]:
        raise ValueError(f"{xy.shape[0]} points but {Z.shape[0]} depths")
    if np.any(~np.isfinite(Z)) or np.any(Z <= 0):
        raise ValueError(f"depths must be finite and > 0 m, got min {np.nanmin(Z) if Z.size else 'n/a'}")
    x, y = xy[:, 0], xy[:, 1]
    inv_z = 1.0 / Z
    L = np.zeros((2 * xy.shape[0], 6))
    L[0::2, 0] = -inv_z
    L[0::2, 2] = x * inv_z
    L[0::2, 3] = x * y
    L[0::2, 4] = -(1.0 + x * x)
    L[0::2, 5] = y
    L[1::2, 1] = -inv_z
    L[1::2, 2] = y * inv_z
    L[1::2, 3] = 1.0 + y * y
    L[1::2, 4] = -x * y
    L[1::2, 5] = -x
    return L


def interaction_matrix_pixel(camera: Camera, uv_px: np.ndarray, Z_m: np.ndarray) -> np.ndarray:
    """``(2N, 6)`` interaction matrix of pixel points (px per unit twist), ignoring lens distortion."""
    L = interaction_matrix_normalized(camera.pixel_to_normalized(uv_px), Z_m)
    L[0::2] *= camera.fx
    L[1::2] *= camera.fy
    return L


def damped_pinv(L: np.ndarray, damping: float = 0.0) -> np.ndarray:
    """``(L^T L + mu^2 I)^-1 L^T`` (Levenberg-style damping ``mu``); the plain pseudo-inverse when 0."""
    if damping <= 0.0:
        return np.linalg.pinv(L)
    n = L.shape[1]
    return np.linalg.solve(L.T @ L + damping**2 * np.eye(n), L.T)


@dataclass(frozen=True)
class GainConfig:
    """Adaptive gain ``lambda(x)`` with ``x = ||e||_inf`` (normalized image units), as ViSP's
    ``vpAdaptiveGain``: ``lambda(0) = gain_at_zero``, ``lambda(inf) = gain_at_infinity`` and slope
    ``slope_at_zero`` at 0. Equal gains (the default) give a constant gain. Units: 1/s."""

    gain_at_zero: float = 0.5
    gain_at_infinity: float = 0.5
    slope_at_zero: float = 30.0

    def __post_init__(self) -> None:
        if not (self.gain_at_zero > 0 and self.gain_at_infinity > 0):
            raise ConfigError(f"gains must be > 0, got {self.gain_at_zero!r}, {self.gain_at_infinity!r}")
        if self.gain_at_zero < self.gain_at_infinity:
            raise ConfigError(f"adaptive gain expects gain_at_zero ({self.gain_at_zero}) >= gain_at_infinity "
                             f"({self.gain_at_infinity})")

    def __call__(self, error_inf_norm: float) -> float:
        span = self.gain_at_zero - self.gain_at_infinity
        if span <= 0.0:
            return self.gain_at_zero
        return span * float(np.exp(-self.slope_at_zero * error_inf_norm / span)) + self.gain_at_infinity


@dataclass(frozen=True)
class IBVSConfig:
    """IBVS law configuration (units in the names)."""

    interaction: InteractionChoice = InteractionChoice.DESIRED
    gain: GainConfig = field(default_factory=GainConfig)
    damping: float = 0.0  # dimensionless Levenberg damping of the pseudo-inverse
    max_linear_m_s: float = 0.1
    max_angular_rad_s: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "interaction", InteractionChoice(self.interaction))
        if not (self.max_linear_m_s > 0 and self.max_angular_rad_s > 0):
            raise ConfigError(f"speed limits must be > 0, got linear {self.max_linear_m_s!r} m/s, "
                             f"angular {self.max_angular_rad_s!r} rad/s")
        if self.damping < 0:
            raise ConfigError(f"damping must be >= 0, got {self.damping!r}")


def saturate_twist(v: np.ndarray, max_linear_m_s: float, max_angular_rad_s: float) -> np.ndarray:
    """Scale the whole twist down (keeping its direction) so both speed limits hold."""
    v = np.asarray(v, dtype=np.float64)
    lin, ang = float(np.linalg.norm(v[:3])), float(np.linalg.norm(v[3:]))
    scale = min(1.0, max_linear_m_s / lin if lin > 0 else 1.0, max_angular_rad_s / ang if ang > 0 else 1.0)
    return v * scale


@dataclass(frozen=True)
class ControlOutput:
    """One control cycle: camera body twist (m/s, rad/s), the error it used, the gain (1/s) and the
    condition number of the interaction matrix the law inverted (``inf`` when rank deficient)."""

    v_camera: np.ndarray  # (6,), saturated
    error: np.ndarray  # (2N,) normalized-coordinate error e = s - s*
    gain: float
    saturated: bool
    condition_number: float = float("nan")


def ibvs_control(
    xy: np.ndarray, xy_star: np.ndarray, Z_star_m: np.ndarray, config: IBVSConfig,
    Z_m: np.ndarray | None = None,
) -> ControlOutput:
    """IBVS on normalized point features.

    ``xy`` (N, 2) current and ``xy_star`` (N, 2) desired normalized coordinates, in correspondence;
    ``Z_star_m`` (N,) desired depths; ``Z_m`` (N,) current depths, needed for the ``current`` and ``mean``
    choices. Needs N >= 3 (6 equations).
    """
    xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
    xy_star = np.atleast_2d(np.asarray(xy_star, dtype=np.float64))
    if xy.shape != xy_star.shape or xy.shape[1] != 2:
        raise ValueError(f"current and desired features differ in shape: {xy.shape} vs {xy_star.shape}")
    if xy.shape[0] < 3:
        raise ValueError(f"IBVS needs at least 3 point correspondences, got {xy.shape[0]}")
    e = (xy - xy_star).reshape(-1)
    choice = config.interaction
    if choice is InteractionChoice.DESIRED:
        L_hat = interaction_matrix_normalized(xy_star, Z_star_m)
    else:
        if Z_m is None:
            raise ConfigError(f"interaction '{choice.value}' needs the current depths Z_m, got None")
        L_cur = interaction_matrix_normalized(xy, Z_m)
        L_hat = L_cur if choice is InteractionChoice.CURRENT else 0.5 * (
            L_cur + interaction_matrix_normalized(xy_star, Z_star_m))
    gain = config.gain(float(np.max(np.abs(e))))
    v = -gain * (damped_pinv(L_hat, config.damping) @ e)
    v_sat = saturate_twist(v, config.max_linear_m_s, config.max_angular_rad_s)
    return ControlOutput(v_camera=v_sat, error=e, gain=gain, saturated=bool(not np.allclose(v, v_sat)),
                         condition_number=float(np.linalg.cond(L_hat)))


# --- the control-law interface and its registry ------------------------------------------------------------
@dataclass(frozen=True)
class ControlInput:
    """What a law gets each cycle, over the ``N`` inlier correspondences.

    ``xy`` (N, 2) current and ``xy_star`` (N, 2) desired normalized coordinates; ``Z_star_m`` (N,) target
    depths (rendered); ``points_target_m`` (N, 3) the target points in the goal camera frame;
    ``T_current_target`` (4x4) the pose of the goal camera in the current camera frame from PnP, or None;
    ``T_current_equivalent`` (4x4) for a symmetric object, the pose against the equivalent goal nearest the camera
    (:func:`~dfbvs.symmetry.nearest_equivalent_pose`), or None; ``pose_ambiguous``: the object has a symmetry
    that is only visual (the gear's teeth), so a PnP pose may jump between its near-equivalents from cycle to
    cycle and a pose-based phase must not follow it.
    """

    xy: np.ndarray
    xy_star: np.ndarray
    Z_star_m: np.ndarray
    points_target_m: np.ndarray
    T_current_target: Optional[np.ndarray] = None
    T_current_equivalent: Optional[np.ndarray] = None
    pose_ambiguous: bool = False

    def current_depths_m(self) -> Optional[np.ndarray]:
        """Depth (N,) of each point in the current camera from the PnP pose, or None without a pose."""
        if self.T_current_target is None:
            return None
        return transform_points(self.T_current_target, self.points_target_m)[:, 2]


class ControlLaw(Protocol):
    """``law(control_input) -> ControlOutput``; built from its config by :data:`CONTROL_LAWS`."""

    @property
    def config(self) -> object: ...  # read-only here, so that implementations may narrow its type

    def __call__(self, inputs: ControlInput) -> ControlOutput: ...


class IBVSLaw:
    """Point IBVS ``v = -lambda pinv(L_hat) e`` with ``L_hat`` = ``L*`` (the paper), ``L`` or their mean;
    the current depths of ``L`` come from the PnP pose (a cycle without a pose cannot use them)."""

    def __init__(self, config: IBVSConfig = IBVSConfig()) -> None:
        self.config = config

    def __call__(self, inputs: ControlInput) -> ControlOutput:
        Z_m = None if self.config.interaction is InteractionChoice.DESIRED else inputs.current_depths_m()
        return ibvs_control(inputs.xy, inputs.xy_star, inputs.Z_star_m, self.config, Z_m=Z_m)


def tuned_ibvs_config() -> IBVSConfig:
    """The IBVS settings the DFBVS servo uses by default: an adaptive gain from 0.5/s far from the goal to
    1/s at it, and speed limits of 5 cm/s and 0.3 rad/s (docs/servo.md)."""
    return IBVSConfig(gain=GainConfig(gain_at_zero=1.0, gain_at_infinity=0.5, slope_at_zero=20.0),
                      max_linear_m_s=0.05, max_angular_rad_s=0.3)


def pbvs_twist(T_current_target: np.ndarray, gain_1_s: float) -> np.ndarray:
    """Pose-based law on the PnP pose: ``v_camera = -gain * se3_log(T_target_current)``. The current camera's
    pose in the goal camera frame then decays along the SE(3) geodesic at exactly ``gain`` in every direction
    (``T exp(-g dt log T) = exp((1 - g dt) log T)``), the weakly observable ones of the image included."""
    return -gain_1_s * se3_log(inverse(T_current_target))


def centroid_pbvs_twist(T_current_target: np.ndarray, centroid_goal_m: np.ndarray, gain_1_s: float) -> np.ndarray:
    """Pose-based law that keeps the object in view: the camera turns as :func:`pbvs_twist` does
    (``w = -gain * theta u`` of ``R_goal_current``) while the object point ``centroid_goal_m`` (goal camera
    frame, m) moves on a straight line from where it is now to where the goal camera sees it, at ``gain``:
    ``v = gain * (p - p*) - w x p`` with ``p`` the point in the current camera. Its image moves on a straight
    line too, so a start rolled by 180 degrees turns in place instead of retreating (IBVS with ``L*``)
    or swinging the object out of view (:func:`pbvs_twist`'s screw). Scaling the twist keeps both paths."""
    T = np.asarray(T_current_target, dtype=np.float64)
    p_star = np.asarray(centroid_goal_m, dtype=np.float64).reshape(3)
    p = T[:3, :3] @ p_star + T[:3, 3]
    w = -gain_1_s * so3_log(T[:3, :3].T)
    v = gain_1_s * (p - p_star) - np.cross(w, p)
    return np.concatenate([v, w])


@dataclass(frozen=True)
class HybridConfig:
    """IBVS (``ibvs``: the paper's law) in the middle, pose-based at both ends.

    - Near the goal: once the largest feature error is below ``switch_error_norm`` (normalized image units;
      0.004 is ~1 px at the 320x240 working resolution of the default lens) and PnP gave a pose, the twist is
      :func:`pbvs_twist` with ``pbvs_gain_1_s``. The weak direction of the image (rotation about x with
      translation along y) then converges at the commanded rate.
    - Far from it: while the PnP pose is more than ``far_rotation_deg`` from the goal's orientation, or the
      object's centroid is further than ``far_translation_ratio`` times its goal distance from where the goal
      sees it, the twist is :func:`centroid_pbvs_twist` with ``far_gain_1_s``: large rolls and far starts,
      where IBVS with ``L*`` retreats or diverges (docs/convergence.md). ``inf`` (the default) never does.
    """

    ibvs: IBVSConfig = field(default_factory=lambda: tuned_ibvs_config())
    switch_error_norm: float = 0.004
    pbvs_gain_1_s: float = 1.0
    far_rotation_deg: float = float("inf")
    far_translation_ratio: float = float("inf")
    far_gain_1_s: float = 0.5

    def __post_init__(self) -> None:
        if not (np.isfinite(self.switch_error_norm) and self.switch_error_norm >= 0):
            raise ConfigError(f"switch_error_norm={self.switch_error_norm!r}: must be >= 0 (0: IBVS only)")
        for name in ("pbvs_gain_1_s", "far_gain_1_s"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value!r}: must be > 0")
        for name in ("far_rotation_deg", "far_translation_ratio"):
            value = getattr(self, name)
            if np.isnan(value) or value <= 0:
                raise ConfigError(f"{name}={value!r}: must be > 0 (inf: never pose-based far from the goal)")

    def is_far(self, T_current_target: np.ndarray, centroid_goal_m: np.ndarray) -> bool:
        """Whether the pose is in the far phase (see the class docstring)."""
        T = np.asarray(T_current_target, dtype=np.float64)
        angle_deg = float(np.rad2deg(np.linalg.norm(so3_log(T[:3, :3]))))
        p_star = np.asarray(centroid_goal_m, dtype=np.float64).reshape(3)
        moved = float(np.linalg.norm(T[:3, :3] @ p_star + T[:3, 3] - p_star))
        return angle_deg > self.far_rotation_deg or moved > self.far_translation_ratio * float(np.linalg.norm(p_star))


class HybridLaw:
    """IBVS, then PBVS from the PnP pose near the goal (see :class:`HybridConfig`)."""

    def __init__(self, config: HybridConfig = HybridConfig()) -> None:
        self.config = config
        self._ibvs = IBVSLaw(config.ibvs)

    def __call__(self, inputs: ControlInput) -> ControlOutput:
        out = self._ibvs(inputs)
        c = self.config
        T_far = inputs.T_current_target if inputs.T_current_equivalent is None else inputs.T_current_equivalent
        if T_far is not None and len(inputs.points_target_m) and not inputs.pose_ambiguous:
            centroid = np.mean(inputs.points_target_m, axis=0)
            if c.is_far(T_far, centroid):  # towards the nearest equivalent of a symmetric object's goal
                v = centroid_pbvs_twist(T_far, centroid, c.far_gain_1_s)
                v_sat = saturate_twist(v, c.ibvs.max_linear_m_s, c.ibvs.max_angular_rad_s)
                return ControlOutput(v_camera=v_sat, error=out.error, gain=c.far_gain_1_s,
                                     saturated=bool(not np.allclose(v, v_sat)), condition_number=out.condition_number)
        if inputs.T_current_target is None or not out.error.size or np.max(np.abs(out.error)) >= c.switch_error_norm:
            return out
        v = pbvs_twist(inputs.T_current_target, c.pbvs_gain_1_s)
        v_sat = saturate_twist(v, c.ibvs.max_linear_m_s, c.ibvs.max_angular_rad_s)
        return ControlOutput(v_camera=v_sat, error=out.error, gain=c.pbvs_gain_1_s,
                             saturated=bool(not np.allclose(v, v_sat)), condition_number=out.condition_number)


CONTROL_LAWS: Registry[ControlLaw] = Registry("control law")
CONTROL_LAWS.register("ibvs", IBVSLaw, IBVSConfig, help="image-based visual servoing on points")
CONTROL_LAWS.register("hybrid", HybridLaw, HybridConfig,
                      help="IBVS far from the goal, pose-based (PnP) near it: every direction at the commanded rate")


def build_control_law(config: object) -> ControlLaw:
    """The law a config describes (its type names the law)."""
    return CONTROL_LAWS.build(config)
