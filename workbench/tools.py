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

from .io import atomic_path, atomic_write_text
from .nets import Params
from .zoo import FAMILIES, Zoo, ZooError, default_spec, generate, load_small_cnn_zoo

__all__ = ["generate_zoo", "optimize_zoo", "zoo_format"]


def generate_zoo(params_path: str | os.PathLike, family: str, out: str | os.PathLike, *, seed: int | None = None,
                 progress: bool = True) -> Zoo:
    """Generate the zoo of ``family`` with the zoo settings of a params file (``dataset``, ``data_path``,
    ``n_networks``, ``zoo_epochs``, ``seed``; ``seed`` overrides the file's) and save it to ``out``."""
    from . import pipeline
    from .params import load_params

    if family not in FAMILIES:
        raise ZooError(f"unknown family {family!r}; choose from {list(FAMILIES)}")
    params = load_params(params_path)
    shared = params.shared
    seed = int(shared.get("seed", 0) if seed is None else seed)
    data = pipeline.get_data(shared.get("dataset", "digits"), shared.get("data_path"), seed)
    zoo_epochs = int(shared.get("zoo_epochs", 4))
    checkpoints = [c for c in pipeline.ZOO_CHECKPOINTS if c < zoo_epochs]
    zoo = generate(default_spec(family, data.name), data, int(shared.get("n_networks", 128)), epochs=zoo_epochs,
                   checkpoints=checkpoints, seed=seed, batch_size=pipeline.ZOO_BATCH_SIZE,
                   device=pipeline.resolve_device(shared.get("device", "cpu")), progress=progress)
    zoo.save(out)
    return zoo


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
                   f"it holds {found or 'nothing'}")


def _to_tf_rows(zoo: Zoo, params: Params, layout_file: Path) -> np.ndarray:
    """Inverse of the Small CNN Zoo import: params -> rows in the file's TensorFlow layout."""
    from .zoo import _read_layout

    layers = _read_layout(layout_file, zoo.spec.n_params, zoo.spec)
    n = params[0][1].shape[0]
    rows = np.zeros((n, zoo.spec.n_params), dtype=np.float32)
    for layer, ((kernel, bias), (w, b)) in enumerate(zip(layers, params)):
        w = w.detach().cpu()
        w = w.permute(0, 3, 4, 2, 1) if zoo.spec.is_conv(layer) else w.transpose(1, 2)  # back to (h, w, in, out)
        rows[:, kernel["start"]:kernel["end"]] = w.reshape(n, -1).numpy()
        rows[:, bias["start"]:bias["end"]] = b.detach().cpu().numpy()
    return rows


def optimize_zoo(model_path: str | os.PathLike, zoo_dir: str | os.PathLike, out: str | os.PathLike, *,
                 evaluate: bool = False, data_path: str | None = None, activation: str | None = None,
                 batch_size: int = 256, device: str = "cpu") -> dict:
    """Apply a trained meta-optimizer (``best.pt``) to every network of ``zoo_dir`` and write them to ``out``.

    With ``evaluate`` the networks before and after are scored on the test split of the zoo's data set (digits ships
    with scikit-learn; grayscale CIFAR-10 needs ``data_path``). Returns a summary dict (also written to
    ``out/optimized.json``). A model trained for another architecture is a CheckpointError naming both.
    """
    from .objective import evaluate as score
    from .optimize import CheckpointError, load_model, one_shot, resolve_device

    zoo_dir, out = Path(zoo_dir), Path(out)
    fmt = zoo_format(zoo_dir)
    if out.resolve() == zoo_dir.resolve():
        raise ZooError(f"--out {out} is the input zoo folder; write the optimized zoo to a new folder")
    if fmt == "workbench":
        zoo = Zoo.load(zoo_dir)
    else:
        if activation is None:
            model_probe = load_model(model_path)
            activation = model_probe.spec.activation
        zoo = load_small_cnn_zoo(zoo_dir, activation=activation, drop_nonfinite=True)
    if len(zoo) == 0:
        raise ZooError(f"{zoo_dir} holds no networks to optimize")
    dev = resolve_device(device)
    try:
        model = load_model(model_path, map_location=dev, spec=zoo.spec)
    except CheckpointError as err:
        raise CheckpointError(f"{err} (the zoo at {zoo_dir} holds {zoo.spec.describe()})") from None
    model = model.to(dev)
    new, seconds = one_shot(model, zoo.spec, zoo.params, batch_size=batch_size)
    summary = {"model": str(model_path), "zoo": str(zoo_dir), "format": fmt, "n_networks": len(zoo),
               "architecture": zoo.spec.describe(), "seconds": round(seconds, 4),
               "ms_per_network": round(1e3 * seconds / len(zoo), 4),
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    before = after = None
    if evaluate:
        from . import pipeline

        data = pipeline.get_data(zoo.dataset, data_path, zoo.split_seed)
        x, y = data.split("test")
        before = score(zoo.spec, zoo.params, x, y)["acc"].double()
        after = score(zoo.spec, new, x, y)["acc"].double()
        summary.update({"dataset": data.name,
                        "avg_acc_before": round(100 * float(before.mean()), 2),
                        "avg_acc_after": round(100 * float(after.mean()), 2),
                        "max_acc_before": round(100 * float(before.max()), 2),
                        "max_acc_after": round(100 * float(after.max()), 2)})
    if fmt == "workbench":
        meta = zoo.meta.copy()
        if after is not None:
            meta["test_acc_before"] = meta["test_acc"]
            meta["test_acc"] = after.numpy()
        info = {**zoo.info, "optimized_by": str(model_path)}
        Zoo(zoo.spec, new, meta, zoo.dataset, zoo.split_seed, info).save(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        rows = _to_tf_rows(zoo, new, zoo_dir / "layout.csv")
        with atomic_path(out / "weights.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, rows)
        atomic_write_text(out / "layout.csv", (zoo_dir / "layout.csv").read_text())
        import pandas as pd

        metrics_src = next(p for p in (zoo_dir / "metrics.csv.gz", zoo_dir / "metrics.csv") if p.is_file())
        metrics = pd.read_csv(metrics_src).iloc[zoo.meta["net_id"].to_numpy()].reset_index(drop=True)
        if after is not None:
            metrics["test_accuracy_before"] = metrics["test_accuracy"]
            metrics["test_accuracy"] = after.numpy()
        with atomic_path(out / "metrics.csv.gz") as tmp:
            with gzip.open(tmp, "wt") as fh:
                metrics.to_csv(fh, index=False)
    atomic_write_text(out / "optimized.json", json.dumps(summary, indent=1))
    return summary
