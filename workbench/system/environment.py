"""The ``WORKBENCH_*`` environment variables that change what the workbench does, each parsed in one place with a
clear error (:class:`~workbench.errors.UsageError`, which the command line prints as one ``error: ...`` line, exit 2).

* ``WORKBENCH_THREADS``: torch CPU threads per process, default 1 (see :mod:`workbench`); ``0`` leaves torch's own
  default, in this process and in every worker process of :func:`workbench.system.parallel.run_parallel`.
* ``WORKBENCH_WORKERS``: worker processes for independent trainings (default: the usable CPU cores).
* ``WORKBENCH_DEBUG``: ``1`` shows the traceback of every error on the command line.

The package applies ``WORKBENCH_THREADS`` on import but never fails there (``python -m workbench --help`` must work
whatever the environment); every command then refuses a bad value before doing anything.
Test hooks (``WORKBENCH_CRASH_AT``) and the notebooks' switches (``WORKBENCH_BATCH``, ``WORKBENCH_PNG``) are read
where they act.
"""
from __future__ import annotations

import os

from ..errors import UsageError

__all__ = ["threads", "workers", "debug", "check", "apply_threads"]

MAX_COUNT = 4096  # threads or processes: more than any machine the workbench runs on


def _count(name: str, low: int, default: int | None, meaning: str) -> int | None:
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= MAX_COUNT:
        raise UsageError(f"environment variable {name} is {raw[:40]!r}, but must be an integer in [{low}, "
                         f"{MAX_COUNT}] ({meaning}); set it to such a number or unset it")
    return value


def threads() -> int:
    """``WORKBENCH_THREADS``: torch CPU threads per process (default 1; 0 = torch's own default)."""
    return _count("WORKBENCH_THREADS", 0, 1, "torch CPU threads per process; 0 leaves torch's own default")


def workers() -> int | None:
    """``WORKBENCH_WORKERS``: worker processes for independent jobs, or None (unset: the usable cores)."""
    return _count("WORKBENCH_WORKERS", 1, None, "worker processes for independent trainings")


def debug() -> bool:
    """``WORKBENCH_DEBUG``: show tracebacks (``1``/``true``/``yes``; ``0``/``false``/``no`` or unset: do not)."""
    raw = os.environ.get("WORKBENCH_DEBUG", "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise UsageError(f"environment variable WORKBENCH_DEBUG is {raw[:40]!r}, but must be 1 or 0; set it to one "
                     "of them or unset it")


def check() -> None:
    """Raise the :class:`UsageError` of the first ``WORKBENCH_*`` variable that holds a bad value."""
    threads()
    workers()
    debug()


def apply_threads() -> None:
    """Set torch's CPU threads from ``WORKBENCH_THREADS`` (0: leave torch's default). A bad value changes nothing
    here; :func:`check` reports it."""
    try:
        n = threads()
    except UsageError:
        return
    if n > 0:
        import torch

        torch.set_num_threads(n)
