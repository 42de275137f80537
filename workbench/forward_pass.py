"""The vectorised forward pass: the logits of B networks in one call, the workbench's one batched forward.

Every caller evaluates networks through :func:`forward` -- the zoo trainer (per-network minibatches), the SGD
baselines, the metanetwork's objective and the evaluation metrics. MLP layers are batched matrix products. A
CNN's conv layers take one of two routes, chosen by :func:`conv_route` from the cost of the dense matrices
(measured, bench/README.md):

* ``"dense"``: layer 0 multiplies input patches (:func:`im2col`, computed once per data set by
  :func:`prepare_inputs`) with the kernels, every later conv layer is applied as its dense (Toeplitz) matrix --
  batched matrix products only, faster on CPUs for small feature maps;
* ``"grouped"``: grouped convolutions with one group per network, for larger maps.

Inverted dropout after each hidden activation takes a per-network rate. Parameters are batched as in
:mod:`workbench.nets`.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from .nets import ACTIVATIONS, NetSpec, Params, SpecError, conv_output_size, n_networks

__all__ = [
    "DENSE_ROUTE_MAX_RATIO", "ROUTES", "activation_fn", "conv_route", "conv_taps", "im2col", "prepare_inputs",
    "forward",
]


def activation_fn(name: str):
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return torch.relu
    raise SpecError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


# Conv layers 1.. run as dense matrices (the "dense" route) while these cost at most this many times the
# multiply-adds of the convolutions. Measured on a 2-core CPU, forward + backward (bench/sgd_baselines.py --routes,
# bench/README.md): dense wins for the digits CNN (ratio 1.5: 8 -> 4 -> 2 -> 1 maps) by 1.4x - 2x, grouped
# convolutions win for the digits CNN with stride 1 (ratio 3.6: 8 -> 6 -> 4 -> 2) and by 5x - 7x for the Small
# CNN Zoo CNN (ratio 22: 32 -> 15 -> 7 -> 3).
DENSE_ROUTE_MAX_RATIO = 3.0
ROUTES = ("dense", "grouped")


def _dense_cost_ratio(spec: NetSpec, image_size: int) -> float:
    """Multiply-adds of conv layers 1.. as dense matrices over those as convolutions (per sample)."""
    sizes = spec.spatial_sizes(image_size)
    dense = conv = 0
    for layer in range(1, spec.n_conv):
        c_in, c_out = spec.widths[layer], spec.widths[layer + 1]
        dense += sizes[layer] ** 2 * c_in * sizes[layer + 1] ** 2 * c_out
        conv += sizes[layer + 1] ** 2 * c_out * c_in * spec.kernel_size**2
    return dense / conv if conv else 1.0


def conv_route(spec: NetSpec, image_size: int | None = None) -> str:
    """How :func:`forward` runs the conv layers of ``spec`` on ``image_size`` inputs (default ``spec.image_size``).

    ``"dense"``: batched matrix products only -- layer 0 multiplies input patches (:func:`im2col`) with the
    kernels, every later conv layer is applied as its dense (Toeplitz) matrix -- chosen while the dense matrices
    cost at most :data:`DENSE_ROUTE_MAX_RATIO` times the convolutions (small feature maps); ``"grouped"``: grouped
    convolutions with one group per network, for larger maps.
    """
    if spec.kind != "cnn":
        raise SpecError(f"conv routes apply to CNNs; {spec.describe()} is an MLP")
    size = spec.image_size if image_size is None else image_size
    if size is None:
        raise SpecError("choosing a conv route needs the input side length (spec.image_size or image_size)")
    return "dense" if _dense_cost_ratio(spec, size) <= DENSE_ROUTE_MAX_RATIO else "grouped"


@functools.lru_cache(maxsize=128)
def conv_taps(kernel_size: int, stride: int, padding: int, size_in: int) -> Tensor:
    """Which input pixel each kernel tap reads at each output pixel of a square conv layer.

    Returns:
        LongTensor ``(P_out, k*k)``: flat index ``y * size_in + x`` of the input pixel under tap ``(a, b)`` (entry
        ``a * k + b``) at output pixel ``p``, and ``P_in = size_in**2`` (one past the last pixel: a zero slot) where
        the tap falls on padding.
    """
    k, s, p = kernel_size, stride, padding
    size_out = conv_output_size(size_in, k, s, p)
    i, j, a, b = torch.meshgrid(*(torch.arange(n) for n in (size_out, size_out, k, k)), indexing="ij")
    ii, jj = i * s + a - p, j * s + b - p
    inside = (ii >= 0) & (ii < size_in) & (jj >= 0) & (jj < size_in)
    return torch.where(inside, ii * size_in + jj, size_in * size_in).reshape(size_out * size_out, k * k)


@functools.lru_cache(maxsize=128)
def _dense_basis(kernel_size: int, stride: int, padding: int, size_in: int, dtype: torch.dtype,
                 device: torch.device) -> Tensor:
    """``(k*k, P_in * P_out)`` 0/1: ``basis[t, q * P_out + p] = 1`` when tap t links input pixel q to output
    pixel p, so ``kernel (.., k*k) @ basis`` spreads a kernel over its dense matrix."""
    taps = conv_taps(kernel_size, stride, padding, size_in)
    n_out, n_taps = taps.shape
    n_in = size_in * size_in
    basis = torch.zeros(n_taps, n_in + 1, n_out, dtype=dtype)
    basis[torch.arange(n_taps)[None, :], taps, torch.arange(n_out)[:, None]] = 1.0
    return basis[:, :n_in].reshape(n_taps, n_in * n_out).to(device)


def im2col(spec: NetSpec, x: Tensor) -> Tensor:
    """Input patches of conv layer 0: images ``(..., C, H, W)`` -> ``(..., P_1, C * k * k)`` (zeros for padding).

    The dense route of :func:`forward` starts from these; callers that evaluate many minibatches of one data set
    compute them once and pass ``patches=True`` (see :func:`prepare_inputs`).
    """
    lead, c, size = x.shape[:-3], x.shape[-3], x.shape[-1]
    flat = x.reshape(*lead, c, -1)
    flat = torch.cat([flat, flat.new_zeros(*lead, c, 1)], dim=-1)  # + the zero slot of padding taps
    taps = conv_taps(spec.kernel_size, spec.stride, spec.padding, size).to(x.device)
    cols = flat[..., taps]  # (..., C, P_1, k*k)
    return cols.transpose(-3, -2).reshape(*lead, taps.shape[0], -1)


def prepare_inputs(spec: NetSpec, x: Tensor) -> tuple[Tensor, dict]:
    """``x`` as :func:`forward` reads it fastest, and the keyword arguments that say so.

    For a CNN on the dense route the layer-0 patches of all of ``x`` (computed once: index them like ``x``);
    otherwise ``x`` itself. Use as ``inputs, kw = prepare_inputs(spec, x); forward(spec, params, inputs[idx], **kw)``.
    """
    if spec.kind == "cnn" and spec.image_size is not None and x.shape[-1] == x.shape[-2] == spec.image_size \
            and conv_route(spec) == "dense":
        return im2col(spec, x), {"patches": True}
    return x, {}


def _keep_rates(dropout, n_nets: int, like: Tensor) -> Tensor | None:
    """Per-network keep probabilities ``(B,)`` for a dropout rate (float or (B,) tensor); None for no dropout.

    A float 0 means no dropout; a tensor always draws masks, even where its rates are 0 (those masks keep
    everything), so a caller's random stream does not depend on the values of the rates."""
    if not isinstance(dropout, Tensor):
        if not dropout:
            return None
        dropout = torch.tensor(float(dropout))
    rate = dropout.to(dtype=like.dtype, device=like.device).reshape(-1)
    if rate.numel() not in (1, n_nets):
        raise SpecError(f"dropout must be a float or hold one rate per network ({n_nets}), got {rate.numel()}")
    return (1 - rate).clamp_min(1e-6).expand(n_nets)


