"""How the one shot responds to the input's global scale, scored on VALIDATION networks only.

    python bench/scale_response.py --families mlp-relu cnn-relu mlp-tanh --outputs /tmp/run --log scale.jsonl

Every weight and bias of each validation network is multiplied by ``c`` (0.1 ... 100: not a symmetry, another
network) and the CE ScaleGMN-B of params/default.yaml (notebook 06's settings, trained on the training networks,
best epoch on the validation networks, fp32 so both models see the same precision) optimizes it in one shot. The
table gives, per family, model and ``c``: the accuracy of the scaled networks before and after the one shot (%, mean
over the validation networks' trained checkpoints, validation images) and the largest |weight| the one shot
outputs. ReLU families run twice, without (``scale_norm`` off: no path-norm normalisation) and with the path-norm
normalisation (``workbench/metanet/global_scale.py``); at ``c = 1`` the two rows are the before/after of the held-out
quality. The tanh family runs once (``scale_norm`` changes only positive-scale models) as the reference.
Test networks are never touched.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from on_validation import add_run_arguments, emit, load, notebook06_values  # noqa: E402

SCALES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def train_ce(family: str, values: dict, outputs: Path, scale_norm: bool):
    """``(model, zoo, data, seconds)``: the default CE ScaleGMN-B of ``family`` (fp32), trained in memory."""
    from workbench import pipeline
    from workbench.training.optimize import train

    data, zoo, recipe = load(values, family, outputs)
    config = recipe.with_train(cpu_amp=False, scale_norm=scale_norm).config(zoo.spec, objective="ce",
                                                                            seed=values["seed"])
    splits = pipeline.training_splits(zoo, config.skip_untrained)
    t0 = time.time()
    res = train(zoo.spec, splits["train"], splits["val"], data, config, None, progress=False)
    return res, zoo, data, time.time() - t0


@torch.no_grad()
def response(model, zoo, data, scales=SCALES) -> list[dict]:
    """Per scale ``c``: accuracy before/after the one shot of the scaled validation networks, largest |weight| out."""
    from workbench import pipeline
    from workbench.metanet.global_scale import rescale
    from workbench.objective import evaluate
    from workbench.training.optimize import one_shot

    val = zoo.subset(split="val")
    trained = torch.as_tensor(pipeline.trained_mask(val))
    x, y = data.split("val")
    rows = []
    for c in scales:
        scaled = rescale(val.params, torch.full((len(val),), c))
        new, _ = one_shot(model, zoo.spec, scaled)
        pct = lambda m: 100 * float(m["acc"][trained].double().mean())  # noqa: E731
        largest = max(float(w.abs().max()) for w, _ in new)
        rows.append({"c": c, "acc_before": round(pct(evaluate(zoo.spec, scaled, x, y)), 2),
                     "acc_after": round(pct(evaluate(zoo.spec, new, x, y)), 2), "max_abs_weight": largest,
                     "finite": bool(all(torch.isfinite(t).all() for p in new for t in p))})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", nargs="+", default=["mlp-relu", "cnn-relu", "mlp-tanh"])
    add_run_arguments(p, "append one JSON line per trained model")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    values = notebook06_values(a.params)
    records = []
    for family in a.families:
        for scale_norm in ((False, True) if family.endswith("relu") else (True,)):
            res, zoo, data, seconds = train_ce(family, values, Path(a.outputs), scale_norm)
            model = f"ScaleGMN-B{' + scale_norm' if scale_norm and family.endswith('relu') else ''}"
            record = {"family": family, "model": model, "params": values["name"],
                      "date": time.strftime("%Y-%m-%d %H:%M"), "train_s": round(seconds),
                      "best_epoch": res.best_epoch, "best_val_loss": round(res.best_val_loss, 4),
                      "precision": res.precision, "scales": response(res.model, zoo, data)}
            emit(record, a.log)
            records.append(record)
    print("\n| family | model | best val loss | " + " | ".join(f"c = {c:g}" for c in SCALES) + " |")
    print("|---|---|---:|" + "---:|" * len(SCALES))
    for r in records:
        cells = [f"{s['acc_before']:.1f} -> **{s['acc_after']:.1f}** ({s['max_abs_weight']:.2g})" for s in r["scales"]]
        print(f"| {r['family']} | {r['model']} | {r['best_val_loss']:.4f} | " + " | ".join(cells) + " |")
    print("\ncells: accuracy (%) of the scaled validation networks before -> after the one shot (largest |weight| "
          "the one shot outputs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
