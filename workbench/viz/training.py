"""Figures for meta-optimizer training and the ablation (pure functions returning plotly Figures, each with its
caption: :mod:`workbench.reporting.captions`). Notebook 07's figures live in :mod:`.study` and are re-exported here.

A training curve whose last epoch is still its best and still improving
(:func:`~workbench.reporting.captions.still_improving`) is marked where it ends ("still falling"), and its caption says
the run had not converged."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..reporting.captions import IMPROVING_WINDOW, convergence, names, num, plural, set_caption, sig
from ..nets import NetSpec, Params
from ..records import RunKey
from .study import lam_pareto_figure, scaling_figure
from .style import PALETTE, method_dash, method_symbol

__all__ = [
    "PALETTE", "training_curves_figure", "weights_before_after_figure", "generalisation_figure", "overfitting_summary",
    "checkpoint_gain_figure", "training_curves_grid", "ablation_points_figure", "lam_pareto_figure", "scaling_figure",
]
STILL_FALLING = dict(symbol="arrow-down", size=13, color="black")


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
    state = {(" ".join(k.without_seed()) if isinstance(k, RunKey) else str(k)): convergence([e["val_loss"] for e in h])
             for k, h in histories.items()}
    best = [(max(100 * e["val_acc"] for e in h), str(k.label if isinstance(k, RunKey) else k))
            for k, h in histories.items() if h]
    top = max(best) if best else None
    return set_caption(fig, f"{len(histories)} run(s)." if histories else "No runs.",
                       f"Best validation accuracy: {num(top[0])} % ({top[1]})." if top else "",
                       _convergence_sentence(state, marked=False))


def _convergence_sentence(state: Mapping[str, str], marked: bool = True) -> str:
    """What a caption says about the runs' convergence (``{run: convergence(...)}``; ``marked``: the figure draws an
    arrow where a still-falling curve ends)."""
    falling = [run for run, s in state.items() if s == "falling"]
    short = [run for run, s in state.items() if s == "too short"]
    if short and len(short) == len(state):
        return (f"Too few epochs per run to tell whether training converged (under {IMPROVING_WINDOW + 1} epochs "
                "each).")
    arrow = " (an arrow marks where the curve ends)" if marked else ""
    parts = [f"Still falling at the last epoch, so not converged{arrow}: {names(falling)}." if falling else
             "No validation-loss curve was still falling at its last epoch (each levelled off or passed its best)."]
    if short:
        parts.append(f"Too few epochs to tell: {names(short)}.")
    return " ".join(parts)


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
    flat = [(np.concatenate([w[index].detach().cpu().numpy().ravel(), b[index].detach().cpu().numpy().ravel()]),
             np.concatenate([w1[index].detach().cpu().numpy().ravel(), b1[index].detach().cpu().numpy().ravel()]))
            for (w, b), (w1, b1) in zip(before, after)]
    x, y = np.concatenate([f[0] for f in flat]), np.concatenate([f[1] for f in flat])
    moved = float(np.mean(np.abs(y - x) > 1e-3 * max(float(np.abs(x).max()), 1e-12))) * 100
    ratio = float(np.abs(y).sum() / max(float(np.abs(x).sum()), 1e-300))
    return set_caption(fig, f"Each point is one of the {x.size:,} parameters of network {index}: initial value (x) "
                            f"against its value after the one shot (y); on the dotted diagonal it was left alone.",
                       f"{num(moved)} % of them moved by more than 0.1 % of the largest initial magnitude; the L1 norm "
                       f"after is {num(ratio, 2)} times the L1 norm before"
                       + (" (the one shot shrinks the network)." if ratio < 1 else "."))


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
    state = convergence([h["val_loss"] for h in history])
    if state == "falling":
        last = history[-1]
        fig.add_trace(go.Scatter(x=[last["epoch"]], y=[last["val_loss"]], mode="markers+text", marker=STILL_FALLING,
                                 text=["still falling"], textposition="bottom left", name="not converged: still "
                                 "falling at the last epoch"), row=1, col=1)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, template="plotly_white", height=400, margin=dict(l=50, r=20, t=80, b=40),
                      legend=dict(orientation="h", y=-0.2))
    return set_caption(fig, _generalisation_caption(history, state))


def _generalisation_caption(history: Sequence[dict], state: str) -> str:
    if not history:
        return "No epochs were run."
    s = overfitting_summary(history)
    best = next(h for h in history if h["epoch"] == s["best_epoch"])
    onset = s["overfitting_from_epoch"]
    return " ".join([
        f"{plural(s['epochs_run'], 'epoch')}; the best validation loss {num(s['best_val_loss'], 3)} at epoch "
        f"{s['best_epoch']} (validation accuracy there {num(100 * best['val_acc'])} %).",
        (f"Seen minus unseen objective at the best epoch: {num(s['seen_minus_val_at_best'], 3, True)}."
         if s["seen_minus_val_at_best"] == s["seen_minus_val_at_best"] else ""),
        (f"Overfitting from epoch {onset} (validation loss rising while the training networks' kept falling)."
         if onset is not None else "No sign of overfitting (the validation loss never rose while the training "
                                   "networks' kept falling)."),
        {"falling": "Not converged: the validation loss was still falling at the last epoch (arrow).",
         "levelled": "The validation loss had levelled off or passed its best before the end.",
         "too short": "Too few epochs to tell whether training converged."}[state],
    ]).replace("  ", " ").strip()


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
    by_epoch = frame[~frame["checkpoint"].isin(["trained", "all"])]
    trained = frame[frame["checkpoint"] == "trained"]
    worst = by_epoch.loc[by_epoch["gain"].idxmin()] if len(by_epoch) else None
    bestrow = by_epoch.loc[by_epoch["gain"].idxmax()] if len(by_epoch) else None
    return set_caption(fig, "Held-out networks' average test accuracy before (grey) and after the one shot (blue), by "
                            "the zoo checkpoint they come from; the number above a pair is the gain in points.",
                       (f"On trained checkpoints (epochs >= 1) the gain is {num(trained['gain'].iloc[0], 1, True)} "
                        "points." if len(trained) else ""),
                       "" if worst is None else f"Largest gain at epoch {bestrow['checkpoint']} "
                       f"({num(bestrow['gain'], 1, True)}), smallest at epoch {worst['checkpoint']} "
                       f"({num(worst['gain'], 1, True)}).")


def training_curves_grid(histories: Mapping[RunKey, Sequence[dict]], families: Sequence[str],
                         objectives: Sequence[str], key: str = "val_loss",
                         title: str = "Validation loss per epoch") -> go.Figure:
    """Small multiples: one panel per family x objective, one colour, dash and marker per method, one line per seed;
    a curve still falling at its last epoch (:func:`~workbench.reporting.captions.still_improving`) ends in an arrow.

    ``histories``: ``{RunKey(family, objective, method, seed): history}`` as returned by
    :func:`workbench.pipeline.run_ablation`."""
    families, objectives = list(families), list(objectives)
    fig = make_subplots(rows=len(families), cols=len(objectives), shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"{f} / {o}" for f in families for o in objectives])
    methods = list(dict.fromkeys(run.method for run in histories))
    shown, state = set(), {}
    for run, hist in histories.items():
        if run.family not in families or run.objective not in objectives:
            continue
        method, where = run.method, dict(row=families.index(run.family) + 1, col=objectives.index(run.objective) + 1)
        color, symbol = PALETTE[methods.index(method) % len(PALETTE)], method_symbol(method, methods.index(method))
        fig.add_trace(go.Scatter(x=[h["epoch"] for h in hist], y=[h[key] for h in hist], mode="lines+markers",
                                 line=dict(color=color, width=1.5, dash=method_dash(method)),
                                 marker=dict(symbol=symbol, size=6, color=color), name=method, legendgroup=method,
                                 showlegend=method not in shown, opacity=0.85,
                                 hovertemplate=f"{method} seed {run.seed}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>"),
                      **where)
        shown.add(method)
        state[run.label] = convergence([h[key] for h in hist])
        if state[run.label] == "falling":
            fig.add_trace(go.Scatter(x=[hist[-1]["epoch"]], y=[hist[-1][key]], mode="markers", marker=STILL_FALLING,
                                     name="still falling at the last epoch", legendgroup="falling",
                                     showlegend="falling" not in shown, hoverinfo="skip"), **where)
            shown.add("falling")
    ran = {(run.family, run.objective) for run in histories}
    for r, family in enumerate(families):
        for c, objective in enumerate(objectives):
            if (family, objective) not in ran:  # say why a panel is empty instead of leaving a blank square
                axis = r * len(objectives) + c + 1
                fig.add_annotation(text="not trained in this run<br>(not in its ablation's families for this objective)",
                                   xref=f"x{axis if axis > 1 else ''} domain", yref=f"y{axis if axis > 1 else ''} domain",
                                   x=0.5, y=0.5, showarrow=False, font=dict(size=11, color="#777777"))
    fig.update_xaxes(title_text="epoch", row=len(families))
    fig.update_layout(title=title, template="plotly_white", height=260 * len(families) + 80,
                      legend=dict(orientation="h", y=-0.08), margin=dict(l=50, r=20, t=80, b=60))
    total = sum(1 for r in histories if r.family in families and r.objective in objectives)
    return set_caption(fig, f"{key.replace('_', ' ')} of {total} training runs ({len(methods)} methods: "
                            f"{names(methods)}), one panel per family and objective, one line per seed.",
                       _convergence_sentence(state))


def ablation_points_figure(runs, initial, title: str = "Ablation: each objective by its own metric") -> go.Figure:
    """Two panels: CE -> held-out accuracy on trained checkpoints (%), L1 -> held-out test loss CE + lambda L1.
    One marker per seed, its shape and colour the method's (methods side by side per family), the initial networks'
    level as a dashed line."""
    panels = [("ce", "acc_trained", "CE: accuracy on trained checkpoints (%)", "acc_trained", False),
              ("l1", "loss", "L1: test loss CE + lambda L1 (lower is better)", "loss", True)]
    panels = [p for p in panels if (runs["objective"] == p[0]).any()]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[2] for p in panels], horizontal_spacing=0.1)
    methods = list(dict.fromkeys(runs["method"]))
    families = list(dict.fromkeys(runs["family"]))
    for col, (objective, metric, _, init_key, _) in enumerate(panels, start=1):
        sub = runs[runs["objective"] == objective]
        for i, method in enumerate(methods):
            m = sub[sub["method"] == method]
            x = [families.index(f) + (i - (len(methods) - 1) / 2) * 0.22 for f in m["family"]]
            name = _label(runs, method)
            fig.add_trace(go.Scatter(x=x, y=m[metric], mode="markers", name=name, legendgroup=method,
                                     showlegend=col == 1, marker=dict(size=11, color=PALETTE[i % len(PALETTE)],
                                                                      symbol=method_symbol(name, i),
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
    return set_caption(fig, "One marker per trained seed; dashed: the initial networks.",
                       *(_best_sentence(runs, objective, metric, lower) for objective, metric, _, _, lower in panels))


def _label(runs, method: str) -> str:
    m = runs[runs["method"] == method]
    return str(m["label"].iloc[0]) if "label" in m and len(m) else str(method)


def _best_sentence(runs, objective: str, metric: str, lower: bool) -> str:
    """Which method does best per family on ``objective``'s metric (mean over seeds), and by how much."""
    sub = runs[runs["objective"] == objective]
    parts = []
    for family, f in sub.groupby("family", sort=False):
        means = f.groupby("method", sort=False)[metric].mean().sort_values(ascending=lower)
        if len(means) > 1:
            margin = abs(means.iloc[0] - means.iloc[1])
            parts.append(f"{family} {_label(runs, means.index[0])} (by {sig(margin, 2)} over "
                         f"{_label(runs, means.index[1])})")
    seeds = sub.groupby(["family", "method"])["seed"].nunique()
    what = "lowest test loss" if lower else "highest accuracy"
    return (f"{objective.upper()}, {what} (mean over seeds) per family: " + "; ".join(parts) + "."
            + (" One seed per method: a difference is that of one trained model each." if len(seeds) and
               seeds.max() < 2 else "")) if parts else ""


