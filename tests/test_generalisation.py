"""Generalisation as a measurement (issue 11): weight-space augmentation, the seen/monitored curves and early
stopping of the training loop, the one held-out set, gains per checkpoint epoch, training-set subsampling, the
ablation verdicts, the trained-checkpoint columns and targets of the results table, and parallel jobs."""
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.training import optimize
from workbench import pipeline
from workbench.reporting import results
from workbench.data import load_dataset
from workbench.forward_pass import forward
from workbench.nets import NetSpec, init_params, select
from workbench.objective import evaluate
from workbench.metanet import MetanetConfig
from workbench.training.train_config import TrainConfig, build_model
from workbench.training.optimize import augment, train
from workbench.training.checkpoints import load_model
from workbench.system.parallel import run_parallel
from workbench.zoo import Zoo, generate

from parallel_jobs import slow_first
from recipes import tiny_recipe

MLP_TANH = NetSpec.mlp((6, 5, 3), "tanh")
MLP_RELU = NetSpec.mlp((6, 5, 4, 3), "relu")
CNN_TANH = NetSpec.cnn(2, (3, 4), 3, kernel_size=3, stride=1, padding=1, activation="tanh", image_size=5)
CNN_RELU = NetSpec.cnn(2, (3, 4), 3, kernel_size=3, stride=2, padding=1, activation="relu", image_size=5)
SPECS = [MLP_TANH, MLP_RELU, CNN_TANH, CNN_RELU]


def _inputs(spec, n=16, seed=1):
    shape = (1, 1, spec.widths[0]) if spec.kind == "mlp" else (spec.widths[0], spec.image_size, spec.image_size)
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _params(spec, n=6, seed=0):
    return init_params(spec, n, torch.Generator().manual_seed(seed), init_scale=1.5, dtype=torch.float64)


def _max_abs(a, b):
    return max(float((x - y).abs().max()) for p, q in zip(a, b) for x, y in zip(p, q))


# -- weight-space augmentation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.activation}")
def test_group_augment_keeps_each_networks_function_but_not_its_weights(spec):
    params, x = _params(spec), _inputs(spec)
    config = TrainConfig(group_augment=True, device="cpu")
    moved = augment(spec, params, config, torch.Generator().manual_seed(3))
    before, after = forward(spec, params, x), forward(spec, moved, x)
    assert float((before - after).abs().max()) < 1e-10
    assert _max_abs(params, moved) > 1e-2  # a real group element, not the identity
    # negative control: the same batch with noise no longer computes the same functions
    noisy = augment(spec, params, replace(config, noise=0.1), torch.Generator().manual_seed(3))
    assert float((forward(spec, noisy, x) - before).abs().max()) > 1e-3


def test_relu_scales_are_drawn_within_augment_scales():
    spec = NetSpec.mlp((6, 5, 3), "relu")  # one hidden layer: neuron i's incoming row and bias scale by q_i
    params = _params(spec, n=64)
    config = TrainConfig(group_augment=True, augment_scales=(0.5, 2.0), device="cpu")
    moved = augment(spec, params, config, torch.Generator().manual_seed(0))
    (w, b), (w2, b2) = params[0], moved[0]
    norm, norm2 = w.abs().sum(-1), w2.abs().sum(-1)  # (B, 5)
    # b_i / |w_i|_1 is invariant under the scale and moves with the permutation: it matches old and new neurons
    old, new = (b / norm).argsort(1), (b2 / norm2).argsort(1)
    q = norm2.gather(1, new) / norm.gather(1, old)  # (B, 5) the drawn scales
    assert float(q.min()) >= 0.5 - 1e-9 and float(q.max()) <= 2.0 + 1e-9
    assert float(q.min()) < 0.6 and float(q.max()) > 1.7  # spread over the range, not a fixed scale
    assert torch.allclose(b2.gather(1, new), q * b.gather(1, old), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("spec", [MLP_TANH, CNN_RELU], ids=["mlp", "cnn"])
def test_noise_has_the_requested_relative_scale_per_layer(spec):
    params = init_params(spec, 4000, torch.Generator().manual_seed(0), init_scale=1.0, dtype=torch.float64)
    config = TrainConfig(noise=0.1, device="cpu")
    noisy = augment(spec, params, config, torch.Generator().manual_seed(1))
    for (w, b), (w2, b2) in zip(params, noisy):
        for t, t2 in ((w, w2), (b, b2)):
            rms = t.reshape(t.shape[0], -1).pow(2).mean(1).sqrt()  # (B,) per network and layer
            rel = (t2 - t).reshape(t.shape[0], -1) / rms[:, None]
            assert float(rel.std()) == pytest.approx(0.1, rel=0.03)
            assert abs(float(rel.mean())) < 0.01


def test_augmentation_is_reproducible_from_the_generator_and_off_means_identity():
    spec, params = MLP_RELU, _params(MLP_RELU)
    config = TrainConfig(noise=0.05, group_augment=True, device="cpu")
    a = augment(spec, params, config, torch.Generator().manual_seed(7))
    b = augment(spec, params, config, torch.Generator().manual_seed(7))
    c = augment(spec, params, config, torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))
    assert _max_abs(a, c) > 1e-3
    off = augment(spec, params, TrainConfig(device="cpu"), torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for p, q in zip(params, off) for x, y in zip(p, q))


