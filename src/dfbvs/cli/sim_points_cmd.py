"""``dfbvs sim-points``: a classical 4-point IBVS episode (no rendering, no learning)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from ._paths import out_file_callback

    @app.command("sim-points")
    def sim_points(
        law: str = typer.Option("desired", help="Interaction matrix: desired (L*), current (L) or mean."),
        noise_px: float = typer.Option(0.0, help="Std of Gaussian pixel noise on measured features (px)."),
        gain: float = typer.Option(0.5, help="Constant control gain lambda (1/s)."),
        seed: int = typer.Option(0, help="Random seed for the noise."),
        json_out: Optional[Path] = typer.Option(None, "--json", callback=out_file_callback,
                                                help="Write the summary as JSON to this file."),
    ) -> None:
        """Run a 4-point IBVS episode (camera 0.5 m above a 10 cm square, start ~10 cm / ~30 deg away)."""
        from ..control import GainConfig, IBVSConfig, InteractionChoice
        from ..sim.points import PointEpisodeConfig, run_point_episode

        try:
            choice = InteractionChoice(law)
        except ValueError:
            raise typer.BadParameter(f"--law {law!r}: choose one of {[c.value for c in InteractionChoice]}") from None
        if noise_px < 0:
            raise typer.BadParameter(f"--noise-px {noise_px!r}: must be >= 0")
        control = IBVSConfig(interaction=choice, gain=GainConfig(gain, gain), max_linear_m_s=0.2,
                                max_angular_rad_s=1.0)
        config = PointEpisodeConfig(pixel_noise_px=noise_px, seed=seed, control=control,
                                    max_iterations=1500 if noise_px == 0 else 400)
        result = run_point_episode(config)
        summary = {"law": choice.value, "noise_px": noise_px, **result.summary()}
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(summary, indent=2) + "\n")
        typer.echo(
            f"{'converged' if result.converged else 'NOT converged'} after {result.iterations} iterations "
            f"(law={choice.value}, noise={noise_px} px): final mean error {result.final_mean_px_error:.4f} px, "
            f"pose error {result.final_translation_error_mm:.4f} mm / {result.final_rotation_error_deg:.4f} deg")
        if not result.converged:
            raise typer.Exit(code=1)
