"""The results table: the poster's columns, scored with the shared metrics, nothing invented."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from workbench.baselines import SGDResult
from workbench.forward_pass import forward
from workbench.nets import NetSpec, init_params
from workbench.objective import cross_entropy_per_network, l1_norm
from workbench.results import (
    COLUMNS,
    TableSchemaError,
    check_table_schema,
    method_row,
    results_table,
    sgd_rows,
    spread,
    to_markdown,
    training_smoothness,
    write_results,
)

SPEC = NetSpec.mlp((12, 6, 4), "relu")
LAM = 0.01


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    splits = {}
    for name, n in (("train", 40), ("val", 30), ("test", 50)):
        x = torch.randn(n, 1, 3, 4, generator=g)
        splits[name] = (x, (x.reshape(n, -1)[:, :4]).argmax(1))
    return SimpleNamespace(
        name="stand-in", n_classes=4, split=lambda name: splits[name], to=lambda device: None,
        **{f"{v}_{name}": splits[name][i] for name in splits for i, v in enumerate("xy")},
    )


@pytest.fixture(scope="module")
def initial():
    return init_params(SPEC, 5, torch.Generator().manual_seed(3))


def halved(params):
    return [(w / 2, b / 2) for w, b in params]


def test_rows_score_known_params_with_the_shared_metrics(data, initial):
    tuned = [(w * 1.5, b) for w, b in initial]
    row = method_row("Made up", SPEC, data, initial=initial, ce_params=tuned, ce_seconds_per_net=0.5,
                     l1_params=halved(initial), l1_seconds_per_net=2.0, lam=LAM)
    assert list(row) == COLUMNS
    x, y = data.split("test")
    acc = (forward(SPEC, tuned, x).argmax(-1) == y).double().mean(1) * 100  # (B,)
    assert row["ce_avg_acc"] == pytest.approx(float(acc.mean()))
    assert row["ce_max_acc"] == pytest.approx(float(acc.max()))
    half = halved(initial)
    loss = cross_entropy_per_network(forward(SPEC, half, x), y) + LAM * l1_norm(half)
    assert row["l1_test_loss"] == pytest.approx(float(loss.mean()), rel=1e-6)
    assert row["l1_avg_acc"] == pytest.approx(float((forward(SPEC, half, x).argmax(-1) == y).double().mean() * 100))
    assert row["l1_sparsity_pct"] == pytest.approx(50.0)
    assert (row["ce_time_per_net_s"], row["l1_time_per_net_s"]) == (0.5, 2.0)


def test_the_trained_checkpoint_reduction_counts_only_the_trained_networks(data, initial):
    n = initial[0][0].shape[0]
    trained = torch.arange(n) % 2 == 1
    # shrink the untrained networks to zero and the trained ones by a quarter: 25 % on trained checkpoints
    shrunk = [(torch.where(trained.reshape(-1, *[1] * (w.dim() - 1)), 0.75 * w, torch.zeros_like(w)),
               torch.where(trained.reshape(-1, 1), 0.75 * b, torch.zeros_like(b))) for w, b in initial]
    row = method_row("shrunk", SPEC, data, initial=initial, l1_params=shrunk, lam=LAM, trained=trained)
    assert row["l1_sparsity_pct_trained"] == pytest.approx(25.0)
    assert row["l1_sparsity_pct"] > 25.0 + 1.0  # over all checkpoints the zeroed networks count too
    assert math.isnan(method_row("no mask", SPEC, data, initial=initial, l1_params=shrunk,
                                 lam=LAM)["l1_sparsity_pct_trained"])


def test_initial_row_has_zero_sparsity_and_no_times(data, initial):
    row = method_row("Initial", SPEC, data, initial=initial, ce_params=initial, l1_params=initial, lam=LAM)
    assert row["l1_sparsity_pct"] == 0.0
    assert math.isnan(row["ce_time_per_net_s"]) and math.isnan(row["l1_time_per_net_s"])
    assert row["ce_avg_acc"] == row["l1_avg_acc"]


def test_split_selects_what_is_scored(data, initial):
    test = method_row("a", SPEC, data, initial=initial, ce_params=initial, lam=LAM)
    val = method_row("a", SPEC, data, initial=initial, ce_params=initial, lam=LAM, split="val")
    x, y = data.split("val")
    acc = (forward(SPEC, initial, x).argmax(-1) == y).double().mean(1) * 100
    assert val["ce_avg_acc"] == pytest.approx(float(acc.mean()))
    assert val["ce_avg_acc"] != test["ce_avg_acc"]


def test_missing_measurements_stay_missing(data, initial):
    row = method_row("CE only", SPEC, data, initial=initial, ce_params=initial, lam=LAM)
    for c in ("l1_avg_acc", "l1_test_loss", "l1_time_per_net_s", "l1_sparsity_pct", "l1_near_zero_pct"):
        assert math.isnan(row[c]), c
    assert not math.isnan(row["ce_avg_acc"])


def test_near_zero_share_counts_small_weights(data, initial):
    sparse = [(w.clone(), b.clone()) for w, b in initial]
    sparse[0][0].zero_()  # 5 networks x 6 x 12 weights of 5 x 110 values
    row = method_row("sparse", SPEC, data, initial=initial, l1_params=sparse, lam=LAM)
    untouched = [initial[0][1], *[t for pair in initial[1:] for t in pair]]
    small = sum(int((t.abs() < 1e-3).sum()) for t in untouched)
    assert row["l1_near_zero_pct"] == pytest.approx(100.0 * (5 * 72 + small) / (5 * SPEC.n_params))


def test_rejects_non_finite_or_mismatched_params(data, initial):
    broken = [(w.clone(), b.clone()) for w, b in initial]
    broken[1][1][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        method_row("broken", SPEC, data, initial=initial, ce_params=broken, lam=LAM)
    with pytest.raises(ValueError, match="networks"):
        method_row("fewer", SPEC, data, initial=initial, l1_params=[(w[:2], b[:2]) for w, b in initial], lam=LAM)


def poster_like_table():
    rows = [
        {"method": "Initial", "ce_avg_acc": 37.94, "ce_max_acc": 48.6, "l1_avg_acc": 37.9, "l1_test_loss": 3.2331,
         "l1_sparsity_pct": 0.0, "l1_near_zero_pct": 0.01},
        {"method": "ScaleGMN-B", "ce_avg_acc": 50.3, "ce_max_acc": 55.1, "ce_time_per_net_s": 0.055,
         "l1_avg_acc": 37.4, "l1_test_loss": 1.901, "l1_time_per_net_s": 5.5e-05, "l1_sparsity_pct": 87.6,
         "l1_near_zero_pct": 12.0},
        {"method": "SGD (150 epochs)", "ce_avg_acc": 44.5, "ce_max_acc": 51.4, "ce_time_per_net_s": 357.2,
         "l1_avg_acc": 41.6, "l1_test_loss": 2.07, "l1_time_per_net_s": 1495.0, "l1_sparsity_pct": 70.9},
    ]
    return results_table(rows)


def test_table_schema_and_markdown():
    df = poster_like_table()
    assert list(df.columns) == COLUMNS and len(df) == 3
    check_table_schema(df, required_methods=["Initial", "ScaleGMN-B"])
    assert math.isnan(df.loc[0, "ce_time_per_net_s"]) and math.isnan(df.loc[2, "l1_near_zero_pct"])
    md = to_markdown(df, title="CNN (tanh)")
    lines = md.strip().splitlines()
    assert lines[0] == "## CNN (tanh)"
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 3
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table[2:]}
    assert set(cells) == {"Initial", "ScaleGMN-B", "SGD (150 epochs)"}
    # columns: method, CE avg, CE avg trained, CE max, CE time, L1 avg, L1 avg trained, L1 loss, L1 time, L1 red.,
    # L1 red. trained, near 0
    assert cells["Initial"] == ["Initial", "37.9", "-", "48.6", "-", "37.9", "-", "3.233", "-", "0.0", "-", "0.0"]
    assert cells["ScaleGMN-B"][4] == "0.055" and cells["ScaleGMN-B"][8] == "5.5e-05"
    assert cells["SGD (150 epochs)"][4] == "357" and cells["SGD (150 epochs)"][8] == "1495"
    assert cells["SGD (150 epochs)"][11] == "-"


def test_write_results_writes_markdown_and_csv(tmp_path):
    tables = {"CNN (tanh)": poster_like_table(), "MLP (tanh)": poster_like_table().iloc[:2]}
    paths = write_results(tables, tmp_path / "out", extra_md="Times are seconds per network.")
    md = (tmp_path / "out" / "results.md").read_text()
    assert paths["md"] == tmp_path / "out" / "results.md"
    assert "## CNN (tanh)" in md and "## MLP (tanh)" in md and "Times are seconds per network." in md
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == ["family", *COLUMNS]
    assert csv["family"].tolist() == ["CNN (tanh)"] * 3 + ["MLP (tanh)"] * 2
    assert csv.loc[1, "ce_time_per_net_s"] == pytest.approx(0.055)
    assert math.isnan(csv.loc[0, "ce_time_per_net_s"])
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("breakage, message", [
    (lambda df: df.drop(columns="l1_test_loss"), "missing \\['l1_test_loss'\\]"),
    (lambda df: df.assign(extra=1.0), "unexpected \\['extra'\\]"),
    (lambda df: df[COLUMNS[::-1]], "wrong order"),
    (lambda df: df.iloc[:0], "no rows"),
    (lambda df: pd.concat([df, df.iloc[:1]]), "unique"),
    (lambda df: df.assign(ce_max_acc=[48.6, 155.1, 51.4]), "outside"),
    (lambda df: df.assign(l1_time_per_net_s=["a", "b", "c"]), "numeric"),
])
def test_check_table_schema_rejects_broken_tables(breakage, message):
    with pytest.raises(TableSchemaError, match=message):
        check_table_schema(breakage(poster_like_table()))


def test_check_table_schema_requires_named_rows_and_write_results_refuses_bad_tables(tmp_path):
    with pytest.raises(TableSchemaError, match="SGD \\(25 epochs\\)"):
        check_table_schema(poster_like_table(), required_methods=["SGD (25 epochs)"])
    with pytest.raises(TableSchemaError, match="family 'bad'"):
        write_results({"bad": poster_like_table().drop(columns="method")}, tmp_path)
    assert not (tmp_path / "results.md").exists()
    with pytest.raises(TableSchemaError, match="unknown columns"):
        results_table([{"method": "x", "ce_acc": 1.0}])


def test_sgd_rows_one_per_budget(data, initial):
    def fake(epochs, params, seconds):
        return SGDResult(epochs, params, seconds * 5, seconds, torch.zeros(5, dtype=torch.bool), torch.zeros(5, epochs))

    ce = {25: fake(25, initial, 1.0), 50: fake(50, halved(initial), 2.0)}
    l1 = {25: fake(25, halved(initial), 3.0)}
    rows = sgd_rows(SPEC, data, initial=initial, ce_results=ce, l1_results=l1, lam=LAM)
    df = results_table(rows)
    check_table_schema(df)
    assert df["method"].tolist() == ["SGD (25 epochs)", "SGD (50 epochs)"]
    assert df["ce_time_per_net_s"].tolist() == [1.0, 2.0]
    assert df.loc[0, "l1_sparsity_pct"] == pytest.approx(50.0)
    assert math.isnan(df.loc[1, "l1_sparsity_pct"]) and math.isnan(df.loc[1, "l1_time_per_net_s"])


def test_training_smoothness():
    assert training_smoothness([2.0, 2.0, 2.0]) == 0.0
    # |1-2| + |3-1| = 3 over 2 steps, mean loss 2  ->  0.75
    assert training_smoothness([2.0, 1.0, 3.0]) == pytest.approx(0.75)
    # scale free: the same curve at ten times the loss is just as smooth
    assert training_smoothness([20.0, 10.0, 30.0]) == pytest.approx(0.75)
    assert math.isnan(training_smoothness([1.0, float("nan"), 1.0]))
    with pytest.raises(ValueError):
        training_smoothness([1.0])


def test_spread():
    mean, std = spread([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, pytest.approx(1.0))
    mean, std = spread([4.0])
    assert mean == 4.0 and math.isnan(std)
    with pytest.raises(ValueError):
        spread([])
