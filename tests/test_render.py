"""Render engine: projection, metric depth and ids against independent numpy references (ray casting,
point-in-polygon at pixel centres, trimesh proximity), axis conversion, and validation errors.

These tests need a headless EGL context; they must run (not skip) on the project's machines."""

from __future__ import annotations

import numpy as np
import pytest

from _quad_geometry import inside_polygon, tilted_quad
from dfbvs.camera import Camera
from dfbvs.geometry import inverse, look_at, look_at_spherical, make_pose
from dfbvs.render import DrawItem, Lighting, Mesh, get_renderer, load_builtin, load_mesh
from dfbvs.render.gl import clip_from_camera_cv, opencv_to_opengl, opengl_projection

# fx != fy and an off-centre principal point, on purpose
CAM = Camera(fx=301.3, fy=268.9, cx=171.37, cy=103.81, width_px=320, height_px=240)


def render(items, camera=CAM, T_world_camera=np.eye(4), antialias=False, lighting=Lighting()):
    return get_renderer("moderngl").render(items, camera, T_world_camera, lighting, antialias=antialias)


def pixel_rays(camera: Camera, uv: np.ndarray) -> np.ndarray:
    """(N, 3) rays through pixel centres with z = 1, so a hit at ray * t has depth Z = t."""
    return np.column_stack([camera.pixel_to_normalized(uv), np.ones(len(uv))])


