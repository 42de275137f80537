"""The whole notebook sequence at smoke size through papermill, and the shared metric definitions."""
from pathlib import Path

import pandas as pd
import pytest
import torch

from workbench.results import COLUMNS, check_table_schema

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.notebooks
def test_smoke_sequence_produces_every_artifact_and_a_valid_table(tmp_path):
    import yaml

    from workbench.runner import run

    params = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    out = run(ROOT / "params" / "smoke.yaml", outputs=tmp_path, log=lambda *_: None)
    assert out == tmp_path / params["name"]
    for nb in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        assert (out / "notebooks" / nb.name).exists(), nb.name
        assert (out / "notebooks" / f".{nb.stem}.done.json").exists(), nb.name
    assert not list((out / "notebooks").glob("*.failed.ipynb")) and not list((out / "notebooks").glob(".*.running.ipynb"))
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_"):
        names = {p.suffix for p in (out / "figures").glob(prefix + "*")}
        assert {".json", ".html"} <= names, prefix

    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == ["family", *COLUMNS]
    assert sorted(table["family"].unique()) == sorted(params["families"])
    md = (out / "results.md").read_text()
    for family, frame in table.groupby("family"):
        frame = frame.drop(columns="family").reset_index(drop=True)
        check_table_schema(frame)
        methods = list(frame["method"])
        assert methods[:3] == ["Initial", "ScaleGMN-B", "GMN (sym. broken)-B"]
        assert [f"SGD ({e} epochs)" for e in params["sgd_epochs"]] == methods[3:3 + len(params["sgd_epochs"])]
        # every measured row is filled: no invented and no missing numbers in the first rows
        assert frame.iloc[1:3].drop(columns="method").notna().all(axis=None)
        assert frame.iloc[0][["ce_avg_acc", "l1_test_loss"]].notna().all()
        assert f"## {family}" in md

    runs = pd.read_csv(out / "results" / "ablation_runs.csv")
    assert len(runs) == len(params["families"]) * len(params["objectives"]) * 2 * params["n_seeds"]
    assert runs["finite"].all()


def test_metanet_validation_and_results_table_use_the_same_metrics():
    """The numbers the training loop validates with and the numbers the results table reports agree on the same
    parameters (an identity metanet leaves the parameters unchanged)."""
    import types

    from workbench.metanet import ScaleGMN
    from workbench.nets import NetSpec, init_params
    from workbench.optimize import validate
    from workbench.results import method_row

    spec = NetSpec.mlp((6, 5, 3), "relu")
    params = init_params(spec, 7, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    data = types.SimpleNamespace(split=lambda name: (x, y))
    model = ScaleGMN.for_spec(spec, hidden=4, n_layers=1)
    with torch.no_grad():
        model.out_scale_w.zero_()
        model.out_scale_b.zero_()
    lam = 0.01
    metrics = validate(model, spec, params, x, y, lam)
    row = method_row("m", spec, data, initial=params, ce_params=params, l1_params=params, lam=lam)
    assert metrics["val_acc"] * 100 == pytest.approx(row["ce_avg_acc"], rel=1e-6)
    assert metrics["val_loss"] == pytest.approx(row["l1_test_loss"], rel=1e-6)
