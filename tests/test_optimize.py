"""Meta-optimizer training: it learns, resumes exactly after a kill, guards against NaNs, and runs under DDP."""
import json
import os
import socket

import pytest
import torch

from workbench.nets import NetSpec, init_params, select
from workbench.objective import evaluate
from workbench.training import optimize
from workbench.metanet import MetanetConfig
from workbench.training.checkpoints import CheckpointError, load_model
from workbench.training.train_config import TrainConfig, build_model
from workbench.training.optimize import train

from recipes import tiny_recipe  # noqa: E402
from strategies import tiny_data  # noqa: E402

SPEC = NetSpec.mlp((6, 5, 3), "tanh")




def tiny_zoo(n=24, seed=0):
    return init_params(SPEC, n, torch.Generator().manual_seed(seed), init_scale=2.0)


CONFIG = TrainConfig(epochs=4, batch_networks=8, batch_images=32, lr=0.01, warmup_steps=2, device="cpu",
                     meta=MetanetConfig(hidden=8, n_layers=2))


def state_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_reduces_validation_loss_and_writes_artifacts(tmp_path):
    data, zoo = tiny_data(), tiny_zoo(48)
    config = TrainConfig.from_dict({**CONFIG.to_dict(), "epochs": 8})
    result = train(SPEC, select(zoo, slice(0, 32)), select(zoo, slice(32, 48)), data, config, tmp_path, progress=False)
    losses = [h["val_loss"] for h in result.history]
    assert min(losses) < losses[0] - 1e-3, losses
    assert (tmp_path / "best.pt").exists() and (tmp_path / "checkpoint.pt").exists()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == list(range(8))
    reloaded = load_model(tmp_path / "best.pt")
    assert state_equal(reloaded.state_dict(), result.model.state_dict())
    # the returned model is the best-validation one
    assert result.best_val_loss == pytest.approx(min(losses))


def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    data, zoo = tiny_data(), tiny_zoo()
    tr, va = select(zoo, slice(0, 16)), select(zoo, slice(16, 24))
    full = train(SPEC, tr, va, data, CONFIG, tmp_path / "full", progress=False)
    # "kill" after epoch 1: the checkpoint holds epochs 0-1 only
    train(SPEC, tr, va, data, CONFIG, tmp_path / "resumed", progress=False, stop_after_epoch=1)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1
    resumed = train(SPEC, tr, va, data, CONFIG, tmp_path / "resumed", progress=False)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    assert state_equal(resumed.model.state_dict(), full.model.state_dict())


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    data, zoo = tiny_data(), tiny_zoo()
    tr, va = select(zoo, slice(0, 16)), select(zoo, slice(16, 24))
    train(SPEC, tr, va, data, CONFIG, tmp_path, progress=False, stop_after_epoch=0)
    other = TrainConfig.from_dict({**CONFIG.to_dict(), "hidden": 12})
    with pytest.raises(ValueError, match="different configuration"):
        train(SPEC, tr, va, data, other, tmp_path, progress=False)


def test_non_finite_loss_is_skipped_logged_and_never_saved(tmp_path, monkeypatch):
    data, zoo = tiny_data(), tiny_zoo()
    real = optimize.objective
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] in (2, 3) else out

    monkeypatch.setattr(optimize, "objective", flaky)
    result = train(SPEC, select(zoo, slice(0, 16)), select(zoo, slice(16, 24)), data, CONFIG, tmp_path, progress=False)
    events = [e for h in result.history for e in h.get("events", [])]
    assert len(events) == 2 and all("non-finite" in e["event"] for e in events)
    assert events[-1]["lr_scale"] == 0.25
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in best["model"].values())


#: the "config" of a best.pt written before MetanetConfig existed (CONFIG as that code stored it: one flat dict with the
#: metanet's fields beside the training ones, "model" left out at "scalegmn")
OLD_CONFIG_DICT = {"lam": 0.0, "epochs": 4, "batch_networks": 8, "batch_images": 32, "lr": 0.01, "weight_decay": 0.01,
                   "warmup_steps": 2, "grad_clip": 10.0, "hidden": 8, "n_layers": 2, "bidirectional": True,
                   "symmetry": None, "dropout": 0.0, "seed": 0, "device": "cpu", "amp": True, "val_images": None,
                   "val_networks": None, "noise": 0.0, "group_augment": False, "augment_scales": (0.25, 4.0),
                   "patience": None, "train_eval_networks": 128, "gate": True}


def test_a_checkpoint_in_the_old_flat_format_loads_and_resumes(tmp_path):
    config = TrainConfig.from_dict(OLD_CONFIG_DICT)  # the converter: each flat name goes to its class
    assert config == CONFIG and config.meta == MetanetConfig(hidden=8, n_layers=2)
    assert {k: config.to_dict()[k] for k in OLD_CONFIG_DICT} == OLD_CONFIG_DICT  # the rest at its defaults
    torch.manual_seed(0)
    state = build_model(SPEC, config).state_dict()
    torch.save({"spec": SPEC.to_dict(), "config": OLD_CONFIG_DICT, "model": state, "epoch": 0, "val_loss": 1.0},
               tmp_path / "best.pt")
    model = load_model(tmp_path / "best.pt", spec=SPEC)
    assert (model.hidden, len(model.layers), model.gate, model.symmetry) == (8, 2, True, "sign")
    assert state_equal(model.state_dict(), state)
    nfn = {**OLD_CONFIG_DICT, "model": "nfn", "symmetry": "none"}
    torch.save({"spec": SPEC.to_dict(), "config": nfn, "model": build_model(SPEC, TrainConfig.from_dict(nfn))
                .state_dict()}, tmp_path / "nfn.pt")
    assert type(load_model(tmp_path / "nfn.pt")).__name__ == "NFN"
    # a run stopped by the old code resumes: its checkpoint.pt holds the old dict, which is this config's
    data, zoo = tiny_data(), tiny_zoo()
    tr, va = select(zoo, slice(0, 16)), select(zoo, slice(16, 24))
    train(SPEC, tr, va, data, CONFIG, tmp_path / "run", progress=False, stop_after_epoch=1)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    torch.save({**saved, "config": OLD_CONFIG_DICT}, tmp_path / "run" / "checkpoint.pt")
    resumed = train(SPEC, tr, va, data, CONFIG, tmp_path / "run", progress=False)
    assert [h["epoch"] for h in resumed.history] == list(range(CONFIG.epochs))


