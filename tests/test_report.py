"""Generated results: the README's numbers are rendered from committed run snapshots, never typed by hand."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from workbench.reporting.findings import findings_markdown
from workbench.reporting.report import ReportError, readme_blocks, render, snapshot, update_readme
from workbench.reporting.results import results_table
from workbench.measure.uncertainty import Interval
from workbench.measure.verdicts import claim_row

ROOT = Path(__file__).resolve().parent.parent


def _fake_run(folder: Path) -> Path:
    """A run folder with the files notebook 06 writes, numbers made up and every one distinct."""
    rows = [{"label": "Initial", "kind": "reference", "method": "initial", "seeds": 1, "ce_acc": 41.234,
             "ce_acc_trained": 51.0, "ce_acc_trained_lo": 49.5, "ce_acc_trained_hi": 52.5, "ce_acc_max": 90.0,
             "l1_acc": 41.234, "l1_acc_trained": 51.0, "l1_loss": 3.1, "l1_reduction": 0.0, "l1_near_zero": 1.0},
            {"label": "ScaleGMN-B", "kind": "one_shot", "method": "scalegmn", "seeds": 3, "ce_acc": 47.456,
             "ce_acc_trained": 59.8, "ce_acc_trained_lo": 58.1, "ce_acc_trained_hi": 61.4, "ce_acc_max": 91.0,
             "ce_seconds_per_net": 0.001, "l1_acc": 40.0, "l1_acc_trained": 49.0, "l1_loss": 2.0,
             "l1_seconds_per_net": 0.001, "l1_reduction": 75.5, "l1_reduction_trained": 71.25, "l1_near_zero": 20.0}]
    table = results_table(rows)
    (folder / "results").mkdir(parents=True)
    (folder / "notebooks").mkdir()
    table.assign(family="cnn-tanh")[["family", *table.columns]].to_csv(folder / "results.csv", index=False)
    verdicts = [claim_row("cnn-tanh", "ce_gain", Interval(8.8, 7.1, 10.4, networks=32, seeds=(3, 1)), threshold=8.0),
                claim_row("cnn-tanh", "cheaper_at_equal_accuracy", Interval(0.0425, 0.031, 0.057, networks=32)),
                claim_row("cnn-tanh", "warm_start_1", Interval(2.25, 0.75, 3.5, networks=32)),
                claim_row("cnn-tanh", "l1_reduction", Interval(71.25, 68.5, 73.0, networks=32))]
    pd.DataFrame(verdicts).to_csv(folder / "results" / "verdicts.csv", index=False)
    iv = Interval(3.5, 2.75, 4.25)
    pd.DataFrame([{"family": "cnn-tanh", "method": "ScaleGMN-B", "lr": 0.1, "one_shot_s_per_net": 0.001,
                   "train_seconds": 40.0, "zoo_seconds": 12.0, "steps_per_epoch": 17, "max_steps": 85,
                   "reached": True, **Interval(59.8, 58.1, 61.4).as_dict("one_shot_acc_"), **iv.as_dict("steps_"),
                   **Interval(3.5e-4, 2.75e-4, 4.25e-4).as_dict("sgd_seconds_per_net_"),
                   **Interval(0.35, 0.275, 0.425).as_dict("ratio_"), **Interval(math.inf, math.inf, math.inf).as_dict(
                       "break_even_"), **Interval(math.inf, math.inf, math.inf).as_dict("break_even_with_zoo_")}]
                 ).to_csv(folder / "results" / "matched_compute.csv", index=False)
    pd.DataFrame([{"family": "cnn-tanh", "start": "scalegmn", "reference": "initial", "epochs": 1, "lr": 0.03,
                   "reference_lr": 0.1, **Interval(80.25, 79.0, 81.5).as_dict("acc_"),
                   **Interval(78.0, 76.5, 79.5).as_dict("reference_acc_"),
                   **Interval(2.25, 0.75, 3.5).as_dict("difference_"), "outcome": "leads"}]
                 ).to_csv(folder / "results" / "warm_start.csv", index=False)
    pd.DataFrame([{"family": "cnn-tanh", "kind": "cnn", "objective": "ce", "metric": "acc_trained",
                   "scalegmn": 59.8, "other_method": "GMN-B (sym. broken)", "other_key": "gmn", "other": 61.125,
                   "effect": -1.325, "effect_lo": -2.5, "effect_hi": -0.125, "seeds": "1/1", "networks": 32,
                   "outcome": "loss", "smoother": False}]).to_csv(folder / "results" / "ablation_verdict.csv",
                                                                  index=False)
    (folder / "params.json").write_text(json.dumps({"source": "params/x.yaml", "machine": {
        "cpu": "Test CPU", "cpu_capability": "AVX2", "cores": 2, "torch": "2.13.0+cpu"}}))
    (folder / "notebooks" / ".06_results.done.json").write_text(json.dumps({"seconds": 12.5}))
    return folder


def test_rendered_numbers_come_from_the_snapshot(tmp_path):
    snap = snapshot(_fake_run(tmp_path / "run"), tmp_path / "snap")
    md = render(snap)
    assert "47.5" in md and "59.8 [58.1, 61.4]" in md and "75.5" in md  # formatted from results.csv
    assert "params/x.yaml" in md and "06: 12 s" in md and "Test CPU (AVX2)" in md  # the run's machine, recorded
    info = json.loads((snap / "run_info.json").read_text())
    assert info["notebook_seconds"] == {"06_results": 12.5} and info["machine"]["cpu_capability"] == "AVX2"
    assert "8.8 [7.1, 10.4]" in md and "inconclusive" in md  # the verdict with its interval and outcome
    assert "0.350 [0.275, 0.425]" in md and "never" in md  # matched compute
    assert "+2.25 [+0.75, +3.50]" in md and "leads" in md  # the warm start
    assert "-1.325 [-2.500, -0.125]" in md  # the ablation
    # negative control: change a number in the snapshot and the rendering changes with it
    csv = pd.read_csv(snap / "results.csv")
    csv.loc[1, "ce_acc"] = 12.25
    csv.to_csv(snap / "results.csv", index=False)
    assert "12.2" in render(snap) and "47.5" not in render(snap)


def test_the_snapshot_names_the_revision_the_run_executed_not_the_one_reporting_it(tmp_path):
    from workbench.system.paths import git_revision

    run = _fake_run(tmp_path / "run")
    (run / "params.json").write_text(json.dumps({"source": "params/x.yaml", "git_revision": "abc1234"}))
    snap = snapshot(run, tmp_path / "snap")
    assert json.loads((snap / "run_info.json").read_text())["git_revision"] == "abc1234"
    assert "git abc1234" in render(snap)
    # a run folder from before the runner recorded it falls back to the current checkout's revision
    (run / "params.json").write_text(json.dumps({"source": "params/x.yaml"}))
    snap = snapshot(run, tmp_path / "snap2")
    assert json.loads((snap / "run_info.json").read_text())["git_revision"] == git_revision()


def test_update_readme_replaces_only_its_block(tmp_path):
    snap = snapshot(_fake_run(tmp_path / "run"), tmp_path / "demo")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- BEGIN RESULTS demo -->\nold 99.9\n<!-- END RESULTS demo -->\noutro\n")
    update_readme(readme, snap)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "99.9" not in text
    block = readme_blocks(readme)["demo"]
    assert render(snap) in block
    with pytest.raises(ReportError, match="no block"):
        update_readme(readme, snap, name="other")
    with pytest.raises(ReportError, match="not a results snapshot"):
        render(tmp_path / "run")
    with pytest.raises(ReportError, match="no results.csv"):
        snapshot(tmp_path, tmp_path / "x")


@pytest.mark.parametrize("page", ["README.md", "docs/results.md"])
@pytest.mark.parametrize("kind", ["RESULTS", "FINDINGS"])
def test_generated_blocks_match_their_committed_snapshots(page, kind):
    """Every generated block of the README and of docs/results.md equals the rendering of the snapshot it names
    (docs/results/NAME): a number typed or edited by hand fails here."""
    for name, block in readme_blocks(ROOT / page, kind=kind).items():
        snap = ROOT / "docs" / "results" / name
        assert snap.is_dir(), f"{page}: block {kind} {name} has no snapshot folder {snap}"
        body = block.split("\n", 1)[1]  # after the "generated by" comment line
        expected = render(snap) if kind == "RESULTS" else findings_markdown(snap)
        assert body == expected, f"{page}: block {kind} {name} differs from its snapshot: regenerate it"


def test_the_pages_carry_the_default_runs_blocks():
    assert "default" in readme_blocks(ROOT / "README.md", kind="FINDINGS")
    assert "default" in readme_blocks(ROOT / "docs" / "results.md", kind="RESULTS")


def test_findings_are_sentences_computed_from_the_snapshot(tmp_path):
    snap = snapshot(_fake_run(tmp_path / "run"), tmp_path / "snap")
    md = findings_markdown(snap)
    assert "+8.8 [+7.1, +10.4]: inconclusive (>= 8)" in md  # the headline table's cell
    assert "0.043 [0.031, 0.057]: fails (> 1)" in md
    assert "SGD is the cheaper optimizer in cnn-tanh" in md and "3.5 to 3.5 steps" in md
    assert "leads SGD from the initial networks in cnn-tanh" in md
    assert "-1.3 [-2.5, -0.1]: loss" in md
    assert "Test CPU (AVX2)" in md and "params/x.yaml" in md
    # negative control: a verdict that changes in the snapshot changes the sentence
    v = pd.read_csv(snap / "verdicts.csv")
    v.loc[v["claim"] == "cheaper_at_equal_accuracy", ["value", "lo", "hi", "outcome"]] = [2.5, 1.5, 3.5, "holds"]
    v.to_csv(snap / "verdicts.csv", index=False)
    again = findings_markdown(snap)
    assert "SGD is the cheaper optimizer" not in again and "the one shot is cheaper in cnn-tanh" in again


def test_the_scaling_block_says_how_many_steps_each_size_ran(tmp_path):
    """Sizes train whole epochs of at least the requested steps, so a larger zoo can run more steps; the block names
    the range instead of calling them equal (and says nothing of the kind when they are equal)."""
    run = _fake_run(tmp_path / "run")
    rows = [{"family": "cnn-tanh", "train_networks": n, "seed": 0, "steps": st, "gain_trained": g, "gain_all": g}
            for n, st, g in ((128, 504, 5.5), (4096, 768, 9.25))]
    pd.DataFrame(rows).to_csv(run / "results" / "scaling.csv", index=False)
    md = render(snapshot(run, tmp_path / "snap"))
    assert "the steps run from 504 to 768" in md and "up to 52 % more steps" in md and "equal steps" not in md
    pd.DataFrame(rows).assign(steps=500).to_csv(run / "results" / "scaling.csv", index=False)
    md = render(snapshot(run, tmp_path / "snap2"))
    assert "Scaling study" in md and "the steps run from" not in md
