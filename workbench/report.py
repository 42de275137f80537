"""Results a reader can trust: every number in the README's results section is generated from a run's files.

``python -m workbench report RUN_DIR --snapshot docs/results/NAME [--readme README.md]``

1. :func:`snapshot` copies the small text artifacts of a finished run (``results.csv``, ``results/*.csv``, the
   params, per-notebook times from the completion markers) and a ``run_info.json`` (date, machine, git revision)
   into ``docs/results/NAME/`` -- a few kilobytes that live in the repository, unlike ``outputs/``. The snapshot is
   built in a hidden folder beside NAME and renamed into place whole (no stale file of an earlier snapshot stays,
   no copy is left half-written), while no run holds the run folder's lock. NAME must be new, empty, or a snapshot
   (:data:`SNAPSHOT_OUTPUT`: a ``run_info.json`` of the report's own and only the file names a snapshot holds --
   how the snapshots written before the rule existed are recognised too); anything else is refused;
2. :func:`render` turns such a snapshot into markdown (tables, per-checkpoint gains, verdicts, ablation and
   scaling summaries), every number read from those files;
3. :func:`update_readme` replaces the README block between ``<!-- BEGIN RESULTS NAME -->`` and
   ``<!-- END RESULTS NAME -->`` with the rendered markdown, atomically, keeping the file's newline style (the
   block's own), its permission bits and, for a symlinked README, the link (the file it points to is updated). A test re-renders every snapshot the README names
   and compares, so a hand edit of a number fails the test suite.
"""
from __future__ import annotations

import io
import json
import os
import platform
import re
import stat
import time
from pathlib import Path

import pandas as pd

from .errors import WorkbenchError
from .io import atomic_path, atomic_write_text, read_regular_bytes, read_regular_text, run_not_in_use
from .paths import OutputKind, check_not_an_input, check_output_folder, git_revision
from .results import COLUMNS, markdown_table, to_markdown

__all__ = ["ReportError", "snapshot", "render", "update_readme", "machine_description", "SNAPSHOT_OUTPUT"]

SNAPSHOT_FILES = ["results.csv", "results/ablation_runs.csv", "results/ablation_verdict.csv", "results/verdicts.csv",
                  "results/scaling.csv", "results/lam_sweep.csv", "results/by_checkpoint.csv", "results/warm_start.csv",
                  "results/sgd_lr_tuning.csv", "results/break_even.csv", "params.json"]


class ReportError(WorkbenchError, ValueError):
    """A run folder or snapshot lacks what a report needs, or the README has no block for it."""


def _is_run_info(info) -> bool:
    return isinstance(info, dict) and all(k in info for k in ("run", "finished", "machine", "notebook_seconds"))


RUN_INFO = "run_info.json"
#: what a snapshot folder holds: run_info.json (its manifest) and the copied files, by their names
SNAPSHOT_OUTPUT = OutputKind("report --snapshot", RUN_INFO,
                             frozenset({RUN_INFO, *(Path(name).name for name in SNAPSHOT_FILES)}), _is_run_info)


