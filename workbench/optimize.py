"""Training the ScaleGMN meta-optimizer with the amortized objective.

    L(phi) = mean over networks theta in a batch of [ lambda * ||f_phi(theta)||_1 + CE(u_{f_phi(theta)}(x), y) ]

Gradients flow into the metanetwork only; the zoo networks are inputs. The loop: AdamW with linear warm-up and
cosine decay, gradient clipping, bf16 autocast on CUDA, a guard against non-finite losses (the step is skipped
and the learning rate halved, logged), validation every epoch with best-checkpoint selection, atomic
checkpoints, exact resume after a kill (per-epoch seeding), tqdm progress and a JSON-lines metrics history.
Under ``torchrun`` the same loop runs with DistributedDataParallel, each rank taking its shard of every batch
of networks.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import ConfigError, WorkbenchError
from .io import atomic_path, atomic_write_text
from .metanet import NFN, ScaleGMN
from .metanet.config import META_FIELDS, MetanetConfig
from .nets import NetSpec, Params, SpecError, check_params, map_params, n_networks, select
from .notebook import progress_bar
from .objective import evaluate, objective
from .ranges import check_train_config
from .symmetry import act, group_for, random_element

__all__ = ["TrainConfig", "MetanetConfig", "TrainResult", "CheckpointError", "train", "validate", "load_model",
           "one_shot", "resolve_device", "build_model", "augment"]

#: MetanetConfig fields that came after the run digests were fixed: the flat form leaves them out at their defaults,
#: so a ScaleGMN run keeps the folder (and checkpoint config) it had before they existed
_LEFT_OUT_AT_DEFAULT = ("model", "out_scale_init", "io_embed")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one meta-optimizer training run: the optimization here, the metanetwork in ``meta``.

    Args:
        lam: L1 weight (0 = cross-entropy only; > 0 = sparsity objective).
        epochs: passes over the training networks.
        batch_networks: networks per step (global, across DDP ranks).
        batch_images: images per step (the same images for all networks of the step).
        lr, weight_decay, warmup_steps, grad_clip: AdamW settings.
        seed: seeds initialisation, batch order and dropout.
        device: "auto" (CUDA when present), "cpu" or "cuda[:i]".
        amp: bf16 autocast when on CUDA.
        val_images: cap on validation images per evaluation (None = all).
        val_networks: cap on the validation entries scored per evaluation, taken in zoo order (whole networks with all
            their checkpoints first; None = all). Scoring costs a one-shot pass per epoch, not training.
        noise: weight-space augmentation: every training network of a step gets Gaussian noise of standard deviation
            ``noise`` x (that network's RMS of that layer's weights, resp. biases) added to its input. The objective
            is computed on the metanet's output for the noisy network, so a perturbed network is as valid a training
            input as a zoo network (0 = off).
        group_augment: apply a random element of the activation's symmetry group (hidden-neuron permutations and
            sign flips, or positive scales log-uniform on ``augment_scales``) to every training network of a step.
            Function-preserving; a no-op for the exactly equivariant ScaleGMN up to float rounding, it is what trains
            the symmetry-broken GMN fairly ("GMN-B + symmetry augmentation").
        augment_scales: range of the positive scales drawn by ``group_augment`` for ReLU networks.
        patience: stop when the validation loss has not improved for this many epochs (None = run all epochs).
        train_eval_networks: every epoch the one-shot objective is also measured on this many training networks (the
            same validation images), so the history shows the gap between seen and unseen networks (0 = off).
        meta: the metanetwork (:class:`~workbench.metanet.MetanetConfig`: model, hidden, n_layers, bidirectional,
            symmetry, dropout, gate, ...). Named after the params files' ``meta_`` prefix: ``meta_<field>`` in a
            params file sets the field of that name here or in ``meta``.
    """

    lam: float = 0.0
    epochs: int = 20
    batch_networks: int = 32
    batch_images: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 10.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    val_images: int | None = None
    val_networks: int | None = None
    noise: float = 0.0
    group_augment: bool = False
    augment_scales: tuple[float, float] = (0.25, 4.0)
    patience: int | None = None
    train_eval_networks: int = 128
    meta: MetanetConfig = field(default_factory=MetanetConfig)

    def __post_init__(self):
        check_train_config(self)  # one range table for every setting (workbench/ranges.py)
        if not isinstance(self.meta, MetanetConfig):
            raise ConfigError(f"TrainConfig.meta must be a MetanetConfig, got {type(self.meta).__name__}")
        scales = self.augment_scales
        if len(scales) != 2 or not scales[0] <= scales[1]:
            raise ConfigError(f"augment_scales must be a (low, high) pair with 0 < low <= high, got {scales!r}")

    def to_dict(self) -> dict:
        """The flat form: this config's fields and ``meta``'s side by side (no name is in both), the form every
        checkpoint and run-folder digest has stored since before :class:`MetanetConfig` existed. ``model``,
        ``out_scale_init`` and ``io_embed`` are left out at their defaults, so those digests stay the same."""
        d = dataclasses.asdict(self)
        meta, defaults = d.pop("meta"), MetanetConfig()
        for name in _LEFT_OUT_AT_DEFAULT:
            if meta[name] == getattr(defaults, name):
                del meta[name]
        return {**d, **meta}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config of a flat form (:meth:`to_dict`, any subset; the rest default): each name goes to the class
        that has the field. Checkpoints written before ``meta`` existed hold the same form and load unchanged."""
        own = {f.name for f in dataclasses.fields(cls)} - {"meta"}
        unknown = sorted(set(d) - own - set(META_FIELDS))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; valid settings are "
                             f"{sorted(own | set(META_FIELDS))}")
        settings = {k: v for k, v in d.items() if k in own}
        if "augment_scales" in settings:  # JSON and checkpoints store tuples as lists
            settings["augment_scales"] = tuple(settings["augment_scales"])
        return cls(**settings, meta=MetanetConfig(**{k: v for k, v in d.items() if k in META_FIELDS}))


@dataclass
class TrainResult:
    model: ScaleGMN | NFN
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    out_dir: Path | None = None
    seconds: float = 0.0


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but no CUDA device is available; use device='auto'")
    return dev


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _finite_model(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a hidden temporary, fsync, rename: a kill leaves the previous checkpoint or none."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def build_model(spec: NetSpec, config: TrainConfig | MetanetConfig) -> ScaleGMN | NFN:
    """The (untrained) metanetwork ``config`` (or its ``meta``) describes for networks of ``spec``."""
    meta = config.meta if isinstance(config, TrainConfig) else config
    return (NFN if meta.model == "nfn" else ScaleGMN)(spec, meta)


def augment(spec: NetSpec, params: Params, config: TrainConfig, generator: torch.Generator) -> Params:
    """The training batch as the metanet sees it: a random symmetry-group element per network
    (``config.group_augment``), then per-layer relative Gaussian noise (``config.noise``); unchanged when both are
    off. Draws come from ``generator`` (CPU), so a resumed run sees the same augmented networks."""
    if config.group_augment:
        group = group_for(spec, perm=True)
        g = random_element(spec, n_networks(params), group, generator, scale_range=config.augment_scales,
                           dtype=params[0][0].dtype, device=params[0][0].device)
        params = act(spec, g, params)
    if config.noise:
        def noisy(t: Tensor) -> Tensor:
            rms = t.reshape(t.shape[0], -1).pow(2).mean(1).sqrt().reshape(-1, *([1] * (t.dim() - 1)))  # (B, 1..)
            eps = torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
            return t + config.noise * rms * eps
        params = map_params(noisy, params)
    return params


@torch.no_grad()
def validate(model: ScaleGMN | NFN, spec: NetSpec, params: Params, x: Tensor, y: Tensor, lam: float,
             batch_size: int = 256) -> dict[str, float]:
    """Mean metrics of the one-shot optimized ``params`` (summed across DDP ranks when distributed)."""
    new = model.optimize(spec, params, batch_size=batch_size)
    m = evaluate(spec, new, x, y, lam)
    sums = torch.tensor([m["loss"].sum(), m["acc"].sum(), m["ce"].sum(), m["l1"].sum(), len(m["acc"])],
                        dtype=torch.float64)
    rank, world = _distributed()
    if world > 1:
        sums = sums.to(x.device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    n = float(sums[4])
    return {"val_loss": float(sums[0] / n), "val_acc": float(sums[1] / n), "val_ce": float(sums[2] / n),
            "val_l1": float(sums[3] / n)}


def _adamw(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``model``; the fused kernel where torch has one for the parameters' device (CPU and CUDA): one
    kernel for all ~90 small parameter tensors instead of ~10 ops each, about 10 % of a default training step on a
    2-core CPU (bench/README.md). Same update rule; results differ from the per-tensor loop by float rounding."""
    params = list(model.parameters())
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)


