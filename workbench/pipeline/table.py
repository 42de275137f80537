"""The results of notebook 06 for one family: every method's row, matched compute, the warm start and the verdicts,
all measured on the same held-out networks and each headline number with its 95 % interval.

:func:`family_results` assembles them, in this order: the reference rows (initial and all-zero networks); the one
shots of the metanetwork methods (the first method's cross-entropy one shot with ``seeds`` metanet seeds: the
headline rests on it); SGD from the initial and from the one-shot networks at every rate of the grid, recorded step
by step on validation and test networks (:func:`workbench.baselines.amortization.sgd_grid`); SGD at each budget at the
rate tuned on validation networks; matched compute per one-shot method; the warm start per start; the verdicts.
:func:`results_for_families` runs it for several families in worker processes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from ..baselines.amortization import best_lr, matched_compute, sgd_grid, step_grid, time_side_by_side, warm_start
from ..balance import balance_l1
from ..baselines.sgd import sgd_finetune, time_one_at_a_time
from ..data import Dataset
from ..nets import Params, map_params
from ..training.optimize import one_shot
from ..system.parallel import run_parallel
from ..reporting.results import results_table, table_row
from ..measure.score import Score, score
from ..measure.uncertainty import Bootstrap
from ..baselines.warmstart import tune_sgd_lr
from ..zoo import Zoo
from .held_out import gain_by_checkpoint, test_networks
from .methods import epochs_text, method_label
from .recipe import OBJECTIVES, DataRecipe, Recipe, ZooRecipe
from .runs import run_exists, train_metanet
from .verdict_rows import family_verdicts

__all__ = ["FamilyResults", "family_results", "results_for_families", "table_plan"]

#: bootstrap draws of every interval (enough for stable 2.5 / 97.5 percentiles; cheap next to any training)
BOOTSTRAP_DRAWS = 2000
#: SGD is recorded step by step over at least this many epochs (matched compute needs SGD's curve past the point
#: where it reaches a one shot's accuracy)
MATCH_EPOCHS = 2


@dataclass
class FamilyResults:
    """What :func:`family_results` measured for one family (every frame carries its numbers' intervals)."""

    family: str
    table: pd.DataFrame
    verdicts: pd.DataFrame
    matched: pd.DataFrame  # one row per one-shot method: SGD steps/seconds to reach its accuracy, ratio, break-even
    warm: pd.DataFrame  # one row per (start, epochs): SGD from a one shot vs from the initial networks
    curves: pd.DataFrame  # SGD's mean accuracy on the test networks per (start, lr, step), with seconds per network
    by_checkpoint: pd.DataFrame  # the first method's CE gain per checkpoint epoch
    lr_tuning: pd.DataFrame  # validation accuracy per (start, lr, epochs): what the rates were chosen from
    n_entries: int
    n_networks: int
    seconds_per_step: float  # SGD seconds per network and step on the test networks
    sgd_sequential_s_per_epoch: float
    sgd_lr: dict = field(default_factory=dict)  # the rate per objective
    lr_tuned: bool = False  # whether sgd_lr was chosen on validation networks (else: the fixed rate)


@dataclass
class _Method:
    """One metanetwork method's one shots of the test (and, for CE, validation) entries."""

    key: str
    label: str
    ce: Score | None = None
    l1: Score | None = None
    ce_test: Params | None = None  # seed 0's CE one shot of the test entries (the warm start's start)
    ce_val: Params | None = None  # likewise of the validation entries
    l1_test: Params | None = None  # seed 0's L1 one shot of the test entries (for the balanced row)
    val_target: float = float("nan")  # mean CE one-shot accuracy (%) on the validation entries' trained checkpoints
    train_seconds: float = float("nan")  # CE training, mean over seeds
    ce_model: object = None  # seed 0's trained CE metanet (timed against SGD, interleaved)


def family_results(output_dir, family: str, zoo: Zoo, data: Dataset, recipe: Recipe, *, lam: float, seed: int = 0,
                   seeds: int = 1,
                   sgd_epochs=(25, 50, 100, 150), sgd_lr: float = 0.01, sgd_lr_grid=(), sgd_networks: int | None = None,
                   sequential_sample: int = 2, finetune_epochs: int = 5, methods=("scalegmn", "gmn"), reuse_only=(),
                   progress: bool = True) -> FamilyResults:
    """Every result of one family on the held-out networks :func:`test_networks` (``sgd_networks`` of them, all
    their checkpoints); rates and settings are chosen on as many validation networks, never on test networks.

    Rows: Initial; the all-zero network (an L1 reference: CE + lam * L1 = ln(classes) at chance); the metanetworks of
    ``methods`` (the first one's CE runs with ``seeds`` seeds from ``seed``, the others with ``seed``; trained here
    when missing, except methods in ``reuse_only``, whose rows show only the objectives whose runs exist); for ReLU
    families the first method's L1 one shot balanced (:func:`workbench.balance.balance_l1`, same function); SGD at
    each budget of ``sgd_epochs`` at the rate of ``sgd_lr_grid`` best on the validation networks (``sgd_lr`` alone
    without a grid) and, as a control, at the fixed ``sgd_lr``; SGD for 1 and ``finetune_epochs`` epochs started from
    the first method's one shot at the rate chosen for that start. The warm start compares SGD from the first method's
    one shot and from GMN-B's (the control, where it was trained) with SGD from the initial networks."""
    test, val = test_networks(zoo, sgd_networks), test_networks(zoo, sgd_networks, split="val")
    boot = Bootstrap(test.meta["net_id"].to_numpy(), draws=BOOTSTRAP_DRAWS, seed=seed)
    grid_lrs = tuple(dict.fromkeys(float(v) for v in (sgd_lr_grid or (sgd_lr,))))
    initial = score(test, data, lam=lam)
    rows = [table_row("Initial", "reference", "initial", boot=boot, ce=initial, l1=initial),
            table_row("All-zero network", "reference", "zero", boot=boot,
                      l1=score(test, data, map_params(torch.zeros_like, test.params), lam=lam))]
    shots = [m for m in (_one_shots(output_dir, zoo, data, test, val, key, lam=lam, seed=seed,
                                    seeds=seeds if i == 0 else 1, reuse_only=reuse_only, recipe=recipe,
                                    progress=progress) for i, key in enumerate(methods))
             if m.ce is not None or m.l1 is not None]
    step_seconds, shot_seconds = time_side_by_side(test, data, {m.key: m.ce_model for m in shots
                                                                if m.ce_model is not None}, lr=grid_lrs[0], seed=seed)
    for m in shots:  # the CE one shot's time: the median of the interleaved repetitions
        if m.key in shot_seconds:
            m.ce = replace(m.ce, seconds_per_net=shot_seconds[m.key])
    rows += [table_row(m.label, "one_shot", m.key, boot=boot, ce=m.ce, l1=m.l1) for m in shots]
    first = next((m for m in shots if m.ce is not None), None)
    rows += _balanced_rows(zoo, data, test, shots, lam=lam, boot=boot)
    # the warm start from the first method's one shot and, as the control, the symmetry-broken GMN's (every start
    # adds a full SGD grid on validation and test networks)
    starts = [m for m in shots if m.ce_test is not None and (m is first or m.key == "gmn")]
    grids = _step_grids(val, test, starts, grid_lrs, data, max_epochs=max(MATCH_EPOCHS, int(finetune_epochs)),
                        seed=seed)
    val_mask, test_mask = val.meta["epoch"].to_numpy() >= 1, initial.trained
    lrs, lr_tuning = _tuned_rates(zoo, data, val, grids["val"], val_mask, grid_lrs=grid_lrs, sgd_lr=sgd_lr,
                                  sgd_lr_grid=sgd_lr_grid, finetune_epochs=finetune_epochs, sgd_epochs=sgd_epochs,
                                  lam=lam, seed=seed)
    sgd = _sgd_rows(test, data, lrs=lrs, sgd_lr=sgd_lr, budgets=sorted({int(e) for e in sgd_epochs}),
                    fixed_epochs=int(finetune_epochs), lam=lam, seed=seed, boot=boot, progress=progress)
    rows += sgd.rows
    matched, warm = _matched_and_warm(zoo, shots, starts, grids, val_mask, test_mask, boot,
                                      seconds_per_step=step_seconds, finetune_epochs=finetune_epochs)
    if first is not None and finetune_epochs:
        rows += _warm_start_rows(test, data, first, grids["val"], val_mask, epochs=int(finetune_epochs), lam=lam,
                                 seed=seed, boot=boot)
    table = results_table(rows)
    verdicts = family_verdicts(family, zoo.spec.activation, boot, initial=initial, first=first, shots=shots,
                               table=table, sgd_ce=sgd.ce_scores, matched=matched, warm=warm,
                               finetune_epochs=int(finetune_epochs))
    by_checkpoint = (gain_by_checkpoint(test, initial.acc.mean(0), first.ce.acc.mean(0)) if first is not None
                     else pd.DataFrame())
    sample = min(sequential_sample, len(test))
    sequential = (time_one_at_a_time(zoo.spec, test.params, data, epochs=1, sample=sample, lr=sgd_lr, seed=seed)
                  if sample else float("nan"))
    return FamilyResults(
        family=family, table=table, verdicts=verdicts, matched=pd.DataFrame([m.row() for m in matched]),
        warm=pd.DataFrame([w.row() for w in warm]), curves=_curve_frame(grids["test"], test_mask, step_seconds,
                                                                        lrs["ce"]),
        by_checkpoint=by_checkpoint, lr_tuning=lr_tuning, n_entries=len(test),
        n_networks=int(test.meta["net_id"].nunique()), seconds_per_step=step_seconds,
        sgd_sequential_s_per_epoch=sequential, sgd_lr=lrs, lr_tuned=bool(sgd_lr_grid))


def _step_grids(val: Zoo, test: Zoo, starts, grid_lrs, data: Dataset, *, max_epochs: int, seed: int) -> dict:
    """SGD step by step at every rate of ``grid_lrs`` from the initial networks and from each start's CE one shot,
    on the validation and on the test networks: ``{"val": grid, "test": grid}`` (:func:`sgd_grid`)."""
    grids = {}
    for split, entries in (("val", val), ("test", test)):
        per_epoch = -(-len(data.split("train")[1]) // 64)
        grids[split] = sgd_grid(entries, {"initial": entries.params, **{m.key: (m.ce_val if split == "val" else
                                                                                m.ce_test) for m in starts}},
                                grid_lrs, data, steps=step_grid(max_epochs * per_epoch, per_epoch, max_epochs),
                                split=split, seed=seed)
    return grids


def _matched_and_warm(zoo: Zoo, shots, starts, grids: dict, val_mask, test_mask, boot, *, seconds_per_step: float,
                      finetune_epochs: int) -> tuple[list, list]:
    """The matched-compute comparison of every method with a CE one shot, and the warm start from each start after 1
    and ``finetune_epochs`` epochs (none when ``finetune_epochs`` is 0)."""
    zoo_seconds = _training_zoo_seconds(zoo)
    matched = [matched_compute(m.label, m.ce, m.val_target, grids["val"], grids["test"], val_mask, boot,
                               seconds_per_step=seconds_per_step, train_seconds=m.train_seconds,
                               zoo_seconds=zoo_seconds) for m in shots if m.ce is not None]
    warm = [warm_start(m.key, e, grids["val"], grids["test"], val_mask, test_mask, boot, label=m.label)
            for m in starts for e in sorted({1, int(finetune_epochs)}) if finetune_epochs]
    return matched, warm


def _one_shots(output_dir, zoo: Zoo, data: Dataset, test: Zoo, val: Zoo, key: str, *, lam: float, seed: int,
               seeds: int, reuse_only, recipe: Recipe, progress: bool) -> _Method:
    """``key``'s one shots of the test entries (timed: one warm-up call, then the whole batch) and, for CE, of the
    validation entries, with ``seeds`` CE seeds from ``seed`` and one L1 seed."""
    method = _Method(key, method_label(key, recipe.bidirectional))
    for objective in OBJECTIVES:
        outs, val_outs, seconds, trained, models = [], [], [], [], []
        for s in range(seed, seed + (seeds if objective == "ce" else 1)):
            if key in reuse_only and not run_exists(output_dir, zoo, recipe, method=key, objective=objective, lam=lam,
                                                    seed=s):
                continue
            result = train_metanet(output_dir, zoo, data, recipe, method=key, objective=objective, lam=lam, seed=s,
                                   progress=progress)
            one_shot(result.model, zoo.spec, map_params(lambda t: t[:1], test.params))  # warm-up, not timed
            new, t = one_shot(result.model, zoo.spec, test.params)
            outs.append(new)
            seconds.append(t / len(test))
            trained.append(result.seconds)
            models.append(result.model)
            if objective == "ce":
                val_outs.append(one_shot(result.model, zoo.spec, val.params)[0])
        if not outs:
            continue
        scored = score(test, data, outs, lam=lam if objective == "l1" else 0.0,
                       seconds_per_net=float(np.mean(seconds)))
        if objective == "l1":
            method.l1, method.l1_test = scored, outs[0]
            continue
        method.ce, method.ce_test, method.ce_val = scored, outs[0], val_outs[0]
        method.ce_model = models[0]
        method.val_target = score(val, data, val_outs, split="val").value("acc_trained")
        method.train_seconds = float(np.mean(trained))
    return method


def _balanced_rows(zoo: Zoo, data: Dataset, test: Zoo, shots: list[_Method], *, lam: float,
                   boot: Bootstrap) -> list[dict]:
    """For a ReLU family, the first L1 one shot moved to the L1-smallest point of its scaling orbit (same function):
    the L1 that is pure gauge, out of reach of an equivariant one shot, which keeps its input's place on the orbit."""
    m = next((m for m in shots if m.l1_test is not None), None)
    if zoo.spec.activation != "relu" or m is None:
        return []
    t0 = time.perf_counter()
    balanced = balance_l1(zoo.spec, m.l1_test).params
    seconds = (time.perf_counter() - t0) / len(test) + m.l1.seconds_per_net
    return [table_row(f"{m.label} + L1 balancing", "balanced", m.key, boot=boot,
                      l1=score(test, data, balanced, lam=lam, seconds_per_net=seconds))]


def _tuned_rates(zoo: Zoo, data: Dataset, val: Zoo, val_grid, val_mask, *, grid_lrs, sgd_lr: float, sgd_lr_grid,
                 finetune_epochs: int, sgd_epochs, lam: float, seed: int) -> tuple[dict, pd.DataFrame]:
    """SGD's rate per objective, chosen on the validation networks: CE from the SGD grid (best accuracy on trained
    checkpoints after ``finetune_epochs`` epochs, else the smallest budget), L1 by
    :func:`~workbench.baselines.warmstart.tune_sgd_lr` (criterion CE + lam L1). Without a grid, ``sgd_lr`` for both.
    Returns ``(rates, frame)``: the frame lists every start's validation accuracy per rate and recorded epoch."""
    frame = _tuning_frame(val_grid, val_mask)
    if not sgd_lr_grid:
        return {"ce": float(sgd_lr), "l1": float(sgd_lr)}, frame
    epochs = int(finetune_epochs or min(sgd_epochs))
    epochs = min(epochs, val_grid.steps[-1] // val_grid.steps_per_epoch)
    ce = best_lr(val_grid, "initial", epochs, val_mask)
    l1, l1_frame = tune_sgd_lr(zoo.spec, val.params, data, lrs=grid_lrs, epochs=epochs, lam=lam, seed=seed)
    frame["chosen_ce"] = (frame["start"] == "initial") & (frame["epochs"] == epochs) & np.isclose(frame["lr"], ce)
    l1_frame = l1_frame.rename(columns={"chosen": "chosen_l1"}).assign(start="initial", epochs=epochs, objective="l1")
    return {"ce": ce, "l1": l1}, pd.concat([frame.assign(objective="ce"), l1_frame], ignore_index=True)


def _tuning_frame(grid, mask) -> pd.DataFrame:
    """Validation accuracy on trained checkpoints per start, rate and whole epoch of ``grid``."""
    rows = []
    for start in grid.starts:
        for lr in grid.lrs:
            for e in range(1, grid.steps[-1] // grid.steps_per_epoch + 1):
                rows.append({"start": start, "lr": lr, "epochs": e,
                             "val_acc_trained": float(grid.at_epoch(start, lr, e)[mask].mean())})
    return pd.DataFrame(rows)


@dataclass
class _SGD:
    rows: list[dict]
    ce_scores: dict[int, Score]  # budget -> CE score at the tuned rate


def _sgd_rows(test: Zoo, data: Dataset, *, lrs: dict, sgd_lr: float, budgets: list[int], fixed_epochs: int,
              lam: float, seed: int, boot: Bootstrap, progress: bool) -> _SGD:
    """"SGD (k epochs)" at the tuned rates, one row per budget, and the fixed-rate control "Fixed-lr SGD"."""
    spec = test.spec
    ce = sgd_finetune(spec, test.params, data, epochs=budgets, lam=0.0, lr=lrs["ce"], seed=seed, progress=progress)
    l1 = sgd_finetune(spec, test.params, data, epochs=budgets, lam=lam, lr=lrs["l1"], seed=seed, progress=progress)
    out = _SGD([], {})
    for e in budgets:
        out.ce_scores[e] = score(test, data, ce[e].params, seconds_per_net=ce[e].seconds_per_network)
        out.rows.append(table_row(f"SGD ({epochs_text(e)})", "sgd", "sgd", boot=boot, epochs=e, lr=lrs["ce"],
                                  ce=out.ce_scores[e], l1=score(test, data, l1[e].params, lam=lam,
                                                                seconds_per_net=l1[e].seconds_per_network)))
    if fixed_epochs and not np.isclose(sgd_lr, lrs["ce"]):
        fixed = sgd_finetune(spec, test.params, data, epochs=(fixed_epochs,), lr=sgd_lr, seed=seed,
                             progress=progress)[fixed_epochs]
        out.rows.append(table_row(f"Fixed-lr SGD ({epochs_text(fixed_epochs)}, lr {sgd_lr:g})", "sgd_fixed", "sgd",
                                  boot=boot, epochs=fixed_epochs, lr=sgd_lr,
                                  ce=score(test, data, fixed.params, seconds_per_net=fixed.seconds_per_network)))
    return out


def _warm_start_rows(test: Zoo, data: Dataset, first: _Method, val_grid, val_mask, *, epochs: int, lam: float,
                     seed: int, boot: Bootstrap) -> list[dict]:
    """"<one shot> + SGD (k epochs)" for k = 1 and ``epochs``: SGD from the first method's one shot at the rate chosen
    for that start on validation networks; its time is one shot + SGD, per network."""
    rows = []
    for e in sorted({1, epochs}):
        lr = best_lr(val_grid, first.key, e, val_mask)
        run = sgd_finetune(test.spec, first.ce_test, data, epochs=(e,), lr=lr, seed=seed, progress=False)[e]
        rows.append(table_row(f"{first.label} + SGD ({epochs_text(e)})", "one_shot_sgd", first.key,
                              boot=boot, epochs=e, lr=lr,
                              ce=score(test, data, run.params,
                                       seconds_per_net=first.ce.seconds_per_net + run.seconds_per_network)))
    return rows


def _curve_frame(grid, mask, seconds_per_step: float, chosen_lr: float) -> pd.DataFrame:
    """SGD's mean accuracy (%) on the test networks' trained checkpoints per start, rate and recorded step, with the
    seconds per network that many steps cost (for the accuracy-vs-time figure)."""
    rows = []
    for start in grid.starts:
        for lr in grid.lrs:
            curve = grid.curve(start, lr)[:, mask].mean(1)
            rows += [{"start": start, "lr": lr, "step": k, "epochs": k / grid.steps_per_epoch,
                      "seconds_per_net": k * seconds_per_step, "acc_trained": float(a),
                      "tuned_lr": bool(np.isclose(lr, chosen_lr))} for k, a in zip(grid.steps, curve)]
    return pd.DataFrame(rows)


def _training_zoo_seconds(zoo: Zoo) -> float:
    """Seconds it took to generate the zoo's training networks (their share of the zoo's generation time; NaN for a
    zoo read from disk)."""
    seconds = zoo.info.get("seconds")
    if seconds is None:
        return float("nan")
    ids = zoo.meta.groupby("split")["net_id"].nunique()
    return float(seconds) * float(ids.get("train", 0)) / float(ids.sum())


def results_for_families(output_dir, families, *, data: DataRecipe, zoo: ZooRecipe, recipe: Recipe,
                         per_family: dict | None = None, workers: int | None = None, progress: bool = True,
                         **kwargs) -> dict[str, FamilyResults]:
    """:func:`family_results` for every family of ``families``, one family per worker process (the SGD baselines
    and the warm start, the cost of notebook 06 once the metanets exist, are independent per family).

    ``data``/``zoo``/``recipe``: the sequence's recipes; ``per_family``: extra keyword arguments of
    :func:`family_results` for one family (e.g. its ``methods``); ``kwargs``: those shared by all. Timings inside are taken
    while the other worker runs too (``workers`` families at a time), for one shot and SGD alike."""
    per_family = per_family or {}
    jobs = [{"output_dir": str(output_dir), "family": f, "data": data, "zoo": zoo, "recipe": recipe,
             "kwargs": {**kwargs, **per_family.get(f, {})}} for f in families]
    results = run_parallel(_family_job, jobs, workers=workers, desc="results", progress=progress,
                           label=lambda j: j["family"])
    return dict(zip(families, results))


def _family_job(job: dict) -> FamilyResults:
    data = job["data"].load()
    zoo = job["zoo"].load(job["output_dir"], job["family"], data, progress=False, verbose=False)
    return family_results(job["output_dir"], job["family"], zoo, data, job["recipe"], progress=False, **job["kwargs"])


def table_plan(families, table_methods, *, methods=(), ablation_families=(), seed: int = 0, headline_seeds: int = 1):
    """What notebook 06 measures: ``(rows_for, reuse_only, runs)``.

    ``rows_for``: per family, the methods of its table -- ``table_methods``, then the ``methods`` notebook 05 trained
    for the families it ablated (``ablation_families``); ``reuse_only``: those of ``methods`` that are not table
    methods (reloaded, never trained here, showing only the objectives 05 ran); ``runs``: the runs to train first,
    ``(family, method, objective, seed)`` for every table method and objective, plus the first table method's CE
    runs with seeds ``seed + 1`` ... ``seed + headline_seeds - 1`` (the headline's seeds)."""
    rows_for = {f: list(dict.fromkeys([*table_methods, *(methods if f in ablation_families else [])]))
                for f in families}
    reuse_only = [m for m in methods if m not in table_methods]
    runs = [(f, m, o, seed) for f in families for m in table_methods for o in OBJECTIVES]
    runs += [(f, table_methods[0], "ce", seed + s) for f in families for s in range(1, headline_seeds)]
    return rows_for, reuse_only, runs
