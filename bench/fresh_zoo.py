"""The default run's meta-optimizers on a freshly generated zoo: networks of another zoo seed, never seen in training.

    python bench/fresh_zoo.py [--params params/default.yaml] [--run outputs/default] [--seed 1] [--networks 128]

For every family of notebook 06 it reloads the finished cross-entropy ScaleGMN-B run that notebook 06 scored (the
params file's settings, as notebook 06 reads them; ``make run`` must have finished), generates a zoo of
``--networks`` networks with the same settings but zoo seed ``--seed`` (cached under ``--cache``), applies the
metanet to every entry in one shot, and prints the average test accuracy before -> after per checkpoint epoch, over
the trained checkpoints (epoch >= 1) and over all -- beside the same numbers on the run's own held-out networks.
Where the run also holds the family's L1 ScaleGMN-B run, a second table gives its one shot on the trained
checkpoints of both zoos: accuracy before -> after, the L1-norm reduction and, for ReLU families, the reduction after
L1 balancing (the same function, :func:`workbench.balance.balance_l1`). ``--json`` appends one record per family and
zoo.
"""
from __future__ import annotations

import dataclasses

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def gains(spec, model, zoo, data) -> dict:
    """Average test accuracy (%) before and after the one shot, per checkpoint epoch, trained and all:
    ``{name: (before, after, entries)}`` from :func:`workbench.pipeline.gain_by_checkpoint`."""
    from workbench.objective import evaluate
    from workbench.training.optimize import one_shot
    from workbench.pipeline import gain_by_checkpoint

    new, _ = one_shot(model, spec, zoo.params)
    before = evaluate(spec, zoo.params, data.x_test, data.y_test)["acc"]
    after = evaluate(spec, new, data.x_test, data.y_test)["acc"]
    frame = gain_by_checkpoint(zoo, before, after)
    return {r.checkpoint: (float(r.before), float(r.after), int(r.entries)) for r in frame.itertuples()}


def l1_scores(spec, model, zoo, data) -> dict:
    """The L1 one shot on the trained checkpoints of ``zoo``: average test accuracy (%) before and after, the L1-norm
    reduction (%) and, for ReLU networks, the reduction after balancing (same function)."""
    import torch

    from workbench.balance import balance_l1
    from workbench.objective import evaluate, l1_reduction
    from workbench.training.optimize import one_shot
    from workbench.pipeline import trained_mask

    trained = torch.as_tensor(trained_mask(zoo))
    params = [(w[trained], b[trained]) for w, b in zoo.params]
    new, _ = one_shot(model, spec, params)
    acc = lambda p: 100 * float(evaluate(spec, p, data.x_test, data.y_test)["acc"].double().mean())  # noqa: E731
    out = {"acc_before": acc(params), "acc_after": acc(new), "l1_reduction": l1_reduction(params, new),
           "entries": int(trained.sum())}
    if spec.activation == "relu":
        out["l1_reduction_balanced"] = l1_reduction(params, balance_l1(spec, new).params)
    return out


