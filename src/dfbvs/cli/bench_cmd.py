"""``dfbvs bench run`` and ``dfbvs bench report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

RETRY_HELP = ("On a re-run into the same --out, run again the episodes whose last attempt ended with an error "
              "(default); --no-retry-errors keeps those errors as results. Every attempt stays in results.jsonl.")


def select_episodes(specs: list, patterns: str) -> list:
    """The specs whose episode id matches one of the comma-separated ``patterns`` (fnmatch); a pattern that
    matches none is a ValueError naming it and a few of the ids."""
    import fnmatch

    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    ids = [s.episode_id for s in specs]
    for pattern in wanted:
        if not fnmatch.filter(ids, pattern):
            raise ValueError(f"--episodes {pattern!r} matches no episode of the protocol; ids are e.g. "
                             f"{', '.join(ids[:4])}")
    return [s for s in specs if any(fnmatch.fnmatchcase(s.episode_id, p) for p in wanted)]


def register(app: typer.Typer) -> None:
    from ..bench.methods import FLAGS, TRACKING_FLAGS
    from ._options import (
        background_option,
        extractor_names,
        mesh_unit_callback,
        mesh_unit_names,
        object_help,
        protocol_names,
        scene_renderer_option,
        target_renderer_option,
    )
    from ._paths import existing_out_dir_callback, out_dir_callback

    bench = typer.Typer(help="Benchmarks: the paper's experiments in simulation, with baselines.",
                        no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(bench, name="bench")

    @bench.command("run")
    def run(
        protocol: str = typer.Option(..., help=f"Protocol: {protocol_names()}."),
        methods: str = typer.Option("dfbvs", help="Comma-separated: dfbvs[-<extractor>][-<flag>...], "
                                    "tracking[-<extractor>][-<flag>...] or photometric; extractors: "
                                    f"{extractor_names()}; flags: {', '.join(FLAGS)}; tracking flags: "
                                    f"{', '.join(TRACKING_FLAGS)}."),
        objects: Optional[str] = typer.Option(None, help=object_help("Comma-separated built-in objects") +
                                              " Default: bracket, gear, connector (the parts protocol: its own "
                                              "parts, or the --mesh files)."),
        mesh: Optional[list[Path]] = typer.Option(None, help="User meshes in place of the built-in objects."),
        mesh_unit: Optional[str] = typer.Option(None, callback=mesh_unit_callback,
                                                help=f"Unit of the --mesh files: {mesh_unit_names()} "
                                                     "(default: m)."),
        background: Optional[list[str]] = background_option(None),
        episodes_per_batch: Optional[int] = typer.Option(
            None, help="distance-sweep: episodes per batch; wide / perturb: episodes per object."),
        max_iterations: Optional[int] = typer.Option(None, help="Cycles per episode before timeout "
                                                     "(= --set stop.max_iterations=N; default 300)."),
        keypointnet_checkpoint: Optional[Path] = typer.Option(None, help="KP2D checkpoint for dfbvs-keypointnet."),
        workers: int = typer.Option(2, help="Parallel worker processes (or Ray CPUs)."),
        executor: str = typer.Option("local", help="local or ray."),
        address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local one)."),
        save_episodes: bool = typer.Option(False, help="Also write each episode's trajectory, plot and video."),
        retry_errors: bool = typer.Option(True, "--retry-errors/--no-retry-errors", help=RETRY_HELP),
        robot: Optional[str] = typer.Option(None, help="ur5e: every method on the simulated UR5e, grasping after "
                                            "convergence (= --set robot.kind=ur5e --set robot.grasp=true); "
                                            "or compare side by side with the -ur5e / -ur5eerr method flags."),
        episodes: Optional[str] = typer.Option(None, help="Run only these episodes of the protocol: comma-separated "
                                               "ids or shell patterns (e.g. '*-T1'); the same folder can take the "
                                               "others later."),
        scene_renderer: Optional[str] = scene_renderer_option(),
        target_renderer: Optional[str] = target_renderer_option(),
        seed: int = typer.Option(0, help="Protocol seed."),
        set_: Optional[list[str]] = typer.Option(None, "--set", help="Config override PATH=VALUE for every "
                                                 "episode, applied after the method's (see `dfbvs config`)."),
        out: Path = typer.Option(..., callback=out_dir_callback,
                                 help="Output folder. It belongs to one protocol and option set (run.json): "
                                      "re-running with the same options resumes, with others is refused."),
    ) -> None:
        """Run a protocol for the given methods on identical episodes; resumable.

        Exits with 1 when an episode ended with an error (the error text is in the `error` field of
        results.jsonl and in report.md), with 2 on bad input or a results folder of another run.
        """
        from ..bench.protocols import make_protocol
        from ..bench.report import write_report
        from ..bench.results import merge_run_options, write_run_options
        from ..bench.runner import errored, make_jobs, pending_jobs, run_jobs
        from ..errors import ResultsFileError
        from ..render import builtin_object_names
        from ._options import mesh_paths_exist

        mesh_paths_exist(mesh)
        # a mesh by its absolute path: the same file named relatively or absolutely is the same run's object
        names = [str(m.resolve()) for m in mesh] if mesh else (objects.split(",") if objects else
                                                                builtin_object_names())
        if mesh and objects:
            raise typer.BadParameter("give --objects or --mesh, not both")
        if mesh_unit is not None and not mesh:
            raise typer.BadParameter(f"--mesh-unit {mesh_unit!r}: applies to --mesh files only")
        for n in names if not mesh else []:
            if n not in builtin_object_names(hard_parts=True):
                raise typer.BadParameter(f"--objects: {n!r} is not built in; built-in: "
                                         f"{builtin_object_names(hard_parts=True)}")
        if executor not in ("local", "ray"):
            raise typer.BadParameter(f"--executor {executor!r}: use local or ray")
        if workers < 1:
            raise typer.BadParameter(f"--workers {workers}: must be >= 1")
        method_names = [m.strip() for m in methods.split(",") if m.strip()]
        if robot not in (None, "free", "ur5e"):
            raise typer.BadParameter(f"--robot {robot!r}: use free or ur5e")
        if robot == "ur5e":
            set_ = ["robot.kind=ur5e", "robot.grasp=true", *(set_ or [])]
        if scene_renderer is not None:
            set_ = [f"scene.renderer={scene_renderer}", *(set_ or [])]
        if target_renderer is not None:
            set_ = [f"target_renderer={target_renderer}", *(set_ or [])]
        options: dict[str, object] = {}
        if protocol == "parts" and mesh_unit is not None:
            options["mesh_unit"] = mesh_unit
        if episodes_per_batch is not None:
            key = "episodes_per_batch" if protocol == "distance-sweep" else "episodes_per_object"
            options[key] = episodes_per_batch
        try:
            specs = make_protocol(protocol, names, backgrounds=background, seed=seed, **options)
            used = list(dict.fromkeys(s.object for s in specs))  # what the protocol ran: parts brings its own
            if episodes is not None:
                specs = select_episodes(specs, episodes)
            overrides = [f"stop.max_iterations={max_iterations}"] if max_iterations is not None else []
            overrides += [f"mesh_unit={mesh_unit}"] if mesh_unit is not None else []
            overrides += set_ or []
            jobs = make_jobs(specs, method_names, overrides,
                             str(keypointnet_checkpoint) if keypointnet_checkpoint else None)
        except (ValueError, TypeError) as exc:
            raise typer.BadParameter(str(exc)) from None
        run_options = {"protocol": protocol, "methods": method_names, "objects": used, "mesh_unit": mesh_unit,
                       "backgrounds": background, "seed": seed, "options": options,
                       "max_iterations": max_iterations, "overrides": set_ or [],
                       "keypointnet_checkpoint": str(keypointnet_checkpoint) if keypointnet_checkpoint else None}
        try:  # every refusal happens here, before anything in --out is written
            accepted = merge_run_options(out, run_options)
            pending_jobs(jobs, out / "results.jsonl", retry_errors)
        except ResultsFileError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        write_run_options(out, accepted)

        def progress(i, n, rec):
            s = rec["summary"]
            what = (f"{s['status']:9s} {s['final_translation_error_mm']:8.3f} mm "
                    f"{s['final_mean_px_error'] or float('nan'):6.2f} px"
                    if s else f"ERROR {rec['error']}")
            typer.echo(f"[{i}/{n}] {rec['key']:40s} {what}", err=True)

        def warn(message: str) -> None:
            typer.echo(f"warning: {message}", err=True)

        try:
            n = run_jobs(jobs, out, workers=workers, executor=executor, address=address,
                         save_episodes=save_episodes, progress=progress, retry_errors=retry_errors, warn=warn)
        except ResultsFileError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo(f"interrupted: every finished episode is in {out / 'results.jsonl'}; re-run the same command "
                       "to run the rest", err=True)
            raise typer.Exit(code=130) from None
        typer.echo(f"ran {n} episodes ({len(jobs) - n} already done); report: {write_report(out, protocol)}")
        failed = errored(jobs, out / "results.jsonl")
        if failed:
            typer.echo(f"error: {len(failed)} of {len(jobs)} episodes ended with an error (first: {failed[0]['key']}: "
                       f"{failed[0]['error']}); the error text is in the 'error' field of "
                       f"{out / 'results.jsonl'} and in {out / 'report.md'}"
                       + (". Re-run the same command to retry them" if retry_errors
                          else "; --no-retry-errors kept them: re-run without it to retry them") + ".", err=True)
            raise typer.Exit(code=1)

    @bench.command("report")
    def report(out_dir: Path = typer.Argument(..., callback=existing_out_dir_callback, metavar="OUT_DIR",
                                              help="A bench run folder (report.md is written into it).")) -> None:
        """Write report.md (and success_vs_distance.png) from a run's results.jsonl."""
        from ..bench.report import write_report
        from ..errors import ResultsFileError

        if not (out_dir / "results.jsonl").is_file():
            raise typer.BadParameter(f"{str(out_dir)!r} has no results.jsonl")
        from ..bench.results import has_cut_short_line

        if has_cut_short_line(out_dir / "results.jsonl"):
            typer.echo(f"warning: the last line of {out_dir / 'results.jsonl'} is cut short (a run stopped mid-write): "
                       "its episode is left out; `dfbvs bench run` with the same options re-runs it", err=True)
        try:
            typer.echo(str(write_report(out_dir)))
        except ResultsFileError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
