"""Run (episode, method) jobs in parallel and append one result line per finished job.

``results.jsonl`` is append-only and flushed line by line, so a killed run keeps everything finished; a
re-run skips finished jobs and, by default, retries the ones whose last attempt errored (the new attempt is
appended; the last line of a key is its result). A cut-short last line is repaired before appending and a
corrupted line is an error (:mod:`dfbvs.bench.results`). Each line stores a hash of the job's full episode
config: a re-run whose config differs for a finished job is refused.
Executors: ``local`` (worker processes) and ``ray`` (a Ray cluster, or a local Ray instance).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..config import describe
from ..errors import ResultsFileError
from ..recorder import JsonlWriter, to_jsonable
from ..sim.episode import EpisodeConfig
from .methods import PHOTOMETRIC, episode_config
from .protocols import EpisodeSpec
from .results import RESULTS_FILE, latest_records, read_results, repair_results


@dataclass(frozen=True)
class SuccessCriteria:
    """Paper's criterion: final mean correspondence error below ``paper_px``; ground truth: final camera
    pose error below ``translation_mm`` and ``rotation_deg``."""

    paper_px: float = 2.0
    translation_mm: float = 1.0  # the servo issue's accuracy target: < 1 mm and < 0.1 deg
    rotation_deg: float = 0.1


@dataclass(frozen=True)
class Job:
    key: str
    spec: EpisodeSpec
    method: str
    config: EpisodeConfig

    @property
    def config_hash(self) -> str:
        blob = json.dumps(describe(self.config), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class ConfigMismatch(ResultsFileError):
    """A finished job of the results file was run with another episode config than the one asked for now."""


def make_jobs(specs: Iterable[EpisodeSpec], methods: list[str], overrides: Sequence[str] = (),
              keypointnet_checkpoint: str | None = None) -> list[Job]:
    """One job per (episode, method); ``overrides`` (``PATH=VALUE``) apply to every job after the method's."""
    return [Job(f"{s.episode_id}/{m}", s, m, episode_config(s, m, overrides, keypointnet_checkpoint))
            for s in specs for m in methods]


def pending_jobs(jobs: list[Job], results_path: Path, retry_errors: bool = True) -> list[Job]:
    """Jobs without a result line, and (``retry_errors``, the default) those whose last attempt errored;
    raises :class:`ConfigMismatch` when a finished job's config changed and
    :class:`~dfbvs.errors.ResultsFileError` on a corrupted line."""
    done = latest_records(read_results(results_path))
    mismatched = [j.key for j in jobs if j.key in done and done[j.key].get("config_hash") != j.config_hash]
    if mismatched:
        raise ConfigMismatch(
            f"{len(mismatched)} finished episodes in {results_path} were run with a different config "
            f"(first: {mismatched[0]}); use another --out directory or the original options")
    return [j for j in jobs if j.key not in done or (retry_errors and done[j.key].get("error") is not None)]


def errored(jobs: list[Job], results_path: Path) -> list[dict]:
    """The last records of ``jobs`` that hold an error (what a run leaves unfinished)."""
    done = latest_records(read_results(results_path))
    return [done[j.key] for j in jobs if j.key in done and done[j.key].get("error") is not None]


def judge(summary: dict | None, method: str, criteria: SuccessCriteria = SuccessCriteria()) -> dict:
    """``success_paper`` (final mean correspondence error below ``paper_px``, whatever stopped the episode;
    the photometric method has no correspondences and is judged on the ground-truth reprojection error of the
    object's surface) and ``success_gt`` (final pose error within both bounds)."""
    if summary is None:
        return {"success_paper": False, "success_gt": False}
    key = "final_true_reprojection_px" if method == PHOTOMETRIC else "final_mean_px_error"
    px = summary[key]
    return {"success_paper": bool(px is not None and px == px and px < criteria.paper_px),
            "success_gt": bool(summary["final_translation_error_mm"] < criteria.translation_mm
                               and summary["final_rotation_error_deg"] < criteria.rotation_deg)}


