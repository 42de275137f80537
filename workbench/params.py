"""Params files: one YAML file drives the whole notebook sequence.

Layout (flat; validated against each notebook's ``parameters`` cell before anything runs)::

    name: default            # results go to outputs/<name>/ (defaults to the file's stem)
    seed: 0                  # a shared key: injected into every notebook that declares it
    families: [mlp-tanh, cnn-tanh]
    "04":                    # optional per-notebook section (by number prefix): only that notebook
      epochs: 30

A key no notebook declares, a section key its notebook does not declare, or a value whose type does not match
the notebook's default is an error that names the key, the notebook(s) and the valid keys.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import math
import reprlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
RESERVED = {"name"}
INJECTED = {"output_dir"}  # set by the runner, never by a params file
MAX_ELEMENTS = 10_000  # per value: lists/mappings beyond this (e.g. YAML alias bombs) are refused
MAX_INT = 2**63 - 1  # integers must fit torch's int64 (seeds, sizes)
_repr = reprlib.Repr()  # bounded repr for error messages (Repr() takes no options before Python 3.12)
_repr.maxstring = _repr.maxother = 80
_repr.maxlist = _repr.maxdict = 5
_repr.maxlevel = 3
_short = _repr.repr


class ParamsError(ValueError):
    """A params file is missing, malformed or does not fit the notebooks."""


@dataclass(frozen=True)
class RunParams:
    name: str
    path: Path
    shared: dict = field(default_factory=dict)
    sections: dict = field(default_factory=dict)

    def for_notebook(self, notebook: Path, declared: dict) -> dict:
        """Parameters to inject into ``notebook``: shared keys it declares plus its own section."""
        out = {k: v for k, v in self.shared.items() if k in declared}
        out.update(self.sections.get(notebook_key(notebook), {}))
        return out

    def digest(self, notebook: Path, declared: dict) -> str:
        blob = json.dumps(self.for_notebook(notebook, declared), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def notebook_key(notebook: Path) -> str:
    """The number prefix that names a notebook in params files: ``04_train.ipynb`` -> ``"04"``."""
    return Path(notebook).name.split("_", 1)[0]


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    nbs = sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not nbs:
        raise ParamsError(f"no notebooks named NN_*.ipynb in {folder}")
    return nbs


@lru_cache(maxsize=32)
def _declared_cached(path: str, mtime: float) -> dict:
    import papermill as pm

    return {name: info for name, info in pm.inspect_notebook(path).items()}


def declared_parameters(notebook: Path) -> dict:
    """``{name: {"default": ..., "inferred_type_name": ...}}`` from the notebook's ``parameters`` cell."""
    notebook = Path(notebook)
    return _declared_cached(str(notebook), notebook.stat().st_mtime)


def _literal(text: str):
    """The Python value of a parameters-cell default (``None``, ``1e-3``, lists...); raw text if not a literal."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _type_name(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _compatible(value, default) -> bool:
    """Does ``value`` from a params file fit a notebook default? None defaults accept anything."""
    want, got = _type_name(default), _type_name(value)
    if want == "None" or got == "None" or want == got:
        return True
    return want == "float" and got == "int"


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(str(key), sorted(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(path, label: str, value) -> None:
    """Refuse values no notebook could mean: NaN/inf, integers beyond int64, and containers with more than
    :data:`MAX_ELEMENTS` elements (counted with repeats, so a YAML alias bomb is caught after that many steps)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_ELEMENTS:
            raise ParamsError(f"{label} in {path} holds more than {MAX_ELEMENTS:,} elements (nested lists or YAML "
                              "aliases); params files hold settings, not data")
        if isinstance(item, float) and not math.isfinite(item):
            raise ParamsError(f"{label} in {path} is {item}; parameters must be finite numbers")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            raise ParamsError(f"{label} in {path} is the integer {_short(item)}, which does not fit in 64 bits")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)


def load_params(path: str | Path, notebooks: list[Path] | None = None) -> RunParams:
    """Read and validate a params file against the notebooks' ``parameters`` cells."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file {path} does not exist; the ones shipped are in params/ "
                          "(default.yaml, smoke.yaml, gpu.yaml, cifar10gs.yaml)")
    if not path.is_file():
        raise ParamsError(f"params file {path} is not a file (a directory?); pass a .yaml file such as "
                          "params/default.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ParamsError(f"params file {path} is not UTF-8 text ({err.reason} at byte {err.start}); "
                          "is it a binary file?") from None
    except OSError as err:
        raise ParamsError(f"params file {path} cannot be read: {err.strerror or err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"params file {path} is not valid YAML: {err}") from None
    except RecursionError:
        raise ParamsError(f"params file {path} is nested too deeply to be a params file") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must be a mapping of parameter names to values, "
                          f"not a {type(raw).__name__}")
    notebooks = list_notebooks() if notebooks is None else notebooks
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    by_key = {notebook_key(nb): nb for nb in notebooks}
    all_keys = set().union(*[set(d) for d in declared.values()]) - INJECTED
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ParamsError(f"'name' in {path} must be a plain folder name, got {_short(name)}")
    shared, sections = {}, {}
    for key, value in raw.items():
        key = str(key)
        if key in RESERVED:
            continue
        if key in by_key:
            nb = by_key[key]
            if not isinstance(value, dict):
                raise ParamsError(f"section {key!r} in {path} must be a mapping of {nb.name}'s parameters")
            valid = set(declared[nb]) - INJECTED
            for sub, sub_value in value.items():
                if not isinstance(sub, str) or sub not in valid:
                    raise ParamsError(
                        f"unknown key {_short(sub)} in section {key!r} of {path}{_suggest(sub, valid)}: notebook "
                        f"{nb.name} declares {sorted(valid)}"
                    )
                _check_value(path, f"{key}.{sub}", sub_value)
                _check_type(path, f"{key}.{sub}", sub_value, {nb: declared[nb]}, sub)
            sections[key] = dict(value)
            continue
        if key in INJECTED:
            raise ParamsError(f"{key!r} in {path} is set by the runner (outputs/<name>/); remove it")
        if key not in all_keys:
            listing = "; ".join(f"{nb.name}: {sorted(set(d) - INJECTED)}" for nb, d in declared.items())
            raise ParamsError(
                f"unknown key {_short(key)} in {path}{_suggest(key, all_keys)}: no notebook declares it. "
                f"Valid keys by notebook -- {listing}"
            )
        _check_value(path, key, value)
        _check_type(path, key, value, declared, key)
        shared[key] = value
    return RunParams(name=name, path=path, shared=shared, sections=sections)


def _check_type(path, label, value, declared: dict, key: str) -> None:
    for nb, params in declared.items():
        if key not in params:
            continue
        default = _literal(params[key]["default"])
        if not _compatible(value, default):
            raise ParamsError(
                f"{label} in {path} is {_type_name(value)} {_short(value)}, but notebook {nb.name} expects "
                f"{_type_name(default)} (its default is {params[key]['default']})"
            )
