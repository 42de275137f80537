"""Model zoos: many small trained networks with their metadata, the input data of every metanetwork.

A :class:`Zoo` holds one :class:`~workbench.nets.NetSpec`, batched parameters with one entry per network
checkpoint and a ``meta`` table (one row per entry: network id, epoch, split, accuracies, losses and the
hyperparameters the network was trained with). Zoos come from two places:

* :func:`generate` trains a whole zoo at once, vectorised over the network dimension, each network with its own
  hyperparameters sampled in the spirit of the Small CNN Zoo (Unterthiner et al. 2020, "Predicting Neural Network
  Accuracy from Weights"): log-uniform learning rate, initialisation scale and L2 weight, a dropout rate, a
  fraction of the training data, SGD (momentum 0.9) or Adam. Checkpoints at several epochs make the zoo span weak
  to strong networks.
* :func:`load_small_cnn_zoo` imports the Small CNN Zoo files (``weights.npy``, ``layout.csv``, ``metrics.csv.gz``)
  with the reference split of the ScaleGMN paper.

Zoos are stored as a directory (safetensors + CSV + JSON manifest, never pickle), written atomically.

Vectorised training: every network gets its own minibatch ``(B, N, ...)``; gradients of all networks come from one
backward pass and one optimizer step updates all of them with per-network learning rates and update rules. The
forward pass is :func:`workbench.nets.forward` with per-network inputs: batched matrix products for MLPs and, for
CNNs with small feature maps such as the digits CNN, for conv layers too (the patches of the train split are
computed once), grouped convolutions for larger maps (see :func:`workbench.nets.conv_route` and bench/README.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from .data import Dataset
from .errors import WorkbenchError
from .io import atomic_path, crash_point, sha256_file as _sha256
from .nets import NetSpec, Params, SpecError, check_params, flatten_params, forward, init_params, prepare_inputs
from .nets import small_cnn_zoo_spec, unflatten_params
from .objective import evaluate

log = logging.getLogger(__name__)

FAMILIES = ("mlp-tanh", "mlp-relu", "cnn-tanh", "cnn-relu")
OPTIMIZERS = ("sgd", "adam")
HPARAM_COLUMNS = ("lr", "init_scale", "l2", "dropout", "train_fraction", "optimizer")
META_COLUMNS = (
    "net_id", "epoch", "split", "train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss",
    "lr", "init_scale", "l2", "dropout", "train_fraction", "optimizer", "batch_size",
)
DEFAULT_EPOCHS = 5
DEFAULT_CHECKPOINTS = (0, 1, 2)
DEFAULT_BATCH_SIZE = 32
FORMAT = "workbench-zoo"
FORMAT_VERSION = 1
MANIFEST = "zoo.json"
PARAMS_FILE = "params.safetensors"
META_FILE = "meta.csv"
SPLITS = ("train", "val", "test")
SGD_MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class ZooError(WorkbenchError, ValueError):
    """A zoo (generated or on disk) is missing, incomplete or inconsistent."""


# -- architectures ------------------------------------------------------------------------------------------------
def default_spec(family: str, dataset: str = "digits") -> NetSpec:
    """The workbench's network architecture for ``family`` (``"mlp-tanh"``, ``"mlp-relu"``, ``"cnn-tanh"``,
    ``"cnn-relu"``) on ``dataset`` (``"digits"`` or ``"cifar10-gs"``).

    * digits MLP: 64-16-16-10 (1,482 parameters; small enough that the metanetwork trains on it in seconds on a CPU).
    * digits CNN: the Small CNN Zoo design scaled to 8x8 inputs: 3 x conv 8 channels 3x3, stride 2, padding 1
      (8 -> 4 -> 2 -> 1), global average pooling, dense 10 (1,338 parameters). Stride 2 as in the Small CNN Zoo;
      padding 1 keeps the third layer from vanishing. (Stride 1 'valid' (8 -> 6 -> 4 -> 2) trains a little better
      but costs 3.5x the multiply-adds, which on a 2-core CPU doubles the zoo generation time.)
    * cifar10-gs MLP: 1024-32-32-10; cifar10-gs CNN: :func:`~workbench.nets.small_cnn_zoo_spec` (4,970).
    """
    if family not in FAMILIES:
        raise ZooError(f"unknown network family {family!r}; valid families are {FAMILIES}")
    kind, activation = family.split("-")
    if dataset == "digits":
        if kind == "mlp":
            return NetSpec.mlp((64, 16, 16, 10), activation)
        return NetSpec.cnn(1, (8, 8, 8), 10, kernel_size=3, stride=2, padding=1, activation=activation, image_size=8)
    if dataset == "cifar10-gs":
        if kind == "mlp":
            return NetSpec.mlp((1024, 32, 32, 10), activation)
        return small_cnn_zoo_spec(activation)
    raise ZooError(f"no default architecture for data set {dataset!r}; valid data sets are ('digits', 'cifar10-gs')")


# -- hyperparameters ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HParamSpace:
    """Where per-network hyperparameters are drawn from (ranges are (low, high); lr, init_scale, l2 log-uniform,
    dropout and train_fraction uniform, optimizer uniformly from ``optimizers``). The learning rate range depends on
    the optimizer, since SGD with momentum and Adam live on different scales."""

    lr_sgd: tuple[float, float] = (1e-2, 3e-1)
    lr_adam: tuple[float, float] = (1e-3, 3e-2)
    init_scale: tuple[float, float] = (0.5, 2.0)
    l2: tuple[float, float] = (1e-6, 1e-2)
    dropout: tuple[float, float] = (0.0, 0.4)
    train_fraction: tuple[float, float] = (0.2, 1.0)
    optimizers: tuple[str, ...] = OPTIMIZERS

    def __post_init__(self):
        for name in ("lr_sgd", "lr_adam", "init_scale", "l2", "dropout", "train_fraction"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ZooError(f"HParamSpace.{name} = {(lo, hi)} must be (low, high) with low <= high")
        if min(self.lr_sgd[0], self.lr_adam[0], self.init_scale[0], self.l2[0]) <= 0:
            raise ZooError("log-uniform ranges (lr, init_scale, l2) must be positive")
        dropout_ok = 0 <= self.dropout[0] and self.dropout[1] < 1
        if not (dropout_ok and 0 < self.train_fraction[0] and self.train_fraction[1] <= 1):
            raise ZooError("dropout must lie in [0, 1) and train_fraction in (0, 1]")
        bad = set(self.optimizers) - set(OPTIMIZERS)
        if not self.optimizers or bad:
            raise ZooError(f"unknown optimizers {sorted(bad)}; valid are {OPTIMIZERS}")

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def sample_hparams(n: int, seed: int = 0, space: HParamSpace | None = None) -> pd.DataFrame:
    """``n`` rows of hyperparameters (columns :data:`HPARAM_COLUMNS`), deterministic given ``seed``."""
    space = space or HParamSpace()
    rng = np.random.default_rng(seed)

    def log_uniform(lo_hi, size=n):
        lo, hi = np.log(lo_hi[0]), np.log(lo_hi[1])
        return np.exp(rng.uniform(lo, hi, size))

    optimizer = np.asarray(space.optimizers)[rng.integers(0, len(space.optimizers), n)]
    lr = np.where(optimizer == "adam", log_uniform(space.lr_adam), log_uniform(space.lr_sgd))
    return pd.DataFrame({
        "lr": lr,
        "init_scale": log_uniform(space.init_scale),
        "l2": log_uniform(space.l2),
        "dropout": rng.uniform(*space.dropout, n),
        "train_fraction": rng.uniform(*space.train_fraction, n),
        "optimizer": optimizer.astype(str),
    })


def _resolve_hparams(hparams, n: int, seed: int) -> pd.DataFrame:
    """None / HParamSpace -> sampled; a DataFrame or mapping -> explicit per-network values (scalars broadcast)."""
    if hparams is None or isinstance(hparams, HParamSpace):
        return sample_hparams(n, seed, hparams)
    if isinstance(hparams, Mapping):
        hparams = pd.DataFrame({k: (v if np.ndim(v) else [v] * n) for k, v in hparams.items()})
    if not isinstance(hparams, pd.DataFrame):
        raise ZooError(f"hparams must be None, an HParamSpace, a DataFrame or a dict, got {type(hparams).__name__}")
    missing = [c for c in HPARAM_COLUMNS if c not in hparams.columns]
    if missing or len(hparams) != n:
        raise ZooError(
            f"explicit hparams need the columns {HPARAM_COLUMNS} (missing {missing}) and one row per network "
            f"({n}), got {len(hparams)} rows"
        )
    hp = hparams.loc[:, list(HPARAM_COLUMNS)].reset_index(drop=True).copy()
    bad_opt = set(hp["optimizer"]) - set(OPTIMIZERS)
    if bad_opt:
        raise ZooError(f"unknown optimizers {sorted(bad_opt)} in hparams; valid are {OPTIMIZERS}")
    for col in ("lr", "init_scale", "l2", "dropout", "train_fraction"):
        hp[col] = hp[col].astype(float)
    if (hp["lr"] <= 0).any() or (hp["init_scale"] <= 0).any() or (hp["l2"] < 0).any():
        raise ZooError("hparams need lr > 0, init_scale > 0 and l2 >= 0")
    if not (hp["dropout"].between(0, 1, inclusive="left").all() and hp["train_fraction"].between(0, 1, "right").all()):
        raise ZooError("hparams need dropout in [0, 1) and train_fraction in (0, 1]")
    hp["optimizer"] = hp["optimizer"].astype(str)
    return hp


# -- vectorised training --------------------------------------------------------------------------------------------
def train_networks(
    spec: NetSpec,
    data: Dataset,
    theta: Tensor,
    hparams: pd.DataFrame,
    *,
    epochs: int,
    checkpoints: Sequence[int] = (),
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[int, Tensor], Tensor, Tensor]:
    """Train B networks at once from flat parameters ``theta (B, n_params)``, each with its own hyperparameters.

    Network b trains on its own random subset of ``round(train_fraction_b * n_train)`` examples of the train
    split; one epoch is one pass over that subset in ``steps_b = ceil(subset / batch_size)`` minibatches (the last
    one topped up from the start of the shuffled subset), reshuffled every epoch. Networks are processed sorted by
    ``steps_b`` so the networks still inside their epoch at any step are a prefix of the batch and networks with
    small subsets cost nothing once their epoch is done. The loss of network b is
    ``CE + l2_b / 2 * ||theta_b||^2`` (TensorFlow's ``l2_loss`` convention, as in the Small CNN Zoo) with inverted
    dropout at rate ``dropout_b`` after every hidden activation. The update is SGD with momentum 0.9 or Adam
    (betas 0.9, 0.999), per network, with its own learning rate, on the stacked tensors in one step. A network
    whose loss or update becomes non-finite keeps its last finite parameters and is frozen (``diverged``).

    Returns ``({epoch: (B, n_params) CPU parameters}, diverged (B,) bool, steps_per_epoch (B,) int)``; epoch 0 is
    the initialisation, ``epochs`` is always kept. Checkpoints outside 0..epochs are an error.
    """
    device = theta.device
    n_nets = theta.shape[0]
    keep_epochs = sorted({int(e) for e in checkpoints} | {int(epochs)})
    if keep_epochs[0] < 0 or keep_epochs[-1] > epochs:
        raise ZooError(f"checkpoint epochs {sorted(checkpoints)} must lie within 0..epochs={epochs}")
    if len(hparams) != n_nets:
        raise ZooError(f"{len(hparams)} hyperparameter rows for {n_nets} networks")
    x_train, y_train = data.split("train")
    x_train, y_train = x_train.to(device), y_train.to(device)
    n_train = len(y_train)
    gen = torch.Generator().manual_seed(seed)  # index sampling on the CPU: the same stream on every device
    drop_gen = torch.Generator(device=device).manual_seed(seed + 1)

    subset = np.maximum(1, np.round(hparams["train_fraction"].to_numpy(dtype=np.float64) * n_train)).astype(np.int64)
    steps_per_epoch = -(-subset // batch_size)
    rank = np.argsort(-steps_per_epoch, kind="stable")  # internal order: most steps first
    unrank = torch.as_tensor(np.argsort(rank))
    hp = hparams.iloc[rank].reset_index(drop=True)
    subset_t = torch.as_tensor(subset[rank])
    steps_sorted = steps_per_epoch[rank]
    max_steps = int(steps_sorted[0])
    active = [int((steps_sorted > s).sum()) for s in range(max_steps)]  # networks still in their epoch at step s

    as_col = lambda col: torch.tensor(hp[col].to_numpy(dtype=np.float64), dtype=theta.dtype, device=device)
    lr, l2, dropout = as_col("lr")[:, None], as_col("l2")[:, None], as_col("dropout")
    dropout = dropout if bool((dropout > 0).any()) else None  # a tensor draws masks; None: no dropout at all
    is_adam = torch.tensor((hp["optimizer"] == "adam").to_numpy(dtype=bool), device=device)[:, None]
    # SGD with momentum and Adam share one first-moment update m <- m_decay * m + m_gain * g
    m_decay = torch.where(is_adam, ADAM_BETAS[0], SGD_MOMENTUM).to(theta.dtype)
    m_gain = torch.where(is_adam, 1 - ADAM_BETAS[0], 1.0).to(theta.dtype)
    if spec.kind == "cnn" and spec.image_size is None:
        raise ZooError("training a CNN needs spec.image_size (the input side length)")
    x_train, forward_kw = prepare_inputs(spec, x_train)  # the dense CNN route: patches of every train image, once
    # network b's subset: the first subset[b] entries of its own random order of the train split
    order = torch.argsort(torch.rand(n_nets, n_train, generator=gen), dim=1)  # (B, n_train)

    theta = theta.detach()[torch.as_tensor(rank, device=device)].clone()
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    t = torch.zeros(n_nets, 1, dtype=theta.dtype, device=device)  # per-network Adam step count
    frozen = torch.zeros(n_nets, dtype=torch.bool, device=device)
    saved = {0: theta[unrank.to(device)].cpu()} if 0 in keep_epochs else {}
    bar = tqdm(total=epochs * max_steps, desc=f"{n_nets} x {spec.family}", disable=not progress, leave=False)
    for epoch in range(1, epochs + 1):
        keys = torch.rand(n_nets, n_train, generator=gen)
        keys[torch.arange(n_train)[None, :] >= subset_t[:, None]] = 2.0  # positions outside the subset sort last
        perm = torch.argsort(keys, dim=1)  # (B, n_train): a fresh shuffle of each subset first
        slots = torch.arange(max_steps * batch_size)[None, :] % subset_t[:, None]
        epoch_idx = torch.gather(order, 1, torch.gather(perm, 1, slots)).to(device)  # (B, max_steps * bs)
        for step in range(max_steps):
            na = active[step]
            idx = epoch_idx[:na, step * batch_size:(step + 1) * batch_size]  # (na, bs)
            xb, yb = x_train[idx], y_train[idx]  # (na, bs, ...) images or patches, (na, bs)
            # one leaf per weight/bias, each a view into theta: no parameter copies, no zero-filled flat gradient
            leaves = [t_.detach().requires_grad_(True) for pair in unflatten_params(spec, theta[:na]) for t_ in pair]
            params_ = [(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]
            logits = forward(spec, params_, xb, per_network=True, dropout=0.0 if dropout is None else dropout[:na],
                             generator=drop_gen, **forward_kw)
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none")
            loss = ce.reshape(na, -1).mean(1).detach()  # (na,)
            grads = torch.autograd.grad(ce.sum() / yb.shape[1], leaves)  # each network's own gradient
            grad = torch.cat([g.reshape(na, -1) for g in grads], dim=1)  # (na, n_params)
            with torch.no_grad():
                params, mv, vv, tv = theta[:na], m[:na], v[:na], t[:na]
                adam = is_adam[:na]
                grad.addcmul_(params, l2[:na])  # + d/dtheta l2/2 ||theta||^2
                tv += 1
                mv.mul_(m_decay[:na]).addcmul_(grad, m_gain[:na])
                vv.mul_(ADAM_BETAS[1]).addcmul_(grad, grad, value=1 - ADAM_BETAS[1])
                # Adam: lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps); SGD: lr * m / (0 * sqrt(v) + 1)
                scale = torch.where(adam, lr[:na] / (1 - ADAM_BETAS[0] ** tv), lr[:na]) * (~frozen[:na, None])
                denom = vv.sqrt().mul_(torch.where(adam, (1 - ADAM_BETAS[1] ** tv).rsqrt(), 0.0))
                denom.add_(torch.where(adam, ADAM_EPS, 1.0))
                update = (mv * scale).div_(denom)
                # a NaN/inf anywhere in a row makes its sum non-finite (as does an overflowing update)
                bad = ~torch.isfinite(update.sum(1)) | ~torch.isfinite(loss)
                if bool(bad.any()):
                    frozen[:na] |= bad
                    update[bad] = 0.0
                params.sub_(update)
            bar.update(1)
        if epoch in keep_epochs:
            saved[epoch] = theta[unrank.to(device)].cpu()
    bar.close()
    return saved, frozen[unrank.to(device)].cpu(), torch.as_tensor(steps_per_epoch)


def generate(
    spec: NetSpec,
    data: Dataset,
    n_networks: int,
    *,
    epochs: int = DEFAULT_EPOCHS,
    checkpoints: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
    hparams: HParamSpace | pd.DataFrame | Mapping | None = None,
    split_seed: int | None = None,
    test_fraction: float = 0.5,
) -> "Zoo":
    """Train a zoo of ``n_networks`` networks of architecture ``spec`` on ``data``, all at once.

    Args:
        epochs: training epochs; the last checkpoint ("final").
        checkpoints: further epochs to keep (0 = the initialisation); every network contributes one zoo entry per
            kept epoch, so the zoo spans untrained to trained networks. Default: those of
            :data:`DEFAULT_CHECKPOINTS` below ``epochs``.
        seed: drives hyperparameters, initialisation, data order and dropout: same seed, same zoo (on one device).
        batch_size: minibatch size of every network.
        hparams: ``None`` (sample from :class:`HParamSpace` defaults), an :class:`HParamSpace`, or explicit
            per-network values (DataFrame / dict with :data:`HPARAM_COLUMNS`; scalars broadcast).
        split_seed: seed of the network-level train/val/test split (default ``seed``), see :func:`split_networks`.
        test_fraction: share of the networks held out as test networks (0.5 = the reference split).

    Initialisation: uniform(-s, s) with s = init_scale * sqrt(1 / fan_in), per network
    (:func:`~workbench.nets.init_params`); training: :func:`train_networks`. The metrics of every kept checkpoint
    are :func:`workbench.objective.evaluate`'s (accuracy, cross-entropy, L1 norm) on the train, val and test splits.
    """
    if n_networks < 1 or epochs < 0 or batch_size < 1:
        raise ZooError(f"need n_networks >= 1, epochs >= 0, batch_size >= 1 (got {n_networks}, {epochs}, {batch_size})")
    if tuple(data.image_shape) != _input_shape(spec):
        raise ZooError(f"{spec.describe()} expects images of shape {_input_shape(spec)}; "
                       f"{data.name} has {data.image_shape}")
    if spec.n_classes != data.n_classes:
        raise ZooError(f"{spec.describe()} has {spec.n_classes} outputs; {data.name} has {data.n_classes} classes")
    start = time.perf_counter()
    checkpoints = _default_checkpoints(epochs) if checkpoints is None else checkpoints
    hp = _resolve_hparams(hparams, n_networks, seed)
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor(hp["init_scale"].to_numpy(dtype=np.float64), dtype=torch.float32)
    theta0 = flatten_params(init_params(spec, n_networks, gen, init_scale=scale)).to(device)
    data_dev = data.to(device)
    saved, diverged, steps = train_networks(spec, data_dev, theta0, hp, epochs=epochs, checkpoints=checkpoints,
                                            batch_size=batch_size, seed=seed, progress=progress)
    split_seed = seed if split_seed is None else int(split_seed)
    split = split_networks(n_networks, split_seed, test_fraction)
    parts, rows = [], []
    for epoch, theta in saved.items():
        params = unflatten_params(spec, theta.to(device))
        metrics = {s: evaluate(spec, params, *data_dev.split(s), batch_size=1024) for s in ("train", "val", "test")}
        frame = hp.copy()
        frame.insert(0, "net_id", np.arange(n_networks))
        frame.insert(1, "epoch", epoch)
        frame.insert(2, "split", split)
        for s in ("train", "val", "test"):
            frame[f"{s}_acc"] = metrics[s]["acc"].double().numpy()
            frame[f"{s}_loss"] = metrics[s]["ce"].double().numpy()
        frame["batch_size"] = batch_size
        frame["l1"] = metrics["train"]["l1"].double().numpy()
        frame["steps"] = epoch * steps.numpy()
        frame["diverged"] = diverged.numpy()
        parts.append(theta)
        rows.append(frame)
    theta_all = torch.stack(parts, dim=1).reshape(-1, spec.n_params)  # network-major: (B * n_kept, n_params)
    meta = pd.concat(rows).sort_values(["net_id", "epoch"], kind="stable").reset_index(drop=True)
    meta = meta[[*META_COLUMNS, "l1", "steps", "diverged"]]
    info = {
        "source": "generate",
        "generation": _generation_config(spec, data.name, n_networks, epochs=epochs, checkpoints=checkpoints,
                                         seed=seed, batch_size=batch_size, hparams=hparams, split_seed=split_seed,
                                         test_fraction=test_fraction),
        "seconds": round(time.perf_counter() - start, 3),
        "device": str(device),
    }
    return Zoo(spec, unflatten_params(spec, theta_all), meta, data.name, split_seed=split_seed, info=info)


def _default_checkpoints(epochs: int) -> tuple[int, ...]:
    return tuple(c for c in DEFAULT_CHECKPOINTS if c < epochs)


def _input_shape(spec: NetSpec) -> tuple[int, ...]:
    if spec.kind == "cnn":
        return (spec.widths[0], spec.image_size, spec.image_size)
    side = math.isqrt(spec.widths[0])
    return (1, side, side) if side * side == spec.widths[0] else (spec.widths[0],)


def _generation_config(spec, dataset, n_networks, *, epochs, checkpoints, seed, batch_size, hparams,
                       split_seed, test_fraction=0.5) -> dict:
    if hparams is None or isinstance(hparams, HParamSpace):
        hp_key = (hparams or HParamSpace()).to_dict()
    else:
        frame = _resolve_hparams(hparams, n_networks, seed)
        hp_key = "sha256:" + hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
    checkpoints = _default_checkpoints(epochs) if checkpoints is None else checkpoints
    return {
        "spec": spec.to_dict(), "dataset": dataset, "n_networks": int(n_networks), "epochs": int(epochs),
        "checkpoints": sorted({int(c) for c in checkpoints} | {int(epochs)}), "seed": int(seed),
        "batch_size": int(batch_size), "hparams": hp_key,
        "split_seed": int(seed if split_seed is None else split_seed),
        **({} if test_fraction == 0.5 else {"test_fraction": float(test_fraction)}),  # old zoos keep their identity
    }


def load_or_generate(path: str | os.PathLike, spec: NetSpec, data: Dataset, n_networks: int, *,
                     verbose: bool = True, **kw) -> Zoo:
    """Load the zoo at ``path`` if it is complete and was generated with the same spec, data set, network count,
    seed and settings; otherwise :func:`generate` it (``**kw`` go there) and save it to ``path``."""
    path = Path(path)
    gen_kw = {k: kw[k] for k in ("epochs", "checkpoints", "seed", "batch_size", "hparams", "split_seed",
                                 "test_fraction") if k in kw}
    defaults = {"epochs": DEFAULT_EPOCHS, "checkpoints": None, "seed": 0,
                "batch_size": DEFAULT_BATCH_SIZE, "hparams": None, "split_seed": None, "test_fraction": 0.5}
    wanted = _generation_config(spec, data.name, n_networks, **{**defaults, **gen_kw})
    if (path / MANIFEST).is_file():
        try:
            zoo = Zoo.load(path)
            if zoo.info.get("generation") == wanted:
                if verbose:
                    print(f"loaded zoo {path} ({len(zoo)} entries, {spec.family})")
                return zoo
            reason = "its generation settings differ"
        except ZooError as err:
            reason = str(err)
        log.info("regenerating %s: %s", path, reason)
    zoo = generate(spec, data, n_networks, **kw)
    zoo.save(path)
    if verbose:
        print(f"generated {n_networks} x {spec.family} ({len(zoo)} entries) in {zoo.info['seconds']:.1f} s -> {path}")
    return zoo


# -- splits --------------------------------------------------------------------------------------------------------
def split_networks(n: int, seed: int = 0, test_fraction: float = 0.5) -> np.ndarray:
    """The reference split of the ScaleGMN paper for ``n`` networks (in their given order): a fixed permutation by
    ``seed``; its last ``test_fraction`` (the reference: the second half) is test, the rest is split 80/20 into
    train/val. A generated zoo need not spend half its networks on a held-out set: ``test_fraction`` 0.1 keeps the
    same number of training networks with about half the networks to generate. Returns split names (n,)."""
    if not 0 < test_fraction < 1:
        raise ZooError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    perm = np.random.RandomState(seed).permutation(n)
    half = n // 2 if test_fraction == 0.5 else n - int(round(test_fraction * n))
    n_train = int(0.8 * half)
    out = np.empty(n, dtype=object)
    out[perm[:n_train]] = "train"
    out[perm[n_train:half]] = "val"
    out[perm[half:]] = "test"
    return out


# -- the Zoo container ------------------------------------------------------------------------------------------------
@dataclass
class Zoo:
    """A zoo: ``spec``, batched ``params`` (one entry per network checkpoint) and one ``meta`` row per entry.

    ``meta`` columns include :data:`META_COLUMNS`; all checkpoints of one network share its ``net_id`` and
    ``split``. ``dataset`` names the data the networks were trained on; ``info`` holds provenance (JSON-able).
    """

    spec: NetSpec
    params: Params
    meta: pd.DataFrame
    dataset: str
    split_seed: int = 0
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        try:
            n = check_params(self.spec, self.params)
        except SpecError as err:
            raise ZooError(f"zoo parameters do not fit the spec: {err}") from err
        if len(self.meta) != n:
            raise ZooError(f"zoo has {n} parameter entries but {len(self.meta)} meta rows")
        self.meta = _normalise_meta(self.meta)
        missing = [c for c in META_COLUMNS if c not in self.meta.columns]
        if missing:
            raise ZooError(f"zoo meta lacks columns {missing}")
        unknown = sorted(set(self.meta["split"].astype(str)) - set(SPLITS))
        if unknown:
            raise ZooError(f"meta column 'split' holds {[u[:40] for u in unknown[:5]]}; every entry must be one of "
                           f"{list(SPLITS)} (lower case)")
        splits = self.meta.groupby("net_id")["split"].nunique()
        if (splits > 1).any():
            raise ZooError(f"networks {splits[splits > 1].index.tolist()[:10]} have checkpoints in several splits")

    def __len__(self) -> int:
        return len(self.meta)

    def __repr__(self) -> str:
        nets = self.meta["net_id"].nunique()
        return f"Zoo({self.spec.describe()}, {nets} networks, {len(self)} entries, dataset={self.dataset!r})"

    @property
    def device(self) -> torch.device:
        return self.params[0][0].device

    def subset(self, split: str | None = None, epoch: int | str | Sequence[int] | None = None, mask=None) -> "Zoo":
        """Entries of one ``split``, at ``epoch`` (an int, a list of ints, or ``"final"`` = each network's last
        checkpoint) and where the boolean ``mask`` (len(zoo),) is true; all given conditions must hold."""
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            if split not in ("train", "val", "test"):
                raise ZooError(f"unknown split {split!r}; expected 'train', 'val' or 'test'")
            keep &= (self.meta["split"] == split).to_numpy()
        if epoch is not None:
            if isinstance(epoch, str):
                if epoch != "final":
                    raise ZooError(f"epoch must be an int, a list of ints or 'final', got {epoch!r}")
                last = self.meta.groupby("net_id")["epoch"].transform("max")
                keep &= (self.meta["epoch"] == last).to_numpy()
            else:
                keep &= self.meta["epoch"].isin(np.atleast_1d(epoch)).to_numpy()
        if mask is not None:
            mask = np.asarray(mask.cpu() if isinstance(mask, Tensor) else mask, dtype=bool)
            if mask.shape != (len(self),):
                raise ZooError(f"mask must have shape ({len(self)},), got {mask.shape}")
            keep &= mask
        index = torch.as_tensor(np.flatnonzero(keep), device=self.device)
        params = [(w[index], b[index]) for w, b in self.params]
        return Zoo(self.spec, params, self.meta.iloc[np.flatnonzero(keep)].reset_index(drop=True), self.dataset,
                   self.split_seed, dict(self.info))

    def summary(self) -> dict:
        """JSON-able overview: sizes, networks per split, test accuracy (min/median/mean/max) per checkpoint epoch
        and at each network's final checkpoint."""
        meta = self.meta
        final = meta[meta["epoch"] == meta.groupby("net_id")["epoch"].transform("max")]
        stats = lambda acc: {k: float(getattr(acc, k)()) for k in ("min", "median", "mean", "max")} if len(acc) else {}
        return {
            "family": self.spec.family,
            "spec": self.spec.describe(),
            "dataset": self.dataset,
            "n_networks": int(meta["net_id"].nunique()),
            "n_entries": len(self),
            "epochs": sorted(int(e) for e in meta["epoch"].unique()),
            "networks_per_split": {s: int((final["split"] == s).sum()) for s in ("train", "val", "test")},
            "test_acc_by_epoch": {int(e): stats(g["test_acc"]) for e, g in meta.groupby("epoch")},
            "final_test_acc": stats(final["test_acc"]),
            "diverged": int(final["diverged"].sum()) if "diverged" in final else 0,
        }

    def to(self, device) -> "Zoo":
        params = [(w.to(device), b.to(device)) for w, b in self.params]
        return Zoo(self.spec, params, self.meta, self.dataset, self.split_seed, dict(self.info))

    # -- storage ------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the zoo to directory ``path``: ``params.safetensors``, ``meta.csv`` and the manifest ``zoo.json``.

        Everything is written to a temporary directory beside ``path`` and renamed into place at the end, so an
        interrupted save leaves either the previous zoo or nothing loadable at ``path``. An existing zoo at ``path``
        is replaced; any other existing file or non-empty directory is an error.
        """
        path = Path(path)
        if path.is_symlink():
            raise ZooError(f"refusing to save a zoo onto {path}: it is a symbolic link (to {os.readlink(path)[:200]}); "
                           "save to the link's target itself or remove the link")
        if path.exists() and not (path / MANIFEST).is_file() and (not path.is_dir() or any(path.iterdir())):
            raise ZooError(f"refusing to overwrite {path}: it exists and is not a zoo (no {MANIFEST})")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as err:  # a file in the way, a read-only mount, no permission
            raise ZooError(f"cannot save a zoo to {path}: its folder {path.parent} cannot be created "
                           f"({getattr(err, 'strerror', None) or err}; a file in the way or a read-only disk?)") from None
        dtypes = _column_kinds(self.meta)
        tensors = {}
        for layer, (w, b) in enumerate(self.params):
            tensors[f"layer{layer}.weight"] = w.detach().cpu().contiguous()
            tensors[f"layer{layer}.bias"] = b.detach().cpu().contiguous()
        with atomic_path(path) as tmp:
            tmp.mkdir()
            save_file(tensors, str(tmp / PARAMS_FILE))
            self.meta.to_csv(tmp / META_FILE, index=False)
            crash_point("zoo-save:before-manifest")
            manifest = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "spec": self.spec.to_dict(),
                "dataset": self.dataset,
                "split_seed": int(self.split_seed),
                "n_entries": len(self),
                "meta_dtypes": dtypes,
                "tensors": {k: list(t.shape) for k, t in tensors.items()},
                "files": {name: _sha256(tmp / name) for name in (PARAMS_FILE, META_FILE)},
                "info": self.info,
            }
            # the manifest is written last: a directory without it is never a complete zoo
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> "Zoo":
        """Read a zoo written by :meth:`save` (safetensors, CSV and JSON only: no pickle, no code execution).

        ``verify`` checks the files' SHA-256 against the manifest."""
        path = Path(path)
        manifest_file = path / MANIFEST
        _own_file(path, MANIFEST)
        if not manifest_file.is_file():
            what = "does not exist" if not path.exists() else f"has no {MANIFEST} manifest (an incomplete save?)"
            raise ZooError(f"{path} is not a complete zoo: it {what}")
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise ZooError(f"{manifest_file} is not valid JSON: {err or type(err).__name__}") from err
        _check_manifest(manifest, manifest_file)
        for name, digest in manifest["files"].items():
            _own_file(path, name)
            if not (path / name).is_file():
                raise ZooError(f"{path}: {name} is missing")
            if verify and _sha256(path / name) != digest:
                raise ZooError(f"{path / name} does not match the checksum in its manifest (modified or corrupt)")
        try:
            spec = NetSpec.from_dict(manifest["spec"])
        except SpecError as err:
            raise ZooError(f"{manifest_file}: invalid network spec: {err}") from err
        try:
            tensors = load_file(str(path / PARAMS_FILE))
        except (SafetensorError, OSError) as err:
            raise ZooError(f"{path / PARAMS_FILE} is truncated or not a safetensors file ({err}); regenerate or "
                           "re-save the zoo") from err
        expected = {f"layer{l}.{k}" for l in range(spec.n_layers) for k in ("weight", "bias")}
        if set(tensors) != expected:
            raise ZooError(f"{path / PARAMS_FILE} holds {sorted(tensors)}; {spec.describe()} needs {sorted(expected)}")
        params = [(tensors[f"layer{l}.weight"], tensors[f"layer{l}.bias"]) for l in range(spec.n_layers)]
        try:
            check_params(spec, params)
        except SpecError as err:
            raise ZooError(f"{path / PARAMS_FILE}: tensor shapes disagree with the spec: {err}") from err
        dtypes = manifest["meta_dtypes"]
        try:
            meta = pd.read_csv(
                path / META_FILE,
                dtype={c: (str if d == "str" else d) for c, d in dtypes.items()},
                keep_default_na=False,
                na_values={c: ["", "NaN", "nan"] for c, d in dtypes.items() if d not in ("str", "bool")},
                **_ROUND_TRIP_FLOATS,
            )
        except (ValueError, TypeError, OverflowError, OSError) as err:  # pandas' parser and dtype errors
            raise ZooError(f"{path / META_FILE} cannot be read with the column types of its manifest "
                           f"({type(err).__name__}: {err})") from err
        if list(meta.columns) != list(dtypes):
            raise ZooError(f"{path / META_FILE} columns {list(meta.columns)} differ from the manifest {list(dtypes)}")
        try:
            return cls(spec, params, meta, manifest["dataset"], manifest["split_seed"], manifest.get("info", {}))
        except ZooError as err:
            raise ZooError(f"{path}: {err}") from err


def _own_file(folder: Path, name: str) -> None:
    """A zoo's files are its folder's own: a symbolic link (e.g. to another zoo's params.safetensors, whose
    checksum a tampered manifest could carry), a FIFO or a device is refused before anything is read."""
    file = folder / name
    if file.is_symlink():
        raise ZooError(f"{file} is a symbolic link (to {os.readlink(file)[:200]}); a zoo folder must hold its own "
                       "files. Copy the zoo instead of linking its files")
    if file.exists() and not file.is_file():
        raise ZooError(f"{file} is not a regular file (a folder, pipe or device)")


_MANIFEST_FIELDS = {"format": str, "version": int, "spec": dict, "dataset": str, "split_seed": int,
                    "meta_dtypes": dict, "files": dict}  # the fields Zoo.load reads
_META_KINDS = ("bool", "str", *(f"{k}{n}" for k in ("int", "uint") for n in (8, 16, 32, 64)),
               "float16", "float32", "float64")


def _check_manifest(manifest, manifest_file: Path) -> None:
    """The manifest's fields exist and have the types :meth:`Zoo.save` writes; it names exactly the zoo's files."""
    if not isinstance(manifest, dict):
        raise ZooError(f"{manifest_file} must hold a JSON object, not {type(manifest).__name__}")
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ZooError(f"{manifest_file}: unsupported format {manifest.get('format')!r} v{manifest.get('version')}; "
                       f"expected {FORMAT!r} v{FORMAT_VERSION}")
    missing = [k for k in _MANIFEST_FIELDS if k not in manifest]
    if missing:
        raise ZooError(f"{manifest_file} lacks the fields {missing} (an incomplete or hand-edited manifest?)")
    for key, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest[key], kind) or (kind is int and isinstance(manifest[key], bool)):
            raise ZooError(f"{manifest_file}: {key!r} must be a {kind.__name__}, got {type(manifest[key]).__name__}")
    if not isinstance(manifest.get("info", {}), dict):
        raise ZooError(f"{manifest_file}: 'info' must be an object, got {type(manifest['info']).__name__}")
    if sorted(manifest["files"]) != sorted((PARAMS_FILE, META_FILE)) or not all(
            isinstance(d, str) for d in manifest["files"].values()):
        raise ZooError(f"{manifest_file}: 'files' must map exactly {PARAMS_FILE} and {META_FILE} to their SHA-256, "
                       f"got {sorted(manifest['files'])}")
    bad = {c: d for c, d in manifest["meta_dtypes"].items() if d not in _META_KINDS}
    if bad:
        raise ZooError(f"{manifest_file}: unsupported meta column types {bad}; expected one of {_META_KINDS}")


