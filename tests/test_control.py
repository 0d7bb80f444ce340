import numpy as np
import pytest

from dfbvs import control as c
from dfbvs.camera import Camera
from dfbvs.geometry import inverse, se3_exp
from dfbvs.sim.points import PointEpisodeConfig, run_point_episode


def project_normalized(T_world_camera, p_world):
    p = (inverse(T_world_camera) @ np.column_stack([p_world, np.ones(len(p_world))]).T).T[:, :3]
    return p[:, :2] / p[:, 2:3], p[:, 2]


@pytest.mark.parametrize("depth", [0.2, 0.5, 1.5])
def test_interaction_matrix_matches_finite_differences(depth, rng):
    for _ in range(5):
        T_world_camera = se3_exp(rng.normal(size=6) * 0.5)
        p_camera = np.column_stack([rng.uniform(-0.3, 0.3, (8, 2)) * depth, rng.uniform(0.8, 1.2, 8) * depth])
        p_world = (T_world_camera @ np.column_stack([p_camera, np.ones(8)]).T).T[:, :3]
        xy, Z = project_normalized(T_world_camera, p_world)
        L = c.interaction_matrix_normalized(xy, Z)
        h = 1e-6
        for k in range(6):
            v = np.zeros(6)
            v[k] = 1.0
            xp, _ = project_normalized(T_world_camera @ se3_exp(v * h), p_world)
            xm, _ = project_normalized(T_world_camera @ se3_exp(-v * h), p_world)
            np.testing.assert_allclose((xp - xm).reshape(-1) / (2 * h), L[:, k], atol=1e-6, rtol=1e-6)


def test_pixel_interaction_matrix_matches_finite_differences(rng):
    cam = Camera(300.0, 280.0, 150.0, 130.0, 320, 240)
    T = se3_exp(rng.normal(size=6) * 0.3)
    p_camera = np.column_stack([rng.uniform(-0.1, 0.1, (6, 2)), rng.uniform(0.4, 0.6, 6)])
    p_world = (T @ np.column_stack([p_camera, np.ones(6)]).T).T[:, :3]

    def pix(Tc):
        p = (inverse(Tc) @ np.column_stack([p_world, np.ones(6)]).T).T[:, :3]
        return cam.project(p)

    L = c.interaction_matrix_pixel(cam, pix(T), p_camera[:, 2])
    h = 1e-6
    for k in range(6):
        v = np.zeros(6)
        v[k] = h
        np.testing.assert_allclose((pix(T @ se3_exp(v)) - pix(T @ se3_exp(-v))).reshape(-1) / (2 * h), L[:, k],
                                   rtol=1e-5, atol=1e-4)


def test_interaction_matrix_literature_values():
    # Chaumette & Hutchinson 2006, eq. (11), at x=0.1, y=-0.2, Z=0.5
    L = c.interaction_matrix_normalized([[0.1, -0.2]], [0.5])
    np.testing.assert_allclose(L, [[-2, 0, 0.2, -0.02, -1.01, -0.2], [0, -2, -0.4, 1.04, 0.02, -0.1]])


def test_saturation_keeps_direction():
    v = np.array([0.3, 0.0, 0.4, 0.0, 2.0, 0.0])
    s = c.saturate_twist(v, 0.1, 1.0)
    assert np.linalg.norm(s[:3]) <= 0.1 + 1e-12 and np.linalg.norm(s[3:]) <= 1.0 + 1e-12
    np.testing.assert_allclose(s / np.linalg.norm(s), v / np.linalg.norm(v))
    np.testing.assert_allclose(c.saturate_twist(v * 0.01, 0.1, 1.0), v * 0.01)


def test_adaptive_gain():
    gain = c.GainConfig(gain_at_zero=2.0, gain_at_infinity=0.3, slope_at_zero=20.0)
    assert np.isclose(gain(0.0), 2.0)
    assert np.isclose(gain(1e6), 0.3)
    h = 1e-7
    assert np.isclose((gain(h) - gain(0)) / h, -20.0, rtol=1e-4)
    assert c.GainConfig(0.7, 0.7)(5.0) == 0.7
    with pytest.raises(ValueError, match="-1"):
        c.GainConfig(-1, 0.1)


def test_damped_pinv_tends_to_pinv(rng):
    L = rng.normal(size=(12, 6))
    np.testing.assert_allclose(c.damped_pinv(L, 1e-9), np.linalg.pinv(L), atol=1e-8)