def test_new_settings_round_trip_through_json_and_a_checkpoint(tmp_path):
    config = TrainConfig(noise=0.05, group_augment=True, augment_scales=(0.5, 3.0), patience=4,
                         train_eval_networks=7, device="cpu", meta=MetanetConfig(hidden=4, n_layers=1))
    text = json.dumps(config.to_dict())
    assert json.loads(text)["augment_scales"] == [0.5, 3.0]  # JSON turns the tuple into a list
    assert TrainConfig.from_dict(json.loads(text)) == config
    model = build_model(MLP_TANH, config)
    torch.save({"spec": MLP_TANH.to_dict(), "config": config.to_dict(), "model": model.state_dict()},
               tmp_path / "best.pt")
    assert load_model(tmp_path / "best.pt", spec=MLP_TANH) is not None
    with pytest.raises(ValueError, match="noize"):
        TrainConfig.from_dict({**config.to_dict(), "noize": 0.1})


# -- the training loop: seen and monitored networks, early stopping --------------------------------------------
from strategies import tiny_data  # noqa: E402  (shared with test_optimize)


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


# -- a tiny real zoo ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def zoo(digits):
    """20 digits MLPs (64-4-10) x checkpoints 0, 1, 2 (2 = final): 10 test, 8 train, 2 validation networks."""
    return generate(NetSpec.mlp((64, 4, 10), "tanh"), digits, 20, epochs=2, checkpoints=[0, 1], seed=0,
                    progress=False)


def _ids(z):
    return sorted(set(z.meta["net_id"].tolist()))


def test_test_networks_keeps_whole_held_out_networks(zoo, tmp_path):
    all_test = pipeline.test_networks(zoo)
    assert set(all_test.meta["split"]) == {"test"}
    assert len(all_test) == int((zoo.meta["split"] == "test").sum())
    capped = pipeline.test_networks(zoo, 3)
    ids = _ids(capped)
    assert ids == _ids(all_test)[:3]  # the first networks by net_id
    assert len(capped) == 3 * 3  # every checkpoint of each of them
    assert capped.meta.groupby("net_id")["epoch"].apply(sorted).tolist() == [[0, 1, 2]] * 3
    # the same set whatever the zoo object: reloaded from disk, or with the entries in another order
    zoo.save(tmp_path / "z")
    assert _ids(pipeline.test_networks(Zoo.load(tmp_path / "z"), 3)) == ids
    order = np.random.RandomState(0).permutation(len(zoo))
    shuffled = Zoo(zoo.spec, [(w[order], b[order]) for w, b in zoo.params], zoo.meta.iloc[order], zoo.dataset,
                   zoo.split_seed)
    again = pipeline.test_networks(shuffled, 3)
    assert _ids(again) == ids
    key = lambda z: sorted(zip(z.meta["net_id"], z.meta["epoch"], z.params[0][1][:, 0].tolist()))
    assert key(again) == key(capped)