# pandas < 3 parses floats with a fast but not always exact routine unless asked; pandas 3 is exact by default
_ROUND_TRIP_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def _column_kinds(meta: pd.DataFrame) -> dict[str, str]:
    """How each meta column is stored: its numpy dtype name for bool/int/float columns, "str" for text."""
    kinds = {}
    for col in meta.columns:
        dtype = meta[col].dtype
        types = pd.api.types
        if types.is_bool_dtype(dtype) or types.is_integer_dtype(dtype) or types.is_float_dtype(dtype):
            kinds[str(col)] = np.dtype(dtype).name
        elif pd.api.types.is_string_dtype(dtype) or dtype == object:
            kinds[str(col)] = "str"
        else:
            raise ZooError(f"meta column {col!r} has dtype {dtype}; only bool, int, float and text columns are stored")
    return kinds


def _normalise_meta(meta: pd.DataFrame) -> pd.DataFrame:
    """Text columns as pandas' default string type with "" for missing values (what reading the CSV gives back);
    columns named by str; a fresh RangeIndex."""
    meta = meta.reset_index(drop=True).copy()
    meta.columns = [str(c) for c in meta.columns]
    for col, kind in _column_kinds(meta).items():
        if kind == "str":
            meta[col] = meta[col].fillna("").astype(str)
    return meta



