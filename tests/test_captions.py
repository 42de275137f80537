"""Figures that carry their takeaway: every caption is computed from the figure's own data, and the figures mark
what a reader would otherwise misread (exact zeros on a log axis, curves still falling, unlabelled points, a truncated
axis, accuracy on 0-1). Pure figure functions on small frames: fast."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from workbench.reporting.captions import caption_of, names, readable, set_caption, still_improving, title_of
from workbench.records import RunKey


# -- the helpers ---------------------------------------------------------------------------------------------------
def test_still_improving_tells_a_falling_curve_from_a_levelled_one():
    falling = [2.0 / (e + 1) for e in range(10)]  # the last epoch is the best and still moves
    assert still_improving(falling)
    assert not still_improving(falling[:3]), "too short to tell"
    levelled = [1.0, 0.5, 0.3, 0.2] + [0.2 - 1e-6 * k for k in range(1, 6)]  # best at the end, but flat
    assert not still_improving(levelled)
    overfit = [1.0, 0.5, 0.3, 0.35, 0.4, 0.45]  # stopped past its best
    assert not still_improving(overfit)
    assert still_improving([0.1, 0.2, 0.4, 0.6, 0.7], lower_is_better=False)
    assert not still_improving([1.0, float("nan"), 0.9, float("inf")])


def test_caption_round_trip_and_helpers():
    import plotly.graph_objects as go

    fig = set_caption(go.Figure(layout=dict(title="A<br><sup>b</sup>")), "First.", "", "GMN + sym. aug..")
    assert caption_of(fig) == "First. GMN + sym. aug." and caption_of(json.loads(fig.to_json())) == caption_of(fig)
    assert title_of(fig) == "A b" and caption_of({}) == "" and title_of({"layout": {"title": 3}}) == ""
    assert names(["a", "b", "a", "c"]) == "a, b and c" and names([]) == "none"
    assert [readable(v) for v in (72.893, 0.07, 8.0, 12345.6, 1.5e-7, float("nan"))] == \
        ["72.89", "0.07", "8", "12,346", "1.5e-07", "n/a"]


# -- the marks a figure needs ------------------------------------------------------------------------------------------
def test_symmetry_response_labels_exact_zeros_and_counts_them():
    from workbench.viz.results import symmetry_response_figure

    per = pd.DataFrame({"family": ["mlp-tanh"] * 4 + ["cnn-relu"] * 4,
                        "method": ["ScaleGMN-B", "GMN-B (sym. broken)"] * 4,
                        "response": [0.0, 1.2, 0.0, 0.9, 3e-5, 1.1, 2e-5, 1.3]})
    fig = symmetry_response_figure(per)
    axis = fig.layout.yaxis
    assert axis.ticktext[0] == "exactly 0"
    floor = axis.tickvals[0]
    assert floor < 2e-5 / 10, "the zeros' row sits below every non-zero point"
    zeros = [y for t in fig.data for y in t.y if y == floor]
    assert len(zeros) == 2, "each exact zero is drawn on the labelled row"
    assert any("axis break" in a.text for a in fig.layout.annotations)
    caption = caption_of(fig)
    broken = np.median([1.2, 0.9, 1.1, 1.3])
    assert "ScaleGMN-B 1e-05 (exactly 0 in 2 of 4 networks)" in caption
    assert f"GMN-B (sym. broken) {broken:.2g}" in caption
    assert caption.index("ScaleGMN-B") < caption.index("GMN-B (sym. broken)"), "lowest median first"


def _history(losses):
    return [{"epoch": e, "val_loss": v, "val_acc": 0.5 + 0.01 * e, "train_loss": v, "seen_loss": v * 0.9}
            for e, v in enumerate(losses)]


def test_curves_still_falling_are_marked_and_said():
    from workbench.viz.training import generalisation_figure, training_curves_grid

    falling, levelled = _history([2.0 / (e + 1) for e in range(8)]), _history([1.0, 0.6, 0.5, 0.55, 0.6, 0.62])
    histories = {RunKey("mlp-tanh", "ce", "ScaleGMN-B", 0): falling,
                 RunKey("mlp-tanh", "ce", "GMN-B (sym. broken)", 0): levelled}
    grid = training_curves_grid(histories, ["mlp-tanh"], ["ce"])
    arrows = [t for t in grid.data if t.marker.symbol == "arrow-down"]
    assert len(arrows) == 1 and list(arrows[0].x) == [7], "one arrow, at the falling curve's last epoch"
    assert "Still falling" in caption_of(grid) and "ScaleGMN-B seed 0" in caption_of(grid)
    assert "GMN-B (sym. broken) seed" not in caption_of(grid)
    symbols = {t.name: t.marker.symbol for t in grid.data if t.showlegend is not False and "lines" in (t.mode or "")}
    assert symbols == {"ScaleGMN-B": "star", "GMN-B (sym. broken)": "triangle-up"}, "each method its own marker"
    assert "Not converged" in caption_of(generalisation_figure(falling))
    assert "Not converged" not in caption_of(generalisation_figure(levelled))
    assert "epoch 2" in caption_of(generalisation_figure(levelled)), "the best epoch, from the history"
    short = generalisation_figure(_history([1.0]))
    assert "Too few epochs to tell" in caption_of(short) and "levelled" not in caption_of(short)
    assert "Too few epochs per run" in caption_of(training_curves_grid(
        {RunKey("mlp-tanh", "ce", "ScaleGMN-B", 0): _history([1.0, 0.9])}, ["mlp-tanh"], ["ce"]))


def test_an_empty_panel_of_the_curves_grid_says_why():
    from workbench.viz.training import training_curves_grid

    grid = training_curves_grid({RunKey("mlp-tanh", "ce", "ScaleGMN-B", 0): _history([1.0, 0.8, 0.7])},
                                ["mlp-tanh", "cnn-relu"], ["ce", "l1"])
    notes = [(a.xref, a.yref) for a in grid.layout.annotations if "not trained in this run" in (a.text or "")]
    assert notes == [("x2 domain", "y2 domain"), ("x3 domain", "y3 domain"), ("x4 domain", "y4 domain")], \
        "the three panels without a run, and not the one with it"


def _sweep():
    rows = [dict(label="Initial", kind="reference", method="initial", epochs=np.nan, lam=1e-3, acc_trained=80.0,
                 l1_reduction=0.0, chosen=False),
            dict(label="All-zero network", kind="reference", method="zero", epochs=np.nan, lam=1e-3, acc_trained=10.0,
                 l1_reduction=100.0, chosen=False)]
    for lam, acc, red in ((1e-3, 79.5, 20.0), (1e-2, 78.0, 45.0), (1e-1, 30.0, 95.0)):
        rows.append(dict(label="ScaleGMN one shot", kind="one_shot", method="scalegmn", epochs=np.nan, lam=lam,
                         acc_trained=acc, l1_reduction=red, chosen=lam == 1e-2))
        for epochs in (1, 5):
            rows.append(dict(label=f"SGD ({epochs} epochs)", kind="sgd", method="sgd", epochs=epochs, lam=lam,
                             acc_trained=acc - epochs, l1_reduction=red / 2, chosen=False))
    return pd.DataFrame(rows)


def test_lam_pareto_labels_every_point_and_marks_the_cliff():
    from workbench.viz.training import lam_pareto_figure

    fig = lam_pareto_figure(_sweep())
    texts = [x for t in fig.data for x in (t.text or [])]
    assert {"λ=0.001", "λ=0.01", "λ=0.1"} <= set(texts)
    assert {"1 ep, λ=0.1", "5 ep, λ=0.001"} <= set(texts), "SGD points carry their budget and lambda"
    notes = [a.text for a in fig.layout.annotations]
    assert notes == ["no λ tried between 0.01 and 0.1"]
    caption = caption_of(fig)
    assert "Chosen λ = 0.01" in caption and "45.0 % L1-norm reduction at 78.0 % accuracy" in caption
    assert "-48.0 points" in caption and "a cliff" in caption
    same = _sweep()
    same.loc[same["kind"] == "one_shot", ["acc_trained", "l1_reduction"]] = [80.0, 0.0]  # a one shot that did nothing
    texts = list(lam_pareto_figure(same).data[0].text)
    assert texts == ["λ=0.001, 0.01, 0.1", "", ""], "labels of points on one spot are merged, not piled up"
    assert "no cliff" in caption_of(lam_pareto_figure(same))


def test_scaling_shows_spread_and_an_axis_from_zero():
    from workbench.viz.training import scaling_figure

    runs = pd.DataFrame({"family": "mlp-tanh", "train_networks": [10, 10, 100, 100], "seed": [0, 1, 0, 1],
                         "gain_trained": [3.0, 4.0, 6.0, 8.0]})
    curves = pd.DataFrame({"family": "mlp-tanh", "train_networks": [10, 100], "seed": [0, 0], "step": [1, 1],
                           "test_gain_val_images": [1.0, 2.0]})
    fig = scaling_figure(runs, curves)
    low, high = fig.layout.yaxis.range
    assert low <= 0 < 8 <= high, "the gain axis includes 0"
    mean = next(t for t in fig.data if "mean" in t.name)
    assert list(mean.error_y.array) == [0.5, 1.0], "bars from the mean to the highest seed"
    assert "do not overlap" in caption_of(fig)
    assert "+3.50 points at the smallest, +7.00 at the largest" in caption_of(fig)
    one_seed = scaling_figure(runs[runs["seed"] == 0], curves)
    assert "One seed per size" in caption_of(one_seed)
    assert "trained" not in caption_of(fig).split("largest.")[1][:40], "no step sentence without a steps column"
    uneven = scaling_figure(runs.assign(steps=[504, 504, 768, 768]), curves)
    assert "The largest size trained 768 steps against 504" in caption_of(uneven)
    assert "The largest size trained" not in caption_of(scaling_figure(runs.assign(steps=500), curves))


def test_zoo_figures_show_accuracy_in_percent():
    from workbench.viz.zoo import accuracy_distribution_figure, hparam_accuracy_figure

    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"family": "mlp-tanh", "net_id": np.repeat(np.arange(20), 2), "epoch": [0, 3] * 20,
                         "split": "train", "test_acc": rng.uniform(0.1, 0.9, 40),
                         "lr": np.repeat(rng.uniform(1e-3, 1e-1, 20), 2),
                         "optimizer": np.repeat(rng.choice(["adam", "sgd"], 20), 2)})
    dist = accuracy_distribution_figure({"mlp-tanh": meta})
    assert max(np.max(t.y) for t in dist.data) > 1, "accuracy drawn in %, not on 0-1"
    assert "(%)" in dist.layout.yaxis.title.text
    hp = hparam_accuracy_figure({"mlp-tanh": meta}, hparams=("lr", "optimizer"), cols=2)
    medians = [t for t in hp.data if "median" in t.name]
    assert len(medians) == 2 and all(np.max(t.y) > 1 for t in medians)
    assert all(np.max(t.y) > 1 for t in hp.data)
    rho = meta[meta["epoch"] == 3]["lr"].corr(meta[meta["epoch"] == 3]["test_acc"], method="spearman")
    assert f"lr (rank correlation {rho:+.2f})" in caption_of(hp)


def test_gauge_l1_caption_states_the_finding_with_its_counts():
    from workbench.nets import small_cnn_zoo_spec
    from workbench.viz.gauge import gauge_l1_figure

    frame = pd.DataFrame({"network": [0, 1], "removed_by_channels_pct": [40.0, 44.0],
                          "removed_by_neurons_pct": [42.0, 46.0]})
    spec = small_cnn_zoo_spec("relu")
    caption = caption_of(gauge_l1_figure(frame, spec))
    n_channels = sum(spec.hidden_widths)
    assert f"{n_channels:,} channel scalings" in caption and "42.0 %" in caption and "44.0 %" in caption
    assert "remove 95 % of what the neuron scalings do" in caption  # 84 / 88
    assert "times fewer scalings" in caption
    assert not re.search(r"\d channel scalings", caption_of(gauge_l1_figure(frame))), "no spec: no counts invented"


@pytest.mark.parametrize("reached", [True, False])
def test_matched_compute_caption_reads_the_ratio_and_interval(reached):
    from workbench.viz.results import matched_compute_figure

    curves = pd.DataFrame({"family": "mlp-tanh", "start": "initial", "step": [1, 2], "lr": 0.1,
                           "seconds_per_net": [0.01, 0.02], "acc_trained": [60.0, 70.0], "epochs": [0.5, 1.0]})
    matched = pd.DataFrame([{"family": "mlp-tanh", "method": "ScaleGMN-B", "lr": 0.1, "one_shot_acc_value": 65.0,
                             "one_shot_acc_lo": 64.0, "one_shot_acc_hi": 66.0, "one_shot_s_per_net": 0.004,
                             "sgd_seconds_per_net_value": 0.015 if reached else float("nan"),
                             "steps_value": 1.5, "ratio_value": 3.75, "ratio_lo": 2.5, "ratio_hi": 5.0,
                             "reached": reached, "max_steps": 2}])
    caption = caption_of(matched_compute_figure(curves, matched))
    if reached:
        assert "mlp-tanh ScaleGMN-B 3.8 [2.5, 5.0]" in caption  # to the precision of its interval
        assert "whole interval above 1: mlp-tanh ScaleGMN-B" in caption
    else:
        assert "SGD never reaches it within 2 steps" in caption


def test_every_saved_figure_page_has_title_caption_and_way_back(tmp_path):
    """save_figure writes the page a reader lands on: heading, caption, the plot drawn with the local plotly.js,
    a link back to the run's index -- and nothing fetched from the network."""
    import plotly.graph_objects as go

    from workbench.notebook import save_figure

    fig = set_caption(go.Figure(go.Bar(x=["a"], y=[1]), layout=dict(title="Tall bars<br><sup>sub</sup>")),
                      "Bar a is 1 high.")
    written = save_figure(fig, tmp_path / "run", "01_bars", png=False)
    page = written["html"].read_text()
    assert "<h1>Tall bars</h1>" in page and '<p class="subtitle muted">sub</p>' in page
    assert '<p class="caption">Bar a is 1 high.</p>' in page
    assert '<a href="../index.html" rel="up">' in page and '<script src="plotly.min.js"></script>' in page
    assert '<meta name="generator" content="workbench figure page">' in page
    assert "cdn.plot.ly" not in page and "https://cdn" not in page
    assert json.loads(written["json"].read_text())["layout"]["title"]["text"] == "Tall bars<br><sup>sub</sup>"
