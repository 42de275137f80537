"""The ablation of notebook 05: ScaleGMN against its symmetry-broken variants, trained alike and scored on the same
held-out networks.

:func:`run_ablation` trains (or reloads) every family x objective x method x seed and scores its one shot;
:func:`summarize_ablation` averages over seeds; :func:`ablation_verdict` and :func:`ablation_conclusions` turn the
runs into win/tie/loss outcomes and sentences; :func:`initial_scores` is the reference level (no optimization) and
:func:`symmetry_response` measures how each trained model answers a function-preserving rescaling.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import Dataset
from ..metanet import MetanetConfig, count_parameters, rescale_response
from ..objective import evaluate, l1_reduction, share_near_zero
from ..optimize import one_shot
from ..records import Family, RunKey
from ..results import training_smoothness
from ..zoo import Zoo
from .held_out import test_networks, trained_mask
from .methods import method_label, method_of_label
from .runs import OBJECTIVES, train_method

__all__ = ["OBJECTIVE_METRIC", "run_ablation", "summarize_ablation", "symmetry_response", "initial_scores",
           "ablation_verdict", "ablation_conclusions"]


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

