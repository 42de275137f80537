"""The findings of a run, written from its results files: a headline table per family and sentences, each number
with its 95 % interval and each claim with its outcome -- nothing typed by hand.

:func:`findings_markdown` reads a results snapshot (:func:`workbench.reporting.report.snapshot`: ``verdicts.csv``,
``matched_compute.csv``, ``warm_start.csv``, ``ablation_verdict.csv``, ``run_info.json``) and returns the markdown
the README shows between ``<!-- BEGIN FINDINGS name -->`` and ``<!-- END FINDINGS name -->``. A test re-renders it
and fails when the README's text and the run disagree. Where a number comes out against the method, the sentence
says so: an honest negative result is a result.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

__all__ = ["headline_table", "finding_sentences", "findings_markdown", "run_line", "OVERVIEW_COLUMNS",
           "verdict_overview", "claim_tallies"]

_OUTCOME_WORD = {"holds": "holds", "fails": "fails", "inconclusive": "inconclusive"}


def _read(folder: Path, name: str) -> pd.DataFrame:
    path = folder / name
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def _num(v: float, digits: int = 1, sign: bool = False) -> str:
    if v != v:
        return "n/a"
    if math.isinf(v):
        return "never" if v > 0 else "-inf"
    return f"{v:+,.{digits}f}" if sign else f"{v:,.{digits}f}"


def _cell(value: float, lo: float, hi: float, digits: int = 1, sign: bool = False) -> str:
    return f"{_num(value, digits, sign)} [{_num(lo, digits, sign)}, {_num(hi, digits, sign)}]"


def _verdict_cell(verdicts: pd.DataFrame, family: str, claim: str, digits: int = 1, sign: bool = False) -> str:
    row = verdicts[(verdicts["family"] == family) & (verdicts["claim"] == claim)]
    if row.empty:
        return "-"
    r = row.iloc[0]
    return (f"{_cell(r['value'], r['lo'], r['hi'], digits, sign)}: {_OUTCOME_WORD[r['outcome']]} "
            f"({r['op']} {r['threshold']:g})")


def run_line(folder: Path) -> str:
    """``run `default` (params/default.yaml), 2026-12-06 03:10 UTC, git abc1234, AMD EPYC (AVX512+bf16), 2 cores``."""
    info = json.loads((folder / "run_info.json").read_text()) if (folder / "run_info.json").is_file() else {}
    params = json.loads((folder / "params.json").read_text()) if (folder / "params.json").is_file() else {}
    m = info.get("machine", {})
    cpu = f"{m.get('cpu', '?')} ({m.get('cpu_capability', 'capability not recorded')}), {m.get('cores', '?')} cores"
    return (f"run `{info.get('run', '?')}` (`{params.get('source', '?')}`), finished {info.get('finished', '?')}, git "
            f"{info.get('git_revision', '?')}, {cpu}" + (f", {m['gpu']}" if m.get("gpu") else ", no GPU")
            + f", torch {m.get('torch', '?')}")


def headline_table(folder: str | os.PathLike) -> pd.DataFrame:
    """One row per family: the CE one shot's gain, SGD's cost at the one shot's accuracy, the warm start after one
    epoch, the ablation against the symmetry-broken GMN-B (CE), and the L1 one shot's reduction and accuracy drop --
    each with its interval and outcome."""
    folder = Path(folder)
    verdicts, ablation = _read(folder, "verdicts.csv"), _read(folder, "ablation_verdict.csv")
    rows = []
    for family in dict.fromkeys(verdicts.get("family", [])):
        ab = (ablation[(ablation["family"] == family) & (ablation["objective"] == "ce")
                       & (ablation["other_key"] == "gmn")] if len(ablation) else pd.DataFrame())
        rows.append({
            "family": family,
            "one-shot gain, trained ckpts (points)": _verdict_cell(verdicts, family, "ce_gain", sign=True),
            "SGD cost at the one shot's accuracy / one-shot cost (x)": _verdict_cell(
                verdicts, family, "cheaper_at_equal_accuracy", digits=3),
            "warm start: SGD from the one shot minus from the initial nets, 1 epoch (points)": _verdict_cell(
                verdicts, family, "warm_start_1", sign=True),
            "ScaleGMN-B minus GMN-B, CE (points)": ("-" if ab.empty else
                                                    f"{_cell(ab.iloc[0]['effect'], ab.iloc[0]['effect_lo'], ab.iloc[0]['effect_hi'], 1, True)}: "
                                                    f"{ab.iloc[0]['outcome']}"),
            "L1 one shot: L1-norm reduction (%)": _verdict_cell(verdicts, family, "l1_reduction"),
            "L1 one shot: accuracy drop (points)": _verdict_cell(verdicts, family, "l1_acc_drop", sign=True),
        })
    return pd.DataFrame(rows)


def _count(frame: pd.DataFrame, column: str = "outcome") -> dict[str, int]:
    return frame[column].value_counts().to_dict() if len(frame) else {}


def _families(frame: pd.DataFrame, outcome: str) -> str:
    names = list(frame.loc[frame["outcome"] == outcome, "family"])
    return ", ".join(names) if names else "none"


def finding_sentences(folder: str | os.PathLike) -> list[str]:
    """The run's findings as sentences, every number read from the snapshot."""
    folder = Path(folder)
    verdicts, matched = _read(folder, "verdicts.csv"), _read(folder, "matched_compute.csv")
    ablation = _read(folder, "ablation_verdict.csv")
    lines = []
    gain = verdicts[verdicts["claim"] == "ce_gain"] if len(verdicts) else pd.DataFrame()
    if len(gain):
        lines.append(
            f"**The one shot improves networks it never saw**, in every family measured: the held-out gain on trained "
            f"checkpoints ranges from {_num(gain['value'].min(), 1, True)} to {_num(gain['value'].max(), 1, True)} "
            f"points (lowest interval bound {_num(gain['lo'].min(), 1, True)}). The family's target holds in "
            f"{_families(gain, 'holds')}; fails in {_families(gain, 'fails')}; is inconclusive in "
            f"{_families(gain, 'inconclusive')}.")
    cheap = verdicts[verdicts["claim"] == "cheaper_at_equal_accuracy"] if len(verdicts) else pd.DataFrame()
    first = matched.groupby("family", sort=False).head(1) if len(matched) else pd.DataFrame()
    if len(cheap) and len(first):
        epochs = first["steps_value"] / first["steps_per_epoch"]
        lines.append(
            f"**At equal accuracy, SGD is the cheaper optimizer in {_families(cheap, 'fails')}**"
            if (cheap["outcome"] == "fails").any() else "**At equal accuracy, SGD is not the cheaper optimizer**")
        lines[-1] += (
            f" (the whole interval of the cost ratio SGD / one shot below 1); the one shot is cheaper in "
            f"{_families(cheap, 'holds')}; inconclusive in {_families(cheap, 'inconclusive')}. SGD from the initial "
            f"networks reaches the ScaleGMN-B one shot's accuracy after {_num(first['steps_value'].min(), 1)} to "
            f"{_num(first['steps_value'].max(), 1)} steps ({_num(epochs.min(), 2)} to {_num(epochs.max(), 2)} epochs), "
            f"for a cost ratio of {_num(cheap['value'].min(), 3)} to {_num(cheap['value'].max(), 3)}; metanet training "
            + ("never pays back at equal accuracy where SGD is cheaper per network." if (cheap["outcome"] == "fails").any()
               else "pays back from the break-even numbers in the matched-compute table."))
    for claim, when in (("warm_start_1", "after one SGD epoch"), ("warm_start_full", "after the full SGD budget")):
        w = verdicts[verdicts["claim"] == claim] if len(verdicts) else pd.DataFrame()
        if len(w):
            lines.append(
                f"**Warm start {when}** (each start at its own rate, chosen on validation networks): SGD from the one "
                f"shot leads SGD from the initial networks in {_families(w, 'holds')}; trails in {_families(w, 'fails')}; "
                f"inconclusive in {_families(w, 'inconclusive')} (differences {_num(w['value'].min(), 2, True)} to "
                f"{_num(w['value'].max(), 2, True)} points).")
    if len(ablation):
        for objective, sub in ablation.groupby("objective", sort=False):
            c = _count(sub)
            seeds = sorted(set(sub["seeds"].astype(str)))
            single = all(min(int(n) for n in s.split("/")) < 2 for s in seeds)
            lines.append(
                f"**Ablation ({objective.upper()})**: ScaleGMN-B wins {c.get('win', 0)}, loses {c.get('loss', 0)} and is "
                f"inconclusive in {c.get('inconclusive', 0)} of {len(sub)} comparisons with the symmetry-broken models "
                f"(families {', '.join(dict.fromkeys(sub['family']))}; seeds per side {', '.join(seeds)}"
                + ("; with one seed on a side the intervals cover the held-out networks, not the spread between "
                   "trainings: a win or loss is that of one trained model" if single else "") + ").")
    l1 = verdicts[verdicts["claim"] == "l1_reduction"] if len(verdicts) else pd.DataFrame()
    if len(l1):
        lines.append(
            f"**L1 sparsity**: the one shot removes {_num(l1['value'].min(), 1)} % to {_num(l1['value'].max(), 1)} % of "
            f"the L1 norm on trained checkpoints; the 70 % target holds in {_families(l1, 'holds')}, fails in "
            f"{_families(l1, 'fails')}, is inconclusive in {_families(l1, 'inconclusive')}.")
    return lines


