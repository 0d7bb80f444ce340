"""Small image helpers written once: validating an image handed to the library (:func:`as_rgb_frame`, the one
check every servo and ``dfbvs match`` use), reading image files (:func:`read_image_rgb8`), resizing (area for
images, nearest for depth and masks) and grey conversion. Pixel convention as everywhere: integer values at pixel
centres (CONVENTIONS.md).

What an image entry point accepts (anything else is a :class:`~dfbvs.errors.FrameError` naming what it got):

- a NumPy array, HxWx3 RGB; HxWx4 (alpha dropped), HxW and HxWx1 grey (replicated to RGB);
- dtype uint8, or uint16 scaled to 8 bits over its full range (``round(x * 255 / 65535)``, never clipped);
  float, signed and bool images are refused (0..1 or 0..255 is a guess the caller must make);
- each side within :class:`ImageLimits` (16 .. 16384 px by default);
- given a camera, the frame's aspect ratio must be the camera's (within
  :data:`~dfbvs.camera.ASPECT_TOLERANCE`): the frame is then that camera at another resolution and may be
  resized; any other size is a different camera and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .camera import ASPECT_TOLERANCE, Camera, aspect_mismatch
from .errors import ConfigError, FrameError


@dataclass(frozen=True)
class ImageLimits:
    """Bounds of an image given to the library (px): smaller sides leave no room for a feature window,
    larger ones are refused before any network or resize sees them (a 8000x6000 photo segfaulted in torch)."""

    min_side_px: int = 16
    max_side_px: int = 16384

    def __post_init__(self) -> None:
        if not 1 <= self.min_side_px <= self.max_side_px:
            raise ConfigError(f"ImageLimits: need 1 <= min_side_px <= max_side_px, got {self.min_side_px!r}, "
                              f"{self.max_side_px!r}")


def _describe(image: object) -> str:
    if isinstance(image, np.ndarray):
        return f"an array of shape {image.shape} and dtype {image.dtype}"
    return "None" if image is None else f"a {type(image).__name__}"


def as_rgb_frame(image: object, camera: Camera | None = None, *, what: str = "frame",
                 prepared_for: str = "servo was prepared for", limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """``image`` as a contiguous HxWx3 uint8 RGB array after the checks and conversions in the module docstring;
    with ``camera``, its size must be that camera at some resolution (same aspect ratio). Raises
    :class:`~dfbvs.errors.FrameError` saying what was received and what is expected (``what`` names the image,
    ``prepared_for`` precedes the camera's size in the message)."""
    if not isinstance(image, np.ndarray):
        raise FrameError(f"{what} is {_describe(image)}; expected an HxWx3 uint8 NumPy array (RGB)")
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise FrameError(f"{what} has shape {image.shape}; expected HxWx3 (RGB), HxWx4 (RGBA) or HxW (grey)")
    h, w = img.shape[:2]
    if h == 0 or w == 0:
        raise FrameError(f"{what} is empty (shape {image.shape})")
    if min(h, w) < limits.min_side_px or max(h, w) > limits.max_side_px:
        raise FrameError(f"{what} is {w}x{h}; each side must be within {limits.min_side_px}..{limits.max_side_px} px")
    if img.dtype == np.uint16:  # full 16-bit range to 8 bits, rounded (65535 -> 255, never clipped)
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise FrameError(f"{what} has dtype {image.dtype}; expected uint8 (0..255) or uint16 (0..65535). A float "
                         f"image's scale (0..1 or 0..255) is ambiguous: convert it, e.g. "
                         f"np.clip(np.rint(img * 255), 0, 255).astype(np.uint8) for 0..1")
    if camera is not None:
        mismatch = aspect_mismatch(w, h, camera.width_px, camera.height_px)
        if mismatch > ASPECT_TOLERANCE:
            raise FrameError(f"{what} is {w}x{h} (aspect {w / h:.2f}), {prepared_for} a {camera.width_px}x"
                             f"{camera.height_px} camera (aspect {camera.width_px / camera.height_px:.2f}): a frame "
                             f"of another aspect comes from another camera or crop and cannot be resized to it")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def read_image_rgb8(path: Path | str, what: str = "image", limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB: 16-bit files (grey or colour) are scaled over their full range, not
    clipped to white; the size is checked against ``limits`` before the pixels are decoded. Errors are
    :class:`~dfbvs.errors.FrameError` (unreadable, too large) or FileNotFoundError."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {str(p)!r}: no such file")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if min(w, h) < limits.min_side_px or max(w, h) > limits.max_side_px:
                raise FrameError(f"{what} {str(p)!r} is {w}x{h}; each side must be within "
                                 f"{limits.min_side_px}..{limits.max_side_px} px")
            if im.mode.startswith("I;16"):
                arr = np.asarray(im).astype(np.uint16)
            elif im.mode == "I":  # 32-bit integer grey: 16-bit PNGs often open so
                raw = np.asarray(im)
                if raw.min() < 0 or raw.max() > 65535:
                    raise FrameError(f"{what} {str(p)!r}: 32-bit integer pixels outside 0..65535")
                arr = raw.astype(np.uint16)
            elif im.mode in ("L", "RGB"):
                arr = np.asarray(im)
            else:  # palette, alpha, CMYK, 1-bit, float: let PIL make 8-bit RGB
                arr = np.asarray(im.convert("RGB"))
    except FrameError:
        raise
    except Exception as exc:  # PIL raises many types for bad files
        raise FrameError(f"{what} {str(p)!r}: not a readable image ({type(exc).__name__}: {exc})") from None
    return as_rgb_frame(arr, what=f"{what} {str(p)!r}", limits=limits)


def fit_within(image: np.ndarray, max_side_px: int) -> tuple[np.ndarray, float]:
    """``image`` area-downscaled so that its longer side is at most ``max_side_px`` (aspect kept), and the scale
    applied (1.0 when it already fits: returned as it is)."""
    h, w = image.shape[:2]
    scale = max_side_px / max(h, w)
    if scale >= 1.0:
        return image, 1.0
    return resize_area(image, max(1, round(w * scale)), max(1, round(h * scale))), scale


def resize_area(image: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """Area-resample an image to ``width_px`` x ``height_px`` (no-op when it already has that size)."""
    if image.shape[1] == width_px and image.shape[0] == height_px:
        return image
    import cv2

    return cv2.resize(image, (width_px, height_px), interpolation=cv2.INTER_AREA)


def resize_nearest(array: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """A depth map (float32 out) or a boolean mask at another size, nearest neighbour, so that object and
    background values are never blended. No-op when the size already fits."""
    if array.shape[:2] == (height_px, width_px):
        return array
    import cv2

    size = (width_px, height_px)
    if array.dtype == bool:
        return cv2.resize(array.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(array.astype(np.float32), size, interpolation=cv2.INTER_NEAREST)


def grey_uint8(image: np.ndarray) -> np.ndarray:
    """Grey (ITU-R BT.601 luma, OpenCV's rounding) uint8 image of an RGB(A) or already grey uint8 image."""
    if image.ndim == 2:
        return image
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)


def rgb8_from_grey(grey: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image whose three channels are ``grey`` (H, W, 0-255 scale) rounded and clipped."""
    return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def grey_float32(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601) of an RGB uint8 image as float32 on the 0-255 scale, without rounding."""
    return (rgb[:, :, 0] * np.float32(0.299) + rgb[:, :, 1] * np.float32(0.587)
            + rgb[:, :, 2] * np.float32(0.114)).astype(np.float32)


def rotation_affine_px(center_px: tuple[float, float], angle_rad: float,
                       shift_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The 2x3 pixel map ``p' = R(angle) (p - c) + c + shift`` (``R`` = ``[[cos, -sin], [sin, cos]]`` in
    ``(u, v)`` pixel coordinates, u right, v down: a positive angle turns the image clockwise on screen).
    About the principal point it is exactly the image of a camera rolled about its optical axis."""
    c, s = float(np.cos(angle_rad)), float(np.sin(angle_rad))
    R = np.array([[c, -s], [s, c]])
    center = np.asarray(center_px, dtype=np.float64)
    return np.hstack([R, (center - R @ center + np.asarray(shift_px, dtype=np.float64)).reshape(2, 1)])


def apply_affine_px(affine: np.ndarray, uv_px: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) through a 2x3 affine map."""
    uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)
    return uv @ affine[:, :2].T + affine[:, 2]


def invert_affine_px(affine: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine pixel map."""
    A_inv = np.linalg.inv(affine[:, :2])
    return np.hstack([A_inv, (-A_inv @ affine[:, 2]).reshape(2, 1)])


def rotated_canvas(image: np.ndarray, center_px: tuple[float, float],
                   angle_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned by ``angle_rad`` about ``center_px`` (:func:`rotation_affine_px`) onto a square canvas
    that holds all of it (side: the image diagonal), with zeros where no pixel maps; and the 2x3 map from
    ``image`` pixels to canvas pixels. The canvas offset is whole pixels after the rotation, so a quarter turn
    copies pixels exactly (no interpolation)."""
    import cv2

    h, w = image.shape[:2]
    side = int(np.ceil(np.hypot(w, h)))
    turned = rotation_affine_px(center_px, angle_rad)
    corners = apply_affine_px(turned, np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float))
    shift = np.round((side - 1) / 2.0 - corners.mean(axis=0))  # whole pixels: centre the turned image
    affine = rotation_affine_px(center_px, angle_rad, (float(shift[0]), float(shift[1])))
    canvas = cv2.warpAffine(image, affine, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    return canvas, affine


def zoom_window_px(points_px: np.ndarray, image_width_px: int, image_height_px: int, out_width_px: int,
                   out_height_px: int, zoom_max: float, margin: float,
                   min_zoom: float = 1.2) -> tuple[int, int, int, int] | None:
    """The window ``(x0, y0, width, height)`` (whole pixels of the image) to crop so that ``points_px`` (the
    object's projected points, image pixels), padded by ``margin`` of their extent on each side, fill it, with
    the aspect of ``out_width_px`` x ``out_height_px`` (the crop is resized to that); shifted to lie inside the
    image. Its zoom (image width / window width) is at most ``zoom_max``; None when the zoom would be below
    ``min_zoom`` (the object already fills the image: the whole image is as good) or no point is in the
    image."""
    uv = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    inside = ((uv[:, 0] >= 0) & (uv[:, 0] <= image_width_px - 1) & (uv[:, 1] >= 0)
              & (uv[:, 1] <= image_height_px - 1))
    if zoom_max <= 1.0 or not inside.any():
        return None
    lo, hi = uv[inside].min(axis=0), uv[inside].max(axis=0)
    extent = (hi - lo) * (1.0 + 2.0 * margin)
    aspect = out_width_px / out_height_px
    width = max(float(extent[0]), float(extent[1]) * aspect, image_width_px / zoom_max)
    if image_width_px / width < min_zoom:
        return None
    w = int(np.ceil(width))
    h = min(image_height_px, int(round(w / aspect)))
    centre = (lo + hi) / 2.0
    x0 = int(np.clip(round(centre[0] - w / 2.0), 0, image_width_px - w))
    y0 = int(np.clip(round(centre[1] - h / 2.0), 0, image_height_px - h))
    return x0, y0, w, h
