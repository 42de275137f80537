"""Figures for meta-optimizer training, the ablation and the results (pure functions returning plotly Figures)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..nets import NetSpec, Params
from ..records import RunKey

__all__ = [
    "PALETTE", "training_curves_figure", "weights_before_after_figure", "generalisation_figure", "overfitting_summary",
    "checkpoint_gain_figure", "training_curves_grid", "ablation_points_figure", "lam_pareto_figure", "scaling_figure",
]

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def training_curves_figure(histories: Mapping[RunKey | str, Sequence[dict]],
                           title: str = "Meta-optimizer training") -> go.Figure:
    """Training loss, validation loss and validation accuracy per epoch, one colour per run.

    ``histories``: keyed by :class:`~workbench.records.RunKey` -- the seeds of one family x objective x method share
    a colour and a legend entry -- or by plain labels, one colour each."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=["train loss", "validation loss", "validation accuracy (%)"])
    groups: dict[str, str] = {}
    for key, hist in histories.items():
        group = " ".join(key.without_seed()) if isinstance(key, RunKey) else str(key)
        first = group not in groups
        color = groups.setdefault(group, PALETTE[len(groups) % len(PALETTE)])
        epochs = [h["epoch"] for h in hist]
        for col, metric, scale in ((1, "train_loss", 1), (2, "val_loss", 1), (3, "val_acc", 100)):
            fig.add_trace(go.Scatter(x=epochs, y=[h[metric] * scale for h in hist], mode="lines+markers",
                                     line=dict(color=color, width=1.5), marker=dict(size=4), name=group,
                                     legendgroup=group, showlegend=first and col == 1, opacity=0.85), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, template="plotly_white", height=380, margin=dict(l=40, r=20, t=70, b=40))
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


