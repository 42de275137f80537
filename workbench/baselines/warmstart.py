r"""A fair SGD baseline: its learning rate tuned on validation networks (notebooks 06 and 07).

:func:`tune_sgd_lr` picks SGD's learning rate per family and objective on the zoo's *validation* networks, scored on
the *validation* images, from a grid; every candidate runs in one vectorised SGD call (the networks tiled once per
candidate, one step size per network). The test networks and test images are never looked at. (Matched compute,
the warm start and the break-even at equal accuracy: :mod:`workbench.baselines.amortization`.)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .sgd import sgd_finetune
from ..nets import NetSpec, Params, map_params, n_networks
from ..objective import evaluate

__all__ = ["DEFAULT_LR_GRID", "tune_sgd_lr"]

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
