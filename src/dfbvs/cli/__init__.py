"""The ``dfbvs`` command line. Each command group lives in its own module of this package and is
registered on :data:`app` in :func:`_register`; heavy imports happen inside the commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dfbvs",
    help="Deep Feature-Based Visual Servoing: bring a camera to a pose defined on a CAD model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Deep Feature-Based Visual Servoing: bring a camera to a pose defined on a CAD model."""


def _register() -> None:
    import importlib

    for module in ("sim_points_cmd", "render_cmd", "match_cmd", "servo_cmd", "bench_cmd", "robot_cmd"):
        try:
            mod = importlib.import_module(f"dfbvs.cli.{module}")
        except ModuleNotFoundError as exc:  # a command group not written yet
            if exc.name == f"dfbvs.cli.{module}":
                continue
            raise
        mod.register(app)


def main() -> None:
    _register()
    app()
