"""How long and how much memory a params file's run takes on this device, printed before it starts.

For each selected notebook, :func:`estimate` counts what the notebook does with the file's settings and the sizes
:func:`workbench.run.preflight.check_inputs` found -- metanetwork runs (each once, as the notebooks reuse a finished run
folder) and their optimizer steps, per-epoch validation, SGD network-epochs (zoo generation, the baselines of notebook
06, the lambda sweep), one-shot passes and scoring (network x image forward passes) -- and prices every unit with
:class:`~workbench.run.calibration.UnitCosts` measured on this device a moment before (:func:`workbench.run.calibration.
calibrate`). Runs with ``meta_patience`` may stop early: the time is an upper bound of the epochs asked for.
Independent jobs run in ``workers`` processes, so a notebook's time is its work over ``workers``.

Peak memory per notebook is the largest single step -- a metanetwork training batch, an evaluation chunk (sized
within the budget by :mod:`workbench.memory`), a one-shot batch, a batch of SGD networks -- plus what stays resident
(the zoo's weights, twice, and the images). A step whose own need exceeds the budget is listed: evaluation chunks and
the SGD baselines (:func:`workbench.memory.sgd_chunk` networks at a time) cannot, but a metanetwork batch
(``meta_batch_networks``) and a zoo generation are not chunked by the budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .calibration import UnitCosts
from ..memory import GIB, eval_chunk_bytes, eval_chunks
from .preflight import RunInputs, families_of

__all__ = ["NotebookCost", "estimate", "render", "recipe_of"]

ONE_SHOT_BATCH = 256  # networks per one-shot pass (workbench.training.optimize.validate, tools.optimize_zoo)
SGD_BATCH = 64  # images per SGD step of the baselines


@dataclass
class NotebookCost:
    """What one notebook does and costs: counts, seconds and peak bytes (see the module docstring)."""

    notebook: str
    runs: int = 0
    steps: int = 0
    network_epochs: float = 0.0
    network_images: float = 0.0
    seconds: float = 0.0
    peak_bytes: float = 0.0
    peak_what: str = ""
    over_budget: dict = field(default_factory=dict)  # step -> bytes, for steps that need more than the budget

    def step(self, what: str, need: float, budget: float, chunked: bool = False) -> None:
        """Record a step's memory: the notebook's peak, and the steps over the budget (unless chunked to it)."""
        if need > self.peak_bytes:
            self.peak_bytes, self.peak_what = need, what
        if need > budget and not chunked:
            self.over_budget[what] = max(need, self.over_budget.get(what, 0.0))


def recipe_of(values: dict):
    """The training recipe a notebook builds from its values (:meth:`workbench.pipeline.Recipe.from_values`)."""
    from ..pipeline import Recipe

    return Recipe.from_values({"device": "auto", **values})


def _entries(counts, split: str, trained_only: bool, networks: int | None = None) -> int:
    """Entries of ``split`` (trained ones only with ``trained_only``), of the first ``networks`` networks if capped."""
    row = counts.loc[split]
    n = int(row["trained"] if trained_only else row["entries"])
    if networks is not None and row["networks"]:
        n = min(n, math.ceil(n * networks / row["networks"]))
    return n


class _Pricer:
    """Prices work of one run's settings with the measured costs, into a :class:`NotebookCost`."""

    def __init__(self, inputs: RunInputs, costs: dict[str, UnitCosts], budget: float):
        self.inputs, self.costs, self.budget = inputs, costs, budget

    def scoring(self, cost: NotebookCost, family: str, entries: int, images: int, passes: float = 1.0) -> float:
        """Seconds of ``passes`` evaluations of ``entries`` networks on ``images`` (and their memory)."""
        from ..zoo import default_spec

        spec = default_spec(family, self._dataset())
        size = spec.image_size if spec.kind == "cnn" else None
        nets, imgs = eval_chunks(spec, max(1, entries), max(1, images), int(self.budget), size)
        cost.step("an evaluation chunk", eval_chunk_bytes(spec, nets, imgs, size), self.budget, chunked=True)
        cost.network_images += passes * entries * images
        return passes * entries * images * self.costs[family].eval_s

    def run(self, cost: NotebookCost, family: str, counts, config, monitor: int = 0, steps: int | None = None) -> None:
        """One metanetwork run of ``config`` on a zoo of ``counts``: its steps and per-epoch validation."""
        unit, skip = self.costs[family], config.skip_untrained
        n_train = _entries(counts, "train", skip)
        n_val = min(_entries(counts, "val", skip), config.val_networks or 10**12)
        seen = min(config.train_eval_networks, n_train)
        per_epoch = max(1, n_train // config.batch_networks)
        epochs = config.epochs if steps is None else max(1, math.ceil(steps / per_epoch))
        scored = n_val + seen + monitor
        images = min(config.val_images or self.inputs.images["val"], self.inputs.images["val"])
        cost.runs += 1
        cost.steps += epochs * per_epoch
        cost.seconds += epochs * per_epoch * config.batch_networks * unit.step_s
        cost.seconds += epochs * (scored * unit.shot_s + self.scoring(cost, family, scored, images))
        cost.step(f"a metanetwork batch of {config.batch_networks} {family} networks",
                  config.batch_networks * unit.step_bytes, self.budget)
        cost.step("a one-shot batch", min(ONE_SHOT_BATCH, scored) * unit.shot_bytes, self.budget)

    def sgd(self, cost: NotebookCost, family: str, networks: int, epochs: float, what: str,
            chunked: bool = False) -> None:
        """``networks`` x ``epochs`` SGD network-epochs on the training images: all networks at once, or with
        ``chunked`` as many as fit in the budget (:func:`workbench.memory.sgd_chunk`)."""
        unit = self.costs[family]
        cost.network_epochs += networks * epochs
        cost.seconds += networks * epochs * self.inputs.images["train"] * unit.sgd_s
        need = networks * SGD_BATCH * unit.sgd_bytes
        cost.step(what, min(need, self.budget) if chunked else need, self.budget, chunked=chunked)

    def _dataset(self) -> str:
        return next(v["dataset"] for v in self.inputs.values.values() if v.get("dataset"))


# -- what each notebook does --------------------------------------------------------------------------------------
class _Counter:
    """The notebooks' work for one run, each metanetwork run counted once (the notebooks reload a finished run)."""

    def __init__(self, inputs: RunInputs, pricer: _Pricer):
        self.inputs, self.pricer, self.done = inputs, pricer, set()

    def counts(self, values: dict, family: str, scaling: bool = False):
        n = int((values.get("scaling_n_networks") if scaling else None) or values["n_networks"])
        return self.inputs.counts[(family, n)]

    def metanet(self, cost: NotebookCost, values: dict, family: str, method: str, objective: str, seed: int,
                lam: float, recipe) -> None:
        """A run of ``method`` unless an earlier notebook (or this one) trained it already; an L1 run that starts from
        its CE run (``l1_from_ce``) brings that run along."""
        from ..zoo import default_spec

        if objective == "l1" and recipe.train.l1_from_ce:
            self.metanet(cost, values, family, method, "ce", seed, lam, recipe)
        spec = default_spec(family, values["dataset"])
        config = recipe.config(spec, method=method, objective=objective, lam=lam, seed=seed)
        key = (family, objective, config.digest())  # what names the run's folder
        if key in self.done:
            return
        self.done.add(key)
        self.pricer.run(cost, family, self.counts(values, family), config)

    def held_out(self, values: dict, family: str, split: str = "test") -> int:
        return _entries(self.counts(values, family), split, False, values.get("eval_networks"))


def _nb03(c: _Counter, values: dict, cost: NotebookCost) -> None:
    images = sum(c.inputs.images.values())
    for family in values["families"]:
        if values.get("zoo_path") and family.startswith("cnn"):
            continue  # read from disk
        counts = c.counts(values, family)
        c.pricer.sgd(cost, family, int(counts["networks"].sum()), int(values["zoo_epochs"]),
                     f"generating the {family} zoo (all networks at once)")
        cost.seconds += c.pricer.scoring(cost, family, int(counts["entries"].sum()), images)


def _nb04(c: _Counter, values: dict, cost: NotebookCost) -> None:
    recipe, family = recipe_of(values), values["family"]
    for objective in ("ce", "l1"):
        c.metanet(cost, values, family, "scalegmn", objective, int(values["seed"]), float(values["lam"]), recipe)
    test = c.held_out(values, family)
    cost.seconds += c.pricer.scoring(cost, family, test, c.inputs.images["test"], passes=2)
    cost.seconds += test * c.pricer.costs[family].shot_s


def _nb05(c: _Counter, values: dict, cost: NotebookCost) -> None:
    from ..pipeline import ablation_objectives

    recipe, seed, lam = recipe_of(values), int(values["seed"]), float(values["lam"])
    families = values["ablation_families"]
    per_family = ablation_objectives(families, values["objectives"], values.get("l1_ablation_families"))
    for family in families:
        runs = [(m, o, seed + s) for o in per_family[family] for m in values["methods"]
                for s in range(int(values["n_seeds"]))]
        for method, objective, run_seed in runs:
            c.metanet(cost, values, family, method, objective, run_seed, lam, recipe)
        test = c.held_out(values, family)
        cost.seconds += c.pricer.scoring(cost, family, test, c.inputs.images["test"], passes=len(runs) + 1)
        cost.seconds += len(runs) * test * c.pricer.costs[family].shot_s


def _nb06(c: _Counter, values: dict, cost: NotebookCost) -> None:
    recipe, seed, lam = recipe_of(values), int(values["seed"]), float(values["lam"])
    methods, budgets = list(values["table_methods"]), [int(e) for e in values["sgd_epochs"]]
    for family in values["families"]:
        for method in methods:
            for objective in ("ce", "l1"):
                c.metanet(cost, values, family, method, objective, seed, lam, recipe)
        for s in range(1, int(values.get("headline_seeds") or 1)):
            c.metanet(cost, values, family, methods[0], "ce", seed + s, lam, recipe)
        _sgd_table(c, values, family, cost, len(methods), budgets)


def _sgd_table(c: _Counter, values: dict, family: str, cost: NotebookCost, n_methods: int, budgets: list) -> None:
    """Notebook 06's SGD work for one family: the step grid from every start at every rate (validation and test
    networks), the L1 rate tuning, the budgets (CE and L1), the fixed-rate control and the warm starts."""
    test, val = c.held_out(values, family), c.held_out(values, family, "val")
    rates = len(values.get("sgd_lr_grid") or [values["sgd_lr"]])
    finetune = int(values.get("finetune_epochs") or 0)
    grid_epochs, starts = max(2, finetune), 1 + n_methods
    images = c.inputs.images
    for entries, split in ((val, "validation"), (test, "test")):  # one grid after the other
        c.pricer.sgd(cost, family, starts * rates * entries, grid_epochs,
                     f"the SGD grid of {starts * rates * entries:,} {family} copies ({split})", chunked=True)
    recorded = 2 * math.log(max(2, grid_epochs * images["train"] / SGD_BATCH)) / math.log(1.4) + grid_epochs
    cost.seconds += c.pricer.scoring(cost, family, starts * rates * test, images["test"], passes=recorded)
    cost.seconds += c.pricer.scoring(cost, family, starts * rates * val, images["val"], passes=recorded)
    c.pricer.sgd(cost, family, rates * val, finetune or min(budgets), "the SGD rate tuning", chunked=True)
    c.pricer.sgd(cost, family, 2 * test, max(budgets), f"the SGD baselines of {test:,} {family} networks",
                 chunked=True)
    c.pricer.sgd(cost, family, test, 2 * finetune + 2, "the SGD controls and warm starts", chunked=True)
    passes = 2 + 3 * n_methods + 2 * len(budgets) + 3
    cost.seconds += c.pricer.scoring(cost, family, test, images["test"], passes=passes)


def _nb07(c: _Counter, values: dict, cost: NotebookCost) -> None:
    seed, family = int(values["seed"]), values["lam_family"]
    sweep = recipe_of(values)
    val = c.held_out(values, family, "val")
    tune = min(val, c.held_out({**values, "eval_networks": 32}, family, "val"))  # lam_sweep's sgd_networks
    for lam in values["lam_values"]:
        c.metanet(cost, values, family, "scalegmn", "l1", seed, float(lam), sweep)
        rates = len(values.get("sgd_lr_grid") or [])
        budget = max(values["lam_sgd_epochs"])
        c.pricer.sgd(cost, family, tune * rates, min(values["lam_sgd_epochs"]), "the lambda sweep's SGD rate tuning")
        c.pricer.sgd(cost, family, val, budget, "the lambda sweep's SGD", chunked=True)
        cost.seconds += c.pricer.scoring(cost, family, val, c.inputs.images["val"], 3 + len(values["lam_sgd_epochs"]))
    _scaling(c, values, cost, sweep)


def _scaling(c: _Counter, values: dict, cost: NotebookCost, recipe) -> None:
    """Notebook 07's scaling runs: every (size, seed) trains for ``scaling_steps`` steps, monitoring the held-out
    networks every epoch (trained in memory: never reused)."""
    from ..zoo import default_spec

    for family in values["scaling_families"]:
        counts = c.counts(values, family, scaling=True)
        test = c.held_out(values, family)
        for size in values["scaling_sizes"]:
            share = min(1.0, int(size) / max(1, int(counts.loc["train", "networks"])))
            sub = counts.copy()
            sub.loc["train"] = (counts.loc["train"] * share).round().astype(int)
            for s in values["scaling_seeds"]:
                config = recipe.config(default_spec(family, values["dataset"]), objective="ce", seed=int(s))
                c.pricer.run(cost, family, sub, config, monitor=test, steps=int(values["scaling_steps"]))
            cost.seconds += c.pricer.scoring(cost, family, test, c.inputs.images["test"], 2 * len(values["scaling_seeds"]))


_NOTEBOOKS = {"03": _nb03, "04": _nb04, "05": _nb05, "06": _nb06, "07": _nb07}


def _resident_bytes(inputs: RunInputs, values: dict) -> float:
    """The zoo weights of the notebook's families (the input and a one-shot copy) and the images, float32."""
    from ..zoo import default_spec

    total = 4.0 * sum(inputs.images.values()) * math.prod(inputs.image_shape or (1,))
    for family in families_of(values):
        counts = inputs.counts.get((family, int(values["n_networks"])))
        if counts is not None:
            total += 2 * 4.0 * int(counts["entries"].sum()) * default_spec(family, values["dataset"]).n_params
    return total


def estimate(inputs: RunInputs, costs: dict[str, UnitCosts], budget: float) -> list[NotebookCost]:
    """The cost of every selected notebook of a run (see the module docstring), in order."""
    pricer = _Pricer(inputs, costs, budget)
    counter = _Counter(inputs, pricer)
    rows = []
    for key, values in inputs.values.items():
        cost = NotebookCost(key)
        if key in _NOTEBOOKS:
            _NOTEBOOKS[key](counter, values, cost)
        if inputs.device == "cpu":  # independent jobs share the cores; on one GPU they share the GPU
            jobs = max(cost.runs, len(families_of(values)), 1)
            cost.seconds /= max(1, min(int(values.get("workers") or 1), jobs))
        cost.peak_bytes += _resident_bytes(inputs, values)
        rows.append(cost)
    return rows


def calibration_request(inputs: RunInputs) -> dict:
    """What to measure for a run: its families, data set, device and the metanetwork of its first training
    notebook (the ablation's other methods are priced as ScaleGMN)."""
    from ..metanet.config import META_FIELDS

    trainer = next((v for v in inputs.values.values() if any(k.startswith("meta_") for k in v)), None)
    recipe = recipe_of(trainer or {})
    families = sorted({f for v in inputs.values.values() for f in families_of(v) if "n_networks" in v})
    dataset = next((v["dataset"] for v in inputs.values.values() if v.get("dataset")), "digits")
    meta = recipe.train.to_dict()
    return {"families": families, "dataset": dataset, "device": inputs.device,
            "meta": {k: v for k, v in meta.items() if k in META_FIELDS},
            "batch_images": recipe.train.batch_images}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render(rows: list[NotebookCost], device: str, budget: float, where: str) -> str:
    """The estimate as text: one line per notebook, the total, and the steps over the memory budget."""
    lines = [f"[workbench] estimate on {device} ({where}); memory budget {budget / GIB:,.1f} GiB per process",
             f"  {'notebook':8s} {'metanet runs':>12s} {'steps':>11s} {'SGD net-epochs':>15s} "
             f"{'forward net-images':>19s} {'time':>10s} {'peak memory':>12s}"]
    for r in rows:
        lines.append(f"  {r.notebook:8s} {r.runs:>12,d} {r.steps:>11,d} {r.network_epochs:>15,.0f} "
                     f"{r.network_images:>19,.3g} {_duration(r.seconds):>10s} {r.peak_bytes / GIB:>8,.1f} GiB"
                     + (f"  ({r.peak_what})" if r.peak_what else ""))
    total = sum(r.seconds for r in rows)
    peak = max((r.peak_bytes for r in rows), default=0.0)
    lines.append(f"  total: about {_duration(total)}, at most {peak / GIB:,.1f} GiB at once (the time is an upper "
                 "bound where meta_patience stops runs early)")
    return "\n".join(lines)


def over_budget(rows: list[NotebookCost]) -> list[str]:
    """``"<notebook>: <step>: <GiB>"`` for every step whose own need exceeds the budget."""
    return [f"notebook {r.notebook}: {step}: {need / GIB:,.1f} GiB" for r in rows for step, need in r.over_budget.items()]


def _device_memory(device: str) -> float:
    """The memory of ``device`` on this machine in bytes (0 when unknown)."""
    import torch

    from ..memory import physical_memory_bytes

    dev = torch.device(device)
    if dev.type == "cuda":
        return float(torch.cuda.get_device_properties(dev).total_memory)
    return float(physical_memory_bytes())


def check_run(params, notebooks, *, log=print, costs: dict[str, UnitCosts] | None = None) -> list[NotebookCost]:
    """Before a run: check what ``params`` points at (:func:`~workbench.run.preflight.check_inputs`), measure the
    per-unit costs on its device (unless ``costs`` are given), print the estimate, and refuse -- a
    :class:`~workbench.run.preflight.PreflightError` -- a run with a step that needs more memory than the budget."""
    from .calibration import calibrate
    from ..system.machine import machine_description
    from ..memory import budget_bytes
    from .preflight import PreflightError, check_inputs

    inputs = check_inputs(params, notebooks)
    gb = params.run.get("memory_gb")
    budget = float(gb) * GIB if gb else float(budget_bytes(inputs.device))
    have = _device_memory(inputs.device)
    if have and budget > have:
        raise PreflightError(f"memory_gb in {params.path} is {budget / GIB:,.1f} GiB per process, more than the "
                             f"{have / GIB:,.1f} GiB of {inputs.device} on this machine; lower it")
    request = calibration_request(inputs)
    if costs is None and request["families"]:
        log(f"[workbench] measuring the per-unit costs of {', '.join(request['families'])} on {inputs.device} ...")
        costs = calibrate(**request, budget=budget)
    machine = machine_description()
    where = (f"{machine.get('gpu') or machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; "
             "per-unit costs measured just now")
    rows = estimate(inputs, costs or {}, budget)
    log(render(rows, inputs.device, budget, where))
    problems = over_budget(rows)
    if problems:
        raise PreflightError(
            f"{params.path}: these steps would need more memory than the budget of {budget / GIB:,.1f} GiB per process "
            "(they are not split to fit it):\n  - " + "\n  - ".join(problems) + "\nlower the setting each names "
            "(meta_batch_networks for a metanetwork batch, eval_networks for the SGD baselines, n_networks for zoo "
            "generation) or raise memory_gb if this machine has the memory")
    return rows
