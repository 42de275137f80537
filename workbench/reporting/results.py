"""The poster's results table: one typed row per method, every number scored by :func:`workbench.measure.score.score`.

A row is identified by its typed key columns, never by its text (:data:`KEY_COLUMNS`):

* ``kind``: ``"reference"`` (the initial networks, the all-zero network), ``"one_shot"`` (a metanetwork's one
  shot), ``"balanced"`` (an L1 one shot moved to the L1-smallest point of its scaling orbit), ``"sgd"`` (SGD at a
  rate tuned on validation networks), ``"sgd_fixed"`` (SGD at the fixed control rate), ``"one_shot_sgd"`` (SGD
  started from a one shot, at the rate chosen for that start);
* ``method``: ``"initial"``, ``"zero"``, ``"sgd"``, or the key of a metanetwork (:data:`workbench.pipeline.METHODS`);
* ``epochs`` and ``lr`` for the SGD kinds; ``seeds``: metanet seeds scored (the row averages over them);
* ``label``: the row's display text ("ScaleGMN-B", "SGD (5 epochs)"), for people only.

Metric columns are ``<objective>_<metric>`` with the metric names of :mod:`workbench.measure.score` (``ce_acc_trained``,
``l1_reduction_trained``, ...), times are ``<objective>_seconds_per_net``, and the main metrics carry their 95 %
interval over held-out networks and seeds (``..._lo``, ``..._hi``). Nothing is filled in that was not measured:
a missing value is NaN in the frame and "-" in markdown.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import WorkbenchError
from ..system.io import atomic_write_text
from ..measure.score import Score
from ..measure.uncertainty import Bootstrap

__all__ = [
    "KEY_COLUMNS", "ROW_KINDS", "COLUMNS", "COLUMN_LABELS", "INTERVAL_METRICS", "TableSchemaError", "table_row",
    "results_table", "find_row", "check_table_schema", "to_markdown", "write_results", "styled", "markdown_table",
    "matched_summary", "warm_summary", "training_smoothness", "spread", "MEASURED_COLUMNS", "one_shot_rows_measured",
]

KEY_COLUMNS = ["label", "kind", "method", "epochs", "lr", "seeds"]
ROW_KINDS = ("reference", "one_shot", "balanced", "sgd", "sgd_fixed", "one_shot_sgd")
#: the metrics shown per objective (names of workbench.measure.score.METRICS)
CE_METRICS = ("acc", "acc_trained", "acc_max")
L1_METRICS = ("acc", "acc_trained", "loss", "l1_reduction", "l1_reduction_trained", "near_zero")
#: metric columns that carry a 95 % interval
INTERVAL_METRICS = ("ce_acc_trained", "l1_acc_trained", "l1_loss", "l1_reduction_trained")


def _l1_column(metric: str) -> str:
    return metric if metric.startswith("l1_") else f"l1_{metric}"  # l1_reduction, not l1_l1_reduction


def _metric_columns() -> list[str]:
    columns = []
    for objective, metrics in (("ce", CE_METRICS), ("l1", L1_METRICS)):
        for metric in metrics:
            name = f"ce_{metric}" if objective == "ce" else _l1_column(metric)
            columns.append(name)
            if name in INTERVAL_METRICS:
                columns += [f"{name}_lo", f"{name}_hi"]
        columns.append(f"{objective}_seconds_per_net")
    return columns


COLUMNS = [*KEY_COLUMNS, *_metric_columns()]
NUMERIC_COLUMNS = [c for c in COLUMNS if c not in ("label", "kind", "method")]
ACCURACY_COLUMNS = [c for c in COLUMNS if "_acc" in c]
TIME_COLUMNS = ["ce_seconds_per_net", "l1_seconds_per_net"]

COLUMN_LABELS = {
    "label": "Method",
    "ce_acc": "CE acc (%)",
    "ce_acc_trained": "CE acc, trained ckpts (%)",
    "ce_acc_max": "CE max acc (%)",
    "ce_seconds_per_net": "CE time (s/net)",
    "l1_acc": "L1 acc (%)",
    "l1_acc_trained": "L1 acc, trained ckpts (%)",
    "l1_loss": "L1 test loss (CE + lam L1)",
    "l1_seconds_per_net": "L1 time (s/net)",
    "l1_reduction": "L1-norm reduction (%)",
    "l1_reduction_trained": "L1-norm reduction, trained ckpts (%)",
    "l1_near_zero": "Near-zero weights, abs < 1e-3 (%)",
}
#: the columns shown in markdown, in order (intervals are shown inside their metric's cell)
SHOWN = [c for c in COLUMN_LABELS]

MISSING = "-"


class TableSchemaError(WorkbenchError, ValueError):
    """A results table does not have the workbench's columns or rows."""


