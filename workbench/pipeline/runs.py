"""One metanetwork run: its folder, training it (or reloading it when finished), and many runs at once.

A run is fixed by the sequence's :class:`~workbench.pipeline.recipe.Recipe` and its own family, method, objective,
L1 weight and seed: :meth:`Recipe.config` gives its :class:`~workbench.training.train_config.TrainConfig` and
:func:`run_dir` names its folder after it (the config's digest), so that runs with other settings live side by side
and a finished run is reloaded, never retrained. The command-line training (``python -m workbench train``) reads a
params file first and so lives with the run machinery (:mod:`workbench.run.train_command`).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch.distributed as dist

from ..data import Dataset
from ..errors import ConfigError
from ..system.io import atomic_write_text, run_result_readable
from ..nets import NetSpec
from ..training.train_config import TrainConfig, resolve_device
from ..training.optimize import TrainResult, train
from ..training.checkpoints import load_model
from ..system.parallel import run_parallel
from ..zoo import Zoo, default_spec
from .methods import METHODS
from .recipe import OBJECTIVES, DataRecipe, Recipe, ZooRecipe
from .zoos import split_params

__all__ = ["OBJECTIVES", "run_dir", "train_metanet", "training_splits", "prefetch_runs",
           "run_exists", "recipe_run_dir"]

#: the version of the run-folder digest rule, recorded in run.json: folders of an earlier rule are never reused
DIGEST_RULE = 2


def run_dir(output_dir: str | os.PathLike, family: str, objective: str, config: TrainConfig) -> Path:
    """``metanet/<family>/<objective>-<symmetry>-s<seed>-<config digest>``: runs with different settings (e.g.
    notebook 04's bigger model and notebook 05's ablation runs) live side by side."""
    name = f"{objective}-{config.meta.symmetry}-s{config.seed}-{config.digest()}"
    return Path(output_dir) / "metanet" / family / name


def train_metanet(output_dir: str | os.PathLike, zoo: Zoo, data: Dataset, recipe: Recipe, *, method: str = "scalegmn",
                  objective: str = "ce", lam: float = 0.0, seed: int = 0, resume: bool = True,
                  progress: bool = True) -> TrainResult:
    """Train (or resume, or reload when finished) the run of ``method`` (a key of :data:`METHODS`) for
    ``objective`` with ``recipe``; writes ``result.json`` when done."""
    config = recipe.config(zoo.spec, method=method, objective=objective, lam=lam, seed=seed)
    folder = run_dir(output_dir, zoo.spec.family, objective, config)
    identity = {"digest_rule": DIGEST_RULE, "config": config.to_dict(), "spec": zoo.spec.to_dict(), "dataset": zoo.dataset,
                "zoo": zoo.info.get("generation") or {"entries": len(zoo), "split_seed": zoo.split_seed,
                                                       "source": zoo.info.get("source")}}
    identity = json.loads(json.dumps(identity, default=str))
    marker = folder / "run.json"
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    if rank != 0:  # rank 0 alone prepares the folder (under torchrun every rank runs this function)
        dist.barrier()
    elif folder.exists():
        try:
            same = json.loads(marker.read_text()) == identity
        except (OSError, json.JSONDecodeError):
            same = False
        if not same or not resume:
            # a run folder from another zoo, architecture or configuration: never reuse or resume it
            shutil.rmtree(folder)
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, json.dumps(identity, indent=1))
        if distributed:
            dist.barrier()
    done = folder / "result.json"
    if done.exists() and (folder / "best.pt").exists() and run_result_readable(folder):
        info = json.loads(done.read_text())
        model = load_model(folder / "best.pt", map_location=resolve_device(config.device), spec=zoo.spec)
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
        return TrainResult(model, history, info["best_epoch"], info["best_val_loss"], folder, info["seconds"])
    init_state = None
    if objective == "l1" and config.l1_from_ce:  # start from the CE run of the same settings (reloaded or trained)
        ce = train_metanet(output_dir, zoo, data, recipe, method=method, objective="ce", seed=seed, resume=resume,
                           progress=progress)
        init_state = {k: v.detach().clone() for k, v in ce.model.state_dict().items()}
    splits = training_splits(zoo, config.skip_untrained)
    result = train(zoo.spec, splits["train"], splits["val"], data, config, folder, resume=True, progress=progress,
                   init_state=init_state)
    if rank == 0:
        atomic_write_text(done, json.dumps({"config": config.to_dict(), "best_epoch": result.best_epoch,
                                            "best_val_loss": result.best_val_loss, "seconds": result.seconds,
                                            "family": zoo.spec.family, "objective": objective}, indent=1))
    return result


def training_splits(zoo: Zoo, skip_untrained: bool = False) -> dict[str, list]:
    """The zoo's ``"train"`` and ``"val"`` params for a metanet run: every checkpoint, or with ``skip_untrained``
    (:class:`TrainConfig`) the trained ones (epoch >= 1) only."""
    if not skip_untrained:
        splits = split_params(zoo)
        return {s: splits[s] for s in ("train", "val")}
    trained = sorted(int(e) for e in zoo.meta["epoch"].unique() if e > 0)
    if not trained:
        raise ConfigError(f"skip_untrained leaves no training networks: the zoo of {zoo.spec.family} holds only "
                          "epoch-0 (untrained) checkpoints; set meta_skip_untrained: false or use a zoo with trained "
                          "checkpoints")
    return {s: zoo.subset(split=s, epoch=trained).params for s in ("train", "val")}


def recipe_run_dir(output_dir, spec: NetSpec, recipe: Recipe, *, method: str, objective: str, lam: float,
                   seed: int) -> Path:
    """The folder :func:`train_metanet` uses for this run of ``recipe`` on ``spec``'s family."""
    return run_dir(output_dir, spec.family, objective,
                   recipe.config(spec, method=method, objective=objective, lam=lam, seed=seed))


