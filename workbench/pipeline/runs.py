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

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..baselines import sgd_finetune, time_one_at_a_time
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..io import atomic_write_text, run_result_readable
from ..metanet import MetanetConfig, ScaleGMN, count_parameters, matched_hidden, rescale_response
from ..metanet.config import META_FIELDS
from ..nets import NetSpec, Params, map_params, n_networks
from ..objective import evaluate, l1_reduction, share_near_zero
from ..optimize import TrainConfig, TrainResult, load_model, one_shot, resolve_device, train
from ..parallel import run_parallel
from ..records import Family, Method, RunKey
from ..results import method_row, results_table, sgd_rows, training_smoothness
from ..symmetry import group_for
from ..warmstart import sgd_curves, tune_sgd_lr
from ..zoo import FAMILIES, Zoo, default_spec, load_or_generate, load_small_cnn_zoo

__all__ = [
    "OBJECTIVES", "METHODS", "OBJECTIVE_METRIC", "check_families", "get_data", "get_zoo", "prefetch_zoos",
    "split_params", "run_dir", "make_config", "train_metanet", "train_from_params", "training_settings",
    "prefetch_runs", "method_label", "method_of_label", "run_exists", "train_method", "test_networks", "trained_mask",
    "gain_by_checkpoint", "run_ablation", "summarize_ablation", "family_results", "results_for_families",
    "subsample_train", "scaling_study", "symmetry_response", "initial_scores", "ablation_verdict",
    "ablation_conclusions", "lam_sweep",
]

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
            verbose: bool = True, test_fraction: float = 0.5, cache_suffix: str = "") -> Zoo:
    """The zoo of ``family``: the Small CNN Zoo at ``zoo_path`` when given (CNN families; networks with NaN weights
    are dropped and counted in ``zoo.info``), else a zoo generated on ``data`` and cached in
    ``output_dir/zoo/<family><cache_suffix>`` (regenerated only when the settings differ). A second zoo of the same
    family with other settings (notebook 07's bigger scaling zoo) needs its own ``cache_suffix``: one folder holds
    one zoo, and asking it for other settings regenerates it in place."""
    check_families([family])
    parsed = Family.parse(family)
    if zoo_path and parsed.kind == "cnn":
        return load_small_cnn_zoo(zoo_path, activation=parsed.activation, split_seed=seed, drop_nonfinite=True)
    if data is None:
        raise ValueError(f"generating the {family} zoo needs a data set")
    spec = default_spec(family, data.name)
    checkpoints = [c for c in ZOO_CHECKPOINTS if c < zoo_epochs]
    if cache_suffix and (os.sep in cache_suffix or "/" in cache_suffix or cache_suffix in (".", "..")):
        raise ValueError(f"cache_suffix must be a plain name suffix, got {cache_suffix!r}")
    return load_or_generate(Path(output_dir) / "zoo" / f"{family}{cache_suffix}", spec, data, n_networks, epochs=zoo_epochs,
                            checkpoints=checkpoints, seed=seed, batch_size=ZOO_BATCH_SIZE, device=resolve_device(device),
                            progress=progress, verbose=verbose, test_fraction=test_fraction)


def _zoo_job(job: dict) -> str:
    data = get_data(**job["data"])
    zoo = get_zoo(job["output_dir"], job["family"], data, progress=False, verbose=False, **job["zoo"])
    return repr(zoo)


def prefetch_zoos(output_dir, families, *, data: dict, zoo: dict, workers: int | None = None,
                  progress: bool = True) -> list[str]:
    """Generate (or find cached) the zoos of ``families`` in parallel processes, one family per process; the
    notebook's own :func:`get_zoo` calls then load them. Same seed, same zoo, whichever process made it."""
    jobs = [{"output_dir": str(output_dir), "family": f, "data": dict(data), "zoo": dict(zoo)} for f in families]
    return run_parallel(_zoo_job, jobs, workers=workers, desc="zoos", progress=progress, label=lambda j: j["family"])