def run(args) -> list[dict]:
    from workbench import pipeline
    from workbench.run.params import notebook_values

    params, values = notebook_values(args.params, "06")
    out = Path(args.run) if args.run else ROOT / "outputs" / params.name
    recipe = pipeline.Recipe.from_values(values)
    seed = values["seed"]
    data = pipeline.DataRecipe(values["dataset"], values["data_path"], seed).load()
    zoo_recipe = pipeline.ZooRecipe(values["n_networks"], values["zoo_epochs"], seed, values["zoo_path"],
                                    test_fraction=values["zoo_test_fraction"])
    records = []
    for family in pipeline.check_families(values["families"]):
        zoo = zoo_recipe.load(out, family, data, progress=False, verbose=False)
        run = dict(method="scalegmn", lam=values["lam"], seed=seed)
        if not pipeline.run_exists(out, zoo, recipe, objective="ce", **run):
            raise SystemExit(f"error: {out} holds no finished CE ScaleGMN-B run of {family} for {args.params}; "
                             f"run `make run` (or python -m workbench run {args.params}) first")
        result = pipeline.train_metanet(out, zoo, data, recipe, objective="ce", progress=False, **run)
        l1_run = None
        if pipeline.run_exists(out, zoo, recipe, objective="l1", **run):
            l1_run = pipeline.train_metanet(out, zoo, data, recipe, objective="l1", progress=False, **run)
        held_out = pipeline.test_networks(zoo, values["eval_networks"])
        t0 = time.time()
        fresh = dataclasses.replace(zoo_recipe, n_networks=args.networks, seed=args.seed).load(
            Path(args.cache), family, data, progress=False, verbose=False)
        made = time.time() - t0
        for name, z in ((f"default zoo, held out (seed {seed})", held_out), (f"fresh zoo (seed {args.seed})", fresh)):
            g = gains(zoo.spec, result.model, z, data)
            records.append({"bench": "fresh_zoo", "family": family, "zoo": name,
                            "networks": int(z.meta["net_id"].nunique()), "gains": g, "run": str(result.out_dir),
                            **({"zoo_seconds": round(made, 1)} if "fresh" in name else {}),
                            **({"l1": l1_scores(zoo.spec, l1_run.model, z, data), "lam": values["lam"]}
                               if l1_run is not None else {})})
    return records


def table(records: list[dict]) -> str:
    epochs = sorted({k for r in records for k in r["gains"] if k.isdigit()}, key=int)
    head = (["family", "zoo", "networks"] + [f"gain, epoch {e}" for e in epochs]
            + ["trained ckpts before -> after (%)", "gain, trained", "gain, all"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        g = r["gains"]
        cells = [r["family"], r["zoo"], str(r["networks"])]
        cells += [f"{g[e][1] - g[e][0]:+.1f}" if e in g else "" for e in epochs]
        b, a, _ = g["trained"]
        cells += [f"{b:.1f} -> {a:.1f}", f"{a - b:+.1f}", f"{g['all'][1] - g['all'][0]:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def l1_table(records: list[dict]) -> str:
    """The L1 one shot's numbers per family and zoo (records with an ``l1`` entry); empty without any."""
    rows = [r for r in records if "l1" in r]
    if not rows:
        return ""
    head = ["family", "zoo", "lam", "trained entries", "accuracy before -> after (%)", "accuracy drop (points)",
            "L1-norm reduction (%)", "after L1 balancing (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r["l1"]
        balanced = f"{s['l1_reduction_balanced']:.1f}" if "l1_reduction_balanced" in s else "-"
        lines.append(f"| {r['family']} | {r['zoo']} | {r['lam']:g} | {s['entries']} | {s['acc_before']:.1f} -> "
                     f"{s['acc_after']:.1f} | {s['acc_before'] - s['acc_after']:.1f} | {s['l1_reduction']:.1f} | "
                     f"{balanced} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params" / "default.yaml"))
    parser.add_argument("--run", default=None, help="the finished run's folder (default outputs/<params name>)")
    parser.add_argument("--seed", type=int, default=1, help="zoo seed of the fresh zoo (the run's own is its seed)")
    parser.add_argument("--networks", type=int, default=128, help="networks in the fresh zoo (all of them scored)")
    parser.add_argument("--cache", default=str(ROOT / "outputs" / "bench" / "fresh-zoos"))
    parser.add_argument("--json", help="append one JSON line per family and zoo to this file")
    args = parser.parse_args(argv)
    records = run(args)
    run_dir = Path(records[0]["run"]).parents[2] if records else args.run
    print(f"# {args.params}: the run in {run_dir}, fresh zoo seed {args.seed}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(table(records), end="")
    if l1_table(records):
        print()
        print(l1_table(records), end="")
    if args.json:
        with open(args.json, "a") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
