"""What every setting may hold beyond its type: one table for the params files, one for :class:`TrainConfig`.

A params file is type-checked against the notebooks' ``parameters`` cells (:mod:`workbench.params`); the
:class:`Rule` of a key in :data:`PARAMS_RANGES` then says which values make sense (``n_networks >= 1``,
``meta_lr > 0``, ``families`` a non-empty list of known families, ``device`` "auto", "cpu" or "cuda[:i]" ...).
A key without a rule is only type-checked. :data:`TRAIN_CONFIG_RANGES` does the same for the fields of
:class:`workbench.optimize.TrainConfig`, checked whenever one is built.

To give a new notebook parameter a range, add one line to :data:`PARAMS_RANGES`, e.g.
``"meta_dropout": Rule(0, 1, high_open=True)``; for a list-valued key the rule applies to every element.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from typing import Callable

MAX_SEED = 2**32 - 1  # numpy's RandomState (the zoo's network split) takes seeds below 2**32
DEVICE_PATTERN = r"auto|cpu|cuda(:\d{1,3})?|mps"


@dataclass(frozen=True)
class Rule:
    """The values a setting may take.

    Args:
        low, high: numeric bounds (None = unbounded); ``low_open``/``high_open`` make them exclusive.
        choices: the allowed values (a tuple, or a function returning one, so that the tables need not import
            torch-heavy modules).
        pattern: a regular expression a string must match in full.
        nonempty: a list value must hold at least one element.
        kind: "int", "float", "bool" or "str": the value's type (for :class:`TrainConfig`; params files take the
            type from the notebook's default instead). None: any.
        note: why the range is what it is, appended to the error.
        also: values accepted as they are, besides the range (e.g. ``"all"`` for a list of steps).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | Callable[[], tuple] | None = None
    pattern: str | None = None
    nonempty: bool = False
    kind: str | None = None
    note: str = ""
    also: tuple = ()

    def describe(self) -> str:
        show = lambda x: f"{x:,}" if isinstance(x, int) else f"{x:g}"  # noqa: E731
        parts = []
        if self.low is not None and self.high is None:
            parts.append(f"{'>' if self.low_open else '>='} {show(self.low)}")
        elif self.low is None and self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {show(self.high)}")
        elif self.low is not None:
            parts.append(f"in {'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}"
                         f"{')' if self.high_open else ']'}")
        if self.choices is not None:
            parts.append(f"one of {list(self._choices())}")
        if self.pattern is not None:
            parts.append(self.note or f"a string matching {self.pattern!r}")
        return " and ".join(parts) or "any value"

    def _choices(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def problem(self, value) -> str | None:
        """Why ``value`` breaks this rule (a phrase such as "is -5, but must be a number in [1, inf)"), or None."""
        if value is None:
            return None  # None means "the notebook's own choice" wherever a default is None
        if isinstance(value, str) and self.also:
            if value in self.also:
                return None
            return (f"is {value[:80]!r}, but must be {' or '.join(map(repr, self.also))} or a list of "
                    f"{self.kind + 's ' if self.kind else 'values '}{self.describe()}" + (f" ({self.note})" if self.note else ""))
        if isinstance(value, (list, tuple)):
            if self.nonempty and not value:
                return "is an empty list, but must list at least one value" + (f" ({self.describe()})"
                                                                               if self.choices else "")
            for i, item in enumerate(value):
                why = self._scalar_problem(item)
                if why:
                    return f"element {i} {why}"
            return None
        return self._scalar_problem(value)

    def _scalar_problem(self, value) -> str | None:
        shown = repr(value) if not isinstance(value, str) else repr(value[:80])
        kind_ok = {"int": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
                   "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
                   "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str)}
        if self.kind is not None and not kind_ok[self.kind](value):
            return f"is {type(value).__name__} {shown[:80]}, but must be {'an' if self.kind == 'int' else 'a'} {self.kind}"
        if self.choices is not None and value not in self._choices():
            return f"is {shown}, but must be {self.describe()}" + (f" ({self.note})" if self.note else "")
        if self.pattern is not None and not (isinstance(value, str) and re.fullmatch(self.pattern, value)):
            return f"is {shown}, but must be {self.describe()}"
        if self.low is not None or self.high is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                return f"is {type(value).__name__} {shown[:80]}, but must be {self.describe()}"
            if isinstance(value, float) and not math.isfinite(value):
                return f"is {value}, but must be a finite number"
            too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if too_low or too_high:
                return f"is {shown}, but must be {self.describe()}" + (f" ({self.note})" if self.note else "")
        return None


def _families() -> tuple:
    from .zoo import FAMILIES

    return FAMILIES


def _datasets() -> tuple:
    from .data import DATASETS

    return DATASETS


def _symmetries() -> tuple:
    from .metanet import SYMMETRIES

    return (None, *SYMMETRIES)


POSITIVE_INT = Rule(low=1)
NON_NEGATIVE = Rule(low=0)
POSITIVE = Rule(low=0, low_open=True)
FRACTION = Rule(low=0, high=1, high_open=True)  # dropout-like: 0 <= x < 1
DEVICE_NOTE = "'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
DEVICE = Rule(pattern=DEVICE_PATTERN, note=DEVICE_NOTE)
SEED = Rule(low=0, high=MAX_SEED, note="seeds are non-negative and below 2**32")

# params-file key -> Rule. Keys not listed are only type-checked against the notebook's default.
PARAMS_RANGES: dict[str, Rule] = {
    "seed": SEED,
    "n_networks": Rule(low=1, high=10**7, note="networks per zoo; a memory estimate is checked as well"),
    "zoo_epochs": Rule(low=1, high=100_000),
    "families": Rule(choices=_families, nonempty=True),
    "family": Rule(choices=_families),
    "objectives": Rule(choices=("ce", "l1"), nonempty=True),
    "objective": Rule(choices=("ce", "l1")),
    "dataset": Rule(choices=_datasets),
    "data_path": Rule(kind="str", note="a local path"),
    "zoo_path": Rule(kind="str", note="a local path"),
    "zoo_steps": Rule(low=0, high=1_000_000, nonempty=True, also=("all",), kind="int",
                      note="Small CNN Zoo checkpoints (steps = epochs: 0, 1, 2, 3, 20, 40, 60, 80, 86), or 'all'"),
    "memory_gb": Rule(low=0, low_open=True, high=1_000_000,
                      note="GiB one evaluation chunk may use per process (workbench/memory.py)"),
    "cnn_activation": Rule(choices=("tanh", "relu")),
    "device": DEVICE,
    "lam": NON_NEGATIVE,
    "meta_epochs": Rule(low=1, high=1_000_000),
    "meta_mlp_epochs": Rule(low=1, high=1_000_000),
    "zoo_test_fraction": Rule(low=0, high=1, low_open=True, high_open=True),
    "meta_val_networks": Rule(low=1, high=10_000_000),
    "meta_hidden": Rule(low=1, high=65_536),
    "meta_n_layers": Rule(low=1, high=1_000),
    "meta_lr": POSITIVE,
    "meta_dropout": FRACTION,
    "meta_weight_decay": NON_NEGATIVE,
    "meta_noise": NON_NEGATIVE,
    "meta_patience": POSITIVE_INT,
    "meta_batch_networks": POSITIVE_INT,
    "meta_batch_images": POSITIVE_INT,
    "n_seeds": Rule(low=1, high=10_000),
    "sgd_epochs": Rule(low=1, high=1_000_000, nonempty=True),
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
    "n_probe": Rule(low=1, high=10**7),
    "eval_networks": POSITIVE_INT,
    "workers": Rule(low=1, high=1024),
    "methods": Rule(choices=("scalegmn", "gmn", "gmn-aug", "nfn", "nfn-aug"), nonempty=True),
    "table_methods": Rule(choices=("scalegmn", "gmn", "gmn-aug", "nfn", "nfn-aug"), nonempty=True),
    "ablation_families": Rule(choices=_families, nonempty=True),
    "scaling_families": Rule(choices=_families, nonempty=True),
    "scaling_sizes": Rule(low=1, high=10**7, nonempty=True),
    "scaling_n_networks": Rule(low=1, high=10**7, note="zoo size of the scaling families (None: n_networks)"),
    "scaling_seeds": Rule(low=0, high=MAX_SEED, nonempty=True),
    "scaling_steps": POSITIVE_INT,
    "lam_family": Rule(choices=_families),
    "lam_values": Rule(low=0, nonempty=True),
    "lam_sgd_epochs": Rule(low=1, nonempty=True),
    "max_acc_drop": Rule(low=0, high=100, note="accuracy points"),
}

# TrainConfig and MetanetConfig field -> Rule (every field has one: kinds are checked too)
TRAIN_CONFIG_RANGES: dict[str, Rule] = {
    "lam": Rule(low=0, kind="float"),
    "epochs": Rule(low=1, kind="int"),
    "batch_networks": Rule(low=1, kind="int"),
    "batch_images": Rule(low=1, kind="int"),
    "lr": Rule(low=0, low_open=True, kind="float"),
    "weight_decay": Rule(low=0, kind="float"),
    "warmup_steps": Rule(low=0, kind="int"),
    "grad_clip": Rule(low=0, low_open=True, kind="float"),
    "hidden": Rule(low=1, kind="int"),
    "n_layers": Rule(low=1, kind="int"),
    "bidirectional": Rule(kind="bool"),
    "symmetry": Rule(choices=_symmetries, note="unknown symmetry"),
    "dropout": Rule(low=0, high=1, high_open=True, kind="float"),
    "seed": Rule(low=0, high=MAX_SEED, kind="int", note="seeds are non-negative and below 2**32"),
    "device": Rule(pattern=DEVICE_PATTERN, kind="str", note=DEVICE_NOTE),
    "amp": Rule(kind="bool"),
    "val_images": Rule(low=1, kind="int"),
    "val_networks": Rule(low=1, kind="int"),
    "noise": Rule(low=0, kind="float"),
    "group_augment": Rule(kind="bool"),
    "skip_untrained": Rule(kind="bool"),
    "compile": Rule(kind="bool"),
    "cpu_amp": Rule(choices=(False, True, "auto"), note="'auto': bf16 where the CPU has native bf16 units"),
    "l1_from_ce": Rule(kind="bool"),
    "gate": Rule(kind="bool"),
    "augment_scales": Rule(low=0, low_open=True, nonempty=True, kind="float"),
    "patience": Rule(low=1, kind="int"),
    "train_eval_networks": Rule(low=0, kind="int"),
    "model": Rule(choices=("scalegmn", "nfn"), kind="str"),
    "out_scale_init": Rule(kind="float"),
    "io_embed": Rule(kind="bool"),
    "scale_norm": Rule(kind="bool"),
}


def check_train_config(config) -> None:
    """Raise :class:`~workbench.errors.ConfigError` naming the first field of ``config`` (a TrainConfig or a
    MetanetConfig) out of its range."""
    from .errors import ConfigError

    optional = {f.name for f in dataclasses.fields(config) if f.default is None}  # None means "the default choice"
    for name, rule in TRAIN_CONFIG_RANGES.items():
        if not hasattr(config, name):
            continue
        value = getattr(config, name)
        if value is None and name in optional:
            continue
        if value is None:
            raise ConfigError(f"{type(config).__name__}.{name} is None, but must be "
                              f"{rule.describe() if rule.kind is None else rule.kind}")
        why = rule.problem(value)
        if why:
            raise ConfigError(f"{type(config).__name__}.{name} {why}")


__all__ = ["Rule", "PARAMS_RANGES", "TRAIN_CONFIG_RANGES", "check_train_config", "MAX_SEED", "DEVICE_PATTERN"]
