"""Notebook 06's results for one family (workbench.pipeline.family_results): typed rows, rates chosen on validation
networks, matched compute, the per-start warm start and verdicts with intervals -- on a tiny real zoo."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from workbench import pipeline
from workbench.baselines.sgd import sgd_finetune
from workbench.data import load_dataset
from workbench.nets import NetSpec
from workbench.objective import evaluate
from workbench.reporting.results import find_row
from workbench.measure.uncertainty import OUTCOMES
from workbench.measure.verdicts import CLAIMS
from workbench.zoo import generate

from recipes import tiny_recipe

SPEC = NetSpec.mlp((64, 4, 10), "tanh")
TINY = dict(epochs=1, hidden=8, n_layers=1, batch_networks=8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def measured(digits, tmp_path_factory):
    zoo = generate(SPEC, digits, 20, epochs=2, checkpoints=[0, 1], seed=0, progress=False)
    res = pipeline.family_results(tmp_path_factory.mktemp("run"), "mlp-tanh", zoo, digits, tiny_recipe(**TINY),
                                  lam=0.005, seed=0, seeds=2,
                                  sgd_epochs=(1, 3), finetune_epochs=2, methods=("scalegmn", "nfn"),
                                  sgd_lr_grid=(0.01, 0.1), sequential_sample=0, progress=False)
    return zoo, res


def test_the_table_holds_every_kind_of_row_found_by_its_key(measured):
    _, res = measured
    t = res.table
    for key in [dict(kind="reference", method="initial"), dict(kind="reference", method="zero"),
                dict(kind="one_shot", method="scalegmn"), dict(kind="one_shot", method="nfn"),
                dict(kind="sgd", epochs=1), dict(kind="sgd", epochs=3), dict(kind="sgd_fixed", epochs=2),
                dict(kind="one_shot_sgd", method="scalegmn", epochs=1),
                dict(kind="one_shot_sgd", method="scalegmn", epochs=2)]:
        assert find_row(t, **key) is not None, key
    assert find_row(t, kind="one_shot", method="scalegmn")["seeds"] == 2  # the headline's seeds
    assert find_row(t, kind="one_shot", method="nfn")["seeds"] == 1
    assert find_row(t, kind="sgd", epochs=1)["label"] == "SGD (1 epoch)"


def test_the_sgd_row_is_sgd_at_the_rate_chosen_on_validation_networks(measured, digits):
    zoo, res = measured
    lr = res.sgd_lr["ce"]
    chosen = res.lr_tuning.query("objective == 'ce' and chosen_ce == True")
    assert len(chosen) == 1 and chosen["lr"].item() == lr and chosen["start"].item() == "initial"
    best = res.lr_tuning.query("objective == 'ce' and start == 'initial' and epochs == 2")
    assert lr == best.loc[best["val_acc_trained"].idxmax(), "lr"]
    test = pipeline.test_networks(zoo)
    direct = sgd_finetune(SPEC, test.params, digits, epochs=(3,), lr=lr, seed=0, progress=False)[3]
    x, y = digits.split("test")
    assert find_row(res.table, kind="sgd", epochs=3)["ce_acc"] == pytest.approx(
        100 * float(evaluate(SPEC, direct.params, x, y)["acc"].double().mean()), abs=1e-4)


def test_matched_compute_and_warm_start_are_measured_per_method_with_intervals(measured):
    _, res = measured
    assert set(res.matched["method"]) == {"ScaleGMN-B", "NFN (perm. only)"}
    for _, m in res.matched.iterrows():
        assert m["steps_lo"] <= m["steps_value"] <= m["steps_hi"]
        assert m["ratio_value"] == pytest.approx(m["sgd_seconds_per_net_value"] / m["one_shot_s_per_net"])
    # the warm start: from the first method's one shot (GMN-B, the control, is not among these methods)
    assert set(zip(res.warm["start"], res.warm["epochs"])) == {("scalegmn", 1), ("scalegmn", 2)}
    # the table's "one shot + SGD" row is the warm start's point (same start, rate and budget)
    w = res.warm.query("start == 'scalegmn' and epochs == 2").iloc[0]
    row = find_row(res.table, kind="one_shot_sgd", method="scalegmn", epochs=2)
    assert row["lr"] == w["lr"]
    assert row["ce_acc_trained"] == pytest.approx(w["acc_value"], abs=1e-6)
    assert set(res.curves["start"]) == {"initial", "scalegmn"}


def test_verdicts_state_a_known_claim_a_value_inside_its_interval_and_one_of_three_outcomes(measured):
    _, res = measured
    v = res.verdicts
    assert {"ce_gain", "cheaper_at_equal_accuracy", "warm_start_1", "warm_start_full", "l1_reduction",
            "l1_acc_drop", "l1_beats_zero", "beats_nfn_ce", "beats_nfn_l1"} <= set(v["claim"])
    assert set(v["claim"]) <= set(CLAIMS) and set(v["outcome"]) <= set(OUTCOMES)
    finite = v[v["lo"].map(math.isfinite) & v["hi"].map(math.isfinite)]
    assert (finite["lo"] <= finite["value"] + 1e-9).all() and (finite["value"] <= finite["hi"] + 1e-9).all()
    gain = v.query("claim == 'ce_gain'").iloc[0]
    assert gain["threshold"] == 8.0  # a tanh family's target
    assert gain["seeds"] == "2/1"  # two ScaleGMN-B seeds against the initial networks


def test_figures_give_each_method_its_own_marker(measured):
    from workbench.viz.results import matched_compute_figure, warm_start_figure

    _, res = measured
    fig = matched_compute_figure(res.curves.assign(family="mlp-tanh"), res.matched.assign(family="mlp-tanh"))
    shots = [t for t in fig.data if t.name and t.name.endswith("one shot")]
    assert {t.name for t in shots} == {"ScaleGMN-B one shot", "NFN (perm. only) one shot"}
    assert len({t.marker.symbol for t in shots}) == 2
    assert fig.layout.xaxis.type == "log"
    fig = warm_start_figure(res.curves.assign(family="mlp-tanh"), res.warm.assign(family="mlp-tanh"))
    assert {t.name for t in fig.data if t.showlegend} == {"from the initial networks", "from ScaleGMN-B"}


def test_save_family_results_writes_every_file_with_a_family_column(measured, tmp_path):
    _, res = measured
    paths = pipeline.save_family_results(tmp_path, {"mlp-tanh": res}, workers=1)
    for name, file in pipeline.RESULT_FILES.items():
        frame = pd.read_csv(tmp_path / "results" / file)
        assert frame["family"].eq("mlp-tanh").all() and len(frame), name
    assert "one family at a time" in paths["md"].read_text()


def test_every_method_marker_and_its_open_variant_are_valid_plotly_symbols():
    import plotly.graph_objects as go

    from workbench.viz.results import METHOD_SYMBOLS, _open

    for symbol in {*METHOD_SYMBOLS.values(), "square"}:
        go.Scatter(marker=dict(symbol=[symbol, _open(symbol)]))  # plotly validates the names
