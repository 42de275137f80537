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


def accuracy_distribution_figure(zoos, metric: str = "test_acc", chance: float | None = 0.1,
                                 title: str | None = None) -> go.Figure:
    """Box plots of ``metric`` per checkpoint epoch (x), one colour per family; a dashed line at ``chance``."""
    meta = combined_meta(zoos)
    if metric not in meta.columns:
        raise ValueError(f"unknown metric {metric!r}; meta columns are {list(meta.columns)}")
    fig = go.Figure()
    for family, rows in meta.groupby("family", sort=False):
        fig.add_trace(go.Box(
            x=rows["epoch"].astype(str), y=rows[metric], name=family, boxpoints="outliers",
            hovertext=[f"net {n}, split {s}" for n, s in zip(rows["net_id"], rows["split"])],
        ))
    if chance is not None and metric.endswith("_acc"):
        fig.add_hline(y=chance, line_dash="dash", line_color="grey", annotation_text="chance")
    label = METRIC_LABELS.get(metric, metric)
    fig.update_layout(
        boxmode="group", title=title or f"{label} of the zoo networks by checkpoint epoch",
        xaxis_title="checkpoint epoch", yaxis_title=label, legend_title="family",
    )
    epochs = sorted(meta["epoch"].unique())
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(e) for e in epochs])
    return fig


def hparam_accuracy_figure(zoos, hparams: Sequence[str] = DEFAULT_HPARAMS, metric: str = "test_acc",
                           epoch: int | str = "final", cols: int = 3, title: str | None = None) -> go.Figure:
    """One panel per hyperparameter: ``metric`` against its value at ``epoch`` (an int or ``"final"``), one
    colour per family. Learning rate, init scale and L2 use log axes; categorical ones (optimizer) are strips."""
    meta = combined_meta(zoos)
    missing = [h for h in (*hparams, metric) if h not in meta.columns]
    if missing:
        raise ValueError(f"meta lacks columns {missing}")
    rows = _final_rows(meta) if epoch == "final" else meta[meta["epoch"] == epoch]
    n_rows = -(-len(hparams) // cols)
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=list(hparams), shared_yaxes=True,
                        horizontal_spacing=0.05, vertical_spacing=0.15)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for f_idx, (family, group) in enumerate(rows.groupby("family", sort=False)):
        color = palette[f_idx % len(palette)]
        for h_idx, hparam in enumerate(hparams):
            r, c = divmod(h_idx, cols)
            values = group[hparam]
            categorical = not pd.api.types.is_numeric_dtype(values)
            x = values.astype(str).to_numpy() if categorical else values
            fig.add_trace(
                go.Scatter(x=x, y=group[metric], mode="markers", name=family, legendgroup=family,
                           showlegend=h_idx == 0, marker=dict(color=color, size=5, opacity=0.6),
                           hovertext=[f"{family} net {n}" for n in group["net_id"]]),
                row=r + 1, col=c + 1,
            )
            if hparam in LOG_SCALE_HPARAMS and not categorical and (values > 0).all():
                fig.update_xaxes(type="log", row=r + 1, col=c + 1)
    label = METRIC_LABELS.get(metric, metric)
    which = "final checkpoint" if epoch == "final" else f"epoch {epoch}"
    fig.update_layout(title=title or f"hyperparameters vs {label} ({which})", legend_title="family",
                      height=320 * n_rows)
    for r in range(n_rows):
        fig.update_yaxes(title_text=label, row=r + 1, col=1)
    return fig


def accuracy_table(zoos, metric: str = "test_acc") -> pd.DataFrame:
    """min / median / mean / max of ``metric`` per family and checkpoint epoch (a tidy table for display)."""
    meta = combined_meta(zoos)
    table = meta.groupby(["family", "epoch"], sort=False)[metric].agg(["count", "min", "median", "mean", "max"])
    return table.astype({"count": np.int64})