# -- the training loop, in its parts ---------------------------------------------------------------------------------
@dataclass
class _Inputs:
    """What a run reads, on its device: all training networks, this DDP rank's shard of the validation networks
    (capped by ``val_networks``) and of a fixed sample of training networks scored like them (``seen``; None when
    ``train_eval_networks`` is 0), and the images."""

    train: Params
    val: Params
    seen: Params | None
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    device: torch.device
    rank: int
    world: int

    @property
    def n_train(self) -> int:
        return n_networks(self.train)


def _prepare_inputs(spec: NetSpec, train_params: Params, val_params: Params, data, config: TrainConfig,
            device: torch.device) -> _Inputs:
    """The checked inputs of :func:`train`, moved to ``device`` and sharded for this rank."""
    rank, world = _distributed()
    n_train = check_params(spec, train_params, finite=True)
    if not n_train or not check_params(spec, val_params, finite=True):
        raise SpecError("training needs at least one training and one validation network; got "
                        f"{n_train} and {n_networks(val_params)} (an empty split: a zoo of at least 4 networks)")
    if config.batch_networks % world:
        raise ValueError(f"batch_networks={config.batch_networks} must be divisible by the {world} DDP ranks")
    to_device = lambda t: t.to(device)  # noqa: E731
    train_params, val_params = map_params(to_device, train_params), map_params(to_device, val_params)
    if config.val_networks is not None:
        val_params = select(val_params, slice(0, config.val_networks))
    val_params = select(val_params, slice(rank, n_networks(val_params), world))  # each rank validates its shard
    # a fixed sample of training networks, scored like the validation networks: the generalisation gap per epoch
    n_seen = min(config.train_eval_networks, n_train)
    seen = torch.randperm(n_train, generator=torch.Generator().manual_seed(config.seed))[:n_seen].sort().values
    seen_params = select(select(train_params, seen.to(device)), slice(rank, n_seen, world)) if n_seen else None
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    if config.val_images is not None:
        x_val, y_val = x_val[: config.val_images], y_val[: config.val_images]
    return _Inputs(train_params, val_params, seen_params, data.x_train.to(device), data.y_train.to(device), x_val,
                   y_val, device, rank, world)


