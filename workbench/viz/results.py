"""Figures of notebook 06: accuracy vs time, the warm start, the amortization break-even (plotly Figures).

All three take the plain records :func:`workbench.pipeline.family_results` returns, so they can be redrawn from
saved CSVs. Labels go into hover text and legends, never onto the plot, so nothing piles up or clips.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..warmstart import break_even
from .training import PALETTE

__all__ = ["accuracy_vs_time_figure", "warm_start_figure", "break_even_figure", "symmetry_response_figure"]

#: marker of each kind of results row
_MARKERS = {"sgd": "circle", "sgd (fixed lr)": "circle-open", "one shot": "star", "one shot + sgd": "diamond",
            "one shot incl. training": "star-open"}
_KIND_NAMES = {"sgd": "SGD, tuned lr (line through the budgets)", "sgd (fixed lr)": "SGD, fixed lr",
               "one shot": "one shot", "one shot + sgd": "one shot + SGD",
               "one shot incl. training": "one shot incl. metanet training / held-out networks"}


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 2)
    return max(1, math.ceil(n / cols)), max(1, cols)


def accuracy_vs_time_figure(points: Sequence[dict], title: str = "Average test accuracy vs time per network"):
    """Average test accuracy against seconds per network (log x), one colour per family.

    SGD budgets (tuned learning rate) are joined by a line per family; one shot (stars), one shot followed by SGD
    (diamonds) and fixed-lr SGD (open circles) are markers; the open star is one shot with the metanet's training
    time spread over the held-out networks scored here (``train_seconds / networks`` added), the price of a zoo
    that size. ``points``: dicts with ``family``, ``method``, ``seconds_per_net``, ``avg_acc`` and optionally
    ``kind``, ``train_seconds`` and ``networks`` (as returned in ``family_results(...)["points"]``)."""
    fig = go.Figure()
    families = list(dict.fromkeys(p["family"] for p in points))
    for i, family in enumerate(families):
        color = PALETTE[i % len(PALETTE)]
        rows = [p for p in points if p["family"] == family and p.get("seconds_per_net")]
        sgd = sorted((p for p in rows if p.get("kind", "sgd") == "sgd"), key=lambda p: p["seconds_per_net"])
        if sgd:
            fig.add_trace(go.Scatter(x=[p["seconds_per_net"] for p in sgd], y=[p["avg_acc"] for p in sgd],
                                     mode="lines+markers", line=dict(color=color, width=2),
                                     marker=dict(symbol=_MARKERS["sgd"], size=8, color=color), name=family,
                                     legendgroup=family, text=[p["method"] for p in sgd],
                                     hovertemplate="%{text}<br>%{x:.3g} s/network<br>%{y:.1f}%<extra>" + family +
                                                   "</extra>"))
        extra = [dict(p) for p in rows if p.get("kind") in ("sgd (fixed lr)", "one shot", "one shot + sgd")]
        extra += [{**p, "kind": "one shot incl. training", "method": f"{p['method']} incl. training",
                   "seconds_per_net": p["seconds_per_net"] + p["train_seconds"] / p["networks"]}
                  for p in rows if p.get("kind") == "one shot" and p.get("train_seconds") and p.get("networks")]
        for p in extra:
            fig.add_trace(go.Scatter(x=[p["seconds_per_net"]], y=[p["avg_acc"]], mode="markers",
                                     marker=dict(symbol=_MARKERS[p["kind"]], size=12, color=color,
                                                 line=dict(width=1.5, color=color)),
                                     name=p["method"], legendgroup=family, showlegend=False, text=[p["method"]],
                                     hovertemplate="%{text}<br>%{x:.3g} s/network<br>%{y:.1f}%<extra>" + family +
                                                   "</extra>"))
    for kind, symbol in _MARKERS.items():  # a legend of the marker shapes, in grey
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=_KIND_NAMES[kind],
                                 marker=dict(symbol=symbol, size=10, color="#555555"), legendgroup="kinds"))
    fig.update_xaxes(type="log", title_text="seconds per network (log scale)")
    fig.update_yaxes(title_text="average test accuracy (%)")
    fig.update_layout(title=title, template="plotly_white", height=520, legend=dict(font=dict(size=11)),
                      margin=dict(l=60, r=20, t=60, b=50))
    return fig


def warm_start_figure(curves, title: str = "Warm start: SGD from the initial vs the one-shot networks"):
    """Small multiples, one panel per family: held-out test accuracy after each SGD epoch (mean over networks,
    band = 25th-75th percentile) for every start and learning rate of :func:`workbench.warmstart.sgd_curves`.
    ``curves``: its frame with a ``family`` column. Colour = start, dash = fixed (dashed) vs tuned (solid) lr."""
    families = list(dict.fromkeys(curves["family"]))
    n_rows, n_cols = _grid(len(families))
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=families, horizontal_spacing=0.08,
                        vertical_spacing=0.14)
    stems = {}
    for k, family in enumerate(families):
        r, c = k // n_cols + 1, k % n_cols + 1
        sub = curves[curves["family"] == family]
        for start, s in sub.groupby("start", sort=False):
            head, _, tail = start.rpartition(" (")
            stem = head if "lr" in tail else start  # "ScaleGMN-B (tuned lr)" and "ScaleGMN-B (lr 0.01)": one colour
            color = stems.setdefault(stem, PALETTE[len(stems) % len(PALETTE)])
            dash = "dash" if tail.startswith("lr ") else "solid"  # the fixed learning rate dashed
            s = s.sort_values("epoch")
            fig.add_trace(go.Scatter(x=list(s["epoch"]) + list(s["epoch"])[::-1],
                                     y=list(s["acc_q75"]) + list(s["acc_q25"])[::-1], fill="toself",
                                     fillcolor=color, opacity=0.10, line=dict(width=0), hoverinfo="skip",
                                     showlegend=False, legendgroup=start), row=r, col=c)
            fig.add_trace(go.Scatter(x=s["epoch"], y=s["acc_mean"], mode="lines+markers", name=start,
                                     legendgroup=start, showlegend=k == 0, line=dict(color=color, dash=dash, width=2),
                                     marker=dict(size=5),
                                     hovertemplate=start + ", lr %{customdata:.3g}<br>epoch %{x}: %{y:.1f}%<extra>"
                                                   + family + "</extra>", customdata=s["lr"]), row=r, col=c)
    fig.update_xaxes(title_text="SGD epochs", dtick=1)
    fig.update_yaxes(title_text="test accuracy (%)", col=1)
    fig.update_layout(title=title, template="plotly_white", height=360 * n_rows + 80,
                      legend=dict(orientation="h", y=-0.12), margin=dict(l=60, r=20, t=80, b=60))
    return fig


def break_even_figure(frame, title: str = "Amortization: when does training a metanetwork pay?", max_networks=1e6):
    """Total seconds to optimize N networks, one panel per family: ``train + N x one shot`` for the metanet against
    ``N x SGD`` for each SGD budget (log-log), with the break-even N marked against the cheapest SGD budget that
    reaches the one-shot accuracy (or, when none does, the most expensive budget measured: one shot is then
    better *and*, beyond N, cheaper). ``frame``: :func:`workbench.warmstart.break_even_table` rows of all
    families."""
    families = list(dict.fromkeys(frame["family"]))
    n_rows, n_cols = _grid(len(families))
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=families, horizontal_spacing=0.08,
                        vertical_spacing=0.16)
    ns = np.logspace(0, math.log10(max_networks), 60)
    for k, family in enumerate(families):
        r, c = k // n_cols + 1, k % n_cols + 1
        sub = frame[frame["family"] == family].sort_values("sgd_s_per_net")
        if sub.empty:
            continue
        first = sub.iloc[0]
        fig.add_trace(go.Scatter(x=ns, y=first["train_seconds"] + ns * first["one_shot_s_per_net"], mode="lines",
                                 name=f"{first['method']}: training + N x one shot", legendgroup="metanet",
                                 showlegend=k == 0, line=dict(color="black", width=3)), row=r, col=c)
        for j, (_, row) in enumerate(sub.iterrows()):
            fig.add_trace(go.Scatter(x=ns, y=ns * row["sgd_s_per_net"], mode="lines", name=f"N x {row['versus']}",
                                     legendgroup=row["versus"], showlegend=k == 0,
                                     line=dict(color=PALETTE[(j + 1) % len(PALETTE)], dash="dot")), row=r, col=c)
        match = sub[sub["sgd_acc"] >= sub["one_shot_acc"]]
        ref = match.iloc[0] if len(match) else sub.iloc[-1]
        n_star = break_even(ref["train_seconds"], ref["one_shot_s_per_net"], ref["sgd_s_per_net"])
        if not math.isfinite(n_star):
            fig.add_annotation(text=f"one shot never cheaper than {ref['versus']}: it costs more per network",
                               xref="x domain" if k == 0 else f"x{k + 1} domain",
                               yref="y domain" if k == 0 else f"y{k + 1} domain", x=0.02, y=0.98, showarrow=False,
                               xanchor="left", yanchor="top", font=dict(size=11))
        elif n_star > 0:
            fig.add_trace(go.Scatter(x=[n_star], y=[n_star * ref["sgd_s_per_net"]], mode="markers+text",
                                     marker=dict(size=11, color="black", symbol="x"), showlegend=False,
                                     text=[f"N = {n_star:,.0f}"], textposition="top left",
                                     hovertemplate=f"break-even vs {ref['versus']}: N = {n_star:,.0f}<extra></extra>"),
                          row=r, col=c)
    fig.update_xaxes(type="log", title_text="networks optimized (N)")
    fig.update_yaxes(type="log")  # every panel
    fig.update_yaxes(title_text="total seconds", col=1)
    fig.update_layout(title=title, template="plotly_white", height=360 * n_rows + 80,
                      legend=dict(orientation="h", y=-0.12), margin=dict(l=60, r=20, t=80, b=60))
    return fig


def symmetry_response_figure(per_network, title="Same function, rescaled weights: how differently is it updated?"):
    """Per family and method, the relative difference between a metanet's update of a network and of a
    function-preserving rescaled (ReLU) or sign-flipped (tanh) copy (log y; one point per held-out network).
    Exact zeros (an equivariant model in exact arithmetic) are drawn at the axis floor 1e-16."""
    fig = go.Figure()
    methods = list(dict.fromkeys(per_network["method"]))
    for i, method in enumerate(methods):
        sub = per_network[per_network["method"] == method]
        fig.add_trace(go.Box(x=sub["family"], y=np.maximum(sub["response"].to_numpy(), 1e-16), name=method,
                             boxpoints="all", jitter=0.4, pointpos=0, marker=dict(size=4, color=PALETTE[i % len(PALETTE)]),
                             line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_yaxes(type="log", title_text="||g^-1 f(g theta) - f(theta)|| / ||f(theta) - theta||")
    fig.update_layout(boxmode="group", title=title, template="plotly_white", height=460,
                      legend=dict(orientation="h", y=-0.15), margin=dict(l=70, r=20, t=60, b=60))
    return fig