def machine_description() -> dict:
    """What the numbers were measured on: CPU model and cores, memory, torch and CUDA device when present."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "os": platform.platform(terse=True)}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def snapshot(run_dir: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a finished run's small text artifacts into ``dest`` with ``run_info.json``; returns ``dest``.

    ``dest`` is replaced whole (built beside it, renamed into place) and only if it is new, empty or a snapshot
    (:data:`SNAPSHOT_OUTPUT`); never the run folder, a folder holding it or one inside it. Refused while a run
    holds the run folder's lock, and when a table does not read back as CSV."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a run folder (no such directory); pass outputs/<name>")
    if not os.path.lexists(run_dir / "results.csv"):
        raise ReportError(f"{run_dir} has no results.csv: run the notebook sequence to the end first "
                          "(python -m workbench run PARAMS)")
    check_not_an_input(dest, {"run folder": run_dir}, flag="--snapshot")
    check_output_folder(dest, SNAPSHOT_OUTPUT, flag="--snapshot")
    with run_not_in_use(run_dir):
        files = _snapshot_files(run_dir)
        info = _run_info(run_dir)
        try:
            with atomic_path(dest) as tmp:
                tmp.mkdir()
                for name, data in files.items():
                    (tmp / name).write_bytes(data)
                (tmp / RUN_INFO).write_text(json.dumps(info, indent=1))
                check_output_folder(dest, SNAPSHOT_OUTPUT, flag="--snapshot")  # again, just before the rename
        except OSError as err:
            raise ReportError(f"cannot write the snapshot {dest}: {err.strerror or err}; nothing was changed there "
                              "(a full disk? a read-only folder?)") from None
    return dest


def _snapshot_files(run_dir: Path) -> dict[str, bytes]:
    """``{name in the snapshot: bytes}`` of the run's :data:`SNAPSHOT_FILES` that exist; each a regular file,
    each table a CSV that reads back, ``results.csv`` holding rows with family and method."""
    files = {}
    for name in SNAPSHOT_FILES:
        src = run_dir / name
        if not os.path.lexists(src):
            continue
        try:
            data = read_regular_bytes(src)
            if name.endswith(".csv"):
                table = pd.read_csv(io.BytesIO(data))
            else:
                json.loads(data.decode("utf-8"))
        except OSError as err:
            raise ReportError(f"cannot read {src}: {err.strerror or err}") from None
        except (ValueError, RecursionError) as err:  # pandas' EmptyDataError and ParserError, not UTF-8, not JSON
            raise ReportError(f"{src} does not read back ({type(err).__name__}: {str(err)[:200]}); rerun the "
                              "notebook that writes it (python -m workbench run PARAMS --resume)") from None
        if name == "results.csv" and (table.empty or not {"family", "method"} <= set(table.columns)):
            raise ReportError(f"{src} holds no results (no rows with 'family' and 'method'); rerun notebook 06 "
                              "(python -m workbench run PARAMS --resume)")
        files[Path(name).name] = data
    return files


def _run_info(run_dir: Path) -> dict:
    """run_info.json: the run's name, when its last notebook finished, the revision it ran at, the machine and
    the notebooks' times (from their completion markers; unreadable ones are skipped)."""
    seconds, finished = {}, []
    for m in sorted((run_dir / "notebooks").glob(".*.done.json")):
        try:
            seconds[m.name[1:].split(".done.json")[0]] = float(json.loads(read_regular_text(m)).get("seconds",
                                                                                                 float("nan")))
            finished.append(m.stat().st_mtime)
        except (OSError, ValueError, AttributeError, TypeError, RecursionError):
            continue
    try:  # the revision the run executed (recorded by the runner when it started), not the one reporting it now
        revision = json.loads(read_regular_text(run_dir / "params.json")).get("git_revision")
    except (OSError, ValueError, AttributeError, RecursionError):
        revision = None
    last = max(finished, default=(run_dir / "results.csv").stat().st_mtime)
    return {"run": run_dir.name, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last)),
            "git_revision": revision or git_revision(), "machine": machine_description(),
            "notebook_seconds": seconds, "total_minutes": round(sum(seconds.values()) / 60, 1)}


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / name
    return pd.read_csv(path) if path.is_file() else None


