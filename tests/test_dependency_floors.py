"""The dependency floors the workbench's safety relies on are stated in pyproject.toml and met by the installed
versions, and the params reader is bounded against a merge-key bomb with the PyYAML that is installed."""
from __future__ import annotations

import importlib.metadata
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from workbench.errors import ParamsError
from workbench.run.params import load_params

from test_bad_files_and_folders import deadline

ROOT = Path(__file__).resolve().parent.parent
# package -> (the lowest version without the problem, the release just before it); why: pyproject.toml's comments
FLOORS = {"pyyaml": ("6.0.4", "6.0.3"), "torch": ("2.10", "2.9.1"), "filelock": ("3.20.1", "3.20.0")}


def _declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(line).name.lower(): Requirement(line) for line in project["dependencies"]}


@pytest.mark.parametrize("package, floor, under", [(k, *v) for k, v in FLOORS.items()])
def test_pyproject_states_the_floor_and_the_installed_version_meets_it(package, floor, under):
    requirement = _declared()[package]
    assert Version(floor) in requirement.specifier, f"{package}: {requirement} excludes the safe {floor}"
    assert Version(under) not in requirement.specifier, f"{package}: {requirement} admits {under}"
    installed = Version(importlib.metadata.version(package).split("+")[0])
    assert installed >= Version(floor), f"{package} {installed} is installed; the workbench needs >= {floor}"


def test_a_params_file_of_nested_merge_keys_is_read_in_bounded_time(tmp_path):
    """24 levels of ``<<: [*prev, *prev]`` (~700 bytes): PyYAML before 6.0.4 builds 2^24 key pairs (tens of seconds,
    GBs of memory); with the floor's version the file is refused at once by the params checks."""
    lines = ["a0: &a0 {k: 0}"] + [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}" for i in range(1, 25)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    t0 = time.perf_counter()
    with deadline(5), pytest.raises(ParamsError, match="unknown key 'a0'"):
        load_params(path)
    assert time.perf_counter() - t0 < 2
