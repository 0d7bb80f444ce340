"""Small image helpers written once: resizing (area for images, nearest for depth and masks) and grey
conversion. Pixel convention as everywhere: integer values at pixel centres (CONVENTIONS.md)."""

from __future__ import annotations

import numpy as np


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


def grey_float32(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601) of an RGB uint8 image as float32 on the 0-255 scale, without rounding."""
    return (rgb[:, :, 0] * np.float32(0.299) + rgb[:, :, 1] * np.float32(0.587)
            + rgb[:, :, 2] * np.float32(0.114)).astype(np.float32)
