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
import re
import stat
import time
from pathlib import Path

import pandas as pd

from ..errors import WorkbenchError
from .findings import findings_markdown, run_line
from ..system.io import atomic_path, atomic_write_text, read_regular_bytes, read_regular_text, run_not_in_use
from ..system.machine import machine_description
from ..system.paths import OutputKind, check_not_an_input, check_output_folder, git_revision
from .results import COLUMNS, markdown_table, matched_summary, to_markdown, warm_summary

__all__ = ["ReportError", "snapshot", "render", "update_readme", "update_blocks", "readme_blocks", "SNAPSHOT_OUTPUT",
           "BLOCKS"]

SNAPSHOT_FILES = ["results.csv", "results/ablation_runs.csv", "results/ablation_verdict.csv",
                  "results/ablation_contrast.csv", "results/verdicts.csv", "results/scaling.csv", "results/lam_sweep.csv",
                  "results/by_checkpoint.csv", "results/matched_compute.csv", "results/warm_start.csv",
                  "results/sgd_lr_tuning.csv", "params.json"]


class ReportError(WorkbenchError, ValueError):
    """A run folder or snapshot lacks what a report needs, or the README has no block for it."""


def _is_run_info(info) -> bool:
    return isinstance(info, dict) and all(k in info for k in ("run", "finished", "machine", "notebook_seconds"))


RUN_INFO = "run_info.json"
#: what a snapshot folder holds: run_info.json (its manifest) and the copied files, by their names
#: files that snapshots of earlier versions held (still recognised as a snapshot's own, so those are replaceable)
LEGACY_SNAPSHOT_FILES = ("break_even.csv",)
SNAPSHOT_OUTPUT = OutputKind("report --snapshot", RUN_INFO,
                             frozenset({RUN_INFO, *LEGACY_SNAPSHOT_FILES, *(Path(name).name for name in SNAPSHOT_FILES)}),
                             _is_run_info)


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
    try:  # the revision and machine the run executed on (recorded by the runner when it started), not this one's
        recorded = json.loads(read_regular_text(run_dir / "params.json"))
        revision, machine = recorded.get("git_revision"), recorded.get("machine")
    except (OSError, ValueError, AttributeError, RecursionError):
        revision = machine = None
    last = max(finished, default=(run_dir / "results.csv").stat().st_mtime)
    return {"run": run_dir.name, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last)),
            "git_revision": revision or git_revision(), "machine": machine or machine_description(),
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
    times = ", ".join(f"{k.split('_')[0]}: {v:.0f} s" for k, v in sorted(info.get("notebook_seconds", {}).items()))
    lines = [f"From {run_line(folder)}: {info.get('total_minutes', '?')} minutes in notebooks ({times}).", "",
             "Brackets are 95 % intervals over held-out networks (all checkpoints of a network resampled together) "
             "and metanet seeds; a verdict *holds* or *fails* only when its whole interval lies on one side of the "
             "threshold, else it is *inconclusive*.", ""]
    verdicts = _read(folder, "verdicts.csv")
    if verdicts is not None and len(verdicts):
        shown = pd.DataFrame({"family": verdicts["family"], "claim": verdicts["text"],
                              "value [95 % interval]": [_interval_text(r) for _, r in verdicts.iterrows()],
                              "threshold": [f"{o} {t:g}" for o, t in zip(verdicts["op"], verdicts["threshold"])],
                              "outcome": verdicts["outcome"]})
        lines += ["**Targets and the poster's claims, judged by the run:**", "", markdown_table(shown), ""]
    by_ckpt = _read(folder, "by_checkpoint.csv")
    if by_ckpt is not None and len(by_ckpt):
        lines += ["**One-shot gain (CE, ScaleGMN-B, mean over its seeds) by checkpoint epoch, held-out networks** "
                  "(accuracy in %):", ""]
        lines += [markdown_table(by_ckpt[["family", "checkpoint", "entries", "before", "after", "gain"]]), ""]
    lines += _matched_lines(folder)
    table = pd.read_csv(folder / "results.csv")
    for family, frame in table.groupby("family", sort=False):
        body = to_markdown(frame[COLUMNS].reset_index(drop=True), title=None).rstrip("\n")
        lines += [f"*{family}*\n\n" + body, ""]
    lines += _ablation_lines(folder)
    lines += _study_lines(folder)
    return "\n".join(lines).rstrip("\n") + "\n"


