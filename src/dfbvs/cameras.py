"""Frame sources for the run loop (:func:`dfbvs.runtime.run_servo_loop`): a real camera, a stream, a video
file (:class:`OpenCVCamera`) or a folder of images (:class:`ImageFolderCamera`); :func:`open_camera` picks one
from a command-line string.

Every source gives :class:`~dfbvs.runtime.Frame` s of RGB uint8 at the camera's own resolution. With a
:class:`~dfbvs.calibration.CameraCalibration` the first frame's size is checked against it
(:func:`~dfbvs.calibration.check_frame_size`, strict) and, when the calibration has distortion and
``undistort`` is on, every frame is undistorted; then :attr:`camera` is the pinhole camera to give the servo.

Timestamps (s): a live source stamps each frame with ``clock()`` when it is read; a video file with the frame's
position in the file and an image folder with its timestamps file or ``index / fps``, so that replays are
deterministic. Replays are not paced: ``grab`` returns the next frame at once.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Callable, Optional, Union

import cv2
import numpy as np

from .calibration import CameraCalibration, Undistorter, check_frame_size, load_camera_calibration
from .camera import Camera
from .errors import CameraError, ConfigError
from .runtime import Frame

PathLike = Union[str, Path]

#: File extensions read as images by :class:`ImageFolderCamera` (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Names of the optional timestamps file of an image folder, in the order they are looked for.
TIMESTAMP_FILES = ("timestamps.txt", "timestamps.csv")
#: an image folder's depth images (aligned to the colour frames, 16-bit PNG) and the metres of one of their units
DEPTH_FOLDER, DEPTH_SCALE_FILE = "depth", "depth_scale.txt"


def image_to_rgb_uint8(image: np.ndarray, bgr: bool = True, what: str = "image") -> np.ndarray:
    """An HxWx3 RGB uint8 image from what OpenCV reads: grey (HxW or HxWx1), BGR, BGRA (``bgr=True``, alpha
    dropped), uint8 or uint16 (scaled by ``>> 8``, so 16-bit white stays white and mid-grey stays mid-grey).
    Other types raise :class:`CameraError` naming ``what``."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise CameraError(f"{what}: pixel type {image.dtype} is not supported (8- or 16-bit integer images)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise CameraError(f"{what}: image of shape {image.shape} is neither grey, 3- nor 4-channel")
    rgb = image[:, :, 2::-1] if bgr else image[:, :, :3]
    return np.ascontiguousarray(rgb)


class _CalibratedSource:
    """Size check on the first frame and undistortion, shared by the sources."""

    def __init__(self, calibration: Optional[CameraCalibration], undistort: bool, name: str):
        self.calibration = calibration
        self.name = name
        self.undistorter: Optional[Undistorter] = None
        if calibration is not None and undistort and calibration.has_distortion:
            self.undistorter = Undistorter(calibration)
        self._size: Optional[tuple[int, int]] = None

    @property
    def camera(self) -> Optional[Camera]:
        """The camera of the frames this source returns: pinhole when they are undistorted, the calibration's
        (with distortion) when they are not, None without a calibration."""
        if self.undistorter is not None:
            return self.undistorter.camera
        return self.calibration.camera if self.calibration is not None else None

    def _finish(self, rgb: np.ndarray, timestamp_s: float, what: str,
                depth_m: Optional[np.ndarray] = None) -> Frame:
        height, width = rgb.shape[:2]
        if self._size is None:
            if self.calibration is not None:
                check_frame_size(self.calibration, width, height)
            self._size = (width, height)
        elif self._size != (width, height):
            raise CameraError(f"{what} is {width}x{height}, earlier frames of {self.name} were "
                              f"{self._size[0]}x{self._size[1]}")
        if depth_m is not None and depth_m.shape != (height, width):
            raise CameraError(f"{what}: its depth image is {depth_m.shape[1]}x{depth_m.shape[0]}, the colour image "
                              f"{width}x{height}: depth must be aligned to the colour image")
        if self.undistorter is not None:
            rgb = self.undistorter(rgb)
            depth_m = None if depth_m is None else self.undistorter(depth_m, nearest=True)
        return Frame(rgb, float(timestamp_s), depth_m)


