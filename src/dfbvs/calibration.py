"""Calibration files of a real camera: intrinsics with lens distortion, undistortion to a pinhole camera, and
rigid transforms (hand-eye ``T_tool_camera``) read from the files users have.

Intrinsics (:func:`load_camera_calibration`), format detected by content, not by extension:

- OpenCV ``cv2.FileStorage`` YAML / XML / JSON (``%YAML:1.0`` or ``%YAML 1.2`` header, ``!!opencv-matrix``):
  keys ``camera_matrix`` (or ``cameraMatrix``, ``K``), ``distortion_coefficients`` (or ``distCoeffs``,
  ``dist_coeffs``, ``D``), ``image_width`` + ``image_height`` (or ``image_size``: ``[w, h]``).
- ROS ``camera_info`` YAML as ``camera_calibration_parsers`` writes it (``image_width``, ``image_height``,
  ``camera_matrix: {rows, cols, data}``, ``distortion_model``, ``distortion_coefficients: {data}``), and a
  raw ``sensor_msgs/CameraInfo`` dump (``rostopic echo``: ``width``, ``height``, ``K``, ``D``; ROS 2 lower case
  ``k``, ``d``). ROS's ``K`` describes the raw (distorted) image; the projection matrix ``P`` is not used.

Distortion models: ``plumb_bob`` (OpenCV's ``k1, k2, p1, p2[, k3]``) and ``rational_polynomial`` (``k1, k2,
p1, p2, k3, k4, k5, k6``). Fisheye / equidistant models, thin-prism and tilted-sensor terms are refused. An
OpenCV file cannot say which model wrote it: a 4-coefficient vector from ``cv2.fisheye.calibrate`` looks like
``plumb_bob`` and would be read as such unless the file names its model (``distortion_model``).

The servo wants a pinhole camera: :class:`Undistorter` remaps each frame so that features and the control law
see :attr:`Undistorter.camera` (no distortion, same image size).

Pixels as everywhere (CONVENTIONS.md): integer values at pixel centres, which is also OpenCV's convention, so
OpenCV's intrinsics are used as they are. Transforms are in metres.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .camera import Camera
from .errors import CalibrationError
from .geometry import so3_exp

PathLike = Union[str, Path]

#: Distortion models this module understands (ROS names) and how many coefficients each has.
DISTORTION_MODELS: dict[str, int] = {"plumb_bob": 5, "rational_polynomial": 8}
_REFUSED_MODELS = ("equidistant", "fisheye", "kannala_brandt", "kannala-brandt", "double_sphere", "omni", "mei")

_CAMERA_MATRIX_KEYS = ("camera_matrix", "cameraMatrix", "CameraMatrix", "intrinsic_matrix", "K", "k")
_DIST_KEYS = ("distortion_coefficients", "distCoeffs", "dist_coeffs", "distortion_coeffs", "DistCoeffs", "D", "d")
_MODEL_KEYS = ("distortion_model", "camera_model")
_WIDTH_KEYS = ("image_width", "width", "imageWidth")
_HEIGHT_KEYS = ("image_height", "height", "imageHeight")
_SIZE_KEYS = ("image_size", "imageSize", "resolution")

#: A skew ``K[0, 1]`` below this fraction of ``fx`` is rounding noise and read as zero.
_SKEW_TOLERANCE = 1e-9
#: Largest plausible hand-eye translation (m): more than this is most likely millimetres.
MAX_TRANSLATION_M = 10.0


@dataclass(frozen=True)
class CameraCalibration:
    """A camera's calibration as read from a file.

    ``camera``: the intrinsics at the calibration's image size, with ``Camera.dist`` holding the first five
    coefficients ``(k1, k2, p1, p2, k3)``. ``dist``: the full vector, 5 coefficients for ``plumb_bob`` and 8
    for ``rational_polynomial`` (``k4, k5, k6`` divide the radial term, so :class:`Camera` cannot represent
    them: see :attr:`camera_is_exact`; :class:`Undistorter` always uses the full vector). ``source_path``: the
    file it came from (None when built in code).
    """

    camera: Camera
    distortion_model: str
    dist: tuple[float, ...]
    source_path: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.distortion_model not in DISTORTION_MODELS:
            raise CalibrationError(f"distortion model {self.distortion_model!r} is not supported "
                                   f"(supported: {', '.join(DISTORTION_MODELS)}){_in_file(self.source_path)}")
        n = DISTORTION_MODELS[self.distortion_model]
        if len(self.dist) != n or not all(math.isfinite(d) for d in self.dist):
            raise CalibrationError(f"{self.distortion_model} distortion needs {n} finite coefficients, got "
                                   f"{self.dist!r}{_in_file(self.source_path)}")
        object.__setattr__(self, "dist", tuple(float(d) for d in self.dist))

    @classmethod
    def from_camera(cls, camera: Camera, source_path: Optional[Path] = None) -> CameraCalibration:
        """The calibration of a :class:`Camera` (plumb_bob, its own ``dist``)."""
        return cls(camera, "plumb_bob", tuple(camera.dist), source_path)

    @property
    def width_px(self) -> int:
        return self.camera.width_px

    @property
    def height_px(self) -> int:
        return self.camera.height_px

    @property
    def has_distortion(self) -> bool:
        return any(d != 0.0 for d in self.dist)

    @property
    def camera_is_exact(self) -> bool:
        """True when :attr:`camera` (5 coefficients) projects exactly as the full model does."""
        return all(d == 0.0 for d in self.dist[5:])

    def dist_array(self) -> np.ndarray:
        """The full distortion vector as OpenCV takes it (float64, shape (n,))."""
        return np.asarray(self.dist, dtype=np.float64)

    def rescaled(self, width_px: int, height_px: int) -> CameraCalibration:
        """The same camera sampled at another resolution (binning, a scaled stream): the intrinsics scale as in
        :meth:`Camera.rescaled`; distortion acts on normalized coordinates and does not change."""
        return replace(self, camera=self.camera.rescaled(width_px, height_px))


# --- intrinsics ---------------------------------------------------------------------------------------------
def load_camera_calibration(path: PathLike) -> CameraCalibration:
    """Read a camera calibration file (OpenCV FileStorage YAML/XML/JSON or ROS camera_info YAML; see the
    module docstring). Raises :class:`CalibrationError` naming the file and the value when the file is missing,
    unparseable or cannot describe a pinhole camera with supported distortion."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file {str(path)!r} does not exist" if not path.exists()
                               else f"calibration path {str(path)!r} is not a file")
    text = _read_text(path)
    data = _read_mapping(path, text)
    return _calibration_from_mapping(data, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CalibrationError(f"calibration file {str(path)!r} cannot be read: {exc}") from exc


def _looks_like_opencv_storage(text: str) -> bool:
    head = text.lstrip()[:4096]
    return (head.startswith("%YAML:") or head.startswith("%YAML 1.2") or "!!opencv-matrix" in text
            or "<opencv_storage>" in head or "type_id=\"opencv-matrix\"" in text)


def _read_mapping(path: Path, text: str) -> dict:
    """The file's top level as a Python dict (OpenCV matrices as arrays)."""
    if not text.strip():
        raise CalibrationError(f"calibration file {str(path)!r} is empty")
    if _looks_like_opencv_storage(text):
        return _read_opencv_storage(path)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"calibration file {str(path)!r} is not valid JSON: {exc}") from exc
    elif stripped.startswith("<"):
        return _read_opencv_storage(path)  # XML: only OpenCV's is understood
    else:
        data = _load_yaml(path, text)
    if not isinstance(data, dict):
        raise CalibrationError(f"calibration file {str(path)!r} holds a {type(data).__name__}, not a mapping of "
                               "keys such as camera_matrix")
    return data


