"""The metanetwork methods compared (ScaleGMN, the symmetry-broken GMN, the NFN peer; with or without symmetry
augmentation), their row labels, and the training settings each method adds to a run."""
from __future__ import annotations

import torch

from ..metanet import MetanetConfig, ScaleGMN, count_parameters, matched_hidden
from ..nets import NetSpec
from ..records import Method

__all__ = ["METHODS", "method_label", "epochs_text"]

#: the metanetworks compared, by key (see :class:`~workbench.records.Method`). "nfn": the permutation-equivariant
#: Neural Functional Network (Zhou et al. 2023), the peer baseline that knows no scaling symmetry; "nfn-aug" trains
#: it on randomly rescaled/sign-flipped copies.
METHODS = {m.key: m for m in (
    Method("scalegmn", "ScaleGMN", "", symmetry=None, group_augment=False, model="scalegmn"),
    Method("gmn", "GMN", " (sym. broken)", symmetry="none", group_augment=False, model="scalegmn"),
    Method("gmn-aug", "GMN", " + sym. aug.", symmetry="none", group_augment=True, model="scalegmn"),
    Method("nfn", "NFN", " (perm. only)", symmetry="none", group_augment=False, model="nfn"),
    Method("nfn-aug", "NFN", " + sym. aug.", symmetry="none", group_augment=True, model="nfn"),
)}


def method_label(method: str, bidirectional: bool) -> str:
    """"ScaleGMN-B", "GMN-B (sym. broken)", "GMN-B + sym. aug." ("-B" = bidirectional); "NFN (perm. only)" and
    "NFN + sym. aug." whatever ``bidirectional`` (the NFN has no message directions). Labels are for display: code
    identifies a method by its key."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    return METHODS[method].label(bidirectional)


def epochs_text(epochs: int) -> str:
    """``"1 epoch"``, ``"5 epochs"``: a budget in row labels and claims."""
    return f"{int(epochs)} epoch{'' if int(epochs) == 1 else 's'}"


def _method_settings(method: str, settings: dict, spec: NetSpec) -> tuple[str | None, dict]:
    """``method``'s symmetry override and ``settings`` with its augmentation and model added. ``model`` is only set
    for a non-default model, so ScaleGMN/GMN configs (and their run folders) are exactly those of before NFN.

    ``settings["nfn_hidden"]`` (read by the NFN methods only and dropped for the others): the NFN's ``hidden`` --
    an int, or ``"match"`` (the default) for the size whose parameter count is closest to the ScaleGMN of the same
    settings (``hidden``, ``n_layers``, ``bidirectional``, ``gate``) for ``spec``: a comparable budget per family."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    m = METHODS[method]
    settings = dict(settings)
    nfn_hidden = settings.pop("nfn_hidden", "match")
    if m.group_augment:
        settings["group_augment"] = True
    if m.model != "scalegmn":
        settings["model"] = m.model
    if m.model == "nfn" and nfn_hidden is not None:
        settings["hidden"] = _nfn_hidden(spec, nfn_hidden, settings)
    return m.symmetry, settings


def _nfn_hidden(spec: NetSpec, nfn_hidden, settings: dict) -> int:
    if nfn_hidden == "match":  # the ScaleGMN (its activation's symmetry) of the same size settings
        size = ("hidden", "n_layers", "bidirectional", "gate")
        meta = MetanetConfig(**{k: settings[k] for k in size if k in settings})
        with torch.device("meta"):  # shapes only
            target = count_parameters(ScaleGMN(spec, meta))
        return matched_hidden(spec, target, meta.n_layers, gate=meta.gate)
    if isinstance(nfn_hidden, bool) or not isinstance(nfn_hidden, int) or nfn_hidden < 1:
        raise ValueError(f"nfn_hidden must be a positive integer or 'match', got {nfn_hidden!r}")
    return nfn_hidden
