"""Choosing which Small CNN Zoo checkpoints to import (``steps``): every checkpoint keeps its network's reference
split, ``epoch`` is the step, and the per-checkpoint view of the pipeline sees them."""
import numpy as np
import pandas as pd
import pytest
import torch

from workbench.pipeline import gain_by_checkpoint, get_zoo, trained_mask
from workbench.zoo import ZooError, load_small_cnn_zoo, split_networks

from strategies import write_small_cnn_zoo

STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)  # the published checkpoints


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scz") / "zoo"
    weights, metrics = write_small_cnn_zoo(folder, n_networks=24, steps=STEPS)
    return folder, weights, metrics


def test_every_step_keeps_the_split_of_its_network_at_the_final_step(folder):
    path, weights, metrics = folder
    final = load_small_cnn_zoo(path, activation="tanh")
    every = load_small_cnn_zoo(path, activation="tanh", steps="all")
    assert len(every) == len(STEPS) * len(final) and sorted(every.meta["epoch"].unique()) == list(STEPS)
    split_of = dict(zip(final.meta["net_id"], final.meta["split"]))
    assert (every.meta["split"] == every.meta["net_id"].map(split_of)).all()
    assert (every.meta.groupby("net_id")["epoch"].nunique() == len(STEPS)).all()
    # the reference split over the final checkpoints, whatever the steps chosen
    final_rows = np.flatnonzero(metrics["step"] == 86)
    tanh = metrics["config.activation"].to_numpy()[final_rows] == "tanh"
    assert final.meta["split"].tolist() == split_networks(len(final_rows), 0)[tanh].tolist()
    # each entry holds the weights and the accuracy of its own row
    rows = every.meta["source_row"].to_numpy()
    assert (metrics["modeldir"].to_numpy()[rows] == metrics["modeldir"].to_numpy()[every.meta["net_id"]]).all()
    np.testing.assert_array_equal(every.meta["epoch"], metrics["step"].to_numpy()[rows])
    np.testing.assert_array_equal(every.meta["test_acc"], metrics["test_accuracy"].to_numpy()[rows])
    first_bias = every.params[0][1][:, 0].numpy()  # layout: conv2d bias (16) first in each row
    np.testing.assert_array_equal(first_bias, weights[rows, 0])


def test_a_list_of_steps_and_the_pipeline_view_by_checkpoint(folder, tmp_path):
    path, _, _ = folder
    zoo = get_zoo(tmp_path, "cnn-relu", None, n_networks=1, zoo_epochs=1, zoo_path=str(path), zoo_steps=[0, 20, 86])
    assert sorted(zoo.meta["epoch"].unique()) == [0, 20, 86] and zoo.info["steps"] == [0, 20, 86]
    assert trained_mask(zoo).sum() == 2 * zoo.meta["net_id"].nunique()
    acc = zoo.meta["test_acc"].to_numpy()
    table = gain_by_checkpoint(zoo, acc, acc + 0.01)
    assert table["checkpoint"].tolist() == ["0", "20", "86", "trained", "all"]
    assert np.allclose(table["gain"], 1.0)
    default = get_zoo(tmp_path, "cnn-relu", None, n_networks=1, zoo_epochs=1, zoo_path=str(path))
    assert (default.meta["epoch"] == 86).all()  # the reference's choice by default


def test_steps_that_are_absent_or_unlinkable_are_refused(folder, tmp_path):
    path, _, metrics = folder
    with pytest.raises(ZooError, match=r"no checkpoints at step 5, 7; steps present: \[0, 1, 2, 3, 20"):
        load_small_cnn_zoo(path, activation="tanh", steps=[5, 7, 86])
    with pytest.raises(ZooError, match="steps must be a list of checkpoint steps or 'all'"):
        load_small_cnn_zoo(path, activation="tanh", steps="final")
    plain = tmp_path / "no-modeldir"
    write_small_cnn_zoo(plain, n_networks=4, steps=(0, 86))
    frame = pd.read_csv(plain / "metrics.csv.gz").drop(columns=["modeldir"])
    frame.to_csv(plain / "metrics.csv.gz", index=False, compression="gzip")
    assert len(load_small_cnn_zoo(plain, activation="tanh")) == 2  # the final step alone needs no link
    with pytest.raises(ZooError, match="no 'modeldir' column, which links the checkpoints"):
        load_small_cnn_zoo(plain, activation="tanh", steps="all")


def test_checkpoints_of_networks_without_a_final_one_are_left_out_and_counted(tmp_path):
    path = tmp_path / "crashed"
    weights, metrics = write_small_cnn_zoo(path, n_networks=6, steps=(0, 1, 86))
    crashed = metrics.index[(metrics["modeldir"] == "run0") & (metrics["step"] == 86)]
    keep = np.setdiff1d(np.arange(len(metrics)), crashed)  # run0's training "crashed" before its last checkpoint
    np.save(path / "weights.npy", weights[keep])
    metrics.iloc[keep].to_csv(path / "metrics.csv.gz", index=False, compression="gzip")
    zoo = load_small_cnn_zoo(path, activation="tanh", steps="all")
    assert "run0" not in set(zoo.meta["modeldir"]) and zoo.info["dropped_no_final"] == 2
    assert len(zoo) == 3 * 2  # run2 and run4, 3 checkpoints each
    assert torch.isfinite(zoo.params[0][0]).all()