def run_exists(output_dir, zoo: Zoo, recipe: Recipe, *, method: str, objective: str, lam: float, seed: int) -> bool:
    """Whether the run :func:`train_metanet` would use is finished on disk (so it would be reloaded, not trained)."""
    folder = recipe_run_dir(output_dir, zoo.spec, recipe, method=method, objective=objective, lam=lam, seed=seed)
    return (folder / "result.json").is_file() and (folder / "best.pt").is_file()


# -- many trainings at once ------------------------------------------------------------------------------------------
def _train_job(job: dict) -> dict:
    """Worker side of :func:`prefetch_runs`: load the data and zoo the caller used, train one run to disk."""
    data = job["data"].load()
    zoo = job["zoo"].load(job["output_dir"], job["family"], data, progress=False, verbose=False)
    result = train_metanet(job["output_dir"], zoo, data, job["recipe"], method=job["method"],
                           objective=job["objective"], lam=job["lam"], seed=job["seed"], progress=False)
    return {"family": job["family"], "method": job["method"], "objective": job["objective"], "seed": job["seed"],
            "seconds": result.seconds, "best_epoch": result.best_epoch}


def prefetch_runs(output_dir, runs, *, data: DataRecipe, zoo: ZooRecipe, recipe: Recipe, lam: float,
                  workers: int | None = None, progress: bool = True) -> list[dict]:
    """Train the metanetwork runs ``runs`` -- tuples ``(family, method, objective, seed)``, or with a fifth entry,
    the run's own L1 weight instead of ``lam`` -- in parallel processes, each written to its run folder, so that the
    notebook's own calls (:func:`train_metanet`, :func:`run_ablation`, :func:`family_results`) then reload them
    instead of training one after the other.

    The zoos of ``zoo`` must exist (e.g. from notebook 03): each worker loads them. Runs already finished cost nothing.
    With ``l1_from_ce`` the CE runs the L1 runs start from are trained first, in a round of their own (added when
    not listed), so that no two processes ever train the same run.
    """
    runs = [tuple(r) + (() if len(r) == 5 else (lam,)) for r in runs]
    rounds = [runs]
    if recipe.train.l1_from_ce:  # L1 runs start from their CE runs: those first (a lam means nothing to them)
        ce = [(f, m, "ce", s, lam) for f, m, o, s, _ in runs]
        rounds = [ce, [r for r in runs if r[2] == "l1"]]
    done = []
    for round_runs in rounds:
        round_runs = list(dict.fromkeys(round_runs))  # one process per folder
        if not round_runs:
            continue
        jobs = [{"output_dir": str(output_dir), "family": f, "method": m, "objective": o, "seed": s, "lam": run_lam,
                 "data": data, "zoo": zoo, "recipe": recipe} for f, m, o, s, run_lam in round_runs]
        done += run_parallel(_train_job, jobs, workers=workers, desc="metanet runs", progress=progress,
                             label=lambda j: f"{j['family']} {j['method']} {j['objective']} seed {j['seed']}",
                             cost=_run_cost)
    return done


def _run_cost(job: dict) -> float:
    """A run's relative training time, only to start the long runs first: epochs x the cost of one epoch, which for
    the graph metanets grows with the graph's edges (plus about 200 edges' worth for the zoo networks' own forward)
    and for NFN is about flat (measured on a default digits run: ScaleGMN-B 24 s per MLP epoch and 6 s per CNN
    epoch, NFN 3 - 3.5 s for either). The zoo's default architecture stands in for a zoo read from disk."""
    spec = default_spec(job["family"])
    per_epoch = 230 if METHODS[job["method"]].model == "nfn" else spec.n_edges + 200
    recipe = job["recipe"]
    share = 0.75 if recipe.train.skip_untrained else 1.0  # the zoos' 4 checkpoints, epoch 0 left out
    return float(recipe.epochs(spec) * per_epoch * share)
