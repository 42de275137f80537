"""What each params-file key may hold -- one rule per key, each stated once -- and the checks every value meets.

* A training setting ``meta_<name>`` has the rule of the field ``<name>`` of
  :class:`~workbench.training.train_config.TrainConfig`, its :class:`~workbench.metanet.MetanetConfig` or the pipeline's
  :class:`~workbench.pipeline.Recipe`, declared on that field (:func:`workbench.rules.field_rule`); so do the run-wide
  keys ``seed``, ``lam`` and ``device``, which set TrainConfig's fields of those names.
* Every other key -- the zoo, the data, the study's sizes and lists -- has its rule in :data:`PARAMS_RULES`, this
  module's one table. Family, data-set, method and objective names are read from the tables that define them
  (:data:`workbench.zoo.FAMILIES`, :data:`workbench.data.DATASETS`, :data:`workbench.pipeline.METHODS`,
  :data:`workbench.pipeline.OBJECTIVES`).

A key without a rule is only type-checked (against the notebook's default, :mod:`workbench.run.params`). To give a new
notebook parameter a range, add one line to :data:`PARAMS_RULES`, e.g. ``"n_probe": Rule(low=1, high=MAX_NETWORKS)``;
for a list-valued key the rule applies to every element. A new ``meta_`` setting gets its rule on its field.
"""
from __future__ import annotations

import math
from functools import lru_cache

from ..data import DATASETS
from ..errors import ParamsError, UsageError, WorkbenchError
from ..nets import ACTIVATIONS
from .params_file import shown
from ..rules import MAX_EPOCHS, MAX_NETWORKS, MAX_SEED, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Rule, field_rule
from ..zoo import DEFAULT_BATCH_SIZE, FAMILIES, default_spec

__all__ = ["PARAMS_RULES", "rule_for", "extra_setting", "check_value", "check_range", "check_extra_setting",
           "check_flag", "FLAG_KEYS", "zoo_bytes", "SETTINGS_PREFIX", "CONFIG_KEYS", "MAX_ELEMENTS", "MAX_INT"]

MAX_ELEMENTS = 10_000  # per value: lists/mappings beyond this (e.g. YAML alias bombs) are refused
MAX_INT = 2**63 - 1  # integers must fit torch's int64 (seeds, sizes)
SETTINGS_PREFIX = "meta_"  # ``meta_<name>`` sets the training setting ``<name>``
#: run-wide keys that set the TrainConfig field of the same name, and so take its rule
CONFIG_KEYS = ("seed", "lam", "device")


def _methods() -> tuple:
    from ..pipeline.methods import METHODS  # PyG-free, but the pipeline package loads PyG: only when checked

    return tuple(METHODS)


def _objectives() -> tuple:
    from ..pipeline.recipe import OBJECTIVES

    return OBJECTIVES


_FAMILIES = Rule(choices=FAMILIES, nonempty=True)
_METHODS = Rule(choices=_methods, nonempty=True)

#: params-file key -> Rule, for every key that is not a training setting (those take their field's rule)
PARAMS_RULES: dict[str, Rule] = {
    "n_networks": Rule(low=1, high=MAX_NETWORKS, note="networks per zoo; a memory estimate is checked as well"),
    "zoo_epochs": Rule(low=1, high=100_000),
    "families": _FAMILIES,
    "family": Rule(choices=FAMILIES),
    "objectives": Rule(choices=_objectives, nonempty=True),
    "objective": Rule(choices=_objectives),
    "dataset": Rule(choices=DATASETS),
    "data_path": Rule(kind="str", note="a local path"),
    "zoo_path": Rule(kind="str", note="a local path"),
    "zoo_steps": Rule(low=0, high=1_000_000, nonempty=True, also=("all",), kind="int",
                      note="Small CNN Zoo checkpoints (steps = epochs: 0, 1, 2, 3, 20, 40, 60, 80, 86), or 'all'"),
    "memory_gb": Rule(low=0, low_open=True, high=1_000_000,
                      note="GiB one evaluation chunk may use per process (workbench/memory.py)"),
    "cnn_activation": Rule(choices=ACTIVATIONS),
    "zoo_test_fraction": Rule(low=0, high=1, low_open=True, high_open=True),
    "n_seeds": Rule(low=1, high=10_000),
    "sgd_epochs": Rule(low=1, high=MAX_EPOCHS, nonempty=True),
    "sgd_lr": POSITIVE,
    "sgd_lr_grid": Rule(low=0, low_open=True, high=10, note="SGD learning rates tried on validation networks (empty: none)"),
    "sgd_networks": POSITIVE_INT,
    "sequential_sample": NON_NEGATIVE,
    "finetune_epochs": NON_NEGATIVE,
    "mlp_widths": Rule(low=1, high=100_000, nonempty=True),
    "cnn_channels": Rule(low=1, high=100_000, nonempty=True),
    "image_size": Rule(low=1, high=100_000),
    "kernel_size": Rule(low=1, high=1_000),
    "stride": Rule(low=1, high=1_000),
    "padding": Rule(low=0, high=1_000),
    "n_probe": Rule(low=1, high=MAX_NETWORKS),
    "eval_networks": POSITIVE_INT,
    "workers": Rule(low=1, high=1024),
    "methods": _METHODS,
    "table_methods": _METHODS,
    "ablation_families": _FAMILIES,
    "scaling_families": _FAMILIES,
    "scaling_sizes": Rule(low=1, high=MAX_NETWORKS, nonempty=True),
    "scaling_n_networks": Rule(low=1, high=MAX_NETWORKS, note="zoo size of the scaling families (None: n_networks)"),
    "scaling_seeds": Rule(low=0, high=MAX_SEED, nonempty=True),
    "scaling_steps": POSITIVE_INT,
    "lam_family": Rule(choices=FAMILIES),
    "lam_values": Rule(low=0, nonempty=True),
    "lam_sgd_epochs": Rule(low=1, nonempty=True),
    "max_acc_drop": Rule(low=0, high=100, note="accuracy points"),
}


