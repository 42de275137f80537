"""Hostile inputs: every loader meets truncated, garbage, forged, oversized and code-running files with the
workbench's own error naming the file (or key) and the problem -- never a raw KeyError / UnpicklingError /
RuntimeError from a library -- runs no code while loading, and leaves every file on disk as it was.

Each case below is a small function that builds one bad input under ``bad/`` beside valid artifacts under
``valid/`` (a saved zoo, a Small CNN Zoo folder, a metanetwork checkpoint, CIFAR-10 batches) and returns the call
into the real public entry point. The test snapshots every file (SHA-256 and size) before the call, checks the
error, checks that the snapshot is unchanged and that the valid artifacts still load.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

from workbench.data import DataError, load_cifar10_gs, load_dataset
from workbench.errors import ParamsError
from workbench.graphs import to_graph
from workbench.metanet import MetanetConfig
from workbench.nets import NetSpec, SpecError, check_params, init_params
from workbench.training.checkpoints import CheckpointError, load_model
from workbench.training.train_config import TrainConfig, build_model
from workbench.run.params import load_params
from workbench.system.paths import REPO_ROOT
from workbench.zoo import Zoo, ZooError, load_small_cnn_zoo

from strategies import write_small_cnn_zoo  # noqa: E402  (shared with test_zoo and test_fuzz)

SPEC = NetSpec.mlp((4, 3, 2), "tanh")
CONFIG = TrainConfig(device="cpu", meta=MetanetConfig(hidden=4, n_layers=1))


# -- valid artifacts -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Valid:
    """Paths of the valid artifacts that sit beside every hostile input."""

    zoo: Path
    scz: Path
    ckpt: Path
    cifar: Path


def _tiny_zoo(n: int = 3) -> Zoo:
    params = init_params(SPEC, n, torch.Generator().manual_seed(0))
    meta = pd.DataFrame({"net_id": range(n), "epoch": 0, "split": (["train", "val", "test"] * n)[:n]})
    for col in ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "lr", "init_scale", "l2",
                "dropout", "train_fraction", "batch_size"):
        meta[col] = 0.5
    meta["optimizer"] = "sgd"
    return Zoo(SPEC, params, meta, "tiny")


def _checkpoint(spec: NetSpec, config: TrainConfig, state: dict | None = None) -> dict:
    """What :func:`workbench.training.optimize.train` writes to ``best.pt``."""
    torch.manual_seed(0)
    state = build_model(spec, config).state_dict() if state is None else state
    return {"spec": spec.to_dict(), "config": config.to_dict(), "model": state, "epoch": 0, "val_loss": 1.0}


def _cifar_batch(n: int, offset: int) -> dict:
    rng = np.random.default_rng(offset)
    return {b"batch_label": b"synthetic", b"labels": [(offset + i) % 10 for i in range(n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def _write_cifar(folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        (folder / name).write_bytes(pickle.dumps(_cifar_batch(10, i), protocol=2))


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Valid:
    root = tmp_path_factory.mktemp("originals")
    _tiny_zoo().save(root / "zoo")
    write_small_cnn_zoo(root / "scz", n_networks=2, steps=(86,))
    torch.save(_checkpoint(SPEC, CONFIG), root / "best.pt")
    _write_cifar(root / "cifar-10-batches-py")
    return Valid(root / "zoo", root / "scz", root / "best.pt", root / "cifar-10-batches-py")


@pytest.fixture
def valid(originals, tmp_path) -> Valid:
    """Fresh copies of the valid artifacts under ``tmp_path / "valid"``."""
    dest = tmp_path / "valid"
    dest.mkdir()
    for src in (originals.zoo, originals.scz, originals.cifar):
        shutil.copytree(src, dest / src.name)
    shutil.copy2(originals.ckpt, dest / originals.ckpt.name)
    return Valid(*(dest / p.name for p in (originals.zoo, originals.scz, originals.ckpt, originals.cifar)))


def _still_loads(valid: Valid) -> None:
    assert len(Zoo.load(valid.zoo)) == 3
    assert len(load_small_cnn_zoo(valid.scz, activation="tanh")) == 1
    assert load_model(valid.ckpt, spec=SPEC).spec == SPEC
    assert len(load_cifar10_gs(valid.cifar).y_test) == 10


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """(size, SHA-256) of every file under ``root``, by relative path; directories as (-1, "dir")."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = (-1, "dir") if p.is_dir() else (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


