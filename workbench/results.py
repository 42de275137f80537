"""The poster's results table: one row per method, scored with the shared metrics of :mod:`workbench.objective`.

Columns (:data:`COLUMNS`), per network family:

* ``ce_avg_acc`` / ``ce_max_acc``: mean / best test accuracy (%) over networks after cross-entropy fine-tuning
  (lambda = 0);
* ``ce_avg_acc_trained``: the same mean over the trained checkpoints only (checkpoint epoch >= 1; the untrained
  epoch-0 networks, which no map from weights alone can turn into classifiers, are left out);
* ``ce_time_per_net_s``: seconds per network of that fine-tuning;
* ``l1_avg_acc`` / ``l1_avg_acc_trained``: mean test accuracy (%) after L1-regularised fine-tuning (lambda > 0),
  over all / over the trained checkpoints;
* ``l1_test_loss``: mean over networks of test CE + lambda * L1 of those parameters;
* ``l1_time_per_net_s``: seconds per network of that fine-tuning;
* ``l1_sparsity_pct``: the poster's "sparsity", which is really the % reduction of the total L1 norm relative to
  the initial networks (:func:`workbench.objective.l1_reduction`), labelled "L1-norm reduction (%)";
* ``l1_sparsity_pct_trained``: the same over the trained checkpoints only (where the targets are set; untrained
  networks are shrunk more easily);
* ``l1_near_zero_pct``: % of weights and biases with |w| < 1e-3 (:func:`workbench.objective.share_near_zero`).

Nothing is filled in that was not measured: a missing time or method is NaN in the frame and "-" in markdown.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .errors import WorkbenchError
from .io import atomic_write_text
from .nets import NetSpec, Params, check_params, map_params
from .objective import evaluate, l1_reduction, share_near_zero
from .records import Family

__all__ = [
    "COLUMNS",
    "COLUMN_LABELS",
    "TableSchemaError",
    "method_row",
    "sgd_rows",
    "results_table",
    "check_table_schema",
    "to_markdown",
    "write_results",
    "training_smoothness",
    "spread",
]

COLUMNS = [
    "method",
    "ce_avg_acc",
    "ce_avg_acc_trained",
    "ce_max_acc",
    "ce_time_per_net_s",
    "l1_avg_acc",
    "l1_avg_acc_trained",
    "l1_test_loss",
    "l1_time_per_net_s",
    "l1_sparsity_pct",
    "l1_sparsity_pct_trained",
    "l1_near_zero_pct",
]
NUMERIC_COLUMNS = COLUMNS[1:]
ACCURACY_COLUMNS = ["ce_avg_acc", "ce_avg_acc_trained", "ce_max_acc", "l1_avg_acc", "l1_avg_acc_trained"]
TIME_COLUMNS = ["ce_time_per_net_s", "l1_time_per_net_s"]
PERCENT_COLUMNS = ["l1_sparsity_pct", "l1_sparsity_pct_trained", "l1_near_zero_pct"]

COLUMN_LABELS = {
    "method": "Method",
    "ce_avg_acc": "CE avg acc (%)",
    "ce_avg_acc_trained": "CE avg acc, trained ckpts (%)",
    "ce_max_acc": "CE max acc (%)",
    "ce_time_per_net_s": "CE time (s/net)",
    "l1_avg_acc": "L1 avg acc (%)",
    "l1_avg_acc_trained": "L1 avg acc, trained ckpts (%)",
    "l1_test_loss": "L1 test loss (CE+L1)",
    "l1_time_per_net_s": "L1 time (s/net)",
    "l1_sparsity_pct": "L1-norm reduction (%)",
    "l1_sparsity_pct_trained": "L1-norm reduction, trained ckpts (%)",
    "l1_near_zero_pct": "Near-zero weights, abs < 1e-3 (%)",
}

MISSING = "-"


class TableSchemaError(WorkbenchError, ValueError):
    """A results table does not have the poster's columns or rows."""


# -- rows -------------------------------------------------------------------------------------------------------
def _nan_if_none(value) -> float:
    return float("nan") if value is None else float(value)


def _on(params: Params, x: torch.Tensor) -> Params:
    return map_params(lambda t: t.to(device=x.device, dtype=x.dtype), params)


