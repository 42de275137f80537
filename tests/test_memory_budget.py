"""Evaluations stay within a memory budget: the chunk of networks x images is sized from the architecture
(workbench/memory.py), every caller of evaluate gets it by default, and the measured peak agrees."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from workbench import objective
from workbench.memory import (EVAL_IMAGE_CHUNK, GIB, MEMORY_ENV, MemoryBudgetError, budget_bytes, eval_chunk_bytes,
                              eval_chunks)
from workbench.nets import init_params
from workbench.objective import evaluate
from workbench.zoo import default_spec

CIFAR_CNN = default_spec("cnn-tanh", "cifar10-gs")  # the Small CNN Zoo architecture


@pytest.mark.parametrize("family,dataset", [("cnn-tanh", "cifar10-gs"), ("mlp-relu", "cifar10-gs"),
                                            ("cnn-relu", "digits"), ("mlp-tanh", "digits")])
@pytest.mark.parametrize("budget_gib", [0.05, 1.0, 40.0])
def test_chunks_fit_the_budget_and_fill_it(family, dataset, budget_gib):
    spec = default_spec(family, dataset)
    size = spec.image_size if spec.kind == "cnn" else None
    budget = int(budget_gib * GIB)
    nets, images = eval_chunks(spec, 7500, 10_000, budget, size)
    assert eval_chunk_bytes(spec, nets, images, size) <= budget
    if nets < 7500:  # one more network would not have fitted
        assert eval_chunk_bytes(spec, nets + 1, images, size) > budget
    assert images == EVAL_IMAGE_CHUNK or eval_chunk_bytes(spec, 1, EVAL_IMAGE_CHUNK, size) > budget


def test_the_paper_setting_chunk_of_1024_networks_would_need_about_125_gib():
    assert 120 * GIB < eval_chunk_bytes(CIFAR_CNN, 1024, 4096, 32) < 140 * GIB
    nets, images = eval_chunks(CIFAR_CNN, 7500, 10_000, 6 * GIB, 32)
    assert images == 4096 and 40 <= nets <= 50


def test_a_budget_below_one_network_on_one_image_is_refused():
    with pytest.raises(MemoryBudgetError, match="cannot hold one CNN .* network on one image.*WORKBENCH_MEMORY_GB"):
        eval_chunks(CIFAR_CNN, 10, 10, 1000, 32)


def test_budget_from_the_environment_and_its_errors(monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "0.5")
    assert budget_bytes("cpu") == GIB // 2
    for bad in ("-1", "zero", "nan", "inf"):
        monkeypatch.setenv(MEMORY_ENV, bad)
        with pytest.raises(MemoryBudgetError, match="must be a number of GiB > 0"):
            budget_bytes("cpu")
    monkeypatch.delenv(MEMORY_ENV)
    assert 0 < budget_bytes("cpu")


def test_evaluate_chunks_by_the_budget_by_default_and_results_do_not_depend_on_it(monkeypatch):
    spec = CIFAR_CNN
    params = init_params(spec, 12, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 1, 32, 32, generator=g), torch.randint(0, 10, (200,), generator=g)
    whole = evaluate(spec, params, x, y, batch_size=4096, net_chunk=1024)  # one chunk, as before budgets
    shapes, real_forward = [], objective.forward
    monkeypatch.setattr(objective, "forward", lambda s, p, xb: shapes.append((p[0][0].shape[0], len(xb)))
                        or real_forward(s, p, xb))
    monkeypatch.setenv(MEMORY_ENV, str(40 * 32_500 / GIB))  # about 40 network-images
    chunked = evaluate(spec, params, x, y)  # no chunk arguments: the budget decides, as for every caller
    assert max(n * b for n, b in shapes) <= 40 and len(shapes) > 12
    assert torch.equal(chunked["acc"], whole["acc"])
    torch.testing.assert_close(chunked["ce"], whole["ce"], rtol=1e-5, atol=1e-6)


_PEAK = textwrap.dedent("""
    import json, sys, torch
    from workbench.run.calibration import peak_bytes
    from workbench.nets import init_params
    from workbench.objective import evaluate
    from workbench.zoo import default_spec
    spec = default_spec("cnn-tanh", "cifar10-gs")
    params = init_params(spec, 16, torch.Generator().manual_seed(0))
    x, y = torch.randn(1000, 1, 32, 32), torch.randint(0, 10, (1000,))
    budget = 64 * 2**20
    _, bounded = peak_bytes(lambda: evaluate(spec, params, x, y, memory_budget=budget), torch.device("cpu"))
    _, whole = peak_bytes(lambda: evaluate(spec, params, x, y, batch_size=1000, net_chunk=16), torch.device("cpu"))
    print(json.dumps({"budget": budget, "bounded": bounded, "whole": whole}))
