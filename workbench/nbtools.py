"""Notebook housekeeping: keep only the outputs nbval compares (cells marked ``# NBVAL_CHECK_OUTPUT``)."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
KERNELSPEC = {"name": "workbench", "display_name": "Python (workbench)", "language": "python"}


def strip_unchecked_outputs(path: str | Path) -> None:
    """Clear outputs of every code cell that nbval does not check; pin the kernel name; drop execution noise."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)  # widget state (e.g. progress bars) is not an output nbval compares
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if CHECK_MARK not in cell.source:
            cell.outputs = []
            cell.execution_count = None
        else:
            # keep only stream/text outputs: they are what nbval compares
            cell.outputs = [o for o in cell.outputs if (o.get("output_type") == "stream" and o.get("name") == "stdout") or o.get("output_type") == "execute_result"]
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        strip_unchecked_outputs(p)
