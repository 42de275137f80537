"""``python -m workbench train`` says what it did: "trained" for a run it trained, "reloaded" for a finished run it
only read back."""
import textwrap

from workbench.system import paths
from workbench.__main__ import main

PARAMS = """\
name: train-command
seed: 0
n_networks: 8
zoo_epochs: 1
meta_epochs: 1
meta_hidden: 4
meta_n_layers: 1
meta_batch_networks: 2
meta_batch_images: 16
meta_train_eval_networks: 2
device: cpu
"""


def test_train_says_trained_then_reloaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "OUTPUTS", tmp_path / "outputs")
    (tmp_path / "p.yaml").write_text(textwrap.dedent(PARAMS))
    argv = ["train", str(tmp_path / "p.yaml"), "--family", "mlp-tanh"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "[workbench] trained mlp-tanh (ce)" in first and "reloaded" not in first
    assert main(argv) == 0
    assert "[workbench] reloaded the finished run of mlp-tanh (ce)" in capsys.readouterr().out
