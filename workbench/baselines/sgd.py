"""Iterative baselines: plain SGD fine-tuning of every zoo network, vectorised over the network dimension.

The metanetwork maps weights to fine-tuned weights in one shot; the poster compares it with SGD run for 25, 50,
100 and 150 epochs from the same starting weights, on the same objective (:mod:`workbench.objective`):

    theta_i <- SGD-with-momentum on  CE(u_{theta_i}(x), y) + lam * ||theta_i||_1,   independently for each network i

:func:`sgd_finetune` trains all B networks at once. One autograd graph holds the batched parameters; the loss
that is differentiated is the *sum* over networks of their own per-network losses, so network i receives exactly
the gradient of its own loss (the other terms do not depend on its parameters) and its effective learning rate is
``lr`` -- the same as training it alone. Every network sees the same shuffled minibatches (drawn from ``seed``).
One pass trains to ``max(epochs)`` and snapshots the parameters after each budget, so the 25-epoch result is a
prefix of the 150-epoch run.

Timing: the poster reports seconds *per network*, measured one network at a time (and extrapolated from a
30-epoch run). :func:`sgd_finetune` reports the wall time of the vectorised run for all networks and that time
divided by B; :func:`time_one_at_a_time` measures the one-network-at-a-time figure with the same code path, so the
two can be shown side by side.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .momentum import MomentumState, losses_and_gradient, minibatch_order, prepare, sync
from ..nets import NetSpec, Params, cat_params, map_params, n_networks, select, unflatten_params

__all__ = [
    "SGDResult",
    "StepSnapshots",
    "sgd_finetune",
    "sgd_steps",
    "time_one_at_a_time",
]


@dataclass
class SGDResult:
    """The state of an SGD run after ``epochs`` epochs.

    Attributes:
        epochs: epochs trained so far.
        params: batched parameters after ``epochs`` epochs (detached, on CPU). Networks that diverged hold their
            last parameters whose loss was finite.
        seconds_total: cumulative wall time of the training steps for all B networks together.
        seconds_per_network: ``seconds_total / B``.
        diverged: (B,) bool, True for networks whose loss (or gradient) became non-finite at some step; they were
            frozen from that step on.
        train_loss: (B, epochs) mean training loss (CE + lam * L1) of each network over the minibatches of each
            epoch, evaluated at the parameters before each step (a network that diverged keeps being evaluated at
            its frozen parameters; a non-finite entry shows the epoch in which its loss broke).
    """

    epochs: int
    params: Params
    seconds_total: float
    seconds_per_network: float
    diverged: Tensor
    train_loss: Tensor = field(repr=False)

    @property
    def n_diverged(self) -> int:
        return int(self.diverged.sum())


def _check_budgets(epochs: int | Sequence[int]) -> list[int]:
    budgets = [int(epochs)] if isinstance(epochs, int) else sorted({int(e) for e in epochs})
    if not budgets or budgets[0] < 1:
        raise ValueError(f"epoch budgets must be positive integers, got {epochs!r}")
    return budgets


def _train_chunk(spec: NetSpec, params: Params, x: Tensor, y: Tensor, budgets: list[int], *, lam: float,
                 lr: float | Tensor, momentum: float, batch_size: int, seed: int, amp: bool,
                 forward_kw: dict | None = None, max_steps: int | None = None, progress_bar=None) -> list[SGDResult]:
    """SGD with momentum on a batch of networks already on the training device; one result per budget.

    ``x`` is what :func:`workbench.forward_pass.prepare_inputs` returned for the training inputs (images, or the layer-0
    patches of the dense CNN route) and ``forward_kw`` the keyword arguments it returned. The parameters live in
    one flat ``(B, n_params)`` tensor; each step differentiates through one leaf per weight/bias that is a view
    into it, so the update, the divergence checks and the restore run as a few ops on one tensor.
    """
    device = x.device
    n_nets = n_networks(params)
    forward_kw = forward_kw or {}
    state = MomentumState.start(params)
    step_size = lr.to(device=device, dtype=state.theta.dtype).reshape(-1, 1) if isinstance(lr, Tensor) else float(lr)
    epoch_losses: list[Tensor] = []
    results: list[SGDResult] = []
    seconds = 0.0
    steps = 0

    for epoch, batches in enumerate(minibatch_order(x.shape[0], batch_size, seed, budgets[-1]), start=1):
        sync(device)
        start = time.perf_counter()
        loss_sum = torch.zeros(n_nets, dtype=torch.float64, device=device)
        for idx in batches:
            idx = idx.to(device)
            losses, grad = losses_and_gradient(spec, state, x[idx], y[idx], lam=lam, amp=amp, forward_kw=forward_kw)
            loss_sum += losses.detach().double()
            state.update(losses, grad, step_size, momentum)
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        sync(device)
        seconds += time.perf_counter() - start
        epoch_losses.append((loss_sum / len(batches)).cpu())
        if progress_bar is not None:
            progress_bar.update(1)
            progress_bar.set_postfix(diverged=int(state.diverged.sum()), refresh=False)
        if epoch in budgets:
            results.append(
                SGDResult(
                    epochs=epoch,
                    params=map_params(lambda t: t.cpu().clone(), unflatten_params(spec, state.theta)),
                    seconds_total=seconds,
                    seconds_per_network=seconds / n_nets,
                    diverged=state.diverged.cpu().clone(),
                    train_loss=torch.stack(epoch_losses, 1),
                )
            )
        if max_steps is not None and steps >= max_steps:
            break
    return results


def sgd_finetune(spec: NetSpec, params: Params, data, *, epochs: int | Sequence[int] = (25, 50, 100, 150),
                 lam: float = 0.0, lr: float | Tensor = 0.01, momentum: float = 0.9, batch_size: int = 64,
                 seed: int = 0, device: torch.device | str | None = None, progress: bool = True,
                 dtype: torch.dtype | None = None, amp: bool | None = None, net_chunk: int | None = None,
                 split: str = "train") -> dict[int, SGDResult]:
    """Fine-tune every network from its own weights with SGD + momentum, all networks at once.

    The update is PyTorch's SGD with momentum (no dampening, no Nesterov, no weight decay):
    ``buf <- momentum * buf + grad_i;  theta_i <- theta_i - lr * buf`` for each network i, where ``grad_i`` is the
    gradient of network i's own loss ``objective(spec, theta_i, x_batch, y_batch, lam)``.

    Args:
        spec, params: the networks (B of them); params may be on any device, they are not modified.
        data: a data set with ``split(name) -> (x, y)`` (or ``x_<split>``/``y_<split>`` attributes).
        epochs: the budgets to snapshot; one run trains to ``max(epochs)``.
        lam: L1 weight (0: cross-entropy fine-tuning; > 0: sparsity).
        lr, momentum, batch_size, seed: SGD settings; ``seed`` fixes the minibatch order (shared by all networks).
            ``lr`` may also be a (B,) tensor, one step size per network.
        device: training device (default: CUDA when available, else CPU).
        progress: show a tqdm bar over epochs.
        dtype: parameter and input dtype during training (default: that of ``params``).
        amp: bf16 autocast for the forward pass (default: on for CUDA, off otherwise; never on CPU by default).
        net_chunk: train at most this many networks at a time (each chunk is an independent run with the same
            minibatch order, so the result is the same; times add up). Default: as many as the memory budget of
            ``device`` holds (:func:`workbench.memory.sgd_chunk`; all at once for the digits zoos).
        split: which split to train on.

    Returns:
        ``{budget: SGDResult}`` for every budget in ``epochs``. Networks whose loss or gradient became non-finite
        are frozen at their last finite parameters and flagged in ``SGDResult.diverged`` -- never returned as NaN.
        ``seconds_total`` is the wall time of the training steps (minibatch gathering, forward, backward, update;
        with a CUDA synchronise around each epoch), excluding moving data to the device and taking snapshots.
    """
    budgets = _check_budgets(epochs)
    params, x, y, device, forward_kw = prepare(spec, params, data, split, device, dtype)
    amp = device.type == "cuda" if amp is None else bool(amp)
    n_nets = n_networks(params)
    if isinstance(lr, Tensor) and lr.numel() != n_nets:
        raise ValueError(f"a per-network lr needs {n_nets} entries (one per network), got shape {tuple(lr.shape)}")
    chunk = _default_chunk(spec, n_nets, device, data, batch_size) if net_chunk is None else max(1, int(net_chunk))
    starts = list(range(0, n_nets, chunk))
    settings = dict(lam=lam, momentum=momentum, batch_size=batch_size, seed=seed, amp=amp, forward_kw=forward_kw)
    bar = tqdm(total=budgets[-1] * len(starts), desc=f"SGD {spec.family} x{n_nets}", unit="epoch", disable=not progress)
    per_chunk = []
    try:
        for s in starts:
            part = select(params, slice(s, s + chunk))
            step = lr.reshape(-1)[s:s + chunk] if isinstance(lr, Tensor) else lr
            per_chunk.append(_train_chunk(spec, part, x, y, budgets, lr=step, progress_bar=bar, **settings))
    finally:
        bar.close()
    return _merge_chunks(per_chunk, budgets, n_nets)


@dataclass
class StepSnapshots:
    """SGD's parameters after given numbers of steps (:func:`sgd_steps`).

    Attributes:
        params: ``{step: batched params}`` (detached, on CPU); step 0 is the start.
        steps_per_epoch: minibatches in one epoch of the training split.
        seconds_per_network_step: wall time of the training steps for all networks, divided by networks and steps.
        diverged: (B,) bool, networks frozen because their loss or gradient became non-finite.
    """

    params: dict[int, Params]
    steps_per_epoch: int
    seconds_per_network_step: float
    diverged: Tensor


def sgd_steps(spec: NetSpec, params: Params, data, *, steps: Sequence[int], lr: float | Tensor = 0.01,
              lam: float = 0.0, momentum: float = 0.9, batch_size: int = 64, seed: int = 0,
              device: torch.device | str | None = None, split: str = "train", net_chunk: int | None = None,
              observe: Callable[[int, Params, slice], None] | None = None) -> StepSnapshots:
    """:func:`sgd_finetune` counted in optimizer steps, not epochs: the parameters after each number of ``steps``
    (0 = the start), the minibatch order running on across epochs exactly as in :func:`sgd_finetune` (same seed, same
    batches; after ``steps_per_epoch`` steps the snapshot equals its one-epoch result).

    This is the resolution at which an SGD budget can be matched to a one shot's accuracy: a fraction of an epoch.
    ``lr``: one rate, or a (B,) tensor of one rate per network (e.g. a grid tiled over copies of the networks).
    ``net_chunk``: networks trained at a time (default: as many as the memory budget holds,
    :func:`workbench.memory.sgd_chunk`); chunks are independent runs with the same minibatches, so the result is
    the same up to the float rounding of products over fewer networks. ``observe(step, params, networks)``: called with each snapshot of the networks ``networks`` (a slice
    of the B) instead of keeping it (``params`` of the result is then empty), so that many snapshots of many
    networks need not sit in memory at once; the time it takes is not counted."""
    wanted = sorted({int(s) for s in steps})
    if not wanted or wanted[0] < 0:
        raise ValueError(f"steps must be non-negative integers, got {steps!r}")
    params, x, y, device, forward_kw = prepare(spec, params, data, split, device, None)
    n_nets = n_networks(params)
    if isinstance(lr, Tensor) and lr.numel() != n_nets:
        raise ValueError(f"a per-network lr needs {n_nets} entries (one per network), got shape {tuple(lr.shape)}")
    chunk = _default_chunk(spec, n_nets, device, data, batch_size) if net_chunk is None else max(1, int(net_chunk))
    kept: dict[int, list[Params]] = {}
    seconds, diverged, per_epoch = 0.0, [], -(-x.shape[0] // batch_size)
    for start in range(0, n_nets, chunk):
        part = slice(start, min(n_nets, start + chunk))
        step_size = lr.reshape(-1)[part] if isinstance(lr, Tensor) else lr
        t, div = _steps_chunk(spec, select(params, part), x, y, wanted, step_size, lam=lam, momentum=momentum,
                              batch_size=batch_size, seed=seed, forward_kw=forward_kw, part=part,
                              observe=observe, kept=kept)
        seconds += t
        diverged.append(div)
    snapshots = {k: cat_params(v) if len(v) > 1 else v[0] for k, v in kept.items()}
    return StepSnapshots(snapshots, per_epoch, seconds / max(1, wanted[-1] * n_nets), torch.cat(diverged))


def _default_chunk(spec: NetSpec, n_nets: int, device, data, batch_size: int) -> int:
    """Networks per SGD chunk within the memory budget of ``device`` (:mod:`workbench.memory`)."""
    from ..memory import budget_bytes, sgd_chunk

    image_size = getattr(data, "image_shape", (None,))[-1]
    return sgd_chunk(spec, n_nets, budget_bytes(device), batch_images=batch_size, image_size=image_size)


def _steps_chunk(spec, params, x, y, wanted, lr, *, lam, momentum, batch_size, seed, forward_kw, part, observe,
                 kept) -> tuple[float, Tensor]:
    """One chunk of :func:`sgd_steps`: its training seconds and diverged flags; snapshots go to ``observe`` or are
    appended to ``kept[step]``."""
    device = x.device
    state = MomentumState.start(params)
    step_size = lr.to(device=device, dtype=state.theta.dtype).reshape(-1, 1) if isinstance(lr, Tensor) else float(lr)

    def keep(step: int) -> None:
        snapshot = map_params(lambda t: t.detach().cpu().clone(), unflatten_params(spec, state.theta))
        if observe is None:
            kept.setdefault(step, []).append(snapshot)
        else:
            observe(step, snapshot, part)

    if wanted[0] == 0:
        keep(0)
    done, seconds = 0, 0.0
    epochs = -(-wanted[-1] // -(-x.shape[0] // batch_size))
    for batches in minibatch_order(x.shape[0], batch_size, seed, epochs):
        for idx in batches:
            if done >= wanted[-1]:
                break
            sync(device)
            start = time.perf_counter()
            idx = idx.to(device)
            losses, grad = losses_and_gradient(spec, state, x[idx], y[idx], lam=lam, amp=False,
                                                forward_kw=forward_kw)
            state.update(losses, grad, step_size, momentum)
            sync(device)
            seconds += time.perf_counter() - start
            done += 1
            if done in wanted:
                keep(done)
    return seconds, state.diverged.cpu().clone()


def _merge_chunks(per_chunk: list[list[SGDResult]], budgets: list[int], n_nets: int) -> dict[int, SGDResult]:
    """One :class:`SGDResult` per budget from the chunks' results (networks concatenated, times added up)."""
    out = {}
    for i, budget in enumerate(budgets):
        parts = [results[i] for results in per_chunk]
        total = sum(r.seconds_total for r in parts)
        out[budget] = SGDResult(
            epochs=budget,
            params=cat_params([r.params for r in parts]) if len(parts) > 1 else parts[0].params,
            seconds_total=total,
            seconds_per_network=total / n_nets,
            diverged=torch.cat([r.diverged for r in parts]),
            train_loss=torch.cat([r.train_loss for r in parts]),
        )
    return out


