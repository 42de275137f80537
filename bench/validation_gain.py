"""CE one-shot gain of a params file's metanet at several epoch counts, scored on VALIDATION networks only.

    python bench/validation_gain.py --family mlp-tanh mlp-relu --epochs 4 5 --outputs /tmp/run2 --log runs.jsonl

The zoo and the metanet settings are those of notebook 06 for the params file (default ``params/default.yaml``; the
zoo is read from, or generated into, ``--outputs/<name>/zoo`` exactly as ``make run`` does), with the run's epochs
(``meta_epochs``, or ``meta_mlp_epochs`` for an MLP family) replaced by each value of ``--epochs``. Every run trains
on the training networks, picks its best epoch on the validation networks, and is scored on the validation networks'
trained checkpoints with the validation images: the best validation loss, the one-shot gain in accuracy and the
validation-loss curve. Test networks are never touched: this is how the default's ``meta_mlp_epochs`` was chosen
(``params/default.yaml``; records in ``docs/results/mlp-epochs-validation-2026-12-04.jsonl``, written by an
identical ad-hoc script before this one existed).
"""
from __future__ import annotations

import dataclasses

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from on_validation import add_run_arguments, emit, load, notebook06_values, one_shot_on_validation  # noqa: E402


def run(family: str, epochs: int, values: dict, outputs: Path) -> dict:
    from workbench import pipeline
    from workbench.training.optimize import train

    data, zoo, recipe = load(values, family, outputs)
    config = dataclasses.replace(recipe, mlp_epochs=epochs).with_train(epochs=epochs).config(
        zoo.spec, objective="ce", seed=values["seed"])
    splits = pipeline.training_splits(zoo, config.skip_untrained)
    t0 = time.time()
    res = train(zoo.spec, splits["train"], splits["val"], data, config, None, progress=False)
    score = one_shot_on_validation(res.model, zoo, data)
    return {"family": family, "epochs": epochs, "params": values["name"], "date": time.strftime("%Y-%m-%d %H:%M"),
            "s": round(time.time() - t0), "best_epoch": res.best_epoch, "best_val_loss": round(res.best_val_loss, 4),
            "val_gain_trained": round(score["acc_after"] - score["acc_before"], 2),
            "curve": [round(h["val_loss"], 4) for h in res.history]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--family", nargs="+", default=["mlp-tanh"])
    p.add_argument("--epochs", nargs="+", type=int, default=[4, 5])
    add_run_arguments(p)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    values = notebook06_values(a.params)
    for family in a.family:
        for epochs in a.epochs:
            emit(run(family, epochs, values, Path(a.outputs)), a.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