def ray_mesh_depth(rays: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Depth of the nearest hit of rays from the origin with a triangle mesh (Moller-Trumbore), NaN if none."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    e1, e2 = b - a, c - a
    best = np.full(len(rays), np.inf)
    for s in range(0, len(rays), 256):
        d = rays[s:s + 256, None, :]
        p = np.cross(d, e2[None])
        det = np.einsum("rfk,fk->rf", p, e1)
        inv = 1.0 / np.where(np.abs(det) < 1e-15, np.nan, det)
        tvec = -a[None]
        u = np.einsum("fk,rfk->rf", tvec[0], p) * inv
        q = np.cross(tvec, e1[None])
        v = np.einsum("rfk,rfk->rf", d, np.broadcast_to(q, p.shape)) * inv
        t = np.einsum("fk,rfk->rf", e2, np.broadcast_to(q, p.shape)) * inv
        ok = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        best[s:s + 256] = np.where(ok, t, np.inf).min(axis=1)
    return np.where(np.isfinite(best), best, np.nan)


def test_opencv_to_opengl_flips_y_and_z_and_is_an_involution():
    C = opencv_to_opengl()
    p_cv = np.array([0.1, 0.2, 0.5, 1.0])  # right, down, in front
    p_gl = C @ p_cv
    assert p_gl[0] > 0 and p_gl[1] < 0 and p_gl[2] < 0  # OpenGL: right, below (y up), in front (z back)
    assert np.allclose(C @ C, np.eye(4))


def test_clip_transform_reproduces_camera_project_in_ndc():
    rng = np.random.default_rng(0)
    p = np.column_stack([rng.uniform(-0.3, 0.3, (50, 2)), rng.uniform(0.3, 2.0, 50)])
    clip = (clip_from_camera_cv(CAM, 0.01, 50.0) @ np.column_stack([p, np.ones(50)]).T).T
    ndc = clip[:, :3] / clip[:, 3:]
    u = (ndc[:, 0] + 1) / 2 * CAM.width_px - 0.5
    v = (1 - ndc[:, 1]) / 2 * CAM.height_px - 0.5   # rows counted from the top
    assert np.allclose(np.column_stack([u, v]), CAM.project(p), atol=1e-9)
    assert np.all((ndc[:, 2] > -1) & (ndc[:, 2] < 1))


def test_projection_rejects_distortion_and_bad_planes():
    with pytest.raises(ValueError, match="distortion"):
        opengl_projection(Camera(300, 300, 160, 120, 320, 240, dist=(0.1, 0, 0, 0, 0)), 0.01, 10)
    with pytest.raises(ValueError, match="near"):
        opengl_projection(CAM, 0.0, 10)


@pytest.mark.parametrize("bad", [dict(fx=-3.0), dict(fy=0.0), dict(cx=float("nan")), dict(width_px=0)])
def test_bad_intrinsics_give_clear_errors(bad):
    args = dict(fx=300.0, fy=300.0, cx=160.0, cy=120.0, width_px=320, height_px=240) | bad
    with pytest.raises(ValueError, match=list(bad)[0]):
        Camera(**args)


@pytest.mark.parametrize("depth_m,tilt_deg", [(0.3, 35.0), (0.6, 50.0), (1.0, 20.0)])
def test_rendered_coverage_matches_camera_project_to_a_tenth_of_a_pixel(depth_m, tilt_deg):
    """Every pixel centre more than 0.1 px from the projected outline of a tilted quad is inside the id mask
    exactly when it is inside the polygon of ``camera.project``-ed corners: a projection off by more than
    0.1 px in u or v (or a half-pixel convention error) fails on the long, slanted edges."""
    mesh, T = tilted_quad(depth_m, 0.12 * depth_m, np.deg2rad(tilt_deg), offset=(0.02 * depth_m, -0.01))
    out = render([DrawItem(mesh, T)])
    corners = CAM.project((T[:3, :3] @ mesh.vertices_m.T).T + T[:3, 3])
    vv, uu = np.mgrid[0:CAM.height_px, 0:CAM.width_px]
    uv = np.column_stack([uu.ravel(), vv.ravel()]).astype(float)
    inside, dist = inside_polygon(uv, corners)
    clear = dist > 0.1
    rendered = (out.ids == 1).ravel()
    assert inside.sum() > 2000
    assert np.array_equal(rendered[clear], inside[clear])
    # and the check is sharp: shifting the expected outline by 0.25 px breaks it
    inside_shifted, dist_s = inside_polygon(uv, corners + np.array([0.25, 0.0]))
    assert not np.array_equal(rendered[dist_s > 0.1], inside_shifted[dist_s > 0.1])


@pytest.mark.parametrize("depth_m", [0.3, 0.6, 1.0])
def test_plane_depth_matches_ray_plane_intersection(depth_m):
    mesh, T = tilted_quad(depth_m, 0.2 * depth_m, np.deg2rad(40.0))
    out = render([DrawItem(mesh, T)])
    hit = np.isfinite(out.depth_m)
    assert np.array_equal(hit, out.ids == 1)
    vv, uu = np.nonzero(hit)
    rays = pixel_rays(CAM, np.column_stack([uu, vv]).astype(float))
    n = T[:3, 2]  # plane normal in the camera frame; plane passes through T[:3, 3]
    Z_true = (n @ T[:3, 3]) / (rays @ n)
    err = np.abs(out.depth_m[hit] - Z_true)
    assert hit.sum() > 5000
    assert err.max() < 0.05e-3, f"max depth error {err.max() * 1e3:.4f} mm"


@pytest.mark.parametrize("depth_m", [0.3, 1.0])
def test_sphere_depth_matches_ray_casting_on_the_same_facets(depth_m):
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.06)
    mesh = Mesh(sphere.vertices, sphere.faces, name="sphere")
    centre = np.array([0.01, -0.005, depth_m])
    out = render([DrawItem(mesh, make_pose(None, centre))])
    hit = np.isfinite(out.depth_m)
    vv, uu = np.nonzero(hit)
    uv = np.column_stack([uu, vv]).astype(float)
    rays = pixel_rays(CAM, uv)
    Z_facets = ray_mesh_depth(rays, mesh.vertices_m + centre, mesh.faces)
    ok = np.isfinite(Z_facets)
    assert ok.mean() > 0.99  # only pixels grazing the silhouette may disagree
    err = np.abs(out.depth_m[hit][ok] - Z_facets[ok])
    assert err.max() < 0.05e-3, f"max depth error {err.max() * 1e3:.4f} mm"
    # and the analytic sphere: within the tessellation's sagitta near the centre of the disc
    b = rays @ centre
    disc = b**2 - (rays**2).sum(1) * (centre @ centre - 0.06**2)
    Z_sphere = (b - np.sqrt(np.maximum(disc, 0))) / (rays**2).sum(1)
    central = disc > 0.5 * disc.max()
    assert np.abs(out.depth_m[hit][central] - Z_sphere[central]).max() < 1.5e-3


def test_back_projected_depth_lies_on_the_mesh_surface():
    import trimesh

    mesh = load_builtin("gear")
    T_object_camera = look_at_spherical(0.35, 40.0, 50.0, 10.0)
    out = render([DrawItem(mesh)], T_world_camera=T_object_camera)
    vv, uu = np.nonzero(np.isfinite(out.depth_m))
    p_camera = CAM.unproject(np.column_stack([uu, vv]).astype(float), out.depth_m[vv, uu])
    p_object = (T_object_camera[:3, :3] @ p_camera.T).T + T_object_camera[:3, 3]
    _, dist, _ = trimesh.proximity.closest_point(mesh.to_trimesh(), p_object[::3])
    assert len(dist) > 500
    assert dist.max() < 0.5e-3, f"max distance to the surface {dist.max() * 1e3:.3f} mm"


