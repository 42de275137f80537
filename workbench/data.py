"""Image classification data sets the zoo networks are trained on, all as ``(N, C, H, W)`` float32 tensors.

* ``"digits"``: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn, so nothing is
  downloaded). The default: small enough that a whole zoo trains in seconds on a laptop CPU.
* ``"cifar10-gs"``: grayscale CIFAR-10 at 32x32 as in the Small CNN Zoo (Unterthiner et al. 2020), read from a
  local copy of the CIFAR-10 *python version*. Never downloaded by the workbench.

Every loader returns a frozen :class:`Dataset` with fixed train/val/test splits chosen by ``seed``.
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import WorkbenchError

__all__ = ["DATASETS", "SPLITS", "DataError", "Dataset", "load_digits_data", "load_cifar10_gs", "load_dataset"]

DATASETS = ("digits", "cifar10-gs")
SPLITS = ("train", "val", "test")
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_EXPECTED = "expected data_batch_1..5 and test_batch from the CIFAR-10 python version (cifar-10-python.tar.gz)"
# The published batches are 31,035,704 (data_batch_*) and 31,035,526 (test_batch) bytes; the archive holds 8 members.
# Anything far beyond is not CIFAR-10 and is refused from the tar headers or file sizes, before it is read.
CIFAR_MAX_BATCH_BYTES = 40_000_000
CIFAR_MAX_MEMBERS = 100


class DataError(WorkbenchError, ValueError):
    """A data set is missing, incomplete or not in the expected format."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images ``x_*`` of shape (N, C, H, W) (float32) and labels ``y_*`` of shape (N,) (int64) per split."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor

    def __post_init__(self):
        for split in SPLITS:
            x, y = self.split(split)
            if x.dim() != 4 or y.dim() != 1 or x.shape[0] != y.shape[0]:
                raise DataError(
                    f"{self.name}: split {split!r} has images {tuple(x.shape)} and labels {tuple(y.shape)}; "
                    "expected (N, C, H, W) and (N,)"
                )
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise DataError(f"{self.name}: split {split!r} must hold float32 images and int64 labels")
        if len({tuple(self.split(s)[0].shape[1:]) for s in SPLITS}) != 1:
            raise DataError(f"{self.name}: the splits disagree on the image shape")

    @property
    def n_classes(self) -> int:
        return int(max(int(self.split(s)[1].max()) for s in SPLITS if len(self.split(s)[1])) + 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def to(self, device) -> "Dataset":
        moved = {f"{k}_{s}": self.split(s)[i].to(device) for s in SPLITS for i, k in enumerate("xy")}
        return Dataset(self.name, **moved)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self.split(s)[1])}" for s in SPLITS)
        return f"Dataset({self.name!r}, image_shape={self.image_shape}, n_classes={self.n_classes}, {sizes})"