def _load_yaml(path: Path, text: str) -> Any:
    import yaml  # type: ignore[import-untyped]

    try:
        # ``rostopic echo`` ends each message with ``---``: take the first non-empty document.
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                return doc
    except yaml.YAMLError as exc:
        raise CalibrationError(f"file {str(path)!r} is not valid YAML: {exc}") from exc
    raise CalibrationError(f"file {str(path)!r} holds no YAML document")


def _read_opencv_storage(path: Path) -> dict:
    import cv2

    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except Exception as exc:  # cv2.error, or SystemError wrapping it on a parse error
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise CalibrationError(f"file {str(path)!r} cannot be parsed by cv2.FileStorage: {message}") from exc
    try:
        if not fs.isOpened():
            raise CalibrationError(f"file {str(path)!r} cannot be opened by cv2.FileStorage")
        root = fs.root()
        if not root.isMap():
            raise CalibrationError(f"file {str(path)!r}: the top level of the OpenCV storage is not a mapping")
        return {key: _node_value(root.getNode(key)) for key in root.keys()}
    finally:
        fs.release()


def _node_value(node: Any) -> Any:
    """A cv2.FileNode as a Python value: matrices as arrays, maps as dicts, sequences as lists."""
    if node.isMap():
        keys = node.keys()
        if {"rows", "cols", "dt", "data"} <= set(keys):
            return np.asarray(node.mat(), dtype=np.float64)
        return {key: _node_value(node.getNode(key)) for key in keys}
    if node.isSeq():
        return [_node_value(node.at(i)) for i in range(node.size())]
    if node.isInt():
        return int(node.real())
    if node.isReal():
        return float(node.real())
    if node.isString():
        return node.string()
    return None


