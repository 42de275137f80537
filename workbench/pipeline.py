"""The glue between notebooks 03-06 (and the command line): which zoo, which run folder, which settings.

Each expensive step writes artifacts under ``output_dir`` and the cheap steps read them back, so that running
the notebooks in order reuses the zoo of notebook 03 and the trained metanetworks of notebooks 04/05; run alone,
each notebook regenerates what it is missing with the same settings (same seed, same result).

Folder layout under ``output_dir``::

    zoo/<family>/                         zoo (safetensors + meta.csv + zoo.json)
    metanet/<family>/<objective>-<symmetry>-s<seed>/   best.pt, checkpoint.pt, metrics.jsonl, result.json
    results/                              tables and per-method measurements
    figures/                              every figure as .json and .html (and .png when possible)
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from .data import Dataset, load_dataset
from .io import atomic_write_text
from .metanet import default_symmetry
from .nets import NetSpec, Params
from .optimize import TrainConfig, TrainResult, load_model, resolve_device, train
from .zoo import FAMILIES, Zoo, default_spec, load_or_generate, load_small_cnn_zoo

OBJECTIVES = ("ce", "l1")


def check_families(families) -> list[str]:
    families = list(families)
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ValueError(f"unknown families {bad}; choose from {list(FAMILIES)}")
    return families


def get_data(dataset: str = "digits", data_path: str | None = None, seed: int = 0) -> Dataset:
    """The image data set the zoo networks solve (digits ships with scikit-learn; CIFAR-10 is read from disk)."""
    return load_dataset(dataset, data_path, seed=seed)


def get_zoo(output_dir: str | os.PathLike, family: str, data: Dataset, *, n_networks: int, zoo_epochs: int,
            seed: int = 0, zoo_path: str | None = None, device: str = "cpu", progress: bool = True) -> Zoo:
    """The zoo of ``family``: the Small CNN Zoo at ``zoo_path`` when given (CNN families), else a zoo generated
    on ``data`` (cached in ``output_dir/zoo/<family>``)."""
    check_families([family])
    kind, activation = family.split("-")
    if zoo_path and kind == "cnn":
        return load_small_cnn_zoo(zoo_path, activation=activation)
    spec = default_spec(family, data.name)
    checkpoints = sorted({0, 1, max(1, zoo_epochs // 4), max(1, zoo_epochs // 2)} - {zoo_epochs})
    return load_or_generate(Path(output_dir) / "zoo" / family, spec, data, n_networks, epochs=zoo_epochs,
                            checkpoints=checkpoints, seed=seed, device=device, progress=progress)


def split_params(zoo: Zoo) -> dict[str, Params]:
    """Train/val/test parameters of a zoo, by its network-level split."""
    return {s: zoo.subset(split=s).params for s in ("train", "val", "test")}


def run_dir(output_dir: str | os.PathLike, family: str, objective: str, symmetry: str, seed: int) -> Path:
    return Path(output_dir) / "metanet" / family / f"{objective}-{symmetry}-s{seed}"


def make_config(spec: NetSpec, *, objective: str, lam: float, symmetry: str | None = None, seed: int = 0,
                **settings) -> TrainConfig:
    """A :class:`TrainConfig` for one run; ``symmetry=None`` = the activation's group (ScaleGMN), "none" = GMN."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    sym = symmetry or default_symmetry(spec)
    return replace(TrainConfig(), lam=lam if objective == "l1" else 0.0, symmetry=sym, seed=seed, **settings)


def train_metanet(output_dir: str | os.PathLike, zoo: Zoo, data: Dataset, *, objective: str, lam: float,
                  symmetry: str | None = None, seed: int = 0, resume: bool = True, progress: bool = True,
                  **settings) -> TrainResult:
    """Train (or resume, or reload when finished) one metanetwork run; writes ``result.json`` when done."""
    config = make_config(zoo.spec, objective=objective, lam=lam, symmetry=symmetry, seed=seed, **settings)
    folder = run_dir(output_dir, zoo.spec.family, objective, config.symmetry, seed)
    done = folder / "result.json"
    if resume and done.exists() and (folder / "best.pt").exists():
        info = json.loads(done.read_text())
        if info.get("config") == config.to_dict():
            model = load_model(folder / "best.pt", map_location=resolve_device(config.device))
            history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
            return TrainResult(model, history, info["best_epoch"], info["best_val_loss"], folder, info["seconds"])
    splits = split_params(zoo)
    result = train(zoo.spec, splits["train"], splits["val"], data, config, folder, resume=resume, progress=progress)
    atomic_write_text(done, json.dumps({"config": config.to_dict(), "best_epoch": result.best_epoch,
                                        "best_val_loss": result.best_val_loss, "seconds": result.seconds,
                                        "family": zoo.spec.family, "objective": objective}, indent=1))
    return result


def train_from_params(params_path: str, family: str, objective: str = "ce", *, symmetry: str | None = None,
                      resume: bool = True) -> TrainResult:
    """``python -m workbench train params/x.yaml --family cnn-tanh``: the notebook-04 training without Jupyter.

    Reads notebook 04's parameters (shared keys + its section) from the params file; under ``torchrun`` it runs
    with DistributedDataParallel (gloo on CPU, NCCL on CUDA).
    """
    import torch.distributed as dist

    from .params import declared_parameters, list_notebooks, load_params, notebook_key
    from .runner import output_root

    notebooks = list_notebooks()
    params = load_params(params_path, notebooks)
    nb04 = next(nb for nb in notebooks if notebook_key(nb) == "04")
    declared = declared_parameters(nb04)
    from .params import _literal

    values = {k: _literal(v["default"]) for k, v in declared.items()}
    values.update(params.for_notebook(nb04, declared))
    out = output_root(params)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and values.get("device", "auto") != "cpu" else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        data = get_data(values["dataset"], values.get("data_path"), values["seed"])
        zoo = get_zoo(out, family, data, n_networks=values["n_networks"], zoo_epochs=values["zoo_epochs"],
                      seed=values["seed"], zoo_path=values.get("zoo_path"))
        settings = training_settings(values)
        result = train_metanet(out, zoo, data, objective=objective, lam=values["lam"], symmetry=symmetry,
                               seed=values["seed"], resume=resume, **settings)
        if not dist.is_initialized() or dist.get_rank() == 0:
            print(f"[workbench] trained {family} ({objective}); best epoch {result.best_epoch}, "
                  f"val loss {result.best_val_loss:.4f}; outputs in {result.out_dir}")
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def training_settings(values: dict) -> dict:
    """Map notebook parameters (``meta_*``) to :class:`TrainConfig` fields."""
    mapping = {"meta_epochs": "epochs", "meta_hidden": "hidden", "meta_layers": "n_layers", "meta_lr": "lr",
               "batch_networks": "batch_networks", "batch_images": "batch_images", "bidirectional": "bidirectional",
               "device": "device"}
    return {field: values[key] for key, field in mapping.items() if key in values}
