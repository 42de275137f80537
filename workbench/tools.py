"""The product surface without Jupyter: generate a zoo, and apply a trained meta-optimizer to a zoo folder.

    python -m workbench zoo PARAMS --family F [--seed S] --out DIR
    python -m workbench optimize MODEL ZOO_DIR --out DIR [--evaluate] [--data-path P]

``optimize`` reads either format the workbench knows -- its own zoo folder (``zoo.json``, safetensors, meta.csv) or
a Small CNN Zoo folder (``weights.npy``, ``layout.csv``, ``metrics.csv[.gz]``) -- and writes the new weights in the
same format, so the output folder can be read back by the same loader (or by the Small CNN Zoo's own tools).
"""
from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .io import atomic_path
from .nets import Params, n_networks, small_cnn_zoo_spec
from .zoo import FAMILIES, Zoo, ZooError, default_spec, generate, load_small_cnn_zoo, read_layout

__all__ = ["generate_zoo", "optimize_zoo", "zoo_format", "zoo_settings"]


def zoo_settings(params_path: str | os.PathLike) -> dict:
    """The zoo settings notebook 03 would run with for a params file: its declared defaults, the file's shared keys
    and its ``"03"`` section (``dataset``, ``data_path``, ``n_networks``, ``zoo_epochs``, ``seed``, ``device``)."""
    from .params import notebook_values

    return notebook_values(params_path, "03")[1]


def _check_zoo_target(out: Path) -> None:
    """Refuse, before any work, an ``out`` that :meth:`Zoo.save` would refuse after it (or could not create)."""
    if out.is_symlink():
        raise ZooError(f"--out {out} is a symbolic link; pass the folder itself or a new folder")
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file, not a folder; pass a new or empty folder for the zoo")
    if out.is_dir() and not (out / "zoo.json").is_file() and any(out.iterdir()):
        found = sorted(p.name for p in out.iterdir())[:5]
        raise ZooError(f"refusing to write a zoo into {out}: it is not empty and not a zoo (no zoo.json; it holds "
                       f"{found}); pass a new or empty folder")


def generate_zoo(params_path: str | os.PathLike, family: str, out: str | os.PathLike, *, seed: int | None = None,
                 progress: bool = True) -> Zoo:
    """Generate the zoo of ``family`` that notebook 03 would generate with a params file (:func:`zoo_settings`;
    ``seed`` overrides the file's) and save it to ``out`` (a new or empty folder, or an existing zoo, replaced).

    With a ``zoo_path`` in the params file notebook 03 reads the Small CNN Zoo instead; this command always
    generates (on ``dataset``)."""
    from . import pipeline

    if family not in FAMILIES:
        raise ZooError(f"unknown family {family!r}; choose from {list(FAMILIES)}")
    out = Path(out)
    _check_zoo_target(out)
    values = zoo_settings(params_path)
    seed = int(values["seed"] if seed is None else seed)
    data = pipeline.get_data(values["dataset"], values.get("data_path"), seed)
    zoo_epochs = int(values["zoo_epochs"])
    checkpoints = [c for c in pipeline.ZOO_CHECKPOINTS if c < zoo_epochs]
    zoo = generate(default_spec(family, data.name), data, int(values["n_networks"]), epochs=zoo_epochs,
                   checkpoints=checkpoints, seed=seed, batch_size=pipeline.ZOO_BATCH_SIZE,
                   device=_device(values.get("device", "cpu")), progress=progress,
                   test_fraction=float(values.get("zoo_test_fraction", 0.5)))
    zoo.save(out)
    return zoo


def _device(device: str) -> torch.device:
    from .errors import ConfigError
    from .optimize import resolve_device

    try:
        return resolve_device(device)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(str(err)) from None


