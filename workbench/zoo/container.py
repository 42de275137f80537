"""The :class:`Zoo` container, the network-level train/val/test split and the zoo's disk format.

A :class:`Zoo` holds one :class:`~workbench.nets.NetSpec`, batched parameters with one entry per network
checkpoint and a ``meta`` table (one row per entry: network id, epoch, split, accuracies, losses and the
hyperparameters the network was trained with). All checkpoints of one network share its ``net_id`` and its
``split`` (:func:`split_networks`, the reference split of the ScaleGMN paper).

On disk a zoo is a directory, never pickle: ``params.safetensors`` (one weight and one bias tensor per layer),
``meta.csv`` (read back with the column types the manifest records) and the manifest ``zoo.json`` (format,
spec, dtypes, SHA-256 of both files, provenance), written last and atomically, so a folder without it is never
a complete zoo.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..errors import WorkbenchError
from ..system.io import atomic_path, crash_point, sha256_file as _sha256
from ..nets import NetSpec, Params, SpecError, check_params, map_params, select

__all__ = ["ZooError", "Zoo", "split_networks", "META_COLUMNS", "SPLITS", "FORMAT", "FORMAT_VERSION", "MANIFEST",
           "PARAMS_FILE", "META_FILE"]

META_COLUMNS = (
    "net_id", "epoch", "split", "train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss",
    "lr", "init_scale", "l2", "dropout", "train_fraction", "optimizer", "batch_size",
)
FORMAT = "workbench-zoo"
FORMAT_VERSION = 1
MANIFEST = "zoo.json"
PARAMS_FILE = "params.safetensors"
META_FILE = "meta.csv"
SPLITS = ("train", "val", "test")


class ZooError(WorkbenchError, ValueError):
    """A zoo (generated or on disk) is missing, incomplete or inconsistent."""


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
            if split not in SPLITS:
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
        meta = self.meta.iloc[np.flatnonzero(keep)].reset_index(drop=True)
        return Zoo(self.spec, select(self.params, index), meta, self.dataset, self.split_seed, dict(self.info))

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
        params = map_params(lambda t: t.to(device), self.params)
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

