"""Figures of model zoos: accuracy distributions per family and checkpoint, hyperparameters against accuracy.

Pure functions: they take zoos (or their ``meta`` tables) and return a ``plotly.graph_objects.Figure``; nothing is
displayed or written here.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..reporting.captions import names, num, set_caption
from .style import PALETTE

__all__ = ["combined_meta", "accuracy_distribution_figure", "hparam_accuracy_figure", "accuracy_table"]

LOG_SCALE_HPARAMS = ("lr", "init_scale", "l2")
DEFAULT_HPARAMS = ("lr", "init_scale", "l2", "dropout", "train_fraction", "optimizer")
METRIC_LABELS = {"test_acc": "test accuracy", "val_acc": "val accuracy", "train_acc": "train accuracy",
                 "test_loss": "test cross-entropy", "train_loss": "train cross-entropy"}


def combined_meta(zoos) -> pd.DataFrame:
    """One table from ``{family: Zoo or meta DataFrame}`` (adds a ``family`` column) or a DataFrame as is."""
    if isinstance(zoos, pd.DataFrame):
        if "family" not in zoos.columns:
            raise ValueError("a meta table needs a 'family' column; pass {family: zoo} instead")
        return zoos
    if not isinstance(zoos, Mapping) or not zoos:
        raise ValueError("expected a non-empty {family: Zoo or meta DataFrame} mapping or a DataFrame with 'family'")
    frames = []
    for family, zoo in zoos.items():
        meta = zoo if isinstance(zoo, pd.DataFrame) else zoo.meta
        frames.append(meta.assign(family=family))
    return pd.concat(frames, ignore_index=True)


def _final_rows(meta: pd.DataFrame) -> pd.DataFrame:
    keys = ["family", "net_id"] if "family" in meta.columns else ["net_id"]
    last = meta.groupby(keys)["epoch"].transform("max")
    return meta[meta["epoch"] == last]


def _percent(metric: str) -> float:
    """Accuracies are stored as fractions in the zoo's meta table and shown in % like everywhere else."""
    return 100.0 if metric.endswith("_acc") else 1.0


def _label(metric: str) -> str:
    label = METRIC_LABELS.get(metric, metric)
    return f"{label} (%)" if metric.endswith("_acc") else label


def accuracy_distribution_figure(zoos, metric: str = "test_acc", chance: float | None = 0.1,
                                 title: str | None = None) -> go.Figure:
    """Box plots of ``metric`` per checkpoint epoch (x), one colour per family; a dashed line at ``chance`` (a
    fraction, like the meta table's accuracies; drawn in %)."""
    meta = combined_meta(zoos)
    if metric not in meta.columns:
        raise ValueError(f"unknown metric {metric!r}; meta columns are {list(meta.columns)}")
    scale = _percent(metric)
    fig = go.Figure()
    for family, rows in meta.groupby("family", sort=False):
        fig.add_trace(go.Box(
            x=rows["epoch"].astype(str), y=rows[metric] * scale, name=family, boxpoints="outliers",
            hovertext=[f"net {n}, split {s}" for n, s in zip(rows["net_id"], rows["split"])],
        ))
    if chance is not None and metric.endswith("_acc"):
        fig.add_hline(y=chance * scale, line_dash="dash", line_color="grey", annotation_text="chance")
    label = METRIC_LABELS.get(metric, metric)
    fig.update_layout(
        boxmode="group", title=title or f"{label} of the zoo networks by checkpoint epoch",
        xaxis_title="checkpoint epoch", yaxis_title=_label(metric), legend_title="family",
    )
    epochs = sorted(meta["epoch"].unique())
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(e) for e in epochs])
    unit = " %" if metric.endswith("_acc") else ""
    parts = []
    for family, rows in meta.groupby("family", sort=False):
        first, last = rows[rows["epoch"] == rows["epoch"].min()], rows[rows["epoch"] == rows["epoch"].max()]
        parts.append(f"{family} {num(first[metric].median() * scale)}{unit} at epoch {first['epoch'].iloc[0]}, "
                     f"{num(last[metric].median() * scale)}{unit} at epoch {last['epoch'].iloc[0]}")
    n_nets = meta.groupby("family", sort=False)["net_id"].nunique()
    return set_caption(fig, f"{int(n_nets.sum())} zoo networks ({names(n_nets.index)}), every checkpoint. Median "
                            f"{label}, first and last checkpoint: " + "; ".join(parts) + ".")


