"""The results index (``outputs/<name>/index.html``, :mod:`workbench.reporting.index`): every link resolves inside the
run folder, nothing is fetched from the network, and the runner never mistakes the index for a notebook's artifact."""
from __future__ import annotations

import importlib.util
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from workbench.__main__ import main
from workbench.reporting.index import INDEX, RunIndexError, write_index
from workbench.run.runner import _artifacts

HAS_NBCONVERT = importlib.util.find_spec("nbconvert") is not None
FIGURE = {"data": [{"type": "bar", "x": ["a", "b"], "y": [1, 2]}],
          "layout": {"title": {"text": "Bars<br><sup>a subtitle</sup>"}, "height": 300,
                     "meta": {"workbench_caption": "Bar b is twice bar a."}}}
VERDICTS = ("family,claim,text,value,lo,hi,op,threshold,outcome,networks,seeds\n"
            "mlp-tanh,ce_gain,one-shot gain on trained checkpoints (points),4.123456,2.5,5.987654,>,1,holds,8,1\n"
            "mlp-tanh,l1_reduction,L1-norm reduction (%),12.5,-3.25,30.1,>=,70,fails,8,1\n")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.scripts = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.links.append(attrs[key])
        if tag == "script":
            self.scripts.append(attrs.get("src"))


def parse(file: Path) -> _Links:
    parser = _Links()
    parser.feed(file.read_text(encoding="utf-8"))
    return parser


def resolve(link: str, page: Path) -> Path:
    url = urlparse(link)
    assert not url.scheme and not url.netloc and not link.startswith("/"), f"{page.name}: {link} is not relative"
    return (page.parent / unquote(url.path)).resolve()


