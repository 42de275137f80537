"""Hypothesis strategies and file writers shared by the tests."""
from __future__ import annotations

import gzip
import math
import types

import numpy as np
import torch
import pandas as pd
from hypothesis import strategies as st

from workbench.nets import ACTIVATIONS, NetSpec, small_cnn_zoo_spec


def _keeps_a_pixel(image_size: int, n_conv: int, k: int, s: int, p: int) -> bool:
    size = image_size
    for _ in range(n_conv):
        size = (size + 2 * p - k) // s + 1
        if size < 1:
            return False
    return True


@st.composite
def net_specs(draw, kinds=("mlp", "cnn"), min_depth: int = 1, max_depth: int = 3) -> NetSpec:
    """Random small MLPs/CNNs. ``depth`` = hidden layers (MLP) or conv layers (CNN); widths 1..6."""
    kind = draw(st.sampled_from(kinds))
    activation = draw(st.sampled_from(ACTIVATIONS))
    depth = draw(st.integers(max(min_depth, 1) if kind == "cnn" else min_depth, max_depth))
    widths = draw(st.lists(st.integers(1, 6), min_size=depth + 2, max_size=depth + 2))
    if kind == "mlp":
        return NetSpec.mlp(widths, activation)
    k = draw(st.sampled_from([1, 3, 5]))
    s = draw(st.sampled_from([1, 2]))
    p = draw(st.sampled_from([0, 1, 2]))
    smallest = next(n for n in range(1, 200) if _keeps_a_pixel(n, depth, k, s, p))
    image = draw(st.integers(smallest, smallest + 4))
    return NetSpec.cnn(widths[0], widths[1:-1], widths[-1], k, s, p, activation, image)


# -- the Small CNN Zoo file format ----------------------------------------------------------------------------
LAYOUT_NAMES = ["sequential/conv2d", "sequential/conv2d_1", "sequential/conv2d_2", "sequential/dense"]


def tf_shapes(spec):
    """(varname, TensorFlow shape) per layout row of ``spec``: bias then kernel per layer, as in the Small CNN Zoo."""
    shapes = []
    for layer in range(spec.n_layers):
        out, inp = spec.widths[layer + 1], spec.widths[layer]
        kernel = (3, 3, inp, out) if spec.is_conv(layer) else (inp, out)
        shapes.append((f"{LAYOUT_NAMES[layer]}/bias:0", (out,)))
        shapes.append((f"{LAYOUT_NAMES[layer]}/kernel:0", kernel))
    return shapes


def write_small_cnn_zoo(folder, n_networks=10, steps=(0, 86), seed=0, compress=True, shapes=None, n_columns=None):
    """Files in the Small CNN Zoo format: one row per checkpoint, networks alternating tanh / relu."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shapes = shapes or tf_shapes(small_cnn_zoo_spec())
    rows, start = [], 0
    for name, shape in shapes:
        size = math.prod(shape)
        rows.append({"varname": name, "start_idx": start, "end_idx": start + size, "size": size, "shape": str(shape)})
        start += size
    pd.DataFrame(rows).to_csv(folder / "layout.csv", index=False)
    n_rows = n_networks * len(steps)
    weights = (rng.normal(size=(n_rows, n_columns or start)) * 0.3).astype(np.float32)
    np.save(folder / "weights.npy", weights)
    net = np.repeat(np.arange(n_networks), len(steps))
    metrics = pd.DataFrame({
        "modeldir": [f"run{i}" for i in net],
        "step": np.tile(steps, n_networks),
        "test_accuracy": rng.uniform(0.1, 0.5, n_rows),
        "test_loss": rng.uniform(1.5, 2.3, n_rows),
        "train_accuracy": rng.uniform(0.1, 0.6, n_rows),
        "train_loss": rng.uniform(1.5, 2.3, n_rows),
        "config.activation": np.where(net % 2 == 0, "tanh", "relu"),
        "config.learning_rate": rng.uniform(1e-4, 1e-2, n_rows),
        "config.l2reg": rng.uniform(1e-8, 1e-2, n_rows),
        "config.dropout": rng.uniform(0, 0.7, n_rows),
        "config.train_fraction": rng.uniform(0.1, 1.0, n_rows),
        "config.optimizer": np.where(net % 3 == 0, "adam", "sgd"),
        "config.init_std": rng.uniform(1e-3, 0.5, n_rows),
    })
    if compress:
        with gzip.open(folder / "metrics.csv.gz", "wt") as fh:
            metrics.to_csv(fh, index=False)
    else:
        metrics.to_csv(folder / "metrics.csv", index=False)
    return weights, metrics


def tiny_data(seed=0, n=96):
    """A tiny 6-feature, 3-class data set with a linear teacher (train/val/test splits, ``split(name)``)."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(6, 3, generator=g)

    def split(m):
        x = torch.randn(m, 1, 1, 6, generator=g)
        return x, (x.reshape(m, 6) @ teacher).argmax(1)
    (xt, yt), (xv, yv), (xs, ys) = split(n), split(n // 2), split(n // 2)
    return types.SimpleNamespace(name="tiny", x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys,
                                 split=lambda s: {"train": (xt, yt), "val": (xv, yv), "test": (xs, ys)}[s])


def tiny_cifar(seed=0, n=64):
    """A stand-in for grayscale CIFAR-10 already loaded: random 1 x 32 x 32 images, 10 classes, ``n`` per split."""
    from workbench.data import Dataset

    g = torch.Generator().manual_seed(seed)
    parts = {}
    for split in ("train", "val", "test"):
        parts[f"x_{split}"] = torch.randn(n, 1, 32, 32, generator=g)
        parts[f"y_{split}"] = torch.randint(0, 10, (n,), generator=g)
    return Dataset("cifar10-gs", **parts)