def zoo_format(folder: str | os.PathLike) -> str:
    """``"workbench"`` or ``"small-cnn-zoo"``, by the files in ``folder``; a ZooError for anything else."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ZooError(f"{folder} is not a directory; pass a zoo folder (the workbench's, with zoo.json, or a Small "
                       "CNN Zoo folder with weights.npy, layout.csv, metrics.csv.gz)")
    if (folder / "zoo.json").is_file():
        return "workbench"
    if (folder / "weights.npy").is_file() and (folder / "layout.csv").is_file():
        return "small-cnn-zoo"
    found = sorted(p.name for p in folder.iterdir())[:10]
    raise ZooError(f"{folder} is neither a workbench zoo (zoo.json) nor a Small CNN Zoo (weights.npy + layout.csv); "
                   f"it holds {found or 'nothing'}. Pass a zoo folder (`python -m workbench zoo` writes one)")


def _to_tf_rows(zoo: Zoo, params: Params, layout_file: Path) -> np.ndarray:
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


OPTIMIZED_FILE = "optimized.json"  # the summary that marks a folder written by optimize_zoo
_METRIC_COLUMNS = ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "l1")


def _check_optimize_target(zoo_dir: Path, out: Path) -> None:
    """``out`` must be new, empty, or an earlier output of :func:`optimize_zoo` (replaced whole); never the input,
    a folder holding the input, or anyone else's files."""
    src, dst = zoo_dir.resolve(), out.resolve()
    if dst == src:
        raise ZooError(f"--out {out} is the input zoo folder; write the optimized zoo to a new folder")
    if dst in src.parents:
        raise ZooError(f"--out {out} holds the input zoo {zoo_dir}; replacing it would delete the input. Write the "
                       "optimized zoo to a new folder")
    if out.is_symlink():
        raise ZooError(f"--out {out} is a symbolic link; pass a new folder")
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file, not a folder; pass a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not (out / OPTIMIZED_FILE).is_file():
        found = sorted(p.name for p in out.iterdir())[:5]
        raise ZooError(f"refusing to write into {out}: it is not empty and was not written by `optimize` (no "
                       f"{OPTIMIZED_FILE}; it holds {found}); pass a new or empty folder")


def _load_input_zoo(zoo_dir: Path, fmt: str, activation: str) -> Zoo:
    try:
        if fmt == "workbench":
            return Zoo.load(zoo_dir)
        return load_small_cnn_zoo(zoo_dir, activation=activation, drop_nonfinite=True)
    except ZooError as err:
        raise ZooError(f"cannot read the zoo at {zoo_dir}: {err}. Regenerate it (python -m workbench zoo ...) or "
                       "pass another zoo folder") from None