def _dropout(h: Tensor, keep: Tensor, generator, net_dim: int = 0) -> Tensor:
    """Inverted dropout on ``h`` whose dimension ``net_dim`` indexes the B networks (keep probabilities (B,))."""
    shape = [1] * h.dim()
    shape[net_dim] = -1
    keep = keep.reshape(shape)
    mask = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype) < keep
    return h * mask / keep


def forward(
    spec: NetSpec,
    params: Params,
    x: Tensor,
    *,
    per_network: bool = False,
    patches: bool = False,
    dropout: float | Tensor = 0.0,
    generator: torch.Generator | None = None,
    route: str | None = None,
) -> Tensor:
    """Logits of all B networks, vectorised over the network dimension: the workbench's one forward pass.

    MLP layers are batched matrix products. CNNs take one of two routes (:func:`conv_route`): ``"dense"``,
    batched matrix products on layer-0 patches and dense matrices of later conv layers (faster on CPUs for small
    feature maps), or ``"grouped"``, grouped convolutions with one group per network.

    Args:
        x: the inputs. Shared by all networks: MLP ``(N, d_in)`` (images are flattened), CNN ``(N, c_in, H, W)``;
            with ``per_network=True`` network b reads its own ``x[b]``: ``(B, N, ...)``.
        patches: ``x`` holds layer-0 patches from :func:`im2col` (``(N, P_1, c_in k k)`` or ``(B, N, ...)``)
            instead of images; dense route only, ``spec.image_size`` gives the image side.
        dropout: inverted dropout rate after each hidden activation: a float or a per-network ``(B,)`` tensor
            (0 at evaluation); masks come from ``generator``.
        route: force ``"dense"`` or ``"grouped"`` (CNN only; default :func:`conv_route`). The routes agree to
            float rounding.

    Shapes:
        returns ``(B, N, n_classes)``.
    """
    n_nets = n_networks(params)
    lead = 2 if per_network else 1
    if per_network and x.shape[:1] != (n_nets,):
        raise SpecError(f"per-network inputs need a leading dimension of {n_nets} networks, got shape {tuple(x.shape)}")
    keep = _keep_rates(dropout, n_nets, params[0][0])
    if spec.kind == "mlp":
        if patches:
            raise SpecError("patches=True applies to CNNs only")
        return _forward_mlp(spec, params, x.reshape(*x.shape[:lead], -1), per_network, keep, generator)
    if x.dim() == lead + 2 and not patches:
        x = x.unsqueeze(lead)  # (.., H, W): one channel
    if patches:
        if spec.image_size is None:
            raise SpecError("patches=True needs spec.image_size (the image side the patches were taken from)")
        if route not in (None, "dense"):
            raise SpecError(f"patches=True runs the dense route, not {route!r}")
        n_pos = conv_output_size(spec.image_size, spec.kernel_size, spec.stride, spec.padding) ** 2
        if x.dim() != lead + 2 or tuple(x.shape[-2:]) != (n_pos, spec.widths[0] * spec.kernel_size**2):
            raise SpecError(f"patches of shape {tuple(x.shape)} do not fit {spec.describe()} (expected "
                            f"{'(B, N' if per_network else '(N'}, {n_pos}, {spec.widths[0] * spec.kernel_size**2}))")
        return _forward_cnn_dense(spec, params, x, spec.image_size, per_network, keep, generator)
    if x.dim() != lead + 3 or x.shape[lead] != spec.widths[0] or x.shape[-1] != x.shape[-2]:
        raise SpecError(f"inputs of shape {tuple(x.shape)} do not fit {spec.describe()} "
                        f"(expected {'(B, N' if per_network else '(N'}, C, H, W) with H = W)")
    size = x.shape[-1]
    spec.spatial_sizes(size)  # inputs too small for the conv layers: a SpecError, not a torch error
    route = route or conv_route(spec, size)
    if route == "dense":
        return _forward_cnn_dense(spec, params, im2col(spec, x), size, per_network, keep, generator)
    if route == "grouped":
        return _forward_cnn_grouped(spec, params, x, per_network, keep, generator)
    raise SpecError(f"unknown conv route {route!r}; expected one of {ROUTES}")


