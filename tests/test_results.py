"""The results table: typed rows scored by workbench.measure.score, found by their key columns, nothing invented."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.nets import NetSpec, init_params
from workbench.reporting.results import (
    COLUMNS, TableSchemaError, check_table_schema, find_row, results_table, spread, table_row, to_markdown,
    training_smoothness, write_results,
)
from workbench.measure.score import score
from workbench.measure.uncertainty import Bootstrap
from workbench.zoo import Zoo
from workbench.zoo.container import META_COLUMNS

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
def entries():
    """5 networks x 2 checkpoints (epoch 0 and 2)."""
    params = init_params(SPEC, 10, torch.Generator().manual_seed(3))
    meta = pd.DataFrame({"net_id": np.repeat(np.arange(5), 2), "epoch": np.tile([0, 2], 5), "split": "test"})
    for c in META_COLUMNS[3:]:
        meta[c] = 0
    return Zoo(SPEC, params, meta, "stand-in")


@pytest.fixture(scope="module")
def boot(entries):
    return Bootstrap(entries.meta["net_id"].to_numpy(), draws=200)


def halved(params):
    return [(w / 2, b / 2) for w, b in params]


def test_a_row_carries_its_key_columns_and_the_scores_metrics_with_intervals(entries, data, boot):
    ce = score(entries, data, [(w * 1.5, b) for w, b in entries.params], seconds_per_net=0.5)
    l1 = score(entries, data, halved(entries.params), lam=LAM, seconds_per_net=2.0)
    row = table_row("Made up", "one_shot", "scalegmn", boot=boot, ce=ce, l1=l1)
    assert list(row) == COLUMNS
    assert (row["label"], row["kind"], row["method"], row["seeds"]) == ("Made up", "one_shot", "scalegmn", 1)
    assert math.isnan(row["epochs"]) and math.isnan(row["lr"])
    assert row["ce_acc"] == pytest.approx(ce.value("acc")) and row["ce_acc_max"] == pytest.approx(ce.value("acc_max"))
    assert row["l1_loss"] == pytest.approx(l1.value("loss")) and row["l1_reduction"] == pytest.approx(50.0)
    for name in ("ce_acc_trained", "l1_acc_trained", "l1_loss", "l1_reduction_trained"):
        assert row[f"{name}_lo"] <= row[name] <= row[f"{name}_hi"], name
    assert (row["ce_seconds_per_net"], row["l1_seconds_per_net"]) == (0.5, 2.0)


def test_missing_measurements_stay_missing(entries, data, boot):
    row = table_row("SGD (5 epochs)", "sgd", "sgd", boot=boot, epochs=5, lr=0.1, ce=score(entries, data))
    for c in ("l1_acc", "l1_loss", "l1_seconds_per_net", "l1_reduction", "l1_near_zero", "ce_seconds_per_net"):
        assert math.isnan(row[c]), c
    assert (row["epochs"], row["lr"]) == (5, 0.1) and not math.isnan(row["ce_acc"])
    with pytest.raises(TableSchemaError, match="unknown row kind"):
        table_row("x", "magic", "x", boot=boot)


def _table(entries, data, boot):
    initial = score(entries, data, lam=LAM)
    return results_table([
        table_row("Initial", "reference", "initial", boot=boot, ce=initial, l1=initial),
        table_row("ScaleGMN-B", "one_shot", "scalegmn", boot=boot,
                  ce=score(entries, data, halved(entries.params), seconds_per_net=0.055)),
        table_row("SGD (5 epochs)", "sgd", "sgd", boot=boot, epochs=5, lr=0.1,
                  ce=score(entries, data, halved(halved(entries.params)), seconds_per_net=357.2)),
        table_row("SGD (20 epochs)", "sgd", "sgd", boot=boot, epochs=20, lr=0.1,
                  ce=score(entries, data, seconds_per_net=1495.0)),
    ])


def test_rows_are_found_by_their_key_columns_not_their_label(entries, data, boot):
    table = _table(entries, data, boot)
    assert find_row(table, kind="one_shot", method="scalegmn")["label"] == "ScaleGMN-B"
    assert find_row(table, kind="sgd", epochs=20)["ce_seconds_per_net"] == 1495.0
    assert find_row(table, kind="balanced", method="scalegmn") is None
    relabelled = table.assign(label=[f"row {i}" for i in range(len(table))])  # labels are for display only
    assert find_row(relabelled, kind="sgd", epochs=5)["ce_seconds_per_net"] == pytest.approx(357.2)
    with pytest.raises(TableSchemaError, match="2 rows match"):
        find_row(table, kind="sgd")
    with pytest.raises(TableSchemaError, match="key columns"):
        find_row(table, label="Initial")


def test_markdown_shows_intervals_and_marks_what_was_not_measured(entries, data, boot):
    table = _table(entries, data, boot)
    md = to_markdown(table, title="MLP (relu)")
    lines = md.strip().splitlines()
    assert lines[0] == "## MLP (relu)" and len([line for line in lines if line.startswith("|")]) == 2 + 4
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines[4:]}
    init = table.iloc[0]
    assert cells["Initial"][2] == (f"{init['ce_acc_trained']:.1f} [{init['ce_acc_trained_lo']:.1f}, "
                                   f"{init['ce_acc_trained_hi']:.1f}]")
    assert cells["Initial"][4] == "-"  # no time for the networks as they are
    assert cells["ScaleGMN-B"][4] == "0.055" and cells["SGD (5 epochs)"][4] == "357"
    assert cells["SGD (20 epochs)"][4] == "1495" and cells["SGD (5 epochs)"][5] == "-"


def test_write_results_writes_markdown_and_csv_atomically(entries, data, boot, tmp_path):
    tables = {"mlp-relu": _table(entries, data, boot), "other": _table(entries, data, boot).iloc[:2]}
    paths = write_results(tables, tmp_path / "out", extra_md="Times are seconds per network.")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## mlp-relu" in md and "## other" in md and "Times are seconds per network." in md
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == ["family", *COLUMNS] and csv["family"].tolist() == ["mlp-relu"] * 4 + ["other"] * 2
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("breakage, message", [
    (lambda df: df.drop(columns="l1_loss"), "missing \\['l1_loss'\\]"),
    (lambda df: df.assign(extra=1.0), "unexpected \\['extra'\\]"),
    (lambda df: df[COLUMNS[::-1]], "wrong order"),
    (lambda df: df.iloc[:0], "no rows"),
    (lambda df: pd.concat([df, df.iloc[:1]]), "unique"),
    (lambda df: df.assign(label=["a", "b", "c", "c"]), "labels must be unique"),
    (lambda df: df.assign(kind="guess"), "unknown row kinds"),
    (lambda df: df.assign(ce_acc_max=[48.6, 155.1, 51.4, 1.0]), "outside"),
    (lambda df: df.assign(l1_seconds_per_net=["a", "b", "c", "d"]), "numeric"),
])
def test_check_table_schema_rejects_broken_tables(entries, data, boot, breakage, message):
    with pytest.raises(TableSchemaError, match=message):
        check_table_schema(breakage(_table(entries, data, boot)))


def test_write_results_refuses_bad_tables(entries, data, boot, tmp_path):
    with pytest.raises(TableSchemaError, match="family 'bad'"):
        write_results({"bad": _table(entries, data, boot).drop(columns="label")}, tmp_path)
    assert not (tmp_path / "results.md").exists()
    with pytest.raises(TableSchemaError, match="unknown columns"):
        results_table([{"label": "x", "ce_avg_acc": 1.0}])


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