def split_params(zoo: Zoo) -> dict[str, Params]:
    """Train/val/test parameters of a zoo, by its network-level split."""
    return {s: zoo.subset(split=s).params for s in ("train", "val", "test")}


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
    settings = dict(settings)
    mlp_epochs = settings.pop("mlp_epochs", None)
    if mlp_epochs is not None and spec.kind == "mlp":
        settings["epochs"] = mlp_epochs  # MLP graphs (digits: 1,440 edges) cost ~5x a CNN graph (216) per step
    return TrainConfig.from_dict({**settings, "lam": lam if objective == "l1" else 0.0, "symmetry": sym, "seed": seed})


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

    Reads the params file's shared keys and its section "04" (never a notebook's defaults: what the file leaves
    out takes the library's defaults, those of :class:`TrainConfig`, :func:`get_data` and :func:`get_zoo`; only
    ``n_networks`` and ``zoo_epochs``, and ``lam`` for the L1 objective, have none and must be set). Under
    ``torchrun`` it runs with DistributedDataParallel (gloo on CPU, NCCL on CUDA).
    """
    import torch.distributed as dist

    from ..params import ParamsError, file_values
    from ..runner import output_root

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
        zoo_args = {"zoo_path": values.get("zoo_path"), **seed}
        if "zoo_test_fraction" in values:
            zoo_args["test_fraction"] = values["zoo_test_fraction"]
        zoo = get_zoo(out, family, data, n_networks=values["n_networks"], zoo_epochs=values["zoo_epochs"], **zoo_args)
        result = train_metanet(out, zoo, data, objective=objective, lam=values.get("lam", 0.0), symmetry=symmetry,
                               resume=resume, **seed, **training_settings(values))
        if not dist.is_initialized() or dist.get_rank() == 0:
            print(f"[workbench] trained {family} ({objective}); best epoch {result.best_epoch}, "
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
    """The training settings among notebook parameters (or a params file's values), by one rule: ``meta_<name>``
    sets ``<name>``, a field of :class:`TrainConfig` or of its :class:`~workbench.metanet.MetanetConfig`
    (``meta_n_layers`` -> ``n_layers``, ``meta_batch_networks`` -> ``batch_networks``), or ``mlp_epochs`` of
    :func:`make_config`; the run-wide ``device`` sets ``device``. Other keys are ignored; a ``meta_`` key that
    names no setting is an error that lists the valid ones."""
    names = sorted((set(TrainConfig().to_dict()) | set(META_FIELDS) | {"mlp_epochs"}) - set(_NOT_BY_PREFIX))
    settings = {}
    for key, value in values.items():
        if key in RUN_WIDE_SETTINGS:
            settings[key] = value
        elif key.startswith(SETTINGS_PREFIX):
            name = key[len(SETTINGS_PREFIX):]
            if name not in names:
                raise ConfigError(f"{key!r} sets no training setting; valid keys are "
                                  f"{[SETTINGS_PREFIX + n for n in names]}")
            settings[name] = value
    return settings


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
    """
    runs = list(dict.fromkeys(tuple(r) + (() if len(r) == 5 else (lam,)) for r in runs))  # one process per folder
    jobs = [{"output_dir": str(output_dir), "family": f, "method": m, "objective": o, "seed": s, "lam": run_lam,
             "data": dict(data), "zoo": dict(zoo), "settings": dict(settings)} for f, m, o, s, run_lam in runs]
    return run_parallel(_train_job, jobs, workers=workers, desc="metanet runs", progress=progress,
                        label=lambda j: f"{j['family']} {j['method']} {j['objective']} seed {j['seed']}")


# -- ablation (notebook 05) -----------------------------------------------------------------------------------------
#: the metanetworks compared, by key (see :class:`~workbench.records.Method`). "nfn": the permutation-equivariant
#: Neural Functional Network (Zhou et al. 2023), the peer baseline that knows no scaling symmetry; "nfn-aug" trains
#: it on randomly rescaled/sign-flipped copies.
METHODS = {m.key: m for m in (
    Method("scalegmn", "ScaleGMN", "", symmetry=None, group_augment=False, model="scalegmn"),
    Method("gmn", "GMN", " (sym. broken)", symmetry="none", group_augment=False, model="scalegmn"),
    Method("gmn-aug", "GMN", " + sym. aug.", symmetry="none", group_augment=True, model="scalegmn"),
    Method("nfn", "NFN", " (perm. only)", symmetry="none", group_augment=False, model="nfn"),
    Method("nfn-aug", "NFN", " + sym. aug.", symmetry="none", group_augment=True, model="nfn"),
)}


def method_label(method: str | bool, bidirectional: bool) -> str:
    """"ScaleGMN-B", "GMN-B (sym. broken)", "GMN-B + sym. aug." ("-B" = bidirectional); "NFN (perm. only)" and
    "NFN + sym. aug." whatever ``bidirectional`` (the NFN has no message directions); ``True``/``False`` are
    accepted for "scalegmn"/"gmn"."""
    key = {True: "scalegmn", False: "gmn"}.get(method, method) if isinstance(method, bool) else method
    if key not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    return METHODS[key].label(bidirectional)


def method_of_label(label: str) -> Method | None:
    """The method a row label (:func:`method_label`, either direction setting) names; None for other rows."""
    return next((m for m in METHODS.values() if label in (m.label(True), m.label(False))), None)


def _method_settings(method: str, settings: dict, spec: NetSpec) -> tuple[str | None, dict]:
    """``method``'s symmetry override and ``settings`` with its augmentation and model added. ``model`` is only set
    for a non-default model, so ScaleGMN/GMN configs (and their run folders) are exactly those of before NFN.

    ``settings["nfn_hidden"]`` (read by the NFN methods only and dropped for the others): the NFN's ``hidden`` --
    an int, or ``"match"`` (the default) for the size whose parameter count is closest to the ScaleGMN of the same
    settings (``hidden``, ``n_layers``, ``bidirectional``, ``gate``) for ``spec``: a comparable budget per family."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    m = METHODS[method]
    settings = dict(settings)
    nfn_hidden = settings.pop("nfn_hidden", "match")
    if m.group_augment:
        settings["group_augment"] = True
    if m.model != "scalegmn":
        settings["model"] = m.model
    if m.model == "nfn" and nfn_hidden is not None:
        settings["hidden"] = _nfn_hidden(spec, nfn_hidden, settings)
    return m.symmetry, settings


def _nfn_hidden(spec: NetSpec, nfn_hidden, settings: dict) -> int:
    if nfn_hidden == "match":  # the ScaleGMN (its activation's symmetry) of the same size settings
        size = ("hidden", "n_layers", "bidirectional", "gate")
        meta = MetanetConfig(**{k: settings[k] for k in size if k in settings})
        with torch.device("meta"):  # shapes only
            target = count_parameters(ScaleGMN(spec, meta))
        return matched_hidden(spec, target, meta.n_layers, gate=meta.gate)
    if isinstance(nfn_hidden, bool) or not isinstance(nfn_hidden, int) or nfn_hidden < 1:
        raise ValueError(f"nfn_hidden must be a positive integer or 'match', got {nfn_hidden!r}")
    return nfn_hidden


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


def test_networks(zoo: Zoo, limit: int | None = None, split: str = "test") -> Zoo:
    """The held-out networks every method is scored on, with all their checkpoints: the test-split networks, or the
    first ``limit`` of them (by ``net_id``) when capped. Notebooks 04, 05 and 06 all score on this same set.
    ``split="val"``: the same selection among the validation networks (where baselines are tuned)."""
    test = zoo.subset(split=split)
    if limit is not None:
        ids = np.sort(test.meta["net_id"].unique())[:limit]
        test = test.subset(mask=test.meta["net_id"].isin(ids).to_numpy())
    return test


def trained_mask(zoo: Zoo) -> np.ndarray:
    """(len(zoo),) bool: entries that are trained checkpoints (epoch >= 1), where the targets are measured."""
    return (zoo.meta["epoch"].to_numpy() >= 1)


def gain_by_checkpoint(zoo: Zoo, before, after) -> pd.DataFrame:
    """Average test accuracy (%) before/after per checkpoint epoch of ``zoo``'s entries, plus the rows "trained"
    (epoch >= 1) and "all"; ``before``/``after`` are (len(zoo),) accuracies in [0, 1]."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    epochs = zoo.meta["epoch"].to_numpy()
    groups = [(str(int(e)), epochs == e) for e in sorted(set(epochs.tolist()))]
    groups += [("trained", epochs >= 1), ("all", np.ones_like(epochs, dtype=bool))]
    rows = [{"checkpoint": name, "entries": int(m.sum()), "before": 100 * before[m].mean() if m.any() else np.nan,
             "after": 100 * after[m].mean() if m.any() else np.nan} for name, m in groups]
    frame = pd.DataFrame(rows)
    frame["gain"] = frame["after"] - frame["before"]
    return frame


def run_ablation(output_dir, data: Dataset, zoos: dict[str, Zoo], *, objectives=OBJECTIVES, n_seeds: int = 3,
                 seed: int = 0, lam: float = 1e-3, methods=("scalegmn", "gmn", "gmn-aug"), eval_networks: int | None = None,
                 progress: bool = True, **settings):
    """The metanetworks of ``methods`` (ScaleGMN, the symmetry-broken GMN, the GMN trained on randomly
    permuted/scaled copies of its training networks) for every family x objective x seed, with the same
    architecture, budget and seeds; trained runs are cached in ``output_dir/metanet``.

    Every run is scored on the same held-out networks (:func:`test_networks` with ``eval_networks``). Returns
    ``(runs, histories)``: a DataFrame with one row per run (accuracy over all and over trained checkpoints, the
    objective's test loss, L1 reduction, near-zero share, ``collapsed`` = accuracy on trained checkpoints at chance
    level) and a dict ``{RunKey(family, objective, method label, seed): history}``."""
    jobs = [(f, o, m, s) for f in zoos for o in objectives for m in methods for s in range(n_seeds)]
    rows, histories = [], {}
    bidirectional = settings.get("bidirectional", MetanetConfig().bidirectional)
    tests = {f: test_networks(z, eval_networks) for f, z in zoos.items()}
    for family, objective, method, s in tqdm(jobs, desc="ablation runs", disable=not progress):
        zoo, test = zoos[family], tests[family]
        result = train_method(output_dir, zoo, data, method, objective=objective, lam=lam, seed=seed + s,
                              progress=False, **settings)
        new, seconds = one_shot(result.model, zoo.spec, test.params)
        lam_eval = lam if objective == "l1" else 0.0
        metrics = evaluate(zoo.spec, new, data.x_test, data.y_test, lam_eval)
        trained = torch.as_tensor(trained_mask(test))
        label = method_label(method, bidirectional)
        val_losses = [h["val_loss"] for h in result.history]
        acc_trained = 100 * float(metrics["acc"][trained].double().mean())
        rows.append({
            "family": family, "objective": objective, "method": label, "seed": seed + s,
            "avg_acc": 100 * float(metrics["acc"].double().mean()),
            "avg_acc_trained": acc_trained,
            "max_acc": 100 * float(metrics["acc"].max()),
            "test_loss": float(metrics["loss"].double().mean()),
            "l1_reduction": l1_reduction(test.params, new),
            "near_zero": share_near_zero(new),
            "smoothness": training_smoothness(val_losses) if len(val_losses) > 1 else float("nan"),
            "best_epoch": result.best_epoch, "train_seconds": result.seconds,
            "seconds_per_net": seconds / len(test), "finite": all(bool(torch.isfinite(t).all()) for p in new for t in p),
            "collapsed": acc_trained < 100 * (1.5 / zoo.spec.n_classes),
            "n_test_entries": len(test),
        })
        histories[RunKey(family, objective, label, seed + s)] = result.history
    return pd.DataFrame(rows), histories


def summarize_ablation(runs):
    """Mean and sample std across seeds per family x objective x method."""
    metrics = ["avg_acc", "avg_acc_trained", "max_acc", "test_loss", "l1_reduction", "near_zero", "smoothness"]
    grouped = runs.groupby(["family", "objective", "method"], sort=False)[metrics]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = mean.add_suffix("_mean").join(std.add_suffix("_std")).reset_index()
    out["n_seeds"] = grouped.size().to_numpy()
    return out


# -- results table (notebook 06) ------------------------------------------------------------------------------------
def family_results(output_dir, family: str, zoo: Zoo, data: Dataset, *, lam: float, seed: int = 0,
                   sgd_epochs=(25, 50, 100, 150), sgd_lr: float = 0.01, sgd_networks: int | None = None,
                   sequential_sample: int = 2, finetune_epochs: int = 5, methods=("scalegmn", "gmn"),
                   reuse_only=(), sgd_lr_grid=None, progress: bool = True, **settings) -> dict:
    """All rows of the poster's table for one family, measured now on the same held-out networks
    (:func:`test_networks` with ``sgd_networks`` networks, all their checkpoints).

    Rows: Initial; the all-zero network (an L1 reference: CE + lam * L1 = ln(classes) at chance accuracy); the
    metanetworks of ``methods`` (seed ``seed`` of the ablation runs, trained here when missing) for the CE and the L1
    objective; SGD at each budget (vectorised over networks); the first method followed by ``finetune_epochs`` of
    SGD. Methods in ``reuse_only`` are never trained here: their rows show the objectives whose runs already exist
    (e.g. notebook 05's CE runs), the others stay NaN ("-").

    ``sgd_lr_grid``: when given, SGD's learning rate is tuned per objective on as many *validation* networks
    (:func:`workbench.warmstart.tune_sgd_lr`, ``finetune_epochs`` epochs, validation images) and the "SGD (k
    epochs)" rows use it; the fixed ``sgd_lr`` stays as the labelled control rows "Fixed-lr SGD (...)". The warm
    start: SGD for ``finetune_epochs`` from the initial networks and from the CE one shots of the first method
    (and of "gmn", the control, when among ``methods``), at the tuned and the fixed rate, scored after every epoch
    (:func:`workbench.warmstart.sgd_curves`).

    Returns ``{"table", "points", "sgd_sequential_s_per_epoch", "n_networks", "by_checkpoint", "curves",
    "sgd_lr", "lr_tuning", "train_seconds"}``: ``by_checkpoint`` is :func:`gain_by_checkpoint` of the first
    method's CE one shot; ``curves`` the warm-start curves (None without ``finetune_epochs``); ``sgd_lr`` the rate
    per objective; ``lr_tuning`` the tuning frame (None without a grid); ``train_seconds`` the metanet training
    time per row label (CE objective).
    """
    test = test_networks(zoo, sgd_networks)
    spec, initial = zoo.spec, test.params
    n = len(test)
    trained = trained_mask(test)
    bidirectional = settings.get("bidirectional", MetanetConfig().bidirectional)
    rows = [method_row("Initial", spec, data, initial=initial, ce_params=initial, l1_params=initial, lam=lam,
                       trained=trained)]
    zeros = map_params(torch.zeros_like, initial)
    rows.append(method_row("All-zero network", spec, data, initial=initial, l1_params=zeros, lam=lam, trained=trained))
    points = []
    one_shot_ce, by_checkpoint = None, None
    first_label = None
    ce_outputs, train_seconds = {}, {}
    for method in methods:
        outs = {}
        for objective in OBJECTIVES:
            if method in reuse_only and not run_exists(output_dir, zoo, method, objective=objective, lam=lam,
                                                       seed=seed, **settings):
                continue
            result = train_method(output_dir, zoo, data, method, objective=objective, lam=lam, seed=seed,
                                  progress=progress, **settings)
            one_shot(result.model, spec, map_params(lambda t: t[:1], initial))  # warm-up, not timed
            new, seconds = one_shot(result.model, spec, initial)
            outs[objective] = (new, seconds / n)
            if objective == "ce":
                ce_outputs[method], train_seconds[method_label(method, bidirectional)] = new, float(result.seconds)
        if not outs:
            continue
        outs.setdefault("ce", (None, None))
        outs.setdefault("l1", (None, None))
        label = method_label(method, bidirectional)
        if one_shot_ce is None and outs["ce"][0] is not None:
            one_shot_ce, first_label = outs["ce"][0], label
            x, y = data.split("test")
            by_checkpoint = gain_by_checkpoint(test, evaluate(spec, initial, x, y)["acc"],
                                               evaluate(spec, one_shot_ce, x, y)["acc"])
        rows.append(method_row(label, spec, data, initial=initial,
                               ce_params=outs["ce"][0], ce_seconds_per_net=outs["ce"][1],
                               l1_params=outs["l1"][0], l1_seconds_per_net=outs["l1"][1], lam=lam, trained=trained))
    budgets = tuple(sorted(set(int(e) for e in sgd_epochs)))
    lrs, lr_tuning = {"ce": float(sgd_lr), "l1": float(sgd_lr)}, None
    if sgd_lr_grid:
        val = test_networks(zoo, sgd_networks, split="val")
        tune_epochs = int(finetune_epochs or budgets[0])
        frames = []
        for objective, lam_o in (("ce", 0.0), ("l1", lam)):
            lrs[objective], frame = tune_sgd_lr(spec, val.params, data, lrs=sgd_lr_grid, epochs=tune_epochs, lam=lam_o,
                                                seed=seed)
            frames.append(frame.assign(family=family, objective=objective, epochs=tune_epochs, entries=len(val)))
        lr_tuning = pd.concat(frames, ignore_index=True)
    warm = tuple(range(1, int(finetune_epochs) + 1)) if finetune_epochs else ()
    ce_runs = sgd_finetune(spec, initial, data, epochs=tuple(sorted(set(budgets) | set(warm))), lam=0.0, lr=lrs["ce"],
                           seed=seed, progress=progress)
    l1_runs = sgd_finetune(spec, initial, data, epochs=budgets, lam=lam, lr=lrs["l1"], seed=seed, progress=progress)
    rows += sgd_rows(spec, data, initial=initial, ce_results={e: ce_runs[e] for e in budgets}, l1_results=l1_runs,
                     lam=lam, trained=trained)
    curves = None
    if warm:
        fixed = f"lr {sgd_lr:g}"
        starts = {"Initial (tuned lr)" if sgd_lr_grid else "Initial": (initial, lrs["ce"])}
        if sgd_lr_grid:
            starts[f"Initial ({fixed})"] = (initial, float(sgd_lr))
        if one_shot_ce is not None:
            starts[f"{first_label} (tuned lr)" if sgd_lr_grid else first_label] = (one_shot_ce, lrs["ce"])
            if sgd_lr_grid:
                starts[f"{first_label} ({fixed})"] = (one_shot_ce, float(sgd_lr))
        control = ce_outputs.get("gmn") if methods and methods[0] != "gmn" else None
        if control is not None:
            starts[method_label("gmn", bidirectional) + (" (tuned lr)" if sgd_lr_grid else "")] = (control, lrs["ce"])
        first_start = next(iter(starts))
        curves, runs = sgd_curves(spec, {k: v for k, v in starts.items() if k != first_start}, data,
                                  epochs=int(finetune_epochs), seed=seed, trained=trained, precomputed={
                                      first_start: (initial, lrs["ce"], {e: ce_runs[e] for e in warm})})
        last = int(finetune_epochs)
        if sgd_lr_grid:
            rows.append(method_row(f"Fixed-lr SGD ({last} epochs, {fixed})", spec, data, initial=initial,
                                   ce_params=runs[f"Initial ({fixed})"][last].params,
                                   ce_seconds_per_net=runs[f"Initial ({fixed})"][last].seconds_per_network,
                                   lam=lam, trained=trained))
        if one_shot_ce is not None:
            first = next(r for r in rows if r["method"] == first_label)
            variants = [("tuned lr" if sgd_lr_grid else None, "")] + ([(fixed, f"fixed-lr ")] if sgd_lr_grid else [])
            for which, prefix in variants:
                key = f"{first_label} ({which})" if which else first_label
                name = f"{first_label} + {prefix}SGD ({last} epochs{', ' + fixed if prefix else ''})"
                rows.append(method_row(name, spec, data, initial=initial, ce_params=runs[key][last].params,
                                       ce_seconds_per_net=first["ce_time_per_net_s"] + runs[key][last].seconds_per_network,
                                       lam=lam, trained=trained))
    sample = min(sequential_sample, n)
    sequential = time_one_at_a_time(spec, initial, data, epochs=1, sample=sample, lr=sgd_lr, seed=seed) if sample else float("nan")
    table = results_table(rows)
    for _, r in table.iterrows():
        if r["ce_time_per_net_s"] == r["ce_time_per_net_s"]:  # not NaN
            points.append({"family": family, "method": r["method"], "seconds_per_net": float(r["ce_time_per_net_s"]),
                           "avg_acc": float(r["ce_avg_acc"]), "kind": _point_kind(r["method"], train_seconds),
                           "train_seconds": train_seconds.get(r["method"], 0.0), "networks": n})
    return {"table": table, "points": points, "sgd_sequential_s_per_epoch": sequential, "n_networks": n,
            "by_checkpoint": by_checkpoint, "curves": curves, "sgd_lr": lrs, "lr_tuning": lr_tuning,
            "train_seconds": train_seconds}


def results_for_families(output_dir, families, *, data: dict, zoo: dict, per_family: dict | None = None,
                         workers: int | None = None, progress: bool = True, **kwargs) -> dict[str, dict]:
    """:func:`family_results` for every family of ``families``, one family per worker process (the SGD baselines
    and the warm start, the cost of notebook 06 once the metanets exist, are independent per family).

    ``data``/``zoo``: keyword arguments of :func:`get_data`/:func:`get_zoo`; ``per_family``: extra keyword
    arguments of one family (e.g. its ``methods``); ``kwargs``: those shared by all. Timings inside are taken
    while the other worker runs too (two families at a time on a 2-core machine), for one shot and SGD alike."""
    per_family = per_family or {}
    jobs = [{"output_dir": str(output_dir), "family": f, "data": dict(data), "zoo": dict(zoo),
             "kwargs": {**kwargs, **per_family.get(f, {})}} for f in families]
    results = run_parallel(_family_job, jobs, workers=workers, desc="results", progress=progress,
                           label=lambda j: j["family"])
    return dict(zip(families, results))


def _family_job(job: dict) -> dict:
    data = get_data(**job["data"])
    zoo = get_zoo(job["output_dir"], job["family"], data, progress=False, verbose=False, **job["zoo"])
    return family_results(job["output_dir"], job["family"], zoo, data, progress=False, **job["kwargs"])


def _point_kind(name: str, one_shot_labels) -> str:
    """What a results row is, for the accuracy-vs-time figure: "sgd", "sgd (fixed lr)", "one shot",
    "one shot + sgd" or "other"."""
    if name.startswith("SGD ("):
        return "sgd"
    if name.startswith("Fixed-lr SGD"):
        return "sgd (fixed lr)"
    if name in one_shot_labels:
        return "one shot"
    if any(name.startswith(f"{label} + ") for label in one_shot_labels):
        return "one shot + sgd"
    return "other"


# -- scaling study (notebook 07) ------------------------------------------------------------------------------------
def subsample_train(zoo: Zoo, n_train_networks: int, seed: int = 0) -> Zoo:
    """``zoo`` with only ``n_train_networks`` of its training networks (all their checkpoints), drawn at random by
    ``seed``; validation and test networks are kept, so every size is scored on the same held-out networks."""
    ids = np.sort(zoo.meta.loc[zoo.meta["split"] == "train", "net_id"].unique())
    if not 1 <= n_train_networks <= len(ids):
        raise ValueError(f"n_train_networks must lie in [1, {len(ids)}] (the zoo's training networks), "
                         f"got {n_train_networks}")
    keep = np.random.RandomState(seed).permutation(ids)[:n_train_networks]
    mask = (zoo.meta["split"] != "train").to_numpy() | zoo.meta["net_id"].isin(keep).to_numpy()
    sub = zoo.subset(mask=mask)
    sub.info = {**sub.info, "train_subsample": {"n_train_networks": int(n_train_networks), "seed": int(seed)}}
    return sub


def _scaling_job(job: dict) -> tuple[dict, list[dict]]:
    """Worker side of :func:`scaling_study`: one (size, seed) point."""
    data = get_data(**job["data"])
    zoo = get_zoo(job["output_dir"], job["family"], data, progress=False, verbose=False, **job["zoo"])
    n, s, settings = job["size"], job["seed"], job["settings"]
    test = test_networks(zoo, job["eval_networks"])
    (x, y), (xv, yv) = data.split("test"), data.split("val")
    before = evaluate(zoo.spec, test.params, x, y)["acc"].double()
    before_val = float(evaluate(zoo.spec, test.params, xv, yv)["acc"].double().mean())
    trained = torch.as_tensor(trained_mask(test))
    sub = subsample_train(zoo, n, seed=s)
    splits = split_params(sub)
    n_entries = n_networks(splits["train"])
    steps_per_epoch = max(1, n_entries // settings.get("batch_networks", TrainConfig().batch_networks))
    epochs = max(1, math.ceil(job["steps"] / steps_per_epoch))  # at least the requested steps for every size
    config = make_config(zoo.spec, objective="ce", lam=0.0, seed=s, **{**settings, "epochs": epochs})
    result = train(zoo.spec, splits["train"], splits["val"], data, config, None, progress=False,
                   monitor={"test": test.params})
    new, _ = one_shot(result.model, zoo.spec, test.params)
    after = evaluate(zoo.spec, new, x, y)["acc"].double()
    best = result.history[result.best_epoch] if result.best_epoch >= 0 else {}
    row = {
        "family": zoo.spec.family, "train_networks": n, "train_entries": n_entries, "seed": s, "epochs": epochs,
        "steps": result.history[-1]["step"] if result.history else 0, "best_epoch": result.best_epoch,
        "gain_all": 100 * float(after.mean() - before.mean()),
        "gain_trained": 100 * float(after[trained].mean() - before[trained].mean()),
        "seen_minus_val_loss": best.get("seen_loss", float("nan")) - best.get("val_loss", float("nan")),
        "train_seconds": result.seconds,
    }
    curve = [{"family": zoo.spec.family, "train_networks": n, "seed": s, "epoch": h["epoch"], "step": h["step"],
              "val_loss": h["val_loss"], "seen_loss": h.get("seen_loss"),
              "test_gain_val_images": 100 * (h["test_acc"] - before_val)} for h in result.history]
    return row, curve


def scaling_study(output_dir, family: str, *, data: dict, zoo: dict, sizes, seeds=(0, 1), steps: int,
                  eval_networks: int | None = None, workers: int | None = None, progress: bool = True, **settings):
    """Held-out one-shot gain (CE objective, ScaleGMN) vs the number of training networks and vs training steps.

    For every size in ``sizes`` (training networks of the zoo of ``family``, each with all its checkpoints, drawn
    by :func:`subsample_train`) and seed, a ScaleGMN is trained for the same number of optimizer ``steps`` (so sizes
    differ in data, not in compute), its best epoch picked on the validation networks, and its one shot scored on
    the held-out test networks (:func:`test_networks`). Per epoch the held-out networks are also scored on the
    validation images (``test_gain_val_images``) for the gain-vs-steps curve; nothing is selected by them.
    ``data``/``zoo``: keyword arguments of :func:`get_data`/:func:`get_zoo` (the zoo must exist); the points run in
    ``workers`` processes.

    Returns ``(runs, curves)``: one row per (size, seed) with gains over all and over trained checkpoints, the best
    epoch and the generalisation gap (training-network minus validation-network loss at the best epoch); one row
    per (size, seed, epoch) with steps and the held-out gain.
    """
    jobs = [{"output_dir": str(output_dir), "family": family, "data": dict(data), "zoo": dict(zoo), "size": int(n),
             "seed": int(s), "steps": int(steps), "eval_networks": eval_networks, "settings": dict(settings)}
            for n in sizes for s in seeds]
    results = run_parallel(_scaling_job, jobs, workers=workers, desc=f"scaling study {family}", progress=progress,
                           label=lambda j: f"{j['size']} networks, seed {j['seed']}")
    return (pd.DataFrame([r for r, _ in results]), pd.DataFrame([c for _, cs in results for c in cs]))


def symmetry_response(output_dir, data: Dataset, zoos: dict[str, Zoo], *, methods, lam: float, seed: int = 0,
                      eval_networks: int | None = None, **settings):
    """Parameter count and scaling behaviour of each method's trained CE metanetwork (seed ``seed``), per family.

    For every held-out network a random function-preserving sign flip (tanh) or positive rescaling (ReLU) is
    drawn and the update of the transformed copy, mapped back, is compared with the update of the network itself
    (:func:`workbench.metanet.rescale_response`): ~0 for an equivariant model, of order 1 for one that only knows
    permutations. Returns ``(summary, per_network)`` frames; the models are reloaded, or trained when missing."""
    summary, per_network = [], []
    bidirectional = settings.get("bidirectional", MetanetConfig().bidirectional)
    for family, zoo in zoos.items():
        test = test_networks(zoo, eval_networks)
        for method in methods:
            result = train_method(output_dir, zoo, data, method, objective="ce", lam=lam, seed=seed, progress=False,
                                  **settings)
            response = rescale_response(result.model, zoo.spec, test.params, torch.Generator().manual_seed(seed))
            label = method_label(method, bidirectional)
            summary.append({"family": family, "method": label, "parameters": count_parameters(result.model),
                            "response_median": float(response.median()), "response_max": float(response.max())})
            per_network += [{"family": family, "method": label, "response": float(r)} for r in response]
    return pd.DataFrame(summary), pd.DataFrame(per_network)


# -- ablation verdicts (notebook 05) ----------------------------------------------------------------------------------
#: each objective's own metric: (column of run_ablation's frame, +1 when higher is better)
OBJECTIVE_METRIC = {"ce": ("avg_acc_trained", +1), "l1": ("test_loss", -1)}


def initial_scores(data: Dataset, zoos: dict[str, Zoo], *, lam: float, eval_networks: int | None = None):
    """The held-out networks as they are (no optimization), per family: the reference level of the ablation."""
    rows = []
    for family, zoo in zoos.items():
        test = test_networks(zoo, eval_networks)
        m = evaluate(zoo.spec, test.params, data.x_test, data.y_test, lam)
        trained = torch.as_tensor(trained_mask(test))
        rows.append({"family": family, "avg_acc": 100 * float(m["acc"].double().mean()),
                     "avg_acc_trained": 100 * float(m["acc"][trained].double().mean()),
                     "ce_loss": float(m["ce"].double().mean()), "l1_test_loss": float(m["loss"].double().mean())})
    return pd.DataFrame(rows)


def ablation_verdict(runs, *, acc_margin: float = 0.5, loss_margin: float = 0.01):
    """ScaleGMN against each symmetry-broken method, per family x objective, on the objective's own metric.

    ``effect`` = (ScaleGMN - other) signed so that positive means the equivariant model is better; it counts as a
    win or loss only when it exceeds both the margin (``acc_margin`` points of accuracy, ``loss_margin`` of loss)
    and twice the standard error of the difference over seeds, else "tie". ``smoother``: ScaleGMN's mean
    smoothness (validation-loss jumpiness, lower = smoother) is below the other's.

    The equivariant method's rows are found by their label (:func:`method_of_label`); every other method label in
    ``runs`` is compared with it."""
    rows = []
    for (family, objective), sub in runs.groupby(["family", "objective"], sort=False):
        metric, sign = OBJECTIVE_METRIC[objective]
        by = {m: g for m, g in sub.groupby("method", sort=False)}
        sym = next((m for m in by if getattr(method_of_label(m), "equivariant", False)), None)
        if sym is None:
            continue
        for other in (m for m in by if m != sym):
            a, b = by[sym][metric].to_numpy(float), by[other][metric].to_numpy(float)
            effect = sign * (a.mean() - b.mean())
            se = np.sqrt((a.var(ddof=1) / len(a) if len(a) > 1 else 0) + (b.var(ddof=1) / len(b) if len(b) > 1 else 0))
            margin = max(acc_margin if objective == "ce" else loss_margin, 2 * se)
            outcome = "win" if effect > margin else "loss" if effect < -margin else "tie"
            rows.append({"family": family, "kind": Family.parse(family).kind, "objective": objective, "metric": metric,
                         "scalegmn": a.mean(), "other_method": other, "other": b.mean(), "effect": effect,
                         "margin": margin, "outcome": outcome,
                         "smoother": bool(by[sym]["smoothness"].mean() < by[other]["smoothness"].mean())})
    return pd.DataFrame(rows)


def ablation_conclusions(verdict) -> list[str]:
    """Plain sentences, each computed from :func:`ablation_verdict`'s frame."""
    lines = []
    for r in verdict.itertuples():
        unit = "points" if r.objective == "ce" else "(loss)"
        lines.append(f"{r.family} {r.objective}: ScaleGMN vs {r.other_method}: effect {r.effect:+.3f} {unit} "
                     f"(margin {r.margin:.3f}) -> {r.outcome}; smoother: {r.smoother}")
    for objective, sub in verdict.groupby("objective", sort=False):
        broken = sub[sub["other_method"].map(lambda m: getattr(method_of_label(m), "key", None) == "gmn")]
        kinds = broken.groupby("kind")["effect"].mean()
        if {"mlp", "cnn"} <= set(kinds.index):
            lines.append(f"{objective}: mean effect of symmetry (vs the plain symmetry-broken GMN) MLP {kinds['mlp']:+.3f}, "
                         f"CNN {kinds['cnn']:+.3f} -> larger for MLPs than for CNNs (the poster's claim): "
                         f"{bool(kinds['mlp'] > kinds['cnn'])}")
        wins = (sub["outcome"] == "win").sum()
        lines.append(f"{objective}: ScaleGMN wins {wins}, ties {(sub['outcome'] == 'tie').sum()}, loses "
                     f"{(sub['outcome'] == 'loss').sum()} of {len(sub)} comparisons")
    return lines


# -- choosing lambda for the L1 objective (notebook 07) ---------------------------------------------------------------
def lam_sweep(output_dir, zoo: Zoo, data: Dataset, lams, *, seed: int = 0, sgd_epochs=(5,), sgd_lr: float = 0.01,
              eval_networks: int | None = None, max_acc_drop: float = 5.0, progress: bool = True, **settings):
    """The accuracy-vs-sparsity trade-off of the L1 objective for every ``lam``, on the *validation* networks (the
    choice of lambda must not look at the test networks).

    Points: the initial networks, the all-zero network, the L1 ScaleGMN one shot for each ``lam`` (runs cached like
    every other run; train them in parallel first with :func:`prefetch_runs`), and SGD on CE + lam L1 for each
    budget in ``sgd_epochs`` and each ``lam``. ``chosen`` (one row flagged) is the largest ``lam`` whose one shot
    keeps the accuracy on trained checkpoints within ``max_acc_drop`` points of the initial networks'.

    Returns a DataFrame: method, lam, acc_trained (%), l1_reduction (%), near_zero (%), loss (CE + lam L1), chosen.
    """
    val = zoo.subset(split="val")
    if eval_networks is not None:
        ids = np.sort(val.meta["net_id"].unique())[:eval_networks]
        val = val.subset(mask=val.meta["net_id"].isin(ids).to_numpy())
    x, y = data.split("val")
    trained = torch.as_tensor(trained_mask(val))
    spec = zoo.spec

    def point(method, lam, params):
        m = evaluate(spec, params, x, y, lam)
        return {"method": method, "lam": lam, "acc_trained": 100 * float(m["acc"][trained].double().mean()),
                "l1_reduction": l1_reduction(val.params, params), "near_zero": share_near_zero(params),
                "loss": float(m["loss"].double().mean())}

    rows = []
    for lam in lams:
        rows.append(point("Initial", lam, val.params))
        rows.append(point("All-zero network", lam, map_params(torch.zeros_like, val.params)))
        result = train_method(output_dir, zoo, data, "scalegmn", objective="l1", lam=lam, seed=seed, progress=progress,
                              **settings)
        new, _ = one_shot(result.model, spec, val.params)
        rows.append(point("ScaleGMN one shot", lam, new))
        runs = sgd_finetune(spec, val.params, data, epochs=tuple(sgd_epochs), lam=lam, lr=sgd_lr, seed=seed,
                            progress=False)
        rows += [point(f"SGD ({e} epochs)", lam, r.params) for e, r in runs.items()]
    frame = pd.DataFrame(rows)
    frame["chosen"] = False
    initial_acc = frame.loc[frame["method"] == "Initial", "acc_trained"].iloc[0]
    ok = frame[(frame["method"] == "ScaleGMN one shot") & (frame["acc_trained"] >= initial_acc - max_acc_drop)]
    if len(ok):
        frame.loc[ok["lam"].idxmax(), "chosen"] = True
    return frame
