"""``outputs/<name>/index.html``: one page that links everything a run produced, so it can be browsed without Jupyter.

It lists the run's name, when it finished, the params file and the git revision it ran at (from ``params.json``,
which the runner writes), the executed notebooks (as HTML pages beside them when nbconvert is installed, else the
``.ipynb`` files) with their run times, every figure page under ``figures/`` (its title read from the figure's
JSON), and the tables (``results.md``, ``results.csv`` -- also shown inline -- and ``results/*.csv``).

The page holds no script and no absolute link: it works offline and after the run folder is copied elsewhere. The
notebook pages draw their plotly figures with the run's own ``figures/plotly.min.js`` (not a CDN), and leave out
what cannot work without a kernel (widget views). ``python -m workbench run`` writes the index at the end (also after
a failed notebook); ``python -m workbench index RUN_DIR`` rebuilds it (holding the run folder's lock).

Only a run folder gets an index (:func:`check_run_folder`: the runner's ``params.json`` or its completion markers),
and only pages the workbench wrote are replaced: each carries a ``generator`` meta tag (pages written before it
are recognised by their title or their empty require.js stub). Someone else's ``index.html`` is an error; someone
else's ``notebooks/NN_x.html`` is left alone (the notebook is linked as ``.ipynb``). All pages are rendered before
any is written, then each is written atomically; every file read is checked to be a regular file first.
"""
from __future__ import annotations

import html
import io
import json
import os
import re
import time
from pathlib import Path

from .errors import WorkbenchError
from .io import atomic_write_text, open_regular, read_regular_bytes, read_regular_text
from .paths import git_revision

__all__ = ["INDEX", "RunIndexError", "check_run_folder", "write_index", "build_index", "notebook_to_html"]