def _interval_text(row) -> str:
    return f"{row['value']:.3g} [{row['lo']:.3g}, {row['hi']:.3g}]"


def _matched_lines(folder: Path) -> list[str]:
    """Matched compute, the warm start and the tuned learning rates."""
    lines = []
    matched = _read(folder, "matched_compute.csv")
    if matched is not None and len(matched):
        lines += ["**Matched compute**: SGD from the initial networks, step by step, until it reaches each one shot's "
                  "accuracy on trained checkpoints (rate chosen on validation networks); cost ratio > 1 means the one "
                  "shot is cheaper at equal accuracy; break-even: networks from which metanet training + one shots "
                  "cost less than SGD at equal accuracy (\"never\" when SGD is cheaper per network):", "",
                  markdown_table(matched_summary(matched)), ""]
    warm = _read(folder, "warm_start.csv")
    if warm is not None and len(warm):
        lines += ["**Warm start**: SGD from the one shot vs from the initial networks, each start at the rate chosen "
                  "for it on validation networks, held-out accuracy on trained checkpoints:", "",
                  markdown_table(warm_summary(warm)), ""]
    tuning = _read(folder, "sgd_lr_tuning.csv")
    if tuning is not None and len(tuning):
        grid = ", ".join(f"{v:g}" for v in sorted(tuning["lr"].unique()))
        ce = tuning[tuning.get("chosen_ce", pd.Series(False, index=tuning.index)).astype(str) == "True"]
        l1 = tuning[tuning.get("chosen_l1", pd.Series(False, index=tuning.index)).astype(str) == "True"]
        chosen = [f"{r['family']} CE {r['lr']:g}" for _, r in ce.iterrows()]
        chosen += [f"{r['family']} L1 {r['lr']:g}" for _, r in l1.iterrows()]
        lines += [f"**SGD learning rate of the \"SGD (k epochs)\" rows**, chosen per family and objective on "
                  f"validation networks (grid {grid}): " + "; ".join(chosen) + ".", ""]
    return lines


def _ablation_lines(folder: Path) -> list[str]:
    lines = []
    ablation = _read(folder, "ablation_verdict.csv")
    if ablation is not None and len(ablation):
        shown = pd.DataFrame({
            "family": ablation["family"], "objective": ablation["objective"], "metric": ablation["metric"],
            "versus": ablation["other_method"], "ScaleGMN": ablation["scalegmn"].round(3),
            "other": ablation["other"].round(3),
            "effect [95 % interval]": [f"{r['effect']:+.3f} [{r['effect_lo']:+.3f}, {r['effect_hi']:+.3f}]"
                                       for _, r in ablation.iterrows()],
            "seeds": ablation["seeds"], "outcome": ablation["outcome"]})
        lines += ["**Ablation** (ScaleGMN vs each symmetry-broken model on each objective's own metric; effect > 0 "
                  "means the equivariant model is better; paired over the held-out networks, seeds resampled per "
                  "method):", "", markdown_table(shown), ""]
    contrast = _read(folder, "ablation_contrast.csv")
    if contrast is not None and len(contrast):
        lines += [f"Effect of symmetry vs the plain GMN-B, MLP minus CNN families ({r['objective']}): "
                  f"{r['difference']:+.3f} [{r['difference_lo']:+.3f}, {r['difference_hi']:+.3f}] -> {r['outcome']} "
                  "(the poster: larger for MLPs)." for _, r in contrast.iterrows()] + [""]
    return lines


