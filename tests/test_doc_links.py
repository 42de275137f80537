"""Every local link and image of the project's markdown pages points at a file the repository tracks: a page that
names a figure or a doc nobody committed shows a broken image on a fresh clone (the README's figure once did)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
         "bench/README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def local_targets(text: str) -> list[str]:
    """The link targets of markdown ``text`` that are paths in the repository (no URL, no pure anchor)."""
    out = []
    for target in LINK.findall(text):
        target = target.split("#", 1)[0]
        if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target):
            out.append(target)
    return out


def tracked() -> set[str]:
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return set(files.split())


@pytest.mark.parametrize("page", [p for p in PAGES if (ROOT / p).is_file()])
def test_local_links_point_at_tracked_files(page):
    files = tracked()
    dirs = {str(p) for f in files for p in Path(f).parents}  # a link may name a folder
    base = (ROOT / page).parent
    missing = []
    for target in local_targets((ROOT / page).read_text(encoding="utf-8")):
        rel = str((base / target).resolve().relative_to(ROOT)) if (base / target).resolve().is_relative_to(ROOT) \
            else target
        if rel not in files and rel.rstrip("/") not in dirs:
            missing.append(target)
    assert not missing, f"{page} links to files git does not track: {missing}"


def test_the_checker_sees_a_missing_file():
    """Negative control: an image and a link to untracked paths are found, URLs and anchors are not."""
    text = "![x](docs/figures/nothing.png) [y](docs/none.md#a) [z](https://example.org/a.png) [w](#top)"
    assert local_targets(text) == ["docs/figures/nothing.png", "docs/none.md"]
    assert "docs/figures/nothing.png" not in tracked()