def test_too_few_points_and_missing_depth():
    with pytest.raises(ValueError, match="at least 3"):
        c.ibvs_control(np.zeros((2, 2)), np.zeros((2, 2)), np.ones(2), c.IBVSConfig())
    with pytest.raises(ValueError, match="current depths"):
        c.ibvs_control(np.zeros((4, 2)), np.ones((4, 2)), np.ones(4), c.IBVSConfig(interaction="current"))


def test_one_step_decreases_error(rng):
    # the IBVS direction decreases the feature error to first order
    T_goal = se3_exp([0, 0, -0.5, 0, 0, 0])
    p_world = rng.uniform(-0.1, 0.1, (6, 3)) * [1, 1, 0.2]
    xy_star, Z_star = project_normalized(T_goal, p_world)
    T = T_goal @ se3_exp([0.02, -0.01, 0.03, 0.05, -0.02, 0.1])
    xy, _ = project_normalized(T, p_world)
    out = c.ibvs_control(xy, xy_star, Z_star, c.IBVSConfig())
    xy_next, _ = project_normalized(T @ se3_exp(out.v_camera * 0.01), p_world)
    assert np.linalg.norm(xy_next - xy_star) < np.linalg.norm(xy - xy_star)


@pytest.mark.parametrize("law", ["desired", "current", "mean"])
def test_four_point_ibvs_converges_noise_free(law):
    cfg = PointEpisodeConfig(control=c.IBVSConfig(interaction=law, max_linear_m_s=0.2, max_angular_rad_s=1.0))
    # the start is ~10 cm and ~30 deg away
    assert 0.09 < np.linalg.norm(cfg.start_offset_m) < 0.11
    assert 25 < np.linalg.norm(cfg.start_rotation_deg) < 35
    r = run_point_episode(cfg)
    assert r.converged
    assert r.final_mean_px_error < 0.01
    assert r.final_translation_error_mm < 0.1 and r.final_rotation_error_deg < 0.01


@pytest.mark.parametrize("law", ["desired", "current", "mean"])
def test_four_point_ibvs_with_noise(law):
    cfg = PointEpisodeConfig(pixel_noise_px=0.5, max_iterations=400, seed=7,
                             control=c.IBVSConfig(interaction=law, max_linear_m_s=0.2, max_angular_rad_s=1.0))
    r = run_point_episode(cfg)
    assert r.converged and r.final_mean_px_error < 1.0
    assert r.pixel_error_history[0] > 50  # it really started far away


def test_hybrid_law_decays_every_direction_at_the_commanded_rate():
    """Near the goal the hybrid law follows the PnP pose: the weakly observable pair of the image (rotation
    about x with translation along y) decays at the commanded rate, as every other direction; far from the
    goal it is IBVS."""
    from dfbvs.control import CONTROL_LAWS, ControlInput, HybridConfig, HybridLaw, IBVSLaw
    from dfbvs.geometry import integrate_body_twist, inverse, make_pose, se3_log, so3_exp, transform_points

    rng = np.random.default_rng(5)
    P_goal = np.column_stack([rng.uniform(-0.05, 0.05, 40), rng.uniform(-0.04, 0.04, 40), rng.uniform(0.3, 0.36, 40)])
    xy_star = P_goal[:, :2] / P_goal[:, 2:]
    law = CONTROL_LAWS.build(HybridConfig())
    assert isinstance(law, HybridLaw)
    T_goal_current = make_pose(so3_exp(np.deg2rad([0.3, 0.0, 0.0])), [0.0, 1.5e-3, 0.0])  # the weak pair
    dt, gain = 0.1, HybridConfig().pbvs_gain_1_s
    norms = []
    for _ in range(20):
        T_current_target = inverse(T_goal_current)
        P = transform_points(T_current_target, P_goal)
        out = law(ControlInput(P[:, :2] / P[:, 2:], xy_star, P_goal[:, 2], P_goal, T_current_target))
        T_goal_current = integrate_body_twist(T_goal_current, out.v_camera, dt)
        norms.append(np.linalg.norm(se3_log(T_goal_current)))
    rates = np.array(norms[1:]) / np.array(norms[:-1])
    np.testing.assert_allclose(rates, 1 - gain * dt, atol=1e-9)
    # far from the goal (error above the switch) it is exactly IBVS
    T_far = make_pose(so3_exp(np.deg2rad([3.0, 2.0, 1.0])), [0.02, -0.01, 0.03])
    P = transform_points(inverse(T_far), P_goal)
    inputs = ControlInput(P[:, :2] / P[:, 2:], xy_star, P_goal[:, 2], P_goal, inverse(T_far))
    np.testing.assert_array_equal(law(inputs).v_camera, IBVSLaw(HybridConfig().ibvs)(inputs).v_camera)
