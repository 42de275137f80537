"""The results table of notebook 06: every method's row for one family, measured on the same held-out networks.

:func:`family_results` assembles the table from its parts, in this order: the reference rows (initial and all-zero
networks), the one shots of the metanetwork methods, SGD at each budget (at a learning rate tuned on validation
networks when a grid is given), the warm start (SGD from the one shots, scored after every epoch) and the
accuracy-vs-time points; :func:`results_for_families` runs it for several families in worker processes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..balance import balance_l1
from ..baselines import sgd_finetune, time_one_at_a_time
from ..data import Dataset
from ..metanet import MetanetConfig
from ..nets import NetSpec, Params, map_params
from ..objective import evaluate
from ..optimize import one_shot
from ..parallel import run_parallel
from ..results import method_row, results_table, sgd_rows
from ..warmstart import sgd_curves, tune_sgd_lr
from ..zoo import Zoo
from .held_out import gain_by_checkpoint, test_networks, trained_mask
from .methods import method_label
from .runs import OBJECTIVES, run_exists, train_method
from .zoos import get_data, get_zoo

__all__ = ["family_results", "results_for_families"]


def family_results(output_dir, family: str, zoo: Zoo, data: Dataset, *, lam: float, seed: int = 0,
                   sgd_epochs=(25, 50, 100, 150), sgd_lr: float = 0.01, sgd_networks: int | None = None,
                   sequential_sample: int = 2, finetune_epochs: int = 5, methods=("scalegmn", "gmn"),
                   reuse_only=(), sgd_lr_grid=None, progress: bool = True, **settings) -> dict:
    """All rows of the poster's table for one family, measured now on the same held-out networks
    (:func:`test_networks` with ``sgd_networks`` networks, all their checkpoints).

    Rows: Initial; the all-zero network (an L1 reference: CE + lam * L1 = ln(classes) at chance accuracy); the
    metanetworks of ``methods`` (seed ``seed`` of the ablation runs, trained here when missing) for the CE and the L1
    objective; for ReLU families "<first method> + L1 balancing" (L1 only: its L1 one shot moved to the L1-smallest
    point of its scaling orbit, :func:`workbench.balance.balance_l1`, same function); SGD at each budget (vectorised over networks); the first method followed by ``finetune_epochs`` of
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
    spec, initial, n, trained = zoo.spec, test.params, len(test), trained_mask(test)
    bidirectional = settings.get("bidirectional", MetanetConfig().bidirectional)
    rows = _reference_rows(spec, data, initial, lam=lam, trained=trained)
    shots = _one_shot_rows(output_dir, zoo, data, test, methods, lam=lam, seed=seed, reuse_only=reuse_only,
                           bidirectional=bidirectional, progress=progress, settings=settings)
    rows += shots.rows
    budgets = tuple(sorted(set(int(e) for e in sgd_epochs)))
    lrs, lr_tuning = _sgd_learning_rates(zoo, data, family=family, sgd_lr=sgd_lr, sgd_lr_grid=sgd_lr_grid,
                                         sgd_networks=sgd_networks, finetune_epochs=finetune_epochs,
                                         budgets=budgets, lam=lam, seed=seed)
    warm = tuple(range(1, int(finetune_epochs) + 1)) if finetune_epochs else ()
    sgd_table_rows, ce_runs = _sgd_rows(spec, data, initial, budgets=budgets, warm=warm, lrs=lrs, lam=lam, seed=seed,
                                        trained=trained, progress=progress)
    rows += sgd_table_rows
    curves = None
    if warm:
        control = shots.ce_params.get("gmn") if methods and methods[0] != "gmn" else None
        starts = _warm_starts(initial, shots.first, control, method_label("gmn", bidirectional), lrs=lrs,
                              sgd_lr=sgd_lr, tuned=bool(sgd_lr_grid))
        first_start = next(iter(starts))
        curves, runs = sgd_curves(spec, {k: v for k, v in starts.items() if k != first_start}, data,
                                  epochs=int(finetune_epochs), seed=seed, trained=trained, precomputed={
                                      first_start: (initial, lrs["ce"], {e: ce_runs[e] for e in warm})})
        rows += _warm_start_rows(spec, data, initial, runs, rows, shots.first, last=int(finetune_epochs),
                                 sgd_lr=sgd_lr, tuned=bool(sgd_lr_grid), lam=lam, trained=trained)
    sample = min(sequential_sample, n)
    sequential = (time_one_at_a_time(spec, initial, data, epochs=1, sample=sample, lr=sgd_lr, seed=seed)
                  if sample else float("nan"))
    table = results_table(rows)
    return {"table": table, "points": _time_points(table, family, shots.train_seconds, n),
            "sgd_sequential_s_per_epoch": sequential, "n_networks": n, "by_checkpoint": shots.by_checkpoint,
            "curves": curves, "sgd_lr": lrs, "lr_tuning": lr_tuning, "train_seconds": shots.train_seconds}