def executed_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    cell = nbformat.v4.new_code_cell("fig", execution_count=1)
    table = nbformat.v4.new_code_cell("frame", execution_count=2)
    table.outputs = [nbformat.v4.new_output("execute_result", execution_count=2, data={
        "text/html": '<table class="dataframe"><tr><td>72.893000</td><td>0.000536</td><td>8.000000</td></tr></table>',
        "text/plain": "frame"})]
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": '<script type="module">import '
                                                     '"https://cdn.plot.ly/plotly-4.1.1.min"</script>'}),
        nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
            "text/plain": "runs:   0%|          | 0/2"}),
        nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": FIGURE,
                                                     "text/html": '<script src="https://cdn.plot.ly/x.js"></script>',
                                                     "text/plain": "<plotly figure>"}),
        nbformat.v4.new_output("stream", name="stdout", text="hello from the notebook\n"),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · A notebook\n\nThe tangent $x_i^2 + \\tfrac{1}{2}$, the cost `$HOME`, "
                                              "and $$\\sum_i a_i$$"), cell, table]
    return nb


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A small fake run folder with everything an index links."""
    run = tmp_path / "outputs" / "tiny run"  # a space: links must be percent-encoded
    (run / "figures").mkdir(parents=True)
    (run / "results").mkdir()
    (run / "notebooks").mkdir()
    (run / "params.json").write_text(json.dumps({"source": "params/tiny.yaml", "shared": {}, "sections": {},
                                                 "started": "2026-01-01 10:00 UTC", "git_revision": "abc1234"}))
    for name in ("01_bars", "02_more"):
        (run / "figures" / f"{name}.json").write_text(json.dumps(FIGURE))
        (run / "figures" / f"{name}.html").write_text("<html><body>figure</body></html>")
    (run / "figures" / "01_bars.png").write_bytes(b"\x89PNG")
    (run / "figures" / "plotly.min.js").write_text("window.Plotly = {newPlot() {}};")
    (run / "results.md").write_text("| a |\n|---|\n| 1 |\n")
    (run / "results.csv").write_text("family,method,ce_avg_acc\nmlp-tanh,Initial,55.04221\n")
    (run / "results" / "verdicts.csv").write_text(VERDICTS)
    nbformat.write(executed_notebook(), run / "notebooks" / "01_a.ipynb")
    nbformat.write(executed_notebook(), run / "notebooks" / "02_b.failed.ipynb")
    (run / "notebooks" / ".01_a.done.json").write_text(json.dumps({"version": 2, "seconds": 12.5, "artifacts": {}}))
    return run


@pytest.mark.parametrize("convert", [False, pytest.param(True, marks=pytest.mark.skipif(
    not HAS_NBCONVERT, reason="nbconvert is not installed"))])
def test_every_link_of_the_index_resolves_inside_the_run(run_dir, convert):
    index = write_index(run_dir, convert=convert, thumbnails=False)
    assert index == run_dir / INDEX
    links = parse(index)
    assert not links.scripts, "the index needs no script (it must work offline, anywhere)"
    anchors = {link[1:] for link in links.links if link.startswith("#")}
    assert anchors == {"verdicts", "figures", "tables", "notebooks", "files"}
    assert all(f'id="{a}"' in index.read_text() for a in anchors), "a table-of-contents link goes nowhere"
    targets = {resolve(link, index) for link in links.links if not link.startswith("#")}
    for target in targets:
        assert target.is_file(), f"index.html links {target}, which does not exist"
        assert run_dir.resolve() in target.parents, f"{target} is outside the run folder"
    expected = {run_dir / "results.md", run_dir / "results.csv", run_dir / "results" / "verdicts.csv",
                run_dir / "figures" / "01_bars.html", run_dir / "figures" / "02_more.html",
                run_dir / "figures" / "01_bars.png", run_dir / "params.json",
                run_dir / "notebooks" / "01_a.ipynb", run_dir / "notebooks" / "02_b.failed.ipynb"}
    if convert:
        expected |= {run_dir / "notebooks" / "01_a.html", run_dir / "notebooks" / "02_b.failed.html"}
    assert {p.resolve() for p in expected} <= targets
    text = index.read_text()
    for fact in ("tiny run", "params/tiny.yaml", "abc1234", "2026-01-01 10:00 UTC", "12.5 s", "failed",
                 "Bars", "a subtitle", "55.04"):
        assert fact in text, fact


@pytest.mark.skipif(not HAS_NBCONVERT, reason="nbconvert is not installed")
def test_notebook_pages_draw_with_the_runs_plotly_not_a_cdn(run_dir):
    write_index(run_dir, thumbnails=False)
    page = run_dir / "notebooks" / "01_a.html"
    text = page.read_text()
    assert "cdn.plot.ly" not in text and "0%|" not in text, "CDN loader or frozen widget bar left in the page"
    assert "plotly-graph-div" in text and "hello from the notebook" in text
    scripts = [s for s in parse(page).scripts if s and not s.startswith("data:")]
    local = [s for s in scripts if not urlparse(s).scheme]
    assert any(resolve(s, page) == (run_dir / "figures" / "plotly.min.js").resolve() for s in local), scripts
    assert all(resolve(s, page).is_file() for s in local)
    assert "require.min.js" not in text  # require.js would turn plotly.min.js into an anonymous AMD module


def test_index_without_figures_or_notebooks_and_bad_folders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(RunIndexError, match="does not look like a run folder"):
        write_index(run)
    with pytest.raises(RunIndexError, match="no such directory"):
        write_index(tmp_path / "missing")
    (run / "params.json").write_text("{not json")  # not the runner's params.json: not a run folder either
    with pytest.raises(RunIndexError, match=r"does not look like a run folder.*params.json"):
        write_index(run)
    (run / "notebooks").mkdir()
    (run / "notebooks" / ".01_a.done.json").write_text(json.dumps({"seconds": 1.0}))  # a finished notebook's marker
    text = write_index(run, thumbnails=False).read_text()
    assert "No executed notebooks" in text and "No figures yet" in text and "unknown" in text


def test_index_command_rebuilds_it(run_dir, capsys):
    (run_dir / "figures" / ".thumbnails").mkdir()  # no Chromium drawing in this test: every thumbnail is there
    (run_dir / "figures" / ".thumbnails" / "02_more.png").write_bytes(b"\x89PNG")
    assert main(["index", str(run_dir), "--no-html"]) == 0
    assert (run_dir / INDEX).is_file() and "results index" in capsys.readouterr().out
    assert main(["index", str(run_dir / "nowhere")]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_the_index_and_notebook_pages_are_not_notebook_artifacts(run_dir):
    """The runner rewrites them at every run: a completion marker that vouched for them would break --resume."""
    write_index(run_dir, convert=False, thumbnails=False)
    (run_dir / "notebooks" / "01_a.html").write_text("<html></html>")
    (run_dir / "figures" / ".thumbnails").mkdir()
    (run_dir / "figures" / ".thumbnails" / "02_more.png").write_bytes(b"\x89PNG")  # as the index draws them
    artifacts = _artifacts(run_dir)
    assert INDEX not in artifacts and not any(rel.startswith("notebooks/") for rel in artifacts)
    assert not any(".thumbnails" in rel for rel in artifacts), "a redrawn thumbnail would break --resume"
    assert "figures/01_bars.html" in artifacts


@pytest.mark.notebooks
def test_a_run_writes_its_index_and_resumes_past_it(tmp_path):
    """``python -m workbench run`` ends by writing index.html (notebook pages included); rewriting it at the next
    run never makes ``--resume`` distrust a notebook, and the run's revision and params file are recorded."""
    from workbench.run.runner import run

    params_file = tmp_path / "tiny.yaml"
    params_file.write_text("n_networks: 2\n")
    logs: list[str] = []
    out = run(params_file, only=["01"], outputs=tmp_path / "outputs", log=logs.append)
    index = out / INDEX
    assert index.is_file() and any("results index" in line for line in logs), logs
    recorded = json.loads((out / "params.json").read_text())
    assert recorded["git_revision"] and recorded["started"]
    targets = {resolve(link, index) for link in parse(index).links if not link.startswith("#")}
    assert all(t.is_file() for t in targets)
    assert (out / "figures" / "01_mlp_vs_cnn_graphs.html").resolve() in targets
    assert (out / "notebooks" / ("01_weight_space_graphs" + (".html" if HAS_NBCONVERT else ".ipynb"))).resolve() \
        in targets
    logs.clear()
    run(params_file, only=["01"], outputs=tmp_path / "outputs", resume=True, log=logs.append)
    assert any("skipped" in line for line in logs) and not any("running" in line for line in logs), logs
    assert index.is_file()


