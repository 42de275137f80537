"""CUDA paths: the captured one-shot pass (GraphedOneShot), equivariance on the GPU, and a bf16-autocast training run.

Tests marked ``gpu`` are skipped without a CUDA device (tests/conftest.py) and run with ``pytest -m gpu``; the
others check what can be checked on any machine (the clear errors)."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from workbench.equivariance import assert_equivariant
from workbench.metanet import NFN, GraphedOneShot, MetanetConfig, ScaleGMN
from workbench.nets import NetSpec, SpecError, init_params, select, small_cnn_zoo_spec
from workbench.objective import evaluate
from workbench.training.train_config import TrainConfig
from workbench.training.optimize import one_shot, train
from workbench.symmetry import group_for

from strategies import net_specs, tiny_data  # noqa: E402

CUDA = torch.device("cuda")


def test_graphed_one_shot_refuses_a_cpu_model_with_a_clear_error():
    spec = NetSpec.mlp((4, 3, 2), "tanh")
    model = ScaleGMN.for_spec(spec, hidden=4, n_layers=1)
    with pytest.raises(ValueError, match="needs a metanet on a CUDA device.*model.optimize"):
        GraphedOneShot(model, spec, 1)


def _close(a, b, atol):
    return all(torch.allclose(x, y, rtol=0, atol=atol) for pa, pb in zip(a, b) for x, y in zip(pa, pb))


@pytest.mark.gpu
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_graphed_one_shot_gives_the_eager_parameters(activation, dtype, atol):
    spec = small_cnn_zoo_spec(activation)
    torch.manual_seed(0)
    model = ScaleGMN.for_spec(spec, hidden=16, n_layers=2, gate=True).to(CUDA, dtype)
    for n in (1, 5):
        shot = GraphedOneShot(model, spec, n)
        for seed in (1, 2):  # replays with new inputs, not the capture's
            params = init_params(spec, n, torch.Generator().manual_seed(seed), dtype=dtype, device=CUDA)
            eager = model.optimize(spec, params)
            graphed = shot(params)
            assert _close(graphed, eager, atol)
            # negative control: the input networks differ from the output by more than the tolerance
            assert not _close(params, eager, atol)


@pytest.mark.gpu
def test_graphed_one_shot_sees_in_place_training_and_keeps_returned_results():
    spec = NetSpec.mlp((6, 5, 3), "tanh")
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=2).to(CUDA)
    shot = GraphedOneShot(model, spec, 4)
    params = init_params(spec, 4, torch.Generator().manual_seed(0), device=CUDA)
    first = shot(params)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    second = shot(params)
    assert _close(second, model.optimize(spec, params), 1e-5)
    assert not _close(first, second, 1e-6)  # the first result was copied out, not overwritten


@pytest.mark.gpu
def test_graphed_one_shot_errors_name_the_batch_size_and_the_architecture():
    spec = NetSpec.mlp((6, 5, 3), "tanh")
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=1).to(CUDA)
    shot = GraphedOneShot(model, spec, 4)
    with pytest.raises(ValueError, match="captured for 4 networks and got 2"):
        shot(init_params(spec, 2, device=CUDA))
    with pytest.raises(SpecError, match="was built for"):
        GraphedOneShot(model, NetSpec.mlp((6, 4, 3), "tanh"), 1)


@pytest.mark.gpu
def test_graphed_one_shot_works_for_nfn():
    spec = NetSpec.mlp((6, 5, 3), "relu")
    model = NFN(spec, MetanetConfig(model="nfn", hidden=8, n_layers=2)).to(CUDA)
    params = init_params(spec, 3, torch.Generator().manual_seed(0), device=CUDA)
    assert _close(GraphedOneShot(model, spec, 3)(params), model.optimize(spec, params), 1e-5)


@pytest.mark.gpu
@given(spec=net_specs(), seed=st.integers(0, 2**16))
def test_scalegmn_is_equivariant_on_cuda(spec, seed):
    torch.manual_seed(seed)
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=2, gate=True).to(CUDA, torch.float64)
    params = init_params(spec, 3, torch.Generator().manual_seed(seed), dtype=torch.float64, device=CUDA)
    gen = torch.Generator().manual_seed(seed + 1)
    assert_equivariant(model, spec, params, group_for(spec), generator=gen, rtol=1e-9, atol=1e-9)


@pytest.mark.gpu
def test_training_on_cuda_with_bf16_autocast_improves_held_out_networks():
    spec = NetSpec.mlp((6, 5, 3), "tanh")
    data = tiny_data()
    zoo = init_params(spec, 48, torch.Generator().manual_seed(0), init_scale=2.0)
    config = TrainConfig(epochs=10, batch_networks=8, batch_images=32, lr=0.01, warmup_steps=2, device="cuda",
                         amp=True, meta=MetanetConfig(hidden=8, n_layers=2))
    result = train(spec, select(zoo, slice(0, 32)), select(zoo, slice(32, 40)), data, config, progress=False)
    assert next(result.model.parameters()).device.type == "cuda"
    test = select(zoo, slice(40, 48))
    new, _ = one_shot(result.model, spec, test)
    assert new[0][0].device.type == "cpu"
    before = evaluate(spec, test, data.x_test, data.y_test)["ce"].mean()
    after = evaluate(spec, new, data.x_test, data.y_test)["ce"].mean()
    assert after < before
