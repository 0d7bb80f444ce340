"""Calibration files as users have them (OpenCV FileStorage YAML/XML, ROS camera_info, hand-eye files), every
rejection, frame-size checks and undistortion to a pinhole camera checked against cv2.projectPoints."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from dfbvs.calibration import (
    CameraCalibration,
    Undistorter,
    check_frame_size,
    load_camera_calibration,
    load_rigid_transform,
)
from dfbvs.camera import Camera
from dfbvs.errors import CalibrationError
from dfbvs.geometry import make_pose, so3_exp

K_TEST = np.array([[812.5, 0.0, 641.25], [0.0, 809.75, 357.5], [0.0, 0.0, 1.0]])
DIST5 = np.array([-0.281, 0.0923, 0.00121, -0.00083, -0.0117])
DIST8 = np.array([0.31, -0.12, 0.0009, -0.0004, 0.021, 0.62, -0.08, 0.045])


def write_opencv(path: Path, nodes: dict) -> Path:
    """An OpenCV calibration file as ``cv2.FileStorage`` writes it (format from the extension)."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for key, value in nodes.items():
        fs.write(key, value)
    fs.release()
    return path


def ros_yaml(K=K_TEST, dist=DIST5, model="plumb_bob", width=1280, height=720) -> str:
    """A camera_info YAML laid out as ROS's camera_calibration_parsers writes it."""
    def data(values) -> str:
        return "[" + ", ".join(f"{float(v):.8f}" for v in np.ravel(values)) + "]"

    P = np.hstack([K, np.zeros((3, 1))])
    return (f"image_width: {width}\nimage_height: {height}\ncamera_name: narrow_stereo\n"
            f"camera_matrix:\n  rows: 3\n  cols: 3\n  data: {data(K)}\n"
            f"distortion_model: {model}\n"
            f"distortion_coefficients:\n  rows: 1\n  cols: {len(dist)}\n  data: {data(dist)}\n"
            f"rectification_matrix:\n  rows: 3\n  cols: 3\n  data: {data(np.eye(3))}\n"
            f"projection_matrix:\n  rows: 3\n  cols: 4\n  data: {data(P)}\n")


