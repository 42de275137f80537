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
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from .data import Dataset, load_dataset
from .io import atomic_write_text, run_result_readable
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


ZOO_CHECKPOINTS = (0, 1, 2)  # plus the final epoch: the zoo spans untrained to trained networks
ZOO_BATCH_SIZE = 32


def get_zoo(output_dir: str | os.PathLike, family: str, data: Dataset | None, *, n_networks: int, zoo_epochs: int,
            seed: int = 0, zoo_path: str | None = None, device: str = "cpu", progress: bool = True,
            verbose: bool = True) -> Zoo:
    """The zoo of ``family``: the Small CNN Zoo at ``zoo_path`` when given (CNN families; networks with NaN weights
    are dropped and counted in ``zoo.info``), else a zoo generated on ``data`` and cached in
    ``output_dir/zoo/<family>`` (regenerated only when the settings differ)."""
    check_families([family])
    kind, activation = family.split("-")
    if zoo_path and kind == "cnn":
        return load_small_cnn_zoo(zoo_path, activation=activation, split_seed=seed, drop_nonfinite=True)
    if data is None:
        raise ValueError(f"generating the {family} zoo needs a data set")
    spec = default_spec(family, data.name)
    checkpoints = [c for c in ZOO_CHECKPOINTS if c < zoo_epochs]
    return load_or_generate(Path(output_dir) / "zoo" / family, spec, data, n_networks, epochs=zoo_epochs,
                            checkpoints=checkpoints, seed=seed, batch_size=ZOO_BATCH_SIZE, device=resolve_device(device),
                            progress=progress, verbose=verbose)


def split_params(zoo: Zoo) -> dict[str, Params]:
    """Train/val/test parameters of a zoo, by its network-level split."""
    return {s: zoo.subset(split=s).params for s in ("train", "val", "test")}


def run_dir(output_dir: str | os.PathLike, family: str, objective: str, symmetry: str, seed: int,
            config: TrainConfig | None = None) -> Path:
    """``metanet/<family>/<objective>-<symmetry>-s<seed>[-<config digest>]``: runs with different settings (e.g.
    notebook 04's bigger model and notebook 05's ablation runs) live side by side."""
    name = f"{objective}-{symmetry}-s{seed}"
    if config is not None:
        import hashlib

        name += "-" + hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return Path(output_dir) / "metanet" / family / name


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
    folder = run_dir(output_dir, zoo.spec.family, objective, config.symmetry, seed, config)
    identity = {"config": config.to_dict(), "spec": zoo.spec.to_dict(), "dataset": zoo.dataset,
                "zoo": zoo.info.get("generation") or {"entries": len(zoo), "split_seed": zoo.split_seed,
                                                       "source": zoo.info.get("source")}}
    identity = json.loads(json.dumps(identity, default=str))
    marker = folder / "run.json"
    import torch.distributed as dist

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
    splits = split_params(zoo)
    result = train(zoo.spec, splits["train"], splits["val"], data, config, folder, resume=True, progress=progress)
    if rank == 0:
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


# -- ablation (notebook 05) -----------------------------------------------------------------------------------------
METHOD_NAMES = {True: "ScaleGMN", False: "GMN (sym. broken)"}


def method_label(symmetric: bool, bidirectional: bool) -> str:
    return METHOD_NAMES[symmetric] + ("-B" if bidirectional else "")


def test_networks(zoo: Zoo, limit: int | None = None) -> Zoo:
    """The held-out networks every method is scored on (the first ``limit`` test entries when capped)."""
    test = zoo.subset(split="test")
    if limit is not None and limit < len(test):
        mask = [i < limit for i in range(len(test))]
        test = test.subset(mask=mask)
    return test


def run_ablation(output_dir, data: Dataset, zoos: dict[str, Zoo], *, objectives=OBJECTIVES, n_seeds: int = 3,
                 seed: int = 0, lam: float = 1e-3, progress: bool = True, **settings):
    """ScaleGMN vs the symmetry-broken GMN for every family x objective x seed (same architecture, budget and
    seeds); trained runs are cached in ``output_dir/metanet``. Returns ``(runs, histories)``: a DataFrame with one
    row per run and a dict of training histories keyed by run label."""
    import pandas as pd
    from tqdm.auto import tqdm

    from .objective import evaluate, l1_reduction
    from .optimize import one_shot
    from .results import training_smoothness

    jobs = [(f, o, sym, s) for f in zoos for o in objectives for sym in (True, False) for s in range(n_seeds)]
    rows, histories = [], {}
    bidirectional = settings.get("bidirectional", True)
    for family, objective, symmetric, s in tqdm(jobs, desc="ablation runs", disable=not progress):
        zoo = zoos[family]
        result = train_metanet(output_dir, zoo, data, objective=objective, lam=lam,
                               symmetry=None if symmetric else "none", seed=seed + s, progress=False, **settings)
        test = test_networks(zoo)
        new, seconds = one_shot(result.model, zoo.spec, test.params)
        lam_eval = lam if objective == "l1" else 0.0
        metrics = evaluate(zoo.spec, new, data.x_test, data.y_test, lam_eval)
        method = method_label(symmetric, bidirectional)
        val_losses = [h["val_loss"] for h in result.history]
        rows.append({
            "family": family, "objective": objective, "method": method, "seed": seed + s,
            "avg_acc": 100 * float(metrics["acc"].double().mean()),
            "max_acc": 100 * float(metrics["acc"].max()),
            "test_loss": float(metrics["loss"].double().mean()),
            "l1_reduction": l1_reduction(test.params, new),
            "smoothness": training_smoothness(val_losses) if len(val_losses) > 1 else float("nan"),
            "best_epoch": result.best_epoch, "train_seconds": result.seconds,
            "seconds_per_net": seconds / len(test), "finite": all(bool(torch.isfinite(t).all()) for p in new for t in p),
        })
        histories[f"{family} {objective} {method} seed {s}"] = result.history
    return pd.DataFrame(rows), histories


