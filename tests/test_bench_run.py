"""The benchmark runner end to end: tiny protocol, 2 workers and Ray, resume after a kill, report."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dfbvs.bench.protocols import make_protocol
from dfbvs.bench.report import write_report
from dfbvs.bench.runner import ConfigMismatch, make_jobs, pending_jobs, run_jobs
from dfbvs.config import apply_overrides
from dfbvs.recorder import read_jsonl
from dfbvs.render.scene import SceneConfig
from dfbvs.sim.episode import EpisodeConfig, GoalConfig, StartConfig, run_episode


def tiny_base(iterations=40):
    return [f"stop.max_iterations={iterations}"]


def test_tiny_protocol_two_workers_and_report(tmp_path):
    specs = make_protocol("tiny", ["bracket"])
    jobs = make_jobs(specs, ["dfbvs-orb", "photometric"], tiny_base(100))
    assert run_jobs(jobs, tmp_path, workers=2) == 4
    records = read_jsonl(tmp_path / "results.jsonl")
    assert sorted(r["key"] for r in records) == sorted(j.key for j in jobs)
    assert all(r["error"] is None for r in records), [r["error"] for r in records]
    by_key = {r["key"]: r for r in records}
    for key, r in by_key.items():  # print what each episode did, for the assertion messages below
        print(key, r["summary"]["status"], r["summary"]["final_translation_error_mm"], r["summary"]["iterations"])
    orb = [r for r in records if r["method"] == "dfbvs-orb"]
    assert all(r["summary"]["converged"] and r["success_paper"] for r in orb), by_key
    photometric = {r["background"]: r for r in records if r["method"] == "photometric"}
    # the paper's claim: the whole-image law works on a background like the target render's, not in clutter
    assert photometric["similar"]["success_paper"], photometric["similar"]
    assert not photometric["cluttered"]["success_paper"], photometric["cluttered"]
    report = write_report(tmp_path).read_text()
    assert "dfbvs-orb" in report and "photometric" in report and "Success rates" in report
    assert run_jobs(jobs, tmp_path, workers=2) == 0  # everything done: nothing re-run


def test_ray_executor(tmp_path):
    pytest.importorskip("ray")
    specs = make_protocol("tiny", ["bracket"])[:1]
    jobs = make_jobs(specs, ["dfbvs-orb"], tiny_base(20))
    try:
        assert run_jobs(jobs, tmp_path, workers=2, executor="ray") == 1
    finally:
        import ray

        ray.shutdown()
    records = read_jsonl(tmp_path / "results.jsonl")
    assert len(records) == 1 and records[0]["error"] is None
    # the same episode run by the local executor gives the same result (episodes are deterministic)
    assert run_jobs(jobs, tmp_path / "local", workers=1) == 1
    local = read_jsonl(tmp_path / "local" / "results.jsonl")[0]
    for key in ("status", "iterations", "final_translation_error_mm", "final_rotation_error_deg"):
        assert records[0]["summary"][key] == local["summary"][key], key
    assert records[0]["summary"]["final_translation_error_mm"] < records[0]["summary"]["initial_translation_mm"]


def test_config_mismatch_is_refused(tmp_path):
    specs = make_protocol("tiny", ["bracket"])[:1]
    jobs = make_jobs(specs, ["dfbvs-orb"], tiny_base(5))
    run_jobs(jobs, tmp_path, workers=1)
    changed = make_jobs(specs, ["dfbvs-orb"], tiny_base(6))
    with pytest.raises(ConfigMismatch, match="different config"):
        pending_jobs(changed, tmp_path / "results.jsonl")


def test_kill_and_resume_via_cli(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dfbvs", "bench", "run", "--protocol", "tiny", "--objects", "bracket",
           "--methods", "dfbvs-orb,photometric", "--max-iterations", "30", "--workers", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 1):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run, as a crash or a Ctrl-C would
    proc.wait()
    first = read_jsonl(results)
    assert 1 <= len(first) < 4
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = results.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses: nothing corrupted
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 4
    assert [r["key"] for r in records[:len(first)]] == [r["key"] for r in first]  # finished ones kept, not redone
    assert (out / "report.md").is_file()


def test_photometric_baseline_converges_on_clean_scene(tmp_path):
    config = EpisodeConfig(goal=GoalConfig(distance_m=0.22), scene=SceneConfig.clean(),
                           start=StartConfig(offset_mm=10.0, offset_deg=2.0))
    config = apply_overrides(config, ["servo=photometric", "stop.converged_twist_m_s=1e-4",
                                      "stop.converged_twist_rad_s=1e-3", "stop.max_iterations=400"])
    r = run_episode(config)
    assert r.status.value == "converged", r.summary()
    # image-space convergence is what the whole-image law achieves; the pose keeps the same weakly observable
    # rotation/translation residual as the feature-based law (docs/servo.md)
    assert r.final_true_reprojection_px < 0.5, r.summary()
    assert r.final_translation_error_mm < 0.3 * r.initial_translation_mm, r.summary()
    assert r.final_rotation_error_deg < 0.3 * r.initial_rotation_deg, r.summary()


def test_episodes_with_one_goal_share_its_rendered_target_and_end_as_without():
    """The runner's per-worker target cache: a second episode with the same goal reuses the first's render (read
    only, so no servo can change it for the next episode), and runs exactly as it does on a fresh render."""
    first, second = make_protocol("tiny", ["bracket"])
    assert first.goal == second.goal
    jobs = make_jobs([first, second], ["dfbvs-orb"], tiny_base(12))
    fresh = run_episode(jobs[1].config).summary()
    cache: dict = {}
    run_episode(jobs[0].config, target_cache=cache)
    assert len(cache) == 1
    (target,) = cache.values()
    assert not target.rgb.flags.writeable and not target.shading_basis.flags.writeable
    cached = run_episode(jobs[1].config, target_cache=cache).summary()
    assert len(cache) == 1 and next(iter(cache.values())) is target
    def outcome(summary):  # what the episode did, without its wall-clock timings (NaN compares equal as text)
        return json.dumps({k: v for k, v in summary.items() if not k.endswith("_ms")}, sort_keys=True, default=str)

    assert outcome(cached) == outcome(fresh)
    other = dataclasses.replace(jobs[0].config, goal=dataclasses.replace(jobs[0].config.goal, distance_m=0.25))
    run_episode(dataclasses.replace(other, stop=dataclasses.replace(other.stop, max_iterations=1)),
                target_cache=cache)
    assert len(cache) == 2  # another goal, another render
