"""Output paths of the commands, checked before any work starts.

Every command that writes (``sim``, ``demo``, ``render``, ``match``, ``sim-points --json``, ``bench run``,
``bench report``) checks its output path here, as a typer callback of the option, so a path that cannot
receive the files is a usage error naming it (exit code 2, no traceback) before anything is rendered or run.
The checks themselves (:func:`check_output_dir`, :func:`check_output_file`) are library functions raising
:class:`~dfbvs.errors.OutputPathError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import typer

from ..errors import OutputPathError


def _exists(path: Path, label: str) -> bool:
    try:
        return path.exists()
    except OSError as exc:  # e.g. a parent folder that cannot be searched
        raise OutputPathError(f"{label}: cannot be inspected ({exc.strerror or exc})") from None


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _folder_problem(folder: Path, label: str, must_exist: bool = False) -> str | None:
    """Why ``folder`` cannot be (or become) a writable folder, or None when it can."""
    if _exists(folder, label):
        if not folder.is_dir():
            return "is an existing file, not a folder; give a folder path"
        return None if _writable(folder) else "the folder is not writable"
    ancestor = folder.absolute()
    while not _exists(ancestor, label) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{'no such folder' if must_exist else 'cannot create this folder'}: {str(ancestor)!r} is a file"
    if must_exist:
        return "no such folder"
    if not _writable(ancestor):
        return f"cannot create this folder: {str(ancestor)!r} is not writable"
    return None


def check_output_dir(path: Path | str, option: str = "--out", must_exist: bool = False) -> Path:
    """Check that ``path`` is, or can become, a writable folder; returns it as a :class:`Path`.

    Raises :class:`OutputPathError` naming ``option`` and the path when it is an existing file, lies under a
    file (so it cannot be created), does not exist while ``must_exist``, or when the folder (or, for a folder
    still to be created, its closest existing ancestor) is not writable. Nothing is created.
    """
    p = Path(path).expanduser()
    label = f"{option} {str(path)!r}"
    problem = _folder_problem(p, label, must_exist)
    if problem:
        raise OutputPathError(f"{label}: {problem}")
    return p


def check_output_file(path: Path | str, option: str) -> Path:
    """Check that the file ``path`` can be written (created or replaced); returns it as a :class:`Path`.

    Raises :class:`OutputPathError` naming ``option`` and the path when it is an existing folder, when its
    folder cannot be written or created (see :func:`check_output_dir`), or when it is a read-only file.
    """
    p = Path(path).expanduser()
    label = f"{option} {str(path)!r}"
    if _exists(p, label):
        if p.is_dir():
            raise OutputPathError(f"{label}: is an existing folder; give a file path")
        if not os.access(p, os.W_OK):
            raise OutputPathError(f"{label}: the file is not writable")
    if _exists(p.parent, label) and not p.parent.is_dir():
        raise OutputPathError(f"{label}: cannot be created: {str(p.parent)!r} is a file")
    problem = _folder_problem(p.parent, label)
    if problem:
        raise OutputPathError(f"{label}: its folder {str(p.parent)!r}: {problem}")
    return p


def _label(param: typer.CallbackParam) -> str:
    """How the user spells the parameter: ``--out`` for an option, ``OUT_DIR`` for an argument."""
    if param.param_type_name == "option" and param.opts:
        return max(param.opts, key=len)
    return (param.name or "path").upper()


def _usage_error(check: Callable[[Path, str], Path], param: typer.CallbackParam,
                 value: Optional[Path]) -> Optional[Path]:
    """``check(value, label)`` with an :class:`OutputPathError` turned into a usage error (None passes)."""
    if value is None:
        return value
    try:
        return check(value, _label(param))
    except OutputPathError as exc:
        raise typer.BadParameter(str(exc)) from None


def out_dir_callback(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """Typer callback of an output-folder option: :func:`check_output_dir` as a usage error."""
    return _usage_error(check_output_dir, param, value)


def existing_out_dir_callback(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """Typer callback of a folder that must already exist and be writable (``bench report OUT_DIR``)."""
    return _usage_error(lambda path, label: check_output_dir(path, label, must_exist=True), param, value)


def out_file_callback(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """Typer callback of an output-file option: :func:`check_output_file` as a usage error."""
    return _usage_error(check_output_file, param, value)
