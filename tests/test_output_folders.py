"""One rule for every command that writes a folder (:func:`workbench.system.paths.check_output_folder`): it writes a new
folder, fills an empty one or replaces one it wrote itself (its manifest, parsing as its own, nothing else
inside); anything else -- someone's files beside an ``optimized.json``/``zoo.json``/``run_info.json``, the
command's own input, a file, a link, a path below a file -- is refused with one error line naming the folder, and
nothing on disk changes. Also: the lock beside an ``--out``, a full disk in the middle of a write, the run's lock
during ``report``, and ``index`` writing only into run folders over its own pages."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from workbench.__main__ import main
from workbench.reporting.index import GENERATOR, INDEX, RunIndexError, write_index
from workbench.system.io import RunLocked, output_lock, run_lock
from workbench.system.paths import OutputFolderError
from workbench.reporting.report import ReportError, render, snapshot
from workbench.run.zoo_commands import optimize_zoo
from workbench.zoo import Zoo

from test_report import _fake_run
from tiny import checkpoint, file_size_limit, listing, make_zoo

ROOT = Path(__file__).resolve().parent.parent
PARAMS = "name: tiny\nseed: 3\ndataset: digits\nn_networks: 4\nzoo_epochs: 1\ndevice: cpu\n"


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "zoo"
    make_zoo(folder)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory, zoo_dir):
    return checkpoint(tmp_path_factory.mktemp("model") / "best.pt", Zoo.load(zoo_dir), scramble=0.5)


def _one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.rsplit("\r", 1)[-1]  # after a progress bar's last redraw
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


# -- optimize --------------------------------------------------------------------------------------------------
def test_optimize_into_the_folder_holding_its_model_deletes_nothing(zoo_dir, model, tmp_path, capsys):
    """D holds best.pt and an optimized.json: `optimize D/best.pt Z --out D` must not replace D (the model is
    inside)."""
    run = tmp_path / "run"
    optimize_zoo(model, zoo_dir, run)  # an earlier output of optimize ...
    shutil.copy(model, run / "best.pt")  # ... into which the user put the model
    before = listing(run)
    assert main(["optimize", str(run / "best.pt"), str(zoo_dir), "--out", str(run)]) == 1
    _one_error_line(capsys, f"--out {run} holds the input model {run / 'best.pt'}")
    assert listing(run) == before


@pytest.mark.parametrize("extra, manifest, fragment", [
    ({"notes.txt": "mine"}, None, "it holds files `optimize` does not write: notes.txt"),
    ({}, {"stale": True}, "its optimized.json is not one `optimize` writes"),
    ({"results.csv": "a,b\n"}, "not json", "does not write: results.csv"),
], ids=["a-user-file-beside-it", "a-foreign-optimized.json", "not-json"])
def test_an_optimized_json_alone_does_not_make_a_folder_replaceable(zoo_dir, model, tmp_path, capsys, extra,
                                                                     manifest, fragment):
    out = tmp_path / "out"
    optimize_zoo(model, zoo_dir, out)
    for name, text in extra.items():
        (out / name).write_text(text)
    if manifest is not None:
        (out / "optimized.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    before = listing(out)
    assert main(["optimize", str(model), str(zoo_dir), "--out", str(out)]) == 1
    _one_error_line(capsys, f"refusing to write into --out {out}: it was not written by `optimize`", fragment)
    assert listing(out) == before


def test_optimize_replaces_its_own_earlier_output(zoo_dir, model, tmp_path):
    out = tmp_path / "out"
    summary = optimize_zoo(model, zoo_dir, out)
    (out / "optimized.json").write_text(json.dumps({**summary, "date": "earlier"}))
    optimize_zoo(model, zoo_dir, out)
    assert json.loads((out / "optimized.json").read_text())["date"] != "earlier"


@pytest.mark.parametrize("case", ["below-a-file", "a-symlink", "a-file", "inside-the-zoo"])
def test_out_paths_that_cannot_be_the_output_folder(zoo_dir, model, tmp_path, capsys, case):
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    out, fragment = {"below-a-file": (tmp_path / "file" / "sub", "lies below"),
                     "a-symlink": (tmp_path / "link", "is a symbolic link"),
                     "a-file": (tmp_path / "file", "is a file, not a folder"),
                     "inside-the-zoo": (zoo_dir / "optimized", "lies inside the input zoo")}[case]
    before, zoo_before = listing(tmp_path), listing(zoo_dir)
    assert main(["optimize", str(model), str(zoo_dir), "--out", str(out)]) == 1
    _one_error_line(capsys, fragment)
    assert listing(tmp_path) == before and listing(zoo_dir) == zoo_before


def test_a_second_optimize_into_the_same_out_fails_at_once(zoo_dir, model, tmp_path, capsys):
    out = tmp_path / "out"
    with output_lock(out, "python -m workbench optimize (the first)"):
        assert main(["optimize", str(model), str(zoo_dir), "--out", str(out)]) == 1
        _one_error_line(capsys, f"{out} is being written by another command (pid {os.getpid()}",
                        "(the first)")
        assert not out.exists()
    assert main(["optimize", str(model), str(zoo_dir), "--out", str(out)]) == 0  # released: the next one runs


def test_a_full_disk_during_optimize_leaves_the_earlier_output_whole(zoo_dir, model, tmp_path, capsys):
    out = tmp_path / "out"
    optimize_zoo(model, zoo_dir, out)
    before = listing(tmp_path)
    with file_size_limit(1000):  # params.safetensors is ~5 KB: its write fails as on a full disk
        assert main(["optimize", str(model), str(zoo_dir), "--out", str(out)]) == 1
    _one_error_line(capsys, f"cannot write {out}: ", "File too large", "nothing was written there")
    assert listing(tmp_path) == before  # no half-written folder, no temporary left beside it


# -- zoo -------------------------------------------------------------------------------------------------------
def test_zoo_json_alone_does_not_make_a_folder_replaceable(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(PARAMS)
    out = tmp_path / "zoo"
    argv = ["zoo", str(tmp_path / "p.yaml"), "--family", "mlp-tanh", "--out", str(out)]
    assert main(argv) == 0
    (out / "keep.txt").write_text("mine")
    before = listing(out)
    assert main(argv) == 1
    _one_error_line(capsys, "it holds files `zoo` does not write: keep.txt")
    assert listing(out) == before
    (out / "keep.txt").unlink()
    assert main(argv) == 0 and len(Zoo.load(out)) == 8  # its own zoo alone is replaced


def test_a_full_disk_during_zoo_changes_nothing(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(PARAMS)
    before = listing(tmp_path)
    with file_size_limit(500):
        assert main(["zoo", str(tmp_path / "p.yaml"), "--family", "mlp-tanh", "--out", str(tmp_path / "z")]) == 1
    _one_error_line(capsys, "cannot write", "nothing was written there")
    after = listing(tmp_path)
    assert after.pop(".z.workbench.lock") == b"" and after == before  # only the (empty) lock beside --out


# -- report --snapshot -------------------------------------------------------------------------------------------
def _scaling(run: Path) -> Path:
    (run / "results" / "scaling.csv").write_text(
        "family,train_networks,seed,steps,gain_trained,gain_all\ncnn-tanh,128,0,512,5.5,4.0\n")
    return run


def test_a_second_snapshot_replaces_the_first_whole(tmp_path):
    dest = tmp_path / "snap"
    snapshot(_scaling(_fake_run(tmp_path / "first")), dest)
    assert "Scaling study" in render(dest)
    snapshot(_fake_run(tmp_path / "second"), dest)  # the second run has no scaling study
    assert not (dest / "scaling.csv").exists() and "Scaling study" not in render(dest)
    assert json.loads((dest / "run_info.json").read_text())["run"] == "second"


@pytest.mark.parametrize("files, fragment", [
    ({"results.csv": "mine\n"}, "it has no run_info.json"),
    ({"notes.md": "mine"}, "does not write: notes.md"),
], ids=["a-same-named-file-of-the-users", "a-file-beside-a-snapshot"])
def test_snapshot_refuses_a_destination_with_someone_elses_files(tmp_path, capsys, files, fragment):
    dest = tmp_path / "dest"
    if "notes.md" in files:
        snapshot(_fake_run(tmp_path / "earlier"), dest)
    dest.mkdir(exist_ok=True)
    for name, text in files.items():
        (dest / name).write_text(text)
    before = listing(dest)
    assert main(["report", str(_fake_run(tmp_path / "run")), "--snapshot", str(dest)]) == 1
    _one_error_line(capsys, f"refusing to write into --snapshot {dest}", fragment)
    assert listing(dest) == before


def test_the_committed_snapshots_are_recognised_by_their_run_info_and_file_names(tmp_path):
    """docs/results/<name>/ are replaceable by a new snapshot (a run_info.json of the report's and only snapshot file
    names); the same folder with one file of someone else's beside them (a figure) is refused."""
    for name in ("default", "study"):
        copy = shutil.copytree(ROOT / "docs" / "results" / name, tmp_path / name)
        snapshot(_fake_run(tmp_path / f"run-{name}"), copy)
        assert json.loads((copy / "run_info.json").read_text())["run"] == f"run-{name}"
    foreign = shutil.copytree(ROOT / "docs" / "results" / "study", tmp_path / "study-with-figure")
    (foreign / "scaling.png").write_bytes(b"\x89PNG")
    before = listing(foreign)
    with pytest.raises(OutputFolderError, match="does not write: scaling.png"):
        snapshot(_fake_run(tmp_path / "run2"), foreign)
    assert listing(foreign) == before


