"""``dfbvs render``: render a CAD model at a camera pose (target, or the cluttered simulated scene) to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _parse_pose(text: str):
    """``"x y z rx ry rz"`` (metres, rotation vector in radians) -> 4x4 ``T_object_camera``."""
    import numpy as np

    from ..geometry import pose_from_xyz_rotvec

    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise typer.BadParameter(f"--pose {text!r}: expected 6 numbers 'x y z rx ry rz' (m, rad)") from None
    if len(values) != 6 or not all(np.isfinite(values)):
        raise typer.BadParameter(f"--pose {text!r}: expected 6 finite numbers 'x y z rx ry rz' (m, rad)")
    return pose_from_xyz_rotvec(np.array(values[:3]), np.array(values[3:]))


def _read_pose_matrix(path: Path):
    """``T_object_camera`` from a file, read as ``dfbvs target --goal-camera`` reads it
    (:func:`~dfbvs.calibration.load_rigid_transform`: JSON, YAML, .npy, .txt, OpenCV FileStorage; errors name the
    value: NaN, a reflection, a translation in millimetres, ...)."""
    from ..calibration import load_rigid_transform
    from ..errors import CalibrationError

    try:
        return load_rigid_transform(path, "T_object_camera")
    except CalibrationError as exc:
        raise typer.BadParameter(f"--pose-matrix: {exc}") from None


def register(app: typer.Typer) -> None:
    from ._options import background_option, check_object_or_mesh, mesh_unit_callback, mesh_unit_names, object_help
    from ._paths import out_dir_callback

    @app.command("render")
    def render(
        out: Path = typer.Option(..., callback=out_dir_callback,
                                 help="Output folder: rgb.png, depth.npy, mask.png, meta.json."),
        object_name: Optional[str] = typer.Option(None, "--object", help=object_help()),
        mesh: Optional[Path] = typer.Option(None, help="Your CAD mesh (STL, OBJ, PLY, glTF/GLB)."),
        mesh_unit: str = typer.Option("m", callback=mesh_unit_callback,
                                      help=f"Unit of the mesh file: {mesh_unit_names()}."),
        distance: float = typer.Option(0.30, help="Look-at distance from the object origin (m)."),
        azimuth: float = typer.Option(30.0, help="Look-at azimuth about the object's z axis (deg)."),
        elevation: float = typer.Option(60.0, help="Look-at elevation above the object's xy plane (deg)."),
        roll: float = typer.Option(0.0, help="Camera roll about its optical axis (deg)."),
        pose: Optional[str] = typer.Option(None, help="T_object_camera as 'x y z rx ry rz' (m, rotation "
                                                      "vector in rad); overrides the look-at options."),
        pose_matrix: Optional[Path] = typer.Option(None, help="T_object_camera (4x4, metres) in a JSON, YAML, .npy "
                                                              "or .txt file; overrides the look-at options."),
        background: str = background_option("clean"),
        scene: Optional[str] = typer.Option(None, hidden=True,
                                            help="Deprecated: the old name of --background (clean or cluttered)."),
        seed: int = typer.Option(0, help="Seed of the scene (distractors, texture, sim-to-real gap)."),
        width: int = typer.Option(320, help="Image width (px); intrinsics of the default camera are rescaled."),
        height: int = typer.Option(240, help="Image height (px)."),
    ) -> None:
        """Render an object at a camera pose in the object frame and write rgb.png, depth.npy (float32 m,
        NaN where nothing is hit), mask.png and meta.json. Exits 1 (files written) when the render could not
        serve as a target (object not in view, filling the image, out of depth range), 2 on bad input."""
        import json

        import numpy as np

        from ..camera import Camera
        from ..geometry import look_at_spherical
        from ..render import load_builtin, load_mesh
        from ..render.target import TargetRender, render_target

        check_object_or_mesh(object_name, mesh)
        if scene is not None:  # the deprecated option: same vocabulary, one of the two
            from ._options import parse_background

            old = parse_background(scene, "--scene")
            if background != "clean" and background != old:
                raise typer.BadParameter(f"--scene {scene!r} and --background {background!r}: give only "
                                         f"--background (--scene is its deprecated old name)")
            typer.echo(f"note: --scene is deprecated; use --background {old}", err=True)
            background = old
        if pose is not None and pose_matrix is not None:
            raise typer.BadParameter("give at most one of --pose and --pose-matrix")
        if width <= 0 or height <= 0:
            raise typer.BadParameter(f"image size {width}x{height}: must be positive")
        try:
            if pose is not None:
                T = _parse_pose(pose)
            elif pose_matrix is not None:
                T = _read_pose_matrix(pose_matrix)
            else:
                T = look_at_spherical(distance, azimuth, elevation, roll)
            if object_name:
                the_mesh = load_builtin(object_name)
            elif mesh is not None:
                the_mesh = load_mesh(mesh, unit=mesh_unit)
            else:  # excluded by the checks above
                raise typer.BadParameter("give exactly one of --object NAME or --mesh PATH")
            camera = Camera.default().rescaled(width, height)
            if background == "clean":
                target = render_target(the_mesh, camera, T)
            else:
                from ..bench.methods import scene_for_background
                from ..render.scene import build_scene, render_scene

                config = scene_for_background(background, seed)
                frame = render_scene(build_scene(the_mesh, config, seed=seed), camera, T)
                target = TargetRender(frame.rgb, np.where(frame.mask, frame.depth_m, np.nan).astype(np.float32),
                                      frame.mask, camera, T, "moderngl", frame.time_ms)
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        target.save(out)
        meta = json.loads((out / "meta.json").read_text())
        meta.update({"background": background, "scene": background, "seed": seed, "object": object_name or str(mesh)})
        if background != "clean":
            meta["depth_unit"] = "m, Z along the optical axis, object pixels only (NaN elsewhere)"
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        typer.echo(f"wrote {out}/rgb.png, depth.npy, mask.png, meta.json ({target.mask.sum()} object pixels, "
                   f"{target.time_ms:.1f} ms)")
        from ..errors import TargetError
        from ..render.target import check_target_render

        try:  # the same floors as a servo target: an empty or unframed render is an error, not "0 object pixels"
            check_target_render(target, the_mesh)
        except TargetError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
