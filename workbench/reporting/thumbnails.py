"""Thumbnails of a run's figures for its index page: each figure page drawn in headless Chromium (driven by
Playwright, which downloads nothing: it is pointed at the system browser) and its plot saved as a PNG.

Best effort: without a Chromium on PATH (``chromium``, ``chromium-browser``, ``google-chrome``; or
``WORKBENCH_CHROMIUM``) or without the playwright package, or when a page does not draw, the index shows a card
with the figure's title and caption instead -- a line in the log, never an error. Every request the pages make
other than to ``file:`` URLs is refused, so drawing a thumbnail never touches the network.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..system.io import atomic_write_bytes

__all__ = ["CHROMIUM_NAMES", "find_chromium", "draw_thumbnails", "THUMBNAIL_WIDTH"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
THUMBNAIL_WIDTH = 1100  # CSS pixels of the browser window: the plot's width on a laptop screen
PAGE_TIMEOUT_MS = 30_000


def find_chromium() -> str | None:
    """``WORKBENCH_CHROMIUM`` when set, else the first Chromium on PATH, else None."""
    return os.environ.get("WORKBENCH_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def _local_only(route) -> None:
    if route.request.url.startswith("file:"):
        route.continue_()
    else:
        route.abort()


def draw_thumbnails(jobs: list[tuple[Path, Path]], log=None) -> list[Path]:
    """For each ``(figure page, png)`` in ``jobs``: open the page offline, wait until plotly has drawn, save a
    screenshot of the plot to ``png`` (atomically). Returns the PNGs written; what could not be drawn is logged."""
    say = log or (lambda _: None)
    if not jobs:
        return []
    chromium = find_chromium()
    if not chromium:
        say(f"[workbench] index: no Chromium found ({', '.join(CHROMIUM_NAMES)}); figures shown as cards, "
            "without thumbnails")
        return []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        say("[workbench] index: playwright is not installed; figures shown as cards, without thumbnails")
        return []
    # in a thread of its own: Playwright's sync API refuses to start where an asyncio loop runs (a Jupyter kernel)
    # or another sync Playwright is open (a browser test); a fresh thread has neither
    with ThreadPoolExecutor(max_workers=1) as pool:
        written = pool.submit(_draw_all, sync_playwright, chromium, jobs, say).result()
    if written:
        say(f"[workbench] index: {len(written)} thumbnail(s) drawn in {written[0].parent}")
    return written


def _draw_all(sync_playwright, chromium: str, jobs: list[tuple[Path, Path]], say) -> list[Path]:
    written: list[Path] = []
    try:
        with sync_playwright() as api:
            browser = api.chromium.launch(executable_path=chromium,
                                          args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                page = browser.new_page(viewport={"width": THUMBNAIL_WIDTH, "height": 900})
                page.set_default_timeout(PAGE_TIMEOUT_MS)
                page.route("**/*", _local_only)
                for figure_page, png in jobs:
                    try:
                        written.append(_draw(page, figure_page, png))
                    except Exception as err:  # one page that does not draw costs its thumbnail only
                        say(f"[workbench] index: no thumbnail for {figure_page.name} ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200] if str(err) else ''})")
            finally:
                browser.close()
    except Exception as err:  # no browser start (sandbox, missing libraries, a dead executable)
        say(f"[workbench] index: thumbnails skipped ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''})")
    return written


def _draw(page, figure_page: Path, png: Path) -> Path:
    page.goto(figure_page.resolve().as_uri())
    if page.locator(".js-plotly-plot").count() == 0:  # plotly draws while the page loads: no plot now, no plot ever
        raise ValueError("the page holds no plotly figure")
    page.wait_for_function("() => { const el = document.querySelector('.js-plotly-plot');"
                           " return el && el._fullLayout && el.querySelector('.main-svg'); }")
    shot = page.locator(".js-plotly-plot").first.screenshot(type="png", animations="disabled")
    return atomic_write_bytes(png, shot)
