"""The inputs of every run: the image data set and the zoo of one network family, generated once and cached.

:func:`get_zoo` returns the Small CNN Zoo when a path to it is given, else a zoo generated on the data set and
cached under ``output_dir/zoo/<family>`` (notebook 03 makes it; later notebooks and the worker processes load it);
:func:`prefetch_zoos` makes several in parallel processes, :func:`split_params` gives the network-level splits.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..data import Dataset, load_dataset
from ..nets import Params
from ..training.train_config import resolve_device
from ..system.parallel import run_parallel
from ..records import Family
from ..zoo import FAMILIES, Zoo, default_spec, load_or_generate, load_small_cnn_zoo

__all__ = ["ZOO_CHECKPOINTS", "ZOO_BATCH_SIZE", "check_families", "get_data", "get_zoo", "prefetch_zoos",
           "split_params"]


def check_families(families) -> list[str]:
    families = list(families)
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ValueError(f"unknown families {bad}; choose from {list(FAMILIES)}")
    return families


def get_data(dataset: str = "digits", data_path: str | None = None, seed: int = 0) -> Dataset:
    """The image data set the zoo networks solve (digits ships with scikit-learn; CIFAR-10 is read from disk)."""
    return load_dataset(dataset, data_path, seed=seed)


ZOO_CHECKPOINTS = (0, 1, 2)  # plus the final epoch: the zoo spans untrained to trained networks
ZOO_BATCH_SIZE = 32


def get_zoo(output_dir: str | os.PathLike, family: str, data: Dataset | None, *, n_networks: int, zoo_epochs: int,
            seed: int = 0, zoo_path: str | None = None, zoo_steps=None, device: str = "cpu", progress: bool = True,
            verbose: bool = True, test_fraction: float = 0.5, cache_suffix: str = "") -> Zoo:
    """The zoo of ``family``: the Small CNN Zoo at ``zoo_path`` when given (CNN families; its checkpoints at
    ``zoo_steps``: None for the final one (step 86, the reference's), ``"all"`` or a list of steps, each with its
    network's split; networks with NaN weights are dropped and counted in ``zoo.info``), else a zoo generated on
    ``data`` and cached in
    ``output_dir/zoo/<family><cache_suffix>`` (regenerated only when the settings differ). A second zoo of the same
    family with other settings (notebook 07's bigger scaling zoo) needs its own ``cache_suffix``: one folder holds
    one zoo, and asking it for other settings regenerates it in place."""
    check_families([family])
    parsed = Family.parse(family)
    if zoo_path and parsed.kind == "cnn":
        return load_small_cnn_zoo(zoo_path, activation=parsed.activation, split_seed=seed, steps=zoo_steps,
                                  drop_nonfinite=True)
    if data is None:
        raise ValueError(f"generating the {family} zoo needs a data set")
    spec = default_spec(family, data.name)
    checkpoints = [c for c in ZOO_CHECKPOINTS if c < zoo_epochs]
    if cache_suffix and (os.sep in cache_suffix or "/" in cache_suffix or cache_suffix in (".", "..")):
        raise ValueError(f"cache_suffix must be a plain name suffix, got {cache_suffix!r}")
    return load_or_generate(Path(output_dir) / "zoo" / f"{family}{cache_suffix}", spec, data, n_networks, epochs=zoo_epochs,
                            checkpoints=checkpoints, seed=seed, batch_size=ZOO_BATCH_SIZE, device=resolve_device(device),
                            progress=progress, verbose=verbose, test_fraction=test_fraction)


def _zoo_job(job: dict) -> str:
    data = job["data"].load()
    return repr(job["zoo"].load(job["output_dir"], job["family"], data, progress=False, verbose=False))


def prefetch_zoos(output_dir, families, *, data, zoo, workers: int | None = None, progress: bool = True) -> list[str]:
    """Generate (or find cached) the zoos of ``families`` in parallel processes, one family per process; the
    notebook's own loads (``zoo.load(...)``) then read them. ``data``/``zoo``: the sequence's
    :class:`~workbench.pipeline.recipe.DataRecipe` and :class:`~workbench.pipeline.recipe.ZooRecipe`. Same seed, same
    zoo, whichever process made it."""
    jobs = [{"output_dir": str(output_dir), "family": f, "data": data, "zoo": zoo} for f in families]
    return run_parallel(_zoo_job, jobs, workers=workers, desc="zoos", progress=progress, label=lambda j: j["family"])


def split_params(zoo: Zoo) -> dict[str, Params]:
    """Train/val/test parameters of a zoo, by its network-level split."""
    return {s: zoo.subset(split=s).params for s in ("train", "val", "test")}
