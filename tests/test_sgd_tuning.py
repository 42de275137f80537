"""SGD's learning rate tuned on validation networks (workbench.baselines.warmstart.tune_sgd_lr), on a tiny real zoo."""
from __future__ import annotations


import pytest

from workbench import pipeline
from workbench.baselines.sgd import sgd_finetune
from workbench.data import load_dataset
from workbench.nets import NetSpec
from workbench.objective import evaluate
from workbench.baselines.warmstart import tune_sgd_lr
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
