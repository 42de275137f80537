"""Figures for meta-optimizer training, the ablation and the results (pure functions returning plotly Figures)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..nets import NetSpec, Params

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def training_curves_figure(histories: Mapping[str, Sequence[dict]], title: str = "Meta-optimizer training") -> go.Figure:
    """Training loss, validation loss and validation accuracy per epoch, one colour per run label.

    Runs whose label shares a prefix before " seed" get the same colour (seeds of one method)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=["train loss", "validation loss", "validation accuracy (%)"])
    groups: dict[str, str] = {}
    for label, hist in histories.items():
        group = label.split(" seed")[0]
        color = groups.setdefault(group, PALETTE[len(groups) % len(PALETTE)])
        epochs = [h["epoch"] for h in hist]
        first = label.endswith("seed 0") or " seed" not in label
        for col, key, scale in ((1, "train_loss", 1), (2, "val_loss", 1), (3, "val_acc", 100)):
            fig.add_trace(go.Scatter(x=epochs, y=[h[key] * scale for h in hist], mode="lines+markers",
                                     line=dict(color=color, width=1.5), marker=dict(size=4), name=group,
                                     legendgroup=group, showlegend=first and col == 1, opacity=0.85), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, template="plotly_white", height=380, margin=dict(l=40, r=20, t=70, b=40))
    return fig


def accuracy_shift_figure(before: np.ndarray, after: Mapping[str, np.ndarray] | np.ndarray,
                          title: str = "Held-out networks: test accuracy before and after one-shot optimization") -> go.Figure:
    """Overlaid histograms of per-network test accuracy (%) before and after."""
    after = {"after": after} if not isinstance(after, Mapping) else after
    fig = go.Figure()
    bins = dict(start=0, end=100, size=2.5)
    fig.add_trace(go.Histogram(x=np.asarray(before) * 100, name="initial", opacity=0.55, xbins=bins,
                               marker_color="#7f7f7f"))
    for i, (name, acc) in enumerate(after.items()):
        fig.add_trace(go.Histogram(x=np.asarray(acc) * 100, name=name, opacity=0.55, xbins=bins,
                                   marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(barmode="overlay", title=title, xaxis_title="test accuracy (%)", yaxis_title="networks",
                      template="plotly_white", height=380)
    return fig


def weights_before_after_figure(spec: NetSpec, before: Params, after: Params, index: int = 0,
                                title: str | None = None) -> go.Figure:
    """Scatter of every weight and bias of network ``index``: initial value vs one-shot value, per layer.

    Points on the diagonal were left alone; a flattening towards 0 is sparsification."""
    fig = go.Figure()
    lim = 0.0
    for layer, ((w0, b0), (w1, b1)) in enumerate(zip(before, after)):
        x = np.concatenate([w0[index].detach().cpu().numpy().ravel(), b0[index].detach().cpu().numpy().ravel()])
        y = np.concatenate([w1[index].detach().cpu().numpy().ravel(), b1[index].detach().cpu().numpy().ravel()])
        lim = max(lim, float(np.abs(x).max()), float(np.abs(y).max()))
        kind = "conv" if spec.is_conv(layer) else "dense"
        fig.add_trace(go.Scattergl(x=x, y=y, mode="markers", marker=dict(size=4, opacity=0.6,
                                                                         color=PALETTE[layer % len(PALETTE)]),
                                   name=f"layer {layer} ({kind})"))
    fig.add_trace(go.Scatter(x=[-lim, lim], y=[-lim, lim], mode="lines", line=dict(color="black", dash="dot", width=1),
                             name="unchanged"))
    fig.update_layout(title=title or f"Network {index}: parameters before vs after", xaxis_title="before",
                      yaxis_title="after", template="plotly_white", height=420)
    return fig


def accuracy_vs_time_figure(points: Sequence[dict], title: str = "Accuracy vs time per network") -> go.Figure:
    """Scatter of average test accuracy against time per network (log x), one marker per method.

    ``points``: dicts with ``family``, ``method``, ``seconds_per_net`` and ``avg_acc`` (in %)."""
    fig = go.Figure()
    families = list(dict.fromkeys(p["family"] for p in points))
    for i, family in enumerate(families):
        rows = [p for p in points if p["family"] == family and p.get("seconds_per_net")]
        rows.sort(key=lambda p: p["seconds_per_net"])
        fig.add_trace(go.Scatter(
            x=[p["seconds_per_net"] for p in rows], y=[p["avg_acc"] for p in rows], mode="markers+text",
            text=[p["method"] for p in rows], textposition="top center", textfont=dict(size=9),
            marker=dict(size=9, color=PALETTE[i % len(PALETTE)]), name=family,
        ))
    fig.update_xaxes(type="log", title_text="time per network (s, log scale)")
    fig.update_yaxes(title_text="average test accuracy (%)")
    fig.update_layout(title=title, template="plotly_white", height=480)
    return fig


def ablation_bar_figure(frame, metric: str = "avg_acc", title: str = "ScaleGMN-B vs GMN-B (symmetry broken)") -> go.Figure:
    """Grouped bars with seed spread: one group per family/objective, one bar per method."""
    fig = go.Figure()
    for i, (method, sub) in enumerate(frame.groupby("method", sort=False)):
        labels = sub["family"] + " / " + sub["objective"]
        fig.add_trace(go.Bar(x=labels, y=sub[f"{metric}_mean"], name=method,
                             error_y=dict(type="data", array=sub[f"{metric}_std"].fillna(0)),
                             marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(barmode="group", title=title, yaxis_title=metric, template="plotly_white", height=400)
    return fig
