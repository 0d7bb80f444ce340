"""Command-line input (issue 16): output paths checked before any work, one background vocabulary, help
readable at 80 columns that lists the valid names. Everything here is refused (or printed) before a render or
an episode starts, so the tests run in a fraction of a second each."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from dfbvs.cli import _register, app

_register()


def invoke(*args: str, columns: int = 80):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)}, terminal_width=columns)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def flat(result) -> str:
    return " ".join(result.output.split())


# --- output folders ------------------------------------------------------------------------------------------

#: every command that writes, with the least input that reaches its output check; OUT is the output path
WRITERS = {
    "sim": ["sim", "--object", "bracket", "--max-iterations", "1", "--out", "OUT"],
    "demo": ["demo", "--set", "stop.max_iterations=1", "--out", "OUT"],
    "render": ["render", "--object", "bracket", "--out", "OUT"],
    "match": ["match", "A.png", "B.png", "--features", "orb", "--out", "OUT"],
    "bench run": ["bench", "run", "--protocol", "tiny", "--methods", "dfbvs-orb", "--workers", "1",
                  "--max-iterations", "1", "--out", "OUT"],
    "bench report": ["bench", "report", "OUT"],
}


def _args(template: list[str], out: Path) -> list[str]:
    return [str(out) if a == "OUT" else a for a in template]


@pytest.mark.parametrize("command", list(WRITERS))
@pytest.mark.parametrize("case", ["existing file", "under a file"])
def test_output_path_that_cannot_be_a_folder_is_refused_up_front(command, case, tmp_path, monkeypatch):
    monkeypatch.setattr("dfbvs.sim.episode.run_episode", _must_not_run)
    monkeypatch.setattr("dfbvs.render.target.render_target", _must_not_run)
    a_file = tmp_path / "taken"
    a_file.write_text("a file\n")
    out = a_file if case == "existing file" else a_file / "sub" / "dir"
    r = invoke(*_args(WRITERS[command], out))
    assert r.exit_code == 2, r.output
    assert str(out) in flat(r), r.output
    assert ("is an existing file" if case == "existing file" else f"{str(a_file)!r} is a file") in flat(r)
    assert a_file.read_text() == "a file\n"


@pytest.mark.parametrize("command", list(WRITERS))
def test_read_only_output_folder_is_refused_up_front(command, tmp_path, monkeypatch):
    """A chmod'ed folder; as root (where chmod does not stop writes) ``os.access`` reports it as a
    non-root user's would."""
    monkeypatch.setattr("dfbvs.sim.episode.run_episode", _must_not_run)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    (read_only / "results.jsonl").write_text('{"key": "a"}\n')  # for bench report
    read_only.chmod(0o555)
    if os.geteuid() == 0:
        real_access = os.access

        def access(path, mode, *a, **k):
            if Path(path).absolute() == read_only.absolute() and mode & os.W_OK:
                return False
            return real_access(path, mode, *a, **k)

        monkeypatch.setattr("dfbvs.cli._paths.os.access", access)
    try:
        for out in (read_only, read_only / "new"):
            if command == "bench report" and out != read_only:
                continue
            r = invoke(*_args(WRITERS[command], out))
            assert r.exit_code == 2, r.output
            assert str(out) in flat(r) and "not writable" in flat(r), r.output
    finally:
        read_only.chmod(0o755)


def test_sim_points_json_file_checked_up_front(tmp_path):
    r = invoke("sim-points", "--json", str(tmp_path))  # a folder where a file is expected
    assert r.exit_code == 2 and str(tmp_path) in flat(r) and "existing folder" in flat(r), r.output
    a_file = tmp_path / "f"
    a_file.write_text("")
    r = invoke("sim-points", "--json", str(a_file / "summary.json"))
    assert r.exit_code == 2 and f"{str(a_file)!r} is a file" in flat(r), r.output


def test_check_functions(tmp_path, monkeypatch):
    from dfbvs.cli._paths import check_output_dir, check_output_file
    from dfbvs.errors import DfbvsError, OutputPathError

    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # nothing is created
    assert check_output_file(tmp_path / "x.json", "--json") == tmp_path / "x.json"
    with pytest.raises(OutputPathError, match="no such folder"):
        check_output_dir(tmp_path / "missing", "OUT_DIR", must_exist=True)
    monkeypatch.setattr("dfbvs.cli._paths.os.access", lambda *a, **k: False)
    with pytest.raises(OutputPathError, match=r"--out '.*ro': cannot create this folder: '.*' is not writable") as info:
        check_output_dir(tmp_path / "ro")
    assert isinstance(info.value, DfbvsError) and isinstance(info.value, ValueError)
    (tmp_path / "ro").mkdir()
    with pytest.raises(OutputPathError, match="the folder is not writable"):
        check_output_dir(tmp_path / "ro")


