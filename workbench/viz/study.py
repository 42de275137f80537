"""Figures of notebook 07: the lambda sweep's accuracy-vs-sparsity trade-off and the scaling study (plotly), each
with its caption (:mod:`workbench.reporting.captions`). Re-exported by :mod:`.training`, where they used to live."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..reporting.captions import names, num, plural, set_caption
from .style import PALETTE

__all__ = ["lam_pareto_figure", "scaling_figure"]

SGD_SYMBOLS = ("square", "circle", "pentagon", "hexagon", "cross")
#: an accuracy change between neighbouring lambdas of at least this many points is a cliff the sweep does not resolve
CLIFF_POINTS = 2.0


def lam_pareto_figure(sweep, title: str = "L1 objective: accuracy vs L1-norm reduction (validation networks)") -> go.Figure:
    """Accuracy on trained checkpoints against L1-norm reduction: one marker per (method, lam) of
    :func:`workbench.pipeline.lam_sweep`, every point labelled -- the one shot's with its lambda, SGD's with its
    budget and lambda -- the one-shot points of the lambdas joined, SGD's joined per budget; the initial and the
    all-zero network as reference points; the chosen lambda circled. The widest accuracy gap between neighbouring
    lambdas of the one shot is marked: the sweep says nothing about the trade-off inside it."""
    fig = go.Figure()
    one = sweep[sweep["kind"] == "one_shot"].sort_values("lam")
    fig.add_trace(go.Scatter(x=one["l1_reduction"], y=one["acc_trained"], mode="lines+markers+text",
                             text=_merged_labels(one, lambda r: f"{r['lam']:g}", "λ="), textposition="top right",
                             name="ScaleGMN one shot",
                             marker=dict(size=12, color=PALETTE[0], symbol="star"), line=dict(color=PALETTE[0])))
    for i, (epochs, sub) in enumerate(sweep[sweep["kind"] == "sgd"].groupby("epochs", sort=True)):
        sub = sub.sort_values("lam")
        fig.add_trace(go.Scatter(x=sub["l1_reduction"], y=sub["acc_trained"], mode="lines+markers+text",
                                 name=sub["label"].iloc[0], textfont=dict(size=10),
                                 # labels alternate below and above the points: neighbours' labels never overlap
                                 textposition=[("bottom right", "top right")[k % 2] for k in range(len(sub))],
                                 text=_merged_labels(sub, lambda r: f"{r['lam']:g}", f"{int(epochs)} ep, λ="),
                                 marker=dict(size=9, symbol=SGD_SYMBOLS[i % len(SGD_SYMBOLS)],
                                             color=PALETTE[(i + 2) % len(PALETTE)]), line=dict(dash="dot")))
    for method, symbol, where in (("initial", "diamond", "bottom right"), ("zero", "x", "middle left")):
        ref = sweep[sweep["method"] == method].iloc[:1]
        fig.add_trace(go.Scatter(x=ref["l1_reduction"], y=ref["acc_trained"], mode="markers+text",
                                 name=ref["label"].iloc[0], text=list(ref["label"]), textposition=where,
                                 marker=dict(size=12, symbol=symbol, color="black")))
    chosen = sweep[sweep["chosen"].astype(bool)]
    if len(chosen):
        fig.add_trace(go.Scatter(x=chosen["l1_reduction"], y=chosen["acc_trained"], mode="markers",
                                 name=f"chosen λ = {chosen['lam'].iloc[0]:g}",
                                 marker=dict(size=24, symbol="circle-open", color="black", line=dict(width=2))))
    gap = _widest_gap(one)
    if gap is not None and abs(gap[1]["acc_trained"] - gap[0]["acc_trained"]) >= CLIFF_POINTS:
        a, b = gap
        fig.add_annotation(x=(a["l1_reduction"] + b["l1_reduction"]) / 2, y=(a["acc_trained"] + b["acc_trained"]) / 2,
                           text=f"no λ tried between {a['lam']:g} and {b['lam']:g}", showarrow=True, arrowhead=0,
                           ax=60, ay=-30, font=dict(size=11, color="#555555"))
    fig.update_layout(title=title, xaxis_title="L1-norm reduction (%)", yaxis_title="accuracy on trained checkpoints (%)",
                      template="plotly_white", height=520, legend=dict(orientation="h", y=-0.2))
    return set_caption(fig, _pareto_caption(sweep, one, chosen, gap))


def _merged_labels(points, value, prefix: str) -> list[str]:
    """One label per point, ``prefix + value``; points that sit on the same spot (within 0.5 on both axes, in
    order) share one label listing their values, so labels never pile up on each other."""
    labels, anchor, first = [], None, 0
    for _, row in points.iterrows():
        spot = (row["l1_reduction"], row["acc_trained"])
        if anchor is not None and abs(spot[0] - anchor[0]) < 0.5 and abs(spot[1] - anchor[1]) < 0.5:
            labels[first] += f", {value(row)}"
            labels.append("")
            continue
        anchor, first = spot, len(labels)
        labels.append(prefix + value(row))
    return labels


def _widest_gap(one):
    """The neighbouring one-shot lambdas with the largest accuracy change between them (None with fewer than 2)."""
    if len(one) < 2:
        return None
    steps = one["acc_trained"].diff().abs().to_numpy()[1:]
    k = int(np.nanargmax(steps)) if np.isfinite(steps).any() else 0
    return one.iloc[k], one.iloc[k + 1]


def _pareto_caption(sweep, one, chosen, gap) -> str:
    initial = sweep[sweep["method"] == "initial"]
    budgets = sorted(sweep.loc[sweep["kind"] == "sgd", "epochs"].unique())
    parts = [f"Validation networks; {len(one)} lambdas ({names(f'{v:g}' for v in one['lam'])}) for the one shot, "
             f"SGD at {names(plural(e, 'epoch') for e in budgets)} for each lambda."]
    if len(chosen):
        c = chosen.iloc[0]
        drop = (float(initial["acc_trained"].iloc[0]) - c["acc_trained"]) if len(initial) else float("nan")
        parts.append(f"Chosen λ = {c['lam']:g} (the largest keeping the accuracy drop within the limit): "
                     f"{num(c['l1_reduction'])} % L1-norm reduction at {num(c['acc_trained'])} % accuracy, "
                     f"{num(drop, 1)} points below the initial networks.")
    if gap is not None:
        a, b = gap
        step = b["acc_trained"] - a["acc_trained"]
        reduction = b["l1_reduction"] - a["l1_reduction"]
        parts.append(f"Between λ = {a['lam']:g} and {b['lam']:g} the one shot's accuracy moves by "
                     f"{num(step, 1, True)} points and its reduction by {num(reduction, 1, True)}"
                     + (": a cliff the sweep does not resolve (no λ tried in between)." if abs(step) >= CLIFF_POINTS
                        else f", the widest step between neighbouring lambdas (under {CLIFF_POINTS:g} points: "
                             "no cliff)."))
    return " ".join(parts)


def scaling_figure(runs, curves, title: str = "Held-out one-shot gain vs training networks and steps") -> go.Figure:
    """Left: held-out gain on trained checkpoints vs number of training networks (log x; one marker per seed, the
    mean joined, a bar from the lowest to the highest seed where there are two or more), on an axis that includes 0
    (no gain, dashed). Right: held-out gain (validation images) vs optimizer steps, one line per size and seed
    (thicker and darker = more training networks; the legend names each size once)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["gain vs training networks", "gain vs training steps"],
                        horizontal_spacing=0.1)
    families = list(dict.fromkeys(runs["family"]))
    for i, family in enumerate(families):
        color = PALETTE[i % len(PALETTE)]
        sub = runs[runs["family"] == family]
        fig.add_trace(go.Scatter(x=sub["train_networks"], y=sub["gain_trained"], mode="markers", name=f"{family} (seeds)",
                                 marker=dict(size=8, color=color, opacity=0.6), legendgroup=family), row=1, col=1)
        agg = sub.groupby("train_networks")["gain_trained"].agg(["mean", "min", "max", "count"])
        spread = agg["count"] >= 2
        fig.add_trace(go.Scatter(
            x=agg.index, y=agg["mean"], mode="lines+markers", name=f"{family} (mean; bar: min-max over seeds)",
            line=dict(color=color), legendgroup=family, marker=dict(size=5, color=color),
            error_y=dict(type="data", symmetric=False, array=np.where(spread, agg["max"] - agg["mean"], np.nan),
                         arrayminus=np.where(spread, agg["mean"] - agg["min"], np.nan), color=color)), row=1, col=1)
        _gain_curves(fig, curves[curves["family"] == family], family, color)
    low, high = float(np.nanmin(runs["gain_trained"])), float(np.nanmax(runs["gain_trained"]))
    pad = 0.1 * max(high - min(low, 0.0), 1e-9)
    fig.add_hline(y=0, line=dict(color="black", dash="dash", width=1), row=1, col=1)
    fig.update_xaxes(type="log", title_text="training networks (log scale)", row=1, col=1)
    fig.update_xaxes(title_text="optimizer steps", row=1, col=2)
    fig.update_yaxes(title_text="gain on trained checkpoints (points)", row=1, col=1,
                     range=[min(low, 0.0) - pad, max(high, 0.0) + pad])
    fig.update_yaxes(title_text="gain, all checkpoints, val images (points)", row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", height=470, legend=dict(orientation="h", y=-0.2))
    return set_caption(fig, *(_scaling_sentence(runs[runs["family"] == f], f) for f in families))


def _gain_curves(fig, curves, family: str, color: str) -> None:
    """The right panel's lines of one family: one per size and seed, darker and thicker for more networks."""
    sizes = sorted(curves["train_networks"].unique())
    first_seed = curves["seed"].min()
    for (n, seed), c in curves.groupby(["train_networks", "seed"]):
        shade = 0.35 + 0.65 * (sizes.index(n) + 1) / len(sizes)
        fig.add_trace(go.Scatter(x=c["step"], y=c["test_gain_val_images"], mode="lines", opacity=shade,
                                 line=dict(color=color, width=1 + 2 * sizes.index(n) / max(1, len(sizes) - 1)),
                                 name=f"{family}: {n} networks", legendgroup=family,
                                 showlegend=bool(seed == first_seed),
                                 hovertemplate=f"{family}, {n} networks, seed {seed}<br>step %{{x}}: %{{y:.2f}}"
                                               "<extra></extra>"), row=1, col=2)


def _scaling_sentence(sub, family: str) -> str:
    agg = sub.groupby("train_networks")["gain_trained"].agg(["mean", "min", "max", "count"])
    if agg.empty:
        return ""
    small, large = agg.iloc[0], agg.iloc[-1]
    seeds = int(agg["count"].min())
    text = (f"{family}: {len(agg)} sizes from {agg.index[0]} to {agg.index[-1]} training networks; mean held-out gain "
            f"{num(small['mean'], 2, True)} points at the smallest, {num(large['mean'], 2, True)} at the largest.")
    if "steps" in sub:
        steps = sub.groupby("train_networks")["steps"].mean()
        if steps.iloc[-1] > steps.iloc[0]:  # whole epochs of at least the steps asked for: the largest may get more
            text += (f" The largest size trained {steps.iloc[-1]:.0f} steps against {steps.iloc[0]:.0f} (whole "
                     "epochs): part of its lead may be steps; the right panel compares at equal steps.")
    if seeds < 2:
        return text + (" One seed per size: no spread between trainings is shown, so the difference between sizes "
                       "cannot be told from seed noise.")
    apart = large["min"] > small["max"] or large["max"] < small["min"]
    return text + (f" {seeds} or more seeds per size; the smallest and largest sizes' seed ranges "
                   + ("do not overlap." if apart else "overlap: the sizes are not told apart by these seeds."))
