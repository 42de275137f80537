"""Small helpers every notebook uses: one place that pins the plotly renderer and saves figures."""
from __future__ import annotations

import json
import os
from pathlib import Path

import plotly.io as pio

from .io import atomic_write_text

RENDERER = "plotly_mimetype+notebook_connected"


def setup_notebook(output_dir: str | os.PathLike, seed: int | None = None) -> Path:
    """Pin the plotly renderer (deterministic mimetype output for nbval), seed torch and create ``output_dir``."""
    pio.renderers.default = RENDERER
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    out = Path(output_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out


def save_figure(fig, output_dir: str | os.PathLike, name: str, png: bool | None = None) -> dict[str, Path]:
    """Write ``figures/<name>.json`` and ``.html`` (always) and ``.png`` (when kaleido and a Chromium work).

    PNG export is best effort: it needs kaleido plus a Chromium; its absence is not an error.
    """
    folder = Path(output_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    atomic_write_text(folder / f"{name}.json", json.dumps(fig.to_plotly_json(), cls=_PlotlyEncoder()))
    written["json"] = folder / f"{name}.json"
    # plotly.min.js is written once beside the pages, so they render offline (a CDN link would not on a cluster)
    bundle = folder / "plotly.min.js"
    if not bundle.exists():
        from plotly.offline import get_plotlyjs

        atomic_write_text(bundle, get_plotlyjs())
    atomic_write_text(folder / f"{name}.html", fig.to_html(include_plotlyjs="directory", full_html=True))
    written["html"] = folder / f"{name}.html"
    if png is None:
        png = os.environ.get("WORKBENCH_PNG", "0") == "1"
    if png:
        try:
            fig.write_image(folder / f"{name}.png")
            written["png"] = folder / f"{name}.png"
        except Exception:  # kaleido or Chromium missing: PNG is optional
            pass
    return written


def _PlotlyEncoder():
    from plotly.utils import PlotlyJSONEncoder

    return PlotlyJSONEncoder