def test_the_index_opens_on_the_verdicts_and_findings_the_run_computed(run_dir):
    """Verdicts first, each with its rounded value, interval, threshold and outcome; then the findings, the same
    sentences workbench.reporting.findings writes for the README; then the captioned figures; tables; raw files last."""
    from workbench.reporting.index_sections import _inline_markdown, run_findings

    text = write_index(run_dir, convert=False, thumbnails=False).read_text()
    order = [text.index(f'id="{part}"') for part in ("verdicts", "figures", "tables", "notebooks", "files")]
    assert order == sorted(order)
    verdicts = text[order[0]:order[1]]
    assert "one-shot gain on trained checkpoints (points)" in verdicts
    # to the precision its interval supports: two significant digits of the width
    assert "4.1 [2.5, 6.0]" in verdicts and "12 [-3, 30]" in verdicts and "4.123456" not in verdicts
    assert "&gt; 1" in verdicts and "&gt;= 70" in verdicts
    assert '<span class="outcome holds">holds</span>' in verdicts
    assert '<span class="outcome fails">fails</span>' in verdicts
    table, sentences = run_findings(run_dir)
    assert len(table) == 1 and sentences, "the fixture's verdicts give a headline row and findings"
    for sentence in sentences:
        assert _inline_markdown(sentence) in verdicts
    assert "<strong>" in verdicts and "**" not in verdicts
    figures = text[order[1]:order[2]]
    assert figures.count('<figure class="card') == 2 and figures.count("Bar b is twice bar a.") == 2
    assert '<img src="figures/01_bars.png"' in figures, "the figure's own PNG is its thumbnail"
    assert 'class="card noimg"' in figures, "a figure without a PNG is a card with its title and caption"
    assert "01 · a" in figures, "figures are grouped under the notebook that made them"


def test_thumbnails_are_best_effort(run_dir, monkeypatch):
    """No usable Chromium: the index says so in the log and shows cards; it never fails for want of a thumbnail."""
    monkeypatch.setenv("WORKBENCH_CHROMIUM", str(run_dir / "no-such-browser"))
    logs: list[str] = []
    text = write_index(run_dir, convert=False, log=logs.append).read_text()
    assert any("thumbnails skipped" in line or "thumbnail" in line for line in logs), logs
    assert 'class="card noimg"' in text and not (run_dir / "figures" / ".thumbnails" / "02_more.png").exists()


@pytest.mark.skipif(not HAS_NBCONVERT, reason="nbconvert is not installed")
def test_notebook_pages_render_formulas_offline_and_round_tables(run_dir):
    """Formulas become MathML at export (no MathJax, no CDN script); a $ in code stays; 6-decimal cells are rounded."""
    write_index(run_dir, thumbnails=False)
    text = (run_dir / "notebooks" / "01_a.html").read_text()
    assert text.count("<math ") == 2 and 'display="block"' in text and "<msubsup>" in text
    assert "mathjax" not in text.lower() and "mermaid" not in text.lower()
    assert "<code>$HOME</code>" in text
    scripts = parse(run_dir / "notebooks" / "01_a.html").scripts
    remote = [s for s in scripts if s and urlparse(s).scheme in ("http", "https")]
    assert not remote, remote
    assert "<td>72.89</td><td>0.000536</td><td>8</td>" in text and "72.893000" not in text


@pytest.mark.skipif(not HAS_NBCONVERT, reason="nbconvert is not installed")
def test_notebook_pages_of_an_older_version_are_rendered_again(run_dir):
    """A page written before formulas were converted (it loads MathJax from a CDN) is replaced even though the
    notebook has not changed since; a page of the current version is kept."""
    page = run_dir / "notebooks" / "01_a.html"
    page.write_text('<html><head><meta name="generator" content="workbench index: notebook page">'
                    '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js"></script>'
                    "</head></html>")
    write_index(run_dir, thumbnails=False)
    text = page.read_text()
    assert "cdnjs" not in text and "<math " in text
    stamp = page.stat().st_mtime_ns
    write_index(run_dir, thumbnails=False)
    assert page.stat().st_mtime_ns == stamp, "an up-to-date page was rewritten"


def test_tables_are_rounded_named_and_scroll(run_dir):
    (run_dir / "results" / "lam_sweep.csv").write_text("lam,acc_trained,l1_reduction\n0.001,72.893001,12.0\n")
    text = write_index(run_dir, convert=False, thumbnails=False).read_text()
    tables = text[text.index('id="tables"'):text.index('id="notebooks"')]
    assert "<th>acc trained</th>" in tables and ">72.89<" in tables and "72.893001" not in tables
    assert '<div class="scroll">' in tables and "results/lam_sweep.csv" in tables
