import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "dfbvs", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0 and "sim-points" in r.stdout


def test_sim_points_json(tmp_path):
    out = tmp_path / "s.json"
    r = run("sim-points", "--law", "mean", "--json", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["converged"] is True and d["final_mean_px_error"] < 0.01 and d["law"] == "mean"


def test_sim_points_bad_law():
    r = run("sim-points", "--law", "nope")
    assert r.returncode != 0 and "'nope'" in (r.stderr + r.stdout)
