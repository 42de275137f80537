"""The metrics shared by training and the results table. (The whole smoke sequence runs in test_resume.py,
killed at random moments and resumed.)"""
from pathlib import Path

import pytest
import torch


ROOT = Path(__file__).resolve().parent.parent


def test_metanet_validation_and_results_table_use_the_same_metrics():
    """The numbers the training loop validates with and the numbers the results table reports agree on the same
    parameters (an identity metanet leaves the parameters unchanged)."""
    import types

    from workbench.metanet import ScaleGMN
    from workbench.nets import NetSpec, init_params
    from workbench.training.optimize import validate
    import numpy as np
    import pandas as pd

    from workbench.measure.score import score
    from workbench.zoo import Zoo
    from workbench.zoo.container import META_COLUMNS

    spec = NetSpec.mlp((6, 5, 3), "relu")
    params = init_params(spec, 7, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    data = types.SimpleNamespace(split=lambda name: (x, y))
    model = ScaleGMN.for_spec(spec, hidden=4, n_layers=1, gate=False)
    with torch.no_grad():
        model.out_scale_w.zero_()
        model.out_scale_b.zero_()
    lam = 0.01
    metrics = validate(model, spec, params, x, y, lam)
    meta = pd.DataFrame({"net_id": np.arange(7), "epoch": 1, "split": "test", **{c: 0 for c in META_COLUMNS[3:]}})
    scored = score(Zoo(spec, params, meta, "stand-in"), data, params, lam=lam)
    assert metrics["val_acc"] * 100 == pytest.approx(scored.value("acc"), rel=1e-6)
    assert metrics["val_loss"] == pytest.approx(scored.value("loss"), rel=1e-6)
