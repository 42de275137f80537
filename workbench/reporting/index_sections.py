"""The results parts of a run's index page (:mod:`workbench.reporting.index`): the verdicts with their thresholds,
intervals and outcomes, the generated findings, and the tables rendered for reading -- every number read from the run's
files, rounded to what it means, under named columns, in a box that scrolls sideways instead of running off the
page.

The findings are :mod:`workbench.reporting.findings`' own (the README's findings block, rendered from the same tables):
:func:`run_findings` lays the run's ``results/*.csv`` out the way a results snapshot holds them, in a temporary
folder, and calls :func:`~workbench.reporting.findings.headline_table` and
:func:`~workbench.reporting.findings.finding_sentences` on it.
"""
from __future__ import annotations

import html
import io
import re
import tempfile
from pathlib import Path

import pandas as pd

from .captions import interval_text, readable
from ..system.io import read_regular_bytes

__all__ = ["SECTION_STYLE", "read_table", "frame_html", "verdicts_section", "findings_html", "run_findings",
           "results_tables_html", "MAX_INLINE_ROWS"]

MAX_INLINE_ROWS = 200
#: the run's files findings.py reads, by their name in a snapshot
FINDINGS_FILES = {"verdicts.csv": "results/verdicts.csv", "matched_compute.csv": "results/matched_compute.csv",
                  "warm_start.csv": "results/warm_start.csv", "ablation_verdict.csv": "results/ablation_verdict.csv"}
OUTCOME_CLASSES = {"holds": "holds", "win": "holds", "fails": "fails", "loss": "fails"}

SECTION_STYLE = """
table { border-collapse: collapse; font-size: .88rem; } th, td { padding: .28rem .6rem; border-bottom: 1px solid #eee;
       text-align: left; vertical-align: top; } th { background: #f6f6f6; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; border: 1px solid #e5e5e5; margin: .4rem 0 1rem; }
details .scroll { max-height: 34rem; overflow-y: auto; } td:first-child { white-space: nowrap; }
.outcome { font-weight: 600; padding: 0 .35rem; border-radius: .25rem; white-space: nowrap; }
.outcome.holds { color: #135e12; background: #e3f4e1; } .outcome.fails { color: #8a1010; background: #fbe3e3; }
.outcome.other { color: #555; background: #eee; }
ul.findings li { margin: .35rem 0; max-width: 64rem; } details { margin: .4rem 0; } summary { cursor: pointer; }
"""


def read_table(csv: Path) -> pd.DataFrame:
    """A CSV of the run, read after checking it is a regular file (errors propagate: the caller says what failed)."""
    return pd.read_csv(io.BytesIO(read_regular_bytes(csv)))


_NUMERIC_TEXT = re.compile(r"[-+]?[\d.,]+(?:e[-+]?\d+)?(?: \[[^\]]*\])?|[-+]?inf|n/a|never|-")