INDEX = "index.html"
GENERATOR = '<meta name="generator" content="workbench index">'
PAGE_GENERATOR = '<meta name="generator" content="workbench index: notebook page">'
_LEGACY_MARKS = {INDEX: re.compile(r"<title>Run .*: results index</title>"),
                 "page": re.compile(re.escape('<script src="data:text/javascript,"></script>'))}
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
MAX_INLINE_ROWS = 200

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1.5rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .9rem; } th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee;
       text-align: left; vertical-align: top; } th { background: #f6f6f6; }
dl.run { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; } dl.run dt { font-weight: 600; }
.muted { color: #777; } .failed { color: #b00; font-weight: 600; } code { background: #f4f4f4; padding: 0 .2rem; }
.scroll { overflow-x: auto; } .scroll td { white-space: nowrap; }
"""


class RunIndexError(WorkbenchError, ValueError):
    """The folder given to :func:`write_index` is not a run folder."""


def _rel(path: Path, root: Path) -> str:
    """A relative URL from ``root`` to ``path`` (each segment percent-encoded)."""
    from urllib.parse import quote

    return "/".join(quote(part) for part in path.relative_to(root).parts)


def _a(path: Path, root: Path, text: str | None = None) -> str:
    return f'<a href="{html.escape(_rel(path, root))}">{html.escape(text or path.name)}</a>'


def _plain_title(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text or "")).strip()


def _figure_title(json_file: Path) -> str:
    try:
        layout = json.loads(read_regular_text(json_file)).get("layout", {})
    except (OSError, ValueError, RecursionError, AttributeError):
        return ""
    title = layout.get("title") if isinstance(layout, dict) else None
    if isinstance(title, dict):
        title = title.get("text")
    return _plain_title(title) if isinstance(title, str) else ""


def _markers(run_dir: Path) -> dict[str, dict]:
    found = {}
    for marker in (run_dir / "notebooks").glob(".*.done.json"):
        try:
            info = json.loads(read_regular_text(marker))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(info, dict):
            found[marker.name[1:-len(".done.json")]] = dict(info, mtime=marker.stat().st_mtime)
    return found


# ---------------------------------------------------------------------------------------------- notebook pages


def _plotly_html(figure: dict, height: int | None) -> str:
    import plotly.io as pio

    layout = figure.get("layout") or {}
    height = height or (layout.get("height") if isinstance(layout.get("height"), (int, float)) else None) or 450
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       default_width="100%", default_height=f"{int(height)}px")


def _is_plotly_loader(data: dict) -> bool:
    """plotly's ``notebook_connected`` set-up output: a script that fetches plotly.js from a CDN, nothing visible."""
    text = data.get("text/html", "")
    text = "".join(text) if isinstance(text, list) else text
    return set(data) == {"text/html"} and "cdn.plot.ly" in text and "plotly-graph-div" not in text


def notebook_to_html(ipynb: Path, target: Path, plotly_js: Path) -> Path:
    """Convert an executed notebook to a static HTML page at ``target`` whose plotly figures are drawn with the
    local ``plotly_js`` (linked relatively) instead of plotly's CDN; widget views (useless without a kernel) and
    plotly's CDN loader outputs are left out. Needs nbconvert."""
    atomic_write_text(target, _notebook_page(ipynb, target, plotly_js))
    return target


def _notebook_page(ipynb: Path, target: Path, plotly_js: Path) -> str:
    """The HTML of :func:`notebook_to_html` (to be written at ``target``: its links are relative to it)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.reads(read_regular_text(ipynb), as_version=4)
    nb.metadata.pop("widgets", None)  # no widget manager from a CDN
    loader = f'<script src="{html.escape(os.path.relpath(plotly_js, target.parent))}"></script>'
    first = True
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if output.get("output_type") in ("display_data", "execute_result"):
                if WIDGET_MIME in data or _is_plotly_loader(data):
                    continue
                if PLOTLY_MIME in data:
                    figure = data[PLOTLY_MIME]
                    page = _plotly_html(figure if isinstance(figure, dict) else {}, None)
                    output["data"] = {"text/html": (loader if first else "") + page,
                                      "text/plain": data.get("text/plain", "plotly figure")}
                    first = False
            kept.append(output)
        cell.outputs = kept
    # no require.js: it would turn plotly.min.js into an anonymous AMD module (and needs the network)
    exporter = HTMLExporter(template_name="lab", require_js_url="data:text/javascript,")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": ipynb.stem}})
    return body.replace("<head>", "<head>" + PAGE_GENERATOR, 1)


def _nbconvert_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nbconvert") is not None  # without importing it (seconds)


def _plotly_js(run_dir: Path) -> Path:
    """The run's plotly.min.js (written by ``save_figure`` beside the figure pages); written into ``notebooks/``
    when the run saved no figure."""
    bundle = run_dir / "figures" / "plotly.min.js"
    if bundle.is_file():
        return bundle
    bundle = run_dir / "notebooks" / "plotly.min.js"
    if not bundle.is_file():
        from plotly.offline import get_plotlyjs

        atomic_write_text(bundle, get_plotlyjs())
    return bundle


def _ours(page: Path, kind: str) -> bool:
    """Whether the existing ``page`` was written by the workbench (``kind``: INDEX or "page"): its generator tag,
    or the mark of a page written before the tag existed, in its first 4 KiB."""
    try:
        with open_regular(page) as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
    except OSError:  # a FIFO, a folder, unreadable: not ours
        return False
    return (GENERATOR if kind == INDEX else PAGE_GENERATOR) in head or bool(_LEGACY_MARKS[kind].search(head))


def _notebook_pages(run_dir: Path, notebooks: list[Path], convert: bool, log) -> tuple[dict, dict]:
    """``({executed .ipynb: its HTML page}, {page to write: its HTML})``: up-to-date pages are reused, the others
    rendered (written later, with the index); a page the workbench did not write is never replaced."""
    pages, rendered = {}, {}
    if not convert or not notebooks or not _nbconvert_available():
        return pages, rendered
    for ipynb in notebooks:
        page = ipynb.with_suffix(".html")
        try:
            if os.path.lexists(page) and not _ours(page, "page"):
                if log:
                    log(f"[workbench] index: {page} was not written by the workbench; left alone, the notebook is "
                        "linked as .ipynb")
                continue
            if not page.is_file() or page.stat().st_mtime < ipynb.stat().st_mtime:
                rendered[page] = _notebook_page(ipynb, page, _plotly_js(run_dir))
            pages[ipynb] = page
        except Exception as err:  # a page is a convenience: the .ipynb is linked anyway
            if log:
                log(f"[workbench] index: could not convert {ipynb.name} to HTML ({type(err).__name__}: {err})")
    return pages, rendered


# ---------------------------------------------------------------------------------------------------- the page


def _csv_table(csv: Path) -> str:
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(read_regular_bytes(csv)))
    except Exception as err:  # unreadable: say so, the link is there anyway
        return f'<p class="muted">({html.escape(csv.name)} could not be read: {html.escape(str(err))})</p>'
    if len(frame) > MAX_INLINE_ROWS:
        return f'<p class="muted">({len(frame)} rows: open the file)</p>'
    table = frame.to_html(index=False, na_rep="", escape=True, border=0, float_format=lambda v: f"{v:.4g}")
    return '<div class="scroll">' + table + "</div>"


def _run_params(run_dir: Path) -> dict:
    """The runner's ``params.json`` of the run ({} when missing or unreadable)."""
    try:
        params = json.loads(read_regular_text(run_dir / "params.json"))
    except (OSError, ValueError, RecursionError):
        return {}
    return params if isinstance(params, dict) else {}


def build_index(run_dir: str | os.PathLike, *, convert: bool = True, log=None) -> str:
    """The HTML of ``run_dir``'s index (converting the executed notebooks to HTML first when ``convert``)."""
    html_text, rendered = _build(Path(run_dir), convert, log)
    for page, body in rendered.items():
        atomic_write_text(page, body)
    return html_text


def _build(run_dir: Path, convert: bool, log) -> tuple[str, dict]:
    """The index's HTML and ``{notebook page: HTML}`` of the pages to (re)write, nothing written yet."""
    params = _run_params(run_dir)
    markers = _markers(run_dir)
    nb_dir = run_dir / "notebooks"
    executed = sorted(p for p in nb_dir.glob("*.ipynb") if not p.name.startswith(".")) if nb_dir.is_dir() else []
    pages, rendered = _notebook_pages(run_dir, executed, convert, log)
    rows = _run_rows(run_dir, params, markers)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', GENERATOR,
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>Run {html.escape(run_dir.name)}: results index</title>", f"<style>{_STYLE}</style></head><body>",
             f"<h1>Run <code>{html.escape(run_dir.name)}</code></h1>",
             '<dl class="run">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"]
    parts += _tables_section(run_dir)
    parts += _notebooks_section(run_dir, executed, pages, markers)
    parts += _figures_section(run_dir)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n", rendered


def _run_rows(run_dir: Path, params: dict, markers: dict) -> list[tuple[str, str]]:
    """The run's facts as (label, HTML) rows: name, params file, start, last finished notebook, git revision."""
    finished = max((m["mtime"] for m in markers.values()), default=None)
    revision = params.get("git_revision")
    revision_note = "" if revision else " (at the time this index was written; the run did not record one)"
    revision = revision or git_revision()
    fmt = lambda t: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))  # noqa: E731
    rows = [("run", html.escape(run_dir.name)),
            ("params file", f"<code>{html.escape(str(params.get('source', 'unknown')))}</code>"),
            ("started", html.escape(str(params.get("started", "not recorded")))),
            ("last notebook finished", fmt(finished) if finished else "no notebook finished"),
            ("git revision", f"<code>{html.escape(str(revision))}</code>{html.escape(revision_note)}"),
            ("index written", fmt(time.time()))]
    seconds = [float(m.get("seconds", 0) or 0) for m in markers.values()]
    if seconds:
        rows.append(("notebook time", f"{sum(seconds) / 60:.1f} min over {len(seconds)} notebooks"))
    return rows


