"""The paper's setting (params/cifar10gs.yaml) on format-exact stand-ins: a Small CNN Zoo of briefly trained networks
and CIFAR-10 python batches, both written here (tests/standins.py). Paths and devices are checked before a run, the
estimate counts what the notebooks do, and (slow) the whole cifar10gs sequence runs on the stand-ins."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.__main__ import main
from workbench.run.calibration import UnitCosts
from workbench.data import load_cifar10_gs
from workbench.run.estimate import check_run, estimate
from workbench.memory import GIB
from workbench.objective import evaluate
from workbench.run.params import list_notebooks, load_params, notebook_key
from workbench.run.preflight import PreflightError, check_inputs
from workbench.system.paths import REPO_ROOT
from workbench.zoo import load_small_cnn_zoo

from standins import write_cifar10_batches, write_trained_small_cnn_zoo

CIFAR10GS = REPO_ROOT / "params" / "cifar10gs.yaml"
NOTEBOOKS = {notebook_key(nb): nb for nb in list_notebooks()}
TINY = """\
extends: {base}
name: {name}
data_path: {data}
zoo_path: {zoo}
device: cpu
workers: 2
n_seeds: 1
meta_epochs: 2
meta_hidden: 8
meta_n_layers: 1
meta_batch_networks: 4
meta_batch_images: 32
meta_patience: 2
sgd_epochs: [1, 2]
sgd_lr_grid: [0.01, 0.1]
eval_networks: 6
sequential_sample: 1
finetune_epochs: 1
methods: [scalegmn, gmn]
scaling_sizes: [3, 6]
scaling_seeds: [0]
scaling_steps: 4
lam_values: [0.01]
lam_sgd_epochs: [1]
"""


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    cifar = write_cifar10_batches(root)
    data = load_cifar10_gs(cifar)
    zoo = write_trained_small_cnn_zoo(root / "small-cnn-zoo" / "cifar10", data, n_networks=48, epochs=3)
    return root, cifar, zoo, data


def _params(root: Path, standin, name: str = "paper-standin", extra: str = "") -> Path:
    _, cifar, zoo, _ = standin
    path = root / f"{name}.yaml"
    path.write_text(TINY.format(base=CIFAR10GS, name=name, data=cifar, zoo=zoo) + textwrap.dedent(extra))
    return path


def test_the_standin_imports_exactly(standin):
    """The importer reads the stand-in's TensorFlow rows back to networks whose accuracy on the CIFAR-10 batches is
    the one the files record, at every step."""
    _, _, zoo_dir, data = standin
    for activation in ("tanh", "relu"):
        zoo = load_small_cnn_zoo(zoo_dir, activation=activation, steps="all")
        assert sorted(zoo.meta["epoch"].unique()) == [0, 1, 2, 3] and zoo.meta["net_id"].nunique() == 24
        measured = evaluate(zoo.spec, zoo.params, *data.split("test"))["acc"].double().numpy()
        np.testing.assert_allclose(measured, zoo.meta["test_acc"].to_numpy(), atol=1e-6)
        by_epoch = zoo.meta.groupby("epoch")["test_acc"].mean()
        assert by_epoch[3] > by_epoch[0] + 0.05  # briefly trained: better than at initialisation


def test_the_shipped_file_names_what_this_machine_lacks_in_one_error(capsys):
    if torch.cuda.is_available() or Path("/data/cifar-10-batches-py").exists():
        pytest.skip("this machine has what params/cifar10gs.yaml points at")
    assert main(["validate", str(CIFAR10GS)]) == 2
    err = capsys.readouterr().err
    assert "is valid, but this machine cannot run it" in err
    assert "device of notebook 03: device 'cuda' was requested but no CUDA device is available" in err
    assert "data_path: /data/cifar-10-batches-py does not exist" in err
    assert "zoo_path (cnn-tanh, notebook 03): /data/small-cnn-zoo/cifar10 is not a directory" in err
    assert main(["validate", str(CIFAR10GS), "--static"]) == 0  # the file itself is fine


def _costs(family: str) -> UnitCosts:
    return UnitCosts(family, "cpu", eval_s=1e-6, eval_bytes=32e3, sgd_s=3e-6, sgd_bytes=40e3, step_s=0.05,
                     step_bytes=50e6, shot_s=0.01, shot_bytes=5e6)


def test_the_estimate_counts_what_the_notebooks_do(standin, tmp_path):
    params = load_params(_params(tmp_path, standin), selected=[NOTEBOOKS["04"], NOTEBOOKS["06"]])
    inputs = check_inputs(params, [NOTEBOOKS["04"], NOTEBOOKS["06"]])
    counts = inputs.counts[("cnn-tanh", 2048)]  # n_networks of the file: the zoo on disk decides the counts
    n_train = int(counts.loc["train", "networks"])
    assert counts.loc["train", "entries"] == n_train == (load_small_cnn_zoo(standin[2], activation="tanh").meta["split"]
                                                         == "train").sum()  # final checkpoints only, as imported
    rows = estimate(inputs, {f: _costs(f) for f in ("cnn-tanh", "cnn-relu")}, budget=4 * GIB)
    nb04, nb06 = rows
    assert nb04.runs == 2 and nb04.steps == 2 * 2 * (n_train // 4)  # CE and L1: 2 epochs of n_train // 4 batches
    # notebook 06 reuses 04's cnn-tanh ScaleGMN runs: GMN for cnn-tanh, both methods for cnn-relu (x CE and L1)
    assert nb06.runs == 2 + 4
    assert nb06.network_epochs > 0 and nb06.network_images > 0 and nb06.seconds > nb04.seconds > 0
    assert nb04.peak_what and not nb04.over_budget
    # notebook 06's SGD runs in chunks of the budget: at a budget below all its networks at once it is not refused
    small = estimate(inputs, {f: _costs(f) for f in ("cnn-tanh", "cnn-relu")}, budget=0.05 * GIB)[1]
    assert not [what for what in small.over_budget if "SGD" in what]


def test_a_step_over_the_memory_budget_is_refused_before_the_run(standin, tmp_path):
    path = _params(tmp_path, standin, extra="memory_gb: 0.1\n")
    params = load_params(path, selected=[NOTEBOOKS["04"]])
    costs = {f: _costs(f) for f in ("cnn-tanh", "cnn-relu")}
    with pytest.raises(PreflightError, match=r"(?s)more memory than the budget of 0\.1 GiB.*notebook 04: a metanetwork "
                                             r"batch of 4 cnn-tanh networks: 0\.2 GiB.*meta_batch_networks"):
        check_run(params, [NOTEBOOKS["04"]], log=lambda line: None, costs=costs)
    fits = load_params(_params(tmp_path, standin, name="fits", extra="memory_gb: 1\n"), selected=[NOTEBOOKS["04"]])
    lines = []
    check_run(fits, [NOTEBOOKS["04"]], log=lines.append, costs=costs)
    assert "memory budget 1.0 GiB per process" in lines[-1] and "  04 " in lines[-1]


@pytest.mark.slow
def test_the_cifar10gs_sequence_runs_on_the_standin(standin, tmp_path, capsys):
    """The whole paper-setting sequence (every notebook) at tiny sizes, through the command line: the estimate first,
    then notebooks 01-07; then notebooks 03-04 again with every checkpoint (zoo_steps: all), reported by step."""
    outputs = tmp_path / "outputs"
    assert main(["run", str(_params(tmp_path, standin)), "--outputs", str(outputs)]) == 0
    printed = capsys.readouterr().out
    assert "[workbench] estimate on cpu" in printed and "total: about" in printed
    run = outputs / "paper-standin"
    for nb in NOTEBOOKS.values():
        assert (run / "notebooks" / nb.name).is_file(), nb.name
    assert (run / "results.csv").is_file() and (run / "results" / "by_checkpoint.csv").is_file()
    summary = json.loads((run / "zoo" / "summary.json").read_text())
    assert summary["cnn-tanh"]["epochs"] == [3] and summary["cnn-tanh"]["n_networks"] == 24
    steps = _params(tmp_path, standin, name="paper-steps", extra="zoo_steps: all\n")
    assert main(["run", str(steps), "--only", "03", "04", "--outputs", str(outputs)]) == 0
    summary = json.loads((outputs / "paper-steps" / "zoo" / "summary.json").read_text())
    assert summary["cnn-tanh"]["epochs"] == [0, 1, 2, 3] and summary["cnn-tanh"]["n_entries"] == 4 * 24
    executed = (outputs / "paper-steps" / "notebooks" / NOTEBOOKS["04"].name).read_text()
    assert "The largest gain is on epoch-" in executed
