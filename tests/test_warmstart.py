"""Tuned SGD baselines, warm-start curves and the break-even arithmetic (workbench.warmstart), on a tiny real zoo."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from workbench import pipeline
from workbench.baselines import sgd_finetune
from workbench.data import load_dataset
from workbench.nets import NetSpec
from workbench.objective import evaluate
from workbench.warmstart import break_even, break_even_table, sgd_curves, tune_sgd_lr
from workbench.zoo import generate

SPEC = NetSpec.mlp((64, 4, 10), "tanh")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def zoo(digits):
    return generate(SPEC, digits, 20, epochs=2, checkpoints=[0, 1], seed=0, progress=False)


class RecordingData:
    """The digits data set, recording which splits were read (tuning must not look at the test split)."""

    def __init__(self, data):
        self.data, self.splits = data, []

    def split(self, name):
        self.splits.append(name)
        return self.data.split(name)


def test_tuning_scores_every_candidate_like_a_separate_run_on_validation_images_only(zoo, digits):
    val = pipeline.test_networks(zoo, 2, split="val").params
    data = RecordingData(digits)
    best, frame = tune_sgd_lr(SPEC, val, data, lrs=(0.01, 0.1), epochs=2, seed=3)
    assert "test" not in data.splits and "val" in data.splits
    assert frame["chosen"].sum() == 1 and best == frame.loc[frame["chosen"], "lr"].item()
    assert best == frame.loc[frame["val_acc"].idxmax(), "lr"]
    # the vectorised grid equals one plain run per learning rate
    x, y = digits.split("val")
    for _, row in frame.iterrows():
        alone = sgd_finetune(SPEC, val, digits, epochs=(2,), lr=row["lr"], seed=3, progress=False)[2]
        assert 100 * float(evaluate(SPEC, alone.params, x, y)["acc"].double().mean()) == pytest.approx(row["val_acc"],
                                                                                                      abs=1e-4)


def test_l1_tuning_minimises_the_validation_objective_and_a_huge_rate_never_wins(zoo, digits):
    val = pipeline.test_networks(zoo, 2, split="val").params
    best, frame = tune_sgd_lr(SPEC, val, digits, lrs=(0.03, 50.0), epochs=1, lam=0.01)
    assert best == 0.03  # negative control: lr 50 wrecks the networks
    assert frame.set_index("lr").loc[50.0, "val_objective"] > frame.set_index("lr").loc[0.03, "val_objective"]
    with pytest.raises(ValueError, match="positive"):
        tune_sgd_lr(SPEC, val, digits, lrs=(0.1, -1.0))


def test_curves_match_separate_runs_and_precomputed_starts(zoo, digits):
    test = pipeline.test_networks(zoo, 3)
    initial = test.params
    shifted = [(w * 1.5, b) for w, b in initial]
    trained = pipeline.trained_mask(test)
    curves, runs = sgd_curves(SPEC, {"a": (initial, 0.05), "b": (shifted, 0.01)}, digits, epochs=2, seed=1,
                              trained=trained)
    assert list(curves["start"].unique()) == ["a", "b"] and sorted(curves["epoch"].unique()) == [0, 1, 2]
    x, y = digits.split("test")
    for label, params, lr in (("a", initial, 0.05), ("b", shifted, 0.01)):
        alone = sgd_finetune(SPEC, params, digits, epochs=(1, 2), lr=lr, seed=1, progress=False)
        for epoch in (1, 2):
            acc = 100 * evaluate(SPEC, alone[epoch].params, x, y)["acc"].double()
            row = curves[(curves["start"] == label) & (curves["epoch"] == epoch)].iloc[0]
            assert row["acc_mean"] == pytest.approx(float(acc.mean()), abs=1e-4)
            assert row["acc_trained"] == pytest.approx(float(acc[torch.as_tensor(trained)].mean()), abs=1e-4)
            for (w1, b1), (w2, b2) in zip(runs[label][epoch].params, alone[epoch].params):
                torch.testing.assert_close(w1, w2)
        start = curves[(curves["start"] == label) & (curves["epoch"] == 0)].iloc[0]
        assert start["acc_mean"] == pytest.approx(100 * float(evaluate(SPEC, params, x, y)["acc"].double().mean()))
    # a start given as an existing run gives the same rows as computing it here
    done = sgd_finetune(SPEC, initial, digits, epochs=(1, 2), lr=0.05, seed=1, progress=False)
    again, _ = sgd_curves(SPEC, {"b": (shifted, 0.01)}, digits, epochs=2, seed=1, trained=trained,
                          precomputed={"a": (initial, 0.05, done)})
    pd.testing.assert_frame_equal(again.reset_index(drop=True), curves.reset_index(drop=True))
    with pytest.raises(ValueError, match="lacks epochs"):
        sgd_curves(SPEC, {}, digits, epochs=3, precomputed={"a": (initial, 0.05, done)})
    with pytest.raises(ValueError, match="same"):
        sgd_curves(SPEC, {"a": (initial, 0.05), "c": ([(w[:2], b[:2]) for w, b in initial], 0.05)}, digits, epochs=1)


@pytest.mark.parametrize("train_s, one_s, sgd_s, expected", [
    (10.0, 0.001, 0.011, 1000.0),   # 10 s / (0.01 s saved per network)
    (0.0, 0.001, 0.002, 0.0),
    (10.0, 0.01, 0.01, math.inf),   # not cheaper per network: never pays
    (10.0, 0.02, 0.01, math.inf),
])
def test_break_even(train_s, one_s, sgd_s, expected):
    n = break_even(train_s, one_s, sgd_s)
    assert n == pytest.approx(expected)
    if math.isfinite(n) and n > 0:  # at N the two costs are equal
        assert train_s + n * one_s == pytest.approx(n * sgd_s)


def test_break_even_table_compares_with_every_sgd_row():
    table = pd.DataFrame([
        {"method": "Initial", "ce_avg_acc": 40.0, "ce_time_per_net_s": float("nan")},
        {"method": "ScaleGMN-B", "ce_avg_acc": 60.0, "ce_time_per_net_s": 0.001},
        {"method": "SGD (5 epochs)", "ce_avg_acc": 55.0, "ce_time_per_net_s": 0.05},
        {"method": "SGD (20 epochs)", "ce_avg_acc": 70.0, "ce_time_per_net_s": 0.2},
        {"method": "Fixed-lr SGD (5 epochs, lr 0.01)", "ce_avg_acc": 50.0, "ce_time_per_net_s": 0.05},
    ])
    frame = break_even_table(table, "cnn-tanh", "ScaleGMN-B", train_seconds=49.0)
    assert frame["versus"].tolist() == ["SGD (5 epochs)", "SGD (20 epochs)"]
    assert frame["break_even_networks"].tolist() == pytest.approx([1000.0, 49.0 / 0.199])
    assert break_even_table(table, "cnn-tanh", "NFN", 1.0).empty


def test_family_results_tunes_sgd_on_validation_networks_and_adds_warm_start_rows(zoo, digits, tmp_path):
    res = pipeline.family_results(tmp_path, "mlp-tanh", zoo, digits, lam=0.005, seed=0, sgd_epochs=(1, 3),
                                  finetune_epochs=2, methods=("scalegmn",), sgd_lr_grid=(0.01, 0.1),
                                  sequential_sample=0, progress=False, epochs=1, hidden=8, n_layers=1,
                                  batch_networks=8)
    names = res["table"]["method"].tolist()
    assert names[:3] == ["Initial", "All-zero network", "ScaleGMN-B"]
    assert {"SGD (1 epochs)", "SGD (3 epochs)", "Fixed-lr SGD (2 epochs, lr 0.01)", "ScaleGMN-B + SGD (2 epochs)",
            "ScaleGMN-B + fixed-lr SGD (2 epochs, lr 0.01)"} <= set(names)
    lr = res["sgd_lr"]["ce"]
    assert lr == res["lr_tuning"].query("objective == 'ce' and chosen")["lr"].item()
    # the table's SGD row is SGD at the tuned rate from the initial networks, scored on the test networks
    test = pipeline.test_networks(zoo)
    direct = sgd_finetune(SPEC, test.params, digits, epochs=(3,), lr=lr, seed=0, progress=False)[3]
    x, y = digits.split("test")
    t = res["table"].set_index("method")
    assert t.loc["SGD (3 epochs)", "ce_avg_acc"] == pytest.approx(
        100 * float(evaluate(SPEC, direct.params, x, y)["acc"].double().mean()), abs=1e-4)
    # the warm-start rows are the last epoch of the curves
    last = res["curves"].query("epoch == 2").set_index("start")["acc_mean"]
    assert t.loc["ScaleGMN-B + SGD (2 epochs)", "ce_avg_acc"] == pytest.approx(last["ScaleGMN-B (tuned lr)"])
    assert t.loc["Fixed-lr SGD (2 epochs, lr 0.01)", "ce_avg_acc"] == pytest.approx(last["Initial (lr 0.01)"])
    kinds = {p["method"]: p["kind"] for p in res["points"]}
    assert kinds["ScaleGMN-B"] == "one shot" and kinds["SGD (3 epochs)"] == "sgd"
    assert kinds["ScaleGMN-B + SGD (2 epochs)"] == "one shot + sgd"
    assert res["train_seconds"]["ScaleGMN-B"] > 0


def test_break_even_figure_is_log_log_in_every_panel_and_names_a_case_that_never_pays():
    from workbench.viz.results import break_even_figure

    rows = [{"family": f, "method": "ScaleGMN-B", "versus": "SGD (5 epochs)", "train_seconds": 100.0,
             "one_shot_s_per_net": one, "sgd_s_per_net": 0.01, "one_shot_acc": 50.0, "sgd_acc": 90.0,
             "break_even_networks": break_even(100.0, one, 0.01)} for f, one in (("a", 0.001), ("b", 0.02))]
    fig = break_even_figure(pd.DataFrame(rows))
    layout = fig.to_dict()["layout"]
    axes = [k for k in layout if k.startswith("yaxis")]
    assert len(axes) == 2 and all(layout[k]["type"] == "log" for k in axes)
    texts = [a["text"] for a in layout["annotations"]]
    assert any("never cheaper" in t for t in texts)
    marks = [t for t in fig.data if t.mode == "markers+text"]
    assert len(marks) == 1 and marks[0].x[0] == pytest.approx(100.0 / 0.009)
