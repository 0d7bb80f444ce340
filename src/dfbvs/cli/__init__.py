"""The ``dfbvs`` command line. Each command group lives in its own module of this package and is
registered on :data:`app` in :func:`_register`; heavy imports happen inside the commands.

Help is formatted by click, not rich (``rich_markup_mode=None`` on every ``typer.Typer``): rich's option
table cuts long option names in an 80-column terminal (``--keypointnet-checkp…``), click's layout never does.
Shared pieces: :mod:`._paths` (output paths checked before any work) and :mod:`._options` (``--background``
and the lists of valid names in help texts)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dfbvs",
    help="Deep Feature-Based Visual Servoing: bring a camera to a pose defined on a CAD model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_registered = False


@app.callback()
def _root() -> None:
    """Deep Feature-Based Visual Servoing: bring a camera to a pose defined on a CAD model."""


def _register() -> None:
    """Add every command group to :data:`app` (once; later calls do nothing)."""
    global _registered
    import importlib

    if _registered:
        return
    _registered = True
    for module in ("sim_points_cmd", "render_cmd", "match_cmd", "servo_cmd", "bench_cmd", "robot_cmd", "target_cmd"):
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
