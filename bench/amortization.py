"""Matched compute: what SGD costs per network to reach a one shot's accuracy, measured side by side in one run.

Self-contained on the embedded digits data: generates (or reuses) a zoo under outputs/bench/, trains a ScaleGMN-B
on its training networks, then, in one process: the one shot of the held-out networks and the cost of one SGD step
per network on the same held-out batch, timed alternately three times (medians), then SGD from those networks step
by step at every rate of a grid (:func:`workbench.baselines.amortization.sgd_grid`, the rate chosen on the validation
networks). Prints the SGD steps,
seconds and the cost ratio SGD / one shot at the one shot's accuracy (trained checkpoints), each with its 95 %
interval over held-out networks, and the same ratio for one-network-at-a-time SGD.

    python bench/amortization.py [--family cnn-tanh] [--networks 128] [--meta-epochs 15] [--max-epochs 2]
                                 [--lrs 0.01 0.03 0.1 0.3] [--device cpu|cuda] [--out DIR] [--json results.jsonl]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench import pipeline
from workbench.baselines.amortization import matched_compute, sgd_grid, step_grid, time_side_by_side
from workbench.baselines.sgd import time_one_at_a_time
from workbench.training.optimize import one_shot
from workbench.measure.score import score
from workbench.measure.uncertainty import Bootstrap

OUT = Path(__file__).resolve().parent.parent / "outputs" / "bench"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="cnn-tanh")
    parser.add_argument("--networks", type=int, default=128)
    parser.add_argument("--zoo-epochs", type=int, default=4)
    parser.add_argument("--meta-epochs", type=int, default=15)
    parser.add_argument("--max-epochs", type=int, default=2, help="SGD is recorded step by step up to this many epochs")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--device", default="cpu", help="where the zoo, the metanet and SGD run")
    parser.add_argument("--out", default=str(OUT), help="cache folder for the zoo and the metanet run")
    parser.add_argument("--json", help="append the measured rows as JSON lines to this file")
    args = parser.parse_args(argv)
    out = Path(args.out)

    data = pipeline.get_data("digits")
    zoo = pipeline.get_zoo(out, args.family, data, n_networks=args.networks, zoo_epochs=args.zoo_epochs,
                           device=args.device, progress=False)
    recipe = pipeline.Recipe.from_values({"meta_epochs": args.meta_epochs, "meta_hidden": 32, "meta_n_layers": 3,
                                          "meta_lr": 0.01, "device": args.device})
    result = pipeline.train_metanet(out, zoo, data, recipe, progress=False)
    test, val = pipeline.test_networks(zoo), pipeline.test_networks(zoo, split="val")
    step_seconds, shot_seconds = time_side_by_side(test, data, {"ScaleGMN-B": result.model}, lr=args.lrs[0],
                                                   repeats=3, device=args.device)
    new, _ = one_shot(result.model, zoo.spec, test.params)
    shot = score(test, data, new, seconds_per_net=shot_seconds["ScaleGMN-B"])
    val_target = score(val, data, one_shot(result.model, zoo.spec, val.params)[0], split="val").value("acc_trained")
    per_epoch = -(-len(data.split("train")[1]) // 64)
    steps = step_grid(args.max_epochs * per_epoch, per_epoch, args.max_epochs)
    grids = {s: sgd_grid(e, {"initial": e.params}, args.lrs, data, steps=steps, split=s, device=args.device)
             for s, e in (("val", val), ("test", test))}
    boot = Bootstrap(test.meta["net_id"].to_numpy())
    m = matched_compute("ScaleGMN-B", shot, val_target, grids["val"], grids["test"],
                        val.meta["epoch"].to_numpy() >= 1, boot, seconds_per_step=step_seconds,
                        train_seconds=result.seconds)
    sequential_per_step = time_one_at_a_time(zoo.spec, test.params, data, epochs=1, sample=2, lr=m.lr,
                                             device=args.device) / per_epoch
    print(f"{args.family}: {len(test)} held-out entries ({test.meta['net_id'].nunique()} networks); SGD recorded at "
          f"{len(steps)} step counts up to {steps[-1]} steps ({args.max_epochs} epochs), rates {args.lrs}")
    print("| quantity | value [95 % interval] |")
    print("|---|---|")
    rows = [("one-shot accuracy, trained checkpoints (%)", m.one_shot_acc.text(1)),
            ("one shot, seconds per network", f"{m.one_shot_seconds_per_net:.3g}"),
            ("SGD rate (fastest to that accuracy on validation networks)", f"{m.lr:g}"),
            ("SGD steps to reach it", m.steps.text(1)),
            ("SGD seconds per network step (vectorised)", f"{step_seconds:.3g}"),
            ("SGD seconds per network step (one network at a time)", f"{sequential_per_step:.3g}"),
            ("cost ratio SGD / one shot (vectorised)", m.ratio.text(3)),
            ("cost ratio SGD / one shot (one network at a time)",
             f"{m.steps.estimate * sequential_per_step / m.one_shot_seconds_per_net:.3g}"),
            ("break-even networks (metanet training included)", m.break_even.text(0))]
    for name, value in rows:
        print(f"| {name} | {value} |")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"bench": "amortization", "device": args.device, "family": args.family,
                                "entries": len(test), "sequential_seconds_per_step": sequential_per_step,
                                **m.row()}) + "\n")


if __name__ == "__main__":
    main()