def _forward_mlp(spec: NetSpec, params: Params, x: Tensor, per_network: bool, keep, generator) -> Tensor:
    if x.shape[-1] != spec.widths[0]:
        raise SpecError(f"inputs have {x.shape[-1]} features; {spec.describe()} expects {spec.widths[0]}")
    act = activation_fn(spec.activation)
    w, b = params[0]
    if per_network:
        h = torch.baddbmm(b[:, None, :], x, w.transpose(1, 2))  # (B, N, h_1)
    else:
        h = torch.einsum("ni,boi->bno", x, w) + b[:, None, :]  # (B, N, h_1): one matmul for all networks
    for layer in range(1, spec.n_layers):
        h = act(h)
        if keep is not None:
            h = _dropout(h, keep, generator)
        w, b = params[layer]
        h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))  # (B, N, out)
    return h


def _forward_cnn_grouped(spec: NetSpec, params: Params, x: Tensor, per_network: bool, keep, generator) -> Tensor:
    """Grouped convolutions: features ``(N, B*C, H, W)``, one group of channels per network."""
    act = activation_fn(spec.activation)
    n_nets = n_networks(params)
    if per_network:  # (B, N, C, H, W) -> (N, B*C, H, W)
        n = x.shape[1]
        h, groups = x.transpose(0, 1).reshape(n, n_nets * x.shape[2], *x.shape[-2:]), n_nets
    else:
        n = x.shape[0]
        h, groups = x, 1  # layer 0 reads the shared input once for all networks
    for layer in range(spec.n_conv):
        w, b = params[layer]  # (B, out, in, k, k), (B, out)
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=spec.stride, padding=spec.padding,
                     groups=groups)  # (N, B*out, H', W')
        groups = n_nets
        h = act(h)
        if keep is not None:
            h = _dropout(h.view(n, n_nets, -1), keep, generator, net_dim=1).view(h.shape)
    pooled = h.mean(dim=(2, 3)).reshape(n, n_nets, -1).transpose(0, 1)  # (B, N, c_L)
    w, b = params[-1]
    return torch.baddbmm(b[:, None, :], pooled, w.transpose(1, 2))  # (B, N, classes)