# -- building blocks for hostile inputs ------------------------------------------------------------------------
class RunsCode:
    """Unpickling this object runs ``touch <witness>``: the payload of a malicious checkpoint or data file."""

    def __init__(self, witness: Path):
        self.witness = str(witness)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.witness)}",))


@dataclass
class Hostile:
    call: Callable[[], object]  # the public entry point applied to the bad input
    culprit: str  # what the message must name: the offending file, key or value
    witness: Path | None = None  # exists only if loading ran code
    enormous: bool = False  # claims a huge size: must fail fast without allocating it


def _copy(src: Path, dest: Path) -> Path:
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
    return dest


def _rewrite_manifest(zoo: Path, edit: Callable[[dict], None]) -> None:
    manifest = json.loads((zoo / "zoo.json").read_text())
    edit(manifest)
    (zoo / "zoo.json").write_text(json.dumps(manifest))


def _refresh_checksum(zoo: Path, name: str) -> None:
    """Make the manifest agree with a replaced file, as a corrupt-but-consistent save would."""
    digest = hashlib.sha256((zoo / name).read_bytes()).hexdigest()
    _rewrite_manifest(zoo, lambda m: m["files"].__setitem__(name, digest))


def _params_file(bad: Path, text: str | bytes, name: str = "hostile.yaml") -> Path:
    path = bad / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


# -- saved zoos (Zoo.load) -------------------------------------------------------------------------------------
def zoo_truncated_safetensors(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    raw = (zoo / "params.safetensors").read_bytes()
    (zoo / "params.safetensors").write_bytes(raw[: len(raw) // 2])
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "params.safetensors"))


def zoo_truncated_safetensors_unverified(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    raw = (zoo / "params.safetensors").read_bytes()
    (zoo / "params.safetensors").write_bytes(raw[:40])
    return Hostile(lambda: Zoo.load(zoo, verify=False), str(zoo / "params.safetensors"))


def zoo_garbage_safetensors_with_matching_checksum(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    (zoo / "params.safetensors").write_bytes(np.random.default_rng(0).bytes(700))
    _refresh_checksum(zoo, "params.safetensors")
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "params.safetensors"))


def zoo_manifest_not_json(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    (zoo / "zoo.json").write_text('{"format": "workbench-zoo", "version": 1, "spec": {')
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "zoo.json"))


def zoo_manifest_missing_keys(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    _rewrite_manifest(zoo, lambda m: (m.pop("files"), m.pop("meta_dtypes")))
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "zoo.json"))


def zoo_tensors_disagree_with_spec(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    other = init_params(NetSpec.mlp((4, 5, 2), "tanh"), 3)
    save_file({f"layer{l}.{k}": t.contiguous() for l, pair in enumerate(other)
               for k, t in zip(("weight", "bias"), pair)}, str(zoo / "params.safetensors"))
    _refresh_checksum(zoo, "params.safetensors")
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "params.safetensors"))


def zoo_integer_tensors(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    ints = init_params(SPEC, 3)
    save_file({f"layer{l}.{k}": (t * 100).to(torch.int32).contiguous() for l, pair in enumerate(ints)
               for k, t in zip(("weight", "bias"), pair)}, str(zoo / "params.safetensors"))
    _refresh_checksum(zoo, "params.safetensors")
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "params.safetensors"))


def zoo_unknown_activation(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    _rewrite_manifest(zoo, lambda m: m["spec"].__setitem__("activation", "gelu"))
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "zoo.json"))


def zoo_enormous_spec(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    _rewrite_manifest(zoo, lambda m: m["spec"].__setitem__("widths", [10**9, 10**9, 10]))
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "zoo.json"), enormous=True)


def zoo_manifest_points_outside(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    _rewrite_manifest(zoo, lambda m: m.__setitem__("files", {"../../../../etc/passwd": "0" * 64, "meta.csv": "0"}))
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "zoo.json"))


def zoo_meta_text_in_int_column(valid, bad):
    zoo = _copy(valid.zoo, bad / "zoo")
    lines = (zoo / "meta.csv").read_text().splitlines()
    lines[1] = "one" + lines[1][1:]  # net_id (int64 in the manifest) of the first row
    (zoo / "meta.csv").write_text("\n".join(lines) + "\n")
    _refresh_checksum(zoo, "meta.csv")
    return Hostile(lambda: Zoo.load(zoo), str(zoo / "meta.csv"))


