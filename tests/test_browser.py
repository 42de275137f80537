"""JupyterLab in a real browser: the notebooks' widgets must work where researchers use them.

Each test starts JupyterLab on loopback (isolated settings, a temporary copy of the notebooks), opens a notebook in
headless Chromium driven by Playwright, runs all cells from the Run menu and then moves a widget control. The
plotly figure that the browser *rendered* (the ``data`` the plotly.js graph div holds) must change, and for the
symmetry sliders the printed ``max |delta logits|`` must stay at float rounding.

Executed notebooks are checked as a reader sees them: notebooks 01, 02 and 04 run by ``python -m workbench run``
(smoke params) and opened without running anything must show a drawn plotly snapshot for every explorer widget, no
widget repr and no progress bar frozen at 0%; the run's ``index.html`` and the notebook pages it links must work
with the network cut off (no request may leave the machine) and draw their formulas as MathML. A small run folder
with real figures (no JupyterLab needed) checks the index's thumbnails and captions and two figure pages: caption,
and a back link that leads to the index.

Marker ``browser`` (excluded from a bare ``pytest``; ``make test`` and ``.ci/run`` include it and install Chromium
first). Without Chromium or Playwright the tests skip, except under ``CI=true``, where that is a failure. On a
failure a full-page screenshot and the server log land in ``outputs/test-artifacts/browser/`` (or
``$WORKBENCH_ARTIFACTS``).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = Path(os.environ.get("WORKBENCH_ARTIFACTS", REPO / "outputs" / "test-artifacts")) / "browser"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RUN_TIMEOUT_MS = 240_000  # one notebook, all cells, on a busy 2-core machine

# the figure a plotly.js graph div actually drew: its traces' x/y (and z for heatmaps), as one JSON string
FIGURE_STATE = "el => JSON.stringify((el.data || []).map(t => [t.type, t.x, t.y, t.z, t.marker && t.marker.color]))"
DELTA = re.compile(r"max \|delta logits\| = ([-+0-9.eE]+)")


def _missing(what: str):
    message = f"{what}; `make test` installs it (Debian: apt-get install -y chromium; pip: playwright)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser test cannot run in CI: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("WORKBENCH_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not path:
        _missing(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}; or set WORKBENCH_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright is not installed")
    with sync_playwright() as api:
        yield api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_lab_settings(settings: Path) -> None:
    """Render every cell (no virtual scrolling: cells off screen would have no DOM) and ask nothing at start."""
    overrides = {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for plugin, values in overrides.items():
        file = settings / f"{plugin}.jupyterlab-settings"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a scratch copy of notebooks/ (outputs go to the scratch dir)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(NOTEBOOKS, root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _write_lab_settings(root / "settings")
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(root / "settings"), JUPYTER_CONFIG_DIR=str(root / "config"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"), JUPYTER_RUNTIME_DIR=str(root / "runtime"))
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log_file = root / "server.log"
    with open(log_file, "w") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log_file.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 120 s:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"base": base, "token": token, "root": root, "log": log_file}
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextlib.contextmanager
def _headless_page(request, chromium, playwright_api, timeout_ms: int, server_log: Path | None = None):
    """A headless Chromium page; when the test using it failed, a full-page screenshot (or why there is none) and
    ``server_log`` are copied to ARTIFACTS."""
    browser = playwright_api.chromium.launch(
        executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout_ms)
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / f"{request.node.name}.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
            except Exception as err:  # a crashed page cannot be photographed; say so instead
                shot.with_suffix(".txt").write_text(f"screenshot failed: {err}\n")
            if server_log is not None:
                shutil.copy(server_log, ARTIFACTS / f"{request.node.name}.server.log")
            print(f"browser test failed: screenshot and logs in {ARTIFACTS}")
        browser.close()


@pytest.fixture
def page(request, lab, chromium, playwright_api):
    with _headless_page(request, chromium, playwright_api, 60_000, server_log=lab["log"]) as pg:
        yield pg


def open_and_run_all(page, lab, notebook: str) -> None:
    """Open ``notebooks/<notebook>`` in JupyterLab, wait for an idle kernel, Run > Run All Cells, wait until every
    code cell has an execution count, and check that no cell raised."""
    # ?reset: start from an empty workspace, so notebooks opened by an earlier test are not restored beside it
    page.goto(f"{lab['base']}/lab/tree/notebooks/{notebook}?reset&token={lab['token']}")
    n_code = sum(cell["cell_type"] == "code" for cell in json.loads((NOTEBOOKS / notebook).read_text())["cells"])
    # "idle" alone is not enough: the indicator reads idle ("No Kernel") before the notebook and kernel load, and
    # Run All clicked then executes nothing. Wait for the kernel's name with Idle, and for every cell.
    page.wait_for_function(
        """(n) => { const bar = document.querySelector('.jp-StatusBar-Widget');
                    return bar && /Python \\(workbench\\) \\| Idle/.test(bar.textContent)
                           && document.querySelectorAll('.jp-CodeCell').length === n; }""",
        arg=n_code, timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()
    page.wait_for_function(
        """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                              .map(e => e.textContent.trim());
                   return p.length > 0 && p.every(x => /^\\[\\d+\\]:$/.test(x)); }""",
        timeout=RUN_TIMEOUT_MS)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, f"{notebook} raised in JupyterLab:\n" + "\n".join(errors.all_inner_texts())


def widget_figures(page) -> list[str]:
    plots = page.locator(".widget-output .js-plotly-plot")
    plots.first.wait_for()
    return plots.evaluate_all(f"els => els.map({FIGURE_STATE})")


def wait_for_figure_change(page, index: int, before: str) -> str:
    page.wait_for_function(
        f"""([i, before]) => {{ const el = document.querySelectorAll('.widget-output .js-plotly-plot')[i];
                               return el && ({FIGURE_STATE})(el) !== before; }}""",
        arg=[index, before], timeout=60_000)
    return widget_figures(page)[index]


def printed_deltas(page) -> list[float]:
    """Every ``max |delta logits| = ...`` the widgets printed, in page order."""
    text = "\n".join(page.locator(".widget-output").all_inner_texts())
    return [float(v) for v in DELTA.findall(text.replace("\u2212", "-"))]


def set_readout(page, readout, value: str) -> None:
    """Type a value into an ipywidgets slider's editable readout, as a user would."""
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


