"""Run the notebook sequence headlessly with papermill, from one params file.

``python -m workbench run params/default.yaml [--only 01 03] [--resume]`` validates the params file against every
selected notebook first, then executes them in order into ``outputs/<name>/notebooks/``.

Crash safety: each executed notebook is written to a hidden temporary and renamed only on success; every artifact
the notebooks write goes through :mod:`workbench.system.io` (temporary + rename). After a notebook finishes, a
completion marker ``notebooks/.<stem>.done.json`` records the digest of its parameters, the SHA-256 of the executed
notebook and of every file under ``outputs/<name>/`` that no earlier completed notebook vouches for (what it wrote or
reused). ``--resume`` trusts a notebook only if its
marker, parameters and all those files still agree (:func:`plan`), skips the leading notebooks that do, and runs
everything from the first that does not (later notebooks read what earlier ones wrote).
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ParamsError, WorkbenchError
from ..reporting.index import write_index
from ..system.io import (
    RunFolderError, atomic_write_text, clean_stale_temps, crash_point, is_regular_file, run_lock,
    sha256_file as _sha256,
)
from ..system.machine import machine_description
from ..system.progress import BATCH_ENV
from .params import RunParams, declared_parameters, list_notebooks, load_params, notebook_key
from ..system.paths import git_revision, output_root

__all__ = ["KERNEL_NAME", "NotebookFailed", "SetupError", "check_kernel", "select_notebooks", "NotebookState",
           "notebook_state", "plan", "run"]

KERNEL_NAME = "workbench"
MARKER_VERSION = 2
# Widget cells get a deadline: nbclient can miss the execute reply of a cell that creates Output widgets and then
# wait forever (nbclient #312, papermill #723); with a deadline its poll wakes up and finds the reply.
WIDGET_CELL_TIMEOUT = 120
# files of the run folder that belong to the run command, not to a notebook (rewritten by every run)
RUN_FILES = ("params.json", "index.html")


class NotebookFailed(WorkbenchError, RuntimeError):
    """A notebook raised or its kernel died; the message names the notebook and where its partial copy is."""


class SetupError(WorkbenchError, RuntimeError):
    """The environment lacks something a run needs (the Jupyter kernel)."""


def check_kernel(kernel_name: str = KERNEL_NAME) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    if kernel_name not in KernelSpecManager().find_kernel_specs():
        raise SetupError(
            f"Jupyter kernel {kernel_name!r} is not installed; run `make setup` or "
            f"`python -m ipykernel install --sys-prefix --name {kernel_name}` inside the project's environment"
        )


def select_notebooks(only: list[str] | None) -> list[Path]:
    notebooks = list_notebooks()
    if not only:
        return notebooks
    keys = {notebook_key(nb): nb for nb in notebooks}
    wanted = [o.zfill(2) if o.isdigit() else o for o in only]
    missing = [w for w in wanted if w not in keys]
    if missing:
        raise ParamsError(f"--only {missing}: no such notebook; available: {sorted(keys)}")
    return [keys[w] for w in sorted(wanted)]


def _marker(out: Path, nb: Path) -> Path:
    return out / "notebooks" / f".{nb.stem}.done.json"



def _artifacts(out: Path) -> dict[str, str]:
    """``relative path -> SHA-256`` of the visible artifacts under ``out`` (hidden files and folders excluded;
    the executed notebooks and their markers are tracked separately). Only regular files count: the workbench
    writes nothing else, and a FIFO, socket or device could block or never end; symlinks (to files or folders)
    are not followed, so a link to a huge file costs nothing."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(out):  # followlinks=False
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(out)
        if rel_dir.parts[:1] == ("notebooks",):
            continue
        for name in filenames:
            if name.startswith(".") or (rel_dir == Path(".") and name in RUN_FILES):
                continue
            if is_regular_file(Path(dirpath) / name):
                files[(rel_dir / name).as_posix()] = _sha256(Path(dirpath) / name)
    return files


def _recorded_artifacts(info) -> dict[str, str] | None:
    """The ``artifacts`` of a completion marker if well formed (relative path -> hex SHA-256), else None."""
    artifacts = info.get("artifacts") if isinstance(info, dict) else None
    if not isinstance(artifacts, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in artifacts.items()):
        return None
    return artifacts


@dataclass
class NotebookState:
    notebook: Path
    complete: bool
    reason: str  # why it is not complete ("" when it is)


def _expected_hashes(out: Path, notebooks: list[Path]) -> dict[str, str]:
    """The latest recorded hash of every artifact, over the markers in sequence order (a later notebook may
    legitimately rewrite a file an earlier one wrote)."""
    expected = {}
    for nb in notebooks:
        try:
            recorded = _recorded_artifacts(json.loads(_marker(out, nb).read_text(encoding="utf-8")))
        except (OSError, ValueError, RecursionError):  # missing, unreadable, not JSON, not UTF-8
            continue
        expected.update(recorded or {})
    return expected