def _reference_rows(spec: NetSpec, data: Dataset, initial: Params, *, lam: float, trained) -> list[dict]:
    """The rows every method is compared with: the initial networks and the all-zero network (L1 only)."""
    rows = [method_row("Initial", spec, data, initial=initial, ce_params=initial, l1_params=initial, lam=lam,
                       trained=trained)]
    zeros = map_params(torch.zeros_like, initial)
    rows.append(method_row("All-zero network", spec, data, initial=initial, l1_params=zeros, lam=lam, trained=trained))
    return rows


@dataclass
class _OneShots:
    """The metanetwork methods' part of :func:`family_results`."""

    rows: list[dict] = field(default_factory=list)
    ce_params: dict[str, Params] = field(default_factory=dict)  # method key -> its CE one shot of the held-out nets
    train_seconds: dict[str, float] = field(default_factory=dict)  # row label -> CE training seconds
    first: tuple[str, Params] | None = None  # (label, CE one shot) of the first method with a CE run
    first_l1: tuple[str, Params, float] | None = None  # (label, L1 one shot, seconds per network), likewise
    by_checkpoint: pd.DataFrame | None = None  # gain_by_checkpoint of ``first``'s one shot


def _one_shot_rows(output_dir, zoo: Zoo, data: Dataset, test: Zoo, methods, *, lam: float, seed: int, reuse_only,
                   bidirectional: bool, progress: bool, settings: dict) -> _OneShots:
    """One row per method with a run (CE and L1 one shots of the held-out networks ``test``, timed per network)."""
    spec, initial, trained = zoo.spec, test.params, trained_mask(test)
    shots = _OneShots()
    for method in methods:
        label = method_label(method, bidirectional)
        outs = {}
        for objective in OBJECTIVES:
            if method in reuse_only and not run_exists(output_dir, zoo, method, objective=objective, lam=lam,
                                                       seed=seed, **settings):
                continue
            result = train_method(output_dir, zoo, data, method, objective=objective, lam=lam, seed=seed,
                                  progress=progress, **settings)
            one_shot(result.model, spec, map_params(lambda t: t[:1], initial))  # warm-up, not timed
            new, seconds = one_shot(result.model, spec, initial)
            outs[objective] = (new, seconds / len(test))
            if objective == "ce":
                shots.ce_params[method], shots.train_seconds[label] = new, float(result.seconds)
        if not outs:
            continue
        (ce, ce_seconds), (l1, l1_seconds) = outs.get("ce", (None, None)), outs.get("l1", (None, None))
        if shots.first is None and ce is not None:
            shots.first = (label, ce)
            x, y = data.split("test")
            shots.by_checkpoint = gain_by_checkpoint(test, evaluate(spec, initial, x, y)["acc"],
                                                     evaluate(spec, ce, x, y)["acc"])
        shots.rows.append(method_row(label, spec, data, initial=initial, ce_params=ce, ce_seconds_per_net=ce_seconds,
                                     l1_params=l1, l1_seconds_per_net=l1_seconds, lam=lam, trained=trained))
        if shots.first_l1 is None and l1 is not None:
            shots.first_l1 = (label, l1, l1_seconds)
    if spec.activation == "relu" and shots.first_l1 is not None:
        # the L1 that is pure gauge: an equivariant one shot keeps its input's place on the scaling orbit, so it cannot
        # remove it; balancing (function-preserving, workbench.balance) can, in milliseconds
        label, l1, l1_seconds = shots.first_l1
        t0 = time.perf_counter()
        balanced = balance_l1(spec, l1).params
        seconds = (time.perf_counter() - t0) / len(test)
        shots.rows.append(method_row(f"{label} + L1 balancing", spec, data, initial=initial, l1_params=balanced,
                                     l1_seconds_per_net=l1_seconds + seconds, lam=lam, trained=trained))
    return shots


def _sgd_learning_rates(zoo: Zoo, data: Dataset, *, family: str, sgd_lr: float, sgd_lr_grid, sgd_networks,
                        finetune_epochs: int, budgets: tuple[int, ...], lam: float, seed: int):
    """SGD's learning rate per objective: ``sgd_lr``, or the best of ``sgd_lr_grid`` on the validation networks
    (``finetune_epochs`` epochs, else the smallest budget). Returns ``(lrs, tuning frame or None)``."""
    lrs = {"ce": float(sgd_lr), "l1": float(sgd_lr)}
    if not sgd_lr_grid:
        return lrs, None
    val = test_networks(zoo, sgd_networks, split="val")
    tune_epochs = int(finetune_epochs or budgets[0])
    frames = []
    for objective, lam_o in (("ce", 0.0), ("l1", lam)):
        lrs[objective], frame = tune_sgd_lr(zoo.spec, val.params, data, lrs=sgd_lr_grid, epochs=tune_epochs, lam=lam_o,
                                            seed=seed)
        frames.append(frame.assign(family=family, objective=objective, epochs=tune_epochs, entries=len(val)))
    return lrs, pd.concat(frames, ignore_index=True)


