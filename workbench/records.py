"""Typed records for what the pipeline passes around: a network family, a metanetwork method, the key of one run.

Each is parsed once, at the edge, from the short names the params files, folders and tables use (``"cnn-tanh"``,
``"gmn-aug"``, ``"GMN-B (sym. broken)"``), and read by field afterwards -- never split or prefix-matched again
(in the manner of nfn's ``NetworkSpec``). Their text forms are exactly the strings of before, so folder names,
CSV columns and table rows do not change.

* :class:`Family` -- ``kind`` x ``activation`` (``Family.parse("cnn-tanh")``);
* :class:`Method` -- one metanetwork of the ablation: its row label, symmetry override, augmentation and model
  (the table of them is :data:`workbench.pipeline.METHODS`);
* :class:`RunKey` -- family, objective, method label and seed of one trained run (the keys of
  :func:`workbench.pipeline.run_ablation`'s histories).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import WorkbenchError
from .nets import ACTIVATIONS, KINDS, NetSpec

__all__ = ["RecordError", "Family", "Method", "RunKey"]


class RecordError(WorkbenchError, ValueError):
    """A family, method or run name that does not parse."""


@dataclass(frozen=True)
class Family:
    """A network family: ``kind`` (``"mlp"``/``"cnn"``) and ``activation`` (``"tanh"``/``"relu"``).

    ``str(family)`` is the short name used in folders, tables and params files, e.g. ``"cnn-tanh"``.
    """

    kind: str
    activation: str

    def __post_init__(self):
        if self.kind not in KINDS or self.activation not in ACTIVATIONS:
            raise RecordError(f"no network family {self.kind!r} x {self.activation!r}: the kind must be one of "
                              f"{KINDS} and the activation one of {ACTIVATIONS}")

    @classmethod
    def parse(cls, name: str | Family) -> Family:
        """``"cnn-tanh"`` -> ``Family("cnn", "tanh")`` (a ``Family`` is returned as it is)."""
        if isinstance(name, Family):
            return name
        parts = name.split("-") if isinstance(name, str) else []
        if len(parts) != 2:
            raise RecordError(f"a network family is written '<kind>-<activation>' (e.g. 'cnn-tanh', kinds {KINDS}, "
                              f"activations {ACTIVATIONS}); got {name!r:.80}")
        return cls(*parts)

    @classmethod
    def of(cls, spec: NetSpec) -> Family:
        """The family of a network description."""
        return cls(spec.kind, spec.activation)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.activation}"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Method:
    """One metanetwork of the comparison.

    Args:
        key: its name in params files and run jobs, e.g. ``"gmn-aug"``.
        name: the model's short name in row labels: ``"ScaleGMN"``, ``"GMN"`` or ``"NFN"``.
        qualifier: what follows the name in the label, e.g. ``" (sym. broken)"``, ``" + sym. aug."``.
        symmetry: the ``TrainConfig.symmetry`` override (``None`` = the activation's group, ``"none"`` = broken).
        group_augment: train on randomly permuted and rescaled/sign-flipped copies of the training networks.
        model: ``TrainConfig.model``: ``"scalegmn"`` (ScaleGMN and the GMN ablations) or ``"nfn"``.
    """

    key: str
    name: str
    qualifier: str
    symmetry: str | None
    group_augment: bool
    model: str

    @property
    def stem(self) -> str:
        """The label without message directions: ``"GMN (sym. broken)"``."""
        return f"{self.name}{self.qualifier}"

    @property
    def equivariant(self) -> bool:
        """Whether it is built with the networks' scaling symmetry (ScaleGMN) rather than without (GMN, NFN)."""
        return self.symmetry is None

    def label(self, bidirectional: bool) -> str:
        """The row label: ``"ScaleGMN-B"``, ``"GMN-B (sym. broken)"``, ... (``"-B"`` = bidirectional message
        passing, which only the graph metanetworks have; the NFN's label never carries it)."""
        directions = "-B" if bidirectional and self.model == "scalegmn" else ""
        return f"{self.name}{directions}{self.qualifier}"



@dataclass(frozen=True)
class RunKey:
    """One trained run of the ablation: ``family`` (e.g. ``"mlp-tanh"``), ``objective`` (``"ce"``/``"l1"``),
    ``method`` (the row label, e.g. ``"ScaleGMN-B"``) and ``seed``."""

    family: str
    objective: str
    method: str
    seed: int

    @property
    def label(self) -> str:
        """``"mlp-tanh ce ScaleGMN-B seed 0"`` (for legends and logs; read the fields, not this)."""
        return f"{self.family} {self.objective} {self.method} seed {self.seed}"

    def without_seed(self) -> tuple[str, str, str]:
        """``(family, objective, method)``: the runs that differ only in their seed share it."""
        return self.family, self.objective, self.method
