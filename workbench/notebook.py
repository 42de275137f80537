"""Small helpers every notebook uses: one place that pins the plotly renderer and saves figures, progress bars
that read well in executed notebooks, and explorer widgets that leave a static figure behind.

**Batch runs.** A notebook executed without a live frontend (``python -m workbench run``, papermill, nbconvert) is
read later as a file: a tqdm widget bar in it is frozen at its first state ("0%| 0/136"), and an ipywidgets widget
is a ``VBox(children=...`` repr or a broken-link icon. :func:`batch_mode` tells the two situations apart
(``WORKBENCH_BATCH=1``/``0``, which the runner sets for its kernels; otherwise whether papermill, nbconvert or
nbclient started this kernel), and then

* :func:`progress_bar` (and every ``tqdm.auto`` bar once :func:`setup_notebook` ran) writes plain text lines: none
  for the empty start, at most one per :data:`BATCH_MININTERVAL` seconds, and one final summary line per bar;
* :func:`show_widget` displays a static snapshot of an explorer's current figure (and its printed text) instead of
  the widget.

Interactive JupyterLab keeps the widget bars and the live widgets.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .io import atomic_write_text

RENDERER = "plotly_mimetype+notebook_connected"
BATCH_ENV = "WORKBENCH_BATCH"
# processes whose kernels run notebooks without a frontend (the kernel's parent process command line)
BATCH_PARENTS = ("papermill", "nbconvert", "nbclient")
BATCH_MININTERVAL = 30.0  # seconds between two progress lines of one bar in a batch run


def setup_notebook(output_dir: str | os.PathLike, seed: int | None = None) -> Path:
    """Pin the plotly renderer (deterministic mimetype output for nbval), seed torch and create ``output_dir``;
    in a batch run (:func:`batch_mode`) also switch every ``tqdm.auto`` progress bar to plain text lines."""
    import plotly.io as pio

    pio.renderers.default = RENDERER
    if batch_mode():
        use_text_progress()
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    out = Path(output_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out


def save_figure(fig, output_dir: str | os.PathLike, name: str, png: bool | None = None) -> dict[str, Path]:
    """Write ``figures/<name>.json`` and its page ``figures/<name>.html`` (always) and ``.png`` (when asked and
    kaleido and a Chromium work).

    The page (:func:`workbench.figure_page.figure_page`) shows the figure's title, its caption -- the takeaway the
    figure function computed (:mod:`workbench.captions`) -- the plot drawn with ``figures/plotly.min.js`` (written
    once; no CDN, so it renders offline) and a link back to the run's ``index.html``. PNG export is best effort:
    its absence is not an error (the run's index makes its thumbnails itself).
    """
    from .figure_page import figure_page

    folder = Path(output_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    figure = json.loads(json.dumps(fig.to_plotly_json(), cls=_PlotlyEncoder()))
    atomic_write_text(folder / f"{name}.json", json.dumps(figure))
    written["json"] = folder / f"{name}.json"
    bundle = folder / "plotly.min.js"
    if not bundle.exists():
        from plotly.offline import get_plotlyjs

        atomic_write_text(bundle, get_plotlyjs())
    atomic_write_text(folder / f"{name}.html", figure_page(figure, name, run=Path(output_dir).name))
    written["html"] = folder / f"{name}.html"
    if png is None:
        png = os.environ.get("WORKBENCH_PNG", "0") == "1"
    if png:
        try:
            fig.write_image(folder / f"{name}.png")
            written["png"] = folder / f"{name}.png"
        except Exception:  # kaleido or Chromium missing: PNG is optional
            pass
    return written


def _PlotlyEncoder():
    from plotly.utils import PlotlyJSONEncoder

    return PlotlyJSONEncoder


# ---------------------------------------------------------------------------------------------------- batch runs


def batch_mode() -> bool:
    """Is this process executing notebooks with nobody watching (papermill, nbconvert, ``python -m workbench run``)?

    ``WORKBENCH_BATCH`` decides when set (``1``/``0``); otherwise a Jupyter kernel whose parent process is
    papermill, nbconvert or nbclient is in a batch run (the kernel then sets ``WORKBENCH_BATCH=1`` for the worker
    processes it starts). Everything else -- JupyterLab, a terminal, a test -- is not.
    """
    value = os.environ.get(BATCH_ENV, "").strip().lower()
    if value:
        return value not in ("0", "false", "no", "off")
    if "ipykernel" not in sys.modules:
        return False
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except (OSError, ValueError):  # not Linux: only WORKBENCH_BATCH tells
        return False
    if any(name in parent for name in BATCH_PARENTS):
        os.environ[BATCH_ENV] = "1"  # worker processes inherit it
        return True
    return False


class _Lines:
    """A file for :class:`TextProgress`: carriage returns dropped, whitespace-only writes ignored, to stderr."""

    def write(self, text: str) -> None:
        text = text.replace("\r", "")
        if text.strip():
            sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_TEXT_PROGRESS = None


def _text_progress_class():
    global _TEXT_PROGRESS
    if _TEXT_PROGRESS is not None:
        return _TEXT_PROGRESS
    from tqdm.std import tqdm as std_tqdm

    class TextProgress(std_tqdm):
        """tqdm for notebooks that are read as files: whole lines (no carriage returns, no cursor moves, no bar
        graphic), nothing for the empty start, at most one line per ``mininterval`` (at least
        :data:`BATCH_MININTERVAL` seconds), and always a final line (``leave`` is forced on) -- so the executed
        notebook records how long each loop took instead of a frozen "0%"."""

        KNOWN = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
        UNKNOWN = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"

        def __init__(self, *args, **kwargs):
            self._ready, self._closing, self._last_line = False, False, time.monotonic()
            kwargs["mininterval"] = max(float(kwargs.get("mininterval") or 0), BATCH_MININTERVAL)
            kwargs["maxinterval"] = max(float(kwargs.get("maxinterval") or 0), kwargs["mininterval"])
            kwargs["leave"], kwargs["dynamic_ncols"], kwargs["position"] = True, False, None
            kwargs.setdefault("file", _Lines())
            kwargs.pop("bar_format", None)
            super().__init__(*args, **kwargs)
            self._ready = True

        def display(self, msg=None, pos=None):
            if not self._ready or (self.disable and not self._closing):  # close() disables before its display
                return True
            if not self._closing and (self.n == self.initial
                                      or time.monotonic() - self._last_line < self.mininterval):
                return True
            self.bar_format = self.KNOWN if self.total else self.UNKNOWN
            text = str(self) if msg is None else msg
            if text.strip():
                self.fp.write(text.lstrip(": ") + "\n")
                self.fp.flush()
                self._last_line = time.monotonic()
            return True

        def close(self):
            if not self.disable and not self._closing:
                self._closing = True
            super().close()

        def clear(self, nolock=False):  # nothing drawn in place, nothing to clear
            pass

        def moveto(self, n):  # no cursor movement in a file
            pass

    _TEXT_PROGRESS = TextProgress
    return TextProgress


def progress_bar(*args, **kwargs):
    """A tqdm progress bar: plain text lines in a batch run (:func:`batch_mode`), ``tqdm.auto`` otherwise (a
    widget bar in JupyterLab, a terminal bar in a shell)."""
    if batch_mode():
        return _text_progress_class()(*args, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(*args, **kwargs)


def use_text_progress() -> None:
    """Make every ``tqdm.auto`` bar of this process a text bar: ``tqdm.auto``/``tqdm.autonotebook`` for later
    imports, and the ``tqdm`` name already bound by imported ``workbench`` modules."""
    import tqdm.auto
    import tqdm.autonotebook
    from tqdm.std import tqdm as std_tqdm

    text = _text_progress_class()
    originals = {getattr(tqdm.auto, "tqdm", None), getattr(tqdm.autonotebook, "tqdm", None)} - {text}
    for module in (tqdm.auto, tqdm.autonotebook):
        module.tqdm = text
        module.trange = lambda *args, **kwargs: text(range(*args), **kwargs)
    for name, module in list(sys.modules.items()):
        if name == "workbench" or name.startswith("workbench."):
            bound = getattr(module, "tqdm", None)
            if bound in originals and isinstance(bound, type) and issubclass(bound, std_tqdm):
                module.tqdm = text


def show_widget(widget, note: str | None = None) -> None:
    """Display an explorer widget (``workbench.viz``'s ``..._widget`` functions).

    Interactively: the live widget. In a batch run (:func:`batch_mode`), where nobody can move its controls and a
    saved widget shows only its repr or a broken-link icon: a one-line note naming the controls, then a static copy
    of what the widget's output areas show now (the figure at the initial settings and any printed text).
    """
    from IPython.display import display

    if not batch_mode():
        display(widget)
        return
    controls = [c.description for c in _walk(widget) if getattr(c, "description", "") and not _is_output(c)]
    note = note or ("Interactive explorer" + (f" ({', '.join(controls)})" if controls else "")
                    + ": a static snapshot at its initial settings. Run the notebook in Jupyter to move the controls.")
    display({"text/markdown": f"*{note}*", "text/plain": note}, raw=True)
    for view in (c for c in _walk(widget) if _is_output(c)):
        for output in view.outputs:
            if output.get("output_type") == "stream":
                stream = sys.stderr if output.get("name") == "stderr" else sys.stdout
                stream.write(output.get("text", ""))
                stream.flush()
            elif output.get("output_type") in ("display_data", "execute_result"):
                display(dict(output.get("data", {})), metadata=dict(output.get("metadata", {})), raw=True)
    for part in list(_walk(widget)):  # nobody will move it: close its comms (no widget state in the saved file)
        part.close()


def _is_output(widget) -> bool:
    return type(widget).__name__ == "Output" and hasattr(widget, "outputs")


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from _walk(child)
