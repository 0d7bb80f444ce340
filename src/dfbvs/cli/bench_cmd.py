"""``dfbvs bench run`` and ``dfbvs bench report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="Benchmarks: the paper's experiments in simulation, with baselines.",
                        no_args_is_help=True)
    app.add_typer(bench, name="bench")

    @bench.command("run")
    def run(
        protocol: str = typer.Option(..., help="accuracy18, distance-sweep, wide or tiny."),
        methods: str = typer.Option("dfbvs", help="Comma-separated: dfbvs[-<extractor>]"
                                    "[-track|-prevtrack|-notrack|-norefine|-noguide|-coarse], photometric."),
        objects: Optional[str] = typer.Option(None, help="Comma-separated built-in names (default: all)."),
        mesh: Optional[list[Path]] = typer.Option(None, help="User meshes in place of the built-in objects."),
        background: Optional[list[str]] = typer.Option(None, help="similar, cluttered or image paths."),
        episodes_per_batch: Optional[int] = typer.Option(None, help="distance-sweep / wide: episodes per batch."),
        max_iterations: Optional[int] = typer.Option(None, help="Cycles per episode before timeout "
                                                     "(= --set stop.max_iterations=N; default 300)."),
        keypointnet_checkpoint: Optional[Path] = typer.Option(None, help="KP2D checkpoint for dfbvs-keypointnet."),
        workers: int = typer.Option(2, help="Parallel worker processes (or Ray CPUs)."),
        executor: str = typer.Option("local", help="local or ray."),
        address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local one)."),
        save_episodes: bool = typer.Option(False, help="Also write each episode's trajectory, plot and video."),
        seed: int = typer.Option(0, help="Protocol seed."),
        set_: Optional[list[str]] = typer.Option(None, "--set", help="Config override PATH=VALUE for every "
                                                 "episode, applied after the method's (see `dfbvs config show`)."),
        out: Path = typer.Option(..., help="Output directory (re-running resumes)."),
    ) -> None:
        """Run a protocol for the given methods on identical episodes; resumable."""
        from ..bench.protocols import make_protocol
        from ..bench.report import write_report
        from ..bench.runner import ConfigMismatch, make_jobs, run_jobs
        from ..render import builtin_object_names

        names = [str(m) for m in mesh] if mesh else (objects.split(",") if objects else builtin_object_names())
        for m in mesh or []:
            if not m.is_file():
                raise typer.BadParameter(f"--mesh {str(m)!r}: no such file")
        for n in names if not mesh else []:
            if n not in builtin_object_names():
                raise typer.BadParameter(f"--objects: {n!r} is not built in; built-in: {builtin_object_names()}")
        if executor not in ("local", "ray"):
            raise typer.BadParameter(f"--executor {executor!r}: use local or ray")
        options = {}
        if episodes_per_batch is not None:
            key = "episodes_per_batch" if protocol == "distance-sweep" else "episodes_per_object"
            options[key] = episodes_per_batch
        try:
            specs = make_protocol(protocol, names, backgrounds=background, seed=seed, **options)
            overrides = [f"stop.max_iterations={max_iterations}"] if max_iterations is not None else []
            overrides += set_ or []
            jobs = make_jobs(specs, [m.strip() for m in methods.split(",") if m.strip()], overrides,
                             str(keypointnet_checkpoint) if keypointnet_checkpoint else None)
        except (ValueError, TypeError) as exc:
            raise typer.BadParameter(str(exc)) from None
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps({"protocol": protocol, "methods": methods, "objects": names,
                                                  "backgrounds": background, "seed": seed, "options": options,
                                                  "max_iterations": max_iterations, "overrides": set_ or []},
                                                 indent=2) + "\n")

        def progress(i, n, rec):
            s = rec["summary"]
            what = (f"{s['status']:9s} {s['final_translation_error_mm']:8.3f} mm "
                    f"{s['final_mean_px_error'] or float('nan'):6.2f} px"
                    if s else f"ERROR {rec['error']}")
            typer.echo(f"[{i}/{n}] {rec['key']:40s} {what}", err=True)

        try:
            n = run_jobs(jobs, out, workers=workers, executor=executor, address=address,
                         save_episodes=save_episodes, progress=progress)
        except ConfigMismatch as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        typer.echo(f"ran {n} episodes ({len(jobs) - n} already done); report: {write_report(out, protocol)}")

    @bench.command("report")
    def report(out_dir: Path = typer.Argument(..., help="A bench run directory.")) -> None:
        """Write report.md (and success_vs_distance.png) from a run's results.jsonl."""
        from ..bench.report import write_report

        if not (out_dir / "results.jsonl").is_file():
            raise typer.BadParameter(f"{str(out_dir)!r} has no results.jsonl")
        typer.echo(str(write_report(out_dir)))
