"""The Small CNN Zoo importer (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights").

:func:`load_small_cnn_zoo` reads a Small CNN Zoo folder (``weights.npy`` with one flat row of TensorFlow-layout
parameters per checkpoint, ``layout.csv`` naming the slices of a row, ``metrics.csv[.gz]`` with one row of
metrics and training configuration per checkpoint) into a :class:`~workbench.zoo.container.Zoo` with the
reference split of the ScaleGMN paper. The files come from elsewhere, so everything is checked before it is
trusted: ``.npy`` headers before any data is read (no pickle, no forged sizes), CSV columns and number types,
the layout against the architecture, accuracies in [0, 1] and finite weights.
"""
from __future__ import annotations

import logging
import math
import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..nets import NetSpec, Params, small_cnn_zoo_spec
from .container import Zoo, ZooError
from .small_cnn_zoo_split import SPLIT_COLUMN, chosen_steps, select_networks

__all__ = ["load_small_cnn_zoo", "read_layout", "small_cnn_zoo_counts", "SMALL_CNN_ZOO_REQUIRED", "SPLIT_COLUMN"]

log = logging.getLogger(__name__)

SMALL_CNN_ZOO_REQUIRED = ("config.activation", "config.learning_rate", "config.l2reg", "config.dropout",
                          "config.train_fraction", "step", "test_accuracy")
_SMALL_CNN_ZOO_NUMBERS = ("test_accuracy", "config.learning_rate", "config.l2reg", "config.dropout",
                          "config.train_fraction", "train_accuracy", "train_loss", "test_loss", "config.init_std")
_LAYOUT_COLUMNS = ("varname", "start_idx", "end_idx", "size", "shape")



