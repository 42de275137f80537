"""What ``python -m workbench optimize`` writes beside the new weights: the meta columns that say which numbers still
describe the weights, which split each network belongs to, and which networks a metanetwork trained on the zoo saw.

An optimized zoo keeps its source's split, so that reading it back scores the same test networks (a Small CNN Zoo
folder carries it in the ``workbench.split`` column, which :func:`~workbench.zoo.load_small_cnn_zoo` reads instead of
drawing a split). ``seen_in_training`` marks the source's training-split networks: a metanetwork trained on that zoo
(notebook 04, ``python -m workbench train``) learnt from them, so a gain there is no evidence of generalisation.
Metrics of the input weights move to ``<column>_before``; only what ``--evaluate`` measured on the new weights is
kept under the original names.
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..system.io import read_regular_bytes
from ..nets import Params, n_networks
from .container import Zoo
from .small_cnn_zoo import SPLIT_COLUMN, read_layout

__all__ = ["SPLIT_COLUMN", "SEEN_COLUMN", "EVALUATED_COLUMN", "NET_ID_COLUMN", "WORKBENCH_METRICS",
           "optimized_meta", "write_small_cnn_zoo_folder", "to_tf_rows"]

NET_ID_COLUMN = "workbench.net_id"  # the network's id in the source zoo
SEEN_COLUMN = "seen_in_training"  # the source's training-split networks
EVALUATED_COLUMN = "workbench.evaluated"  # True: test_accuracy/test_loss were measured on these weights
#: the workbench format's metrics of a network's weights (moved to *_before by an optimize)
WORKBENCH_METRICS = ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "l1")
_SMALL_CNN_ZOO_METRICS = ("train_accuracy", "train_loss", "test_loss")  # moved to *_before (test_accuracy: below)


def optimized_meta(zoo: Zoo, after: dict | None) -> pd.DataFrame:
    """The workbench-format meta of an optimized ``zoo``: the input's metrics as ``<column>_before`` (NaN under the
    original names, except ``test_acc``/``test_loss``/``l1`` when ``after`` holds what was measured on the new
    weights), and ``seen_in_training``."""
    meta = zoo.meta.copy()
    for column in WORKBENCH_METRICS:
        if column in meta.columns:
            meta[f"{column}_before"] = meta[column]
            meta[column] = np.nan
    if after is not None:
        meta["test_acc"] = after["acc"].double().numpy()
        meta["test_loss"] = after["ce"].double().numpy()
        meta["l1"] = after["l1"].double().numpy()
    meta[SEEN_COLUMN] = (meta["split"] == "train").to_numpy()
    return meta


def to_tf_rows(zoo: Zoo, params: Params, layout_file: Path) -> np.ndarray:
    """Inverse of the Small CNN Zoo import: params -> rows in the file's TensorFlow layout."""
    layers = read_layout(layout_file, zoo.spec.n_params, zoo.spec)
    n = n_networks(params)
    rows = np.zeros((n, zoo.spec.n_params), dtype=np.float32)
    for layer, ((kernel, bias), (w, b)) in enumerate(zip(layers, params)):
        w = w.detach().cpu()
        w = w.permute(0, 3, 4, 2, 1) if zoo.spec.is_conv(layer) else w.transpose(1, 2)  # back to (h, w, in, out)
        rows[:, kernel["start"]:kernel["end"]] = w.reshape(n, -1).numpy()
        rows[:, bias["start"]:bias["end"]] = b.detach().cpu().numpy()
    return rows


def _small_cnn_zoo_metrics(zoo: Zoo, after: dict | None, zoo_dir: Path) -> pd.DataFrame:
    """The source's metrics rows of ``zoo``'s entries, with what no longer describes the weights moved to
    ``*_before`` and the split, source network id and ``seen_in_training`` added. ``test_accuracy`` stays under its
    name (the loader needs one): the new weights' with ``after``, else the input's, which ``workbench.evaluated``
    (False) says."""
    source = next(p for p in (zoo_dir / "metrics.csv.gz", zoo_dir / "metrics.csv") if p.is_file())
    metrics = pd.read_csv(io.BytesIO(read_regular_bytes(source)), compression="gzip" if source.suffix == ".gz" else None)
    rows = zoo.meta["source_row"] if "source_row" in zoo.meta.columns else zoo.meta["net_id"]
    metrics = metrics.iloc[rows.to_numpy()].reset_index(drop=True)
    for column in _SMALL_CNN_ZOO_METRICS:
        if column in metrics.columns:
            metrics = metrics.rename(columns={column: f"{column}_before"})
    metrics["test_accuracy_before"] = metrics["test_accuracy"]
    if after is not None:
        metrics["test_accuracy"] = after["acc"].double().numpy()
        metrics["test_loss"] = after["ce"].double().numpy()
    metrics[EVALUATED_COLUMN] = after is not None
    metrics[SPLIT_COLUMN] = zoo.meta["split"].to_numpy()
    metrics[NET_ID_COLUMN] = zoo.meta["net_id"].to_numpy()
    metrics[SEEN_COLUMN] = (zoo.meta["split"] == "train").to_numpy()
    return metrics


def write_small_cnn_zoo_folder(tmp: Path, zoo: Zoo, new: Params, after: dict | None, zoo_dir: Path) -> None:
    """The optimized zoo in the Small CNN Zoo layout (``weights.npy``, ``layout.csv``, ``metrics.csv.gz``) in the new
    folder ``tmp``."""
    tmp.mkdir()
    rows = to_tf_rows(zoo, new, zoo_dir / "layout.csv")
    with open(tmp / "weights.npy", "wb") as fh:
        np.save(fh, rows)
    (tmp / "layout.csv").write_bytes(read_regular_bytes(zoo_dir / "layout.csv"))
    with gzip.open(tmp / "metrics.csv.gz", "wt") as fh:
        _small_cnn_zoo_metrics(zoo, after, zoo_dir).to_csv(fh, index=False)
