"""What final accuracy do a protocol's goal views allow? The pose precision of each goal, beside what runs reached.

For every goal of a bench protocol (episodes that share a goal share a row) the script renders the target as the
episodes do, prepares it as the default servo does and computes :func:`dfbvs.target.target_precision`: the RMS
pose error of a fit to the keypoints that patch refinement can align, at 0.1 px of the working image per
coordinate (what the aligned patches reach at convergence on the rasterised accuracy18). With ``--results``
(bench ``results.jsonl`` files) it prints each episode's final error beside its goal's precision, so an
accuracy measure can be read against what the images allow. It also checks whether those keypoints are the
part's or its lighting's (:func:`dfbvs.target.light_stability`: how many align within 0.3 camera px on the target
drawn with its key light turned by 20 deg, six directions):

    .venv/bin/python benchmarks/goal_precision.py --protocol parts --results runs/parts-now/results.jsonl

a few seconds per goal (the episode's target render without its shading basis, one feature extraction, six
renders with the key light turned).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from dfbvs.bench.methods import episode_config
from dfbvs.bench.protocols import make_protocol
from dfbvs.config import apply_overrides
from dfbvs.features import build_extractor
from dfbvs.sim.episode import setup_episode
from dfbvs.target import (
    LIGHT_TURN_DEG,
    PRECISION_NOISE_WORKING_PX,
    goal_light_stability,
    prepare_target,
    target_precision,
)


def goal_key(spec) -> tuple:
    """Episodes with the same object, framing and goal share a target (and so a precision)."""
    return spec.object, spec.goal, tuple(o for o in spec.overrides if not o.startswith("scene."))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", default="parts")
    ap.add_argument("--objects", default="bracket,gear,connector")
    ap.add_argument("--noise-px", type=float, default=PRECISION_NOISE_WORKING_PX,
                    help="per-coordinate noise of the aligned points, px of the working image")
    ap.add_argument("--results", nargs="*", default=[], help="bench results.jsonl files to put beside")
    args = ap.parse_args()
    measured: dict[str, list[str]] = defaultdict(list)
    for path in args.results:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                s = r.get("summary") or {}
                if "final_translation_error_mm" in s:
                    measured[r["episode_id"]].append(f"{r['method']} {s['final_translation_error_mm']:.2f} / "
                                                     f"{s['final_rotation_error_deg']:.3f}")
    specs = make_protocol(args.protocol, args.objects.split(","))
    by_goal: dict[tuple, list] = defaultdict(list)
    for spec in specs:
        by_goal[goal_key(spec)].append(spec)
    print("| episodes | goal distance m | alignable keypoints | precision mm / deg (RMS) | worst axis mm / deg |"
          f" holding under a {LIGHT_TURN_DEG:g} deg light turn (median move px) | precision from those mm / deg |"
          " measured final mm / deg |")
    print("|---|---|---|---|---|---|---|---|")
    for group in by_goal.values():
        # relighting off: the precision needs the goal render, not its shading basis (~15 s a goal)
        config = apply_overrides(episode_config(group[0], "dfbvs"), ("servo.relight.enabled=false",))
        setup = setup_episode(config)
        servo = config.servo
        target = prepare_target(setup.target_render, build_extractor(servo.features), servo.working_width_px,
                                servo.working_height_px, servo.refine)
        p = target_precision(target, args.noise_px)
        light = goal_light_stability(target, setup.mesh)
        held = target_precision(target, args.noise_px, only=light.stable)
        distance = float(((setup.T_object_goal[:3, 3] - setup.center_m) ** 2).sum() ** 0.5)
        runs = "; ".join(f"{s.episode_id}: {', '.join(measured[s.episode_id])}" for s in group
                         if measured[s.episode_id])
        print(f"| {', '.join(s.episode_id for s in group)} | {distance:.3f} | {p.n_points} | "
              f"{p.translation_mm:.2f} / {p.rotation_deg:.3f} | {p.worst_translation_mm:.2f} / "
              f"{p.worst_rotation_deg:.3f} | {light.n_stable} of {light.n_points} ({light.median_shift_px:.2f}) | "
              f"{held.translation_mm:.2f} / {held.rotation_deg:.3f} | "
              f"{runs or '-'} |", flush=True)


if __name__ == "__main__":
    main()
