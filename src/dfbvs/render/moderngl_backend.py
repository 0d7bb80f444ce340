"""Default render backend: OpenGL 3.3 through ``moderngl`` on a headless EGL context (Mesa llvmpipe on a
machine with no GPU and no display). Licence: moderngl is MIT; no weights.

Pixel convention: OpenCV (integer pixel centres), via :func:`dfbvs.render.gl.clip_from_camera_cv`.
Depth is not read from the depth buffer: the vertex shader passes the OpenCV camera-frame ``z`` of each
vertex, the rasteriser interpolates it perspective-correctly (exact for an affine function on a triangle) at
each pixel centre, and the fragment shader writes it to a float32 colour attachment, together with the
item's id. With ``antialias`` the RGB image is drawn in a second pass with 4x multisampling and resolved,
so edges are smooth while depth and ids stay single-sample. llvmpipe offers at most 4 samples, which
quantizes an edge's pixel coverage to quarters and shifts edges by up to ~0.1 px depending on the sub-pixel
pose; ``supersample=k`` draws that pass at k times the resolution and box-filters it down (4 k^2 samples).

Speed on llvmpipe: fragments dominate, so callers should list items front to back, with large
background items (a table) last, letting the depth test reject hidden fragments before shading.
Textures use trilinear mip-mapping (anisotropic filtering costs ~40 % of a frame on llvmpipe).

One context, one set of framebuffers per image size and one vertex buffer per mesh are kept for the life of
the renderer (meshes are uploaded once and cached by identity, least recently used evicted).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np

from ..camera import Camera
from ..errors import ConfigError
from ..geometry import as_rigid_pose, inverse
from .backend import MAX_LIGHTS, DrawItem, Lighting, RenderOutput
from .gl import clip_from_camera_cv
from .mesh import Mesh

if TYPE_CHECKING:
    import moderngl


_VERTEX_SHADER = """
#version 330
uniform mat4 clip_from_item;
uniform mat4 camera_from_item;
uniform mat4 world_from_item;
uniform mat3 normal_world_from_item;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
in vec2 in_uv;
out vec3 v_world;
out vec3 v_normal;
out vec3 v_color;
out vec2 v_uv;
out float v_z;
out float v_item_z;
void main() {
    vec4 p = vec4(in_pos, 1.0);
    gl_Position = clip_from_item * p;
    v_z = (camera_from_item * p).z;
    v_world = (world_from_item * p).xyz;
    v_normal = normal_world_from_item * in_normal;
    v_color = in_color;
    v_uv = in_uv;
    v_item_z = in_pos.z;
}
"""

_FRAGMENT_SHADER = f"""
#version 330
uniform vec3 base_rgb;
uniform bool use_texture;
uniform sampler2D tex;
uniform float specular;
uniform float shininess;
uniform float layer_pitch;
uniform float layer_contrast;
uniform float ambient;
uniform int n_lights;
uniform vec3 light_dir[{MAX_LIGHTS}];
uniform vec3 light_rgb[{MAX_LIGHTS}];
uniform vec3 eye_world;
uniform float object_id;
uniform bool geometry_only;
in vec3 v_world;
in vec3 v_normal;
in vec3 v_color;
in vec2 v_uv;
in float v_z;
in float v_item_z;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec2 out_z_id;
void main() {{
    out_z_id = vec2(v_z, object_id);
    if (geometry_only) {{
        out_color = vec4(0.0);
        return;
    }}
    vec3 albedo = base_rgb * v_color;
    if (use_texture) albedo *= texture(tex, v_uv).rgb;
    if (layer_pitch > 0.0) albedo *= 1.0 - layer_contrast * (0.5 + 0.5 * cos(6.28318531 * v_item_z / layer_pitch));
    vec3 n = normalize(v_normal);
    vec3 view = normalize(eye_world - v_world);
    if (dot(n, view) < 0.0) n = -n;  // two-sided lighting
    vec3 c = ambient * albedo;
    for (int i = 0; i < n_lights; ++i) {{
        vec3 l = -light_dir[i];
        float ndl = max(dot(n, l), 0.0);
        vec3 h = normalize(l + view);
        float spec = ndl > 0.0 ? pow(max(dot(n, h), 0.0), shininess) : 0.0;
        c += light_rgb[i] * (albedo * ndl + specular * spec);
    }}
    out_color = vec4(c, 1.0);
}}
"""


def crease_normals(vertices_m: np.ndarray, faces: np.ndarray, crease_deg: float = 35.0) -> np.ndarray:
    """(F, 3, 3) normals of each face corner: the area-weighted mean of the normals of the faces sharing
    the corner's vertex whose normal is within ``crease_deg`` of the corner's face. Flat faces and sharp
    CAD edges stay sharp; finely tessellated curved surfaces look smooth."""
    v, f = vertices_m, faces
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 * area
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    unit = np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)
    corner_vertex = f.ravel()
    corner_face = np.repeat(np.arange(len(f)), 3)
    order = np.argsort(corner_vertex, kind="stable")
    sorted_vertex = corner_vertex[order]
    group_start = np.searchsorted(sorted_vertex, sorted_vertex, side="left")
    group_size = np.searchsorted(sorted_vertex, sorted_vertex, side="right") - group_start
    # every (corner, other corner of the same vertex) pair, corners in sorted order
    rep = np.repeat(np.arange(len(order)), group_size)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(group_size) - group_size, group_size)
    partner = group_start[rep] + offset
    f_self, f_other = corner_face[order[rep]], corner_face[order[partner]]
    keep = np.einsum("ij,ij->i", unit[f_self], unit[f_other]) >= np.cos(np.deg2rad(crease_deg))
    acc = np.zeros((len(order), 3))
    np.add.at(acc, rep[keep], n[f_other[keep]])
    out = np.empty((len(order), 3))
    out[order] = acc
    length = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.where(length > 0, out / np.maximum(length, 1e-300), unit[corner_face])
    return out.reshape(-1, 3, 3)


def _vertex_data(mesh: Mesh) -> np.ndarray:
    """(3F, 11) float32 rows of position, normal, colour (0..1), uv for each face corner."""
    f = mesh.faces
    pos = mesh.vertices_m[f].reshape(-1, 3)
    if mesh.vertex_normals is not None:
        nrm = mesh.vertex_normals[f].reshape(-1, 3)
    else:
        nrm = crease_normals(mesh.vertices_m, f).reshape(-1, 3)
    col = (mesh.vertex_colors[f].reshape(-1, 3) / 255.0 if mesh.vertex_colors is not None
           else np.ones((len(pos), 3)))
    uv = mesh.uv[f].reshape(-1, 2) if mesh.uv is not None else np.zeros((len(pos), 2))
    return np.ascontiguousarray(np.hstack([pos, nrm, col, uv]), dtype=np.float32)


def _mat4_bytes(M: np.ndarray) -> bytes:
    return np.ascontiguousarray(np.asarray(M, dtype=np.float64).T, dtype=np.float32).tobytes()  # column-major


def preload_llvm_users() -> None:
    """Import ``triton`` (installed with CUDA builds of torch) before Mesa's llvmpipe is loaded.

    Loading triton's bundled LLVM *after* an EGL/llvmpipe context exists crashes the process (segfault
    measured here when torchvision imported torch._dynamo after the first render); loaded before, both
    coexist. No-op where triton is not installed.
    """
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


@dataclass(frozen=True)
class ModernGLConfig:
    """The OpenGL rasteriser (headless EGL on Mesa llvmpipe): clip planes (m), MSAA samples, and how many
    meshes stay uploaded."""

    near_m: float = 0.01
    far_m: float = 50.0
    msaa_samples: int = 4
    max_cached_meshes: int = 64


#: the largest image side (px) this backend renders, whatever the GL implementation allows: an 8192x8192 frame
#: with its depth, id and multisampled buffers already takes ~3 GB on llvmpipe
MAX_RENDER_SIDE_PX = 8192


def build_moderngl(config: ModernGLConfig = ModernGLConfig()) -> ModernGLRenderer:
    return ModernGLRenderer(config.near_m, config.far_m, config.msaa_samples, config.max_cached_meshes)


class ModernGLRenderer:
    """The ``moderngl`` backend (see the module docstring). Not thread-safe; one per process is enough."""

    name = "moderngl"

    def __init__(self, near_m: float = 0.01, far_m: float = 50.0, msaa_samples: int = 4,
                 max_cached_meshes: int = 64):
        import moderngl

        self._mgl = moderngl
        preload_llvm_users()
        try:
            # moderngl's stubs type each **settings value as a dict; the backend name is a str
            settings: dict[str, Any] = {"backend": "egl"}
            self.ctx = moderngl.create_context(standalone=True, **settings)
        except Exception as exc:
            raise RuntimeError(
                f"cannot create a headless OpenGL context over EGL ({exc}); on Debian/Ubuntu install "
                "libegl1 libegl-mesa0 libgl1-mesa-dri") from None
        if not 0 < near_m < far_m:
            raise ConfigError(f"need 0 < near_m < far_m, got {near_m!r}, {far_m!r}")
        self.near_m, self.far_m = near_m, far_m
        self.msaa_samples = min(int(msaa_samples), int(self.ctx.max_samples))
        self.max_cached_meshes = max_cached_meshes
        self.prog = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self._meshes: OrderedDict[int, tuple] = OrderedDict()
        self._targets: dict[tuple[int, int], dict] = {}
        self._white = self.ctx.texture((1, 1), 3, bytes([255, 255, 255]))
        limits = [MAX_RENDER_SIDE_PX]
        for key in ("GL_MAX_RENDERBUFFER_SIZE", "GL_MAX_TEXTURE_SIZE"):
            value = self.ctx.info.get(key)
            if isinstance(value, int) and value > 0:
                limits.append(value)
        #: the largest image side (px) rendered, supersampling included: min(MAX_RENDER_SIDE_PX, GL limits)
        self.max_side_px = int(min(limits))

    def check_size(self, width_px: int, height_px: int, supersample: int = 1) -> None:
        """Raise :class:`~dfbvs.errors.ConfigError` up front when an image of this size (times ``supersample``)
        exceeds :attr:`max_side_px`, rather than a raw framebuffer error from the driver."""
        side = max(width_px, height_px) * supersample
        if side > self.max_side_px:
            extra = f" (x{supersample} supersampling)" if supersample > 1 else ""
            raise ConfigError(f"render size {width_px}x{height_px}{extra}: {side} px exceeds the largest image side "
                              f"this renderer draws, {self.max_side_px} px (min of MAX_RENDER_SIDE_PX="
                              f"{MAX_RENDER_SIDE_PX} and the OpenGL renderbuffer/texture limits); render smaller"
                              + (" or with less supersampling" if supersample > 1 else ""))

    # --- resources ---------------------------------------------------------------------------------
    def _gpu_mesh(self, mesh: Mesh):
        key = id(mesh)
        entry = self._meshes.get(key)
        if entry is not None and entry[0] is mesh:
            self._meshes.move_to_end(key)
            return entry
        vbo = self.ctx.buffer(_vertex_data(mesh).tobytes())
        vao = self.ctx.vertex_array(self.prog, [(vbo, "3f 3f 3f 2f", "in_pos", "in_normal", "in_color", "in_uv")])
        tex = None
        if mesh.texture is not None:
            image = np.ascontiguousarray(mesh.texture[::-1])  # OpenGL textures start at the bottom row
            tex = self.ctx.texture((image.shape[1], image.shape[0]), 3, image.tobytes(), alignment=1)
            tex.build_mipmaps()
            tex.filter = (self._mgl.LINEAR_MIPMAP_LINEAR, self._mgl.LINEAR)
            tex.repeat_x = tex.repeat_y = True
        entry = (mesh, vao, vbo, tex)
        self._meshes[key] = entry
        while len(self._meshes) > self.max_cached_meshes:
            _, (_, old_vao, old_vbo, old_tex) = self._meshes.popitem(last=False)
            old_vao.release()
            old_vbo.release()
            if old_tex is not None:
                old_tex.release()
        return entry

    def _framebuffers(self, width: int, height: int) -> dict:
        key = (width, height)
        if key not in self._targets:
            ctx, size = self.ctx, (width, height)
            rgb = ctx.renderbuffer(size, 4)
            z_id = ctx.renderbuffer(size, 2, dtype="f4")
            depth = ctx.depth_renderbuffer(size)
            fb = {
                "rgb_only": ctx.framebuffer([rgb], depth),
                "z_id_only": ctx.framebuffer([z_id]),
                "single": ctx.framebuffer([rgb, z_id], depth),
            }
            if self.msaa_samples > 1:
                fb["msaa"] = ctx.framebuffer([ctx.renderbuffer(size, 4, samples=self.msaa_samples)],
                                             ctx.depth_renderbuffer(size, samples=self.msaa_samples))
                fb["resolved"] = ctx.framebuffer([ctx.renderbuffer(size, 4)])
            self._targets[key] = fb
        return self._targets[key]

    # --- drawing -----------------------------------------------------------------------------------
    def _set(self, name: str, value) -> None:
        if name in self.prog:  # a uniform of the shaders
            cast("moderngl.Uniform", self.prog[name]).value = value

    def _write(self, name: str, data: bytes) -> None:
        if name in self.prog:  # a uniform of the shaders
            cast("moderngl.Uniform", self.prog[name]).write(data)

    def _draw(self, items: Sequence[DrawItem], clip_from_cv: np.ndarray, T_camera_world: np.ndarray) -> None:
        for item in items:
            mesh, vao, _, tex = self._gpu_mesh(item.mesh)
            T_camera_item = T_camera_world @ item.T_world_item
            self._write("clip_from_item", _mat4_bytes(clip_from_cv @ T_camera_item))
            self._write("camera_from_item", _mat4_bytes(T_camera_item))
            self._write("world_from_item", _mat4_bytes(item.T_world_item))
            R = item.T_world_item[:3, :3]
            normal_matrix = np.linalg.inv(R).T
            self._write("normal_world_from_item",
                        np.ascontiguousarray(normal_matrix.T, dtype=np.float32).tobytes())
            m = item.material
            self._set("base_rgb", tuple(m.rgb) if m.rgb is not None else mesh.base_rgb)
            self._set("specular", float(m.specular))
            self._set("shininess", float(m.shininess))
            self._set("layer_pitch", float(m.layer_pitch_m))
            self._set("layer_contrast", float(m.layer_contrast))
            self._set("object_id", float(item.object_id))
            self._set("use_texture", tex is not None)
            (tex if tex is not None else self._white).use(0)
            vao.render(self._mgl.TRIANGLES)

    def render(self, items: Sequence[DrawItem], camera: Camera, T_world_camera: np.ndarray,
               lighting: Lighting = Lighting(), background_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0),
               antialias: bool = True, supersample: int = 1) -> RenderOutput:
        """Draw ``items`` (see :class:`~dfbvs.render.backend.Renderer`)."""
        if int(supersample) != supersample or supersample < 1:
            raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
        supersample = int(supersample)
        self.check_size(camera.width_px, camera.height_px, supersample)
        t0 = time.perf_counter()
        T_world_camera = as_rigid_pose(T_world_camera, "T_world_camera")
        clip_from_cv = clip_from_camera_cv(camera, self.near_m, self.far_m)
        T_camera_world = inverse(T_world_camera)
        W, H = camera.width_px, camera.height_px
        fb = self._framebuffers(W, H)
        ctx = self.ctx
        ctx.enable(self._mgl.DEPTH_TEST)
        ctx.disable(self._mgl.CULL_FACE)

        self._set("tex", 0)
        self._set("ambient", float(lighting.ambient))
        self._set("n_lights", len(lighting.lights))
        dirs = np.zeros((MAX_LIGHTS, 3), dtype=np.float32)
        cols = np.zeros((MAX_LIGHTS, 3), dtype=np.float32)
        for i, light in enumerate(lighting.lights):
            dirs[i] = light.unit_direction
            cols[i] = np.asarray(light.rgb, dtype=np.float64) * light.intensity
        self._write("light_dir", dirs.tobytes())
        self._write("light_rgb", cols.tobytes())
        self._set("eye_world", tuple(float(x) for x in T_world_camera[:3, 3]))
        bg = tuple(float(c) for c in background_rgb)

        use_msaa = antialias and "msaa" in fb
        fb["z_id_only"].clear(0.0, 0.0, 0.0, 0.0)
        rgb = None
        if use_msaa or supersample > 1:
            fb["rgb_only"].clear(depth=1.0)
            fb["single"].use()
            self._set("geometry_only", True)  # 1x pass for depth and ids only: skip the lighting
            self._draw(items, clip_from_cv, T_camera_world)
            self._set("geometry_only", False)
            rgb = self._draw_rgb(items, camera, T_camera_world, bg, supersample, use_msaa)
        else:
            fb["rgb_only"].clear(*bg, 1.0, depth=1.0)
            fb["single"].use()
            self._set("geometry_only", False)
            self._draw(items, clip_from_cv, T_camera_world)
            rgb_fb = fb["single"]
        if rgb is None:
            rgb = np.frombuffer(rgb_fb.read(components=3, attachment=0), dtype=np.uint8).reshape(H, W, 3)[::-1]
        z_id = np.frombuffer(fb["single"].read(components=2, attachment=1, dtype="f4"),
                             dtype=np.float32).reshape(H, W, 2)[::-1]
        ids = np.rint(z_id[:, :, 1]).astype(np.int32)
        depth = np.where(ids > 0, z_id[:, :, 0], np.float32(np.nan)).astype(np.float32)
        return RenderOutput(rgb=np.ascontiguousarray(rgb), depth_m=depth, ids=ids, camera=camera,
                            time_ms=(time.perf_counter() - t0) * 1e3)

    def _draw_rgb(self, items: Sequence[DrawItem], camera: Camera, T_camera_world: np.ndarray,
                  bg: tuple[float, ...], supersample: int, msaa: bool) -> np.ndarray:
        """The lit RGB pass (H, W, 3) uint8, multisampled and/or drawn at ``supersample`` times the size and
        box-filtered down."""
        cam = camera.rescaled(camera.width_px * supersample, camera.height_px * supersample)
        W, H = cam.width_px, cam.height_px
        fb = self._framebuffers(W, H)
        use_msaa = msaa and "msaa" in fb
        draw_fb = fb["msaa"] if use_msaa else fb["rgb_only"]
        draw_fb.clear(*bg, 1.0, depth=1.0)
        draw_fb.use()
        self._draw(items, clip_from_camera_cv(cam, self.near_m, self.far_m), T_camera_world)
        if use_msaa:
            self.ctx.copy_framebuffer(fb["resolved"], fb["msaa"])
            draw_fb = fb["resolved"]
        rgb = np.frombuffer(draw_fb.read(components=3, attachment=0), dtype=np.uint8).reshape(H, W, 3)[::-1]
        if supersample == 1:
            return rgb
        k = supersample  # exact k x k box filter: hi-res pixels k*u .. k*u+k-1 make up low-res pixel u
        blocks = rgb.reshape(camera.height_px, k, camera.width_px, k, 3).astype(np.float32)
        return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)

    def release(self) -> None:
        """Free GPU resources (the renderer is unusable afterwards)."""
        for _, vao, vbo, tex in self._meshes.values():
            vao.release()
            vbo.release()
            if tex is not None:
                tex.release()
        self._meshes.clear()
        self.ctx.release()
