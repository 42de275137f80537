"""``outputs/<name>/index.html``: the run's results page, readable offline without Jupyter.

From the top: the run in one line (name, params file, when, git revision, machine); the **verdicts** -- each claim
with its value, 95 % interval, threshold and outcome -- and the **findings** generated from the same tables
(:mod:`workbench.reporting.index_sections`, which applies :mod:`workbench.reporting.findings` to the run); every
**figure** as a thumbnail with its title and caption, grouped by the notebook that made it; the **tables**, rounded and
under named columns in boxes that scroll; the executed **notebooks** (as HTML pages beside them when nbconvert is
installed, :mod:`workbench.reporting.notebook_page`); and the **raw files**.

Thumbnails: a figure's own ``figures/<name>.png`` when ``save_figure`` wrote one, else a PNG the index draws from the
figure's page in headless Chromium (:mod:`workbench.reporting.thumbnails`; best effort, logged, never an error) into
``figures/.thumbnails/`` -- a hidden folder because the runner's completion markers vouch for every visible file
of the run, and an index redrawn later would then make ``--resume`` distrust a notebook. Without a thumbnail a
figure is a card with its title and caption. Each figure page links back here.

The page holds no script and no absolute link: it works offline and after the run folder is copied elsewhere.
``python -m workbench run`` writes the index at the end (also after a failed notebook); ``python -m workbench index
RUN_DIR`` rebuilds it (holding the run folder's lock).

Only a run folder gets an index (:func:`check_run_folder`: the runner's ``params.json`` or its completion markers),
and only pages the workbench wrote are replaced: each carries a ``generator`` meta tag (pages written before it
are recognised by their title or their empty require.js stub). Someone else's ``index.html`` is an error; someone
else's ``notebooks/NN_x.html`` is left alone (the notebook is linked as ``.ipynb``). All pages are rendered before
any is written, then each is written atomically; every file read is checked to be a regular file first.
"""
from __future__ import annotations

import html
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

from .captions import caption_of, title_parts
from ..errors import WorkbenchError
from .figure_page import PAGE_STYLE
from .index_sections import SECTION_STYLE, findings_html, results_tables_html, verdicts_section
from ..system.io import atomic_write_text, open_regular, read_regular_text
from .notebook_page import PAGE_GENERATOR, PAGE_GENERATOR_PREFIX, notebook_page, notebook_to_html
from ..system.paths import git_revision

__all__ = ["INDEX", "RunIndexError", "check_run_folder", "write_index", "build_index", "notebook_to_html"]

INDEX = "index.html"
GENERATOR = '<meta name="generator" content="workbench index">'
THUMBNAILS = Path("figures") / ".thumbnails"
_LEGACY_MARKS = {INDEX: re.compile(r"<title>Run .*: results index</title>"),
                 "page": re.compile(re.escape('<script src="data:text/javascript,"></script>'))}

_STYLE = PAGE_STYLE + SECTION_STYLE + """
header .facts { color: #555; font-size: .92rem; } nav.toc a { margin-right: 1rem; }
.failed { color: #b00; font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(30rem, 1fr)); gap: 1.1rem; }
figure.card { margin: 0; border: 1px solid #e2e2e2; border-radius: .4rem; padding: .7rem .8rem; background: #fff; }
figure.card img { width: 100%; height: auto; border: 1px solid #f0f0f0; display: block; }
figure.card figcaption { font-size: .9rem; margin-top: .45rem; } figure.card .title { font-weight: 600; }
figure.card.noimg { background: #fafafa; }
"""


class RunIndexError(WorkbenchError, ValueError):
    """The folder given to :func:`write_index` is not a run folder."""


def _rel(path: Path, root: Path) -> str:
    """A relative URL from ``root`` to ``path`` (each segment percent-encoded)."""
    return "/".join(quote(part) for part in path.relative_to(root).parts)


def _a(path: Path, root: Path, text: str | None = None) -> str:
    return f'<a href="{html.escape(_rel(path, root))}">{html.escape(text or path.name)}</a>'


def _figure_json(json_file: Path) -> dict:
    """A figure's saved plotly JSON ({} when missing or unreadable)."""
    try:
        figure = json.loads(read_regular_text(json_file))
    except (OSError, ValueError, RecursionError):
        return {}
    return figure if isinstance(figure, dict) else {}


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


def _run_params(run_dir: Path) -> dict:
    """The runner's ``params.json`` of the run ({} when missing or unreadable)."""
    try:
        params = json.loads(read_regular_text(run_dir / "params.json"))
    except (OSError, ValueError, RecursionError):
        return {}
    return params if isinstance(params, dict) else {}


# ---------------------------------------------------------------------------------------------- notebook pages


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


def _head(page: Path) -> str | None:
    """The first 4 KiB of ``page`` as text (None: not a readable regular file)."""
    try:
        with open_regular(page) as fh:
            return fh.read(4096).decode("utf-8", errors="replace")
    except OSError:  # a FIFO, a folder, unreadable
        return None


