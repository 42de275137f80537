r"""Does the one shot keep its promise? Matched compute against SGD, fair warm starts, break-even at equal accuracy.

A one shot is worth its training only if it is cheaper than the SGD it replaces *at the accuracy it reaches*. Against
SGD budgets of whole epochs that reach far higher accuracy, any one shot looks fast; the fair question is where the
one shot sits on SGD's own accuracy-vs-cost curve.

* :func:`sgd_grid` runs SGD from several starting points (the networks as they are, each method's one shots) at
  every learning rate of a grid, in one vectorised run, and records the accuracy of every held-out entry after each
  of a set of step counts (:func:`step_grid`: log-spaced from one step, plus every whole epoch);
* :func:`matched_compute`: for one one-shot method, the SGD steps (interpolated between recorded steps) and seconds
  per network that SGD from the initial networks needs to reach the one shot's accuracy, with the learning rate
  that reaches it fastest on *validation* networks; the ratio of those seconds to the one shot's and the number of
  networks from which metanet training + one shots cost less than SGD at equal accuracy:

  .. math::
      N^* = \frac{T_\text{train}}{t_\text{SGD}(\text{acc}_\text{one shot}) - t_\text{one shot}}
      \quad (\infty \text{ when SGD is not slower per network});

* :func:`warm_start`: SGD from the one shots against SGD from the initial networks after a number of epochs, each
  start at the learning rate chosen for *it* on validation networks (a rate tuned for one start and reused for the
  other would confound the start with the step size).

Every quantity carries a 95 % interval over held-out networks and metanet seeds (:mod:`workbench.measure.uncertainty`):
the same network draws for the one shot and the SGD curve, so the comparison is paired.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .sgd import sgd_steps
from ..nets import Params, cat_params, map_params, n_networks
from ..objective import evaluate
from ..measure.score import Score
from ..measure.uncertainty import Bootstrap, Interval

__all__ = ["step_grid", "SGDGrid", "sgd_grid", "time_side_by_side", "steps_to_reach", "fastest_lr", "best_lr", "MatchedCompute",
           "matched_compute", "WarmStart", "warm_start"]


def step_grid(max_steps: int, steps_per_epoch: int, epochs: int = 0, ratio: float = 1.4) -> tuple[int, ...]:
    """0, then step counts spaced by about ``ratio`` from 1 to ``max_steps``, plus every whole epoch up to ``epochs``
    (so per-epoch results are exact points of the grid, not interpolations)."""
    if max_steps < 1 or steps_per_epoch < 1 or ratio <= 1:
        raise ValueError(f"need max_steps >= 1, steps_per_epoch >= 1 and ratio > 1, got {max_steps}, "
                         f"{steps_per_epoch}, {ratio}")
    steps, k = {0, 1}, 1.0
    while k < max_steps:
        k = max(k + 1, k * ratio)
        steps.add(min(int(round(k)), max_steps))
    steps |= {e * steps_per_epoch for e in range(1, int(epochs) + 1)}
    return tuple(sorted(steps))


@dataclass(frozen=True)
class SGDGrid:
    """Accuracy of held-out entries after SGD steps, from several starts at several learning rates.

    Attributes:
        starts: names of the starting points (e.g. ``"initial"``, a method key).
        lrs: the learning rates.
        steps: the recorded step counts (0 = the start).
        steps_per_epoch: minibatches per epoch of the training images.
        acc: (n_starts, n_lrs, n_steps, n_entries) accuracy in %.
        diverged: (n_starts, n_lrs) networks frozen because their loss became non-finite.
    """

    starts: tuple[str, ...]
    lrs: tuple[float, ...]
    steps: tuple[int, ...]
    steps_per_epoch: int
    acc: np.ndarray
    diverged: np.ndarray

    def curve(self, start: str, lr: float) -> np.ndarray:
        """(n_steps, n_entries) accuracy (%) of SGD from ``start`` at ``lr``."""
        return self.acc[self.starts.index(start), self.lrs.index(lr)]

    def at_epoch(self, start: str, lr: float, epoch: int) -> np.ndarray:
        """(n_entries,) accuracy (%) after ``epoch`` whole epochs (a recorded step of the grid)."""
        step = int(epoch) * self.steps_per_epoch
        if step not in self.steps:
            raise ValueError(f"epoch {epoch} (step {step}) is not among the recorded steps {self.steps}")
        return self.curve(start, lr)[self.steps.index(step)]


def sgd_grid(entries, starts: Mapping[str, Params], lrs: Sequence[float], data, *, steps: Sequence[int],
             split: str, seed: int = 0, device=None, net_chunk: int | None = None) -> SGDGrid:
    """SGD (cross-entropy, momentum 0.9, batch 64, minibatches of ``seed``) from every start in ``starts`` (each the
    same entries of ``entries``, a :class:`~workbench.zoo.Zoo`) at every rate of ``lrs``, all in one vectorised run on
    the training images (on ``device``, default CUDA when present; ``net_chunk`` networks at a time, default as many as
    the memory budget holds); every entry is scored on ``split``'s images after each of ``steps``."""
    names, rates = tuple(starts), tuple(float(v) for v in lrs)
    if not names or not rates or any(not (v > 0 and math.isfinite(v)) for v in rates):
        raise ValueError(f"sgd_grid needs at least one start and positive, finite learning rates; got {names}, {rates}")
    spec, n = entries.spec, len(entries)
    for name, p in starts.items():
        if n_networks(p) != n:
            raise ValueError(f"start {name!r} holds {n_networks(p)} networks, the entries {n}")
    # copy c = (start i, rate j) holds networks c * n ... c * n + n - 1
    tiled = cat_params([starts[name] for name in names for _ in rates])
    lr = torch.tensor(rates, dtype=torch.float64).repeat(len(names)).repeat_interleave(n)
    x, y = data.split(split)
    grid = sorted({int(s) for s in steps})
    acc = np.zeros((len(names), len(rates), len(grid), n))

    flat = acc.reshape(len(names) * len(rates), len(grid), n)  # a view: copy c = (start, rate) holds n networks

    def observe(step: int, params: Params, networks: slice) -> None:
        a = 100.0 * evaluate(spec, map_params(lambda t: t.to(x.dtype), params), x, y)["acc"].double().numpy()
        index = np.arange(networks.start, networks.stop)
        flat[index // n, grid.index(step), index % n] = a

    run = sgd_steps(spec, tiled, data, steps=grid, lr=lr, seed=seed, observe=observe, device=device,
                    net_chunk=net_chunk)
    diverged = run.diverged.reshape(len(names), len(rates), n).sum(-1).numpy()
    return SGDGrid(names, rates, tuple(grid), run.steps_per_epoch, acc, diverged)


def time_side_by_side(entries, data, models: Mapping[str, object], *, lr: float, seed: int = 0,
                      repeats: int = 3, device=None) -> tuple[float, dict[str, float]]:
    """Seconds per network of one SGD step and of each model's one shot, on the same held-out ``entries``, measured
    alternately ``repeats`` times (an epoch of SGD steps, then every one shot) and summarised by the median: the two
    sides of a cost ratio see the same load on the machine (SGD on ``device``, default CUDA when present; each model
    where it lives). Returns ``(step, {name: one shot})``."""
    from ..training.optimize import one_shot

    per_epoch = -(-len(data.split("train")[1]) // 64)
    steps, shots = [], {name: [] for name in models}
    for _ in range(repeats):
        steps.append(sgd_steps(entries.spec, entries.params, data, steps=[per_epoch], lr=lr, seed=seed,
                               observe=lambda k, p, part: None, device=device).seconds_per_network_step)
        for name, model in models.items():
            one_shot(model, entries.spec, map_params(lambda t: t[:1], entries.params))  # warm-up, not timed
            shots[name].append(one_shot(model, entries.spec, entries.params)[1] / len(entries))
    return float(np.median(steps)), {name: float(np.median(v)) for name, v in shots.items()}


def steps_to_reach(steps: Sequence[int], curve: np.ndarray, target: float) -> float:
    """The (fractional) number of steps at which the mean accuracy ``curve`` (one value per recorded step) first
    reaches ``target``, interpolated linearly between the two recorded steps around it; 0 when the start already
    reaches it, inf when no recorded step does, NaN when the target is NaN."""
    if target != target:
        return math.nan
    curve = np.asarray(curve, dtype=np.float64)
    hit = np.flatnonzero(curve >= target)
    if hit.size == 0:
        return math.inf
    i = int(hit[0])
    if i == 0:
        return float(steps[0])
    k0, k1, a0, a1 = steps[i - 1], steps[i], curve[i - 1], curve[i]
    return float(k0 + (k1 - k0) * (target - a0) / (a1 - a0))


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[..., mask].mean()) if mask.any() else math.nan


def fastest_lr(grid: SGDGrid, start: str, target: float, mask: np.ndarray) -> float:
    """The rate with which SGD from ``start`` reaches ``target`` (mean accuracy over ``mask``) in the fewest steps;
    when no rate reaches it, the rate that gets closest. Ties go to the smaller rate; a rate under which a network
    diverged loses to any under which none did."""
    def key(j):
        curve = grid.acc[grid.starts.index(start), j][:, mask].mean(1)
        k = steps_to_reach(grid.steps, curve, target)
        return bool(grid.diverged[grid.starts.index(start), j] > 0), k, -float(curve.max()), grid.lrs[j]
    return grid.lrs[min(range(len(grid.lrs)), key=key)]


def best_lr(grid: SGDGrid, start: str, epoch: int, mask: np.ndarray) -> float:
    """The rate with the best mean accuracy over ``mask`` after ``epoch`` epochs from ``start`` (diverged rates
    last, ties to the smaller rate)."""
    i = grid.starts.index(start)
    return grid.lrs[min(range(len(grid.lrs)), key=lambda j: (bool(grid.diverged[i, j] > 0),
                                                              -_mean(grid.at_epoch(start, grid.lrs[j], epoch), mask),
                                                              grid.lrs[j]))]


@dataclass(frozen=True)
class MatchedCompute:
    """Where one method's one shot sits on SGD's accuracy-vs-cost curve (see :func:`matched_compute`)."""

    method: str
    lr: float
    one_shot_acc: Interval
    steps: Interval
    sgd_seconds_per_net: Interval
    one_shot_seconds_per_net: float
    ratio: Interval
    break_even: Interval
    break_even_with_zoo: Interval
    train_seconds: float
    zoo_seconds: float
    steps_per_epoch: int
    max_steps: int

    @property
    def reached(self) -> bool:
        """Whether SGD reached the one shot's accuracy within the recorded steps."""
        return math.isfinite(self.steps.estimate)

    def row(self) -> dict:
        """A flat record for ``matched_compute.csv``."""
        out = {"method": self.method, "lr": self.lr, "one_shot_s_per_net": self.one_shot_seconds_per_net,
               "train_seconds": self.train_seconds, "zoo_seconds": self.zoo_seconds,
               "steps_per_epoch": self.steps_per_epoch, "max_steps": self.max_steps, "reached": self.reached}
        for name in ("one_shot_acc", "steps", "sgd_seconds_per_net", "ratio", "break_even", "break_even_with_zoo"):
            out.update(getattr(self, name).as_dict(f"{name}_"))
        return out


def matched_compute(method: str, one_shot: Score, val_target: float, val_grid: SGDGrid, test_grid: SGDGrid,
                    val_mask: np.ndarray, boot: Bootstrap, *, seconds_per_step: float, train_seconds: float,
                    zoo_seconds: float = 0.0, start: str = "initial") -> MatchedCompute:
    """The SGD cost of ``method``'s one-shot accuracy on the trained checkpoints.

    ``one_shot``: the one shot's :class:`~workbench.measure.score.Score` on the test entries (seeds as rows);
    ``val_target``: its mean accuracy (%) on the trained checkpoints of the *validation* entries (``val_mask``),
    with which the learning rate is chosen on ``val_grid`` (:func:`fastest_lr`); ``test_grid``: SGD from the test
    entries (``start``) at the same rates. ``seconds_per_step``: SGD seconds per network and step, measured on the
    test entries in the same process as the one shot's time (``one_shot.seconds_per_net``). ``train_seconds``: the
    metanet's training; ``zoo_seconds``: generating its training networks (reported apart)."""
    lr = fastest_lr(val_grid, start, val_target, val_mask)
    mask = one_shot.trained
    curve = test_grid.curve(start, lr)  # (n_steps, n_entries)
    t_one = float(one_shot.seconds_per_net)
    target = boot.mean(one_shot.per_entry("acc_trained"), mask, key=method)
    points = [boot.mean(curve[i], mask, key=f"sgd/{i}") for i in range(len(test_grid.steps))]
    curve_est = np.array([p[0] for p in points])
    curve_draws = np.stack([p[1] for p in points], 1)  # (B, n_steps)
    steps_est = steps_to_reach(test_grid.steps, curve_est, target[0])
    steps_draws = np.array([steps_to_reach(test_grid.steps, curve_draws[b], target[1][b]) for b in range(boot.draws)])

    def interval(fn):
        return boot.interval(fn(steps_est), np.array([fn(s) for s in steps_draws]), seeds=(one_shot.seeds,))

    def pays(steps, extra=0.0):
        saved = steps * seconds_per_step - t_one
        return (train_seconds + extra) / saved if saved > 0 else math.inf

    return MatchedCompute(
        method=method, lr=lr, one_shot_acc=boot.interval(*target, seeds=(one_shot.seeds,)),
        steps=interval(lambda s: s), sgd_seconds_per_net=interval(lambda s: s * seconds_per_step),
        one_shot_seconds_per_net=t_one, ratio=interval(lambda s: s * seconds_per_step / t_one),
        break_even=interval(pays), break_even_with_zoo=interval(lambda s: pays(s, zoo_seconds)),
        train_seconds=float(train_seconds), zoo_seconds=float(zoo_seconds),
        steps_per_epoch=test_grid.steps_per_epoch, max_steps=int(test_grid.steps[-1]))


@dataclass(frozen=True)
class WarmStart:
    """SGD from one start against SGD from a reference start after ``epochs`` epochs (see :func:`warm_start`)."""

    start: str
    reference: str
    epochs: int
    label: str
    lr: float
    reference_lr: float
    acc: Interval
    reference_acc: Interval
    difference: Interval

    @property
    def outcome(self) -> str:
        """``"leads"``, ``"trails"`` or ``"inconclusive"`` (the difference's interval straddles 0)."""
        return self.difference.sign("leads", "trails")

    def row(self) -> dict:
        return {"start": self.start, "label": self.label, "reference": self.reference, "epochs": self.epochs, "lr": self.lr,
                "reference_lr": self.reference_lr, **self.acc.as_dict("acc_"),
                **self.reference_acc.as_dict("reference_acc_"), **self.difference.as_dict("difference_"),
                "outcome": self.outcome}


def warm_start(start: str, epochs: int, val_grid: SGDGrid, test_grid: SGDGrid, val_mask: np.ndarray,
               test_mask: np.ndarray, boot: Bootstrap, *, reference: str = "initial", label: str = "") -> WarmStart:
    """SGD for ``epochs`` epochs from ``start`` against SGD from ``reference``, each at its own rate chosen on the
    validation entries (:func:`best_lr` on ``val_grid``), scored on the test entries' trained checkpoints
    (``test_mask``); the difference is paired over networks. ``label``: the start's display name."""
    lr, ref_lr = best_lr(val_grid, start, epochs, val_mask), best_lr(val_grid, reference, epochs, val_mask)
    a, b = test_grid.at_epoch(start, lr, epochs), test_grid.at_epoch(reference, ref_lr, epochs)
    return WarmStart(start=start, reference=reference, epochs=int(epochs), label=label or start, lr=lr,
                     reference_lr=ref_lr,
                     acc=boot.mean_interval(a, test_mask, key=f"warm/{start}"),
                     reference_acc=boot.mean_interval(b, test_mask, key=f"warm/{reference}"),
                     difference=boot.difference(a, b, test_mask, key_a=f"warm/{start}", key_b=f"warm/{reference}"))
