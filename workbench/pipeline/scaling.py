"""Notebook 07's two studies: how the held-out one-shot gain scales with the number of training networks, and the
choice of the L1 weight lambda on validation networks.

:func:`scaling_study` trains one ScaleGMN per (size, seed) on :func:`subsample_train` subsets of the zoo's training
networks, for the same number of optimizer steps, in worker processes; :func:`lam_sweep` traces the
accuracy-vs-sparsity trade-off of the L1 objective and flags the largest lambda within an accuracy budget.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import torch

from ..baselines.sgd import sgd_finetune
from ..data import Dataset
from ..nets import map_params, n_networks
from ..measure.score import score
from ..training.optimize import one_shot, train
from ..system.parallel import run_parallel
from ..baselines.warmstart import tune_sgd_lr
from ..zoo import Zoo
from .held_out import test_networks
from .methods import epochs_text
from .recipe import DataRecipe, Recipe, ZooRecipe
from .runs import train_metanet, training_splits

__all__ = ["subsample_train", "scaling_zoo", "scaling_study", "scaling_studies", "scaling_check", "scaling_table",
           "scaling_trend", "lam_sweep", "lam_choice"]


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
    data = job["data"].load()
    zoo = job["zoo"].load(job["output_dir"], job["family"], data, progress=False, verbose=False)
    n, s, recipe = job["size"], job["seed"], job["recipe"]
    test = test_networks(zoo, job["eval_networks"])
    before = score(test, data)
    before_val = score(test, data, split="val").value("acc")
    sub = subsample_train(zoo, n, seed=s)
    splits = training_splits(sub, recipe.train.skip_untrained)
    n_entries = n_networks(splits["train"])
    steps_per_epoch = max(1, n_entries // recipe.train.batch_networks)
    epochs = max(1, math.ceil(job["steps"] / steps_per_epoch))  # at least the requested steps for every size
    # at least the same steps for every size, in whole epochs (a larger size may get up to one epoch more than the
    # steps asked for: the block and the table name the steps each size ran); no early stop cuts a size short
    config = dataclasses.replace(recipe, mlp_epochs=None).with_train(epochs=epochs, patience=None).config(
        zoo.spec, objective="ce", seed=s)
    result = train(zoo.spec, splits["train"], splits["val"], data, config, None, progress=False,
                   monitor={"test": test.params})
    after = score(test, data, one_shot(result.model, zoo.spec, test.params)[0])
    best = result.history[result.best_epoch] if result.best_epoch >= 0 else {}
    row = {
        "family": zoo.spec.family, "train_networks": n, "train_entries": n_entries, "seed": s, "epochs": epochs,
        "steps": result.history[-1]["step"] if result.history else 0, "best_epoch": result.best_epoch,
        "gain_all": after.value("acc") - before.value("acc"),
        "gain_trained": after.value("acc_trained") - before.value("acc_trained"),
        "seen_minus_val_loss": best.get("seen_loss", float("nan")) - best.get("val_loss", float("nan")),
        "train_seconds": result.seconds,
    }
    curve = [{"family": zoo.spec.family, "train_networks": n, "seed": s, "epoch": h["epoch"], "step": h["step"],
              "val_loss": h["val_loss"], "seen_loss": h.get("seen_loss"),
              "test_gain_val_images": 100 * h["test_acc"] - before_val} for h in result.history]
    return row, curve


def scaling_study(output_dir, family: str, *, data: DataRecipe, zoo: ZooRecipe, recipe: Recipe, sizes, seeds=(0, 1),
                  steps: int, eval_networks: int | None = None, workers: int | None = None, progress: bool = True):
    """Held-out one-shot gain (CE objective, ScaleGMN) vs the number of training networks and vs training steps.

    For every size in ``sizes`` (training networks of the zoo of ``family``, each with all its checkpoints, drawn
    by :func:`subsample_train`) and seed, a ScaleGMN is trained for the same number of optimizer ``steps`` (so sizes
    differ in data, not in compute), its best epoch picked on the validation networks, and its one shot scored on
    the held-out test networks (:func:`test_networks`). Per epoch the held-out networks are also scored on the
    validation images (``test_gain_val_images``) for the gain-vs-steps curve; nothing is selected by them.
    ``data``/``zoo``/``recipe``: the sequence's recipes (the zoo must exist; the recipe's epochs, MLP epochs and
    patience give way to the steps); the points run in ``workers`` processes.

    Returns ``(runs, curves)``: one row per (size, seed) with gains over all and over trained checkpoints, the best
    epoch and the generalisation gap (training-network minus validation-network loss at the best epoch); one row
    per (size, seed, epoch) with steps and the held-out gain.
    """
    jobs = [{"output_dir": str(output_dir), "family": family, "data": data, "zoo": zoo, "recipe": recipe,
             "size": int(n), "seed": int(s), "steps": int(steps), "eval_networks": eval_networks}
            for n in sizes for s in seeds]
    results = run_parallel(_scaling_job, jobs, workers=workers, desc=f"scaling study {family}", progress=progress,
                           label=lambda j: f"{j['size']} networks, seed {j['seed']}")
    return (pd.DataFrame([r for r, _ in results]), pd.DataFrame([c for _, cs in results for c in cs]))


def scaling_zoo(zoo: ZooRecipe, n_networks: int | None) -> ZooRecipe:
    """The zoo the scaling study draws from: ``zoo`` itself, or, when ``n_networks`` is set and differs from its size,
    a zoo of ``n_networks`` networks of its own, cached beside the main one (``-n<n_networks>``)."""
    if n_networks and n_networks != zoo.n_networks:
        return dataclasses.replace(zoo, n_networks=n_networks, cache_suffix=f"-n{n_networks}")
    return zoo


def scaling_studies(output_dir, families, **settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`scaling_study` of every family in ``families`` (``settings``: its keyword arguments), stacked in that
    order: ``(runs, curves)`` of all families."""
    parts = [scaling_study(output_dir, family, **settings) for family in families]
    return (pd.concat([p[0] for p in parts], ignore_index=True),
            pd.concat([p[1] for p in parts], ignore_index=True))