def _tables_section(run_dir: Path) -> list[str]:
    tables = [p for p in (run_dir / "results.md", run_dir / "results.csv") if p.is_file()]
    tables += sorted((run_dir / "results").glob("*.csv")) if (run_dir / "results").is_dir() else []
    parts = ["<h2>Tables</h2>"]
    if tables:
        parts.append("<ul>" + "".join(f"<li>{_a(p, run_dir, _rel(p, run_dir))}</li>" for p in tables) + "</ul>")
        if (run_dir / "results.csv").is_file():
            parts.append("<h3>results.csv</h3>" + _csv_table(run_dir / "results.csv"))
    else:
        parts.append('<p class="muted">No tables yet (notebook 06 writes results.csv).</p>')
    return parts


def _notebooks_section(run_dir: Path, executed: list[Path], pages: dict, markers: dict) -> list[str]:
    parts = ["<h2>Executed notebooks</h2>"]
    if not executed:
        return parts + ['<p class="muted">No executed notebooks.</p>']
    parts.append("<table><tr><th>notebook</th><th>status</th><th>time</th><th>files</th></tr>")
    for ipynb in executed:
        stem = ipynb.stem
        failed = stem.endswith(".failed")
        marker = markers.get(stem)
        status = ('<span class="failed">failed (partial copy)</span>' if failed
                  else "complete" if marker else '<span class="muted">not finished</span>')
        took = f"{float(marker['seconds']):.1f} s" if marker and "seconds" in marker else ""
        links = ([_a(pages[ipynb], run_dir, "HTML")] if ipynb in pages else []) + [_a(ipynb, run_dir, ".ipynb")]
        main = pages.get(ipynb, ipynb)
        parts.append(f"<tr><td>{_a(main, run_dir, stem)}</td><td>{status}</td><td>{took}</td>"
                     f"<td>{' · '.join(links)}</td></tr>")
    parts.append("</table>")
    if not pages:
        parts.append('<p class="muted">nbconvert is not installed: the notebooks are linked as .ipynb files '
                     "(open them in Jupyter).</p>")
    return parts


