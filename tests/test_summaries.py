"""The summaries notebooks 04-07 print, computed by the package: notebook 04's held-out conclusion, notebook 05's
collapsed runs, which runs notebook 06 trains, whether its table rows are complete, the verdicts overview and the
tally per claim, the scaling study's zoo, stacking and check, and the sentence on the chosen lambda. Small frames
only: fast."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from workbench import pipeline
from workbench.pipeline.recipe import ZooRecipe
from workbench.reporting.findings import OVERVIEW_COLUMNS, claim_tallies, verdict_overview
from workbench.reporting.results import MEASURED_COLUMNS, one_shot_rows_measured


# -- notebook 06 -------------------------------------------------------------------------------------------------
def test_table_plan_trains_the_table_methods_and_reuses_the_ablated_ones():
    rows_for, reuse_only, runs = pipeline.table_plan(
        ["mlp-tanh", "cnn-relu"], ["scalegmn", "nfn"], methods=["scalegmn", "gmn"], ablation_families=["mlp-tanh"],
        seed=3, headline_seeds=3)
    assert rows_for == {"mlp-tanh": ["scalegmn", "nfn", "gmn"], "cnn-relu": ["scalegmn", "nfn"]}
    assert reuse_only == ["gmn"]  # trained by notebook 05, never here
    table_runs = [(f, m, o, 3) for f in ("mlp-tanh", "cnn-relu") for m in ("scalegmn", "nfn") for o in ("ce", "l1")]
    headline = [(f, "scalegmn", "ce", s) for f in ("mlp-tanh", "cnn-relu") for s in (4, 5)]
    assert runs == table_runs + headline
    # one headline seed: no extra runs; nothing ablated: nothing reused
    assert pipeline.table_plan(["mlp-tanh"], ["scalegmn"])[1:] == ([], [("mlp-tanh", "scalegmn", "ce", 0),
                                                                        ("mlp-tanh", "scalegmn", "l1", 0)])


def _table(**missing):
    """Initial and two one-shot rows, every measured column set; ``missing={method: column}`` leaves one NaN."""
    rows = []
    for kind, method in (("reference", "initial"), ("one_shot", "scalegmn"), ("one_shot", "nfn")):
        row = {"label": method, "kind": kind, "method": method, "epochs": math.nan, "lr": math.nan, "seeds": 1.0}
        row.update({c: 1.0 for c in MEASURED_COLUMNS})
        if method in missing:
            row[missing[method]] = math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def test_one_shot_rows_measured_needs_every_row_and_every_column():
    assert one_shot_rows_measured(_table(), ["scalegmn", "nfn"])
    assert not one_shot_rows_measured(_table(nfn="l1_loss"), ["scalegmn", "nfn"])
    assert not one_shot_rows_measured(_table(initial="ce_acc_trained_lo"), ["scalegmn"])
    assert not one_shot_rows_measured(_table(), ["scalegmn", "gmn"])  # a method without a row (negative control)
    assert one_shot_rows_measured(_table(nfn="l1_loss"), ["scalegmn"])  # a row not asked for may be incomplete


def _verdicts():
    outcomes = {("ce_gain", "mlp-tanh"): "holds", ("ce_gain", "cnn-relu"): "inconclusive",
                ("l1_reduction", "mlp-tanh"): "fails", ("l1_reduction", "cnn-relu"): "fails"}
    return pd.DataFrame([{"family": f, "claim": c, "text": f"text of {c}", "value": 1.23456, "lo": 0.5, "hi": 2.0,
                          "op": ">=", "threshold": 1.0, "outcome": o, "extra": "not shown"}
                         for (c, f), o in outcomes.items()])


def test_claim_tallies_count_each_outcome_per_claim_in_order():
    assert claim_tallies(_verdicts()) == [
        "text of ce_gain: 1 holds, 0 fails, 1 inconclusive (of 2 families)",
        "text of l1_reduction: 0 holds, 2 fails, 0 inconclusive (of 2 families)",
    ]
    assert claim_tallies(_verdicts().iloc[::-1])[0].startswith("text of l1_reduction")  # first appearance decides


def test_verdict_overview_shows_the_readers_columns_rounded():
    shown = verdict_overview(_verdicts())
    assert list(shown.columns) == OVERVIEW_COLUMNS and shown["value"].iloc[0] == 1.235


# -- notebook 07 -------------------------------------------------------------------------------------------------
def test_scaling_zoo_is_a_zoo_of_its_own_only_when_its_size_differs():
    zoo = ZooRecipe(48, 3, 0)
    assert pipeline.scaling_zoo(zoo, None) is zoo and pipeline.scaling_zoo(zoo, 48) is zoo
    bigger = pipeline.scaling_zoo(zoo, 96)
    assert (bigger.n_networks, bigger.cache_suffix, bigger.zoo_epochs) == (96, "-n96", 3)


def test_scaling_studies_stack_the_families_in_order(monkeypatch):
    calls = []

    def study(output_dir, family, **settings):
        calls.append((output_dir, family, settings))
        return (pd.DataFrame({"family": [family] * 2, "size": [1, 2]}), pd.DataFrame({"family": [family]}))

    monkeypatch.setattr(pipeline.scaling, "scaling_study", study)
    runs, curves = pipeline.scaling_studies("out", ["b", "a"], sizes=[1, 2], steps=5)
    assert calls == [("out", "b", {"sizes": [1, 2], "steps": 5}), ("out", "a", {"sizes": [1, 2], "steps": 5})]
    assert runs["family"].tolist() == ["b", "b", "a", "a"] and list(runs.index) == [0, 1, 2, 3]
    assert curves["family"].tolist() == ["b", "a"]


def test_scaling_check_counts_points_and_finds_a_missing_gain():
    runs = pd.DataFrame({"gain_all": [1.0, 2.0], "gain_trained": [0.5, 0.7]})
    assert pipeline.scaling_check(runs, 4) == "scaling points measured: 2 of 4; every gain finite: True"
    runs.loc[1, "gain_trained"] = math.nan
    assert pipeline.scaling_check(runs, 2).endswith("every gain finite: False")


@pytest.mark.parametrize("chosen, expected", [
    (1, "chosen lam = 0.01: the largest lambda whose one shot keeps the validation accuracy on trained checkpoints "
        "within 5 points of the initial networks (91.2%, L1-norm reduction 40.6%)."),
    (None, "no lambda of [0.007, 0.01] keeps the one-shot accuracy within 5 points; try smaller values"),
])
def test_lam_choice_words_the_choice_or_what_to_try(chosen, expected):
    sweep = pd.DataFrame({"lam": [0.007, 0.01], "acc_trained": [93.0, 91.24], "l1_reduction": [30.0, 40.56],
                          "chosen": [False, chosen == 1]})
    assert pipeline.lam_choice(sweep, [0.007, 0.01], 5.0) == expected


# -- notebooks 04 and 05 ---------------------------------------------------------------------------------------------
def _by_checkpoint():
    return pd.DataFrame({"checkpoint": ["0", "1", "2", "trained", "all"], "entries": [4, 4, 4, 8, 12],
                         "before": [10.0, 50.0, 80.0, 65.0, 46.7], "after": [12.0, 60.0, 82.0, 71.0, 51.3],
                         "gain": [2.0, 10.0, 2.0, 6.0, 4.6]})


@pytest.mark.parametrize("lo, hi, verdict", [(1.0, 9.0, "an improvement"), (-9.0, -1.0, "a loss"),
                                             (-1.0, 9.0, "inconclusive")])
def test_held_out_summary_words_the_gain_and_judges_it_on_its_interval(lo, hi, verdict):
    from workbench.measure.uncertainty import Interval

    lines = pipeline.held_out_summary(_by_checkpoint(), Interval(6.0, lo, hi, networks=4), n_networks=4,
                                      family="cnn-relu", objective="ce")
    assert lines[0] == ("One shot on 4 held-out cnn-relu networks (ce objective): average test accuracy on trained "
                        "checkpoints 65.0% -> 71.0% (+6.0 points), on all checkpoints 46.7% -> 51.3% (+4.6).")
    assert lines[1] == "The largest gain is on epoch-1 checkpoints (+10.0 points)."  # not the pooled rows
    assert lines[2] == (f"Verdict on networks the metanetwork never saw: {verdict} -- gain on trained checkpoints "
                        f"6.00 [{lo:.2f}, {hi:.2f}] points (95 % interval over 4 held-out networks; an improvement or "
                        "a loss only when the whole interval is above or below 0).")


def test_collapsed_runs_names_each_collapsed_run():
    runs = pd.DataFrame({"family": ["mlp-tanh", "cnn-relu"], "objective": ["ce", "l1"], "label": ["ScaleGMN-B", "GMN-B"],
                         "seed": [0, 1], "collapsed": [False, True]})
    assert pipeline.collapsed_runs(runs) == ("runs whose accuracy on trained checkpoints collapsed to chance: 1 -- "
                                             "cnn-relu l1 GMN-B seed 1")
    assert pipeline.collapsed_runs(runs.assign(collapsed=False)) == (
        "runs whose accuracy on trained checkpoints collapsed to chance: 0")
