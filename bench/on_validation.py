"""What the validation-only benches share (``l1_from_ce.py``, ``validation_gain.py``): a params file read as notebook
06 reads it, the zoo where ``make run`` keeps it, the metanet settings, one-shot scores on the validation networks'
trained checkpoints with the validation images, and the JSON-lines log. Test networks are never touched here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def add_run_arguments(parser, log_help: str = "append one JSON line per run") -> None:
    """The options every validation bench takes: the params file, the outputs folder holding its zoo, the log."""
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--outputs", default="outputs", help="folder holding <params name>/zoo (as make run)")
    parser.add_argument("--log", type=Path, help=log_help)


def notebook06_values(params_path: str) -> dict:
    """The values notebook 06 would run with for ``params_path`` (it trains the results table's metanets), plus the
    run's ``name``."""
    from workbench.run.params import notebook_values

    params, values = notebook_values(params_path, "06")
    return {**values, "name": params.name}


def load(values: dict, family: str, outputs: Path):
    """``(data, zoo, recipe)``: the data set, the family's zoo under ``outputs/<name>/zoo`` (read, or generated as
    ``make run`` would) and the training recipe of the values (with the library's device default)."""
    from workbench import pipeline

    data = pipeline.DataRecipe(values["dataset"], values["data_path"], values["seed"]).load()
    zoo = pipeline.ZooRecipe(values["n_networks"], values["zoo_epochs"], values["seed"],
                             test_fraction=values["zoo_test_fraction"]).load(Path(outputs) / values["name"], family,
                                                                             data, progress=False, verbose=False)
    return data, zoo, pipeline.Recipe.from_values(values).with_train(device="auto")


def one_shot_on_validation(model, zoo, data, lam: float = 0.0) -> dict:
    """The model's one shot of the zoo's validation networks, scored on their trained checkpoints with the validation
    images: ``acc_before``/``acc_after`` (%) and the metrics of :func:`workbench.objective.evaluate` before and after
    (all validation entries), plus the trained mask and the new params."""
    from workbench import pipeline
    from workbench.objective import evaluate
    from workbench.training.optimize import one_shot

    val = zoo.subset(split="val")
    trained = torch.as_tensor(pipeline.trained_mask(val))
    x, y = data.split("val")
    new, _ = one_shot(model, zoo.spec, val.params)
    before, after = evaluate(zoo.spec, val.params, x, y, lam), evaluate(zoo.spec, new, x, y, lam)
    pct = lambda m: 100 * float(m["acc"][trained].double().mean())  # noqa: E731
    return {"acc_before": pct(before), "acc_after": pct(after), "before": before, "after": after,
            "trained": trained, "val": val, "new": new}


def emit(record: dict, log: Path | None) -> None:
    """Print ``record`` as one JSON line and append it to ``log`` when given."""
    print(json.dumps(record), flush=True)
    if log:
        with Path(log).open("a") as f:
            f.write(json.dumps(record) + "\n")