def optimize_zoo(model_path: str | os.PathLike, zoo_dir: str | os.PathLike, out: str | os.PathLike, *,
                 evaluate: bool = False, data_path: str | None = None, activation: str | None = None,
                 batch_size: int = 256, device: str = "cpu") -> dict:
    """Apply a trained meta-optimizer (``best.pt``) to every network of ``zoo_dir`` and write them to ``out``.

    ``out`` is built in a hidden temporary folder and renamed into place, so a failure leaves nothing half-written;
    it must be a new or empty folder or an earlier output of this function. In the workbench format the per-network
    metrics of the input (accuracies, losses, L1) no longer describe the new weights: they are kept as
    ``<column>_before`` and set to NaN, except ``test_acc``/``test_loss``/``l1`` which ``evaluate`` measures anew.
    The Small CNN Zoo's ``metrics.csv.gz`` keeps the input's numbers unless ``evaluate`` (its loader needs them);
    with ``evaluate``, ``test_accuracy``/``test_loss`` are the new ones and the old ones ``*_before``.

    With ``evaluate`` the networks before and after are scored on the test split of the zoo's data set (digits ships
    with scikit-learn; grayscale CIFAR-10 needs ``data_path``). Returns a summary dict (also written to
    ``out/optimized.json``). A model trained for another architecture is a CheckpointError naming both.
    """
    # imported here, not at the top: the metanetwork (and PyG) stay off the path of `python -m workbench zoo`
    from .errors import ConfigError
    from .optimize import CheckpointError, load_model, one_shot

    zoo_dir, out, model_path = Path(zoo_dir), Path(out), Path(model_path)
    if int(batch_size) < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if not model_path.is_file():
        what = "does not exist" if not model_path.exists() else "is not a file"
        raise CheckpointError(f"the model {model_path} {what}; pass a trained metanetwork checkpoint such as "
                              "<run folder>/best.pt (notebook 04 or `python -m workbench train`)")
    fmt = zoo_format(zoo_dir)
    _check_optimize_target(zoo_dir, out)
    dev = _device(device)
    if fmt == "small-cnn-zoo" and activation is None:
        activation = _small_cnn_zoo_activation(model_path, zoo_dir)
    zoo = _load_input_zoo(zoo_dir, fmt, activation)
    if len(zoo) == 0:
        raise ZooError(f"{zoo_dir} holds no networks to optimize")
    try:
        model = load_model(model_path, map_location=dev, spec=zoo.spec)
    except CheckpointError as err:
        raise CheckpointError(f"{err} (the zoo at {zoo_dir} holds {zoo.spec.describe()})") from None
    data = None
    if evaluate:  # before the work: a missing data set fails here
        from . import pipeline

        data = pipeline.get_data(zoo.dataset, data_path, zoo.split_seed)
    model = model.to(dev)
    new, seconds = one_shot(model, zoo.spec, [(w.to(dev), b.to(dev)) for w, b in zoo.params], batch_size=batch_size)
    summary = {"model": str(model_path), "zoo": str(zoo_dir), "format": fmt, "n_networks": len(zoo),
               "architecture": zoo.spec.describe(), "seconds": round(seconds, 4),
               "ms_per_network": round(1e3 * seconds / len(zoo), 4),
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    after = None
    if data is not None:
        after = _score_before_after(zoo, new, data, summary)
    with atomic_path(out) as tmp:
        if fmt == "workbench":
            _write_workbench_zoo(tmp, zoo, new, after, model_path)
        else:
            _write_small_cnn_zoo(tmp, zoo, new, after, zoo_dir)
        (tmp / OPTIMIZED_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def _small_cnn_zoo_activation(model_path: Path, zoo_dir: Path) -> str:
    """The activation of the Small CNN Zoo networks to read: the one the model was trained for (the zoo folder
    holds both kinds); a model trained for another architecture is a CheckpointError."""
    from .optimize import CheckpointError, load_model

    found = load_model(model_path).spec
    if found.activation not in ("tanh", "relu") or found != small_cnn_zoo_spec(found.activation):
        raise CheckpointError(f"{model_path} was trained for {found.describe()}; the Small CNN Zoo at {zoo_dir} "
                              "holds CNNs of the Small CNN Zoo design. Use a checkpoint trained on that zoo "
                              "(zoo_path in the params file) or retrain")
    return found.activation


def _score_before_after(zoo: Zoo, new: Params, data, summary: dict) -> dict:
    """The networks' test metrics after the one shot (returned) and the average/best accuracy before and after
    (added to ``summary``)."""
    from .objective import evaluate as score

    x, y = data.split("test")
    before = score(zoo.spec, zoo.params, x, y)
    after = score(zoo.spec, new, x, y)
    acc_before, acc_after = before["acc"].double(), after["acc"].double()
    summary.update({"dataset": data.name,
                    "avg_acc_before": round(100 * float(acc_before.mean()), 2),
                    "avg_acc_after": round(100 * float(acc_after.mean()), 2),
                    "max_acc_before": round(100 * float(acc_before.max()), 2),
                    "max_acc_after": round(100 * float(acc_after.max()), 2)})
    return after


def _write_workbench_zoo(tmp: Path, zoo: Zoo, new: Params, after: dict | None, model_path: Path) -> None:
    """The optimized zoo in the workbench format; the input's metrics move to ``<column>_before``."""
    meta = zoo.meta.copy()
    for column in _METRIC_COLUMNS:
        if column in meta.columns:
            meta[f"{column}_before"] = meta[column]
            meta[column] = np.nan
    if after is not None:
        meta["test_acc"] = after["acc"].double().numpy()
        meta["test_loss"] = after["ce"].double().numpy()
        meta["l1"] = after["l1"].double().numpy()
    info = {**zoo.info, "optimized_by": str(model_path)}
    Zoo(zoo.spec, new, meta, zoo.dataset, zoo.split_seed, info).save(tmp)


def _write_small_cnn_zoo(tmp: Path, zoo: Zoo, new: Params, after: dict | None, zoo_dir: Path) -> None:
    """The optimized zoo in the Small CNN Zoo layout (``weights.npy``, ``layout.csv``, ``metrics.csv.gz``)."""
    import pandas as pd

    tmp.mkdir()
    rows = _to_tf_rows(zoo, new, zoo_dir / "layout.csv")
    with open(tmp / "weights.npy", "wb") as fh:
        np.save(fh, rows)
    (tmp / "layout.csv").write_bytes((zoo_dir / "layout.csv").read_bytes())
    metrics_src = next(p for p in (zoo_dir / "metrics.csv.gz", zoo_dir / "metrics.csv") if p.is_file())
    metrics = pd.read_csv(metrics_src).iloc[zoo.meta["net_id"].to_numpy()].reset_index(drop=True)
    if after is not None:
        metrics["test_accuracy_before"] = metrics["test_accuracy"]
        metrics["test_accuracy"] = after["acc"].double().numpy()
        if "test_loss" in metrics.columns:
            metrics["test_loss_before"] = metrics["test_loss"]
        metrics["test_loss"] = after["ce"].double().numpy()
    with gzip.open(tmp / "metrics.csv.gz", "wt") as fh:
        metrics.to_csv(fh, index=False)