def zoo_does_not_exist(valid, bad):
    return Hostile(lambda: Zoo.load(bad / "no-such-zoo"), str(bad / "no-such-zoo"))


# -- the Small CNN Zoo (load_small_cnn_zoo) ------------------------------------------------------------------------
def scz_nan_and_inf_weights(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    weights = np.load(folder / "weights.npy")
    weights[0, 5], weights[0, 4000] = np.nan, np.inf  # row 0: the tanh network
    np.save(folder / "weights.npy", weights)
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "weights.npy"))


def scz_wrong_number_of_columns(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    np.save(folder / "weights.npy", np.zeros((2, 4969), np.float32))
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "layout.csv"))


def scz_pickled_object_array(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    witness = bad / "PWNED"
    np.save(folder / "weights.npy", np.array([RunsCode(witness)] * 2, dtype=object), allow_pickle=True)
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh", mmap=False), str(folder / "weights.npy"),
                   witness=witness)


def scz_forged_enormous_header(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    with open(folder / "weights.npy", "wb") as fh:  # claims 10**9 networks (18 TiB), holds 1 KiB
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 4970)})
        fh.write(b"\0" * 1024)
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh", mmap=False), str(folder / "weights.npy"),
                   enormous=True)


def scz_truncated_weights(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    raw = (folder / "weights.npy").read_bytes()
    (folder / "weights.npy").write_bytes(raw[: len(raw) - 100])
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh", mmap=False), str(folder / "weights.npy"))


def scz_integer_weights(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    np.save(folder / "weights.npy", np.zeros((2, 4970), np.int32))
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "weights.npy"))


def scz_garbage_layout(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    (folder / "layout.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(300))
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "layout.csv"))


def scz_empty_layout(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    (folder / "layout.csv").write_bytes(b"")
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "layout.csv"))


def scz_layout_claims_enormous_shape(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    layout = pd.read_csv(folder / "layout.csv")
    huge = (100_000, 100_000, 16, 16)
    layout.loc[1, ["shape", "size"]] = [str(huge), int(np.prod(huge))]
    layout.loc[1, "end_idx"] = layout.loc[1, "start_idx"] + int(np.prod(huge))
    layout.to_csv(folder / "layout.csv", index=False)
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "layout.csv"), enormous=True)


def scz_layout_text_index(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    layout = pd.read_csv(folder / "layout.csv").astype({"start_idx": object})
    layout.loc[2, "start_idx"] = "zero"
    layout.to_csv(folder / "layout.csv", index=False)
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "layout.csv"))


def scz_metrics_text_in_numbers(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    metrics = pd.read_csv(folder / "metrics.csv.gz").astype({"test_accuracy": object})
    metrics.loc[1, "test_accuracy"] = "high"
    metrics.to_csv(folder / "metrics.csv.gz", index=False, compression="gzip")
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "metrics.csv.gz"))


