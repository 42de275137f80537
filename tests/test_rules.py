"""Each setting's rule is stated once, on the config field that holds it: the configs check it when built and the
params files' ``meta_<name>`` keys read the same rule (workbench/rules.py, workbench/run/params_rules.py)."""
from __future__ import annotations

import dataclasses

import pytest

from workbench.errors import ConfigError
from workbench.metanet.config import MetanetConfig
from workbench.run.params_rules import PARAMS_RULES, rule_for
from workbench.pipeline import METHODS, OBJECTIVES, Recipe
from workbench.rules import Rule, check_fields, field_rule, setting
from workbench.training.train_config import TrainConfig


@pytest.mark.parametrize("cls", [TrainConfig, MetanetConfig])
def test_every_config_field_has_a_rule_or_a_kind(cls):
    unruled = [f.name for f in dataclasses.fields(cls) if f.name != "meta" and field_rule(cls, f.name) is None]
    assert unruled == []


@pytest.mark.parametrize("cls, name", [(TrainConfig, "epochs"), (TrainConfig, "lr"), (TrainConfig, "val_networks"),
                                       (MetanetConfig, "hidden"), (MetanetConfig, "n_layers"),
                                       (MetanetConfig, "dropout"), (Recipe, "mlp_epochs")])
def test_a_meta_key_takes_the_rule_of_its_config_field(cls, name):
    assert rule_for(f"meta_{name}") == field_rule(cls, name)
    assert f"meta_{name}" not in PARAMS_RULES  # stated once: on the field, not again in the params table


def test_meta_hidden_and_hidden_have_one_limit():
    rule = field_rule(MetanetConfig, "hidden")
    too_wide = int(rule.high) + 1
    with pytest.raises(ConfigError, match=rf"MetanetConfig.hidden is {too_wide}, but must be in \[1, 65,536\]"):
        MetanetConfig(hidden=too_wide)
    assert rule_for("meta_hidden").problem(too_wide) == f"is {too_wide}, but must be in [1, 65,536]"
    assert rule_for("meta_hidden").problem(int(rule.high)) is None


def test_run_wide_keys_take_train_configs_rules():
    for key in ("seed", "lam", "device"):
        assert rule_for(key) == field_rule(TrainConfig, key)


def test_method_and_objective_names_come_from_their_tables():
    for key in ("methods", "table_methods"):
        assert PARAMS_RULES[key]._choices() == tuple(METHODS)
    assert PARAMS_RULES["objectives"]._choices() == tuple(OBJECTIVES)


def test_a_fields_kind_comes_from_its_annotation():
    @dataclasses.dataclass(frozen=True)
    class Config:
        width: int = setting(3, Rule(low=1))
        rate: float | None = None
        name: str = "a"

        def __post_init__(self):
            check_fields(self)

    assert field_rule(Config, "width") == Rule(low=1, kind="int")
    assert field_rule(Config, "rate") == Rule(kind="float")
    with pytest.raises(ConfigError, match=r"Config.width is float 2.5, but must be an int"):
        Config(width=2.5)
    with pytest.raises(ConfigError, match=r"Config.width is 0, but must be >= 1"):
        Config(width=0)
    with pytest.raises(ConfigError, match=r"Config.name is int 5, but must be a str"):
        Config(name=5)
    assert Config(rate=None).rate is None  # None where None is the default: the default choice
