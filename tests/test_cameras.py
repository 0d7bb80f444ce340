"""Frame sources: a video file written with cv2.VideoWriter (MJPG avi), image folders with and without a
timestamps file, conversion of grey / 16-bit / BGRA images, size checks and undistortion, open_camera."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dfbvs.calibration import CameraCalibration, Undistorter
from dfbvs.camera import Camera
from dfbvs.cameras import ImageFolderCamera, OpenCVCamera, image_to_rgb_uint8, open_camera
from dfbvs.errors import CalibrationError, CameraError, ConfigError
from dfbvs.runtime import Frame

W, H = 160, 120


def calibration(size=(W, H), dist=(0.0, 0.0, 0.0, 0.0, 0.0)) -> CameraCalibration:
    return CameraCalibration.from_camera(Camera(150.0, 150.0, (size[0] - 1) / 2, (size[1] - 1) / 2, size[0],
                                                size[1], dist))


def bgr_frame(i: int) -> np.ndarray:
    """Frame ``i``: red 30, green 20 * i + 40, blue 200 (BGR order), a white square whose column encodes i."""
    image = np.zeros((H, W, 3), np.uint8)
    image[:] = (200, 20 * i + 40, 30)
    image[40:72, 10 + 16 * i:42 + 16 * i] = 255
    return image


def write_video(path: Path, n: int = 6, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(bgr_frame(i))
    writer.release()
    return path


def read_all(source) -> list[Frame]:
    frames = []
    while (frame := source.grab()) is not None:
        frames.append(frame)
        assert len(frames) < 1000
    return frames


# --- conversion -------------------------------------------------------------------------------------------
def test_image_to_rgb_uint8_conversions():
    grey = np.array([[0, 128, 255]], np.uint8)
    assert image_to_rgb_uint8(grey).tolist() == [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]
    deep = np.array([[0, 32768, 65535, 1000]], np.uint16)  # 16-bit: scaled, not clipped to white
    assert image_to_rgb_uint8(deep)[0, :, 0].tolist() == [0, 128, 255, 3]
    bgra = np.array([[[10, 20, 30, 40]]], np.uint8)
    assert image_to_rgb_uint8(bgra).tolist() == [[[30, 20, 10]]]
    assert image_to_rgb_uint8(bgra[..., :3], bgr=False).tolist() == [[[10, 20, 30]]]
    deep_bgr = np.array([[[256 * 10, 256 * 20, 256 * 30]]], np.uint16)
    assert image_to_rgb_uint8(deep_bgr).tolist() == [[[30, 20, 10]]]
    with pytest.raises(CameraError, match="pixel type float32"):
        image_to_rgb_uint8(np.zeros((2, 2), np.float32))
    with pytest.raises(CameraError, match="shape"):
        image_to_rgb_uint8(np.zeros((2, 2, 2), np.uint8))


# --- video files ------------------------------------------------------------------------------------------
def test_video_file_frames_timestamps_and_end(tmp_path):
    path = write_video(tmp_path / "run.avi")
    with OpenCVCamera(path) as camera:
        frames = read_all(camera)
        assert camera.grab() is None
    assert len(frames) == 6
    np.testing.assert_allclose([f.timestamp_s for f in frames], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-9)
    for i, frame in enumerate(frames):
        assert isinstance(frame, Frame)
        assert frame.rgb.shape == (H, W, 3) and frame.rgb.dtype == np.uint8 and frame.rgb.flags.c_contiguous
        np.testing.assert_allclose(frame.rgb[100, 140], (30, 20 * i + 40, 200), atol=8)  # RGB, not BGR
        column = np.flatnonzero(frame.rgb[56, :, 0] > 200)
        assert abs(column.mean() - (25.5 + 16 * i)) < 1.0


def test_video_replay_is_deterministic_whatever_the_clock(tmp_path):
    path = write_video(tmp_path / "run.avi")
    ticks = iter(range(100, 200))
    first = [f.timestamp_s for f in read_all(OpenCVCamera(path, clock=lambda: float(next(ticks))))]
    second = [f.timestamp_s for f in read_all(OpenCVCamera(str(path)))]
    assert first == second and first[1] > first[0]


def test_stream_frames_are_stamped_by_the_clock(tmp_path):
    """A URL is a live stream: its frames get ``clock()`` (a file:// URL stands in for rtsp:// here)."""
    path = write_video(tmp_path / "run.avi", n=3)
    ticks = iter([7.25, 7.5, 9.0, 11.0])
    with OpenCVCamera(f"file://{path}", clock=lambda: next(ticks)) as camera:
        assert not camera.is_file
        assert [f.timestamp_s for f in read_all(camera)] == [7.25, 7.5, 9.0]


def test_video_with_calibration_of_another_size_is_refused(tmp_path):
    camera = OpenCVCamera(write_video(tmp_path / "run.avi"), calibration(size=(320, 240)))
    with pytest.raises(CalibrationError, match="calibration is for 320x240, frames are 160x120"):
        camera.grab()
    camera.close()


def test_video_is_undistorted_with_a_distorted_calibration(tmp_path):
    path = write_video(tmp_path / "run.avi")
    calib = calibration(dist=(-0.3, 0.1, 0.0, 0.0, 0.0))
    raw = read_all(OpenCVCamera(path))
    with OpenCVCamera(path, calib) as camera:
        assert camera.camera is not None and not camera.camera.has_distortion
        straight = read_all(camera)
    undistort = Undistorter(calib)
    assert len(straight) == len(raw)
    for r, s in zip(raw, straight):
        assert np.array_equal(s.rgb, undistort(r.rgb))
        assert not np.array_equal(s.rgb, r.rgb)
    with OpenCVCamera(path, calib, undistort=False) as camera:
        assert camera.camera == calib.camera and camera.camera.has_distortion
        assert np.array_equal(camera.grab().rgb, raw[0].rgb)  # type: ignore[union-attr]


def test_camera_error_is_an_os_error_of_dfbvs():
    from dfbvs.errors import DfbvsError

    assert issubclass(CameraError, OSError) and issubclass(CameraError, DfbvsError)


def test_opencv_camera_errors_name_what_was_tried(tmp_path):
    with pytest.raises(CameraError, match="video file '.*nothing.avi' does not exist"):
        OpenCVCamera(tmp_path / "nothing.avi")
    not_video = tmp_path / "notes.avi"
    not_video.write_text("this is not a video\n")
    with pytest.raises(CameraError, match="video file '.*notes.avi' could not be opened"):
        OpenCVCamera(not_video)
    with pytest.raises(CameraError, match="camera 97 could not be opened"):
        OpenCVCamera(97)
    with pytest.raises(ConfigError, match="device index, a URL or a video file"):
        OpenCVCamera(1.5)  # type: ignore[arg-type]


# --- image folders ----------------------------------------------------------------------------------------
def write_folder(folder: Path, names=("frame1.png", "frame2.png", "frame10.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), bgr_frame(i))
    return folder


def test_image_folder_natural_order_and_default_timestamps(tmp_path):
    folder = write_folder(tmp_path / "frames")
    camera = ImageFolderCamera(folder, fps=20.0)
    assert [p.name for p in camera.paths] == ["frame1.png", "frame2.png", "frame10.png"] and len(camera) == 3
    frames = read_all(camera)
    assert [f.timestamp_s for f in frames] == [0.0, 0.05, 0.1]
    for i, frame in enumerate(frames):
        assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (H, W, 3)
        assert frame.rgb[100, 140].tolist() == [30, 20 * i + 40, 200]  # png is lossless: exact, RGB order


def test_image_folder_timestamps_txt(tmp_path):
    folder = write_folder(tmp_path / "frames")
    (folder / "timestamps.txt").write_text("# seconds\n12.5\n12.533\n12.6\n")
    assert [f.timestamp_s for f in read_all(ImageFolderCamera(folder))] == [12.5, 12.533, 12.6]


def test_image_folder_timestamps_csv_by_filename(tmp_path):
    folder = write_folder(tmp_path / "frames")
    (folder / "timestamps.csv").write_text("filename,timestamp_s\nframe10.png,3.0\nframe1.png,1.0\nframe2.png,2.5\n")
    assert [f.timestamp_s for f in read_all(ImageFolderCamera(folder))] == [1.0, 2.5, 3.0]


@pytest.mark.parametrize("text, message", [
    ("0.0\n0.1\n", "has 2 timestamps for 3 images"),
    ("0.0\n0.2\n0.1\n", "timestamps must increase, but frame10.png has 0.1 s after frame2.png at 0.2 s"),
    ("0.0\nnan\n0.2\n", "line 2"),
    ("frame1.png,0.0\nframe2.png,0.1\n", "no timestamp for frame10.png"),
    ("0.0\n0.1 7\n0.2\n", "line 2"),
])
def test_image_folder_bad_timestamps(tmp_path, text, message):
    folder = write_folder(tmp_path / "frames")
    (folder / "timestamps.txt").write_text(text)
    with pytest.raises(CameraError, match="timestamps.txt") as info:
        ImageFolderCamera(folder)
    assert message in str(info.value)


def test_image_folder_converts_16_bit_and_grey(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    deep = np.zeros((H, W), np.uint16)
    deep[:, : W // 2] = 40000  # 40000 >> 8 = 156: mid-grey, not white
    deep[:, W // 2:] = 65535
    cv2.imwrite(str(folder / "a.png"), deep)
    grey = np.full((H, W), 77, np.uint8)
    cv2.imwrite(str(folder / "b.png"), grey)
    deep_colour = np.zeros((H, W, 3), np.uint16)
    deep_colour[:] = (256 * 200, 256 * 100, 256 * 10)  # BGR
    cv2.imwrite(str(folder / "c.tif"), deep_colour)
    a, b, c = read_all(ImageFolderCamera(folder))
    assert a.rgb.dtype == np.uint8 and a.rgb.shape == (H, W, 3)
    assert a.rgb[0, 0].tolist() == [156, 156, 156] and a.rgb[0, -1].tolist() == [255, 255, 255]
    assert b.rgb[5, 5].tolist() == [77, 77, 77]
    assert c.rgb[5, 5].tolist() == [10, 100, 200]


def test_image_folder_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(CameraError, match="image folder '.*missing' does not exist"):
        ImageFolderCamera(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="image folder '.*empty' has no images"):
        ImageFolderCamera(tmp_path / "empty")
    folder = write_folder(tmp_path / "frames")
    (folder / "notes.docx").write_text("calibration notes")
    with pytest.raises(CameraError, match="holds files that are not images: notes.docx"):
        ImageFolderCamera(folder)
    assert len(ImageFolderCamera(folder, pattern="frame*.png")) == 3
    with pytest.raises(CameraError, match="no file matching 'shot_\\*.jpg'"):
        ImageFolderCamera(folder, pattern="shot_*.jpg")
    with pytest.raises(ConfigError, match="fps=0"):
        ImageFolderCamera(folder, fps=0, pattern="*.png")


def test_image_folder_unreadable_image_is_named(tmp_path):
    folder = write_folder(tmp_path / "frames", names=("f0.png", "f1.png"))
    (folder / "f2.png").write_bytes(b"not a png at all")
    camera = ImageFolderCamera(folder)
    camera.grab()
    camera.grab()
    with pytest.raises(CameraError, match="f2.png' in image folder .* cannot be read as an image"):
        camera.grab()


def test_image_folder_size_checks(tmp_path):
    folder = write_folder(tmp_path / "frames", names=("f0.png",))
    with pytest.raises(CalibrationError, match="calibration is for 640x480, frames are 160x120"):
        ImageFolderCamera(folder, calibration(size=(640, 480))).grab()
    cv2.imwrite(str(folder / "f1.png"), np.zeros((H + 2, W, 3), np.uint8))
    camera = ImageFolderCamera(folder, calibration())
    assert camera.grab() is not None and camera.camera == calibration().camera
    with pytest.raises(CameraError, match="f1.png' is 160x122, earlier frames .* were 160x120"):
        camera.grab()


# --- open_camera ------------------------------------------------------------------------------------------
def test_open_camera_specs(tmp_path):
    video = write_video(tmp_path / "run.avi", n=2)
    folder = write_folder(tmp_path / "frames", names=("f0.png",))
    assert isinstance(open_camera(str(folder)), ImageFolderCamera)
    source = open_camera(str(video))
    assert isinstance(source, OpenCVCamera) and source.is_file and len(read_all(source)) == 2
    source = open_camera(f"opencv:{video}")
    assert isinstance(source, OpenCVCamera) and source.grab() is not None
    with pytest.raises(CameraError, match="camera 98 could not be opened"):
        open_camera("opencv:98")
    with pytest.raises(ConfigError, match="'nowhere/video.mp4' is not opencv:<index|url>"):
        open_camera("nowhere/video.mp4")
    with pytest.raises(ConfigError, match="say what to open"):
        open_camera("opencv:")


def test_open_camera_loads_a_calibration_file(tmp_path):
    folder = write_folder(tmp_path / "frames", names=("f0.png",))
    calib_path = tmp_path / "calib.yml"
    fs = cv2.FileStorage(str(calib_path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", W)
    fs.write("image_height", H)
    fs.write("camera_matrix", np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]]))
    fs.write("distortion_coefficients", np.array([-0.2, 0.05, 0.0, 0.0, 0.0]))
    fs.release()
    source = open_camera(str(folder), calibration=calib_path)
    assert source.calibration is not None and source.calibration.source_path == calib_path
    assert source.camera is not None and not source.camera.has_distortion and source.camera.fx == 150.0
    frame = source.grab()
    assert frame is not None and frame.rgb.shape == (H, W, 3)
