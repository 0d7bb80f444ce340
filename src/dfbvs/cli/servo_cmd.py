"""``dfbvs sim`` (one simulated DFBVS episode) and ``dfbvs demo`` (the paper's scenario with defaults)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer


def _scene(background: str, distractors: Optional[int], seed: int):
    """The scene of ``--background`` (already canonical, see :mod:`._options`) with ``--distractors``."""
    from ..bench.methods import scene_for_background
    from ..errors import ConfigError

    try:
        scene = scene_for_background(background, seed)
    except ConfigError as exc:
        raise typer.BadParameter(f"--background {str(exc).removeprefix('background ')}") from None
    if distractors is not None:
        if distractors < 0:
            raise typer.BadParameter(f"--distractors {distractors}: must be >= 0")
        scene = replace(scene, n_distractors=distractors)
    return scene


def _run_and_report(config, out: Path, live_view: Optional[str] = None) -> None:
    from rich.console import Console

    from ..sim.episode import run_episode

    console = Console(stderr=True)
    with console.status("preparing target (render + features)...") as status:
        def progress(cycle):
            step, e = cycle.step, cycle.extras
            status.update(f"it {cycle.iteration:3d}  {step.status.value:16s} inliers {step.n_inliers:3d}  "
                          f"error {step.mean_error_px:7.2f} px  pose {e['translation_error_mm']:6.2f} mm "
                          f"{e['rotation_error_deg']:5.2f} deg  {'tracking' if step.tracking_mode else ''}")
        try:
            result = run_episode(config, out_dir=out, progress=progress, live_view=live_view)
        except KeyboardInterrupt:
            typer.echo(f"interrupted: the cycles run so far are in {out / 'trajectory.jsonl'} (written as they ran); "
                       "no summary.json", err=True)
            raise typer.Exit(code=130) from None
    from ._options import px_text

    s = result.summary()
    typer.echo(
        f"{s['status'].upper()} after {s['iterations']} iterations: start {s['initial_translation_mm']:.1f} mm / "
        f"{s['initial_rotation_deg']:.1f} deg from the goal, final {s['final_translation_error_mm']:.3f} mm / "
        f"{s['final_rotation_error_deg']:.3f} deg, mean correspondence error {px_text(s['final_mean_px_error'])} "
        f"({s['final_n_inliers']} inliers), median cycle {s['median_cycle_ms']:.0f} ms")
    if not result.converged and s["final_step_status"] and s["final_step_status"] != "ok":
        typer.echo(f"last step: {s['final_step_status']}" + (f": {s['final_reason']}" if s["final_reason"] else ""))
    if s.get("symmetry_order", 1) > 1 or s.get("lock") == "false lock":  # docs/symmetry.md
        typer.echo(f"modulo the object's symmetry ({s['symmetry_order']} equivalent goals): "
                   f"{s['final_translation_error_mm_sym']:.3f} mm / {s['final_rotation_error_deg_sym']:.3f} deg from "
                   f"equivalent {s['symmetric_equivalent']}" + (f"; lock: {s['lock']}" if s["lock"] else ""))
    if s["robot_stats"]:
        r = s["robot_stats"]
        typer.echo(f"arm: {r['commands_sent']} commands sent, {r['commands_scaled']} scaled by the safety layer"
                   + (f"; stopped: {r['fault']}" if r["fault"] else ""))
    if s["grasp_success"] is not None:
        g = s["grasp_error"]
        typer.echo(f"grasp: {'SUCCESS' if s['grasp_success'] else 'MISS'} " + (
            f"(lateral {g['lateral_mm']:.2f} mm, axial {g['axial_mm']:.2f} mm, {g['rotation_deg']:.2f} deg)"
            if "lateral_mm" in g else f"({g.get('reason', '')})"))
    stages = ", ".join(f"{k[:-3]} {v:.0f}" for k, v in s["median_stage_ms"].items() if k != "total_ms")
    typer.echo(f"median stage times (ms): {stages}")
    for name in ("summary.json", "trajectory.jsonl", "config.json", "profile.png", "servo.gif"):
        typer.echo(f"  {out / name}")
    if not result.converged:
        raise typer.Exit(code=1)


SET_HELP = ("Config override PATH=VALUE, repeatable, applied after the options above, e.g. "
            "--set servo.refine.window_px=15 --set servo.features=disk (see `dfbvs config`).")


def preset_help() -> str:
    """Help of ``--preset``, listing the presets of :data:`dfbvs.config.PRESETS`."""
    from ..config import PRESETS

    return f"Named set of overrides applied first: {', '.join(PRESETS)}."


def configured(base, preset: Optional[str], options: list[str], overrides: Optional[list[str]]):
    """``base`` with the preset, the command's own options (as overrides) and the user's ``--set``
    overrides, in that order; a bad one becomes a usage error naming it."""
    from ..config import apply_overrides, apply_preset
    from ..errors import ConfigError

    try:
        config = apply_preset(base, preset) if preset else base
        return apply_overrides(config, [*options, *(overrides or [])])
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def register(app: typer.Typer) -> None:
    from ._options import (
        background_option,
        check_object_or_mesh,
        extractor_names,
        mesh_unit_callback,
        mesh_unit_names,
        object_help,
        scene_renderer_option,
        target_renderer_option,
    )
    from ._paths import out_dir_callback

    presets = preset_help()

    def _goal_config(goal: Optional[str], look_at: Optional[str], grasp_pose: Optional[Path],
                     hand_eye: Optional[Path], standoff: float):
        """The goal of ``dfbvs sim``'s options: a pose file (``--goal FILE``), a grasp and a hand-eye, or the
        look-at point (the look-at angles come as overrides)."""
        import numpy as np

        from ..calibration import load_hand_eye, load_rigid_transform
        from ..errors import DfbvsError
        from ..robot.grasp import camera_goal_from_grasp
        from ..sim.episode import GoalConfig

        goal_file = goal is not None and "," not in goal
        if (hand_eye is None) != (grasp_pose is None):
            raise typer.BadParameter("--grasp-pose and --hand-eye go together (the goal camera is derived from both)")
        if grasp_pose is not None and (goal is not None or look_at is not None):
            raise typer.BadParameter("--grasp-pose gives the goal pose: --goal and --look-at would be ignored")
        if goal_file and look_at is not None:
            raise typer.BadParameter(f"--goal {goal!r} gives the goal pose: --look-at would be ignored")
        if not standoff > 0:
            raise typer.BadParameter(f"--standoff {standoff!r}: the tool's distance back from the grasp, > 0 m")
        try:
            if goal_file:
                T = load_rigid_transform(Path(str(goal)), "T_object_camera")
            elif grasp_pose is not None:
                T = camera_goal_from_grasp(load_rigid_transform(grasp_pose, "T_object_tool"),
                                           load_hand_eye(hand_eye), standoff)  # type: ignore[arg-type]
            else:
                T = None
        except DfbvsError as exc:
            raise typer.BadParameter(str(exc)) from None
        point = None
        if look_at is not None:
            try:
                point = tuple(float(x) for x in look_at.split(","))
                assert len(point) == 3 and all(np.isfinite(point))
            except (ValueError, AssertionError):
                raise typer.BadParameter(f"--look-at {look_at!r}: expected x,y,z in metres") from None
        given = None if T is None else tuple(tuple(float(x) for x in row) for row in T)
        return GoalConfig(look_at_m=point, T_object_camera_given=given)  # type: ignore[arg-type]

    @app.command("sim")
    def sim(
        object_name: Optional[str] = typer.Option(None, "--object", help=object_help()),
        mesh: Optional[Path] = typer.Option(None, help="Your CAD mesh (STL, OBJ, PLY, glTF/GLB)."),
        mesh_unit: Optional[str] = typer.Option(None, callback=mesh_unit_callback,
                                                help=f"Unit of the mesh file: {mesh_unit_names()} (default: m)."),
        goal: Optional[str] = typer.Option(None, help="Goal camera: 'distance_m,azimuth,elevation,roll' (deg) "
                                           "around the object's centre (or --look-at), or a file with the 4x4 "
                                           "T_object_camera (JSON, YAML, .npy, .txt; metres). Default: a built-in "
                                           "object from 0.22,30,60,0, a --mesh framed (goal.fill_ratio)."),
        look_at: Optional[str] = typer.Option(None, help="x,y,z (m, object frame): the point the goal camera "
                                              "looks at, instead of the object's centre."),
        grasp_pose: Optional[Path] = typer.Option(None, help="The grasp T_object_tool (4x4 file): the goal camera "
                                                  "is where the camera is when the tool stands --standoff back "
                                                  "from it (needs --hand-eye)."),
        hand_eye: Optional[Path] = typer.Option(None, help="T_tool_camera (4x4 file, metres), with --grasp-pose."),
        standoff: float = typer.Option(0.12, help="--grasp-pose: the tool's distance back from the grasp (m)."),
        start_offset_mm: Optional[float] = typer.Option(None, help="Start translation from the goal (mm; "
                                                        "= start.offset_mm, default 50)."),
        start_offset_deg: Optional[float] = typer.Option(None, help="Start rotation from the goal (deg; "
                                                         "= start.offset_deg, default 8)."),
        background: str = background_option("cluttered"),
        distractors: Optional[int] = typer.Option(None, help="Number of distractor objects."),
        scene_renderer: Optional[str] = scene_renderer_option(),
        target_renderer: Optional[str] = target_renderer_option(),
        features: Optional[str] = typer.Option(None, help=f"Feature extractor: {extractor_names()} "
                                               "(= --set servo.features=NAME)."),
        sensor: str = typer.Option("640x480", help="Simulated sensor size WIDTHxHEIGHT (same ~34 deg lens); "
                                   "features are found at 320x240 and refined at this size."),
        tracking: Optional[bool] = typer.Option(None, "--tracking/--no-tracking",
                                                help="Tracking mode near the goal (paper IV-D)."),
        keypointnet_checkpoint: Optional[Path] = typer.Option(None, help="KP2D checkpoint for --features keypointnet."),
        max_iterations: Optional[int] = typer.Option(None, help="Stop after this many cycles (= stop.max_iterations)."),
        robot: Optional[str] = typer.Option(None, help="free (the ideal free-flying camera, default) or ur5e (a "
                                            "simulated UR5e over the RTDE code path; = robot.kind)."),
        live_view: Optional[str] = typer.Option(None, help="Log the run to rerun: a .rrd file, or spawn (a viewer; "
                                                "needs a display). Off by default."),
        grasp: bool = typer.Option(False, "--grasp", help="With --robot ur5e: grasp after converging and score it "
                                   "(summary.json: grasp_success, grasp_error)."),
        rgbd: bool = typer.Option(False, "--rgbd", help="The camera is an RGB-D camera: frames carry a simulated "
                                  "stereo depth (= depth_sensor.enabled), which serves a goal view whose keypoints "
                                  "are the part's shading (servo.depth; docs/parts.md)."),
        seed: int = typer.Option(0, help="Seed of the scene and the start pose."),
        preset: Optional[str] = typer.Option(None, help=presets),
        set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
        out: Path = typer.Option(..., callback=out_dir_callback, help="Output directory."),
    ) -> None:
        """Run one simulated DFBVS episode and write its summary, trajectory, plots and video."""
        from ..camera import Camera
        from ..sim.episode import EpisodeConfig

        check_object_or_mesh(object_name, mesh)
        options = []  # each option of this command is an override of the episode config
        goal_config = _goal_config(goal, look_at, grasp_pose, hand_eye, standoff)
        if goal is None and mesh is not None and goal_config.T_object_camera_given is None:
            options.append("goal.distance_m=none")  # a user mesh: look at its centre from where it fits the image
        if goal is not None and goal_config.T_object_camera_given is None:
            values = goal.split(",")
            if len(values) != 4:
                raise typer.BadParameter(f"--goal {goal!r}: expected 'distance_m,azimuth_deg,elevation_deg,roll_deg' "
                                         "or the path of a file with the 4x4 T_object_camera")
            options += [f"goal.{k}={v}" for k, v in zip(("distance_m", "azimuth_deg", "elevation_deg", "roll_deg"),
                                                          values)]
        try:
            width, height = (int(x) for x in sensor.lower().split("x"))
        except (ValueError, TypeError):
            raise typer.BadParameter(f"--sensor {sensor!r}: expected WIDTHxHEIGHT with positive integers, "
                                     f"e.g. 640x480") from None
        try:  # the same lens at another resolution: another aspect would make non-square pixels
            camera = Camera.default().rescaled(width, height)
        except ValueError as exc:
            raise typer.BadParameter(f"--sensor {sensor!r}: {exc}") from None
        for path, value in (("mesh_unit", mesh_unit), ("start.offset_mm", start_offset_mm),
                            ("start.offset_deg", start_offset_deg), ("servo.features", features),
                            ("servo.features.checkpoint_path", keypointnet_checkpoint),
                            ("servo.tracking.enabled", tracking), ("stop.max_iterations", max_iterations),
                            ("robot.kind", robot), ("robot.grasp", "true" if grasp else None),
                            ("depth_sensor.enabled", "true" if rgbd else None),
                            ("scene.renderer", scene_renderer), ("target_renderer", target_renderer)):
            if value is not None:
                options.append(f"{path}={value}")
        base = replace(EpisodeConfig(), object_name=object_name or "custom", mesh_path=str(mesh) if mesh else None,
                       scene=_scene(background, distractors, seed), seed=seed, camera=camera, goal=goal_config)
        config = configured(base, preset, options, set_)
        try:
            _run_and_report(config, out, live_view)
        except (ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    @app.command("demo")
    def demo(out: Path = typer.Option(Path("runs/demo"), callback=out_dir_callback, help="Output directory."),
             preset: Optional[str] = typer.Option(None, help=presets),
             set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP)) -> None:
        """The paper's scenario: a built-in unseen object on a cluttered table, start ~5 cm / ~8 deg away."""
        from ..sim.episode import EpisodeConfig

        _run_and_report(configured(EpisodeConfig(), preset, [], set_), out)

    @app.command("config")
    def config_show(preset: Optional[str] = typer.Option(None, help=presets),
                    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
                    as_json: bool = typer.Option(False, "--json", help="The config as config.json stores it.")) -> None:
        """Every setting of a simulated run (path, type, value): what --set can change."""
        import json

        from ..config import describe, settings
        from ..sim.episode import EpisodeConfig

        config = configured(EpisodeConfig(), preset, [], set_)
        if as_json:
            typer.echo(json.dumps(describe(config), indent=2))
            return
        for path, kind, value in settings(config):
            typer.echo(f"{path} = {json.dumps(value)}    [{kind}]")
