"""Notebook 06 with the settings its parameters cell documents as valid, which must not crash it after the
expensive work: no learning-rate grid (`sgd_lr_grid: []`) and no warm start (`finetune_epochs: 0`)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.notebooks
def test_notebook_06_runs_without_a_rate_grid_and_without_a_warm_start(tmp_path):
    import papermill as pm

    out = tmp_path / "run"
    pm.execute_notebook(str(ROOT / "notebooks" / "06_results.ipynb"), str(tmp_path / "06.ipynb"), kernel_name="workbench",
                        cwd=str(ROOT / "notebooks"), progress_bar=False,
                        parameters=dict(output_dir=str(out), n_networks=12, zoo_epochs=2, families=["cnn-relu"],
                                        table_methods=["scalegmn"], meta_epochs=1, meta_hidden=4, meta_n_layers=1,
                                        meta_batch_networks=4, sgd_epochs=[1], sgd_lr_grid=[], finetune_epochs=0,
                                        sequential_sample=0, workers=1))
    table = pd.read_csv(out / "results.csv")
    assert set(table["kind"]) == {"reference", "one_shot", "balanced", "sgd"}  # no warm-start rows, no fixed-lr row
    assert (table.loc[table["kind"] == "sgd", "lr"] == 0.01).all()  # the fixed rate: nothing tuned
    assert "nothing was tuned" in (out / "results.md").read_text()
    assert pd.read_csv(out / "results" / "warm_start.csv").columns.tolist() == ["family"]  # empty, still written
    verdicts = pd.read_csv(out / "results" / "verdicts.csv")
    assert "cheaper_at_equal_accuracy" in set(verdicts["claim"]) and not verdicts["claim"].str.startswith("warm").any()
    executed = json.loads((tmp_path / "06.ipynb").read_text())
    assert not [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
