"""The product surface: ``python -m workbench zoo`` and ``python -m workbench optimize``
(workbench/run/zoo_commands.py).

Round trips in both zoo formats (the output folder read by the same loader holds exactly the optimized weights),
``--evaluate`` numbers that are :func:`workbench.objective.evaluate`'s, and bad input -- a model for another
architecture, a missing model, an empty, foreign or corrupt zoo folder, an ``--out`` that is the input, holds it
or is someone else's folder -- refused with one clear WorkbenchError and nothing written."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.__main__ import main
from workbench.data import load_dataset
from workbench.errors import WorkbenchError
from workbench.nets import NetSpec, small_cnn_zoo_spec
from workbench.objective import evaluate
from workbench.metanet import MetanetConfig
from workbench.training.checkpoints import CheckpointError, load_model
from workbench.training.train_config import TrainConfig, build_model
from workbench.training.optimize import train
from workbench.system.paths import OutputFolderError
from workbench.run.zoo_commands import generate_zoo, optimize_zoo, zoo_format
from workbench.zoo import Zoo, ZooError, default_spec, generate, load_small_cnn_zoo

from strategies import write_small_cnn_zoo

SPEC = NetSpec.cnn(1, (3, 3), 10, kernel_size=3, stride=2, padding=1, activation="tanh", image_size=8)
METANET = TrainConfig(epochs=1, batch_networks=4, batch_images=32, warmup_steps=1, device="cpu",
                      meta=MetanetConfig(hidden=4, n_layers=1))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory, digits):
    """A tiny digits CNN zoo on disk: 10 networks x checkpoints 0 and 1 (final)."""
    folder = tmp_path_factory.mktemp("zoo") / "zoo"
    generate(SPEC, digits, 10, epochs=1, checkpoints=[0], seed=0, progress=False).save(folder)
    return folder


def _checkpoint(folder, spec, params, scramble=0.0):
    """An untrained metanetwork checkpoint for ``spec``, written like train() writes best.pt. At initialisation the
    metanet returns its input; ``scramble`` adds Gaussian noise of that size to every weight so that it does not."""
    torch.manual_seed(0)
    model = build_model(spec, METANET).fit_normalization(params)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scramble * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"spec": spec.to_dict(), "config": METANET.to_dict(), "model": model.state_dict()}, folder / "best.pt")
    return folder / "best.pt"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, zoo_dir, digits):
    """A metanetwork trained for one epoch on the zoo's training networks (best.pt as train() writes it)."""
    zoo = Zoo.load(zoo_dir)
    out = tmp_path_factory.mktemp("metanet")
    train(SPEC, zoo.subset(split="train").params, zoo.subset(split="val").params, digits, METANET, out,
          progress=False)
    return out / "best.pt"


def _equal(a, b):
    return all(torch.equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))


# -- workbench format -------------------------------------------------------------------------------------------
def test_workbench_zoo_round_trip_holds_exactly_the_one_shot_weights(zoo_dir, model_path, tmp_path):
    out = tmp_path / "optimized"
    summary = optimize_zoo(model_path, zoo_dir, out)
    zoo, back = Zoo.load(zoo_dir), Zoo.load(out)
    expected = load_model(model_path, spec=zoo.spec).optimize(zoo.spec, zoo.params)
    assert _equal(back.params, expected)
    assert not _equal(back.params, zoo.params)  # negative control: the weights did change
    assert back.spec == zoo.spec and back.dataset == zoo.dataset and back.split_seed == zoo.split_seed
    assert back.meta[["net_id", "epoch", "split"]].equals(zoo.meta[["net_id", "epoch", "split"]])
    # the input's accuracies no longer describe the new weights: kept as *_before, not passed off as current
    assert back.meta["test_acc"].isna().all()
    np.testing.assert_array_equal(back.meta["test_acc_before"].to_numpy(), zoo.meta["test_acc"].to_numpy())
    assert summary["n_networks"] == len(zoo) == 20 and summary["format"] == "workbench"
    assert json.loads((out / "optimized.json").read_text()) == summary
    assert zoo_format(out) == "workbench"


