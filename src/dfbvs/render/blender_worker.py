"""The Blender side of the ``blender`` render backend: a standalone script run by Blender's own Python (the
``bpy`` package in its own virtual environment, which pins its own NumPy), talking to
:mod:`dfbvs.render.blender_backend` over its stdin/stdout pipes.

It imports nothing from dfbvs (the two interpreters share no packages): only the standard library, NumPy and
``bpy``. Blender prints progress on stdout, so the script keeps a private copy of the original stdout for
the protocol and points file descriptor 1 at stderr before importing ``bpy``.

Protocol (both directions): a message is ``u32`` header length, a UTF-8 JSON header, then for every entry of
``header["blobs"]`` (``{"name", "dtype", "shape"}``) a ``u64`` byte count and the array's C-ordered bytes.
Requests: ``hello``; ``mesh`` (``key``, blobs ``positions`` (3F, 3) float32 corner positions in the mesh
frame (m), ``normals`` (3F, 3) float32, optional ``uv`` (3F, 2) float32 and ``texture`` (H, W, 3) uint8);
``forget`` (``keys``); ``render`` (see :func:`_render`); ``quit``. Every reply has ``ok`` and, on failure,
``error``.

Frames: the camera follows OpenCV (x right, y down, z forward; pixel centres at integers); Blender's camera
looks down its -z with y up, so ``T_world_blendercam = T_world_camera @ diag(1, -1, -1, 1)``. The colour
image is rendered by Cycles (path traced, shadows, interreflections) with a 1-pixel box filter, as a sensor
pixel integrates light; a second, one-sample pass with an emission override and a Gaussian pixel filter
0.01 px wide reads the object id and the depth Z (m, along the optical axis) at each pixel centre exactly.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
import time
import traceback
from typing import Any

import numpy as np

_BLENDER_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])
_SENSOR_WIDTH_MM = 36.0


# --- protocol ----------------------------------------------------------------------------------------------
def _read_exact(stream, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream) -> tuple[dict, dict]:
    (n,) = struct.unpack("<I", _read_exact(stream, 4))
    header = json.loads(_read_exact(stream, n).decode("utf-8"))
    blobs = {}
    for spec in header.get("blobs", []):
        (nbytes,) = struct.unpack("<Q", _read_exact(stream, 8))
        data = _read_exact(stream, nbytes)
        blobs[spec["name"]] = np.frombuffer(data, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"])
    return header, blobs


def write_message(stream, header: dict, blobs: dict | None = None) -> None:
    blobs = {k: np.ascontiguousarray(v) for k, v in (blobs or {}).items()}
    header = dict(header, blobs=[{"name": k, "dtype": v.dtype.str, "shape": list(v.shape)} for k, v in blobs.items()])
    raw = json.dumps(header).encode("utf-8")
    parts = [struct.pack("<I", len(raw)), raw]
    for v in blobs.values():
        parts += [struct.pack("<Q", v.nbytes), v.tobytes()]
    stream.write(b"".join(parts))
    stream.flush()


# --- the Blender scene -------------------------------------------------------------------------------------
class BlenderScene:
    """One Blender scene kept between frames: meshes by key, a pool of objects, one material per look."""

    def __init__(self, bpy) -> None:
        self.bpy = bpy
        import addon_utils

        addon_utils.enable("cycles", default_set=True)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        addon_utils.enable("cycles", default_set=True)
        self.scene = bpy.context.scene
        self.scene.render.engine = "CYCLES"
        self.meshes: dict[str, Any] = {}
        self.textures: dict[str, Any] = {}
        self.materials: dict[str, Any] = {}
        self.objects: list = []
        self.lights: list = []
        self.tmpdir = tempfile.mkdtemp(prefix="dfbvs-blender-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        cam_data = bpy.data.cameras.new("camera")
        self.camera = bpy.data.objects.new("camera", cam_data)
        self.scene.collection.objects.link(self.camera)
        self.scene.camera = self.camera
        world = bpy.data.worlds.new("world")
        world.use_nodes = True
        self.scene.world = world
        self.background = world.node_tree.nodes["Background"]
        s = self.scene
        s.view_settings.view_transform = "Standard"
        s.view_settings.look = "None"
        s.view_settings.exposure = 0.0
        s.view_settings.gamma = 1.0
        s.render.film_transparent = True
        s.render.use_persistent_data = True
        s.render.image_settings.file_format = "OPEN_EXR"
        s.render.image_settings.color_depth = "32"
        s.render.image_settings.color_mode = "RGBA"
        codecs = s.render.image_settings.bl_rna.properties["exr_codec"].enum_items.keys()
        s.render.image_settings.exr_codec = "NONE" if "NONE" in codecs else "ZIP"
        s.cycles.device = "CPU"
        s.cycles.use_adaptive_sampling = False
        s.cycles.caustics_reflective = False
        s.cycles.caustics_refractive = False
        self.id_depth_material = self._id_depth_material()

    # meshes and materials
    def add_mesh(self, key: str, blobs: dict) -> None:
        bpy = self.bpy
        pos = np.asarray(blobs["positions"], dtype=np.float32)
        n_corners = len(pos)
        mesh = bpy.data.meshes.new(f"mesh-{key}")
        mesh.vertices.add(n_corners)
        mesh.vertices.foreach_set("co", pos.ravel())
        n_faces = n_corners // 3
        mesh.loops.add(n_corners)
        mesh.loops.foreach_set("vertex_index", np.arange(n_corners, dtype=np.int32))
        mesh.polygons.add(n_faces)
        mesh.polygons.foreach_set("loop_start", np.arange(0, n_corners, 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(n_faces, 3, dtype=np.int32))
        mesh.update(calc_edges=True)
        mesh.validate(clean_customdata=False)
        mesh.materials.append(None)  # one slot; each object links its own material to it
        mesh.shade_smooth()
        normals = np.asarray(blobs["normals"], dtype=np.float64)
        mesh.normals_split_custom_set([tuple(n) for n in normals])
        if "uv" in blobs:
            layer = mesh.uv_layers.new(name="uv")
            layer.data.foreach_set("uv", np.asarray(blobs["uv"], dtype=np.float32).ravel())
        if "colors" in blobs:
            attr = mesh.color_attributes.new("col", "FLOAT_COLOR", "CORNER")
            rgba = np.concatenate([np.asarray(blobs["colors"], np.float32), np.ones((n_corners, 1), np.float32)], 1)
            attr.data.foreach_set("color", srgb_to_linear(rgba).ravel())
        if "texture" in blobs:
            tex = np.asarray(blobs["texture"], dtype=np.uint8)
            h, w = tex.shape[:2]
            image = bpy.data.images.new(f"tex-{key}", w, h, alpha=False)
            rgba = np.concatenate([tex[::-1].astype(np.float32) / 255.0, np.ones((h, w, 1), np.float32)], axis=2)
            image.pixels.foreach_set(rgba.ravel())  # byte image in sRGB: Blender linearises it when sampling
            image.pack()
            self.textures[key] = image
        self.meshes[key] = mesh

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            mesh = self.meshes.pop(key, None)
            for obj in self.objects:
                if obj.data is mesh:
                    obj.data = self.meshes[next(iter(self.meshes))] if self.meshes else None
                    obj.hide_render = True
            if mesh is not None:
                self.bpy.data.meshes.remove(mesh)
            image = self.textures.pop(key, None)
            if image is not None:
                self.bpy.data.images.remove(image)
            for mkey in [k for k in self.materials if k.startswith(key + "|")]:
                self.bpy.data.materials.remove(self.materials.pop(mkey))

    def _material(self, mesh_key: str, look: dict):
        key = mesh_key + "|" + json.dumps(look, sort_keys=True)
        if key in self.materials:
            return self.materials[key]
        bpy = self.bpy
        mat = bpy.data.materials.new(f"mat-{len(self.materials)}")
        mat.use_nodes = True
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        bsdf = nodes["Principled BSDF"]
        base = srgb_to_linear(np.asarray(look["rgb"] + [1.0], dtype=np.float32))
        bsdf.inputs["Base Color"].default_value = tuple(float(c) for c in base)
        bsdf.inputs["Roughness"].default_value = float(look["roughness"])
        bsdf.inputs["Specular IOR Level"].default_value = float(look["specular_level"])
        colour_socket = None
        if mesh_key in self.textures:
            tex_node = nodes.new("ShaderNodeTexImage")
            tex_node.image = self.textures[mesh_key]
            tex_node.interpolation = "Cubic"
            uv_node = nodes.new("ShaderNodeUVMap")
            uv_node.uv_map = "uv"
            links.new(uv_node.outputs["UV"], tex_node.inputs["Vector"])
            colour_socket = tex_node.outputs["Color"]
        elif "col" in self.meshes[mesh_key].color_attributes:
            attr_node = nodes.new("ShaderNodeAttribute")
            attr_node.attribute_name = "col"
            colour_socket = attr_node.outputs["Color"]
        if colour_socket is not None:
            mix = nodes.new("ShaderNodeMix")
            mix.data_type = "RGBA"
            mix.blend_type = "MULTIPLY"
            mix.inputs["Factor"].default_value = 1.0
            mix.inputs[6].default_value = bsdf.inputs["Base Color"].default_value
            links.new(colour_socket, mix.inputs[7])
            links.new(mix.outputs[2], bsdf.inputs["Base Color"])
        self.materials[key] = mat
        return mat

    def _id_depth_material(self):
        """Emission (R = object id, G = depth Z along the optical axis in m): exact values at pixel centres."""
        bpy = self.bpy
        mat = bpy.data.materials.new("id-depth")
        mat.use_nodes = True
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        nodes.clear()
        out = nodes.new("ShaderNodeOutputMaterial")
        emission = nodes.new("ShaderNodeEmission")
        emission.inputs["Strength"].default_value = 1.0
        info = nodes.new("ShaderNodeObjectInfo")
        cam = nodes.new("ShaderNodeCameraData")
        combine = nodes.new("ShaderNodeCombineXYZ")
        links.new(info.outputs["Object Index"], combine.inputs["X"])
        links.new(cam.outputs["View Z Depth"], combine.inputs["Y"])
        links.new(combine.outputs["Vector"], emission.inputs["Color"])
        links.new(emission.outputs["Emission"], out.inputs["Surface"])
        return mat

    @staticmethod
    def _matrix(T) -> object:
        """A mathutils Matrix from a 4x4 row-major array (assigning a plain list reads it column by column)."""
        import mathutils

        return mathutils.Matrix([[float(x) for x in row] for row in np.asarray(T, dtype=np.float64)])

    # one frame
    def _sync_objects(self, items: list[dict]) -> None:
        bpy = self.bpy
        while len(self.objects) < len(items):
            obj = bpy.data.objects.new(f"item-{len(self.objects)}", self.meshes[items[len(self.objects)]["mesh"]])
            self.scene.collection.objects.link(obj)
            self.objects.append(obj)
        for obj, item in zip(self.objects, items):
            mesh = self.meshes[item["mesh"]]
            if obj.data is not mesh:
                obj.data = mesh
            mat = self._material(item["mesh"], item["look"])
            slot = obj.material_slots[0]
            if slot.link != "OBJECT":
                slot.link = "OBJECT"
            if slot.material is not mat:
                slot.material = mat
            obj.matrix_world = self._matrix(item["T_world_item"])
            obj.pass_index = int(item["object_id"])
            obj.hide_render = False
        for obj in self.objects[len(items):]:
            obj.hide_render = True

    def _sync_lights(self, lights: list[dict]) -> None:
        bpy = self.bpy
        while len(self.lights) < len(lights):
            data = bpy.data.lights.new(f"sun-{len(self.lights)}", "SUN")
            obj = bpy.data.objects.new(f"sun-{len(self.lights)}", data)
            self.scene.collection.objects.link(obj)
            self.lights.append(obj)
        for obj, light in zip(self.lights, lights):
            d = np.asarray(light["direction_world"], dtype=np.float64)
            d /= np.linalg.norm(d)
            obj.matrix_world = self._matrix(_frame_with_minus_z(d))
            obj.data.energy = float(light["strength"])
            obj.data.color = tuple(float(c) for c in light["rgb"])
            obj.data.angle = float(np.deg2rad(light["angle_deg"]))
            obj.hide_render = False
        for obj in self.lights[len(lights):]:
            obj.hide_render = True

    def _set_camera(self, cam: dict, T_world_camera: np.ndarray) -> None:
        s, data = self.scene, self.camera.data
        W, H = int(cam["width_px"]), int(cam["height_px"])
        s.render.resolution_x, s.render.resolution_y = W, H
        s.render.resolution_percentage = 100
        s.render.pixel_aspect_x = s.render.pixel_aspect_y = 1.0
        data.type = "PERSP"
        data.sensor_fit = "HORIZONTAL"
        data.sensor_width = _SENSOR_WIDTH_MM
        data.lens = float(cam["fx"]) * _SENSOR_WIDTH_MM / W
        # Blender's image plane spans [0, W] x [0, H] with pixel centres at i + 0.5; OpenCV's centres are at i.
        # A shift moves the frustum by a fraction of the larger image side.
        side = float(max(W, H))
        data.shift_x = (W / 2.0 - float(cam["cx"]) - 0.5) / side
        data.shift_y = (float(cam["cy"]) + 0.5 - H / 2.0) / side
        data.clip_start = float(cam.get("near_m", 0.005))
        data.clip_end = float(cam.get("far_m", 100.0))
        T = np.asarray(T_world_camera, dtype=np.float64) @ _BLENDER_FROM_CV
        self.camera.matrix_world = self._matrix(T)

    def _filter_width(self, width_px: float) -> None:
        """The pixel filter's width (Cycles' BOX filter ignores it: always one pixel; GAUSSIAN uses it), set in
        ``render.filter_size`` (Blender 4.2+) and ``cycles.filter_width`` (older releases)."""
        self.scene.cycles.filter_width = width_px
        self.scene.render.filter_size = width_px

    def _render_exr(self, name: str) -> np.ndarray:
        """Render the current settings; (H, W, 4) float32 linear RGBA, first row at the top."""
        bpy, s = self.bpy, self.scene
        path = os.path.join(self.tmpdir, f"{name}.exr")
        s.render.filepath = path
        bpy.ops.render.render(write_still=True)
        image = bpy.data.images.load(path, check_existing=False)
        try:
            W, H = image.size
            buf = np.empty(W * H * 4, dtype=np.float32)
            image.pixels.foreach_get(buf)
        finally:
            bpy.data.images.remove(image)
            os.unlink(path)
        return buf.reshape(H, W, 4)[::-1].copy()

    def render(self, header: dict) -> dict:
        s = self.scene
        self._sync_objects(header["items"])
        self._sync_lights(header["lights"])
        self._set_camera(header["camera"], np.asarray(header["T_world_camera"]))
        opts = header["options"]
        self.background.inputs["Color"].default_value = tuple(header["ambient_rgb"]) + (1.0,)
        self.background.inputs["Strength"].default_value = 1.0
        s.render.threads_mode = "FIXED" if int(opts["threads"]) > 0 else "AUTO"
        if int(opts["threads"]) > 0:
            s.render.threads = int(opts["threads"])
        t0 = time.perf_counter()
        # the colour image: path traced, a 1-pixel box filter (the sensor pixel), denoised
        view_layer = bpy_view_layer(self.bpy)
        view_layer.material_override = None
        s.cycles.samples = int(opts["samples"])
        s.cycles.use_denoising = bool(opts["denoise"])
        s.cycles.denoiser = "OPENIMAGEDENOISE"
        s.cycles.denoising_quality = str(opts.get("denoising_quality", "FAST"))
        s.cycles.denoising_prefilter = "FAST" if opts.get("denoising_quality") == "FAST" else "ACCURATE"
        s.cycles.pixel_filter_type = "BOX" if float(opts["filter_width_px"]) == 1.0 else "GAUSSIAN"
        self._filter_width(float(opts["filter_width_px"]))
        s.cycles.max_bounces = int(opts["max_bounces"])
        s.cycles.diffuse_bounces = min(int(opts["max_bounces"]), 2)
        s.cycles.glossy_bounces = min(int(opts["max_bounces"]), 2)
        s.cycles.transparent_max_bounces = 2
        s.cycles.seed = int(opts["seed"])  # the backend mixes in the frame's content
        s.cycles.blur_glossy = 1.0
        s.cycles.sample_clamp_indirect = 10.0
        rgba = self._render_exr("rgb")
        t_rgb = time.perf_counter()
        # ids and depth at pixel centres: one sample, a 0.01-pixel filter, emission only
        view_layer.material_override = self.id_depth_material
        s.cycles.samples = 1
        s.cycles.use_denoising = False
        s.cycles.pixel_filter_type = "GAUSSIAN"  # Cycles' box filter is always 1 px wide, whatever its width
        self._filter_width(0.01)
        s.cycles.max_bounces = 0
        id_depth = self._render_exr("iddepth")
        view_layer.material_override = None
        t_end = time.perf_counter()
        return {"rgba": rgba, "id_depth": id_depth[:, :, [0, 1, 3]],
                "timing_ms": {"rgb": (t_rgb - t0) * 1e3, "id_depth": (t_end - t_rgb) * 1e3}}


def bpy_view_layer(bpy):
    return bpy.context.scene.view_layers[0]


def _frame_with_minus_z(d: np.ndarray) -> np.ndarray:
    """A 4x4 rotation whose -z axis is the unit vector ``d`` (a sun lamp shines along its -z)."""
    z = -d
    helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2] = x, y, z
    return T


def srgb_to_linear(rgba: np.ndarray) -> np.ndarray:
    """sRGB-encoded 0..1 values to linear (the last axis: RGB, or RGBA with alpha untouched); also used by
    the client, :mod:`dfbvs.render.blender_backend`."""
    out = np.array(rgba, dtype=np.float32, copy=True)
    c = out[..., :3]
    out[..., :3] = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return out


def main() -> int:
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # Blender and Cycles print progress on stdout: keep it off the protocol pipe
    sys.stdout = sys.stderr
    proto_in = sys.stdin.buffer
    try:
        import bpy
    except Exception as exc:  # noqa: BLE001 - reported to the client, which names the interpreter
        write_message(proto_out, {"ok": False, "error": f"cannot import bpy: {exc}"})
        return 1
    scene = None
    while True:
        try:
            header, blobs = read_message(proto_in)
        except EOFError:
            return 0
        op = header.get("op")
        try:
            if scene is None:
                scene = BlenderScene(bpy)
            if op == "hello":
                write_message(proto_out, {"ok": True, "blender": bpy.app.version_string,
                                          "numpy": np.__version__, "pid": os.getpid()})
            elif op == "mesh":
                scene.add_mesh(header["key"], blobs)
                write_message(proto_out, {"ok": True})
            elif op == "forget":
                scene.forget(list(header["keys"]))
                write_message(proto_out, {"ok": True})
            elif op == "render":
                out = scene.render(header)
                write_message(proto_out, {"ok": True, "timing_ms": out["timing_ms"]},
                              {"rgba": out["rgba"], "id_depth": out["id_depth"]})
            elif op == "quit":
                write_message(proto_out, {"ok": True})
                return 0
            else:
                write_message(proto_out, {"ok": False, "error": f"unknown request {op!r}"})
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the client with its traceback
            traceback.print_exc(file=sys.stderr)
            write_message(proto_out, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    sys.exit(main())
