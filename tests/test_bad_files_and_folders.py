"""Inputs that are well formed but wrong: values that are well typed but meaningless, files that are not what their
names say (FIFOs, symlinks, archive bombs), two runs in one folder, a user's own files in an output folder, and
state files of an interrupted run. Each gets the workbench's own error naming the problem (a
:class:`~workbench.errors.WorkbenchError`), a rerun with a reason, or is left alone -- never a hang, a raw library
error or a deleted user file. Every test here runs in well under a few seconds.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import stat
import pickle
import re
import resource
import signal
import subprocess
import sys
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import workbench.system.io as wio
from workbench import __main__ as cli
from workbench.data import DataError, Dataset, load_cifar10_gs
from workbench.errors import ConfigError, ParamsError, WorkbenchError
from workbench.forward_pass import forward
from workbench.nets import NetSpec, SpecError, check_params, init_params
from workbench.training.checkpoints import CheckpointError
from workbench.training.train_config import TrainConfig, build_model
from workbench.training.optimize import one_shot, train
from workbench.run.params import load_params
from workbench.run.runner import NotebookFailed, _artifacts, _expected_hashes, notebook_state, run
from workbench.system.paths import REPO_ROOT
from workbench.symmetry import SymmetryError, random_element
from workbench.zoo import Zoo, ZooError, load_small_cnn_zoo

from strategies import write_small_cnn_zoo  # noqa: E402
from test_hostile import _checkpoint, _cifar_batch, _tiny_zoo  # noqa: E402  (the fixtures of the hostile-input tests)

SPEC = NetSpec.mlp((4, 3, 2), "tanh")
TINY = dict(hidden=4, n_layers=1, device="cpu", epochs=1, batch_networks=2, batch_images=8, warmup_steps=1,
            train_eval_networks=0)


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block takes longer than ``seconds``."""
    def _alarm(signum, frame):
        raise TimeoutError(f"took more than {seconds} s (hung?)")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _params(tmp_path: Path, text: str | bytes, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


# -- 1. duplicate keys ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, key, lines", [
    ("seed: 1\nseed: 2\n", "'seed'", (1, 2)),
    ('"04": {meta_epochs: 9}\n"04": {family: mlp-tanh}\n', "'04'", (1, 2)),
    ('"04":\n  meta_epochs: 9\n  lam: 0.1\n  meta_epochs: 3\n', "'meta_epochs'", (2, 4)),
], ids=["top-level", "section", "inside-a-section"])
def test_duplicate_keys_name_the_key_and_both_lines(tmp_path, text, key, lines):
    path = _params(tmp_path, text)
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert str(path) in message and f"key {key} appears twice (lines {lines[0]} and {lines[1]})" in message


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    path = _params(tmp_path, 'base: &b {meta_epochs: 2}\n')  # an unknown key, but parsed without a duplicate error
    with pytest.raises(ParamsError, match="unknown key 'base'"):
        load_params(path)
    merged = _params(tmp_path, '"04":\n  <<: {meta_epochs: 2, lam: 0.1}\n  meta_epochs: 5\n', "m.yaml")
    assert load_params(merged).sections == {"04": {"meta_epochs": 5, "lam": 0.1}}