def _ours(page: Path, kind: str) -> bool:
    """Whether the existing ``page`` was written by the workbench (``kind``: INDEX or "page"): its generator tag,
    or the mark of a page written before the tag existed, in its first 4 KiB."""
    head = _head(page)
    if head is None:
        return False
    return (GENERATOR if kind == INDEX else PAGE_GENERATOR_PREFIX) in head or bool(_LEGACY_MARKS[kind].search(head))


def _notebook_pages(run_dir: Path, notebooks: list[Path], convert: bool, log) -> tuple[dict, dict]:
    """``({executed .ipynb: its HTML page}, {page to write: its HTML})``: up-to-date pages of the current version
    are reused, the others rendered (written later, with the index); a page the workbench did not write is never
    replaced."""
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
            current = page.is_file() and page.stat().st_mtime >= ipynb.stat().st_mtime \
                and PAGE_GENERATOR in (_head(page) or "")
            if not current:
                rendered[page] = notebook_page(ipynb, page, _plotly_js(run_dir))
            pages[ipynb] = page
        except Exception as err:  # a page is a convenience: the .ipynb is linked anyway
            if log:
                log(f"[workbench] index: could not convert {ipynb.name} to HTML ({type(err).__name__}: {err})")
    return pages, rendered


# ---------------------------------------------------------------------------------------------------- figures


def _figure_pages(run_dir: Path) -> list[Path]:
    folder = run_dir / "figures"
    return sorted(folder.glob("*.html")) if folder.is_dir() else []


def _thumbnail(run_dir: Path, page: Path) -> Path | None:
    """The PNG to show for a figure page: its own ``.png`` when not older than its JSON, else the index's."""
    own, drawn = page.with_suffix(".png"), run_dir / THUMBNAILS / f"{page.stem}.png"
    data = page.with_suffix(".json")
    newest = max((p.stat().st_mtime for p in (page, data) if p.is_file()), default=0)
    if own.is_file() and own.stat().st_mtime >= newest:
        return own
    return drawn if drawn.is_file() and drawn.stat().st_mtime >= newest else None


def _draw_missing_thumbnails(run_dir: Path, log) -> None:
    """Draw the thumbnails that are missing or older than their figure (best effort,
    :mod:`workbench.reporting.thumbnails`)."""
    from .thumbnails import draw_thumbnails

    jobs = [(page, run_dir / THUMBNAILS / f"{page.stem}.png") for page in _figure_pages(run_dir)
            if _thumbnail(run_dir, page) is None]
    draw_thumbnails(jobs, log)


def _notebook_names(executed: list[Path]) -> dict[str, str]:
    """``{"02": "02 · gauge freedom"}`` from the executed notebooks' names."""
    names = {}
    for ipynb in executed:
        stem = ipynb.stem.removesuffix(".failed")
        if stem[:2].isdigit():
            names.setdefault(stem[:2], f"{stem[:2]} · {stem[3:].replace('_', ' ')}")
    return names


def _figure_card(run_dir: Path, page: Path) -> str:
    figure = _figure_json(page.with_suffix(".json"))
    title, subtitle = title_parts(figure)
    title, caption = title or page.stem, caption_of(figure)
    href = html.escape(_rel(page, run_dir))
    thumb = _thumbnail(run_dir, page)
    image = (f'<a href="{href}"><img src="{html.escape(_rel(thumb, run_dir))}" alt="{html.escape(title)}" '
             'loading="lazy"></a>' if thumb else "")
    text = (f"<p>{html.escape(caption)}</p>" if caption
            else '<p class="muted">No caption recorded (a figure saved before captions existed).</p>')
    return (f'<figure class="card{"" if thumb else " noimg"}" id="fig-{html.escape(page.stem)}">{image}<figcaption>'
            f'<a class="title" href="{href}">{html.escape(title)}</a> <span class="muted">({html.escape(page.stem)})'
            f"</span>" + (f'<br><span class="muted">{html.escape(subtitle)}</span>' if subtitle else "")
            + f"{text}</figcaption></figure>")


def _figures_section(run_dir: Path, executed: list[Path]) -> list[str]:
    """Every figure as a captioned thumbnail (or card), grouped by the notebook that made it (the NN_ prefix)."""
    parts = ['<h2 id="figures">Figures</h2>']
    figures = _figure_pages(run_dir)
    if not figures:
        return parts + ['<p class="muted">No figures yet.</p>']
    groups: dict[str, list[Path]] = {}
    for page in figures:
        groups.setdefault(page.name[:2] if page.name[:2].isdigit() else "other", []).append(page)
    titles = _notebook_names(executed)
    for group, pages in groups.items():
        parts.append(f"<h3>{html.escape(titles.get(group, 'notebook ' + group if group != 'other' else 'other'))}"
                     "</h3>")
        parts.append('<div class="cards">' + "".join(_figure_card(run_dir, p) for p in pages) + "</div>")
    parts.append('<p class="muted">Click a figure for its interactive page (drawn with figures/plotly.min.js beside '
                 "it: no network needed).</p>")
    return parts


