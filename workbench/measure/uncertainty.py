r"""How sure a number is: bootstrap intervals over held-out networks and metanet seeds, and three-way verdicts.

Every headline number of the workbench is a mean over held-out *entries* (one entry = one checkpoint of one network)
and, where a method was trained with several seeds, over seeds. Two sources of chance move it: which networks
happened to be held out, and which seed trained the metanet. :class:`Bootstrap` resamples both:

* **networks** as clusters: all checkpoints of a network are drawn together (they are not independent: the same
  network at epoch 1 and epoch 4), with replacement, as many networks as there are;
* **seeds**, independently per method (seed 0 of ScaleGMN-B and seed 0 of GMN-B are unrelated trainings), with
  replacement, as many seeds as the method has; one seed gives no seed term.

The network draws are shared by every statistic of one :class:`Bootstrap`, so a difference between two methods
scored on the same networks is *paired* (its interval is that of the per-network difference, much narrower than two
separate intervals suggest).

A statistic is built from weighted sums: with draw weights :math:`w_e` (how often entry e's network was drawn) and
:math:`u_s` (how often seed s was drawn),

.. math::
    \bar v^{(b)} = \frac{\sum_s \sum_e u^{(b)}_s w^{(b)}_e m_e v_{s,e}}{\sum_s u^{(b)}_s \sum_e w^{(b)}_e m_e}

for a mask m (e.g. the trained checkpoints). The 95 % interval is the 2.5th and 97.5th percentile of the B draws
(the percentile bootstrap); the point estimate is the statistic of the data as they are.

:class:`Interval` carries the estimate and bounds; :meth:`Interval.judge` compares it with a threshold and returns
one of :data:`OUTCOMES`: ``"holds"`` (the whole interval is on the claimed side), ``"fails"`` (the whole interval
is on the other side) or ``"inconclusive"`` (it straddles the threshold).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["OUTCOMES", "Interval", "Bootstrap", "judge"]

#: the three outcomes of a verdict
OUTCOMES = ("holds", "fails", "inconclusive")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda v, t: v > t, ">=": lambda v, t: v >= t, "<": lambda v, t: v < t, "<=": lambda v, t: v <= t,
}


def judge(lo: float, hi: float, op: str, threshold: float) -> str:
    """``"holds"`` when every value in [lo, hi] satisfies ``value <op> threshold``, ``"fails"`` when none does,
    ``"inconclusive"`` otherwise (also when a bound is NaN: nothing was measured to judge by)."""
    if op not in _OPS:
        raise ValueError(f"unknown comparison {op!r}; expected one of {list(_OPS)}")
    if not (lo == lo and hi == hi):  # NaN
        return "inconclusive"
    ok_lo, ok_hi = _OPS[op](lo, threshold), _OPS[op](hi, threshold)
    if ok_lo and ok_hi:
        return "holds"
    if not ok_lo and not ok_hi:
        # both ends on the wrong side of a one-sided claim: the whole interval is (an interval is convex)
        return "fails"
    return "inconclusive"


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval.

    Args:
        estimate: the statistic of the data as they are.
        lo, hi: the interval's bounds (percentiles of the bootstrap draws).
        level: the interval's coverage (0.95).
        networks: held-out networks resampled (clusters of entries).
        seeds: seeds per resampled method (a tuple, one count per method that entered the statistic).
    """

    estimate: float
    lo: float
    hi: float
    level: float = 0.95
    networks: int = 0
    seeds: tuple[int, ...] = ()

    def judge(self, op: str, threshold: float) -> str:
        """:func:`judge` of this interval."""
        return judge(self.lo, self.hi, op, threshold)

    def sign(self, positive: str = "positive", negative: str = "negative") -> str:
        """For a difference: ``positive`` when the whole interval is above 0, ``negative`` when it is below 0,
        ``"inconclusive"`` when it contains 0 (or is NaN)."""
        if judge(self.lo, self.hi, ">", 0.0) == "holds":
            return positive
        if judge(self.lo, self.hi, "<", 0.0) == "holds":
            return negative
        return "inconclusive"

    def text(self, digits: int = 1, unit: str = "") -> str:
        """``"+8.1 [6.9, 9.3]"``-style text (``unit`` appended to each number)."""
        def f(v):
            if v != v:
                return "n/a"
            if math.isinf(v):
                return "inf" if v > 0 else "-inf"
            return f"{v:,.{digits}f}{unit}"
        return f"{f(self.estimate)} [{f(self.lo)}, {f(self.hi)}]"

    def as_dict(self, prefix: str = "") -> dict:
        """``{prefix+"value", prefix+"lo", prefix+"hi"}`` for a table row."""
        return {f"{prefix}value": self.estimate, f"{prefix}lo": self.lo, f"{prefix}hi": self.hi}


