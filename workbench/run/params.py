"""Params files: one YAML file drives the whole notebook sequence.

Layout (flat; validated against each notebook's ``parameters`` cell before anything runs)::

    name: default            # results go to outputs/<name>/ (defaults to the file's stem)
    seed: 0                  # a shared key: injected into every notebook that declares it
    families: [mlp-tanh, cnn-tanh]
    meta_hidden: 16          # a training setting: meta_<field of TrainConfig or its MetanetConfig>
    "04":                    # optional per-notebook section (by number prefix): only that notebook
      meta_epochs: 30

``extends: default.yaml`` starts from another params file (relative to this one's folder): its keys and sections,
overridden by this file's own (a section key by key) -- so a larger study shares the default's recipe by
construction. A key no notebook declares, a section key its notebook does not declare, or a value whose type does not match
the notebook's default is an error that names the key, the notebook(s) and the valid keys. Values are then checked
against their rules (:func:`workbench.run.params_rules.rule_for`: ``n_networks >= 1``, ``meta_lr > 0``, known families,
a device such as "cpu" or "cuda:0" ...) and, per notebook, for what only makes sense together (enough networks for a
train and a validation split; a zoo that fits this machine's memory). A duplicate key, a section number YAML reads as
an integer (``04:`` without quotes) and a file over :data:`~workbench.run.params_file.MAX_FILE_BYTES` are errors too.

The metanetwork's training settings follow one rule: ``meta_<name>`` sets the field ``<name>`` of
:class:`~workbench.training.train_config.TrainConfig` or of its :class:`~workbench.metanet.MetanetConfig`
(``meta_hidden``, ``meta_n_layers``, ``meta_batch_networks``, ...; :meth:`workbench.pipeline.Recipe.from_values` applies
it); ``seed``, ``lam`` and ``device`` are run-wide keys. A ``meta_<name>`` key that no notebook declares as a parameter
of its own (``meta_val_images``, ``meta_grad_clip``, ...) reaches the notebooks through their ``meta_extra`` parameter
(a dict of such keys, :data:`EXTRA_SETTINGS`); a notebook that trains metanetworks without declaring it is an error, so
no notebook silently trains with other settings than the rest. A key renamed by that rule (:data:`RENAMED`) is an error
naming the new key. ``zoo_steps`` (which Small CNN Zoo checkpoints to import) must likewise reach every selected
notebook that reads ``zoo_path``. ``memory_gb`` (:data:`RUN_KEYS`) is the run's memory budget per process (GiB), which
the runner hands to every notebook's kernel as ``WORKBENCH_MEMORY_GB`` (:mod:`workbench.memory`).

Three modules answer "why was my params file refused": this one (the keys: which notebook declares them, of which
type, what must reach which notebook), :mod:`workbench.run.params_file` (the file: its size, its YAML, what it extends)
and :mod:`workbench.run.params_rules` (the values: one rule per key, and :func:`~workbench.run.params_rules.check_flag`
for the command-line flags that set the same settings).
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import ParamsError
from ..memory import physical_memory_bytes
from ..system.paths import REPO_ROOT
from .params_file import read_params_file, shown
from .params_rules import check_extra_setting, check_range, check_value, extra_setting, zoo_bytes

__all__ = ["RunParams", "load_params", "file_values", "notebook_values", "declared_parameters",
           "list_notebooks", "notebook_key", "RENAMED", "NOTEBOOK_DIR", "RESERVED", "INJECTED", "RUN_KEYS",
           "EXTRA_SETTINGS"]

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
RESERVED = {"name", "extends"}
#: run-level keys: read by the runner, never injected into a notebook
RUN_KEYS = {"memory_gb"}
#: the notebook parameter that carries the training settings no notebook declares on its own
EXTRA_SETTINGS = "meta_extra"
INJECTED = {"output_dir"}  # set by the runner, never by a params file
#: keys renamed when the training settings took one rule (``meta_`` + the TrainConfig/MetanetConfig field name):
#: an old params file fails with the new name instead of "unknown key"
RENAMED = {"meta_layers": "meta_n_layers", "meta_val_entries": "meta_val_networks",
           "mlp_meta_epochs": "meta_mlp_epochs", "batch_networks": "meta_batch_networks",
           "batch_images": "meta_batch_images", "bidirectional": "meta_bidirectional"}
MAX_NAME_BYTES = 100  # run names become folder names (and parts of temporary file names)
MIN_SPLIT_NETWORKS = 4  # fewest zoo networks whose split (split_networks) has a train and a validation network


@dataclass(frozen=True)
class RunParams:
    name: str
    path: Path
    shared: dict = field(default_factory=dict)
    sections: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)  # RUN_KEYS set by the file
    extras: frozenset = frozenset()  # shared training settings that no notebook declares

    def extra_settings(self, notebook: Path, declared: dict) -> dict:
        """The training settings ``notebook`` gets through ``meta_extra``: shared ones no notebook declares, and
        those of its own section it does not declare."""
        own = self.sections.get(notebook_key(notebook), {})
        extra = {k: v for k, v in self.shared.items() if k in self.extras}
        extra.update({k: v for k, v in own.items() if k not in declared and extra_setting(k)})
        return extra

    def for_notebook(self, notebook: Path, declared: dict) -> dict:
        """Parameters to inject into ``notebook``: shared keys it declares plus its own section; the training
        settings it has no parameter of its own for go into its ``meta_extra`` (when it declares one)."""
        own = self.sections.get(notebook_key(notebook), {})
        out = {k: v for k, v in self.shared.items() if k in declared}
        out.update({k: v for k, v in own.items() if k in declared})
        extra = self.extra_settings(notebook, declared)
        if extra and EXTRA_SETTINGS in declared:
            out[EXTRA_SETTINGS] = {**(out.get(EXTRA_SETTINGS) or {}), **extra}
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


def load_params(path: str | Path, notebooks: list[Path] | None = None, *,
                selected: list[Path] | None = None) -> RunParams:
    """Read and validate a params file against the notebooks' ``parameters`` cells.

    Every key is checked against all ``notebooks``; the checks that combine several settings of one notebook
    (enough networks for its splits, a zoo that fits in memory) run for the ``selected`` notebooks (default: all),
    so that ``--only 01`` is not refused for a setting only notebook 04 could not use."""
    path = Path(path)
    raw = read_params_file(path)
    notebooks = list_notebooks() if notebooks is None else notebooks
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    by_key = {notebook_key(nb): nb for nb in notebooks}
    all_keys = set().union(*[set(d) for d in declared.values()]) - INJECTED
    name = raw.get("name", path.stem)
    _check_name(path, name, from_key="name" in raw)
    shared, sections, run = {}, {}, {}
    for key, value in raw.items():
        if isinstance(key, int) and not isinstance(key, bool) and f"{key:02d}" in by_key:
            raise ParamsError(f"section {key} in {path} is read by YAML as the integer {key} (a leading 0 does not "
                              f"make it text); quote it: \"{key:02d}\":")
        key = str(key)
        if key in RESERVED:
            continue
        if key in RUN_KEYS:
            check_value(path, key, value)
            check_range(path, key, key, value)
            run[key] = value
            continue
        if key in by_key:
            sections[key] = _check_section(path, key, value, by_key[key], declared[by_key[key]])
        else:
            _check_shared_key(path, key, value, declared, all_keys)
            shared[key] = value
    extras = frozenset(k for k in shared if k not in all_keys)  # only training settings get past the checks
    params = RunParams(name=name, path=path, shared=shared, sections=sections, run=run, extras=extras)
    for nb, params_declared in declared.items():
        if selected is None or nb in selected:
            _check_notebook_values(path, nb, params_declared, params)
    return params


def _check_section(path: Path, key: str, value, nb: Path, declared: dict) -> dict:
    """A notebook's own section (``"04": {...}``): every key one that notebook declares, of its type and range."""
    if not isinstance(value, dict):
        raise ParamsError(f"section {key!r} in {path} must be a mapping of {nb.name}'s parameters")
    valid = set(declared) - INJECTED
    for sub, sub_value in value.items():
        _check_renamed(path, sub, f"section {key!r} of ")
        if isinstance(sub, str) and sub not in valid and extra_setting(sub):
            check_extra_setting(path, f"{key}.{sub}", sub, sub_value)
            continue
        if not isinstance(sub, str) or sub not in valid:
            raise ParamsError(
                f"unknown key {shown(sub)} in section {key!r} of {path}{_suggest(sub, valid)}: notebook "
                f"{nb.name} declares {sorted(valid)}"
            )
        check_value(path, f"{key}.{sub}", sub_value)
        _check_type(path, f"{key}.{sub}", sub_value, {nb: declared}, sub)
        check_range(path, f"{key}.{sub}", sub, sub_value)
    return dict(value)