def test_initial_scores_are_measured_on_the_test_networks(zoo, digits):
    frame = pipeline.initial_scores(digits, {"mlp-tanh": zoo}, lam=0.01, eval_networks=4)
    held = pipeline.test_networks(zoo, 4)
    m = evaluate(zoo.spec, held.params, digits.x_test, digits.y_test, 0.01)
    mask = pipeline.trained_mask(held)
    assert mask.tolist() == (held.meta["epoch"] >= 1).tolist() and 0 < mask.sum() < len(held)
    row = frame.iloc[0]
    assert row["acc"] == pytest.approx(100 * float(m["acc"].double().mean()))
    assert row["acc_trained"] == pytest.approx(100 * float(m["acc"][torch.as_tensor(mask)].double().mean()))
    assert row["loss"] == pytest.approx(float(m["loss"].double().mean()), rel=1e-6)
    assert row["acc_trained"] > row["acc"]  # trained checkpoints beat the untrained ones


def test_gain_by_checkpoint_groups_entries_by_epoch(zoo):
    held = pipeline.test_networks(zoo)
    epochs = held.meta["epoch"].to_numpy()
    before = np.where(epochs == 0, 0.1, 0.5)
    after = before + np.select([epochs == 0, epochs == 1], [0.0, 0.2], 0.1)
    frame = pipeline.gain_by_checkpoint(held, before, after).set_index("checkpoint")
    assert list(frame.index) == ["0", "1", "2", "trained", "all"]
    n = len(held) // 3
    assert frame["entries"].tolist() == [n, n, n, 2 * n, 3 * n]
    assert frame["gain"].to_dict() == pytest.approx({"0": 0.0, "1": 20.0, "2": 10.0, "trained": 15.0, "all": 10.0})
    assert frame.loc["trained", "before"] == pytest.approx(50.0)
    assert frame.loc["all", "after"] == pytest.approx(100 * float(np.mean(after)))


def test_subsample_train_draws_training_networks_and_keeps_held_out_ones(zoo):
    n_train = len(_ids(zoo.subset(split="train")))
    sub = pipeline.subsample_train(zoo, 3, seed=0)
    for split in ("val", "test"):
        assert _ids(sub.subset(split=split)) == _ids(zoo.subset(split=split))
    kept = sub.subset(split="train")
    assert len(_ids(kept)) == 3 and len(kept) == 3 * 3  # whole networks
    assert set(_ids(kept)) <= set(_ids(zoo.subset(split="train")))
    assert _ids(pipeline.subsample_train(zoo, 3, seed=0).subset(split="train")) == _ids(kept)
    draws = {tuple(_ids(pipeline.subsample_train(zoo, 3, seed=s).subset(split="train"))) for s in range(6)}
    assert len(draws) > 1  # the seed matters
    assert len(_ids(pipeline.subsample_train(zoo, n_train).subset(split="train"))) == n_train
    for bad in (0, n_train + 1):
        with pytest.raises(ValueError, match="n_train_networks must lie in"):
            pipeline.subsample_train(zoo, bad)


# -- ablation verdicts ------------------------------------------------------------------------------------------
def _score(per_seed_acc, n_networks=12, noise=0.0, seed=0):
    """A Score of ``n_networks`` networks x 2 checkpoints whose trained entries have the accuracy (%) of each seed
    (plus per-network noise), the same for the loss."""
    from workbench.measure.score import Score

    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_networks), 2)
    trained = np.tile([False, True], n_networks)
    jitter = rng.normal(0, noise, n_networks)[ids]
    acc = np.stack([np.where(trained, v + jitter, 10.0) / 100.0 for v in per_seed_acc])
    return Score(acc=acc, ce=acc * 10, l1=np.ones_like(acc), l1_before=np.ones(ids.size), trained=trained,
                 net_id=ids, lam=0.0, near_zero=0.0)


