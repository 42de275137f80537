"""Params keys of the paper's setting: any ``meta_<field>`` training setting reaches the notebooks (``meta_extra``),
``zoo_steps`` chooses Small CNN Zoo checkpoints, ``memory_gb`` is the run's memory budget -- and a setting that would
reach only some of the notebooks that use it is refused, naming the notebook."""
from __future__ import annotations

import os
import textwrap

import pytest

from workbench.errors import ParamsError
from workbench.memory import MEMORY_ENV
from workbench.run.params import declared_parameters, list_notebooks, load_params, notebook_key
from workbench.pipeline import Recipe
from workbench.run.runner import _memory_environment

from test_params import write_notebook

NOTEBOOKS = {notebook_key(nb): nb for nb in list_notebooks()}


@pytest.fixture
def write(tmp_path):
    def _write(text: str) -> str:
        path = tmp_path / "run.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def trainers(tmp_path):
    """04-like notebook with meta_extra, 05-like without it, 03-like that reads zoo_path without zoo_steps."""
    return [write_notebook(tmp_path / "03_zoo.ipynb", "seed = 0\nzoo_path = None\n"),
            write_notebook(tmp_path / "04_a.ipynb", "seed = 0\nmeta_epochs = 2\nmeta_extra = {}\nzoo_path = None\n"
                                                    "zoo_steps = None\n"),
            write_notebook(tmp_path / "05_b.ipynb", "seed = 0\nmeta_epochs = 2\n")]


def test_training_settings_without_a_parameter_reach_notebooks_through_meta_extra(write, trainers):
    _, a, b = trainers
    path = write("meta_val_images: 512\nmeta_train_eval_networks: 0\nmeta_epochs: 3\n\"04\":\n  meta_grad_clip: 1.0\n")
    params = load_params(path, trainers, selected=[a])
    assert params.for_notebook(a, declared_parameters(a)) == {
        "meta_epochs": 3, "meta_extra": {"meta_val_images": 512, "meta_train_eval_networks": 0, "meta_grad_clip": 1.0}}
    config = Recipe.from_values({"meta_epochs": 3, **params.for_notebook(a, declared_parameters(a))}).train
    assert (config.val_images, config.train_eval_networks, config.grad_clip, config.epochs) == (512, 0, 1.0, 3)
    # a notebook that trains metanetworks but cannot take them would silently train without them
    with pytest.raises(ParamsError, match=r"meta_train_eval_networks in .* notebook 05_b.ipynb has no parameter for "
                                          r"\(neither 'meta_train_eval_networks' nor 'meta_extra'\)"):
        load_params(path, trainers)


@pytest.mark.parametrize("text,match", [
    ("meta_val_images: -3\n", r"meta_val_images in .* is -3, but must be >= 1"),
    ("meta_train_eval_networks: many\n", r"meta_train_eval_networks in .* is str 'many', but must be an int"),
    ("meta_bogus: 1\n", r"unknown key 'meta_bogus'"),
    ("meta_seed: 3\n", r"unknown key 'meta_seed'"),  # run-wide: `seed`
    ("zoo_steps: final\n", r"zoo_steps in .* is 'final', but must be"),
    ("zoo_steps: [-1, 86]\n", r"zoo_steps in .* element 0 is -1, but must be"),
    ("memory_gb: 0\n", r"memory_gb in .* is 0, but must be in \(0, "),
])
def test_bad_values_are_refused_naming_the_key(write, trainers, text, match):
    with pytest.raises(ParamsError, match=match):
        load_params(write(text), trainers, selected=[trainers[1]])


def test_zoo_steps_must_reach_every_notebook_that_reads_the_zoo(write, trainers):
    zoo, a, _ = trainers
    path = write("zoo_path: /somewhere\nzoo_steps: [0, 20, 86]\n")
    assert load_params(path, trainers, selected=[a]).for_notebook(a, declared_parameters(a))["zoo_steps"] == [0, 20, 86]
    assert load_params(write("zoo_path: /somewhere\nzoo_steps: all\n"), trainers, selected=[a]).shared["zoo_steps"] == "all"
    with pytest.raises(ParamsError, match=r"notebook 03_zoo.ipynb reads zoo_path without a zoo_steps parameter"):
        load_params(path, trainers)


def test_the_real_notebooks_that_read_the_zoo_take_zoo_steps_and_meta_extra():
    for key in ("03", "04", "07"):
        declared = declared_parameters(NOTEBOOKS[key])
        assert "zoo_steps" in declared, key
        assert key == "03" or "meta_extra" in declared, key


def test_memory_gb_is_the_run_budget_handed_to_the_kernels(write, trainers, monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    params = load_params(write("memory_gb: 2.5\nmeta_epochs: 1\n"), trainers, selected=[trainers[1]])
    assert params.run == {"memory_gb": 2.5} and "memory_gb" not in params.shared
    assert all("memory_gb" not in params.for_notebook(nb, declared_parameters(nb)) for nb in trainers)
    with _memory_environment(params):
        assert os.environ[MEMORY_ENV] == "2.5"
    assert MEMORY_ENV not in os.environ
    monkeypatch.setenv(MEMORY_ENV, "7")
    with _memory_environment(params):
        assert os.environ[MEMORY_ENV] == "2.5"
    assert os.environ[MEMORY_ENV] == "7"
