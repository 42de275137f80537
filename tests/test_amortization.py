"""Matched compute, the per-start warm start and SGD counted in steps (workbench.baselines.amortization,
baselines.sgd_steps), on a tiny real zoo of digits networks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench import pipeline
from workbench.baselines.amortization import (
    best_lr, fastest_lr, matched_compute, sgd_grid, step_grid, steps_to_reach, warm_start,
)
from workbench.baselines.sgd import sgd_finetune, sgd_steps
from workbench.data import load_dataset
from workbench.nets import NetSpec
from workbench.objective import evaluate
from workbench.measure.score import score
from workbench.measure.uncertainty import Bootstrap
from workbench.zoo import generate

SPEC = NetSpec.mlp((64, 6, 10), "tanh")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def zoo(digits):
    return generate(SPEC, digits, 24, epochs=2, checkpoints=[0, 1], seed=0, progress=False)


class RecordingData:
    """The digits data set, recording which splits were read."""

    def __init__(self, data):
        self.data, self.splits = data, []

    def split(self, name):
        self.splits.append(name)
        return self.data.split(name)


def test_step_grid_is_log_spaced_from_one_step_and_holds_every_whole_epoch():
    steps = step_grid(34, 17, epochs=2)
    assert steps[:5] == (0, 1, 2, 3, 4) and steps[-1] == 34 and 17 in steps
    assert list(steps) == sorted(set(steps))
    ratios = np.diff(steps[4:]) / np.array(steps[4:-1])
    assert ratios.max() < 0.6  # about 1.4x apart once past the first steps
    with pytest.raises(ValueError):
        step_grid(0, 17)


def test_sgd_steps_runs_the_same_minibatches_as_sgd_finetune(zoo, digits):
    test = pipeline.test_networks(zoo, 3)
    snaps = sgd_steps(SPEC, test.params, digits, steps=[0, 5, 17, 34], lr=0.1, seed=3)
    epochs = sgd_finetune(SPEC, test.params, digits, epochs=(1, 2), lr=0.1, seed=3, progress=False)
    assert snaps.steps_per_epoch == 17 and snaps.seconds_per_network_step > 0
    for step, epoch in ((17, 1), (34, 2)):
        for (a, _), (b, _) in zip(snaps.params[step], epochs[epoch].params):
            assert torch.equal(a, b)
    for (a, _), (b, _) in zip(snaps.params[0], test.params):
        assert torch.equal(a, b)
    seen = []
    sgd_steps(SPEC, test.params, digits, steps=[2, 4], lr=0.1, observe=lambda k, p, part: seen.append((k, part)))
    assert seen == [(2, slice(0, len(test))), (4, slice(0, len(test)))]
    # networks in chunks (as a small memory budget makes them): independent runs, the same result up to the float
    # rounding of matrix products over fewer networks
    chunked = sgd_steps(SPEC, test.params, digits, steps=[5, 17], lr=0.1, seed=3, net_chunk=2)
    for step in (5, 17):
        for (a, _), (b, _) in zip(chunked.params[step], snaps.params[step]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_grid_equals_one_separate_run_per_start_and_rate(zoo, digits):
    test = pipeline.test_networks(zoo, 2)
    shifted = [(w * 0.8, b) for w, b in test.params]
    grid = sgd_grid(test, {"initial": test.params, "shifted": shifted}, [0.03, 0.1], digits, steps=[0, 3, 17],
                    split="test", seed=1)
    chunked = sgd_grid(test, {"initial": test.params, "shifted": shifted}, [0.03, 0.1], digits, steps=[0, 3, 17],
                       split="test", seed=1, net_chunk=5)  # chunks that cut across starts and rates
    np.testing.assert_array_equal(chunked.acc, grid.acc)
    x, y = digits.split("test")
    for name, start in (("initial", test.params), ("shifted", shifted)):
        for lr in (0.03, 0.1):
            alone = sgd_steps(SPEC, start, digits, steps=[3], lr=lr, seed=1).params[3]
            want = 100 * evaluate(SPEC, alone, x, y)["acc"].double().numpy()
            np.testing.assert_allclose(grid.curve(name, lr)[1], want, atol=1e-9)
    np.testing.assert_allclose(grid.at_epoch("initial", 0.1, 1), grid.curve("initial", 0.1)[2])
    with pytest.raises(ValueError, match="epoch 2"):
        grid.at_epoch("initial", 0.1, 2)


@pytest.mark.parametrize("curve, target, expected", [
    ([10, 20, 40, 80], 30, 3.0),  # between steps 2 (20 %) and 4 (40 %): halfway, in steps
    ([10, 20, 40, 80], 5, 0.0),  # the start already reaches it
    ([10, 20, 40, 80], 90, math.inf),  # never within the recorded steps
    ([10, 50, 40, 80], 45, 1.75),  # the first crossing counts: between steps 0 (10 %) and 2 (50 %)
])
def test_steps_to_reach_interpolates_between_recorded_steps(curve, target, expected):
    steps = [0, 2, 4, 8]
    assert steps_to_reach(steps, np.array(curve, float), target) == pytest.approx(expected)
    assert math.isnan(steps_to_reach(steps, np.array(curve, float), math.nan))


def test_matched_compute_recovers_a_one_shot_that_is_sgd_in_disguise(zoo, digits):
    """A "one shot" that is exactly k SGD steps at the grid's best rate must be matched at about k steps, and its
    cost ratio must be k x (SGD seconds per step) / its own time."""
    test, val = pipeline.test_networks(zoo), pipeline.test_networks(zoo, split="val")
    k, lr = 6, 0.1
    fake_test = sgd_steps(SPEC, test.params, digits, steps=[k], lr=lr).params[k]
    fake_val = sgd_steps(SPEC, val.params, digits, steps=[k], lr=lr).params[k]
    steps = step_grid(34, 17, epochs=2)
    grids = {s: sgd_grid(e, {"initial": e.params}, [0.01, lr], digits, steps=steps, split=s)
             for s, e in (("val", val), ("test", test))}
    one = score(test, digits, fake_test, seconds_per_net=1e-3)
    val_mask = val.meta["epoch"].to_numpy() >= 1
    target = score(val, digits, fake_val, split="val").value("acc_trained")
    boot = Bootstrap(test.meta["net_id"].to_numpy(), draws=300)
    m = matched_compute("fake", one, target, grids["val"], grids["test"], val_mask, boot, seconds_per_step=1e-4,
                        train_seconds=10.0)
    assert m.lr == lr  # the rate that reaches it fastest on validation networks
    assert m.steps.estimate == pytest.approx(k, abs=1.0)  # recorded steps 4, 6, 8: 6 is on the grid
    assert m.ratio.estimate == pytest.approx(m.steps.estimate * 1e-4 / 1e-3)
    assert m.steps.lo <= m.steps.estimate <= m.steps.hi
    assert m.reached and m.break_even.estimate == math.inf  # SGD is cheaper per network: it never pays
    dear = matched_compute("fake", one, target, grids["val"], grids["test"], val_mask, boot, seconds_per_step=1e-3,
                           train_seconds=10.0, zoo_seconds=5.0)  # SGD ten times dearer per step: now it pays
    saved = dear.steps.estimate * 1e-3 - 1e-3
    assert dear.break_even.estimate == pytest.approx(10.0 / saved)
    assert dear.break_even_with_zoo.estimate == pytest.approx(15.0 / saved)
    row = m.row()
    assert {"steps_value", "ratio_lo", "break_even_hi"} <= set(row)


def test_the_learning_rate_is_chosen_on_validation_images_only(zoo, digits):
    val = pipeline.test_networks(zoo, 4, split="val")
    data = RecordingData(digits)
    grid = sgd_grid(val, {"initial": val.params}, [0.001, 0.1], data, steps=[0, 17], split="val")
    assert "test" not in data.splits
    mask = val.meta["epoch"].to_numpy() >= 1
    assert best_lr(grid, "initial", 1, mask) == 0.1  # 0.001 barely moves in one epoch
    low = float(grid.curve("initial", 0.001)[:, mask].mean(1)[-1])
    assert fastest_lr(grid, "initial", low, mask) == 0.1  # both reach it; 0.1 in fewer steps


def test_warm_start_chooses_each_starts_rate_for_itself(zoo, digits):
    test, val = pipeline.test_networks(zoo), pipeline.test_networks(zoo, split="val")
    # a start that needs a small rate: the networks scaled up (tanh saturates, a big rate overshoots)
    scaled = {"test": [(w * 3, b * 3) for w, b in test.params], "val": [(w * 3, b * 3) for w, b in val.params]}
    steps = [0, 17]
    grids = {s: sgd_grid(e, {"initial": e.params, "scaled": scaled[s]}, [0.003, 0.3], digits, steps=steps, split=s)
             for s, e in (("val", val), ("test", test))}
    vm, tm = val.meta["epoch"].to_numpy() >= 1, test.meta["epoch"].to_numpy() >= 1
    boot = Bootstrap(test.meta["net_id"].to_numpy(), draws=300)
    w = warm_start("scaled", 1, grids["val"], grids["test"], vm, tm, boot)
    assert w.lr == best_lr(grids["val"], "scaled", 1, vm) and w.reference_lr == best_lr(grids["val"], "initial", 1, vm)
    assert w.difference.estimate == pytest.approx(w.acc.estimate - w.reference_acc.estimate)
    assert w.outcome in ("leads", "trails", "inconclusive")
    assert w.difference.lo <= w.difference.estimate <= w.difference.hi