# -- rows -------------------------------------------------------------------------------------------------------
def _scores(prefix: str, metrics: Sequence[str], s: Score, boot: Bootstrap, key: str) -> dict:
    out = {}
    for metric in metrics:
        name = f"ce_{metric}" if prefix == "ce" else _l1_column(metric)
        if name in INTERVAL_METRICS:
            iv = s.interval(metric, boot, key=f"{key}/{prefix}")
            out.update({name: iv.estimate, f"{name}_lo": iv.lo, f"{name}_hi": iv.hi})
        else:
            out[name] = s.value(metric)
    out[f"{prefix}_seconds_per_net"] = math.nan if s.seconds_per_net is None else float(s.seconds_per_net)
    return out


def table_row(label: str, kind: str, method: str, *, boot: Bootstrap, ce: Score | None = None,
              l1: Score | None = None, epochs: int | None = None, lr: float | None = None) -> dict:
    """One row: the key columns and the metrics of the ``ce`` and ``l1`` scores (either may be missing, its
    columns then NaN). The intervals draw networks from ``boot`` and seeds per row and objective."""
    if kind not in ROW_KINDS:
        raise TableSchemaError(f"unknown row kind {kind!r}; expected one of {ROW_KINDS}")
    seeds = max((s.seeds for s in (ce, l1) if s is not None), default=0)
    row = {c: math.nan for c in COLUMNS}
    row.update(label=str(label), kind=kind, method=str(method), epochs=math.nan if epochs is None else int(epochs),
               lr=math.nan if lr is None else float(lr), seeds=seeds)
    if ce is not None:
        row.update(_scores("ce", CE_METRICS, ce, boot, f"{kind}/{method}/{epochs}"))
    if l1 is not None:
        row.update(_scores("l1", L1_METRICS, l1, boot, f"{kind}/{method}/{epochs}"))
    return row


# -- tables -----------------------------------------------------------------------------------------------------
def results_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """A frame with exactly :data:`COLUMNS`, one row per entry of ``rows``, in order (missing values NaN)."""
    for i, row in enumerate(rows):
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise TableSchemaError(f"row {i} ({row.get('label', '?')!r}) has unknown columns {sorted(unknown)}; "
                                   f"the table columns are {COLUMNS}")
    df = pd.DataFrame([{c: row.get(c) for c in COLUMNS} for row in rows], columns=COLUMNS)
    df[NUMERIC_COLUMNS] = df[NUMERIC_COLUMNS].apply(lambda col: pd.to_numeric(col, errors="raise")).astype(float)
    for c in ("label", "kind", "method"):
        df[c] = df[c].astype(str)
    check_table_schema(df)
    return df


def find_row(table: pd.DataFrame, **fields) -> pd.Series | None:
    """The one row whose key columns equal ``fields`` (e.g. ``kind="one_shot", method="scalegmn"``), None when there
    is none; more than one is an error (the key is not specific enough)."""
    keys = [c for c in KEY_COLUMNS if c != "label"]  # the label is display text: never a key
    unknown = set(fields) - set(keys)
    if unknown:
        raise TableSchemaError(f"find_row looks rows up by their key columns {keys}; got {sorted(unknown)}")
    hit = np.ones(len(table), dtype=bool)
    for name, value in fields.items():
        column = table[name]
        hit &= (np.isclose(column.to_numpy(dtype=float), float(value)) if name in ("epochs", "lr", "seeds")
                else (column == value).to_numpy())
    if hit.sum() > 1:
        raise TableSchemaError(f"{int(hit.sum())} rows match {fields}; name more key columns")
    return table[hit].iloc[0] if hit.any() else None


#: what a complete row of the initial networks or of a one shot holds: both objectives' accuracy, the CE interval and
#: the L1 loss
MEASURED_COLUMNS = ["ce_acc", "ce_acc_trained_lo", "ce_acc_trained_hi", "l1_acc", "l1_loss"]


def one_shot_rows_measured(table: pd.DataFrame, methods: Sequence[str]) -> bool:
    """Whether ``table`` holds the Initial row and the one-shot row of every method in ``methods``, each with every
    column of :data:`MEASURED_COLUMNS` measured (not NaN): notebook 06's check that nothing it rests on is missing."""
    core = [find_row(table, kind="reference", method="initial"),
            *[find_row(table, kind="one_shot", method=m) for m in methods]]
    return all(r is not None and r[MEASURED_COLUMNS].notna().all() for r in core)


