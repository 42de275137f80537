"""The metanetwork's architecture in one frozen record, with the one set of defaults (nanoGPT's ``GPTConfig``).

:class:`~workbench.metanet.ScaleGMN` and :class:`~workbench.metanet.NFN` are built from a :class:`MetanetConfig`
(``ScaleGMN(spec, config)``; ``for_spec(spec, **fields)`` is the keyword shorthand), and
:class:`~workbench.training.train_config.TrainConfig` holds one as ``TrainConfig.meta``. A default changed here changes
it for the models, for training and for every notebook that leaves the setting out.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ConfigError
from ..rules import FRACTION, Rule, check_fields, setting
from .blocks import SYMMETRIES

__all__ = ["MetanetConfig", "MODELS", "META_FIELDS"]

MODELS = ("scalegmn", "nfn")
MAX_HIDDEN = 65_536  # far wider than any metanet here; a larger width is a typo, refused before memory runs out
MAX_LAYERS = 1_000


@dataclass(frozen=True)
class MetanetConfig:
    """What a metanetwork is: which model, how wide, how deep, which symmetry.

    Args:
        model: ``"scalegmn"`` (:class:`~workbench.metanet.ScaleGMN`; with symmetry ``"none"`` the symmetry-broken GMN
            ablation) or ``"nfn"`` (:class:`~workbench.metanet.NFN`, permutation-equivariant NP layers with no scaling
            symmetry: ``symmetry`` must be None or ``"none"``; ``bidirectional`` is not used).
        hidden: feature size (ScaleGMN) or channels of the weight-space features (NFN) (default 64).
        n_layers: message-passing layers (ScaleGMN) or NP layers (NFN) (default 4).
        bidirectional: ScaleGMN also sends backward messages (the "-B" variant; default True).
        symmetry: ``"scale"`` (ReLU), ``"sign"`` (tanh) or ``"none"`` (symmetry broken); None picks the group of the
            networks' activation.
        dropout: dropout inside the invariant MLPs (ScaleGMN) or on the hidden features (NFN).
        gate: also output an invariant multiplicative gate per weight and bias, so a weight can be shrunk or pruned
            directly (default True).
        out_scale_init: initial per-layer output scale of the residual update (and of the gate).
        io_embed: NFN only: learned embeddings of the input and output neurons, which NP sharing would otherwise treat
            as exchangeable (default True).
        scale_norm: ScaleGMN with positive-scale symmetry (ReLU networks) only: run the pass on each network divided
            by its path-norm scale and multiply the update back (:mod:`workbench.metanet.global_scale`), so the update
            of a network whose weights are all ``c`` times larger is exactly ``c`` times larger, instead of growing
            like ``c^8``; exactly equivariant (default True). Runs trained before it existed had it off.
    """

    model: str = setting("scalegmn", Rule(choices=MODELS))
    hidden: int = setting(64, Rule(low=1, high=MAX_HIDDEN))
    n_layers: int = setting(4, Rule(low=1, high=MAX_LAYERS))
    bidirectional: bool = True
    symmetry: str | None = setting(None, Rule(choices=(None, *SYMMETRIES), note="unknown symmetry"))
    dropout: float = setting(0.0, FRACTION)
    gate: bool = True
    out_scale_init: float = 0.01
    io_embed: bool = True
    scale_norm: bool = True

    def __post_init__(self):
        check_fields(self)  # each field's rule and kind, declared above (params files' meta_<field> keys read them)
        if self.model == "nfn" and self.symmetry not in (None, "none"):
            raise ConfigError(f"MetanetConfig.symmetry is {self.symmetry!r}, but the NFN (model='nfn') has no scaling "
                              "symmetry: leave symmetry None or set it to 'none'")


#: the field names, which :class:`~workbench.training.train_config.TrainConfig`'s flat form keeps beside its own
META_FIELDS = tuple(f.name for f in fields(MetanetConfig))