def method_row(
    name: str,
    spec: NetSpec,
    data,
    *,
    initial: Params,
    ce_params: Params | None = None,
    ce_seconds_per_net: float | None = None,
    l1_params: Params | None = None,
    l1_seconds_per_net: float | None = None,
    lam: float,
    split: str = "test",
    trained: Sequence[bool] | torch.Tensor | None = None,
) -> dict:
    """One table row: scores ``ce_params`` and ``l1_params`` (batched, the same networks as ``initial``) on ``split``.

    For the "Initial" row pass ``ce_params=l1_params=initial`` and no times (its sparsity is then 0 by
    construction). Any part not given stays NaN: nothing is estimated or carried over from another row.
    ``trained``: (B,) mask of the networks that are trained checkpoints (epoch >= 1); the ``*_trained`` columns
    average over those (NaN when not given or empty).

    Returns:
        a dict with exactly :data:`COLUMNS` as keys.
    """
    x, y = data.split(split)
    row = {"method": str(name), **{c: float("nan") for c in NUMERIC_COLUMNS}}
    row["ce_time_per_net_s"] = _nan_if_none(ce_seconds_per_net)
    row["l1_time_per_net_s"] = _nan_if_none(l1_seconds_per_net)
    n_initial = check_params(spec, initial, finite=True)
    mask = None
    if trained is not None:
        mask = torch.as_tensor(np.asarray(trained, dtype=bool))
        if mask.shape != (n_initial,):
            raise ValueError(f"{name}: trained mask has shape {tuple(mask.shape)}, expected ({n_initial},)")

    def trained_mean(acc: torch.Tensor) -> float:
        return 100.0 * float(acc[mask].double().mean()) if mask is not None and bool(mask.any()) else float("nan")

    if ce_params is not None:
        n = check_params(spec, ce_params, finite=True)
        metrics = evaluate(spec, _on(ce_params, x), x, y)
        row["ce_avg_acc"] = 100.0 * float(metrics["acc"].double().mean())
        row["ce_avg_acc_trained"] = trained_mean(metrics["acc"])
        row["ce_max_acc"] = 100.0 * float(metrics["acc"].max())
    if l1_params is not None:
        n = check_params(spec, l1_params, finite=True)
        if n != n_initial:
            raise ValueError(
                f"{name}: l1_params holds {n} networks but initial holds {n_initial}; sparsity compares the same "
                "networks before and after fine-tuning"
            )
        metrics = evaluate(spec, _on(l1_params, x), x, y, lam)
        row["l1_avg_acc"] = 100.0 * float(metrics["acc"].double().mean())
        row["l1_avg_acc_trained"] = trained_mean(metrics["acc"])
        row["l1_test_loss"] = float(metrics["loss"].double().mean())
        row["l1_sparsity_pct"] = l1_reduction(_on(initial, x), _on(l1_params, x))
        if mask is not None and bool(mask.any()):
            keep = mask.to(x.device)
            row["l1_sparsity_pct_trained"] = l1_reduction([(w[keep], b[keep]) for w, b in _on(initial, x)],
                                                          [(w[keep], b[keep]) for w, b in _on(l1_params, x)])
        row["l1_near_zero_pct"] = share_near_zero(l1_params)
    return row


def sgd_rows(spec: NetSpec, data, *, initial: Params, ce_results: Mapping | None = None,
             l1_results: Mapping | None = None, lam: float, split: str = "test",
             label: str = "SGD ({epochs} epochs)", trained=None) -> list[dict]:
    """Rows for the SGD baselines, one per epoch budget found in either ``{epochs: SGDResult}`` mapping.

    Times are the results' ``seconds_per_network`` (the vectorised figure); a budget present for only one
    objective leaves the other objective's columns NaN.
    """
    ce_results, l1_results = dict(ce_results or {}), dict(l1_results or {})
    rows = []
    for epochs in sorted(set(ce_results) | set(l1_results)):
        ce, l1 = ce_results.get(epochs), l1_results.get(epochs)
        rows.append(method_row(
            label.format(epochs=epochs), spec, data, initial=initial,
            ce_params=ce.params if ce else None, ce_seconds_per_net=ce.seconds_per_network if ce else None,
            l1_params=l1.params if l1 else None, l1_seconds_per_net=l1.seconds_per_network if l1 else None,
            lam=lam, split=split, trained=trained,
        ))
    return rows


# -- tables -----------------------------------------------------------------------------------------------------
def results_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """A frame with exactly :data:`COLUMNS`, one row per method, in the given order (missing values NaN)."""
    for i, row in enumerate(rows):
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise TableSchemaError(f"row {i} ({row.get('method', '?')!r}) has unknown columns {sorted(unknown)}; "
                                   f"the table columns are {COLUMNS}")
        if not row.get("method"):
            raise TableSchemaError(f"row {i} has no method name")
    df = pd.DataFrame([{c: row.get(c) for c in COLUMNS} for row in rows], columns=COLUMNS)
    df[NUMERIC_COLUMNS] = df[NUMERIC_COLUMNS].apply(lambda col: pd.to_numeric(col, errors="raise")).astype(float)
    df["method"] = df["method"].astype(str)
    return df


