"""Claims judged by the run: each with its value, its 95 % interval, its threshold and one of three outcomes.

A claim (:class:`Claim`) has a stable id (what code and the generated findings look it up by), a text (what people
read), a comparison and a threshold. :func:`claim_row` judges a measured
:class:`~workbench.measure.uncertainty.Interval` against it: ``"holds"`` when the whole interval is on the claimed side,
``"fails"`` when the whole interval is on the other side, ``"inconclusive"`` when it straddles the threshold -- a second
run on another machine can flip a point value near a threshold, not a verdict whose interval lies clear of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .uncertainty import Interval

__all__ = ["TARGETS", "Claim", "CLAIMS", "claim_row", "VERDICT_COLUMNS", "verdict_frame"]

#: the targets of the default run, on held-out trained checkpoints
TARGETS = {"ce_gain_tanh": 8.0, "ce_gain_any": 3.0, "l1_reduction": 70.0, "l1_max_acc_drop": 5.0}


@dataclass(frozen=True)
class Claim:
    """One claim: ``id`` (stable), ``text`` (for people; may hold ``{}`` fields filled per family), the comparison
    ``op`` and its ``threshold``."""

    id: str
    text: str
    op: str
    threshold: float


CLAIMS = {c.id: c for c in (
    Claim("ce_gain", "CE one shot: gain on trained checkpoints (points)", ">=", TARGETS["ce_gain_any"]),
    Claim("l1_reduction", "L1 one shot: L1-norm reduction on trained checkpoints (%)", ">=", TARGETS["l1_reduction"]),
    Claim("l1_acc_drop", "L1 one shot: accuracy drop on trained checkpoints (points)", "<=",
          TARGETS["l1_max_acc_drop"]),
    Claim("l1_balanced_reduction", "L1 one shot + L1 balancing (same function): L1-norm reduction on trained "
          "checkpoints (%)", ">=", TARGETS["l1_reduction"]),
    Claim("l1_beats_zero", "L1 one shot beats the all-zero network: difference of CE + lambda L1", "<", 0.0),
    Claim("ce_beats_sgd", "CE one shot beats {sgd} in accuracy on trained checkpoints (points; poster: beats 150 "
          "epochs)", ">", 0.0),
    Claim("cheaper_at_equal_accuracy", "one shot is cheaper than SGD at equal accuracy: SGD seconds to reach the "
          "one shot's accuracy / one-shot seconds (x)", ">", 1.0),
    Claim("warm_start_1", "SGD from the one shot beats SGD from the initial networks after 1 epoch, each at its own "
          "tuned rate (points)", ">", 0.0),
    Claim("warm_start_full", "SGD from the one shot beats SGD from the initial networks after the full budget "
          "({epochs} epochs), each at its own tuned rate (points)", ">", 0.0),
    Claim("beats_nfn_ce", "CE: ScaleGMN-B beats NFN (perm. only) in accuracy on trained checkpoints (points)", ">",
          0.0),
    Claim("beats_nfn_l1", "L1: ScaleGMN-B beats NFN (perm. only): difference of CE + lambda L1", "<", 0.0),
)}

VERDICT_COLUMNS = ["family", "claim", "text", "value", "lo", "hi", "op", "threshold", "outcome", "networks", "seeds"]


def claim_row(family: str, claim_id: str, interval: Interval, threshold: float | None = None, **fields) -> dict:
    """A verdict row: the claim ``claim_id`` judged on ``interval`` against its threshold (or ``threshold``, e.g.
    a target of its own for one family); ``fields`` fill the text's ``{}`` fields."""
    claim = CLAIMS[claim_id]
    threshold = claim.threshold if threshold is None else float(threshold)
    return {"family": family, "claim": claim.id, "text": claim.text.format(**fields), "value": interval.estimate,
            "lo": interval.lo, "hi": interval.hi, "op": claim.op, "threshold": threshold,
            "outcome": interval.judge(claim.op, threshold), "networks": interval.networks,
            "seeds": "/".join(str(s) for s in interval.seeds)}


def verdict_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as a frame with :data:`VERDICT_COLUMNS` (an empty frame keeps the columns)."""
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)