@dataclass
class _Progress:
    """The state a run carries from epoch to epoch, and all that ``checkpoint.pt`` holds to resume it exactly."""

    optimizer: torch.optim.Optimizer
    epoch: int = -1  # the last finished epoch
    step: int = 0
    lr_scale: float = 1.0  # halved by every non-finite event
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    best_state: dict | None = None


def _checkpoint(spec: NetSpec, config: TrainConfig, run: _Progress, model: torch.nn.Module | None = None) -> dict:
    """The one checkpoint layout: ``best.pt`` (the best weights so far) without ``model``; ``checkpoint.pt``
    (everything :func:`train` resumes from: live weights, optimizer, counters, history, best weights) with it."""
    ckpt = {"spec": spec.to_dict(), "config": config.to_dict()}
    if model is None:
        return {**ckpt, "model": run.best_state, "epoch": run.best_epoch, "val_loss": run.best_val_loss}
    return {**ckpt, "model": model.state_dict(), "optimizer": run.optimizer.state_dict(), "epoch": run.epoch,
            "step": run.step, "lr_scale": run.lr_scale, "history": run.history, "best_epoch": run.best_epoch,
            "best_val_loss": run.best_val_loss, "best_state": run.best_state}


def _resume(path: Path, device: torch.device, spec: NetSpec, config: TrainConfig, model: torch.nn.Module,
            run: _Progress) -> None:
    """Load ``checkpoint.pt`` of an interrupted run into ``model`` and ``run``."""
    ckpt = _resume_checkpoint(path, device, spec, config)
    model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.epoch, run.step, run.lr_scale = ckpt["epoch"], ckpt["step"], ckpt["lr_scale"]
    run.history = list(ckpt["history"])
    run.best_epoch, run.best_val_loss, run.best_state = ckpt["best_epoch"], ckpt["best_val_loss"], ckpt["best_state"]


