"""Benchmark reports from ``results.jsonl``: ``report.md`` (a Table-I-like table per episode and method,
success rates per method/batch/background) and ``success_vs_distance.png`` (the paper's Fig. 8: success ratio
per distance batch, one line per object and method, solid on the similar background, dashed on cluttered)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .results import RESULTS_FILE, RUN_FILE, has_cut_short_line, latest_records, read_results
from .runner import SuccessCriteria, judge


def _fmt(x, digits=2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def _batch_key(batch: str) -> float:
    try:
        return float(batch.split("-")[0])
    except ValueError:
        return float("inf")


def _run_options(out_dir: Path) -> list[str]:
    """The options the folder's run was made with (``run.json``), as report lines: what a reader needs to run it
    again, the ``--set`` overrides included."""
    try:
        run = json.loads((out_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return []
    shown = {k: v for k, v in run.items() if v not in (None, [], {}, "")}
    return ["Run options (`run.json`): " + ", ".join(f"{k} = `{json.dumps(v)}`" for k, v in shown.items()) + ".", ""]


def write_report(out_dir: Path, title: str = "", criteria: SuccessCriteria = SuccessCriteria()) -> Path:
    """Write ``out_dir/report.md`` from the last attempt of each job in ``results.jsonl``; raises
    :class:`~dfbvs.errors.ResultsFileError` on a corrupted line and ``ValueError`` when there is no result."""
    out_dir = Path(out_dir)
    attempts = read_results(out_dir / RESULTS_FILE)
    records = list(latest_records(attempts).values())
    if not records:
        raise ValueError(f"no results in {out_dir / RESULTS_FILE}")
    n_errors = sum(r.get("error") is not None for r in records)
    for r in records:  # judged here, so a change of criteria needs no re-run
        r.update(judge(r["summary"], r["method"], criteria))
    lines = [f"# Benchmark report{': ' + title if title else ''}", "",
             f"{len(records)} episodes from `{out_dir / 'results.jsonl'}`. Success (paper) = final mean "
             f"correspondence error < {criteria.paper_px} px (photometric: ground-truth reprojection error of the "
             f"object's surface); success (GT) = final camera pose error < {criteria.translation_mm} mm and < "
             f"{criteria.rotation_deg} deg.", ""]
    lines += _run_options(out_dir)
    if has_cut_short_line(out_dir / RESULTS_FILE):
        lines += [f"Note: the last line of `{out_dir / RESULTS_FILE}` is cut short (a run stopped mid-write): its "
                  "episode is not in this report; `dfbvs bench run` with the same options re-runs it.", ""]
    if n_errors or len(attempts) > len(records):
        lines += [f"{n_errors} episodes ended with an error (their `error` field in results.jsonl and the "
                  f"table below); {len(attempts) - len(records)} earlier attempts of retried episodes are kept "
                  f"in results.jsonl and not counted.", ""]
    lines += ["## Success rates", "",
             "| method | background | episodes | success (paper) | success (GT) | median final mm | median final deg "
             "| median final px | median iterations | median cycle ms | median p95 cycle ms | median time to goal s "
             "(reached) | median detections | re-acquisitions | tracked cycles: median / p95 ms |", "|---" * 15 + "|"]
    groups = defaultdict(list)
    several_backgrounds = len({r["background"] for r in records}) > 1
    for r in records:
        groups[(r["method"], r["background"])].append(r)
        if several_backgrounds:
            groups[(r["method"], "all")].append(r)
    for (m, bg), rs in sorted(groups.items()):
        ok = [r for r in rs if r["summary"]]

        def med(key: str, ok: list = ok) -> float:
            values = np.array([np.nan if r["summary"].get(key) is None else r["summary"][key] for r in ok], float)
            values = values[np.isfinite(values)]
            return float(np.median(values)) if values.size else float("nan")

        def stat(key: str, ok: list = ok) -> list[float]:
            return [r["summary"].get("servo_stats", {}).get(key) for r in ok
                    if r["summary"].get("servo_stats", {}).get(key) is not None]

        reached = [r for r in ok if r["summary"].get("time_to_goal_s") is not None]
        detections = stat("detections")

        lines.append(f"| {m} | {bg} | {len(rs)} | {np.mean([r['success_paper'] for r in rs]):.0%} | "
                     f"{np.mean([r['success_gt'] for r in rs]):.0%} | {_fmt(med('final_translation_error_mm'))} | "
                     f"{_fmt(med('final_rotation_error_deg'), 3)} | {_fmt(med('final_mean_px_error'))} | "
                     f"{_fmt(med('iterations'), 0)} | {_fmt(med('median_cycle_ms'), 0)} | "
                     f"{_fmt(med('p95_cycle_ms'), 0)} | {_fmt(med('time_to_goal_s'))} ({len(reached)}) | "
                     f"{_fmt(float(np.median(detections)), 0) if detections else '-'} | "
                     f"{int(sum(stat('reacquisitions'))) if detections else '-'} | "
                     f"{_tracked(ok)} |")

    batches = sorted({r["batch"] for r in records}, key=_batch_key)
    if len(batches) > 1:
        lines += ["", "## Success (paper criterion) per distance batch", "",
                  "| method | object | background | " + " | ".join(batches) + " |",
                  "|---|---|---|" + "---|" * len(batches)]
        for (m, obj, bg), rs in sorted(_by(records, ("method", "object", "background")).items()):
            cells = []
            for b in batches:
                sel = [r["success_paper"] for r in rs if r["batch"] == b]
                cells.append(f"{np.mean(sel):.0%} ({len(sel)})" if sel else "-")
            lines.append(f"| {m} | {Path(obj).stem} | {bg} | " + " | ".join(cells) + " |")

    grasped = [r for r in records if r["summary"] and r["summary"].get("grasp_success") is not None]
    if grasped:
        lines += ["", "## Grasp success on the simulated arm (the paper's Fig. 8 metric)", "",
                  "Grasp success: after convergence the tool moves to the grasp and ends within the grasp "
                  "tolerance of the true grasp pose (default 1.5 mm lateral, 5 mm axial, 2 deg); an episode "
                  "that does not converge is a failed grasp.", "",
                  "| method | " + " | ".join(batches) + " | all | median lateral mm (grasps made) |",
                  "|---|" + "---|" * (len(batches) + 2)]
        for m, rs in sorted(_by(grasped, ("method",)).items()):
            cells = []
            for b in [*batches, None]:
                sel = [bool(r["summary"]["grasp_success"]) for r in rs if b is None or r["batch"] == b]
                cells.append(f"{np.mean(sel):.0%} ({len(sel)})" if sel else "-")
            lateral = [r["summary"]["grasp_error"]["lateral_mm"] for r in rs
                       if "lateral_mm" in r["summary"].get("grasp_error", {})]
            cells.append(f"{np.median(lateral):.2f} ({len(lateral)})" if lateral else "-")
            lines.append(f"| {m[0]} | " + " | ".join(cells) + " |")

    lines += _symmetry_section(records, criteria)

    lines += ["", "## Episodes", "",
              "| episode | method | status | start mm | start deg | final mm | final deg | final px (corr.) "
              "| final px (true) | inliers | iterations | cycle ms | time to goal s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["episode_id"], r["method"])):
        s = r["summary"]
        if s is None:
            lines.append(f"| {r['episode_id']} | {r['method']} | error: {r['error']} |" + " - |" * 10)
            continue
        lines.append(
            f"| {r['episode_id']} | {r['method']} | {s['status']} | {_fmt(s['initial_translation_mm'], 1)} | "
            f"{_fmt(s['initial_rotation_deg'], 1)} | {_fmt(s['final_translation_error_mm'], 3)} | "
            f"{_fmt(s['final_rotation_error_deg'], 3)} | {_fmt(s['final_mean_px_error'])} | "
            f"{_fmt(s['final_true_reprojection_px'])} | {s['final_n_inliers']} | {s['iterations']} | "
            f"{_fmt(s['median_cycle_ms'], 0)} | {_fmt(s.get('time_to_goal_s'))} |")
    if len(batches) > 1:
        plot_success_vs_distance(records, out_dir / "success_vs_distance.png")
        lines += ["", "![success vs distance](success_vs_distance.png)"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _symmetry_section(records: list, criteria: SuccessCriteria = SuccessCriteria()) -> list[str]:
    """Errors modulo the object's symmetry and the lock verdicts (docs/symmetry.md), per method and object;
    empty for results written before those fields existed. Success (GT, modulo symmetry): the GT criterion on
    the errors modulo symmetry."""
    withsym = [r for r in records if r["summary"] and "lock" in r["summary"]]
    if not withsym:
        return []
    lines = ["", "## Modulo symmetry and lock verdicts", "",
             "Errors to the nearest symmetric equivalent of the goal (docs/symmetry.md). Lock (converged runs): "
             "goal / symmetric equivalent / false lock (beyond the lock tolerance, default 2 mm or 0.5 deg, "
             "of every equivalent).", "",
             "| method | object | symmetry order | episodes | success (GT, modulo symmetry) | median final mm (sym) "
             "| median final deg (sym) | lock: goal | symmetric equivalent | false lock |", "|---" * 10 + "|"]
    for (m, obj), rs in sorted(_by(withsym, ("method", "object")).items()):
        def med(key: str, rs: list = rs) -> str:
            v = np.array([np.nan if r["summary"].get(key) is None else r["summary"][key] for r in rs], float)
            v = v[np.isfinite(v)]
            return _fmt(float(np.median(v)), 3) if v.size else "-"

        locks = [r["summary"].get("lock") for r in rs]
        def within(s: dict) -> bool:  # NaN is written as null
            t, r = s.get("final_translation_error_mm_sym"), s.get("final_rotation_error_deg_sym")
            return t is not None and r is not None and t < criteria.translation_mm and r < criteria.rotation_deg

        success = np.mean([within(r["summary"]) for r in rs])
        lines.append(f"| {m} | {Path(obj).stem} | {rs[0]['summary'].get('symmetry_order', 1)} | {len(rs)} | "
                     f"{success:.0%} | {med('final_translation_error_mm_sym')} | "
                     f"{med('final_rotation_error_deg_sym')} | "
                     f"{locks.count('goal')} | {locks.count('symmetric equivalent')} | {locks.count('false lock')} |")
    return lines


def _tracked(records: list) -> str:
    """Median and p95 (ms) over the episodes' tracked cycles: each episode's own median and p95, medianed."""
    stats = [r["summary"].get("servo_stats", {}) for r in records]
    med = [s["tracked_cycle_ms_median"] for s in stats if s.get("tracked_cycle_ms_median") is not None]
    p95 = [s["tracked_cycle_ms_p95"] for s in stats if s.get("tracked_cycle_ms_p95") is not None]
    return f"{np.median(med):.1f} / {np.median(p95):.1f}" if med else "-"


def _by(records, keys):
    out = defaultdict(list)
    for r in records:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def plot_success_vs_distance(records: list[dict], path: Path) -> Path:
    """One panel per method; a colour per object; solid = similar background, dashed = cluttered. Lines of
    one panel are offset by a hair vertically so that equal ratios stay visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in records}, key=_batch_key)
    methods = sorted({r["method"] for r in records})
    objects = sorted({r["object"] for r in records})
    x = np.arange(len(batches))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 4), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], methods):
        k = 0
        for oi, obj in enumerate(objects):
            for bg, ls in (("similar", "-"), ("cluttered", "--")):
                rs = [r for r in records if r["method"] == m and r["object"] == obj and r["background"] == bg]
                if not rs:
                    continue
                ys = np.array([np.mean([r["success_paper"] for r in rs if r["batch"] == b])
                               if any(r["batch"] == b for r in rs) else np.nan for b in batches])
                ax.plot(x, ys + 0.012 * (k - 2.5), ls=ls, marker="o", ms=4, color=colors[oi % len(colors)],
                        label=f"{Path(obj).stem} / {bg}")
                k += 1
        ax.set_title(m)
        ax.set_xticks(x, batches, rotation=30)
        ax.set_xlabel("start distance batch")
        ax.set_ylim(-0.08, 1.08)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("success ratio (final error < 2 px)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