# -- 2. ranges: params files and TrainConfig -----------------------------------------------------------------------
@pytest.mark.parametrize("text, match", [
    ("n_networks: -5\n", r"n_networks in .* is -5, but must be in \[1, 10,000,000\]"),
    ("n_networks: 1000000000000000000\n", r"n_networks in .* is 1000000000000000000, but must be in \[1,"),
    ("families: []\n", r"families in .* is an empty list"),
    ("families: [mlp-gelu]\n", r"families in .* element 0 is 'mlp-gelu', but must be one of \['mlp-tanh'"),
    ("seed: -1\n", r"seed in .* is -1, but must be in \[0, 4,294,967,295\]"),
    ("meta_batch_networks: 0\n", r"batch_networks in .* is 0, but must be >= 1"),
    ("meta_batch_images: 0\n", r"batch_images in .* is 0, but must be >= 1"),
    ("meta_hidden: 0\n", r"meta_hidden in .* is 0, but must be in \[1,"),
    ("n_seeds: 0\n", r"n_seeds in .* is 0, but must be in \[1,"),
    ("meta_lr: 0\n", r"meta_lr in .* is 0, but must be > 0"),
    ("lam: -0.1\n", r"lam in .* is -0.1, but must be >= 0"),
    ("sgd_epochs: [5, 0]\n", r"sgd_epochs in .* element 1 is 0, but must be in \[1,"),
    ("objectives: [ce, mse]\n", r"objectives in .* element 1 is 'mse', but must be one of \['ce', 'l1'\]"),
    ("device: tpu\n", r"device in .* is 'tpu', but must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"),
    ("device: cuda:banana\n", r"device in .* is 'cuda:banana', but must be 'auto'"),
    ('"04": {family: mlp-gelu}\n', r"04.family in .* is 'mlp-gelu', but must be one of"),
    ("n_networks: 2\n", r"n_networks in .* is 2, but notebook 04_train_meta_optimizer.ipynb trains metanetworks .* "
                        r"n_networks >= 4"),
    ("data_path: 5\n", r"data_path in .* is int 5, but must be a str"),
    ("dataset: cifar10-gs\n", r"dataset in .* is 'cifar10-gs', which notebook 03_model_zoo.ipynb reads from disk: "
                              r"set data_path"),
], ids=lambda v: v.strip()[:32] if isinstance(v, str) and v.endswith("\n") else "")
def test_params_values_out_of_range_are_refused_before_anything_runs(tmp_path, text, match):
    with pytest.raises(ParamsError, match=match):
        load_params(_params(tmp_path, text))


def test_n_networks_is_checked_against_this_machines_memory(tmp_path, monkeypatch):
    import workbench.run.params as wparams

    monkeypatch.setattr(wparams, "physical_memory_bytes", lambda: 2**30)  # a 1 GiB machine
    path = _params(tmp_path, "n_networks: 100000\nfamilies: [mlp-tanh, cnn-relu]\n")
    with pytest.raises(ParamsError, match=r"n_networks in .* is 100,000: generating the cnn-relu zoo of notebook "
                                          r"03_model_zoo.ipynb needs about [\d.]+ GiB .* more than this machine's "
                                          r"1.0 GiB of memory"):
        load_params(path)
    assert load_params(_params(tmp_path, "n_networks: 512\n", "ok.yaml")).shared == {"n_networks": 512}


def test_only_the_selected_notebooks_get_the_combined_checks(tmp_path):
    path = _params(tmp_path, "n_networks: 2\n")
    nb01 = REPO_ROOT / "notebooks" / "01_weight_space_graphs.ipynb"
    assert load_params(path, selected=[nb01]).shared == {"n_networks": 2}  # `run --only 01` draws 2 graphs


def test_shipped_params_files_are_in_range():
    for path in sorted((REPO_ROOT / "params").glob("*.yaml")):
        load_params(path)


@pytest.mark.parametrize("settings, match", [
    (dict(batch_networks=-2), r"TrainConfig.batch_networks is -2, but must be >= 1"),
    (dict(epochs=0), r"TrainConfig.epochs is 0, but must be in \[1, 1,000,000\]"),
    (dict(epochs=2.5), r"TrainConfig.epochs is float 2.5, but must be an int"),
    (dict(batch_images=0), r"TrainConfig.batch_images is 0"),
    (dict(lr=0.0), r"TrainConfig.lr is 0.0, but must be > 0"),
    (dict(lr=float("nan")), r"TrainConfig.lr is nan, but must be a finite number"),
    (dict(weight_decay=-1e-3), r"TrainConfig.weight_decay is -0.001, but must be >= 0"),
    (dict(dropout=1.0), r"MetanetConfig.dropout is 1.0, but must be in \[0, 1\)"),
    (dict(dropout=-0.1), r"MetanetConfig.dropout is -0.1"),
    (dict(hidden=0), r"MetanetConfig.hidden is 0"),
    (dict(n_layers=0), r"MetanetConfig.n_layers is 0"),
    (dict(grad_clip=0), r"TrainConfig.grad_clip is 0, but must be > 0"),
    (dict(seed=-1), r"TrainConfig.seed is -1"),
    (dict(symmetry="rotation"), r"MetanetConfig.symmetry is 'rotation', but must be one of \[None, 'scale'"),
    (dict(device="tpu"), r"TrainConfig.device is 'tpu'"),
    (dict(val_images=0), r"TrainConfig.val_images is 0"),
    (dict(lam=-1.0), r"TrainConfig.lam is -1.0, but must be >= 0"),
    (dict(amp="yes"), r"TrainConfig.amp is str 'yes', but must be a bool"),
])
def test_train_config_ranges(settings, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(settings)  # the flat form: metanet fields go to TrainConfig.meta (a MetanetConfig)


def test_train_config_accepts_its_defaults_and_optional_nones():
    config = TrainConfig.from_dict(dict(symmetry=None, val_images=None, val_networks=None, patience=None, lr=1, lam=0))
    assert TrainConfig.from_dict(config.to_dict()) == config


# -- 3. FIFOs and symlinks in a run folder -----------------------------------------------------------------------
def test_hashing_run_outputs_skips_fifos_and_symlinks_and_never_blocks(tmp_path):
    out = tmp_path / "run"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "a.json").write_text("{}")
    os.mkfifo(out / "figures" / "x.pipe")
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as fh:  # sparse: 8 GiB that take no disk and would take a minute to hash
        fh.truncate(8 * 2**30)
    (out / "link-to-huge.bin").symlink_to(huge)
    (out / "linked-folder").symlink_to(tmp_path, target_is_directory=True)
    t0 = time.perf_counter()
    with deadline(10):
        found = _artifacts(out)
    assert set(found) == {"figures/a.json"} and time.perf_counter() - t0 < 2
    with deadline(10), pytest.raises(wio.NotARegularFile, match="not a regular file"):
        wio.sha256_file(out / "figures" / "x.pipe")