def test_gauge_sliders_change_the_figure_not_the_function(page, lab):
    open_and_run_all(page, lab, "02_gauge_freedom.ipynb")
    # two explorers: MLP-ReLU (layer, unit, log10 scale) and CNN-tanh (layer, unit, flip sign)
    assert page.locator(".widget-slider").count() == 5
    # every control's label is shown whole ("hidden layer", not "hidden la...")
    cut = page.locator(".widget-inline-hbox .widget-label").evaluate_all(
        "els => els.filter(e => e.offsetParent && e.scrollWidth > e.clientWidth).map(e => e.textContent)")
    assert not cut, f"labels cut off: {cut}"
    relu_before, tanh_before = widget_figures(page)
    deltas = printed_deltas(page)
    assert len(deltas) >= 2 and all(0 <= d < 1e-5 for d in deltas), deltas

    # ReLU: scale hidden unit 0 by 10**-1.5 instead of 10
    scale_readout = page.locator(".widget-readout").nth(2)
    set_readout(page, scale_readout, "-1.5")
    relu_after = wait_for_figure_change(page, 0, relu_before)
    assert relu_after != relu_before
    assert widget_figures(page)[1] == tanh_before, "moving the MLP slider redrew the CNN explorer"
    text = "\n".join(page.locator(".widget-output").all_inner_texts())
    assert "scaled by 0.0316" in text, text
    deltas = printed_deltas(page)
    assert len(deltas) >= 2 and all(0 <= d < 1e-5 for d in deltas), deltas

    # tanh: the sign flip off (q = +1) and on again: the drawn weights change, the logits never do
    flip = page.locator(".widget-checkbox input").first
    flip.click()
    tanh_unflipped = wait_for_figure_change(page, 1, tanh_before)
    flip.click()
    tanh_again = wait_for_figure_change(page, 1, tanh_unflipped)
    assert tanh_again == tanh_before
    assert all(d == 0.0 for d in printed_deltas(page)[-2:]), printed_deltas(page)

    # the same unit moved to another hidden layer through the layer slider (keyboard, as a user would)
    layer_handle = page.locator(".widget-slider").nth(0).locator(".noUi-handle")
    layer_handle.focus()
    page.keyboard.press("ArrowRight")
    wait_for_figure_change(page, 0, relu_after)
    assert page.locator(".widget-readout").nth(0).inner_text().strip() == "1"
    deltas = printed_deltas(page)
    assert all(0 <= d < 1e-5 for d in deltas), deltas


