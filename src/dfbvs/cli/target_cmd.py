"""``dfbvs target``: render the goal view a servo would aim for and print what a user must check (object
coverage of the image, target keypoints on the object, depth range), with warnings when it looks wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._options import check_object_or_mesh, mesh_unit_callback
from ._paths import out_dir_callback


def register(app: typer.Typer) -> None:
    @app.command("target")
    def target(
        object_name: Optional[str] = typer.Option(None, "--object", help="Built-in object."),
        mesh: Optional[Path] = typer.Option(None, help="Your CAD mesh (STL, OBJ, PLY, glTF/GLB)."),
        mesh_unit: str = typer.Option("m", help="Unit of the mesh file: m, cm, mm or in.", callback=mesh_unit_callback),
        azimuth: float = typer.Option(30.0, help="Goal camera azimuth about the object's z (deg)."),
        elevation: float = typer.Option(60.0, help="Goal camera elevation (deg; 90 looks straight down)."),
        roll: float = typer.Option(0.0, help="Goal camera roll about its optical axis (deg)."),
        distance: Optional[float] = typer.Option(None, help="Goal distance to the centre (m); default: the "
                                                 "distance that frames the object at --fill-ratio."),
        fill_ratio: float = typer.Option(0.9, help="Share of the image's shorter side the object's bounding "
                                         "sphere spans when framed."),
        center: str = typer.Option("bbox", help="Centre looked at: bbox (bounding-box centre), centroid "
                                   "(area-weighted surface centroid) or origin."),
        look_at: Optional[str] = typer.Option(None, help="Look at this point x,y,z (m, object frame) instead."),
        goal_camera: Optional[Path] = typer.Option(None, help="The goal as a 4x4 T_object_camera file instead "
                                                   "(JSON, YAML, .npy or .txt)."),
        grasp: Optional[Path] = typer.Option(None, help="The goal from a grasp T_object_tool file (with "
                                             "--hand-eye): the camera when the tool stands back by the standoff."),
        hand_eye: Optional[Path] = typer.Option(None, help="T_tool_camera file for --grasp."),
        standoff: float = typer.Option(0.12, help="--grasp: tool distance back from the grasp (m)."),
        sensor: str = typer.Option("640x480", help="Camera size WIDTHxHEIGHT of the default lens."),
        calibration: Optional[Path] = typer.Option(None, help="Your camera calibration instead of --sensor."),
        need_mm: float = typer.Option(1.0, help="The final accuracy you need, translation (mm): warn when the goal "
                                      "view cannot pin the pose that well."),
        need_deg: float = typer.Option(0.1, help="The final accuracy you need, rotation (deg)."),
        out: Path = typer.Option(..., callback=out_dir_callback, help="Output directory."),
    ) -> None:
        """Render the goal view and report object coverage, target keypoints on the object, the depth range and
        the pose precision the view allows."""
        from dataclasses import asdict

        import numpy as np

        from ..calibration import load_camera_calibration, load_hand_eye, load_rigid_transform
        from ..camera import Camera
        from ..errors import DfbvsError, TargetError
        from ..features import build_extractor
        from ..goal import GoalSpec
        from ..recorder import write_json
        from ..render import load_builtin, load_mesh
        from ..render.target import check_target_render, render_target
        from ..robot.grasp import camera_goal_from_grasp
        from ..servo import ServoConfig
        from ..target import PRECISION_NOISE_WORKING_PX, check_goal_view

        check_object_or_mesh(object_name, mesh)
        if sum(x is not None for x in (goal_camera, grasp)) > 1:
            raise typer.BadParameter("give at most one of --goal-camera and --grasp")
        if grasp is not None and hand_eye is None:
            raise typer.BadParameter("--grasp needs --hand-eye T_tool_camera FILE")
        if not standoff > 0:
            raise typer.BadParameter(f"--standoff {standoff!r}: the tool's distance back from the grasp, > 0 m")
        if hand_eye is not None and grasp is None:
            raise typer.BadParameter("--hand-eye is used with --grasp only (the goal camera is derived from both)")
        given_pose = "--goal-camera" if goal_camera is not None else "--grasp" if grasp is not None else None
        if given_pose is not None:
            ignored = [n for n, v in (("--look-at", look_at), ("--distance", distance)) if v is not None]
            if ignored:
                raise typer.BadParameter(f"{given_pose} gives the goal pose: {', '.join(ignored)} would be ignored")

        try:
            obj = load_mesh(str(mesh), unit=mesh_unit) if mesh is not None else load_builtin(str(object_name))
            if calibration is not None:
                cam = load_camera_calibration(calibration).camera
            else:
                try:
                    w, h = (int(x) for x in sensor.lower().split("x"))
                except ValueError:
                    raise typer.BadParameter(f"--sensor {sensor!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
                cam = Camera.default().rescaled(w, h)
            point = None
            if look_at is not None:
                try:
                    point = tuple(float(x) for x in look_at.split(","))
                    assert len(point) == 3
                except (ValueError, AssertionError):
                    raise typer.BadParameter(f"--look-at {look_at!r}: expected x,y,z in metres") from None
            spec = GoalSpec(azimuth, elevation, roll, distance, fill_ratio, center, point)  # type: ignore[arg-type]
            if goal_camera is not None:
                T_goal = load_rigid_transform(goal_camera, "T_object_camera")
            elif grasp is not None:
                T_goal = camera_goal_from_grasp(load_rigid_transform(grasp, "T_object_tool"),
                                                load_hand_eye(hand_eye),  # type: ignore[arg-type]
                                                standoff)
            else:
                T_goal = spec.T_object_camera(obj, cam)
            render = render_target(obj, cam, T_goal)
        except (DfbvsError, ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        work = ServoConfig()
        check = check_goal_view(render, obj, build_extractor(work.features), work.working_width_px,
                                work.working_height_px, work.refine, need_mm, need_deg,
                                work.feature_poor.max_alignable_keypoints)
        report, precision, light, held, warnings = (check.framing, check.precision, check.light,
                                                    check.precision_light_stable, check.warnings)
        render.save(out)
        centre = spec.look_at_point_m(obj)
        write_json(out / "framing.json", {
            "coverage": report.coverage, "keypoints_on_object": report.keypoints_on_object,
            "keypoints_total": report.keypoints_total, "depth_min_m": report.depth_min_m,
            "depth_max_m": report.depth_max_m, "warnings": warnings, "center_m": centre,
            "T_object_camera": T_goal, "precision": None if precision is None else asdict(precision),
            "light_stability": None if light is None else light.summary(),
            "precision_light_stable": None if held is None else asdict(held)})
        typer.echo(f"goal view: {out / 'rgb.png'}  (object centre {np.round(centre, 4).tolist()} m, camera "
                   f"{np.linalg.norm(T_goal[:3, 3] - centre):.3f} m from it)")
        typer.echo(f"object covers {report.coverage:.1%} of the image; {report.keypoints_on_object} of "
                   f"{report.keypoints_total} target keypoints on it; "
                   + (f"depth {report.depth_min_m:.3f}-{report.depth_max_m:.3f} m" if np.isfinite(report.depth_min_m)
                      else "no depth (nothing of the object in view)"))
        if precision is not None:
            typer.echo(f"pose precision this view allows: {precision.translation_mm:.2f} mm / "
                       f"{precision.rotation_deg:.3f} deg RMS ({precision.n_points} alignable keypoints at "
                       f"{PRECISION_NOISE_WORKING_PX} working px; worst axis {precision.worst_translation_mm:.2f} mm / "
                       f"{precision.worst_rotation_deg:.3f} deg)")
        if light is not None:
            typer.echo(f"keypoints that hold when the light turns {light.turn_deg:g} deg: {light.n_stable} of "
                       f"{light.n_points} within {light.stable_px:g} px (median move "
                       + (f"{light.median_shift_px:.2f} px)" if np.isfinite(light.median_shift_px)
                          else "beyond alignment: most patches no longer align)"))
        for warning in warnings:
            typer.echo(f"warning: {warning}")
        try:  # what `dfbvs sim`, `bench` and `servo` refuse, refused here too
            check_target_render(render, obj, work.target_check)
        except TargetError as exc:
            typer.echo(f"error: a servo refuses this goal view: {exc}", err=True)
            raise typer.Exit(code=1) from None
