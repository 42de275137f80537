"""The held-out networks every method is scored on, and the per-checkpoint view of a gain.

Notebooks 04-07 all score on :func:`test_networks` (the test-split networks with all their checkpoints, optionally
capped); :func:`trained_mask` marks the trained checkpoints, where the targets are measured,
:func:`gain_by_checkpoint` breaks a before/after accuracy down by checkpoint epoch, and :func:`held_out_summary`
words notebook 04's conclusion from them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..zoo import Zoo

__all__ = ["test_networks", "trained_mask", "gain_by_checkpoint", "one_shot_gain", "held_out_summary"]


def test_networks(zoo: Zoo, limit: int | None = None, split: str = "test") -> Zoo:
    """The held-out networks every method is scored on, with all their checkpoints: the test-split networks, or the
    first ``limit`` of them (by ``net_id``) when capped. Notebooks 04, 05 and 06 all score on this same set.
    ``split="val"``: the same selection among the validation networks (where baselines are tuned)."""
    test = zoo.subset(split=split)
    if limit is not None:
        ids = np.sort(test.meta["net_id"].unique())[:limit]
        test = test.subset(mask=test.meta["net_id"].isin(ids).to_numpy())
    return test


def trained_mask(zoo: Zoo) -> np.ndarray:
    """(len(zoo),) bool: entries that are trained checkpoints (epoch >= 1), where the targets are measured."""
    return (zoo.meta["epoch"].to_numpy() >= 1)


def gain_by_checkpoint(zoo: Zoo, before, after) -> pd.DataFrame:
    """Average test accuracy (%) before/after per checkpoint epoch of ``zoo``'s entries, plus the rows "trained"
    (epoch >= 1) and "all"; ``before``/``after`` are (len(zoo),) accuracies in [0, 1]."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    epochs = zoo.meta["epoch"].to_numpy()
    groups = [(str(int(e)), epochs == e) for e in sorted(set(epochs.tolist()))]
    groups += [("trained", epochs >= 1), ("all", np.ones_like(epochs, dtype=bool))]
    rows = [{"checkpoint": name, "entries": int(m.sum()), "before": 100 * before[m].mean() if m.any() else np.nan,
             "after": 100 * after[m].mean() if m.any() else np.nan} for name, m in groups]
    frame = pd.DataFrame(rows)
    frame["gain"] = frame["after"] - frame["before"]
    return frame


def one_shot_gain(entries: Zoo, data, new, *, seed: int = 0):
    """The held-out gain of a one shot on the trained checkpoints (points), with its 95 % interval over the networks
    (paired: the same networks before and after; :mod:`workbench.measure.uncertainty`)."""
    from ..measure.score import score
    from ..measure.uncertainty import Bootstrap

    before, after = score(entries, data), score(entries, data, new)
    boot = Bootstrap(entries.meta["net_id"].to_numpy(), seed=seed)
    return boot.difference(after.per_entry("acc"), before.per_entry("acc"), before.trained, key_a="after",
                           key_b="before")


def held_out_summary(by_checkpoint: pd.DataFrame, gain, *, n_networks: int, family: str, objective: str) -> list[str]:
    """Notebook 04's conclusion on the held-out networks, three sentences: the accuracy before and after the one shot
    on trained and on all checkpoints (``by_checkpoint``: :func:`gain_by_checkpoint`), the checkpoint epoch with the
    largest gain, and the verdict on ``gain`` (:func:`one_shot_gain`): an improvement or a loss only when its whole
    95 % interval is above or below 0, else inconclusive."""
    row = by_checkpoint.set_index("checkpoint")
    trained, everything = row.loc["trained"], row.loc["all"]
    best = row.drop(index=["trained", "all"])["gain"].idxmax()
    verdict = {"positive": "an improvement", "negative": "a loss"}.get(gain.sign(), "inconclusive")
    return [
        f"One shot on {n_networks} held-out {family} networks ({objective} objective): average test accuracy on "
        f"trained checkpoints {trained['before']:.1f}% -> {trained['after']:.1f}% ({trained['gain']:+.1f} points), on "
        f"all checkpoints {everything['before']:.1f}% -> {everything['after']:.1f}% ({everything['gain']:+.1f}).",
        f"The largest gain is on epoch-{best} checkpoints ({row.loc[best, 'gain']:+.1f} points).",
        f"Verdict on networks the metanetwork never saw: {verdict} -- gain on trained checkpoints {gain.text(2)} points "
        f"(95 % interval over {gain.networks} held-out networks; an improvement or a loss only when the whole interval "
        "is above or below 0).",
    ]