def findings_markdown(folder: str | os.PathLike) -> str:
    """The README's findings block for a snapshot: the run it comes from, the headline table, the sentences."""
    from .results import markdown_table

    folder = Path(folder)
    table = headline_table(folder)
    lines = [f"Generated from {run_line(folder)}. Brackets: 95 % intervals over held-out networks and metanet seeds; "
             "each claim judged *holds* / *fails* / *inconclusive* against the threshold in parentheses.", ""]
    if len(table):
        lines += [markdown_table(table), ""]
    lines += [f"* {s}" for s in finding_sentences(folder)]
    return "\n".join(lines).rstrip("\n") + "\n"


#: the columns of a verdicts frame a reader needs: the family, the claim's text, the value with its interval, the
#: comparison, the threshold and the outcome
OVERVIEW_COLUMNS = ["family", "text", "value", "lo", "hi", "op", "threshold", "outcome"]


def verdict_overview(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdicts of every family (:func:`workbench.pipeline.stacked` of ``"verdicts"``) as notebook 06 shows them:
    :data:`OVERVIEW_COLUMNS`, numbers rounded to 3 decimals."""
    return verdicts[OVERVIEW_COLUMNS].round(3)


def claim_tallies(verdicts: pd.DataFrame) -> list[str]:
    """One line per claim, in the order the claims first appear: ``"<text>: 2 holds, 0 fails, 1 inconclusive (of 3
    families)"`` -- how often it holds, fails and is inconclusive over the families judged."""
    lines = []
    for _, sub in verdicts.groupby("claim", sort=False):
        counts = sub["outcome"].value_counts()
        lines.append(f"{sub['text'].iloc[0]}: " + ", ".join(f"{counts.get(o, 0)} {o}" for o in ("holds", "fails",
                                                                                             "inconclusive"))
                     + f" (of {len(sub)} families)")
    return lines
