"""The configuration of one meta-optimizer training run, and the metanetwork it builds.

:class:`TrainConfig` holds the optimization settings and, as ``meta``, the frozen
:class:`~workbench.metanet.MetanetConfig` of the metanetwork (nanoGPT's ``GPT(config)``: :func:`build_model` builds
the model from it). Its flat dict form (:meth:`TrainConfig.to_dict`) is what checkpoints store and run-folder
digests hash (:meth:`TrainConfig.digest`: every field at its default left out, by one rule, so a field added later
with a default changes no digest).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..metanet import NFN, ScaleGMN
from ..metanet.config import META_FIELDS, MetanetConfig
from ..nets import NetSpec
from ..rules import (
    DEVICE, MAX_EPOCHS, MAX_NETWORKS, NON_NEGATIVE, POSITIVE, POSITIVE_INT, SEED, Rule, check_fields, setting,
)

__all__ = ["TrainConfig", "build_model", "cpu_has_native_bf16", "resolve_cpu_amp", "resolve_device",
           "AUTO_BF16_MIN_HIDDEN"]

#: MetanetConfig.scale_norm changes only a ScaleGMN of positive-scale symmetry; a flat form written before it existed
#: (no such key) means off
_SCALE_NORM = "scale_norm"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one meta-optimizer training run: the optimization here, the metanetwork in ``meta``.

    Args:
        lam: L1 weight (0 = cross-entropy only; > 0 = sparsity objective).
        epochs: passes over the training networks.
        batch_networks: networks per step (global, across DDP ranks).
        batch_images: images per step (the same images for all networks of the step).
        lr, weight_decay, warmup_steps, grad_clip: AdamW settings.
        seed: seeds initialisation, batch order and dropout.
        device: "auto" (CUDA when present), "cpu" or "cuda[:i]".
        amp: bf16 autocast when on CUDA.
        val_images: cap on validation images per evaluation (None = all).
        val_networks: cap on the validation entries scored per evaluation, taken in zoo order (whole networks with all
            their checkpoints first; None = all). Scoring costs a one-shot pass per epoch, not training.
        noise: weight-space augmentation: every training network of a step gets Gaussian noise of standard deviation
            ``noise`` x (that network's RMS of that layer's weights, resp. biases) added to its input. The objective
            is computed on the metanet's output for the noisy network, so a perturbed network is as valid a training
            input as a zoo network (0 = off).
        group_augment: apply a random element of the activation's symmetry group (hidden-neuron permutations and
            sign flips, or positive scales log-uniform on ``augment_scales``) to every training network of a step.
            Function-preserving; a no-op for the exactly equivariant ScaleGMN up to float rounding, it is what trains
            the symmetry-broken GMN fairly ("GMN-B + symmetry augmentation").
        augment_scales: range of the positive scales drawn by ``group_augment`` for ReLU networks.
        patience: stop when the validation loss has not improved for this many epochs (None = run all epochs).
        skip_untrained: leave the zoo's untrained (epoch-0) checkpoints out of the training and validation networks
            of a pipeline run (:func:`workbench.pipeline.train_metanet`, which knows each entry's epoch; :func:`train`
            itself takes whatever params it is given). No map from weights alone turns a random network into a
            classifier, the results' headline is on trained checkpoints, and an epoch costs a quarter less.
        l1_from_ce: an L1 run (``lam > 0``) of a pipeline run (:func:`workbench.pipeline.train_metanet`) starts from
            the trained weights of the cross-entropy run with the same settings, method and seed (trained first when
            missing), instead of a random initialisation: the metanet first learns to improve networks, then to
            sparsify them. From scratch the uniform L1 pull is learnt long before any selective improvement, and the
            metanet drifts towards shrinking everything (on validation networks of the digits CNN zoos it ended
            worse than the all-zero network for CNN-ReLU). No effect on cross-entropy runs.
        compile: run the training steps' metanet forward (and so its backward) through ``torch.compile``
            (:class:`~workbench.metanet.Compiled`): the same model, each step's result the same up to float rounding
            (which compounds over a run, so a compiled run is a run of its own), faster steps after seconds to tens of
            seconds of compiling in the first step (cached on disk for later runs; measured in bench/README.md).
            Falls back to eager, logged, when compiling fails; not used under DDP.
        cpu_amp: bf16 autocast of the training steps on a CPU (``amp`` is for CUDA): ``"auto"`` (default) turns it
            on where the CPU has native bf16 units (avx512_bf16 or AMX; :func:`cpu_has_native_bf16`) and the metanet
            has ``hidden >= 32`` (narrower, it measured slower than fp32: :data:`AUTO_BF16_MIN_HIDDEN`), and leaves
            fp32 elsewhere; True forces it (several times slower than fp32 without such units, and training warns),
            False keeps fp32. Resolved when training starts; every history record names the precision the steps ran
            in (``precision``: ``"bf16"`` or ``"fp32"``). Validation stays in fp32.
        train_eval_networks: every epoch the one-shot objective is also measured on this many training networks (the
            same validation images), so the history shows the gap between seen and unseen networks (0 = off).
        meta: the metanetwork (:class:`~workbench.metanet.MetanetConfig`: model, hidden, n_layers, bidirectional,
            symmetry, dropout, gate, ...). Named after the params files' ``meta_`` prefix: ``meta_<field>`` in a
            params file sets the field of that name here or in ``meta``.
    """

    lam: float = setting(0.0, NON_NEGATIVE)
    epochs: int = setting(20, Rule(low=1, high=MAX_EPOCHS))
    batch_networks: int = setting(32, POSITIVE_INT)
    batch_images: int = setting(128, POSITIVE_INT)
    lr: float = setting(1e-3, POSITIVE)
    weight_decay: float = setting(0.01, NON_NEGATIVE)
    warmup_steps: int = setting(20, NON_NEGATIVE)
    grad_clip: float = setting(10.0, POSITIVE)
    seed: int = setting(0, SEED)
    device: str = setting("auto", DEVICE)
    amp: bool = True
    val_images: int | None = setting(None, POSITIVE_INT)
    val_networks: int | None = setting(None, Rule(low=1, high=MAX_NETWORKS))
    noise: float = setting(0.0, NON_NEGATIVE)
    group_augment: bool = False
    augment_scales: tuple[float, float] = setting((0.25, 4.0), Rule(low=0, low_open=True, nonempty=True, kind="float"))
    patience: int | None = setting(None, POSITIVE_INT)
    train_eval_networks: int = setting(128, NON_NEGATIVE)
    skip_untrained: bool = False
    l1_from_ce: bool = False
    compile: bool = False
    cpu_amp: bool | str = setting("auto", Rule(choices=(False, True, "auto"),
                                               note="'auto': bf16 where the CPU has native bf16 units"))
    meta: MetanetConfig = field(default_factory=MetanetConfig)

    def __post_init__(self):
        check_fields(self)  # each field's rule and kind, declared above (params files' meta_<field> keys read them)
        if not isinstance(self.meta, MetanetConfig):
            raise ConfigError(f"TrainConfig.meta must be a MetanetConfig, got {type(self.meta).__name__}")
        scales = self.augment_scales
        if len(scales) != 2 or not scales[0] <= scales[1]:
            raise ConfigError(f"augment_scales must be a (low, high) pair with 0 < low <= high, got {scales!r}")

    def to_dict(self) -> dict:
        """The flat form: this config's fields and ``meta``'s side by side (no name is in both) -- what checkpoints
        and run records store; :meth:`from_dict` reads it back (and any subset of it)."""
        d = dataclasses.asdict(self)
        meta = d.pop("meta")
        return {**d, **meta}

    def digest(self) -> str:
        """The run's identity for its folder name: the SHA-256 (first 8 hex digits) of the flat form *without every
        field at its default* -- one rule, so that a field added later with a default changes no run's digest."""
        import hashlib
        import json

        defaults = type(self)().to_dict()
        changed = {k: v for k, v in self.to_dict().items() if v != defaults[k]}
        return hashlib.sha256(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:8]

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config of a flat form (:meth:`to_dict`, any subset; the rest default): each name goes to the class
        that has the field. Checkpoints written before ``meta`` existed hold the same form and load unchanged."""
        own = {f.name for f in dataclasses.fields(cls)} - {"meta"}
        unknown = sorted(set(d) - own - set(META_FIELDS))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; valid settings are "
                             f"{sorted(own | set(META_FIELDS))}")
        settings = {k: v for k, v in d.items() if k in own}
        if _SCALE_NORM not in d and _scale_norm_matters(d):  # a run from before scale_norm: it was off
            d = {**d, _SCALE_NORM: False}
        if "augment_scales" in settings:  # JSON and checkpoints store tuples as lists
            settings["augment_scales"] = tuple(settings["augment_scales"])
        return cls(**settings, meta=MetanetConfig(**{k: v for k, v in d.items() if k in META_FIELDS}))


def _scale_norm_matters(flat: dict) -> bool:
    """Whether ``scale_norm`` changes the model of a flat form: a ScaleGMN whose symmetry is set to "scale"."""
    return flat.get("model", "scalegmn") == "scalegmn" and flat.get("symmetry") == "scale"


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (avx512_bf16 or AMX tiles): where ``TrainConfig.cpu_amp`` pays."""
    return any(bool(getattr(torch.cpu, name, lambda: False)())
               for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


#: ``cpu_amp="auto"`` turns bf16 on from this metanet width: on an avx512_bf16 CPU (AMD EPYC, bench/README.md) bf16
#: training steps ran 1.2x - 1.9x faster than fp32 at hidden 32 and 128, and 0.84x - 1.0x as fast at hidden 16, where
#: the products are too small to pay for autocast's casts
AUTO_BF16_MIN_HIDDEN = 32


def resolve_cpu_amp(config: TrainConfig, device: torch.device, native_bf16=cpu_has_native_bf16) -> bool:
    """Whether training steps run in bf16 autocast on ``device``: on CUDA ``config.amp``; on a CPU
    ``config.cpu_amp``, where ``"auto"`` means "where this CPU has native bf16 units (``native_bf16()``) and the
    metanet is wide enough for them to pay" (:data:`AUTO_BF16_MIN_HIDDEN`)."""
    if device.type == "cuda":
        return bool(config.amp)
    if device.type != "cpu":
        return False
    if config.cpu_amp == "auto":
        return config.meta.hidden >= AUTO_BF16_MIN_HIDDEN and native_bf16()
    return bool(config.cpu_amp)


def resolve_device(device: str) -> torch.device:
    """The torch device of a :attr:`TrainConfig.device` setting: "auto" is CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but no CUDA device is available; use device='auto'")
    return dev


def build_model(spec: NetSpec, config: TrainConfig | MetanetConfig) -> ScaleGMN | NFN:
    """The (untrained) metanetwork ``config`` (or its ``meta``) describes for networks of ``spec``."""
    meta = config.meta if isinstance(config, TrainConfig) else config
    return (NFN if meta.model == "nfn" else ScaleGMN)(spec, meta)
