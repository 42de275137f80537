"""The trained one-shot optimizers shipped with the package: one ``<name>.safetensors`` (the metanetwork's tensors) and
one ``<name>.json`` (its provenance) per optimizer, named ``<family>-<objective>`` (``mlp-tanh-ce``, ``cnn-relu-l1``).

The provenance record says which run trained it (run name, commit, digest of the run's ``params.json``), what it
was trained on (the zoo's architecture, data set and size), its held-out gain with the 95 % interval over the run's
held-out networks, and the width transfers measured when it was shipped; :func:`available` lists them and
:func:`load` returns the metanetwork. ``python -m workbench ship RUN_DIR`` (:mod:`workbench.run.ship`) regenerates every
file from a finished run. Loading reads tensors only (safetensors, never pickle) and checks that the two files belong
together (the record holds the SHA-256 of the tensors file) and that the tensors fit the architecture the record
names.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from ..training.checkpoints import CheckpointError
from ..system.io import read_regular_bytes
from ..metanet import NFN, MetanetConfig, ScaleGMN
from ..nets import NetSpec
from ..training.train_config import build_model

__all__ = ["FOLDER", "FORMAT", "Shipped", "available", "names", "load", "load_file"]

FOLDER = Path(__file__).resolve().parent
#: the ``format`` field of every provenance record this version writes and reads
FORMAT = "workbench-oneshot-1"
_REQUIRED = ("format", "name", "family", "objective", "spec", "metanet", "weights_sha256", "run", "zoo", "held_out")


@dataclass(frozen=True)
class Shipped:
    """One shipped optimizer, as :func:`available` lists it.

    Attributes:
        name: ``<family>-<objective>``, what :meth:`workbench.OneShot.load` takes.
        family, objective: e.g. ``"cnn-tanh"``, ``"ce"`` or ``"l1"``.
        architecture: the training networks (:meth:`NetSpec.describe`); dataset: what they were trained on.
        gain, gain_lo, gain_hi: held-out accuracy gain on trained checkpoints (points) and its 95 % interval.
        networks: held-out networks the interval is over; run, commit: the run that trained it.
        record: the whole provenance record.
    """

    name: str
    family: str
    objective: str
    architecture: str
    dataset: str
    gain: float
    gain_lo: float
    gain_hi: float
    networks: int
    run: str
    commit: str
    record: dict

    def __str__(self) -> str:
        return (f"{self.name}: {self.architecture} on {self.dataset}; held-out gain {self.gain:+.1f} "
                f"[{self.gain_lo:+.1f}, {self.gain_hi:+.1f}] points over {self.networks} networks (run {self.run}, "
                f"commit {self.commit})")


def names(folder: Path = FOLDER) -> list[str]:
    """The shipped optimizers' names (those with both files)."""
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.safetensors").is_file())


def available(folder: Path = FOLDER) -> list[Shipped]:
    """Every shipped optimizer with its provenance, in name order."""
    out = []
    for name in names(folder):
        record = read_record(folder / f"{name}.json")
        gain = record["held_out"]["gain"]
        out.append(Shipped(name, record["family"], record["objective"], record["zoo"]["architecture"],
                           record["zoo"]["dataset"], gain["estimate"], gain["lo"], gain["hi"], gain["networks"],
                           record["run"]["name"], record["run"]["commit"], record))
    return out


def read_record(path: Path) -> dict:
    """The provenance record at ``path``; a CheckpointError naming the file when it is not one."""
    try:
        record = json.loads(read_regular_bytes(path).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{path} is not a readable provenance record ({type(err).__name__}: {str(err)[:200]}); "
                              "regenerate the shipped optimizers (python -m workbench ship RUN_DIR)") from None
    missing = [k for k in _REQUIRED if not isinstance(record, dict) or k not in record]
    if missing or record.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a provenance record of format {FORMAT} (missing {missing}, format "
                              f"{record.get('format') if isinstance(record, dict) else None!r}); regenerate it "
                              "(python -m workbench ship RUN_DIR)")
    return record


def load(name: str, folder: Path = FOLDER) -> tuple[ScaleGMN | NFN, dict]:
    """The shipped optimizer ``name`` and its provenance record."""
    if name not in names(folder):
        raise CheckpointError(f"no shipped optimizer named {name!r}; shipped: {', '.join(names(folder)) or 'none'} "
                              f"(in {folder})")
    return load_file(folder / f"{name}.safetensors")


def load_file(path: str | os.PathLike) -> tuple[ScaleGMN | NFN, dict]:
    """A metanetwork from ``path`` (``.safetensors``) and the provenance record beside it (``.json``): tensors only,
    checked against the record's digest and architecture."""
    path = Path(path)
    record = read_record(path.with_suffix(".json"))
    try:
        data = read_regular_bytes(path)
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from None
    if hashlib.sha256(data).hexdigest() != record["weights_sha256"]:
        raise CheckpointError(f"{path} does not match the digest in {path.with_suffix('.json').name} (the two files "
                              "come from different ship runs, or one was edited); regenerate them (python -m workbench "
                              "ship RUN_DIR)")
    try:
        state = load_safetensors(data)
        spec, config = NetSpec.from_dict(record["spec"]), MetanetConfig(**record["metanet"])
        model = build_model(spec, config)
    except (SafetensorError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot build the metanetwork its record describes: {err}") from None
    expected = model.state_dict()
    wrong = sorted(k for k in set(state) | set(expected) if k not in state or k not in expected
                   or state[k].shape != expected[k].shape)
    if wrong:
        raise CheckpointError(f"{path}: its tensors do not fit the metanetwork for {spec.describe()} (missing, "
                              f"unexpected or of another shape: {wrong[:5]})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: {bad[:5]} hold NaN or infinite values; the file is damaged, regenerate it")
    model.load_state_dict(state)
    return model.eval(), record
