"""The verdicts of notebook 06 for one family: the targets and the poster's claims, each judged on its 95 % interval
over held-out networks and metanet seeds (:mod:`workbench.measure.verdicts`).

Differences between two methods are paired: both are scored on the same networks and the interval is that of the
per-network difference (:meth:`workbench.measure.uncertainty.Bootstrap.difference`).
"""
from __future__ import annotations

import pandas as pd

from ..baselines.amortization import MatchedCompute, WarmStart
from ..reporting.results import find_row
from ..measure.score import Score
from ..measure.uncertainty import Bootstrap, Interval
from ..measure.verdicts import TARGETS, claim_row, verdict_frame
from .methods import epochs_text

__all__ = ["family_verdicts"]


def family_verdicts(family: str, activation: str, boot: Bootstrap, *, initial: Score, first, shots: list,
                    table: pd.DataFrame, sgd_ce: dict[int, Score], matched: list[MatchedCompute],
                    warm: list[WarmStart], finetune_epochs: int) -> pd.DataFrame:
    """Every claim that can be judged from what the family measured (a claim whose inputs are missing is left
    out). ``first``: the first metanetwork method with a CE one shot (its ``ce``/``l1`` scores), ``shots``: all of
    them; ``sgd_ce``: SGD's CE scores per budget."""
    rows = []
    trained = initial.trained
    if first is not None and first.ce is not None:
        gain = boot.difference(first.ce.per_entry("acc"), initial.per_entry("acc"), trained,
                               key_a=f"{first.key}/ce", key_b="initial")
        need = TARGETS["ce_gain_tanh"] if activation == "tanh" else TARGETS["ce_gain_any"]
        rows.append(claim_row(family, "ce_gain", gain, threshold=need))
        if sgd_ce:
            budget = min(sgd_ce)
            diff = boot.difference(first.ce.per_entry("acc"), sgd_ce[budget].per_entry("acc"), trained,
                                   key_a=f"{first.key}/ce", key_b="sgd")
            rows.append(claim_row(family, "ce_beats_sgd", diff, sgd=f"SGD ({epochs_text(budget)})"))
    l1_first = next((m for m in shots if m.l1 is not None), None)
    if l1_first is not None:
        rows += _l1_rows(family, boot, initial, l1_first, table)
    one = next((m for m in matched if first is not None and m.method == first.label), None)
    if one is not None:
        rows.append(claim_row(family, "cheaper_at_equal_accuracy", one.ratio))
    for w in warm:  # after 1 epoch and after the full budget (one row when they coincide)
        if first is not None and w.start == first.key:
            claim = "warm_start_1" if w.epochs == 1 else "warm_start_full"
            rows.append(claim_row(family, claim, w.difference, epochs=w.epochs))
    nfn = next((m for m in shots if m.key == "nfn"), None)
    if nfn is not None and first is not None and first.key == "scalegmn":
        if nfn.ce is not None and first.ce is not None:
            rows.append(claim_row(family, "beats_nfn_ce", boot.difference(
                first.ce.per_entry("acc"), nfn.ce.per_entry("acc"), trained, key_a="scalegmn/ce", key_b="nfn/ce")))
        if nfn.l1 is not None and first.l1 is not None:
            rows.append(claim_row(family, "beats_nfn_l1", boot.difference(
                first.l1.per_entry("loss"), nfn.l1.per_entry("loss"), None, key_a="scalegmn/l1", key_b="nfn/l1")))
    return verdict_frame(rows)


def _l1_rows(family: str, boot: Bootstrap, initial: Score, m, table: pd.DataFrame) -> list[dict]:
    """The L1 one shot's claims: reduction, accuracy drop, against the all-zero network, and (ReLU) balanced."""
    trained = initial.trained
    rows = [claim_row(family, "l1_reduction", m.l1.interval("l1_reduction_trained", boot, key=f"{m.key}/l1")),
            claim_row(family, "l1_acc_drop", boot.difference(initial.per_entry("acc"), m.l1.per_entry("acc"), trained,
                                                             key_a="initial", key_b=f"{m.key}/l1"))]
    zero = find_row(table, kind="reference", method="zero")
    if zero is not None:
        # the all-zero network's loss is ln(classes) for every network: a constant, so the interval is the one shot's
        loss = m.l1.interval("loss", boot, key=f"{m.key}/l1")
        rows.append(claim_row(family, "l1_beats_zero", Interval(
            loss.estimate - zero["l1_loss"], loss.lo - zero["l1_loss"], loss.hi - zero["l1_loss"], loss.level,
            loss.networks, loss.seeds)))
    balanced = find_row(table, kind="balanced", method=m.key)
    if balanced is not None:
        rows.append(claim_row(family, "l1_balanced_reduction", Interval(
            balanced["l1_reduction_trained"], balanced["l1_reduction_trained_lo"], balanced["l1_reduction_trained_hi"],
            networks=boot.networks, seeds=(1,))))
    return rows