@pytest.mark.parametrize("case", ["a-file", "the-run", "holds-the-run", "inside-the-run"])
def test_snapshot_destinations_that_are_files_or_the_run(tmp_path, capsys, case):
    run = _fake_run(tmp_path / "runs" / "run")
    (tmp_path / "file").write_text("keep me")
    dest, fragment = {"a-file": (tmp_path / "file", "is a file, not a folder"),
                      "the-run": (run, "is the input run folder"),
                      "holds-the-run": (tmp_path / "runs", "holds the input run folder"),
                      "inside-the-run": (run / "snap", "lies inside the input run folder")}[case]
    before = listing(tmp_path)
    assert main(["report", str(run), "--snapshot", str(dest)]) == 1
    _one_error_line(capsys, fragment)
    assert listing(tmp_path) == before


def test_report_refuses_a_run_that_is_still_running(tmp_path):
    run = _fake_run(tmp_path / "run")
    with run_lock(run, "python -m workbench run p.yaml"):
        with pytest.raises(RunLocked, match=r"is in use by another run \(pid \d+ .*run p.yaml\)"):
            snapshot(run, tmp_path / "snap")
    assert not (tmp_path / "snap").exists()
    snapshot(run, tmp_path / "snap")  # the run ended: its lock is free


def test_a_full_disk_during_a_snapshot_leaves_the_earlier_one_whole(tmp_path, capsys):
    dest = tmp_path / "docs" / "snap"
    snapshot(_fake_run(tmp_path / "first"), dest)
    before = listing(tmp_path / "docs")
    second = _fake_run(tmp_path / "second")
    table = pd.read_csv(second / "results.csv")  # a results.csv larger than the limit below
    pd.concat([table] * 100, ignore_index=True).to_csv(second / "results.csv", index=False)
    assert (second / "results.csv").stat().st_size > 8000
    with file_size_limit(8000):
        with pytest.raises(ReportError, match=r"cannot write the snapshot .*File too large.*nothing was changed"):
            snapshot(second, dest)
    assert listing(tmp_path / "docs") == before


