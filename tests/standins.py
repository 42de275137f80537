"""Format-exact stand-ins for the paper's data, written by the tests themselves (nothing is downloaded).

* :func:`write_cifar10_batches`: the CIFAR-10 *python version* -- ``data_batch_1..5`` and ``test_batch``, protocol-2
  pickles of dicts with byte-string keys ``b'batch_label'``, ``b'labels'`` (a list of ints), ``b'data'`` (uint8,
  N x 3072, the R, G and B planes of 32 x 32 images) and ``b'filenames'`` -- in a ``cifar-10-batches-py`` folder,
  with small synthetic images whose class shows in a smooth per-class pattern.
* :func:`write_trained_small_cnn_zoo`: a Small CNN Zoo folder -- the published architecture (3 x conv 16 3x3 stride 2
  valid, GAP, dense 10; 4,970 parameters), ``weights.npy`` with one row per checkpoint in the TensorFlow layout
  ``layout.csv`` describes (bias before kernel per layer, kernels (h, w, in, out)), ``metrics.csv.gz`` with the
  published column names -- of networks trained briefly (the workbench's vectorised trainer) on those images, tanh
  and ReLU networks interleaved as in the published files, checkpoints at steps 0, 1, 2, ... (steps are epochs).
"""
from __future__ import annotations

import gzip
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from strategies import tf_shapes

CIFAR_CLASSES = 10


def write_cifar10_batches(parent: Path, per_batch: int = 60, n_test: int = 120, seed: int = 0) -> Path:
    """``parent/cifar-10-batches-py`` with 5 training batches of ``per_batch`` images and a test batch of
    ``n_test``; returns the folder."""
    rng = np.random.default_rng(seed)
    folder = Path(parent) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    patterns = np.stack([np.sin(2 * np.pi * ((c % 4 + 1) * xx + (c // 4 + 1) * yy)) for c in range(CIFAR_CLASSES)])

    def batch(n, label):
        labels = rng.integers(0, CIFAR_CLASSES, n)
        gray = 127.5 + 60 * patterns[labels] + rng.normal(0, 30, (n, 32, 32))
        rgb = np.clip(np.stack([gray + rng.normal(0, 10, gray.shape) for _ in range(3)], axis=1), 0, 255)
        return {b"batch_label": label.encode(), b"labels": [int(v) for v in labels],
                b"data": rgb.astype(np.uint8).reshape(n, 3072),
                b"filenames": [f"standin_{label[:5]}_{i}.png".encode() for i in range(n)]}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump(batch(per_batch, f"training batch {i} of 5"), fh, protocol=2)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch(n_test, "testing batch 1 of 1"), fh, protocol=2)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"class{c}".encode() for c in range(CIFAR_CLASSES)],
                     b"num_cases_per_batch": per_batch, b"num_vis": 3072}, fh, protocol=2)
    return folder


def _layout(folder: Path, spec) -> None:
    rows, start = [], 0
    for name, shape in tf_shapes(spec):
        size = math.prod(shape)
        rows.append({"varname": name, "start_idx": start, "end_idx": start + size, "size": size, "shape": str(shape)})
        start += size
    pd.DataFrame(rows).to_csv(folder / "layout.csv", index=False)


def _tf_rows(zoo) -> np.ndarray:
    """Flat rows in the TensorFlow layout of ``layout.csv`` (the inverse of the importer's transposes)."""
    parts = []
    for layer, (w, b) in enumerate(zoo.params):
        w = w.permute(0, 3, 4, 2, 1) if zoo.spec.is_conv(layer) else w.transpose(1, 2)
        parts += [b.reshape(len(zoo), -1), w.reshape(len(zoo), -1)]
    return np.concatenate([p.detach().numpy() for p in parts], axis=1).astype(np.float32)


def _metrics(zoo, net_offset: int, activation: str, epochs: int) -> pd.DataFrame:
    """The published metrics columns of one activation's zoo, one row per checkpoint."""
    m = zoo.meta
    net = m["net_id"].to_numpy() * 2 + net_offset  # tanh and ReLU networks interleaved
    return pd.DataFrame({
        "config.activation": activation, "config.b_init": "zeros", "config.dataset": "cifar10",
        "config.dnn_architecture": "cnn", "config.dropout": m["dropout"].to_numpy(), "config.epochs": epochs,
        "config.epochs_between_checkpoints": 1, "config.init_std": m["init_scale"].to_numpy(),
        "config.l2reg": m["l2"].to_numpy(), "config.learning_rate": m["lr"].to_numpy(), "config.num_layers": 3,
        "config.num_units": 16, "config.optimizer": m["optimizer"].to_numpy(), "config.random_seed": net,
        "config.train_fraction": m["train_fraction"].to_numpy(), "config.w_init": "glorot_uniform",
        "modeldir": [f"standin/cifar10/run_{n:05d}" for n in net], "step": m["epoch"].to_numpy(),
        "test_accuracy": m["test_acc"].to_numpy(), "test_loss": m["test_loss"].to_numpy(),
        "train_accuracy": m["train_acc"].to_numpy(), "train_loss": m["train_loss"].to_numpy(),
        "laststep": m["epoch"].to_numpy() == epochs, "_net": net,
    })


def write_trained_small_cnn_zoo(folder: Path, data, n_networks: int = 24, epochs: int = 3, seed: int = 0) -> Path:
    """A Small CNN Zoo folder of ``n_networks`` networks (half tanh, half ReLU) trained for ``epochs`` epochs on
    ``data`` (grayscale CIFAR-10 as the workbench loads it), checkpoints at every epoch 0 .. ``epochs``."""
    from workbench.nets import small_cnn_zoo_spec
    from workbench.zoo import generate

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, frames = [], []
    for offset, activation in enumerate(("tanh", "relu")):
        zoo = generate(small_cnn_zoo_spec(activation), data, n_networks // 2, epochs=epochs,
                       checkpoints=list(range(epochs)), seed=seed + offset, progress=False)
        rows.append(_tf_rows(zoo))
        frames.append(_metrics(zoo, offset, activation, epochs))
    metrics = pd.concat(frames, ignore_index=True)
    order = np.lexsort((metrics["step"].to_numpy(), metrics["_net"].to_numpy()))  # by network, then step
    weights = np.concatenate(rows)[order]
    metrics = metrics.iloc[order].drop(columns=["_net"]).reset_index(drop=True)
    np.save(folder / "weights.npy", weights)
    _layout(folder, small_cnn_zoo_spec())
    with gzip.open(folder / "metrics.csv.gz", "wt") as fh:
        metrics.to_csv(fh, index=False)
    return folder
