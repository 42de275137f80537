"""Which rows of a Small CNN Zoo to import, and the split of their networks (:func:`~workbench.zoo.load_small_cnn_zoo`).

The published files hold one row per checkpoint (steps 0, 1, 2, 3, 20, 40, 60, 80 and 86, which are epochs). The
reference split of the ScaleGMN paper is drawn over the networks' final checkpoints; every other checkpoint of a
network, linked to it by the ``modeldir`` column, takes its network's split, so choosing more checkpoints never
moves a network between train, validation and test. A folder written by ``python -m workbench optimize`` records its
source's split in :data:`SPLIT_COLUMN`, which is read instead of drawing one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .container import ZooError, split_networks

__all__ = ["SPLIT_COLUMN", "Selection", "chosen_steps", "select_networks"]

log = logging.getLogger("workbench.zoo.small_cnn_zoo")

#: the split of each row, in a folder that `python -m workbench optimize` wrote: read instead of drawing one
SPLIT_COLUMN = "workbench.split"


@dataclass(frozen=True)
class Selection:
    """The metrics rows to import: their ``rows``, ``split``, ``net_ids`` (row of each network's final checkpoint),
    the ``activation`` kept and how many rows were left out."""

    rows: np.ndarray
    split: np.ndarray
    net_ids: np.ndarray
    activation: str
    n_nan_accuracy: int
    n_no_final: int


def chosen_steps(metrics: pd.DataFrame, steps, step: int | None) -> list[int]:
    """The steps to import: ``steps`` (a list, or ``"all"``), else ``[step]``, else the largest step present."""
    present = sorted({int(s) for s in metrics["step"].tolist()})
    if steps is None:
        steps = [present[-1] if step is None else int(step)]
    elif isinstance(steps, str):
        if steps != "all":
            raise ZooError(f"steps must be a list of checkpoint steps or 'all', got {steps[:40]!r}")
        steps = present
    chosen = sorted({int(s) for s in steps})
    absent = [s for s in chosen if s not in present]
    if not chosen:
        raise ZooError(f"no steps chosen; steps present: {present}")
    if absent:
        raise ZooError(f"no checkpoints at step {', '.join(map(str, absent))}; steps present: {present}")
    return chosen


def select_networks(metrics: pd.DataFrame, metrics_file: Path, chosen: list[int], activation: str | None,
                     split_seed: int) -> Selection:
    """The metrics rows at the ``chosen`` steps, with their networks' splits.

    The split is drawn over all networks' final checkpoints (the largest step in the files) before the activation
    filter, the reference order of operations; entries without a test accuracy are dropped (and counted) last."""
    steps = metrics["step"].to_numpy()
    final_rows = np.flatnonzero(steps == steps.max())
    split_of_final = split_networks(len(final_rows), split_seed)  # split first, then filter
    if SPLIT_COLUMN in metrics.columns:  # an optimized zoo keeps its source's split
        split_of_final = _recorded_split(metrics, metrics_file)[final_rows]
    if chosen == [int(steps.max())]:
        rows, split, net_ids, n_no_final = final_rows, split_of_final, final_rows, 0
    else:
        rows, split, net_ids, n_no_final = _link_checkpoints(metrics, metrics_file, chosen, final_rows,
                                                             split_of_final)
    acts = metrics["config.activation"].to_numpy()[rows].astype(str)
    present = sorted({str(a) for a in acts})
    if activation is None:
        if len(present) > 1:
            raise ZooError(f"the zoo mixes activations {present}; pass activation= one of them")
        activation = present[0]
    elif activation not in present:
        raise ZooError(f"no networks with activation {activation!r} at steps {chosen}; activations present: "
                       f"{present}")
    if activation not in ("tanh", "relu"):
        raise ZooError(f"activation {activation!r} is not supported by the workbench (tanh or relu)")
    keep = acts == activation
    rows, split, net_ids = rows[keep], split[keep], net_ids[keep]

    known = metrics["test_accuracy"].to_numpy()[rows] == metrics["test_accuracy"].to_numpy()[rows]  # not NaN
    n_nan_accuracy = int((~known).sum())
    if n_nan_accuracy:
        log.warning("dropping %d networks without a test accuracy (NaN) from %s", n_nan_accuracy, metrics_file)
        rows, split, net_ids = rows[known], split[known], net_ids[known]
    if len(rows) == 0:
        raise ZooError(f"{metrics_file}: none of the selected networks has a test accuracy")
    return Selection(rows, split, net_ids, activation, n_nan_accuracy, n_no_final)


def _recorded_split(metrics: pd.DataFrame, metrics_file: Path) -> np.ndarray:
    """The :data:`SPLIT_COLUMN` of every row, checked to hold split names only."""
    split = metrics[SPLIT_COLUMN].astype(str).to_numpy()
    bad = sorted(set(split) - {"train", "val", "test"})
    if bad:
        raise ZooError(f"{metrics_file}: column {SPLIT_COLUMN!r} holds {[b[:40] for b in bad[:5]]}; every row must be "
                       "'train', 'val' or 'test' (the split `python -m workbench optimize` recorded)")
    return split.astype(object)


def _link_checkpoints(metrics: pd.DataFrame, metrics_file: Path, chosen: list[int], final_rows: np.ndarray,
                      split_of_final: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The rows at the ``chosen`` steps, each with its network's split and final row (networks linked by
    ``modeldir``), ordered by network, then step. Returns ``(rows, split, net_ids, n_rows_without_final)``."""
    if "modeldir" not in metrics.columns:
        raise ZooError(f"{metrics_file} has no 'modeldir' column, which links the checkpoints of one network across "
                       f"steps; without it only the final step can be imported (steps {chosen} were asked for)")
    modeldir = metrics["modeldir"].astype(str).to_numpy()
    final_of = pd.Series(final_rows, index=modeldir[final_rows])
    if final_of.index.has_duplicates:
        twice = str(final_of.index[final_of.index.duplicated()][0])
        raise ZooError(f"{metrics_file}: modeldir {twice[:80]!r} has two final checkpoints; each network (modeldir) "
                       "must appear once per step")
    split_by_dir = pd.Series(split_of_final, index=final_of.index)
    step_of = metrics["step"].to_numpy()
    rows = np.flatnonzero(np.isin(step_of, chosen))
    linked = np.isin(modeldir[rows], final_of.index)
    n_no_final = int((~linked).sum())
    if n_no_final:
        log.warning("leaving out %d checkpoints of networks without a final checkpoint in %s", n_no_final,
                    metrics_file)
    rows = rows[linked]
    net_ids = final_of.loc[modeldir[rows]].to_numpy()
    order = np.lexsort((step_of[rows], net_ids))
    rows, net_ids = rows[order], net_ids[order]
    pairs = pd.DataFrame({"net": net_ids, "step": step_of[rows]})
    if pairs.duplicated().any():
        first = pairs[pairs.duplicated()].iloc[0]
        raise ZooError(f"{metrics_file}: modeldir {modeldir[int(first['net'])][:80]!r} has two checkpoints at step "
                       f"{int(first['step'])}; each network (modeldir) must appear once per step")
    return rows, split_by_dir.loc[modeldir[rows]].to_numpy(), net_ids, n_no_final
