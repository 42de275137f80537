"""A figure's page, ``figures/<name>.html``: its title, its caption (the takeaway, :mod:`workbench.reporting.captions`),
the interactive plot, and links back to the run's index and to the figure's data.

:func:`workbench.notebook.save_figure` writes it beside ``<name>.json``. The page draws with the run's own
``figures/plotly.min.js`` (linked relatively: no network, and it keeps working when the run folder is copied) and
carries a ``generator`` meta tag, so tools can tell the workbench's pages from anyone else's.
"""
from __future__ import annotations

import copy
import html
from urllib.parse import quote

from .captions import caption_of, title_parts

__all__ = ["FIGURE_GENERATOR", "PAGE_STYLE", "figure_page"]

FIGURE_GENERATOR = '<meta name="generator" content="workbench figure page">'

#: the look shared by the index and the figure pages
PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto; max-width: 80rem;
       padding: 0 1.5rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; margin: .4rem 0 .3rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem;
     border-bottom: 1px solid #ddd; } h3 { font-size: 1.02rem; margin: 1.4rem 0 .5rem; }
a { color: #1a5fb4; } .muted { color: #6b6b6b; } code { background: #f4f4f4; padding: 0 .2rem; }
p.caption { max-width: 60rem; font-size: 1rem; margin: .2rem 0 1rem; }
nav.back { font-size: .95rem; }
"""


def _plot_html(figure: dict) -> str:
    import plotly.io as pio

    layout = figure.get("layout") if isinstance(figure.get("layout"), dict) else {}
    height = layout.get("height") if isinstance(layout.get("height"), (int, float)) else 450
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       default_width="100%", default_height=f"{int(height)}px", config={"responsive": True})


def figure_page(figure: dict, name: str, run: str = "", plotly_js: str = "plotly.min.js",
                index_href: str = "../index.html") -> str:
    """The HTML of the page of ``figure`` (its plotly JSON as a dict) saved as ``figures/<name>``: ``<h1>`` title
    (the figure's own title, drawn as the page's heading instead of inside the plot), the caption, the plot, and
    links to ``index_href`` and ``<name>.json``. ``run``: the run's name, for the browser tab."""
    title, subtitle = title_parts(figure)
    title, caption = title or name, caption_of(figure)
    shown = copy.deepcopy(figure)
    layout = shown.setdefault("layout", {})
    if isinstance(layout, dict) and layout.get("title"):
        layout["title"] = {"text": ""}  # the heading says it; the plot keeps its room for the data
        margin = layout.get("margin") if isinstance(layout.get("margin"), dict) else {}
        layout["margin"] = {**margin, "t": min(int(margin.get("t", 60) or 60), 60)}
    caption_html = (f'<p class="caption">{html.escape(caption)}</p>' if caption
                    else '<p class="caption muted">(this figure carries no caption)</p>')
    tab = f"{title} · {run}" if run else title
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', FIGURE_GENERATOR,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(tab)}</title>", f"<style>{PAGE_STYLE}</style>",
        f'<script src="{html.escape(plotly_js)}"></script></head><body>',
        f'<nav class="back"><a href="{html.escape(index_href)}" rel="up">&larr; results index of this run</a></nav>',
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="subtitle muted">{html.escape(subtitle)}</p>' if subtitle else "", caption_html,
        f'<div class="plot">{_plot_html(shown)}</div>',
        f'<p class="muted">Figure <code>{html.escape(name)}</code>; its data: '
        f'<a href="{html.escape(quote(name))}.json">{html.escape(name)}.json</a> (plotly JSON).</p>',
        "</body></html>", ""])
