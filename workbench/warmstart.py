r"""Fair SGD baselines, warm starts and the amortization break-even (notebook 06).

Three questions the results table alone does not answer:

* **Is the SGD baseline tuned?** :func:`tune_sgd_lr` picks SGD's learning rate per family and objective on the
  zoo's *validation* networks, scored on the *validation* images, from a grid; every candidate runs in one
  vectorised SGD call (the networks tiled once per candidate, one step size per network). The test networks and
  test images are never looked at.
* **Is a one-shot network a better start for SGD than the network itself** (a warm start), and is that more than
  a disguised larger step size? :func:`sgd_curves` runs SGD from several starting points at several learning
  rates -- again one vectorised call -- and records the held-out accuracy of every network after every epoch.
* **When does training a metanetwork pay?** :func:`break_even`: with ``T`` seconds of metanet training, ``t_1``
  seconds per network for one shot and ``t_s`` seconds per network for an SGD budget of equal or lower accuracy,
  one shot is cheaper for ``N > T / (t_s - t_1)`` networks.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .baselines import SGDResult, sgd_finetune
from .nets import NetSpec, Params, cat_params, map_params, n_networks, select
from .objective import evaluate

__all__ = ["DEFAULT_LR_GRID", "tune_sgd_lr", "sgd_curves", "break_even", "break_even_table"]

#: learning rates tried by :func:`tune_sgd_lr` (SGD with momentum 0.9, batch 64)
DEFAULT_LR_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)


def _tile(params: Params, k: int) -> Params:
    """The B networks repeated ``k`` times along the network axis (copy c of network i at index c * B + i)."""
    return map_params(lambda t: t.repeat(k, *([1] * (t.dim() - 1))), params)


def tune_sgd_lr(spec: NetSpec, params: Params, data, *, lrs: Sequence[float] = DEFAULT_LR_GRID, epochs: int = 5,
                lam: float = 0.0, seed: int = 0, progress: bool = False):
    """The SGD learning rate of ``lrs`` that does best on the validation images after ``epochs`` epochs.

    ``params``: the networks to tune on -- pass validation networks, never the networks the table is scored on.
    Criterion: mean validation accuracy for cross-entropy (``lam == 0``), mean validation objective
    CE + ``lam`` L1 for the L1 objective; a candidate under which any network diverged loses to every candidate
    under which none did.

    Returns ``(best_lr, frame)`` with one row per candidate: ``lr``, ``val_acc`` (%), ``val_objective``,
    ``diverged`` (networks), ``chosen``.
    """
    import pandas as pd

    lrs = [float(v) for v in lrs]
    if not lrs or any(not (v > 0 and math.isfinite(v)) for v in lrs):
        raise ValueError(f"lrs must be positive, finite learning rates, got {lrs}")
    n = n_networks(params)
    step = torch.tensor(lrs).repeat_interleave(n)  # candidate c for copies c * n ... c * n + n - 1
    result = sgd_finetune(spec, _tile(params, len(lrs)), data, epochs=(int(epochs),), lam=lam, lr=step, seed=seed,
                          progress=progress)[int(epochs)]
    x, y = data.split("val")
    m = evaluate(spec, result.params, x, y, lam)
    rows = []
    for c, lr in enumerate(lrs):
        part = slice(c * n, (c + 1) * n)
        rows.append({"lr": lr, "val_acc": 100 * float(m["acc"][part].double().mean()),
                     "val_objective": float(m["loss"][part].double().mean()),
                     "diverged": int(result.diverged[part].sum())})
    frame = pd.DataFrame(rows)
    key = (frame["diverged"] > 0, -frame["val_acc"] if lam == 0 else frame["val_objective"])
    best = min(range(len(frame)), key=lambda i: (bool(key[0].iloc[i]), float(key[1].iloc[i])))
    frame["chosen"] = [i == best for i in range(len(frame))]
    return float(frame["lr"].iloc[best]), frame


def sgd_curves(spec: NetSpec, starts: Mapping[str, tuple[Params, float]], data, *, epochs: int, seed: int = 0,
               trained=None, split: str = "test", progress: bool = False,
               precomputed: Mapping[str, tuple[Params, float, Mapping[int, SGDResult]]] | None = None):
    """SGD (cross-entropy) from several starting points, one vectorised run, scored after every epoch.

    ``starts``: ``{label: (params, lr)}`` -- every start holds the same B networks (e.g. the initial networks and
    their one-shot outputs), each trained with its own learning rate. ``precomputed``: starts whose run exists
    already, ``{label: (params, lr, {epoch: SGDResult})}`` with every epoch 1..``epochs`` (same seed, so the same
    minibatch order); they come first in the output. ``trained``: (B,) mask of trained checkpoints.

    Returns ``(curves, results)``: ``curves`` has one row per (start, epoch 0..epochs) with the mean, 25th and 75th
    percentile of the networks' accuracy on ``split`` (%) and the mean over trained checkpoints; ``results`` maps
    each label to its ``{epoch: SGDResult}`` (epochs 1..epochs; the per-network time is that of its whole run).
    """
    import pandas as pd

    budgets = tuple(range(1, int(epochs) + 1))
    every = {**{k: v for k, v in (precomputed or {}).items()}, **{k: (p, lr, None) for k, (p, lr) in starts.items()}}
    if not every:
        raise ValueError("sgd_curves needs at least one start")
    labels = list(every)
    n = n_networks(every[labels[0]][0])
    for label, (p, _, done) in every.items():
        if n_networks(p) != n:
            raise ValueError(f"every start must hold the same {n} networks; {label!r} holds {n_networks(p)}")
        if done is not None and set(budgets) - set(done):
            raise ValueError(f"precomputed start {label!r} lacks epochs {sorted(set(budgets) - set(done))}")
    results = {k: dict(done) for k, (_, _, done) in every.items() if done is not None}
    fresh = list(starts)
    if fresh:
        lr = torch.tensor([float(starts[k][1]) for k in fresh]).repeat_interleave(n)
        runs = sgd_finetune(spec, cat_params([starts[k][0] for k in fresh]), data, epochs=budgets, lam=0.0, lr=lr,
                            seed=seed, progress=progress)
        for c, label in enumerate(fresh):
            part = slice(c * n, (c + 1) * n)
            results[label] = {e: SGDResult(epochs=e, params=select(r.params, part),
                                           seconds_total=r.seconds_total / len(fresh),
                                           seconds_per_network=r.seconds_per_network, diverged=r.diverged[part],
                                           train_loss=r.train_loss[part]) for e, r in runs.items()}
    x, y = data.split(split)
    mask = None if trained is None else torch.as_tensor(np.asarray(trained, dtype=bool))
    rows = []
    for epoch in (0, *budgets):
        snapshot = [every[k][0] if epoch == 0 else results[k][epoch].params for k in labels]
        acc = 100 * evaluate(spec, cat_params(snapshot), x, y)["acc"].double()
        for c, label in enumerate(labels):
            a = acc[c * n:(c + 1) * n]
            rows.append({"start": label, "lr": float(every[label][1]), "epoch": epoch, "acc_mean": float(a.mean()),
                         "acc_q25": float(a.quantile(0.25)), "acc_q75": float(a.quantile(0.75)),
                         "acc_trained": float(a[mask].mean()) if mask is not None and bool(mask.any()) else math.nan})
    return pd.DataFrame(rows), results


def break_even(train_seconds: float, one_shot_s: float, sgd_s: float) -> float:
    """Networks ``N`` above which ``train_seconds + N * one_shot_s < N * sgd_s`` (inf when one shot is not cheaper
    per network; 0 when training cost nothing)."""
    if not sgd_s > one_shot_s:
        return math.inf
    return max(0.0, train_seconds) / (sgd_s - one_shot_s)


def break_even_table(table, family: str, method: str, train_seconds: float):
    """For one family's results table: against every CE SGD row ("SGD (k epochs)"), the break-even number of
    networks of ``method``'s one shot (trained in ``train_seconds``), and whether that SGD budget reaches the
    one-shot accuracy (where it does not, one shot is both cheaper beyond ``N`` *and* better)."""
    import pandas as pd

    t = table.set_index("method")
    if method not in t.index:
        return pd.DataFrame()
    one = t.loc[method]
    rows = []
    for name in t.index:
        if not str(name).startswith("SGD (") or not t.loc[name, "ce_time_per_net_s"] == t.loc[name, "ce_time_per_net_s"]:
            continue
        sgd_s = float(t.loc[name, "ce_time_per_net_s"])
        rows.append({"family": family, "method": method, "versus": name, "train_seconds": float(train_seconds),
                     "one_shot_s_per_net": float(one["ce_time_per_net_s"]), "sgd_s_per_net": sgd_s,
                     "one_shot_acc": float(one["ce_avg_acc"]), "sgd_acc": float(t.loc[name, "ce_avg_acc"]),
                     "break_even_networks": break_even(train_seconds, float(one["ce_time_per_net_s"]), sgd_s)})
    return pd.DataFrame(rows)
