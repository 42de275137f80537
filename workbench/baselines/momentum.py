"""SGD with momentum for B networks at once: the minibatch order they share, their inputs on the device, one step.

The engine of the SGD baselines (:mod:`workbench.baselines.sgd`, counted in epochs or in steps): the parameters of B
networks live in one flat ``(B, n_params)`` tensor (:class:`MomentumState`); each step differentiates the *sum* over
networks of their own losses through one leaf per weight/bias that is a view into it (:func:`losses_and_gradient`),
so network i receives exactly the gradient of its own loss, and updates every network that is still finite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from ..forward_pass import prepare_inputs
from ..nets import NetSpec, Params, check_params, flatten_params, map_params, unflatten_params
from ..objective import objective

__all__ = ["MomentumState", "default_device", "minibatch_order", "sync", "losses_and_gradient", "prepare"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def minibatch_order(n_samples: int, batch_size: int, seed: int, n_epochs: int) -> Iterator[list[Tensor]]:
    """Yield, per epoch, the list of index tensors of that epoch's minibatches (a fresh permutation per epoch,
    drawn from one CPU generator seeded with ``seed``; the last batch may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    generator = torch.Generator().manual_seed(int(seed))
    for _ in range(n_epochs):
        perm = torch.randperm(n_samples, generator=generator)
        yield list(perm.split(batch_size))


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA), so that a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class MomentumState:
    """SGD-with-momentum state of B networks on one device: the flat parameters ``theta (B, n_params)``, those of
    the step before (``previous``: two buffers that swap roles every step), the momentum buffer, and which networks
    still train (``active``) or have diverged (``diverged``, both ``(B,)``)."""

    theta: Tensor
    previous: Tensor
    buf: Tensor
    active: Tensor
    diverged: Tensor

    @classmethod
    def start(cls, params: Params) -> "MomentumState":
        theta = flatten_params(map_params(Tensor.detach, params)).clone()  # (B, n_params)
        n_nets, device = theta.shape[0], theta.device
        return cls(theta, theta.clone(), torch.zeros_like(theta), torch.ones(n_nets, dtype=torch.bool, device=device),
                   torch.zeros(n_nets, dtype=torch.bool, device=device))

    @torch.no_grad()
    def update(self, losses: Tensor, grad: Tensor, step_size: float | Tensor, momentum: float) -> None:
        """One momentum step of every active network with a finite loss and gradient; a network whose loss, gradient
        or new parameters are not finite stops (diverged) and keeps its last finite parameters."""
        theta, previous, buf, active = self.theta, self.previous, self.buf, self.active
        loss_ok = torch.isfinite(losses.detach())
        # A non-finite loss means the current parameters are already bad: go back to the previous ones,
        # whose loss was finite at the previous step.
        restore = active & ~loss_ok
        if bool(restore.any()):
            theta.copy_(torch.where(restore[:, None], previous, theta))
        # one sum per network finds a NaN/inf anywhere in its row (or a sum so large it overflows, which
        # only an exploding network reaches)
        ok = active & loss_ok & torch.isfinite(grad.sum(1))
        if not bool(ok.all()):
            grad = torch.where(ok[:, None], grad, torch.zeros_like(grad))
            buf.copy_(torch.where(ok[:, None], momentum * buf + grad, buf))
        else:  # the common case: every network steps, no masks
            buf.mul_(momentum).add_(grad)
        # the new parameters go into the other buffer, which then becomes theta: no copy of the old ones
        new = torch.sub(theta, step_size * buf, out=previous)
        # An update that overflows the parameters themselves also counts as divergence.
        ok &= torch.isfinite(new.sum(1))
        if not bool(ok.all()):
            new.copy_(torch.where(ok[:, None], new, theta))
        self.theta, self.previous = new, theta
        self.diverged |= active & ~ok
        active &= ok


def losses_and_gradient(spec: NetSpec, state: MomentumState, xb: Tensor, yb: Tensor, *, lam: float, amp: bool,
                         forward_kw: dict) -> tuple[Tensor, Tensor]:
    """Every network's loss ``(B,)`` on the minibatch ``xb, yb`` and its gradient ``(B, n_params)``, differentiated
    through one leaf per weight/bias that is a view into ``state.theta``."""
    n_nets = state.theta.shape[0]
    leaves = [t.detach().requires_grad_(True) for pair in unflatten_params(spec, state.theta) for t in pair]
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
        losses = objective(spec, _pairs(leaves), xb, yb, lam, **forward_kw)  # (B,)
    # Summing (not averaging) gives each network exactly the gradient of its own loss. Frozen and
    # non-finite networks are masked out of the sum; their gradients are discarded in the update as well
    # because 0 * inf in the backward pass could still produce NaN for them (and only for them).
    total = torch.where(state.active, losses, torch.zeros_like(losses)).sum()
    grad = torch.cat([g.reshape(n_nets, -1) for g in torch.autograd.grad(total, leaves)], dim=1)
    return losses, grad


def _pairs(leaves: list[Tensor]) -> Params:
    return [(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]


def prepare(spec, params, data, split, device, dtype):
    """The networks and the ``split`` of ``data`` on the training ``device`` and ``dtype`` (finite parameters
    checked; a CNN's layer-0 patches prepared once for the dense route): ``(params, x, y, device, forward_kw)``."""
    check_params(spec, params, finite=True)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or params[0][0].dtype
    x, y = data.split(split) if hasattr(data, "split") else (getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
    x, forward_kw = prepare_inputs(spec, x.to(device=device, dtype=dtype))  # the dense CNN route: patches, once
    y = y.to(device=device, dtype=torch.long)
    params = map_params(lambda t: t.to(device=device, dtype=dtype), params)
    return params, x, y, device, forward_kw