def check_table_schema(df: pd.DataFrame) -> None:
    """Raise :class:`TableSchemaError` unless ``df`` is a results table: exactly :data:`COLUMNS` in order, at least
    one row, known row kinds, unique labels and unique keys, numeric measurement columns, accuracies within [0, 100]
    and non-negative times (NaN allowed everywhere for "not measured")."""
    if not isinstance(df, pd.DataFrame):
        raise TableSchemaError(f"expected a pandas DataFrame, got {type(df).__name__}")
    columns = list(df.columns)
    if columns != COLUMNS:
        missing = [c for c in COLUMNS if c not in columns]
        extra = [c for c in columns if c not in COLUMNS]
        raise TableSchemaError(f"results table columns are off: missing {missing}, unexpected {extra}"
                               + ("" if missing or extra else " (wrong order)") + f"; expected exactly {COLUMNS}")
    if len(df) == 0:
        raise TableSchemaError("results table has no rows")
    bad_kind = sorted(set(df["kind"]) - set(ROW_KINDS))
    if bad_kind:
        raise TableSchemaError(f"unknown row kinds {bad_kind}; expected {ROW_KINDS}")
    labels = df["label"].astype(str)
    if (labels.str.strip() == "").any():
        raise TableSchemaError("every row needs a label")
    for what, dup in (("labels", labels[labels.duplicated()]),
                      ("keys", df[df.duplicated(subset=["kind", "method", "epochs", "lr"])]["label"])):
        if len(dup):
            raise TableSchemaError(f"row {what} must be unique; repeated: {sorted(set(dup))}")
    for c in NUMERIC_COLUMNS:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise TableSchemaError(f"column {c!r} must be numeric (NaN for missing), got dtype {df[c].dtype}")
    for c in ACCURACY_COLUMNS:
        bad = df[c].notna() & ((df[c] < 0) | (df[c] > 100))
        if bad.any():
            raise TableSchemaError(f"column {c!r} holds accuracies outside [0, 100] % for {list(labels[bad])}")
    for c in TIME_COLUMNS:
        bad = df[c].notna() & (df[c] < 0)
        if bad.any():
            raise TableSchemaError(f"column {c!r} holds negative times for {list(labels[bad])}")


def _format_time(seconds: float) -> str:
    return f"{seconds:.0f}" if seconds >= 1000 else f"{seconds:.3g}"  # 357, 59.5, 0.055, 5.5e-05


def _format_cell(column: str, row: Mapping) -> str:
    value = row[column]
    if column == "label":
        return str(value).replace("|", "\\|")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if column in TIME_COLUMNS:
        return _format_time(float(value))
    text = f"{float(value):.3f}" if column == "l1_loss" else f"{float(value):.1f}"
    lo, hi = row.get(f"{column}_lo"), row.get(f"{column}_hi")
    if lo is not None and hi is not None and lo == lo and hi == hi and float(hi) > float(lo):
        digits = 3 if column == "l1_loss" else 1
        text += f" [{float(lo):.{digits}f}, {float(hi):.{digits}f}]"
    return text


def to_markdown(df: pd.DataFrame, title: str | None = None) -> str:
    """A markdown table of ``df``: accuracies and percentages to 1 decimal, loss to 3, times to 3 significant
    digits, each main metric followed by its 95 % interval in brackets, "-" for anything not measured; preceded by
    ``## title`` when given."""
    check_table_schema(df)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(COLUMN_LABELS[c] for c in SHOWN) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(SHOWN) - 1)) + "|")
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_format_cell(c, row) for c in SHOWN) + " |")
    return "\n".join(lines) + "\n"


def write_results(tables: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike, extra_md: str = "") -> dict[str, Path]:
    """Write ``results.md`` (one section per family, then ``extra_md``) and ``results.csv`` (all families stacked,
    with a leading ``family`` column) into ``out_dir``, each atomically. Returns ``{"md": path, "csv": path}``."""
    if not tables:
        raise TableSchemaError("write_results needs at least one family table")
    for family, df in tables.items():
        try:
            check_table_schema(df)
        except TableSchemaError as err:
            raise TableSchemaError(f"table for family {family!r}: {err}") from None
    out_dir = Path(out_dir)
    md = "# Results\n\n" + "\n".join(to_markdown(df, title=family) for family, df in tables.items())
    if extra_md:
        md += "\n" + extra_md.rstrip("\n") + "\n"
    stacked = pd.concat([df.assign(family=family) for family, df in tables.items()], ignore_index=True)
    stacked = stacked[["family", *COLUMNS]]
    return {"md": atomic_write_text(out_dir / "results.md", md),
            "csv": atomic_write_text(out_dir / "results.csv", stacked.to_csv(index=False))}