def _figures_section(run_dir: Path) -> list[str]:
    """The figure pages, grouped by the notebook that made them (the NN_ prefix)."""
    parts = ["<h2>Figures</h2>"]
    figures = sorted((run_dir / "figures").glob("*.html")) if (run_dir / "figures").is_dir() else []
    if not figures:
        return parts + ['<p class="muted">No figures yet.</p>']
    groups: dict[str, list[Path]] = {}
    for page in figures:
        groups.setdefault(page.name[:2] if page.name[:2].isdigit() else "other", []).append(page)
    for group, pages in groups.items():
        parts.append(f"<h3>{'notebook ' + group if group != 'other' else 'other'}</h3><ul>")
        for page in pages:
            title = _figure_title(page.with_suffix(".json"))
            png = page.with_suffix(".png")
            extra = f" ({_a(png, run_dir, 'PNG')})" if png.is_file() else ""
            parts.append(f"<li>{_a(page, run_dir, page.stem)}{extra}"
                         + (f' <span class="muted">{html.escape(title)}</span>' if title else "") + "</li>")
        parts.append("</ul>")
    parts.append('<p class="muted">Each figure page draws with figures/plotly.min.js beside it: no network '
                 "needed.</p>")
    return parts


def check_run_folder(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` if it is a run folder -- the runner's ``params.json`` (a mapping with its ``source`` and
    ``sections``) or a completion marker in ``notebooks/`` -- else a :class:`RunIndexError` naming what is there.
    A folder that merely has a ``figures/`` or ``notebooks/`` folder gets no index written into it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunIndexError(f"{run_dir} is not a run folder (no such directory)")
    params = _run_params(run_dir)
    if {"source", "sections"} <= set(params) or _markers(run_dir):
        return run_dir
    found = sorted(p.name for p in run_dir.iterdir())[:8]
    raise RunIndexError(f"{run_dir} does not look like a run folder: it has neither the params.json a run writes "
                        f"nor a finished notebook's marker (it holds {found or 'nothing'}). Pass outputs/<name>, the "
                        "folder `python -m workbench run` wrote")


def write_index(run_dir: str | os.PathLike, *, convert: bool = True, log=None) -> Path:
    """Write ``run_dir/index.html`` (and the notebook pages) and return its path; see the module docstring. An
    ``index.html`` the workbench did not write is a :class:`RunIndexError`, and nothing is written."""
    run_dir = check_run_folder(run_dir)
    index = run_dir / INDEX
    if os.path.lexists(index) and not _ours(index, INDEX):
        raise RunIndexError(f"{index} was not written by the workbench (no generator tag); refusing to replace it. "
                            f"Move it away, then rebuild the index")
    html_text, rendered = _build(run_dir, convert, log)
    for page, body in rendered.items():
        atomic_write_text(page, body)
    return atomic_write_text(index, html_text)
