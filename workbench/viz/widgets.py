"""Widget plumbing shared by the notebooks' explorers.

Figures are put into an ``ipywidgets.Output`` as widget *state* (``view.outputs = ...``) rather than displayed
inside ``with out:``. Captured display messages are echoed back to the kernel by headless runners (nbclient, hence
papermill and nbconvert) on the shell channel, which can race with the execute reply and hang a run forever
(nbclient #312, papermill #723) -- observed here with notebook 01 under papermill.
"""
from __future__ import annotations

import json

import plotly.graph_objects as go
import plotly.io as pio

__all__ = ["figure_mime_bundle", "show_in"]


def figure_mime_bundle(fig: go.Figure) -> dict:
    """The figure as a plotly mime bundle, built without plotly's renderers (which may publish display messages)."""
    return {
        "application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
        "text/plain": f"<plotly figure: {fig.layout.title.text or 'untitled'}>",
    }


def show_in(view, fig: go.Figure, text: str | None = None) -> None:
    """Replace the contents of Output widget ``view`` with ``fig`` (and an optional line of text)."""
    outputs = [{"output_type": "display_data", "data": figure_mime_bundle(fig), "metadata": {}}]
    if text:
        outputs.append({"output_type": "stream", "name": "stdout", "text": text.rstrip("\n") + "\n"})
    view.outputs = tuple(outputs)