def _stratified_split(y: np.ndarray, fractions: tuple[float, float, float], seed: int) -> list[np.ndarray]:
    """Indices of a stratified (per-class proportional) train/val/test split, each sorted."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    bounds = np.cumsum(fractions)[:2]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = np.round(bounds * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cut)):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def _as_dataset(name: str, x: np.ndarray, y: np.ndarray, parts: list[np.ndarray]) -> Dataset:
    tensors = {}
    for split, idx in zip(SPLITS, parts):
        tensors[f"x_{split}"] = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32))
        tensors[f"y_{split}"] = torch.from_numpy(np.ascontiguousarray(y[idx], dtype=np.int64))
    return Dataset(name, **tensors)


def load_digits_data(seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Dataset:
    """scikit-learn's 8x8 digits, split stratified 60/20/20 by ``seed``, shape (N, 1, 8, 8).

    Pixels (0..16) are divided by 16 and then standardised with the mean and standard deviation of the train
    split (one scalar each), so no information from val/test leaks into the preprocessing.
    """
    from sklearn.datasets import load_digits

    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise DataError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    bunch = load_digits()
    x = (bunch.images.astype(np.float64) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    parts = _stratified_split(y, fractions, seed)
    mean, std = x[parts[0]].mean(), x[parts[0]].std()
    return _as_dataset("digits", (x - mean) / std, y, parts)


# -- grayscale CIFAR-10 -------------------------------------------------------------------------------------------
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 batch dicts and nothing else: only numpy's array reconstruction is allowed, so a
    tampered file cannot run code through pickle's global lookup."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")


def _read_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    # The CIFAR-10 python batches are pickles; pickle is only ever applied to files the user pointed at, and
    # through an unpickler that allows numpy arrays only.
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:
        raise DataError(f"{where}: could not read a CIFAR-10 batch ({err}); {CIFAR_EXPECTED}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{where}: expected a dict with b'data' and b'labels', found {keys}; {CIFAR_EXPECTED}")
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(f"{where}: b'data' must be a uint8 array and b'labels' a list of ints 0..9 ({err}); "
                        f"{CIFAR_EXPECTED}") from err
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{where}: b'data' has dtype {data.dtype} and shape {data.shape}; expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{where}: b'labels' must hold {data.shape[0]} labels in 0..9, got shape {labels.shape}")
    return data, labels


def _cifar_members(tar: tarfile.TarFile, path: Path, names: tuple[str, ...]) -> dict[str, tarfile.TarInfo]:
    """The archive members holding ``names``, checked from the tar headers alone (nothing is extracted): at most
    :data:`CIFAR_MAX_MEMBERS` members, each batch a regular file of at most :data:`CIFAR_MAX_BATCH_BYTES` at
    ``<name>`` or ``cifar-10-batches-py/<name>``, found once."""
    found: dict[str, tarfile.TarInfo] = {}
    for count, member in enumerate(iter(tar.next, None), start=1):
        if count > CIFAR_MAX_MEMBERS:
            raise DataError(f"{path}: the archive holds more than {CIFAR_MAX_MEMBERS} members; the CIFAR-10 python "
                            f"version holds 8. {CIFAR_EXPECTED}")
        parts = member.name.replace("\\", "/").strip("/").split("/")
        if parts[-1] not in names:
            continue
        where = f"{path}: member {member.name[:200]!r}"
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "cifar-10-batches-py") or member.name.startswith("/"):
            raise DataError(f"{where} is not at {parts[-1]} or cifar-10-batches-py/{parts[-1]}; {CIFAR_EXPECTED}")
        if not member.isfile():
            raise DataError(f"{where} is not a regular file (a link, folder or device entry); {CIFAR_EXPECTED}")
        if member.size > CIFAR_MAX_BATCH_BYTES:
            raise DataError(f"{where} declares {member.size:,} bytes; a CIFAR-10 batch is about 31,000,000 "
                            f"(limit {CIFAR_MAX_BATCH_BYTES:,}). {CIFAR_EXPECTED}")
        if parts[-1] in found:
            raise DataError(f"{where}: the archive holds {parts[-1]} twice; {CIFAR_EXPECTED}")
        found[parts[-1]] = member
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{path}: archive lacks {missing}; {CIFAR_EXPECTED}")
    return found


def _cifar_raw_files(path: Path) -> dict[str, bytes]:
    names = (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    if not path.exists():
        raise DataError(f"{path} does not exist; {CIFAR_EXPECTED}. The workbench never downloads data sets.")
    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as tar:
                members = _cifar_members(tar, path, names)
                return {n: tar.extractfile(members[n]).read(CIFAR_MAX_BATCH_BYTES + 1) for n in names}
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:  # bad header, truncated or corrupt stream
            raise DataError(f"{path} is not a readable tar archive ({type(err).__name__}: {str(err)[:200]}); "
                            f"{CIFAR_EXPECTED}") from err
    if not path.is_dir():
        raise DataError(f"{path} is neither a file nor a folder (a pipe or device?); {CIFAR_EXPECTED}")
    folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {missing}; {CIFAR_EXPECTED}")
    too_big = [f"{n} ({(folder / n).stat().st_size:,} bytes)" for n in names
               if (folder / n).stat().st_size > CIFAR_MAX_BATCH_BYTES]
    if too_big:
        raise DataError(f"{folder}: {', '.join(too_big)} larger than a CIFAR-10 batch (about 31,000,000 bytes, limit "
                        f"{CIFAR_MAX_BATCH_BYTES:,}); {CIFAR_EXPECTED}")
    return {n: (folder / n).read_bytes() for n in names}


def _grayscale(data: np.ndarray) -> np.ndarray:
    """uint8 (N, 3072) RGB planes -> float (N, 1, 32, 32): rescale to [-1, 1], then the mean over R, G, B."""
    rgb = data.reshape(-1, 3, 32, 32).astype(np.float32) / 127.5 - 1.0
    return rgb.mean(axis=1, keepdims=True)


def load_cifar10_gs(path: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """Grayscale CIFAR-10 (as in the Small CNN Zoo) from a local copy of the CIFAR-10 python version.

    Args:
        path: the ``cifar-10-python.tar.gz`` archive, the extracted ``cifar-10-batches-py`` directory, or its
            parent. Must hold ``data_batch_1..5`` and ``test_batch``.
        val_fraction: share of the 50,000 training images held out (stratified by ``seed``) as validation.

    The batches are pickles: only open files you trust. They are read with an unpickler that accepts numpy
    arrays only. Images are rescaled to [-1, 1] and averaged over RGB; shape (N, 1, 32, 32).
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    path = Path(path).expanduser()
    raw = _cifar_raw_files(path)
    train = [_read_batch(raw[n], f"{path}:{n}") for n in CIFAR_TRAIN_FILES]
    x_test, y_test = _read_batch(raw[CIFAR_TEST_FILE], f"{path}:{CIFAR_TEST_FILE}")
    x = np.concatenate([d for d, _ in train])
    y = np.concatenate([l for _, l in train])
    tr, va, _ = _stratified_split(y, (1 - val_fraction, val_fraction, 0.0), seed)
    x_all = np.concatenate([_grayscale(x), _grayscale(x_test)])
    y_all = np.concatenate([y, y_test])
    test_idx = np.arange(len(y), len(y_all))
    return _as_dataset("cifar10-gs", x_all, y_all, [tr, va, test_idx])


def load_dataset(name: str, path: str | os.PathLike | None = None, seed: int = 0) -> Dataset:
    """A data set by name: ``"digits"`` (built in) or ``"cifar10-gs"`` (needs ``path``, see :func:`load_cifar10_gs`)."""
    if name == "digits":
        return load_digits_data(seed=seed)
    if name == "cifar10-gs":
        if path is None:
            raise DataError(
                "cifar10-gs needs path= pointing at a local CIFAR-10 python version "
                "(cifar-10-python.tar.gz or its extracted cifar-10-batches-py directory); nothing is downloaded"
            )
        return load_cifar10_gs(path, seed=seed)
    raise DataError(f"unknown data set {name!r}; valid names are {DATASETS}")
