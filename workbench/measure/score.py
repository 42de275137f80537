"""One score: the shared metrics of a set of held-out networks, as one frozen record, with their intervals.

Every table, ablation, sweep, notebook and bench scores networks through :func:`score`; a metric has one name
everywhere (:data:`METRICS`):

* ``acc`` -- mean accuracy (%) over all entries (an entry is one checkpoint of one network);
* ``acc_trained`` -- the same over the trained checkpoints (epoch >= 1), where the targets are set: no map from
  weights alone turns an untrained (epoch-0) network into a classifier;
* ``acc_max`` -- the best entry's accuracy (%);
* ``loss`` -- mean CE + lambda L1 of the scored parameters (the poster's "test loss (CE + L1)");
* ``l1_reduction`` / ``l1_reduction_trained`` -- % reduction of the total L1 norm against the networks as they were
  (the poster's "sparsity"), over all / the trained entries;
* ``near_zero`` -- % of weights and biases with |w| < 1e-3.

A :class:`Score` keeps the per-entry values (one row per metanet seed when several seeds were scored), so any
metric's 95 % interval over networks and seeds comes from the same record (:meth:`Score.interval`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..nets import Params, check_params, map_params
from ..objective import evaluate, l1_norm, share_near_zero
from .uncertainty import Bootstrap, Interval

__all__ = ["METRICS", "METRIC_LABELS", "Score", "score"]

#: every metric's name, in table order
METRICS = ("acc", "acc_trained", "acc_max", "loss", "l1_reduction", "l1_reduction_trained", "near_zero")
METRIC_LABELS = {
    "acc": "accuracy, all checkpoints (%)",
    "acc_trained": "accuracy, trained checkpoints (%)",
    "acc_max": "best network's accuracy (%)",
    "loss": "test loss CE + lambda L1",
    "l1_reduction": "L1-norm reduction, all checkpoints (%)",
    "l1_reduction_trained": "L1-norm reduction, trained checkpoints (%)",
    "near_zero": "near-zero weights, |w| < 1e-3 (%)",
}


@dataclass(frozen=True)
class Score:
    """Per-entry metrics of the held-out entries, one row per seed.

    Attributes:
        acc, ce, l1: (S, B) accuracy (fraction), mean cross-entropy and L1 norm of each entry's scored parameters,
            one row per seed (S = 1 for anything not trained with seeds).
        l1_before: (B,) L1 norm of the entries as they were (the reference of ``l1_reduction``).
        trained: (B,) bool, trained checkpoints.
        net_id: (B,) network of each entry (checkpoints of a network are resampled together).
        lam: the L1 weight of ``loss``.
        near_zero: % of weights and biases near zero, over all seeds.
        seconds_per_net: what producing the parameters cost per network (None: nothing, e.g. the initial networks).
    """

    acc: np.ndarray
    ce: np.ndarray
    l1: np.ndarray
    l1_before: np.ndarray
    trained: np.ndarray
    net_id: np.ndarray
    lam: float
    near_zero: float
    seconds_per_net: float | None = None

    @property
    def seeds(self) -> int:
        return self.acc.shape[0]

    def seed(self, i: int) -> "Score":
        """The score of seed row ``i`` alone."""
        one = slice(i, i + 1)
        return Score(self.acc[one], self.ce[one], self.l1[one], self.l1_before, self.trained, self.net_id, self.lam,
                     self.near_zero, self.seconds_per_net)

    @property
    def loss(self) -> np.ndarray:
        """(S, B) CE + lam * L1."""
        return self.ce + self.lam * self.l1

    def value(self, metric: str) -> float:
        """One metric of :data:`METRICS` (mean over seeds)."""
        return self._statistic(metric, None)[0]

    def summary(self) -> dict[str, float]:
        """Every metric of :data:`METRICS` by name."""
        return {m: self.value(m) for m in METRICS}

    def interval(self, metric: str, boot: Bootstrap, key: str = "") -> Interval:
        """The metric's 95 % interval over networks (``boot``'s draws) and seeds (drawn per ``key``)."""
        estimate, draws = self._statistic(metric, boot, key)
        return boot.interval(estimate, draws, seeds=(self.seeds,))

    def per_entry(self, metric: str) -> np.ndarray:
        """(S, B) per-entry values of an averaged metric, in its unit (accuracy in %)."""
        if metric in ("acc", "acc_trained"):
            return 100.0 * self.acc
        if metric == "loss":
            return self.loss
        raise ValueError(f"{metric!r} is not a per-entry mean; per-entry metrics are 'acc', 'acc_trained', 'loss'")

    def mask(self, metric: str) -> np.ndarray | None:
        """The entries ``metric`` averages over (None = all)."""
        return self.trained if metric.endswith("_trained") else None

    def _statistic(self, metric: str, boot: Bootstrap | None, key: str = "") -> tuple[float, np.ndarray | None]:
        """``(estimate, bootstrap draws or None)`` of one metric."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; the metrics are {METRICS}")
        if metric == "near_zero":
            return self.near_zero, (None if boot is None else np.full(boot.draws, self.near_zero))
        if metric == "acc_max":  # an extreme, not a mean: reported without an interval
            return 100.0 * float(self.acc.max()), (None if boot is None else np.full(boot.draws, math.nan))
        if metric.startswith("l1_reduction"):
            mask = self.mask(metric)
            if boot is None:
                m = np.ones_like(self.l1_before) if mask is None else mask.astype(float)
                if m.sum() == 0:
                    return math.nan, None
                after = float((self.l1 * m).sum() / self.seeds)
                return 100.0 * (1.0 - after / float((self.l1_before * m).sum())), None
            return boot.map(lambda a, b: 100.0 * (1.0 - a / b), boot.mean(self.l1, mask, key),
                            boot.mean(self.l1_before, mask, key + "/before"))
        values, mask = self.per_entry(metric), self.mask(metric)
        if boot is None:
            m = np.ones(values.shape[1]) if mask is None else mask.astype(float)
            return (float((values * m).sum() / (m.sum() * values.shape[0])) if m.sum() else math.nan), None
        return boot.mean(values, mask, key)


