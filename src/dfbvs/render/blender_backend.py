"""The ``blender`` render backend: photoreal frames path traced by Blender Cycles on the CPU.

Blender's Python module (``bpy``) pins its own NumPy, so it lives in its own virtual environment
(``make blender`` creates ``.venv-blender``) and runs :mod:`dfbvs.render.blender_worker` as a child process;
this module talks to it over pipes (meshes are sent once and cached there, then each frame sends poses,
materials, lights and the camera, and gets back arrays). What differs from the ``moderngl`` rasteriser is the
point: cast shadows and self-shadowing, interreflections, soft light sources (``DirectionalLight.angle_deg``),
microfacet highlights (``Material.roughness``), a path tracer's noise (denoised), and the display transform of
a camera (linear light to sRGB).

Mapping of the shared scene description (``backend.py``):
  - a :class:`DirectionalLight` is a sun lamp of strength ``intensity * sun_scale`` (W/m^2; with the default
    ``sun_scale`` = pi a white diffuse face square to the light shows ``intensity`` in linear light) and
    angular diameter ``angle_deg``; ``Lighting.ambient`` is a uniform grey sky of radiance
    ``ambient * ambient_scale``, which objects occlude (ambient occlusion comes for free);
  - a :class:`Material` is a Principled BSDF: base colour ``rgb`` (sRGB-coded, linearised), roughness
    ``roughness`` or, when None, the Blinn-Phong ``shininess`` turned into a microfacet roughness
    (``sqrt(sqrt(2 / (shininess + 2)))``), specular level ``2 * specular`` clipped to [0, 1] (0.5 is the
    default dielectric); 3D-print layer lines (``layer_pitch_m``) are not drawn;
  - depth and ids are read at pixel centres exactly by a second one-sample pass (the worker's docstring).

``antialias`` is always on (a path tracer integrates over the pixel); ``supersample`` is ignored, for the same
reason. Not thread-safe: one worker per backend instance, requests in sequence.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from ..camera import Camera
from ..errors import ConfigError, DfbvsError
from ..geometry import as_rigid_pose
from .backend import DrawItem, Lighting, Material, RenderOutput
from .mesh import Mesh

#: the bpy release ``make blender`` installs (Blender 5.0, Python 3.11)
BPY_REQUIREMENT = "bpy==5.0.1"
#: environment variable naming a Python interpreter that can ``import bpy``
PYTHON_ENV_VAR = "DFBVS_BLENDER_PYTHON"
_WORKER = Path(__file__).with_name("blender_worker.py")


class BlenderError(DfbvsError, RuntimeError):
    """The Blender worker failed, died, or cannot be started (the message says which and how to fix it)."""


@dataclass(frozen=True)
class BlenderConfig:
    """Cycles on the CPU.

    ``python``: an interpreter with ``bpy`` ("" = ``$DFBVS_BLENDER_PYTHON``, else ``.venv-blender`` beside the
    running virtual environment or the source checkout). ``samples`` paths per pixel, denoised with
    OpenImageDenoise when ``denoise`` (``denoising_quality`` HIGH, BALANCED or FAST);
    ``max_bounces`` of light (diffuse and glossy at most 2);
    ``filter_width_px``: the colour image's pixel filter, a box one pixel wide (a sensor pixel) at 1.0, a
    Gaussian of this width otherwise (Cycles' box filter has no width); ``threads`` (0 = all cores);
    ``exposure_stops`` brightens (+) or darkens (-) the image before the ``transfer`` curve: ``srgb`` (a
    camera's usual output) or ``linear`` (8-bit values proportional to light); ``sun_scale`` and
    ``ambient_scale`` convert :class:`Lighting` to radiometric units; ``seed`` of the sampler, mixed with a hash of
    the frame's content (camera, its pose, the items' poses and looks, the lights), so a frame's path-tracing noise
    does not depend on what the worker drew before it (a bench episode renders the same in any order).
    """

    python: str = ""
    samples: int = 4
    denoise: bool = True
    denoising_quality: str = "FAST"
    max_bounces: int = 4
    filter_width_px: float = 1.0
    threads: int = 0
    exposure_stops: float = 0.0
    transfer: str = "srgb"
    sun_scale: float = float(np.pi)
    ambient_scale: float = 1.0
    seed: int = 0
    near_m: float = 0.005
    far_m: float = 100.0
    max_cached_meshes: int = 64

    def __post_init__(self) -> None:
        checks = {"samples": 1 <= self.samples <= 4096, "max_bounces": 0 <= self.max_bounces <= 64,
                  "filter_width_px": 0.01 <= self.filter_width_px <= 4.0, "threads": 0 <= self.threads <= 1024,
                  "sun_scale": self.sun_scale >= 0, "ambient_scale": self.ambient_scale >= 0,
                  "exposure_stops": abs(self.exposure_stops) <= 10, "near_m": 0 < self.near_m < self.far_m,
                  "max_cached_meshes": self.max_cached_meshes >= 1}
        checks["denoising_quality"] = self.denoising_quality in ("HIGH", "BALANCED", "FAST")
        checks["transfer"] = self.transfer in ("srgb", "linear")
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"BlenderConfig.{name}={getattr(self, name)!r} is out of range")


def find_blender_python(configured: str = "") -> Path:
    """The interpreter that runs the worker, or a :class:`ConfigError` that says how to install one."""
    candidates: list[tuple[str, Path]] = []
    if configured:
        candidates.append(("BlenderConfig.python", Path(configured)))
    elif os.environ.get(PYTHON_ENV_VAR):
        candidates.append((f"${PYTHON_ENV_VAR}", Path(os.environ[PYTHON_ENV_VAR])))
    else:
        candidates.append(("beside the virtual environment", Path(sys.prefix).parent / ".venv-blender/bin/python"))
        candidates.append(("in the source checkout", Path(__file__).resolve().parents[3] / ".venv-blender/bin/python"))
    for _, path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = "; ".join(f"{where}: {path}" for where, path in candidates)
    raise ConfigError(
        f"the blender renderer needs Blender's Python module ({BPY_REQUIREMENT}, Python 3.11) in its own virtual "
        f"environment, and none was found ({looked}). Install it with `make blender` (creates .venv-blender), "
        f"or point {PYTHON_ENV_VAR} at a Python that can `import bpy`; the moderngl renderer needs none of this")


def _roughness(material: Material) -> float:
    if material.roughness is not None:
        return float(material.roughness)
    return float(np.sqrt(np.sqrt(2.0 / (material.shininess + 2.0))))


def _linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0.0, 1.0)
    srgb = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)
    return np.rint(srgb * 255.0).astype(np.uint8)


def build_blender(config: BlenderConfig = BlenderConfig()) -> BlenderRenderer:
    return BlenderRenderer(config)


class BlenderRenderer:
    """The ``blender`` backend (module docstring). The worker starts on the first frame and stops at exit."""

    name = "blender"

    def __init__(self, config: BlenderConfig = BlenderConfig()) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._meshes: OrderedDict[int, Mesh] = OrderedDict()  # uploaded meshes, kept alive so ids stay unique
        self._lock = threading.Lock()
        self.info: dict[str, Any] = {}
        self.last_timing_ms: dict[str, float] = {}

    # --- the worker process ------------------------------------------------------------------------------
    def _start(self) -> None:
        python = find_blender_python(self.config.python)
        from . import blender_worker as protocol

        self._protocol = protocol
        self._log = tempfile.NamedTemporaryFile(prefix="dfbvs-blender-", suffix=".log", delete=False)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the worker must not see this interpreter's packages (NumPy 2)
        self._proc = subprocess.Popen([str(python), str(_WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, env=env, close_fds=True)
        atexit.register(self.close)
        try:
            self.info = self._request({"op": "hello"})[0]
        except BlenderError as exc:
            self.close()
            raise BlenderError(f"the Blender worker ({python}) did not start: {exc}") from None

    def _log_tail(self, n_lines: int = 15) -> str:
        if self._log is None:
            return ""
        try:
            lines = Path(self._log.name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n_lines:])

    def _request(self, header: dict, blobs: dict | None = None) -> tuple[dict, dict]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise BlenderError("the Blender worker is not running")
        try:
            self._protocol.write_message(proc.stdin, header, blobs)
            reply, out = self._protocol.read_message(proc.stdout)
        except (BrokenPipeError, EOFError, OSError) as exc:
            code = proc.poll()
            self._proc = None
            self._meshes.clear()  # the next frame starts a new worker, which has none of them
            raise BlenderError(f"the Blender worker died ({type(exc).__name__}, exit code {code}); its log "
                               f"({self._log.name if self._log else '?'}) ends with:\n{self._log_tail()}") from None
        if not reply.get("ok"):
            raise BlenderError(f"the Blender worker refused {header.get('op')!r}: {reply.get('error')}")
        return reply, out

    def close(self) -> None:
        """Stop the worker (idempotent)."""
        proc, self._proc = self._proc, None
        self._meshes.clear()
        if proc is not None:
            try:
                if proc.poll() is None and proc.stdin is not None:
                    self._protocol.write_message(proc.stdin, {"op": "quit"})
                    proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                proc.kill()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    # --- meshes ------------------------------------------------------------------------------------------
    def _mesh_key(self, mesh: Mesh) -> str:
        key = id(mesh)
        if self._meshes.get(key) is mesh:
            self._meshes.move_to_end(key)
            return str(key)
        if key in self._meshes:  # a dead mesh's id reused by a new one
            self._forget([key])
        f = mesh.faces
        if mesh.vertex_normals is not None:
            normals = mesh.vertex_normals[f]
        else:
            from .moderngl_backend import crease_normals  # pure NumPy: the same sharp CAD edges as moderngl

            normals = crease_normals(mesh.vertices_m, f)
        blobs = {"positions": mesh.vertices_m[f].reshape(-1, 3).astype(np.float32),
                 "normals": normals.reshape(-1, 3).astype(np.float32)}
        if mesh.uv is not None and mesh.texture is not None:
            blobs["uv"] = mesh.uv[f].reshape(-1, 2).astype(np.float32)
            blobs["texture"] = np.ascontiguousarray(mesh.texture, dtype=np.uint8)
        if mesh.vertex_colors is not None:
            blobs["colors"] = (mesh.vertex_colors[f].reshape(-1, 3) / 255.0).astype(np.float32)
        self._request({"op": "mesh", "key": str(key)}, blobs)
        self._meshes[key] = mesh
        while len(self._meshes) > self.config.max_cached_meshes:
            self._forget([next(iter(self._meshes))])
        return str(key)

    def _forget(self, keys: list[int]) -> None:
        for key in keys:
            self._meshes.pop(key, None)
        self._request({"op": "forget", "keys": [str(k) for k in keys]})

    # --- one frame ---------------------------------------------------------------------------------------
    def render(self, items: Sequence[DrawItem], camera: Camera, T_world_camera: np.ndarray,
               lighting: Lighting = Lighting(), background_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0),
               antialias: bool = True, supersample: int = 1) -> RenderOutput:
        """Draw ``items`` (see :class:`~dfbvs.render.backend.Renderer`); ``antialias``/``supersample``: above."""
        if camera.has_distortion:
            raise ConfigError(f"the blender renderer draws pinhole images; camera has distortion {camera.dist!r}")
        if abs(camera.fx - camera.fy) > 1e-6 * camera.fx:
            raise ConfigError(f"the blender renderer needs square pixels, got fx={camera.fx!r}, fy={camera.fy!r}")
        T_world_camera = as_rigid_pose(T_world_camera, "T_world_camera")
        if not items:
            raise ValueError("nothing to render: no items")
        t0 = time.perf_counter()
        with self._lock:
            if self._proc is None:
                self._start()
            scene_items = []
            for item in items:
                rgb = item.material.rgb if item.material.rgb is not None else item.mesh.base_rgb
                look = {"rgb": [round(float(c), 6) for c in rgb], "roughness": round(_roughness(item.material), 6),
                        "specular_level": round(float(np.clip(2.0 * item.material.specular, 0.0, 1.0)), 6)}
                scene_items.append({"mesh": self._mesh_key(item.mesh), "T_world_item": item.T_world_item.tolist(),
                                    "object_id": int(item.object_id), "look": look})
            c = self.config
            lights = [{"direction_world": list(map(float, light.unit_direction)),
                       "strength": float(light.intensity * c.sun_scale), "rgb": list(map(float, light.rgb)),
                       "angle_deg": float(light.angle_deg)} for light in lighting.lights]
            content = json.dumps([T_world_camera.tolist(), camera.to_dict(), lights, lighting.ambient,
                                  [(i["T_world_item"], i["object_id"], i["look"]) for i in scene_items]])
            header = {
                "op": "render", "items": scene_items, "lights": lights,
                "ambient_rgb": [float(lighting.ambient * c.ambient_scale)] * 3,
                "camera": {"fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy,
                           "width_px": camera.width_px, "height_px": camera.height_px,
                           "near_m": c.near_m, "far_m": c.far_m},
                "T_world_camera": T_world_camera.tolist(),
                "options": {"samples": c.samples, "denoise": c.denoise, "denoising_quality": c.denoising_quality,
                            "max_bounces": c.max_bounces,
                            "filter_width_px": c.filter_width_px, "threads": c.threads,
                            "seed": (c.seed + zlib.crc32(content.encode())) % (1 << 31)},
            }
            reply, out = self._request(header)
        self.last_timing_ms = dict(reply.get("timing_ms", {}))
        rgba = np.asarray(out["rgba"], dtype=np.float32)
        id_depth = np.asarray(out["id_depth"], dtype=np.float32)
        H, W = camera.height_px, camera.width_px
        if rgba.shape != (H, W, 4) or id_depth.shape != (H, W, 3):
            raise BlenderError(f"the Blender worker returned {rgba.shape} / {id_depth.shape} for a {W}x{H} camera")
        alpha = np.clip(rgba[:, :, 3:4], 0.0, 1.0)
        bg_linear = self._protocol.srgb_to_linear(np.asarray(background_rgb, dtype=np.float32))
        linear = rgba[:, :, :3] + (1.0 - alpha) * bg_linear  # Cycles' transparent film is premultiplied
        if c.exposure_stops:
            linear = linear * np.float32(2.0 ** c.exposure_stops)
        hit = id_depth[:, :, 2] > 0.5
        ids = np.where(hit, np.rint(id_depth[:, :, 0]), 0).astype(np.int32)
        depth = np.where(hit & (ids > 0), id_depth[:, :, 1], np.float32(np.nan)).astype(np.float32)
        rgb8 = (_linear_to_srgb8(linear) if c.transfer == "srgb"
                else np.rint(np.clip(linear, 0.0, 1.0) * 255.0).astype(np.uint8))
        return RenderOutput(rgb=rgb8, depth_m=depth, ids=ids, camera=camera,
                            time_ms=(time.perf_counter() - t0) * 1e3)

    def __repr__(self) -> str:
        return f"BlenderRenderer({json.dumps(self.info)})"
