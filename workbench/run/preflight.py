"""Before a long run: what a params file points at exists on this machine, and how big it is.

:func:`load_params` checks a file against the notebooks; :func:`check_inputs` then checks it against the machine --
the data set at ``data_path`` reads as the data set named, the Small CNN Zoo at ``zoo_path`` holds the files, steps
and activations asked for, every notebook's ``device`` exists here -- and returns the sizes the run will work on
(images per split, networks and checkpoints per family and split), which :mod:`workbench.run.estimate` counts with.
Every problem is listed in one :class:`PreflightError` (``python -m workbench validate`` and ``run`` print it before
any notebook starts), instead of surfacing as a traceback inside notebook 03 or 04.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ParamsError, WorkbenchError
from .params import RunParams, declared_parameters, notebook_key, _literal

__all__ = ["PreflightError", "RunInputs", "notebook_settings", "families_of", "check_inputs", "generated_counts"]


class PreflightError(ParamsError):
    """A params file is valid, but what it points at is not on this machine (a path, a device)."""


@dataclass
class RunInputs:
    """What the selected notebooks of a run will work on.

    Attributes:
        values: each selected notebook's parameters (its defaults, then the file's), by notebook key ("04").
        images: images per split of the data set ({"train": ..., "val": ..., "test": ...}).
        image_shape: (C, H, W) of the images.
        counts: per (family, n_networks) the zoo's ``networks``, ``entries`` and ``trained`` entries per split.
        device: the device the run trains on (the first selected notebook's that trains; "cpu" when none does).
    """

    values: dict
    images: dict
    image_shape: tuple
    counts: dict = field(default_factory=dict)
    device: str = "cpu"


def notebook_settings(params: RunParams, notebooks: list[Path]) -> dict[str, dict]:
    """Each notebook's parameters for ``params``: its declared defaults, then what the file injects."""
    out = {}
    for nb in notebooks:
        declared = declared_parameters(nb)
        values = {k: _literal(info["default"]) for k, info in declared.items()}
        values.update(params.for_notebook(nb, declared))
        out[notebook_key(nb)] = values
    return out


def families_of(values: dict) -> list[str]:
    """Every family a notebook's parameters name (its zoos)."""
    names = []
    for key in ("families", "ablation_families", "scaling_families"):
        names += list(values.get(key) or [])
    for key in ("family", "lam_family"):
        if values.get(key):
            names.append(values[key])
    return list(dict.fromkeys(names))


def generated_counts(n_networks: int, zoo_epochs: int, seed: int, test_fraction: float) -> pd.DataFrame:
    """Networks, entries and trained entries per split of a zoo the workbench generates (notebook 03)."""
    from ..pipeline.zoos import ZOO_CHECKPOINTS
    from ..zoo import split_networks

    kept = [c for c in ZOO_CHECKPOINTS if c < zoo_epochs] + [zoo_epochs]
    split = pd.Series(split_networks(n_networks, seed, test_fraction)).value_counts()
    nets = split.reindex(["train", "val", "test"], fill_value=0)
    return pd.DataFrame({"networks": nets, "entries": nets * len(kept),
                         "trained": nets * sum(1 for c in kept if c >= 1)}).astype(int)


def _zoo_counts(values: dict, family: str, n_networks: int) -> pd.DataFrame:
    from ..zoo import small_cnn_zoo_counts

    if values.get("zoo_path") and family.startswith("cnn"):
        return small_cnn_zoo_counts(values["zoo_path"], family.rsplit("-", 1)[-1], values.get("zoo_steps"),
                                    int(values.get("seed", 0)))
    return generated_counts(n_networks, int(values["zoo_epochs"]), int(values.get("seed", 0)),
                            float(values.get("zoo_test_fraction", 0.5)))


def _check_devices(settings: dict, problems: list[str]) -> str:
    from .zoo_commands import _device

    device = "cpu"
    for key, values in settings.items():
        if "device" not in values:
            continue
        try:
            resolved = _device(values["device"], f"device of notebook {key}")
        except WorkbenchError as err:
            problems.append(str(err))
            continue
        if any(k.startswith("meta_") for k in values) and device == "cpu":
            device = str(resolved)
    return device


def check_inputs(params: RunParams, notebooks: list[Path]) -> RunInputs:
    """Check what the selected ``notebooks`` of ``params`` read and run on; return the sizes (see
    :class:`RunInputs`). All problems at once are one :class:`PreflightError`."""
    from ..data import load_dataset

    settings = notebook_settings(params, notebooks)
    problems: list[str] = []
    device = _check_devices(settings, problems)
    images, shape = {}, ()
    datasets = {(v["dataset"], v.get("data_path")) for v in settings.values() if v.get("dataset")}
    for dataset, data_path in sorted(datasets, key=str):
        try:
            data = load_dataset(dataset, data_path, seed=0)
            images, shape = {s: len(data.split(s)[1]) for s in ("train", "val", "test")}, data.image_shape
        except WorkbenchError as err:
            problems.append(f"data_path: {err}")
    counts = {}
    for key, values in settings.items():
        if "n_networks" not in values:
            continue
        sizes = {int(values["n_networks"]), int(values.get("scaling_n_networks") or values["n_networks"])}
        for family in families_of(values):
            for n in sizes:
                if (family, n) in counts:
                    continue
                try:
                    counts[(family, n)] = _zoo_counts(values, family, n)
                except WorkbenchError as err:
                    problems.append(f"zoo_path ({family}, notebook {key}): {err}")
                    counts[(family, n)] = None
    if problems:
        listing = "\n  - ".join(dict.fromkeys(problems))
        raise PreflightError(f"{params.path} is valid, but this machine cannot run it:\n  - {listing}")
    return RunInputs(settings, images, shape, counts, device)
