"""The headline ratio: time per network of one-shot ScaleGMN optimization vs the SGD budget that reaches the same
average test accuracy (or the largest budget tried, if none does) -- measured side by side in one run.

Self-contained on the embedded digits data: generates (or reuses) a zoo under outputs/bench/, trains a ScaleGMN-B
on its training networks, then times one-shot optimization and vectorised SGD fine-tuning of the same held-out
networks.

    python bench/amortization.py [--family cnn-tanh] [--networks 128] [--meta-epochs 15] [--max-epochs 50]
                                 [--device cpu|cuda] [--out DIR] [--json results.jsonl]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench import pipeline
from workbench.baselines import sgd_finetune, time_one_at_a_time
from workbench.objective import evaluate
from workbench.optimize import one_shot

OUT = Path(__file__).resolve().parent.parent / "outputs" / "bench"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="cnn-tanh")
    parser.add_argument("--networks", type=int, default=128)
    parser.add_argument("--zoo-epochs", type=int, default=4)
    parser.add_argument("--meta-epochs", type=int, default=15)
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--sgd-lr", type=float, default=0.01)
    parser.add_argument("--device", default="cpu", help="where the zoo, the metanet and SGD run")
    parser.add_argument("--out", default=str(OUT), help="cache folder for the zoo and the metanet run")
    parser.add_argument("--json", help="append the measured rows as JSON lines to this file")
    args = parser.parse_args(argv)
    out = Path(args.out)
    records = []

    data = pipeline.get_data("digits")
    zoo = pipeline.get_zoo(out, args.family, data, n_networks=args.networks, zoo_epochs=args.zoo_epochs,
                           device=args.device, progress=False)
    result = pipeline.train_metanet(out, zoo, data, objective="ce", lam=0.0, epochs=args.meta_epochs, hidden=32,
                                    n_layers=3, lr=0.01, device=args.device, progress=False)
    test = pipeline.test_networks(zoo)
    n = len(test)
    one_shot(result.model, zoo.spec, test.params)  # warm-up
    new, seconds = one_shot(result.model, zoo.spec, test.params)
    initial_acc = float(evaluate(zoo.spec, test.params, data.x_test, data.y_test)["acc"].mean()) * 100
    target = float(evaluate(zoo.spec, new, data.x_test, data.y_test)["acc"].mean()) * 100
    budgets = sorted({b for b in (1, 2, 3, 5, 8, 13, 20, 30, 50, 80, 100, 150) if b <= args.max_epochs} | {args.max_epochs})
    runs = sgd_finetune(zoo.spec, test.params, data, epochs=budgets, lr=args.sgd_lr, progress=False,
                        device=args.device)
    sequential = time_one_at_a_time(zoo.spec, test.params, data, epochs=1, sample=2, lr=args.sgd_lr,
                                    device=args.device)
    print(f"{args.family}: {n} held-out networks; initial average test accuracy {initial_acc:.1f}%")
    print("| method | avg test acc (%) | time per network (s) | one-at-a-time SGD time per network (s) |")
    print("|---|---|---|---|")
    print(f"| one-shot ScaleGMN-B | {target:.1f} | {seconds / n:.3g} | - |")
    records.append({"method": "one-shot ScaleGMN-B", "acc": target, "seconds_per_network": seconds / n})
    reached = None
    for epochs in budgets:
        r = runs[epochs]
        acc = float(evaluate(zoo.spec, r.params, data.x_test, data.y_test)["acc"].mean()) * 100
        print(f"| SGD {epochs} epochs (vectorised) | {acc:.1f} | {r.seconds_per_network:.3g} | {sequential * epochs:.3g} |")
        records.append({"method": f"SGD {epochs} epochs (vectorised)", "acc": acc,
                        "seconds_per_network": r.seconds_per_network,
                        "one_at_a_time_seconds_per_network": sequential * epochs})
        if reached is None and acc >= target:
            reached = (epochs, r.seconds_per_network, sequential * epochs)
    if reached is None:
        epochs = budgets[-1]
        reached = (epochs, runs[epochs].seconds_per_network, sequential * epochs)
        print(f"\nno SGD budget up to {epochs} epochs reached the one-shot accuracy; comparing with the largest")
    else:
        print(f"\nSGD first reaches the one-shot accuracy ({target:.1f}%) after {reached[0]} epochs")
    print(f"amortization ratio (SGD time / one-shot time per network): vectorised SGD {reached[1] / (seconds / n):.1f}x, "
          f"one-network-at-a-time SGD {reached[2] / (seconds / n):.1f}x")
    records.append({"method": f"amortization ratio at SGD {reached[0]} epochs", "vectorised_ratio": reached[1] / (seconds / n),
                    "one_at_a_time_ratio": reached[2] / (seconds / n)})
    if args.json:
        with open(args.json, "a") as f:
            for r in records:
                f.write(json.dumps({"bench": "amortization", "device": args.device, "family": args.family,
                                    "networks": n, **r}) + "\n")


if __name__ == "__main__":
    main()
