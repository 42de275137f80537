"""The look every figure shares: one colour cycle, one marker per metanetwork method, one dash per method for
lines -- so a method is recognised by its marker in every figure of a run, and tells itself apart in greyscale."""
from __future__ import annotations

__all__ = ["PALETTE", "METHOD_SYMBOLS", "METHOD_DASHES", "method_symbol", "method_dash"]

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

#: one marker per one-shot method (by its row label), the same in every figure
METHOD_SYMBOLS = {"ScaleGMN-B": "star", "ScaleGMN": "star", "NFN (perm. only)": "diamond",
                  "GMN-B (sym. broken)": "triangle-up", "GMN (sym. broken)": "triangle-up",
                  "GMN-B + sym. aug.": "triangle-down", "GMN + sym. aug.": "triangle-down",
                  "NFN + sym. aug.": "diamond-open"}
METHOD_DASHES = {"ScaleGMN-B": "solid", "ScaleGMN": "solid", "NFN (perm. only)": "dashdot",
                 "GMN-B (sym. broken)": "dash", "GMN (sym. broken)": "dash",
                 "GMN-B + sym. aug.": "dot", "GMN + sym. aug.": "dot", "NFN + sym. aug.": "longdashdot"}
_SPARE_SYMBOLS = ("square", "circle", "cross", "x", "pentagon", "hexagon")


def method_symbol(label: str, position: int = 0) -> str:
    """The marker of the method labelled ``label``; an unknown label gets a spare marker by its ``position``."""
    return METHOD_SYMBOLS.get(label, _SPARE_SYMBOLS[position % len(_SPARE_SYMBOLS)])


def method_dash(label: str) -> str:
    """The line dash of the method labelled ``label`` (solid when unknown)."""
    return METHOD_DASHES.get(label, "solid")
