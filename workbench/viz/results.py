"""Figures of notebook 06 -- where the one shot sits on SGD's accuracy-vs-cost curve, the warm start -- and notebook
05's symmetry response (plotly), each with its caption (:mod:`workbench.reporting.captions`).

Both take the plain frames :func:`workbench.pipeline.family_results` returns (with a ``family`` column added), so
they can be redrawn from the saved CSVs. Labels go into hover text and legends, never onto the data, so nothing
piles up or clips.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..reporting.captions import interval_text, names, plural, set_caption, sig
from .style import METHOD_SYMBOLS, PALETTE, method_symbol

__all__ = ["matched_compute_figure", "warm_start_figure", "symmetry_response_figure", "METHOD_SYMBOLS"]


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 2)
    return max(1, math.ceil(n / cols)), max(1, cols)


def _symbol(method: str) -> str:
    return method_symbol(method)


def _open(symbol: str) -> str:
    """The open variant of a marker symbol (an open one stays as it is)."""
    return symbol if symbol.endswith("-open") else f"{symbol}-open"


def matched_compute_figure(curves, matched, title: str = "Where the one shot sits on SGD's accuracy-vs-cost curve"):
    """One panel per family: SGD from the initial networks, held-out accuracy on trained checkpoints against
    seconds per network (log x), one line per learning rate (bold: the rate that reaches the first method's one-shot
    accuracy fastest on validation networks, the one its matched point lies on);
    each one-shot method as its own marker at its cost and accuracy (bar: 95 % interval), and the open marker of the
    same shape where SGD reaches that accuracy (dotted line between them: the cost ratio in the hover text).

    ``curves``: :attr:`FamilyResults.curves` with a ``family`` column; ``matched``: :attr:`FamilyResults.matched`
    likewise."""
    families = list(dict.fromkeys(curves["family"]))
    n_rows, n_cols = _grid(len(families))
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=families, horizontal_spacing=0.08,
                        vertical_spacing=0.14)
    shown = set()
    for k, family in enumerate(families):
        r, c = k // n_cols + 1, k % n_cols + 1
        sub = curves[(curves["family"] == family) & (curves["start"] == "initial") & (curves["step"] > 0)]
        mine = matched[matched["family"] == family]
        first_lr = float(mine["lr"].iloc[0]) if len(mine) else float("nan")  # the rate matched to the first method
        for j, (lr, s) in enumerate(sub.groupby("lr", sort=True)):
            tuned = bool(np.isclose(lr, first_lr))
            name = f"SGD, lr {lr:g}"
            fig.add_trace(go.Scatter(
                x=s["seconds_per_net"], y=s["acc_trained"], mode="lines", name=name, legendgroup=f"lr{lr:g}",
                showlegend=f"lr{lr:g}" not in shown, line=dict(color=PALETTE[j % len(PALETTE)], width=3 if tuned else 1,
                                                              dash="solid" if tuned else "dot"),
                customdata=s["epochs"],
                hovertemplate=f"SGD lr {lr:g}" + "<br>%{customdata:.2f} epochs, %{x:.3g} s/network<br>%{y:.1f}%"
                              f"<extra>{family}</extra>"), row=r, col=c)
            shown.add(f"lr{lr:g}")
        floor = float(sub["seconds_per_net"].min()) if len(sub) else 1e-6
        for _, m in mine.iterrows():
            _matched_markers(fig, m, family, floor, r, c, shown)
    fig.update_xaxes(type="log", title_text="seconds per network (log scale)")
    fig.update_yaxes(title_text="accuracy, trained ckpts (%; axis not from 0)", col=1)
    fig.update_layout(title=title, template="plotly_white", height=380 * n_rows + 100,
                      legend=dict(orientation="h", y=-0.1), margin=dict(l=60, r=20, t=80, b=60))
    return set_caption(fig, _matched_caption(matched))


def _matched_caption(matched) -> str:
    """The cost ratio of every one shot, with its interval, from the matched-compute frame."""
    parts = []
    for _, m in matched.iterrows():
        if bool(m["reached"]):
            parts.append(f"{m['family']} {m['method']} {interval_text(m['ratio_value'], m['ratio_lo'], m['ratio_hi'])} "
                         f"(SGD needs {sig(m['steps_value'])} steps)")
        else:
            parts.append(f"{m['family']} {m['method']}: SGD never reaches it within {int(m['max_steps'])} steps")
    cheaper = matched[matched["reached"].astype(bool) & (matched["ratio_lo"] > 1)]
    dearer = matched[matched["reached"].astype(bool) & (matched["ratio_hi"] < 1)]
    return ("Filled marker: a one shot's held-out accuracy (bar: 95 % interval) at its cost per network; open marker "
            "of the same shape: where SGD from the initial networks reaches that accuracy (bold line: the learning "
            "rate it is matched on). Cost ratio SGD / one shot at equal accuracy (above 1: the one shot is "
            "cheaper), with its 95 % interval: " + "; ".join(parts) + ". "
            f"Cheaper than SGD with the whole interval above 1: {names(cheaper['family'] + ' ' + cheaper['method'])}; "
            f"dearer with the whole interval below 1: {names(dearer['family'] + ' ' + dearer['method'])}.")


def _matched_markers(fig, m, family: str, floor: float, r: int, c: int, shown: set) -> None:
    """One method's one shot (filled) and SGD's matching point (open), joined by a dotted line."""
    symbol, method = _symbol(m["method"]), m["method"]
    acc, lo, hi = m["one_shot_acc_value"], m["one_shot_acc_lo"], m["one_shot_acc_hi"]
    fig.add_trace(go.Scatter(
        x=[m["one_shot_s_per_net"]], y=[acc], mode="markers", name=f"{method} one shot", legendgroup=method,
        showlegend=method not in shown, marker=dict(symbol=symbol, size=14, color="black"),
        error_y=dict(type="data", symmetric=False, array=[hi - acc], arrayminus=[acc - lo], color="#666666"),
        hovertemplate=f"{method} one shot<br>%{{x:.3g}} s/network<br>%{{y:.1f}}% [{lo:.1f}, {hi:.1f}]"
                      f"<extra>{family}</extra>"), row=r, col=c)
    shown.add(method)
    sgd_s = m["sgd_seconds_per_net_value"]
    if not (sgd_s == sgd_s and math.isfinite(sgd_s)):
        return  # SGD never reached it within the recorded steps
    x = max(sgd_s, floor)  # reached at step 0: drawn at the first recorded step
    text = (f"SGD reaches the {method} one shot's accuracy after {m['steps_value']:.1f} steps "
            f"({x:.3g} s/network): cost ratio SGD / one shot {m['ratio_value']:.3g} "
            f"[{m['ratio_lo']:.3g}, {m['ratio_hi']:.3g}]")
    fig.add_trace(go.Scatter(
        x=[m["one_shot_s_per_net"], x], y=[acc, acc], mode="lines+markers", showlegend=False, legendgroup=method,
        line=dict(color="#444444", dash="dot", width=1), marker=dict(symbol=[symbol, _open(symbol)], size=[1, 14],
                                                                      color="black"),
        hovertemplate=text + f"<extra>{family}</extra>"), row=r, col=c)


def warm_start_figure(curves, warm, title: str = "Warm start: SGD from the one shot vs from the initial networks"):
    """One panel per family: held-out accuracy on trained checkpoints against SGD epochs, from the initial networks
    and from each one shot, each at the rate chosen *for that start* on validation networks for the full budget;
    markers with bars: the compared points (after 1 epoch and the full budget, each at its own chosen rate) with
    their 95 % intervals. ``curves``/``warm``: :attr:`FamilyResults.curves` / :attr:`FamilyResults.warm` with a
    ``family`` column."""
    families = list(dict.fromkeys(curves["family"]))
    n_rows, n_cols = _grid(len(families))
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=families, horizontal_spacing=0.08,
                        vertical_spacing=0.14)
    colours: dict[str, str] = {}
    for k, family in enumerate(families):
        r, c = k // n_cols + 1, k % n_cols + 1
        w = warm[warm["family"] == family]
        if w.empty:
            continue
        full = w[w["epochs"] == w["epochs"].max()]
        names = {"initial": "the initial networks", **dict(zip(w["start"], w.get("label", w["start"])))}
        rates = {"initial": float(full["reference_lr"].iloc[0]), **dict(zip(full["start"], full["lr"]))}
        for start, lr in rates.items():
            colour = colours.setdefault(start, PALETTE[len(colours) % len(PALETTE)])
            s = curves[(curves["family"] == family) & (curves["start"] == start) & np.isclose(curves["lr"], lr)]
            s = s[s["epochs"] <= w["epochs"].max()]
            fig.add_trace(go.Scatter(x=s["epochs"], y=s["acc_trained"], mode="lines", name=f"from {names[start]}",
                                     legendgroup=start, showlegend=k == 0, line=dict(color=colour, width=2),
                                     hovertemplate=f"from {names[start]}, lr {lr:g}<br>%{{x:.2f}} epochs: %{{y:.1f}}%"
                                                   f"<extra>{family}</extra>"), row=r, col=c)
        for _, row in w.iterrows():
            for who, prefix in ((row["start"], "acc_"), ("initial", "reference_acc_")):
                v, lo, hi = row[prefix + "value"], row[prefix + "lo"], row[prefix + "hi"]
                fig.add_trace(go.Scatter(
                    x=[row["epochs"]], y=[v], mode="markers", showlegend=False, legendgroup=who,
                    marker=dict(size=9, color=colours.setdefault(who, PALETTE[len(colours) % len(PALETTE)])),
                    error_y=dict(type="data", symmetric=False, array=[hi - v], arrayminus=[v - lo]),
                    hovertemplate=f"from {names[who]} after {int(row['epochs'])} epoch(s): %{{y:.1f}}% [{lo:.1f}, {hi:.1f}]"
                                  f"<br>difference {row['difference_value']:+.2f} [{row['difference_lo']:+.2f}, "
                                  f"{row['difference_hi']:+.2f}]: {row['outcome']}<extra>{family}</extra>"),
                    row=r, col=c)
    fig.update_xaxes(title_text="SGD epochs")
    fig.update_yaxes(title_text="accuracy, trained checkpoints (%)", col=1)
    fig.update_layout(title=title, template="plotly_white", height=360 * n_rows + 100,
                      legend=dict(orientation="h", y=-0.12), margin=dict(l=60, r=20, t=80, b=60))
    return set_caption(fig, _warm_caption(warm))


def _warm_caption(warm) -> str:
    parts = [f"{w['family']} from {w.get('label', w['start'])}, {plural(w['epochs'], 'epoch')}: "
             f"{interval_text(w['difference_value'], w['difference_lo'], w['difference_hi'])} points, {w['outcome']}"
             for _, w in warm.iterrows()]
    return ("SGD started from the one shot against SGD started from the initial networks, each at the learning rate "
            "chosen for its start on validation networks; markers: the compared budgets with their 95 % intervals. "
            "Difference (from the one shot minus from the initial networks): " + "; ".join(parts) + ".")


def _log_floor(values: np.ndarray) -> float:
    """Where a log axis draws exact zeros: two decades below the smallest non-zero value (1e-17 at most)."""
    positive = values[values > 0]
    low = float(positive.min()) if positive.size else 1e-15
    return 10.0 ** (math.floor(math.log10(low)) - 2)


def symmetry_response_figure(per_network, title="Same function, rescaled weights: how differently is it updated?"):
    """Per family and method, the relative difference between a metanet's update of a network and of a
    function-preserving rescaled (ReLU) or sign-flipped (tanh) copy (log y; one point per held-out network).

    Exact zeros (an equivariant model in exact arithmetic) cannot sit on a log axis: they are drawn on their own row
    at the bottom, ticked "exactly 0" and set off from the axis above by a dotted break line."""
    response = per_network["response"].to_numpy(dtype=float)
    floor = _log_floor(response)
    fig = go.Figure()
    methods = list(dict.fromkeys(per_network["method"]))
    for i, method in enumerate(methods):
        sub = per_network[per_network["method"] == method]
        fig.add_trace(go.Box(x=sub["family"], y=np.where(sub["response"].to_numpy() > 0, sub["response"], floor),
                             name=method, boxpoints="all", jitter=0.4, pointpos=0,
                             marker=dict(size=5, color=PALETTE[i % len(PALETTE)], symbol=_symbol(method)),
                             line=dict(color=PALETTE[i % len(PALETTE)]),
                             customdata=sub["response"], hovertemplate=f"{method}<br>%{{x}}: %{{customdata:.3g}}"
                                                                       "<extra></extra>"))
    top = math.ceil(math.log10(max(float(response.max()), floor * 100)))
    low = int(round(math.log10(floor)))
    step = max(1, math.ceil((top - low - 2) / 8))
    decades = list(range(top, low + 1, -step))[::-1]
    fig.update_yaxes(type="log", range=[low - 0.5, top + 0.3], tickvals=[floor] + [10.0 ** d for d in decades],
                     ticktext=["exactly 0"] + [f"1e{d}" for d in decades],
                     title_text="||g^-1 f(g theta) - f(theta)|| / ||f(theta) - theta||")
    brk = floor * 10 ** 1.2
    fig.add_hline(y=brk, line=dict(color="#888888", dash="dot", width=1))
    # annotations on a log axis take log10 of the value (shapes take the value itself)
    fig.add_annotation(x=1, xref="paper", xanchor="right", y=math.log10(brk), yanchor="top", showarrow=False,
                       text="axis break: exact zeros below", font=dict(size=11, color="#666666"))
    fig.update_layout(boxmode="group", title=title, template="plotly_white", height=480,
                      legend=dict(orientation="h", y=-0.15), margin=dict(l=70, r=20, t=60, b=60))
    return set_caption(fig, _symmetry_caption(per_network))


def _symmetry_caption(per_network) -> str:
    parts = []
    for method, sub in per_network.groupby("method", sort=False):
        r = sub["response"].to_numpy(dtype=float)
        zeros = int((r == 0).sum())
        parts.append((float(np.median(r)), f"{method} {np.median(r):.2g}"
                      + (f" (exactly 0 in {zeros} of {r.size} networks)" if zeros else "")))
    parts.sort(key=lambda p: p[0])
    families = list(dict.fromkeys(per_network["family"]))
    return (f"Each point: one held-out network of {names(families)} and a copy of it with the same function "
            "(rescaled or sign-flipped weights); y: how differently the metanet updates the two. Median over all "
            "networks, lowest first: " + "; ".join(p[1] for p in parts) + ". A model equivariant to the "
            "transformation gives 0 up to float rounding.")