class Bootstrap:
    """Resampling weights for a set of held-out entries grouped into networks, shared by every statistic.

    Args:
        clusters: (n_entries,) the network id of every entry (entries of one network are drawn together).
        draws: bootstrap replicates B.
        seed: seeds the draws (the same seed, the same intervals).
        level: the intervals' coverage.

    Statistics take per-entry values of shape ``(n_entries,)`` or ``(n_seeds, n_entries)`` (one row per metanet
    seed) and, for seeds, a ``key`` naming the method so that its seeds are drawn independently of other methods'.
    """

    def __init__(self, clusters, *, draws: int = 2000, seed: int = 0, level: float = 0.95):
        clusters = np.asarray(clusters)
        if clusters.ndim != 1 or clusters.size == 0:
            raise ValueError(f"clusters must be a non-empty 1-d array of network ids, got shape {clusters.shape}")
        if draws < 1 or not 0 < level < 1:
            raise ValueError(f"need draws >= 1 and 0 < level < 1, got {draws}, {level}")
        self.level, self.draws, self._seed = float(level), int(draws), int(seed)
        ids, index = np.unique(clusters, return_inverse=True)
        self.networks = len(ids)
        rng = np.random.default_rng(self._seed)
        counts = rng.multinomial(self.networks, np.full(self.networks, 1.0 / self.networks), size=self.draws)
        self._entry_weights = counts[:, index].astype(np.float64)  # (B, n_entries): draws of each entry's network
        self._seed_weights: dict[tuple[str, int], np.ndarray] = {}

    @property
    def n_entries(self) -> int:
        return self._entry_weights.shape[1]

    def _seeds(self, key: str, n_seeds: int) -> np.ndarray:
        """(B, n_seeds) draw counts of ``key``'s seeds (independent per key, reproducible)."""
        if (key, n_seeds) not in self._seed_weights:
            rng = np.random.default_rng([self._seed, zlib.crc32(key.encode()), n_seeds])
            w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=self.draws).astype(np.float64)
            self._seed_weights[(key, n_seeds)] = w
        return self._seed_weights[(key, n_seeds)]

    def _values(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        v = v[None, :] if v.ndim == 1 else v
        if v.ndim != 2 or v.shape[1] != self.n_entries:
            raise ValueError(f"values must have shape (n_entries,) or (n_seeds, n_entries) with n_entries = "
                             f"{self.n_entries}, got {np.shape(values)}")
        return v

    def _mask(self, mask) -> np.ndarray:
        if mask is None:
            return np.ones(self.n_entries)
        m = np.asarray(mask, dtype=np.float64)
        if m.shape != (self.n_entries,):
            raise ValueError(f"mask must have shape ({self.n_entries},), got {m.shape}")
        return m

    def mean(self, values, mask=None, key: str = "") -> tuple[float, np.ndarray]:
        """``(estimate, draws)`` of the mean of ``values`` over the entries in ``mask`` (and over seeds)."""
        v, m = self._values(values), self._mask(mask)
        if m.sum() == 0:
            return math.nan, np.full(self.draws, math.nan)
        estimate = float((v * m).sum() / (m.sum() * v.shape[0]))
        u = self._seeds(key, v.shape[0]) if v.shape[0] > 1 else np.ones((self.draws, 1))
        w = self._entry_weights * m  # (B, n)
        num = np.einsum("bs,se,be->b", u, v, w)
        den = u.sum(1) * w.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return estimate, num / den

    def interval(self, estimate: float, draws: np.ndarray, seeds: tuple[int, ...] = ()) -> Interval:
        """The percentile interval of ``draws`` around ``estimate`` (NaN draws -- a resample with no entry in the
        mask -- are left out; infinite ones kept, e.g. a break-even that never comes)."""
        d = np.asarray(draws, dtype=np.float64)
        d = d[~np.isnan(d)]
        if d.size == 0 or estimate != estimate:
            return Interval(float(estimate), math.nan, math.nan, self.level, self.networks, seeds)
        tail = (1 - self.level) / 2
        lo = float(np.quantile(d, tail, method="lower"))
        hi = float(np.quantile(d, 1 - tail, method="higher"))
        return Interval(float(estimate), lo, hi, self.level, self.networks, seeds)

    def mean_interval(self, values, mask=None, key: str = "") -> Interval:
        """:meth:`interval` of :meth:`mean`."""
        n_seeds = self._values(values).shape[0]
        return self.interval(*self.mean(values, mask, key), seeds=(n_seeds,))

    def difference(self, a, b, mask=None, key_a: str = "a", key_b: str = "b") -> Interval:
        """Interval of mean(a) - mean(b) over the same entries (paired over networks; each side's seeds drawn
        independently)."""
        ea, da = self.mean(a, mask, key_a)
        eb, db = self.mean(b, mask, key_b)
        seeds = (self._values(a).shape[0], self._values(b).shape[0])
        return self.interval(ea - eb, da - db, seeds=seeds)

    def map(self, fn: Callable[..., float], *stats: tuple[float, np.ndarray]) -> tuple[float, np.ndarray]:
        """Apply ``fn`` to estimates and, draw by draw, to the draws of several statistics (e.g. a ratio of two
        means): ``(fn(*estimates), [fn(*draw_b) for b])``."""
        estimate = fn(*(s[0] for s in stats))
        draws = np.array([fn(*(s[1][b] for s in stats)) for b in range(self.draws)], dtype=np.float64)
        return float(estimate), draws
