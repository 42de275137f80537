"""What a setting may hold beyond its type, kept on the field that holds it.

A frozen config declares each field's :class:`Rule` where it declares the field --
``epochs: int = setting(20, Rule(low=1, high=MAX_EPOCHS))`` -- and checks every field when it is built
(:func:`check_fields`). A field's kind (int, float, bool, str) is read from its annotation, so it is not written twice.
The params-file validator (:mod:`workbench.run.params`) reads the same rules for its ``meta_<name>`` keys
(:func:`field_rule`), so a range is stated once, beside the field it limits; the keys only params files have
(``n_networks``, ``families``, ...) keep their rules in that module's one table.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError

__all__ = ["Rule", "setting", "field_rule", "check_fields", "MAX_SEED", "MAX_EPOCHS", "MAX_NETWORKS", "DEVICE_PATTERN", "DEVICE",
           "SEED", "POSITIVE", "POSITIVE_INT", "NON_NEGATIVE", "FRACTION"]

MAX_SEED = 2**32 - 1  # numpy's RandomState (the zoo's network split) takes seeds below 2**32
MAX_EPOCHS = 1_000_000  # far beyond any run; a larger number is a typo, refused before hours of work start
MAX_NETWORKS = 10_000_000  # networks in a zoo or a sample of one: far beyond any here; a larger count is a typo
DEVICE_PATTERN = r"auto|cpu|cuda(:\d{1,3})?|mps"
_RULE = "rule"  # the key of a field's rule in its dataclasses metadata
_KINDS = ("int", "float", "bool", "str")


@dataclass(frozen=True)
class Rule:
    """The values a setting may take.

    Args:
        low, high: numeric bounds (None = unbounded); ``low_open``/``high_open`` make them exclusive.
        choices: the allowed values (a tuple, or a function returning one, so that a rule need not import the
            torch-heavy module that holds them until a value is checked).
        pattern: a regular expression a string must match in full.
        nonempty: a list value must hold at least one element.
        kind: "int", "float", "bool" or "str": the value's type. None: any (a config field's rule takes the kind
            from the field's annotation, see :func:`field_rule`; params files check the type against the notebook's
            default instead).
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


POSITIVE_INT = Rule(low=1)
NON_NEGATIVE = Rule(low=0)
POSITIVE = Rule(low=0, low_open=True)
FRACTION = Rule(low=0, high=1, high_open=True)  # dropout-like: 0 <= x < 1
DEVICE = Rule(pattern=DEVICE_PATTERN, note="'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'")
SEED = Rule(low=0, high=MAX_SEED, note="seeds are non-negative and below 2**32")


def setting(default: Any = dataclasses.MISSING, rule: Rule | None = None, *,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its rule: ``lr: float = setting(1e-3, POSITIVE)``."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_RULE: rule} if rule is not None else {})


def _kind(annotation) -> str | None:
    """"int" for a field annotated ``int`` or ``int | None`` (likewise float, bool, str); None for anything else."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [p.strip() for p in text.split("|") if p.strip() != "None"]
    return parts[0] if len(parts) == 1 and parts[0] in _KINDS else None


def field_rule(cls, name: str) -> Rule | None:
    """The rule of field ``name`` of the dataclass ``cls``, its kind filled in from the annotation when the rule
    does not name one; None for a field with neither a rule nor a plain kind."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        return None
    rule, kind = f.metadata.get(_RULE), _kind(f.type)
    if rule is None:
        return Rule(kind=kind) if kind else None
    return dataclasses.replace(rule, kind=kind) if rule.kind is None and kind else rule


def check_fields(config) -> None:
    """Raise :class:`~workbench.errors.ConfigError` naming the first field of the dataclass instance ``config`` whose
    value breaks its rule (:func:`field_rule`). None passes where it is the field's default (the default choice)."""
    for f in dataclasses.fields(config):
        rule = field_rule(type(config), f.name)
        if rule is None:
            continue
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue
        if value is None:
            raise ConfigError(f"{type(config).__name__}.{f.name} is None, but must be "
                              f"{rule.describe() if rule.kind is None else rule.kind}")
        why = rule.problem(value)
        if why:
            raise ConfigError(f"{type(config).__name__}.{f.name} {why}")