def summarize_ablation(runs):
    """Mean and sample std across seeds per family x objective x method."""
    metrics = ["avg_acc", "max_acc", "test_loss", "l1_reduction", "smoothness"]
    grouped = runs.groupby(["family", "objective", "method"], sort=False)[metrics]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = mean.add_suffix("_mean").join(std.add_suffix("_std")).reset_index()
    out["n_seeds"] = grouped.size().to_numpy()
    return out


# -- results table (notebook 06) ------------------------------------------------------------------------------------
def family_results(output_dir, family: str, zoo: Zoo, data: Dataset, *, lam: float, seed: int = 0,
                   sgd_epochs=(25, 50, 100, 150), sgd_lr: float = 0.01, sgd_networks: int | None = None,
                   sequential_sample: int = 2, finetune_epochs: int = 5, progress: bool = True, **settings) -> dict:
    """All rows of the poster's table for one family, measured now on the same held-out networks.

    Rows: Initial; ScaleGMN-B and GMN-B (seed ``seed`` of the ablation runs, trained here when missing) for the
    CE and the L1 objective; SGD at each budget (vectorised over networks); ScaleGMN-B followed by
    ``finetune_epochs`` of SGD. Returns ``{"table", "points", "sgd_sequential_s_per_epoch", "n_networks"}``.
    """
    from .baselines import sgd_finetune, time_one_at_a_time
    from .optimize import one_shot
    from .results import method_row, results_table, sgd_rows

    test = test_networks(zoo, sgd_networks)
    spec, initial = zoo.spec, test.params
    n = len(test)
    bidirectional = settings.get("bidirectional", True)
    rows = [method_row("Initial", spec, data, initial=initial, ce_params=initial, l1_params=initial, lam=lam)]
    points = []
    one_shot_ce = None
    for symmetric in (True, False):
        outs = {}
        for objective in OBJECTIVES:
            result = train_metanet(output_dir, zoo, data, objective=objective, lam=lam,
                                   symmetry=None if symmetric else "none", seed=seed, progress=progress, **settings)
            one_shot(result.model, spec, [(w[:1], b[:1]) for w, b in initial])  # warm-up, not timed
            new, seconds = one_shot(result.model, spec, initial)
            outs[objective] = (new, seconds / n)
        if symmetric:
            one_shot_ce = outs["ce"][0]
        rows.append(method_row(method_label(symmetric, bidirectional), spec, data, initial=initial,
                               ce_params=outs["ce"][0], ce_seconds_per_net=outs["ce"][1],
                               l1_params=outs["l1"][0], l1_seconds_per_net=outs["l1"][1], lam=lam))
    budgets = tuple(sorted(set(int(e) for e in sgd_epochs)))
    ce_runs = sgd_finetune(spec, initial, data, epochs=budgets, lam=0.0, lr=sgd_lr, seed=seed, progress=progress)
    l1_runs = sgd_finetune(spec, initial, data, epochs=budgets, lam=lam, lr=sgd_lr, seed=seed, progress=progress)
    rows += sgd_rows(spec, data, initial=initial, ce_results=ce_runs, l1_results=l1_runs, lam=lam)
    if finetune_epochs:
        tuned = sgd_finetune(spec, one_shot_ce, data, epochs=(finetune_epochs,), lam=0.0, lr=sgd_lr, seed=seed,
                             progress=False)[finetune_epochs]
        first = rows[1]
        row = method_row(f"{first['method']} + SGD ({finetune_epochs} epochs)", spec, data, initial=initial,
                         ce_params=tuned.params, ce_seconds_per_net=first["ce_time_per_net_s"] + tuned.seconds_per_network,
                         lam=lam)
        rows.append(row)
    sample = min(sequential_sample, n)
    sequential = time_one_at_a_time(spec, initial, data, epochs=1, sample=sample, lr=sgd_lr, seed=seed) if sample else float("nan")
    table = results_table(rows)
    for _, r in table.iterrows():
        if r["ce_time_per_net_s"] == r["ce_time_per_net_s"]:  # not NaN
            points.append({"family": family, "method": r["method"], "seconds_per_net": float(r["ce_time_per_net_s"]),
                           "avg_acc": float(r["ce_avg_acc"])})
    return {"table": table, "points": points, "sgd_sequential_s_per_epoch": sequential, "n_networks": n}