def time_one_at_a_time(spec: NetSpec, params: Params, data, *, epochs: int = 1, sample: int = 4,
                       measure_epochs: int = 1, lam: float = 0.0, lr: float = 0.01, momentum: float = 0.9,
                       batch_size: int = 64, seed: int = 0, device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None, amp: bool | None = None, split: str = "train") -> float:
    """Seconds per network for an ``epochs``-epoch budget when networks are fine-tuned one at a time.

    The first ``sample`` networks are each trained alone (B = 1, the same code path as :func:`sgd_finetune`)
    for ``measure_epochs`` epochs after one untimed warm-up step; the mean per-network time per epoch is then
    multiplied by ``epochs``. The figure is therefore *extrapolated* from the measured epochs -- as the poster's
    SGD times were extrapolated from a 30-epoch run -- not measured over the full budget.
    """
    if sample < 1 or measure_epochs < 1 or epochs < 1:
        raise ValueError(
            f"sample, measure_epochs and epochs must be positive, got {sample}, {measure_epochs}, {epochs}"
        )
    params, x, y, device, forward_kw = prepare(spec, params, data, split, device, dtype)
    amp = device.type == "cuda" if amp is None else bool(amp)
    settings = dict(lam=lam, lr=lr, momentum=momentum, batch_size=batch_size, seed=seed, amp=amp,
                    forward_kw=forward_kw)
    n = min(sample, n_networks(params))
    _train_chunk(spec, select(params, 0), x, y, [1], max_steps=1, **settings)  # warm-up: allocator, kernels
    per_epoch = []
    for i in range(n):
        result = _train_chunk(spec, select(params, i), x, y, [measure_epochs], **settings)[-1]
        per_epoch.append(result.seconds_total / measure_epochs)
    return float(sum(per_epoch) / len(per_epoch) * epochs)
