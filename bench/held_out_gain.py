"""Recipe search: train one metanetwork configuration on a digits zoo and print its held-out one-shot gain.

    python bench/held_out_gain.py --family cnn-tanh --n 2048 --epochs 10 --lr 0.01 --hidden 16 --layers 2 \
        [--lam 0.005] [--gate] [--dropout 0.1] [--noise 0.1] [--skip0] --log runs.jsonl
    python bench/held_out_gain.py --device cuda ...       # zoo generation and metanet training on a GPU
    python bench/held_out_gain.py --table runs.jsonl      # the logged runs as a markdown table

The zoo (``--n`` networks, 4 epochs, checkpoints 0/1/2/4, seed ``--zoo-seed``) is cached under ``--cache``. The
metanet trains on the zoo's training networks, picks its best epoch on the validation networks, and is scored on the
held-out test networks: average test accuracy before -> after per checkpoint epoch, over the trained checkpoints
(epoch >= 1) and over all. One JSON line per run (arguments, gains, the training curve, seconds) is appended to
``--log``. This is how the default recipe was chosen (bench/README.md, "Recipe search").
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


def run(a) -> dict:
    from workbench import pipeline
    from workbench.objective import evaluate, l1_reduction
    from workbench.metanet import MetanetConfig
    from workbench.nets import n_networks
    from workbench.training.train_config import TrainConfig
    from workbench.training.optimize import one_shot, train
    from workbench.zoo import default_spec, load_or_generate

    data = pipeline.get_data("digits", None, 0)
    spec = default_spec(a.family)
    t0 = time.time()
    zoo = load_or_generate(Path(a.cache) / f"{a.family}-{a.n}-{a.zoo_seed}", spec, data, a.n, epochs=4,
                           checkpoints=[0, 1, 2], seed=a.zoo_seed, batch_size=32, device=torch.device(a.device),
                           progress=False, verbose=False)
    zoo_seconds = time.time() - t0
    splits = pipeline.training_splits(zoo, skip_untrained=a.skip0)
    cfg = TrainConfig(lam=a.lam, epochs=a.epochs, lr=a.lr, weight_decay=a.wd, noise=a.noise, group_augment=a.group,
                      batch_networks=a.bn, batch_images=a.bi, seed=a.seed, device=a.device, patience=a.patience,
                      meta=MetanetConfig(hidden=a.hidden, n_layers=a.layers, dropout=a.dropout, gate=a.gate,
                                         symmetry=a.sym))
    res = train(spec, splits["train"], splits["val"], data, cfg, None, progress=False)
    test = zoo.subset(split="test")
    test_params = [(w.cpu(), b.cpu()) for w, b in test.params]
    new, _ = one_shot(res.model, spec, test_params)
    before = evaluate(spec, test_params, data.x_test, data.y_test, a.lam)
    after = evaluate(spec, new, data.x_test, data.y_test, a.lam)
    ep = test.meta["epoch"].to_numpy()
    pct = lambda t, m: round(100 * float(t[torch.as_tensor(m)].mean()), 1)  # noqa: E731
    machine = torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else platform.processor()
    out = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine, "zoo_s": round(zoo_seconds, 1),
           "train_s": round(res.seconds, 1), "best_epoch": res.best_epoch, "ntrain": n_networks(splits["train"]),
           "all": [pct(before["acc"], ep >= 0), pct(after["acc"], ep >= 0)],
           "loss": [round(float(before["loss"].mean()), 3), round(float(after["loss"].mean()), 3)]}
    for e in sorted(set(ep.tolist())):
        out[f"e{e}"] = [pct(before["acc"], ep == e), pct(after["acc"], ep == e)]
    out["trained"] = [pct(before["acc"], ep >= 1), pct(after["acc"], ep >= 1)]
    out["gain_trained"] = round(out["trained"][1] - out["trained"][0], 2)
    if a.lam:
        out["l1red"] = round(l1_reduction(test_params, new), 1)
    out["curve"] = [(r["epoch"], round(r["train_loss"], 3), round(r.get("seen_loss", float("nan")), 3),
                     round(r["val_loss"], 3)) for r in res.history]
    return out


def table(log: Path) -> str:
    """The logged runs as a markdown table (every number read from the log)."""
    head = ("| family | networks | epochs | hidden x layers | lr | dropout | noise | epoch-0 in training | gate | lam | "
            "best epoch | trained ckpts before -> after (%) | gain (points) | all ckpts before -> after (%) | "
            "L1 reduction (%) | test loss before -> after |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for line in log.read_text().splitlines():
        d = json.loads(line)
        a = d["args"]
        lines.append(
            f"| {a['family']} | {a['n']} | {a['epochs']} | {a['hidden']} x {a['layers']} | {a['lr']:g} | "
            f"{a['dropout']:g} | {a['noise']:g} | {'no' if a['skip0'] else 'yes'} | {'yes' if a.get('gate') else 'no'} "
            f"| {a['lam']:g} | {d['best_epoch']} | {d['trained'][0]} -> {d['trained'][1]} | {d['gain_trained']:+.1f} | "
            f"{d['all'][0]} -> {d['all'][1]} | {d.get('l1red', '-')} | {d['loss'][0]} -> {d['loss'][1]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=Path, default=None, help="print the runs logged in this file and exit")
    ap.add_argument("--family", default="cnn-tanh")
    ap.add_argument("--n", type=int, default=512, help="zoo networks")
    ap.add_argument("--zoo-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--group", action="store_true", help="symmetry-group augmentation")
    ap.add_argument("--gate", action="store_true", help="the gated (multiplicative) update")
    ap.add_argument("--sym", default=None, help="override the symmetry (none = the broken GMN)")
    ap.add_argument("--lam", type=float, default=0.0)
    ap.add_argument("--bn", type=int, default=32, help="networks per step")
    ap.add_argument("--bi", type=int, default=128, help="images per step")
    ap.add_argument("--skip0", action="store_true", help="leave the epoch-0 checkpoints out of training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patience", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="where the zoo is generated and the metanet trains (cpu, cuda)")
    ap.add_argument("--cache", default="outputs/bench/zoos")
    ap.add_argument("--log", type=Path, default=Path("outputs/bench/held_out_gain.jsonl"))
    a = ap.parse_args(argv)
    if a.table is not None:
        print(table(a.table), end="")
        return 0
    out = run(a)
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}))
    a.log.parent.mkdir(parents=True, exist_ok=True)
    with open(a.log, "a") as fh:
        fh.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