def test_ids_depth_occlusion_and_antialias_leaves_depth_and_ids_exact():
    import trimesh

    box = trimesh.creation.box(extents=(0.05, 0.05, 0.05))
    near = Mesh(box.vertices, box.faces, name="near")
    far_plane, T_far = tilted_quad(0.8, 0.3, 0.0)
    items = [DrawItem(near, make_pose(None, [0, 0, 0.4]), 1), DrawItem(far_plane, T_far, 7)]
    plain = render(items)
    smooth = render(items, antialias=True)
    assert set(np.unique(plain.ids)) == {0, 1, 7}
    centre = (int(round(CAM.cy)), int(round(CAM.cx)))
    assert plain.ids[centre] == 1 and abs(plain.depth_m[centre] - 0.375) < 1e-5  # the box face at 0.4 - 0.025
    assert np.all(np.isnan(plain.depth_m[plain.ids == 0]))
    assert np.array_equal(plain.ids, smooth.ids)
    assert np.array_equal(plain.depth_m, smooth.depth_m, equal_nan=True)
    assert not np.array_equal(plain.rgb, smooth.rgb)  # edges are smoothed


def test_world_pose_and_look_at_agree_with_camera_frame_rendering():
    """Rendering an object at T_world_item from T_world_camera equals rendering it in the camera frame."""
    mesh = load_builtin("connector")
    T_world_camera = look_at([0.2, -0.25, 0.3], [0.0, 0.0, 0.0])
    a = render([DrawItem(mesh)], T_world_camera=T_world_camera)
    b = render([DrawItem(mesh, inverse(T_world_camera))])
    assert np.array_equal(a.ids, b.ids)
    assert np.nanmax(np.abs(a.depth_m - b.depth_m)) < 1e-6


def test_shading_shows_the_shape_of_a_uniform_part():
    mesh = load_builtin("bracket")
    out = render([DrawItem(mesh)], T_world_camera=look_at_spherical(0.3, 30, 50), antialias=True)
    grey = out.rgb[out.ids == 1].mean(axis=1)
    assert grey.std() > 15  # faces at different angles get different shades
    assert (grey >= 254).mean() < 0.05  # and the light does not burn them out


def test_vertex_colours_and_textures_are_drawn():

    plane, T = tilted_quad(0.5, 0.1, 0.0)
    colours = np.array([[255, 0, 0], [255, 0, 0], [0, 0, 255], [0, 0, 255]], np.uint8)
    coloured = Mesh(plane.vertices_m, plane.faces, vertex_colors=colours, base_rgb=(1, 1, 1))
    out = render([DrawItem(coloured, T)])
    rgb = out.rgb[out.ids == 1].astype(int)
    assert (rgb[:, 0] > rgb[:, 2]).any() and (rgb[:, 2] > rgb[:, 0]).any()
    texture = np.zeros((8, 8, 3), np.uint8)
    texture[:4] = (0, 255, 0)  # top half of the image green, bottom half black
    square = np.array([[-0.1, -0.1, 0], [0.1, -0.1, 0], [0.1, 0.1, 0], [-0.1, 0.1, 0]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    textured = Mesh(square, plane.faces, uv=uv, texture=texture, base_rgb=(1, 1, 1))
    out = render([DrawItem(textured, make_pose(None, [0, 0, 0.5]))], lighting=Lighting(ambient=1.0, lights=()))
    rows = np.nonzero((out.ids == 1).any(axis=1))[0]
    third = len(rows) // 3
    g = out.rgb[:, :, 1].astype(float)
    top = g[rows[:third]][out.ids[rows[:third]] == 1].mean()
    bottom = g[rows[-third:]][out.ids[rows[-third:]] == 1].mean()
    # uv v=1 (the image's top row) is at vertices 2, 3: +y in the camera frame, the bottom of the rendered image
    assert bottom > 200 and top < 50


def test_mesh_is_uploaded_once_and_reused():
    renderer = get_renderer("moderngl")
    mesh = load_builtin("gear")
    render([DrawItem(mesh)], T_world_camera=look_at_spherical(0.3, 0, 45))
    entry = renderer._meshes[id(mesh)]
    render([DrawItem(mesh)], T_world_camera=look_at_spherical(0.3, 10, 45))
    assert renderer._meshes[id(mesh)] is entry


# --- mesh loading ------------------------------------------------------------------------------------
def test_load_mesh_formats_and_units(tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=(40.0, 20.0, 10.0))  # millimetres
    for ext in ("stl", "ply", "obj", "glb"):
        path = tmp_path / f"box.{ext}"
        box.export(str(path))
        mesh = load_mesh(path, unit="mm")
        assert np.allclose(mesh.extent_m, [0.04, 0.02, 0.01]), ext
    assert np.allclose(load_mesh(tmp_path / "box.stl", unit="cm").extent_m, [0.4, 0.2, 0.1])


def test_load_obj_with_texture(tmp_path):
    import trimesh
    from PIL import Image

    box = trimesh.creation.box(extents=(0.04, 0.04, 0.04))
    uv = np.random.default_rng(0).uniform(0, 1, (len(box.vertices), 2))
    image = Image.fromarray(np.full((16, 16, 3), (10, 200, 30), np.uint8))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
    box.export(str(tmp_path / "tex.obj"))
    mesh = load_mesh(tmp_path / "tex.obj")
    assert mesh.texture is not None and mesh.uv is not None
    out = render([DrawItem(mesh, make_pose(None, [0, 0, 0.3]))])
    assert out.rgb[out.ids == 1][:, 1].mean() > 2 * out.rgb[out.ids == 1][:, 0].mean()


def test_bad_meshes_give_errors_naming_file_and_value(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.stl"):
        load_mesh(tmp_path / "nothere.stl")
    garbage = tmp_path / "garbage.stl"
    garbage.write_bytes(b"\x00\x01 definitely not a mesh" * 3)
    with pytest.raises(ValueError, match="garbage.stl"):
        load_mesh(garbage)
    with pytest.raises(ValueError, match="unknown mesh unit 'km'"):
        load_mesh(tmp_path / "nothere.stl", unit="km")
    empty = tmp_path / "empty.obj"
    empty.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(ValueError, match="0 faces.*empty.obj"):
        load_mesh(empty)
    point = tmp_path / "point.obj"
    point.write_text("v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\n")
    with pytest.raises(ValueError, match="point.obj: degenerate"):
        load_mesh(point)
    with pytest.raises(ValueError, match="not finite"):
        Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]]), np.array([[0, 1, 2]]), name="nan.stl")
    with pytest.raises(ValueError, match="0 faces: x.stl"):
        Mesh(np.zeros((3, 3)), np.zeros((0, 3)), name="x.stl")


