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
from .memory import (EVAL_IMAGE_CHUNK, budget_bytes, eval_bytes_per_image, eval_bytes_per_network,
                     eval_bytes_per_network_image, eval_chunks)
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
             batch_size: int | None = None, net_chunk: int | None = None,
             memory_budget: int | None = None) -> dict[str, Tensor]:
    """Per-network metrics on a whole split, evaluated in chunks of networks x images.

    The chunk is sized from the architecture so that it stays within ``memory_budget`` bytes (default
    :func:`workbench.memory.budget_bytes` of ``x``'s device: ``WORKBENCH_MEMORY_GB`` or a share of the machine's
    memory; :func:`workbench.memory.eval_chunks`). ``batch_size`` (images) and ``net_chunk`` (networks) fix either
    side of the chunk instead; the other side is still sized from the budget. Chunking changes no result beyond
    float rounding of the per-network sums over image chunks.

    Returns a dict of (B,) CPU tensors: ``acc`` (fraction correct), ``ce`` (mean cross-entropy), ``l1``
    (total L1 norm) and ``loss`` (= ce + lam * l1, the "test loss (CE + L1)" of the poster).
    """
    n_nets = n_networks(params)
    net_chunk, batch_size = _chunks(spec, n_nets, x, batch_size, net_chunk, memory_budget,
                                    params[0][0].element_size())
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
            del logits
        accs.append(correct / x.shape[0])
        ces.append(ce_sum / x.shape[0])
    acc, ce = torch.cat(accs).cpu(), torch.cat(ces).cpu()
    l1 = l1_norm(params).float().cpu()
    return {"acc": acc, "ce": ce, "l1": l1, "loss": ce + lam * l1}


def _chunks(spec: NetSpec, n_nets: int, x: Tensor, batch_size: int | None, net_chunk: int | None,
            memory_budget: int | None, itemsize: int) -> tuple[int, int]:
    """``(networks, images)`` per chunk of :func:`evaluate`: what the caller fixed, the other side from the budget
    (at least one of each)."""
    if batch_size is not None and net_chunk is not None:
        return max(1, int(net_chunk)), max(1, int(batch_size))
    budget = budget_bytes(x.device) if memory_budget is None else int(memory_budget)
    image_size = x.shape[-1] if spec.kind == "cnn" else None
    per_pair = eval_bytes_per_network_image(spec, image_size, itemsize)
    per_image, per_net = eval_bytes_per_image(spec, image_size, itemsize), eval_bytes_per_network(spec, image_size,
                                                                                                   itemsize)
    n_images = max(1, x.shape[0])
    if batch_size is not None:  # images fixed: as many networks as fit beside them
        images = max(1, min(int(batch_size), n_images))
        return int(max(1, min(n_nets, (budget - images * per_image) // (images * per_pair + per_net)))), images
    if net_chunk is not None:  # networks fixed: as many images as fit beside them
        networks = max(1, int(net_chunk))
        fits = (budget - networks * per_net) // (networks * per_pair + per_image)
        return networks, int(max(1, min(n_images, EVAL_IMAGE_CHUNK, fits)))
    return eval_chunks(spec, n_nets, n_images, budget, image_size, itemsize)


def l1_reduction(before: Params, after: Params) -> float:
    """The poster's "sparsity": % reduction of the total L1 norm of all weights, summed over networks."""
    b, a = l1_norm(before).double().sum(), l1_norm(after).double().sum()
    return float(100.0 * (1.0 - a / b))


def share_near_zero(params: Params, threshold: float = 1e-3) -> float:
    """% of all weights and biases with |value| < threshold."""
    small = sum(int((w.abs() < threshold).sum()) + int((b.abs() < threshold).sum()) for w, b in params)
    total = sum(w.numel() + b.numel() for w, b in params)
    return 100.0 * small / total