def _in_file(path: Optional[Path]) -> str:
    return f" (in {str(path)!r})" if path is not None else ""


def _first(data: dict, keys: tuple[str, ...]) -> tuple[Optional[str], Any]:
    for key in keys:
        if key in data and data[key] is not None:
            return key, data[key]
    return None, None


def _as_float_array(value: Any, what: str, path: Path) -> np.ndarray:
    """A matrix value: an array, a ``{rows, cols, data}`` mapping, a flat or nested list."""
    rows = cols = None
    if isinstance(value, dict):
        if "data" not in value:
            raise CalibrationError(f"{what} in {str(path)!r} is a mapping without 'data' (keys: {sorted(value)})")
        rows, cols = value.get("rows"), value.get("cols")
        value = value["data"]
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{what} in {str(path)!r} is not numeric: {value!r}") from exc
    if rows is not None and cols is not None:
        if array.size != int(rows) * int(cols):
            raise CalibrationError(f"{what} in {str(path)!r} says {rows}x{cols} but has {array.size} values")
        array = array.reshape(int(rows), int(cols))
    return array


def _camera_matrix(value: Any, key: str, path: Path) -> np.ndarray:
    K = _as_float_array(value, f"camera matrix '{key}'", path)
    if K.size == 9 and K.ndim == 1:
        K = K.reshape(3, 3)
    if K.shape != (3, 3):
        raise CalibrationError(f"camera matrix '{key}' in {str(path)!r} must be 3x3, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise CalibrationError(f"camera matrix '{key}' in {str(path)!r} has non-finite values: {K.tolist()}")
    return K


def _image_size(data: dict, path: Path) -> tuple[int, int]:
    wkey, width = _first(data, _WIDTH_KEYS)
    hkey, height = _first(data, _HEIGHT_KEYS)
    if width is None or height is None:
        skey, size = _first(data, _SIZE_KEYS)
        if size is None:
            raise CalibrationError(f"calibration file {str(path)!r} has no image size: expected image_width and "
                                   f"image_height (or image_size: [w, h]); keys found: {sorted(data)}")
        size_arr = _as_float_array(size, f"'{skey}'", path).reshape(-1)
        if size_arr.size != 2:
            raise CalibrationError(f"'{skey}' in {str(path)!r} must be [width, height], got {size!r}")
        width, height = size_arr[0], size_arr[1]
        wkey = hkey = skey
    out = []
    for key, value in ((wkey, width), (hkey, height)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number) or number != int(number) or number <= 0:
            raise CalibrationError(f"image size '{key}'={value!r} in {str(path)!r} must be a positive integer")
        out.append(int(number))
    return out[0], out[1]


def _distortion(data: dict, path: Path) -> tuple[str, tuple[float, ...]]:
    mkey, model = _first(data, _MODEL_KEYS)
    dkey, value = _first(data, _DIST_KEYS)
    if model is not None:
        model = str(model).strip().strip('"').lower() or None  # an empty model: an uncalibrated CameraInfo
    if model is not None:
        if model in _REFUSED_MODELS:
            raise CalibrationError(f"distortion model {model!r} ('{mkey}' in {str(path)!r}) is a fisheye model, "
                                   "which is not supported: calibrate with the pinhole model (plumb_bob or "
                                   "rational_polynomial) or undistort the images before dfbvs")
        if model not in DISTORTION_MODELS:
            raise CalibrationError(f"distortion model {model!r} ('{mkey}' in {str(path)!r}) is not supported "
                                   f"(supported: {', '.join(DISTORTION_MODELS)})")
    if value is None:
        raise CalibrationError(f"calibration file {str(path)!r} has no distortion coefficients: expected one of "
                               f"{', '.join(_DIST_KEYS[:4])} (write zeros for none); keys found: {sorted(data)}")
    d = _as_float_array(value, f"distortion coefficients '{dkey}'", path).reshape(-1)
    if not np.all(np.isfinite(d)):
        raise CalibrationError(f"distortion coefficients '{dkey}' in {str(path)!r} are not finite: {d.tolist()}")
    n = d.size
    if n in (12, 14):
        if np.any(d[8:] != 0):
            raise CalibrationError(f"distortion coefficients '{dkey}' in {str(path)!r} use thin-prism (s1..s4) or "
                                   f"tilted-sensor (tauX, tauY) terms {d[8:].tolist()}, which are not supported")
        d, n = d[:8], 8
    if n not in (0, 4, 5, 8):
        raise CalibrationError(f"distortion coefficients '{dkey}' in {str(path)!r}: {n} values; expected 4 or 5 "
                               f"(plumb_bob) or 8 (rational_polynomial): {d.tolist()}")
    if model is None:
        model = "rational_polynomial" if n == 8 else "plumb_bob"
    if model == "plumb_bob" and n == 8:
        if np.any(d[5:] != 0):
            raise CalibrationError(f"distortion model plumb_bob in {str(path)!r} takes 5 coefficients, got 8 with "
                                   f"k4..k6={d[5:].tolist()} non-zero: is the model rational_polynomial?")
        d = d[:5]
    if model == "rational_polynomial" and n not in (0, 8):
        raise CalibrationError(f"distortion model rational_polynomial in {str(path)!r} takes 8 coefficients, "
                               f"got {n}: {d.tolist()}")
    full = np.zeros(DISTORTION_MODELS[model])
    full[:n] = d
    return model, tuple(float(x) for x in full)


#: a focal length below this fraction of the image width is not a pinhole camera's (a normalised matrix)
MIN_FOCAL_FRACTION = 0.1


def _calibration_from_mapping(data: dict, path: Path) -> CameraCalibration:
    key, value = _first(data, _CAMERA_MATRIX_KEYS)
    if value is None:
        raise CalibrationError(f"calibration file {str(path)!r} has no camera matrix: expected one of "
                               f"{', '.join(_CAMERA_MATRIX_KEYS)}; keys found: {sorted(data)}")
    assert key is not None
    K = _camera_matrix(value, key, path)
    width, height = _image_size(data, path)
    model, dist = _distortion(data, path)
    fx, fy, cx, cy, skew = (float(K[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2), (0, 1)))
    for name, f in (("fx", fx), ("fy", fy)):
        if not f > 0:
            raise CalibrationError(f"camera matrix '{key}' in {str(path)!r}: {name}={f!r}, a focal length must be "
                                   "a positive number of pixels")
        if f < MIN_FOCAL_FRACTION * width:
            raise CalibrationError(f"camera matrix '{key}' in {str(path)!r}: {name}={f!r} px for a {width} px wide "
                                   f"image (below {MIN_FOCAL_FRACTION:g} of the width: a field of view over 157 deg); "
                                   "is the matrix normalised by the image size? (pixels expected)")
    if abs(skew) > _SKEW_TOLERANCE * fx:
        raise CalibrationError(f"camera matrix '{key}' in {str(path)!r}: skew K[0,1]={skew!r} is not supported "
                               "(calibrate with zero skew, OpenCV's default)")
    if K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0 or K[2, 2] != 1:
        raise CalibrationError(f"camera matrix '{key}' in {str(path)!r} is not of the form "
                               f"[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]: {K.tolist()}")
    if not (-0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5):
        raise CalibrationError(f"camera matrix '{key}' in {str(path)!r}: principal point (cx, cy)=({cx}, {cy}) "
                               f"is outside the {width}x{height} image")
    camera = Camera(fx, fy, cx, cy, width, height, dist[:5])
    return CameraCalibration(camera, model, dist, path)


# --- frame size ---------------------------------------------------------------------------------------------
def check_frame_size(calibration: CameraCalibration, width_px: int, height_px: int,
                     allow_rescale: bool = False) -> CameraCalibration:
    """The calibration to use for frames of ``width_px`` x ``height_px``.

    Strict by default: raises :class:`CalibrationError` when the frames are not the calibration's size. With
    ``allow_rescale`` a frame size with exactly the same aspect ratio (``w * H == h * W``, e.g. a 640x360 stream
    of a camera calibrated at 1280x720) gets :meth:`CameraCalibration.rescaled`; this is right only when the
    camera scales the whole sensor image (binning, resizing), not when it crops it.
    """
    W, H = calibration.width_px, calibration.height_px
    if (width_px, height_px) == (W, H):
        return calibration
    source = _in_file(calibration.source_path)
    if allow_rescale and width_px * H == height_px * W:
        return calibration.rescaled(width_px, height_px)
    hint = ("" if allow_rescale or width_px * H != height_px * W
            else "; the aspect ratio is the same: pass allow_rescale=True if the camera scales its whole image")
    raise CalibrationError(f"calibration is for {W}x{H}, frames are {width_px}x{height_px}{source}{hint}")


# --- undistortion -------------------------------------------------------------------------------------------
class Undistorter:
    """Removes lens distortion from frames, so features and the control law see a pinhole camera.

    ``camera`` (give it to the servo) has no distortion and the calibration's image size. Its intrinsics:

    - ``alpha=None`` (default): the calibration's own ``K``, so focal length and principal point do not change.
      Output pixels whose ray falls outside the sensor are black; with barrel distortion (``k1 < 0``, the usual
      case) there are none, with pincushion there are some at the corners.
    - ``alpha`` in ``[0, 1]``: ``cv2.getOptimalNewCameraMatrix`` with that alpha: 0 zooms in until every output
      pixel is valid, 1 keeps every source pixel.

    The maps are computed once (``cv2.initUndistortRectifyMap``); a call is one ``cv2.remap`` (bilinear). With no
    distortion the call returns its input unchanged.
    """

    def __init__(self, calibration: CameraCalibration, alpha: Optional[float] = None):
        import cv2

        self.calibration = calibration
        src = calibration.camera
        size = (src.width_px, src.height_px)
        if alpha is None:
            new_K = src.K
        else:
            if not 0.0 <= alpha <= 1.0:
                raise CalibrationError(f"undistortion alpha={alpha!r} must be in [0, 1] (or None: keep K)")
            new_K, _roi = cv2.getOptimalNewCameraMatrix(src.K, calibration.dist_array(), size, alpha, size)
        self.camera = Camera(float(new_K[0, 0]), float(new_K[1, 1]), float(new_K[0, 2]), float(new_K[1, 2]),
                             src.width_px, src.height_px)
        self.identity = not calibration.has_distortion and alpha is None
        self._maps: Optional[tuple[np.ndarray, np.ndarray]] = None
        if not self.identity:
            map_u, map_v = cv2.initUndistortRectifyMap(
                src.K, calibration.dist_array(), None, self.camera.K, size, cv2.CV_32FC1)
            self._maps = (np.asarray(map_u), np.asarray(map_v))

    def __call__(self, rgb: np.ndarray, nearest: bool = False) -> np.ndarray:
        """The undistorted image (same size, dtype and channels). ``rgb`` must have the calibration's size.
        ``nearest``: sample the nearest pixel instead of blending four (a depth image, whose values at an edge
        must not be averaged across it; pixels mapped from outside the image are then NaN)."""
        height, width = rgb.shape[:2]
        check_frame_size(self.calibration, width, height)
        if self._maps is None:
            return rgb
        import cv2

        return cv2.remap(rgb, self._maps[0], self._maps[1],
                         interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan") if nearest else 0)


# --- rigid transforms ---------------------------------------------------------------------------------------
#: an eye-in-hand camera sits within this distance of the tool (m): a longer hand-eye translation is in other units
MAX_HAND_EYE_M = 0.5


def load_hand_eye(path: PathLike) -> np.ndarray:
    """The hand-eye transform ``T_tool_camera`` (4x4, metres) of a file, as :func:`load_rigid_transform` reads it;
    a :class:`CalibrationError` also when the camera is further than :data:`MAX_HAND_EYE_M` from the tool (a
    translation in centimetres or millimetres)."""
    T = load_rigid_transform(path, "T_tool_camera")
    d = float(np.linalg.norm(T[:3, 3]))
    if d > MAX_HAND_EYE_M:
        raise CalibrationError(f"T_tool_camera in {str(path)!r} puts the camera {d:.3f} m from the tool (translation "
                               f"{np.round(T[:3, 3], 4).tolist()}): a camera on the tool sits within "
                               f"{MAX_HAND_EYE_M:g} m of it; is the translation in cm or mm? (metres expected)")
    return T


def load_rigid_transform(path: PathLike, name: str = "T_tool_camera", orthonormal_tolerance: float = 1e-6
                         ) -> np.ndarray:
    """A 4x4 rigid transform (metres) read from a hand-eye or pose file.

    Accepted: JSON or YAML holding a 4x4 list, ``{name: <4x4 | the next form>}``, or ``{"translation": [x, y, z],
    "rotation": R}`` with ``R`` a quaternion ``[x, y, z, w]`` (scalar last, as ROS and SciPy), a rotation vector
    ``[rx, ry, rz]`` (rad) or a 3x3 matrix (ROS-style ``{x, y, z[, w]}`` mappings are accepted for both); an
    OpenCV FileStorage YAML/XML with a matrix under ``name``; ``.npy``; whitespace-separated ``.txt`` (4 rows of 4).

    Raises :class:`CalibrationError` naming the file and the problem: wrong shape, non-finite values, last row
    not ``[0, 0, 0, 1]``, rotation not orthonormal (``max |R^T R - I| > orthonormal_tolerance``) or a
    reflection (det < 0), translation longer than 10 m (units probably millimetres).
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"transform file {str(path)!r} does not exist" if not path.exists()
                               else f"transform path {str(path)!r} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            value: Any = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"transform file {str(path)!r} is not a readable .npy array: {exc}") from exc
    else:
        text = _read_text(path)
        if not text.strip():
            raise CalibrationError(f"transform file {str(path)!r} is empty")
        value = _parse_transform_text(path, text, suffix)
    T = _transform_from_value(value, name, path)
    return validate_rigid_transform(T, f"{name} in {str(path)!r}", orthonormal_tolerance)


_NUMBER_LINE = re.compile(r"^[\s0-9eE+\-.,;\[\]]+$")


def _parse_transform_text(path: Path, text: str, suffix: str) -> Any:
    stripped = text.lstrip()
    if _looks_like_opencv_storage(text):
        return _read_opencv_storage(path)
    if suffix in (".yaml", ".yml"):
        return _load_yaml(path, text)
    if suffix == ".json" or stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if suffix == ".json":
                raise CalibrationError(f"transform file {str(path)!r} is not valid JSON: {exc}") from exc
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if suffix == ".txt" or (lines and all(_NUMBER_LINE.match(line) and not line.lstrip().startswith("-")
                                          for line in lines)):
        rows = []
        for i, line in enumerate(lines):
            try:
                rows.append([float(x) for x in re.split(r"[\s,;]+", line.strip().strip("[]").strip()) if x])
            except ValueError as exc:
                raise CalibrationError(f"transform file {str(path)!r}, line {i + 1}: not numbers: {line!r}") from exc
        if len({len(r) for r in rows}) > 1:
            raise CalibrationError(f"transform file {str(path)!r}: rows of different lengths "
                                   f"{[len(r) for r in rows]}, expected 4 rows of 4 numbers")
        return rows
    return _load_yaml(path, text)


def _xyzw(value: Any, keys: str) -> Any:
    """A ROS-style ``{x, y, z[, w]}`` mapping as a list, anything else unchanged."""
    if isinstance(value, dict) and all(k in value for k in keys):
        return [value[k] for k in keys]
    return value


def _transform_from_value(value: Any, name: str, path: Path) -> np.ndarray:
    where = f"{name} in {str(path)!r}"
    if isinstance(value, dict):
        if name in value:
            return _transform_from_value(value[name], name, path)
        if "translation" in value or "rotation" in value:
            missing = [k for k in ("translation", "rotation") if k not in value]
            if missing:
                raise CalibrationError(f"{where}: has {'rotation' if missing == ['translation'] else 'translation'} "
                                       f"but no {missing[0]}")
            t = np.asarray(_xyzw(value["translation"], "xyz"), dtype=np.float64).reshape(-1)
            if t.shape != (3,):
                raise CalibrationError(f"{where}: translation must be [x, y, z] (m), got {value['translation']!r}")
            rotation = value["rotation"]
            if isinstance(rotation, dict):
                rotation = _xyzw(rotation, "xyzw") if "w" in rotation else _xyzw(rotation, "xyz")
            R = _rotation_matrix(np.asarray(rotation, dtype=np.float64), where)
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = R, t
            return T
        if "data" in value:
            return _as_float_array(value, where, path)
        raise CalibrationError(f"{where}: no key {name!r} and no translation/rotation; keys found: {sorted(value)}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{where}: not a numeric matrix: {value!r}") from exc


def _rotation_matrix(rotation: np.ndarray, where: str) -> np.ndarray:
    if not np.all(np.isfinite(rotation)):
        raise CalibrationError(f"{where}: rotation has non-finite values: {rotation.tolist()}")
    if rotation.shape == (4,):
        norm = float(np.linalg.norm(rotation))
        if abs(norm - 1.0) > 1e-3:
            raise CalibrationError(f"{where}: quaternion [x, y, z, w]={rotation.tolist()} has norm {norm:.6g}, "
                                   "not 1")
        x, y, z, w = rotation / norm
        return np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
    if rotation.shape == (3,):
        angle = float(np.linalg.norm(rotation))
        if angle > np.pi + 1e-6:  # any rotation has a vector of at most pi rad; beyond, it is in degrees
            raise CalibrationError(f"{where}: rotation vector {rotation.tolist()} turns {angle:.4g} rad, more than pi: "
                                   f"is it in degrees? (radians expected: {np.deg2rad(rotation).round(6).tolist()} "
                                   "if so)")
        return so3_exp(rotation)
    if rotation.shape in ((3, 3), (9,)):
        return rotation.reshape(3, 3)
    raise CalibrationError(f"{where}: rotation must be a quaternion [x, y, z, w], a rotation vector (rad) or a "
                           f"3x3 matrix, got shape {rotation.shape}")


def validate_rigid_transform(T: np.ndarray, what: str = "transform", orthonormal_tolerance: float = 1e-6
                             ) -> np.ndarray:
    """``T`` as a float64 4x4 rigid transform, or :class:`CalibrationError` naming ``what`` and the problem."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise CalibrationError(f"{what}: expected a 4x4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise CalibrationError(f"{what}: has non-finite values: {T.tolist()}")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], rtol=0.0, atol=1e-9):
        raise CalibrationError(f"{what}: last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    deviation = float(np.max(np.abs(R.T @ R - np.eye(3))))
    if deviation > orthonormal_tolerance:
        raise CalibrationError(f"{what}: rotation is not orthonormal: max |R^T R - I| = {deviation:.3g} > "
                               f"{orthonormal_tolerance:g} (write more digits, or re-orthonormalize)")
    det = float(np.linalg.det(R))
    if det < 0:
        raise CalibrationError(f"{what}: rotation has det {det:.6g} < 0, a reflection, not a rotation")
    norm_m = float(np.linalg.norm(T[:3, 3]))
    if norm_m > MAX_TRANSLATION_M:
        raise CalibrationError(f"{what}: translation {T[:3, 3].tolist()} is {norm_m:.4g} m long, more than "
                               f"{MAX_TRANSLATION_M:g} m: are the units millimetres? dfbvs reads metres")
    return T
