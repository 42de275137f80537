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

from ..errors import WorkbenchError

__all__ = [
    "crash_point", "NotARegularFile", "is_regular_file", "open_regular", "read_regular_bytes", "read_regular_text",
    "sha256_file", "atomic_write_bytes", "atomic_write_text",
    "atomic_path", "stale_temps", "clean_stale_temps", "RunFolderError", "RunLocked", "run_lock", "output_lock",
    "run_not_in_use",
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


@contextlib.contextmanager
def open_regular(path: str | os.PathLike):
    """Open ``path`` for reading in binary mode, but only if it is a regular file (a symlink to one is followed).

    The one check every reader of a file a user could have replaced goes through: a FIFO, socket or device raises
    :class:`NotARegularFile` at once (the open does not wait for a FIFO's writer, and the type is checked on the
    opened file itself, so the file cannot be swapped between a check and the read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # opening a FIFO must not wait for a writer
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(f"{path} is not a regular file (a pipe, socket, device or folder)")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
        fd = -1  # closed by the file object
    finally:
        if fd >= 0:
            os.close(fd)
    with fh:
        yield fh


def read_regular_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path`` through :func:`open_regular` (a FIFO or device raises :class:`NotARegularFile`)."""
    with open_regular(path) as fh:
        return fh.read()


def read_regular_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path`` through :func:`open_regular`, newlines as they are in the file (no translation).
    Raises :class:`NotARegularFile` (an OSError) or UnicodeDecodeError (a ValueError)."""
    return read_regular_bytes(path).decode("utf-8")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks. Only regular files (symlinks to them are followed):
    a FIFO, socket or device raises :class:`NotARegularFile` at once instead of blocking or reading forever."""
    h = hashlib.sha256()
    with open_regular(path) as fh:
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_default_mode(path: Path, directory: bool) -> None:
    """Temporaries are created private (mkstemp 0600, mkdtemp 0700); what is renamed into place gets the mode a
    plain ``open``/``mkdir`` would have given it (0644 / 0755 under the usual umask), like the executed notebooks."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; ``mode`` (e.g. an existing file's permission bits) replaces the
    default mode a plain ``open`` would give."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_TOKEN}", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is None:
            _give_default_mode(Path(tmp), directory=False)
        else:
            os.chmod(tmp, mode)
        crash_point(f"before-rename:{path.name}")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> Path:
    return atomic_write_bytes(path, text.encode(), mode)


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


def _holder_text(holder: Path) -> str:
    try:
        info = json.loads(read_regular_text(holder))
        return (f"pid {int(info['pid'])} on host {str(info['host'])[:100]}, started {str(info['started'])[:40]}: "
                f"{str(info.get('command', ''))[:300]}")
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return "details unknown"


@contextlib.contextmanager
def _hold(lock_file: Path, holder: Path, command: str, busy: str, unwritable: str):
    """Hold an ``flock`` on ``lock_file`` (the ``filelock`` package) and record who holds it in ``holder``;
    ``busy`` is the error when another process holds it (``{holder}`` names that process), ``unwritable`` the
    start of the error when the lock file cannot be created."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunLocked(busy.format(holder=_holder_text(holder))) from None
    except OSError as err:
        raise RunFolderError(f"{unwritable}: {err.strerror or err}; pass a writable folder") from None
    try:
        stale = _holder_text(holder) if os.path.lexists(holder) else None
        atomic_write_text(holder, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                              "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        yield stale
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, command: str = ""):
    """Hold the lock of output folder ``folder`` for the ``with`` block; a second run into the same folder raises
    :class:`RunLocked` at once, naming the run that holds it (pid, host, start time, command).

    The lock is an ``flock`` (the ``filelock`` package) on ``folder/.workbench.lock``: the operating system
    releases it when the holder exits or is killed, so a stale lock never blocks a later run. A holder record
    left behind by a run that was killed is reported as the block's value (None otherwise)."""
    folder = Path(folder)
    busy = (f"{folder} is in use by another run ({{holder}}); wait for it to finish, or give this run another name "
            "or --outputs folder")
    with _hold(folder / LOCK_FILE, folder / HOLDER_FILE, command, busy,
               f"cannot lock the output folder {folder}") as stale:
        yield stale


@contextlib.contextmanager
def output_lock(out: str | os.PathLike, command: str = ""):
    """The lock of a folder that a command builds elsewhere and renames into place (``optimize --out``, ``zoo
    --out``): as :func:`run_lock`, but on ``.<name>.workbench.lock`` beside ``out`` (a lock inside would be renamed
    away with the old folder). The empty lock file stays, as a run folder's does."""
    out = Path(out)
    with _hold(out.with_name(f".{out.name}.workbench.lock"), out.with_name(f".{out.name}.workbench.lock.json"),
               command, f"{out} is being written by another command ({{holder}}); wait for it to finish, or pass "
               "another folder", f"cannot lock {out}") as stale:
        yield stale


@contextlib.contextmanager
def run_not_in_use(folder: str | os.PathLike):
    """For readers of a run folder (``report``): raise :class:`RunLocked` if a run (or ``train``, ``index``) holds
    its lock, and keep a shared lock for the block so none starts meanwhile. Takes nothing where no run ever
    locked the folder; opens the lock file read-only, so a read-only copy of a run can be read."""
    import fcntl

    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:  # no lock file (never run here) or a link: nothing holds it
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{folder} is in use by another run ({_holder_text(Path(folder) / HOLDER_FILE)}); "
                            "wait for it to finish, then rerun this command") from None
        yield
    finally:
        os.close(fd)  # releases the shared lock


# -- state of a finished metanetwork run ------------------------------------------------------------------------------
_RESULT_FIELDS = {"best_epoch": int, "best_val_loss": (int, float), "seconds": (int, float)}


def run_result_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder/result.json`` and ``metrics.jsonl`` of a finished metanetwork run do not read back (truncated,
    not JSON, a field missing or of the wrong type), or None when they do. Callers resume such a run: training
    continues from ``checkpoint.pt`` and rewrites both files."""
    folder = Path(folder)
    try:
        info = json.loads(read_regular_text(folder / "result.json"))
        if not isinstance(info, dict):
            return "result.json does not hold a JSON object"
        for key, kind in _RESULT_FIELDS.items():
            if not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
                return f"result.json: {key!r} is missing or not a number"
        for n, line in enumerate(read_regular_text(folder / "metrics.jsonl").splitlines(), start=1):
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
