"""Does an L1 metanet do better when it starts from the trained CE run? Scored on VALIDATION networks only.

    python bench/l1_from_ce.py --family cnn-tanh cnn-relu --lam 0.007 --log l1.jsonl     # both starts per family
    python bench/l1_from_ce.py --family cnn-tanh --lam 0.008 0.009 --starts ce --log l1.jsonl
    python bench/l1_from_ce.py --table l1.jsonl

The zoo and the metanet settings are those of a params file (default ``params/default.yaml``; the zoo is read from,
or generated into, ``--outputs/<name>/zoo`` exactly as ``make run`` does). For each family and lambda the L1 metanet
trains from scratch (``--starts scratch``) and/or from the weights of a CE run trained first with the same settings
(``--starts ce``, what ``meta_l1_from_ce`` does in a pipeline run), picks its best epoch on the validation networks,
and is scored on the validation networks with the validation images: the objective CE + lam L1 (the
selection criterion, trained checkpoints as in training) and, over the trained checkpoints, the accuracy before and
after and the L1-norm reduction. Test networks are never touched: this is how ``meta_l1_from_ce`` and the default's
lambda were chosen (bench/README.md, "L1: starting from the CE run").
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from on_validation import add_run_arguments, emit, load, notebook06_values, one_shot_on_validation  # noqa: E402


def run(family: str, lam: float, start: str, values: dict, outputs: Path) -> dict:
    from workbench import pipeline
    from workbench.objective import l1_reduction
    from workbench.training.optimize import train

    data, zoo, recipe = load(values, family, outputs)
    recipe = recipe.with_train(l1_from_ce=False)  # this script sets the start itself
    spec = zoo.spec
    splits = pipeline.training_splits(zoo, recipe.train.skip_untrained)
    t0 = time.time()
    init = None
    if start == "ce":
        ce_config = recipe.config(spec, objective="ce")
        ce = train(spec, splits["train"], splits["val"], data, ce_config, None, progress=False)
        init = {k: v.detach().clone() for k, v in ce.model.state_dict().items()}
    config = recipe.config(spec, objective="l1", lam=lam)
    res = train(spec, splits["train"], splits["val"], data, config, None, progress=False, init_state=init)
    score = one_shot_on_validation(res.model, zoo, data, lam)
    trained = score["trained"]
    before, after = round(score["acc_before"], 2), round(score["acc_after"], 2)
    best = res.history[res.best_epoch]
    return {"family": family, "lam": lam, "start": start, "params": values["name"],
            "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
            "seconds": round(time.time() - t0), "best_epoch": res.best_epoch,
            "val_objective": round(best["val_loss"], 4),
            "acc_before": before, "acc_after": after, "acc_drop": round(before - after, 2),
            "l1_reduction": round(l1_reduction([(w[trained], b[trained]) for w, b in score["val"].params],
                                               [(w[trained], b[trained]) for w, b in score["new"]]), 1)}


def table(log: Path) -> str:
    """The logged runs as a markdown table (every number read from the log)."""
    head = ("| family | lam | start | best epoch | validation objective (CE + lam L1) | accuracy before -> after (%) "
            "| accuracy drop (points) | L1-norm reduction (%) | date |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for line in log.read_text().splitlines():
        d = json.loads(line)
        lines.append(f"| {d['family']} | {d['lam']:g} | {d['start']} | {d['best_epoch']} | {d['val_objective']:.3f} | "
                     f"{d['acc_before']:.1f} -> {d['acc_after']:.1f} | {d['acc_drop']:.1f} | {d['l1_reduction']:.1f} | "
                     f"{d['date']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--family", nargs="+", default=["cnn-tanh"])
    p.add_argument("--lam", nargs="+", type=float, default=[0.007])
    p.add_argument("--starts", nargs="+", choices=["scratch", "ce"], default=["scratch", "ce"])
    add_run_arguments(p)
    p.add_argument("--table", type=Path, help="print the runs of this log as a markdown table and exit")
    a = p.parse_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    torch.set_num_threads(1)
    values = notebook06_values(a.params)  # what notebook 06 trains the table's L1 metanets with
    for family in a.family:
        for lam in a.lam:
            for start in a.starts:
                emit(run(family, lam, start, values, Path(a.outputs)), a.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
