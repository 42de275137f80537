"""How far numbers drift between CPUs, and where the drift enters.

Two measurements, each printed as a markdown table:

* ``--compare A B``: two results snapshots (``docs/results/...``, written by ``python -m workbench report``) of the
  same computation on two machines; per family and row, the difference of the headline columns (accuracy on trained
  checkpoints for CE and L1, L1-norm reduction), and the largest difference per kind of row.
* ``--capabilities avx2 avx512`` (default): the same small pipeline -- zoo generation, one metanet training, its one
  shot, SGD from the initial and from the one-shot networks at a high and a low rate -- run in subprocesses that
  dispatch torch's kernels of each capability on *this* CPU (``ATEN_CPU_CAPABILITY``), then compared step by step:
  the largest parameter difference of the zoo, the trained metanet and the one shot, and the accuracy differences.
  This separates the float rounding of the kernels from everything else (same code, same machine, same seed).

    python bench/drift.py [--capabilities avx2 avx512] [--family cnn-relu] [--networks 96]
    python bench/drift.py --compare docs/results/drift/avx2-e4d43ed docs/results/drift/avx512-23607f1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compare_snapshots(a: Path, b: Path) -> str:
    """A markdown table of the headline columns' differences (b - a) between two snapshots' results.csv."""
    import pandas as pd

    def load(folder):
        t = pd.read_csv(folder / "results.csv")
        if "label" not in t:  # snapshots written before the typed rows: the old column names
            t = t.rename(columns={"method": "label", "ce_avg_acc_trained": "ce_acc_trained",
                                  "l1_avg_acc_trained": "l1_acc_trained",
                                  "l1_sparsity_pct_trained": "l1_reduction_trained"})
        return t.set_index(["family", "label"])

    ta, tb = load(a), load(b)
    cols = ["ce_acc_trained", "l1_acc_trained", "l1_reduction_trained"]
    both = ta.index.intersection(tb.index)
    diff = (tb.loc[both, cols] - ta.loc[both, cols]).reset_index()
    lines = [f"Differences {b.name} minus {a.name} (points), {len(both)} rows in both:", "",
             "| family | row | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for _, r in diff.iterrows():
        lines.append(f"| {r['family']} | {r['label']} | " + " | ".join(
            "-" if r[c] != r[c] else f"{r[c]:+.2f}" for c in cols) + " |")
    largest = diff[cols].abs().max()
    lines += ["", "Largest absolute difference: " + ", ".join(f"{c} {largest[c]:.2f}" for c in cols)]
    return "\n".join(lines)


def _worker(out: Path, family: str, networks: int) -> None:
    """The small pipeline under this process's kernel capability; writes tensors and numbers to ``out``."""
    import torch

    from workbench import pipeline
    from workbench.baselines.sgd import sgd_finetune
    from workbench.training.optimize import one_shot
    from workbench.measure.score import score

    data = pipeline.get_data("digits")
    zoo = pipeline.get_zoo(out, family, data, n_networks=networks, zoo_epochs=4, progress=False, verbose=False,
                           test_fraction=0.25)
    recipe = pipeline.Recipe.from_values({"meta_epochs": 3, "meta_hidden": 16, "meta_n_layers": 2, "meta_lr": 0.01,
                                          "meta_batch_networks": 32, "meta_skip_untrained": True})
    result = pipeline.train_metanet(out, zoo, data, recipe, progress=False)
    test = pipeline.test_networks(zoo)
    new, _ = one_shot(result.model, zoo.spec, test.params)
    numbers = {"capability": torch.backends.cpu.get_cpu_capability(),
               "zoo_test_acc": score(test, data).value("acc_trained"),
               "one_shot_acc": score(test, data, new).value("acc_trained")}
    for lr in (0.01, 0.1):
        for name, start in (("initial", test.params), ("one_shot", new)):
            run = sgd_finetune(zoo.spec, start, data, epochs=(5,), lr=lr, progress=False)[5]
            numbers[f"sgd5_lr{lr:g}_from_{name}"] = score(test, data, run.params).value("acc_trained")
    torch.save({"zoo": zoo.params, "metanet": result.model.state_dict(), "one_shot": new}, out / "tensors.pt")
    (out / "numbers.json").write_text(json.dumps(numbers))


def _max_diff(a, b) -> float:
    import torch

    if isinstance(a, dict):
        return max(_max_diff(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return max(_max_diff(x, y) for x, y in zip(a, b))
    return float((a.double() - b.double()).abs().max()) if isinstance(a, torch.Tensor) else 0.0


def compare_capabilities(capabilities, family: str, networks: int) -> str:
    """Run :func:`_worker` once per capability in a subprocess and tabulate the differences from the first."""
    import torch

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cap in capabilities:
            out = Path(tmp) / cap
            out.mkdir()
            env = {**os.environ, "ATEN_CPU_CAPABILITY": cap}
            subprocess.run([sys.executable, __file__, "--worker", str(out), "--family", family, "--networks",
                            str(networks)], env=env, check=True, cwd=ROOT)
            runs[cap] = (json.loads((out / "numbers.json").read_text()), torch.load(out / "tensors.pt"))
    first, *rest = capabilities
    lines = [f"{family}, {networks} networks; kernels dispatched: "
             + ", ".join(f"{c} -> {runs[c][0]['capability']}" for c in capabilities), "",
             "| quantity | " + " | ".join(capabilities) + " | largest difference from " + first + " |",
             "|---|" + "---|" * (len(capabilities) + 1)]
    for part in ("zoo", "metanet", "one_shot"):
        diffs = [_max_diff(runs[first][1][part], runs[c][1][part]) for c in rest]
        lines.append(f"| max abs parameter difference: {part} | " + " | ".join("" for _ in capabilities)
                     + f" | {max(diffs):.3g} |")
    for key in runs[first][0]:
        if key == "capability":
            continue
        values = [runs[c][0][key] for c in capabilities]
        lines.append(f"| {key} (%) | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {max(abs(v - values[0]) for v in values[1:]):.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capabilities", nargs="+", default=["avx2", "avx512"])
    parser.add_argument("--family", default="cnn-relu")
    parser.add_argument("--networks", type=int, default=96)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.family, args.networks)
    elif args.compare:
        print(compare_snapshots(*args.compare))
    else:
        print(compare_capabilities(args.capabilities, args.family, args.networks))


if __name__ == "__main__":
    main()