def _ablation(values: dict, objective="ce", family="mlp-tanh", noise=0.0):
    from workbench.measure.uncertainty import Bootstrap

    scores, rows = {}, []
    for method, vals in values.items():  # method keys of pipeline.METHODS
        scores[(family, objective, method)] = _score(vals, noise=noise)
        rows += [{"family": family, "objective": objective, "method": method,
                  "label": pipeline.method_label(method, True), "seed": s,
                  "smoothness": 0.1 if method == "scalegmn" else 0.2} for s in range(len(vals))]
    boot = Bootstrap(np.repeat(np.arange(12), 2), draws=500)
    return pipeline.Ablation(pd.DataFrame(rows), scores=scores, boots={family: boot})


def _outcomes(frame):
    return dict(zip(frame["other_method"], frame["outcome"]))


def test_ablation_verdict_wins_and_losses_need_the_whole_interval_on_one_side():
    ab = _ablation({"scalegmn": [50.0, 50.0], "gmn": [49.0, 49.0], "gmn-aug": [51.0, 51.0], "nfn": [50.0, 50.0]},
                   noise=3.0)
    verdict = pipeline.ablation_verdict(ab)
    assert _outcomes(verdict) == {"GMN-B (sym. broken)": "win", "GMN-B + sym. aug.": "loss",
                                  "NFN (perm. only)": "inconclusive"}
    effect = verdict.set_index("other_method")
    assert effect.loc["GMN-B (sym. broken)", "effect"] == pytest.approx(1.0)
    assert effect.loc["GMN-B (sym. broken)", "other_key"] == "gmn"  # records, not labels
    assert (verdict["effect_lo"] <= verdict["effect"]).all() and verdict["smoother"].all()
    assert set(verdict["seeds"]) == {"2/2"}


def test_the_l1_objective_judges_the_loss_where_lower_is_better():
    ab = _ablation({"scalegmn": [20.0], "gmn": [25.0]}, objective="l1")  # loss = acc / 10
    verdict = pipeline.ablation_verdict(ab)
    assert verdict["metric"].item() == "loss" and verdict["outcome"].item() == "win"
    assert verdict["effect"].item() == pytest.approx(0.25)  # mean loss over all entries: 1.75 - 1.5


def test_seed_spread_turns_the_same_mean_difference_inconclusive():
    steady = pipeline.ablation_verdict(_ablation({"scalegmn": [52.0, 52.0, 52.0], "gmn": [50.0, 50.0, 50.0]}))
    noisy = pipeline.ablation_verdict(_ablation({"scalegmn": [47.0, 52.0, 57.0], "gmn": [45.0, 50.0, 55.0]}))
    assert steady["effect"].iloc[0] == pytest.approx(noisy["effect"].iloc[0]) == pytest.approx(2.0)
    assert steady["outcome"].iloc[0] == "win" and noisy["outcome"].iloc[0] == "inconclusive"
    assert noisy["effect_hi"].iloc[0] - noisy["effect_lo"].iloc[0] > 4.0


def test_kind_contrast_compares_mlps_with_cnns_with_an_interval():
    mlp = _ablation({"scalegmn": [52.0, 52.0], "gmn": [50.0, 50.0]}, family="mlp-tanh", noise=1.0)
    cnn = _ablation({"scalegmn": [51.0, 51.0], "gmn": [50.5, 50.5]}, family="cnn-tanh", noise=1.0)
    both = pipeline.Ablation(pd.concat([mlp.runs, cnn.runs]), scores={**mlp.scores, **cnn.scores},
                             boots={**mlp.boots, **cnn.boots})
    contrast = pipeline.kind_contrast(both)
    row = contrast.set_index("objective").loc["ce"]
    assert row["mlp_effect"] == pytest.approx(2.0) and row["cnn_effect"] == pytest.approx(0.5)
    assert row["difference"] == pytest.approx(1.5) and row["difference_lo"] > 0
    assert row["outcome"] == "larger for MLPs"
    lines = pipeline.ablation_conclusions(pipeline.ablation_verdict(both), contrast)
    assert any("larger for MLPs" in line and "+1.500" in line for line in lines)
    assert "ce: ScaleGMN wins 2, loses 0, inconclusive 0 of 2 comparisons" in lines
    assert pipeline.kind_contrast(mlp).empty  # no CNN family: no contrast


