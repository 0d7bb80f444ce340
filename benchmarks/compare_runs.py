"""Compare two ``dfbvs bench run`` result directories episode by episode (same protocol, same methods):
does a change keep the behaviour? Prints a markdown table and a summary line.

    .venv/bin/python benchmarks/compare_runs.py runs/before runs/after

An episode is *identical* when status, iterations, final pose error, final correspondence error and inlier
count are equal to the last bit (episodes are deterministic: seeded scenes, MAGSAC seed, CPU inference).
Cycle times are shown as a ratio but only mean something when both runs had the machine to themselves.
A last table gives, for each run over the common episodes, how many ended within 1 mm and 0.1 deg of the goal,
the median final errors, and how the episodes ended (the stop rule that converged them, or the status).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dfbvs.recorder import read_jsonl

KEYS = ("status", "iterations", "final_translation_error_mm", "final_rotation_error_deg", "final_mean_px_error",
        "final_n_inliers")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    before = {r["key"]: r for r in read_jsonl(args.before / "results.jsonl")}
    after = {r["key"]: r for r in read_jsonl(args.after / "results.jsonl")}
    common = sorted(set(before) & set(after))
    if not common:
        print(f"no episode in common between {args.before} and {args.after}", file=sys.stderr)
        return 2
    print("| episode | status | iterations | final mm (before / after) | final deg (before / after) | identical |")
    print("|---|---|---|---|---|---|")
    same, ratios = 0, []
    for key in common:
        a, b = before[key]["summary"], after[key]["summary"]
        if a is None or b is None:
            print(f"| {key} | error | | | | {a is None and b is None} |")
            continue
        identical = all(a[k] == b[k] for k in KEYS)
        same += identical
        ratios.append(b["median_cycle_ms"] / a["median_cycle_ms"])
        print(f"| {key} | {a['status']} / {b['status']} | {a['iterations']} / {b['iterations']} | "
              f"{a['final_translation_error_mm']:.4f} / {b['final_translation_error_mm']:.4f} | "
              f"{a['final_rotation_error_deg']:.4f} / {b['final_rotation_error_deg']:.4f} | {identical} |")
    print()
    print(f"{same}/{len(common)} episodes identical; median cycle time after/before: {np.median(ratios):.2f}")
    print()
    print("| run | episodes | within 1 mm and 0.1 deg | median final mm | median final deg | converged_by |")
    print("|---|---|---|---|---|---|")
    for name, run in ((args.before, before), (args.after, after)):
        rows = [run[k]["summary"] for k in common if run[k]["summary"] is not None]
        mm = np.array([r["final_translation_error_mm"] for r in rows])
        deg = np.array([r["final_rotation_error_deg"] for r in rows])
        ok = int(np.sum((mm < 1.0) & (deg < 0.1)))
        by: dict = {}
        for r in rows:
            label = r.get("converged_by") or r["status"]
            by[label] = by.get(label, 0) + 1
        print(f"| {name} | {len(rows)} | {ok}/{len(rows)} | {np.median(mm):.3f} | {np.median(deg):.3f} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(by.items()))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