def _cell(value) -> tuple[str, bool]:
    """(text, is a number -- or a formatted number such as "72.9 [65.8, 79.4]") of one table cell."""
    if isinstance(value, bool) or value is None:
        return ("" if value is None else str(value)), False
    if isinstance(value, str):
        return value, bool(_NUMERIC_TEXT.fullmatch(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return readable(float(value)) if value == value else "", True
        except (OverflowError, ValueError):
            return str(value), True
    return str(value), False


def frame_html(frame: pd.DataFrame, rename: bool = True) -> str:
    """``frame`` as an HTML table in a scrolling box: numbers rounded (:func:`~workbench.reporting.captions.readable`)
    and right-aligned, column names with spaces for underscores (``rename``), missing values empty."""
    columns = [str(c).replace("_", " ") if rename else str(c) for c in frame.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for value in values:
            text, number = _cell(value.item() if hasattr(value, "item") else value)
            cells.append(f'<td class="num">{html.escape(text)}</td>' if number else f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _outcome(word: str) -> str:
    kind = OUTCOME_CLASSES.get(str(word), "other")
    return f'<span class="outcome {kind}">{html.escape(str(word))}</span>'


def verdicts_section(run_dir: Path) -> str:
    """``results/verdicts.csv`` as a table: each claim with its value, 95 % interval, threshold and outcome."""
    file = run_dir / "results" / "verdicts.csv"
    if not file.is_file():
        return '<p class="muted">No verdicts yet (notebook 06 writes results/verdicts.csv).</p>'
    try:
        v = read_table(file)
        rows = []
        for _, r in v.iterrows():
            rows.append(
                f"<tr><td>{html.escape(str(r['family']))}</td><td>{html.escape(str(r['text']))}</td>"
                f'<td class="num">{interval_text(r["value"], r["lo"], r["hi"])}</td>'
                f'<td class="num">{html.escape(str(r["op"]))} {readable(r["threshold"])}</td>'
                f"<td>{_outcome(r['outcome'])}</td><td class=\"num\">{html.escape(str(r.get('networks', '')))}</td>"
                f"<td class=\"num\">{html.escape(str(r.get('seeds', '')))}</td></tr>")
    except Exception as err:  # a malformed file: say so, the raw file is linked below
        return f'<p class="muted">(verdicts.csv could not be read: {html.escape(f"{type(err).__name__}: {err}")})</p>'
    counts = v["outcome"].value_counts()
    summary = ", ".join(f"{_outcome(k)} {int(n)}" for k, n in counts.items())
    return (f"<p>{len(v)} claims judged on their 95 % intervals: {summary}. A claim <em>holds</em> or <em>fails</em> "
            "only when its whole interval lies on one side of the threshold; otherwise it is <em>inconclusive</em>.</p>"
            '<div class="scroll"><table><thead><tr><th>family</th><th>claim</th><th>value [95 % interval]</th>'
            "<th>threshold</th><th>outcome</th><th>networks</th><th>seeds</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def run_findings(run_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """:func:`~workbench.reporting.findings.headline_table` and :func:`~workbench.reporting.findings.finding_sentences`
    of a run folder (its tables copied, as regular files, into a temporary snapshot-like folder)."""
    from .findings import finding_sentences, headline_table

    with tempfile.TemporaryDirectory(prefix="workbench-findings-") as tmp:
        for name, rel in FINDINGS_FILES.items():
            if (run_dir / rel).is_file():
                (Path(tmp) / name).write_bytes(read_regular_bytes(run_dir / rel))
        return headline_table(tmp), finding_sentences(tmp)


def _inline_markdown(text: str) -> str:
    """The inline markdown findings.py writes (``**bold**``, ``*em*``, `` `code` ``) as HTML, everything escaped."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def findings_html(run_dir: Path, log=None) -> str:
    """The headline table and the finding sentences, or a line saying why there are none."""
    if not (run_dir / "results" / "verdicts.csv").is_file():
        return ""
    try:
        table, sentences = run_findings(run_dir)
    except Exception as err:  # a table findings.py cannot read: the verdicts above still show
        if log:
            log(f"[workbench] index: findings not rendered ({type(err).__name__}: {err})")
        return f'<p class="muted">(findings could not be computed: {html.escape(type(err).__name__)}: ' \
               f"{html.escape(str(err)[:300])})</p>"
    parts = []
    if len(table):
        parts.append("<h3>Headline, per family</h3>" + frame_html(table, rename=False))
    if sentences:
        parts.append('<h3>Findings</h3><ul class="findings">'
                     + "".join(f"<li>{_inline_markdown(s)}</li>" for s in sentences) + "</ul>")
    return "\n".join(parts)


def _results_csv_html(csv: Path) -> str:
    """results.csv per family with the table's display labels and formats (intervals in brackets)."""
    from .results import COLUMNS, styled

    frame = read_table(csv)
    try:
        return "".join(f"<h4>{html.escape(str(family))}</h4>" + frame_html(styled(rows[COLUMNS].reset_index(
            drop=True)).data, rename=False) for family, rows in frame.groupby("family", sort=False))
    except Exception:  # not the workbench's schema (an older run): the plain table, rounded
        return frame_html(frame)


def _summary_html(csv: Path) -> str | None:
    """The display summaries results.py makes of the matched-compute and warm-start tables (None for others)."""
    from .results import matched_summary, warm_summary

    summaries = {"matched_compute.csv": matched_summary, "warm_start.csv": warm_summary}
    if csv.name not in summaries:
        return None
    try:
        return frame_html(summaries[csv.name](read_table(csv)), rename=False)
    except Exception:
        return None


def results_tables_html(run_dir: Path) -> list[str]:
    """Every table of the run, readable: results.csv by family, then each ``results/*.csv`` folded (large ones
    only linked)."""
    parts = []
    if (run_dir / "results.csv").is_file():
        try:
            parts.append("<h3>Results table (results.csv)</h3>" + _results_csv_html(run_dir / "results.csv"))
        except Exception as err:
            parts.append(f'<p class="muted">(results.csv could not be read: {html.escape(str(err)[:300])})</p>')
    folder = run_dir / "results"
    for csv in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        try:
            frame = read_table(csv)
            body = (f'<p class="muted">{len(frame):,} rows: open the file.</p>' if len(frame) > MAX_INLINE_ROWS
                    else _summary_html(csv) or frame_html(frame))
        except Exception as err:
            body = f'<p class="muted">(could not be read: {html.escape(f"{type(err).__name__}: {err}"[:300])})</p>'
            frame = None
        rows = "" if frame is None else f", {len(frame):,} rows"
        parts.append(f"<details><summary><code>results/{html.escape(csv.name)}</code>{rows}</summary>{body}</details>")
    return parts