def scz_corrupt_gzip(valid, bad):
    folder = _copy(valid.scz, bad / "scz")
    raw = bytearray((folder / "metrics.csv.gz").read_bytes())
    raw[len(raw) // 2:] = bytes(len(raw) - len(raw) // 2)  # zero the second half of the stream
    (folder / "metrics.csv.gz").write_bytes(bytes(raw))
    return Hostile(lambda: load_small_cnn_zoo(folder, activation="tanh"), str(folder / "metrics.csv.gz"))


def scz_does_not_exist(valid, bad):
    return Hostile(lambda: load_small_cnn_zoo(bad / "nowhere"), str(bad / "nowhere"))


# -- params files (load_params) ----------------------------------------------------------------------------------
def params_string_for_int(valid, bad):
    path = _params_file(bad, "n_networks: forty\n")
    return Hostile(lambda: load_params(path), "n_networks")


def params_list_for_float(valid, bad):
    path = _params_file(bad, "lam: [0.1, 0.2]\n")
    return Hostile(lambda: load_params(path), "lam")


def params_unknown_key(valid, bad):
    path = _params_file(bad, "seed: 1\nmeta_epoch: 3\n")
    return Hostile(lambda: load_params(path), "meta_epoch")


def params_not_a_mapping(valid, bad):
    path = _params_file(bad, "- seed\n- lam\n")
    return Hostile(lambda: load_params(path), str(path))


def params_binary_garbage(valid, bad):
    path = _params_file(bad, b"\xff\xfe\x00" + np.random.default_rng(2).bytes(200))
    return Hostile(lambda: load_params(path), str(path))


def params_python_tag_runs_code(valid, bad):
    witness = bad / "PWNED"
    path = _params_file(bad, f"seed: !!python/object/apply:os.system [{json.dumps('touch ' + str(witness))}]\n")
    return Hostile(lambda: load_params(path), str(path), witness=witness)


def params_alias_bomb(valid, bad):
    # nine nested anchors of ten aliases each: 10**9 strings once unrolled, inside a valid key's value
    lines = ["families:", "  - &a0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = _params_file(bad, "\n".join(lines) + "\n")
    return Hostile(lambda: load_params(path), "families", enormous=True)


def params_alias_bomb_as_name(valid, bad):
    # 'name' is checked apart from the notebook keys; its error message must not unroll the bomb either
    lines = ["name:", "  - &a0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = _params_file(bad, "\n".join(lines) + "\n")
    return Hostile(lambda: load_params(path), str(path), enormous=True)


def params_nan(valid, bad):
    path = _params_file(bad, "lam: .nan\n")
    return Hostile(lambda: load_params(path), "lam")


def params_directory(valid, bad):
    (bad / "dir.yaml").mkdir()
    return Hostile(lambda: load_params(bad / "dir.yaml"), str(bad / "dir.yaml"))


def params_does_not_exist(valid, bad):
    return Hostile(lambda: load_params(bad / "absent.yaml"), str(bad / "absent.yaml"))


# -- metanetwork checkpoints (load_model) --------------------------------------------------------------------------
def ckpt_does_not_exist(valid, bad):
    return Hostile(lambda: load_model(bad / "best.pt"), str(bad / "best.pt"))


def ckpt_truncated(valid, bad):
    path = bad / "best.pt"
    path.write_bytes(valid.ckpt.read_bytes()[:1000])
    return Hostile(lambda: load_model(path), str(path))


def ckpt_empty(valid, bad):
    path = bad / "best.pt"
    path.write_bytes(b"")
    return Hostile(lambda: load_model(path), str(path))


def ckpt_runs_code(valid, bad):
    path, witness = bad / "best.pt", bad / "PWNED"
    torch.save({**_checkpoint(SPEC, CONFIG), "extra": RunsCode(witness)}, path)
    return Hostile(lambda: load_model(path), str(path), witness=witness)


def ckpt_for_another_architecture(valid, bad):
    path = bad / "best.pt"
    torch.save(_checkpoint(NetSpec.mlp((4, 5, 2), "tanh"), CONFIG), path)
    return Hostile(lambda: load_model(path, spec=SPEC), str(path))


def ckpt_state_dict_of_another_architecture(valid, bad):
    path = bad / "best.pt"
    wrong = build_model(NetSpec.mlp((6, 3, 2), "tanh"), CONFIG).state_dict()
    torch.save(_checkpoint(SPEC, CONFIG, state=wrong), path)
    return Hostile(lambda: load_model(path), str(path))


def ckpt_forged_enormous_spec(valid, bad):
    # 5e7 weights: building this metanetwork's graph would take gigabytes; the tiny state dict gives it away first
    path = bad / "best.pt"
    torch.save({**_checkpoint(SPEC, CONFIG), "spec": NetSpec.mlp((5000, 10000, 10), "tanh").to_dict()}, path)
    return Hostile(lambda: load_model(path), str(path), enormous=True)


def ckpt_missing_keys(valid, bad):
    path = bad / "best.pt"
    torch.save({"model": {}, "epoch": 3}, path)
    return Hostile(lambda: load_model(path), str(path))


# -- CIFAR-10 (load_cifar10_gs / load_dataset) -----------------------------------------------------------------
def cifar_does_not_exist(valid, bad):
    return Hostile(lambda: load_dataset("cifar10-gs", path=bad / "cifar"), str(bad / "cifar"))


def cifar_batch_runs_code(valid, bad):
    folder, witness = _copy(valid.cifar, bad / "cifar-10-batches-py"), bad / "PWNED"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": RunsCode(witness), b"labels": [1]}, protocol=2))
    return Hostile(lambda: load_cifar10_gs(folder), "test_batch", witness=witness)


def cifar_text_labels(valid, bad):
    folder = _copy(valid.cifar, bad / "cifar-10-batches-py")
    batch = {**_cifar_batch(10, 0), b"labels": [b"cat"] * 10}
    (folder / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=2))
    return Hostile(lambda: load_cifar10_gs(folder), "data_batch_4")


def cifar_truncated_batch(valid, bad):
    folder = _copy(valid.cifar, bad / "cifar-10-batches-py")
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 3])
    return Hostile(lambda: load_cifar10_gs(folder), "data_batch_2")


