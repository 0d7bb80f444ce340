"""How does acquisition do on each episode's first frame? One servo cycle per (episode, variant), side by side.

For every selected bench episode the script renders the start frame exactly as the episode's first frame (same
scene, seed, sensor effects), runs one servo cycle on it per variant (a fresh servo each, so nothing carries over)
and records the status, descriptor matches, inliers and the error of the cycle's PnP pose against the truth
(``T_current_target`` from the known start and goal poses). Seconds per frame instead of minutes per episode:
it compares acquisition ideas (matchers, keypoint budgets) on the starts where episodes fail, not the episodes.

    .venv/bin/python benchmarks/acquisition_frames.py --protocol parts \\
        --variant mnn '' --variant mnn2k 'servo.live_max_keypoints=2000' \\
        --variant lightglue 'servo.matcher=lightglue' --out runs/acq-parts.jsonl

A variant is a name and a space-separated list of ``PATH=VALUE`` overrides of the episode config (``--set``
syntax). Results are appended to ``--out`` (JSON lines) as they come; the table is printed at the end.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import time
from pathlib import Path

import numpy as np

from dfbvs.bench.methods import episode_config
from dfbvs.bench.protocols import make_protocol
from dfbvs.geometry import inverse, pose_error
from dfbvs.render.scene import render_scene
from dfbvs.servo import build_servo
from dfbvs.sim.episode import setup_episode

#: a first pose this close to the truth is one the loop can start from (what the table counts as a good lock)
GOOD_LOCK_MM, GOOD_LOCK_DEG = 10.0, 3.0


def first_cycles(spec, variants: dict[str, list[str]]) -> list[dict]:
    """One servo cycle per variant on the start frame of bench episode ``spec``."""
    base = episode_config(spec, "dfbvs")
    setup = setup_episode(base)
    target, T_object_goal, T_object_start = setup.target_render, setup.T_object_goal, setup.T_object_start
    frame = render_scene(setup.scene, base.camera, T_object_start).rgb
    T_current_target_true = inverse(T_object_start) @ T_object_goal
    records = []
    for name, overrides in variants.items():
        # one cycle judged on its own checks: no waiting for a second cycle to confirm it (servo.lock.confirm)
        servo = build_servo(episode_config(spec, "dfbvs", [*overrides, "servo.lock.confirm=false"]).servo, target)
        t0 = time.perf_counter()
        step = servo.step(frame, 0.0)
        ms = (time.perf_counter() - t0) * 1e3
        mm = deg = None
        if step.T_current_target is not None:
            t_m, r_rad = pose_error(step.T_current_target, T_current_target_true)
            mm, deg = t_m * 1e3, float(np.rad2deg(r_rad))
        records.append({"episode": spec.episode_id, "variant": name, "status": step.status.value,
                        "matches": len(step.all_matches), "inliers": step.n_inliers, "pose_error_mm": mm,
                        "pose_error_deg": deg, "cycle_ms": ms})
    return records


def table(records: list[dict]) -> str:
    """Markdown: one row per episode, one column per variant, then the counts."""
    variants = list(dict.fromkeys(r["variant"] for r in records))
    episodes = list(dict.fromkeys(r["episode"] for r in records))
    by = {(r["episode"], r["variant"]): r for r in records}

    def good(r) -> bool:
        return (r["status"] == "ok" and r["pose_error_mm"] is not None and r["pose_error_mm"] < GOOD_LOCK_MM
                and r["pose_error_deg"] < GOOD_LOCK_DEG)

    def cell(r) -> str:
        if r is None:
            return "-"
        pose = ("no pose" if r["pose_error_mm"] is None
                else f"{r['pose_error_mm']:.1f} mm / {r['pose_error_deg']:.1f} deg")
        status = "**OK**" if r["status"] == "ok" else r["status"].replace("_", " ")
        return f"{status} {r['inliers']}/{r['matches']}, {pose}"

    lines = ["| start frame | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    lines += [f"| {e} | " + " | ".join(cell(by.get((e, v))) for v in variants) + " |" for e in episodes]
    n = len(episodes)
    for label, pick in (("locked (OK)", lambda r: r["status"] == "ok"),
                        (f"locked within {GOOD_LOCK_MM:g} mm / {GOOD_LOCK_DEG:g} deg", good)):
        lines.append(f"| {label} | " + " | ".join(
            f"{sum(1 for e in episodes if (e, v) in by and pick(by[(e, v)]))}/{n}" for v in variants) + " |")
    medians = [float(np.median([by[(e, v)]["cycle_ms"] for e in episodes if (e, v) in by])) for v in variants]
    lines.append("| median cycle ms | " + " | ".join(f"{m:.0f}" for m in medians) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--protocol", default="parts")
    ap.add_argument("--objects", default="bracket,gear,connector", help="the protocol's objects (parts: ignored)")
    ap.add_argument("--episodes", default="*", help="comma-separated ids or shell patterns")
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), required=True)
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, appended")
    args = ap.parse_args()
    variants = {name: overrides.split() for name, overrides in args.variant}
    patterns = args.episodes.split(",")
    specs = [s for s in make_protocol(args.protocol, args.objects.split(","))
             if any(fnmatch.fnmatch(s.episode_id, p) for p in patterns)]
    if not specs:
        raise SystemExit(f"no episode of {args.protocol} matches --episodes {args.episodes!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    with args.out.open("a") as out:
        for spec in specs:
            for rec in first_cycles(spec, variants):
                out.write(json.dumps(rec) + "\n")
                out.flush()
                print(json.dumps(rec), flush=True)
                records.append(rec)
    print(table(records))


if __name__ == "__main__":
    main()