def _check_npy_header(file: Path) -> None:
    """Read only the header of ``file`` and refuse, before any data is read or memory allocated, what is not a
    complete 2-D float ``.npy`` array: a bad header, an object array (it could only be read by unpickling) or a
    file shorter than its header declares (truncated, or a forged enormous shape)."""
    try:
        with open(file, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except Exception as err:  # a corrupt header: ValueError, SyntaxError, struct.error, tokenize.TokenError, ...
        raise ZooError(f"{file} is truncated or not a .npy array (its header cannot be read: "
                       f"{type(err).__name__}: {str(err)[:200]})") from err
    if dtype.hasobject:
        raise ZooError(f"{file} holds Python objects (dtype {dtype}), which only unpickling could read; refusing "
                       "to load it (allow_pickle=False). Expected float32 weights (checkpoints, 4970)")
    if len(shape) != 2 or dtype.kind != "f":
        raise ZooError(f"{file} holds a {dtype} array of shape {shape}; expected float (checkpoints, 4970)")
    needed = math.prod(shape) * dtype.itemsize
    present = file.stat().st_size - offset
    if present < needed:
        raise ZooError(f"{file} is truncated: its header declares a {dtype} array of shape {shape} ({needed:,} "
                       f"bytes) but only {present:,} bytes follow")


def _parse_shape(text: str, where: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in str(text).strip("()[] ").replace(" ", "").split(",") if p != "")
    except ValueError as err:
        raise ZooError(f"{where}: cannot read the shape {str(text)[:80]!r}; expected e.g. (3, 3, 1, 16)") from err
    if not shape or min(shape) < 1:
        raise ZooError(f"{where}: the shape {str(text)[:80]!r} must list one or more positive sizes")
    return shape


def _read_csv(file: Path, what: str) -> pd.DataFrame:
    """A CSV file (optionally gzip-compressed) as a DataFrame, or a ZooError naming the file."""
    try:
        return pd.read_csv(file)
    except (ValueError, OSError, EOFError, zlib.error) as err:  # parser, encoding, empty file, corrupt gzip
        raise ZooError(f"{file} is not a readable {what} CSV file ({type(err).__name__}: {str(err)[:200]})") from err


def _int_columns(frame: pd.DataFrame, columns: Sequence[str], file: Path) -> None:
    """Convert ``columns`` of ``frame`` in place to int64; a ZooError names the first value that is not an
    integer (text, empty, fractional or beyond 2**53)."""
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() | (values % 1 != 0) | (values.abs() > 2**53)
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise ZooError(f"{file}: column {col!r} must hold integers, found {str(frame[col].iloc[first])[:40]!r} "
                           f"in row {first}")
        frame[col] = values.astype(np.int64)


def _float_columns(frame: pd.DataFrame, columns: Sequence[str], file: Path) -> None:
    """Convert ``columns`` of ``frame`` in place to float64 (empty cells become NaN); other text is a ZooError."""
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise ZooError(f"{file}: column {col!r} must hold numbers, found {str(frame[col].iloc[first])[:40]!r} "
                           f"in row {first}")
        frame[col] = values.astype(np.float64)


def _check_accuracies(metrics: pd.DataFrame, file: Path) -> None:
    """Accuracies are fractions: a value outside [0, 1] means a corrupt or foreign metrics file (NaN is allowed
    here; networks without a test accuracy are dropped and counted by the caller)."""
    for col in ("test_accuracy", "train_accuracy"):
        if col not in metrics.columns:
            continue
        values = metrics[col].to_numpy(dtype=np.float64)
        bad = np.flatnonzero((values < 0) | (values > 1) | np.isinf(values))
        if len(bad):
            shown = ", ".join(f"row {r}: {values[r]:g}" for r in bad[:10])
            raise ZooError(f"{file}: column {col!r} must hold accuracies in [0, 1]; {len(bad)} rows do not "
                           f"({shown}{' ...' if len(bad) > 10 else ''})")


def read_layout(file: Path, n_columns: int, spec: NetSpec) -> list[tuple[dict, dict]]:
    """Validate layout.csv and return per spec layer ``(kernel_entry, bias_entry)`` in the file's order."""
    layout = _read_csv(file, "Small CNN Zoo layout")
    missing = [c for c in _LAYOUT_COLUMNS if c not in layout.columns]
    if missing:
        raise ZooError(f"{file}: missing columns {missing}; expected {_LAYOUT_COLUMNS}")
    layout = layout.loc[:, list(_LAYOUT_COLUMNS)].copy()
    _int_columns(layout, ("start_idx", "end_idx", "size"), file)
    entries = []
    for row in layout.sort_values("start_idx").itertuples(index=False):
        shape = _parse_shape(row.shape, f"{file} ({row.varname})")
        start, end, size = int(row.start_idx), int(row.end_idx), int(row.size)
        if end - start != size or math.prod(shape) != size:
            raise ZooError(f"{file}: {row.varname} has start {start}, end {end}, size {size} and shape {shape}, "
                           "which do not agree")
        entries.append({"name": row.varname, "start": start, "end": end, "shape": shape})
    total = sum(e["end"] - e["start"] for e in entries)
    if total != n_columns:
        raise ZooError(f"{file} describes {total} values per network but weights.npy has {n_columns} columns")
    if total != spec.n_params:
        raise ZooError(f"{file} describes {total} values per network; the Small CNN Zoo architecture "
                       f"({spec.describe()}) has {spec.n_params:,}")
    if [e["start"] for e in entries] != [0] + [e["end"] for e in entries[:-1]]:
        raise ZooError(f"{file}: the entries do not tile the weight row without gaps or overlaps")
    layers, pending = [], {}
    for e in entries:
        role = "bias" if len(e["shape"]) == 1 else "kernel"
        if role in pending:
            raise ZooError(f"{file}: two {role}s in a row ({pending[role]['name']}, {e['name']}); expected bias and "
                           "kernel per layer")
        pending[role] = e
        if len(pending) == 2:
            layers.append((pending["kernel"], pending["bias"]))
            pending = {}
    if pending or len(layers) != spec.n_layers:
        raise ZooError(f"{file}: found {len(layers)} (kernel, bias) pairs; {spec.describe()} has "
                       f"{spec.n_layers} layers")
    for layer, (kernel, bias) in enumerate(layers):
        out, inp = spec.widths[layer + 1], spec.widths[layer]
        k = spec.kernel_size
        want = (k, k, inp, out) if spec.is_conv(layer) else (inp, out)
        if kernel["shape"] != want or bias["shape"] != (out,):
            raise ZooError(f"{file}: layer {layer} has kernel {kernel['shape']} and bias {bias['shape']}; "
                           f"expected TensorFlow layout {want} and ({out},)")
    return layers


def load_small_cnn_zoo(
    path: str | os.PathLike,
    activation: str | None = None,
    step: int | None = None,
    mmap: bool = True,
    split_seed: int = 0,
    *,
    steps: Sequence[int] | str | None = None,
    drop_nonfinite: bool = False,
    dataset: str = "cifar10-gs",
) -> Zoo:
    """Import a Small CNN Zoo directory (``weights.npy``, ``layout.csv``, ``metrics.csv[.gz]``) with the reference
    split of the ScaleGMN paper.

    Keeps the checkpoints at ``steps`` -- a list of steps, ``"all"`` (every step present: 0, 1, 2, 3, 20, 40, 60,
    80 and 86 in the published zoo) or None: ``[step]``, by default the largest step present (86, the reference's
    choice). The split is the reference's whatever the steps: a fixed permutation (:func:`split_networks` with
    ``split_seed``; second half test, first half 80/20 train/val) of the networks' final checkpoints (the largest
    step present), drawn before the networks with ``activation`` are kept (required when several are present); every
    checkpoint of a network shares its split. Checkpoints of one network are linked by the ``modeldir`` column (the
    published files have it), needed for any choice but the final step alone; checkpoints of networks without a
    final one are left out and counted (``info["dropped_no_final"]``). TensorFlow kernels ``(h, w, in, out)``
    become ``(out, in, h, w)``, the dense kernel ``(16, 10)`` becomes ``(10, 16)``.

    ``meta`` keeps every original metrics column and adds the workbench columns (``net_id`` = the row of the
    network's final checkpoint in the files, ``source_row`` = the entry's own row, ``epoch`` = step (the published
    steps are epochs), ``test_acc`` = test_accuracy, ``lr`` = config.learning_rate, ...; NaN/"" where the files have
    no counterpart). ``weights.npy`` is memory-mapped (``mmap``) so only kept rows are read; it is loaded with
    ``allow_pickle=False``. Rows with NaN/inf weights are an error unless ``drop_nonfinite`` (then they are left
    out and counted).
    """
    path = Path(path).expanduser()
    weights, weights_file, layers, metrics, metrics_file = _read_files(path, mmap)
    chosen = chosen_steps(metrics, steps, step)
    sel = select_networks(metrics, metrics_file, chosen, activation, split_seed)
    rows, split, net_ids = sel.rows, sel.split, sel.net_ids
    flat = np.asarray(weights[rows], dtype=np.float32)  # reads only the kept rows of a memory map
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        n_bad = int((~finite).sum())
        if not drop_nonfinite:
            raise ZooError(f"{weights_file}: {n_bad} of {len(rows)} selected networks have NaN/inf weights; pass "
                           "drop_nonfinite=True to drop them")
        log.warning("dropping %d networks with non-finite weights from %s", n_bad, weights_file)
        rows, split, net_ids, flat = rows[finite], split[finite], net_ids[finite], flat[finite]

    spec = small_cnn_zoo_spec(sel.activation)
    params = _params_from_tf(spec, layers, torch.from_numpy(flat))
    meta = _workbench_meta(metrics.iloc[rows].reset_index(drop=True), rows, net_ids, split)
    info = {"source": "small-cnn-zoo", "path": str(path), "step": max(chosen), "steps": chosen,
            "activation": sel.activation, "dropped_nonfinite": int((~finite).sum()),
            "dropped_nan_accuracy": sel.n_nan_accuracy, "dropped_no_final": sel.n_no_final}
    return Zoo(spec, params, meta, dataset, split_seed=split_seed, info=info)


def small_cnn_zoo_counts(path: str | os.PathLike, activation: str, steps=None, split_seed: int = 0) -> pd.DataFrame:
    """What :func:`load_small_cnn_zoo` would import, counted without reading any weights: one row per split with
    ``networks``, ``entries`` (checkpoints) and ``trained`` (entries at steps >= 1). The files are checked as by the
    import (a ZooError names what is wrong)."""
    _, _, _, metrics, metrics_file = _read_files(Path(path).expanduser(), mmap=True)
    sel = select_networks(metrics, metrics_file, chosen_steps(metrics, steps, None), activation, split_seed)
    frame = pd.DataFrame({"split": sel.split, "net_id": sel.net_ids,
                          "trained": metrics["step"].to_numpy()[sel.rows] >= 1})
    counts = frame.groupby("split").agg(networks=("net_id", "nunique"), entries=("net_id", "size"),
                                        trained=("trained", "sum"))
    return counts.reindex(["train", "val", "test"], fill_value=0).astype(int)


def _read_files(path: Path, mmap: bool) -> tuple[np.ndarray, Path, list[tuple[dict, dict]], pd.DataFrame, Path]:
    """The folder's three files, checked against each other: ``(weights (checkpoints, 4970), weights_file,
    layers, metrics, metrics_file)`` with ``layers`` from :func:`read_layout` and ``metrics`` typed."""
    if not path.is_dir():
        raise ZooError(f"{path} is not a directory; expected a Small CNN Zoo folder with weights.npy, layout.csv "
                       "and metrics.csv.gz")
    weights_file, layout_file = path / "weights.npy", path / "layout.csv"
    metrics_file = next((path / n for n in ("metrics.csv.gz", "metrics.csv") if (path / n).is_file()), None)
    missing = [str(f) for f in (weights_file, layout_file) if not f.is_file()]
    if metrics_file is None:
        missing.append(str(path / "metrics.csv.gz (or metrics.csv)"))
    if missing:
        raise ZooError(f"Small CNN Zoo files missing: {', '.join(missing)}")
    _check_npy_header(weights_file)
    try:
        weights = np.load(weights_file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ZooError(f"{weights_file} is truncated or not a .npy array ({err})") from err
    if weights.ndim != 2 or weights.dtype.kind != "f":
        raise ZooError(f"{weights_file} holds a {weights.dtype} array of shape {weights.shape}; expected float "
                       "(checkpoints, 4970)")

    layers = read_layout(layout_file, weights.shape[1], small_cnn_zoo_spec("tanh"))
    metrics = _read_csv(metrics_file, "Small CNN Zoo metrics")
    absent = [c for c in SMALL_CNN_ZOO_REQUIRED if c not in metrics.columns]
    if absent:
        raise ZooError(f"{metrics_file} lacks columns {absent}; required are {SMALL_CNN_ZOO_REQUIRED}")
    if len(metrics) != weights.shape[0]:
        raise ZooError(f"{metrics_file} has {len(metrics)} rows but {weights_file} has {weights.shape[0]}")
    if len(metrics) == 0:
        raise ZooError(f"{metrics_file} and {weights_file} hold no checkpoints")
    _int_columns(metrics, ["step"], metrics_file)
    _float_columns(metrics, [c for c in _SMALL_CNN_ZOO_NUMBERS if c in metrics.columns], metrics_file)
    _check_accuracies(metrics, metrics_file)
    return weights, weights_file, layers, metrics, metrics_file


def _params_from_tf(spec: NetSpec, layers: list[tuple[dict, dict]], flat: torch.Tensor) -> Params:
    """Batched parameters from flat TensorFlow-layout rows ``flat (B, n_params)`` sliced as ``layers`` says."""
    params = []
    for layer, (kernel, bias) in enumerate(layers):
        w = flat[:, kernel["start"]:kernel["end"]].reshape(-1, *kernel["shape"])
        # TF (B, h, w, in, out) -> (B, out, in, h, w); dense (B, in, out) -> (B, out, in)
        w = w.permute(0, 4, 3, 1, 2) if spec.is_conv(layer) else w.transpose(1, 2)
        b = flat[:, bias["start"]:bias["end"]]
        params.append((w.contiguous(), b.contiguous()))
    return params


def _workbench_meta(original: pd.DataFrame, rows: np.ndarray, net_ids: np.ndarray, split: np.ndarray) -> pd.DataFrame:
    """The workbench's meta columns from the imported entries' ``original`` metrics rows (``rows`` of the files,
    their networks' ``net_ids`` and ``split``), followed by every original column that has no workbench name."""
    col = lambda name, default=np.nan: original[name] if name in original.columns else default
    meta = pd.DataFrame({
        "net_id": net_ids.astype(np.int64),
        "epoch": original["step"].astype(np.int64),
        "split": split,
        "train_acc": col("train_accuracy"),
        "val_acc": np.nan,
        "test_acc": original["test_accuracy"].astype(float),
        "train_loss": col("train_loss"),
        "val_loss": np.nan,
        "test_loss": col("test_loss"),
        "lr": original["config.learning_rate"].astype(float),
        "init_scale": col("config.init_std"),
        "l2": original["config.l2reg"].astype(float),
        "dropout": original["config.dropout"].astype(float),
        "train_fraction": original["config.train_fraction"].astype(float),
        "optimizer": col("config.optimizer", ""),
        "batch_size": col("config.batch_size"),
        "source_row": rows.astype(np.int64),
    })
    extra = original.drop(columns=[c for c in original.columns if c in meta.columns])
    return pd.concat([meta, extra], axis=1)
