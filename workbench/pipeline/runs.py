"""One metanetwork run: its configuration, its folder, training it (or reloading it when finished), and many runs
at once.

A run is fixed by family, objective, method, seed and settings; :func:`make_config` turns these into a
:class:`~workbench.optimize.TrainConfig` and :func:`run_dir` names its folder after them (a digest of the config),
so that runs with other settings live side by side and a finished run is reloaded, never retrained.
:func:`training_settings` reads the settings from notebook parameters (``meta_<field>`` keys);
:func:`train_from_params` is the command-line training (``python -m workbench train``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ..data import Dataset
from ..errors import ConfigError
from ..io import atomic_write_text, run_result_readable
from ..metanet.config import META_FIELDS
from ..nets import NetSpec
from ..optimize import TrainConfig, TrainResult, load_model, resolve_device, train
from ..parallel import run_parallel
from ..params import ParamsError, file_values
from ..paths import output_root
from ..symmetry import group_for
from ..zoo import Zoo, default_spec
from .methods import METHODS, _method_settings
from .zoos import get_data, get_zoo, split_params

__all__ = ["OBJECTIVES", "RUN_WIDE_SETTINGS", "SETTINGS_PREFIX", "run_dir", "make_config", "train_metanet",
           "train_from_params", "training_settings", "training_splits", "prefetch_runs", "run_exists", "train_method"]

OBJECTIVES = ("ce", "l1")


def run_dir(output_dir: str | os.PathLike, family: str, objective: str, symmetry: str, seed: int,
            config: TrainConfig | None = None) -> Path:
    """``metanet/<family>/<objective>-<symmetry>-s<seed>[-<config digest>]``: runs with different settings (e.g.
    notebook 04's bigger model and notebook 05's ablation runs) live side by side."""
    name = f"{objective}-{symmetry}-s{seed}"
    if config is not None:
        name += "-" + hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return Path(output_dir) / "metanet" / family / name


def make_config(spec: NetSpec, *, objective: str, lam: float, symmetry: str | None = None, seed: int = 0,
                **settings) -> TrainConfig:
    """A :class:`TrainConfig` for one run; ``symmetry=None`` = the activation's group (ScaleGMN), "none" = GMN.

    ``settings``: fields of :class:`TrainConfig` or of its :class:`~workbench.metanet.MetanetConfig` by name (the
    flat form :func:`training_settings` gives), the rest default; ``mlp_epochs`` replaces ``epochs`` for MLP
    families."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    sym = symmetry or group_for(spec)
    epochs = _epochs(spec, settings)
    settings = {k: v for k, v in settings.items() if k != "mlp_epochs"}
    if objective == "ce":  # l1_from_ce means nothing to a CE run: keep its digest (and folder) that of a plain run
        settings.pop("l1_from_ce", None)
    if epochs is not None:
        settings["epochs"] = epochs
    return TrainConfig.from_dict({**settings, "lam": lam if objective == "l1" else 0.0, "symmetry": sym, "seed": seed})


def _epochs(spec: NetSpec, settings: dict) -> int | None:
    """The run's epochs: ``mlp_epochs`` for an MLP family when given (MLP graphs, digits: 1,440 edges, cost ~5x a
    CNN graph's 216 per step), else ``epochs`` (None: TrainConfig's default)."""
    if spec.kind == "mlp" and settings.get("mlp_epochs") is not None:
        return settings["mlp_epochs"]
    return settings.get("epochs")