def test_ablation_objectives_limit_l1_to_the_named_families():
    assert pipeline.ablation_objectives(["mlp-tanh", "cnn-relu"], ["ce", "l1"], ["cnn-relu"]) == {
        "mlp-tanh": ["ce"], "cnn-relu": ["ce", "l1"]}
    assert pipeline.ablation_objectives(["mlp-tanh"], ["ce", "l1"]) == {"mlp-tanh": ["ce", "l1"]}
    with pytest.raises(ValueError, match="cnn-tanh"):
        pipeline.ablation_objectives(["mlp-tanh"], ["ce", "l1"], ["cnn-tanh"])


# -- verdicts --------------------------------------------------------------------------------------------------
def test_a_claim_is_judged_on_its_interval_against_its_own_or_a_given_threshold():
    from workbench.measure.uncertainty import Interval
    from workbench.measure.verdicts import claim_row

    row = claim_row("cnn-tanh", "ce_gain", Interval(8.5, 7.9, 9.1, networks=32, seeds=(3, 1)), threshold=8.0)
    assert (row["outcome"], row["threshold"], row["seeds"], row["networks"]) == ("inconclusive", 8.0, "3/1", 32)
    assert claim_row("cnn-relu", "ce_gain", Interval(8.5, 7.9, 9.1))["outcome"] == "holds"  # its own threshold: 3
    assert claim_row("x", "l1_beats_zero", Interval(0.1, 0.05, 0.2))["outcome"] == "fails"
    text = claim_row("x", "ce_beats_sgd", Interval(1.0, 0.5, 1.5), sgd="SGD (5 epochs)")["text"]
    assert "SGD (5 epochs)" in text


def test_markdown_table_rounds_and_marks_missing_values():
    text = results.markdown_table(pd.DataFrame({"a": ["x", "y"], "b": [1.23456, float("nan")]}), digits=2)
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x | 1.23 |", "| y | - |"]


# -- parallel jobs ---------------------------------------------------------------------------------------------
def test_run_parallel_returns_results_in_job_order_and_names_a_failing_job():
    out = run_parallel(slow_first, [0, 1, 2], workers=2, progress=False)
    assert [r[0] for r in out] == [0, 1, 2]
    pids = {r[1] for r in out}
    assert os.getpid() not in pids and len(pids) == 2  # two worker processes, not this one
    assert {r[2] for r in out} == {1}  # one torch thread each
    with pytest.raises(RuntimeError, match=r"job job-boom failed: ValueError: exploded on purpose"):
        run_parallel(slow_first, [1, "boom"], workers=2, progress=False, label=lambda j: f"job-{j}")
    # one worker runs in this process (no start-up cost)
    assert [r[1] for r in run_parallel(slow_first, [1, 2], workers=1, progress=False)] == [os.getpid()] * 2


def test_start_order_starts_the_costliest_jobs_first_and_keeps_ties_in_order():
    from workbench.system.parallel import start_order

    assert start_order(["a", "b", "c"]) == [0, 1, 2]
    assert start_order([1, 5, 3, 5], cost=lambda j: j) == [1, 3, 2, 0]
    # results still come back in job order when the jobs start in cost order
    out = run_parallel(slow_first, [1, 2, 0], workers=2, progress=False, cost=lambda j: {0: 9, 1: 1, 2: 5}[j])
    assert [r[0] for r in out] == [1, 2, 0]


def test_run_cost_puts_graph_metanets_on_mlp_graphs_first():
    from workbench.pipeline.runs import _run_cost

    def cost(family, method, epochs=8, mlp_epochs=4):
        return _run_cost({"family": family, "method": method, "recipe": tiny_recipe(epochs=epochs, mlp_epochs=mlp_epochs)})

    # default run of 2026-12-04: MLP ScaleGMN-B 95 s, CNN ScaleGMN-B 48 s, CNN NFN 25 s, MLP NFN 14 s
    assert cost("mlp-tanh", "scalegmn") > cost("cnn-tanh", "gmn") > cost("cnn-relu", "nfn") > cost("mlp-tanh", "nfn-aug")
    assert cost("mlp-tanh", "scalegmn", mlp_epochs=None) == 2 * cost("mlp-tanh", "scalegmn")  # epochs apply then