def _check_shared_key(path: Path, key: str, value, declared: dict, all_keys: set) -> None:
    """A top-level setting: declared by some notebook, not one the runner sets, of the declared type and range."""
    if key in INJECTED:
        raise ParamsError(f"{key!r} in {path} is set by the runner (outputs/<name>/); remove it")
    _check_renamed(path, key)
    if key not in all_keys and extra_setting(key):
        check_extra_setting(path, key, key, value)
        return
    if key not in all_keys:
        listing = "; ".join(f"{nb.name}: {sorted(set(d) - INJECTED)}" for nb, d in declared.items())
        raise ParamsError(
            f"unknown key {shown(key)} in {path}{_suggest(key, all_keys)}: no notebook declares it. "
            f"Valid keys by notebook -- {listing}"
        )
    check_value(path, key, value)
    _check_type(path, key, value, declared, key)
    check_range(path, key, key, value)


def _check_renamed(path, key, where: str = "") -> None:
    if isinstance(key, str) and key in RENAMED:
        raise ParamsError(f"{key!r} in {where}{path} is now called {RENAMED[key]!r} (a training setting's key is "
                          "'meta_' + its TrainConfig/MetanetConfig field name); rename it")


def _check_name(path: Path, name, from_key: bool) -> None:
    """The run name becomes a folder name: plain text, no path separators, no control characters, not hidden."""
    where = f"'name' in {path}" if from_key else f"the run name (the file name's stem) of {path}"
    if not isinstance(name, str) or not name.strip():
        raise ParamsError(f"{where} must be a plain folder name, got {shown(name)}")
    if any(c in name for c in "/\\") or name.startswith(".") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ParamsError(f"{where} must be a plain folder name (no '/', '\\', control characters or NUL bytes, "
                          f"not starting with '.'), got {shown(name)}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ParamsError(f"{where} is {len(name.encode('utf-8'))} bytes long; run names become folder names and "
                          f"are limited to {MAX_NAME_BYTES} bytes (set a shorter 'name:' in the params file)")


