"""What every run of a notebook sequence shares, as frozen records built once and passed to every pipeline function:
the data set (:class:`DataRecipe`), the zoo (:class:`ZooRecipe`) and the metanetworks' training recipe
(:class:`Recipe`, a :class:`~workbench.training.train_config.TrainConfig` template).

A notebook builds them from its parameters with one rule each -- ``Recipe.from_values(globals())`` reads every
``meta_<field>`` parameter (and ``meta_extra``, ``device``) -- so a setting is declared once, in the parameters cell,
and never retyped. :meth:`Recipe.config` turns the recipe into the :class:`TrainConfig` of one run: a method (its
symmetry, model and augmentation), an objective, an L1 weight and a seed; nothing else varies between the runs of a
sequence. The records are frozen and picklable, so worker processes receive them as they are.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..metanet import MetanetConfig, ScaleGMN, count_parameters, matched_hidden
from ..metanet.config import META_FIELDS
from ..nets import NetSpec
from ..rules import MAX_EPOCHS, Rule, check_fields, setting
from ..symmetry import group_for
from ..training.train_config import TrainConfig
from ..zoo import Zoo
from .methods import METHODS

__all__ = ["OBJECTIVES", "SETTINGS_PREFIX", "DataRecipe", "ZooRecipe", "Recipe"]

OBJECTIVES = ("ce", "l1")
#: the prefix of the parameters that set a training setting: ``meta_<name>`` sets ``<name>``
SETTINGS_PREFIX = "meta_"
#: settings a ``meta_`` parameter may not set: a run's seed and L1 weight come with the run, the method chooses
#: symmetry and model, and ``device`` is a run-wide parameter of its own
_NOT_BY_PREFIX = ("lam", "seed", "device", "symmetry", "model")
#: settings of the recipe besides TrainConfig's and MetanetConfig's fields
_RECIPE_FIELDS = ("mlp_epochs", "nfn_hidden")


@dataclass(frozen=True)
class DataRecipe:
    """The image data set the zoo networks solve: ``dataset`` (digits ships with scikit-learn; ``cifar10-gs`` is read
    from ``data_path``) and the ``seed`` of its train/val/test split."""

    dataset: str = "digits"
    data_path: str | None = None
    seed: int = 0

    def load(self) -> Dataset:
        return load_dataset(self.dataset, self.data_path, seed=self.seed)


@dataclass(frozen=True)
class ZooRecipe:
    """A family's zoo: generated (``n_networks`` networks trained ``zoo_epochs`` epochs, cached under the output
    folder) or the Small CNN Zoo at ``zoo_path`` (its checkpoints ``zoo_steps``). ``cache_suffix`` names a second
    zoo of the same family (notebook 07's bigger scaling zoo)."""

    n_networks: int
    zoo_epochs: int
    seed: int = 0
    zoo_path: str | None = None
    zoo_steps: tuple[int, ...] | str | None = None
    test_fraction: float = 0.5
    cache_suffix: str = ""
    device: str = "cpu"

    def __post_init__(self):
        for name, low in (("n_networks", 2), ("zoo_epochs", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"ZooRecipe.{name} is {value!r}, but must be an integer >= {low}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"ZooRecipe.test_fraction is {self.test_fraction!r}, but must be in (0, 1)")

    def load(self, output_dir: str | os.PathLike, family: str, data: Dataset | None, *, progress: bool = True,
             verbose: bool = True) -> Zoo:
        from .zoos import get_zoo

        steps = list(self.zoo_steps) if isinstance(self.zoo_steps, tuple) else self.zoo_steps
        return get_zoo(output_dir, family, data, n_networks=self.n_networks, zoo_epochs=self.zoo_epochs,
                       seed=self.seed, zoo_path=self.zoo_path, zoo_steps=steps, test_fraction=self.test_fraction,
                       cache_suffix=self.cache_suffix, device=self.device, progress=progress, verbose=verbose)


@dataclass(frozen=True)
class Recipe:
    """How every metanetwork of a sequence is trained.

    Args:
        train: the template of every run's :class:`TrainConfig` (its ``lam``, ``seed`` and the metanet's
            ``symmetry``/``model`` are set per run by :meth:`config`).
        mlp_epochs: the epochs of MLP families instead of ``train.epochs`` (None: the same).
        nfn_hidden: the NFN methods' width -- an int, or ``"match"``: the size whose parameter count is closest to the
            ScaleGMN of the same settings for the family's architecture (a comparable budget).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    mlp_epochs: int | None = setting(None, Rule(low=1, high=MAX_EPOCHS))
    nfn_hidden: int | str = "match"

    def __post_init__(self):
        check_fields(self)  # mlp_epochs' rule (params files' meta_mlp_epochs reads it too)
        if self.nfn_hidden != "match" and (isinstance(self.nfn_hidden, bool) or not isinstance(self.nfn_hidden, int)
                                           or self.nfn_hidden < 1):
            raise ConfigError(f"Recipe.nfn_hidden must be a positive integer or 'match', got {self.nfn_hidden!r}")

    @staticmethod
    def setting_names() -> list[str]:
        """Every ``<name>`` a ``meta_<name>`` key may set: TrainConfig's, MetanetConfig's and the recipe's fields,
        less the run-wide ones and those a method chooses."""
        own = {f.name for f in dataclasses.fields(TrainConfig)} - {"meta"}
        return sorted((own | set(META_FIELDS) | set(_RECIPE_FIELDS)) - set(_NOT_BY_PREFIX))

    @classmethod
    def from_values(cls, values: Mapping) -> "Recipe":
        """The recipe among notebook parameters or a params file's values, by one rule: ``meta_<name>`` sets
        ``<name>``, a field of :class:`TrainConfig`, of its :class:`~workbench.metanet.MetanetConfig` or of the recipe
        (``meta_mlp_epochs``); ``meta_extra`` (a mapping of more ``meta_<name>`` keys) likewise; ``device`` sets the
        device. Other keys are ignored; a ``meta_`` key that names no setting is an error listing the valid ones."""
        names = cls.setting_names()
        extra = values.get(SETTINGS_PREFIX + "extra") or {}
        if not isinstance(extra, Mapping):
            raise ConfigError(f"meta_extra must be a mapping of meta_<name> keys, got {type(extra).__name__}")
        settings = {"device": values["device"]} if "device" in values else {}
        for key, value in {**dict(extra), **{k: v for k, v in values.items() if isinstance(k, str)}}.items():
            if not key.startswith(SETTINGS_PREFIX) or key == SETTINGS_PREFIX + "extra":
                continue
            name = key[len(SETTINGS_PREFIX):]
            if name not in names:
                raise ConfigError(f"{key!r} sets no training setting; valid keys are "
                                  f"{[SETTINGS_PREFIX + n for n in names]}")
            settings[name] = value
        recipe = {k: settings.pop(k) for k in _RECIPE_FIELDS if k in settings}
        return cls(TrainConfig.from_dict(settings), **recipe)

    def with_train(self, **changes) -> "Recipe":
        """This recipe with fields of its :class:`TrainConfig` (or of the metanet's config) changed."""
        meta = {k: v for k, v in changes.items() if k in META_FIELDS}
        own = {k: v for k, v in changes.items() if k not in META_FIELDS}
        train = dataclasses.replace(self.train, **own, meta=dataclasses.replace(self.train.meta, **meta))
        return dataclasses.replace(self, train=train)

    @property
    def bidirectional(self) -> bool:
        return self.train.meta.bidirectional

    def epochs(self, spec: NetSpec) -> int:
        """The epochs of a run on ``spec``'s family."""
        return self.mlp_epochs if spec.kind == "mlp" and self.mlp_epochs is not None else self.train.epochs

    def config(self, spec: NetSpec, *, method: str = "scalegmn", objective: str = "ce", lam: float = 0.0,
               seed: int = 0) -> TrainConfig:
        """The :class:`TrainConfig` of one run: ``method`` (a key of :data:`~workbench.pipeline.METHODS`: its
        symmetry -- the activation's group or "none" --, model and augmentation) on ``spec``'s family, for
        ``objective`` (``lam`` applies to "l1" only; ``l1_from_ce`` means nothing to a CE run) and ``seed``."""
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
        m = METHODS[method]
        meta = dataclasses.replace(self.train.meta, symmetry=m.symmetry or group_for(spec), model=m.model)
        if m.model == "nfn":
            meta = dataclasses.replace(meta, hidden=self._nfn_hidden(spec))
        return dataclasses.replace(
            self.train, meta=meta, lam=float(lam) if objective == "l1" else 0.0, seed=int(seed),
            epochs=self.epochs(spec), group_augment=self.train.group_augment or m.group_augment,
            l1_from_ce=self.train.l1_from_ce and objective == "l1")

    def _nfn_hidden(self, spec: NetSpec) -> int:
        if self.nfn_hidden != "match":
            return int(self.nfn_hidden)
        # the ScaleGMN of this recipe's size settings for this architecture
        t = self.train.meta
        meta = MetanetConfig(hidden=t.hidden, n_layers=t.n_layers, bidirectional=t.bidirectional, gate=t.gate)
        with torch.device("meta"):  # shapes only
            target = count_parameters(ScaleGMN(spec, meta))
        return matched_hidden(spec, target, meta.n_layers, gate=meta.gate)