# ---------------------------------------------------------------------------------------------------- the page


def build_index(run_dir: str | os.PathLike, *, convert: bool = True, thumbnails: bool = True, log=None) -> str:
    """The HTML of ``run_dir``'s index (converting the executed notebooks to HTML first when ``convert``, drawing
    missing figure thumbnails when ``thumbnails``)."""
    run_dir = Path(run_dir)
    if thumbnails:
        _draw_missing_thumbnails(run_dir, log)
    html_text, rendered = _build(run_dir, convert, log)
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
    toc = " ".join(f'<a href="#{k}">{v}</a>' for k, v in (("verdicts", "Verdicts"), ("figures", "Figures"),
                                                          ("tables", "Tables"), ("notebooks", "Notebooks"),
                                                          ("files", "Raw files")))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', GENERATOR,
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>Run {html.escape(run_dir.name)}: results index</title>", f"<style>{_STYLE}</style></head><body>",
             f"<header><h1>Run <code>{html.escape(run_dir.name)}</code>: results</h1>",
             f'<p class="facts">{" · ".join(_run_facts(run_dir, params, markers))}</p>',
             f'<nav class="toc">{toc}</nav></header>',
             '<h2 id="verdicts">Verdicts</h2>', verdicts_section(run_dir), findings_html(run_dir, log)]
    parts += _figures_section(run_dir, executed)
    tables = results_tables_html(run_dir) or ['<p class="muted">No tables yet (notebook 06 writes results.csv).</p>']
    parts += ['<h2 id="tables">Tables</h2>', *tables]
    parts += _notebooks_section(run_dir, executed, pages, markers)
    parts += _files_section(run_dir)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n", rendered


def _run_facts(run_dir: Path, params: dict, markers: dict) -> list[str]:
    """The run in a line of HTML fragments: params file, start, last notebook, revision, machine, notebook time."""
    finished = max((m["mtime"] for m in markers.values()), default=None)
    revision = params.get("git_revision")
    revision_note = "" if revision else " (at the time this index was written; the run did not record one)"
    revision = revision or git_revision()
    fmt = lambda t: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))  # noqa: E731
    machine = params.get("machine") if isinstance(params.get("machine"), dict) else {}
    facts = [f"params file <code>{html.escape(str(params.get('source', 'unknown')))}</code>",
             f"started {html.escape(str(params.get('started', 'not recorded')))}",
             f"last notebook finished {fmt(finished)}" if finished else "no notebook finished",
             f"git <code>{html.escape(str(revision))}</code>{html.escape(revision_note)}"]
    if machine:
        gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
        facts.append(html.escape(f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, torch "
                                 f"{machine.get('torch', '?')}{gpu}"))
    seconds = [float(m.get("seconds", 0) or 0) for m in markers.values()]
    if seconds:
        facts.append(f"notebook time {sum(seconds) / 60:.1f} min over {len(seconds)} notebooks")
    return facts + [f"index written {fmt(time.time())}"]


def _notebooks_section(run_dir: Path, executed: list[Path], pages: dict, markers: dict) -> list[str]:
    parts = ['<h2 id="notebooks">Executed notebooks</h2>']
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


def _files_section(run_dir: Path) -> list[str]:
    """Links to the run's raw tables and its recorded parameters."""
    files = [p for p in (run_dir / "results.md", run_dir / "results.csv", run_dir / "params.json") if p.is_file()]
    files += sorted((run_dir / "results").glob("*.csv")) if (run_dir / "results").is_dir() else []
    parts = ['<h2 id="files">Raw files</h2>']
    if not files:
        return parts + ['<p class="muted">No tables yet (notebook 06 writes results.csv).</p>']
    return parts + ["<ul>" + "".join(f"<li>{_a(p, run_dir, _rel(p, run_dir))}</li>" for p in files) + "</ul>"]


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


def write_index(run_dir: str | os.PathLike, *, convert: bool = True, thumbnails: bool = True, log=None) -> Path:
    """Write ``run_dir/index.html`` (and the notebook pages, and the missing figure thumbnails when
    ``thumbnails``) and return its path; see the module docstring. An ``index.html`` the workbench did not write is
    a :class:`RunIndexError`, and nothing is written."""
    run_dir = check_run_folder(run_dir)
    index = run_dir / INDEX
    if os.path.lexists(index) and not _ours(index, INDEX):
        raise RunIndexError(f"{index} was not written by the workbench (no generator tag); refusing to replace it. "
                            f"Move it away, then rebuild the index")
    if thumbnails:
        _draw_missing_thumbnails(run_dir, log)
    html_text, rendered = _build(run_dir, convert, log)
    for page, body in rendered.items():
        atomic_write_text(page, body)
    return atomic_write_text(index, html_text)
