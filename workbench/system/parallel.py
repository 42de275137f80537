"""Independent jobs (metanetwork trainings) on several CPU cores at once.

Each metanetwork training runs on one torch thread (small kernels scale badly across threads, see the README's
Troubleshooting), so a machine with two cores trains two runs in the time of one when they run in separate
processes. Workers are started with ``spawn`` (safe under Jupyter kernels and with torch's thread pools), each with
one torch thread; a job is a picklable description, its function a module-level function, and its result comes
back to the caller. A failing job raises in the caller with the job named.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Callable, Sequence

from . import environment

__all__ = ["default_workers", "run_parallel", "start_order"]


def default_workers(requested: int | None = None) -> int:
    """``requested`` when given (>= 1), else the number of usable CPU cores (``WORKBENCH_WORKERS`` overrides)."""
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"workers must be >= 1, got {requested}")
        return int(requested)
    env = environment.workers()
    if env is not None:
        return env
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def start_order(jobs: Sequence, cost: Callable | None = None) -> list[int]:
    """Indices of ``jobs`` in the order to start them: by decreasing ``cost(job)`` (ties keep their order), or as
    given without ``cost``."""
    order = list(range(len(jobs)))
    if cost is None:
        return order
    costs = [float(cost(job)) for job in jobs]
    return sorted(order, key=lambda i: -costs[i])


def _die_with_parent() -> None:
    """Linux: ask the kernel to send this worker SIGTERM when the process that started it dies, so a killed run
    (or notebook kernel) leaves no orphans training on. Elsewhere a no-op: the pool reaps its workers on exit."""
    if not os.uname().sysname == "Linux":
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() == 1:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _init_worker() -> None:
    _die_with_parent()
    environment.apply_threads()  # WORKBENCH_THREADS as in the parent; 0 leaves torch's default


def run_parallel(fn: Callable, jobs: Sequence, *, workers: int | None = None, desc: str = "jobs",
                 progress: bool = True, label: Callable = str, cost: Callable | None = None) -> list:
    """``[fn(job) for job in jobs]``, computed by ``workers`` processes (results in the order of ``jobs``).

    ``cost(job)``: an estimate of a job's run time; the jobs then start longest first (the classic longest
    processing time rule), so that a long job does not start last and keep one core busy while the others idle.
    With one worker or one job everything runs in this process (no start-up cost, easy to debug).
    """
    from .progress import progress_bar as tqdm  # plain text lines in batch runs (workbench.system.progress)

    environment.threads()  # a bad WORKBENCH_THREADS is an error here, not a crash in every worker
    workers = min(default_workers(workers), max(1, len(jobs)))
    if workers == 1:
        results = []
        for job in tqdm(jobs, desc=desc, disable=not progress):
            try:
                results.append(fn(job))
            except Exception as err:
                raise RuntimeError(f"{desc}: job {label(job)} failed: {type(err).__name__}: {err}") from err
        return results
    results = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(fn, jobs[i]): i for i in start_order(jobs, cost)}
        bar = tqdm(total=len(jobs), desc=f"{desc} ({workers} processes)", disable=not progress)
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as err:
                for other in futures:
                    other.cancel()
                raise RuntimeError(f"{desc}: job {label(jobs[i])} failed: {type(err).__name__}: {err}") from err
            bar.update(1)
        bar.close()
    return results
