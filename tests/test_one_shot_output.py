"""NaN is never written as success: the finite check on every one shot's output in ``optimize``
(workbench/run/zoo_commands.py) and the value check of a metanetwork checkpoint at load time
(workbench/training/checkpoints.py).

A ReLU zoo far from the usual weight scale, float64 weights near 1e300, a float16 zoo whose logits overflow and a
tampered ``best.pt`` each end in one clear error that names the networks (or the tensor) and writes nothing;
``--drop-nonfinite`` leaves the bad networks out, named and counted. Negative controls: the same model on the
ordinary zoo writes every network."""
from __future__ import annotations

import json

import pytest
import torch

from workbench.__main__ import main
from workbench.data import load_dataset
from workbench.nets import NetSpec, init_params
from workbench.objective import evaluate
from workbench.training.checkpoints import CheckpointError, load_model
from workbench.training.train_config import TrainConfig
from workbench.training.optimize import train
from workbench.run.zoo_commands import NonFiniteOutput, optimize_zoo
from workbench.zoo import Zoo

from tiny import METANET, checkpoint, make_zoo, scaled


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "zoo"
    make_zoo(folder, n_networks=4)  # 8 entries: 4 networks x checkpoints 0 and 1
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory, zoo_dir):
    """``scrambled``: a metanetwork whose output changes the weights and, without the scale normalisation (as in the
    ablation's or an older run's checkpoint), grows faster than the weights' scale; ``normalised``: the same with
    ``scale_norm`` on (the default for ReLU), whose update is multiplied back by each network's scale;
    ``identity``: an initial one, which returns its input."""
    from dataclasses import replace

    folder, zoo = tmp_path_factory.mktemp("models"), Zoo.load(zoo_dir)
    plain = replace(METANET, meta=replace(METANET.meta, scale_norm=False))
    return {"scrambled": checkpoint(folder / "scrambled" / "best.pt", zoo, scramble=0.5, config=plain),
            "normalised": checkpoint(folder / "normalised" / "best.pt", zoo, scramble=0.5),
            "identity": checkpoint(folder / "identity" / "best.pt", zoo)}


def _saved(zoo: Zoo, folder):
    zoo.save(folder)
    return folder


def _finite(params) -> bool:
    return all(bool(torch.isfinite(t).all()) for w, b in params for t in (w, b))


def _entry_names(zoo: Zoo, rows) -> list[str]:
    return [f"net_id {int(zoo.meta['net_id'][i])} epoch {int(zoo.meta['epoch'][i])}" for i in rows]