def test_builtin_objects_are_cad_sized_parts_with_detail():
    from dfbvs.render import builtin_object_names
    from dfbvs.render.objects import builtin_path

    assert builtin_object_names() == ["bracket", "gear", "connector"]
    for name in builtin_object_names():
        mesh = load_builtin(name)
        assert 0.05 <= mesh.extent_m.max() <= 0.15, (name, mesh.extent_m)
        assert np.allclose(mesh.bounds_m.mean(axis=0), 0, atol=1e-6)  # centred
        assert mesh.to_trimesh().is_watertight, name
        assert len(mesh.faces) > 1000
        assert builtin_path(name).stat().st_size < 2e6
    with pytest.raises(ValueError, match="'teapot'"):
        load_builtin("teapot")


def test_unknown_renderer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown renderer 'povray'"):
        get_renderer("povray")


@pytest.mark.parametrize("edge_frac", [0.13, 0.37, 0.61, 0.89])
def test_supersampled_edge_coverage_is_exact_to_a_few_hundredths_of_a_pixel(edge_frac):
    """A white half-plane on black, lit flat: with ``supersample`` each row's summed intensity is the covered
    length of the row, so the edge is where ``camera.project`` puts it to < 0.03 px at any sub-pixel phase
    (4x multisampling alone quantizes an edge pixel's coverage to quarters)."""
    from dfbvs.render import Material

    Z = 0.5
    u_edge = 100.0 + edge_frac
    x_edge = (u_edge - CAM.cx) / CAM.fx * Z
    v = np.array([[x_edge, -1.0, Z], [5.0, -1.0, Z], [5.0, 1.0, Z], [x_edge, 1.0, Z]])
    mesh = Mesh(v, np.array([[0, 1, 2], [0, 2, 3]]), name="half-plane")
    item = DrawItem(mesh, np.eye(4), 1, Material(rgb=(1.0, 1.0, 1.0), specular=0.0))
    flat = Lighting(ambient=1.0, lights=())
    out = get_renderer("moderngl").render([item], CAM, np.eye(4), flat, antialias=True, supersample=4)
    assert out.rgb.shape == (CAM.height_px, CAM.width_px, 3) and out.rgb.dtype == np.uint8
    covered_px = out.rgb[50:190, :, 0].astype(float).sum(axis=1) / 255.0
    expected_px = (CAM.width_px - 0.5) - u_edge
    assert np.max(np.abs(covered_px - expected_px)) < 0.03, (covered_px.min(), covered_px.max(), expected_px)
    assert np.array_equal(out.ids[120, :], (np.arange(CAM.width_px) >= u_edge).astype(np.int32))  # ids single-sample


def test_supersample_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="supersample.*2.5"):
        get_renderer("moderngl").render([], CAM, np.eye(4), supersample=2.5)
