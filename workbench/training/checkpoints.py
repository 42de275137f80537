"""Checkpoint I/O of meta-optimizer runs: the one checkpoint layout, atomic saves, safe loading, exact resume.

A run folder holds ``best.pt`` (the best validation weights), ``checkpoint.pt`` (everything an interrupted run
resumes from: live weights, optimizer, counters, history, best weights) and ``metrics.jsonl``. Every file is
written atomically (a kill leaves the previous version or none) and read with ``weights_only=True`` (tensors and
plain containers, never code); :class:`CheckpointError` names the file and what is wrong with it.
"""
from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import WorkbenchError
from ..system.io import atomic_path, atomic_write_text
from ..metanet import NFN, ScaleGMN
from ..nets import NetSpec
from .train_config import TrainConfig, build_model

__all__ = ["CheckpointError", "RunProgress", "load_model", "checkpoint_dict", "save_epoch", "resume_run",
           "atomic_save"]


class CheckpointError(WorkbenchError, ValueError):
    """A metanetwork checkpoint is unreadable, unsafe, incomplete or for another architecture."""


# -- writing -----------------------------------------------------------------------------------------------------
@dataclass
class RunProgress:
    """The state a run carries from epoch to epoch, and all that ``checkpoint.pt`` holds to resume it exactly."""

    optimizer: torch.optim.Optimizer
    epoch: int = -1  # the last finished epoch
    step: int = 0
    lr_scale: float = 1.0  # halved by every non-finite event
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    best_state: dict | None = None
    initial_state: dict | None = None  # what a run given ``init_state`` started from (not saved: the caller has it)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a hidden temporary, fsync, rename: a kill leaves the previous checkpoint or none."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def checkpoint_dict(spec: NetSpec, config: TrainConfig, run: RunProgress,
                    model: torch.nn.Module | None = None) -> dict:
    """The one checkpoint layout: ``best.pt`` (the best weights so far) without ``model``; ``checkpoint.pt``
    (everything :func:`workbench.training.optimize.train` resumes from: live weights, optimizer, counters, history, best
    weights) with it."""
    ckpt = {"spec": spec.to_dict(), "config": config.to_dict()}
    if model is None:
        return {**ckpt, "model": run.best_state, "epoch": run.best_epoch, "val_loss": run.best_val_loss}
    return {**ckpt, "model": model.state_dict(), "optimizer": run.optimizer.state_dict(), "epoch": run.epoch,
            "step": run.step, "lr_scale": run.lr_scale, "history": run.history, "best_epoch": run.best_epoch,
            "best_val_loss": run.best_val_loss, "best_state": run.best_state}


def save_epoch(out: Path, spec: NetSpec, config: TrainConfig, run: RunProgress, model: torch.nn.Module | None = None,
               improved: bool = False) -> None:
    """The run's files after an epoch: ``best.pt`` when ``improved``, then ``checkpoint.pt``, then ``metrics.jsonl``
    (a kill between two of them is resumable). Without ``model``, at the end of a run: a run killed between its last
    checkpoint and the files after it resumes with no epoch left to run, so ``metrics.jsonl`` and a missing
    ``best.pt`` are brought up to the checkpoint's state."""
    history = "".join(json.dumps(r) + "\n" for r in run.history)
    if model is None:
        atomic_write_text(out / "metrics.jsonl", history)
        if run.best_state is not None and not (out / "best.pt").exists():
            atomic_save(checkpoint_dict(spec, config, run), out / "best.pt")
        return
    if improved:
        atomic_save(checkpoint_dict(spec, config, run), out / "best.pt")
    atomic_save(checkpoint_dict(spec, config, run, model), out / "checkpoint.pt")
    atomic_write_text(out / "metrics.jsonl", history)


# -- reading -----------------------------------------------------------------------------------------------------
def _unpickling_refusal(err: Exception) -> str:
    """The informative line of torch's weights-only refusal (it comes wrapped in a long generic notice)."""
    lines = [l.strip() for l in str(err).splitlines() if l.strip()]
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation", "WeightsUnpickler")
    detail = [l for l in lines if not l.startswith(boilerplate)]
    return (detail[0] if detail else lines[0] if lines else type(err).__name__)[:200].rstrip(".")