def generalisation_figure(history: Sequence[dict], title: str = "Seen vs unseen networks") -> go.Figure:
    """Per epoch: the one-shot objective on a fixed sample of *training* networks (seen) and on the validation
    networks (unseen), both on the validation images and in eval mode, plus the training loss as optimised (with
    dropout/augmentation), and the validation accuracy; the best (selected) epoch is marked."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["one-shot objective", "validation accuracy (%)"])
    epochs = [h["epoch"] for h in history]
    series = [("train_loss", "training loss (as optimised)", "#7f7f7f", "dot"),
              ("seen_loss", "training networks (seen)", PALETTE[0], "solid"),
              ("val_loss", "validation networks (unseen)", PALETTE[1], "solid")]
    for key, name, color, dash in series:
        if all(key in h for h in history):
            fig.add_trace(go.Scatter(x=epochs, y=[h[key] for h in history], mode="lines+markers", name=name,
                                     line=dict(color=color, dash=dash), marker=dict(size=5)), row=1, col=1)
    fig.add_trace(go.Scatter(x=epochs, y=[100 * h["val_acc"] for h in history], mode="lines+markers",
                             name="validation accuracy", line=dict(color=PALETTE[1]), showlegend=False), row=1, col=2)
    finite = [(h["val_loss"], h["epoch"]) for h in history if np.isfinite(h["val_loss"])]
    if finite:
        best = min(finite)[1]
        for col in (1, 2):
            fig.add_vline(x=best, line=dict(color="black", dash="dash", width=1), row=1, col=col)
        fig.add_annotation(x=best, y=1.02, yref="paper", text=f"best epoch {best}", showarrow=False, xanchor="left")
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, template="plotly_white", height=400, margin=dict(l=50, r=20, t=80, b=40),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def overfitting_summary(history: Sequence[dict]) -> dict:
    """Where a run starts to overfit, computed from its history: the best validation epoch, the gap between the
    training-network and validation-network objective there, and the first epoch after which the validation loss
    rose while the training-network loss kept falling (None when it never did)."""
    if not history:
        raise ValueError("empty training history")
    val = [h["val_loss"] for h in history]
    best = int(np.nanargmin(val))
    gap = history[best].get("seen_loss", float("nan")) - val[best]
    onset = None
    for i in range(1, len(history)):
        seen_now, seen_before = history[i].get("seen_loss"), history[i - 1].get("seen_loss")
        if seen_now is None or seen_before is None:
            break
        if val[i] > min(val[:i]) and seen_now < seen_before:
            onset = history[i]["epoch"]
            break
    return {"best_epoch": history[best]["epoch"], "epochs_run": len(history), "best_val_loss": val[best],
            "seen_minus_val_at_best": gap, "overfitting_from_epoch": onset,
            "final_seen_minus_val": history[-1].get("seen_loss", float("nan")) - val[-1]}


def checkpoint_gain_figure(by_checkpoint, title: str = "Held-out networks by checkpoint epoch") -> go.Figure:
    """Average test accuracy before/after per checkpoint epoch (bars), from :func:`workbench.pipeline.gain_by_checkpoint`;
    the gain is written above each pair."""
    frame = by_checkpoint
    labels = [f"epoch {c}" if c not in ("trained", "all") else ("epochs >= 1" if c == "trained" else "all")
              for c in frame["checkpoint"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=frame["before"], name="initial", marker_color="#9e9e9e"))
    fig.add_trace(go.Bar(x=labels, y=frame["after"], name="after one shot", marker_color=PALETTE[0],
                         text=[f"{g:+.1f}" for g in frame["gain"]], textposition="outside"))
    fig.update_layout(barmode="group", title=title, yaxis_title="average test accuracy (%)", template="plotly_white",
                      height=400, yaxis=dict(range=[0, 105]))
    return fig


def training_curves_grid(histories: Mapping[RunKey, Sequence[dict]], families: Sequence[str],
                         objectives: Sequence[str], key: str = "val_loss",
                         title: str = "Validation loss per epoch") -> go.Figure:
    """Small multiples: one panel per family x objective, one colour per method, one line per seed.

    ``histories``: ``{RunKey(family, objective, method, seed): history}`` as returned by
    :func:`workbench.pipeline.run_ablation`."""
    families, objectives = list(families), list(objectives)
    fig = make_subplots(rows=len(families), cols=len(objectives), shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"{f} / {o}" for f in families for o in objectives])
    methods = list(dict.fromkeys(run.method for run in histories))
    shown = set()
    for run, hist in histories.items():
        if run.family not in families or run.objective not in objectives:
            continue
        method = run.method
        color = PALETTE[methods.index(method) % len(PALETTE)]
        fig.add_trace(go.Scatter(x=[h["epoch"] for h in hist], y=[h[key] for h in hist], mode="lines",
                                 line=dict(color=color, width=1.5), name=method, legendgroup=method,
                                 showlegend=method not in shown, opacity=0.8,
                                 hovertemplate=f"{method} seed {run.seed}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>"),
                      row=families.index(run.family) + 1, col=objectives.index(run.objective) + 1)
        shown.add(method)
    fig.update_xaxes(title_text="epoch", row=len(families))
    fig.update_layout(title=title, template="plotly_white", height=260 * len(families) + 80,
                      legend=dict(orientation="h", y=-0.08), margin=dict(l=50, r=20, t=80, b=60))
    return fig


def ablation_points_figure(runs, initial, title: str = "Ablation: each objective by its own metric") -> go.Figure:
    """Two panels: CE -> held-out accuracy on trained checkpoints (%), L1 -> held-out test loss CE + lambda L1.
    One marker per seed (methods side by side per family), the initial networks' level as a dashed line."""
    panels = [("ce", "acc_trained", "CE: accuracy on trained checkpoints (%)", "acc_trained"),
              ("l1", "loss", "L1: test loss CE + lambda L1 (lower is better)", "loss")]
    panels = [p for p in panels if (runs["objective"] == p[0]).any()]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[2] for p in panels], horizontal_spacing=0.1)
    methods = list(dict.fromkeys(runs["method"]))
    families = list(dict.fromkeys(runs["family"]))
    for col, (objective, metric, _, init_key) in enumerate(panels, start=1):
        sub = runs[runs["objective"] == objective]
        for i, method in enumerate(methods):
            m = sub[sub["method"] == method]
            x = [families.index(f) + (i - (len(methods) - 1) / 2) * 0.22 for f in m["family"]]
            name = m["label"].iloc[0] if "label" in m and len(m) else method
            fig.add_trace(go.Scatter(x=x, y=m[metric], mode="markers", name=name, legendgroup=method,
                                     showlegend=col == 1, marker=dict(size=9, color=PALETTE[i % len(PALETTE)],
                                                                      line=dict(width=1, color="white")),
                                     text=[f"seed {s}" for s in m["seed"]]), row=1, col=col)
        for j, family in enumerate(families):
            level = initial.loc[initial["family"] == family, init_key]
            if len(level):
                fig.add_trace(go.Scatter(x=[j - 0.45, j + 0.45], y=[float(level.iloc[0])] * 2, mode="lines",
                                         line=dict(color="black", dash="dash", width=1), name="initial networks",
                                         legendgroup="initial", showlegend=col == 1 and j == 0), row=1, col=col)
        fig.update_xaxes(tickvals=list(range(len(families))), ticktext=families, row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", height=430, legend=dict(orientation="h", y=-0.15),
                      margin=dict(l=50, r=20, t=80, b=60))
    return fig


