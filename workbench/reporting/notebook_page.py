"""An executed notebook as a static HTML page that needs no network (``notebooks/NN_x.html`` beside the ``.ipynb``).

nbconvert's ``lab`` template, with what would reach the internet taken out or replaced:

* plotly figures draw with the run's own ``figures/plotly.min.js`` (linked relatively), not plotly's CDN; plotly's
  ``notebook_connected`` loader outputs (a CDN script, nothing visible) and widget views (useless without a kernel)
  are left out;
* formulas: ``$...$`` and ``$$...$$`` in markdown (cells and markdown outputs) are converted to MathML at export
  time with ``latex2mathml``, which Chromium and Firefox draw natively -- the template's MathJax loader (a CDN
  script) is dropped, as is its mermaid loader. A formula latex2mathml cannot convert (or every formula, when the
  package is missing) is shown as its LaTeX source in ``<code>``: readable, never a broken script;
* tables: numbers printed with five or more decimals in HTML table cells (pandas' and Styler's defaults print six)
  are rounded to four significant digits (:func:`workbench.reporting.captions.readable`).

The page carries a ``generator`` meta tag with a version: :func:`workbench.reporting.index` re-renders a page of an
older version (one that still loads MathJax from the internet) even when the notebook has not changed.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

from .captions import readable
from ..system.io import atomic_write_text, read_regular_text

__all__ = ["PAGE_GENERATOR", "PAGE_GENERATOR_PREFIX", "notebook_to_html", "notebook_page", "latex_to_mathml",
           "markdown_math_to_mathml", "round_table_cells"]

PAGE_GENERATOR_PREFIX = '<meta name="generator" content="workbench index: notebook page'
PAGE_GENERATOR = PAGE_GENERATOR_PREFIX + ' v2">'
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_TEMPLATE_NAME = "workbench_offline.html.j2"
# the lab template without its CDN loaders (MathJax, mermaid); everything else as nbconvert ships it
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
# code spans and fenced blocks, where a $ is a dollar sign; then display and inline math
_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<![\s\\])\$(?!\d)")
_LONG_DECIMAL = re.compile(r"(<td\b[^>]*>)\s*(-?\d+\.\d{5,}(?:[eE][-+]?\d+)?)\s*(</td>)")


def latex_to_mathml(latex: str, display: bool = False) -> str:
    """``latex`` as a MathML element (``display``: a block formula); its LaTeX source in ``<code>`` when it does not
    convert (or latex2mathml is not installed)."""
    try:
        from latex2mathml.converter import convert

        return convert(latex.strip(), display="block" if display else "inline")
    except Exception:  # an unsupported command, or no latex2mathml: the source is still readable
        return f'<code class="latex">{html.escape(latex.strip())}</code>'


def markdown_math_to_mathml(text: str) -> str:
    """``text`` (markdown) with its ``$$...$$`` and ``$...$`` formulas replaced by MathML, code spans and fenced
    code blocks left as they are (a ``$`` there is a dollar sign)."""
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):  # even indices: outside code
        chunk = _DISPLAY.sub(lambda m: latex_to_mathml(m.group(1), display=True), parts[i])
        parts[i] = _INLINE.sub(lambda m: latex_to_mathml(m.group(1)), chunk)
    return "".join(parts)


def round_table_cells(text: str) -> str:
    """HTML with every table cell that holds a number of five or more decimals rounded for reading."""
    return _LONG_DECIMAL.sub(lambda m: m.group(1) + readable(float(m.group(2))) + m.group(3), text)


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _plotly_html(figure: dict) -> str:
    import plotly.io as pio

    layout = figure.get("layout") or {}
    height = layout.get("height") if isinstance(layout.get("height"), (int, float)) else 450
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       default_width="100%", default_height=f"{int(height)}px")


def _is_plotly_loader(data: dict) -> bool:
    """plotly's ``notebook_connected`` set-up output: a script that fetches plotly.js from a CDN, nothing visible."""
    text = _joined(data.get("text/html", ""))
    return set(data) == {"text/html"} and "cdn.plot.ly" in text and "plotly-graph-div" not in text


def _offline_output(output: dict, loader: str) -> dict | None:
    """One output as the page shows it (None: left out); ``loader`` goes before its plotly figure, if any."""
    data = output.get("data", {})
    if output.get("output_type") not in ("display_data", "execute_result"):
        return output
    if WIDGET_MIME in data or _is_plotly_loader(data):
        return None
    if PLOTLY_MIME in data:
        figure = data[PLOTLY_MIME]
        output["data"] = {"text/html": loader + _plotly_html(figure if isinstance(figure, dict) else {}),
                          "text/plain": data.get("text/plain", "plotly figure")}
    elif "text/html" in data:
        data["text/html"] = round_table_cells(_joined(data["text/html"]))
    if "text/markdown" in data:
        data["text/markdown"] = markdown_math_to_mathml(_joined(data["text/markdown"]))
    return output


def notebook_page(ipynb: Path, target: Path, plotly_js: Path) -> str:
    """The HTML of :func:`notebook_to_html` (to be written at ``target``: its links are relative to it)."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.reads(read_regular_text(ipynb), as_version=4)
    nb.metadata.pop("widgets", None)  # no widget manager from a CDN
    loader = f'<script src="{html.escape(os.path.relpath(plotly_js, target.parent))}"></script>'
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = markdown_math_to_mathml(cell.source)
            continue
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            is_figure = PLOTLY_MIME in output.get("data", {})
            shown = _offline_output(output, loader)
            if shown is not None:
                loader = "" if is_figure else loader  # plotly.js once per page, before the first figure
                kept.append(shown)
        cell.outputs = kept
    # no require.js: it would turn plotly.min.js into an anonymous AMD module (and needs the network)
    exporter = HTMLExporter(template_name="lab", require_js_url="data:text/javascript,",
                            extra_loaders=[jinja2.DictLoader({_TEMPLATE_NAME: _TEMPLATE})])
    exporter.template_file = _TEMPLATE_NAME
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": ipynb.stem}})
    return body.replace("<head>", "<head>" + PAGE_GENERATOR, 1)


def notebook_to_html(ipynb: Path, target: Path, plotly_js: Path) -> Path:
    """Convert an executed notebook to a static HTML page at ``target`` that needs no network (see the module
    docstring). Needs nbconvert."""
    atomic_write_text(target, notebook_page(Path(ipynb), Path(target), Path(plotly_js)))
    return Path(target)