def _must_not_run(*args, **kwargs):
    raise AssertionError("work started before the output path was checked")


# --- one vocabulary for backgrounds ------------------------------------------------------------------------


def _background_params() -> dict[str, click.Parameter]:
    root: Any = typer.main.get_command(app)  # typer's group is not a click.Group but has .commands
    commands = {"sim": root.commands["sim"], "render": root.commands["render"],
                "bench run": root.commands["bench"].commands["run"]}
    return {name: next(p for p in c.params if "--background" in getattr(p, "opts", [])) for name, c in commands.items()}


def test_one_background_option_everywhere():
    from dfbvs.bench.methods import BACKGROUNDS

    params = _background_params()
    helps = {name: getattr(p, "help", None) for name, p in params.items()}
    assert len(set(helps.values())) == 1, helps  # one shared definition
    for name in BACKGROUNDS:
        assert f"{name}:" in next(iter(helps.values()))


@pytest.mark.parametrize("command", [
    ["sim", "--object", "bracket", "--out", "OUT"],
    ["render", "--object", "bracket", "--out", "OUT"],
    ["bench", "run", "--protocol", "tiny", "--methods", "dfbvs-orb", "--out", "OUT"],
])
def test_unknown_background_names_the_value_and_the_valid_names(command, tmp_path):
    r = invoke(*_args(command, tmp_path / "o"), "--background", "woodgrain")
    assert r.exit_code == 2, r.output
    assert "--background 'woodgrain'" in flat(r) and "cluttered, similar, clean" in flat(r), r.output
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    r = invoke(*_args(command, tmp_path / "o"), "--background", str(not_an_image))
    assert r.exit_code == 2 and "not a readable image" in flat(r), r.output


def test_background_names_and_aliases():
    from dfbvs.bench.methods import canonical_background, scene_for_background
    from dfbvs.errors import ConfigError
    from dfbvs.render.scene import SceneConfig

    assert canonical_background("procedural") == "cluttered"  # sim's old name
    assert scene_for_background("cluttered", 0) == SceneConfig()
    assert scene_for_background("similar", 0) == SceneConfig.similar_to_target()
    assert scene_for_background("clean", 0) == SceneConfig.clean()
    with pytest.raises(ConfigError, match="'nope'"):
        scene_for_background("nope", 0)


def test_old_background_names_are_accepted_with_a_note(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("dfbvs.cli.servo_cmd._run_and_report", lambda config, out, live_view=None: seen.append(config))
    r = invoke("sim", "--object", "bracket", "--background", "procedural", "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert "note: --background 'procedural' is the old name of 'cluttered'" in flat(r)
    from dfbvs.render.scene import SceneConfig

    assert seen[0].scene == SceneConfig()


# --- help at 80 columns ------------------------------------------------------------------------------------


def _commands() -> list[tuple[list[str], click.Command]]:
    out = []

    def walk(path: list[str], cmd: click.Command) -> None:
        out.append((path, cmd))
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk([*path, name], sub)

    walk([], typer.main.get_command(app))
    return out


@pytest.mark.parametrize("path, command", _commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_help_at_80_columns_shows_every_option_name_whole(path, command):
    r = invoke(*path, "--help", columns=80)
    assert r.exit_code == 0, r.output
    assert "…" not in r.output, r.output
    assert max(len(line) for line in r.output.splitlines()) <= 80, r.output
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
            if opt.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", r.output), (opt, r.output)


def _unwrapped(result) -> str:
    """Help text with click's line wrapping undone (it may break after a hyphen)."""
    return re.sub(r"-\s+", "-", flat(result))


def test_help_lists_the_valid_names_from_the_registries():
    from dfbvs.bench.protocols import PROTOCOLS
    from dfbvs.config import PRESETS
    from dfbvs.estimation import available_rejectors
    from dfbvs.features import available_extractors
    from dfbvs.matching import available_matchers
    from dfbvs.render import builtin_object_names
    from dfbvs.render.mesh import MESH_UNITS_M

    wanted = {
        ("sim",): [*builtin_object_names(), *available_extractors(), ", ".join(MESH_UNITS_M), *PRESETS],
        ("config",): [*PRESETS],
        ("render",): [*builtin_object_names(), ", ".join(MESH_UNITS_M)],
        ("match",): [*available_extractors(), *available_matchers(), *available_rejectors()],
        ("bench", "run"): [*PROTOCOLS, *builtin_object_names(), *available_extractors(), ", ".join(MESH_UNITS_M)],
    }
    for path, names in wanted.items():
        text = _unwrapped(invoke(*path, "--help"))
        for name in names:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (path, name, text)