def _check_notebook_values(path: Path, nb: Path, declared: dict, params: RunParams) -> None:
    """Checks that need several settings of one notebook (its defaults overlaid with what the file injects)."""
    values = {k: _literal(info["default"]) for k, info in declared.items()}
    values.update(params.for_notebook(nb, declared))
    _check_reaches(path, nb, declared, params)
    if values.get("dataset") == "cifar10-gs" and "data_path" in declared and not values.get("data_path"):
        raise ParamsError(f"dataset in {path} is 'cifar10-gs', which notebook {nb.name} reads from disk: set data_path "
                          "to your copy of the CIFAR-10 python version (nothing is downloaded)")
    if "n_networks" not in declared or not ({"families", "family"} & set(declared)):
        return
    families = values.get("families") or [values.get("family")]
    if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
        return
    if values.get("zoo_path"):  # CNN families come from the Small CNN Zoo on disk, not from n_networks
        families = [f for f in families if not f.startswith("cnn")]
    n = values.get("n_networks")
    if not families or not isinstance(n, int) or isinstance(n, bool):
        return
    if "meta_epochs" in declared and n < MIN_SPLIT_NETWORKS:
        raise ParamsError(f"n_networks in {path} is {n}, but notebook {nb.name} trains metanetworks on the zoo's "
                          f"train split and validates on its val split: it needs n_networks >= {MIN_SPLIT_NETWORKS} "
                          "(half of the networks are test networks, the rest split 80/20)")
    need, family = max((zoo_bytes(f, values, n), f) for f in families)
    have = physical_memory_bytes()
    if have and need > 0.8 * have:
        raise ParamsError(f"n_networks in {path} is {n:,}: generating the {family} zoo of notebook {nb.name} needs "
                          f"about {need / 2**30:,.1f} GiB (parameters, optimizer state, checkpoints, activations), "
                          f"more than this machine's {have / 2**30:,.1f} GiB of memory; use fewer networks")