def notebook_state(out: Path, nb: Path, digest: str, expected: dict[str, str] | None = None) -> NotebookState:
    """Is ``nb``'s run in ``out`` complete and intact? Checks the marker, the parameters digest, the executed
    notebook's hash and the hashes of the artifacts it wrote."""
    marker, executed = _marker(out, nb), out / "notebooks" / nb.name
    state = lambda reason: NotebookState(nb, not reason, reason)  # noqa: E731
    if not marker.exists():
        return state("it never finished (no completion marker)")
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return state(f"its completion marker {marker.name} is unreadable")
    if not isinstance(info, dict) or info.get("version") != MARKER_VERSION:
        return state(f"its completion marker {marker.name} is from an older workbench")
    if info.get("digest") != digest:
        return state("it ran with different parameters")
    recorded = _recorded_artifacts(info)
    if recorded is None:
        return state(f"its completion marker {marker.name} is malformed ('artifacts' is not a map of files to "
                     "checksums)")
    if not is_regular_file(executed):
        return state(f"the executed notebook {executed.name} is missing")
    if _sha256(executed) != info.get("notebook_sha256"):
        return state(f"the executed notebook {executed.name} changed after it finished")
    expected = expected if expected is not None else {}
    for rel, digest_recorded in recorded.items():
        file = out / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not is_regular_file(file):
            return state(f"its output {rel[:200]} is missing")
        if _sha256(file) != expected.get(rel, digest_recorded):
            return state(f"its output {rel} changed or is corrupt")
    return state("")


def plan(params_path: str | os.PathLike, only: list[str] | None = None,
         outputs: Path | None = None) -> list[NotebookState]:
    """What ``--resume`` would do: for each selected notebook, whether its previous run is complete and why not.
    Everything from the first incomplete notebook on is run again."""
    notebooks = select_notebooks(only)
    params = load_params(params_path, list_notebooks(), selected=notebooks)
    out = output_root(params, outputs)
    expected = _expected_hashes(out, list_notebooks())
    return [notebook_state(out, nb, params.digest(nb, declared_parameters(nb)), expected) for nb in notebooks]


def _cell_timeout(cell) -> int | None:
    return WIDGET_CELL_TIMEOUT if "_widget(" in cell.source else None


@contextmanager
def _memory_environment(params: RunParams):
    """``WORKBENCH_MEMORY_GB`` from the params file's ``memory_gb`` for the kernels started meanwhile (and their worker
    processes): the memory budget of every evaluation chunk (:mod:`workbench.memory`). Without the key, the
    environment is left as it is (the caller's value, or the default share of the machine's memory)."""
    from ..memory import MEMORY_ENV

    value = params.run.get("memory_gb")
    if value is None:
        yield
        return
    before = os.environ.get(MEMORY_ENV)
    os.environ[MEMORY_ENV] = repr(float(value))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MEMORY_ENV, None)
        else:
            os.environ[MEMORY_ENV] = before