def test_evaluate_reports_the_accuracies_of_evaluate_on_the_test_split(zoo_dir, tmp_path, digits):
    zoo = Zoo.load(zoo_dir)
    scrambler = _checkpoint(tmp_path / "scrambled", zoo.spec, zoo.params, scramble=0.5)  # changes accuracies
    summary = optimize_zoo(scrambler, zoo_dir, tmp_path / "out", evaluate=True)
    back = Zoo.load(tmp_path / "out")
    x, y = digits.split("test")
    before = evaluate(zoo.spec, zoo.params, x, y)["acc"].double()
    after = evaluate(zoo.spec, back.params, x, y)["acc"].double()
    test = torch.as_tensor((zoo.meta["split"] == "test").to_numpy())  # averages: networks no metanet trained on
    assert summary["scored_split"] == "test" and summary["scored_entries"] == int(test.sum())
    assert summary["avg_acc_before"] == round(100 * float(before[test].mean()), 2)
    assert summary["avg_acc_after"] == round(100 * float(after[test].mean()), 2)
    assert summary["max_acc_before"] == round(100 * float(before[test].max()), 2)
    assert summary["max_acc_after"] == round(100 * float(after[test].max()), 2)
    assert summary["avg_acc_before"] != summary["avg_acc_after"]
    assert summary["avg_acc_before"] != round(100 * float(before.mean()), 2)  # not the mean over every split
    train = torch.as_tensor((zoo.meta["split"] == "train").to_numpy())
    assert summary["by_split"]["train"] == {"entries": int(train.sum()),
                                            "avg_acc_before": round(100 * float(before[train].mean()), 2),
                                            "avg_acc_after": round(100 * float(after[train].mean()), 2)}
    np.testing.assert_allclose(back.meta["test_acc"].to_numpy(), after.numpy())
    # the zoo's own record of its test accuracies agrees with the before numbers (same data, same split)
    np.testing.assert_allclose(zoo.meta["test_acc"].to_numpy(), before.numpy(), atol=1e-6)


def test_a_second_run_replaces_its_own_output_but_never_another_zoo(zoo_dir, model_path, tmp_path):
    out = tmp_path / "out"
    summary = optimize_zoo(model_path, zoo_dir, out)
    (out / "optimized.json").write_text(json.dumps({**summary, "date": "stale"}))
    optimize_zoo(model_path, zoo_dir, out)
    assert json.loads((out / "optimized.json").read_text())["date"] != "stale"
    other = tmp_path / "other-zoo"
    Zoo.load(zoo_dir).save(other)  # a real zoo that `optimize` did not write: replacing it would lose it
    with pytest.raises(OutputFolderError, match="was not written by `optimize`"):
        optimize_zoo(model_path, zoo_dir, other)
    assert _equal(Zoo.load(other).params, Zoo.load(zoo_dir).params)


# -- Small CNN Zoo format ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_cnn_zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small") / "small"
    write_small_cnn_zoo(folder, n_networks=8, steps=(0, 86))
    tanh = load_small_cnn_zoo(folder, activation="tanh")
    return folder, _checkpoint(tmp_path_factory.mktemp("small-model"), tanh.spec, tanh.params, scramble=0.5)


def test_small_cnn_zoo_round_trip_holds_exactly_the_one_shot_weights(small_cnn_zoo, tmp_path):
    folder, model = small_cnn_zoo
    out = tmp_path / "out"
    summary = optimize_zoo(model, folder, out)
    zoo = load_small_cnn_zoo(folder, activation="tanh")  # the model's activation picks the networks
    back = load_small_cnn_zoo(out, activation="tanh")
    expected = load_model(model, spec=zoo.spec).optimize(zoo.spec, zoo.params)
    assert _equal(back.params, expected)
    assert not _equal(back.params, zoo.params)
    assert summary["format"] == "small-cnn-zoo" and summary["n_networks"] == len(zoo) == 4
    assert (out / "layout.csv").read_bytes() == (folder / "layout.csv").read_bytes()
    with gzip.open(folder / "metrics.csv.gz", "rt") as fh:
        source = pd.read_csv(fh)
    with gzip.open(out / "metrics.csv.gz", "rt") as fh:
        written = pd.read_csv(fh)
    kept = source.iloc[zoo.meta["net_id"].to_numpy()].reset_index(drop=True)  # the kept rows, in order
    # numbers of the old weights move to *_before; without --evaluate test_accuracy stays (the loader needs it),
    # flagged as not measured on these weights
    stale = {"train_accuracy": "train_accuracy_before", "train_loss": "train_loss_before",
             "test_loss": "test_loss_before"}
    pd.testing.assert_frame_equal(written[list(kept.rename(columns=stale).columns)], kept.rename(columns=stale))
    assert not set(stale) & set(written.columns)
    np.testing.assert_array_equal(written["test_accuracy_before"], kept["test_accuracy"])
    assert not written["workbench.evaluated"].any()
    # the source's split and network ids travel with the rows; its training networks are marked
    assert written["workbench.split"].tolist() == zoo.meta["split"].tolist()
    assert written["workbench.net_id"].tolist() == zoo.meta["net_id"].tolist()
    assert written["seen_in_training"].tolist() == (zoo.meta["split"] == "train").tolist()
    assert np.load(out / "weights.npy").shape == (4, small_cnn_zoo_spec().n_params)
    assert zoo_format(out) == "small-cnn-zoo"


