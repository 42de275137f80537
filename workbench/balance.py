"""The L1-smallest network on a ReLU network's scaling orbit: how much of the L1 norm is gauge.

A ReLU network keeps its function when hidden neuron (or channel) ``i`` of layer ``l`` has its incoming weights and
its bias multiplied by ``s > 0`` and its outgoing weights divided by ``s``. The L1 norm is not invariant under this:

    L1(s) = sum_l sum_ij |W_l,ij| s_l,i / s_l-1,j  +  sum_l sum_i |b_l,i| s_l,i      (s = 1 on inputs and outputs)

In ``u = log s`` this is a sum of exponentials of linear functions, so it is convex, and with every other layer's
scales fixed it separates over the neurons of one layer: neuron ``i`` costs ``s a_i + c_i / s`` (``a_i``: its
incoming weights and bias in L1, ``c_i``: its outgoing weights), smallest at ``s = sqrt(c_i / a_i)``, where the
incoming and outgoing masses are equal. :func:`balance_l1` sweeps the hidden layers with these exact block updates
until the L1 norm stops falling: the L1-minimal point of the orbit, reached by a group element (:func:`act`), so the
function is unchanged up to float rounding. It is the same for every point of one orbit, so the L1 that balancing
removes is exactly the part of the L1 norm that is gauge.

A conv layer admits one scale per channel (not per channel and position), so a CNN has less of this freedom than
the same function written as an MLP (:mod:`workbench.gauge`). Tanh networks have sign flips only, which leave the
L1 norm unchanged: there is nothing to balance, and :func:`balance_l1` says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .nets import NetSpec, Params, check_params
from .objective import l1_norm
from .symmetry import GroupElement, act

__all__ = ["Balanced", "balance_l1", "neuron_masses", "unrolled_channel_groups", "cnn_vs_mlp_gauge_l1"]

#: a neuron's scale stays within [1/MAX_SCALE, MAX_SCALE]: a dead neuron (no incoming or no outgoing weight) would
#: otherwise be scaled without bound
MAX_SCALE = 1e6


@dataclass(frozen=True)
class Balanced:
    """The result of :func:`balance_l1`: ``params`` (same function, smallest L1 on the orbit), ``element`` (the
    scaling that maps the input to them), ``l1_before`` / ``l1_after`` ((B,) L1 norms) and ``sweeps`` (layer
    sweeps used)."""

    params: Params
    element: GroupElement
    l1_before: Tensor
    l1_after: Tensor
    sweeps: int

    @property
    def reduction_pct(self) -> Tensor:
        """(B,) per-network L1 reduction in per cent (0 for an all-zero network)."""
        before = self.l1_before.double()
        return torch.where(before > 0, 100 * (1 - self.l1_after.double() / before.clamp_min(1e-300)),
                           torch.zeros_like(before))


def neuron_masses(spec: NetSpec, params: Params) -> list[tuple[Tensor, Tensor]]:
    """For every hidden layer, ``(incoming, outgoing)``: each ``(B, width)``, the L1 mass of every neuron's (or
    channel's) incoming weights plus bias, and of its outgoing weights. At the L1-minimal point of the orbit the
    two are equal for every neuron that has both."""
    check_params(spec, params)
    masses = []
    for layer in range(len(spec.hidden_widths)):
        (w_in, b_in), (w_out, _) = params[layer], params[layer + 1]
        incoming = w_in.abs().flatten(2).sum(2) + b_in.abs()  # (B, out) over inputs (and kernel positions)
        outgoing = w_out.abs().transpose(1, 2).flatten(2).sum(2)  # (B, in) over outputs (and kernel positions)
        masses.append((incoming, outgoing))
    return masses


def unrolled_channel_groups(cnn: NetSpec) -> list[Tensor]:
    """For the MLP twin of a CNN (:func:`workbench.gauge.unroll_cnn`, neurons ordered channel x position), each
    hidden layer's neuron -> channel map: the ``groups`` of :func:`balance_l1` that allow only the scalings the CNN
    itself has (one per channel, constant over positions)."""
    if cnn.kind != "cnn":
        raise ValueError(f"unrolled_channel_groups needs a CNN spec, got {cnn.describe()}")
    sizes = cnn.spatial_sizes()
    return [torch.arange(c * s * s) // (s * s) for c, s in zip(cnn.hidden_widths, sizes[1:])]


@torch.no_grad()
def balance_l1(spec: NetSpec, params: Params, *, groups: list[Tensor] | None = None, max_sweeps: int = 200,
               tol: float = 1e-9) -> Balanced:
    """The function-preserving positive scaling of each of B ReLU networks with the smallest L1 norm.

    Args:
        spec: a ReLU architecture (MLP or CNN); other activations raise ``ValueError``.
        params: batched parameters (any float dtype and device; computed in float64, returned in their dtype).
        groups: optionally, per hidden layer a ``(width,)`` LongTensor of group ids ``0 .. G-1``: the neurons of one
            group share one scale (a subgroup of the scalings, e.g. :func:`unrolled_channel_groups`); its optimum
            makes each group's total incoming and outgoing mass equal. None: every neuron has its own scale.
        max_sweeps: at most this many passes over the hidden layers.
        tol: stop when a sweep lowers the total L1 of the batch by less than this fraction.
    """
    if spec.activation != "relu":
        raise ValueError(f"L1 balancing uses positive scalings, a symmetry of ReLU networks only; {spec.family} "
                         f"networks ({spec.activation}) have sign flips at most, which leave the L1 norm unchanged")
    n_nets = check_params(spec, params, finite=True)
    if groups is not None:
        groups = [torch.as_tensor(g, dtype=torch.long) for g in groups]
        if len(groups) != len(spec.hidden_widths) or any(
                g.shape != (width,) or (width and (int(g.min()) < 0)) for g, width in zip(groups, spec.hidden_widths)):
            raise ValueError(f"groups must hold one (width,) tensor of non-negative ids per hidden layer, widths "
                             f"{spec.hidden_widths}; got shapes {[tuple(g.shape) for g in groups]}")
    work = [(w.double(), b.double()) for w, b in params]
    scales = [torch.ones(n_nets, width, dtype=torch.float64, device=work[0][0].device)
              for width in spec.hidden_widths]
    before = l1_norm(work)
    total, sweeps = float(before.sum()), 0
    for sweeps in range(1, max_sweeps + 1):
        for layer, (incoming, outgoing) in enumerate(neuron_masses(spec, work)):
            if groups is not None:  # a group's scale sees the summed masses of its neurons
                ids = groups[layer].to(incoming.device).expand_as(incoming)
                size = int(groups[layer].max()) + 1
                incoming = torch.zeros(n_nets, size, dtype=incoming.dtype, device=incoming.device).scatter_add_(
                    1, ids, incoming).gather(1, ids)
                outgoing = torch.zeros(n_nets, size, dtype=outgoing.dtype, device=outgoing.device).scatter_add_(
                    1, ids, outgoing).gather(1, ids)
            # dead neurons (nothing in, or nothing out) shrink their live side as far as MAX_SCALE allows
            step = torch.where((incoming > 0) & (outgoing > 0), (outgoing / incoming.clamp_min(1e-300)).sqrt(),
                               torch.where(incoming > 0, 1 / MAX_SCALE, MAX_SCALE))
            step = torch.where((incoming == 0) & (outgoing == 0), torch.ones_like(step), step)
            new = (scales[layer] * step).clamp(1 / MAX_SCALE, MAX_SCALE)
            step, scales[layer] = new / scales[layer], new
            (w_in, b_in), (w_out, b_out) = work[layer], work[layer + 1]
            extra = w_in.dim() - 3  # 0 for dense, 2 for conv
            w_in = w_in * step.reshape(*step.shape, 1, *([1] * extra))
            w_out = w_out / step.reshape(n_nets, 1, -1, *([1] * (w_out.dim() - 3)))
            work[layer], work[layer + 1] = (w_in, b_in * step), (w_out, b_out)
        now = float(l1_norm(work).sum())
        if total - now <= tol * max(total, 1e-300):
            total = now
            break
        total = now
    dtype = params[0][0].dtype
    perms = [torch.arange(width, device=s.device).expand(n_nets, width) for width, s in
             zip(spec.hidden_widths, scales)]
    element = GroupElement(spec.hidden_widths, perms, [s.to(dtype) for s in scales], group="scale")
    out = act(spec, element, params)
    return Balanced(out, element, before.to(dtype), l1_norm(out), sweeps)


def cnn_vs_mlp_gauge_l1(cnn: NetSpec, params: Params):
    """How much of each CNN's L1 norm is gauge, as a CNN and as the same function written as an MLP.

    Both are measured on the same weights, the MLP twin's (:func:`workbench.gauge.unroll_cnn`: conv layers as
    Toeplitz matrices): balanced with the CNN's own scalings (one per channel, :func:`unrolled_channel_groups`) and
    with the MLP's (one per neuron). Returns a pandas DataFrame, one row per network: ``l1`` (the twin's L1 norm),
    ``l1_channel_balanced``, ``l1_neuron_balanced``, and the per-cent reductions ``removed_by_channels_pct`` and
    ``removed_by_neurons_pct``. The second is never smaller: the channel scalings are a subgroup."""
    import pandas as pd

    from .gauge import unroll_cnn

    twin, twin_params = unroll_cnn(cnn, [(w.double(), b.double()) for w, b in params])
    tied = balance_l1(twin, twin_params, groups=unrolled_channel_groups(cnn))
    free = balance_l1(twin, twin_params)
    return pd.DataFrame({"network": range(len(free.l1_before)), "l1": free.l1_before.numpy(),
                         "l1_channel_balanced": tied.l1_after.numpy(), "l1_neuron_balanced": free.l1_after.numpy(),
                         "removed_by_channels_pct": tied.reduction_pct.numpy(),
                         "removed_by_neurons_pct": free.reduction_pct.numpy()})