def load_model(path: str | os.PathLike, map_location="cpu", *, spec: NetSpec | None = None) -> ScaleGMN | NFN:
    """A trained ScaleGMN (or NFN, as its config says) from ``best.pt`` (or ``checkpoint.pt``); loads tensors only,
    never code.

    ``spec``: the architecture the caller expects; a checkpoint trained for another one is an error. Raises
    :class:`CheckpointError` naming the file for a truncated, corrupt, incomplete or mismatched checkpoint, or one
    that holds anything but tensors and plain containers (which would need code to unpickle)."""
    path = Path(path)
    ckpt = _read_checkpoint(path, map_location)
    try:
        found_spec = NetSpec.from_dict(ckpt["spec"])
        config = TrainConfig.from_dict(ckpt["config"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid spec or config in the checkpoint: {err}") from None
    if spec is not None and found_spec != spec:
        raise CheckpointError(f"{path} was trained for {found_spec.describe()}; expected {spec.describe()}. Use the "
                              "checkpoint of that architecture or retrain")
    state = ckpt["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'model' must be a state dict of tensors")
    _check_cheap_shapes(path, found_spec, config, state)
    _check_state_values(path, state)
    try:
        model = build_model(found_spec, config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot build the metanetwork it describes: {err}") from None
    _check_state_fits(path, found_spec, config, state, model.state_dict())
    model.load_state_dict(state)
    return model.eval()


def _read_checkpoint(path: Path, map_location) -> dict:
    """The dict in ``path``, loaded with ``weights_only=True``, holding at least ``spec``, ``config`` and ``model``."""
    if not path.exists():
        raise CheckpointError(f"no metanetwork checkpoint at {path}; train one first (notebook 04 or "
                                "`python -m workbench train`)")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; expected a checkpoint such as <run folder>/best.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to unpickle non-tensor objects (loading with weights_only=True, which never runs "
            f"code): {_unpickling_refusal(err)}. Only checkpoints written by the workbench can be loaded"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt: "
                              f"{type(err).__name__}: {str(err)[:200]}); retrain or restore it") from None
    missing = [k for k in ("spec", "config", "model") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        found = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a metanetwork checkpoint: it lacks {missing} (found {found})")
    return ckpt


def _check_cheap_shapes(path: Path, spec: NetSpec, config: TrainConfig, state: dict) -> None:
    """Shape checks of a few weights before the model is built: a forged spec could otherwise allocate an enormous
    graph."""
    n_types = spec.widths[0] + spec.n_layers - 1 + spec.widths[-1]
    meta = config.meta
    cheap = (("type_mul", (n_types, meta.hidden)), ("edge_mul", (spec.n_layers, meta.hidden)))
    if meta.model == "nfn":
        cheap = (("emb_in", (spec.widths[0], meta.hidden)), ("w_norm", (spec.n_layers,)))
    for key, want in cheap:
        got = tuple(state[key].shape) if key in state else None
        if got != want:
            raise CheckpointError(f"{path}: its weights do not fit the architecture it names ({spec.describe()}, "
                                  f"hidden {meta.hidden}): {key} has shape {got}, expected {want}")


_NORM_BUFFERS = ("w_norm", "b_norm")  # per-layer RMS of the training zoo's weights: the metanet divides by them


def _check_state_values(path: Path, state: dict, what: str = "its weights") -> None:
    """Values no trained metanetwork holds: NaN or infinite weights (training restores the best weights after a
    non-finite step, so a saved state never has them) and normalisation buffers that are not positive (an RMS over
    a zoo's weights; dividing by 0 or NaN makes every one-shot output NaN). Either means a damaged or edited file."""
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointError(f"{path}: {what} {nonfinite[:5]} hold NaN or infinite values, which training never "
                              "saves: the file is damaged or was edited. Retrain or restore it")
    norms = [k for k, v in state.items() if k.rsplit(".", 1)[-1] in _NORM_BUFFERS and not bool((v > 0).all())]
    if norms:
        raise CheckpointError(f"{path}: {what} {norms} (the normalisation by the training zoo's weight RMS) hold zero "
                              "or negative values, which would make every one-shot output NaN: the file is damaged "
                              "or was edited. Retrain or restore it")


def _check_state_fits(path: Path, spec: NetSpec, config: TrainConfig, state: dict, expected: dict) -> None:
    """Every weight of the built model present in ``state`` with its shape, and nothing else."""
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if wrong or missing or unexpected:
        raise CheckpointError(f"{path}: its weights do not fit the metanetwork for {spec.describe()} "
                              f"(hidden {config.meta.hidden}, {config.meta.n_layers} layers): shape mismatches "
                              f"{wrong[:5]}, missing {missing[:5]}, unexpected {unexpected[:5]}")


# -- resuming ----------------------------------------------------------------------------------------------------
_RESUME_FIELDS = {"optimizer": dict, "epoch": int, "step": int, "lr_scale": float, "history": list,
                  "best_epoch": int, "best_val_loss": float}


def _resume_checkpoint(path: Path, device, spec: NetSpec, config: TrainConfig) -> dict:
    """``checkpoint.pt`` of an interrupted run, after the checks of :func:`load_model` (tensors only, a known spec
    and config, weights that fit) and the resume fields' types; a CheckpointError names what is wrong."""
    load_model(path, map_location="cpu")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    # the same configuration, whichever flat form stored it (a checkpoint of an earlier version lacks later fields)
    if TrainConfig.from_dict(ckpt["config"]) != config or ckpt["spec"] != spec.to_dict():
        raise CheckpointError(f"{path} was written by a different configuration or architecture; "
                              "delete it or use another output folder to start afresh")
    for key, kind in _RESUME_FIELDS.items():
        ok = isinstance(ckpt.get(key), kind) and not isinstance(ckpt.get(key), bool)
        if not ok and not (kind is float and isinstance(ckpt.get(key), int)):
            raise CheckpointError(f"{path} cannot be resumed: {key!r} must be of type {kind.__name__}, got "
                                  f"{type(ckpt.get(key)).__name__}; delete it to start the run afresh")
    best = ckpt.get("best_state")
    if best is not None and (not isinstance(best, dict) or not all(isinstance(v, torch.Tensor) for v in best.values())):
        raise CheckpointError(f"{path} cannot be resumed: 'best_state' must be a state dict; delete it to start afresh")
    if best is not None:
        _check_state_values(path, best, "its best weights ('best_state')")
    return ckpt


def resume_run(path: Path, device: torch.device, spec: NetSpec, config: TrainConfig, model: torch.nn.Module,
               run: RunProgress) -> None:
    """Load ``checkpoint.pt`` of an interrupted run into ``model`` and ``run``."""
    ckpt = _resume_checkpoint(path, device, spec, config)
    model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.epoch, run.step, run.lr_scale = ckpt["epoch"], ckpt["step"], ckpt["lr_scale"]
    run.history = list(ckpt["history"])
    run.best_epoch, run.best_val_loss, run.best_state = ckpt["best_epoch"], ckpt["best_val_loss"], ckpt["best_state"]
