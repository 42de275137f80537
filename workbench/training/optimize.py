"""Training the ScaleGMN meta-optimizer with the amortized objective.

    L(phi) = mean over networks theta in a batch of [ lambda * ||f_phi(theta)||_1 + CE(u_{f_phi(theta)}(x), y) ]

Gradients flow into the metanetwork only; the zoo networks are inputs. The loop: AdamW with linear warm-up and
cosine decay, gradient clipping, bf16 autocast on CUDA (and, by ``cpu_amp``, on CPUs with native bf16 units),
optionally the compiled metanet (``compile``), a guard against non-finite losses (the step is skipped and the
learning rate halved, logged), validation every epoch with best-checkpoint selection, atomic checkpoints, exact resume after a
kill (per-epoch seeding), tqdm progress and a JSON-lines metrics history.
Under ``torchrun`` the same loop runs with DistributedDataParallel, each rank taking its shard of every batch
of networks. The run's configuration is :mod:`workbench.training.train_config`; what it writes and resumes from,
:mod:`workbench.training.checkpoints`.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from .checkpoints import CheckpointError, RunProgress, resume_run, save_epoch
from ..metanet import NFN, Compiled, ScaleGMN
from ..nets import NetSpec, Params, SpecError, check_params, map_params, n_networks, select
from ..objective import evaluate, objective
from ..system.progress import progress_bar
from ..symmetry import act, group_for, random_element
from .train_config import TrainConfig, build_model, cpu_has_native_bf16, resolve_cpu_amp, resolve_device

__all__ = ["TrainResult", "train", "validate", "one_shot", "augment"]


@dataclass
class TrainResult:
    model: ScaleGMN | NFN
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    out_dir: Path | None = None
    seconds: float = 0.0
    precision: str = "fp32"  # of the training steps: "bf16" (autocast) or "fp32"


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


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


def _step(net: torch.nn.Module, model: torch.nn.Module, spec: NetSpec, config: TrainConfig,
          optimizer: torch.optim.Optimizer, batch: Params, x: Tensor, y: Tensor,
          world: int) -> tuple[float, str | None]:
    """One AdamW step on ``batch`` and images ``x, y``: ``(loss, None)``, or ``(nan, "loss" | "gradient")`` when
    the loss or the gradient is not finite on some rank -- then nothing is stepped."""
    use_amp = resolve_cpu_amp(config, x.device, cpu_has_native_bf16)  # this module's probe (tests patch it here)
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


def _compiled_step(net, model, spec, config, run, batch, x, y, world, events) -> tuple[float, str | None]:
    """:func:`_step`; through a :class:`~workbench.metanet.Compiled` ``net`` the first step compiles (its time is
    logged), and if compiling fails there -- in the forward or the backward -- the step is redone eagerly and the
    run goes on eager (logged)."""
    first = isinstance(net, Compiled) and net.compiled and net.first_call_seconds is None
    if not first:
        return _step(net, model, spec, config, run.optimizer, batch, x, y, world)
    start = time.perf_counter()
    try:
        result = _step(net, model, spec, config, run.optimizer, batch, x, y, world)
    except Exception as err:  # noqa: BLE001  (compiling failed: the eager model does the same)
        net.fall_back(err)
        result = _step(net, model, spec, config, run.optimizer, batch, x, y, world)
    if net.failure is None:
        events.append({"step": run.step, "event": f"torch.compile: first step took {time.perf_counter() - start:.1f} "
                       "s, compiling included"})
    else:
        events.append({"step": run.step, "event": f"torch.compile failed, training eagerly: {net.failure}"})
    return result


def _train_epoch(net: torch.nn.Module, model: torch.nn.Module, spec: NetSpec, config: TrainConfig, run: RunProgress,
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
        loss, problem = _compiled_step(net, model, spec, config, run, batch, inputs.x_train[img],
                                       inputs.y_train[img], inputs.world, events)
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


def _restore_if_non_finite(model: torch.nn.Module, spec: NetSpec, config: TrainConfig, run: RunProgress,
                           inputs: _Inputs, events: list[dict]) -> None:
    """Never carry a NaN model forward: go back to the best weights (the initial ones before any), halve the
    learning rate, start a fresh optimizer, log it."""
    if all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return
    run.lr_scale *= 0.5
    events.append({"step": run.step, "event": "non-finite weights: restored best, lr halved", "lr_scale": run.lr_scale})
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    elif run.initial_state is not None:
        model.load_state_dict(run.initial_state)
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


def _log_epoch(run: RunProgress, model: torch.nn.Module, config: TrainConfig, epoch: int, trained: dict,
               metrics: dict, total_steps: int) -> bool:
    """Append the epoch's record to the history and keep the best weights; True when this epoch is the best."""
    events = trained.pop("events")
    record = {"epoch": epoch, "step": run.step, "train_loss": trained["train_loss"],
              "lr": _lr_at(config, max(0, run.step - 1), total_steps) * run.lr_scale,
              "train_seconds": trained["train_seconds"], "train_graphs_per_s": trained["train_graphs_per_s"],
              "precision": trained["precision"], **metrics}
    if events:
        record["events"] = events
    run.history.append(record)
    run.epoch = epoch
    if not (math.isfinite(metrics["val_loss"]) and metrics["val_loss"] < run.best_val_loss):
        return False
    run.best_epoch, run.best_val_loss = epoch, metrics["val_loss"]
    run.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return True