def styled(df: pd.DataFrame):
    """A results table as a pandas Styler with the display labels and number formats (intervals in brackets,
    "-" for not measured), for HTML display in notebooks."""
    check_table_schema(df)
    shown = pd.DataFrame({COLUMN_LABELS[c]: [_format_cell(c, row) for _, row in df.iterrows()] for c in SHOWN})
    return shown.style.hide(axis="index")


def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
    """Any small frame as a markdown table (numbers rounded to ``digits``), without the optional tabulate package."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return MISSING if math.isnan(v) else f"{v:,.{digits}f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "|".join(["---"] * len(df.columns)) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# -- matched compute and warm start, for display (notebook 06 and the report) --------------------------------------
def _fmt(v: float, digits: int, sign: bool = False) -> str:
    if v != v:
        return "n/a"
    if math.isinf(v):
        return "never" if v > 0 else "-inf"
    return f"{v:+,.{digits}f}" if sign else f"{v:,.{digits}f}"


def _iv(row, name: str, digits: int, sign: bool = False) -> str:
    """``"value [lo, hi]"`` of the columns ``<name>_value``, ``<name>_lo``, ``<name>_hi``."""
    return (f"{_fmt(row[name + '_value'], digits, sign)} [{_fmt(row[name + '_lo'], digits, sign)}, "
            f"{_fmt(row[name + '_hi'], digits, sign)}]")


def matched_summary(matched: pd.DataFrame) -> pd.DataFrame:
    """Per family and one-shot method: its accuracy, the SGD steps (and epochs) and seconds per network SGD needs to
    reach it, the cost ratio SGD / one shot and the break-even number of networks, each with its interval."""
    rows = []
    for _, m in matched.iterrows():
        per_epoch = m["steps_per_epoch"]
        reached = bool(m["reached"])
        rows.append({
            "family": m["family"], "one shot": m["method"], "accuracy (%)": _iv(m, "one_shot_acc", 1),
            "one shot (s/network)": f"{m['one_shot_s_per_net']:.3g}", "SGD lr": f"{m['lr']:g}",
            "SGD steps to reach it": _iv(m, "steps", 1) if reached else f"> {int(m['max_steps'])}",
            "= epochs": _fmt(m["steps_value"] / per_epoch, 2) if reached else f"> {m['max_steps'] / per_epoch:g}",
            "SGD (s/network)": _iv(m, "sgd_seconds_per_net", 6),
            "cost ratio SGD / one shot": _iv(m, "ratio", 3),
            "break-even networks": _iv(m, "break_even", 0),
            "metanet training (s)": f"{m['train_seconds']:.0f}",
            "+ zoo generation (s)": _fmt(m["zoo_seconds"], 0),
            "break-even incl. zoo": _iv(m, "break_even_with_zoo", 0),
        })
    return pd.DataFrame(rows)


def warm_summary(warm: pd.DataFrame) -> pd.DataFrame:
    """Per family, start and budget: SGD from the one shot vs from the initial networks, each at its own rate."""
    rows = []
    for _, w in warm.iterrows():
        rows.append({"family": w["family"], "start": w.get("label", w["start"]), "epochs": int(w["epochs"]),
                     "lr (start / initial)": f"{w['lr']:g} / {w['reference_lr']:g}",
                     "from the one shot (%)": _iv(w, "acc", 1), "from the initial networks (%)": _iv(w, "reference_acc", 1),
                     "difference (points)": _iv(w, "difference", 2, sign=True), "outcome": w["outcome"]})
    return pd.DataFrame(rows)


# -- training-curve summaries (notebook 05) ----------------------------------------------------------------------
def training_smoothness(history: Sequence[float]) -> float:
    """How jumpy a training curve is: the mean absolute change of the validation loss between consecutive epochs,
    divided by the mean validation loss,

        smoothness = mean_t |L_{t+1} - L_t| / mean_t L_t.

    Lower is smoother; a flat curve gives 0. Dividing by the mean makes runs at different loss levels comparable.
    A history holding NaN/inf gives NaN (a diverged run has no smoothness); fewer than two epochs is an error.
    """
    values = np.asarray(list(history), dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"training_smoothness needs a 1-d history of at least two losses, got shape {values.shape}")
    if not np.isfinite(values).all():
        return float("nan")
    return float(np.abs(np.diff(values)).mean() / values.mean())


def spread(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, std)`` of a metric across seeds; std is the sample standard deviation (ddof = 1), NaN for a
    single value (one seed says nothing about the spread)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"spread needs a non-empty 1-d sequence, got shape {arr.shape}")
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return float(arr.mean()), std
