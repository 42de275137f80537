"""Where things are: the repository, its ``outputs/`` folder, one run's folder in it, and the code's git revision.

The lowest layer of the run machinery (it imports no other workbench module): the notebook runner, the pipeline's
command-line training, the results report and the run index all read their locations and the revision here, so
none of them has to import another for it.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotation only: paths stays below params in the import order
    from .params import RunParams

__all__ = ["REPO_ROOT", "OUTPUTS", "output_root", "git_revision"]

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = REPO_ROOT / "outputs"


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