def _forward_cnn_dense(spec: NetSpec, params: Params, cols: Tensor, size: int, per_network: bool, keep,
                       generator) -> Tensor:
    """Batched matrix products only, on layer-0 patches ``cols`` ((B,) N, P_1, C_0 k k); features are kept
    position-major, ``(B, N, P * C)``."""
    act = activation_fn(spec.activation)
    n_nets = n_networks(params)
    sizes = spec.spatial_sizes(size)
    w, b = params[0]
    kernels = w.reshape(n_nets, w.shape[1], -1).transpose(1, 2)  # (B, C_0*k*k, C_1)
    if per_network:
        n, n_pos = cols.shape[1:3]
        h = torch.baddbmm(b[:, None, :], cols.reshape(n_nets, n * n_pos, -1), kernels)  # (B, N*P_1, C_1)
    else:  # one product for all networks: (N*P_1, C_0 k k) @ (C_0 k k, B*C_1)
        n, n_pos = cols.shape[:2]
        h = (cols.reshape(n * n_pos, -1) @ kernels.transpose(0, 1).reshape(kernels.shape[1], -1))
        # one explicit copy into (B, N*P_1, C_1), then the bias in place: an out-of-place add would keep the
        # transposed layout and every later op would pay for it (measured 1.8x on this layer)
        h = h.view(n * n_pos, n_nets, -1).transpose(0, 1).contiguous().add_(b[:, None, :])
    h = act(h).reshape(n_nets, n, -1)  # (B, N, P_1 * C_1)
    if keep is not None:
        h = _dropout(h, keep, generator)
    for layer in range(1, spec.n_conv):
        w, b = params[layer]  # (B, out, in, k, k)
        c_out, c_in = w.shape[1], w.shape[2]
        p_in, p_out = sizes[layer] ** 2, sizes[layer + 1] ** 2
        basis = _dense_basis(spec.kernel_size, spec.stride, spec.padding, sizes[layer], w.dtype, w.device)
        dense = (w.reshape(-1, basis.shape[0]) @ basis).view(n_nets, c_out, c_in, p_in, p_out)
        dense = dense.permute(0, 3, 2, 4, 1).reshape(n_nets, p_in * c_in, p_out * c_out)  # rows (q, c), cols (p, o)
        h = act(torch.baddbmm(b.repeat(1, p_out)[:, None, :], h, dense))  # (B, N, P_out * C_out)
        if keep is not None:
            h = _dropout(h, keep, generator)
    pooled = h.view(n_nets, n, sizes[-1] ** 2, -1).mean(2)  # global average pooling: (B, N, c_L)
    w, b = params[-1]
    return torch.baddbmm(b[:, None, :], pooled, w.transpose(1, 2))  # (B, N, classes)
