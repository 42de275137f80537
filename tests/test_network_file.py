"""``python -m workbench optimize MODEL net.pt --out new.pt`` (workbench/run/network_file.py): one network saved as a
state dict, read without unpickling code, optimized by OneShot, written atomically with a manifest; an --out that this
command did not write (or that changed since) is never replaced, and a refused command writes nothing."""
import hashlib
import json

import pytest
import torch
from torch import nn

from tiny import checkpoint, cnn_spec, make_zoo
from workbench.__main__ import main
from workbench.data import load_dataset
from workbench.objective import evaluate
from workbench.training.oneshot import OneShot, read_state_dict


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A scrambled metanetwork for the tiny digits CNN (1-3-3-10, 3x3 stride 2 padding 1), with run.json beside it."""
    folder = tmp_path_factory.mktemp("run")
    zoo = make_zoo(folder / "zoo", n_networks=2)
    best = checkpoint(folder / "run" / "best.pt", zoo, scramble=0.3)
    (best.parent / "run.json").write_text(json.dumps({"dataset": "digits", "zoo": {"seed": 0}}))
    return best


def _network(path, dtype=torch.float32):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), nn.ReLU(), nn.Conv2d(3, 3, 3, 2, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10)).to(dtype)
    torch.save(net.state_dict(), path)
    return net


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_output_is_the_one_shot_with_the_inputs_keys_and_dtype(model_path, tmp_path, capsys, dtype):
    net = _network(tmp_path / "net.pt", dtype)
    assert main(["optimize", str(model_path), str(tmp_path / "net.pt"), "--out", str(tmp_path / "new.pt"),
                 "--evaluate"]) == 0
    new = torch.load(tmp_path / "new.pt", weights_only=True)
    expected = OneShot.load(model_path).state_dict(net)
    assert list(new) == list(net.state_dict()) and all(torch.equal(new[k], v) for k, v in expected.items())
    assert all(v.dtype == dtype for v in new.values())
    assert not torch.equal(new["0.weight"], net.state_dict()["0.weight"])
    manifest = json.loads((tmp_path / "new.pt.optimized.json").read_text())
    assert manifest["output_sha256"] == hashlib.sha256((tmp_path / "new.pt").read_bytes()).hexdigest()
    x, y = load_dataset("digits", seed=0).split("test")
    accuracy = {}
    for when, state in (("before", net.state_dict()), ("after", new)):
        spec, params = read_state_dict(state, cnn_spec())
        accuracy[when] = round(100 * float(evaluate(spec, params, x.to(dtype), y)["acc"][0]), 2)
    assert (manifest["acc_before"], manifest["acc_after"]) == (accuracy["before"], accuracy["after"])
    assert f"{accuracy['before']:.2f} -> {accuracy['after']:.2f} %" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        "net.pt", "new.pt", "new.pt.optimized.json"]  # no temporaries left behind


def test_only_an_output_of_this_command_is_replaced(model_path, tmp_path, capsys):
    _network(tmp_path / "net.pt")
    out = tmp_path / "new.pt"
    args = ["optimize", str(model_path), str(tmp_path / "net.pt"), "--out", str(out)]
    assert main(args) == 0 and main(args) == 0  # its own output: replaced
    out.write_bytes(out.read_bytes() + b"\0")  # changed since: no longer provably this command's
    assert main(args) == 1
    assert "was not written by `optimize`" in capsys.readouterr().err
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"my own file")
    assert main(["optimize", str(model_path), str(tmp_path / "net.pt"), "--out", str(mine)]) == 1
    assert mine.read_bytes() == b"my own file"
    assert main(["optimize", str(model_path), str(tmp_path / "net.pt"), "--out", str(tmp_path / "net.pt")]) == 1
    assert "is the input network" in capsys.readouterr().err


def test_files_that_are_no_plain_state_dict_are_refused_and_nothing_is_written(model_path, tmp_path, capsys):
    net = _network(tmp_path / "net.pt")
    torch.save(net, tmp_path / "whole.pt")  # a pickled module: loading it would run code
    bn = nn.Sequential(nn.Linear(64, 10), nn.BatchNorm1d(10))
    torch.save(bn.state_dict(), tmp_path / "bn.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    cases = {"whole.pt": "needs code to be unpickled", "bn.pt": "holds '1.running_mean'",
             "list.pt": "not a state dict"}
    for name, message in cases.items():
        assert main(["optimize", str(model_path), str(tmp_path / name), "--out", str(tmp_path / "out.pt")]) == 1
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out.pt").exists()