def test_run_parallel_names_a_failing_job_in_process_too():
    with pytest.raises(RuntimeError, match="job job-boom failed"):
        run_parallel(slow_first, [1, "boom"], workers=1, progress=False, label=lambda j: f"job-{j}")


@pytest.mark.parametrize("scales", [(0.5, 1.0, 2.0), (4.0, 0.25)])
def test_augment_scales_must_be_a_low_high_pair(scales):
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="augment_scales"):
        TrainConfig(augment_scales=scales, device="cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_workers_of_a_killed_parent_do_not_train_on(tmp_path):
    """Killing a run (its kernel or the runner) must not leave worker processes computing as orphans."""
    import signal
    import subprocess
    import textwrap

    pids = tmp_path / "pids.txt"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from parallel_jobs import sleep_and_report
        from workbench.system.parallel import run_parallel
        run_parallel(sleep_and_report, [({str(pids)!r}, 120)] * 2, workers=2, progress=False)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.2)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)  # no chance to clean up: only the kernel's parent-death signal helps
    parent.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has stopped computing

    deadline = time.time() + 30
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(alive(p) for p in workers), "workers outlived their killed parent"


def test_a_second_zoo_of_a_family_gets_its_own_cache_folder(digits, tmp_path):
    """Notebook 07's bigger scaling zoo must not overwrite the run's main zoo of the same family (and back)."""
    args = dict(zoo_epochs=2, seed=0, progress=False, verbose=False, test_fraction=0.5)
    main = pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=6, **args)
    big = pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=10, cache_suffix="-n10", **args)
    assert (tmp_path / "zoo" / "mlp-tanh").is_dir() and (tmp_path / "zoo" / "mlp-tanh-n10").is_dir()
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "zoo").rglob("*") if p.is_file()}
    again = pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=6, **args)
    again_big = pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=10, cache_suffix="-n10", **args)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "zoo").rglob("*") if p.is_file()} == stamp  # loaded
    assert len(again) == len(main) and len(again_big) == len(big) > len(main)
    with pytest.raises(ValueError, match="cache_suffix"):
        pipeline.get_zoo(tmp_path, "mlp-tanh", digits, n_networks=6, cache_suffix="/../x", **args)


# -- skip_untrained: train and validate on the trained checkpoints only ------------------------------------------
def test_skip_untrained_round_trips_and_moves_a_run_to_a_folder_of_its_own():
    on = TrainConfig(skip_untrained=True)
    assert on.to_dict()["skip_untrained"] is True
    assert TrainConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    spec = NetSpec.mlp((64, 4, 10), "tanh")
    folder = lambda c: pipeline.run_dir("out", "mlp-tanh", "ce", c).name  # noqa: E731
    assert folder(TrainConfig()) != folder(on)  # a skipping run never reuses an all-checkpoint run's folder
    recipe = pipeline.Recipe.from_values({"meta_skip_untrained": True})
    assert recipe.train.skip_untrained and recipe.config(spec).skip_untrained


def test_training_splits_leave_out_exactly_the_epoch_0_checkpoints(zoo):
    every, trained = pipeline.training_splits(zoo), pipeline.training_splits(zoo, skip_untrained=True)
    assert set(every) == set(trained) == {"train", "val"}
    for split in ("train", "val"):
        sub = zoo.subset(split=split)
        keep = torch.as_tensor((sub.meta["epoch"] > 0).to_numpy().copy())
        assert trained[split][0][0].shape[0] == int(keep.sum()) == 2 * len(_ids(sub))  # checkpoints 1 and 2
        for (w_all, b_all), (w, b) in zip(every[split], trained[split]):
            assert torch.equal(w_all[keep], w) and torch.equal(b_all[keep], b)


