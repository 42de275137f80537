"""Atomic file writes: a killed run never leaves a file that looks complete but is not.

Every artifact is written under a hidden temporary name beside its target (``.<name>.workbench-<random>.tmp``),
flushed to disk and renamed onto the target in one step, so a reader sees the old file, the new file or no file,
never half of one. Leftover temporaries of a killed run are hidden, never mistaken for artifacts, and removed by
:func:`clean_stale_temps` when the next run starts. Only names that carry the ``.workbench-`` token are ever
removed: a user's own ``.x.tmp`` file or ``.y.old-42/`` folder is left alone.

Fault injection for the kill tests: ``WORKBENCH_CRASH_AT="before-rename:results.md"`` makes the process kill
itself with SIGKILL at that point (``name@3``: the third time it is reached; several points separated by commas).
The variable is inherited by notebook kernels, so a point inside a notebook's work kills that kernel.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import time
from pathlib import Path

from .errors import WorkbenchError

__all__ = [
    "crash_point", "NotARegularFile", "is_regular_file", "sha256_file", "atomic_write_bytes", "atomic_write_text",
    "atomic_path", "stale_temps", "clean_stale_temps", "RunFolderError", "RunLocked", "run_lock",
    "run_result_problem", "run_result_readable",
]

CRASH_ENV = "WORKBENCH_CRASH_AT"
_crash_counts: dict[str, int] = {}
# .name.workbench-<random>.tmp (atomic writes), the same as a folder (atomic directories),
# .name.workbench-old-<pid> (a directory being replaced); mkstemp's random part is 8 of [a-z0-9_]
TEMP_TOKEN = ".workbench-"
STALE_TEMP = re.compile(r"^\..+\.workbench-([a-z0-9_]{8}\.tmp|old-\d+)$")


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


class NotARegularFile(OSError):
    """A path that should hold a file's bytes is a pipe, socket, device or folder (opening it could block)."""


def is_regular_file(path: str | os.PathLike) -> bool:
    """A regular file itself, not a symlink, pipe, socket, device or folder (no following, never blocks)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):  # missing, unreadable, or a name with a NUL byte
        return False


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks. Only regular files (symlinks to them are followed):
    a FIFO, socket or device raises :class:`NotARegularFile` at once instead of blocking or reading forever."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # opening a FIFO must not wait for a writer
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(f"{path} is not a regular file (a pipe, socket, device or folder)")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = -1  # closed by the file object
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    finally:
        if fd >= 0:
            os.close(fd)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_default_mode(path: Path, directory: bool) -> None:
    """Temporaries are created private (mkstemp 0600, mkdtemp 0700); what is renamed into place gets the mode a
    plain ``open``/``mkdir`` would have given it (0644 / 0755 under the usual umask), like the executed notebooks."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_TOKEN}", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _give_default_mode(Path(tmp), directory=False)
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
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}{TEMP_TOKEN}", suffix=".tmp"))
    target = tmp / path.name
    try:
        yield target
        for file in ([target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())):
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        if target.exists():
            _give_default_mode(target, directory=target.is_dir())
        crash_point(f"before-rename:{path.name}")
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}{TEMP_TOKEN}old-{os.getpid()}")
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
    """Hidden temporaries that killed workbench runs left under ``root``: names with the workbench's token (see
    the module docstring), regular files or real folders (never symlinks); symlinked folders are not entered."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: a symlinked folder is not entered
        for name in list(dirnames) + filenames:
            full = Path(dirpath) / name
            if STALE_TEMP.match(name) and not full.is_symlink() and (full.is_dir() or is_regular_file(full)):
                found.append(full)
        dirnames[:] = [d for d in dirnames if not STALE_TEMP.match(d)]
    return found


def clean_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Remove :func:`stale_temps` under ``root``; call only when no other process writes there (hold
    :func:`run_lock`). Folders are removed with their contents: only the workbench creates folders so named."""
    removed = stale_temps(root)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return removed


# -- one run per folder -------------------------------------------------------------------------------------------
LOCK_FILE = ".workbench.lock"  # held (flock) while a run writes into the folder; the kernel drops it when we die
HOLDER_FILE = ".workbench.lock.json"  # who holds it: pid, host, start time, command; removed on release


class RunFolderError(WorkbenchError, RuntimeError):
    """An output folder cannot be created or written (a file in the way, a read-only mount, no permission)."""


class RunLocked(RunFolderError):
    """Another run is writing into the same output folder."""


def _holder_text(folder: Path) -> str:
    try:
        info = json.loads((folder / HOLDER_FILE).read_text(encoding="utf-8"))
        return (f"pid {int(info['pid'])} on host {str(info['host'])[:100]}, started {str(info['started'])[:40]}: "
                f"{str(info.get('command', ''))[:300]}")
    except (OSError, ValueError, TypeError, KeyError):
        return "details unknown"


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, command: str = ""):
    """Hold the lock of output folder ``folder`` for the ``with`` block; a second run into the same folder raises
    :class:`RunLocked` at once, naming the run that holds it (pid, host, start time, command).

    The lock is an ``flock`` (the ``filelock`` package) on ``folder/.workbench.lock``: the operating system
    releases it when the holder exits or is killed, so a stale lock never blocks a later run. A holder record
    left behind by a run that was killed is reported as the block's value (None otherwise)."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    lock = FileLock(str(folder / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunLocked(f"{folder} is in use by another run ({_holder_text(folder)}); wait for it to finish, or "
                        "give this run another name or --outputs folder") from None
    except OSError as err:
        raise RunFolderError(f"cannot lock the output folder {folder}: {err.strerror or err}; pass --outputs a "
                             "writable folder") from None
    try:
        stale = _holder_text(folder) if (folder / HOLDER_FILE).exists() else None
        atomic_write_text(folder / HOLDER_FILE, json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        yield stale
    finally:
        with contextlib.suppress(OSError):
            (folder / HOLDER_FILE).unlink()
        lock.release()


# -- state of a finished metanetwork run ------------------------------------------------------------------------------
_RESULT_FIELDS = {"best_epoch": int, "best_val_loss": (int, float), "seconds": (int, float)}


def run_result_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder/result.json`` and ``metrics.jsonl`` of a finished metanetwork run do not read back (truncated,
    not JSON, a field missing or of the wrong type), or None when they do. Callers resume such a run: training
    continues from ``checkpoint.pt`` and rewrites both files."""
    folder = Path(folder)
    try:
        info = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            return "result.json does not hold a JSON object"
        for key, kind in _RESULT_FIELDS.items():
            if not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
                return f"result.json: {key!r} is missing or not a number"
        for n, line in enumerate((folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines(), start=1):
            if line and not isinstance(json.loads(line), dict):
                return f"metrics.jsonl line {n} is not a JSON object"
    except (OSError, ValueError, RecursionError) as err:  # missing, unreadable, truncated, not JSON, not UTF-8
        return f"{type(err).__name__}: {str(err)[:200]}"
    return None


def run_result_readable(folder: str | os.PathLike) -> bool:
    """True when :func:`run_result_problem` finds nothing; otherwise logs the problem and returns False."""
    problem = run_result_problem(folder)
    if problem:
        logging.getLogger(__name__).warning("%s: its result files do not read back (%s); resuming the run to "
                                            "rewrite them", folder, problem)
    return problem is None
