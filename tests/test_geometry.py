import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dfbvs import geometry as g


def random_rotvec(rng, angle):
    axis = rng.normal(size=3)
    return axis / np.linalg.norm(axis) * angle


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-7, 1e-5, 1e-3, 0.3, 1.5, 3.0, np.pi - 1e-3, np.pi - 1e-6, np.pi])
def test_so3_exp_log_roundtrip_and_reference(angle, rng):
    for _ in range(20):
        w = random_rotvec(rng, angle)
        R = g.so3_exp(w)
        np.testing.assert_allclose(R, Rotation.from_rotvec(w).as_matrix(), atol=1e-12)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        w2 = g.so3_log(R)
        if angle < np.pi - 1e-4:
            np.testing.assert_allclose(w2, w, atol=1e-9)
        else:  # at pi, w and -w are the same rotation
            np.testing.assert_allclose(g.so3_exp(w2), R, atol=1e-9)
            assert abs(np.linalg.norm(w2) - angle) < 1e-6


def test_so3_sign():
    # +90 deg about z maps x onto y (right-handed)
    R = g.so3_exp([0, 0, np.pi / 2])
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-8, 1e-4, 0.7, 2.5, np.pi - 1e-5])
def test_se3_exp_log_roundtrip(angle, rng):
    for _ in range(10):
        xi = np.concatenate([rng.normal(size=3) * 0.3, random_rotvec(rng, angle)])
        T = g.se3_exp(xi)
        np.testing.assert_allclose(g.se3_exp(g.se3_log(T)), T, atol=1e-9)
        if angle < 3:
            np.testing.assert_allclose(g.se3_log(T), xi, atol=1e-9)


def test_se3_exp_matches_matrix_exponential(rng):
    from scipy.linalg import expm

    for _ in range(10):
        xi = rng.normal(size=6)
        X = np.zeros((4, 4))
        X[:3, :3] = g.skew(xi[3:])
        X[:3, 3] = xi[:3]
        np.testing.assert_allclose(g.se3_exp(xi), expm(X), atol=1e-10)


def test_pure_translation_twist_moves_along_body_axes():
    T_world_body = g.make_pose(g.so3_exp([0, 0, np.pi / 2]), [1, 2, 3])
    T = g.integrate_body_twist(T_world_body, [0.1, 0, 0, 0, 0, 0], 2.0)
    # body x is world y after the 90 deg yaw
    np.testing.assert_allclose(T[:3, 3], [1, 2.2, 3], atol=1e-12)


def test_inverse_and_composition(rng):
    T_a_b = g.se3_exp(rng.normal(size=6))
    T_b_c = g.se3_exp(rng.normal(size=6))
    np.testing.assert_allclose(g.inverse(T_a_b) @ T_a_b, np.eye(4), atol=1e-12)
    p_c = rng.normal(size=3)
    p_a = (T_a_b @ T_b_c @ np.append(p_c, 1))[:3]
    np.testing.assert_allclose(p_a, (T_a_b @ np.append((T_b_c @ np.append(p_c, 1))[:3], 1))[:3])


def test_transform_points_matches_homogeneous_product(rng):
    T_a_b = g.se3_exp(rng.normal(size=6))
    p_b = rng.normal(size=(5, 3))
    expected = (T_a_b @ np.column_stack([p_b, np.ones(5)]).T).T[:, :3]
    np.testing.assert_allclose(g.transform_points(T_a_b, p_b), expected, atol=1e-12)
    np.testing.assert_allclose(g.transform_points(g.inverse(T_a_b), g.transform_points(T_a_b, p_b)), p_b, atol=1e-12)


def test_adjoint_consistent_with_composition(rng):
    # exp(Ad_T xi) = T exp(xi) T^-1
    for _ in range(10):
        T = g.se3_exp(rng.normal(size=6))
        xi = rng.normal(size=6) * 0.5
        np.testing.assert_allclose(g.se3_exp(g.adjoint(T) @ xi), T @ g.se3_exp(xi) @ g.inverse(T), atol=1e-10)
    T1, T2 = g.se3_exp(rng.normal(size=6)), g.se3_exp(rng.normal(size=6))
    np.testing.assert_allclose(g.adjoint(T1 @ T2), g.adjoint(T1) @ g.adjoint(T2), atol=1e-10)


def test_pose_error_and_look_at():
    T = g.look_at([0, 0, 1], [0, 0, 0], up=(0, 1, 0))
    np.testing.assert_allclose(T[:3, 2], [0, 0, -1], atol=1e-12)  # optical axis points at the target
    np.testing.assert_allclose(T[:3, 1], [0, -1, 0], atol=1e-12)  # image down = world -up
    assert np.isclose(np.linalg.det(T[:3, :3]), 1.0)
    T2 = T @ g.make_pose(g.so3_exp([0, 0, np.deg2rad(2)]), [0.003, 0, 0])
    t, r = g.pose_error(T, T2)
    assert np.isclose(t, 0.003) and np.isclose(np.rad2deg(r), 2.0)


def test_look_at_spherical_points_at_target():
    for az, el, roll in [(0, 90, 0), (30, 60, 10), (200, 20, -45)]:
        T = g.look_at_spherical(0.4, az, el, roll)
        assert np.isclose(np.linalg.norm(T[:3, 3]), 0.4)
        np.testing.assert_allclose(T[:3, 2], -T[:3, 3] / 0.4, atol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="-1"):
        g.integrate_body_twist(np.eye(4), np.zeros(6), -1)
    with pytest.raises(ValueError, match="distance"):
        g.look_at_spherical(0, 0, 0)


def test_poses_agree_scales_with_the_depth_and_accepts_a_symmetric_equivalent():
    """Two measurements of one camera-from-object pose agree within a fraction of the object's depth seen from
    the second, or as a symmetric equivalent of it; a pose turned by half a symmetry period does not."""
    points_m = np.array([[0.05, 0.0, 0.0], [-0.05, 0.0, 0.0], [0.0, 0.05, 0.0], [0.0, -0.05, 0.0]])
    near = np.eye(4)
    near[2, 3] = 0.2  # the object 0.2 m in front of the camera
    far = near.copy()
    far[2, 3] = 1.0
    shift = np.eye(4)
    shift[0, 3] = 0.015  # 15 mm sideways
    assert not g.poses_agree(near, shift @ near, points_m, 0.05, 3.0)  # 15 mm > 5 % of 0.2 m
    assert g.poses_agree(far, shift @ far, points_m, 0.05, 3.0)  # 15 mm < 5 % of 1 m
    turn = g.se3_exp(np.array([0, 0, 0, 0, 0, np.deg2rad(90.0)]))  # the object turned a quarter about its axis
    assert not g.poses_agree(near, near @ turn, points_m, 0.05, 3.0)
    assert g.poses_agree(near, near @ turn, points_m, 0.05, 3.0, equivalents=(g.inverse(turn),))
    half = g.se3_exp(np.array([0, 0, 0, 0, 0, np.deg2rad(45.0)]))
    assert not g.poses_agree(near, near @ half, points_m, 0.05, 3.0, equivalents=(g.inverse(turn), turn))
