"""What bf16 autocast (``TrainConfig.cpu_amp``) does to the trained metanet, scored on VALIDATION networks only.

    python bench/cpu_amp_accuracy.py --families cnn-tanh mlp-tanh --outputs /tmp/run --log amp.jsonl

The CE ScaleGMN-B of params/default.yaml (notebook 06's settings) is trained twice per family, in fp32
(``cpu_amp=False``) and in bf16 autocast (``cpu_amp=True``: what ``"auto"`` chooses on a CPU with native bf16 units),
from the same seed, and each is scored like ``bench/validation_gain.py``: best validation loss, and the one-shot gain
in accuracy on the validation networks' trained checkpoints with the validation images (one shots in fp32, as
validation always is). Training time and throughput are measured on the same machine, one run after the other.
Test networks are never touched.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from on_validation import add_run_arguments, emit, load, notebook06_values, one_shot_on_validation  # noqa: E402


def run(family: str, cpu_amp: bool, values: dict, outputs: Path) -> dict:
    from workbench import pipeline
    from workbench.training.train_config import cpu_has_native_bf16
    from workbench.training.optimize import train

    data, zoo, recipe = load(values, family, outputs)
    config = recipe.with_train(cpu_amp=cpu_amp).config(zoo.spec, objective="ce", seed=values["seed"])
    splits = pipeline.training_splits(zoo, config.skip_untrained)
    t0 = time.time()
    res = train(zoo.spec, splits["train"], splits["val"], data, config, None, progress=False)
    seconds = time.time() - t0
    score = one_shot_on_validation(res.model, zoo, data)
    return {"family": family, "precision": res.precision, "native_bf16": cpu_has_native_bf16(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "params": values["name"],
            "date": time.strftime("%Y-%m-%d %H:%M"), "train_s": round(seconds, 1), "best_epoch": res.best_epoch,
            "graphs_per_s": round(statistics.median(h["train_graphs_per_s"] for h in res.history), 1),
            "best_val_loss": round(res.best_val_loss, 4), "val_acc_before": round(score["acc_before"], 2),
            "val_acc_after": round(score["acc_after"], 2),
            "val_gain_trained": round(score["acc_after"] - score["acc_before"], 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", nargs="+", default=["cnn-tanh", "mlp-tanh"])
    add_run_arguments(p)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    values = notebook06_values(a.params)
    rows = []
    for family in a.families:
        for cpu_amp in (False, True):
            rows.append(run(family, cpu_amp, values, Path(a.outputs)))
            emit(rows[-1], a.log)
    print("\n| family | precision | training (s) | graphs/s (median epoch) | best val loss | validation accuracy "
          "before -> after (trained checkpoints, %) | gain (points) |\n|---|---|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['family']} | {r['precision']} | {r['train_s']:.0f} | {r['graphs_per_s']:.0f} | "
              f"{r['best_val_loss']:.4f} | {r['val_acc_before']:.1f} -> {r['val_acc_after']:.1f} | "
              f"{r['val_gain_trained']:+.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
