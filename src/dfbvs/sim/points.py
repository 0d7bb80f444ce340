"""Classical IBVS on a point-feature world: known 3D points, projection, optional pixel noise."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..camera import Camera
from ..control import IBVSConfig, InteractionChoice, ibvs_control
from ..geometry import inverse, look_at, make_pose, pose_error, so3_exp
from .free_camera import FreeFlyingCamera


@dataclass(frozen=True)
class PointEpisodeConfig:
    """A 4-point IBVS episode: desired camera ``goal_height_m`` above a square of side ``square_side_m``,
    start displaced by ``start_offset_m`` and rotated by ``start_rotation_deg``."""

    square_side_m: float = 0.10
    goal_height_m: float = 0.50
    start_offset_m: tuple[float, float, float] = (0.06, -0.05, -0.06)
    start_rotation_deg: tuple[float, float, float] = (10.0, -12.0, 25.0)
    pixel_noise_px: float = 0.0
    dt_s: float = 0.04
    max_iterations: int = 1500
    converged_px: float = 0.01  # stop when the true mean pixel error stays below this (noise-free)
    noisy_converged_px: float = 1.0  # with pixel noise: success when the final true error is below this
    settle_iterations: int = 5
    seed: int = 0
    control: IBVSConfig = field(default_factory=lambda: IBVSConfig(max_linear_m_s=0.2, max_angular_rad_s=1.0))


@dataclass(frozen=True)
class PointEpisodeResult:
    converged: bool
    iterations: int
    final_mean_px_error: float
    final_translation_error_mm: float
    final_rotation_error_deg: float
    pixel_error_history: tuple[float, ...]

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("pixel_error_history")
        return d


def square_points_world(side_m: float) -> np.ndarray:
    """Corners (4, 3) of a square of side ``side_m`` in the world plane z = 0, centred at the origin."""
    h = side_m / 2
    return np.array([[-h, -h, 0.0], [h, -h, 0.0], [h, h, 0.0], [-h, h, 0.0]])


def project_points(camera: Camera, T_world_camera: np.ndarray, p_world_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) and depths Z (N,) of world points seen from ``T_world_camera``."""
    p_h = np.column_stack([p_world_m, np.ones(len(p_world_m))])
    p_camera = (inverse(T_world_camera) @ p_h.T).T[:, :3]
    return camera.project(p_camera), p_camera[:, 2]


def run_point_episode(
    config: PointEpisodeConfig = PointEpisodeConfig(), camera: Camera | None = None,
    noise_rng: np.random.Generator | None = None,
) -> PointEpisodeResult:
    """Run classical 4-point IBVS in closed loop until convergence or ``max_iterations``.

    With pixel noise the loop cannot reach ``converged_px``; it then runs all its iterations and is judged
    on the true (noise-free) final error against ``noisy_converged_px``.
    """
    camera = camera or Camera.default()
    rng = noise_rng or np.random.default_rng(config.seed)
    points = square_points_world(config.square_side_m)
    T_world_goal = look_at([0.0, 0.0, config.goal_height_m], [0.0, 0.0, 0.0], up=(0.0, 1.0, 0.0))
    T_goal_start = make_pose(so3_exp(np.deg2rad(config.start_rotation_deg)), config.start_offset_m)
    body = FreeFlyingCamera(T_world_goal @ T_goal_start, dt_s=config.dt_s)
    uv_star, Z_star = project_points(camera, T_world_goal, points)
    xy_star = camera.pixel_to_normalized(uv_star)

    history: list[float] = []
    settled = 0
    converged = False
    iteration = 0
    for _ in range(config.max_iterations):
        iteration += 1
        uv, Z = project_points(camera, body.T_world_camera, points)
        true_err_px = float(np.mean(np.linalg.norm(uv - uv_star, axis=1)))
        history.append(true_err_px)
        if np.any(Z <= 0):
            break
        uv_meas = uv + rng.normal(0.0, config.pixel_noise_px, uv.shape) if config.pixel_noise_px > 0 else uv
        out = ibvs_control(camera.pixel_to_normalized(uv_meas), xy_star, Z_star, config.control, Z_m=Z)
        if true_err_px < config.converged_px:
            settled += 1
            if settled >= config.settle_iterations:
                converged = True
                break
        else:
            settled = 0
        body.step(out.v_camera)
    if config.pixel_noise_px > 0:
        converged = history[-1] < config.noisy_converged_px
    t_err, r_err = pose_error(T_world_goal, body.T_world_camera)
    return PointEpisodeResult(converged=converged, iterations=iteration, final_mean_px_error=history[-1],
                              final_translation_error_mm=t_err * 1e3,
                              final_rotation_error_deg=float(np.rad2deg(r_err)),
                              pixel_error_history=tuple(history))


__all__ = ["InteractionChoice", "PointEpisodeConfig", "PointEpisodeResult", "run_point_episode",
           "square_points_world", "project_points"]