def _step(net: torch.nn.Module, model: torch.nn.Module, spec: NetSpec, config: TrainConfig,
          optimizer: torch.optim.Optimizer, batch: Params, x: Tensor, y: Tensor,
          world: int) -> tuple[float, str | None]:
    """One AdamW step on ``batch`` and images ``x, y``: ``(loss, None)``, or ``(nan, "loss" | "gradient")`` when
    the loss or the gradient is not finite on some rank -- then nothing is stepped."""
    use_amp = config.amp and x.device.type == "cuda"
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        new = net(batch)
        loss = objective(spec, new, x, y, config.lam).mean()
    finite = torch.isfinite(loss.detach()).to(torch.float32)
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    optimizer.zero_grad(set_to_none=True)
    if finite.item() < 1:
        return math.nan, "loss"
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    if not bool(torch.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        return math.nan, "gradient"
    optimizer.step()
    return float(loss.detach()), None


def _train_epoch(net: torch.nn.Module, model: torch.nn.Module, spec: NetSpec, config: TrainConfig, run: _Progress,
                 inputs: _Inputs, epoch: int, total_steps: int) -> dict:
    """One pass over the training networks. Seeded per epoch, so a resumed run sees exactly the batches, images,
    augmentations and dropout masks of an uninterrupted one. A non-finite step is skipped and halves the learning
    rate (logged in ``events``). Returns the epoch's part of the history record."""
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    torch.manual_seed(config.seed * 7919 + epoch)
    order = torch.randperm(inputs.n_train, generator=gen)
    local = config.batch_networks // inputs.world
    model.train()
    loss_sum, n_steps, events = 0.0, 0, []
    t0 = time.perf_counter()
    for s in range(max(1, inputs.n_train // config.batch_networks)):
        idx = order[s * config.batch_networks:(s + 1) * config.batch_networks]
        idx = idx[inputs.rank * local:(inputs.rank + 1) * local].to(inputs.device)
        img = torch.randint(0, inputs.x_train.shape[0], (config.batch_images,), generator=gen).to(inputs.device)
        for group in run.optimizer.param_groups:
            group["lr"] = _lr_at(config, run.step, total_steps) * run.lr_scale
        batch = augment(spec, select(inputs.train, idx), config, gen)
        loss, problem = _step(net, model, spec, config, run.optimizer, batch, inputs.x_train[img],
                              inputs.y_train[img], inputs.world)
        if problem is None:
            loss_sum, n_steps = loss_sum + loss, n_steps + 1
        else:  # never step on NaN/inf: skip, halve the learning rate, log it
            run.lr_scale *= 0.5
            events.append({"step": run.step, "event": f"non-finite {problem}: step skipped, lr halved",
                           "lr_scale": run.lr_scale})
        run.step += 1
    seconds = time.perf_counter() - t0
    if inputs.world > 1:  # log the global mean loss, not rank 0's half of each batch
        total = torch.tensor([loss_sum], dtype=torch.float64, device=inputs.device)
        dist.all_reduce(total)
        loss_sum = float(total) / inputs.world
    return {"train_loss": loss_sum / max(1, n_steps), "train_seconds": seconds,
            "train_graphs_per_s": n_steps * config.batch_networks / max(seconds, 1e-9), "events": events}


def _restore_if_non_finite(model: torch.nn.Module, spec: NetSpec, config: TrainConfig, run: _Progress,
                           inputs: _Inputs, events: list[dict]) -> None:
    """Never carry a NaN model forward: go back to the best weights (the initial ones before any), halve the
    learning rate, start a fresh optimizer, log it."""
    if _finite_model(model):
        return
    run.lr_scale *= 0.5
    events.append({"step": run.step, "event": "non-finite weights: restored best, lr halved", "lr_scale": run.lr_scale})
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    else:
        torch.manual_seed(config.seed)
        initial = build_model(spec, config).fit_normalization(map_params(lambda t: t.cpu(), inputs.train))
        model.load_state_dict(initial.state_dict())
    run.optimizer = _adamw(model, config)


def _epoch_metrics(model: torch.nn.Module, spec: NetSpec, config: TrainConfig, inputs: _Inputs,
                   monitor: dict[str, Params] | None) -> dict[str, float]:
    """The one-shot metrics of the epoch: ``val_*`` (selects the best epoch), ``seen_*`` (training networks) and
    ``<name>_*`` for every monitored set (never used to select anything)."""
    model.eval()
    x, y = inputs.x_val, inputs.y_val
    metrics = validate(model, spec, inputs.val, x, y, config.lam)
    scored = {"seen": inputs.seen} if inputs.seen is not None else {}
    scored.update({name: map_params(lambda t: t.to(inputs.device), p) for name, p in (monitor or {}).items()})
    for name, params in scored.items():
        metrics.update({k.replace("val_", f"{name}_"): v
                        for k, v in validate(model, spec, params, x, y, config.lam).items()})
    return metrics


def _log_epoch(run: _Progress, model: torch.nn.Module, config: TrainConfig, epoch: int, trained: dict,
               metrics: dict, total_steps: int) -> bool:
    """Append the epoch's record to the history and keep the best weights; True when this epoch is the best."""
    events = trained.pop("events")
    record = {"epoch": epoch, "step": run.step, "train_loss": trained["train_loss"],
              "lr": _lr_at(config, max(0, run.step - 1), total_steps) * run.lr_scale,
              "train_seconds": trained["train_seconds"], "train_graphs_per_s": trained["train_graphs_per_s"],
              **metrics}
    if events:
        record["events"] = events
    run.history.append(record)
    run.epoch = epoch
    if not (math.isfinite(metrics["val_loss"]) and metrics["val_loss"] < run.best_val_loss):
        return False
    run.best_epoch, run.best_val_loss = epoch, metrics["val_loss"]
    run.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return True


def _save_epoch(out: Path, spec: NetSpec, config: TrainConfig, run: _Progress, model: torch.nn.Module | None = None,
                improved: bool = False) -> None:
    """The run's files after an epoch: ``best.pt`` when ``improved``, then ``checkpoint.pt``, then ``metrics.jsonl``
    (a kill between two of them is resumable). Without ``model``, at the end of a run: a run killed between its last
    checkpoint and the files after it resumes with no epoch left to run, so ``metrics.jsonl`` and a missing
    ``best.pt`` are brought up to the checkpoint's state."""
    history = "".join(json.dumps(r) + "\n" for r in run.history)
    if model is None:
        atomic_write_text(out / "metrics.jsonl", history)
        if run.best_state is not None and not (out / "best.pt").exists():
            _atomic_save(_checkpoint(spec, config, run), out / "best.pt")
        return
    if improved:
        _atomic_save(_checkpoint(spec, config, run), out / "best.pt")
    _atomic_save(_checkpoint(spec, config, run, model), out / "checkpoint.pt")
    atomic_write_text(out / "metrics.jsonl", history)


def train(
    spec: NetSpec,
    train_params: Params,
    val_params: Params,
    data,
    config: TrainConfig = TrainConfig(),
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    monitor: dict[str, Params] | None = None,
) -> TrainResult:
    """Train a ScaleGMN (or the metanetwork ``config.meta`` names) on ``train_params`` (zoo networks) to minimise
    the amortized objective on ``data``.

    Args:
        data: a :class:`workbench.data.Dataset` (``x_train, y_train, x_val, y_val``).
        out_dir: where ``checkpoint.pt`` (latest, for resume), ``best.pt`` (best validation loss) and
            ``metrics.jsonl`` go; None keeps everything in memory.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists and was written by the same config.
        stop_after_epoch: end early after this epoch (used to simulate a kill in tests).
        monitor: extra named network sets scored every epoch like the validation networks (history keys
            ``<name>_loss``, ``<name>_acc``, ...) for plots such as held-out gain vs training steps; never used to
            select anything.

    Returns:
        :class:`TrainResult` whose ``model`` holds the best-validation weights.
    """
    device = resolve_device(config.device)
    inputs = _prepare_inputs(spec, train_params, val_params, data, config, device)
    out = Path(out_dir) if out_dir is not None else None
    writer = out if inputs.rank == 0 else None  # rank 0 alone writes files
    if writer is not None:
        writer.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = build_model(spec, config).fit_normalization(train_params).to(device)
    run = _Progress(_adamw(model, config))
    if resume and out is not None and (out / "checkpoint.pt").exists():
        _resume(out / "checkpoint.pt", device, spec, config, model, run)
    net = model
    if inputs.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    total_steps = max(1, inputs.n_train // config.batch_networks) * config.epochs
    t0 = time.perf_counter()
    bar = progress_bar(range(run.epoch + 1, config.epochs), desc=f"train {spec.family} lam={config.lam:g}",
                       disable=not progress or inputs.rank != 0, initial=run.epoch + 1, total=config.epochs)
    for epoch in bar:
        if config.patience is not None and run.best_epoch >= 0 and epoch - 1 - run.best_epoch >= config.patience:
            break  # early stopping: no validation improvement for `patience` epochs (checked here so resume agrees)
        trained = _train_epoch(net, model, spec, config, run, inputs, epoch, total_steps)
        _restore_if_non_finite(model, spec, config, run, inputs, trained["events"])
        metrics = _epoch_metrics(model, spec, config, inputs, monitor)
        improved = _log_epoch(run, model, config, epoch, trained, metrics, total_steps)
        if writer is not None:
            _save_epoch(writer, spec, config, run, model, improved)
        bar.set_postfix(val_loss=f"{metrics['val_loss']:.3f}", val_acc=f"{metrics['val_acc']:.3f}")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    if writer is not None:
        _save_epoch(writer, spec, config, run)
    if inputs.world > 1:
        dist.barrier()
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    return TrainResult(model, run.history, run.best_epoch, run.best_val_loss, out, time.perf_counter() - t0)


class CheckpointError(WorkbenchError, ValueError):
    """A metanetwork checkpoint is unreadable, unsafe, incomplete or for another architecture."""


def _unpickling_refusal(err: Exception) -> str:
    """The informative line of torch's weights-only refusal (it comes wrapped in a long generic notice)."""
    lines = [l.strip() for l in str(err).splitlines() if l.strip()]
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation", "WeightsUnpickler")
    detail = [l for l in lines if not l.startswith(boilerplate)]
    return (detail[0] if detail else lines[0] if lines else type(err).__name__)[:200].rstrip(".")


def load_model(path: str | os.PathLike, map_location="cpu", *, spec: NetSpec | None = None) -> ScaleGMN | NFN:
    """A trained ScaleGMN (or NFN, as its config says) from ``best.pt`` (or ``checkpoint.pt``); loads tensors only,
    never code.

    ``spec``: the architecture the caller expects; a checkpoint trained for another one is an error. Raises
    :class:`CheckpointError` naming the file for a truncated, corrupt, incomplete or mismatched checkpoint, or one
    that holds anything but tensors and plain containers (which would need code to unpickle)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no metanetwork checkpoint at {path}; train one first (notebook 04 or "
                                "`python -m workbench train`)")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; expected a checkpoint such as <run folder>/best.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to unpickle non-tensor objects (loading with weights_only=True, which never runs "
            f"code): {_unpickling_refusal(err)}. Only checkpoints written by the workbench can be loaded"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt: "
                              f"{type(err).__name__}: {str(err)[:200]}); retrain or restore it") from None
    missing = [k for k in ("spec", "config", "model") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        found = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a metanetwork checkpoint: it lacks {missing} (found {found})")
    try:
        found_spec = NetSpec.from_dict(ckpt["spec"])
        config = TrainConfig.from_dict(ckpt["config"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid spec or config in the checkpoint: {err}") from None
    if spec is not None and found_spec != spec:
        raise CheckpointError(f"{path} was trained for {found_spec.describe()}; expected {spec.describe()}. Use the "
                              "checkpoint of that architecture or retrain")
    state = ckpt["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'model' must be a state dict of tensors")
    # cheap shape checks before building: a forged spec could otherwise allocate an enormous graph
    n_types = found_spec.widths[0] + found_spec.n_layers - 1 + found_spec.widths[-1]
    meta = config.meta
    cheap = (("type_mul", (n_types, meta.hidden)), ("edge_mul", (found_spec.n_layers, meta.hidden)))
    if meta.model == "nfn":
        cheap = (("emb_in", (found_spec.widths[0], meta.hidden)), ("w_norm", (found_spec.n_layers,)))
    for key, want in cheap:
        got = tuple(state[key].shape) if key in state else None
        if got != want:
            raise CheckpointError(f"{path}: its weights do not fit the architecture it names ({found_spec.describe()}, "
                                  f"hidden {meta.hidden}): {key} has shape {got}, expected {want}")
    try:
        model = build_model(found_spec, config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot build the metanetwork it describes: {err}") from None
    expected = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if wrong or missing or unexpected:
        raise CheckpointError(f"{path}: its weights do not fit the metanetwork for {found_spec.describe()} "
                              f"(hidden {meta.hidden}, {meta.n_layers} layers): shape mismatches {wrong[:5]}, "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state)
    return model.eval()


_RESUME_FIELDS = {"optimizer": dict, "epoch": int, "step": int, "lr_scale": float, "history": list,
                  "best_epoch": int, "best_val_loss": float}


def _resume_checkpoint(path: Path, device, spec: NetSpec, config: TrainConfig) -> dict:
    """``checkpoint.pt`` of an interrupted run, after the checks of :func:`load_model` (tensors only, a known spec
    and config, weights that fit) and the resume fields' types; a CheckpointError names what is wrong."""
    load_model(path, map_location="cpu")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if ckpt["config"] != config.to_dict() or ckpt["spec"] != spec.to_dict():
        raise CheckpointError(f"{path} was written by a different configuration or architecture; "
                              "delete it or use another output folder to start afresh")
    for key, kind in _RESUME_FIELDS.items():
        ok = isinstance(ckpt.get(key), kind) and not isinstance(ckpt.get(key), bool)
        if not ok and not (kind is float and isinstance(ckpt.get(key), int)):
            raise CheckpointError(f"{path} cannot be resumed: {key!r} must be of type {kind.__name__}, got "
                                  f"{type(ckpt.get(key)).__name__}; delete it to start the run afresh")
    if ckpt.get("best_state") is not None and not isinstance(ckpt["best_state"], dict):
        raise CheckpointError(f"{path} cannot be resumed: 'best_state' must be a state dict; delete it to start afresh")
    return ckpt


def one_shot(model: ScaleGMN | NFN, spec: NetSpec, params: Params, batch_size: int = 256) -> tuple[Params, float]:
    """Optimize ``params`` in one forward pass; returns the new params (on CPU) and the wall time in seconds."""
    if not check_params(spec, params):
        raise SpecError("one-shot optimization got 0 networks (an empty zoo split or subset?)")
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    new = model.optimize(spec, params, batch_size=batch_size)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return map_params(lambda t: t.cpu(), new), seconds