def test_graph_explorer_layer_picker_redraws(page, lab):
    open_and_run_all(page, lab, "01_weight_space_graphs.ipynb")
    arch, layer = page.locator(".widget-dropdown select").nth(0), page.locator(".widget-dropdown select").nth(1)
    (start,) = widget_figures(page)
    labels = layer.locator("option").all_inner_texts()
    assert labels[0] == "all" and len(labels) == 4, labels  # MLP [8, 6, 6, 4]: three layers

    layer.select_option(label=labels[2])  # "1: dense 6->6"
    highlighted = wait_for_figure_change(page, 0, start)
    layer.select_option(label="all")
    assert wait_for_figure_change(page, 0, highlighted) == start

    arch.select_option(label="Small CNN Zoo CNN")
    cnn = wait_for_figure_change(page, 0, start)
    cnn_labels = layer.locator("option").all_inner_texts()
    readable = [label.replace("\xa0", " ") for label in cnn_labels]  # ipywidgets renders spaces as &nbsp;
    assert len(cnn_labels) == 5 and readable[1].startswith("0: conv") and readable[4].startswith("3: dense"), readable
    layer.select_option(label=cnn_labels[4])  # the dense layer after global average pooling
    assert wait_for_figure_change(page, 0, cnn) != cnn


# -- executed notebooks, read as files ----------------------------------------------------------------------------
FROZEN_BAR = re.compile(r"\d+%\|")  # a tqdm bar's text ("0%|          | 0/136"): a widget bar frozen at its start
EXECUTED = ("01_weight_space_graphs", "02_gauge_freedom", "04_train_meta_optimizer")


