"""The metanetwork methods compared (ScaleGMN, the symmetry-broken GMN, the NFN peer; with or without symmetry
augmentation) and their row labels. What each method changes in a run's configuration is applied by
:meth:`workbench.pipeline.recipe.Recipe.config`."""
from __future__ import annotations

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