""")


def test_measured_peak_of_a_budgeted_evaluation_stays_within_the_budget():
    """Peak resident memory (VmHWM) in a fresh process with every large tensor its own mapping (see
    workbench/run/calibration.py); the whole-batch evaluation is the negative control."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", WORKBENCH_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _PEAK], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    assert m["bounded"] <= m["budget"]
    assert m["whole"] > 4 * m["budget"]  # 16 networks x 1,000 images at about 32 KB each: about 500 MB
    assert m["whole"] <= eval_chunk_bytes(CIFAR_CNN, 16, 1000, 32)  # the model is an upper bound of the measurement


def test_sgd_chunks_fit_the_budget_and_chunking_changes_no_network():
    from workbench.baselines.sgd import sgd_finetune
    from workbench.memory import sgd_bytes_per_network, sgd_chunk
    from strategies import tiny_cifar

    budget = 3 * sgd_bytes_per_network(CIFAR_CNN, 64, 32) + 1
    assert sgd_chunk(CIFAR_CNN, 10, budget, image_size=32) == 3
    assert sgd_chunk(CIFAR_CNN, 2, budget, image_size=32) == 2 and sgd_chunk(CIFAR_CNN, 10, 1, image_size=32) == 1
    data, params = tiny_cifar(n=48), init_params(CIFAR_CNN, 5, torch.Generator().manual_seed(0))
    whole = sgd_finetune(CIFAR_CNN, params, data, epochs=(1,), lr=0.05, seed=0, progress=False)[1]
    chunked = sgd_finetune(CIFAR_CNN, params, data, epochs=(1,), lr=0.05, seed=0, progress=False, net_chunk=2)[1]
    for (w, b), (v, c) in zip(whole.params, chunked.params):
        torch.testing.assert_close(w, v, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6)


def test_the_lambda_sweep_trains_its_sgd_networks_in_chunks_of_the_budget(monkeypatch):
    from types import SimpleNamespace

    from workbench.memory import sgd_chunk
    from workbench.pipeline import scaling
    from workbench.zoo import generate
    from strategies import tiny_cifar

    data = tiny_cifar(n=32)
    zoo = generate(CIFAR_CNN, data, 40, epochs=1, checkpoints=[], seed=0, progress=False)  # 4 validation networks
    from workbench.baselines import sgd as baselines
    from workbench.nets import n_networks

    sizes, real = [], baselines._train_chunk
    monkeypatch.setattr(scaling, "train_metanet", lambda *a, **k: SimpleNamespace(model=None))
    monkeypatch.setattr(scaling, "one_shot", lambda model, spec, params: (params, 0.0))
    monkeypatch.setattr(baselines, "_train_chunk", lambda spec, p, *a, **k: sizes.append(n_networks(p)) or real(spec, p, *a, **k))
    monkeypatch.setenv(MEMORY_ENV, str(2.5 * 3.4e6 / GIB))  # about two networks' SGD step on 64 images
    frame = scaling.lam_sweep(None, zoo, data, None, [0.01], sgd_epochs=(1,), progress=False)
    n_val = int((zoo.meta["split"] == "val").sum())
    chunk = sgd_chunk(CIFAR_CNN, n_val, budget_bytes("cpu"), image_size=32)
    assert chunk < n_val and sum(sizes) == n_val and max(sizes) == chunk and len(sizes) > 1
    assert (frame["kind"] == "sgd").sum() == 1
