"""The target: the CAD model alone at the goal camera pose, on a clean uniform background.

It gives the target image and the exact depth ``Z*`` of every target pixel. On disk a target is a folder
with ``rgb.png``, ``depth.npy`` (float32 metres, NaN off the object), ``mask.png`` (0/255) and
``meta.json`` (intrinsics, image size, ``T_object_camera`` as a 4x4 list, renderer, time per frame).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..camera import Camera
from .backend import DrawItem, Lighting, Material, get_renderer
from .mesh import Mesh

#: uniform background of target renders (0..1 RGB): a neutral dark grey that a light-grey print stands out on
TARGET_BACKGROUND_RGB: tuple[float, float, float] = (0.30, 0.30, 0.32)
TARGET_SUPERSAMPLE = 3  # the target is rendered once: supersample it well (edges exact to ~0.02 px)


@dataclass(frozen=True, eq=False)
class TargetRender:
    """A rendered target seen by ``camera`` (H = camera.height_px, W = camera.width_px).

    - ``rgb`` (H, W, 3) uint8; ``depth_m`` (H, W) float32 depth Z along the optical axis (m), NaN off the
      object; ``mask`` (H, W) bool, True on the object.
    - ``T_object_camera`` (4, 4): the goal camera pose in the object frame (OpenCV camera axes).
    - ``renderer``: backend name; ``time_ms``: render time of the frame.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    mask: np.ndarray
    camera: Camera
    T_object_camera: np.ndarray
    renderer: str = "moderngl"
    time_ms: float = float("nan")

    def meta(self) -> dict:
        return {"camera": self.camera.to_dict(), "width_px": self.camera.width_px,
                "height_px": self.camera.height_px, "T_object_camera": np.asarray(self.T_object_camera).tolist(),
                "renderer": self.renderer, "time_per_frame_ms": float(self.time_ms),
                "depth_unit": "m, Z along the optical axis, NaN off the object"}

    def save(self, directory: Path | str) -> Path:
        """Write rgb.png, depth.npy, mask.png and meta.json into ``directory`` (created); returns it."""
        from PIL import Image

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.rgb).save(out / "rgb.png")
        np.save(out / "depth.npy", self.depth_m.astype(np.float32))
        Image.fromarray(self.mask.astype(np.uint8) * 255).save(out / "mask.png")
        (out / "meta.json").write_text(json.dumps(self.meta(), indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: Path | str) -> TargetRender:
        """Read a folder written by :meth:`save`; errors name the missing or inconsistent file."""
        from PIL import Image

        d = Path(directory)
        for name in ("rgb.png", "depth.npy", "mask.png", "meta.json"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"target folder {d} has no {name}")
        meta = json.loads((d / "meta.json").read_text())
        camera = Camera.from_dict(meta["camera"])
        rgb = np.asarray(Image.open(d / "rgb.png").convert("RGB"))
        depth = np.load(d / "depth.npy").astype(np.float32)
        mask = np.asarray(Image.open(d / "mask.png").convert("L")) > 127
        shape = (camera.height_px, camera.width_px)
        for name, arr in (("rgb.png", rgb), ("depth.npy", depth), ("mask.png", mask)):
            if arr.shape[:2] != shape:
                raise ValueError(f"{d / name}: size {arr.shape[1]}x{arr.shape[0]} does not match the camera's "
                                 f"{shape[1]}x{shape[0]} in meta.json")
        T = np.asarray(meta["T_object_camera"], dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"{d / 'meta.json'}: T_object_camera must be 4x4, got shape {T.shape}")
        return cls(rgb, depth, mask, camera, T, meta.get("renderer", "unknown"),
                   float(meta.get("time_per_frame_ms", float("nan"))))


def target_items(mesh: Mesh, material: Material = Material()) -> list[DrawItem]:
    """The draw list of a target render: the mesh at the object-frame origin with id 1."""
    return [DrawItem(mesh, np.eye(4), 1, material)]


def render_target(mesh: Mesh, camera: Camera, T_object_camera: np.ndarray, *, lighting: Lighting = Lighting(),
                  material: Material = Material(),
                  background_rgb: tuple[float, float, float] = TARGET_BACKGROUND_RGB,
                  renderer: str = "moderngl", antialias: bool = True,
                  supersample: int = TARGET_SUPERSAMPLE) -> TargetRender:
    """Render ``mesh`` (object frame) alone, seen from ``T_object_camera``, on a uniform background.

    The target is rendered once, so it is supersampled by default (``supersample``, see
    :class:`~dfbvs.render.backend.Renderer`): its edges are where they truly are to a few hundredths of a pixel.
    Lights are fixed in the object frame (the default :class:`Lighting`: a key light from above and a side
    fill), so a scene rendered with the same lighting shows the object exactly as the target does.
    """
    T = np.asarray(T_object_camera, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"T_object_camera must be a finite 4x4 matrix, got {T_object_camera!r}")
    backend = get_renderer(renderer)
    out = backend.render(target_items(mesh, material), camera, T, lighting, background_rgb, antialias, supersample)
    return TargetRender(out.rgb, out.depth_m, out.mask, camera, T, renderer, out.time_ms)