def assert_intrinsics(calib: CameraCalibration, K=K_TEST, dist=DIST5, size=(1280, 720)) -> None:
    cam = calib.camera
    np.testing.assert_allclose([cam.fx, cam.fy, cam.cx, cam.cy], [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], rtol=1e-9)
    assert (cam.width_px, cam.height_px) == size
    np.testing.assert_allclose(calib.dist, dist, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(cam.dist, np.asarray(dist)[:5], rtol=1e-7, atol=1e-12)


# --- OpenCV files -----------------------------------------------------------------------------------------
def test_opencv_yaml_written_by_filestorage(tmp_path):
    path = write_opencv(tmp_path / "calib.yml", {"image_width": 1280, "image_height": 720, "camera_matrix": K_TEST,
                                                 "distortion_coefficients": DIST5.reshape(1, 5)})
    assert path.read_text().startswith("%YAML")
    calib = load_camera_calibration(path)
    assert_intrinsics(calib)
    assert calib.distortion_model == "plumb_bob" and calib.source_path == path and calib.has_distortion
    assert calib.camera_is_exact


def test_opencv_xml_with_camelcase_keys_and_image_size(tmp_path):
    path = write_opencv(tmp_path / "calib.xml", {"cameraMatrix": K_TEST, "distCoeffs": DIST5.reshape(5, 1),
                                                 "image_size": np.array([[1280], [720]], dtype=np.float64)})
    assert "<opencv_storage>" in path.read_text()
    assert_intrinsics(load_camera_calibration(path))


def test_opencv_json_written_by_filestorage(tmp_path):
    path = write_opencv(tmp_path / "calib.json", {"image_width": 1280, "image_height": 720, "camera_matrix": K_TEST,
                                                  "distortion_coefficients": DIST5})
    assert "opencv-matrix" in path.read_text()
    assert_intrinsics(load_camera_calibration(path))


def test_format_is_detected_by_content_not_extension(tmp_path):
    xml = write_opencv(tmp_path / "a.xml", {"cameraMatrix": K_TEST, "distCoeffs": DIST5,
                                            "image_width": 1280, "image_height": 720})
    renamed = tmp_path / "camera.calib"
    renamed.write_text(xml.read_text())
    assert_intrinsics(load_camera_calibration(renamed))
    ros = tmp_path / "camera_info.txt"
    ros.write_text(ros_yaml())
    assert_intrinsics(load_camera_calibration(ros))


def test_legacy_opencv_yaml_header_and_sequence_image_size(tmp_path):
    """OpenCV 3/4 write ``%YAML:1.0`` (not valid for PyYAML) and a cv::Size as a sequence."""
    path = tmp_path / "out_camera_data.yml"
    path.write_text(
        "%YAML:1.0\n---\ncalibration_time: \"Thu 01 Jan 2015 12:00:00 PM CET\"\nimage_size: [ 1280, 720 ]\n"
        "flags: 0\ncamera_matrix: !!opencv-matrix\n   rows: 3\n   cols: 3\n   dt: d\n"
        "   data: [ 8.125e+02, 0., 6.4125e+02, 0., 8.0975e+02, 3.575e+02, 0., 0., 1. ]\n"
        "dist_coeffs: !!opencv-matrix\n   rows: 5\n   cols: 1\n   dt: d\n"
        f"   data: [ {', '.join(repr(float(d)) for d in DIST5)} ]\navg_reprojection_error: 0.31\n")
    assert_intrinsics(load_camera_calibration(path))


def test_opencv_rational_model_keeps_eight_coefficients(tmp_path):
    path = write_opencv(tmp_path / "calib.yaml", {"image_width": 1280, "image_height": 720, "camera_matrix": K_TEST,
                                                  "distortion_coefficients": DIST8.reshape(1, 8)})
    calib = load_camera_calibration(path)
    assert calib.distortion_model == "rational_polynomial" and len(calib.dist) == 8
    assert_intrinsics(calib, dist=DIST8)
    assert not calib.camera_is_exact  # k4..k6 are non-zero: Camera.dist cannot hold them


def test_opencv_fourteen_coefficients_with_zero_tail_are_rational(tmp_path):
    d14 = np.concatenate([DIST8, np.zeros(6)])
    path = write_opencv(tmp_path / "c.yml", {"image_width": 1280, "image_height": 720, "camera_matrix": K_TEST,
                                             "distortion_coefficients": d14})
    assert_intrinsics(load_camera_calibration(path), dist=DIST8)


def test_loaded_camera_projects_like_opencv(tmp_path, rng):
    path = write_opencv(tmp_path / "c.yml", {"image_width": 1280, "image_height": 720, "camera_matrix": K_TEST,
                                             "distortion_coefficients": DIST5})
    camera = load_camera_calibration(path).camera
    p = np.column_stack([rng.uniform(-0.5, 0.5, (50, 2)), rng.uniform(1.0, 2.0, 50)])
    expected, _ = cv2.projectPoints(p, np.zeros(3), np.zeros(3), K_TEST, DIST5)
    np.testing.assert_allclose(camera.project(p), expected.reshape(-1, 2), atol=1e-9)


# --- ROS files --------------------------------------------------------------------------------------------
def test_ros_camera_info_plumb_bob(tmp_path):
    path = tmp_path / "camera_info.yaml"
    path.write_text(ros_yaml())
    calib = load_camera_calibration(path)
    assert_intrinsics(calib)
    assert calib.distortion_model == "plumb_bob"


def test_ros_camera_info_rational_polynomial(tmp_path):
    path = tmp_path / "camera_info.yaml"
    path.write_text(ros_yaml(dist=DIST8, model="rational_polynomial"))
    calib = load_camera_calibration(path)
    assert calib.distortion_model == "rational_polynomial"
    assert_intrinsics(calib, dist=DIST8)


def test_ros_flat_distortion_list_and_camera_model_key(tmp_path):
    path = tmp_path / "cam.yaml"
    text = ros_yaml().replace("distortion_model:", "camera_model:")
    text = text.replace("distortion_coefficients:\n  rows: 1\n  cols: 5\n  data:", "distortion_coefficients:")
    path.write_text(text)
    assert_intrinsics(load_camera_calibration(path))


def test_raw_camera_info_message_dump(tmp_path):
    """``rostopic echo -n 1 /camera/camera_info > info.yaml``: K/D flat lists and a trailing ``---``."""
    path = tmp_path / "info.yaml"
    path.write_text(
        "header: \n  seq: 42\n  stamp: \n    secs: 1700000000\n    nsecs: 5000\n  frame_id: \"camera_optical\"\n"
        "height: 720\nwidth: 1280\ndistortion_model: \"plumb_bob\"\n"
        f"D: {DIST5.tolist()}\nK: {K_TEST.ravel().tolist()}\nR: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]\n"
        f"P: {np.hstack([K_TEST, np.zeros((3, 1))]).ravel().tolist()}\n"
        "binning_x: 0\nbinning_y: 0\nroi: \n  x_offset: 0\n  y_offset: 0\n  height: 0\n  width: 0\n"
        "  do_rectify: False\n---\n")
    assert_intrinsics(load_camera_calibration(path))


def test_ros2_lowercase_camera_info_without_distortion(tmp_path):
    path = tmp_path / "info.yaml"
    path.write_text(f"height: 720\nwidth: 1280\ndistortion_model: ''\nd: []\nk: {K_TEST.ravel().tolist()}\n")
    calib = load_camera_calibration(path)
    assert_intrinsics(calib, dist=np.zeros(5))
    assert not calib.has_distortion


# --- rejections -------------------------------------------------------------------------------------------
def _opencv_nodes(**override):
    nodes = {"image_width": 1280, "image_height": 720, "camera_matrix": K_TEST, "distortion_coefficients": DIST5}
    nodes.update(override)
    return {k: v for k, v in nodes.items() if v is not None}


def _K(**entries) -> np.ndarray:
    K = K_TEST.copy()
    index = {"fx": (0, 0), "fy": (1, 1), "cx": (0, 2), "cy": (1, 2), "skew": (0, 1)}
    for name, value in entries.items():
        K[index[name]] = value
    return K


@pytest.mark.parametrize("nodes, message", [
    (_opencv_nodes(camera_matrix=None), "no camera matrix"),
    (_opencv_nodes(distortion_coefficients=None), "no distortion coefficients"),
    (_opencv_nodes(image_width=None), "no image size"),
    (_opencv_nodes(camera_matrix=np.hstack([K_TEST, np.zeros((3, 1))])), "must be 3x3, got shape (3, 4)"),
    (_opencv_nodes(camera_matrix=_K(fx=-812.5)), "fx=-812.5"),
    (_opencv_nodes(camera_matrix=_K(fy=0.0)), "fy=0.0"),
    (_opencv_nodes(camera_matrix=_K(cx=np.nan)), "non-finite"),
    (_opencv_nodes(camera_matrix=_K(skew=1.5)), "skew K[0,1]=1.5 is not supported"),
    (_opencv_nodes(camera_matrix=_K(cx=1300.0)), "(1300.0, 357.5) is outside the 1280x720 image"),
    (_opencv_nodes(camera_matrix=_K(cy=-3.0)), "outside the 1280x720 image"),
    (_opencv_nodes(distortion_coefficients=np.array([0.1, 0.2, np.nan, 0.0, 0.0])), "not finite"),
    (_opencv_nodes(distortion_coefficients=np.zeros(6)), "6 values"),
    (_opencv_nodes(distortion_coefficients=np.concatenate([DIST8, [0.01, 0, 0, 0]])), "thin-prism"),
    (_opencv_nodes(image_width=0), "image size 'image_width'=0"),
    (_opencv_nodes(distortion_model="equidistant"), "'equidistant'"),
])
def test_opencv_file_rejections_name_value_and_file(tmp_path, nodes, message):
    path = write_opencv(tmp_path / "bad_calib.yml", nodes)
    with pytest.raises(CalibrationError) as info:
        load_camera_calibration(path)
    assert message in str(info.value)
    assert "bad_calib.yml" in str(info.value)


@pytest.mark.parametrize("model, dist, message", [
    ("equidistant", np.array([0.1, 0.01, 0.0, 0.0]), "fisheye model, which is not supported"),
    ("fisheye", np.array([0.1, 0.01, 0.0, 0.0]), "fisheye model, which is not supported"),
    ("kannala_brandt", np.zeros(4), "not supported"),
    ("pinhole_radtan_v2", DIST5, "'pinhole_radtan_v2'"),
    ("rational_polynomial", DIST5, "takes 8 coefficients, got 5"),
    ("plumb_bob", DIST8, "is the model rational_polynomial?"),
])
def test_ros_distortion_model_rejections(tmp_path, model, dist, message):
    path = tmp_path / "ros_bad.yaml"
    path.write_text(ros_yaml(dist=dist, model=model))
    with pytest.raises(CalibrationError, match="ros_bad.yaml") as info:
        load_camera_calibration(path)
    assert message in str(info.value)


def test_missing_empty_and_unparseable_files(tmp_path):
    with pytest.raises(CalibrationError, match="'.*nowhere.yml' does not exist"):
        load_camera_calibration(tmp_path / "nowhere.yml")
    with pytest.raises(CalibrationError, match="is not a file"):
        load_camera_calibration(tmp_path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n")
    with pytest.raises(CalibrationError, match="empty.yaml' is empty"):
        load_camera_calibration(empty)
    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text("camera_matrix: {rows: 3, cols: 3, data: [1, 2\nimage_width: [\n")
    with pytest.raises(CalibrationError, match="broken.yaml' is not valid YAML"):
        load_camera_calibration(broken_yaml)
    broken_cv = tmp_path / "broken_cv.yml"
    broken_cv.write_text("%YAML:1.0\n---\ncamera_matrix: !!opencv-matrix\n   rows: 3\n   data: [ 1, 2\n  x: :\n")
    with pytest.raises(CalibrationError, match="broken_cv.yml' cannot be parsed by cv2.FileStorage"):
        load_camera_calibration(broken_cv)
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n")
    with pytest.raises(CalibrationError, match="holds a list"):
        load_camera_calibration(a_list)


def test_rows_cols_mismatch_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(ros_yaml().replace("camera_matrix:\n  rows: 3", "camera_matrix:\n  rows: 4"))
    with pytest.raises(CalibrationError, match="says 4x3 but has 9 values"):
        load_camera_calibration(path)


# --- frame size -------------------------------------------------------------------------------------------
def _calibration(dist=DIST5, K=K_TEST, size=(1280, 720)) -> CameraCalibration:
    dist = tuple(float(d) for d in dist)
    camera = Camera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], size[0], size[1], dist[:5])
    return CameraCalibration(camera, "rational_polynomial" if len(dist) == 8 else "plumb_bob", dist)