def check_table_schema(df: pd.DataFrame, required_methods: Sequence[str] = ()) -> None:
    """Raise :class:`TableSchemaError` unless ``df`` is a results table: exactly :data:`COLUMNS` in order, at least
    one row, unique non-empty method names (including every name in ``required_methods``), numeric measurement
    columns, accuracies within [0, 100] and non-negative times (NaN allowed everywhere for "not measured")."""
    if not isinstance(df, pd.DataFrame):
        raise TableSchemaError(f"expected a pandas DataFrame, got {type(df).__name__}")
    columns = list(df.columns)
    if columns != COLUMNS:
        missing = [c for c in COLUMNS if c not in columns]
        extra = [c for c in columns if c not in COLUMNS]
        raise TableSchemaError(
            f"results table columns are off: missing {missing}, unexpected {extra}"
            + ("" if missing or extra else f", wrong order {columns}") + f"; expected exactly {COLUMNS}"
        )
    if len(df) == 0:
        raise TableSchemaError("results table has no rows")
    methods = df["method"]
    if methods.isna().any() or (methods.astype(str).str.strip() == "").any():
        raise TableSchemaError("every row needs a method name")
    duplicated = sorted(set(methods[methods.duplicated()]))
    if duplicated:
        raise TableSchemaError(f"method names must be unique; repeated: {duplicated}")
    absent = [m for m in required_methods if m not in set(methods)]
    if absent:
        raise TableSchemaError(f"results table lacks rows {absent}; it has {list(methods)}")
    for c in NUMERIC_COLUMNS:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise TableSchemaError(f"column {c!r} must be numeric (NaN for missing), got dtype {df[c].dtype}")
    for c in ACCURACY_COLUMNS:
        bad = df[c].notna() & ((df[c] < 0) | (df[c] > 100))
        if bad.any():
            raise TableSchemaError(f"column {c!r} holds accuracies outside [0, 100] % for {list(methods[bad])}")
    for c in TIME_COLUMNS:
        bad = df[c].notna() & (df[c] < 0)
        if bad.any():
            raise TableSchemaError(f"column {c!r} holds negative times for {list(methods[bad])}")


def _format_time(seconds: float) -> str:
    if seconds >= 1000:
        return f"{seconds:.0f}"
    return f"{seconds:.3g}"  # 357, 59.5, 0.055, 5.5e-05


def _format_cell(column: str, value) -> str:
    if column == "method":
        return str(value).replace("|", "\\|")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    value = float(value)
    if column in TIME_COLUMNS:
        return _format_time(value)
    if column == "l1_test_loss":
        return f"{value:.3f}"
    return f"{value:.1f}"  # accuracies and percentages


