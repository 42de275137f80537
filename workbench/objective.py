"""The amortized objective of the poster and the metrics every method is scored with.

    L(phi; theta, B) = lambda * ||f_phi(G, theta)||_1 + 1/|B| sum_{(x, y) in B} CE(u_{G, f_phi(G, theta)}(x), y)

The L1 norm is the sum of absolute values of all weights and biases of one network. Baselines (SGD) and the
metanetwork use these same functions, so their numbers are comparable by construction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .forward_pass import forward
from .nets import NetSpec, Params, n_networks, select

__all__ = ["l1_norm", "cross_entropy_per_network", "objective", "evaluate", "l1_reduction", "share_near_zero"]


def l1_norm(params: Params) -> Tensor:
    """(B,) total L1 norm of every network's weights and biases."""
    n = n_networks(params)
    return sum(w.abs().reshape(n, -1).sum(1) + b.abs().sum(1) for w, b in params)


def cross_entropy_per_network(logits: Tensor, y: Tensor) -> Tensor:
    """(B,) mean cross-entropy of each network's logits ``(B, N, C)`` against labels ``(N,)``."""
    n_nets, n, c = logits.shape
    ce = F.cross_entropy(logits.reshape(n_nets * n, c).float(), y.repeat(n_nets), reduction="none")
    return ce.reshape(n_nets, n).mean(1)


def objective(spec: NetSpec, params: Params, x: Tensor, y: Tensor, lam: float = 0.0, **forward_kwargs) -> Tensor:
    """(B,) per-network loss CE + lam * L1 on one batch (mean over networks gives the training loss)."""
    ce = cross_entropy_per_network(forward(spec, params, x, **forward_kwargs), y)
    return ce + lam * l1_norm(params) if lam else ce


@torch.no_grad()
def evaluate(spec: NetSpec, params: Params, x: Tensor, y: Tensor, lam: float = 0.0,
             batch_size: int = 4096, net_chunk: int = 1024) -> dict[str, Tensor]:
    """Per-network metrics on a whole split, evaluated in chunks of samples and networks.

    Returns a dict of (B,) CPU tensors: ``acc`` (fraction correct), ``ce`` (mean cross-entropy), ``l1``
    (total L1 norm) and ``loss`` (= ce + lam * l1, the "test loss (CE + L1)" of the poster).
    """
    n_nets = n_networks(params)
    accs, ces = [], []
    for start in range(0, n_nets, net_chunk):
        chunk = select(params, slice(start, start + net_chunk))
        correct = torch.zeros(n_networks(chunk), device=x.device)
        ce_sum = torch.zeros_like(correct)
        for s in range(0, x.shape[0], batch_size):
            xb, yb = x[s:s + batch_size], y[s:s + batch_size]
            logits = forward(spec, chunk, xb).float()  # (b, n, C)
            correct += (logits.argmax(-1) == yb).float().sum(1)
            ce_sum += cross_entropy_per_network(logits, yb) * xb.shape[0]
        accs.append(correct / x.shape[0])
        ces.append(ce_sum / x.shape[0])
    acc, ce = torch.cat(accs).cpu(), torch.cat(ces).cpu()
    l1 = l1_norm(params).float().cpu()
    return {"acc": acc, "ce": ce, "l1": l1, "loss": ce + lam * l1}


def l1_reduction(before: Params, after: Params) -> float:
    """The poster's "sparsity": % reduction of the total L1 norm of all weights, summed over networks."""
    b, a = l1_norm(before).double().sum(), l1_norm(after).double().sum()
    return float(100.0 * (1.0 - a / b))


def share_near_zero(params: Params, threshold: float = 1e-3) -> float:
    """% of all weights and biases with |value| < threshold."""
    small = sum(int((w.abs() < threshold).sum()) + int((b.abs() < threshold).sum()) for w, b in params)
    total = sum(w.numel() + b.numel() for w, b in params)
    return 100.0 * small / total