# -- network descriptions and parameters (NetSpec, check_params, to_graph) -------------------------------------
def spec_unknown_activation(valid, bad):
    return Hostile(lambda: NetSpec.from_dict({"kind": "mlp", "widths": [4, 3, 2], "activation": "gelu"}), "gelu")


def spec_unknown_layer_kind(valid, bad):
    return Hostile(lambda: NetSpec.from_dict({"kind": "transformer", "widths": [4, 2], "activation": "relu"}),
                   "transformer")


def spec_wrongly_typed_fields(valid, bad):
    return Hostile(lambda: NetSpec.from_dict({"kind": "mlp", "widths": ["16", 3.5], "activation": "relu"}), "'16'")


def spec_missing_widths(valid, bad):
    return Hostile(lambda: NetSpec.from_dict({"kind": "cnn", "activation": "relu"}), "widths")


def spec_absurd_widths(valid, bad):
    return Hostile(lambda: NetSpec.mlp((10**9, 10**9, 10)), "1000000000", enormous=True)


def graph_of_large_spec_with_small_params(valid, bad):
    big = NetSpec.mlp((10_000, 5_000, 10), "tanh")  # 5e7 parameters: under the limit, never allocated
    return Hostile(lambda: to_graph(big, init_params(SPEC, 2)), "(B, 5000, 10000)", enormous=True)


def graph_of_nan_weights(valid, bad):
    params = init_params(SPEC, 3)
    params[1][0][2, 0, 0] = float("nan")
    return Hostile(lambda: to_graph(SPEC, params), "networks [2]")


def params_of_wrong_dtype(valid, bad):
    params = [(w.to(torch.int64), b) for w, b in init_params(SPEC, 2)]
    return Hostile(lambda: check_params(SPEC, params), "torch.int64")


