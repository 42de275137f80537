"""Where things are: the repository, its ``outputs/`` folder, one run's folder in it, the code's git revision, and
which existing folders a command may replace.

The lowest layer of the run machinery (it imports only :mod:`workbench.system.io` and :mod:`workbench.errors`): the
notebook runner, the pipeline's command-line training, the results report, the run index and the ``zoo``/``optimize``
commands read their locations, the revision and the output-folder rule here, so none of them has to import another.

The output-folder rule, one for every command that writes a folder (:func:`check_output_folder`): it writes a new
folder, fills an empty one, or replaces a folder it can prove it wrote itself -- its own manifest (:class:`OutputKind`),
parsing as its own, and nothing but the names it writes. Anything else is refused, naming the folder and what is in
it; so is an output folder that is, holds or lies inside the command's input (:func:`check_not_an_input`).
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .io import RunFolderError, read_regular_text

if TYPE_CHECKING:  # annotation only: paths stays below params in the import order
    from ..run.params import RunParams

__all__ = ["REPO_ROOT", "OUTPUTS", "output_root", "git_revision", "OutputFolderError", "OutputKind",
           "check_output_folder", "check_not_an_input"]

REPO_ROOT = Path(__file__).resolve().parents[2]  # workbench/system/paths.py -> the checkout
OUTPUTS = REPO_ROOT / "outputs"
_LISTED = 8  # names shown in an error about a folder's contents


def output_root(params: RunParams, outputs: Path | None = None) -> Path:
    """``outputs/<name>/``: the folder of the run a params file describes (``outputs`` overrides the parent)."""
    return (outputs or OUTPUTS) / params.name


def git_revision(repo: str | Path = REPO_ROOT) -> str:
    """The short commit of ``repo``, with "+local changes" when tracked files differ from it; "unknown" without
    git."""
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+local changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- which folders a command may replace ---------------------------------------------------------------------------
class OutputFolderError(RunFolderError):
    """An output folder a command was given is not one it may write: someone else's files, the command's own
    input, a file, a link, or a path below a file."""


@dataclass(frozen=True)
class OutputKind:
    """What one command writes into a folder of its own, by which it recognises that folder later.

    Args:
        command: the command, for messages (``"optimize"``).
        manifest: the file that marks the folder as the command's own.
        names: every name the command writes into the folder (the manifest included).
        is_own: whether the manifest's parsed JSON is one the command writes.
    """

    command: str
    manifest: str
    names: frozenset
    is_own: Callable[[object], bool]


def _listing(names: list[str]) -> str:
    shown = sorted(names)[:_LISTED]
    return ", ".join(shown) + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _not_a_folder_problem(out: Path, flag: str) -> str | None:
    """Why ``out`` cannot be a folder at all (a link, a file, below a file), or None."""
    if out.is_symlink():
        return f"{flag} {out} is a symbolic link (to {os.readlink(out)[:200]}); pass a new folder or the link's target"
    if out.exists() and not out.is_dir():
        return f"{flag} {out} is a file, not a folder; pass a new or empty folder"
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                return f"{flag} {out} lies below {parent}, which is a file, not a folder; pass a folder path"
            break
    return None


def _foreign_reason(out: Path, kind: OutputKind, names: list[str]) -> str | None:
    """Why the non-empty folder ``out`` is not one ``kind.command`` wrote, or None when it is."""
    foreign = [n for n in names if n not in kind.names]
    if foreign:
        return f"it holds files `{kind.command}` does not write: {_listing(foreign)}"
    if kind.manifest not in names:
        return f"it has no {kind.manifest}"
    try:
        own = kind.is_own(json.loads(read_regular_text(out / kind.manifest)))
    except (OSError, ValueError, RecursionError):  # a link, a FIFO, a folder, not UTF-8, not JSON
        own = False
    if not own or (out / kind.manifest).is_symlink():
        return f"its {kind.manifest} is not one `{kind.command}` writes"
    return None


def check_output_folder(out: str | os.PathLike, kind: OutputKind, flag: str = "--out") -> bool:
    """Refuse an output folder ``kind.command`` may not write (:class:`OutputFolderError`, naming the folder and
    what is in it); True when ``out`` is an earlier output of the command (to be replaced whole), False when it is
    new or empty. Call it before the work, and again just before renaming the new folder into place."""
    out = Path(out)
    problem = _not_a_folder_problem(out, flag)
    if problem:
        raise OutputFolderError(problem)
    if not out.exists():
        return False
    try:
        names = [entry.name for entry in os.scandir(out)]
    except OSError as err:
        raise OutputFolderError(f"{flag} {out} cannot be read ({err.strerror or err}); pass a new folder") from None
    if not names:
        return False
    reason = _foreign_reason(out, kind, names)
    if reason:
        raise OutputFolderError(
            f"refusing to write into {flag} {out}: it was not written by `{kind.command}` ({reason}; in it: "
            f"{_listing(names)}). `{kind.command}` replaces only a folder it wrote itself; pass a new or empty folder")
    return True


def check_not_an_input(out: str | os.PathLike, inputs: dict[str, str | os.PathLike], flag: str = "--out") -> None:
    """Refuse an output folder that is one of ``inputs`` (``{"zoo": path, "model": path}``), holds one (replacing
    it would delete the input) or lies inside one (it would mix the output into the input)."""
    target = Path(out).resolve()
    for label, path in inputs.items():
        source = Path(path).resolve()
        if target == source:
            raise OutputFolderError(f"{flag} {out} is the input {label}; write to a new folder")
        if target in source.parents:
            raise OutputFolderError(f"{flag} {out} holds the input {label} {path}; replacing it would delete the "
                                    "input. Write to a new folder")
        if source in target.parents:
            raise OutputFolderError(f"{flag} {out} lies inside the input {label} {path}; write to a folder outside it")