def train_metanet(output_dir: str | os.PathLike, zoo: Zoo, data: Dataset, *, objective: str, lam: float,
                  symmetry: str | None = None, seed: int = 0, resume: bool = True, progress: bool = True,
                  **settings) -> TrainResult:
    """Train (or resume, or reload when finished) one metanetwork run; writes ``result.json`` when done."""
    config = make_config(zoo.spec, objective=objective, lam=lam, symmetry=symmetry, seed=seed, **settings)
    folder = run_dir(output_dir, zoo.spec.family, objective, config.meta.symmetry, seed, config)
    identity = {"config": config.to_dict(), "spec": zoo.spec.to_dict(), "dataset": zoo.dataset,
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
        ce = train_metanet(output_dir, zoo, data, objective="ce", lam=0.0, symmetry=symmetry, seed=seed,
                           resume=resume, progress=progress, **settings)
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
        seed = {"seed": values["seed"]} if "seed" in values else {}
        data = get_data(**{k: values[k] for k in ("dataset", "data_path") if k in values}, **seed)
        zoo_args = {"zoo_path": values.get("zoo_path"), "zoo_steps": values.get("zoo_steps"), **seed}
        if "zoo_test_fraction" in values:
            zoo_args["test_fraction"] = values["zoo_test_fraction"]
        zoo = get_zoo(out, family, data, n_networks=values["n_networks"], zoo_epochs=values["zoo_epochs"], **zoo_args)
        started = time.time()
        settings = training_settings({**values.get("meta_extra", {}), **values})
        result = train_metanet(out, zoo, data, objective=objective, lam=values.get("lam", 0.0), symmetry=symmetry,
                               resume=resume, **seed, **settings)
        if not dist.is_initialized() or dist.get_rank() == 0:
            done = result.out_dir / "result.json"
            verb = "reloaded the finished run of" if done.stat().st_mtime < started else "trained"
            print(f"[workbench] {verb} {family} ({objective}); best epoch {result.best_epoch}, "
                  f"val loss {result.best_val_loss:.4f}; outputs in {result.out_dir}")
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


#: params keys every notebook shares (notebook 03 generates zoos on ``device`` too) that set the TrainConfig field
#: of the same name; ``seed`` and ``lam`` are passed to :func:`make_config` by name
RUN_WIDE_SETTINGS = ("device",)
#: the prefix of the params keys that set a training setting: ``meta_<name>`` sets ``<name>``
SETTINGS_PREFIX = "meta_"
#: settings a ``meta_`` key may not set: a run's seed, L1 weight and device are run-wide keys, and the method
#: (:data:`METHODS`) chooses symmetry and model
_NOT_BY_PREFIX = ("lam", "seed", "device", "symmetry", "model")


def training_settings(values: dict) -> dict:
    """The training settings among notebook parameters (or a params file's values; a ``meta_extra`` dict among them
    is ignored: pass its keys as values), by one rule: ``meta_<name>``
    sets ``<name>``, a field of :class:`TrainConfig` or of its :class:`~workbench.metanet.MetanetConfig`
    (``meta_n_layers`` -> ``n_layers``, ``meta_batch_networks`` -> ``batch_networks``), or ``mlp_epochs`` of
    :func:`make_config`; the run-wide ``device`` sets ``device``. Other keys are ignored; a ``meta_`` key that
    names no setting is an error that lists the valid ones."""
    own = {f.name for f in dataclasses.fields(TrainConfig)} - {"meta"}
    names = sorted((own | set(META_FIELDS) | {"mlp_epochs"}) - set(_NOT_BY_PREFIX))
    settings = {}
    for key, value in values.items():
        if key in RUN_WIDE_SETTINGS:
            settings[key] = value
        elif key.startswith(SETTINGS_PREFIX) and key != "meta_extra":
            name = key[len(SETTINGS_PREFIX):]
            if name not in names:
                raise ConfigError(f"{key!r} sets no training setting; valid keys are "
                                  f"{[SETTINGS_PREFIX + n for n in names]}")
            settings[name] = value
    return settings


def run_exists(output_dir, zoo: Zoo, method: str, *, objective: str, lam: float, seed: int, **settings) -> bool:
    """Whether the run :func:`train_method` would use is finished on disk (so it would be reloaded, not trained)."""
    symmetry, settings = _method_settings(method, settings, zoo.spec)
    config = make_config(zoo.spec, objective=objective, lam=lam, symmetry=symmetry, seed=seed, **settings)
    folder = run_dir(output_dir, zoo.spec.family, objective, config.meta.symmetry, seed, config)
    return (folder / "result.json").is_file() and (folder / "best.pt").is_file()


def train_method(output_dir, zoo: Zoo, data: Dataset, method: str, *, objective: str, lam: float, seed: int,
                 progress: bool = True, **settings) -> TrainResult:
    """Train (or reload) the metanetwork of ``method`` (a key of :data:`METHODS`)."""
    symmetry, settings = _method_settings(method, settings, zoo.spec)
    return train_metanet(output_dir, zoo, data, objective=objective, lam=lam, symmetry=symmetry, seed=seed,
                         progress=progress, **settings)


# -- many trainings at once ------------------------------------------------------------------------------------------
def _train_job(job: dict) -> dict:
    """Worker side of :func:`prefetch_runs`: load the data and zoo the caller used, train one run to disk."""
    data = get_data(**job["data"])
    zoo = get_zoo(job["output_dir"], job["family"], data, progress=False, verbose=False, **job["zoo"])
    result = train_method(job["output_dir"], zoo, data, job["method"], objective=job["objective"], lam=job["lam"],
                          seed=job["seed"], progress=False, **job["settings"])
    return {"family": job["family"], "method": job["method"], "objective": job["objective"], "seed": job["seed"],
            "seconds": result.seconds, "best_epoch": result.best_epoch}


def prefetch_runs(output_dir, runs, *, data: dict, zoo: dict, lam: float, workers: int | None = None,
                  progress: bool = True, **settings) -> list[dict]:
    """Train the metanetwork runs ``runs`` -- tuples ``(family, method, objective, seed)``, or with a fifth entry,
    the run's own L1 weight instead of ``lam`` -- in parallel processes,
    each written to its run folder, so that the notebook's own calls (:func:`train_method`, :func:`run_ablation`,
    :func:`family_results`) then reload them instead of training one after the other.

    ``data``: keyword arguments of :func:`get_data`; ``zoo``: those of :func:`get_zoo` (the zoos must exist, e.g.
    from notebook 03 -- they are loaded, not regenerated, by each worker). Runs already finished cost nothing.
    With ``l1_from_ce`` the CE runs the L1 runs start from are trained first, in a round of their own (added when
    not listed), so that no two processes ever train the same run.
    """
    runs = [tuple(r) + (() if len(r) == 5 else (lam,)) for r in runs]
    rounds = [runs]
    if settings.get("l1_from_ce"):  # L1 runs start from their CE runs: those first (a lam means nothing to them)
        ce = [(f, m, "ce", s, lam) for f, m, o, s, _ in runs]
        rounds = [ce, [r for r in runs if r[2] == "l1"]]
    done = []
    for round_runs in rounds:
        round_runs = list(dict.fromkeys(round_runs))  # one process per folder
        if not round_runs:
            continue
        jobs = [{"output_dir": str(output_dir), "family": f, "method": m, "objective": o, "seed": s, "lam": run_lam,
                 "data": dict(data), "zoo": dict(zoo), "settings": dict(settings)}
                for f, m, o, s, run_lam in round_runs]
        done += run_parallel(_train_job, jobs, workers=workers, desc="metanet runs", progress=progress,
                             label=lambda j: f"{j['family']} {j['method']} {j['objective']} seed {j['seed']}",
                             cost=_run_cost)
    return done


def _run_cost(job: dict) -> float:
    """A run's relative training time, only to start the long runs first: epochs x the cost of one epoch, which for
    the graph metanets grows with the graph's edges (plus about 200 edges' worth for the zoo networks' own forward)
    and for NFN is about flat (digits, default run of 2026-12-04: ScaleGMN-B 24 s per MLP epoch and 6 s per CNN
    epoch, NFN 3 - 3.5 s for either). The zoo's default architecture stands in for a zoo read from disk."""
    spec = default_spec(job["family"])
    per_epoch = 230 if METHODS[job["method"]].model == "nfn" else spec.n_edges + 200
    share = 0.75 if job["settings"].get("skip_untrained") else 1.0  # the zoos' 4 checkpoints, epoch 0 left out
    return float((_epochs(spec, job["settings"]) or 1) * per_epoch * share)