def _check_reaches(path: Path, nb: Path, declared: dict, params: RunParams) -> None:
    """Settings that must reach every notebook that uses them: training settings without a parameter of their own
    need ``meta_extra`` in every notebook that trains metanetworks, ``zoo_steps`` every notebook that reads
    ``zoo_path`` -- or that notebook would silently train or score on something else than the others."""
    own = params.sections.get(notebook_key(nb), {})
    extra = sorted(params.extra_settings(nb, declared))
    trains = any(k.startswith("meta_") for k in declared)
    if extra and trains and EXTRA_SETTINGS not in declared:
        raise ParamsError(f"{extra[0]} in {path} is a training setting that notebook {nb.name} has no parameter for "
                          f"(neither {extra[0]!r} nor {EXTRA_SETTINGS!r}), so its metanetworks would train without it; "
                          f"add `{EXTRA_SETTINGS} = {{}}` to its parameters cell (Recipe.from_values reads it), or "
                          f"run without that notebook (--only)")
    if params.shared.get("zoo_steps", own.get("zoo_steps")) is not None and "zoo_path" in declared \
            and "zoo_steps" not in declared:
        raise ParamsError(f"zoo_steps in {path} chooses Small CNN Zoo checkpoints, but notebook {nb.name} reads "
                          "zoo_path without a zoo_steps parameter, so it would use the final checkpoints only; add "
                          "`zoo_steps = None` to its parameters cell and pass it to get_zoo, or run without it (--only)")


def _check_type(path, label, value, declared: dict, key: str) -> None:
    for nb, params in declared.items():
        if key not in params:
            continue
        default = _literal(params[key]["default"])
        if not _compatible(value, default):
            raise ParamsError(
                f"{label} in {path} is {_type_name(value)} {shown(value)}, but notebook {nb.name} expects "
                f"{_type_name(default)} (its default is {params[key]['default']})"
            )


def file_values(params_path: str | Path, key: str) -> tuple[RunParams, dict]:
    """What a params file sets for notebook ``key`` (e.g. ``"04"``): its shared keys, then that notebook's section --
    without the notebook's defaults, for code that runs a notebook's step on its own and takes the library's
    defaults for the rest (``python -m workbench train``). The checks that combine settings run for that notebook
    only (as for ``--only``). Returns ``(params, values)``."""
    notebooks = list_notebooks()
    params = load_params(params_path, notebooks, selected=[nb for nb in notebooks if notebook_key(nb) == key])
    return params, {**params.shared, **params.sections.get(key, {})}


def notebook_values(params_path: str | Path, key: str) -> tuple[RunParams, dict]:
    """What notebook ``key`` (e.g. ``"03"``) would run with for a params file: its declared defaults, then the
    file's shared keys it declares and its own section. Returns ``(params, values)``."""
    notebooks = list_notebooks()
    params = load_params(params_path, notebooks)
    nb = next(nb for nb in notebooks if notebook_key(nb) == key)
    declared = declared_parameters(nb)
    values = {k: _literal(v["default"]) for k, v in declared.items()}
    values.update(params.for_notebook(nb, declared))
    return params, values

