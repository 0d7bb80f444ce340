"""``dfbvs servo`` (a servo session on a UR arm, or on the simulated UR5e through the same code path) and
``dfbvs replay`` (re-run the servo on a recorded session and report where its decisions differ)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ._options import check_object_or_mesh, mesh_unit_callback
from ._paths import out_dir_callback
from .servo_cmd import SET_HELP, preset_help


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def register(app: typer.Typer) -> None:
    @app.command("servo")
    def servo(
        robot: str = typer.Option(..., help="ur (a real arm over RTDE, with --robot-host) or ur5e-sim (the "
                                  "simulated UR5e through the same code, fake RTDE clients)."),
        robot_host: Optional[str] = typer.Option(None, help="IP or host name of the UR controller (--robot ur)."),
        camera: Optional[str] = typer.Option(None, help="opencv:INDEX, opencv:URL, realsense[:SERIAL] (RGB-D: "
                                             "frames with depth), a video file or an image folder (--robot ur; the "
                                             "simulated arm renders its own frames)."),
        calibration: Optional[Path] = typer.Option(None, help="Camera intrinsics: OpenCV YAML/XML or ROS "
                                                   "camera_info YAML (required with a real camera)."),
        hand_eye: Optional[Path] = typer.Option(None, help="T_tool_camera (4x4, metres): JSON, YAML, .npy or .txt "
                                                "(required with --robot ur)."),
        object_name: Optional[str] = typer.Option(None, "--object", help="Built-in object (simulation)."),
        mesh: Optional[Path] = typer.Option(None, help="The object's CAD mesh (STL, OBJ, PLY, glTF/GLB)."),
        mesh_unit: str = typer.Option("m", help="Unit of the mesh file: m, cm, mm or in.",
                                      callback=mesh_unit_callback),
        grasp: Optional[Path] = typer.Option(None, help="Grasp pose T_object_tool (4x4 file); the camera goal "
                                             "is derived from it and the hand-eye transform, and the arm grasps "
                                             "after converging."),
        goal_camera: Optional[Path] = typer.Option(None, help="Camera goal T_object_camera (4x4 file), "
                                                   "instead of --grasp (no grasp)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Run everything but send no motion: no control "
                                     "interface is even opened."),
        record: Optional[Path] = typer.Option(None, help="Record frames, poses, commands and statuses here "
                                              "(replay with dfbvs replay DIR).", callback=out_dir_callback),
        out: Path = typer.Option(Path("runs/servo"), help="Where the goal preview goes when not recording.",
                                 callback=out_dir_callback),
        yes: bool = typer.Option(False, "--yes", help="Do not ask to confirm the goal preview."),
        live_view: Optional[str] = typer.Option(None, help="Log the run to rerun: a .rrd file, or spawn "
                                                "(a viewer; needs a display). Off by default."),
        seed: int = typer.Option(0, help="Simulation: seed of the scene, the start pose and the error knobs."),
        preset: Optional[str] = typer.Option(None, help=preset_help()),
        set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP + " Paths: servo.*, stop.*, "
                                                 "safety.*, grasp.*."),
    ) -> None:
        """Drive a UR arm (or the simulated UR5e) to the goal seen from the camera, then grasp."""
        import numpy as np

        from ..calibration import load_hand_eye, load_rigid_transform
        from ..errors import DfbvsError
        from ..goal import check_framing
        from ..render import load_builtin, load_mesh
        from ..render.target import render_target
        from ..robot.grasp import camera_goal_from_grasp, grasp_from_camera_goal
        from ..robot.session import run_session, session_config
        from ..runtime import FrameSource
        from ..servo import ServoConfig

        if robot not in ("ur", "ur5e-sim"):
            raise typer.BadParameter(f"--robot {robot!r}: expected 'ur' or 'ur5e-sim'")
        check_object_or_mesh(object_name, mesh)
        if grasp is not None and goal_camera is not None:
            raise typer.BadParameter("give at most one of --grasp FILE and --goal-camera FILE")
        simulated = robot == "ur5e-sim"
        if not simulated:
            missing = [n for n, v in (("--robot-host", robot_host), ("--camera", camera),
                                      ("--calibration", calibration), ("--hand-eye", hand_eye)) if v is None]
            if missing:
                raise typer.BadParameter(f"--robot ur needs {', '.join(missing)}")
            if grasp is None and goal_camera is None:
                raise typer.BadParameter("--robot ur needs the goal: --grasp T_object_tool FILE or "
                                         "--goal-camera T_object_camera FILE")
        elif camera is not None:
            raise typer.BadParameter("--camera is for a real arm; the simulated UR5e renders its own frames")
        overrides = list(set_ or [])
        try:
            config = session_config(preset, overrides)
            obj = load_mesh(str(mesh), unit=mesh_unit) if mesh is not None else load_builtin(str(object_name))
            if simulated:
                from ..camera import Camera
                from ..sim.robot import RobotConfig, RobotKind, believed_hand_eye, simulated_arm_camera

                robot_cfg = RobotConfig(kind=RobotKind.UR5E, safety=config.safety)
                T_tool_camera = (load_hand_eye(hand_eye) if hand_eye is not None
                                 else believed_hand_eye(robot_cfg, seed))
                cam = Camera.default().rescaled(640, 480)
                if calibration is not None:
                    from ..calibration import Undistorter, load_camera_calibration

                    calib = load_camera_calibration(calibration)
                    # a real camera's frames are undistorted to this pinhole (dfbvs.cameras): the rehearsal renders it
                    cam = Undistorter(calib).camera if calib.has_distortion else calib.camera
            else:
                from ..cameras import ImageFolderCamera, OpenCVCamera, open_camera

                T_tool_camera = load_hand_eye(hand_eye)  # type: ignore[arg-type]
                camera_source = open_camera(str(camera), calibration)
                recording = isinstance(camera_source, ImageFolderCamera) or (
                    isinstance(camera_source, OpenCVCamera) and camera_source.is_file)
                if recording and not dry_run:
                    camera_source.close()
                    raise _fail(f"--camera {camera}: a recording (a folder of images or a video file) does not see "
                                "the arm move; a real arm needs a live camera (opencv:<index>, a stream URL or "
                                "realsense[:SERIAL]), or add --dry-run to rehearse on the recording")
                if not recording and camera_source.grab() is None:  # a live camera's first frame, checked against
                    raise _fail(f"--camera {camera}: delivered no frame")  # the calibration before the arm connects
                if camera_source.camera is None:
                    raise _fail(f"--calibration {calibration}: no camera model from it")
                cam = camera_source.camera
                source: FrameSource = camera_source
            if grasp is not None:
                T_object_tool_grasp = load_rigid_transform(grasp, "T_object_tool")
                T_goal = camera_goal_from_grasp(T_object_tool_grasp, T_tool_camera, config.grasp.standoff_m)
            elif goal_camera is not None:
                T_object_tool_grasp = None
                T_goal = load_rigid_transform(goal_camera, "T_object_camera")
            else:  # simulation: the default look-at goal, and the grasp it stands for
                from ..sim.episode import GoalConfig

                T_goal = GoalConfig(distance_m=None if mesh is not None else 0.22).T_object_camera(obj, cam)
                T_object_tool_grasp = grasp_from_camera_goal(T_goal, T_tool_camera, config.grasp.standoff_m)
            from ..relight import basis_directions, basis_renderer, second_basis
            from ..servo import light_turns

            target = render_target(obj, cam, T_goal, shading_basis_directions=basis_directions(config.servo),
                                   basis_renderer=basis_renderer(config.servo), second_basis=second_basis(config.servo),
                                   light_turns=light_turns(config.servo))
        except DfbvsError as exc:
            raise _fail(str(exc)) from None

        preview_dir = record if record is not None else out
        preview_dir.mkdir(parents=True, exist_ok=True)
        target.save(preview_dir / "goal_preview")
        if isinstance(config.servo, ServoConfig):  # the view as this servo will prepare it, its light check too
            from ..features import build_extractor
            from ..target import check_goal_view

            try:
                check = check_goal_view(target, obj, build_extractor(config.servo.features),
                                        config.servo.working_width_px, config.servo.working_height_px,
                                        config.servo.refine,
                                        feature_poor_keypoints=config.servo.feature_poor.max_alignable_keypoints)
            except DfbvsError as exc:
                raise _fail(str(exc)) from None
            framing, warnings = check.framing, check.warnings
        else:  # the photometric baseline has no keypoints to judge
            framing = check_framing(target.mask, target.depth_m)
            warnings = framing.warnings
        typer.echo(f"goal preview: {preview_dir / 'goal_preview' / 'rgb.png'}  object covers {framing.coverage:.1%} "
                   f"of the image, depth {framing.depth_min_m:.3f}-{framing.depth_max_m:.3f} m")
        for warning in warnings:
            typer.echo(f"warning: {warning}")
        if not target.mask.any():
            raise _fail("the object is not in view of the goal camera: check the mesh unit and the goal")
        if not yes:
            if not sys.stdin.isatty():
                raise _fail("confirm the goal preview: there is no terminal to ask, pass --yes after checking it")
            if not typer.confirm("Servo to this goal?"):
                raise typer.Exit(code=1)

        try:
            if simulated:
                from ..sim.episode import EpisodeConfig, GoalConfig, start_pose

                episode = EpisodeConfig(seed=seed, camera=cam)
                T_start = start_pose(episode, cam, T_goal, GoalConfig().spec().look_at_point_m(obj))
                rig, sim_source = simulated_arm_camera(obj, cam, T_goal, T_start, episode.scene, robot_cfg,
                                                       episode.dt_s, seed)
                source = sim_source
                if dry_run:
                    from ..robot.ur import URArm

                    typer.echo("dry run on the simulated arm: nothing moves, so the run cannot converge; it ends "
                               f"after stop.max_iterations={config.stop.max_iterations} cycles "
                               "(--set stop.max_iterations=N)")

                    arm = URArm(rig.arm.receive, None, None, host="ur5e-sim (dry run)")
                else:
                    arm = rig.arm
                T_world_base, clock = rig.T_world_base, (lambda: rig.fake.time.now_s)
            else:
                import time

                from ..robot.ur import URArm

                arm = URArm.connect(str(robot_host), dry_run=dry_run)
                T_world_base, clock = np.eye(4), time.monotonic
            record_meta = {"preset": preset, "overrides": overrides, "robot": robot}
            result = run_session(config, source, arm, T_tool_camera, target, T_object_tool_grasp=T_object_tool_grasp,
                                 dry_run=dry_run, record_dir=record, record_meta=record_meta,
                                 T_world_base=T_world_base, clock=clock, live_view=live_view)
        except DfbvsError as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt as exc:
            typer.echo(f"interrupted ({exc or 'Ctrl-C'}): the arm was stopped", err=True)
            raise typer.Exit(code=130) from None
        from ._options import px_text

        s = result.summary()
        typer.echo(f"{s['status'].upper()} after {s['iterations']} cycles, mean correspondence error "
                   f"{px_text(s['final_mean_px_error'])} ({s['final_n_inliers']} inliers); commands sent "
                   f"{s['commands_sent']}, scaled by safety {s['commands_scaled']}"
                   + (f"; stopped: {s['fault']}" if s["fault"] else ""))
        if simulated and result.slow_cycles:
            typer.echo(f"warning: {result.slow_cycles} of {result.iterations} cycles took longer than the watchdog "
                       f"(safety.watchdog_timeout_s={config.safety.watchdog_timeout_s:g} s) to compute: the simulated "
                       "arm runs on simulated time, a real arm's watchdog would have stopped the run; raise the "
                       "timeout above your slowest cycle, or use the camera-rate servo (--preset tracking)")
        if result.grasp is not None:
            typer.echo(f"grasped at tool pose {np.round(result.grasp.T_base_tool_reached[:3, 3], 4).tolist()} m (base)")
            if simulated:
                from ..robot.grasp import grasp_error

                assert T_object_tool_grasp is not None  # a grasp was made
                err = grasp_error(T_object_tool_grasp, rig.T_world_base @ result.grasp.T_base_tool_reached,
                                  config.grasp)  # world = object frame in simulation
                typer.echo(f"simulated grasp: lateral {err.lateral_mm:.2f} mm, axial {err.axial_mm:.2f} mm, "
                           f"{err.rotation_deg:.2f} deg -> {'SUCCESS' if err.success else 'MISS'}")
        else:
            typer.echo(f"no grasp: {result.grasp_skipped}")
        if record is not None:
            typer.echo(f"recorded in {record} (dfbvs replay {record})")
        if result.status.value != "converged":
            raise typer.Exit(code=1)

    @app.command("replay")
    def replay(run_dir: Path = typer.Argument(..., help="A folder written by dfbvs servo --record."),
               set_: Optional[list[str]] = typer.Option(None, "--set", help="Change a setting for the replay: "
                                                        "PATH=VALUE (servo.*, stop.*)."),
               tolerance: float = typer.Option(1e-6, help="Twist difference (m/s, rad/s) that counts as different.")
               ) -> None:
        """Re-run the servo on a recorded session's frames and report where its decisions differ."""
        from ..errors import DfbvsError
        from ..replay import replay_run

        try:
            report = replay_run(run_dir, list(set_ or []), tolerance, out_jsonl=run_dir / "replay.jsonl")
        except DfbvsError as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"replayed {report.cycles} of {report.recorded_cycles} recorded cycles: status differs in "
                   f"{report.status_differs}, twist differs (> {tolerance:g}) in {report.twist_differs}; largest "
                   f"twist difference {report.max_twist_difference:.3g}")
        if report.first_difference is not None:
            f = report.first_difference
            typer.echo(f"first difference at cycle {f['iteration']}: recorded {f['recorded_status']} "
                       f"{[round(v, 5) for v in f['recorded_v_camera']]}, replayed {f['replayed_status']} "
                       f"{[round(v, 5) for v in f['replayed_v_camera']]}")
        typer.echo(f"per-cycle comparison: {run_dir / 'replay.jsonl'}")
