"""Does ``meta_compile`` pay in a whole training run? The same metanet run of a params file, eager and compiled.

For each family, the cross-entropy run notebook 06 would train from ``params`` (its settings, its zoo under
``outputs/<name>/zoo``, generated as ``make run`` would when missing) is trained twice in this process, in memory
(no run folder is touched): once eagerly and once with ``TrainConfig.compile`` (``workbench.metanet.Compiled``).
Printed per family: wall time of each (the compiled one includes its compiling), the first compiled step's time
(compiling included), the ratio, and the largest difference of the per-epoch validation losses -- the two runs
should agree up to float rounding compounded over the run.

``--cold-cache`` points inductor's on-disk cache at a fresh folder first, so the compile time is what a fresh
machine pays; by default the cache of earlier runs is used, as a second ``make run`` would.

    python bench/compile_training.py [--params params/default.yaml] [--families cnn-tanh mlp-tanh] [--cold-cache]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import tempfile
import time
from pathlib import Path

from on_validation import load, notebook06_values  # bench/on_validation.py

ROOT = Path(__file__).resolve().parents[1]


def compare(values: dict, family: str, outputs: Path) -> dict:
    from workbench import pipeline
    from workbench.training.optimize import train

    data, zoo, recipe = load(values, family, outputs)
    config = recipe.config(zoo.spec, objective="ce", seed=values["seed"])
    config = dataclasses.replace(config, device="cpu")
    splits = pipeline.training_splits(zoo, config.skip_untrained)
    row = {"family": family, "epochs": config.epochs, "train_networks": len(splits["train"][0][0])}
    histories = {}
    for name, cfg in (("eager", config), ("compiled", dataclasses.replace(config, compile=True))):
        start = time.perf_counter()
        result = train(zoo.spec, splits["train"], splits["val"], data, cfg, None, progress=False)
        row[f"{name}_s"] = time.perf_counter() - start
        histories[name] = result.history
    events = [e["event"] for h in histories["compiled"] for e in h.get("events", [])]
    first = [float(m.group(1)) for e in events if (m := re.search(r"first step took ([0-9.]+) s", e))]
    row["first_compiled_step_s"] = first[0] if first else None
    row["compile_failed"] = next((e for e in events if "failed" in e), None)
    row["ratio"] = row["eager_s"] / row["compiled_s"]
    row["max_val_loss_diff"] = max(abs(a["val_loss"] - b["val_loss"])
                                   for a, b in zip(histories["eager"], histories["compiled"]))
    row["best_val_loss"] = [min(h["val_loss"] for h in histories[k]) for k in ("eager", "compiled")]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params" / "default.yaml"))
    parser.add_argument("--families", nargs="+", default=["cnn-tanh", "mlp-tanh"])
    parser.add_argument("--outputs", default=str(ROOT / "outputs"), help="where make run keeps outputs/<name>/zoo")
    parser.add_argument("--cold-cache", action="store_true", help="compile into a fresh inductor cache folder")
    parser.add_argument("--json", help="append one JSON line per family to this file")
    args = parser.parse_args(argv)
    if args.cold_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
    import torch

    values = notebook06_values(args.params)
    print(f"# {args.params}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{os.getloadavg()[0]:.2f}, inductor cache {'fresh' if args.cold_cache else 'as found'}")
    print("| family | epochs | eager (s) | compiled (s) | first compiled step (s) | speed-up | "
          "max val-loss difference | best val loss eager / compiled |\n|---|---:|---:|---:|---:|---:|---:|---|")
    for family in args.families:
        r = compare(values, family, Path(args.outputs))
        first = f"{r['first_compiled_step_s']:.1f}" if r["first_compiled_step_s"] is not None else "failed"
        print(f"| {family} | {r['epochs']} | {r['eager_s']:.1f} | {r['compiled_s']:.1f} | {first} | "
              f"**{r['ratio']:.2f}x** | {r['max_val_loss_diff']:.1e} | {r['best_val_loss'][0]:.4f} / "
              f"{r['best_val_loss'][1]:.4f} |", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"bench": "compile_training", "params": args.params,
                                    "cold_cache": args.cold_cache, **r}) + "\n")


if __name__ == "__main__":
    main()
