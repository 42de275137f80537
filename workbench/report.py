"""Results a reader can trust: every number in the README's results section is generated from a run's files.

``python -m workbench report RUN_DIR --snapshot docs/results/NAME [--readme README.md]``

1. :func:`snapshot` copies the small text artifacts of a finished run (``results.csv``, ``results/*.csv``, the
   params, per-notebook times from the completion markers) and a ``run_info.json`` (date, machine, git revision)
   into ``docs/results/NAME/`` -- a few kilobytes that live in the repository, unlike ``outputs/``;
2. :func:`render` turns such a snapshot into markdown (tables, per-checkpoint gains, verdicts, ablation and
   scaling summaries), every number read from those files;
3. :func:`update_readme` replaces the README block between ``<!-- BEGIN RESULTS NAME -->`` and
   ``<!-- END RESULTS NAME -->`` with the rendered markdown. A test re-renders every snapshot the README names
   and compares, so a hand edit of a number fails the test suite.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import time
from pathlib import Path

import pandas as pd

from .errors import WorkbenchError
from .io import atomic_write_text
from .paths import git_revision
from .results import COLUMNS, markdown_table, to_markdown

__all__ = ["ReportError", "snapshot", "render", "update_readme", "machine_description"]

SNAPSHOT_FILES = ["results.csv", "results/ablation_runs.csv", "results/ablation_verdict.csv", "results/verdicts.csv",
                  "results/scaling.csv", "results/lam_sweep.csv", "results/by_checkpoint.csv", "results/warm_start.csv",
                  "results/sgd_lr_tuning.csv", "results/break_even.csv", "params.json"]


class ReportError(WorkbenchError, ValueError):
    """A run folder or snapshot lacks what a report needs, or the README has no block for it."""


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
    """Copy a finished run's small text artifacts into ``dest`` with ``run_info.json``; returns ``dest``."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / "results.csv").is_file():
        raise ReportError(f"{run_dir} has no results.csv: run the notebook sequence to the end first "
                          "(python -m workbench run PARAMS)")
    markers = sorted((run_dir / "notebooks").glob(".*.done.json"))
    seconds = {}
    for m in markers:
        try:
            seconds[m.name[1:].split(".done.json")[0]] = float(json.loads(m.read_text()).get("seconds", float("nan")))
        except (OSError, ValueError, AttributeError):
            continue
    finished = max((m.stat().st_mtime for m in markers), default=(run_dir / "results.csv").stat().st_mtime)
    try:  # the revision the run executed (recorded by the runner when it started), not the one reporting it now
        revision = json.loads((run_dir / "params.json").read_text()).get("git_revision")
    except (OSError, ValueError, AttributeError):
        revision = None
    info = {"run": run_dir.name, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(finished)),
            "git_revision": revision or git_revision(),
            "machine": machine_description(), "notebook_seconds": seconds,
            "total_minutes": round(sum(seconds.values()) / 60, 1)}
    dest.mkdir(parents=True, exist_ok=True)
    for name in SNAPSHOT_FILES:
        src = run_dir / name
        if src.is_file():
            target = dest / Path(name).name
            shutil.copyfile(src, target)
    atomic_write_text(dest / "run_info.json", json.dumps(info, indent=1))
    return dest


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
    """Replace the README block for ``name`` (default: the snapshot folder's name) with :func:`render`."""
    readme, snapshot_dir = Path(readme), Path(snapshot_dir)
    name = name or snapshot_dir.name
    begin, end = _markers(name)
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ReportError(f"{readme} has no block {begin} ... {end}; add those two lines where the results go")
    block = f"{begin}\n<!-- generated by: python -m workbench report --snapshot {snapshot_dir.as_posix()} -- do not edit -->\n" \
            f"{render(snapshot_dir)}{end}"
    return atomic_write_text(readme, pattern.sub(lambda _: block, text))


def readme_blocks(readme: str | os.PathLike) -> dict[str, str]:
    """``{name: block text}`` of every generated block in the README (for the test that re-renders them)."""
    text = Path(readme).read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- BEGIN RESULTS (\S+) -->\n(.*?)<!-- END RESULTS \1 -->",
                                                        text, re.S)}