@contextmanager
def _batch_environment():
    """``WORKBENCH_BATCH=1`` for the kernels started meanwhile (they inherit this process's environment): their
    progress bars write text lines and their explorer widgets leave static figures (:mod:`workbench.notebook`).
    A value the caller set (``WORKBENCH_BATCH=0`` keeps the widgets) is left alone."""
    if os.environ.get(BATCH_ENV):
        yield
        return
    os.environ[BATCH_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(BATCH_ENV, None)


def run(params_path: str | os.PathLike, only: list[str] | None = None, resume: bool = False,
        outputs: Path | None = None, kernel_name: str = KERNEL_NAME, log=print, estimate: bool = False) -> Path:
    """Validate, then execute the selected notebooks in order; returns ``outputs/<name>``. The output folder is
    locked for the run (:func:`workbench.system.io.run_lock`): a second run into it fails at once. With ``estimate``
    (the command line's default) the paths and devices are checked first and the run's time and memory on this device
    printed (:func:`workbench.run.estimate.check_run`); a step over the memory budget stops it there."""
    notebooks = select_notebooks(only)
    # validate against ALL notebooks before running any (combined settings: those that will run)
    params = load_params(params_path, list_notebooks(), selected=notebooks)
    if estimate:
        from .estimate import check_run

        check_run(params, notebooks, log=log)
    check_kernel(kernel_name)
    out = output_root(params, outputs)
    try:
        (out / "notebooks").mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:  # a file in the way, a read-only mount, no permission, a NUL byte
        raise RunFolderError(f"cannot create the output folder {out}: {getattr(err, 'strerror', None) or err}; "
                             "pass --outputs a writable folder (or give the run another name)") from None
    command = f"python -m workbench run {params.path}" + (f" --only {' '.join(only)}" if only else "")
    with run_lock(out, command) as stale:
        if stale:
            log(f"[workbench] the previous run in {out} ({stale}) ended without releasing it (killed?)")
        return _run_locked(params, notebooks, out, resume, kernel_name, log)


def _run_locked(params: RunParams, notebooks: list[Path], out: Path, resume: bool, kernel_name: str, log) -> Path:
    """The body of :func:`run`, while this process holds the output folder's lock."""
    removed = clean_stale_temps(out)
    if removed:
        log(f"[workbench] removed {len(removed)} temporary file(s) left by an interrupted run in {out}")
    atomic_write_text(out / "params.json", json.dumps({
        "source": str(params.path), "shared": params.shared, "sections": params.sections,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git_revision": git_revision(),
        "machine": machine_description()},
        indent=2, default=str))
    try:
        _run_notebooks(params, notebooks, out, resume, kernel_name, log)
    except NotebookFailed:  # the index shows what the run got to, the failed notebook's partial copy included
        _write_index(out, log)
        raise
    _write_index(out, log)
    return out


def _write_index(out: Path, log) -> None:
    """``out/index.html`` (:mod:`workbench.reporting.index`); a convenience, so a problem with it is reported, never
    raised."""
    try:
        log(f"[workbench] results index: {write_index(out, log=log)}")
    except Exception as err:
        log(f"[workbench] could not write {out / 'index.html'}: {type(err).__name__}: {err}")


def _run_notebooks(params: RunParams, notebooks: list[Path], out: Path, resume: bool, kernel_name: str,
                   log) -> Path:
    """Execute ``notebooks`` in order into ``out`` (``--resume``: skip the leading complete ones)."""
    import papermill as pm

    skipping = resume
    expected = _expected_hashes(out, list_notebooks()) if resume else {}
    for nb in notebooks:
        declared = declared_parameters(nb)
        digest = params.digest(nb, declared)
        if skipping:
            state = notebook_state(out, nb, digest, expected)
            if state.complete:
                log(f"[workbench] {nb.name}: complete and intact, skipped (--resume)")
                continue
            log(f"[workbench] {nb.name}: not complete ({state.reason}); running from here on")
            skipping = False
        injected = params.for_notebook(nb, declared)
        if "output_dir" in declared:
            injected["output_dir"] = str(out)
        target = out / "notebooks" / nb.name
        tmp = target.with_name(f".{nb.stem}.running.ipynb")
        _marker(out, nb).unlink(missing_ok=True)
        target.with_name(f"{nb.stem}.failed.ipynb").unlink(missing_ok=True)
        log(f"[workbench] running {nb.name} -> {target}")
        t0 = time.perf_counter()
        try:
            with _batch_environment(), _memory_environment(params):
                # shutdown_kernel="immediate": on Ctrl-C nbclient's graceful shutdown of a busy kernel made the
                # kernel print a 20-line ZMQ traceback above the command's one-line advice; a finished notebook's
                # kernel has nothing left to do, so ending it at once loses nothing
                pm.execute_notebook(str(nb), str(tmp), parameters=injected, kernel_name=kernel_name,
                                    cwd=str(nb.parent), progress_bar=False, log_output=False,
                                    timeout_func=_cell_timeout, shutdown_kernel="immediate")
        except Exception as err:
            failed = target.with_name(f"{nb.stem}.failed.ipynb")
            if tmp.exists():
                os.replace(tmp, failed)
            last = str(err).strip().splitlines()[-1] if str(err).strip() else ""
            raise NotebookFailed(
                f"{nb.name} failed ({type(err).__name__}): {last}\nthe partially executed notebook is at "
                f"{failed}; earlier outputs in {out} are intact; fix the cause and rerun with --resume"
            ) from None
        crash_point(f"before-rename:{nb.name}")
        os.replace(tmp, target)
        seconds = time.perf_counter() - t0
        crash_point(f"before-marker:{nb.stem}")
        # this notebook vouches for every artifact that no earlier completed notebook vouches for as it is now
        # (what it wrote, and what it reused from an interrupted earlier attempt)
        earlier = _expected_hashes(out, [n for n in list_notebooks() if n.name < nb.name])
        artifacts = {rel: sha for rel, sha in _artifacts(out).items() if earlier.get(rel) != sha}
        atomic_write_text(_marker(out, nb), json.dumps({
            "version": MARKER_VERSION, "digest": digest, "seconds": round(seconds, 2),
            "notebook_sha256": _sha256(target), "artifacts": artifacts}, indent=1))
        log(f"[workbench] {nb.name} done in {seconds:.1f} s")
    return out
