"""`bench run` bookkeeping that cannot mix or lose results (issue 16).

Episodes are replaced by a stand-in (``run_episode`` monkeypatched, ``--workers 1`` so it runs in this
process): these tests are about the files around the episodes, not the episodes, and take well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfbvs.cli import _register, app
from dfbvs.sim.episode import EpisodeResult, EpisodeStatus

_register()
BASE = ["bench", "run", "--protocol", "tiny", "--objects", "bracket", "--background", "similar",
        "--max-iterations", "2", "--workers", "1"]


class FakeEpisodes:
    """Stands in for ``run_episode``: records each config, fails the keys it is told to."""

    def __init__(self) -> None:
        self.configs: list = []
        self.fail = False

    def __call__(self, config, out_dir=None, servo_cache=None, **_):
        self.configs.append(config)
        if self.fail:
            raise RuntimeError("simulated failure in the episode")
        return EpisodeResult(EpisodeStatus.CONVERGED, 2, 0.5, 0.05, 0.4, 10.0, 2.0, 30.0, {}, 40, 0.3, None,
                             p95_cycle_ms=35.0, time_to_goal_s=0.2)


@pytest.fixture
def episodes(monkeypatch) -> FakeEpisodes:
    fake = FakeEpisodes()
    monkeypatch.setattr("dfbvs.sim.episode.run_episode", fake)
    return fake


def bench(out: Path, *args: str, base: list[str] = BASE):
    result = CliRunner().invoke(app, [*base, *args, "--out", str(out)])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def text(result) -> str:
    return " ".join(result.output.split())


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line must parse


def test_refused_rerun_leaves_run_json_identical_and_names_the_option(tmp_path, episodes):
    out = tmp_path / "run"
    assert bench(out, "--methods", "dfbvs-orb").exit_code == 0
    before = (out / "run.json").read_bytes()
    results_before = (out / "results.jsonl").read_bytes()

    r = bench(out, "--methods", "dfbvs-orb", "--seed", "1")
    assert r.exit_code == 2, r.output
    assert "--seed" in text(r) and "0 in run.json, 1 now" in text(r), r.output
    assert (out / "run.json").read_bytes() == before
    assert (out / "results.jsonl").read_bytes() == results_before


def test_other_protocol_into_the_same_folder_is_refused(tmp_path, episodes):
    out = tmp_path / "run"
    assert bench(out, "--methods", "dfbvs-orb").exit_code == 0
    before = (out / "run.json").read_bytes()
    n_run = len(episodes.configs)
    args = [a if a != "tiny" else "wide" for a in BASE] + ["--episodes-per-batch", "1"]
    r = CliRunner().invoke(app, [*args, "--methods", "dfbvs-orb", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert '--protocol (protocol): "tiny" in run.json, "wide" now' in text(r), r.output
    assert len(episodes.configs) == n_run  # nothing ran
    assert (out / "run.json").read_bytes() == before
    assert len(lines(out / "results.jsonl")) == 1


def test_a_folder_without_results_takes_any_options(tmp_path, episodes):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"protocol": "wide", "seed": 3}))  # a start that ran nothing
    r = bench(out, "--methods", "dfbvs-orb")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "run.json").read_text())["protocol"] == "tiny"


def test_other_set_override_is_refused_but_more_methods_are_accepted(tmp_path, episodes):
    out = tmp_path / "run"
    assert bench(out, "--methods", "dfbvs-orb").exit_code == 0
    r = bench(out, "--methods", "dfbvs-orb", "--set", "servo.refine.window_px=21")
    assert r.exit_code == 2 and "--set (overrides)" in text(r) and "window_px=21" in text(r), r.output
    other = tmp_path / "other"
    assert bench(other, "--methods", "dfbvs-orb", "--set", "servo.refine.window_px=21").exit_code == 0
    assert "servo.refine.window_px=21" in (other / "report.md").read_text()  # the report says how it was run
    assert "window_px" not in (out / "report.md").read_text()
    r = bench(out, "--methods", "dfbvs-orb,photometric")  # the same episodes, one more method
    assert r.exit_code == 0, r.output
    assert json.loads((out / "run.json").read_text())["methods"] == ["dfbvs-orb", "photometric"]
    assert [rec["method"] for rec in lines(out / "results.jsonl")] == ["dfbvs-orb", "photometric"]


def test_errored_episode_exits_nonzero_and_is_retried_on_resume(tmp_path, episodes):
    out = tmp_path / "run"
    episodes.fail = True
    r = bench(out, "--methods", "dfbvs-orb")
    assert r.exit_code == 1, r.output
    assert "1 of 1 episodes ended with an error" in text(r), r.output
    assert "simulated failure" in text(r) and "'error' field" in text(r) and "results.jsonl" in text(r)

    r = bench(out, "--methods", "dfbvs-orb", "--no-retry-errors")  # kept as a result: nothing runs, still 1
    assert r.exit_code == 1 and len(episodes.configs) == 1, r.output

    episodes.fail = False
    r = bench(out, "--methods", "dfbvs-orb")  # retried by default
    assert r.exit_code == 0, r.output
    assert len(episodes.configs) == 2
    records = lines(out / "results.jsonl")
    assert [rec["error"] is None for rec in records] == [False, True]  # both attempts kept, in order
    report = (out / "report.md").read_text()
    assert "1 episodes from" in report and "1 earlier attempts of retried episodes" in report


def test_cut_short_last_line_is_repaired_before_appending(tmp_path, episodes):
    out = tmp_path / "run"
    assert bench(out, "--methods", "dfbvs-orb").exit_code == 0
    results = out / "results.jsonl"
    complete = results.read_bytes()
    fragment = b'{"key":"bracket-tiny-0/photometric","episode_id":"brac'
    results.write_bytes(complete + fragment)  # a crash mid-write
    r = CliRunner().invoke(app, ["bench", "report", str(out)])  # the report says what it leaves out
    assert r.exit_code == 0 and "cut short" in text(r), r.output
    assert "is cut short" in (out / "report.md").read_text()

    r = bench(out, "--methods", "dfbvs-orb,photometric")
    assert r.exit_code == 0, r.output
    assert "warning:" in text(r) and "results.jsonl" in text(r) and f"{len(fragment)} bytes" in text(r), r.output
    records = lines(results)  # no record was appended onto the fragment
    assert [rec["key"] for rec in records] == ["bracket-tiny-0/dfbvs-orb", "bracket-tiny-0/photometric"]
    assert results.read_bytes().startswith(complete)
    assert (out / "results.jsonl.partial").read_bytes() == fragment + b"\n"  # the cut bytes are kept


@pytest.mark.parametrize("garbage", [b"not json at all", b"[1, 2, 3]", b'{"no_key": 1}'])
def test_corrupted_middle_line_is_reported_not_skipped(tmp_path, episodes, garbage):
    out = tmp_path / "run"
    assert bench(out, "--methods", "dfbvs-orb").exit_code == 0
    results = out / "results.jsonl"
    good = results.read_bytes()
    results.write_bytes(good + garbage + b"\n" + good)
    before = results.read_bytes()

    r = bench(out, "--methods", "dfbvs-orb,photometric")
    assert r.exit_code == 2, r.output
    assert "corrupted line" in text(r) and "line 2" in text(r) and "results.jsonl" in text(r), r.output
    assert results.read_bytes() == before and len(episodes.configs) == 1

    r = CliRunner().invoke(app, ["bench", "report", str(out)])
    assert r.exit_code == 2 and "line 2" in text(r), r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)


def test_mesh_unit_is_validated_and_applied(tmp_path, episodes, monkeypatch):
    import trimesh

    mesh = tmp_path / "part.stl"
    trimesh.creation.box((40.0, 30.0, 20.0)).export(mesh)  # millimetres
    base = [a for a in BASE if a not in ("--objects", "bracket")]
    r = bench(tmp_path / "bad", "--mesh", str(mesh), "--mesh-unit", "km", base=base)
    assert r.exit_code == 2 and "'km'" in text(r) and "m, cm, mm, in" in text(r), r.output
    r = bench(tmp_path / "bad", "--mesh-unit", "mm")  # built-in objects have no unit to set
    assert r.exit_code == 2 and "--mesh-unit 'mm'" in text(r), r.output
    assert not (tmp_path / "bad").exists()

    r = bench(tmp_path / "mm", "--methods", "dfbvs-orb", "--mesh", str(mesh), "--mesh-unit", "mm", base=base)
    assert r.exit_code == 0, r.output
    assert episodes.configs[-1].mesh_unit == "mm" and episodes.configs[-1].mesh_path == str(mesh.resolve())
    assert json.loads((tmp_path / "mm" / "run.json").read_text())["mesh_unit"] == "mm"
    r = bench(tmp_path / "mm", "--methods", "dfbvs-orb", "--mesh", str(mesh), "--mesh-unit", "in", base=base)
    assert r.exit_code == 2 and '--mesh-unit (mesh_unit): "mm" in run.json, "in" now' in text(r), r.output
    monkeypatch.chdir(tmp_path)  # the same file named relatively: the same run, nothing to do again
    r = bench(tmp_path / "mm", "--methods", "dfbvs-orb", "--mesh", "part.stl", "--mesh-unit", "mm", base=base)
    assert r.exit_code == 0 and "(1 already done)" in text(r), r.output
    r = bench(tmp_path / "dir", "--mesh", str(tmp_path), "--mesh-unit", "mm", base=base)
    assert r.exit_code == 2 and "a folder, not a mesh file" in text(r), r.output


def test_results_file_functions(tmp_path):
    from dfbvs.bench.results import latest_records, read_results, repair_results

    path = tmp_path / "results.jsonl"
    assert read_results(path) == [] and repair_results(path) is None
    path.write_bytes(b'{"key":"a","error":"x"}\n{"key":"a","error":null}\n{"key":"b"}')  # no final newline
    assert [r["key"] for r in read_results(path)] == ["a", "a", "b"]  # a complete record is kept
    assert "added it" in (repair_results(path) or "")
    assert path.read_bytes().endswith(b'{"key":"b"}\n') and repair_results(path) is None
    assert latest_records(read_results(path))["a"]["error"] is None


def test_run_json_lists_the_objects_the_protocol_ran(tmp_path, episodes):
    """``parts`` brings its own objects: run.json names them, not the built-in three it ignored."""
    out = tmp_path / "run"
    base = ["bench", "run", "--protocol", "parts", "--max-iterations", "2", "--workers", "1"]
    assert bench(out, "--methods", "dfbvs-orb", "--episodes", "sheet-P1", base=base).exit_code == 0
    objects = json.loads((out / "run.json").read_text())["objects"]
    assert "housing" in objects and "sheet" in objects and "gear" not in objects, objects
    assert len(episodes.configs) == 1