def test_check_frame_size_is_strict_by_default():
    calib = _calibration()
    assert check_frame_size(calib, 1280, 720) is calib
    with pytest.raises(CalibrationError, match="calibration is for 1280x720, frames are 640x480"):
        check_frame_size(calib, 640, 480)
    with pytest.raises(CalibrationError, match="frames are 640x360.*allow_rescale=True"):
        check_frame_size(calib, 640, 360)


def test_check_frame_size_rescales_same_aspect_when_allowed():
    calib = _calibration()
    half = check_frame_size(calib, 640, 360, allow_rescale=True)
    assert (half.width_px, half.height_px) == (640, 360)
    assert half.camera.fx == pytest.approx(K_TEST[0, 0] / 2)
    assert half.camera.cx == pytest.approx((K_TEST[0, 2] + 0.5) / 2 - 0.5)
    assert half.dist == calib.dist
    with pytest.raises(CalibrationError, match="calibration is for 1280x720, frames are 640x480"):
        check_frame_size(calib, 640, 480, allow_rescale=True)


# --- undistortion -----------------------------------------------------------------------------------------
def _dots_image(uv_px: np.ndarray, width: int, height: int, sigma_px: float = 1.6) -> np.ndarray:
    """Gaussian dots centred at sub-pixel positions (pixel centres at integers), RGB uint8."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width))
    for cu, cv_ in uv_px:
        u0, u1 = int(max(cu - 8, 0)), int(min(cu + 9, width))
        v0, v1 = int(max(cv_ - 8, 0)), int(min(cv_ + 9, height))
        patch = np.exp(-((u[v0:v1, u0:u1] - cu) ** 2 + (v[v0:v1, u0:u1] - cv_) ** 2) / (2 * sigma_px**2))
        image[v0:v1, u0:u1] += patch
    grey = np.clip(np.round(image * 250), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _centroids(image: np.ndarray, around_px: np.ndarray, radius: int = 7) -> np.ndarray:
    grey = image[:, :, 1].astype(np.float64)
    out = []
    for cu, cv_ in around_px:
        iu, iv = int(round(cu)), int(round(cv_))
        patch = grey[iv - radius:iv + radius + 1, iu - radius:iu + radius + 1]
        vv, uu = np.mgrid[iv - radius:iv + radius + 1, iu - radius:iu + radius + 1]
        out.append([np.sum(patch * uu) / np.sum(patch), np.sum(patch * vv) / np.sum(patch)])
    return np.asarray(out)


def _grid_points(camera: Camera, margin_px: float = 40.0, step_px: float = 48.0) -> np.ndarray:
    """3D points (Z = 1.2 m) whose pinhole projections cover the image in a grid."""
    us = np.arange(margin_px, camera.width_px - margin_px, step_px)
    vs = np.arange(margin_px, camera.height_px - margin_px, step_px)
    uv = np.array([[u + 0.37, v - 0.21] for v in vs for u in us])
    Z = np.full(len(uv), 1.2)
    return Camera(camera.fx, camera.fy, camera.cx, camera.cy, camera.width_px, camera.height_px).unproject(uv, Z)


@pytest.mark.parametrize("dist, alpha", [(DIST5, None), (DIST5, 0.0), (DIST8, None)],
                         ids=["plumb_bob-same-K", "plumb_bob-alpha0", "rational-same-K"])
def test_undistorted_dots_land_at_the_pinhole_projection(dist, alpha):
    K = np.array([[420.0, 0.0, 322.4], [0.0, 418.0, 236.8], [0.0, 0.0, 1.0]])
    calib = _calibration(dist=dist, K=K, size=(640, 480))
    undistorter = Undistorter(calib, alpha=alpha)
    pinhole = undistorter.camera
    assert not pinhole.has_distortion and (pinhole.width_px, pinhole.height_px) == (640, 480)
    if alpha is None:
        np.testing.assert_allclose(pinhole.K, K)

    P = _grid_points(pinhole)
    distorted, _ = cv2.projectPoints(P, np.zeros(3), np.zeros(3), K, np.asarray(dist))
    distorted = distorted.reshape(-1, 2)
    target = pinhole.project(P)
    inside = (calib.camera.in_image(distorted, margin_px=10) & pinhole.in_image(target, margin_px=10))
    assert inside.sum() >= 40
    distorted, target = distorted[inside], target[inside]

    raw = _dots_image(distorted, 640, 480)
    straight = undistorter(raw)
    assert straight.shape == raw.shape and straight.dtype == np.uint8
    error_px = np.linalg.norm(_centroids(straight, target) - target, axis=1)
    assert error_px.max() < 0.5, error_px.max()
    # the test has teeth: without undistortion many dots are far from the pinhole projection
    moved_px = np.linalg.norm(distorted - target, axis=1)
    assert np.sum(moved_px > 3.0) > len(target) // 3


def test_undistorter_is_identity_without_distortion():
    calib = _calibration(dist=np.zeros(5))
    undistorter = Undistorter(calib)
    image = np.zeros((720, 1280, 3), np.uint8)
    assert undistorter(image) is image
    assert undistorter.camera.K.tolist() == calib.camera.K.tolist()
    with pytest.raises(CalibrationError, match="calibration is for 1280x720, frames are 640x480"):
        undistorter(np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(CalibrationError, match="alpha=2"):
        Undistorter(calib, alpha=2)


# --- rigid transforms -------------------------------------------------------------------------------------
R_TRUE = so3_exp(np.array([0.4, -0.9, 0.25]))
t_TRUE = np.array([0.052, -0.031, 0.118])
T_TRUE = make_pose(R_TRUE, t_TRUE)
QUAT_XYZW = Rotation.from_matrix(R_TRUE).as_quat()  # scalar last
ROTVEC = Rotation.from_matrix(R_TRUE).as_rotvec()


@pytest.mark.parametrize("name, writer", [
    ("list.json", lambda p: p.write_text(json.dumps(T_TRUE.tolist()))),
    ("named.json", lambda p: p.write_text(json.dumps({"T_tool_camera": T_TRUE.tolist(), "note": "easy"}))),
    ("quat.json", lambda p: p.write_text(json.dumps({"translation": t_TRUE.tolist(), "rotation": QUAT_XYZW.tolist()}))),
    ("rotvec.json", lambda p: p.write_text(json.dumps({"translation": t_TRUE.tolist(), "rotation": ROTVEC.tolist()}))),
    ("matrix.json", lambda p: p.write_text(json.dumps({"T_tool_camera": {"translation": t_TRUE.tolist(),
                                                                          "rotation": R_TRUE.tolist()}}))),
    ("list.yaml", lambda p: p.write_text(yaml.safe_dump(T_TRUE.tolist()))),
    ("named.yml", lambda p: p.write_text(yaml.safe_dump({"T_tool_camera": T_TRUE.tolist()}))),
    ("quat.yaml", lambda p: p.write_text(yaml.safe_dump({"translation": t_TRUE.tolist(),
                                                         "rotation": QUAT_XYZW.tolist()}))),
    ("ros_style.yaml", lambda p: p.write_text(yaml.safe_dump({"T_tool_camera": {
        "translation": dict(zip("xyz", t_TRUE.tolist())), "rotation": dict(zip("xyzw", QUAT_XYZW.tolist()))}}))),
    ("opencv.yml", lambda p: write_opencv(p, {"T_tool_camera": T_TRUE})),
    ("pose.npy", lambda p: np.save(p, T_TRUE)),
    ("pose.txt", lambda p: np.savetxt(p, T_TRUE, fmt="%.17g")),
])
def test_rigid_transform_formats(tmp_path, name, writer):
    path = tmp_path / name
    writer(path)
    T = load_rigid_transform(path)
    assert T.shape == (4, 4) and T.dtype == np.float64
    np.testing.assert_allclose(T, T_TRUE, atol=1e-12)


def test_rigid_transform_other_name(tmp_path):
    path = tmp_path / "poses.json"
    path.write_text(json.dumps({"T_base_camera": T_TRUE.tolist(), "T_tool_camera": np.eye(4).tolist()}))
    np.testing.assert_allclose(load_rigid_transform(path, name="T_base_camera"), T_TRUE, atol=1e-12)
    np.testing.assert_allclose(load_rigid_transform(path), np.eye(4))


def _with(**changes) -> np.ndarray:
    T = T_TRUE.copy()
    if "R" in changes:
        T[:3, :3] = changes["R"]
    if "t" in changes:
        T[:3, 3] = changes["t"]
    if "last" in changes:
        T[3] = changes["last"]
    return T


@pytest.mark.parametrize("name, content, message", [
    ("shape.npy", T_TRUE[:3], "expected a 4x4 matrix, got shape (3, 4)"),
    ("nan.npy", _with(t=[0.0, np.nan, 0.1]), "non-finite"),
    ("last_row.txt", _with(last=[0.0, 0.0, 0.1, 1.0]), "last row must be [0, 0, 0, 1]"),
    ("scaled.json", _with(R=1.01 * R_TRUE), "not orthonormal: max |R^T R - I| = 0.0201"),
    ("rounded.json", _with(R=np.round(R_TRUE, 3)), "not orthonormal"),
    ("reflection.yaml", _with(R=R_TRUE @ np.diag([1.0, 1.0, -1.0])), "det -1 < 0, a reflection"),
    ("millimetres.json", _with(t=1000 * t_TRUE), "are the units millimetres?"),
])
def test_rigid_transform_rejections(tmp_path, name, content, message):
    path = tmp_path / name
    if path.suffix == ".npy":
        np.save(path, content)
    elif path.suffix == ".txt":
        np.savetxt(path, content)
    elif path.suffix == ".json":
        path.write_text(json.dumps(np.asarray(content).tolist()))
    else:
        path.write_text(yaml.safe_dump({"T_tool_camera": np.asarray(content).tolist()}))
    with pytest.raises(CalibrationError) as info:
        load_rigid_transform(path)
    assert message in str(info.value)
    assert name in str(info.value) and "T_tool_camera" in str(info.value)


@pytest.mark.parametrize("name, text, message", [
    ("missing_key.json", json.dumps({"T_base_tool": np.eye(4).tolist()}), "no key 'T_tool_camera'"),
    ("no_rotation.json", json.dumps({"translation": [0, 0, 0.1]}), "no rotation"),
    ("quat_norm.json", json.dumps({"translation": [0, 0, 0.1], "rotation": [0, 0, 0, 2]}), "has norm 2, not 1"),
    ("rot_shape.json", json.dumps({"translation": [0, 0, 0.1], "rotation": [1, 0]}), "got shape (2,)"),
    ("trans_shape.json", json.dumps({"translation": [0, 0], "rotation": [0, 0, 0, 1]}), "translation must be"),
    ("broken.json", "{\"T_tool_camera\": [[1, 0, 0, 0],", "is not valid JSON"),
    ("words.txt", "1 0 0 0\n0 1 0 zero\n0 0 1 0\n0 0 0 1\n", "line 2: not numbers"),
    ("ragged.txt", "1 0 0 0\n0 1 0\n0 0 1 0\n0 0 0 1\n", "rows of different lengths"),
    ("empty.txt", "\n\n", "is empty"),
])
def test_rigid_transform_file_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CalibrationError) as info:
        load_rigid_transform(path)
    assert message in str(info.value) and name in str(info.value)


def test_rigid_transform_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match="hand_eye.json' does not exist"):
        load_rigid_transform(tmp_path / "hand_eye.json")


def test_modules_import_only_earlier_stages():
    """docs/architecture.md: calibration sits right after camera, cameras right after runtime."""
    import ast

    import dfbvs.calibration
    import dfbvs.cameras

    allowed = {dfbvs.calibration: {"camera", "errors", "geometry"},
               dfbvs.cameras: {"calibration", "camera", "errors", "runtime"}}
    for module, stages in allowed.items():
        tree = ast.parse(Path(str(module.__file__)).read_text())
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
        assert imported <= stages, (module.__name__, imported - stages)


def test_a_hand_eye_in_centimetres_a_normalised_camera_matrix_and_a_rotation_vector_in_degrees_are_refused(tmp_path):
    """Plausible-looking unit mistakes a new user's review found accepted: a hand-eye translation written in cm
    ([0, 3, 5], read as 5.8 m: the arm drove away), a camera matrix normalised by the image size (fx = 0.6 px), a
    rotation vector in degrees ([0, 0, 90], read as 90 rad)."""
    from dfbvs.calibration import load_hand_eye

    cm = tmp_path / "hand_eye_cm.json"
    cm.write_text(json.dumps({"translation": [0.0, 3.0, 5.0], "rotation": [0.0, 0.0, 0.0]}))
    with pytest.raises(CalibrationError, match=r"camera 5\.831 m from the tool .* in cm or mm"):
        load_hand_eye(cm)
    np.testing.assert_allclose(load_rigid_transform(cm)[:3, 3], [0, 3, 5])  # a pose file may be that far
    metres = tmp_path / "hand_eye.json"
    metres.write_text(json.dumps({"translation": [0.0, 0.03, 0.05], "rotation": [0.0, 0.0, 0.0]}))
    np.testing.assert_allclose(load_hand_eye(metres)[:3, 3], [0, 0.03, 0.05])
    degrees = tmp_path / "degrees.json"
    degrees.write_text(json.dumps({"translation": [0.0, 0.03, 0.05], "rotation": [0.0, 0.0, 90.0]}))
    with pytest.raises(CalibrationError, match=r"turns 90 rad, more than pi: is it in degrees"):
        load_rigid_transform(degrees)
    path = write_opencv(tmp_path / "normalised.yml", _opencv_nodes(camera_matrix=_K(fx=0.6, fy=0.6)))
    with pytest.raises(CalibrationError, match=r"fx=0.6 px for a 1280 px wide image .* normalised"):
        load_camera_calibration(path)