# --- execution: one job in a worker -------------------------------------------------------------------------

_WORKER_SERVOS: dict = {}  # per-process cache of loaded networks, keyed by servo config
_WORKER_TARGETS: dict = {}  # per-process cache of rendered targets: episodes with one goal share its render


def run_job(job: Job, episodes_dir: str | None, criteria: SuccessCriteria) -> dict:
    """Run one job (in whichever process) and return its result record."""
    from ..sim.episode import run_episode

    t0 = time.perf_counter()
    try:
        out = Path(episodes_dir) / job.key.replace("/", "__") if episodes_dir else None
        result = run_episode(job.config, out_dir=out, servo_cache=_WORKER_SERVOS, target_cache=_WORKER_TARGETS)
        summary = to_jsonable(result.summary())
        error = None
    except Exception as exc:  # a broken episode is a result, not the end of the benchmark
        summary, error = None, f"{type(exc).__name__}: {exc}"
    record = {"key": job.key, "episode_id": job.spec.episode_id, "method": job.method, "object": job.spec.object,
              "background": job.spec.background, "batch": job.spec.batch, "config_hash": job.config_hash,
              "wall_s": time.perf_counter() - t0, "error": error, "summary": summary}
    record.update(judge(summary, job.method, criteria))
    return record


def _init_worker() -> None:
    # workers share the machine's cores: one intra-op thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


ProgressFn = Callable[[int, int, dict], None]


def run_jobs(jobs: list[Job], out_dir: Path, workers: int = 2, executor: str = "local",
             address: str | None = None, criteria: SuccessCriteria = SuccessCriteria(),
             save_episodes: bool = False, progress: ProgressFn | None = None, retry_errors: bool = True,
             warn: Callable[[str], None] | None = None) -> int:
    """Run the pending jobs (:func:`pending_jobs`), appending to ``out_dir/results.jsonl``; returns the number
    run now. A cut-short last line is repaired first and reported through ``warn`` (default:
    :func:`warnings.warn`)."""
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}: use local or ray")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    results_path = out_dir / RESULTS_FILE
    todo = pending_jobs(jobs, results_path, retry_errors)  # refuses before anything is touched
    if not todo:
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    repaired = repair_results(results_path)
    if repaired:
        (warn or warnings.warn)(repaired)
    episodes_dir = str(out_dir / "episodes") if save_episodes else None
    with JsonlWriter(results_path) as writer:
        if executor == "local":
            _run_local(todo, writer, workers, episodes_dir, criteria, progress)
        else:
            _run_ray(todo, writer, workers, address, episodes_dir, criteria, progress)
    return len(todo)


def _run_local(todo, writer, workers, episodes_dir, criteria, progress) -> None:
    if workers == 1:
        for i, job in enumerate(todo, 1):
            rec = run_job(job, episodes_dir, criteria)
            writer.write(rec)
            if progress:
                progress(i, len(todo), rec)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")  # no torch/GL state inherited through fork
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        futures = [pool.submit(run_job, job, episodes_dir, criteria) for job in todo]
        try:
            for i, fut in enumerate(as_completed(futures), 1):
                rec = fut.result()
                writer.write(rec)
                if progress:
                    progress(i, len(todo), rec)
        except KeyboardInterrupt:
            for f in futures:
                f.cancel()
            raise


def _run_ray(todo, writer, workers, address, episodes_dir, criteria, progress) -> None:
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(_ray_job)
    pending = [remote.remote(job, episodes_dir, criteria) for job in todo]
    i = 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        rec = ray.get(ready[0])
        i += 1
        writer.write(rec)
        if progress:
            progress(i, len(todo), rec)


def _ray_job(job: Job, episodes_dir: str | None, criteria: SuccessCriteria) -> dict:
    _init_worker()
    return run_job(job, episodes_dir, criteria)