# -- index -----------------------------------------------------------------------------------------------------
def test_index_writes_only_into_a_run_folder(tmp_path, capsys):
    """A folder of one's own that happens to have figures/ and notebooks/ gets no index."""
    mine = tmp_path / "mine"
    for sub in ("figures", "notebooks"):
        (mine / sub).mkdir(parents=True)
    (mine / INDEX).write_text("<html>my own page</html>")
    before = listing(mine)
    assert main(["index", str(mine)]) == 1
    _one_error_line(capsys, "does not look like a run folder")
    assert listing(mine) == before


def _run_folder(root: Path) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "params.json").write_text(json.dumps({"source": "p.yaml", "shared": {}, "sections": {}}))
    return root


def test_index_replaces_only_its_own_pages(tmp_path, capsys):
    run = _run_folder(tmp_path / "run")
    (run / INDEX).write_text("<html>someone's index</html>")
    with pytest.raises(RunIndexError, match="was not written by the workbench"):
        write_index(run, convert=False)
    assert (run / INDEX).read_text() == "<html>someone's index</html>"
    (run / INDEX).write_text("<!DOCTYPE html>\n<html><head><title>Run run: results index</title></head></html>")
    assert GENERATOR in write_index(run, convert=False).read_text()  # an index from before the tag: replaced
    assert main(["index", str(run), "--no-html"]) == 0  # its own, with the tag: replaced again


def test_index_leaves_someone_elses_notebook_export_alone(tmp_path):
    pytest.importorskip("nbconvert")
    import nbformat

    run = _run_folder(tmp_path / "run")
    nbformat.write(nbformat.v4.new_notebook(), run / "notebooks" / "01_a.ipynb")
    (run / "notebooks" / "01_a.html").write_text("<html>my own export</html>")
    logs: list[str] = []
    text = write_index(run, log=logs.append).read_text()
    assert (run / "notebooks" / "01_a.html").read_text() == "<html>my own export</html>"
    assert 'href="notebooks/01_a.ipynb"' in text and 'href="notebooks/01_a.html"' not in text
    assert any("01_a.html was not written by the workbench; left alone" in line for line in logs), logs