def scaling_check(runs: pd.DataFrame, expected: int) -> str:
    """Notebook 07's check: how many of the ``expected`` (family, size, seed) points were measured, and whether every
    gain is finite."""
    return (f"scaling points measured: {len(runs)} of {expected}; "
            f"every gain finite: {bool(runs[['gain_all', 'gain_trained']].notna().all(axis=None))}")


def scaling_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per family and training-set size: seeds, steps, and the held-out gain's mean, min and max over seeds."""
    return (runs.groupby(["family", "train_networks"])
            .agg(entries=("train_entries", "first"), seeds=("seed", "count"), steps=("steps", "mean"),
                 gain_trained_mean=("gain_trained", "mean"), gain_trained_min=("gain_trained", "min"),
                 gain_trained_max=("gain_trained", "max"), gain_all_mean=("gain_all", "mean"),
                 best_epoch_mean=("best_epoch", "mean"), gap_seen_minus_val=("seen_minus_val_loss", "mean"))
            .reset_index())


def scaling_trend(table: pd.DataFrame) -> list[str]:
    """Per family, whether the gain grows from the smallest to the largest training set: only when the largest
    size's lowest seed beats the smallest size's highest (their seed ranges do not overlap); with one seed per size
    there is no spread to judge by, and the sentence says so."""
    lines = []
    for family, sub in table.groupby("family"):
        small, large = sub.iloc[0], sub.iloc[-1]
        seeds = int(min(small["seeds"], large["seeds"]))
        if seeds < 2:
            trend = "changes (one seed per size: no spread to judge by, indicative only)"
        elif large["gain_trained_min"] > small["gain_trained_max"]:
            trend = "grows (the seed ranges do not overlap)"
        elif large["gain_trained_max"] < small["gain_trained_min"]:
            trend = "shrinks (the seed ranges do not overlap)"
        else:
            trend = "shows no clear change (the seed ranges overlap)"
        lines.append(
            f"{family}: with the same {int(large['steps'])} steps, the held-out gain on trained checkpoints {trend}: "
            f"{small['gain_trained_mean']:+.2f} [{small['gain_trained_min']:+.2f}, {small['gain_trained_max']:+.2f}] "
            f"with {int(small['train_networks'])} training networks, {large['gain_trained_mean']:+.2f} "
            f"[{large['gain_trained_min']:+.2f}, {large['gain_trained_max']:+.2f}] with {int(large['train_networks'])} "
            f"(min and max over {seeds} seed{'s' * (seeds != 1)}); the training-minus-validation loss gap at the best "
            f"epoch goes from {small['gap_seen_minus_val']:+.3f} to {large['gap_seen_minus_val']:+.3f}.")
    return lines


