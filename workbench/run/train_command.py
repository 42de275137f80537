"""``python -m workbench train params/x.yaml --family F``: notebook 04's training of one metanetwork without Jupyter.

It reads a params file (:mod:`workbench.run.params`) and then runs the pipeline's
:func:`~workbench.pipeline.train_metanet`, so it sits with the run machinery, above the pipeline, which never reads
params files itself.
"""
from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist

from ..errors import ParamsError
from ..pipeline.recipe import DataRecipe, Recipe, ZooRecipe
from ..pipeline.runs import train_metanet
from ..system.paths import output_root
from ..training.optimize import TrainResult
from .params import file_values

__all__ = ["train_from_params"]


def train_from_params(params_path: str, family: str, objective: str = "ce", *, symmetry: str | None = None,
                      resume: bool = True) -> TrainResult:
    """``python -m workbench train params/x.yaml --family cnn-tanh``: the notebook-04 training without Jupyter.

    Reads the params file's shared keys and its section "04" (never a notebook's defaults: what the file leaves
    out takes the library's defaults, those of :class:`TrainConfig`, :func:`get_data` and :func:`get_zoo`; only
    ``n_networks`` and ``zoo_epochs``, and ``lam`` for the L1 objective, have none and must be set). Under
    ``torchrun`` it runs with DistributedDataParallel (gloo on CPU, NCCL on CUDA).
    """
    params, values = file_values(params_path, "04")
    missing = [k for k in ("n_networks", "zoo_epochs", *(("lam",) if objective == "l1" else ())) if k not in values]
    if missing:
        raise ParamsError(f"{params_path} sets no {missing}: `python -m workbench train` reads the file's shared keys "
                          "and section \"04\" (no notebook defaults); add them")
    out = output_root(params)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and values.get("device", "auto") != "cpu" else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        seed = int(values.get("seed", 0))
        data = DataRecipe(values.get("dataset", "digits"), values.get("data_path"), seed).load()
        steps = values.get("zoo_steps")
        zoo = ZooRecipe(values["n_networks"], values["zoo_epochs"], seed, values.get("zoo_path"),
                        tuple(steps) if isinstance(steps, list) else steps,
                        values.get("zoo_test_fraction", 0.5)).load(out, family, data)
        started = time.time()
        method = "gmn" if symmetry == "none" else "scalegmn"  # the activation's group, or broken
        result = train_metanet(out, zoo, data, Recipe.from_values(values), method=method, objective=objective,
                               lam=values.get("lam", 0.0), seed=seed, resume=resume)
        if not dist.is_initialized() or dist.get_rank() == 0:
            done = result.out_dir / "result.json"
            verb = "reloaded the finished run of" if done.stat().st_mtime < started else "trained"
            print(f"[workbench] {verb} {family} ({objective}); best epoch {result.best_epoch}, "
                  f"val loss {result.best_val_loss:.4f}; outputs in {result.out_dir}")
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