def rule_for(key: str) -> Rule | None:
    """The rule of a params-file key: its line in :data:`PARAMS_RULES`, or for a training setting (``meta_<name>``,
    and ``seed``/``lam``/``device``) the rule declared on the config field it sets; None for a key without one."""
    if key in PARAMS_RULES:
        return PARAMS_RULES[key]
    if key in CONFIG_KEYS:
        return _setting_rule(key)
    if extra_setting(key):
        return _setting_rule(key[len(SETTINGS_PREFIX):])
    return None


@lru_cache(maxsize=None)
def _setting_rule(name: str) -> Rule | None:
    """The rule on the field ``name`` of TrainConfig, its MetanetConfig or the Recipe (imported here, when a file
    sets a training setting: they load PyG)."""
    from ..metanet.config import MetanetConfig
    from ..pipeline.recipe import Recipe
    from ..training.train_config import TrainConfig

    for cls in (TrainConfig, MetanetConfig, Recipe):
        rule = field_rule(cls, name)
        if rule is not None:
            return rule
    return None


def extra_setting(key) -> bool:
    """Is ``key`` a ``meta_<name>`` training setting (:meth:`workbench.pipeline.Recipe.from_values`' rule)?"""
    return isinstance(key, str) and key.startswith(SETTINGS_PREFIX) and key[len(SETTINGS_PREFIX):] in _training_setting_names()


@lru_cache(maxsize=1)
def _training_setting_names() -> frozenset:
    """The ``<name>`` of every ``meta_<name>`` key (:meth:`workbench.pipeline.Recipe.setting_names`; imported here,
    only when a file uses such a key: it loads PyG)."""
    from ..pipeline.recipe import Recipe

    return frozenset(Recipe.setting_names())


def check_value(path, label: str, value) -> None:
    """Refuse values no notebook could mean: NaN/inf, integers beyond int64, and containers with more than
    :data:`MAX_ELEMENTS` elements (counted with repeats, so a YAML alias bomb is caught after that many steps)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_ELEMENTS:
            raise ParamsError(f"{label} in {path} holds more than {MAX_ELEMENTS:,} elements (nested lists or YAML "
                              "aliases); params files hold settings, not data")
        if isinstance(item, float) and not math.isfinite(item):
            raise ParamsError(f"{label} in {path} is {item}; parameters must be finite numbers")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            raise ParamsError(f"{label} in {path} is the integer {shown(item)}, which does not fit in 64 bits")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)


#: command-line flag -> the params key whose rule (:func:`rule_for`) its value meets
FLAG_KEYS = {"--seed": "seed", "--device": "device", "--family": "family", "--batch-size": "meta_batch_networks"}


def check_flag(flag: str, value) -> None:
    """Check a command-line flag's value as a params file's value of the same meaning is checked (64-bit integers,
    finite numbers, :data:`FLAG_KEYS`' range); a :class:`~workbench.errors.UsageError` names the flag. None (the
    flag not given) passes."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{flag} is {value}; it must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise UsageError(f"{flag} is the integer {shown(value)}, which does not fit in 64 bits")
    why = rule_for(FLAG_KEYS[flag]).problem(value)
    if why:
        raise UsageError(f"{flag} {why}")


def check_range(path, label: str, key: str, value) -> None:
    """The value's rule (:func:`rule_for`; keys without one pass)."""
    rule = rule_for(key)
    why = rule.problem(value) if rule is not None else None
    if why:
        raise ParamsError(f"{label} in {path} {why}")


def check_extra_setting(path, label: str, key: str, value) -> None:
    """A training setting no notebook declares: a finite value within the rule of its config field."""
    check_value(path, label, value)
    check_range(path, label, key, value)


def zoo_bytes(family: str, values: dict, n_networks: int) -> float:
    """A rough lower bound on the memory of generating a zoo of ``n_networks`` (all trained at once, float32):
    parameters, two optimizer moments, the gradient and every kept checkpoint, plus forward/backward activations
    of a 32-image minibatch per network."""
    try:
        spec = default_spec(family, values.get("dataset") or "digits")
    except WorkbenchError:
        return 0.0  # an unknown family or data set is reported by its own check
    epochs = values.get("zoo_epochs") if isinstance(values.get("zoo_epochs"), int) else 1
    kept = len({0, 1, 2, epochs} & set(range(epochs + 1)))
    if spec.kind == "mlp":
        activations = sum(spec.widths)
    else:
        sizes = spec.spatial_sizes()
        activations = spec.widths[0] * sizes[0] ** 2 + sum(
            c * s**2 for c, s in zip(spec.widths[1:-1], sizes[1:])) + spec.widths[-1]
    per_network = spec.n_params * (4 + kept) + 3 * DEFAULT_BATCH_SIZE * activations
    return 4.0 * per_network * n_networks

