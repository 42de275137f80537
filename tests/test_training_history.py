"""What the training loop records and when it stops: the seen and monitored networks scored like the validation
networks, early stopping after ``patience`` epochs without improvement, and a run started from ``init_state``."""
from dataclasses import replace

import pytest
import torch

from workbench.training import optimize
from workbench import pipeline
from workbench.nets import NetSpec, init_params, select
from workbench.metanet import MetanetConfig
from workbench.training.train_config import TrainConfig, build_model
from workbench.training.optimize import train

from strategies import tiny_data


MLP_TANH = NetSpec.mlp((6, 5, 3), "tanh")
TINY = TrainConfig(epochs=3, batch_networks=8, batch_images=32, lr=0.01, warmup_steps=1, device="cpu",
                   meta=MetanetConfig(hidden=4, n_layers=1))


def test_history_scores_seen_and_monitored_networks_like_the_validation_networks():
    data = tiny_data()
    zoo = init_params(MLP_TANH, 24, torch.Generator().manual_seed(0), init_scale=2.0)
    tr, va = select(zoo, slice(0, 16)), select(zoo, slice(16, 24))
    config = replace(TINY, train_eval_networks=16)  # every training network is "seen"
    result = train(MLP_TANH, tr, va, data, config, progress=False, monitor={"again": va, "train": tr})
    assert len(result.history) == 3
    for h in result.history:
        for key in ("loss", "acc", "ce", "l1"):
            # a monitored copy of the validation set scores exactly like it; all training networks = the seen sample
            assert h[f"again_{key}"] == pytest.approx(h[f"val_{key}"], rel=1e-6)
            assert h[f"train_{key}"] == pytest.approx(h[f"seen_{key}"], rel=1e-6)
        assert h["seen_loss"] != pytest.approx(h["val_loss"], rel=1e-6)  # other networks, other score
    off = train(MLP_TANH, tr, va, data, replace(TINY, epochs=1, train_eval_networks=0), progress=False)
    assert not any(k.startswith("seen_") for k in off.history[0])


@pytest.mark.parametrize("patience, epochs_run", [(1, 2), (2, 3), (None, 5)])
def test_patience_stops_after_that_many_epochs_without_improvement(monkeypatch, patience, epochs_run):
    data = tiny_data()
    zoo = init_params(MLP_TANH, 16, torch.Generator().manual_seed(0))
    script = iter([1.0, 1.5, 2.0, 2.5, 3.0])  # the best validation loss is epoch 0's; every later one is worse
    real = optimize.validate

    def scripted(*args, **kwargs):
        return {**real(*args, **kwargs), "val_loss": next(script)}
    monkeypatch.setattr(optimize, "validate", scripted)
    config = replace(TINY, epochs=5, patience=patience, train_eval_networks=0)
    result = train(MLP_TANH, select(zoo, slice(0, 8)), select(zoo, slice(8, 16)), data, config, progress=False)
    assert [h["epoch"] for h in result.history] == list(range(epochs_run))
    assert result.best_epoch == 0 and result.best_val_loss == 1.0


def test_train_from_init_state_starts_there_and_rejects_another_architecture(zoo, digits):
    from workbench.training.checkpoints import CheckpointError

    splits = pipeline.training_splits(zoo, skip_untrained=True)
    spec = zoo.spec
    config = TrainConfig(epochs=1, lr=1e-9, warmup_steps=0, weight_decay=0.0, batch_networks=4, device="cpu",
                         meta=MetanetConfig(hidden=4, n_layers=1))
    start = train(spec, splits["train"], splits["val"], digits, replace(config, lr=0.01, seed=5), progress=False)
    state = {k: v.clone() for k, v in start.model.state_dict().items()}
    continued = train(spec, splits["train"], splits["val"], digits, config, progress=False, init_state=state)
    fresh = train(spec, splits["train"], splits["val"], digits, config, progress=False)
    diff = lambda m: max(float((m.state_dict()[k].double() - state[k].double()).abs().max())  # noqa: E731
                         for k in state)
    assert diff(continued.model) < 1e-6  # at lr 1e-9 one epoch cannot move it away from where it started
    assert diff(fresh.model) > 1e-2  # negative control: the seeded random start is elsewhere
    other = build_model(spec, MetanetConfig(hidden=8, n_layers=1)).state_dict()  # a wider metanet
    with pytest.raises(CheckpointError, match="init_state does not fit"):
        train(spec, splits["train"], splits["val"], digits, config, progress=False, init_state=other)


def test_a_run_from_init_state_that_goes_non_finite_before_any_best_epoch_returns_to_its_start():
    from workbench.training.checkpoints import RunProgress
    from workbench.training.optimize import _adamw, _restore_if_non_finite

    spec = NetSpec.mlp((6, 5, 3), "tanh")
    config = TrainConfig(device="cpu", meta=MetanetConfig(hidden=4, n_layers=1))
    model = build_model(spec, config)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    run = RunProgress(_adamw(model, config), initial_state=start)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    events = []
    _restore_if_non_finite(model, spec, config, run, None, events)
    assert all(torch.equal(model.state_dict()[k], start[k]) for k in start)
    assert run.lr_scale == 0.5 and "restored" in events[0]["event"]