def test_best_and_checkpoint_files_share_one_layout(tmp_path):
    data, zoo = tiny_data(), tiny_zoo()
    train(SPEC, select(zoo, slice(0, 16)), select(zoo, slice(16, 24)), data, CONFIG, tmp_path, progress=False,
          stop_after_epoch=1)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(best) == {"spec", "config", "model", "epoch", "val_loss"}
    assert set(ckpt) == {"spec", "config", "model", "optimizer", "epoch", "step", "lr_scale", "history", "best_epoch",
                         "best_val_loss", "best_state"}
    assert best["config"] == ckpt["config"] == CONFIG.to_dict() and best["epoch"] == ckpt["best_epoch"]
    assert best["val_loss"] == ckpt["best_val_loss"] and state_equal(best["model"], ckpt["best_state"])


def test_checkpoints_load_without_code_execution(tmp_path):
    evil = tmp_path / "best.pt"

    witness = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {witness}",))

    torch.save({"spec": SPEC.to_dict(), "payload": Boom()}, evil)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_model(evil)
    assert not witness.exists(), "loading a checkpoint ran code"
    with pytest.raises(CheckpointError, match="no metanetwork checkpoint"):
        load_model(tmp_path / "missing.pt")


def test_one_shot_improves_tiny_zoo():
    data, zoo = tiny_data(), tiny_zoo(48)
    config = TrainConfig.from_dict({**CONFIG.to_dict(), "epochs": 10})
    result = train(SPEC, select(zoo, slice(0, 32)), select(zoo, slice(32, 40)), data, config, progress=False)
    test = select(zoo, slice(40, 48))
    new, seconds = optimize.one_shot(result.model, SPEC, test)
    before = evaluate(SPEC, test, data.x_test, data.y_test)["ce"].mean()
    after = evaluate(SPEC, new, data.x_test, data.y_test)["ce"].mean()
    assert after < before and seconds > 0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data, zoo = tiny_data(), tiny_zoo()
        result = train(SPEC, select(zoo, slice(0, 16)), select(zoo, slice(16, 24)), data, CONFIG,
                       out_dir if rank == 0 else None, progress=False)
        if rank == 0:
            torch.save({"history": result.history, "state": result.model.state_dict()}, os.path.join(out_dir, "ddp.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_one_process(tmp_path):
    """Two gloo ranks, each taking half of every batch of networks, train the same model as one process."""
    import torch.multiprocessing as mp

    data, zoo = tiny_data(), tiny_zoo()
    single = train(SPEC, select(zoo, slice(0, 16)), select(zoo, slice(16, 24)), data, CONFIG, progress=False)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for a, b in zip(ddp["history"], single.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    for k, v in single.model.state_dict().items():
        assert torch.allclose(ddp["state"][k], v, rtol=1e-4, atol=1e-5), k


def test_pipeline_never_reuses_a_run_trained_for_another_zoo(tmp_path):
    """A cached metanet run is reused only for the same config, architecture and zoo (a stale model trained for
    another architecture once broke notebooks 05/06)."""
    import pandas as pd

    from workbench import pipeline
    from workbench.zoo import Zoo

    data = tiny_data()

    def make_zoo(spec, seed):
        params = init_params(spec, 20, torch.Generator().manual_seed(seed))
        meta = pd.DataFrame({"net_id": range(20), "epoch": 0, "split": ["train"] * 10 + ["val"] * 4 + ["test"] * 6})
        for col in ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "lr", "init_scale",
                    "l2", "dropout", "train_fraction", "batch_size"):
            meta[col] = 0.0
        meta["optimizer"] = "sgd"
        return Zoo(spec, params, meta, "tiny", info={"generation": {"seed": seed, "widths": list(spec.widths)}})

    recipe = tiny_recipe(epochs=1, batch_networks=4, batch_images=16, hidden=4, n_layers=1, device="cpu")
    first = pipeline.train_metanet(tmp_path, make_zoo(SPEC, 0), data, recipe, progress=False)
    again = pipeline.train_metanet(tmp_path, make_zoo(SPEC, 0), data, recipe, progress=False)
    assert state_equal(first.model.state_dict(), again.model.state_dict())
    wider = NetSpec.mlp((6, 7, 3), "tanh")
    other = pipeline.train_metanet(tmp_path, make_zoo(wider, 0), data, recipe, progress=False)
    assert other.model.spec == wider
    new_zoo = pipeline.train_metanet(tmp_path, make_zoo(SPEC, 1), data, recipe, progress=False)
    assert json.loads((new_zoo.out_dir / "run.json").read_text())["zoo"]["seed"] == 1