CASES = [
    # saved zoos
    (zoo_truncated_safetensors, ZooError, r"does not match the checksum in its manifest \(modified or corrupt\)"),
    (zoo_truncated_safetensors_unverified, ZooError, r"is truncated or not a safetensors file"),
    (zoo_garbage_safetensors_with_matching_checksum, ZooError, r"is truncated or not a safetensors file.*regenerate"),
    (zoo_manifest_not_json, ZooError, r"is not valid JSON"),
    (zoo_manifest_missing_keys, ZooError, r"lacks the fields \['meta_dtypes', 'files'\]"),
    (zoo_tensors_disagree_with_spec, ZooError, r"tensor shapes disagree with the spec: layer 0 weight has shape "
                                               r"\(3, 5, 4\); expected \(B, 3, 4\)"),
    (zoo_integer_tensors, ZooError, r"dtype torch.int32; network parameters must be floating point"),
    (zoo_unknown_activation, ZooError, r"invalid network spec: unknown activation 'gelu'.*\('tanh', 'relu'\)"),
    (zoo_enormous_spec, ZooError, r"invalid network spec: .*more than the workbench's limit of 100,000,000"),
    (zoo_manifest_points_outside, ZooError, r"'files' must map exactly params.safetensors and meta.csv"),
    (zoo_meta_text_in_int_column, ZooError, r"cannot be read with the column types of its manifest.*'one'"),
    (zoo_does_not_exist, ZooError, r"is not a complete zoo: it does not exist"),
    # Small CNN Zoo
    (scz_nan_and_inf_weights, ZooError, r"1 of 1 selected networks have NaN/inf weights; pass drop_nonfinite=True"),
    (scz_wrong_number_of_columns, ZooError, r"describes 4970 values per network but weights.npy has 4969 columns"),
    (scz_pickled_object_array, ZooError, r"holds Python objects \(dtype object\).*refusing to load it "
                                         r"\(allow_pickle=False\)"),
    (scz_forged_enormous_header, ZooError, r"is truncated: its header declares a float32 array of shape "
                                           r"\(1000000000, 4970\) \(19,880,000,000,000 bytes\) but only 1,024"),
    (scz_truncated_weights, ZooError, r"is truncated: its header declares .* shape \(2, 4970\)"),
    (scz_integer_weights, ZooError, r"holds a int32 array of shape \(2, 4970\); expected float"),
    (scz_garbage_layout, ZooError, r"is not a readable Small CNN Zoo layout CSV file \(UnicodeDecodeError"),
    (scz_empty_layout, ZooError, r"is not a readable Small CNN Zoo layout CSV file \(EmptyDataError"),
    (scz_layout_claims_enormous_shape, ZooError, r"describes 2560000004\d\d\d values per network but weights.npy "
                                                 r"has 4970 columns"),
    (scz_layout_text_index, ZooError, r"column 'start_idx' must hold integers, found 'zero' in row 2"),
    (scz_metrics_text_in_numbers, ZooError, r"column 'test_accuracy' must hold numbers, found 'high' in row 1"),
    (scz_corrupt_gzip, ZooError, r"is not a readable Small CNN Zoo metrics CSV file"),
    (scz_does_not_exist, ZooError, r"is not a directory; expected a Small CNN Zoo folder with weights.npy"),
    # params files
    (params_string_for_int, ParamsError, r"n_networks in .* is str 'forty', but notebook \S+ expects int"),
    (params_list_for_float, ParamsError, r"lam in .* is list \[0.1, 0.2\], but notebook \S+ expects float"),
    (params_unknown_key, ParamsError, r"unknown key 'meta_epoch' .*\(did you mean 'meta_epochs'\?\)"),
    (params_not_a_mapping, ParamsError, r"must be a mapping of parameter names to values, not a list"),
    (params_binary_garbage, ParamsError, r"is not UTF-8 text .*is it a binary file\?"),
    (params_python_tag_runs_code, ParamsError, r"is not valid YAML: could not determine a constructor for the tag "
                                               r"'tag:yaml.org,2002:python/object/apply:os.system'"),
    (params_alias_bomb, ParamsError, r"families in .* holds more than 10,000 elements \(nested lists or YAML "
                                     r"aliases\)"),
    (params_alias_bomb_as_name, ParamsError, r"'name' in .* must be a plain folder name, got \[\[.*\.\.\.\]"),
    (params_nan, ParamsError, r"lam in .* is nan; parameters must be finite numbers"),
    (params_directory, ParamsError, r"is not a file \(a directory\?\)"),
    (params_does_not_exist, ParamsError, r"does not exist; the ones shipped are in params/"),
    # checkpoints
    (ckpt_does_not_exist, CheckpointError, r"no metanetwork checkpoint at .*; train one first"),
    (ckpt_truncated, CheckpointError, r"is not a readable PyTorch checkpoint \(truncated or corrupt"),
    (ckpt_empty, CheckpointError, r"is not a readable PyTorch checkpoint \(truncated or corrupt: EOFError"),
    (ckpt_runs_code, CheckpointError, r"refused to unpickle non-tensor objects \(loading with weights_only=True, "
                                      r"which never runs code\): .*GLOBAL posix.system"),
    (ckpt_for_another_architecture, CheckpointError, r"was trained for MLP 4-5-2 \(tanh\).*; expected MLP 4-3-2 "
                                                     r"\(tanh\)"),
    (ckpt_state_dict_of_another_architecture, CheckpointError, r"its weights do not fit the architecture it names "
                                                               r"\(MLP 4-3-2.*type_mul has shape \(9, 4\), expected "
                                                               r"\(7, 4\)"),
    (ckpt_forged_enormous_spec, CheckpointError, r"do not fit the architecture it names \(MLP 5000-10000-10"),
    (ckpt_missing_keys, CheckpointError, r"is not a metanetwork checkpoint: it lacks \['spec', 'config'\]"),
    # CIFAR-10
    (cifar_does_not_exist, DataError, r"does not exist; expected data_batch_1..5 and test_batch.*never downloads"),
    (cifar_batch_runs_code, DataError, r"refusing to load posix.system \(only numpy arrays are expected\)"),
    (cifar_text_labels, DataError, r"b'labels' a list of ints 0..9"),
    (cifar_truncated_batch, DataError, r"could not read a CIFAR-10 batch"),
    # network descriptions and parameters
    (spec_unknown_activation, SpecError, r"unknown activation 'gelu'; the workbench supports \('tanh', 'relu'\)"),
    (spec_unknown_layer_kind, SpecError, r"unknown network kind 'transformer'; expected one of \('mlp', 'cnn'\)"),
    (spec_wrongly_typed_fields, SpecError, r"NetSpec widths must hold integers, got str '16'"),
    (spec_missing_widths, SpecError, r"lacks the fields \['widths'\]"),
    (spec_absurd_widths, SpecError, r"1,000,000,011,000,000,010 parameters per network, more than the workbench's "
                                    r"limit"),
    (graph_of_large_spec_with_small_params, SpecError, r"layer 0 weight has shape \(2, 3, 4\); expected "
                                                       r"\(B, 5000, 10000\)"),
    (graph_of_nan_weights, SpecError, r"layer 1 weight contains NaN or inf values \(networks \[2\]\)"),
    (params_of_wrong_dtype, SpecError, r"layer 0 weight has dtype torch.int64; network parameters must be floating"),
]


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@pytest.mark.parametrize("build, error, match", CASES, ids=[c[0].__name__ for c in CASES])
def test_hostile_input_gets_a_clear_error_and_damages_nothing(tmp_path, valid, build, error, match):
    bad = tmp_path / "bad"
    bad.mkdir()
    case = build(valid, bad)
    before = snapshot(tmp_path)
    rss, t0 = _max_rss_bytes(), time.perf_counter()
    with pytest.raises(error) as info:
        case.call()
    seconds = time.perf_counter() - t0
    message = str(info.value)
    assert type(info.value) is error, f"{type(info.value).__name__} is not the expected {error.__name__}"
    assert re.search(match, message, flags=re.S), f"message does not match {match!r}:\n{message}"
    assert case.culprit in message, f"the message does not name {case.culprit!r}:\n{message}"
    assert len(message) < 3000 and "Traceback" not in message
    if case.witness is not None:
        assert not case.witness.exists(), "loading ran code from the hostile file"
    if case.enormous:
        assert seconds < 2.0, f"an enormous size took {seconds:.1f} s to refuse"
        assert _max_rss_bytes() - rss < 256 * 2**20, "an enormous size was allocated before being refused"
    assert seconds < 20.0
    assert snapshot(tmp_path) == before, "files on disk changed"
    _still_loads(valid)


