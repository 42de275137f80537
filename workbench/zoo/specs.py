"""What a zoo's networks are: the architecture of each network family and the hyperparameters each network
trains with.

:func:`default_spec` gives the workbench's architecture per family and data set; :class:`HParamSpace` and
:func:`sample_hparams` draw per-network hyperparameters in the spirit of the Small CNN Zoo (Unterthiner et al.
2020, "Predicting Neural Network Accuracy from Weights"): log-uniform learning rate, initialisation scale and L2
weight, a dropout rate, a fraction of the training data, SGD (momentum 0.9) or Adam.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from ..nets import NetSpec, small_cnn_zoo_spec
from ..records import Family
from .container import ZooError

__all__ = ["FAMILIES", "OPTIMIZERS", "HPARAM_COLUMNS", "default_spec", "HParamSpace", "sample_hparams"]

FAMILIES = ("mlp-tanh", "mlp-relu", "cnn-tanh", "cnn-relu")
OPTIMIZERS = ("sgd", "adam")
HPARAM_COLUMNS = ("lr", "init_scale", "l2", "dropout", "train_fraction", "optimizer")


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
    kind, activation = dataclasses.astuple(Family.parse(family))
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

