"""One score for a set of held-out networks (workbench.measure.score): the shared metrics, by one name each, with
intervals."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data import load_dataset
from workbench.nets import NetSpec, init_params, map_params
from workbench.objective import evaluate, l1_reduction, share_near_zero
from workbench.measure.score import METRICS, score
from workbench.measure.uncertainty import Bootstrap
from workbench.zoo import Zoo
from workbench.zoo.container import META_COLUMNS

SPEC = NetSpec.mlp((64, 6, 10), "relu")
LAM = 0.01


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def entries():
    """6 networks x 2 checkpoints (epoch 0 and 3) as a Zoo."""
    params = init_params(SPEC, 12, torch.Generator().manual_seed(0))
    meta = pd.DataFrame({"net_id": np.repeat(np.arange(6), 2), "epoch": np.tile([0, 3], 6), "split": "test"})
    for c in META_COLUMNS[3:]:
        meta[c] = 0
    return Zoo(SPEC, params, meta, "digits")


def test_every_metric_equals_its_direct_computation(entries, digits):
    new = map_params(lambda t: t * 0.5, entries.params)
    s = score(entries, digits, new, lam=LAM, seconds_per_net=0.25)
    x, y = digits.split("test")
    m = evaluate(SPEC, new, x, y, LAM)
    trained = entries.meta["epoch"].to_numpy() >= 1
    assert set(s.summary()) == set(METRICS)
    assert s.value("acc") == pytest.approx(100 * float(m["acc"].double().mean()))
    assert s.value("acc_trained") == pytest.approx(100 * float(m["acc"][torch.as_tensor(trained)].double().mean()))
    assert s.value("acc_max") == pytest.approx(100 * float(m["acc"].max()))
    assert s.value("loss") == pytest.approx(float(m["loss"].double().mean()), rel=1e-6)
    assert s.value("l1_reduction") == pytest.approx(50.0, abs=1e-4)
    assert s.value("l1_reduction") == pytest.approx(l1_reduction(entries.params, new), abs=1e-4)
    assert s.value("near_zero") == pytest.approx(share_near_zero(new))
    assert s.seconds_per_net == 0.25 and s.seeds == 1


def test_the_networks_as_they_are_score_zero_reduction_and_seeds_average(entries, digits):
    initial = score(entries, digits, lam=LAM)
    assert initial.value("l1_reduction") == pytest.approx(0.0, abs=1e-9)
    shrunk = [map_params(lambda t, f=f: t * f, entries.params) for f in (0.5, 0.7)]
    both = score(entries, digits, shrunk, lam=LAM)
    assert both.seeds == 2
    assert both.value("l1_reduction") == pytest.approx(40.0, abs=1e-4)  # the mean of 50 % and 30 %
    assert both.seed(1).value("l1_reduction") == pytest.approx(30.0, abs=1e-4)
    assert both.value("acc") == pytest.approx((both.seed(0).value("acc") + both.seed(1).value("acc")) / 2)


def test_intervals_contain_the_estimate_and_only_averaged_metrics_have_one(entries, digits):
    s = score(entries, digits, map_params(lambda t: t * 0.5, entries.params), lam=LAM)
    boot = Bootstrap(entries.meta["net_id"].to_numpy(), draws=300)
    for metric in ("acc", "acc_trained", "loss", "l1_reduction", "l1_reduction_trained"):
        iv = s.interval(metric, boot)
        assert iv.lo <= iv.estimate <= iv.hi, metric
        assert iv.estimate == pytest.approx(s.value(metric))
    assert math.isnan(s.interval("acc_max", boot).lo)  # an extreme, not a mean
    with pytest.raises(ValueError, match="unknown metric"):
        s.value("avg_acc")


def test_refuses_non_finite_or_mismatched_parameters(entries, digits):
    bad = map_params(lambda t: t.clone(), entries.params)
    bad[0][0][3, 0, 0] = float("nan")
    with pytest.raises(Exception, match="finite|NaN|non-finite"):
        score(entries, digits, bad)
    with pytest.raises(ValueError, match="12"):
        score(entries, digits, [(w[:5], b[:5]) for w, b in entries.params])
