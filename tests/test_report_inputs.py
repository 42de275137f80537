"""What ``report`` and ``index`` read, as a hostile user could leave it: a missing, empty or rowless ``results.csv``,
a README that is CRLF, read-only-ish, a symlink, not UTF-8 or a FIFO, and FIFOs in place of the completion markers,
``params.json``, the figure JSON and the tables. Each ends in one clear error or is skipped -- never a hang, a
traceback or a README rewritten in another newline style, mode or place."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import workbench.system.io as wio
from workbench.__main__ import main
from workbench.reporting.index import write_index
from workbench.reporting.report import ReportError, readme_blocks, render, snapshot, update_readme

from test_bad_files_and_folders import deadline
from test_report import _fake_run

BLOCK = "<!-- BEGIN RESULTS snap -->\nOLD 99.9\n<!-- END RESULTS snap -->\n"


def _one_error_line(capsys, fragment: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


@pytest.mark.parametrize("results, fragment", [
    (None, "has no results.csv: run the notebook sequence to the end first"),
    ("", "results.csv does not read back (EmptyDataError"),
    ("family,method\n", "results.csv holds no results (no rows with 'family' and 'method')"),
    ("a,b\n1,2\n", "results.csv holds no results"),
    ('family,method\n"cnn,ScaleGMN\n', "results.csv does not read back (ParserError"),
], ids=["missing", "empty", "header-only", "other-columns", "unterminated-quote"])
def test_report_on_a_run_without_usable_results_is_one_error_line(tmp_path, capsys, results, fragment):
    run = _fake_run(tmp_path / "run")
    if results is None:
        (run / "results.csv").unlink()
    else:
        (run / "results.csv").write_text(results)
    assert main(["report", str(run), "--snapshot", str(tmp_path / "snap")]) == 1
    _one_error_line(capsys, fragment)
    assert not (tmp_path / "snap").exists()


@pytest.fixture
def snap(tmp_path) -> Path:
    return snapshot(_fake_run(tmp_path / "run"), tmp_path / "snap")


def test_readme_update_keeps_crlf_newlines_and_the_files_mode(snap, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_bytes(("intro\n" + BLOCK + "outro\n").replace("\n", "\r\n").encode())
    os.chmod(readme, 0o600)
    update_readme(readme, snap)
    data = readme.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") and b"OLD 99.9" not in data  # CRLF throughout, block replaced
    assert data.startswith(b"intro\r\n") and data.endswith(b"outro\r\n")
    assert stat.S_IMODE(readme.stat().st_mode) == 0o600
    assert render(snap) in readme_blocks(readme)["snap"]  # the block is the rendering (newlines aside)


def test_readme_update_of_an_lf_file_stays_lf(snap, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + BLOCK)
    update_readme(readme, snap)
    assert b"\r" not in readme.read_bytes()


def test_readme_update_through_a_symlink_updates_its_target_and_keeps_the_link(snap, tmp_path):
    real = tmp_path / "docs" / "README.md"
    real.parent.mkdir()
    real.write_text("intro\n" + BLOCK)
    link = tmp_path / "README.md"
    link.symlink_to(real)
    update_readme(link, snap)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "OLD 99.9" not in real.read_text() and render(snap) in readme_blocks(real)["snap"]


@pytest.mark.parametrize("kind, fragment", [
    ("latin-1", "is not UTF-8 text"), ("missing", "cannot read"), ("fifo", "not a regular file"),
    ("folder", "not a regular file")])
def test_a_readme_that_cannot_be_read_is_one_error_line(snap, tmp_path, capsys, kind, fragment):
    readme = tmp_path / "README.md"
    if kind == "latin-1":
        readme.write_bytes(("caf\xe9\n" + BLOCK).encode("latin-1"))
    elif kind == "fifo":
        os.mkfifo(readme)
    elif kind == "folder":
        readme.mkdir()
    with deadline(10):
        assert main(["report", str(snap.parent / "run"), "--snapshot", str(snap), "--readme", str(readme)]) == 1
    _one_error_line(capsys, fragment)
    if kind == "latin-1":
        assert readme.read_bytes().startswith(b"caf\xe9\n")


# -- FIFOs where report and index read files ---------------------------------------------------------------------
def test_fifos_in_a_run_folder_never_hang_report(tmp_path):
    run = _fake_run(tmp_path / "run")
    os.mkfifo(run / "notebooks" / ".05_ablation.done.json")  # a marker replaced by a FIFO: skipped
    (run / "params.json").unlink()
    os.mkfifo(run / "params.json")
    with deadline(10):
        with pytest.raises(ReportError, match=r"cannot read .*params.json: .*not a regular file"):
            snapshot(run, tmp_path / "snap")
    (run / "params.json").unlink()
    (run / "params.json").write_text(json.dumps({"source": "p.yaml", "git_revision": "abc1234"}))
    with deadline(10):
        snap = snapshot(run, tmp_path / "snap")
    assert json.loads((snap / "run_info.json").read_text())["notebook_seconds"] == {"06_results": 12.5}
    (run / "results" / "verdicts.csv").unlink()
    os.mkfifo(run / "results" / "verdicts.csv")
    with deadline(10), pytest.raises(ReportError, match=r"verdicts.csv: .*not a regular file"):
        snapshot(run, tmp_path / "snap")


def test_fifos_in_a_run_folder_never_hang_index(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "notebooks").mkdir()
    (run / "params.json").write_text(json.dumps({"source": "p.yaml", "shared": {}, "sections": {}}))
    (run / "figures" / "01_bars.html").write_text("<html></html>")
    os.mkfifo(run / "figures" / "01_bars.json")  # the figure's title is read from here
    (run / "notebooks" / ".01_a.done.json").write_text(json.dumps({"seconds": 3.0}))
    os.mkfifo(run / "notebooks" / ".02_b.done.json")
    os.mkfifo(run / "results.csv")
    with deadline(10):
        text = write_index(run, convert=False).read_text()
    assert "01_bars" in text and "over 1 notebooks" in text  # the readable marker counts, the FIFO is skipped
    (run / "params.json").unlink()
    os.mkfifo(run / "params.json")
    with deadline(10):
        assert write_index(run, convert=False).is_file()  # the marker alone makes it a run folder


def test_fifos_where_the_run_state_and_lock_records_are_read(tmp_path):
    os.mkfifo(tmp_path / "result.json")
    with deadline(10):
        assert "not a regular file" in wio.run_result_problem(tmp_path)
    os.mkfifo(tmp_path / wio.HOLDER_FILE)  # a holder record replaced by a FIFO
    with deadline(10), wio.run_lock(tmp_path, "me") as stale:
        assert stale == "details unknown"