def _binned_median(x, y, categorical: bool, log: bool, bins: int = 6):
    """The median of ``y`` per category, or per quantile bin of ``x`` (at the bin's median x); for the trend line
    drawn over the points."""
    frame = pd.DataFrame({"x": x, "y": y}).dropna()
    if categorical:
        med = frame.groupby("x", sort=True)["y"].median()
        return list(med.index), med.to_numpy()
    if frame["x"].nunique() < 2:
        return [], np.array([])
    key = np.log(frame["x"]) if log else frame["x"]
    frame["bin"] = pd.qcut(key, q=min(bins, frame["x"].nunique()), duplicates="drop")
    med = frame.groupby("bin", observed=True).agg(x=("x", "median"), y=("y", "median"))
    return med["x"].to_numpy(), med["y"].to_numpy()


def hparam_accuracy_figure(zoos, hparams: Sequence[str] = DEFAULT_HPARAMS, metric: str = "test_acc",
                           epoch: int | str = "final", cols: int = 3, title: str | None = None) -> go.Figure:
    """One panel per hyperparameter: ``metric`` (accuracies in %) against its value at ``epoch`` (an int or
    ``"final"``), one colour per family: each network a small faint point, the family's median per bin of the
    hyperparameter (quantile bins; per value for categorical ones) a line over them, so the trend reads through the
    cloud. Learning rate, init scale and L2 use log axes; categorical ones (optimizer) are strips."""
    meta = combined_meta(zoos)
    missing = [h for h in (*hparams, metric) if h not in meta.columns]
    if missing:
        raise ValueError(f"meta lacks columns {missing}")
    rows = _final_rows(meta) if epoch == "final" else meta[meta["epoch"] == epoch]
    scale = _percent(metric)
    n_rows = -(-len(hparams) // cols)
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=list(hparams), shared_yaxes=True,
                        horizontal_spacing=0.05, vertical_spacing=0.15)
    for f_idx, (family, group) in enumerate(rows.groupby("family", sort=False)):
        color = PALETTE[f_idx % len(PALETTE)]
        for h_idx, hparam in enumerate(hparams):
            r, c = divmod(h_idx, cols)
            values = group[hparam]
            categorical = not pd.api.types.is_numeric_dtype(values)
            log = hparam in LOG_SCALE_HPARAMS and not categorical and bool((values > 0).all())
            x = values.astype(str).to_numpy() if categorical else values
            y = group[metric] * scale
            fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=family, legendgroup=family, showlegend=False,
                                     marker=dict(color=color, size=4, opacity=0.3),
                                     hovertext=[f"{family} net {n}" for n in group["net_id"]]), row=r + 1, col=c + 1)
            bx, by = _binned_median(x, y.to_numpy(), categorical, log)
            fig.add_trace(go.Scatter(x=bx, y=by, mode="lines+markers", name=f"{family} (median per bin)",
                                     legendgroup=family, showlegend=h_idx == 0, line=dict(color=color, width=2.5),
                                     marker=dict(color=color, size=7)), row=r + 1, col=c + 1)
            if log:
                fig.update_xaxes(type="log", row=r + 1, col=c + 1)
    label = METRIC_LABELS.get(metric, metric)
    which = "final checkpoint" if epoch == "final" else f"epoch {epoch}"
    fig.update_layout(title=title or f"hyperparameters vs {label} ({which})", legend_title="family",
                      height=320 * n_rows, template="plotly_white")
    for r in range(n_rows):
        fig.update_yaxes(title_text=_label(metric), row=r + 1, col=1)
    return set_caption(fig, f"Each faint point: one network at its {which}; line: its family's median per bin of "
                            "the hyperparameter.", _strongest_sentence(rows, hparams, metric))


def _strongest_sentence(rows: pd.DataFrame, hparams: Sequence[str], metric: str) -> str:
    """Per family, the numeric hyperparameter with the strongest rank correlation (Spearman) with ``metric``."""
    parts = []
    for family, group in rows.groupby("family", sort=False):
        rho = {h: group[h].corr(group[metric], method="spearman") for h in hparams
               if pd.api.types.is_numeric_dtype(group[h]) and group[h].nunique() > 1}
        rho = {h: r for h, r in rho.items() if r == r}
        if rho:
            best = max(rho, key=lambda h: abs(rho[h]))
            parts.append(f"{family} {best} (rank correlation {num(rho[best], 2, True)})")
    if not parts:
        return ""
    return ("The hyperparameter that orders accuracy most strongly, per family: " + "; ".join(parts) + ".")


def accuracy_table(zoos, metric: str = "test_acc") -> pd.DataFrame:
    """min / median / mean / max of ``metric`` per family and checkpoint epoch (a tidy table for display);
    accuracies in %, like every figure and table of the workbench."""
    meta = combined_meta(zoos)
    values = meta.assign(**{metric: meta[metric] * _percent(metric)})
    table = values.groupby(["family", "epoch"], sort=False)[metric].agg(["count", "min", "median", "mean", "max"])
    return table.astype({"count": np.int64})
