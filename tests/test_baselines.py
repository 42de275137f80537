"""The SGD baseline: vectorised over networks, yet each network trains exactly as if it were alone."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from workbench.baselines.sgd import SGDResult, sgd_finetune, time_one_at_a_time
from workbench.baselines.momentum import minibatch_order
from workbench.nets import NetSpec, cat_params, init_params, select
from workbench.objective import l1_norm, objective

MLP = NetSpec.mlp((16, 8, 6, 3), "tanh")
CNN = NetSpec.cnn(1, (3, 4), 3, kernel_size=3, stride=1, padding=1, activation="relu", image_size=4)


def tiny_data(n_train=48, n_test=24, seed=0, dtype=torch.float64):
    """A learnable 3-class problem on 1x4x4 images: the label is the quadrant-sum pattern of a random teacher."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(16, 3, generator=g, dtype=dtype)

    def make(n):
        x = torch.randn(n, 1, 4, 4, generator=g, dtype=dtype)
        return x, (x.reshape(n, -1) @ teacher).argmax(1)

    x_train, y_train = make(n_train)
    x_val, y_val = make(n_test)
    x_test, y_test = make(n_test)
    splits = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
    return SimpleNamespace(
        name="tiny", n_classes=3, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test,
        y_test=y_test, split=lambda name: splits[name], to=lambda device: None,
    )


def nets(spec, n, seed=1, dtype=torch.float64):
    return init_params(spec, n, torch.Generator().manual_seed(seed), dtype=dtype)


def assert_params_close(a, b, atol):
    for (wa, ba), (wb, bb) in zip(a, b):
        torch.testing.assert_close(wa, wb, rtol=0, atol=atol)
        torch.testing.assert_close(ba, bb, rtol=0, atol=atol)


def run(spec, params, data, **kw):
    kw = {"device": "cpu", "progress": False, "batch_size": 16, **kw}
    return sgd_finetune(spec, params, data, **kw)


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
@pytest.mark.parametrize("lam", [0.0, 1e-3])
def test_recorded_loss_is_the_shared_objective_per_network(spec, lam):
    data, params = tiny_data(), nets(spec, 3)
    result = run(spec, params, data, epochs=1, lr=0.0, lam=lam)[1]  # lr 0: every step sees the initial params
    (batches,) = list(minibatch_order(data.x_train.shape[0], 16, 0, 1))
    for i in range(3):
        net = select(params, i)
        alone = torch.stack([objective(spec, net, data.x_train[b], data.y_train[b], lam) for b in batches])
        torch.testing.assert_close(result.train_loss[i, 0], alone.double().mean(), rtol=0, atol=1e-10)
    assert_params_close(result.params, params, atol=0)


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
@pytest.mark.parametrize("lam", [0.0, 1e-2])
def test_vectorised_sgd_equals_one_network_at_a_time(spec, lam):
    data, params = tiny_data(), nets(spec, 4)
    together = run(spec, params, data, epochs=(1, 3), lam=lam, lr=0.05)
    for budget in (1, 3):
        alone = cat_params([run(spec, select(params, i), data, epochs=budget, lam=lam, lr=0.05)[budget].params
                            for i in range(4)])
        assert_params_close(together[budget].params, alone, atol=1e-10)
    moved = max(float((a - b).abs().max()) for pa, pb in zip(together[3].params, params) for a, b in zip(pa, pb))
    assert moved > 1e-3  # the equality above is not the trivial one of parameters that never moved


def test_no_leakage_between_networks():
    """Changing one network must leave the training trajectory of the others untouched."""
    data, params = tiny_data(), nets(MLP, 3)
    changed = [(w.clone(), b.clone()) for w, b in params]
    changed[0][0][1] *= 5.0
    a = run(MLP, params, data, epochs=2, lr=0.05)[2].params
    b = run(MLP, changed, data, epochs=2, lr=0.05)[2].params
    assert_params_close(select(a, [0, 2]), select(b, [0, 2]), atol=0)
    assert not torch.allclose(a[0][0][1], b[0][0][1])


def test_ce_finetuning_reduces_training_cross_entropy():
    data, params = tiny_data(n_train=96), nets(MLP, 3)
    result = run(MLP, params, data, epochs=8, lr=0.1, batch_size=32)[8]
    before = objective(MLP, params, data.x_train, data.y_train)
    after = objective(MLP, result.params, data.x_train, data.y_train)
    assert bool((after < 0.8 * before).all()), (before, after)
    assert not bool(result.diverged.any())