def to_markdown(df: pd.DataFrame, title: str | None = None) -> str:
    """A markdown table of ``df`` (poster formatting: accuracies and percentages to 1 decimal, loss to 3, times to
    3 significant digits, "-" for anything not measured), preceded by ``## title`` when given."""
    check_table_schema(df)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(COLUMN_LABELS[c] for c in COLUMNS) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * len(NUMERIC_COLUMNS)) + "|")
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_format_cell(c, row[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    tables: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike, extra_md: str = ""
) -> dict[str, Path]:
    """Write ``results.md`` (one section per family, e.g. "## CNN (tanh)", then ``extra_md``) and ``results.csv``
    (all families stacked, with a leading ``family`` column) into ``out_dir``, each atomically.

    Returns:
        ``{"md": path, "csv": path}``.
    """
    if not tables:
        raise TableSchemaError("write_results needs at least one family table")
    for family, df in tables.items():
        try:
            check_table_schema(df)
        except TableSchemaError as err:
            raise TableSchemaError(f"table for family {family!r}: {err}") from None
    out_dir = Path(out_dir)
    sections = [to_markdown(df, title=family) for family, df in tables.items()]
    md = "# Results\n\n" + "\n".join(sections)
    if extra_md:
        md += "\n" + extra_md.rstrip("\n") + "\n"
    stacked = pd.concat([df.assign(family=family) for family, df in tables.items()], ignore_index=True)
    stacked = stacked[["family", *COLUMNS]]
    paths = {
        "md": atomic_write_text(out_dir / "results.md", md),
        "csv": atomic_write_text(out_dir / "results.csv", stacked.to_csv(index=False)),
    }
    return paths


# -- ablation helpers -------------------------------------------------------------------------------------------
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


# -- presentation and verdicts (notebook 06) -------------------------------------------------------------------
def styled(df: pd.DataFrame):
    """A results table as a pandas Styler with the poster's labels and number formats ("-" for not measured),
    for HTML display in notebooks (no wrapping of raw markdown)."""
    check_table_schema(df)
    shown = df.rename(columns=COLUMN_LABELS)
    formats = {COLUMN_LABELS[c]: (lambda v, c=c: _format_cell(c, v)) for c in NUMERIC_COLUMNS}
    return shown.style.format(formats).hide(axis="index")


#: the targets of the default run, on held-out trained checkpoints (the generalisation issue)
TARGETS = {"ce_gain_tanh": 8.0, "ce_gain_any": 3.0, "l1_reduction": 70.0, "l1_max_acc_drop": 5.0}


def _l1_reduction(row) -> tuple[float, str]:
    """A row's L1-norm reduction for the verdicts and its claim text: on the trained checkpoints (where the target
    is set) when the table has it, else over all checkpoints (tables written before that column existed)."""
    trained = row.get("l1_sparsity_pct_trained", float("nan"))
    if trained == trained:  # not NaN
        return float(trained), "L1-norm reduction on trained checkpoints (%)"
    return float(row["l1_sparsity_pct"]), "L1-norm reduction, all checkpoints (%)"


def verdicts(tables: Mapping[str, pd.DataFrame], method: str = "ScaleGMN-B") -> pd.DataFrame:
    """Per family, the one-shot method's numbers against the targets and the poster's claims, each verdict computed
    from the table with its threshold stated in the row."""
    rows = []
    for family, df in tables.items():
        t = df.set_index("method")
        if method not in t.index or "Initial" not in t.index:
            continue
        init, one = t.loc["Initial"], t.loc[method]
        gain = one["ce_avg_acc_trained"] - init["ce_avg_acc_trained"]
        need = TARGETS["ce_gain_tanh"] if Family.parse(family).activation == "tanh" else TARGETS["ce_gain_any"]
        rows.append({"family": family, "claim": "CE one shot: gain on trained checkpoints (points)",
                     "value": gain, "threshold": f">= {need:g}", "holds": bool(gain >= need)})
        drop = init["l1_avg_acc_trained"] - one["l1_avg_acc_trained"]
        red, red_claim = _l1_reduction(one)
        rows.append({"family": family, "claim": f"L1 one shot: {red_claim}", "value": red,
                     "threshold": f">= {TARGETS['l1_reduction']:g}", "holds": bool(red >= TARGETS["l1_reduction"])})
        rows.append({"family": family, "claim": "L1 one shot: accuracy drop on trained checkpoints (points)",
                     "value": drop, "threshold": f"<= {TARGETS['l1_max_acc_drop']:g}",
                     "holds": bool(drop <= TARGETS["l1_max_acc_drop"])})
        balanced = f"{method} + L1 balancing"  # ReLU families: the same function, the gauge part of L1 removed
        if balanced in t.index:
            red_b, claim_b = _l1_reduction(t.loc[balanced])
            rows.append({"family": family, "claim": f"L1 one shot + L1 balancing (same function): {claim_b}",
                         "value": red_b, "threshold": f">= {TARGETS['l1_reduction']:g}",
                         "holds": bool(red_b >= TARGETS["l1_reduction"])})
        if "All-zero network" in t.index:
            zero = t.loc["All-zero network", "l1_test_loss"]
            rows.append({"family": family, "claim": "L1 one shot beats the all-zero network on CE + lambda L1",
                         "value": one["l1_test_loss"] - zero, "threshold": "< 0",
                         "holds": bool(one["l1_test_loss"] < zero)})
        sgd = [m for m in t.index if m.startswith("SGD (")]
        if sgd:
            cheapest = min(sgd, key=lambda m: t.loc[m, "ce_time_per_net_s"])
            diff = one["ce_avg_acc"] - t.loc[cheapest, "ce_avg_acc"]
            rows.append({"family": family, "claim": f"CE one shot beats {cheapest} (poster: beats 150 epochs)",
                         "value": diff, "threshold": "> 0", "holds": bool(diff > 0)})
            faster = t.loc[cheapest, "ce_time_per_net_s"] / one["ce_time_per_net_s"]
            rows.append({"family": family, "claim": f"one shot is faster per network than {cheapest} (x)",
                         "value": faster, "threshold": "> 1", "holds": bool(faster > 1)})
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
    """Any small frame as a markdown table (numbers rounded to ``digits``), without the optional tabulate package."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return MISSING if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "|".join(["---"] * len(df.columns)) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