def test_train_metanet_with_skip_untrained_trains_on_trained_checkpoints_only(zoo, digits, tmp_path, monkeypatch):
    seen = {}
    real_train = pipeline.runs.train

    def spy(spec, train_params, val_params, *args, **kwargs):
        seen["train"], seen["val"] = train_params[0][0].shape[0], val_params[0][0].shape[0]
        return real_train(spec, train_params, val_params, *args, **kwargs)

    monkeypatch.setattr(pipeline.runs, "train", spy)
    recipe = tiny_recipe(epochs=1, hidden=4, n_layers=1, batch_networks=4, device="cpu")
    pipeline.train_metanet(tmp_path, zoo, digits, recipe, progress=False)
    assert seen == {"train": 3 * 8, "val": 3 * 2}
    result = pipeline.train_metanet(tmp_path, zoo, digits, recipe.with_train(skip_untrained=True), progress=False)
    assert seen == {"train": 2 * 8, "val": 2 * 2}
    assert json.loads((result.out_dir / "result.json").read_text())["config"]["skip_untrained"] is True


def test_skip_untrained_on_a_zoo_of_untrained_networks_only_says_what_to_do(zoo, digits, tmp_path):
    from workbench.errors import ConfigError

    untrained = zoo.subset(epoch=0)
    with pytest.raises(ConfigError, match="only epoch-0.*meta_skip_untrained: false"):
        pipeline.training_splits(untrained, skip_untrained=True)


def test_run_cost_counts_the_checkpoints_a_skipping_run_leaves_out():
    from workbench.pipeline.runs import _run_cost

    job = {"family": "mlp-tanh", "method": "scalegmn", "recipe": tiny_recipe(epochs=8, mlp_epochs=4)}
    skipping = {**job, "recipe": job["recipe"].with_train(skip_untrained=True)}
    assert _run_cost(skipping) == pytest.approx(0.75 * _run_cost(job))
    cnn = {**job, "family": "cnn-tanh"}  # the MLP epochs apply to MLP families only
    assert _run_cost(cnn) / _run_cost(job) == pytest.approx(8 * (216 + 200) / (4 * (1440 + 200)), rel=0.05)


# -- l1_from_ce: an L1 run starts from the trained CE run of the same settings -------------------------------------
def test_l1_from_ce_round_trips_and_means_nothing_to_a_ce_run():
    on = TrainConfig(lam=0.01, l1_from_ce=True)
    assert on.to_dict()["l1_from_ce"] is True
    assert TrainConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    recipe = pipeline.Recipe.from_values({"meta_l1_from_ce": True})
    plain = pipeline.Recipe()
    spec = NetSpec.mlp((64, 4, 10), "tanh")
    # a CE run asked for it is the plain CE run (same config, same folder), so the L1 runs and the table share it
    assert recipe.config(spec, objective="ce", lam=0.01) == plain.config(spec, objective="ce", lam=0.01)
    l1 = recipe.config(spec, objective="l1", lam=0.01)
    assert l1.l1_from_ce and l1 != plain.config(spec, objective="l1", lam=0.01)
    with pytest.raises(Exception, match="l1_from_ce"):
        TrainConfig(l1_from_ce="yes")


def test_an_l1_run_with_l1_from_ce_starts_from_the_weights_of_its_ce_run(zoo, digits, tmp_path, monkeypatch):
    seen = []
    real_train = pipeline.runs.train

    def spy(spec, train_params, val_params, data, config, *args, **kwargs):
        seen.append((config.lam, kwargs.get("init_state")))
        return real_train(spec, train_params, val_params, data, config, *args, **kwargs)

    monkeypatch.setattr(pipeline.runs, "train", spy)
    plain = tiny_recipe(epochs=1, hidden=4, n_layers=1, batch_networks=4, device="cpu", skip_untrained=True)
    recipe = plain.with_train(l1_from_ce=True)
    result = pipeline.train_metanet(tmp_path, zoo, digits, recipe, objective="l1", lam=0.01, progress=False)
    assert [lam for lam, _ in seen] == [0.0, 0.01]  # the CE run was trained first, then the L1 run from it
    assert seen[0][1] is None
    ce_folder = pipeline.run_dir(tmp_path, zoo.spec.family, "ce", recipe.config(zoo.spec, objective="ce"))
    assert (ce_folder / "result.json").is_file() and result.out_dir != ce_folder
    ce_state = load_model(ce_folder / "best.pt", spec=zoo.spec).state_dict()
    init = seen[1][1]
    assert set(init) == set(ce_state) and all(torch.equal(init[k], ce_state[k]) for k in ce_state)
    assert json.loads((result.out_dir / "result.json").read_text())["config"]["l1_from_ce"] is True
    # a second L1 run reloads the finished CE run instead of training it again
    seen.clear()
    pipeline.train_metanet(tmp_path, zoo, digits, recipe, objective="l1", lam=0.02, progress=False)
    assert [lam for lam, _ in seen] == [0.02] and seen[0][1] is not None
    # negative control: without the switch an L1 run starts from a random initialisation
    seen.clear()
    pipeline.train_metanet(tmp_path, zoo, digits, plain, objective="l1", lam=0.01, progress=False)
    assert [(lam, init) for lam, init in seen] == [(0.01, None)]


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