def test_l1_finetuning_reduces_the_l1_norm():
    data, params = tiny_data(), nets(CNN, 3)
    result = run(CNN, params, data, epochs=5, lr=0.02, lam=0.05)[5]
    assert bool((l1_norm(result.params) < 0.9 * l1_norm(params)).all())
    plain = run(CNN, params, data, epochs=5, lr=0.02, lam=0.0)[5]
    assert bool((l1_norm(result.params) < l1_norm(plain.params)).all())


def test_snapshots_are_prefixes_of_the_longest_run():
    data, params = tiny_data(), nets(CNN, 2)
    long = run(CNN, params, data, epochs=(2, 4), lr=0.05, lam=1e-3)
    short = run(CNN, params, data, epochs=2, lr=0.05, lam=1e-3)
    assert sorted(long) == [2, 4]
    assert_params_close(long[2].params, short[2].params, atol=0)
    assert not torch.allclose(long[2].params[0][0], long[4].params[0][0])
    assert long[2].epochs == 2 and long[4].epochs == 4
    assert long[4].train_loss.shape == (2, 4)
    assert 0 < long[2].seconds_total <= long[4].seconds_total
    assert long[4].seconds_per_network == pytest.approx(long[4].seconds_total / 2)


def test_network_chunks_give_the_same_result():
    data, params = tiny_data(), nets(MLP, 5)
    whole = run(MLP, params, data, epochs=2, lr=0.05)[2]
    chunked = run(MLP, params, data, epochs=2, lr=0.05, net_chunk=2)[2]
    assert_params_close(whole.params, chunked.params, atol=1e-12)
    assert chunked.diverged.shape == (5,)


def test_divergent_network_is_flagged_frozen_finite_and_harmless_to_the_others():
    data, params = tiny_data(), nets(MLP, 3)
    lr = torch.tensor([0.05, 1e300, 0.05], dtype=torch.float64)  # network 1: an absurd step
    result = run(MLP, params, data, epochs=(1, 3), lr=lr)
    for budget in (1, 3):
        r = result[budget]
        assert r.diverged.tolist() == [False, True, False]
        assert all(bool(torch.isfinite(t).all()) for pair in r.params for t in pair)
    # frozen: nothing moves it after the break, and it holds parameters whose loss is finite
    assert_params_close(select(result[1].params, 1), select(result[3].params, 1), atol=0)
    assert bool(torch.isfinite(objective(MLP, select(result[3].params, 1), data.x_train, data.y_train)).all())
    # the healthy networks train exactly as they would alone
    alone = run(MLP, select(params, [0, 2]), data, epochs=3, lr=0.05)[3]
    assert_params_close(select(result[3].params, [0, 2]), alone.params, atol=1e-10)


@pytest.mark.parametrize("dtype, lr", [(torch.float64, 1e300), (torch.float32, 1e30)])
def test_every_network_diverging_still_returns_finite_params(dtype, lr):
    data, params = tiny_data(dtype=dtype), nets(CNN, 2, dtype=dtype)
    result = run(CNN, params, data, epochs=2, lr=lr)[2]
    assert result.diverged.tolist() == [True, True]
    assert all(bool(torch.isfinite(t).all()) for pair in result.params for t in pair)
    assert bool(torch.isfinite(objective(CNN, result.params, data.x_train, data.y_train)).all())


def test_rejects_non_finite_starting_weights_and_bad_budgets():
    data, params = tiny_data(), nets(MLP, 2)
    with pytest.raises(ValueError, match="epoch budgets"):
        run(MLP, params, data, epochs=(0, 2))
    with pytest.raises(ValueError, match="per-network lr"):
        run(MLP, params, data, epochs=1, lr=torch.tensor([0.1, 0.1, 0.1]))
    params[0][0][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        run(MLP, params, data, epochs=1)


def test_result_record_and_float32_default():
    data = tiny_data(dtype=torch.float32)
    params = nets(MLP, 2, dtype=torch.float32)
    result = run(MLP, params, data, epochs=1)[1]
    assert isinstance(result, SGDResult)
    assert result.params[0][0].dtype == torch.float32 and result.params[0][0].device.type == "cpu"
    assert result.diverged.dtype == torch.bool and result.n_diverged == 0


def test_time_one_at_a_time_scales_with_the_budget():
    data, params = tiny_data(), nets(MLP, 3)
    per_epoch = time_one_at_a_time(MLP, params, data, epochs=1, sample=2, device="cpu")
    assert per_epoch > 0
    torch.manual_seed(0)
    scaled = time_one_at_a_time(MLP, params, data, epochs=150, sample=2, device="cpu")
    assert scaled > per_epoch  # 150x one epoch, up to timing noise far smaller than that factor
    with pytest.raises(ValueError):
        time_one_at_a_time(MLP, params, data, sample=0, device="cpu")