def _json_default(obj):
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a zoo manifest")


# -- the Small CNN Zoo -----------------------------------------------------------------------------------------------
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


def _read_layout(file: Path, n_columns: int, spec: NetSpec) -> list[tuple[dict, dict]]:
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
    drop_nonfinite: bool = False,
    dataset: str = "cifar10-gs",
) -> Zoo:
    """Import a Small CNN Zoo directory (``weights.npy``, ``layout.csv``, ``metrics.csv[.gz]``) with the reference
    split of the ScaleGMN paper.

    Keeps the checkpoints at ``step`` (default: the largest step present, 86 in the published zoo), splits them
    by a fixed permutation (:func:`split_networks` with ``split_seed``: second half test, first half 80/20
    train/val) and then keeps the networks with ``activation`` (required when several are present). TensorFlow
    kernels ``(h, w, in, out)`` become ``(out, in, h, w)``, the dense kernel ``(16, 10)`` becomes ``(10, 16)``.

    ``meta`` keeps every original metrics column and adds the workbench columns (``net_id`` = row in the original
    files, ``epoch`` = step, ``test_acc`` = test_accuracy, ``lr`` = config.learning_rate, ...; NaN/"" where the
    files have no counterpart). ``weights.npy`` is memory-mapped (``mmap``) so only kept rows are read; it is
    loaded with ``allow_pickle=False``. Rows with NaN/inf weights are an error unless ``drop_nonfinite``.
    """
    path = Path(path).expanduser()
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

    probe = small_cnn_zoo_spec("tanh")
    layers = _read_layout(layout_file, weights.shape[1], probe)
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

    steps = metrics["step"].to_numpy()
    target = int(steps.max()) if step is None else int(step)
    rows = np.flatnonzero(steps == target)
    if len(rows) == 0:
        raise ZooError(f"no checkpoints at step {target}; steps present: {sorted(set(steps.tolist()))}")
    split = split_networks(len(rows), split_seed)  # split first, then filter: the reference order of operations
    acts = metrics["config.activation"].to_numpy()[rows].astype(str)
    present = sorted({str(a) for a in acts})
    if activation is None:
        if len(present) > 1:
            raise ZooError(f"the zoo mixes activations {present}; pass activation= one of them")
        activation = present[0]
    elif activation not in present:
        raise ZooError(f"no networks with activation {activation!r} at step {target}; activations present: {present}")
    if activation not in ("tanh", "relu"):
        raise ZooError(f"activation {activation!r} is not supported by the workbench (tanh or relu)")
    chosen = acts == activation
    rows, split = rows[chosen], split[chosen]

    known = metrics["test_accuracy"].to_numpy()[rows] == metrics["test_accuracy"].to_numpy()[rows]  # not NaN
    n_nan_accuracy = int((~known).sum())
    if n_nan_accuracy:
        log.warning("dropping %d networks without a test accuracy (NaN) from %s", n_nan_accuracy, metrics_file)
        rows, split = rows[known], split[known]
    if len(rows) == 0:
        raise ZooError(f"{metrics_file}: none of the selected networks has a test accuracy")
    flat = np.asarray(weights[rows], dtype=np.float32)  # reads only the kept rows of a memory map
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        n_bad = int((~finite).sum())
        if not drop_nonfinite:
            raise ZooError(f"{weights_file}: {n_bad} of {len(rows)} selected networks have NaN/inf weights; pass "
                           "drop_nonfinite=True to drop them")
        log.warning("dropping %d networks with non-finite weights from %s", n_bad, weights_file)
        rows, split, flat = rows[finite], split[finite], flat[finite]

    spec = small_cnn_zoo_spec(activation)
    flat_t = torch.from_numpy(flat)
    params = []
    for layer, (kernel, bias) in enumerate(layers):
        w = flat_t[:, kernel["start"]:kernel["end"]].reshape(-1, *kernel["shape"])
        # TF (B, h, w, in, out) -> (B, out, in, h, w); dense (B, in, out) -> (B, out, in)
        w = w.permute(0, 4, 3, 1, 2) if spec.is_conv(layer) else w.transpose(1, 2)
        b = flat_t[:, bias["start"]:bias["end"]]
        params.append((w.contiguous(), b.contiguous()))

    original = metrics.iloc[rows].reset_index(drop=True)
    col = lambda name, default=np.nan: original[name] if name in original.columns else default
    meta = pd.DataFrame({
        "net_id": rows.astype(np.int64),
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
    })
    extra = original.drop(columns=[c for c in original.columns if c in meta.columns])
    meta = pd.concat([meta, extra], axis=1)
    info = {"source": "small-cnn-zoo", "path": str(path), "step": target, "activation": activation,
            "dropped_nonfinite": int((~finite).sum()), "dropped_nan_accuracy": n_nan_accuracy}
    return Zoo(spec, params, meta, dataset, split_seed=split_seed, info=info)
