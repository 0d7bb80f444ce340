"""Run one simulated DFBVS episode with config overrides (the ``--set`` syntax of the CLI); prints progress
every 10 cycles and a final summary line. Used for the exploratory variants in docs/servo.md, e.g.

    .venv/bin/python benchmarks/servo_variant.py L servo.tracking.enabled=false stop.converged_px=0.2

Overrides are ``PATH=VALUE`` over :class:`dfbvs.sim.episode.EpisodeConfig` (``dfbvs config show`` lists
them); ``stop.max_iterations`` defaults to 150 here. Writes the run's files to runs/variants/NAME.
"""

import json
import sys

from dfbvs.config import apply_overrides
from dfbvs.sim.episode import EpisodeConfig, run_episode


def episode_config(overrides: list[str]) -> EpisodeConfig:
    """The default episode (150 cycles at most) with ``overrides`` applied."""
    return apply_overrides(EpisodeConfig(), ["stop.max_iterations=150", *overrides])


def main() -> None:
    name = sys.argv[1]
    c = episode_config(sys.argv[2:])

    def progress(cycle):
        if cycle.iteration % 10 == 0:
            step, e = cycle.step, cycle.extras
            print(name, cycle.iteration, step.n_inliers, step.tracking_mode, round(step.mean_error_px, 3),
                  round(e["translation_error_mm"], 2), round(e["rotation_error_deg"], 3), flush=True)

    r = run_episode(c, out_dir=f"runs/variants/{name}", progress=progress)
    print(name, "FINAL", json.dumps(r.summary()))


if __name__ == "__main__":
    main()
