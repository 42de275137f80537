"""L1 balancing (workbench.balance): the L1-smallest point of a ReLU network's scaling orbit keeps the function,
is optimal (equal incoming and outgoing mass per neuron), is the same for every point of an orbit, and is refused for
tanh networks -- on random architectures and random group elements, float32 and float64, with negative controls."""
import pytest
import torch

from workbench.balance import balance_l1, neuron_masses
from workbench.forward_pass import forward
from workbench.nets import NetSpec, init_params
from workbench.objective import l1_norm
from workbench.symmetry import act, random_element


def _random_spec(seed: int, kind: str, activation: str = "relu") -> NetSpec:
    g = torch.Generator().manual_seed(seed)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    if kind == "mlp":
        return NetSpec.mlp((pick(3, 8), *[pick(2, 7) for _ in range(pick(1, 3))], pick(2, 4)), activation)
    return NetSpec.cnn(pick(1, 3), tuple(pick(2, 5) for _ in range(pick(1, 3))), pick(2, 4), kernel_size=3,
                       stride=pick(1, 2), padding=1, activation=activation, image_size=6)


def _inputs(spec: NetSpec, dtype, n: int = 32):
    shape = (1, 1, spec.widths[0]) if spec.kind == "mlp" else (spec.widths[0], spec.image_size, spec.image_size)
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(7), dtype=dtype)


def _params(spec: NetSpec, dtype, n: int = 5, seed: int = 0):
    return init_params(spec, n, torch.Generator().manual_seed(seed), init_scale=1.5, dtype=dtype)


TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
CASES = [(seed, kind) for seed in range(4) for kind in ("mlp", "cnn")]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("seed,kind", CASES)
def test_balancing_keeps_the_function_and_never_raises_the_l1_norm(seed, kind, dtype):
    spec = _random_spec(seed, kind)
    # start off the balanced point: a random positive scaling (log-uniform over 4 decades) and permutation
    params = act(spec, random_element(spec, 5, "perm+scale", torch.Generator().manual_seed(seed), dtype=dtype),
                 _params(spec, dtype, seed=seed))
    x = _inputs(spec, dtype)
    result = balance_l1(spec, params)
    before, after = forward(spec, params, x), forward(spec, result.params, x)
    assert float((before - after).abs().max()) <= TOL[dtype] * float(before.abs().max())
    assert result.params[0][0].dtype == dtype
    assert (result.l1_after <= result.l1_before * (1 + 1e-6)).all()
    assert float(result.reduction_pct.min()) > 1.0  # the random scaling left L1 to remove
    # the returned element is what maps the input to the output
    again = act(spec, result.element, params)
    assert all(torch.equal(a, b) for p, q in zip(again, result.params) for a, b in zip(p, q))


@pytest.mark.parametrize("seed,kind", CASES)
def test_balanced_neurons_have_equal_incoming_and_outgoing_mass(seed, kind):
    spec = _random_spec(seed, kind)
    result = balance_l1(spec, _params(spec, torch.float64, seed=seed), tol=1e-14, max_sweeps=2000)
    for incoming, outgoing in neuron_masses(spec, result.params):
        assert torch.allclose(incoming, outgoing, rtol=1e-4), (incoming, outgoing)
    # negative control: the unbalanced networks are far from it
    start = _params(spec, torch.float64, seed=seed)
    worst = max(float(((i - o).abs() / o).max()) for i, o in neuron_masses(spec, start))
    assert worst > 0.05