def test_model_for_another_architecture_is_refused_on_a_small_cnn_zoo(small_cnn_zoo, model_path, tmp_path):
    folder, _ = small_cnn_zoo
    with pytest.raises(CheckpointError, match=r"was trained for CNN .*channels \(3, 3\).*Small CNN Zoo"):
        optimize_zoo(model_path, folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_corrupt_small_cnn_zoo_is_a_zoo_error(small_cnn_zoo, tmp_path):
    folder, model = small_cnn_zoo
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("layout.csv", "metrics.csv.gz"):
        (broken / name).write_bytes((folder / name).read_bytes())
    (broken / "weights.npy").write_bytes((folder / "weights.npy").read_bytes()[:300])  # truncated
    with pytest.raises(ZooError, match=r"cannot read the zoo at .*broken.*weights.npy"):
        optimize_zoo(model, broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- bad input ---------------------------------------------------------------------------------------------------
def test_model_for_another_architecture_names_both(zoo_dir, tmp_path):
    mlp = NetSpec.mlp((64, 4, 10), "tanh")
    other = _checkpoint(tmp_path / "mlp", mlp, [(torch.randn(3, 4, 64), torch.randn(3, 4)),
                                                 (torch.randn(3, 10, 4), torch.randn(3, 10))])
    with pytest.raises(CheckpointError) as info:
        optimize_zoo(other, zoo_dir, tmp_path / "out")
    assert mlp.describe() in str(info.value) and SPEC.describe() in str(info.value)
    assert "retrain" in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["same folder", "holds the input", "foreign folder", "a file"])
def test_bad_out_folders_are_refused_before_any_work(zoo_dir, model_path, tmp_path, case):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    (tmp_path / "file").write_text("keep me")
    out, message = {"same folder": (zoo_dir, "is the input zoo"),
                    "holds the input": (zoo_dir.parent, "holds the input zoo"),
                    "foreign folder": (foreign, r"was not written by `optimize`.*notes.txt"),
                    "a file": (tmp_path / "file", "is a file, not a folder")}[case]
    listing = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    with pytest.raises(OutputFolderError, match=message):
        optimize_zoo(model_path, zoo_dir, out)
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else None) == listing
    assert (foreign / "notes.txt").read_text() == (tmp_path / "file").read_text() == "keep me"


def test_empty_folder_is_allowed_as_out_but_not_as_input(zoo_dir, model_path, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooError, match=r"neither a workbench zoo .* it holds nothing.*python -m workbench zoo"):
        optimize_zoo(model_path, empty, tmp_path / "out")
    optimize_zoo(model_path, zoo_dir, empty)
    assert zoo_format(empty) == "workbench"


