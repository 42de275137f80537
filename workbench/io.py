"""Atomic file writes: a killed run never leaves a file that looks complete but is not.

Every artifact is written under a hidden temporary name beside its target (``.<name>.<random>.tmp``), flushed to
disk and renamed onto the target in one step, so a reader sees the old file, the new file or no file, never half
of one. Leftover temporaries of a killed run are hidden, never mistaken for artifacts, and removed by
:func:`clean_stale_temps` when the next run starts.

Fault injection for the kill tests: ``WORKBENCH_CRASH_AT="before-rename:results.md"`` makes the process kill
itself with SIGKILL at that point (``name@3``: the third time it is reached; several points separated by commas).
The variable is inherited by notebook kernels, so a point inside a notebook's work kills that kernel.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

CRASH_ENV = "WORKBENCH_CRASH_AT"
_crash_counts: dict[str, int] = {}
# .name.<random>.tmp (atomic writes), .name.<random>.tmp/ (atomic directories), .name.old-<pid> (replaced dirs)
STALE_TEMP = re.compile(r"^\..+(\.tmp|\.old-\d+)$")


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``$WORKBENCH_CRASH_AT`` names ``name`` (a test hook; no-op otherwise)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    _crash_counts[name] = count = _crash_counts.get(name, 0) + 1
    for entry in wanted.split(","):
        point, _, nth = entry.strip().partition("@")
        if point == name and count == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        crash_point(f"before-rename:{path.name}")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path`` (file or directory).

    The caller writes a file or builds a directory at the yielded path; on an exception nothing at ``path``
    changes. Files inside are fsynced before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    target = tmp / path.name
    try:
        yield target
        for file in ([target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())):
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        crash_point(f"before-rename:{path.name}")
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            crash_point(f"between-renames:{path.name}")
            os.replace(target, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stale_temps(root: str | os.PathLike) -> list[Path]:
    """Hidden temporaries that killed runs left under ``root`` (see the module docstring for the names)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames) + filenames:
            if STALE_TEMP.match(name):
                found.append(Path(dirpath) / name)
        dirnames[:] = [d for d in dirnames if not STALE_TEMP.match(d)]
    return found


def clean_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Remove :func:`stale_temps` under ``root``; call only when no other process writes there."""
    removed = stale_temps(root)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return removed
