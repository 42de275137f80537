"""Run the notebook sequence headlessly with papermill, from one params file.

``python -m workbench run params/default.yaml [--only 01 03] [--resume]`` validates the params file against every
selected notebook first, then executes them in order into ``outputs/<name>/notebooks/``. Each executed notebook is
written to a temporary file and renamed only on success; a completion marker (with a digest of the parameters
used) lets ``--resume`` skip notebooks that already finished with the same parameters.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .io import atomic_write_text
from .params import ParamsError, RunParams, declared_parameters, list_notebooks, load_params, notebook_key

KERNEL_NAME = "workbench"
REPO_ROOT = Path(__file__).resolve().parent.parent


class NotebookFailed(RuntimeError):
    pass


def check_kernel(kernel_name: str = KERNEL_NAME) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    if kernel_name not in KernelSpecManager().find_kernel_specs():
        raise RuntimeError(
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


def output_root(params: RunParams, outputs: Path | None = None) -> Path:
    return (outputs or REPO_ROOT / "outputs") / params.name


def _marker(out: Path, nb: Path) -> Path:
    return out / "notebooks" / f".{nb.stem}.done.json"


def is_complete(out: Path, nb: Path, digest: str) -> bool:
    marker = _marker(out, nb)
    executed = out / "notebooks" / nb.name
    if not (marker.exists() and executed.exists()):
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("digest") == digest


def run(params_path: str | os.PathLike, only: list[str] | None = None, resume: bool = False,
        outputs: Path | None = None, kernel_name: str = KERNEL_NAME, log=print) -> Path:
    """Validate, then execute the selected notebooks in order; returns ``outputs/<name>``."""
    import papermill as pm

    notebooks = select_notebooks(only)
    params = load_params(params_path, list_notebooks())  # validate against ALL notebooks before running any
    check_kernel(kernel_name)
    out = output_root(params, outputs)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "params.json", json.dumps({"source": str(params.path), "shared": params.shared,
                                                       "sections": params.sections}, indent=2, default=str))
    for nb in notebooks:
        declared = declared_parameters(nb)
        digest = params.digest(nb, declared)
        if resume and is_complete(out, nb, digest):
            log(f"[workbench] {nb.name}: complete with the same parameters, skipped (--resume)")
            continue
        injected = params.for_notebook(nb, declared)
        if "output_dir" in declared:
            injected["output_dir"] = str(out)
        target = out / "notebooks" / nb.name
        tmp = target.with_name(f".{nb.stem}.running.ipynb")
        _marker(out, nb).unlink(missing_ok=True)
        log(f"[workbench] running {nb.name} -> {target}")
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(tmp), parameters=injected, kernel_name=kernel_name,
                                cwd=str(nb.parent), progress_bar=False, log_output=False)
        except Exception as err:
            failed = target.with_name(f"{nb.stem}.failed.ipynb")
            if tmp.exists():
                os.replace(tmp, failed)
            raise NotebookFailed(
                f"{nb.name} failed ({type(err).__name__}): {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
                f"\nthe partially executed notebook is at {failed}; earlier outputs in {out} are intact"
            ) from None
        os.replace(tmp, target)
        seconds = time.perf_counter() - t0
        atomic_write_text(_marker(out, nb), json.dumps({"digest": digest, "seconds": round(seconds, 2)}))
        log(f"[workbench] {nb.name} done in {seconds:.1f} s")
    return out