def train(spec: NetSpec, train_params: Params, val_params: Params, data, config: TrainConfig = TrainConfig(),
          out_dir: str | os.PathLike | None = None, *, resume: bool = True, progress: bool = True,
          stop_after_epoch: int | None = None, monitor: dict[str, Params] | None = None,
          init_state: dict | None = None) -> TrainResult:
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
        init_state: a ``state_dict`` of the same metanetwork to start from instead of the seeded random
            initialisation (e.g. the cross-entropy run an L1 run continues, :attr:`TrainConfig.l1_from_ce`); a run
            that goes non-finite before its first validated epoch is restored to it. A resumed run continues from
            its checkpoint, which already holds what this started from.

    Returns:
        :class:`TrainResult` whose ``model`` holds the best-validation weights.
    """
    device = resolve_device(config.device)
    precision = _precision(config, device)
    inputs = _prepare_inputs(spec, train_params, val_params, data, config, device)
    out = Path(out_dir) if out_dir is not None else None
    writer = out if inputs.rank == 0 else None  # rank 0 alone writes files
    if writer is not None:
        writer.mkdir(parents=True, exist_ok=True)
    model = _initial_model(spec, train_params, config, device, init_state)
    run = RunProgress(_adamw(model, config), initial_state=init_state)
    if resume and out is not None and (out / "checkpoint.pt").exists():
        resume_run(out / "checkpoint.pt", device, spec, config, model, run)
    net = _stepping_model(model, config, inputs, device)
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
        improved = _log_epoch(run, model, config, epoch, {**trained, "precision": precision}, metrics, total_steps)
        if writer is not None:
            save_epoch(writer, spec, config, run, model, improved)
        bar.set_postfix(val_loss=f"{metrics['val_loss']:.3f}", val_acc=f"{metrics['val_acc']:.3f}")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    if writer is not None:
        save_epoch(writer, spec, config, run)
    if inputs.world > 1:
        dist.barrier()
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    return TrainResult(model, run.history, run.best_epoch, run.best_val_loss, out, time.perf_counter() - t0, precision)


def _precision(config: TrainConfig, device: torch.device) -> str:
    """"bf16" when the training steps run in autocast on ``device`` (:func:`resolve_cpu_amp`), else "fp32"; warns
    when ``cpu_amp`` forces bf16 on a CPU without native bf16 units."""
    if config.cpu_amp is True and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("cpu_amp: this CPU has no native bf16 units (avx512_bf16 or AMX), so bf16 autocast runs several "
                      "times slower than fp32 here (bench/README.md); set cpu_amp (meta_cpu_amp) to 'auto' or false",
                      RuntimeWarning, stacklevel=3)
    return "bf16" if resolve_cpu_amp(config, device, cpu_has_native_bf16) else "fp32"


def _initial_model(spec: NetSpec, train_params: Params, config: TrainConfig, device: torch.device,
                   init_state: dict | None) -> ScaleGMN | NFN:
    """The metanetwork a run starts from: seeded from ``config.seed``, its input normalisation fitted to the training
    networks, then ``init_state``'s weights when given."""
    torch.manual_seed(config.seed)
    model = build_model(spec, config).fit_normalization(train_params).to(device)
    if init_state is not None:
        try:
            model.load_state_dict(init_state)
        except RuntimeError as err:
            raise CheckpointError(f"init_state does not fit the {type(model).__name__} of this config "
                                  f"({spec.describe()}): {err}") from err
    return model


def _stepping_model(model, config: TrainConfig, inputs: "_Inputs", device: torch.device) -> torch.nn.Module:
    """What the training steps call: ``model`` in DistributedDataParallel under ``torchrun``, else compiled when
    ``config.compile`` asks (the steps only: validation's one shots keep the eager model, other shapes)."""
    if inputs.world > 1 and config.compile and inputs.rank == 0:
        warnings.warn("TrainConfig.compile is not used under DDP: the ranks train eagerly", RuntimeWarning)
    if inputs.world > 1:
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return Compiled(model) if config.compile else model


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