@pytest.mark.parametrize("seed,kind", CASES)
def test_the_balanced_l1_is_the_same_for_every_point_of_an_orbit(seed, kind):
    spec = _random_spec(seed, kind)
    params = _params(spec, torch.float64, seed=seed)
    g = random_element(spec, 5, "perm+scale", torch.Generator().manual_seed(100 + seed), dtype=torch.float64,
                       scale_range=(0.1, 10.0))
    moved = act(spec, g, params)
    assert not torch.allclose(l1_norm(moved), l1_norm(params), rtol=1e-3)  # the orbit's points differ in L1
    a = balance_l1(spec, params, tol=1e-14, max_sweeps=2000).l1_after
    b = balance_l1(spec, moved, tol=1e-14, max_sweeps=2000).l1_after
    assert torch.allclose(a, b, rtol=1e-7)
    # and balancing a balanced network changes (almost) nothing
    twice = balance_l1(spec, balance_l1(spec, params, tol=1e-14, max_sweeps=2000).params)
    assert float(twice.reduction_pct.max()) < 1e-6


def test_tanh_networks_are_refused_and_a_positive_scaling_would_change_their_function():
    relu = _random_spec(1, "mlp")
    tanh = NetSpec.mlp(relu.widths, "tanh")
    params = _params(relu, torch.float64)
    with pytest.raises(ValueError, match="sign flips"):
        balance_l1(tanh, params)
    # negative control for the function check: the balancing element of the ReLU networks, applied to the same
    # weights read as tanh networks, changes what they compute
    element = balance_l1(relu, params).element
    x = _inputs(relu, torch.float64)
    assert float((forward(tanh, params, x) - forward(tanh, act(tanh, element, params), x)).abs().max()) > 1e-3


def test_dead_neurons_keep_a_finite_scale_and_the_function():
    spec = NetSpec.mlp((4, 3, 2), "relu")
    params = _params(spec, torch.float64, n=2)
    (w0, b0), (w1, b1) = params
    w1 = w1.clone()
    w1[:, :, 0] = 0.0  # hidden neuron 0 feeds nothing
    w0 = w0.clone()
    w0[:, 1] = 0.0
    b0 = b0.clone()
    b0[:, 1] = 0.0  # hidden neuron 1 receives nothing
    params = [(w0, b0), (w1, b1)]
    result = balance_l1(spec, params)
    scales = result.element.scales[0]
    assert torch.isfinite(scales).all() and (scales > 0).all()
    x = _inputs(spec, torch.float64)
    assert torch.allclose(forward(spec, params, x), forward(spec, result.params, x), atol=1e-10)
    # the dead neurons' live sides are shrunk towards 0
    assert float(result.params[0][0][:, 0].abs().max()) < 1e-4
    assert float(result.params[1][0][:, :, 1].abs().max()) < 1e-4


def test_the_results_table_of_a_relu_family_adds_the_balanced_l1_one_shot(tmp_path):
    from workbench import pipeline
    from workbench.data import load_dataset
    from workbench.zoo import generate

    from recipes import tiny_recipe

    digits = load_dataset("digits", seed=0)
    spec = NetSpec.mlp((64, 5, 10), "relu")
    zoo = generate(spec, digits, 16, epochs=2, checkpoints=[0, 1], seed=0, progress=False)
    recipe = tiny_recipe(epochs=1, hidden=8, n_layers=1, batch_networks=8)
    res = pipeline.family_results(tmp_path, "mlp-relu", zoo, digits, recipe, lam=0.005, seed=0, sgd_epochs=(1,),
                                  finetune_epochs=0, methods=("scalegmn",), sequential_sample=0, progress=False)
    from workbench.reporting.results import find_row

    t = res.table
    assert list(t["label"][:4]) == ["Initial", "All-zero network", "ScaleGMN-B", "ScaleGMN-B + L1 balancing"]
    plain, balanced = find_row(t, kind="one_shot", method="scalegmn"), find_row(t, kind="balanced", method="scalegmn")
    # same function: the same accuracy; less L1: a larger reduction and a lower CE + lam L1
    assert balanced["l1_acc"] == pytest.approx(plain["l1_acc"], abs=1e-3)
    assert balanced["l1_reduction"] > plain["l1_reduction"] + 0.1
    assert balanced["l1_loss"] < plain["l1_loss"]
    assert balanced["l1_seconds_per_net"] >= plain["l1_seconds_per_net"]
    assert balanced[["ce_acc", "ce_seconds_per_net"]].isna().all()  # an L1-only row
    # negative control: a tanh family's table has no such row (sign flips leave the L1 norm unchanged)
    tanh_zoo = generate(NetSpec.mlp((64, 5, 10), "tanh"), digits, 16, epochs=2, checkpoints=[0, 1], seed=0,
                        progress=False)
    tanh = pipeline.family_results(tmp_path, "mlp-tanh", tanh_zoo, digits, recipe, lam=0.005, seed=0,
                                   sgd_epochs=(1,), finetune_epochs=0, methods=("scalegmn",), sequential_sample=0,
                                   progress=False)
    assert find_row(tanh.table, kind="balanced", method="scalegmn") is None