def test_a_relu_zoo_far_from_the_usual_scale_is_refused_and_nothing_is_written(zoo_dir, models, tmp_path, capsys):
    zoo = Zoo.load(zoo_dir)
    big = _saved(scaled(zoo, 1e15), tmp_path / "big")
    out = tmp_path / "out"
    assert main(["optimize", str(models["scrambled"]), str(big), "--out", str(out), "--evaluate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the one shot of ") and err.count("\n") == 1
    assert "gives NaN or infinite weights for 8 of 8 networks (net_id 0 epoch 0" in err
    assert "input weights reach |w| = 1" in err and "e+15" in err and "nothing was written" in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == [
        ".out.workbench.lock"]  # no half-written folder, only the lock beside it
    # negative control: the same model on the zoo at its own scale writes every network, all finite
    assert main(["optimize", str(models["scrambled"]), str(zoo_dir), "--out", str(out), "--evaluate"]) == 0
    assert _finite(Zoo.load(out).params) and len(Zoo.load(out)) == 8


def test_with_the_scale_normalisation_the_far_zoo_gives_finite_weights_and_only_the_logits_overflow(
        zoo_dir, models, tmp_path):
    """The default ReLU metanet reads each network divided by its scale, so 1e15 weights give finite one-shot weights
    of that scale (written without --evaluate); their float32 logits overflow, which --evaluate refuses."""
    big = _saved(scaled(Zoo.load(zoo_dir), 1e15), tmp_path / "big")
    optimize_zoo(models["normalised"], big, tmp_path / "out")
    back = Zoo.load(tmp_path / "out")
    assert _finite(back.params) and 1e13 < float(back.params[0][0].abs().max()) < 1e17
    with pytest.raises(NonFiniteOutput, match=r"finite weights but NaN or infinite logits for 8 of 8"):
        optimize_zoo(models["normalised"], big, tmp_path / "again", evaluate=True)
    assert not (tmp_path / "again").exists()


def test_one_bad_network_among_good_ones_is_named_then_dropped_on_request(zoo_dir, models, tmp_path, capsys):
    zoo = Zoo.load(zoo_dir)
    rows = [2, 5]
    mixed = _saved(scaled(zoo, 1e15, rows=rows), tmp_path / "mixed")
    names = _entry_names(zoo, rows)
    with pytest.raises(NonFiniteOutput, match=r"for 2 of 8 networks \(" + ", ".join(names) + ";") as info:
        optimize_zoo(models["scrambled"], mixed, tmp_path / "out")
    assert "--drop-nonfinite" in str(info.value) and not (tmp_path / "out").exists()
    out = tmp_path / "kept"
    assert main(["optimize", str(models["scrambled"]), str(mixed), "--out", str(out), "--drop-nonfinite"]) == 0
    printed = capsys.readouterr().out
    assert "left out 2 of 8 networks whose one-shot output is not finite" in printed and names[0] in printed
    back = Zoo.load(out)
    assert len(back) == 6 and _finite(back.params)
    kept = [i for i in range(8) if i not in rows]
    assert back.meta[["net_id", "epoch"]].values.tolist() == zoo.meta[["net_id", "epoch"]].values[kept].tolist()
    summary = json.loads((out / "optimized.json").read_text())
    assert summary["dropped_nonfinite"] == 2 and summary["n_networks"] == 6 and summary["n_networks_input"] == 8
    assert [d["entry"] for d in summary["dropped"]] == names


def test_drop_nonfinite_with_every_network_bad_still_refuses(zoo_dir, models, tmp_path):
    big = _saved(scaled(Zoo.load(zoo_dir), 1e15), tmp_path / "big")
    with pytest.raises(NonFiniteOutput, match="every network is affected, so --drop-nonfinite would leave nothing"):
        optimize_zoo(models["scrambled"], big, tmp_path / "out", drop_nonfinite=True)
    assert not (tmp_path / "out").exists()


def test_float64_zoos_keep_their_dtype_and_1e300_weights_are_refused(zoo_dir, models, tmp_path):
    zoo = Zoo.load(zoo_dir)
    huge = _saved(scaled(zoo, 1e300, torch.float64), tmp_path / "huge")
    with pytest.raises(NonFiniteOutput, match="NaN or infinite weights for 8 of 8"):
        optimize_zoo(models["identity"], huge, tmp_path / "out", evaluate=True)
    plain = _saved(scaled(zoo, 1.0, torch.float64), tmp_path / "f64")
    summary = optimize_zoo(models["scrambled"], plain, tmp_path / "out", evaluate=True)
    back = Zoo.load(tmp_path / "out")
    assert back.params[0][0].dtype == torch.float64 and _finite(back.params)
    x, y = load_dataset("digits", seed=0).split("test")
    after = evaluate(back.spec, back.params, x.double(), y)["acc"].double()
    test = torch.as_tensor((back.meta["split"] == "test").to_numpy())  # the summary averages the test split
    assert summary["avg_acc_after"] == round(100 * float(after[test].mean()), 2)


def test_finite_weights_with_overflowing_logits_are_refused_under_evaluate(zoo_dir, models, tmp_path):
    """float16 weights 300x the usual scale: finite, but the forward pass overflows float16 (max 65504)."""
    loud = _saved(scaled(Zoo.load(zoo_dir), 300.0, torch.float16), tmp_path / "loud")
    with pytest.raises(NonFiniteOutput, match=r"finite weights but NaN or infinite logits for \d+ of 8 .*non-finite "
                                              r"logits before the one shot too"):
        optimize_zoo(models["identity"], loud, tmp_path / "out", evaluate=True)
    assert not (tmp_path / "out").exists()
    optimize_zoo(models["identity"], loud, tmp_path / "out")  # without --evaluate no logits are computed
    assert Zoo.load(tmp_path / "out").params[0][0].dtype == torch.float16


def test_a_float8_zoo_is_refused_by_name(zoo_dir, models, tmp_path, capsys):
    tiny = _saved(scaled(Zoo.load(zoo_dir), 1.0, torch.float8_e4m3fn), tmp_path / "f8")
    assert main(["optimize", str(models["identity"]), str(tiny), "--out", str(tmp_path / "o"), "--evaluate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds float8_e4m3fn weights" in err and "Convert the zoo to float32" in err


def _set(key, value):
    def edit(state):
        state[key].view(-1)[0] = value
    return edit


@pytest.mark.parametrize("key, value, match", [
    ("w_norm", 0.0, r"\['w_norm'\] \(the normalisation .*\) hold zero or negative values"),
    ("b_norm", -1.0, r"\['b_norm'\] \(the normalisation .*\) hold zero or negative values"),
    ("w_norm", float("nan"), r"\['w_norm'\] hold NaN or infinite values"),
    ("type_mul", float("inf"), r"\['type_mul'\] hold NaN or infinite values"),
], ids=["zero-w_norm", "negative-b_norm", "nan-w_norm", "inf-weight"])
def test_a_tampered_checkpoint_is_refused_at_load_time(zoo_dir, tmp_path, capsys, key, value, match):
    zoo = Zoo.load(zoo_dir)
    bad = checkpoint(tmp_path / "bad.pt", zoo, edit=_set(key, value))
    with pytest.raises(CheckpointError, match=match):
        load_model(bad)
    assert main(["optimize", str(bad), str(zoo_dir), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: its weights") and "damaged or was edited" in err
    assert not (tmp_path / "out").exists()
    load_model(checkpoint(tmp_path / "good.pt", zoo))  # negative control: the untampered file loads


def test_resuming_from_a_checkpoint_whose_best_weights_are_nan_is_refused(tmp_path):
    spec = NetSpec.mlp((4, 3, 2), "tanh")
    params = init_params(spec, 6, torch.Generator().manual_seed(0))
    train_p, val_p = [(w[:4], b[:4]) for w, b in params], [(w[4:], b[4:]) for w, b in params]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 2, 2, generator=g), torch.arange(16) % 2
    from workbench.data import Dataset

    data = Dataset("tiny", x, y, x, y, x, y)
    config = TrainConfig.from_dict(dict(hidden=4, n_layers=1, device="cpu", epochs=2, batch_networks=2,
                                        batch_images=8, warmup_steps=1, train_eval_networks=0))
    train(spec, train_p, val_p, data, config, tmp_path, progress=False, stop_after_epoch=0)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["best_state"] is not None
    next(v for v in ckpt["best_state"].values() if v.is_floating_point()).view(-1)[0] = float("nan")
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: its best weights \('best_state'\) .* NaN"):
        train(spec, train_p, val_p, data, config, tmp_path, progress=False)
