"""Notebook 06's files and summaries: every family's results written once, read back by the report and the index.

:func:`save_family_results` writes, under ``output_dir``: ``results.md`` / ``results.csv`` (the tables, with
intervals), and in ``results/``: ``verdicts.csv``, ``matched_compute.csv``, ``warm_start.csv``, ``sgd_curves.csv``,
``by_checkpoint.csv`` and ``sgd_lr_tuning.csv`` -- each with a ``family`` column. :func:`stacked` joins one
frame of every family.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..system.io import atomic_write_text
from ..reporting.results import write_results
from .table import FamilyResults

__all__ = ["RESULT_FILES", "save_family_results", "stacked"]

#: the frames of :class:`FamilyResults` saved under ``results/`` (attribute -> file name)
RESULT_FILES = {"verdicts": "verdicts.csv", "matched": "matched_compute.csv", "warm": "warm_start.csv",
                "curves": "sgd_curves.csv", "by_checkpoint": "by_checkpoint.csv", "lr_tuning": "sgd_lr_tuning.csv"}


def stacked(measured: dict[str, FamilyResults], name: str) -> pd.DataFrame:
    """One frame of every family's ``name`` (an attribute of :class:`FamilyResults`), with a ``family`` column."""
    parts = [getattr(r, name).assign(family=f) for f, r in measured.items() if len(getattr(r, name))]
    if not parts:
        return pd.DataFrame(columns=["family"])
    frame = pd.concat(parts, ignore_index=True)
    return frame[["family", *[c for c in frame.columns if c != "family"]]]


def save_family_results(output_dir: str | os.PathLike, measured: dict[str, FamilyResults], *,
                        workers: int) -> dict[str, Path]:
    """Write every file of notebook 06 (atomically) and return their paths by name."""
    out = Path(output_dir)
    paths = write_results({f: r.table for f, r in measured.items()}, out, extra_md=_how_measured(measured, workers))
    (out / "results").mkdir(exist_ok=True)
    for name, file in RESULT_FILES.items():
        paths[name] = atomic_write_text(out / "results" / file, stacked(measured, name).to_csv(index=False))
    return paths


def _how_measured(measured: dict[str, FamilyResults], workers: int) -> str:
    """The notes under the tables: how times and rates were measured (generated, every number from the run)."""
    parallel = ("one family at a time" if workers <= 1 or len(measured) <= 1
                else f"up to {min(workers, len(measured))} families at a time, one per worker process")
    rates = "; ".join(f"{f} CE {r.sgd_lr['ce']:g}, L1 {r.sgd_lr['l1']:g}" for f, r in measured.items())
    tuned = all(r.lr_tuned for r in measured.values())
    steps = ", ".join(f"{f} {r.seconds_per_step:.3g} s" for f, r in measured.items())
    sequential = ", ".join(f"{f} {r.sgd_sequential_s_per_epoch:.3g} s" for f, r in measured.items())
    rate_text = (f"Rows \"SGD (k epochs)\" use the rate chosen per family and objective on validation networks: {rates}. "
                 "\"Fixed-lr\" rows use the fixed control rate; rows \"<one shot> + SGD\" use the rate chosen on "
                 "validation networks for that start." if tuned else
                 f"No learning-rate grid was given: every SGD row uses the fixed rate ({rates}); nothing was tuned.")
    return ("\n## How it was measured\nEvery number is a mean over the held-out networks' entries (one entry = one "
            "checkpoint of one network); brackets give the 95 % interval over held-out networks (all checkpoints of a "
            "network resampled together) and metanet seeds (the `seeds` column). Times are wall-clock seconds per "
            f"network on this machine, {parallel}. One-shot rows: one batched forward pass over all held-out networks "
            "/ number of networks. SGD rows: one vectorised run over all networks / number of networks; one SGD step "
            f"costs per network: {steps}; one network at a time, one epoch costs: {sequential}.\n\n"
            f"## SGD learning rates\n{rate_text}\n")