def score(entries, data, params: Params | list[Params] | None = None, *, split: str = "test", lam: float = 0.0,
          seconds_per_net: float | None = None) -> Score:
    """Score ``params`` -- the outputs of some method for the held-out ``entries`` (a :class:`~workbench.zoo.Zoo`;
    a list: one set of outputs per metanet seed; None: the entries as they are) -- on ``split``'s images.

    Raises ValueError when a set of parameters does not hold one network per entry or holds NaN/inf (scores of
    non-finite networks would be meaningless)."""
    spec = entries.spec
    if params is None:
        sets = [entries.params]
    elif len(params) and isinstance(params[0], tuple):  # one set: a list of (weight, bias) pairs
        sets = [params]
    else:  # one set per seed
        sets = list(params)
    if not sets:
        raise ValueError("score needs at least one set of parameters")
    n = len(entries)
    x, y = data.split(split)
    acc, ce, l1 = [], [], []
    small, total = 0.0, 0
    for p in sets:
        if check_params(spec, p, finite=True) != n:
            raise ValueError(f"scored parameters hold {check_params(spec, p)} networks, the entries {n}")
        p = map_params(lambda t: t.to(device=x.device, dtype=x.dtype), p)
        m = evaluate(spec, p, x, y, lam)
        acc.append(m["acc"].double().numpy())
        ce.append(m["ce"].double().numpy())
        l1.append(l1_norm(map_params(lambda t: t.to(torch.float64), p)).cpu().numpy())  # as l1_before: exact 0 %
        count = sum(w.numel() + b.numel() for w, b in p)
        small += share_near_zero(p) * count / 100.0
        total += count
    before = l1_norm(map_params(lambda t: t.to(torch.float64), entries.params)).cpu().numpy()
    return Score(acc=np.stack(acc), ce=np.stack(ce), l1=np.stack(l1), l1_before=before,
                 trained=entries.meta["epoch"].to_numpy() >= 1, net_id=entries.meta["net_id"].to_numpy(),
                 lam=float(lam), near_zero=100.0 * small / total, seconds_per_net=seconds_per_net)
