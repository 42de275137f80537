"""Bootstrap intervals over held-out networks and seeds, and the three-way verdicts (workbench.measure.uncertainty)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.measure.uncertainty import Bootstrap, Interval, judge


@pytest.mark.parametrize("lo, hi, op, threshold, expected", [
    (8.5, 9.5, ">=", 8.0, "holds"),
    (6.0, 7.5, ">=", 8.0, "fails"),
    (7.5, 8.5, ">=", 8.0, "inconclusive"),
    (-0.3, -0.1, "<", 0.0, "holds"),
    (0.1, 0.3, "<", 0.0, "fails"),
    (0.0, 0.2, ">", 0.0, "inconclusive"),  # touching the threshold is not clear of it
    (math.nan, 1.0, ">", 0.0, "inconclusive"),
    (2.0, math.inf, ">", 1.0, "holds"),
])
def test_judge_has_three_outcomes(lo, hi, op, threshold, expected):
    assert judge(lo, hi, op, threshold) == expected


def test_judge_rejects_an_unknown_comparison():
    with pytest.raises(ValueError, match="unknown comparison"):
        judge(0.0, 1.0, "=>", 0.0)


def test_interval_sign_and_text():
    assert Interval(1.0, 0.5, 1.5).sign("leads", "trails") == "leads"
    assert Interval(-1.0, -1.5, -0.5).sign("leads", "trails") == "trails"
    assert Interval(0.1, -0.5, 0.7).sign("leads", "trails") == "inconclusive"
    assert Interval(0.0, 0.0, 0.0).sign() == "inconclusive"  # an exact tie is no lead
    assert Interval(8.12, 6.9, 9.31).text() == "8.1 [6.9, 9.3]"
    assert Interval(2.0, 1.0, math.inf).text(0) == "2 [1, inf]"


def _clustered(rng, n_networks=40, per_network=4, spread=10.0, noise=1.0, mean=50.0):
    """Entries that share their network's level: the checkpoints of one network are not independent."""
    level = rng.normal(mean, spread, n_networks)
    ids = np.repeat(np.arange(n_networks), per_network)
    values = level[ids] + rng.normal(0, noise, ids.size)
    return ids, values


def test_percentile_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits, trials = 0, 200
    for t in range(trials):
        ids, values = _clustered(rng)
        iv = Bootstrap(ids, draws=400, seed=t).mean_interval(values)
        hits += iv.lo <= 50.0 <= iv.hi
    assert 0.88 <= hits / trials <= 0.99


def test_resampling_whole_networks_widens_the_interval_of_correlated_checkpoints():
    rng = np.random.default_rng(1)
    ids, values = _clustered(rng, per_network=8, spread=10.0, noise=0.1)
    clustered = Bootstrap(ids, draws=2000).mean_interval(values)
    # negative control: treating every checkpoint as its own network pretends to 8x the data
    naive = Bootstrap(np.arange(ids.size), draws=2000).mean_interval(values)
    assert clustered.estimate == pytest.approx(values.mean())
    assert (clustered.hi - clustered.lo) > 2.0 * (naive.hi - naive.lo)


def test_a_paired_difference_is_much_tighter_than_two_separate_intervals():
    rng = np.random.default_rng(2)
    ids, base = _clustered(rng, spread=15.0, noise=0.5)
    better = base + 1.0 + rng.normal(0, 0.5, base.size)
    boot = Bootstrap(ids, draws=2000)
    diff = boot.difference(better, base, key_a="a", key_b="b")
    a, b = boot.mean_interval(better, key="a"), boot.mean_interval(base, key="b")
    assert diff.lo > 0 and diff.sign() == "positive"
    assert (a.lo < b.hi)  # the separate intervals overlap: unpaired, the gain would look inconclusive
    assert (diff.hi - diff.lo) < 0.2 * (a.hi - a.lo)


def test_seeds_widen_the_interval_by_their_spread_and_one_seed_adds_nothing():
    ids = np.repeat(np.arange(30), 3)
    same = np.tile(np.linspace(40, 60, ids.size), (3, 1))  # three seeds that agree
    spread = same + np.array([[-5.0], [0.0], [5.0]])  # three seeds 5 points apart
    boot = Bootstrap(ids, draws=2000)
    agree, differ = boot.mean_interval(same, key="m"), boot.mean_interval(spread, key="m")
    assert agree.seeds == (3,) and agree.estimate == pytest.approx(differ.estimate)
    assert (differ.hi - differ.lo) > 2.0 * (agree.hi - agree.lo)
    one = boot.mean_interval(same[:1], key="m")
    assert one.lo == pytest.approx(agree.lo) and one.hi == pytest.approx(agree.hi)


def test_masks_select_entries_and_draws_are_reproducible():
    ids = np.repeat(np.arange(10), 2)
    values = np.tile([0.0, 100.0], 10)
    mask = np.tile([False, True], 10)
    a = Bootstrap(ids, draws=300, seed=7).mean_interval(values, mask)
    b = Bootstrap(ids, draws=300, seed=7).mean_interval(values, mask)
    assert (a.estimate, a.lo, a.hi) == (100.0, 100.0, 100.0) and a == b
    empty = Bootstrap(ids, draws=50).mean_interval(values, np.zeros(20, dtype=bool))
    assert math.isnan(empty.estimate) and math.isnan(empty.lo)


def test_map_applies_a_function_draw_by_draw():
    ids = np.arange(20)
    boot = Bootstrap(ids, draws=500)
    after, before = np.full(20, 30.0) + np.arange(20) * 0.1, np.full(20, 100.0)
    est, draws = boot.map(lambda a, b: 100 * (1 - a / b), boot.mean(after), boot.mean(before))
    assert est == pytest.approx(100 * (1 - after.mean() / 100.0))
    assert draws.shape == (500,) and np.all(np.isfinite(draws))


@pytest.mark.parametrize("bad", [np.array([]), np.zeros((2, 2))])
def test_bootstrap_needs_a_1d_array_of_network_ids(bad):
    with pytest.raises(ValueError, match="network ids"):
        Bootstrap(bad)


def test_values_must_match_the_entries():
    with pytest.raises(ValueError, match="n_entries = 4"):
        Bootstrap(np.arange(4)).mean(np.zeros(5))