@pytest.fixture(scope="module")
def executed_run(lab) -> Path:
    """Notebooks 01 (graph explorer), 02 (two symmetry explorers) and 04 (progress bars) executed the way a run
    executes them -- ``python -m workbench run`` on the smoke params -- into the lab's folder."""
    outputs = lab["root"] / "runs"
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_BATCH"}  # the runner must set it itself
    proc = subprocess.run([sys.executable, "-m", "workbench", "run", str(REPO / "params" / "smoke.yaml"),
                           "--outputs", str(outputs), "--only", "01", "02", "04"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"the run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return outputs / "smoke"


def test_executed_notebooks_show_static_figures_not_widget_reprs_or_frozen_bars(page, lab, executed_run):
    """Opened without running anything, an executed notebook shows a rendered plotly snapshot in every explorer
    cell, no ``VBox(children=...`` repr, and progress as text lines instead of a bar frozen at 0%."""
    for name in EXECUTED:
        file = executed_run / "notebooks" / f"{name}.ipynb"
        cells = [c for c in json.loads(file.read_text())["cells"] if c["cell_type"] == "code"]
        widget_cells = [i for i, c in enumerate(cells) if "_widget(" in "".join(c["source"])]
        page.goto(f"{lab['base']}/lab/tree/{file.relative_to(lab['root']).as_posix()}?reset&token={lab['token']}")
        page.wait_for_function("(n) => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length === n",
                               arg=len(cells), timeout=120_000)
        code_cells = page.locator(".jp-Notebook .jp-CodeCell")
        for i in widget_cells:  # a drawn figure, not a repr: plotly.js made its graph div
            code_cells.nth(i).locator(".jp-OutputArea .js-plotly-plot").first.wait_for(timeout=60_000)
        text = "\n".join(page.locator(".jp-Notebook .jp-OutputArea").all_inner_texts())
        assert "VBox(children" not in text and "HBox(children" not in text, f"{name}: widget repr shown"
        assert not FROZEN_BAR.search(text), f"{name}: frozen progress bar: {FROZEN_BAR.search(text).group(0)!r}"
        assert "Error displaying widget" not in text, name
        if name.startswith("02"):
            assert len(widget_cells) == 2 and text.count("Interactive explorer") == 2
            assert "max |delta logits|" in text
        if name.startswith("04"):
            # the CE/L1 pair: one 2-process batch, or (meta_l1_from_ce) the CE run, then the L1 run started from it
            assert (re.search(r"metanet runs \(\d processes\): 2/2 \(100%\)", text)
                    or len(re.findall(r"metanet runs: 1/1 \(100%\)", text)) == 2), text[:3000]


def _offline(page) -> list[str]:
    """Refuse every request that leaves the machine and record it: the list must stay empty."""
    remote: list[str] = []
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
    page.route("http*://**", lambda route: route.abort())
    return remote


def test_results_index_and_notebook_pages_work_offline(page, executed_run):
    """index.html (written by the run) links only files that exist, and the notebook pages it links draw their
    figures with the run's own plotly.js and their formulas as MathML, with no request leaving the machine."""
    index = executed_run / "index.html"
    assert index.is_file()
    remote = _offline(page)
    page.goto(index.as_uri())
    hrefs = page.locator("a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert hrefs and not [h for h in hrefs if re.match(r"^[a-z]+:|^/", h)], hrefs
    from urllib.parse import unquote

    files = [h for h in hrefs if not h.startswith("#")]
    assert all((executed_run / unquote(h)).is_file() for h in files), hrefs
    assert any(h.endswith("02_gauge_freedom.html") for h in hrefs) and any(h.startswith("figures/") for h in hrefs)
    page.goto((executed_run / "notebooks" / "02_gauge_freedom.html").as_uri())
    nb = json.loads((executed_run / "notebooks" / "02_gauge_freedom.ipynb").read_text())
    n_figures = sum("application/vnd.plotly.v1+json" in o.get("data", {})
                    for c in nb["cells"] for o in c.get("outputs", []))
    page.wait_for_function("(n) => document.querySelectorAll('.js-plotly-plot').length >= n",
                           arg=n_figures, timeout=60_000)
    text = page.inner_text("body")
    assert "Interactive explorer" in text and "VBox(children" not in text
    drawn = page.locator("math").evaluate_all("els => els.filter(e => e.getBoundingClientRect().width > 0).length")
    assert drawn >= 10, f"formulas not drawn as MathML ({drawn})"
    assert "\\tfrac" not in text and "$\\mathrm" not in text, "raw LaTeX left in the page"
    assert not remote, f"the pages asked the network for {remote}"


@pytest.fixture
def plain_page(request, chromium, playwright_api):
    """A headless Chromium page without JupyterLab (for the run's static pages)."""
    with _headless_page(request, chromium, playwright_api, 30_000) as pg:
        yield pg


@pytest.fixture
def small_run(tmp_path, chromium) -> Path:
    """A run folder with two real figures saved by save_figure, verdicts, and an executed notebook with formulas;
    its index written with thumbnails drawn (the fixture's Chromium: WORKBENCH_CHROMIUM)."""
    import nbformat
    import pandas as pd

    from workbench.reporting.index import write_index
    from workbench.notebook import save_figure
    from workbench.viz.results import symmetry_response_figure
    from workbench.viz.training import lam_pareto_figure

    from test_captions import _sweep

    run = tmp_path / "small run"
    (run / "results").mkdir(parents=True)
    (run / "notebooks").mkdir()
    (run / "params.json").write_text(json.dumps({"source": "params/tiny.yaml", "sections": {}, "git_revision": "abc"}))
    per = pd.DataFrame({"family": ["mlp-tanh"] * 4, "method": ["ScaleGMN-B", "GMN-B (sym. broken)"] * 2,
                        "response": [0.0, 1.2, 0.0, 0.9]})
    save_figure(symmetry_response_figure(per), run, "05_symmetry_response", png=False)
    save_figure(lam_pareto_figure(_sweep()), run, "07_lam_pareto", png=False)
    (run / "results" / "verdicts.csv").write_text(
        "family,claim,text,value,lo,hi,op,threshold,outcome,networks,seeds\n"
        "mlp-tanh,ce_gain,one-shot gain on trained checkpoints (points),4.1,2.5,6.0,>,1,holds,8,1\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 02 · formulas\n\nThe tangent $\\tfrac{d}{dt} e^{t e_i}$ and $$J v = 0$$")]
    nbformat.write(nb, run / "notebooks" / "02_formulas.ipynb")
    (run / "notebooks" / ".02_formulas.done.json").write_text(json.dumps({"seconds": 1.0}))
    os.environ["WORKBENCH_CHROMIUM"] = chromium
    try:
        write_index(run)
    finally:
        os.environ.pop("WORKBENCH_CHROMIUM", None)
    return run


def test_index_and_figure_pages_offline_with_captions_and_way_back(plain_page, small_run):
    """The index shows the verdict, a drawn thumbnail and the computed caption of each figure; each figure page has
    its title, caption and a back link that leads to the index; no page asks the network for anything."""
    from workbench.reporting.captions import caption_of

    page = plain_page
    remote = _offline(page)
    page.goto((small_run / "index.html").as_uri())
    assert "one-shot gain on trained checkpoints" in page.locator("#verdicts ~ div.scroll").first.inner_text()
    thumbs = page.locator("figure.card img")
    assert thumbs.count() == 2
    assert thumbs.evaluate_all("els => els.every(e => e.complete && e.naturalWidth > 300)"), "a thumbnail did not load"
    for name in ("05_symmetry_response", "07_lam_pareto"):
        caption = caption_of(json.loads((small_run / "figures" / f"{name}.json").read_text()))
        card = page.locator(f"#fig-{name}")
        assert caption and caption in card.inner_text()
        card.locator("a.title").click()
        page.wait_for_function("() => document.querySelector('.js-plotly-plot .main-svg')")
        assert page.locator("h1").inner_text() and page.locator("p.caption").inner_text() == caption
        page.locator("nav.back a").click()
        page.wait_for_url("**/index.html")
    assert page.title().startswith("Run small run")
    page.goto((small_run / "notebooks" / "02_formulas.html").as_uri())
    sizes = page.locator("math").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    assert len(sizes) == 2 and all(w > 0 for w in sizes), sizes
    assert "tfrac" not in page.inner_text("body")
    assert not remote, f"the pages asked the network for {remote}"