def test_prefetch_runs_with_l1_from_ce_trains_the_ce_runs_first_each_once(monkeypatch):
    calls = []

    def record(fn, jobs, **kwargs):
        calls.append([(j["family"], j["method"], j["objective"], j["lam"]) for j in jobs])
        return [{} for _ in jobs]

    monkeypatch.setattr(pipeline.runs, "run_parallel", record)
    runs = [("cnn-tanh", "scalegmn", "l1", 0, 0.01), ("cnn-tanh", "scalegmn", "l1", 0, 0.02),
            ("mlp-tanh", "nfn", "ce", 0), ("cnn-tanh", "scalegmn", "ce", 0)]
    args = dict(data=pipeline.DataRecipe(), zoo=pipeline.ZooRecipe(8, 2), lam=0.007, workers=2, progress=False)
    done = pipeline.prefetch_runs("out", runs, recipe=tiny_recipe(l1_from_ce=True), **args)
    assert calls == [[("cnn-tanh", "scalegmn", "ce", 0.007), ("mlp-tanh", "nfn", "ce", 0.007)],
                     [("cnn-tanh", "scalegmn", "l1", 0.01), ("cnn-tanh", "scalegmn", "l1", 0.02)]]
    assert len(done) == 4
    calls.clear()  # negative control: without the switch, one round in the order given
    pipeline.prefetch_runs("out", runs, recipe=tiny_recipe(), **args)
    assert calls == [[("cnn-tanh", "scalegmn", "l1", 0.01), ("cnn-tanh", "scalegmn", "l1", 0.02),
                      ("mlp-tanh", "nfn", "ce", 0.007), ("cnn-tanh", "scalegmn", "ce", 0.007)]]


def test_lam_sweep_tunes_the_sgd_reference_per_lambda_on_validation_networks(zoo, digits, tmp_path):
    from workbench.baselines.warmstart import tune_sgd_lr

    recipe = tiny_recipe(epochs=1, hidden=4, n_layers=1, batch_networks=4, device="cpu")
    grid = [1e-4, 0.3]
    sweep = pipeline.lam_sweep(tmp_path, zoo, digits, recipe, [0.01, 0.03], sgd_epochs=(1,), sgd_lr=0.05,
                               sgd_lr_grid=grid, sgd_networks=1, progress=False)
    sgd = sweep[(sweep["kind"] == "sgd") & (sweep["epochs"] == 1)]
    assert len(sgd) == 2 and set(sgd["sgd_lr"]) <= set(grid) and set(sgd["label"]) == {"SGD (1 epoch)"}
    assert sweep.loc[sweep["kind"] != "sgd", "sgd_lr"].isna().all()
    assert sweep["chosen"].sum() <= 1 and set(sweep.loc[sweep["chosen"], "kind"]) <= {"one_shot"}
    val = zoo.subset(split="val")
    first = val.subset(mask=(val.meta["net_id"] == val.meta["net_id"].min()).to_numpy())
    for lam, lr in zip(sgd["lam"], sgd["sgd_lr"]):  # the tuner's own choice on the first validation network
        assert lr == tune_sgd_lr(zoo.spec, first.params, digits, lrs=grid, epochs=1, lam=lam)[0]
    fixed = pipeline.lam_sweep(tmp_path, zoo, digits, recipe, [0.01], sgd_epochs=(1,), sgd_lr=0.05, progress=False)
    assert list(fixed.loc[fixed["kind"] == "sgd", "sgd_lr"]) == [0.05]  # no grid: the given rate
