"""Synthetic images and image pairs with ground-truth correspondences for the feature/matching tests."""

from __future__ import annotations

import numpy as np


def textured_image(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """RGB uint8: multi-scale coloured noise plus random rectangles and discs (corners and blobs)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 128, np.float32)
    for cell_px, amplitude in ((3, 25.0), (12, 35.0), (40, 40.0)):
        noise = rng.normal(size=(height // cell_px + 2, width // cell_px + 2, 3)).astype(np.float32)
        img += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC) * amplitude
    for _ in range(60):
        colour = tuple(float(c) for c in rng.integers(0, 255, 3))
        p = tuple(int(c) for c in rng.integers(0, [width, height]))
        if rng.random() < 0.5:
            cv2.rectangle(img, p, tuple(int(c) for c in rng.integers(0, [width, height])), colour, -1)
        else:
            cv2.circle(img, p, int(rng.integers(3, 30)), colour, -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def apply_homography(H: np.ndarray, uv_px: np.ndarray) -> np.ndarray:
    uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)
    p = np.column_stack([uv, np.ones(len(uv))]) @ H.T
    return p[:, :2] / p[:, 2:3]


def homography_pair(seed: int = 0, angle_deg: float = 12.0, scale: float = 1.1, shift_px=(8.0, -6.0),
                    perspective: float = 2e-4):
    """(current, target, H_current_target): current = target warped by a known homography.

    With OpenCV's pixel-centre convention, ``cv2.warpPerspective(target, H)`` puts target pixel ``uv`` at
    ``H(uv)`` in the current image, which is the project's convention."""
    import cv2

    target = textured_image(seed=seed)
    h, w = target.shape[:2]
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    a = np.deg2rad(angle_deg)
    A = np.array([[scale * np.cos(a), -scale * np.sin(a), 0], [scale * np.sin(a), scale * np.cos(a), 0], [0, 0, 1]])
    T1 = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]])
    T2 = np.array([[1, 0, c[0] + shift_px[0]], [0, 1, c[1] + shift_px[1]], [0, 0, 1]])
    P = np.array([[1, 0, 0], [0, 1, 0], [perspective, 0, 1]])
    H = T2 @ P @ A @ T1
    H = H / H[2, 2]
    current = cv2.warpPerspective(target, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return current, target, H


def homography_precision(correspondences, H_current_target: np.ndarray, tol_px: float = 2.0) -> np.ndarray:
    """Boolean (M,): correspondences whose current pixel is within ``tol_px`` of the true one."""
    truth = apply_homography(H_current_target, correspondences.uv_target_px)
    return np.linalg.norm(correspondences.uv_current_px - truth, axis=1) < tol_px


_CACHE: dict = {}


def cached(kind: str, name: str, **settings):
    """Build each network once per test session (extractors and matchers are stateless after loading)."""
    key = (kind, name, tuple(sorted(settings.items())))
    if key not in _CACHE:
        if kind == "extractor":
            from dfbvs.features import get_extractor

            _CACHE[key] = get_extractor(name, **settings)
        else:
            from dfbvs.matching import get_matcher

            _CACHE[key] = get_matcher(name, **settings)
    return _CACHE[key]


def write_random_keypointnet_checkpoint(path, use_color: bool = True, seed: int = 0) -> None:
    """A checkpoint with the official KP2D structure ({'state_dict', 'config'}) and random weights."""
    import torch

    from dfbvs.features.keypointnet import build_keypointnet

    torch.manual_seed(seed)
    net = build_keypointnet(use_color=use_color)
    for m in net.modules():  # non-trivial BatchNorm statistics, as in a trained file
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    config = {"model": {"params": {"use_color": use_color, "do_upsample": True, "do_cross": True,
                                   "keypoint_net_type": "KeypointNet"}}}
    torch.save({"state_dict": net.state_dict(), "config": config}, str(path))
