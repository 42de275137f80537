"""The training recipe, built once from a notebook's parameters (workbench.pipeline.Recipe), and the run identity
by one rule: a run folder's digest leaves out every field at its default (TrainConfig.digest)."""
from __future__ import annotations

import dataclasses
import pickle

import pytest

from workbench.errors import ConfigError
from workbench.nets import NetSpec
from workbench.pipeline import DataRecipe, Recipe, ZooRecipe, run_dir
from workbench.training.train_config import TrainConfig

MLP = NetSpec.mlp((64, 16, 16, 10), "tanh")
CNN_RELU = NetSpec.cnn(1, (8, 8, 8), 10, activation="relu", image_size=8)


def test_every_meta_parameter_sets_its_field_once_and_others_are_ignored():
    recipe = Recipe.from_values({"meta_epochs": 7, "meta_mlp_epochs": 3, "meta_hidden": 12, "meta_lr": 0.02,
                                 "device": "cpu", "seed": 5, "lam": 0.1, "families": ["mlp-tanh"],
                                 "meta_extra": {"meta_val_images": 64}})
    assert (recipe.train.epochs, recipe.mlp_epochs, recipe.train.meta.hidden, recipe.train.lr) == (7, 3, 12, 0.02)
    assert recipe.train.device == "cpu" and recipe.train.val_images == 64
    assert recipe.train.seed == 0 and recipe.train.lam == 0.0  # seed and lam come with each run, not the recipe
    with pytest.raises(ConfigError, match="'meta_layers' sets no training setting.*meta_n_layers"):
        Recipe.from_values({"meta_layers": 2})
    with pytest.raises(ConfigError, match="'meta_seed'"):
        Recipe.from_values({"meta_seed": 2})


def test_config_applies_the_method_objective_and_family():
    recipe = Recipe.from_values({"meta_epochs": 10, "meta_mlp_epochs": 5, "meta_hidden": 16, "meta_n_layers": 2,
                                 "meta_l1_from_ce": True})
    ce = recipe.config(MLP, objective="ce", lam=0.5, seed=3)
    assert (ce.epochs, ce.lam, ce.seed, ce.l1_from_ce, ce.meta.symmetry) == (5, 0.0, 3, False, "sign")
    l1 = recipe.config(CNN_RELU, objective="l1", lam=0.5)
    assert (l1.epochs, l1.lam, l1.l1_from_ce, l1.meta.symmetry) == (10, 0.5, True, "scale")
    gmn_aug = recipe.config(MLP, method="gmn-aug")
    assert gmn_aug.meta.symmetry == "none" and gmn_aug.group_augment and gmn_aug.meta.model == "scalegmn"
    nfn = recipe.config(MLP, method="nfn")
    assert nfn.meta.model == "nfn" and nfn.meta.hidden != 16  # width matched to ScaleGMN-B's parameter count
    assert dataclasses.replace(recipe, nfn_hidden=9).config(MLP, method="nfn").meta.hidden == 9
    with pytest.raises(ValueError, match="unknown method"):
        recipe.config(MLP, method="gmn-b")


def test_a_field_added_with_its_default_changes_no_digest():
    config = Recipe.from_values({"meta_epochs": 4, "meta_hidden": 8}).config(MLP, seed=2)
    base = TrainConfig(epochs=4, seed=2, meta=dataclasses.replace(TrainConfig().meta, hidden=8, symmetry="sign"))
    assert config == base and config.digest() == base.digest()
    Later = dataclasses.make_dataclass("Later", [("new_switch", bool, dataclasses.field(default=False))],
                                       bases=(TrainConfig,), frozen=True)
    later = Later(**{f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)})
    assert later.digest() == base.digest()  # at its default the new field is not part of the identity
    assert Later(**{**{f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)},
                    "new_switch": True}).digest() != base.digest()  # set, it is
    assert TrainConfig(epochs=5, seed=2, meta=base.meta).digest() != base.digest()  # negative control


def test_run_folders_are_named_by_objective_symmetry_seed_and_digest(tmp_path):
    config = Recipe().config(CNN_RELU, objective="l1", lam=0.01, seed=4)
    folder = run_dir(tmp_path, "cnn-relu", "l1", config)
    assert folder == tmp_path / "metanet" / "cnn-relu" / f"l1-scale-s4-{config.digest()}"


def test_recipes_are_frozen_and_pickle_for_worker_processes():
    for record in (Recipe.from_values({"meta_epochs": 2}), DataRecipe("digits", None, 1), ZooRecipe(48, 3, 1)):
        assert pickle.loads(pickle.dumps(record)) == record
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.seed = 3  # noqa -- any field: frozen
    with pytest.raises(ConfigError, match="mlp_epochs"):
        Recipe(mlp_epochs=0)


@pytest.mark.parametrize("args, match", [
    (dict(n_networks=1, zoo_epochs=2), r"ZooRecipe.n_networks is 1, but must be an integer >= 2"),
    (dict(n_networks=8, zoo_epochs=0), r"ZooRecipe.zoo_epochs is 0, but must be an integer >= 1"),
    (dict(n_networks=8.0, zoo_epochs=2), r"ZooRecipe.n_networks is 8.0"),
    (dict(n_networks=8, zoo_epochs=2, test_fraction=1.0), r"ZooRecipe.test_fraction is 1.0, but must be in \(0, 1\)"),
])
def test_a_zoo_recipe_out_of_range_is_refused_naming_the_field(args, match):
    with pytest.raises(ConfigError, match=match):
        ZooRecipe(**args)
    ZooRecipe(8, 2, test_fraction=0.25)  # the control: in range