class OpenCVCamera(_CalibratedSource):
    """A camera device (index), a stream (URL) or a video file, read with ``cv2.VideoCapture``.

    ``grab()`` returns the next frame (RGB uint8, undistorted when the calibration has distortion and
    ``undistort``), or None when the file ends or the device stops delivering. Timestamps: ``clock()`` at read
    time for devices and streams; for a video file, the frame's position in the file
    (``CAP_PROP_POS_MSEC``, or ``index / fps`` where the container gives no usable position). A string with
    ``://`` is a stream (``rtsp://``, ``http://``, even ``file://``), any other string or path a video file.

    A device (index) is asked for a one-frame buffer and, with a calibration, for the calibration's resolution;
    whether it obeys shows in the first frame, which is checked against the calibration.
    """

    def __init__(self, source: Union[int, str, Path], calibration: Optional[CameraCalibration] = None,
                 undistort: bool = True, clock: Callable[[], float] = time.monotonic):
        if isinstance(source, bool) or not isinstance(source, (int, str, Path)):
            raise ConfigError(f"camera source must be a device index, a URL or a video file, got {source!r}")
        self.source = source
        self.is_file = not isinstance(source, int) and "://" not in str(source)
        if isinstance(source, int):
            label = f"camera {source}"
        elif self.is_file:
            label = f"video file {str(source)!r}"
            if not Path(source).is_file():
                raise CameraError(f"{label} does not exist" if not Path(source).exists() else f"{label} is not a file")
        else:
            label = f"stream {str(source)!r}"
        super().__init__(calibration, undistort, label)
        self.clock = clock
        self._capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraError(f"{label} could not be opened by cv2.VideoCapture")
        if isinstance(source, int):
            # A servo wants the newest frame, not a queue of old ones (ignored by backends without the option).
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if calibration is not None:  # ask for the calibrated resolution; the first frame is still checked
                self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, calibration.width_px)
                self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, calibration.height_px)
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        self.fps = fps if math.isfinite(fps) and fps > 0 else None
        self._index = 0
        self._last_timestamp_s = -math.inf
        self._closed = False

    def grab(self) -> Optional[Frame]:
        """The next frame, or None at the end of a file (or when a device stops delivering)."""
        if self._closed:
            return None
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        timestamp_s = self._file_timestamp_s() if self.is_file else self.clock()
        self._index += 1
        what = f"frame {self._index - 1} of {self.name}"
        return self._finish(image_to_rgb_uint8(np.asarray(image), bgr=True, what=what), timestamp_s, what)

    def _file_timestamp_s(self) -> float:
        position_s = float(self._capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
        if not (math.isfinite(position_s) and position_s > self._last_timestamp_s and position_s >= 0):
            position_s = self._index / self.fps if self.fps is not None else float(self._index)
        self._last_timestamp_s = position_s
        return position_s

    def close(self) -> None:
        """Release the device or file (idempotent)."""
        if not self._closed:
            self._capture.release()
            self._closed = True

    def __enter__(self) -> OpenCVCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _natural_key(path: Path) -> list:
    """Sort key with numbers compared as numbers: ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderCamera(_CalibratedSource):
    """The images of a folder, in natural order (``frame2`` before ``frame10``), as frames.

    Frames: files with an image extension (``IMAGE_EXTENSIONS``), or those matching the glob ``pattern``. Without
    a pattern, any other file except the timestamps file and hidden files is an error (a wrong folder, a stray
    file): pass ``pattern`` to select frames among other files.

    Timestamps (s): from ``timestamps.txt`` or ``timestamps.csv`` in the folder when present, else
    ``index / fps``. The file has one line per image (``#`` comments and a header line are skipped): either one
    number, the images' timestamps in order, or ``filename,seconds`` (comma or whitespace separated). Timestamps
    must increase.

    Depth (an RGB-D camera): with a ``depth/`` subfolder, every frame has a 16-bit single-channel PNG of the same
    stem there, aligned to the colour image (same size and camera), in units of ``depth/depth_scale.txt`` metres
    (one number; without the file, millimetres: 0.001); 0 means no depth. Frames then carry ``depth_m``.
    """

    def __init__(self, folder: PathLike, calibration: Optional[CameraCalibration] = None, fps: float = 30.0,
                 pattern: Optional[str] = None, undistort: bool = True):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CameraError(f"image folder {str(self.folder)!r} does not exist" if not self.folder.exists()
                              else f"image folder {str(self.folder)!r} is not a folder")
        if not (math.isfinite(fps) and fps > 0):
            raise ConfigError(f"image folder fps={fps!r} must be a positive number of frames per second")
        super().__init__(calibration, undistort, f"image folder {str(self.folder)!r}")
        self.fps = float(fps)
        self.paths = self._list_images(pattern)
        self.timestamps_s = self._read_timestamps()
        self.depth_paths, self.depth_scale_m = self._list_depth()
        self._index = 0

    def _list_depth(self) -> tuple[Optional[list[Path]], float]:
        """The depth image of every frame and metres per unit, or (None, nan) without a ``depth/`` folder."""
        folder = self.folder / DEPTH_FOLDER
        if not folder.is_dir():
            return None, float("nan")
        by_stem = {p.stem: p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
        missing = [p.name for p in self.paths if p.stem not in by_stem]
        if missing:
            raise CameraError(f"image folder {str(self.folder)!r} has a depth/ folder without a depth PNG for "
                              f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: every frame needs one "
                              "of the same name")
        scale_m = 0.001
        scale_file = folder / DEPTH_SCALE_FILE
        if scale_file.is_file():
            text = scale_file.read_text(encoding="utf-8").split("#")[0].strip()  # a comment may follow
            try:
                scale_m = float(text)
            except ValueError:
                scale_m = float("nan")
            if not (math.isfinite(scale_m) and 0 < scale_m <= 0.01):
                raise CameraError(f"{str(scale_file)!r} holds {text[:40]!r}: expected the metres of one depth unit, "
                                  "a number in (0, 0.01] (0.001 for millimetres)")
        return [by_stem[p.stem] for p in self.paths], scale_m

    def _read_depth(self, index: int) -> Optional[np.ndarray]:
        """The frame's depth (m, NaN where none), or None without depth images."""
        if self.depth_paths is None:
            return None
        path = self.depth_paths[index]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None or image.ndim != 2 or image.dtype != np.uint16:
            raise CameraError(f"depth image {str(path)!r}: expected a 16-bit single-channel PNG, got "
                              f"{'nothing readable' if image is None else f'{image.dtype} {image.shape}'}")
        depth = image.astype(np.float64) * self.depth_scale_m
        return np.where(image > 0, depth, np.nan)

    def _list_images(self, pattern: Optional[str]) -> list[Path]:
        files = [p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        if pattern is not None:
            images = [p for p in self.folder.glob(pattern) if p.is_file()]
            if not images:
                raise CameraError(f"image folder {str(self.folder)!r} has no file matching {pattern!r}")
        else:
            images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
            others = sorted(p.name for p in files if p not in images and p.name not in TIMESTAMP_FILES)
            if others:
                raise CameraError(f"image folder {str(self.folder)!r} holds files that are not images: "
                                  f"{', '.join(others[:5])}{' ...' if len(others) > 5 else ''} (image extensions: "
                                  f"{', '.join(IMAGE_EXTENSIONS)}; pass pattern= to select the frames)")
            if not images:
                raise CameraError(f"image folder {str(self.folder)!r} has no images "
                                  f"({', '.join(IMAGE_EXTENSIONS)})")
        return sorted(images, key=_natural_key)

    def _read_timestamps(self) -> list[float]:
        for name in TIMESTAMP_FILES:
            path = self.folder / name
            if path.is_file():
                return _parse_timestamps(path, self.paths)
        return [i / self.fps for i in range(len(self.paths))]

    def __len__(self) -> int:
        return len(self.paths)

    def grab(self) -> Optional[Frame]:
        """The next image as a frame, or None after the last one."""
        if self._index >= len(self.paths):
            return None
        path = self.paths[self._index]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise CameraError(f"{str(path)!r} in image folder {str(self.folder)!r} cannot be read as an image")
        timestamp_s = self.timestamps_s[self._index]
        depth_m = self._read_depth(self._index)
        self._index += 1
        what = f"image {str(path)!r}"
        return self._finish(image_to_rgb_uint8(np.asarray(image), bgr=True, what=what), timestamp_s, what, depth_m)

    def close(self) -> None:
        """Nothing to release; for symmetry with :class:`OpenCVCamera`."""

    def __enter__(self) -> ImageFolderCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_timestamps(path: Path, images: list[Path]) -> list[float]:
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append((number, [f for f in re.split(r"[,;\s]+", line) if f]))

    def is_number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    if rows and not any(is_number(f) for f in rows[0][1]):
        rows = rows[1:]  # a header line
    by_name = bool(rows) and len(rows[0][1]) >= 2
    times: dict[str, float] = {}
    ordered: list[float] = []
    for number, fields in rows:
        value = fields[1] if by_name and len(fields) >= 2 else fields[0]
        if (len(fields) >= 2) != by_name or not is_number(value) or not math.isfinite(float(value)):
            raise CameraError(f"timestamps file {str(path)!r}, line {number}: expected "
                              f"{'filename,seconds' if by_name else 'one number of seconds'}, got {' '.join(fields)!r}")
        if by_name:
            times[fields[0]] = float(value)
        else:
            ordered.append(float(value))
    if by_name:
        missing = [p.name for p in images if p.name not in times]
        if missing:
            raise CameraError(f"timestamps file {str(path)!r} has no timestamp for {', '.join(missing[:5])}")
        ordered = [times[p.name] for p in images]
    elif len(ordered) != len(images):
        raise CameraError(f"timestamps file {str(path)!r} has {len(ordered)} timestamps for {len(images)} images")
    for i in range(1, len(ordered)):
        if not ordered[i] > ordered[i - 1]:
            raise CameraError(f"timestamps file {str(path)!r}: timestamps must increase, but {images[i].name} has "
                              f"{ordered[i]} s after {images[i - 1].name} at {ordered[i - 1]} s")
    return ordered


class RealSenseCamera(_CalibratedSource):
    """An Intel RealSense RGB-D camera (``pyrealsense2``): colour frames (RGB8) and the depth stream aligned to them
    by the driver (``rs.align`` to the colour stream), in metres (the device's depth scale; NaN where it has none),
    at ``width_px`` x ``height_px`` and ``fps`` for both streams. Timestamps: the device's (ms -> s).

    Without a calibration file the colour stream's factory intrinsics are the camera (:attr:`factory_camera`;
    Brown-Conrady distortion, or none; another model with non-zero coefficients needs a calibration file). The
    depth lets the servo serve a part whose keypoints are its shading (``servo.depth``, docs/parts.md).
    ``serial``: one device among several (None: the first). ``rs``: the module (a test passes a fake).
    """

    def __init__(self, serial: Optional[str] = None, width_px: int = 640, height_px: int = 480, fps: int = 30,
                 calibration: Optional[CameraCalibration] = None, undistort: bool = True, timeout_ms: int = 2000,
                 rs=None):
        label = f"RealSense camera {serial!r}" if serial else "RealSense camera"
        if rs is None:
            try:
                import pyrealsense2 as rs  # type: ignore[no-redef]
            except ImportError:
                raise CameraError(f"{label}: the pyrealsense2 package is not installed (make setup installs it; "
                                  "pip install pyrealsense2)") from None
        self._rs, self.timeout_ms = rs, int(timeout_ms)
        self._pipeline = rs.pipeline()
        config = rs.config()
        if serial:
            config.enable_device(str(serial))
        config.enable_stream(rs.stream.color, int(width_px), int(height_px), rs.format.rgb8, int(fps))
        config.enable_stream(rs.stream.depth, int(width_px), int(height_px), rs.format.z16, int(fps))
        try:
            profile = self._pipeline.start(config)
        except RuntimeError as exc:
            raise CameraError(f"{label}: cannot start colour and depth at {width_px}x{height_px}, {fps} fps: {exc} "
                              "(is it plugged in, on USB 3, and is that mode supported?)") from None
        self._closed = False
        try:
            self.depth_scale_m = float(profile.get_device().first_depth_sensor().get_depth_scale())
            intr = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
            coeffs = tuple(float(c) for c in intr.coeffs)
            if any(coeffs) and intr.model != rs.distortion.brown_conrady:
                raise CameraError(f"{label}: its colour stream's distortion model {intr.model} with coefficients "
                                  f"{coeffs} is not Brown-Conrady: give a calibration file (--calibration)")
            self.factory_camera = Camera(float(intr.fx), float(intr.fy), float(intr.ppx), float(intr.ppy),
                                         int(intr.width), int(intr.height), coeffs[:5] if any(coeffs) else (0.0,) * 5)
        except BaseException:
            self.close()
            raise
        super().__init__(calibration if calibration is not None else CameraCalibration.from_camera(self.factory_camera),
                         undistort, label)
        self._align = rs.align(rs.stream.color)

    def grab(self) -> Optional[Frame]:
        """The next colour frame with its aligned depth (None once closed)."""
        if self._closed:
            return None
        try:
            frames = self._pipeline.wait_for_frames(self.timeout_ms)
        except RuntimeError as exc:
            raise CameraError(f"{self.name}: no frame within {self.timeout_ms} ms ({exc})") from None
        aligned = self._align.process(frames)
        color, depth = aligned.get_color_frame(), aligned.get_depth_frame()
        if not color or not depth:
            raise CameraError(f"{self.name}: a frame set without {'colour' if not color else 'depth'}")
        rgb = np.array(np.asanyarray(color.get_data()), dtype=np.uint8)
        raw = np.asanyarray(depth.get_data())
        depth_m = np.where(raw > 0, raw.astype(np.float64) * self.depth_scale_m, np.nan)
        what = f"frame {color.get_frame_number()} of {self.name}"
        return self._finish(rgb, float(color.get_timestamp()) / 1000.0, what, depth_m)

    def close(self) -> None:
        """Stop the streams (idempotent)."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self._pipeline.stop()

    def __enter__(self) -> RealSenseCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_camera(spec: str, calibration: Union[CameraCalibration, PathLike, None] = None,
                undistort: bool = True) -> Union[OpenCVCamera, ImageFolderCamera, RealSenseCamera]:
    """A frame source from a string: ``opencv:0`` (device index), ``opencv:rtsp://...`` (any URL or file
    cv2.VideoCapture opens), ``realsense`` or ``realsense:SERIAL`` (an RGB-D camera: frames with depth), a video
    file path, or a folder of images (with depth when it has a ``depth/`` subfolder). ``calibration``: a
    :class:`CameraCalibration` or the path of a calibration file."""
    if calibration is not None and not isinstance(calibration, CameraCalibration):
        calibration = load_camera_calibration(calibration)
    if spec == "realsense" or spec.startswith("realsense:"):
        serial = spec[len("realsense:"):] or None
        if calibration is None:
            return RealSenseCamera(serial, undistort=undistort)
        return RealSenseCamera(serial, calibration.width_px, calibration.height_px, calibration=calibration,
                               undistort=undistort)
    if spec.startswith("opencv:"):
        rest = spec[len("opencv:"):]
        if not rest:
            raise ConfigError(f"camera {spec!r}: say what to open, e.g. opencv:0 or opencv:rtsp://host/stream")
        return OpenCVCamera(int(rest) if rest.isdigit() else rest, calibration, undistort)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderCamera(path, calibration, undistort=undistort)
    if path.is_file():
        return OpenCVCamera(path, calibration, undistort)
    raise ConfigError(f"camera {spec!r} is not opencv:<index|url>, realsense[:SERIAL], a video file or a folder of "
                      "images (no such file or folder)")