@pytest.mark.parametrize("seed", range(4))
def test_a_cnn_removes_less_l1_by_balancing_than_the_same_function_as_an_mlp(seed):
    from workbench.balance import unrolled_channel_groups
    from workbench.gauge import unroll_cnn

    cnn = _random_spec(seed, "cnn")
    params = _params(cnn, torch.float64, n=3, seed=seed)
    twin, twin_params = unroll_cnn(cnn, params)
    x = _inputs(cnn, torch.float64)
    groups = unrolled_channel_groups(cnn)
    tied = balance_l1(twin, twin_params, groups=groups, tol=1e-14, max_sweeps=2000)
    free = balance_l1(twin, twin_params, tol=1e-14, max_sweeps=2000)
    for result in (tied, free):  # both keep the function of the CNN
        out = forward(twin, result.params, x.reshape(x.shape[0], 1, 1, -1))
        assert torch.allclose(out, forward(cnn, params, x), atol=1e-9)
    for scale, g in zip(tied.element.scales, groups):  # the tied scales are one per channel
        per_channel = scale[:, g == 0]
        assert torch.allclose(per_channel, per_channel[:, :1].expand_as(per_channel))
    # the channel scalings are a subgroup of the neuron scalings: they can never remove more, and here remove less
    assert (free.l1_after <= tied.l1_after * (1 + 1e-9)).all()
    assert (free.l1_after < tied.l1_after * (1 - 1e-3)).all()
    # one group per neuron is no tie at all
    alone = balance_l1(twin, twin_params, groups=[torch.arange(w) for w in twin.hidden_widths], tol=1e-14,
                       max_sweeps=2000)
    assert torch.allclose(alone.l1_after, free.l1_after, rtol=1e-12)


def test_bad_groups_are_refused_with_the_expected_shapes():
    from workbench.balance import unrolled_channel_groups

    spec = NetSpec.mlp((4, 3, 2), "relu")
    with pytest.raises(ValueError, match=r"one \(width,\) tensor"):
        balance_l1(spec, _params(spec, torch.float64), groups=[torch.zeros(4, dtype=torch.long)])
    with pytest.raises(ValueError, match="needs a CNN"):
        unrolled_channel_groups(spec)


def test_the_cnn_vs_mlp_gauge_table_and_its_figure():
    from workbench.balance import cnn_vs_mlp_gauge_l1
    from workbench.viz.gauge import gauge_l1_figure

    cnn = _random_spec(2, "cnn")
    frame = cnn_vs_mlp_gauge_l1(cnn, _params(cnn, torch.float32, n=3))
    assert len(frame) == 3
    assert (frame["removed_by_neurons_pct"] > frame["removed_by_channels_pct"]).all()
    assert (frame["l1_neuron_balanced"] < frame["l1_channel_balanced"]).all()
    assert (frame["l1_channel_balanced"] <= frame["l1"] * (1 + 1e-9)).all()
    fig = gauge_l1_figure(frame)
    assert [t.type for t in fig.data] == ["bar", "bar"]
    assert list(fig.data[1].y) == pytest.approx(list(frame["removed_by_neurons_pct"]))
