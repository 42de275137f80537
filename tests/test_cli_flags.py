"""The command line's own inputs get the checks params files get: flags (``--seed``, ``--device``, ``--family``,
``--batch-size``, ``--symmetry`` against ``--family``) are refused before any work, with one ``error: ...`` line and
exit code 2; ``WORKBENCH_*`` variables are parsed in one place (``WORKBENCH_THREADS=0``, documented, works in worker
processes; a non-number is an error line, never a crash at import); Ctrl-C ends with one line saying what to do."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import workbench.__main__ as cli
from workbench.errors import UsageError
from workbench.system.parallel import default_workers, run_parallel

from parallel_jobs import slow_first
from tiny import checkpoint, make_zoo

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS = "name: cli-flags-test\nseed: 3\ndataset: digits\nn_networks: 4\nzoo_epochs: 1\ndevice: cpu\n"


def _one_error_line(capsys, fragment: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def zoo_and_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    zoo = make_zoo(folder / "zoo")
    return folder / "zoo", checkpoint(folder / "best.pt", zoo)


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**70)])
def test_zoo_seed_out_of_range_is_refused_before_the_zoo_is_generated(tmp_path, capsys, seed):
    (tmp_path / "p.yaml").write_text(PARAMS)
    t0 = time.perf_counter()
    assert cli.main(["zoo", str(tmp_path / "p.yaml"), "--family", "mlp-tanh", "--seed", seed,
                     "--out", str(tmp_path / "z")]) == 2
    _one_error_line(capsys, f"error: --seed is {seed}, but must be in [0, 4,294,967,295]" if int(seed) < 2**63
                    else "error: --seed is the integer")
    assert not (tmp_path / "z").exists() and time.perf_counter() - t0 < 5  # nothing generated


@pytest.mark.parametrize("argv, code, fragment", [
    (["--device", "meta"], 2, "error: --device is 'meta', but must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"),
    (["--device", "tpu:0"], 2, "error: --device is 'tpu:0', but must be"),
    (["--batch-size", "0"], 2, "error: --batch-size is 0, but must be >= 1"),
    (["--device", "cuda:7"], 1, "error: --device"),
], ids=["meta", "tpu", "batch-size-0", "absent-cuda-device"])
def test_optimize_flags_are_checked_before_any_work(zoo_and_model, tmp_path, capsys, argv, code, fragment):
    if argv[-1] == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    zoo, model = zoo_and_model
    assert cli.main(["optimize", str(model), str(zoo), "--out", str(tmp_path / "o"), *argv]) == code
    _one_error_line(capsys, fragment)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
def test_an_absent_mps_device_is_named_not_blamed_on_the_checkpoint(zoo_and_model, tmp_path, capsys):
    zoo, model = zoo_and_model
    assert cli.main(["optimize", str(model), str(zoo), "--out", str(tmp_path / "o"), "--device", "mps"]) == 1
    err = _one_error_line(capsys, "--device is 'mps', but this machine has no MPS device")
    assert "corrupt" not in err and "checkpoint" not in err


@pytest.mark.parametrize("family, symmetry", [("mlp-relu", "sign"), ("cnn-tanh", "scale")])
def test_train_refuses_a_symmetry_that_does_not_suit_the_family_before_generating_the_zoo(tmp_path, capsys, family,
                                                                                          symmetry):
    (tmp_path / "p.yaml").write_text(PARAMS)
    assert cli.main(["train", str(tmp_path / "p.yaml"), "--family", family, "--symmetry", symmetry]) == 2
    _one_error_line(capsys, f"error: --symmetry {symmetry} does not suit --family {family}")
    assert not (REPO_ROOT / "outputs" / "cli-flags-test").exists()  # no run folder, no zoo


def test_the_symmetry_check_passes_what_suits():
    for family, symmetry in [("mlp-tanh", "sign"), ("cnn-relu", "scale"), ("mlp-relu", "none"), ("cnn-tanh", None)]:
        cli._check_symmetry_flag(family, symmetry)  # no error


# -- WORKBENCH_* -------------------------------------------------------------------------------------------------
def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_a_non_integer_workbench_threads_is_an_error_line_not_a_crash_at_import(tmp_path):
    (tmp_path / "p.yaml").write_text(PARAMS)
    helped = _cli("--help", env={"WORKBENCH_THREADS": "two"})
    assert helped.returncode == 0 and "usage:" in helped.stdout and helped.stderr == ""
    result = _cli("validate", str(tmp_path / "p.yaml"), env={"WORKBENCH_THREADS": "two"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: environment variable WORKBENCH_THREADS is 'two', but must be an integer")


@pytest.mark.parametrize("variable, value, fragment", [
    ("WORKBENCH_THREADS", "-1", "WORKBENCH_THREADS is '-1', but must be an integer in [0, 4096]"),
    ("WORKBENCH_WORKERS", "0", "WORKBENCH_WORKERS is '0', but must be an integer in [1, 4096]"),
    ("WORKBENCH_WORKERS", "many", "WORKBENCH_WORKERS is 'many'"),
    ("WORKBENCH_DEBUG", "maybe", "WORKBENCH_DEBUG is 'maybe', but must be 1 or 0"),
])
def test_bad_workbench_variables_are_refused_by_every_command(tmp_path, capsys, monkeypatch, variable, value,
                                                               fragment):
    (tmp_path / "p.yaml").write_text(PARAMS)
    monkeypatch.setenv(variable, value)
    assert cli.main(["validate", str(tmp_path / "p.yaml")]) == 2
    _one_error_line(capsys, fragment)


def test_workers_variable_is_parsed_where_the_workers_are_counted(monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("WORKBENCH_WORKERS", "x")
    with pytest.raises(UsageError, match="WORKBENCH_WORKERS"):
        default_workers()


def test_workbench_threads_0_leaves_torchs_default_in_worker_processes(monkeypatch):
    """Documented as "leave torch's own default", which torch.set_num_threads(0) would not: it crashes the worker."""
    monkeypatch.setenv("WORKBENCH_THREADS", "0")
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], text=True,
                           capture_output=True, timeout=120, check=True)
    results = run_parallel(slow_first, [0, 1], workers=2, progress=False)  # two worker processes
    assert [job for job, _, _ in results] == [0, 1] and all(pid != os.getpid() for _, pid, _ in results)
    assert {threads for _, _, threads in results} == {int(fresh.stdout)}


# -- Ctrl-C ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["run", "p.yaml", "--only", "01", "03"], "Rerun with --resume to go on from the first one that did not: "
                                              "python -m workbench run p.yaml --only 01 03 --resume"),
    (["train", "p.yaml", "--family", "mlp-tanh"], "rerun the same command to resume training from the run's last "
                                                   "checkpoint.pt"),
    (["optimize", "m.pt", "z", "--out", "o"], "nothing was half-written"),
])
def test_ctrl_c_ends_with_one_line_saying_what_to_do(monkeypatch, capsys, argv, fragment):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_command", interrupted)
    assert cli.main(argv) == 130
    err = _one_error_line(capsys, fragment)
    assert err.startswith("error: interrupted (Ctrl-C); ")


def test_ctrl_c_closes_an_open_progress_bar_before_its_line(monkeypatch, capsys):
    from tqdm import tqdm

    def interrupted(args):
        bar = tqdm(total=10, desc="4 x mlp-tanh")  # left open, as a bar in the middle of a zoo's generation
        bar.update(3)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_command", interrupted)
    assert cli.main(["zoo", "p.yaml", "--family", "mlp-tanh", "--out", "z"]) == 130
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1].startswith("error: interrupted (Ctrl-C); nothing was half-written") and err.endswith("\n")
    assert "\nerror: " in err and err.count("error:") == 1  # on a line of its own, after the closed bar


@pytest.mark.slow
def test_ctrl_c_during_zoo_generation_prints_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "p.yaml").write_text(PARAMS.replace("zoo_epochs: 1", "zoo_epochs: 5000"))  # minutes of training
    process = subprocess.Popen([sys.executable, "-m", "workbench", "zoo", str(tmp_path / "p.yaml"), "--family",
                                "mlp-tanh", "--out", str(tmp_path / "z")], cwd=REPO_ROOT, stderr=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: process.stderr.read(1), "")), daemon=True)
    reader.start()
    t0 = time.perf_counter()
    while "mlp-tanh" not in "".join(err) and time.perf_counter() - t0 < 120:  # the generation's progress bar
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    reader.join(timeout=10)
    text = "".join(err)
    lines = [line for line in text.splitlines() if line.strip()]  # the closed progress bar, then the error line
    assert lines[-1].startswith("error: interrupted (Ctrl-C); nothing was half-written"), text
    assert text.count("error:") == 1 and text.endswith("\n") and "Traceback" not in text
    assert not (tmp_path / "z").exists() and not [p for p in tmp_path.iterdir() if ".workbench-" in p.name
                                                  and p.name.endswith(".tmp")]


@pytest.mark.slow
def test_ctrl_c_during_a_notebook_run_prints_the_resume_command_and_no_traceback(tmp_path):
    """A real SIGINT while notebook 01 runs (the kernel lives in its own session, as under a terminal's Ctrl-C)."""
    process = subprocess.Popen([sys.executable, "-m", "workbench", "run", "params/smoke.yaml", "--only", "01",
                                "--outputs", str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(lambda: process.stdout.read(1), "")), daemon=True)
    reader.start()
    t0 = time.perf_counter()
    while "running 01" not in "".join(out) and time.perf_counter() - t0 < 120:
        time.sleep(0.1)
    time.sleep(3)  # the kernel is up and executing
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    err = process.stderr.read()
    assert "Traceback" not in err, err
    assert err.splitlines()[-1] == ("error: interrupted (Ctrl-C); the notebooks that finished are intact. Rerun with "
                                    "--resume to go on from the first one that did not: python -m workbench run "
                                    f"params/smoke.yaml --only 01 --outputs {tmp_path} --resume")