def render(snapshot_dir: str | os.PathLike) -> str:
    """Markdown for a snapshot folder (:func:`snapshot`); every number comes from its files."""
    folder = Path(snapshot_dir)
    info_file = folder / "run_info.json"
    if not info_file.is_file() or not (folder / "results.csv").is_file():
        raise ReportError(f"{folder} is not a results snapshot (needs run_info.json and results.csv); make one with "
                          "python -m workbench report RUN_DIR --snapshot DEST")
    info = json.loads(info_file.read_text())
    params = json.loads((folder / "params.json").read_text()) if (folder / "params.json").is_file() else {}
    m = info.get("machine", {})
    machine = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores" + (f", {m['gpu']}" if m.get("gpu") else ", no GPU")
    times = ", ".join(f"{k.split('_')[0]}: {v:.0f} s" for k, v in sorted(info.get("notebook_seconds", {}).items()))
    lines = [f"Run `{info.get('run')}` (params `{params.get('source', '?')}`), finished {info.get('finished')}, git "
             f"{info.get('git_revision')}, on {machine}, torch {m.get('torch', '?')}: "
             f"{info.get('total_minutes', '?')} minutes in notebooks ({times}).", ""]
    verdicts = _read(folder, "verdicts.csv")
    if verdicts is not None and len(verdicts):
        lines += ["**Targets and the poster's claims, judged by the run** (each threshold stated):", ""]
        shown = verdicts.assign(value=verdicts["value"].round(2))
        lines += [markdown_table(shown[["family", "claim", "value", "threshold", "holds"]]), ""]
    by_ckpt = _read(folder, "by_checkpoint.csv")
    if by_ckpt is not None and len(by_ckpt):
        lines += ["**One-shot gain (CE, ScaleGMN-B) by checkpoint epoch, held-out networks** (accuracy in %):", ""]
        lines += [markdown_table(by_ckpt[["family", "checkpoint", "entries", "before", "after", "gain"]]), ""]
    table = pd.read_csv(folder / "results.csv")
    for family, frame in table.groupby("family", sort=False):
        # reindex: a snapshot written before a column existed shows it as not measured ("-")
        lines += [to_markdown(frame.reindex(columns=COLUMNS).reset_index(drop=True), title=None).rstrip("\n")]
        lines[-1] = f"*{family}*\n\n" + lines[-1]
        lines.append("")
    lines += _peer_lines(table)
    lines += _warm_start_lines(folder)
    ablation = _read(folder, "ablation_verdict.csv")
    if ablation is not None and len(ablation):
        lines += ["**Ablation** (ScaleGMN vs each symmetry-broken model, on each objective's own metric; effect > 0 "
                  "means the equivariant model is better):", ""]
        cols = ["family", "objective", "metric", "other_method", "scalegmn", "other", "effect", "margin", "outcome"]
        lines += [markdown_table(ablation[cols], digits=3), ""]
    scaling = _read(folder, "scaling.csv")
    if scaling is not None and len(scaling):
        agg = (scaling.groupby(["family", "train_networks"])
               .agg(seeds=("seed", "count"), steps=("steps", "mean"), gain_trained=("gain_trained", "mean"),
                    gain_trained_min=("gain_trained", "min"), gain_trained_max=("gain_trained", "max"),
                    gain_all=("gain_all", "mean")).reset_index())
        lines += ["**Scaling study** (held-out gain in points vs training networks, equal steps per size):", ""]
        lines += [markdown_table(agg), ""]
    sweep = _read(folder, "lam_sweep.csv")
    if sweep is not None and len(sweep):
        chosen = sweep[sweep["chosen"].astype(str) == "True"]
        if len(chosen):
            c = chosen.iloc[0]
            lines += [f"**Lambda sweep** (validation networks): chosen lam = {c['lam']:g} (accuracy on trained "
                      f"checkpoints {c['acc_trained']:.1f}%, L1-norm reduction {c['l1_reduction']:.1f}%).", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _peer_lines(table: pd.DataFrame, ours: str = "ScaleGMN-B", peer: str = "NFN (perm. only)") -> list[str]:
    """ScaleGMN-B against the peer metanetwork, per family, on each objective's own metric (from results.csv)."""
    rows = []
    for family, frame in table.groupby("family", sort=False):
        t = frame.set_index("method")
        if ours not in t.index or peer not in t.index:
            continue
        a, b = t.loc[ours], t.loc[peer]
        rows.append({"family": family, f"CE acc. trained, {ours}": a["ce_avg_acc_trained"],
                     f"CE acc. trained, {peer}": b["ce_avg_acc_trained"],
                     "CE difference (points)": a["ce_avg_acc_trained"] - b["ce_avg_acc_trained"],
                     f"L1 test loss, {ours}": a["l1_test_loss"], f"L1 test loss, {peer}": b["l1_test_loss"],
                     "L1 difference": a["l1_test_loss"] - b["l1_test_loss"]})
    if not rows:
        return []
    return [f"**{ours} vs {peer}** (held-out networks; CE: accuracy on trained checkpoints, higher is better; L1: "
            "test loss CE + lambda L1, lower is better; one seed each):", "",
            markdown_table(pd.DataFrame(rows), digits=3), ""]


def _warm_start_lines(folder: Path) -> list[str]:
    """The tuned SGD learning rates, the warm start after its last SGD epoch and the break-even per family."""
    lines = []
    tuning = _read(folder, "sgd_lr_tuning.csv")
    if tuning is not None and len(tuning):
        chosen = tuning[tuning["chosen"].astype(str) == "True"]
        grid = ", ".join(f"{v:g}" for v in sorted(tuning["lr"].unique()))
        lines += [f"**SGD learning rate**, tuned per family and objective on validation networks (grid {grid}; "
                  f"validation images): " + "; ".join(f"{r['family']} {r['objective'].upper()} {r['lr']:g}"
                                                     for _, r in chosen.iterrows()) + ".", ""]
    curves = _read(folder, "warm_start.csv")
    if curves is not None and len(curves):
        last = curves[curves["epoch"] == curves["epoch"].max()]
        wide = last.pivot_table(index="family", columns="start", values="acc_mean", sort=False).reset_index()
        wide.columns.name = None
        lines += [f"**Warm start**: held-out test accuracy (%) after {int(last['epoch'].iloc[0])} SGD epochs from each "
                  "start (tuned or fixed learning rate):", "", markdown_table(wide, digits=1), ""]
    breakeven = _read(folder, "break_even.csv")
    if breakeven is not None and len(breakeven):
        rows = []
        for family, sub in breakeven.groupby("family", sort=False):
            match = sub[sub["sgd_acc"] >= sub["one_shot_acc"]].sort_values("sgd_s_per_net")
            ref = match.iloc[0] if len(match) else sub.sort_values("sgd_s_per_net").iloc[-1]
            rows.append({"family": family, "one shot": ref["method"], "training (s)": ref["train_seconds"],
                         "one shot (s/network)": ref["one_shot_s_per_net"], "versus": ref["versus"],
                         "reaches one-shot accuracy": bool(len(match)), "SGD (s/network)": ref["sgd_s_per_net"],
                         "break-even networks": ref["break_even_networks"]})
        lines += ["**Amortization break-even** (networks from which training + one shot costs less than SGD; against "
                  "the cheapest SGD budget that reaches the one-shot accuracy, else the largest):", "",
                  markdown_table(pd.DataFrame(rows), digits=4), ""]
    return lines


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN RESULTS {name} -->", f"<!-- END RESULTS {name} -->"


def update_readme(readme: str | os.PathLike, snapshot_dir: str | os.PathLike, name: str | None = None) -> Path:
    """Replace the README block for ``name`` (default: the snapshot folder's name) with :func:`render`, keeping
    the file's newline style, its permission bits and its symlink (see the module docstring)."""
    readme, snapshot_dir = Path(readme), Path(snapshot_dir)
    name = name or snapshot_dir.name
    begin, end = _markers(name)
    target = Path(os.path.realpath(readme))  # a symlinked README: update the file it points to, keep the link
    try:
        raw, mode = read_regular_bytes(target), stat.S_IMODE(os.stat(target).st_mode)
    except OSError as err:
        raise ReportError(f"cannot read {readme}: {err.strerror or err}; pass the README that holds the block") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ReportError(f"{readme} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    found = pattern.search(text)
    if not found:
        raise ReportError(f"{readme} has no block {begin} ... {end}; add those two lines where the results go")
    newline = "\r\n" if text.startswith("\r\n", found.start() + len(begin)) else "\n"  # the block's own style
    block = f"{begin}\n<!-- generated by: python -m workbench report --snapshot {snapshot_dir.as_posix()} -- do not edit -->\n" \
            f"{render(snapshot_dir)}{end}".replace("\n", newline)
    try:
        atomic_write_text(target, pattern.sub(lambda _: block, text), mode=mode)
    except OSError as err:
        raise ReportError(f"cannot write {readme}: {err.strerror or err}; it was left as it was") from None
    return readme


def readme_blocks(readme: str | os.PathLike) -> dict[str, str]:
    """``{name: block text}`` of every generated block in the README (for the test that re-renders them)."""
    text = Path(readme).read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- BEGIN RESULTS (\S+) -->\n(.*?)<!-- END RESULTS \1 -->",
                                                        text, re.S)}