def _sgd_rows(spec: NetSpec, data: Dataset, initial: Params, *, budgets, warm, lrs: dict, lam: float, seed: int,
              trained, progress: bool):
    """The "SGD (k epochs)" rows, one per budget, and the CE runs at every budget and warm-start epoch (the warm
    start from the initial networks reuses them). Returns ``(rows, {epochs: SGDResult})``."""
    ce_runs = sgd_finetune(spec, initial, data, epochs=tuple(sorted(set(budgets) | set(warm))), lam=0.0, lr=lrs["ce"],
                           seed=seed, progress=progress)
    l1_runs = sgd_finetune(spec, initial, data, epochs=budgets, lam=lam, lr=lrs["l1"], seed=seed, progress=progress)
    rows = sgd_rows(spec, data, initial=initial, ce_results={e: ce_runs[e] for e in budgets}, l1_results=l1_runs,
                    lam=lam, trained=trained)
    return rows, ce_runs


def _warm_starts(initial: Params, first, control, control_label: str, *, lrs: dict, sgd_lr: float,
                 tuned: bool) -> dict[str, tuple[Params, float]]:
    """``{curve label: (start params, lr)}`` of the warm start: the initial networks, the first method's one shot
    and the control's (``control``: "gmn"'s one shot or None), at the tuned rate, and with ``tuned`` also at the
    fixed ``sgd_lr``. The first entry is the initial networks at the CE rate (their SGD runs exist already)."""
    fixed = f"lr {sgd_lr:g}"
    starts = {"Initial (tuned lr)" if tuned else "Initial": (initial, lrs["ce"])}
    if tuned:
        starts[f"Initial ({fixed})"] = (initial, float(sgd_lr))
    if first is not None:
        label, params = first
        starts[f"{label} (tuned lr)" if tuned else label] = (params, lrs["ce"])
        if tuned:
            starts[f"{label} ({fixed})"] = (params, float(sgd_lr))
    if control is not None:
        starts[control_label + (" (tuned lr)" if tuned else "")] = (control, lrs["ce"])
    return starts


def _warm_start_rows(spec: NetSpec, data: Dataset, initial: Params, runs: dict, rows: list[dict], first, *,
                     last: int, sgd_lr: float, tuned: bool, lam: float, trained) -> list[dict]:
    """Rows of the warm start's last epoch ``last``: fixed-lr SGD from the initial networks (with ``tuned``), and
    the first method's one shot followed by SGD (its time = one shot + SGD, per network; ``rows`` holds its row)."""
    fixed = f"lr {sgd_lr:g}"
    new_rows = []
    if tuned:
        new_rows.append(method_row(f"Fixed-lr SGD ({last} epochs, {fixed})", spec, data, initial=initial,
                                   ce_params=runs[f"Initial ({fixed})"][last].params,
                                   ce_seconds_per_net=runs[f"Initial ({fixed})"][last].seconds_per_network,
                                   lam=lam, trained=trained))
    if first is not None:
        first_label = first[0]
        one_shot_seconds = next(r for r in rows if r["method"] == first_label)["ce_time_per_net_s"]
        variants = [("tuned lr" if tuned else None, "")] + ([(fixed, "fixed-lr ")] if tuned else [])
        for which, prefix in variants:
            key = f"{first_label} ({which})" if which else first_label
            name = f"{first_label} + {prefix}SGD ({last} epochs{', ' + fixed if prefix else ''})"
            new_rows.append(method_row(name, spec, data, initial=initial, ce_params=runs[key][last].params,
                                       ce_seconds_per_net=one_shot_seconds + runs[key][last].seconds_per_network,
                                       lam=lam, trained=trained))
    return new_rows


def _time_points(table: pd.DataFrame, family: str, train_seconds: dict[str, float], n: int) -> list[dict]:
    """The accuracy-vs-time points: one per row with a CE time per network."""
    points = []
    for _, r in table.iterrows():
        if r["ce_time_per_net_s"] == r["ce_time_per_net_s"]:  # not NaN
            points.append({"family": family, "method": r["method"], "seconds_per_net": float(r["ce_time_per_net_s"]),
                           "avg_acc": float(r["ce_avg_acc"]), "kind": _point_kind(r["method"], train_seconds),
                           "train_seconds": train_seconds.get(r["method"], 0.0), "networks": n})
    return points


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

