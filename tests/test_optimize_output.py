"""What ``python -m workbench optimize`` writes keeps the source zoo's split and says which networks a metanetwork
trained on it saw, in both formats; read back, the optimized zoo scores the same test networks."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.__main__ import main
from workbench.metanet import MetanetConfig
from workbench.training.train_config import TrainConfig, build_model
from workbench.run.zoo_commands import optimize_zoo
from workbench.zoo import Zoo, load_small_cnn_zoo, split_networks
from workbench.zoo.optimized_output import SEEN_COLUMN

from strategies import write_small_cnn_zoo

CONFIG = TrainConfig(epochs=1, batch_networks=4, batch_images=32, device="cpu", meta=MetanetConfig(hidden=4, n_layers=1))


def _model(folder, zoo):
    """An untrained metanetwork for ``zoo``'s networks, saved as train() saves best.pt, its weights perturbed so that
    its one shot changes the networks."""
    torch.manual_seed(0)
    model = build_model(zoo.spec, CONFIG).fit_normalization(zoo.params)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"spec": zoo.spec.to_dict(), "config": CONFIG.to_dict(), "model": model.state_dict()}, folder / "best.pt")
    return folder / "best.pt"


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src") / "zoo"
    write_small_cnn_zoo(folder, n_networks=128, steps=(0, 86))
    zoo = load_small_cnn_zoo(folder, activation="tanh")
    return folder, zoo, _model(tmp_path_factory.mktemp("model"), zoo)


def test_an_optimized_small_cnn_zoo_read_back_keeps_the_source_split(small_zoo, tmp_path):
    folder, zoo, model = small_zoo
    optimize_zoo(model, folder, tmp_path / "out")
    back = load_small_cnn_zoo(tmp_path / "out", activation="tanh")
    assert len(back) == len(zoo) == 64
    assert back.meta["split"].tolist() == zoo.meta["split"].tolist()
    assert back.meta["workbench.net_id"].tolist() == zoo.meta["net_id"].tolist()
    assert back.meta[SEEN_COLUMN].tolist() == (zoo.meta["split"] == "train").tolist()
    # negative control: drawing a split over the output's 64 rows (what reading it back did) puts training networks
    # among the "test" networks
    redrawn = split_networks(len(back), 0)
    moved = int(((redrawn == "test") & (zoo.meta["split"].to_numpy() == "train")).sum())
    assert moved > 0


def test_stale_small_cnn_zoo_columns_are_renamed_and_evaluated_ones_marked(small_zoo, tmp_path, monkeypatch):
    folder, zoo, model = small_zoo
    from workbench import pipeline
    from strategies import tiny_cifar

    monkeypatch.setattr(pipeline, "get_data", lambda *a, **k: tiny_cifar())
    summary = optimize_zoo(model, folder, tmp_path / "out", evaluate=True)
    with gzip.open(tmp_path / "out" / "metrics.csv.gz", "rt") as fh:
        written = pd.read_csv(fh)
    assert {"train_accuracy_before", "train_loss_before", "test_accuracy_before"} <= set(written.columns)
    assert not {"train_accuracy", "train_loss"} & set(written.columns)
    assert written["workbench.evaluated"].all()
    test = (written["workbench.split"] == "test").to_numpy()
    assert summary["avg_acc_after"] == round(100 * float(written["test_accuracy"][test].mean()), 2)
    assert summary["scored_entries"] == int(test.sum()) < len(written)


def test_an_optimized_workbench_zoo_marks_its_training_networks(small_zoo, tmp_path, capsys):
    _, zoo, model = small_zoo
    zoo.save(tmp_path / "zoo")
    assert main(["optimize", str(model), str(tmp_path / "zoo"), "--out", str(tmp_path / "out")]) == 0
    back = Zoo.load(tmp_path / "out")
    assert back.meta["split"].tolist() == zoo.meta["split"].tolist()
    assert back.meta[SEEN_COLUMN].tolist() == (zoo.meta["split"] == "train").tolist()
    assert back.meta[SEEN_COLUMN].any() and not back.meta[SEEN_COLUMN].all()
    assert json.loads((tmp_path / "out" / "optimized.json").read_text())["n_networks"] == len(zoo)
    np.testing.assert_array_equal(back.meta["test_acc_before"], zoo.meta["test_acc"])
