"""Small helpers every notebook uses: one place that pins the plotly renderer and saves figures, and explorer widgets
that leave a static figure behind.

**Batch runs.** A notebook executed without a live frontend (``python -m workbench run``, papermill, nbconvert) is
read later as a file: an ipywidgets widget in it is a ``VBox(children=...`` repr or a broken-link icon, a tqdm widget
bar is frozen at "0%". When :func:`workbench.system.progress.batch_mode` says so, :func:`setup_notebook` turns every
``tqdm.auto`` bar into plain text lines (:mod:`workbench.system.progress`) and :func:`show_widget` displays a static
snapshot of an explorer's current figure (and its printed text) instead of the widget.

Interactive JupyterLab keeps the widget bars and the live widgets.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .system.io import atomic_write_text
from .system.progress import batch_mode, use_text_progress

RENDERER = "plotly_mimetype+notebook_connected"


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

    The page (:func:`workbench.reporting.figure_page.figure_page`) shows the figure's title, its caption -- the takeaway
    the figure function computed (:mod:`workbench.reporting.captions`) -- the plot drawn with ``figures/plotly.min.js``
    (written once; no CDN, so it renders offline) and a link back to the run's ``index.html``. PNG export is best
    effort: its absence is not an error (the run's index makes its thumbnails itself).
    """
    from .reporting.figure_page import figure_page

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