def _study_lines(folder: Path) -> list[str]:
    """The scaling study and the lambda sweep (notebook 07)."""
    lines = []
    scaling = _read(folder, "scaling.csv")
    if scaling is not None and len(scaling):
        agg = (scaling.groupby(["family", "train_networks"])
               .agg(seeds=("seed", "count"), steps=("steps", "mean"), gain_trained=("gain_trained", "mean"),
                    gain_trained_min=("gain_trained", "min"), gain_trained_max=("gain_trained", "max"),
                    gain_all=("gain_all", "mean")).reset_index())
        low, high = float(agg["steps"].min()), float(agg["steps"].max())
        # every size trains whole epochs of at least the requested steps, so the larger sizes may get more steps
        extra = (f", so the steps run from {low:.0f} to {high:.0f} and a larger size's gain may include up to "
                 f"{100 * (high / low - 1):.0f} % more steps" if high > low else "")
        lines += ["**Scaling study** (held-out gain in points vs training networks; every size trains whole epochs of "
                  f"at least the same number of steps{extra}; min and max over seeds):", ""]
        lines += [markdown_table(agg), ""]
    sweep = _read(folder, "lam_sweep.csv")
    if sweep is not None and len(sweep):
        chosen = sweep[sweep["chosen"].astype(str) == "True"]
        if len(chosen):
            c = chosen.iloc[0]
            lines += [f"**Lambda sweep** (validation networks): chosen lam = {c['lam']:g} (accuracy on trained "
                      f"checkpoints {c['acc_trained']:.1f}%, L1-norm reduction {c['l1_reduction']:.1f}%).", ""]
    return lines


#: the kinds of generated blocks: the full results of a snapshot, and its findings (workbench.reporting.findings)
BLOCKS = {"RESULTS": render, "FINDINGS": findings_markdown}


def _markers(name: str, kind: str = "RESULTS") -> tuple[str, str]:
    return f"<!-- BEGIN {kind} {name} -->", f"<!-- END {kind} {name} -->"


def update_readme(readme: str | os.PathLike, snapshot_dir: str | os.PathLike, name: str | None = None,
                  kind: str = "RESULTS") -> Path:
    """Replace the block ``kind`` (``"RESULTS"``: :func:`render`, ``"FINDINGS"``:
    :func:`~workbench.reporting.findings.findings_markdown`) for ``name`` (default: the snapshot folder's name) in
    ``readme`` (any markdown file: the README, docs/results.md), keeping the file's newline style, its permission bits
    and its symlink (see the module docstring)."""
    if kind not in BLOCKS:
        raise ReportError(f"unknown block kind {kind!r}; expected one of {sorted(BLOCKS)}")
    readme, snapshot_dir = Path(readme), Path(snapshot_dir)
    name = name or snapshot_dir.name
    begin, end = _markers(name, kind)
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
            f"{BLOCKS[kind](snapshot_dir)}{end}".replace("\n", newline)
    try:
        atomic_write_text(target, pattern.sub(lambda _: block, text), mode=mode)
    except OSError as err:
        raise ReportError(f"cannot write {readme}: {err.strerror or err}; it was left as it was") from None
    return readme


def update_blocks(page: str | os.PathLike, snapshot_dir: str | os.PathLike) -> list[str]:
    """Regenerate every kind of block (:data:`BLOCKS`) that ``page`` holds for the snapshot's name; returns the kinds
    updated. A page with no block for that name is an error naming the markers to add."""
    page, name = Path(page), Path(snapshot_dir).name
    try:
        text = read_regular_text(page)
    except OSError as err:
        raise ReportError(f"cannot read {page}: {err.strerror or err}; pass the markdown file that holds the blocks") \
            from None
    except UnicodeDecodeError as err:
        raise ReportError(f"{page} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    kinds = [kind for kind in BLOCKS if _markers(name, kind)[0] in text]
    if not kinds:
        raise ReportError(f"{page} has no block for {name}; add <!-- BEGIN RESULTS {name} --> and <!-- END RESULTS "
                          f"{name} --> (or FINDINGS) where the generated text goes")
    for kind in kinds:
        update_readme(page, snapshot_dir, kind=kind)
    return kinds


def readme_blocks(readme: str | os.PathLike, kind: str = "RESULTS") -> dict[str, str]:
    """``{name: block text}`` of every generated block of ``kind`` in a markdown file (for the test that re-renders
    them)."""
    text = Path(readme).read_text(encoding="utf-8")
    pattern = rf"<!-- BEGIN {kind} (\S+) -->\n(.*?)<!-- END {kind} \1 -->"
    return {m.group(1): m.group(2) for m in re.finditer(pattern, text, re.S)}
