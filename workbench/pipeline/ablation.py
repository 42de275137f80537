"""The ablation of notebook 05: ScaleGMN against its symmetry-broken variants, trained alike and scored on the same
held-out networks, each comparison judged on its 95 % interval over networks and seeds.

:func:`run_ablation` trains (or reloads) every family x objective x method x seed and scores its one shot
(:func:`workbench.measure.score.score`); :func:`summarize_ablation` averages over seeds; :func:`ablation_verdict` turns
the scores into win / loss / inconclusive outcomes (paired over networks, seeds resampled per method) and
:func:`ablation_conclusions` into sentences; :func:`initial_scores` is the reference level (no optimization) and
:func:`symmetry_response` measures how each trained model answers a function-preserving rescaling.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import Dataset
from ..metanet import count_parameters, rescale_response
from ..training.optimize import one_shot
from ..records import Family, RunKey
from ..reporting.results import training_smoothness
from ..measure.score import Score, score
from ..measure.uncertainty import Bootstrap
from ..zoo import Zoo
from .held_out import test_networks
from .methods import METHODS, method_label
from .recipe import OBJECTIVES, Recipe
from .runs import train_metanet

__all__ = ["OBJECTIVE_METRIC", "Ablation", "ablation_objectives", "run_ablation", "summarize_ablation", "symmetry_response",
           "initial_scores", "ablation_verdict", "kind_contrast", "ablation_conclusions", "collapsed_runs"]

#: each objective's own metric (a name of workbench.measure.score.METRICS) and +1 when higher is better
OBJECTIVE_METRIC = {"ce": ("acc_trained", +1), "l1": ("loss", -1)}
#: per-run columns of :attr:`Ablation.runs` that are metrics of workbench.measure.score (one name per metric)
RUN_METRICS = ("acc", "acc_trained", "acc_max", "loss", "l1_reduction", "near_zero")


@dataclass
class Ablation:
    """What :func:`run_ablation` measured.

    Attributes:
        runs: one row per run (family, objective, method -- the key of :data:`~workbench.pipeline.METHODS` --, its
            display label, seed, the metrics of :data:`RUN_METRICS`, smoothness, best epoch, training and one-shot
            seconds, finite, collapsed).
        histories: ``{RunKey: training history}``.
        scores: ``{(family, objective, method key): Score}`` with one row per seed.
        boots: ``{family: Bootstrap}`` over that family's held-out networks (shared by its comparisons: paired).
    """

    runs: pd.DataFrame
    histories: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    boots: dict = field(default_factory=dict)


def run_ablation(output_dir, data: Dataset, zoos: dict[str, Zoo], recipe: Recipe, *, objectives=OBJECTIVES,
                 n_seeds: int = 3,
                 seed: int = 0, lam: float = 1e-3, methods=("scalegmn", "gmn", "gmn-aug"), eval_networks: int | None = None,
                 progress: bool = True, objectives_for: dict | None = None) -> Ablation:
    """The metanetworks of ``methods`` (ScaleGMN, the symmetry-broken GMN, the GMN trained on randomly
    permuted/scaled copies of its training networks, ...) for every family x objective x seed, with the same
    architecture, budget and seeds; trained runs are cached in ``output_dir/metanet``. ``objectives_for``: a family's
    own objectives (others: ``objectives``).

    Every run is scored on the same held-out networks (:func:`test_networks` with ``eval_networks``)."""
    objectives_for = objectives_for or {}
    jobs = [(f, o, m) for f in zoos for o in objectives_for.get(f, objectives) for m in methods]
    out = Ablation(pd.DataFrame())
    tests = {f: test_networks(z, eval_networks) for f, z in zoos.items()}
    out.boots = {f: Bootstrap(t.meta["net_id"].to_numpy(), seed=seed) for f, t in tests.items()}
    rows = []
    for family, objective, method in tqdm(jobs, desc="ablation runs", disable=not progress):
        zoo, test, label = zoos[family], tests[family], method_label(method, recipe.bidirectional)
        outs, per_seed = [], []
        for s in range(seed, seed + n_seeds):
            result = train_metanet(output_dir, zoo, data, recipe, method=method, objective=objective, lam=lam, seed=s,
                                   progress=False)
            new, seconds = one_shot(result.model, zoo.spec, test.params)
            outs.append(new)
            val_losses = [h["val_loss"] for h in result.history]
            per_seed.append({"family": family, "objective": objective, "method": method, "label": label, "seed": s,
                             "smoothness": training_smoothness(val_losses) if len(val_losses) > 1 else float("nan"),
                             "best_epoch": result.best_epoch, "train_seconds": result.seconds,
                             "seconds_per_net": seconds / len(test),
                             "finite": all(bool(torch.isfinite(t).all()) for p in new for t in p),
                             "n_test_entries": len(test)})
            out.histories[RunKey(family, objective, label, s)] = result.history
        scored = score(test, data, outs, lam=lam if objective == "l1" else 0.0)
        out.scores[(family, objective, method)] = scored
        for i, row in enumerate(per_seed):
            one = scored.seed(i)
            rows.append({**row, **{m: one.value(m) for m in RUN_METRICS},
                         "collapsed": one.value("acc_trained") < 100 * (1.5 / zoo.spec.n_classes)})
    out.runs = pd.DataFrame(rows)
    return out


def ablation_objectives(families, objectives, l1_families=None) -> dict[str, list[str]]:
    """Each family's ablation objectives: ``objectives`` for every family, except that with ``l1_families`` given
    the L1 objective is ablated for those families only (the L1 runs cost as much as the CE ones)."""
    unknown = sorted(set(l1_families or ()) - set(families))
    if unknown:
        raise ValueError(f"l1_ablation_families {unknown} are not among the ablation families {list(families)}")
    return {f: [o for o in objectives if o != "l1" or l1_families is None or f in l1_families] for f in families}


def summarize_ablation(runs):
    """Mean and sample std across seeds per family x objective x method."""
    metrics = [*RUN_METRICS, "smoothness"]
    grouped = runs.groupby(["family", "objective", "method", "label"], sort=False)[metrics]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    summary = mean.add_suffix("_mean").join(std.add_suffix("_std")).reset_index()
    summary["n_seeds"] = grouped.size().to_numpy()
    return summary


def symmetry_response(output_dir, data: Dataset, zoos: dict[str, Zoo], recipe: Recipe, *, methods, lam: float,
                      seed: int = 0, eval_networks: int | None = None):
    """Parameter count and scaling behaviour of each method's trained CE metanetwork (seed ``seed``), per family.

    For every held-out network a random function-preserving sign flip (tanh) or positive rescaling (ReLU) is
    drawn and the update of the transformed copy, mapped back, is compared with the update of the network itself
    (:func:`workbench.metanet.rescale_response`): ~0 for an equivariant model, of order 1 for one that only knows
    permutations. Returns ``(summary, per_network)`` frames; the models are reloaded, or trained when missing."""
    summary, per_network = [], []
    for family, zoo in zoos.items():
        test = test_networks(zoo, eval_networks)
        for method in methods:
            result = train_metanet(output_dir, zoo, data, recipe, method=method, objective="ce", seed=seed,
                                   progress=False)
            response = rescale_response(result.model, zoo.spec, test.params, torch.Generator().manual_seed(seed))
            label = method_label(method, recipe.bidirectional)
            summary.append({"family": family, "method": label, "parameters": count_parameters(result.model),
                            "response_median": float(response.median()), "response_max": float(response.max())})
            per_network += [{"family": family, "method": label, "response": float(r)} for r in response]
    return pd.DataFrame(summary), pd.DataFrame(per_network)


# -- ablation verdicts (notebook 05) ----------------------------------------------------------------------------------
def initial_scores(data: Dataset, zoos: dict[str, Zoo], *, lam: float, eval_networks: int | None = None):
    """The held-out networks as they are (no optimization), per family: the reference level of the ablation (the
    metrics of :func:`workbench.measure.score.score`; ``loss`` at ``lam``)."""
    rows = []
    for family, zoo in zoos.items():
        s = score(test_networks(zoo, eval_networks), data, lam=lam)
        rows.append({"family": family, **{m: s.value(m) for m in ("acc", "acc_trained", "loss")}})
    return pd.DataFrame(rows)


def ablation_verdict(ablation: Ablation) -> pd.DataFrame:
    """ScaleGMN against each symmetry-broken method, per family x objective, on the objective's own metric.

    ``effect`` = (ScaleGMN - other), signed so that positive means the equivariant model is better, with its 95 %
    interval: paired over the held-out networks (the same networks score both), each method's seeds resampled on
    their own. ``outcome``: ``"win"`` when the whole interval is above 0, ``"loss"`` when below, else
    ``"inconclusive"``. ``smoother``: ScaleGMN's mean smoothness (validation-loss jumpiness, lower = smoother) is below
    the other's (descriptive; no interval).

    The equivariant method is found by its record (:data:`~workbench.pipeline.METHODS`), never by its label."""
    rows = []
    runs = ablation.runs
    for (family, objective), sub in runs.groupby(["family", "objective"], sort=False):
        metric, sign = OBJECTIVE_METRIC[objective]
        keys = list(dict.fromkeys(sub["method"]))
        labels = dict(zip(sub["method"], sub["label"]))
        sym = next((k for k in keys if METHODS[k].equivariant), None)
        if sym is None:
            continue
        boot = ablation.boots[family]
        a = ablation.scores[(family, objective, sym)]
        smooth = sub.groupby("method")["smoothness"].mean()
        for other in (k for k in keys if k != sym):
            b = ablation.scores[(family, objective, other)]
            effect = _effect(boot, a, b, metric, sign, keys=(sym, other))
            rows.append({"family": family, "kind": Family.parse(family).kind, "objective": objective, "metric": metric,
                         "scalegmn": a.value(metric), "other_method": labels[other], "other_key": other,
                         "other": b.value(metric), "effect": effect.estimate, "effect_lo": effect.lo,
                         "effect_hi": effect.hi, "seeds": f"{a.seeds}/{b.seeds}", "networks": boot.networks,
                         "outcome": effect.sign("win", "loss"), "smoother": bool(smooth[sym] < smooth[other])})
    return pd.DataFrame(rows)


def _effect(boot: Bootstrap, a: Score, b: Score, metric: str, sign: int, keys: tuple[str, str]):
    """sign * (a - b) on ``metric``, paired over networks, with its interval."""
    diff = boot.difference(a.per_entry(metric), b.per_entry(metric), a.mask(metric), key_a=keys[0], key_b=keys[1])
    if sign > 0:
        return diff
    return type(diff)(-diff.estimate, -diff.hi, -diff.lo, diff.level, diff.networks, diff.seeds)


def kind_contrast(ablation: Ablation, versus: str = "gmn") -> pd.DataFrame:
    """The poster's claim that symmetry helps MLPs more than CNNs, per objective: the mean effect of ScaleGMN against
    the method ``versus`` over the MLP families minus that over the CNN families, with its interval (the families'
    networks are independent draws, so their bootstrap draws combine draw by draw). Empty when either kind lacks the
    comparison."""
    rows = []
    for objective, (metric, sign) in OBJECTIVE_METRIC.items():
        by_kind: dict[str, list] = {"mlp": [], "cnn": []}
        for (family, obj, key), a in ablation.scores.items():
            other = ablation.scores.get((family, obj, versus))
            if obj != objective or not METHODS[key].equivariant or other is None:
                continue
            boot = ablation.boots[family]
            ea, da = boot.mean(a.per_entry(metric), a.mask(metric), key=key)
            eb, db = boot.mean(other.per_entry(metric), other.mask(metric), key=versus)
            by_kind[Family.parse(family).kind].append((sign * (ea - eb), sign * (da - db), boot))
        if by_kind["mlp"] and by_kind["cnn"]:
            est = {k: np.mean([e for e, _, _ in v]) for k, v in by_kind.items()}
            draws = {k: np.mean([d for _, d, _ in v], axis=0) for k, v in by_kind.items()}
            boot = by_kind["mlp"][0][2]
            iv = boot.interval(est["mlp"] - est["cnn"], draws["mlp"] - draws["cnn"])
            rows.append({"objective": objective, "metric": metric, "versus": versus, "mlp_effect": est["mlp"],
                         "cnn_effect": est["cnn"], "difference": iv.estimate, "difference_lo": iv.lo,
                         "difference_hi": iv.hi, "outcome": iv.sign("larger for MLPs", "larger for CNNs")})
    return pd.DataFrame(rows)


def ablation_conclusions(verdict: pd.DataFrame, contrast: pd.DataFrame | None = None) -> list[str]:
    """Plain sentences, each computed from :func:`ablation_verdict`'s frame (every effect with its interval)."""
    lines = []
    for r in verdict.itertuples():
        unit = "points" if r.objective == "ce" else "(loss)"
        lines.append(f"{r.family} {r.objective}: ScaleGMN vs {r.other_method}: effect {r.effect:+.3f} "
                     f"[{r.effect_lo:+.3f}, {r.effect_hi:+.3f}] {unit} ({r.seeds} seeds) -> {r.outcome}; "
                     f"smoother: {r.smoother}")
    for objective, sub in verdict.groupby("objective", sort=False):
        counts = sub["outcome"].value_counts()
        lines.append(f"{objective}: ScaleGMN wins {counts.get('win', 0)}, loses {counts.get('loss', 0)}, "
                     f"inconclusive {counts.get('inconclusive', 0)} of {len(sub)} comparisons")
    for r in ([] if contrast is None else contrast.itertuples()):
        lines.append(f"{r.objective}: effect of symmetry vs the plain symmetry-broken GMN, MLP families {r.mlp_effect:+.3f}"
                     f", CNN families {r.cnn_effect:+.3f}; difference {r.difference:+.3f} [{r.difference_lo:+.3f}, "
                     f"{r.difference_hi:+.3f}] -> {r.outcome} (the poster: larger for MLPs)")
    return lines


def collapsed_runs(runs: pd.DataFrame) -> str:
    """Notebook 05's line on the runs (:attr:`Ablation.runs`) whose accuracy on trained checkpoints collapsed to
    chance: how many, and which (family, objective, method label, seed)."""
    collapsed = runs[runs["collapsed"]]
    return (f"runs whose accuracy on trained checkpoints collapsed to chance: {len(collapsed)}"
            + ("" if collapsed.empty else " -- " + "; ".join(f"{r.family} {r.objective} {r.label} seed {r.seed}"
                                                             for r in collapsed.itertuples())))
