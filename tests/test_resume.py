"""Runs killed at any point: nothing that looks complete is incomplete, and ``--resume`` finishes the job.

Kills are real SIGKILLs of real processes: at named points inside the code (``WORKBENCH_CRASH_AT``, see
:mod:`workbench.system.io`; inside a notebook it kills the kernel), and at moments spread over a run of the command line
(the runner and its kernel killed together). After every kill :func:`assert_nothing_half_written` opens every
visible artifact with the loader that would read it.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from workbench.system import io as wio
from workbench.nets import select
from workbench.training.optimize import train
from workbench.reporting.results import COLUMNS, check_table_schema, find_row
from workbench.run.runner import plan
from workbench.zoo import MANIFEST, META_COLUMNS, Zoo, ZooError

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "params" / "smoke.yaml"
NOTEBOOKS = ["03", "04"]  # the zoo (03) and a metanetwork trained with checkpoints (04)


def _python(code: str, env_extra: dict | None = None, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _workbench_run(outputs: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, WORKBENCH_CRASH_AT=crash or "")
    cmd = [sys.executable, "-m", "workbench", "run", str(SMOKE), "--outputs", str(outputs), "--only", *NOTEBOOKS,
           *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def assert_nothing_half_written(out: Path) -> None:
    """Every visible file under ``out`` is complete: it opens with the loader that reads it."""
    assert out.is_dir()
    for zoo_dir in (out / "zoo").glob("*") if (out / "zoo").is_dir() else []:
        if zoo_dir.name.startswith(".") or not zoo_dir.is_dir():
            continue  # hidden temporaries of an interrupted save; summary files
        assert (zoo_dir / MANIFEST).is_file(), f"{zoo_dir} is visible without its manifest"
        Zoo.load(zoo_dir, verify=True)
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            file = Path(dirpath) / name
            if name.startswith("."):
                if name.endswith(".done.json"):
                    info = json.loads(file.read_text())
                    assert {"digest", "notebook_sha256", "artifacts"} <= set(info), file
                continue
            suffix = file.suffix
            if suffix == ".ipynb":
                nb = nbformat.read(str(file), 4)
                nbformat.validate(nb)
                if not name.endswith(".failed.ipynb"):
                    unexecuted = [c.source[:40] for c in nb.cells if c.cell_type == "code" and c.execution_count is None]
                    assert not unexecuted, f"{file} looks complete but cells never ran: {unexecuted}"
            elif suffix == ".pt":
                ckpt = torch.load(file, map_location="cpu", weights_only=True)
                assert "model" in ckpt and "spec" in ckpt, file
            elif suffix == ".json":
                json.loads(file.read_text())
            elif suffix == ".jsonl":
                for line in file.read_text().splitlines():
                    json.loads(line)
            elif suffix == ".csv":
                assert len(pd.read_csv(file).columns) > 0, file
            elif suffix == ".md":
                text = file.read_text()
                assert text.strip() and text.endswith("\n"), file
            elif suffix == ".html":
                assert file.read_text().rstrip().endswith("</html>"), file
            elif suffix == ".safetensors":
                load_file(str(file))


# -- single writers killed at named points ----------------------------------------------------------------------
def test_atomic_write_killed_before_rename_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.md"
    target.write_text("old table\n")
    code = ("from workbench.system.io import atomic_write_text; "
            f"atomic_write_text({str(target)!r}, 'new table\\n' * 1000)")
    proc = _python(code, {"WORKBENCH_CRASH_AT": "before-rename:results.md"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert target.read_text() == "old table\n"
    leftovers = wio.stale_temps(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".results.md.")  # hidden, never mistaken
    assert wio.clean_stale_temps(tmp_path) == leftovers and wio.stale_temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.md"]
    # negative control: without the crash point the same write lands
    assert _python(code).returncode == 0 and target.read_text() == "new table\n" * 1000


def _small_zoo(seed: int) -> Zoo:
    from workbench.nets import NetSpec, init_params

    spec = NetSpec.mlp((4, 3, 2), "relu")
    params = init_params(spec, 3, torch.Generator().manual_seed(seed))
    meta = pd.DataFrame({c: [0.5] * 3 for c in META_COLUMNS})
    meta["net_id"], meta["epoch"], meta["split"], meta["optimizer"] = range(3), 0, ["train", "val", "test"], "sgd"
    return Zoo(spec, params, meta, "digits")


@pytest.mark.parametrize("point", ["zoo-save:before-manifest", "before-rename:zoo", "between-renames:zoo"])
def test_zoo_save_killed_leaves_the_previous_zoo_or_nothing(tmp_path, point):
    path = tmp_path / "zoo"
    _small_zoo(0).save(path)
    old = Zoo.load(path)
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from test_resume import _small_zoo; "
            f"_small_zoo(1).save({str(path)!r})")
    proc = _python(code, {"WORKBENCH_CRASH_AT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    if point == "between-renames:zoo":  # the old zoo was moved aside, the new one not yet in: nothing loads
        assert visible == []
        with pytest.raises(ZooError, match="not a complete zoo"):
            Zoo.load(path)
    else:
        assert visible == ["zoo"]
        kept = Zoo.load(path, verify=True)
        assert all(torch.equal(a, b) for (a, _), (b, _) in zip(kept.params, old.params))
    wio.clean_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == visible
    _small_zoo(1).save(path)  # and the next save succeeds
    assert Zoo.load(path).params[0][0].shape == old.params[0][0].shape


def test_training_killed_while_writing_a_checkpoint_resumes_exactly(tmp_path):
    from test_optimize import CONFIG, SPEC, state_equal, tiny_data, tiny_zoo

    setup = ("import sys; sys.path.insert(0, {tests!r}); from test_optimize import CONFIG, SPEC, tiny_data, tiny_zoo; "
             "from workbench.nets import select; from workbench.training.optimize import train; zoo = tiny_zoo(); "
             "train(SPEC, select(zoo, slice(0, 16)), select(zoo, slice(16, 24)), tiny_data(), CONFIG, {out!r}, "
             "progress=False)").format(tests=str(ROOT / "tests"), out=str(tmp_path / "run"))
    proc = _python(setup, {"WORKBENCH_CRASH_AT": "before-rename:checkpoint.pt@3"})  # during epoch 2's save
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1  # the last complete checkpoint, intact
    assert_nothing_half_written(tmp_path / "run")

    data, zoo = tiny_data(), tiny_zoo()
    tr, va = select(zoo, slice(0, 16)), select(zoo, slice(16, 24))
    resumed = train(SPEC, tr, va, data, CONFIG, tmp_path / "run", progress=False)
    full = train(SPEC, tr, va, data, CONFIG, tmp_path / "full", progress=False)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    assert state_equal(resumed.model.state_dict(), full.model.state_dict())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(CONFIG.epochs))


def test_training_killed_after_its_last_checkpoint_completes_its_files_on_resume(tmp_path):
    from test_optimize import CONFIG, SPEC, tiny_data, tiny_zoo

    code = ("import sys; sys.path.insert(0, {tests!r}); from test_optimize import CONFIG, SPEC, tiny_data, tiny_zoo; "
            "from workbench.nets import select; from workbench.training.optimize import train; zoo = tiny_zoo(); "
            "train(SPEC, select(zoo, slice(0, 16)), select(zoo, slice(16, 24)), tiny_data(), CONFIG, {out!r}, "
            "progress=False)").format(tests=str(ROOT / "tests"), out=str(tmp_path / "run"))
    # metrics.jsonl is written after the checkpoint: die at its last write
    proc = _python(code, {"WORKBENCH_CRASH_AT": f"before-rename:metrics.jsonl@{CONFIG.epochs}"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == CONFIG.epochs - 1
    zoo = tiny_zoo()
    train(SPEC, select(zoo, slice(0, 16)), select(zoo, slice(16, 24)), tiny_data(), CONFIG, tmp_path / "run",
          progress=False)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == CONFIG.epochs


# -- the notebook runner killed at named points and at arbitrary moments ----------------------------------------
def _states(outputs: Path, only=NOTEBOOKS) -> dict[str, str]:
    return {s.notebook.name[:2]: s.reason for s in plan(SMOKE, only, outputs)}


@pytest.mark.notebooks
def test_runner_killed_at_named_points_then_resumed(tmp_path):
    out = tmp_path / "smoke"
    visible = lambda p: not any(part.startswith(".") for part in p.relative_to(out).parts)  # noqa: E731

    # 1. the kernel dies while notebook 03 saves its first zoo: a clear failure, no zoo that looks complete
    proc = _workbench_run(tmp_path, crash="zoo-save:before-manifest")
    assert proc.returncode == 1, proc.stderr
    assert "03_model_zoo.ipynb failed" in proc.stderr and "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert_nothing_half_written(out)
    assert not [p for p in (out / "zoo").glob("*") if p.is_dir() and visible(p)]
    assert (out / "notebooks" / "03_model_zoo.failed.ipynb").exists()
    assert not (out / "notebooks" / "03_model_zoo.ipynb").exists()
    assert "no completion marker" in _states(tmp_path)["03"]

    # 2. resume runs 03; 04's kernel dies while writing the metanetwork's first checkpoint
    proc = _workbench_run(tmp_path, "--resume", crash="before-rename:checkpoint.pt")
    assert proc.returncode == 1, proc.stderr
    # the half-saved zoo(s) of step 1: notebook 03 generates zoos in 2 processes, and the crash point may hit one or
    # both before the failed pool is torn down
    assert re.search(r"removed [12] temporary file\(s\)", proc.stdout), proc.stdout
    assert "03_model_zoo.ipynb: not complete (it never finished" in proc.stdout
    assert "04_train_meta_optimizer.ipynb failed" in proc.stderr
    assert not (out / "notebooks" / "03_model_zoo.failed.ipynb").exists()
    assert not [p for p in (out / "metanet").rglob("checkpoint.pt") if visible(p)]
    assert [p for p in (out / "metanet").rglob("best.pt") if visible(p)]  # written before the checkpoint
    assert_nothing_half_written(out)
    assert _states(tmp_path)["03"] == ""

    # 3. resume skips 03; the runner dies after 04's notebook is in place but before its completion marker
    proc = _workbench_run(tmp_path, "--resume", crash="before-marker:04_train_meta_optimizer")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "03_model_zoo.ipynb: complete and intact, skipped" in proc.stdout
    assert "running 04_train_meta_optimizer.ipynb" in proc.stdout
    assert (out / "notebooks" / "04_train_meta_optimizer.ipynb").exists()
    assert _states(tmp_path) == {"03": "", "04": "it never finished (no completion marker)"}
    assert_nothing_half_written(out)

    # 4. damage after the fact is noticed: --resume would rerun from the damaged notebook
    zoo_file = next((out / "zoo").glob("*/params.safetensors"))
    zoo_file.write_bytes(zoo_file.read_bytes()[:-16])
    reason = _states(tmp_path)["03"]
    assert "changed or is corrupt" in reason and zoo_file.parent.name in reason
    zoo_file.unlink()
    assert f"its output zoo/{zoo_file.parent.name}/params.safetensors is missing" == _states(tmp_path)["03"]


def _run_and_kill(outputs: Path, delay: float, resume: bool) -> int | None:
    cmd = [sys.executable, "-m", "workbench", "run", str(SMOKE), "--outputs", str(outputs)]
    proc = subprocess.Popen(cmd + (["--resume"] if resume else []), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, WORKBENCH_CRASH_AT=""))
    try:
        return proc.wait(timeout=delay)  # finished before the kill
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel together
        proc.wait()
        return None


def _kill_at_random_moments_then_finish(tmp_path: Path, n_kills: int, seed: int) -> Path:
    """The whole smoke sequence, SIGKILLed ``n_kills`` times at random moments and resumed after each."""
    rng = random.Random(seed)
    out = tmp_path / "smoke"
    for k in range(n_kills):
        _run_and_kill(tmp_path, rng.uniform(3.0, 40.0), resume=k > 0)
        if out.exists():
            assert_nothing_half_written(out)
    assert _run_and_kill(tmp_path, 900, resume=True) == 0
    assert all(reason == "" for reason in _states(tmp_path, None).values()), _states(tmp_path, None)
    assert wio.stale_temps(out) == []
    assert_nothing_half_written(out)
    # the resumed run's zoos are bit for bit those of an uninterrupted generation
    from workbench.pipeline import get_data, get_zoo

    p = yaml.safe_load(SMOKE.read_text())
    data = get_data(p["dataset"], seed=p["seed"])
    for family in p["families"]:
        fresh = get_zoo(tmp_path / "fresh", family, data, n_networks=p["n_networks"], zoo_epochs=p["zoo_epochs"],
                        seed=p["seed"], progress=False, verbose=False)
        kept = Zoo.load(out / "zoo" / family)
        assert all(torch.equal(a, b) and torch.equal(c, d) for (a, c), (b, d) in zip(kept.params, fresh.params))
    return out


def _check_smoke_artifacts(out: Path) -> None:
    params = yaml.safe_load(SMOKE.read_text())
    for nb in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        assert (out / "notebooks" / nb.name).exists(), nb.name
        assert (out / "notebooks" / f".{nb.stem}.done.json").exists(), nb.name
    assert not list((out / "notebooks").glob("*.failed.ipynb"))
    assert not list((out / "notebooks").glob(".*.running.ipynb"))
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_", "07_"):
        names = {p.suffix for p in (out / "figures").glob(prefix + "*")}
        assert {".json", ".html"} <= names, prefix

    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == ["family", *COLUMNS]
    assert sorted(table["family"].unique()) == sorted(params["families"])
    md = (out / "results.md").read_text()
    for family, frame in table.groupby("family"):
        frame = frame.drop(columns="family").reset_index(drop=True)
        check_table_schema(frame)
        labels = list(frame["label"])
        assert labels[:4] == ["Initial", "All-zero network", "ScaleGMN-B", "GMN-B (sym. broken)"]
        sgd = frame[frame["kind"] == "sgd"]
        assert sorted(sgd["epochs"].astype(int)) == sorted(params["sgd_epochs"])
        if family in params["ablation_families"] and "gmn-aug" in params["methods"]:
            assert find_row(frame, kind="one_shot", method="gmn-aug") is not None  # notebook 05's runs reused
        # the one-shot rows are measured for both objectives, with intervals: no invented and no missing numbers
        for method in ("scalegmn", "gmn"):
            row = find_row(frame, kind="one_shot", method=method)
            assert row[["ce_acc", "ce_acc_trained_lo", "l1_acc", "l1_loss", "l1_loss_hi"]].notna().all(), method
        assert frame.iloc[0][["ce_acc", "l1_loss"]].notna().all()
        zero = find_row(frame, kind="reference", method="zero")
        assert zero["l1_reduction"] == 100.0 and zero[["ce_acc", "ce_seconds_per_net"]].isna().all()
        assert f"## {family}" in md

    runs = pd.read_csv(out / "results" / "ablation_runs.csv")
    assert len(runs) == (len(params["ablation_families"]) * len(params["objectives"]) * len(params["methods"])
                         * params["n_seeds"])
    verdicts = pd.read_csv(out / "results" / "verdicts.csv")
    assert set(verdicts["outcome"]) <= {"holds", "fails", "inconclusive"} and verdicts[["lo", "hi"]].notna().any(axis=None)
    assert runs["finite"].all()
    scaling = pd.read_csv(out / "results" / "scaling.csv")
    assert len(scaling) == len(params["scaling_families"]) * len(params["scaling_sizes"]) * len(params["scaling_seeds"])
    sweep = pd.read_csv(out / "results" / "lam_sweep.csv")
    assert sorted(sweep["lam"].unique()) == sorted(params["lam_values"])
    # every finished L1 run started from a finished CE run of its family, symmetry and seed (meta_l1_from_ce)
    l1_runs = sorted((out / "metanet").glob("*/l1-*/result.json"))
    assert l1_runs and params.get("meta_l1_from_ce")
    for done in l1_runs:
        assert json.loads(done.read_text())["config"]["l1_from_ce"] is True
        name = done.parent.name.split("-")  # l1-<symmetry>-s<seed>-<digest>
        ce = list(done.parent.parent.glob(f"ce-{name[1]}-{name[2]}-*/result.json"))
        assert ce, f"no finished CE run beside {done.parent}"


@pytest.mark.notebooks
def test_smoke_sequence_killed_twice_resumes_to_every_artifact_and_a_valid_table(tmp_path):
    _check_smoke_artifacts(_kill_at_random_moments_then_finish(tmp_path, n_kills=2, seed=0))


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("seed", [1, 2])
def test_smoke_sequence_killed_many_times(tmp_path, seed):
    _check_smoke_artifacts(_kill_at_random_moments_then_finish(tmp_path, n_kills=10, seed=seed))
