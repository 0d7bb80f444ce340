"""Run one simulated DFBVS episode with config overrides given as JSON; prints progress every 10 cycles and a
final summary line. Used for the exploratory variants in docs/servo.md, e.g.

    .venv/bin/python benchmarks/servo_variant.py L '{"tracking": {"enabled": false}, "stop": {"converged_px": 0.2}}'

Keys: "servo" (ServoConfig fields), "tracking", "refine" (RefineConfig), "control", "stop", "scene", "goal"
(GoalConfig), "iters" (max iterations, default 150), and any other EpisodeConfig field (e.g. "seed").
Writes the run's files to runs/variants/NAME.
"""

import json
import sys
from dataclasses import replace

from dfbvs.sim.episode import EpisodeConfig, GoalConfig, run_episode


def episode_config(overrides: dict) -> EpisodeConfig:
    """The default episode with the JSON-style ``overrides`` (keys as in this module's docstring) applied."""
    kw = dict(overrides)
    c = EpisodeConfig()
    servo = c.servo
    if "tracking" in kw:
        servo = replace(servo, tracking=replace(servo.tracking, **kw.pop("tracking")))
    if "refine" in kw:
        servo = replace(servo, refine_config=replace(servo.refine_config, **kw.pop("refine")))
    if "control" in kw:
        servo = replace(servo, control=replace(servo.control, **kw.pop("control")))
    if "servo" in kw:
        servo = replace(servo, **kw.pop("servo"))
    if "scene" in kw:
        c = replace(c, scene=replace(c.scene, **kw.pop("scene")))
    if "goal" in kw:
        c = replace(c, goal=GoalConfig(**kw.pop("goal")))
    stop = replace(c.stop, max_iterations=kw.pop("iters", 150), **kw.pop("stop", {}))
    return replace(c, servo=servo, stop=stop, **kw)


def main() -> None:
    name = sys.argv[1]
    c = episode_config(json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))

    def progress(it, step, t_err, r_err):
        if it % 10 == 0:
            print(name, it, step.n_inliers, step.tracking, round(step.mean_error_px, 3), round(t_err * 1e3, 2),
                  round(r_err * 57.2958, 3), flush=True)

    r = run_episode(c, out_dir=f"runs/variants/{name}", progress=progress)
    print(name, "FINAL", json.dumps(r.summary()))


if __name__ == "__main__":
    main()
