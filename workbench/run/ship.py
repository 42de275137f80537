"""Regenerate the shipped optimizers (:mod:`workbench.optimizers`) from a finished run: ``python -m workbench ship
outputs/default``.

For every family of the run and both objectives, :func:`ship` finds the run's ScaleGMN-B metanetwork (the run folder
of notebooks 04-06: scalegmn, the activation's symmetry, bidirectional, the run's seed and L1 weight, trained on the
run's own zoo; :func:`find_run`), measures it and writes ``<family>-<objective>.safetensors`` and ``.json``:

* the held-out gain: :func:`workbench.pipeline.one_shot_gain` on the run's held-out networks
  (``pipeline.test_networks(zoo, eval_networks)``, the set notebooks 04-06 score), with its 95 % interval over
  networks; for L1 optimizers also the L1-norm reduction with its interval;
* a fresh zoo of the training architecture with another seed (networks no metanetwork saw), and fresh zoos of the
  measured :data:`~workbench.training.transfer.VARIANTS` (half and double hidden widths, one hidden layer fewer and one
  more): what decides which other architectures :class:`~workbench.OneShot` takes (:mod:`workbench.training.transfer`).

Nothing is written unless every optimizer was found and measured; each file is written atomically, and the two files
of one optimizer carry a common digest, so a mixed pair is refused on loading.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

from safetensors.torch import save as save_safetensors

from ..training.checkpoints import load_model
from ..errors import ConfigError, WorkbenchError
from ..system.io import atomic_write_bytes, atomic_write_text, read_regular_bytes, sha256_file
from ..nets import NetSpec
from ..optimizers import FOLDER, FORMAT
from ..system.paths import git_revision
from ..pipeline import Recipe, get_data, one_shot_gain, recipe_run_dir, test_networks
from ..pipeline.methods import method_label
from ..measure.score import score
from ..training.transfer import for_architecture, transfer_table, variants
from ..measure.uncertainty import Bootstrap, Interval
from ..zoo import Zoo, ZooError, generate

__all__ = ["ShipError", "ship", "find_run", "run_record", "measure", "fresh_zoo", "TRANSFER_BLOCK"]

#: the markers of the generated transfer table in a markdown page (``ship --docs PAGE``)
TRANSFER_BLOCK = ("<!-- BEGIN TRANSFER (python -m workbench ship --docs) -->", "<!-- END TRANSFER -->")


class ShipError(WorkbenchError, ValueError):
    """A run folder lacks what shipping needs, or does not match the snapshot it is checked against."""


def run_record(run_dir: Path) -> dict:
    """The run's identity from its ``params.json`` (written when the run started): name, commit, the file's digest and
    the values notebook 06 ran with (shared keys, then its section)."""
    path = run_dir / "params.json"
    try:
        data = read_regular_bytes(path)
        recorded = json.loads(data.decode("utf-8"))
        values = {**recorded["shared"], **recorded.get("sections", {}).get("06", {})}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ShipError(f"{path} is missing or unreadable ({type(err).__name__}); ship reads a run folder that "
                        "`python -m workbench run PARAMS` wrote") from None
    return {"name": run_dir.resolve().name, "commit": recorded.get("git_revision", "unknown"),
            "params_sha256": hashlib.sha256(data).hexdigest(), "started": recorded.get("started"),
            "params_file": recorded.get("source"), "values": values}


def find_run(run_dir: Path, zoo: Zoo, values: dict, objective: str) -> Path:
    """The finished ScaleGMN-B run of ``objective`` that notebook 06 used for ``zoo``'s family: the folder its recipe
    (:meth:`workbench.pipeline.Recipe.from_values` of the run's values) names, trained on this very zoo."""
    seed, lam = int(values.get("seed", 0)), float(values.get("lam", 0.0))
    try:
        recipe = Recipe.from_values({"device": "auto", **values})
    except (ConfigError, ValueError, TypeError) as err:
        raise ShipError(f"{run_dir}/params.json holds training settings that make no recipe: {err}") from None
    folder = recipe_run_dir(run_dir, zoo.spec, recipe, method="scalegmn", objective=objective, lam=lam, seed=seed)
    try:
        identity = json.loads(read_regular_bytes(folder / "run.json"))
        finished = (folder / "best.pt").is_file() and (folder / "result.json").is_file()
    except (OSError, ValueError):
        identity, finished = {}, False
    if not finished or identity.get("zoo") != zoo.info.get("generation"):
        what = "no finished run" if not folder.is_dir() else "an unfinished run, or one of another zoo,"
        raise ShipError(f"{run_dir} has {what} of ScaleGMN-B for {zoo.spec.family} ({objective}, seed {seed}, lambda "
                        f"{lam if objective == 'l1' else 0.0}) at {folder.relative_to(run_dir)}, the folder the run's "
                        "settings name; run the notebooks to 06 first")
    return folder


def _interval(interval: Interval) -> dict:
    return {"estimate": float(interval.estimate), "lo": float(interval.lo), "hi": float(interval.hi),
            "level": float(interval.level), "networks": int(interval.networks)}


def measure(model, entries, data, *, lam: float, seed: int = 0) -> dict:
    """The one shot of ``entries`` (a zoo) by ``model``: accuracy gain on trained checkpoints (points, 95 % interval
    over networks; :func:`workbench.pipeline.one_shot_gain`), accuracy before and after, and with ``lam`` > 0 the
    L1-norm reduction with its interval. Entries of another architecture than ``model``'s get the metanetwork
    :func:`~workbench.training.transfer.for_architecture` builds for them (measured here, whatever the rule says)."""
    if entries.spec != model.spec:
        model = for_architecture(model, entries.spec)
    new = model.optimize(entries.spec, entries.params)
    gain = one_shot_gain(entries, data, new, seed=seed)
    before, after = score(entries, data), score(entries, data, new, lam=lam)
    out = {"widths": list(entries.spec.widths), "networks": int(entries.meta["net_id"].nunique()),
           "trained_entries": int(before.trained.sum()), "acc_before": before.value("acc_trained"),
           "acc_after": after.value("acc_trained"), "gain": _interval(gain)}
    if lam > 0:
        boot = Bootstrap(entries.meta["net_id"].to_numpy(), seed=seed)
        out["l1_reduction"] = _interval(after.interval("l1_reduction_trained", boot))
    return out


def fresh_zoo(spec: NetSpec, data, zoo: dict, n_networks: int, seed: int):
    """A zoo of ``spec`` generated like the run's (``zoo``: its generation settings) with another ``seed``."""
    return generate(spec, data, n_networks, epochs=zoo["epochs"], checkpoints=zoo["checkpoints"], seed=seed,
                    batch_size=zoo["batch_size"], progress=False)


def _family_records(run_dir: Path, run: dict, family: str, objectives, fresh_networks: int, log) -> list[tuple]:
    """``(name, state, record)`` of both objectives' optimizers of ``family``."""
    values = run["values"]
    seed, lam = int(values.get("seed", 0)), float(values.get("lam", 0.0))
    try:
        zoo = Zoo.load(run_dir / "zoo" / family)
    except ZooError as err:
        raise ShipError(f"ship needs the run's generated zoo of {family}: {err}") from None
    generation = zoo.info.get("generation") or {}
    data = get_data(values.get("dataset", "digits"), values.get("data_path"), seed)
    test = test_networks(zoo, values.get("eval_networks"))
    fresh = fresh_zoo(zoo.spec, data, generation, fresh_networks, seed + 1)
    others = {name: fresh_zoo(spec, data, generation, fresh_networks, seed + 1)
              for name, spec in variants(zoo.spec).items()}
    out = []
    for objective in objectives:
        folder = find_run(run_dir, zoo, values, objective)
        model = load_model(folder / "best.pt", spec=zoo.spec)
        shot_lam = lam if objective == "l1" else 0.0
        log(f"[workbench] measuring {family} {objective} ({folder.relative_to(run_dir)})")
        result = json.loads(read_regular_bytes(folder / "result.json"))
        record = {
            "format": FORMAT, "name": f"{family}-{objective}", "family": family, "objective": objective,
            "method": method_label("scalegmn", model.bidirectional), "lam": shot_lam, "spec": zoo.spec.to_dict(),
            "metanet": dataclasses.asdict(model.config),
            "run": {**{k: run[k] for k in ("name", "commit", "params_sha256", "started", "params_file")},
                    "folder": str(folder.relative_to(run_dir)), "best_epoch": result.get("best_epoch"),
                    "best_val_loss": result.get("best_val_loss"), "training": result.get("config")},
            "zoo": {"architecture": zoo.spec.describe(), "dataset": zoo.dataset, **generation},
            "held_out": {**measure(model, test, data, lam=shot_lam, seed=seed), "eval_networks":
                         values.get("eval_networks"), "how": "workbench.pipeline.one_shot_gain on "
                         "pipeline.test_networks(zoo, eval_networks) of the run's zoo (trained checkpoints)"},
            "fresh_zoo": {**measure(model, fresh, data, lam=shot_lam, seed=seed), "seed": seed + 1},
            "transfers": [{"variant": name, **measure(model, other, data, lam=shot_lam, seed=seed), "seed": seed + 1}
                          for name, other in others.items()],
        }
        out.append((record["name"], {k: v.detach().float().contiguous() if v.is_floating_point() else v
                                     for k, v in model.state_dict().items()}, record))
    return out


def _check_snapshot(run: dict, snapshot: Path) -> None:
    """The snapshot (``python -m workbench report RUN --snapshot DEST``) must be of this run: the same params.json."""
    params = snapshot / "params.json"
    if not params.is_file() or sha256_file(params) != run["params_sha256"]:
        raise ShipError(f"the snapshot {snapshot} is not of this run (its params.json differs from the run's, "
                        f"sha256 {run['params_sha256'][:12]}); snapshot the run first: python -m workbench report "
                        f"RUN_DIR --snapshot {snapshot}")


def _check_dest(dest: Path) -> list[Path]:
    """``dest`` holds only shipped pairs (and the package's ``__init__.py``); returns those pairs' files."""
    if dest.exists() and not dest.is_dir():
        raise ShipError(f"--dest {dest} is a file; pass a folder")
    files = list(dest.iterdir()) if dest.is_dir() else []
    foreign = [p.name for p in files if p.name not in ("__init__.py", "__pycache__")
               and p.suffix not in (".json", ".safetensors")]
    if foreign:
        raise ShipError(f"--dest {dest} holds files ship does not write ({', '.join(sorted(foreign)[:8])}); pass the "
                        "package folder (the default) or an empty folder")
    return [p for p in files if p.suffix in (".json", ".safetensors")]


def transfer_block(records: list[dict]) -> str:
    """The generated block of docs/oneshot.md: the cross-entropy optimizers' transfer measurements, naming their run."""
    ce = sorted((r for r in records if r["objective"] == "ce"), key=lambda r: r["name"])
    if not ce:
        return ""
    run, fresh = ce[0]["run"], ce[0]["fresh_zoo"]
    return (f"Run `{run['name']}` (commit {run['commit']}, started {run['started']}), measured by `python -m workbench "
            f"ship` at commit {ce[0]['shipped_by']['commit']} ({ce[0]['shipped_by']['date']}); fresh zoos of zoo seed "
            f"{fresh['seed']}, {fresh['networks']} networks each; accuracy on their trained checkpoints, gain with its "
            f"95 % interval over networks.\n\n{transfer_table(ce)}")


def update_docs(page: str | os.PathLike, records: list[dict]) -> Path:
    """Regenerate the block between :data:`TRANSFER_BLOCK`'s markers in ``page`` from ``records``."""
    page = Path(page)
    text = page.read_text()
    begin, end = TRANSFER_BLOCK
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ShipError(f"{page} has no block {begin} ... {end} to regenerate; add the two markers")
    head, rest = text.split(begin)
    return atomic_write_text(page, f"{head}{begin}\n{transfer_block(records)}{end}{rest.split(end, 1)[1]}")


def ship(run_dir: str | os.PathLike, dest: str | os.PathLike = FOLDER, *, snapshot: str | os.PathLike | None = None,
         docs: str | os.PathLike | None = None, fresh_networks: int = 32, log=print) -> list[dict]:
    """Write the shipped optimizers of the finished run ``run_dir`` into ``dest`` (default: the package's folder,
    whose earlier files are replaced); ``snapshot``: refuse unless that snapshot is of this run; ``docs``: also
    regenerate the transfer table of that page (docs/oneshot.md). Returns the records written."""
    run_dir, dest = Path(run_dir), Path(dest)
    run = run_record(run_dir)
    if snapshot is not None:
        _check_snapshot(run, Path(snapshot))
    old = _check_dest(dest)
    values = run["values"]
    objectives = [o for o in values.get("objectives", ["ce", "l1"]) if o in ("ce", "l1")]
    written = []
    for family in values.get("families", []):
        written += _family_records(run_dir, run, family, objectives, fresh_networks, log)
    if not written:
        raise ShipError(f"{run_dir}'s params name no families to ship")
    shipped_by = {"commit": git_revision(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for name, state, record in written:
        blob = save_safetensors(state, metadata={"format": FORMAT, "name": name})
        record = {**record, "weights_sha256": hashlib.sha256(blob).hexdigest(), "shipped_by": shipped_by}
        atomic_write_bytes(dest / f"{name}.safetensors", blob)
        atomic_write_text(dest / f"{name}.json", json.dumps(record, indent=1, allow_nan=False) + "\n")
        l1 = record["held_out"].get("l1_reduction")
        log(f"[workbench] {name}: held-out accuracy gain {_text(record['held_out']['gain'])} points"
            + (f", L1-norm reduction {_text(l1)} %" if l1 else "") + f" -> {dest / name}.*")
    keep = {f"{name}{suffix}" for name, _, _ in written for suffix in (".json", ".safetensors")}
    for path in old:
        if path.name not in keep:  # an optimizer of an earlier run that this run does not have
            path.unlink()
    records = [json.loads((dest / f"{name}.json").read_text()) for name, _, _ in written]
    if docs is not None:
        log(f"[workbench] transfer table regenerated in {update_docs(docs, records)}")
    return records


def _text(interval: dict) -> str:
    return f"{interval['estimate']:+.2f} [{interval['lo']:+.2f}, {interval['hi']:+.2f}]"
