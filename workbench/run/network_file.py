"""``python -m workbench optimize MODEL net.pt --out new.pt``: the one shot of a single network saved as a state dict.

The input is read with ``torch.load(weights_only=True)`` (tensors and plain containers, never code): a file that
needs code to unpickle (``torch.save(model)`` of a whole module) is refused with what to save instead. The output is
a state dict with the input's keys and dtypes, loadable the same way, written atomically, with a manifest beside it
(``new.pt.optimized.json``: the model, the input, the output's SHA-256, the architecture, any transfer warning and,
with ``evaluate``, the test accuracy before and after). An existing ``--out`` is replaced only when that manifest
proves this command wrote it (its digest matches the file); anything else is refused, and nothing is written.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import time
import warnings
from pathlib import Path

import torch

from ..errors import ConfigError, WorkbenchError
from ..system.io import atomic_path, atomic_write_text, output_lock, read_regular_bytes, read_regular_text, sha256_file
from ..objective import evaluate
from ..training.oneshot import OneShot, TransferWarning, read_state_dict
from ..training.train_config import resolve_device
from ..system.paths import OutputFolderError
from ..pipeline import get_data

__all__ = ["NetworkFileError", "MANIFEST_SUFFIX", "optimize_network", "manifest_path"]

#: appended to the output's name: the manifest that marks a file this command wrote
MANIFEST_SUFFIX = ".optimized.json"


class NetworkFileError(WorkbenchError, ValueError):
    """The network file is missing, unreadable, or holds something other than a state dict of tensors."""


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + MANIFEST_SUFFIX)


def _check_out(out: Path, inputs: dict[str, Path]) -> None:
    """Refuse an ``out`` that is an input, or exists and was not written by this command (its manifest's digest)."""
    for label, path in inputs.items():
        if path.exists() and out.exists() and os.path.samefile(out, path):
            raise OutputFolderError(f"--out {out} is the input {label}; write to a new file")
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise OutputFolderError(f"--out {out} is a link or a folder; pass a new file name")
    if not out.exists():
        return
    try:
        manifest = json.loads(read_regular_text(manifest_path(out)))
        ours = manifest.get("command") == "optimize" and manifest.get("output_sha256") == sha256_file(out)
    except (OSError, ValueError, AttributeError, RecursionError):
        ours = False
    if not ours:
        raise OutputFolderError(f"refusing to replace --out {out}: it was not written by `optimize` (no "
                                f"{manifest_path(out).name} beside it whose digest matches it). Pass a new file name, "
                                "or delete the file yourself")


def read_network(path: Path) -> dict[str, torch.Tensor]:
    """The state dict saved at ``path`` (``torch.save(model.state_dict(), path)``), tensors only."""
    try:
        data = read_regular_bytes(path)
    except OSError as err:
        raise NetworkFileError(f"cannot read the network file {path}: {err.strerror or err}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise NetworkFileError(f"{path} needs code to be unpickled (a whole module saved with torch.save(model)?), "
                               "which the workbench never runs; save the state dict instead: "
                               "torch.save(model.state_dict(), path)") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise NetworkFileError(f"{path} is not a readable PyTorch file ({type(err).__name__}: {str(err)[:200]})"
                               ) from None
    if not isinstance(state, dict):
        raise NetworkFileError(f"{path} holds a {type(state).__name__}, not a state dict; save "
                               "torch.save(model.state_dict(), path)")
    return state


def _accuracy(optimizer: OneShot, state: dict, new: dict, data_path: str | None) -> dict:
    """Test accuracy (%) of the network before and after, on the test split of the optimizer's data set."""
    if optimizer.dataset is None:
        raise NetworkFileError(f"{optimizer.name} does not say which data set its networks solve; --evaluate needs "
                               "a shipped optimizer or a run folder's best.pt (with run.json beside it)")
    x, y = get_data(optimizer.dataset, data_path, optimizer.data_seed).split("test")
    out = {"dataset": optimizer.dataset}
    for when, weights in (("before", state), ("after", new)):
        spec, params = read_state_dict(weights, optimizer.spec)
        out[f"acc_{when}"] = round(100 * float(evaluate(spec, params, x.to(params[0][0].dtype), y)["acc"][0]), 2)
    return out


def optimize_network(model: str, net_path: str | os.PathLike, out: str | os.PathLike, *, evaluate: bool = False,
                     data_path: str | None = None, device: str = "cpu") -> dict:
    """Write the one shot of the network at ``net_path`` to ``out``; ``model`` is a shipped optimizer's name, a run
    folder or a ``best.pt``. Returns the summary (also ``out`` + :data:`MANIFEST_SUFFIX`)."""
    net_path, out = Path(net_path), Path(out)
    inputs = {"network": net_path, **({"model": Path(model)} if Path(model).exists() else {})}
    _check_out(out, inputs)
    try:
        device = resolve_device(device)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"--device: {err}") from None
    optimizer = OneShot.load(model, map_location=device)
    state = read_network(net_path)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TransferWarning)
        new = optimizer.state_dict({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state.items()})
    seconds = time.perf_counter() - start
    new = {k: v.cpu() for k, v in new.items()}
    notes = [str(w.message) for w in caught if issubclass(w.category, TransferWarning)]
    spec, _ = read_state_dict(state, optimizer.spec, str(net_path))
    summary = {"command": "optimize", "model": optimizer.name, "input": str(net_path), "output": str(out),
               "architecture": spec.describe(), "warning": notes[0] if notes else None,
               "seconds": round(seconds, 4), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if evaluate:
        summary.update(_accuracy(optimizer, state, new, data_path))
    with output_lock(out, f"python -m workbench optimize {model} {net_path} --out {out}"):
        _check_out(out, inputs)  # again, under the lock
        try:
            with atomic_path(out) as tmp:
                torch.save(new, tmp)
            summary["output_sha256"] = sha256_file(out)
            atomic_write_text(manifest_path(out), json.dumps(summary, indent=1, allow_nan=False))
        except OSError as err:
            raise OutputFolderError(f"cannot write --out {out}: {err.strerror or err}") from None
    return summary