# -- choosing lambda for the L1 objective (notebook 07) ---------------------------------------------------------------
def lam_sweep(output_dir, zoo: Zoo, data: Dataset, recipe: Recipe, lams, *, seed: int = 0, sgd_epochs=(5,),
              sgd_lr: float = 0.01, sgd_lr_grid=None, sgd_networks: int = 32, eval_networks: int | None = None,
              max_acc_drop: float = 5.0, progress: bool = True):
    """The accuracy-vs-sparsity trade-off of the L1 objective for every ``lam``, on the *validation* networks (the
    choice of lambda must not look at the test networks).

    Points: the initial networks, the all-zero network, the L1 ScaleGMN one shot for each ``lam`` (runs cached like
    every other run; train them in parallel first with :func:`prefetch_runs`), and SGD on CE + lam L1 for each
    budget in ``sgd_epochs`` and each ``lam``. ``chosen`` (one row flagged) is the largest ``lam`` whose one shot
    keeps the accuracy on trained checkpoints within ``max_acc_drop`` points of the initial networks'.

    SGD's learning rate is ``sgd_lr``, or with ``sgd_lr_grid`` the best of the grid for each ``lam`` on the first
    ``sgd_networks`` of these validation networks (:func:`~workbench.baselines.warmstart.tune_sgd_lr`, the smallest
    budget, criterion CE + lam L1). A reference tuned on the networks it is then scored on is, if anything, flattered:
    an untuned SGD point would flatter the one shot instead.

    Returns a DataFrame: label (display), kind (``"reference"``, ``"one_shot"``, ``"sgd"``), method (``"initial"``,
    ``"zero"``, ``"scalegmn"``, ``"sgd"``), epochs (SGD rows), lam, acc_trained (%), l1_reduction (%), near_zero (%),
    loss (CE + lam L1), sgd_lr (SGD rows; NaN elsewhere), chosen.
    """
    val = test_networks(zoo, eval_networks, split="val")
    spec = zoo.spec

    def point(kind, method, lam, params, epochs=None):
        s = score(val, data, params, split="val", lam=lam)
        label = {"initial": "Initial", "zero": "All-zero network", "scalegmn": "ScaleGMN one shot"}.get(method)
        return {"label": label or f"SGD ({epochs_text(epochs)})", "kind": kind, "method": method,
                "epochs": np.nan if epochs is None else epochs, "lam": lam,
                **{m: s.value(m) for m in ("acc_trained", "l1_reduction", "near_zero", "loss")}}

    rows = []
    for lam in lams:
        rows.append(point("reference", "initial", lam, val.params))
        rows.append(point("reference", "zero", lam, map_params(torch.zeros_like, val.params)))
        result = train_metanet(output_dir, zoo, data, recipe, method="scalegmn", objective="l1", lam=lam, seed=seed,
                               progress=progress)
        new, _ = one_shot(result.model, spec, val.params)
        rows.append(point("one_shot", "scalegmn", lam, new))
        lr = float(sgd_lr)
        if sgd_lr_grid:
            tune_on = test_networks(val, sgd_networks, split="val")
            lr, _ = tune_sgd_lr(spec, tune_on.params, data, lrs=sgd_lr_grid, epochs=min(sgd_epochs), lam=lam,
                                seed=seed)
        runs = sgd_finetune(spec, val.params, data, epochs=tuple(sgd_epochs), lam=lam, lr=lr, seed=seed,
                            progress=False)  # chunked within the memory budget by default (workbench.memory)
        rows += [{**point("sgd", "sgd", lam, r.params, epochs=e), "sgd_lr": lr} for e, r in runs.items()]
    frame = pd.DataFrame(rows)
    if "sgd_lr" not in frame:
        frame["sgd_lr"] = np.nan
    frame["chosen"] = False
    initial_acc = frame.loc[frame["method"] == "initial", "acc_trained"].iloc[0]
    ok = frame[(frame["kind"] == "one_shot") & (frame["acc_trained"] >= initial_acc - max_acc_drop)]
    if len(ok):
        frame.loc[ok["lam"].idxmax(), "chosen"] = True
    return frame


def lam_choice(sweep: pd.DataFrame, lams, max_acc_drop: float) -> str:
    """The sentence on :func:`lam_sweep`'s choice: the chosen lambda with its accuracy and L1-norm reduction, or,
    when no lambda of ``lams`` keeps the accuracy within ``max_acc_drop`` points, what to try instead."""
    chosen = sweep[sweep["chosen"]]
    if not len(chosen):
        return f"no lambda of {lams} keeps the one-shot accuracy within {max_acc_drop:g} points; try smaller values"
    c = chosen.iloc[0]
    return (f"chosen lam = {c['lam']:g}: the largest lambda whose one shot keeps the validation accuracy on trained "
            f"checkpoints within {max_acc_drop:g} points of the initial networks ({c['acc_trained']:.1f}%, "
            f"L1-norm reduction {c['l1_reduction']:.1f}%).")
