"""The CPU speed switches.

* The compiled metanet (workbench.metanet.Compiled, TrainConfig.compile): the same function, gradients and equivariance
  as the eager model within float32 tolerance, an eager fallback that is exact when compiling fails, and the training
  loop's switch, its log and its flat form.
* bf16 autocast on the CPU (TrainConfig.cpu_amp): on, bounded in its effect, and a warning where it cannot pay.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench.data import load_digits_data
from workbench.metanet import Compiled, MetanetConfig, ScaleGMN
from workbench.nets import init_params
from workbench.training.train_config import TrainConfig
from workbench.training.optimize import train
from workbench.symmetry import act, random_element
from workbench.zoo import default_spec


def _max_diff(a, b) -> float:
    return max(float((x - y).detach().abs().max()) for pa, pb in zip(a, b) for x, y in zip(pa, pb))


def _grads(model):
    return {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}


def test_compiled_pass_matches_eager_in_value_gradient_and_equivariance():
    """One real compile (cnn-tanh, the sign group): the compiled pass against the eager model on the same
    parameters, its gradients, and its equivariance under a random permutation-and-sign element. Same shapes
    throughout, so the test compiles once."""
    spec = default_spec("cnn-tanh")
    gen = torch.Generator().manual_seed(0)
    params = init_params(spec, 4, gen)
    torch.manual_seed(1)
    model = ScaleGMN.for_spec(spec, hidden=6, n_layers=1)
    with torch.no_grad():  # start away from the zero-update initialisation so the outputs carry the metanet's work
        model.out_scale_w.fill_(0.5)
        model.out_scale_b.fill_(0.5)
    net = Compiled(model)

    eager = model(params)
    compiled = net(params)
    assert net.compiled and net.failure is None and net.first_call_seconds > 0
    moved = _max_diff(eager, params)
    assert moved > 1e-2  # the update is not negligible, so agreeing is not trivial
    assert _max_diff(compiled, eager) < 1e-5 * max(1.0, moved)

    def loss_of(out):
        return sum((w ** 2).sum() + b.sum() for w, b in out)

    model.zero_grad()
    loss_of(model(params)).backward()
    g_eager = _grads(model)
    model.zero_grad()
    loss_of(net(params)).backward()
    g_compiled = _grads(model)
    assert g_eager.keys() == g_compiled.keys() and len(g_eager) > 10
    for k in g_eager:
        scale = float(g_eager[k].abs().max()) + 1e-6
        assert float((g_eager[k] - g_compiled[k]).abs().max()) <= 1e-4 * scale, k

    with torch.no_grad():
        g = random_element(spec, 4, "sign", torch.Generator().manual_seed(5))
        out_of_moved = net(act(spec, g, params))
        moved_out = act(spec, g, net(params))
        assert _max_diff(out_of_moved, moved_out) < 1e-5
        # negative control: an element of another network's orbit (another draw) does not commute
        other = random_element(spec, 4, "sign", torch.Generator().manual_seed(6))
        assert _max_diff(out_of_moved, act(spec, other, net(params))) > 1e-2


def test_a_compiler_that_fails_to_build_falls_back_to_the_exact_eager_model(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    spec = default_spec("mlp-relu")
    params = init_params(spec, 3, torch.Generator().manual_seed(0))
    model = ScaleGMN.for_spec(spec, hidden=4, n_layers=1)
    with pytest.warns(RuntimeWarning, match="no C.. compiler here"):
        net = Compiled(model)
    assert not net.compiled and "RuntimeError: no C++ compiler here" in net.failure
    assert _max_diff(net(params), model(params)) == 0.0
    assert "eager fallback" in repr(net)


def test_a_compiled_function_that_fails_at_its_first_call_falls_back_once(monkeypatch):
    calls = []

    def compile_that_fails_later(fn, **kwargs):
        def run(*args, **kw):
            calls.append(1)
            raise torch._dynamo.exc.Unsupported("an operator inductor cannot lower") \
                if hasattr(torch._dynamo.exc, "Unsupported") else RuntimeError("unsupported")
        return run

    monkeypatch.setattr(torch, "compile", compile_that_fails_later)
    spec = default_spec("cnn-relu")
    params = init_params(spec, 2, torch.Generator().manual_seed(0))
    model = ScaleGMN.for_spec(spec, hidden=4, n_layers=1)
    net = Compiled(model)
    assert net.compiled
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        out = net(params)
    assert not net.compiled and net.first_call_seconds is not None
    assert _max_diff(out, model(params)) == 0.0
    net(params)
    assert len(calls) == 1  # never tried again


def _tiny_config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_networks=4, batch_images=16, device="cpu", val_images=64,
                       train_eval_networks=0, meta=MetanetConfig(hidden=4, n_layers=1))


def _tiny_run(config, tmp_path=None):
    spec = default_spec("mlp-tanh")
    data = load_digits_data(seed=0)
    train_params = init_params(spec, 8, torch.Generator().manual_seed(0))
    val_params = init_params(spec, 4, torch.Generator().manual_seed(1))
    return train(spec, train_params, val_params, data, config, tmp_path, progress=False)


def test_training_with_compile_that_fails_logs_it_and_trains_exactly_as_eager(monkeypatch):
    config = _tiny_config(epochs=2)
    eager = _tiny_run(config)

    def compile_that_fails_in_backward(fn, **kwargs):
        class Boom(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, grad):
                raise RuntimeError("inductor backward failed")

        def run(*args, **kw):  # the dense pass's core: (dw, db) per layer
            (dw, db), *rest = fn(*args, **kw)
            return [(Boom.apply(dw), db), *rest]
        return run

    monkeypatch.setattr(torch, "compile", compile_that_fails_in_backward)
    with pytest.warns(RuntimeWarning, match="inductor backward failed"):
        compiled = _tiny_run(dataclasses.replace(config, compile=True))
    events = [e["event"] for h in compiled.history for e in h.get("events", [])]
    assert events == ["torch.compile failed, training eagerly: RuntimeError: inductor backward failed"]
    assert [h["train_loss"] for h in compiled.history] == [h["train_loss"] for h in eager.history]
    assert [h["val_loss"] for h in compiled.history] == [h["val_loss"] for h in eager.history]


@pytest.mark.slow
def test_training_with_a_real_compile_logs_the_first_step_and_follows_the_eager_run():
    config = _tiny_config(epochs=1)
    eager = _tiny_run(config)
    compiled = _tiny_run(dataclasses.replace(config, compile=True))
    events = [e["event"] for h in compiled.history for e in h.get("events", [])]
    assert len(events) == 1 and events[0].startswith("torch.compile: first step took")
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=1e-4)
    assert compiled.history[0]["val_loss"] == pytest.approx(eager.history[0]["val_loss"], rel=1e-4)


def test_compile_round_trips_and_is_part_of_the_identity_only_when_on():
    off, on = TrainConfig(), TrainConfig(compile=True)
    assert off.to_dict()["compile"] is False and on.to_dict()["compile"] is True
    assert off.digest() == TrainConfig().digest() != on.digest()  # at its default it is no part of the digest
    assert TrainConfig.from_dict(on.to_dict()) == on and TrainConfig.from_dict(off.to_dict()) == off
    with pytest.raises(Exception, match="compile"):
        TrainConfig(compile="yes")


def test_cpu_amp_trains_in_bf16_on_the_cpu_and_warns_where_the_cpu_has_no_bf16_units(monkeypatch):
    import warnings

    import workbench.training.optimize as optimize

    config = dataclasses.replace(_tiny_config(epochs=1), cpu_amp=False)  # fp32 whatever this CPU has
    fp32 = _tiny_run(config)
    monkeypatch.setattr(optimize, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16 units"):
        bf16 = _tiny_run(dataclasses.replace(config, cpu_amp=True))
    loss32, loss16 = fp32.history[0]["train_loss"], bf16.history[0]["train_loss"]
    assert loss16 != loss32  # autocast was on: bf16 rounding changes the loss ...
    assert loss16 == pytest.approx(loss32, rel=5e-2)  # ... by bf16's precision, not more
    monkeypatch.setattr(optimize, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # where it pays, no warning
        again = _tiny_run(dataclasses.replace(config, cpu_amp=True))
    assert again.history[0]["train_loss"] == loss16  # the same run, deterministic
    assert config.to_dict()["cpu_amp"] is False and dataclasses.replace(config, cpu_amp=True).to_dict()["cpu_amp"]


def test_cpu_has_native_bf16_reads_the_cpu_flags(monkeypatch):
    from workbench.training.train_config import cpu_has_native_bf16

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is True


@pytest.mark.slow
def test_a_compiled_run_with_dropout_resumes_exactly(tmp_path):
    """Kill after epoch 0 and resume: the same history as the uninterrupted compiled run, dropout masks included
    (inductor draws them from torch's seeded generator, which the loop seeds per epoch)."""
    config = dataclasses.replace(_tiny_config(epochs=2), compile=True,
                                 meta=MetanetConfig(hidden=4, n_layers=1, dropout=0.2))
    whole = _tiny_run(config, tmp_path / "whole")
    spec = default_spec("mlp-tanh")
    data = load_digits_data(seed=0)
    train_params = init_params(spec, 8, torch.Generator().manual_seed(0))
    val_params = init_params(spec, 4, torch.Generator().manual_seed(1))
    train(spec, train_params, val_params, data, config, tmp_path / "killed", progress=False, stop_after_epoch=0)
    resumed = train(spec, train_params, val_params, data, config, tmp_path / "killed", progress=False)
    keys = ("train_loss", "val_loss")
    assert [[h[k] for k in keys] for h in resumed.history] == [[h[k] for k in keys] for h in whole.history]
    # the masks matter (so agreeing is not trivial): the same run without dropout trains differently
    plain = _tiny_run(dataclasses.replace(config, meta=MetanetConfig(hidden=4, n_layers=1)), tmp_path / "plain")
    assert plain.history[0]["train_loss"] != whole.history[0]["train_loss"]


def test_cpu_amp_auto_resolves_by_the_cpu_and_the_history_names_the_precision(monkeypatch):
    import warnings

    import workbench.training.optimize as optimize
    import workbench.training.train_config as train_config

    config = _tiny_config(epochs=1)
    assert config.cpu_amp == "auto"  # the default
    monkeypatch.setattr(optimize, "cpu_has_native_bf16", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "auto" on a CPU without bf16 units: fp32, no warning
        plain = _tiny_run(config)
    assert plain.precision == "fp32" and [h["precision"] for h in plain.history] == ["fp32"]
    forced32 = _tiny_run(dataclasses.replace(config, cpu_amp=False))
    assert forced32.history[0]["train_loss"] == plain.history[0]["train_loss"]
    monkeypatch.setattr(optimize, "cpu_has_native_bf16", lambda: True)
    assert config.meta.hidden < train_config.AUTO_BF16_MIN_HIDDEN  # too narrow for bf16 to pay: fp32 still
    assert train_config.resolve_cpu_amp(config, torch.device("cpu"), lambda: True) is False
    monkeypatch.setattr(train_config, "AUTO_BF16_MIN_HIDDEN", config.meta.hidden)
    auto = _tiny_run(config)
    assert auto.precision == "bf16" and auto.history[0]["precision"] == "bf16"
    assert auto.history[0]["train_loss"] != plain.history[0]["train_loss"]  # bf16 rounding: autocast was on
    assert auto.history[0]["val_loss"] == pytest.approx(plain.history[0]["val_loss"], rel=5e-2)
    assert train_config.resolve_cpu_amp(dataclasses.replace(config, cpu_amp=False), torch.device("cpu")) is False


def test_cpu_amp_is_auto_by_default_and_a_forced_precision_is_a_run_of_its_own():
    assert TrainConfig().cpu_amp == "auto" and TrainConfig(cpu_amp="auto").digest() == TrainConfig().digest()
    assert len({TrainConfig(cpu_amp=v).digest() for v in ("auto", False, True)}) == 3
    forced = TrainConfig(cpu_amp=True)
    assert forced.to_dict()["cpu_amp"] is True and TrainConfig.from_dict(forced.to_dict()) == forced
    assert TrainConfig.from_dict(TrainConfig().to_dict()).cpu_amp == "auto"
    with pytest.raises(Exception, match="cpu_amp"):
        TrainConfig(cpu_amp="bf16")
