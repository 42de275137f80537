"""Figure captions: the one-paragraph takeaway a figure carries, computed from the data it draws.

Every figure function of :mod:`workbench.viz` ends with :func:`set_caption`: sentences built from the numbers it
plotted (never typed by hand), stored in the figure's ``layout.meta`` -- plotly keeps ``meta`` in the saved JSON
and draws nothing for it. :func:`workbench.notebook.save_figure` puts the caption under the title of the figure's
page, and the run's index (:mod:`workbench.reporting.index`) beside the figure's thumbnail; :func:`caption_of` reads it
back from a figure or its saved JSON.

The helpers here are the shared parts of those sentences: :func:`still_improving` (has a training curve stopped
falling?), :func:`names` (``"a, b and c"``) and :func:`num` (a number as a caption prints it).
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import numpy as np

__all__ = ["CAPTION_KEY", "set_caption", "caption_of", "title_of", "title_parts", "still_improving", "convergence",
           "names", "num", "sig", "plural", "readable", "interval_text", "IMPROVING_WINDOW", "IMPROVING_SHARE"]

CAPTION_KEY = "workbench_caption"
#: a curve is "still improving" when its last epoch is its best and the last IMPROVING_WINDOW epochs improved it by
#: more than IMPROVING_SHARE of everything the run improved it: a run stopped by patience, or one whose last epochs
#: move it by less than 2 % of its total progress, counts as levelled off
IMPROVING_WINDOW = 3
IMPROVING_SHARE = 0.02


def set_caption(fig, *sentences: str):
    """Store ``sentences`` (empty ones dropped) as ``fig``'s caption; returns ``fig``."""
    text = " ".join(s.strip() for s in sentences if s and s.strip())
    text = re.sub(r"(?<!\.)\.\.(?!\.)", ".", text)  # a name ending in "." ("sym. aug.") before a full stop
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    fig.update_layout(meta={**meta, CAPTION_KEY: text})
    return fig


def _layout(figure) -> dict:
    if isinstance(figure, dict):
        layout = figure.get("layout")
        return layout if isinstance(layout, dict) else {}
    return figure.to_plotly_json().get("layout", {})


def caption_of(figure) -> str:
    """The caption :func:`set_caption` stored in ``figure`` (a plotly Figure or its JSON as a dict); "" if none."""
    meta = _layout(figure).get("meta")
    text = meta.get(CAPTION_KEY) if isinstance(meta, dict) else None
    return text if isinstance(text, str) else ""


def _plain(markup: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup)).strip()


def title_of(figure) -> str:
    """``figure``'s title as plain text (markup such as ``<br><sup>`` turned into spaces); "" if none."""
    return " ".join(part for part in title_parts(figure) if part)


def title_parts(figure) -> tuple[str, str]:
    """``(title, subtitle)`` as plain text: a title's first line, and what follows its first ``<br>`` ("" if none)."""
    title = _layout(figure).get("title")
    if isinstance(title, dict):
        title = title.get("text")
    if not isinstance(title, str):
        return "", ""
    parts = re.split(r"<br\s*/?>", title, maxsplit=1)
    return _plain(parts[0]), (_plain(parts[1]) if len(parts) > 1 else "")


def still_improving(values: Sequence[float], lower_is_better: bool = True, window: int = IMPROVING_WINDOW,
                    share: float = IMPROVING_SHARE) -> bool:
    """Whether a training curve had not levelled off when it ended: its last value is its best, and the last
    ``window`` epochs improved it by more than ``share`` of the whole run's improvement (first value to best).
    Non-finite values are dropped; a curve of fewer than ``window + 1`` values says nothing (False)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size < window + 1:
        return False
    if not lower_is_better:
        v = -v
    total = v[0] - v.min()
    if total <= 0 or v[-1] > v.min():
        return False
    return bool(v[-1 - window] - v[-1] > share * total)


def convergence(values: Sequence[float], lower_is_better: bool = True) -> str:
    """``"falling"`` (:func:`still_improving`), ``"too short"`` (fewer than ``IMPROVING_WINDOW + 1`` finite epochs:
    nothing can be told), or ``"levelled"`` (levelled off, or stopped past its best)."""
    finite = [x for x in values if x is not None and math.isfinite(x)]
    if len(finite) < IMPROVING_WINDOW + 1:
        return "too short"
    return "falling" if still_improving(finite, lower_is_better) else "levelled"


def names(items: Iterable[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"`` (duplicates dropped, order kept); ``"none"`` when empty."""
    items = [str(i) for i in dict.fromkeys(items)]
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def num(value: float, digits: int = 1, sign: bool = False) -> str:
    """A number as a caption prints it: ``digits`` decimals, thousands separated, ``n/a`` for NaN."""
    if value is None or value != value:
        return "n/a"
    if math.isinf(value):
        return "infinite" if value > 0 else "-infinite"
    return f"{value:+,.{digits}f}" if sign else f"{value:,.{digits}f}"


def sig(value: float, digits: int = 3) -> str:
    """A number to ``digits`` significant digits (a cost ratio of 0.0042 stays readable): ``n/a`` for NaN."""
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}g}"


def plural(n: int, word: str) -> str:
    """``"1 epoch"``, ``"5 epochs"``."""
    return f"{int(n)} {word}{'' if int(n) == 1 else 's'}"


def readable(value: float) -> str:
    """A number as a table shows it: 4 significant digits, no exponent from 0.001 to 10,000, thousands separated
    above, no trailing zeros (72.893000 -> 72.89, 0.070000 -> 0.07, 8.000000 -> 8, 1.2e-07 stays)."""
    if value != value:
        return "n/a"
    if value == 0:
        return "0"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    size = abs(value)
    if size >= 1e4:
        return f"{value:,.0f}"
    if size < 1e-3:
        return f"{value:.3g}"
    text = f"{value:.{max(0, 3 - math.floor(math.log10(size)))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def interval_text(value: float, lo: float, hi: float) -> str:
    """``"value [lo, hi]"`` to the precision the interval supports: decimals enough for two significant digits of
    its width (-13.93 [-17.25, -9.976] -> -13.9 [-17.3, -10.0]); :func:`readable` numbers without an interval."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (value, lo, hi)) or hi <= lo:
        return f"{readable(value)} [{readable(lo)}, {readable(hi)}]"
    decimals = min(6, max(0, 1 - math.floor(math.log10(hi - lo))))

    def fixed(v: float) -> str:
        text = f"{v:.{decimals}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"

    return f"{fixed(value)} [{fixed(lo)}, {fixed(hi)}]"
