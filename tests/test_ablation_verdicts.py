"""The ablation's verdicts (a win or a loss needs the whole interval on one side; seeds widen it), the claims judged
on their intervals, and the markdown table of the results."""

import numpy as np
import pandas as pd
import pytest

from workbench import pipeline
from workbench.reporting import results


# -- ablation verdicts ------------------------------------------------------------------------------------------
def _score(per_seed_acc, n_networks=12, noise=0.0, seed=0):
    """A Score of ``n_networks`` networks x 2 checkpoints whose trained entries have the accuracy (%) of each seed
    (plus per-network noise), the same for the loss."""
    from workbench.measure.score import Score

    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_networks), 2)
    trained = np.tile([False, True], n_networks)
    jitter = rng.normal(0, noise, n_networks)[ids]
    acc = np.stack([np.where(trained, v + jitter, 10.0) / 100.0 for v in per_seed_acc])
    return Score(acc=acc, ce=acc * 10, l1=np.ones_like(acc), l1_before=np.ones(ids.size), trained=trained,
                 net_id=ids, lam=0.0, near_zero=0.0)


def _ablation(values: dict, objective="ce", family="mlp-tanh", noise=0.0):
    from workbench.measure.uncertainty import Bootstrap

    scores, rows = {}, []
    for method, vals in values.items():  # method keys of pipeline.METHODS
        scores[(family, objective, method)] = _score(vals, noise=noise)
        rows += [{"family": family, "objective": objective, "method": method,
                  "label": pipeline.method_label(method, True), "seed": s,
                  "smoothness": 0.1 if method == "scalegmn" else 0.2} for s in range(len(vals))]
    boot = Bootstrap(np.repeat(np.arange(12), 2), draws=500)
    return pipeline.Ablation(pd.DataFrame(rows), scores=scores, boots={family: boot})


def _outcomes(frame):
    return dict(zip(frame["other_method"], frame["outcome"]))


def test_ablation_verdict_wins_and_losses_need_the_whole_interval_on_one_side():
    ab = _ablation({"scalegmn": [50.0, 50.0], "gmn": [49.0, 49.0], "gmn-aug": [51.0, 51.0], "nfn": [50.0, 50.0]},
                   noise=3.0)
    verdict = pipeline.ablation_verdict(ab)
    assert _outcomes(verdict) == {"GMN-B (sym. broken)": "win", "GMN-B + sym. aug.": "loss",
                                  "NFN (perm. only)": "inconclusive"}
    effect = verdict.set_index("other_method")
    assert effect.loc["GMN-B (sym. broken)", "effect"] == pytest.approx(1.0)
    assert effect.loc["GMN-B (sym. broken)", "other_key"] == "gmn"  # records, not labels
    assert (verdict["effect_lo"] <= verdict["effect"]).all() and verdict["smoother"].all()
    assert set(verdict["seeds"]) == {"2/2"}


def test_the_l1_objective_judges_the_loss_where_lower_is_better():
    ab = _ablation({"scalegmn": [20.0], "gmn": [25.0]}, objective="l1")  # loss = acc / 10
    verdict = pipeline.ablation_verdict(ab)
    assert verdict["metric"].item() == "loss" and verdict["outcome"].item() == "win"
    assert verdict["effect"].item() == pytest.approx(0.25)  # mean loss over all entries: 1.75 - 1.5


def test_seed_spread_turns_the_same_mean_difference_inconclusive():
    steady = pipeline.ablation_verdict(_ablation({"scalegmn": [52.0, 52.0, 52.0], "gmn": [50.0, 50.0, 50.0]}))
    noisy = pipeline.ablation_verdict(_ablation({"scalegmn": [47.0, 52.0, 57.0], "gmn": [45.0, 50.0, 55.0]}))
    assert steady["effect"].iloc[0] == pytest.approx(noisy["effect"].iloc[0]) == pytest.approx(2.0)
    assert steady["outcome"].iloc[0] == "win" and noisy["outcome"].iloc[0] == "inconclusive"
    assert noisy["effect_hi"].iloc[0] - noisy["effect_lo"].iloc[0] > 4.0


def test_kind_contrast_compares_mlps_with_cnns_with_an_interval():
    mlp = _ablation({"scalegmn": [52.0, 52.0], "gmn": [50.0, 50.0]}, family="mlp-tanh", noise=1.0)
    cnn = _ablation({"scalegmn": [51.0, 51.0], "gmn": [50.5, 50.5]}, family="cnn-tanh", noise=1.0)
    both = pipeline.Ablation(pd.concat([mlp.runs, cnn.runs]), scores={**mlp.scores, **cnn.scores},
                             boots={**mlp.boots, **cnn.boots})
    contrast = pipeline.kind_contrast(both)
    row = contrast.set_index("objective").loc["ce"]
    assert row["mlp_effect"] == pytest.approx(2.0) and row["cnn_effect"] == pytest.approx(0.5)
    assert row["difference"] == pytest.approx(1.5) and row["difference_lo"] > 0
    assert row["outcome"] == "larger for MLPs"
    lines = pipeline.ablation_conclusions(pipeline.ablation_verdict(both), contrast)
    assert any("larger for MLPs" in line and "+1.500" in line for line in lines)
    assert "ce: ScaleGMN wins 2, loses 0, inconclusive 0 of 2 comparisons" in lines
    assert pipeline.kind_contrast(mlp).empty  # no CNN family: no contrast


def test_ablation_objectives_limit_l1_to_the_named_families():
    assert pipeline.ablation_objectives(["mlp-tanh", "cnn-relu"], ["ce", "l1"], ["cnn-relu"]) == {
        "mlp-tanh": ["ce"], "cnn-relu": ["ce", "l1"]}
    assert pipeline.ablation_objectives(["mlp-tanh"], ["ce", "l1"]) == {"mlp-tanh": ["ce", "l1"]}
    with pytest.raises(ValueError, match="cnn-tanh"):
        pipeline.ablation_objectives(["mlp-tanh"], ["ce", "l1"], ["cnn-tanh"])


# -- verdicts --------------------------------------------------------------------------------------------------
def test_a_claim_is_judged_on_its_interval_against_its_own_or_a_given_threshold():
    from workbench.measure.uncertainty import Interval
    from workbench.measure.verdicts import claim_row

    row = claim_row("cnn-tanh", "ce_gain", Interval(8.5, 7.9, 9.1, networks=32, seeds=(3, 1)), threshold=8.0)
    assert (row["outcome"], row["threshold"], row["seeds"], row["networks"]) == ("inconclusive", 8.0, "3/1", 32)
    assert claim_row("cnn-relu", "ce_gain", Interval(8.5, 7.9, 9.1))["outcome"] == "holds"  # its own threshold: 3
    assert claim_row("x", "l1_beats_zero", Interval(0.1, 0.05, 0.2))["outcome"] == "fails"
    text = claim_row("x", "ce_beats_sgd", Interval(1.0, 0.5, 1.5), sgd="SGD (5 epochs)")["text"]
    assert "SGD (5 epochs)" in text


def test_markdown_table_rounds_and_marks_missing_values():
    text = results.markdown_table(pd.DataFrame({"a": ["x", "y"], "b": [1.23456, float("nan")]}), digits=2)
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x | 1.23 |", "| y | - |"]
