"""Bad input to `dfbvs sim` / `dfbvs bench` gives a clear message naming the value and a non-zero exit."""

import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "dfbvs", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["sim", "--object", "nope", "--out", "x"], "'nope'"),
    (["sim", "--out", "x"], "exactly one of --object"),
    (["sim", "--object", "bracket", "--goal", "1,2", "--out", "x"], "'1,2'"),
    (["sim", "--object", "bracket", "--features", "foo", "--out", "x"], "'foo'"),
    (["sim", "--object", "bracket", "--sensor", "640by480", "--out", "x"], "'640by480'"),
    (["sim", "--object", "bracket", "--sensor", "0x480", "--out", "x"], "'0x480'"),
    (["sim", "--mesh", "/no/such.stl", "--features", "orb", "--out", "x"], "/no/such.stl"),
    (["bench", "run", "--protocol", "nope", "--methods", "dfbvs-orb", "--out", "x"], "'nope'"),
    (["bench", "run", "--protocol", "tiny", "--methods", "magic", "--out", "x"], "'magic'"),
    (["bench", "report", "/no/such/dir"], "/no/such/dir"),
    (["sim", "--object", "bracket", "--set", "servo.refine.window_px=abc", "--out", "x"], "'abc'"),
    (["demo", "--set", "servo.refine.windwo_px=15", "--out", "x"], "'windwo_px'"),
    (["demo", "--preset", "fastest", "--out", "x"], "'fastest'"),
    (["bench", "run", "--protocol", "tiny", "--set", "stop.max_iterations=-", "--out", "x"], "'-'"),
    (["config", "--set", "servo.features=superpoint"], "'superpoint'"),
])
def test_bad_input_is_named(args, needle, tmp_path):
    args = [str(tmp_path / a) if a == "x" else a for a in args]
    r = run(*args)
    assert r.returncode != 0
    text = " ".join((r.stdout + r.stderr).split()).replace("│", "")
    assert needle in text.replace(" ", "") or needle in text, text
    assert "Traceback" not in r.stderr


def test_config_lists_every_setting_with_overrides_applied():
    r = run("config", "--set", "servo.refine.window_px=21", "--set", "servo.matcher=lightglue")
    assert r.returncode == 0, r.stderr
    assert "servo.refine.window_px = 21" in r.stdout and 'servo.matcher = "lightglue"' in r.stdout
    assert "servo.matcher.filter_threshold = 0.1" in r.stdout and "stop.max_iterations = 300" in r.stdout
    r = run("config", "--preset", "paper", "--json")
    assert r.returncode == 0, r.stderr
    import json

    config = json.loads(r.stdout)
    assert config["servo"]["refine"]["enabled"] is False and config["servo"]["tracking"]["mode"] == "previous"