def lam_pareto_figure(sweep, title: str = "L1 objective: accuracy vs L1-norm reduction (validation networks)") -> go.Figure:
    """Accuracy on trained checkpoints against L1-norm reduction: one marker per (method, lam) of
    :func:`workbench.pipeline.lam_sweep`; the one-shot points of the lambdas are joined, SGD budgets joined per
    budget, the initial and the all-zero network as reference points; the chosen lambda is circled."""
    fig = go.Figure()
    one = sweep[sweep["kind"] == "one_shot"].sort_values("lam")
    fig.add_trace(go.Scatter(x=one["l1_reduction"], y=one["acc_trained"], mode="lines+markers+text",
                             text=[f"lam={v:g}" for v in one["lam"]], textposition="top center", name="ScaleGMN one shot",
                             marker=dict(size=10, color=PALETTE[0]), line=dict(color=PALETTE[0])))
    for i, (_, sub) in enumerate(sweep[sweep["kind"] == "sgd"].groupby("epochs", sort=True)):
        sub = sub.sort_values("lam")
        fig.add_trace(go.Scatter(x=sub["l1_reduction"], y=sub["acc_trained"], mode="lines+markers",
                                 name=sub["label"].iloc[0],
                                 text=[f"lam={v:g}" for v in sub["lam"]], marker=dict(size=8, symbol="square",
                                 color=PALETTE[(i + 2) % len(PALETTE)]), line=dict(dash="dot")))
    for method, symbol in (("initial", "diamond"), ("zero", "x")):
        ref = sweep[sweep["method"] == method].iloc[:1]
        fig.add_trace(go.Scatter(x=ref["l1_reduction"], y=ref["acc_trained"], mode="markers", name=ref["label"].iloc[0],
                                 marker=dict(size=12, symbol=symbol, color="black")))
    chosen = sweep[sweep["chosen"]]
    if len(chosen):
        fig.add_trace(go.Scatter(x=chosen["l1_reduction"], y=chosen["acc_trained"], mode="markers",
                                 name=f"chosen lam = {chosen['lam'].iloc[0]:g}",
                                 marker=dict(size=22, symbol="circle-open", color="black", line=dict(width=2))))
    fig.update_layout(title=title, xaxis_title="L1-norm reduction (%)", yaxis_title="accuracy on trained checkpoints (%)",
                      template="plotly_white", height=480, legend=dict(orientation="h", y=-0.2))
    return fig


def scaling_figure(runs, curves, title: str = "Held-out one-shot gain vs training networks and steps") -> go.Figure:
    """Left: held-out gain on trained checkpoints vs number of training networks (log x; one marker per seed, the
    mean joined). Right: held-out gain (validation images) vs optimizer steps, one line per size and seed (thicker
    and darker = more training networks; the legend names each size once)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["gain vs training networks", "gain vs training steps"],
                        horizontal_spacing=0.1)
    families = list(dict.fromkeys(runs["family"]))
    for i, family in enumerate(families):
        color = PALETTE[i % len(PALETTE)]
        sub = runs[runs["family"] == family]
        fig.add_trace(go.Scatter(x=sub["train_networks"], y=sub["gain_trained"], mode="markers", name=f"{family} (seeds)",
                                 marker=dict(size=8, color=color, opacity=0.6), legendgroup=family), row=1, col=1)
        mean = sub.groupby("train_networks")["gain_trained"].mean()
        fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines", name=f"{family} (mean)",
                                 line=dict(color=color), legendgroup=family), row=1, col=1)
        sizes = sorted(sub["train_networks"].unique())
        first_seed = curves.loc[curves["family"] == family, "seed"].min()
        for (n, seed), c in curves[curves["family"] == family].groupby(["train_networks", "seed"]):
            shade = 0.35 + 0.65 * (sizes.index(n) + 1) / len(sizes)
            fig.add_trace(go.Scatter(x=c["step"], y=c["test_gain_val_images"], mode="lines", opacity=shade,
                                     line=dict(color=color, width=1 + 2 * sizes.index(n) / max(1, len(sizes) - 1)),
                                     name=f"{family}: {n} networks", legendgroup=family,
                                     showlegend=bool(seed == first_seed),
                                     hovertemplate=f"{family}, {n} networks, seed {seed}<br>step %{{x}}: %{{y:.2f}}<extra></extra>"),
                          row=1, col=2)
    fig.update_xaxes(type="log", title_text="training networks (log scale)", row=1, col=1)
    fig.update_xaxes(title_text="optimizer steps", row=1, col=2)
    fig.update_yaxes(title_text="gain on trained checkpoints (points)", row=1, col=1)
    fig.update_yaxes(title_text="gain, all checkpoints, val images (points)", row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", height=450, legend=dict(orientation="h", y=-0.2))
    return fig
