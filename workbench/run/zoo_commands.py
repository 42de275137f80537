"""The product surface without Jupyter: generate a zoo, and apply a trained meta-optimizer to a zoo folder.

    python -m workbench zoo PARAMS --family F [--seed S] --out DIR
    python -m workbench optimize MODEL ZOO_DIR --out DIR [--evaluate] [--data-path P] [--drop-nonfinite]

``optimize`` reads either format the workbench knows -- its own zoo folder (``zoo.json``, safetensors, meta.csv) or
a Small CNN Zoo folder (``weights.npy``, ``layout.csv``, ``metrics.csv[.gz]``) -- and writes the new weights in the
same format (and dtype), so the output folder can be read back by the same loader (or the Small CNN Zoo's tools).
Both commands follow the workbench's output-folder rule (:func:`workbench.system.paths.check_output_folder`): ``--out``
is a new or empty folder or one the same command wrote (its manifest, nothing else inside), never the input or a folder
holding it; the folder is built beside its target and renamed into place, under a lock beside it
(:func:`workbench.system.io.output_lock`). ``optimize`` writes nothing unless every network's one-shot output (and, with
``--evaluate``, its logits) is finite; ``--drop-nonfinite`` leaves the other networks out instead, named and counted.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from ..errors import ConfigError, WorkbenchError
from ..system.io import RunFolderError, atomic_path, output_lock
from ..nets import Params, n_networks, select, small_cnn_zoo_spec
from ..system.paths import OutputFolderError, OutputKind, check_not_an_input, check_output_folder
from ..zoo import FAMILIES, Zoo, ZooError, default_spec, generate, load_small_cnn_zoo
from ..zoo.container import FORMAT, MANIFEST, META_FILE, PARAMS_FILE
from ..zoo.optimized_output import optimized_meta, write_small_cnn_zoo_folder

__all__ = ["generate_zoo", "optimize_zoo", "zoo_format", "zoo_settings", "NonFiniteOutput", "OPTIMIZE_OUTPUT",
           "ZOO_OUTPUT"]

OPTIMIZED_FILE = "optimized.json"  # the summary that marks a folder written by optimize_zoo
_WORKBENCH_FILES = (MANIFEST, PARAMS_FILE, META_FILE)
_SMALL_CNN_ZOO_FILES = ("weights.npy", "layout.csv", "metrics.csv.gz")
# floating dtypes the one shot and the forward pass compute in on every device (float8 has no arithmetic there)
_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _is_optimize_summary(info) -> bool:
    return (isinstance(info, dict) and isinstance(info.get("model"), str) and isinstance(info.get("zoo"), str)
            and info.get("format") in ("workbench", "small-cnn-zoo") and isinstance(info.get("n_networks"), int))


OPTIMIZE_OUTPUT = OutputKind("optimize", OPTIMIZED_FILE,
                             frozenset({OPTIMIZED_FILE, *_WORKBENCH_FILES, *_SMALL_CNN_ZOO_FILES}), _is_optimize_summary)
ZOO_OUTPUT = OutputKind("zoo", MANIFEST, frozenset(_WORKBENCH_FILES),
                        lambda info: isinstance(info, dict) and info.get("format") == FORMAT)


class NonFiniteOutput(WorkbenchError, ValueError):
    """The one shot gave NaN or infinite weights (or logits) for some networks; nothing was written."""


def zoo_settings(params_path: str | os.PathLike) -> dict:
    """The zoo settings notebook 03 would run with for a params file: its declared defaults, the file's shared keys
    and its ``"03"`` section (``dataset``, ``data_path``, ``n_networks``, ``zoo_epochs``, ``seed``, ``device``)."""
    from .params import notebook_values

    return notebook_values(params_path, "03")[1]


def _prepare_out(out: Path, kind: OutputKind, inputs: dict) -> None:
    """Refuse, before any work, an ``out`` the command may not write; create its parent (where its lock goes)."""
    check_not_an_input(out, inputs)
    check_output_folder(out, kind)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:  # a read-only mount, no permission, a name too long
        raise OutputFolderError(f"cannot create the folder {out.parent} for --out {out}: "
                                f"{getattr(err, 'strerror', None) or err}; pass a writable folder") from None


# what a failed write raises: OSError, or SafetensorError (safetensors wraps the OSError of a full disk in it)
_WRITE_ERRORS = (OSError, SafetensorError)


def _write_failed(out: Path, err: Exception) -> RunFolderError:
    why = getattr(err, "strerror", None) or str(err)[:200]
    return RunFolderError(f"cannot write {out}: {why}; nothing was written there (a full disk? a read-only "
                          "folder?). Free space or pass another --out")


def generate_zoo(params_path: str | os.PathLike, family: str, out: str | os.PathLike, *, seed: int | None = None,
                 progress: bool = True) -> Zoo:
    """Generate the zoo of ``family`` that notebook 03 would generate with a params file (:func:`zoo_settings`;
    ``seed`` overrides the file's) and save it to ``out`` (a new or empty folder, or a zoo the workbench wrote --
    :data:`ZOO_OUTPUT` -- which is replaced).

    With a ``zoo_path`` in the params file notebook 03 reads the Small CNN Zoo instead; this command always
    generates (on ``dataset``)."""
    from .. import pipeline

    if family not in FAMILIES:
        raise ZooError(f"unknown family {family!r}; choose from {list(FAMILIES)}")
    out = Path(out)
    values = zoo_settings(params_path)
    seed = int(values["seed"] if seed is None else seed)
    device = _device(values.get("device", "cpu"), f"device in {params_path}")
    _prepare_out(out, ZOO_OUTPUT, {"params file": params_path})
    with output_lock(out, f"python -m workbench zoo {params_path} --family {family} --out {out}"):
        check_output_folder(out, ZOO_OUTPUT)
        data = pipeline.get_data(values["dataset"], values.get("data_path"), seed)
        zoo_epochs = int(values["zoo_epochs"])
        checkpoints = [c for c in pipeline.ZOO_CHECKPOINTS if c < zoo_epochs]
        zoo = generate(default_spec(family, data.name), data, int(values["n_networks"]), epochs=zoo_epochs,
                       checkpoints=checkpoints, seed=seed, batch_size=pipeline.ZOO_BATCH_SIZE, device=device,
                       progress=progress, test_fraction=float(values.get("zoo_test_fraction", 0.5)))
        check_output_folder(out, ZOO_OUTPUT)  # again: nothing of anyone else's appeared meanwhile
        try:
            zoo.save(out)
        except _WRITE_ERRORS as err:
            raise _write_failed(out, err) from None
    return zoo


def _device(device: str, label: str = "--device") -> torch.device:
    """The torch device ``device`` names, if this machine has it (a ConfigError naming ``label`` otherwise)."""
    from ..training.train_config import resolve_device

    try:
        dev = resolve_device(device)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"{label}: {err}") from None
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{label} is 'mps', but this machine has no MPS device (Apple GPUs only); use 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{label} is {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{label} is {device!r}, but must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'")
    return dev


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


def _load_input_zoo(zoo_dir: Path, fmt: str, activation: str) -> Zoo:
    try:
        if fmt == "workbench":
            zoo = Zoo.load(zoo_dir)
        else:
            zoo = load_small_cnn_zoo(zoo_dir, activation=activation, drop_nonfinite=True)
    except ZooError as err:
        raise ZooError(f"cannot read the zoo at {zoo_dir}: {err}. Regenerate it (python -m workbench zoo ...) or "
                       "pass another zoo folder") from None
    if len(zoo) == 0:
        raise ZooError(f"{zoo_dir} holds no networks to optimize")
    dtype = str(zoo.params[0][0].dtype).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise ZooError(f"{zoo_dir} holds {dtype} weights; `optimize` reads zoos of {', '.join(_DTYPES)} (torch has "
                       f"no arithmetic for {dtype} here). Convert the zoo to float32 first")
    return zoo


def _load_inputs(model_path: Path, zoo_dir: Path, fmt: str, activation: str | None, dev: torch.device):
    """The input zoo and the metanetwork (loaded on the CPU, then moved: a device problem is never a "corrupt
    checkpoint")."""
    from ..training.checkpoints import CheckpointError, load_model

    if fmt == "small-cnn-zoo" and activation is None:
        activation = _small_cnn_zoo_activation(model_path, zoo_dir)
    zoo = _load_input_zoo(zoo_dir, fmt, activation)
    try:
        model = load_model(model_path, map_location="cpu", spec=zoo.spec)
    except CheckpointError as err:
        raise CheckpointError(f"{err} (the zoo at {zoo_dir} holds {zoo.spec.describe()})") from None
    return zoo, model.to(dev)


def optimize_zoo(model_path: str | os.PathLike, zoo_dir: str | os.PathLike, out: str | os.PathLike, *,
                 evaluate: bool = False, data_path: str | None = None, activation: str | None = None,
                 batch_size: int = 256, device: str = "cpu", drop_nonfinite: bool = False) -> dict:
    """Apply a trained meta-optimizer (``best.pt``) to every network of ``zoo_dir`` and write them to ``out``.

    ``out`` is built in a hidden temporary folder and renamed into place, so a failure leaves nothing half-written;
    it must be a new or empty folder or an earlier output of this function (:data:`OPTIMIZE_OUTPUT`), and must not
    be, hold or lie inside the model or the zoo. The output keeps the source's split (read back, it scores the same
    test networks) and marks its training-split networks ``seen_in_training``; the input's metrics, which no longer
    describe the new weights, move to ``<column>_before`` (:mod:`workbench.zoo.optimized_output`): in the workbench
    format they are NaN under the original names except ``test_acc``/``test_loss``/``l1``, which ``evaluate``
    measures anew; in the Small CNN Zoo format ``test_accuracy`` stays (its loader needs one) -- the new one with
    ``evaluate``, else the input's, as ``workbench.evaluated`` says.

    Networks whose one-shot weights (or, with ``evaluate``, logits) are not finite are a :class:`NonFiniteOutput`
    naming them, and nothing is written; ``drop_nonfinite`` leaves them out (``dropped`` in the summary) unless all
    are. ``evaluate`` scores every network before and after on the test images of the zoo's data set (CIFAR-10 needs
    ``data_path``, and the evaluation chunks stay within :func:`workbench.memory.budget_bytes`); the summary's
    averages are over the zoo's test-split networks, which a metanetwork trained on the zoo never saw (``by_split``
    has every split's). Returns a summary dict (also ``out/optimized.json``). A model trained for another
    architecture is a CheckpointError naming both.
    """
    from ..training.checkpoints import CheckpointError
    from ..training.optimize import one_shot  # the metanetwork (and PyG) stay off `zoo`'s path

    zoo_dir, out, model_path = Path(zoo_dir), Path(out), Path(model_path)
    if int(batch_size) < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if not model_path.is_file():
        what = "does not exist" if not model_path.exists() else "is not a file"
        raise CheckpointError(f"the model {model_path} {what}; pass a trained metanetwork checkpoint such as "
                              "<run folder>/best.pt (notebook 04 or `python -m workbench train`)")
    fmt = zoo_format(zoo_dir)
    dev = _device(device)
    _prepare_out(out, OPTIMIZE_OUTPUT, {"zoo": zoo_dir, "model": model_path})
    with output_lock(out, f"python -m workbench optimize {model_path} {zoo_dir} --out {out}"):
        check_output_folder(out, OPTIMIZE_OUTPUT)
        zoo, model = _load_inputs(model_path, zoo_dir, fmt, activation, dev)
        data = None
        if evaluate:  # before the work: a missing data set fails here
            from .. import pipeline

            data = pipeline.get_data(zoo.dataset, data_path, zoo.split_seed)
        new, seconds = one_shot(model, zoo.spec, [(w.to(dev), b.to(dev)) for w, b in zoo.params],
                                batch_size=batch_size)
        dtype = zoo.params[0][0].dtype  # written back in the zoo's own dtype (the metanet computes in float32)
        new = [(w.to(dtype), b.to(dtype)) for w, b in new]
        summary = {"model": str(model_path), "zoo": str(zoo_dir), "format": fmt, "n_networks": len(zoo),
                   "architecture": zoo.spec.describe(), "seconds": round(seconds, 4),
                   "ms_per_network": round(1e3 * seconds / len(zoo), 4), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        screen = _Screen(zoo, new, model_path, drop_nonfinite)
        screen.drop(_nonfinite(new), "NaN or infinite weights")
        after = _evaluate(screen, data, summary) if data is not None else None
        summary.update(screen.summary())
        _write_output(out, fmt, screen.zoo, screen.new, after, model_path, zoo_dir, summary)
    return summary


def _write_output(out: Path, fmt: str, zoo: Zoo, new: Params, after: dict | None, model_path: Path, zoo_dir: Path,
                  summary: dict) -> None:
    """The optimized zoo in the input's format, with ``optimized.json``, renamed into place whole."""
    try:
        with atomic_path(out) as tmp:
            if fmt == "workbench":
                _write_workbench_zoo(tmp, zoo, new, after, model_path)
            else:
                write_small_cnn_zoo_folder(tmp, zoo, new, after, zoo_dir)
            (tmp / OPTIMIZED_FILE).write_text(json.dumps(summary, indent=1, allow_nan=False))
            check_output_folder(out, OPTIMIZE_OUTPUT)  # again, just before the rename
    except _WRITE_ERRORS as err:
        raise _write_failed(out, err) from None


def _nonfinite(params: Params) -> np.ndarray:
    """(B,) bool: networks with a NaN or infinite weight or bias."""
    bad = torch.zeros(n_networks(params), dtype=torch.bool)
    for w, b in params:
        bad |= ~torch.isfinite(w.detach().cpu()).flatten(1).all(1) | ~torch.isfinite(b.detach().cpu()).flatten(1).all(1)
    return bad.numpy()


class _Screen:
    """The networks of a one shot that are kept: :meth:`drop` refuses non-finite ones (:class:`NonFiniteOutput`,
    naming them) or, with ``drop_nonfinite``, leaves them out and records them."""

    def __init__(self, zoo: Zoo, new: Params, model_path: Path, drop_nonfinite: bool):
        self.zoo, self.new, self.model_path, self.allowed = zoo, new, model_path, drop_nonfinite
        self.dropped, self.n_input = [], len(zoo)

    def drop(self, bad: np.ndarray, what: str, cause: str | None = None) -> np.ndarray:
        """Leave out the entries where ``bad`` (``what`` they got; ``cause``: why, if known); returns the kept mask
        (over the entries kept so far)."""
        bad = np.asarray(bad, dtype=bool)
        if not bad.any():
            return ~bad
        meta = self.zoo.meta
        named = [f"net_id {int(meta['net_id'].iloc[i])} epoch {int(meta['epoch'].iloc[i])}" for i in np.flatnonzero(bad)]
        listing = ", ".join(named[:8]) + (f" and {len(named) - 8} more" if len(named) > 8 else "")
        already = int((_nonfinite(self.zoo.params) & bad).sum())
        rows = torch.as_tensor(np.flatnonzero(bad))
        largest = max(float(t[rows].detach().abs().double().nan_to_num(nan=0.0).max()) for w, b in self.zoo.params
                      for t in (w, b))
        cause = cause or (f"{already} of them already non-finite in the input" if already
                          else f"their input weights reach |w| = {largest:.3g}")
        if not self.allowed or bad.all():
            hint = ("every network is affected, so --drop-nonfinite would leave nothing" if bad.all() and self.allowed
                    else "pass --drop-nonfinite to leave them out (named and counted in optimized.json)")
            raise NonFiniteOutput(
                f"the one shot of {self.model_path} gives {what} for {int(bad.sum())} of {len(bad)} networks ({listing};"
                f" {cause}); nothing was written. Check those networks (a metanetwork trained on another weight "
                f"scale?); {hint}")
        self.dropped += [{"entry": name, "why": what} for name in named]
        keep = ~bad
        self.zoo = self.zoo.subset(mask=keep)
        self.new = select(self.new, torch.as_tensor(np.flatnonzero(keep)))
        return keep

    def summary(self) -> dict:
        return {"n_networks": len(self.zoo), "n_networks_input": self.n_input, "dropped_nonfinite": len(self.dropped),
                "dropped": self.dropped} if self.dropped else {}


def _small_cnn_zoo_activation(model_path: Path, zoo_dir: Path) -> str:
    """The activation of the Small CNN Zoo networks to read: the one the model was trained for (the zoo folder
    holds both kinds); a model trained for another architecture is a CheckpointError."""
    from ..training.checkpoints import CheckpointError, load_model

    found = load_model(model_path).spec
    if found.activation not in ("tanh", "relu") or found != small_cnn_zoo_spec(found.activation):
        raise CheckpointError(f"{model_path} was trained for {found.describe()}; the Small CNN Zoo at {zoo_dir} "
                              "holds CNNs of the Small CNN Zoo design. Use a checkpoint trained on that zoo "
                              "(zoo_path in the params file) or retrain")
    return found.activation


def _evaluate(screen: "_Screen", data, summary: dict) -> dict:
    """Score the kept networks before and after, screen out those whose logits are not finite, add the accuracies
    to ``summary``; returns the after-metrics of the networks kept."""
    before, after = _scores(screen.zoo.spec, screen.zoo.params, screen.new, data)
    bad = ~torch.isfinite(after["ce"]).numpy()
    already = int((bad & ~torch.isfinite(before["ce"]).numpy()).sum())
    kept = screen.drop(bad, "finite weights but NaN or infinite logits",
                       f"{already} of them had non-finite logits before the one shot too" if already else None)
    before, after = ({k: v[kept] for k, v in d.items()} for d in (before, after))
    summary.update(_accuracy_summary(data.name, before, after, screen.zoo.meta["split"].astype(str).to_numpy()))
    return after


def _scores(spec, before: Params, after: Params, data) -> tuple[dict, dict]:
    """:func:`workbench.objective.evaluate` of the networks before and after, on the test split (the images in the
    networks' own dtype: a float64 zoo is scored in float64)."""
    from ..objective import evaluate as score

    x, y = data.split("test")
    x = x.to(before[0][0].dtype)
    return score(spec, before, x, y), score(spec, after, x, y)


def _accuracy_summary(dataset: str, before: dict, after: dict, split: np.ndarray) -> dict:
    """Average and best accuracy before and after over the test-split networks (never seen by a metanetwork trained on
    the zoo; every network when the zoo has no test split), and per split in ``by_split``."""
    scored = "test" if (split == "test").any() else "all"
    mask = split == "test" if scored == "test" else np.ones(len(split), dtype=bool)
    pct = lambda acc, m: round(100 * float(acc["acc"].double()[torch.as_tensor(m)].mean()), 2)  # noqa: E731
    by_split = {s: {"entries": int((split == s).sum()), "avg_acc_before": pct(before, split == s),
                    "avg_acc_after": pct(after, split == s)} for s in ("train", "val", "test") if (split == s).any()}
    keep = torch.as_tensor(mask)
    return {"dataset": dataset, "scored_split": scored, "scored_entries": int(mask.sum()),
            "avg_acc_before": pct(before, mask), "avg_acc_after": pct(after, mask),
            "max_acc_before": round(100 * float(before["acc"].double()[keep].max()), 2),
            "max_acc_after": round(100 * float(after["acc"].double()[keep].max()), 2), "by_split": by_split}


def _write_workbench_zoo(tmp: Path, zoo: Zoo, new: Params, after: dict | None, model_path: Path) -> None:
    """The optimized zoo in the workbench format (:func:`~workbench.zoo.optimized_output.optimized_meta`)."""
    info = {**zoo.info, "optimized_by": str(model_path)}
    Zoo(zoo.spec, new, optimized_meta(zoo, after), zoo.dataset, zoo.split_seed, info).save(tmp)