def test_corrupt_zoo_and_missing_model_are_workbench_errors(zoo_dir, model_path, tmp_path):
    corrupt = tmp_path / "corrupt"
    Zoo.load(zoo_dir).save(corrupt)
    data = bytearray((corrupt / "params.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (corrupt / "params.safetensors").write_bytes(bytes(data))
    with pytest.raises(ZooError, match=r"cannot read the zoo at .*checksum.*Regenerate it"):
        optimize_zoo(model_path, corrupt, tmp_path / "out")
    with pytest.raises(CheckpointError, match=r"the model .*nope.pt does not exist"):
        optimize_zoo(tmp_path / "nope.pt", zoo_dir, tmp_path / "out")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage.pt: refused to unpickle"):
        optimize_zoo(tmp_path / "garbage.pt", zoo_dir, tmp_path / "out")
    with pytest.raises(WorkbenchError, match="batch-size must be >= 1"):
        optimize_zoo(model_path, zoo_dir, tmp_path / "out", batch_size=0)
    assert not (tmp_path / "out").exists()


# -- the command line --------------------------------------------------------------------------------------------
def test_cli_optimize_prints_networks_time_and_accuracies(zoo_dir, model_path, tmp_path, capsys):
    assert main(["optimize", str(model_path), str(zoo_dir), "--out", str(tmp_path / "out"), "--evaluate",
                 "--batch-size", "7"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "optimized.json").read_text())
    assert f"optimized 20 networks (workbench format) in {summary['ms_per_network']:.3f} ms per network" in printed
    assert (f"average {summary['avg_acc_before']:.2f} -> {summary['avg_acc_after']:.2f} %, "
            f"max {summary['max_acc_before']:.2f} -> {summary['max_acc_after']:.2f} %") in printed
    assert main(["optimize", str(model_path), str(zoo_dir), "--out", str(tmp_path / "plain")]) == 0
    assert "test accuracy" not in capsys.readouterr().out


def test_cli_errors_are_one_error_line(zoo_dir, model_path, tmp_path, capsys):
    assert main(["optimize", str(model_path), str(zoo_dir), "--out", str(zoo_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --out") and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert main(["optimize", str(tmp_path / "nope.pt"), str(zoo_dir), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.startswith("error: the model")
    assert main(["optimize", str(model_path), str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "is neither a workbench zoo" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", str(model_path), str(zoo_dir)])
    assert exit_info.value.code == 2 and "error: the following arguments are required: --out" in capsys.readouterr().err


PARAMS = "name: tiny\nseed: 3\ndataset: digits\nn_networks: 8\nzoo_epochs: 1\ndevice: cpu\n"


def test_cli_zoo_generates_notebook_03s_zoo(tmp_path, capsys, digits):
    (tmp_path / "p.yaml").write_text(PARAMS)
    out = tmp_path / "zoo"
    assert main(["zoo", str(tmp_path / "p.yaml"), "--family", "mlp-relu", "--seed", "1", "--out", str(out)]) == 0
    spec = default_spec("mlp-relu")
    assert f"mlp-relu zoo written to {out}: 8 networks, 16 entries" in capsys.readouterr().out
    zoo = Zoo.load(out)
    same = generate(spec, load_dataset("digits", seed=1), 8, epochs=1, checkpoints=[0], seed=1, progress=False)
    assert zoo.spec == spec and _equal(zoo.params, same.params)  # --seed 1 overrides the file's seed 3
    assert zoo.info["generation"] == same.info["generation"]


def test_cli_zoo_refuses_bad_input_with_an_error_line(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(PARAMS)
    assert main(["zoo", str(tmp_path / "p.yaml"), "--family", "mlp-sigmoid", "--out", str(tmp_path / "z")]) == 2
    assert capsys.readouterr().err.startswith("error: --family is 'mlp-sigmoid', but must be one of")
    # a non-empty folder that is not a zoo: refused before generating anything (nothing written into it)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    assert main(["zoo", str(tmp_path / "p.yaml"), "--family", "mlp-tanh", "--out", str(tmp_path / "d")]) == 1
    assert "was not written by `zoo` (it holds files `zoo` does not write: notes.txt" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "p.yaml"]
    assert main(["zoo", str(tmp_path / "missing.yaml"), "--family", "mlp-tanh", "--out", str(tmp_path / "z")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(OutputFolderError, match="holds the input params file"):
        generate_zoo(tmp_path / "p.yaml", "mlp-tanh", tmp_path)
    with pytest.raises(ZooError, match="unknown family 'mlp-sigmoid'"):  # the API's own check
        generate_zoo(tmp_path / "p.yaml", "mlp-sigmoid", tmp_path / "z")
