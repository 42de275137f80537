"""The vectorised training engine: B networks trained at once, each with its own hyperparameters.

Every network gets its own minibatch ``(B, N, ...)``; gradients of all networks come from one backward pass and
one optimizer step updates all of them with per-network learning rates and update rules. The forward pass is
:func:`workbench.forward_pass.forward` with per-network inputs: batched matrix products for MLPs and, for CNNs with small
feature maps such as the digits CNN, for conv layers too (the patches of the train split are computed once),
grouped convolutions for larger maps (see :func:`workbench.forward_pass.conv_route` and bench/README.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..data import Dataset
from ..forward_pass import forward, prepare_inputs
from ..nets import NetSpec, unflatten_params
from .container import ZooError

__all__ = ["train_networks", "SGD_MOMENTUM", "ADAM_BETAS", "ADAM_EPS"]

SGD_MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def train_networks(
    spec: NetSpec,
    data: Dataset,
    theta: Tensor,
    hparams: pd.DataFrame,
    *,
    epochs: int,
    checkpoints: Sequence[int] = (),
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[int, Tensor], Tensor, Tensor]:
    """Train B networks at once from flat parameters ``theta (B, n_params)``, each with its own hyperparameters.

    Network b trains on its own random subset of ``round(train_fraction_b * n_train)`` examples of the train
    split; one epoch is one pass over that subset in ``steps_b = ceil(subset / batch_size)`` minibatches (the last
    one topped up from the start of the shuffled subset), reshuffled every epoch. Networks are processed sorted by
    ``steps_b`` so the networks still inside their epoch at any step are a prefix of the batch and networks with
    small subsets cost nothing once their epoch is done. The loss of network b is
    ``CE + l2_b / 2 * ||theta_b||^2`` (TensorFlow's ``l2_loss`` convention, as in the Small CNN Zoo) with inverted
    dropout at rate ``dropout_b`` after every hidden activation. The update is SGD with momentum 0.9 or Adam
    (betas 0.9, 0.999), per network, with its own learning rate, on the stacked tensors in one step. A network
    whose loss or update becomes non-finite keeps its last finite parameters and is frozen (``diverged``).

    Returns ``({epoch: (B, n_params) CPU parameters}, diverged (B,) bool, steps_per_epoch (B,) int)``; epoch 0 is
    the initialisation, ``epochs`` is always kept. Checkpoints outside 0..epochs are an error.
    """
    device, n_nets = theta.device, theta.shape[0]
    keep_epochs = _kept_epochs(spec, n_nets, hparams, epochs, checkpoints)
    x_train, y_train = data.split("train")
    x_train, y_train = x_train.to(device), y_train.to(device)
    n_train = len(y_train)
    gen = torch.Generator().manual_seed(seed)  # index sampling on the CPU: the same stream on every device
    drop_gen = torch.Generator(device=device).manual_seed(seed + 1)

    plan = _EpochPlan.build(hparams["train_fraction"].to_numpy(dtype=np.float64), n_train, batch_size)
    hp = hparams.iloc[plan.rank].reset_index(drop=True)  # internal order: most steps first
    dropout = torch.tensor(hp["dropout"].to_numpy(dtype=np.float64), dtype=theta.dtype, device=device)
    dropout = dropout if bool((dropout > 0).any()) else None  # a tensor draws masks; None: no dropout at all
    x_train, forward_kw = prepare_inputs(spec, x_train)  # the dense CNN route: patches of every train image, once
    # network b's subset: the first subset[b] entries of its own random order of the train split
    order = torch.argsort(torch.rand(n_nets, n_train, generator=gen), dim=1)  # (B, n_train)

    opt = _PerNetworkOptimizer(theta.detach()[torch.as_tensor(plan.rank, device=device)].clone(), hp)
    unrank = plan.unrank.to(device)
    saved = {0: opt.theta[unrank].cpu()} if 0 in keep_epochs else {}
    bar = tqdm(total=epochs * plan.max_steps, desc=f"{n_nets} x {spec.family}", disable=not progress, leave=False)
    for epoch in range(1, epochs + 1):
        epoch_idx = plan.draw_epoch(order, gen).to(device)  # (B, max_steps * bs)
        for step in range(plan.max_steps):
            na = plan.active[step]
            idx = epoch_idx[:na, step * batch_size:(step + 1) * batch_size]  # (na, bs)
            loss, grad = _loss_and_grad(spec, opt.theta[:na], x_train[idx], y_train[idx],
                                        None if dropout is None else dropout[:na], drop_gen, forward_kw)
            opt.step(grad, loss)
            bar.update(1)
        if epoch in keep_epochs:
            saved[epoch] = opt.theta[unrank].cpu()
    bar.close()
    return saved, opt.frozen[unrank].cpu(), torch.as_tensor(plan.steps_per_epoch)


def _kept_epochs(spec: NetSpec, n_nets: int, hparams: pd.DataFrame, epochs: int, checkpoints: Sequence[int]
                 ) -> list[int]:
    """The sorted epochs to keep (``checkpoints`` and ``epochs``), after checking the arguments fit together."""
    keep_epochs = sorted({int(e) for e in checkpoints} | {int(epochs)})
    if keep_epochs[0] < 0 or keep_epochs[-1] > epochs:
        raise ZooError(f"checkpoint epochs {sorted(checkpoints)} must lie within 0..epochs={epochs}")
    if len(hparams) != n_nets:
        raise ZooError(f"{len(hparams)} hyperparameter rows for {n_nets} networks")
    if spec.kind == "cnn" and spec.image_size is None:
        raise ZooError("training a CNN needs spec.image_size (the input side length)")
    return keep_epochs


@dataclass(frozen=True)
class _EpochPlan:
    """Which examples each network sees when: network b owns ``subset[b]`` examples and ``steps_per_epoch[b]``
    minibatches per epoch. Internally networks are ranked by steps, most first (``rank``; ``unrank`` undoes it),
    so the ``active[s]`` networks still inside their epoch at step ``s`` are a prefix of the batch."""

    rank: np.ndarray  # (B,) internal position -> network
    unrank: Tensor  # (B,) network -> internal position
    subset: Tensor  # (B,) subset sizes in internal order
    steps_per_epoch: np.ndarray  # (B,) in the networks' own order
    max_steps: int
    active: list[int]
    batch_size: int

    @classmethod
    def build(cls, train_fraction: np.ndarray, n_train: int, batch_size: int) -> "_EpochPlan":
        subset = np.maximum(1, np.round(train_fraction * n_train)).astype(np.int64)
        steps_per_epoch = -(-subset // batch_size)
        rank = np.argsort(-steps_per_epoch, kind="stable")
        steps_sorted = steps_per_epoch[rank]
        max_steps = int(steps_sorted[0])
        active = [int((steps_sorted > s).sum()) for s in range(max_steps)]  # networks still in their epoch at step s
        return cls(rank, torch.as_tensor(np.argsort(rank)), torch.as_tensor(subset[rank]), steps_per_epoch,
                   max_steps, active, batch_size)

    def draw_epoch(self, order: Tensor, gen: torch.Generator) -> Tensor:
        """(B, max_steps * batch_size) train-split indices of one epoch: a fresh shuffle of each network's subset
        (the first ``subset[b]`` entries of its ``order (B, n_train)``), repeated from its start to fill the
        last minibatch and the steps after the network's epoch is done (those are never trained on)."""
        n_nets, n_train = order.shape
        keys = torch.rand(n_nets, n_train, generator=gen)
        keys[torch.arange(n_train)[None, :] >= self.subset[:, None]] = 2.0  # positions outside the subset sort last
        perm = torch.argsort(keys, dim=1)  # (B, n_train): a fresh shuffle of each subset first
        slots = torch.arange(self.max_steps * self.batch_size)[None, :] % self.subset[:, None]
        return torch.gather(order, 1, torch.gather(perm, 1, slots))


def _loss_and_grad(spec: NetSpec, theta: Tensor, xb: Tensor, yb: Tensor, dropout: Tensor | None,
                   drop_gen: torch.Generator, forward_kw: dict) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy ``(na,)`` of each network on its own minibatch and its gradient ``(na, n_params)``.

    Shapes: theta (na, n_params), xb (na, bs, ...) images or patches, yb (na, bs)."""
    na = theta.shape[0]
    # one leaf per weight/bias, each a view into theta: no parameter copies, no zero-filled flat gradient
    leaves = [t_.detach().requires_grad_(True) for pair in unflatten_params(spec, theta) for t_ in pair]
    params_ = [(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]
    logits = forward(spec, params_, xb, per_network=True, dropout=0.0 if dropout is None else dropout,
                     generator=drop_gen, **forward_kw)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none")
    loss = ce.reshape(na, -1).mean(1).detach()  # (na,)
    grads = torch.autograd.grad(ce.sum() / yb.shape[1], leaves)  # each network's own gradient
    return loss, torch.cat([g.reshape(na, -1) for g in grads], dim=1)  # (na,), (na, n_params)


class _PerNetworkOptimizer:
    """SGD with momentum or Adam, chosen per network, each with its own learning rate and L2 weight, updating the
    rows of ``theta (B, n_params)`` in place. A network whose loss or update is non-finite is frozen."""

    def __init__(self, theta: Tensor, hp: pd.DataFrame):
        device, dtype = theta.device, theta.dtype
        as_col = lambda col: torch.tensor(hp[col].to_numpy(dtype=np.float64), dtype=dtype, device=device)
        self.lr, self.l2 = as_col("lr")[:, None], as_col("l2")[:, None]
        self.is_adam = torch.tensor((hp["optimizer"] == "adam").to_numpy(dtype=bool), device=device)[:, None]
        # SGD with momentum and Adam share one first-moment update m <- m_decay * m + m_gain * g
        self.m_decay = torch.where(self.is_adam, ADAM_BETAS[0], SGD_MOMENTUM).to(dtype)
        self.m_gain = torch.where(self.is_adam, 1 - ADAM_BETAS[0], 1.0).to(dtype)
        self.theta = theta
        self.m, self.v = torch.zeros_like(theta), torch.zeros_like(theta)
        self.t = torch.zeros(theta.shape[0], 1, dtype=dtype, device=device)  # per-network Adam step count
        self.frozen = torch.zeros(theta.shape[0], dtype=torch.bool, device=device)

    @torch.no_grad()
    def step(self, grad: Tensor, loss: Tensor) -> None:
        """One update of the first ``na = len(grad)`` networks from their gradient ``(na, n_params)`` and loss
        ``(na,)``."""
        na = grad.shape[0]
        params, mv, vv, tv = self.theta[:na], self.m[:na], self.v[:na], self.t[:na]
        adam, lr = self.is_adam[:na], self.lr[:na]
        grad.addcmul_(params, self.l2[:na])  # + d/dtheta l2/2 ||theta||^2
        tv += 1
        mv.mul_(self.m_decay[:na]).addcmul_(grad, self.m_gain[:na])
        vv.mul_(ADAM_BETAS[1]).addcmul_(grad, grad, value=1 - ADAM_BETAS[1])
        # Adam: lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps); SGD: lr * m / (0 * sqrt(v) + 1)
        scale = torch.where(adam, lr / (1 - ADAM_BETAS[0] ** tv), lr) * (~self.frozen[:na, None])
        denom = vv.sqrt().mul_(torch.where(adam, (1 - ADAM_BETAS[1] ** tv).rsqrt(), 0.0))
        denom.add_(torch.where(adam, ADAM_EPS, 1.0))
        update = (mv * scale).div_(denom)
        # a NaN/inf anywhere in a row makes its sum non-finite (as does an overflowing update)
        bad = ~torch.isfinite(update.sum(1)) | ~torch.isfinite(loss)
        if bool(bad.any()):
            self.frozen[:na] |= bad
            update[bad] = 0.0
        params.sub_(update)
