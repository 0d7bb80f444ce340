"""The benchmark's bookkeeping files: ``results.jsonl`` (append-only, one record per finished attempt of a job)
and ``run.json`` (the protocol and options the folder belongs to).

``results.jsonl`` is only ever appended to. A job may have several lines (an errored attempt, then a retry):
the last line of a key is its result (:func:`latest_records`). A run killed mid-write can leave a cut-short
last line; :func:`repair_results` truncates it to the last complete line before the next append (keeping
the cut bytes in ``results.jsonl.partial``) and says so. A line in the middle that is not a result record is
never skipped silently: :func:`read_results` raises :class:`~dfbvs.errors.ResultsFileError` with its line
number.

``run.json`` is written only once a run's options are accepted (:func:`merge_run_options` then
:func:`write_run_options`): a folder belongs to one protocol and one option set (:data:`RUN_OPTIONS`), and a
re-run with another one is refused with the option that differs; only the methods may grow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ResultsFileError

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
PARTIAL_SUFFIX = ".partial"

#: The options that define a results folder (``run.json`` key -> command-line option) and the value a
#: ``run.json`` written before the key existed implies.
RUN_OPTIONS: dict[str, str] = {
    "protocol": "--protocol", "objects": "--objects/--mesh", "mesh_unit": "--mesh-unit",
    "backgrounds": "--background", "seed": "--seed", "options": "--episodes-per-batch/--mesh-unit",
    "max_iterations": "--max-iterations", "overrides": "--set", "keypointnet_checkpoint": "--keypointnet-checkpoint",
}
RUN_OPTION_DEFAULTS: dict[str, Any] = {"mesh_unit": None, "keypointnet_checkpoint": None, "options": {},
                                       "overrides": [], "backgrounds": None, "max_iterations": None, "seed": 0}


class RunOptionsMismatch(ResultsFileError):
    """A results folder holds another protocol or option set than the run asked for."""


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("key"), str)


def _snippet(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace")
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def read_results(path: Path) -> list[dict]:
    """The records of ``path`` in file order ([] when it does not exist).

    A cut-short last line (no newline at the end: a run killed mid-write) is ignored unless it is a complete
    record. Any other line that is not a JSON object with a ``key`` raises :class:`ResultsFileError` naming
    the file and the line numbers.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultsFileError(f"{str(path)!r}: cannot be read ({exc.strerror or exc})") from None
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
        if _is_record(value):
            records.append(value)
        else:
            bad.append((number, line))
    if bad:
        listed = "; ".join(f"line {n}: {_snippet(line)}" for n, line in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ResultsFileError(
            f"{str(path)!r}: {len(bad)} corrupted line(s) that are not result records: {listed}{more}. The file is "
            f"append-only and was left as it is: fix or delete those lines (their episodes are then re-run), or "
            f"use another --out folder")
    if tail.strip():
        try:
            value = json.loads(tail)
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
        if _is_record(value):
            records.append(value)
    return records


def has_cut_short_line(path: Path) -> bool:
    """Whether ``path`` ends with a cut-short line that is not a complete record (a run stopped mid-write):
    :func:`read_results` leaves it out, ``bench run`` re-runs its episode."""
    path = Path(path)
    if not path.is_file():
        return False
    tail = path.read_bytes().rsplit(b"\n", 1)[-1]
    if not tail.strip():
        return False
    try:
        return not _is_record(json.loads(tail))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True


def repair_results(path: Path) -> str | None:
    """Make ``path`` end with a complete line before appending; returns what was done (a warning naming the
    file and the byte count) or None when nothing was needed.

    A cut-short last line that is a complete record only lacks its newline, which is added. Otherwise the
    partial line is cut off (the job is re-run) and its bytes are appended to ``<path>.partial``.
    """
    path = Path(path)
    if not path.exists():
        return None
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return None
    cut = data.rfind(b"\n") + 1  # 0 when the only line is the partial one
    tail = data[cut:]
    try:
        complete = _is_record(json.loads(tail))
    except (json.JSONDecodeError, UnicodeDecodeError):
        complete = False
    if complete:
        with open(path, "ab") as fh:
            fh.write(b"\n")
        return f"{str(path)!r}: the last line had no newline (a run stopped mid-write); added it, record kept"
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(partial, "ab") as fh:
        fh.write(tail + b"\n")
    with open(path, "r+b") as fh:
        fh.truncate(cut)
    return (f"{str(path)!r}: cut-short last line (a run stopped mid-write): removed its {len(tail)} bytes "
            f"(truncated to the last complete line, {cut} bytes; the cut bytes are kept in {str(partial)!r}); "
            f"the job it belonged to is re-run")


def latest_records(records: list[dict]) -> dict[str, dict]:
    """The last record of each key (a retried job's newest attempt), in order of first appearance."""
    latest: dict[str, dict] = {}
    for r in records:
        latest[r["key"]] = r
    return latest


def _normalized(options: dict) -> dict:
    return json.loads(json.dumps(options))


def merge_run_options(out_dir: Path, options: dict) -> dict:
    """The ``run.json`` content for a run with ``options`` into ``out_dir``; raises
    :class:`RunOptionsMismatch` naming each differing option (its value in ``run.json`` and now) when the
    folder holds results of another protocol or option set (a folder without results takes any options).
    ``options["methods"]`` (a list) may differ: the result lists every method the folder has run. Nothing is
    written."""
    new = _normalized(options)
    path = Path(out_dir) / RUN_FILE
    results = Path(out_dir) / RESULTS_FILE
    if not path.exists() or not results.exists() or results.stat().st_size == 0:
        return new  # no results yet: nothing the new options could be mixed with
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsFileError(f"{str(path)!r}: not a readable run description ({exc}); restore it or use "
                               f"another --out folder") from None
    if not isinstance(old, dict):
        raise ResultsFileError(f"{str(path)!r}: not a run description (a JSON object); restore it or use another "
                               f"--out folder")
    differ = []
    for key, option in RUN_OPTIONS.items():
        before, now = old.get(key, RUN_OPTION_DEFAULTS.get(key)), new.get(key, RUN_OPTION_DEFAULTS.get(key))
        if before != now:
            differ.append(f"{option} ({key}): {json.dumps(before)} in run.json, {json.dumps(now)} now")
    if differ:
        raise RunOptionsMismatch(
            f"{str(Path(out_dir))!r} holds the results of another run; a results folder belongs to one protocol "
            f"and one option set. Differing: {'; '.join(differ)}. Use another --out folder, or the options of "
            f"{str(path)!r} (only --methods may change)")
    old_methods = old.get("methods") or []
    if isinstance(old_methods, str):  # run.json of an older version: the comma-separated option
        old_methods = [m.strip() for m in old_methods.split(",") if m.strip()]
    merged = dict(new)
    merged["methods"] = list(dict.fromkeys([*old_methods, *new.get("methods", [])]))
    return merged


def write_run_options(out_dir: Path, options: dict) -> Path:
    """Write ``run.json`` (creating ``out_dir``); call only once the run's options are accepted."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RUN_FILE
    path.write_text(json.dumps(options, indent=2) + "\n", encoding="utf-8")
    return path
