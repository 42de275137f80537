"""Zoo generation: train a whole zoo at once and cache it on disk.

:func:`generate` initialises ``n_networks`` networks of one architecture with hyperparameters from
:mod:`~workbench.zoo.specs`, trains them together (:func:`~workbench.zoo.train.train_networks`), keeps checkpoints
at several epochs so the zoo spans weak to strong networks, evaluates every checkpoint on the train, val and test
splits and splits the networks (:func:`~workbench.zoo.container.split_networks`). :func:`load_or_generate` reuses
a saved zoo only when it was generated with the same settings (its manifest records them).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import Dataset
from ..nets import NetSpec, flatten_params, init_params, unflatten_params
from ..objective import evaluate
from .container import MANIFEST, META_COLUMNS, Zoo, ZooError, split_networks
from .specs import HParamSpace, _resolve_hparams
from .train import train_networks

__all__ = ["generate", "load_or_generate", "DEFAULT_EPOCHS", "DEFAULT_CHECKPOINTS", "DEFAULT_BATCH_SIZE"]

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 5
DEFAULT_CHECKPOINTS = (0, 1, 2)
DEFAULT_BATCH_SIZE = 32


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
    theta_all, meta = _evaluate_checkpoints(spec, data_dev, device, saved, hp, split, diverged, steps, batch_size)
    info = {
        "source": "generate",
        "generation": _generation_config(spec, data.name, n_networks, epochs=epochs, checkpoints=checkpoints,
                                         seed=seed, batch_size=batch_size, hparams=hparams, split_seed=split_seed,
                                         test_fraction=test_fraction),
        "seconds": round(time.perf_counter() - start, 3),
        "device": str(device),
    }
    return Zoo(spec, unflatten_params(spec, theta_all), meta, data.name, split_seed=split_seed, info=info)


def _evaluate_checkpoints(spec: NetSpec, data: Dataset, device, saved: dict[int, Tensor], hp: pd.DataFrame,
                          split: np.ndarray, diverged: Tensor, steps: Tensor, batch_size: int
                          ) -> tuple[Tensor, pd.DataFrame]:
    """The zoo's entries from :func:`train_networks`' kept checkpoints ``saved`` ({epoch: (B, n_params)}), each
    evaluated on every split of ``data`` (already on ``device``): the parameters ``(B * n_kept, n_params)``,
    network-major, and one meta row per entry (metrics beside the network's hyperparameters, split, diverged)."""
    n_networks = len(hp)
    parts, rows = [], []
    for epoch, theta in saved.items():
        params = unflatten_params(spec, theta.to(device))
        metrics = {s: evaluate(spec, params, *data.split(s), batch_size=1024) for s in ("train", "val", "test")}
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
    return theta_all, meta


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