def test_a_recorded_output_replaced_by_a_fifo_means_rerun_not_hang(tmp_path):
    out, nb = tmp_path / "run", Path("01_x.ipynb")
    (out / "notebooks").mkdir(parents=True)
    (out / "notebooks" / nb.name).write_text("{}")
    os.mkfifo(out / "zoo.bin")
    marker = {"version": 2, "digest": "d", "notebook_sha256": wio.sha256_file(out / "notebooks" / nb.name),
              "artifacts": {"zoo.bin": "0" * 64}}
    (out / "notebooks" / ".01_x.done.json").write_text(json.dumps(marker))
    with deadline(10):
        state = notebook_state(out, nb, "d")
    assert not state.complete and "its output zoo.bin is missing" in state.reason


# -- 4. only the workbench's own temporaries are cleaned up -------------------------------------------------------
def test_clean_up_leaves_user_files_named_like_temporaries(tmp_path):
    out = tmp_path / "run"
    (out / ".y.old-42").mkdir(parents=True)
    (out / ".y.old-42" / "thesis.tex").write_text("user data")
    (out / ".x.tmp").write_text("user data")
    (out / "figures").mkdir()
    (out / "figures" / ".fig.json.abc.tmp").write_text("user data")
    ours = [out / ".results.md.workbench-a1b2c3d4.tmp", out / "figures" / ".zoo.workbench-old-1234"]
    ours[0].write_text("half written")
    ours[1].mkdir()
    (ours[1] / "params.safetensors").write_text("old zoo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".keep.workbench-zzzzzzzz.tmp").write_text("not under the run folder")
    (out / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert sorted(wio.clean_stale_temps(out)) == sorted(ours)
    assert (out / ".y.old-42" / "thesis.tex").read_text() == "user data"
    assert (out / ".x.tmp").exists() and (out / "figures" / ".fig.json.abc.tmp").exists()
    assert (elsewhere / ".keep.workbench-zzzzzzzz.tmp").exists()  # symlinked folders are not entered
    assert not any(p.exists() for p in ours)


def test_atomic_writes_use_names_the_clean_up_recognises(tmp_path, monkeypatch):
    moves = []
    real_replace = os.replace

    def spy(src, dst):
        moves.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(wio.os, "replace", spy)
    wio.atomic_write_text(tmp_path / "a.txt", "x")
    with wio.atomic_path(tmp_path / "d") as target:
        target.mkdir()
    with wio.atomic_path(tmp_path / "d") as target:  # replaces the folder: moves the old one aside first
        target.mkdir()
    temporaries = {p for move in moves for p in move} - {tmp_path / "a.txt", tmp_path / "d"}
    assert len(moves) == 4 and temporaries
    for path in temporaries:  # a temporary itself, or the target's name inside a temporary folder
        assert wio.STALE_TEMP.match(path.name) or wio.STALE_TEMP.match(path.parent.name), path
    assert any(p.name.startswith(".d.workbench-old-") for p in temporaries)


# -- 5. one run per output folder ---------------------------------------------------------------------------------
_HOLD = ("import sys, time; from workbench.system.io import run_lock\n"
         "with run_lock(sys.argv[1], 'python -m workbench run other.yaml'):\n"
         "    print('locked', flush=True); time.sleep(60)\n")


def _hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_into_a_busy_folder_fails_at_once_naming_the_other(tmp_path):
    folder = tmp_path / "outputs" / "same"
    (folder / "notebooks").mkdir(parents=True)
    holder = _hold_lock(folder)
    try:
        params = _params(tmp_path, "name: same\n")
        t0 = time.perf_counter()
        with pytest.raises(wio.RunLocked) as info:
            run(params, only=["01"], outputs=tmp_path / "outputs", log=lambda line: None)
        assert time.perf_counter() - t0 < 10
        message = str(info.value)
        assert f"{folder} is in use by another run (pid {holder.pid} on host" in message
        assert "python -m workbench run other.yaml" in message
        assert not (folder / "params.json").exists()  # the second run wrote nothing
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = _hold_lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with wio.run_lock(tmp_path, "next run") as stale:  # the kernel dropped the lock with its holder
        assert stale is not None and f"pid {holder.pid}" in stale  # ... and the leftover record is reported
        with pytest.raises(wio.RunLocked, match=r"pid \d+ on host .*: next run"):
            with wio.run_lock(tmp_path, "third"):
                pass
    with wio.run_lock(tmp_path) as stale:  # released on exit, record removed
        assert stale is None


# -- 6. zoo folders: symlinks ----------------------------------------------------------------------------------------
def test_zoo_file_symlinked_to_another_zoo_is_refused(tmp_path):
    _tiny_zoo().save(tmp_path / "a")
    _tiny_zoo(4).save(tmp_path / "b")
    target = tmp_path / "a" / "params.safetensors"
    target.unlink()
    target.symlink_to(tmp_path / "b" / "params.safetensors")
    manifest = json.loads((tmp_path / "a" / "zoo.json").read_text())
    manifest["files"]["params.safetensors"] = wio.sha256_file(tmp_path / "b" / "params.safetensors")
    (tmp_path / "a" / "zoo.json").write_text(json.dumps(manifest))
    with pytest.raises(ZooError, match=rf"{target} is a symbolic link \(to .*b/params.safetensors\)"):
        Zoo.load(tmp_path / "a")


def test_zoo_save_onto_a_symlinked_folder_is_refused_and_changes_nothing(tmp_path):
    _tiny_zoo().save(tmp_path / "real")
    before = wio.sha256_file(tmp_path / "real" / "params.safetensors")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(ZooError, match=r"refusing to save a zoo onto .*link: it is a symbolic link"):
        _tiny_zoo(4).save(tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and wio.sha256_file(tmp_path / "real" / "params.safetensors") == before


def test_zoo_save_under_a_file_is_a_zoo_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ZooError, match=r"cannot save a zoo to .*a-file/zoo: its folder .*a-file cannot be created"):
        _tiny_zoo().save(tmp_path / "a-file" / "zoo")


def test_zoo_split_values_must_be_known(tmp_path):
    zoo = _tiny_zoo()
    meta = zoo.meta.copy()
    meta.loc[0, "split"] = "TRAIN"
    with pytest.raises(ZooError, match=r"meta column 'split' holds \['TRAIN'\]; every entry must be one of"):
        Zoo(zoo.spec, zoo.params, meta, zoo.dataset)
    zoo.save(tmp_path / "z")
    text = (tmp_path / "z" / "meta.csv").read_text().replace(",test,", ",TEST,")
    (tmp_path / "z" / "meta.csv").write_text(text)
    with pytest.raises(ZooError, match=r"'TEST'"):
        Zoo.load(tmp_path / "z", verify=False)


# -- 7. Small CNN Zoo accuracies -----------------------------------------------------------------------------------
def _rewrite_metrics(folder: Path, edit) -> None:
    with gzip.open(folder / "metrics.csv.gz", "rt") as fh:
        metrics = pd.read_csv(fh)
    edit(metrics)
    with gzip.open(folder / "metrics.csv.gz", "wt") as fh:
        metrics.to_csv(fh, index=False)


def test_small_cnn_zoo_accuracy_outside_0_1_names_the_rows(tmp_path):
    write_small_cnn_zoo(tmp_path, n_networks=6, steps=(86,))
    _rewrite_metrics(tmp_path, lambda m: m.__setitem__("test_accuracy", [0.3, 1e9, 0.2, -0.5, 0.4, 0.1]))
    with pytest.raises(ZooError, match=r"column 'test_accuracy' must hold accuracies in \[0, 1\]; 2 rows do not "
                                       r"\(row 1: 1e\+09, row 3: -0.5\)"):
        load_small_cnn_zoo(tmp_path, activation="tanh")


def test_small_cnn_zoo_nan_accuracy_rows_are_dropped_and_counted(tmp_path):
    write_small_cnn_zoo(tmp_path, n_networks=6, steps=(86,))  # rows 0, 2, 4 are tanh
    _rewrite_metrics(tmp_path, lambda m: m.__setitem__("test_accuracy", [np.nan, 0.5, 0.2, 0.5, 0.4, 0.1]))
    zoo = load_small_cnn_zoo(tmp_path, activation="tanh")
    assert len(zoo) == 2 and zoo.info["dropped_nan_accuracy"] == 1
    assert zoo.meta["test_acc"].notna().all()
    assert all(np.isfinite(v) for v in zoo.summary()["final_test_acc"].values())


# -- 8. CIFAR-10 archives are checked from the tar headers -------------------------------------------------------------
def _cifar_tar(path: Path, extra: tarfile.TarInfo | None = None, extra_data=None, skip: str | None = None) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
            if name == skip:
                continue
            raw = pickle.dumps(_cifar_batch(10, i), protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        if extra is not None:
            tar.addfile(extra, extra_data)
    return path


class _Zeros(io.RawIOBase):
    """``n`` zero bytes, produced on demand (the archive holds a huge but highly compressible member)."""

    def __init__(self, n):
        self.left = n

    def readinto(self, buf):
        k = min(len(buf), self.left)
        buf[:k] = bytes(k)
        self.left -= k
        return k

    def readable(self):
        return True


def test_cifar_archive_bomb_is_refused_from_its_header(tmp_path):
    size = 64 * 2**20
    bomb = tarfile.TarInfo("cifar-10-batches-py/data_batch_3")
    bomb.size = size
    path = _cifar_tar(tmp_path / "cifar.tar.gz", bomb, io.BufferedReader(_Zeros(size)), skip="data_batch_3")
    assert path.stat().st_size < 2**20  # a small file ...
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with pytest.raises(DataError, match=r"member 'cifar-10-batches-py/data_batch_3' declares 67,108,864 bytes"):
        load_cifar10_gs(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss < 32 * 2**20  # ... never inflated


@pytest.mark.parametrize("name, kind, match", [
    ("../test_batch", tarfile.REGTYPE, r"is not at test_batch or cifar-10-batches-py/test_batch"),
    ("cifar-10-batches-py/test_batch", tarfile.SYMTYPE, r"is not a regular file"),
    ("elsewhere/test_batch", tarfile.REGTYPE, r"is not at test_batch"),
])
def test_cifar_archive_members_must_be_plain_batches(tmp_path, name, kind, match):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
    path = _cifar_tar(tmp_path / "c.tar.gz", member, io.BytesIO(b""), skip="test_batch")
    with pytest.raises(DataError, match=match):
        load_cifar10_gs(path)


def test_a_valid_cifar_archive_still_loads(tmp_path):
    assert len(load_cifar10_gs(_cifar_tar(tmp_path / "ok.tar.gz")).y_test) == 10


# -- one base class, and the command line -------------------------------------------------------------------------------
def test_every_workbench_error_shares_the_base_and_keeps_its_builtin_base():
    from workbench.reporting.results import TableSchemaError

    for error, builtin in [(ParamsError, ValueError), (ZooError, ValueError), (CheckpointError, ValueError),
                           (DataError, ValueError), (SpecError, ValueError), (SymmetryError, ValueError),
                           (TableSchemaError, ValueError), (ConfigError, ValueError), (NotebookFailed, RuntimeError),
                           (wio.RunLocked, RuntimeError), (wio.RunFolderError, RuntimeError)]:
        assert issubclass(error, WorkbenchError) and issubclass(error, builtin), error


@pytest.mark.parametrize("argv, code, match", [
    (["validate", "{dir}/nul.yaml"], 2, r"error: 'name' in .*nul.yaml must be a plain folder name .*'a\\x00b'"),
    (["validate", "{dir}/long.yaml"], 2, r"error: 'name' in .*long.yaml is 300 bytes long"),
    (["run", "{dir}/ok.yaml", "--outputs", "{dir}/a-file"], 1, r"error: cannot create the output folder .*a-file/ok"),
    (["train", "{dir}/ok.yaml", "--family", "mlp-gelu"], 2, r"error: --family is 'mlp-gelu', but must be one of"),
    (["train", "{dir}/ok.yaml", "--family", "mlp-tanh", "--symmetry", "rotation"], 2,
     r"error: argument --symmetry: invalid choice: 'rotation'"),
    (["validate", "{dir}/big.yaml"], 2, r"error: params file .*big.yaml is 2,000,000 bytes; .* limited to 1,000,000"),
    (["validate", "{dir}/section.yaml"], 2, r"error: section 4 in .* quote it: \"04\":"),
], ids=["nul-name", "300-char-name", "outputs-is-a-file", "unknown-family", "unknown-symmetry", "2-MB-file",
        "unquoted-section"])
def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys, argv, code, match):
    _params(tmp_path, 'name: "a\\0b"\n', "nul.yaml")
    _params(tmp_path, f"name: {'x' * 300}\n", "long.yaml")
    _params(tmp_path, "seed: 0\n", "ok.yaml")
    _params(tmp_path, "# " + "x" * (2_000_000 - 3) + "\n", "big.yaml")
    _params(tmp_path, "04:\n  meta_epochs: 2\n", "section.yaml")
    (tmp_path / "a-file").write_text("not a folder")
    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    t0 = time.perf_counter()
    try:
        returned = cli.main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        returned = exit_.code
    err = capsys.readouterr().err
    assert returned == code and re.search(match, err, flags=re.S), err
    assert err.startswith("error: ") and "Traceback" not in err
    assert time.perf_counter() - t0 < 10


def test_cli_debug_shows_the_traceback(tmp_path):
    path = _params(tmp_path, "seed: -1\n")
    with pytest.raises(ParamsError, match="seed in"):
        cli.main(["--debug", "validate", str(path)])
    with pytest.raises(ParamsError):
        cli.main(["validate", str(path), "--debug"])


def test_cli_in_a_fresh_process_prints_one_line(tmp_path):
    path = _params(tmp_path, "seed: 1\nseed: 2\n")
    result = subprocess.run([sys.executable, "-m", "workbench", "validate", str(path)], capture_output=True,
                            text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "key 'seed' appears twice (lines 1 and 2)" in result.stderr


def test_params_file_size_is_capped_before_parsing(tmp_path):
    path = _params(tmp_path, "seed: [" + "1, " * 600_000 + "1]\n")
    t0 = time.perf_counter()
    with pytest.raises(ParamsError, match=r"is 1,800,0\d\d bytes; params files hold settings"):
        load_params(path)
    assert time.perf_counter() - t0 < 1.0


# -- run state of an interrupted or damaged run --------------------------------------------------------------------------
def _data(n: int = 16) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 2, 2, generator=g)
    y = torch.arange(n) % 2
    return Dataset("tiny", x, y, x, y, x, y)


def test_training_resume_checks_checkpoint_pt_like_load_model(tmp_path):
    params = init_params(SPEC, 6, torch.Generator().manual_seed(0))
    train_p, val_p = [(w[:4], b[:4]) for w, b in params], [(w[4:], b[4:]) for w, b in params]
    config = TrainConfig.from_dict(TINY)
    cases = {
        "foreign": lambda p: torch.save({"weights": torch.zeros(3)}, p),
        "truncated": lambda p: p.write_bytes(b"PK\x03\x04 truncated"),
        "other-architecture": lambda p: torch.save(_checkpoint(NetSpec.mlp((4, 5, 2), "tanh"), config), p),
        "no-resume-fields": lambda p: torch.save(_checkpoint(SPEC, config), p),
    }
    for name, write in cases.items():
        out = tmp_path / name
        out.mkdir()
        write(out / "checkpoint.pt")
        with pytest.raises(CheckpointError, match=r"checkpoint.pt"):
            train(SPEC, train_p, val_p, _data(), config, out, progress=False)


def test_truncated_result_json_resumes_the_run_with_a_reason(tmp_path, caplog):
    from workbench.pipeline import train_metanet

    params = init_params(SPEC, 8, torch.Generator().manual_seed(0))
    meta = pd.DataFrame({"net_id": range(8), "epoch": 0, "split": ["train"] * 4 + ["val"] * 2 + ["test"] * 2})
    for col in ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "lr", "init_scale", "l2",
                "dropout", "train_fraction", "batch_size"):
        meta[col] = 0.5
    meta["optimizer"] = "sgd"
    zoo = Zoo(SPEC, params, meta, "tiny")
    from recipes import tiny_recipe

    settings = {k: v for k, v in TINY.items() if k in ("batch_networks", "batch_images", "device")}
    recipe = tiny_recipe(epochs=1, hidden=4, n_layers=1, **settings)
    first = train_metanet(tmp_path, zoo, _data(), recipe, progress=False)
    result = first.out_dir / "result.json"
    result.write_text(result.read_text()[:20])
    assert wio.run_result_problem(first.out_dir).startswith("JSONDecodeError")
    with caplog.at_level("WARNING"):
        again = train_metanet(tmp_path, zoo, _data(), recipe, progress=False)
    assert "do not read back" in caplog.text and again.best_epoch == first.best_epoch
    assert wio.run_result_problem(first.out_dir) is None  # rewritten


@pytest.mark.parametrize("artifacts", [["zoo/a.bin"], "zoo/a.bin", 5, {"zoo/a.bin": 5}])
def test_a_marker_with_malformed_artifacts_means_rerun(tmp_path, artifacts):
    out, nb = tmp_path / "run", Path("01_x.ipynb")
    (out / "notebooks").mkdir(parents=True)
    (out / "notebooks" / nb.name).write_text("{}")
    marker = {"version": 2, "digest": "d", "notebook_sha256": wio.sha256_file(out / "notebooks" / nb.name),
              "artifacts": artifacts}
    (out / "notebooks" / ".01_x.done.json").write_text(json.dumps(marker))
    assert _expected_hashes(out, [nb]) == {}
    state = notebook_state(out, nb, "d")
    assert not state.complete and "is malformed ('artifacts' is not a map" in state.reason


# -- zoo / API edges ----------------------------------------------------------------------------------------------------
def test_one_shot_and_training_with_no_networks_are_clear_errors():
    model = build_model(SPEC, TrainConfig.from_dict(TINY))
    empty = init_params(SPEC, 0)
    with pytest.raises(SpecError, match="one-shot optimization got 0 networks"):
        one_shot(model, SPEC, empty)
    some = init_params(SPEC, 3)
    with pytest.raises(SpecError, match="at least one training and one validation network; got 3 and 0"):
        train(SPEC, some, empty, _data(), TrainConfig.from_dict(TINY), progress=False)
    with pytest.raises(SpecError, match="got 0 and 3"):
        train(SPEC, empty, some, _data(), TrainConfig.from_dict(TINY), progress=False)


def test_cnn_kernel_larger_than_its_input_without_image_size():
    spec = NetSpec.cnn(1, (2,), 3, kernel_size=5)
    params = init_params(spec, 2)
    with pytest.raises(SpecError):
        forward(spec, params, torch.randn(4, 1, 3, 3))


def test_parameters_on_the_meta_device_are_refused():
    params = [(w.to("meta"), b.to("meta")) for w, b in init_params(SPEC, 2)]
    with pytest.raises(SpecError, match="layer 0 weight is on the meta device"):
        check_params(SPEC, params)


def test_random_element_with_a_negative_batch_size():
    with pytest.raises(SymmetryError, match="batch_size must be a non-negative integer, got -1"):
        random_element(SPEC, -1, "perm")
    assert random_element(SPEC, 0, "perm").perms[0].shape == (0, 3)



def test_written_files_and_folders_get_default_modes(tmp_path):
    """Results, figures and zoos are readable like the notebooks beside them, not private 0600/0700 temporaries."""
    from workbench.system.io import atomic_path, atomic_write_text

    old = os.umask(0o022)
    try:
        f = atomic_write_text(tmp_path / "results.md", "x")
        with atomic_path(tmp_path / "zoo") as d:
            d.mkdir()
            (d / "a.txt").write_text("y")
        with atomic_path(tmp_path / "ckpt.pt") as t:
            t.write_bytes(b"z")
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "zoo").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "ckpt.pt").stat().st_mode) == 0o644
