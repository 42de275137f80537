"""The README's "Use it on your own network" example runs as written, in a fresh interpreter outside the repository
(the installed package and its shipped optimizers only), and prints the held-out accuracy before and after."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    """The python code block of the README's section "Use it on your own network"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it on your own network", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section should hold exactly one python code block"
    return blocks[0]


def test_the_readme_example_runs_as_written_and_prints_before_and_after(tmp_path):
    from workbench.optimizers import names

    if "mlp-tanh-ce" not in names():
        pytest.fail("no shipped optimizer mlp-tanh-ce: regenerate them (python -m workbench ship outputs/default)")
    done = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.fullmatch(r"held-out accuracy (\d+\.\d) % -> (\d+\.\d) % after the one shot\n", done.stdout)
    assert match, done.stdout
    before, after = map(float, match.groups())
    assert 0 <= before <= 100 and 0 <= after <= 100 and before != after
