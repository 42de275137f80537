"""The README's figure, drawn from a run's saved figure: its offline HTML page, rendered in headless Chromium (the
browser the tests use; Playwright downloads nothing) and saved as a PNG.

    python docs/figures/make_figures.py outputs/default [--out docs/figures]

The caption in the README names the run; rerun this after regenerating the results blocks from a new run.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

#: figure name in the run's figures/ folder -> file under --out
FIGURES = {"06_matched_compute": "matched_compute.png"}


def render(run_dir: Path, out: Path, width: int = 1100, height: int = 860) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p),
                    None)
    if chromium is None:
        raise SystemExit("no Chromium on PATH (Debian: apt-get install -y chromium)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": height})
        for name, file in FIGURES.items():
            html = run_dir / "figures" / f"{name}.html"
            if not html.is_file():
                raise SystemExit(f"{html} is missing: run the notebook sequence to the end first")
            page.goto(html.resolve().as_uri())
            page.wait_for_selector(".main-svg")
            page.locator(".plotly-graph-div").first.screenshot(path=str(out / file))
            written.append(out / file)
        browser.close()
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    for path in render(args.run_dir, args.out):
        print("wrote", path)


if __name__ == "__main__":
    main()