def test_the_code_running_payloads_are_live(tmp_path):
    """Positive controls: each payload used above really runs code when loaded unsafely, so the witness checks of
    the hostile cases can fail."""
    payload = RunsCode(tmp_path / "via_pickle")
    pickle.loads(pickle.dumps({b"data": payload}, protocol=2))
    assert (tmp_path / "via_pickle").exists()
    torch.save({"x": RunsCode(tmp_path / "via_torch")}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert (tmp_path / "via_torch").exists()
    np.save(tmp_path / "evil.npy", np.array([RunsCode(tmp_path / "via_numpy")], dtype=object), allow_pickle=True)
    np.load(tmp_path / "evil.npy", allow_pickle=True)
    assert (tmp_path / "via_numpy").exists()
    witness = tmp_path / "via_yaml"
    yaml.unsafe_load(f"seed: !!python/object/apply:os.system [{json.dumps('touch ' + str(witness))}]\n")
    assert witness.exists()


def test_an_empty_params_file_means_all_defaults(tmp_path):
    """Not hostile: an empty params file is valid and runs every notebook at its defaults (documented)."""
    params = load_params(_params_file(tmp_path, ""))
    assert (params.name, params.shared, params.sections) == ("hostile", {}, {})


# -- the command line --------------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command, content, match", [
    ("validate", b"\x00\xff binary \xfe", r"is not UTF-8 text"),
    ("run", "name: hostile-cli-run\nseed: !!python/object/apply:os.system ['touch {witness}']\n",
     r"is not valid YAML: could not determine a constructor"),
], ids=["validate-binary-file", "run-yaml-that-runs-code"])
def test_cli_refuses_hostile_params_without_a_traceback(tmp_path, command, content, match):
    witness = tmp_path / "PWNED"
    path = _params_file(tmp_path, content.replace("{witness}", str(witness)) if isinstance(content, str) else content)
    before = snapshot(tmp_path)
    result = _cli(command, str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: params file ") and str(path) in result.stderr
    assert re.search(match, result.stderr) and "Traceback" not in result.stderr
    assert not witness.exists()
    assert not (REPO_ROOT / "outputs" / "hostile-cli-run").exists()  # nothing ran, nothing was created
    assert snapshot(tmp_path) == before
