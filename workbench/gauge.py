"""Gauge freedom: how many parameter directions leave the network function unchanged, MLP versus CNN.

The poster's claim (SCALEGMN.md, sec. 2): write a conv layer as its doubly-block-Toeplitz matrix. A dense layer
admits one positive scale per output neuron (ReLU); a conv layer only scales that are constant over the spatial
positions of a channel, since otherwise the shared kernel entries would take different values in different rows
and the matrix would stop being a convolution. So a CNN has one scaling direction per hidden channel where the
same function written as an MLP has one per hidden neuron (channel x position).

Everything here is a pure function:

* :func:`gauge_counts` / :func:`gauge_table` -- group sizes and dimensions from a :class:`NetSpec` alone;
* :func:`conv_to_toeplitz`, :func:`toeplitz_to_conv`, :func:`distance_to_convolution` -- the unrolled view and
  the least-squares projection back onto convolutions;
* :func:`unroll_cnn` -- a CNN as the MLP computing the same function (conv layers unrolled, pooling folded into
  the dense layer), and :func:`conv_vs_dense_directions` comparing the two per layer;
* :func:`symmetry_directions` -- the numerical check: scaling-orbit tangents lie in the null space of the
  Jacobian of the outputs with respect to the parameters.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .forward_pass import forward
from .nets import NetSpec, Params, SpecError, check_params, flatten_params, map_params, unflatten_params
from .symmetry import group_for

__all__ = [
    "GaugeCounts", "gauge_counts", "gauge_table", "conv_output_size", "kernel_index_map", "conv_to_toeplitz",
    "toeplitz_to_conv", "project_to_convolution", "distance_to_convolution", "dense_equivalent_spec", "unroll_cnn",
    "conv_vs_dense_directions", "scaling_tangents", "numerical_rank", "SymmetryDirections", "output_jacobian",
    "symmetry_directions",
]


# -- counting -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaugeCounts:
    """Sizes of the symmetry group of one architecture.

    Attributes:
        n_params: number of parameters.
        n_hidden: hidden neurons (MLP) or hidden channels (CNN).
        perm_group_order: ``prod(h_l!)`` over hidden layers (exact int).
        perm_group_log10: ``log10`` of it.
        scaling: ``"positive"`` (ReLU: continuous scales) or ``"sign"`` (tanh: +-1).
        scaling_dim: dimension of the continuous scaling group (ReLU: n_hidden; tanh: 0).
        sign_group_log2: ``log2`` of the sign-flip group's size (tanh: n_hidden; ReLU: 0).
        gauge_ratio: ``scaling_dim / n_params``, the fraction of parameter directions that are pure gauge.
    """

    n_params: int
    n_hidden: int
    perm_group_order: int
    perm_group_log10: float
    scaling: str
    scaling_dim: int
    sign_group_log2: int
    gauge_ratio: float

    def as_dict(self, exact_order: bool = False) -> dict:
        d = asdict(self)
        if not exact_order:
            d.pop("perm_group_order")
        return d


def gauge_counts(spec: NetSpec) -> GaugeCounts:
    """Permutation and scaling group sizes of ``spec`` (see :class:`GaugeCounts`)."""
    hidden = spec.hidden_widths
    n_hidden = sum(hidden)
    order = math.prod(math.factorial(h) for h in hidden)
    log10 = sum(math.lgamma(h + 1) for h in hidden) / math.log(10)
    positive = group_for(spec) == "scale"
    scaling_dim = n_hidden if positive else 0
    return GaugeCounts(
        n_params=spec.n_params, n_hidden=n_hidden, perm_group_order=order, perm_group_log10=log10,
        scaling="positive" if positive else "sign", scaling_dim=scaling_dim,
        sign_group_log2=0 if positive else n_hidden, gauge_ratio=scaling_dim / spec.n_params,
    )


def gauge_table(specs: dict[str, NetSpec]):
    """A pandas DataFrame with one row of :func:`gauge_counts` per named spec."""
    import pandas as pd

    rows = []
    for name, spec in specs.items():
        row = {"network": name, "architecture": spec.describe(), **gauge_counts(spec).as_dict()}
        rows.append(row)
    return pd.DataFrame(rows).set_index("network")


# -- the doubly-block-Toeplitz view ---------------------------------------------------------------------------
def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def conv_output_size(in_size, kernel_size: int, stride: int = 1, padding: int = 0) -> tuple[int, int]:
    h, w = _pair(in_size)
    out = ((h + 2 * padding - kernel_size) // stride + 1, (w + 2 * padding - kernel_size) // stride + 1)
    if min(out) < 1:
        raise SpecError(f"a {kernel_size}x{kernel_size} kernel (stride {stride}, padding {padding}) does not fit a "
                        f"{h}x{w} input")
    return out


def kernel_index_map(kernel_size: int, in_size, stride: int = 1, padding: int = 0) -> Tensor:
    """Which kernel entry ties output position P to input position Q.

    Returns:
        LongTensor ``(H'*W', H*W)`` with entries ``ky * k + kx`` where input pixel Q lies under kernel entry
        ``(ky, kx)`` for output pixel P, and ``k * k`` (no weight) elsewhere.
    """
    k = kernel_size
    h, w = _pair(in_size)
    ho, wo = conv_output_size((h, w), k, stride, padding)
    oy = torch.arange(ho).reshape(ho, 1, 1, 1)
    ox = torch.arange(wo).reshape(1, wo, 1, 1)
    u = torch.arange(h).reshape(1, 1, h, 1)
    v = torch.arange(w).reshape(1, 1, 1, w)
    ky = u - (oy * stride - padding)  # (H', 1, H, 1)
    kx = v - (ox * stride - padding)  # (1, W', 1, W)
    inside = (ky >= 0) & (ky < k) & (kx >= 0) & (kx < k)  # (H', W', H, W)
    index = torch.where(inside, ky * k + kx, torch.full_like(inside, k * k, dtype=torch.long))
    return index.reshape(ho * wo, h * w)


def conv_to_toeplitz(weight: Tensor, in_size, stride: int = 1, padding: int = 0) -> Tensor:
    """The dense matrix of a (bias-free) conv layer acting on flattened ``(C, H, W)`` images.

    Row ``o * H'W' + y * W' + x`` is output channel ``o`` at pixel ``(y, x)``; column ``c * HW + u * W + v`` input
    channel ``c`` at pixel ``(u, v)``, i.e. the row-major flattening ``torch.flatten`` uses, so
    ``M @ img.flatten() == conv2d(img, weight).flatten()``.

    Args:
        weight: ``(..., out, in, k, k)``; leading dimensions are kept.
        in_size: input side length (int) or ``(H, W)``.

    Shapes:
        returns ``(..., out * H' * W', in * H * W)``.
    """
    *lead, n_out, n_in, k, k2 = weight.shape
    if k != k2:
        raise SpecError(f"only square kernels are supported, got {k}x{k2}")
    index = kernel_index_map(k, in_size, stride, padding).to(weight.device)  # (P, Q)
    n_p, n_q = index.shape
    padded = torch.cat([weight.reshape(*lead, n_out, n_in, k * k), weight.new_zeros(*lead, n_out, n_in, 1)], -1)
    blocks = padded[..., index]  # (..., out, in, P, Q)
    return blocks.transpose(-3, -2).reshape(*lead, n_out * n_p, n_in * n_q)  # (..., out*P, in*Q)


def toeplitz_to_conv(
    matrix: Tensor, out_channels: int, in_channels: int, kernel_size: int, in_size, stride: int = 1, padding: int = 0
) -> Tensor:
    """Least-squares kernel of a dense matrix: each kernel entry is the mean of the matrix entries it would tie.

    Exact inverse of :func:`conv_to_toeplitz` on matrices that are convolutions, except for kernel entries that
    never touch the image (only padding), which do not appear in the matrix and come back as 0.

    Shapes:
        ``matrix (..., out * H'W', in * HW)`` -> ``(..., out, in, k, k)``.
    """
    k = kernel_size
    index = kernel_index_map(k, in_size, stride, padding).to(matrix.device)  # (P, Q)
    n_p, n_q = index.shape
    *lead, rows, cols = matrix.shape
    if (rows, cols) != (out_channels * n_p, in_channels * n_q):
        raise SpecError(
            f"matrix of shape {(rows, cols)} is not a {out_channels} x {in_channels} conv on a {in_size} input "
            f"(expected {(out_channels * n_p, in_channels * n_q)})"
        )
    blocks = matrix.reshape(*lead, out_channels, n_p, in_channels, n_q).transpose(-3, -2)  # (..., out, in, P, Q)
    flat = blocks.reshape(*lead, out_channels, in_channels, n_p * n_q)
    bins = index.reshape(-1).expand_as(flat)
    sums = flat.new_zeros(*lead, out_channels, in_channels, k * k + 1).scatter_add_(-1, bins, flat)
    counts = torch.bincount(index.reshape(-1), minlength=k * k + 1).to(matrix.dtype)
    kernel = sums[..., : k * k] / counts[: k * k].clamp_min(1)
    return kernel.reshape(*lead, out_channels, in_channels, k, k)


def project_to_convolution(
    matrix: Tensor, out_channels: int, in_channels: int, kernel_size: int, in_size, stride: int = 1, padding: int = 0
) -> Tensor:
    """The nearest (Frobenius) matrix that is a convolution: tied entries averaged, entries off the band zeroed."""
    kernel = toeplitz_to_conv(matrix, out_channels, in_channels, kernel_size, in_size, stride, padding)
    return conv_to_toeplitz(kernel, in_size, stride, padding)


def distance_to_convolution(
    matrix: Tensor, out_channels: int, in_channels: int, kernel_size: int, in_size, stride: int = 1, padding: int = 0
) -> float:
    """Relative Frobenius distance ``||M - proj(M)|| / ||M||`` from ``matrix`` to the nearest convolution."""
    proj = project_to_convolution(matrix, out_channels, in_channels, kernel_size, in_size, stride, padding)
    return float(torch.linalg.vector_norm(matrix - proj) / torch.linalg.vector_norm(matrix).clamp_min(1e-300))


# -- a CNN as the MLP with the same function ------------------------------------------------------------------
def dense_equivalent_spec(spec: NetSpec) -> NetSpec:
    """The MLP whose layers are ``spec``'s conv layers unrolled: widths ``(c_0 H_0^2, ..., c_L H_L^2, classes)``."""
    if spec.kind != "cnn":
        return spec
    sizes = spec.spatial_sizes()
    widths = [c * s * s for c, s in zip(spec.widths[:-1], sizes)] + [spec.n_classes]
    return NetSpec.mlp(widths, spec.activation)


def unroll_cnn(spec: NetSpec, params: Params) -> tuple[NetSpec, Params]:
    """A CNN as an MLP computing the same function on flattened images.

    Each conv layer becomes its Toeplitz matrix with the channel bias repeated over positions; global average
    pooling is folded into the final dense layer (its weights repeated over positions and divided by their
    count). Needs ``spec.image_size``.
    """
    if spec.kind != "cnn":
        return spec, params
    check_params(spec, params)
    sizes = spec.spatial_sizes()
    out = []
    for layer in range(spec.n_conv):
        w, b = params[layer]
        matrix = conv_to_toeplitz(w, sizes[layer], spec.stride, spec.padding)  # (B, out*P, in*Q)
        out.append((matrix, b.repeat_interleave(sizes[layer + 1] ** 2, dim=1)))
    w, b = params[-1]
    positions = sizes[-1] ** 2
    out.append((w.repeat_interleave(positions, dim=2) / positions, b))
    return dense_equivalent_spec(spec), out


def conv_vs_dense_directions(spec: NetSpec):
    """Per conv layer: scaling directions of the conv layer (one per output channel) versus the dense layer with
    the same inputs and outputs (one per output neuron = channel x position). A pandas DataFrame."""
    import pandas as pd

    if spec.kind != "cnn":
        raise SpecError("conv_vs_dense_directions needs a CNN spec")
    sizes = spec.spatial_sizes()
    rows = []
    for layer in range(spec.n_conv):
        channels, positions = spec.widths[layer + 1], sizes[layer + 1] ** 2
        rows.append({
            "layer": layer,
            "matrix shape": f"{channels * positions} x {spec.widths[layer] * sizes[layer] ** 2}",
            "channels": channels,
            "positions": positions,
            "conv scaling directions": channels,
            "dense scaling directions": channels * positions,
        })
    return pd.DataFrame(rows).set_index("layer")


# -- the numerical check --------------------------------------------------------------------------------------
def scaling_tangents(spec: NetSpec, params: Params) -> Tensor:
    """Tangent vectors of the scaling orbit at ``params`` (one network), one row per hidden neuron/channel.

    ``d/dt act(exp(t e_i), params)`` at ``t = 0``: ``+b_i``, ``+`` the incoming weights (row i, whole kernels),
    ``-`` the outgoing weights (column i). Columns follow :func:`workbench.nets.flatten_params`.

    Shapes:
        returns ``(n_hidden, n_params)``.
    """
    if check_params(spec, params) != 1:
        raise SpecError("scaling_tangents takes a single network (B = 1)")
    rows = []
    for h, width in enumerate(spec.hidden_widths):
        for i in range(width):
            tangent = map_params(torch.zeros_like, params)
            w_in, b_in = params[h]
            tangent[h][0][:, i] = w_in[:, i]
            tangent[h][1][:, i] = b_in[:, i]
            tangent[h + 1][0][:, :, i] = -params[h + 1][0][:, :, i]
            rows.append(flatten_params(tangent)[0])
    if not rows:
        return params[0][0].new_zeros(0, spec.n_params)
    return torch.stack(rows)


def numerical_rank(matrix: Tensor) -> int:
    """Rank with NumPy's default tolerance ``sigma_max * max(m, n) * eps``; the SVD runs on the tall orientation,
    which LAPACK handles several times faster for the wide Jacobians met here."""
    if matrix.numel() == 0:
        return 0
    tall = matrix.T if matrix.shape[0] < matrix.shape[1] else matrix
    sigma = torch.linalg.svdvals(tall)
    tol = sigma.max() * max(matrix.shape) * torch.finfo(matrix.dtype).eps
    return int((sigma > tol).sum())


@dataclass(frozen=True)
class SymmetryDirections:
    """Result of :func:`symmetry_directions`.

    Attributes:
        n_params: parameter count.
        n_tangents: rank of the scaling-orbit tangent matrix (one candidate per hidden neuron/channel).
        n_directions: rank of the tangents that lie in ``null(J)`` (relative residual below ``tol``): the
            continuous scaling symmetries actually found.
        expected_directions: hidden neurons/channels for ReLU, 0 for tanh (its scaling group is discrete).
        max_residual: ``max |J v| / |v|`` over the tangents.
        relative_residual: ``max_residual / sigma_max(J)``.
        jacobian_rank, jacobian_nullity: numerical rank and ``n_params - rank`` of J (context: nullity counts
            every flat direction on the probe batch, not only symmetries).
        tangents: ``(n_hidden, n_params)`` tangent matrix (float64).
    """

    n_params: int
    n_tangents: int
    n_directions: int
    expected_directions: int
    max_residual: float
    relative_residual: float
    jacobian_rank: int
    jacobian_nullity: int
    tangents: Tensor


def output_jacobian(spec: NetSpec, params: Params, x_probe: Tensor) -> Tensor:
    """Jacobian of the logits on ``x_probe`` w.r.t. the flattened parameters of one network, in float64.

    Shapes:
        returns ``(N * n_classes, n_params)``.
    """
    if check_params(spec, params) != 1:
        raise SpecError("output_jacobian takes a single network (B = 1)")
    theta = flatten_params(params)[0].detach().to(torch.float64)
    x = x_probe.detach().to(torch.float64)

    def logits(flat: Tensor) -> Tensor:
        return forward(spec, unflatten_params(spec, flat[None]), x).reshape(-1)

    return torch.func.jacrev(logits)(theta)


def symmetry_directions(
    spec: NetSpec, params: Params, x_probe: Tensor, *, tol: float = 1e-8
) -> SymmetryDirections:
    """Check numerically that scaling-orbit tangents are flat directions of the network function.

    Builds ``J`` (:func:`output_jacobian`) and the tangents (:func:`scaling_tangents`), reports how far each tangent
    is from ``null(J)`` and how many independent ones lie in it. A ReLU MLP has one direction per hidden neuron, a
    ReLU CNN one per hidden channel; tanh has none (its tangents are not in the null space: a negative control).

    Args:
        params: one network (B = 1).
        x_probe: inputs the Jacobian is evaluated on; use enough that ``N * n_classes`` is not tiny.
        tol: relative residual (``|J v| / (|v| sigma_max)``) below which a tangent counts as a symmetry.
    """
    jac = output_jacobian(spec, params, x_probe)  # (N*classes, n_params)
    tangents = scaling_tangents(spec, map_params(lambda t: t.detach().double(), params))
    sigma = torch.linalg.matrix_norm(jac, ord=2).item() if jac.numel() else 0.0
    if tangents.shape[0]:
        lengths = torch.linalg.vector_norm(tangents, dim=1).clamp_min(1e-300)
        residual = torch.linalg.vector_norm(tangents @ jac.T, dim=1) / lengths  # |J v| / |v|
        relative = residual / max(sigma, 1e-300)
        flat = tangents[relative < tol]
        n_tangents = numerical_rank(tangents)
        n_directions = numerical_rank(flat)
        max_res, max_rel = float(residual.max()), float(relative.max())
    else:
        n_tangents = n_directions = 0
        max_res = max_rel = 0.0
    rank = numerical_rank(jac)
    return SymmetryDirections(
        n_params=spec.n_params, n_tangents=n_tangents, n_directions=n_directions,
        expected_directions=sum(spec.hidden_widths) if group_for(spec) == "scale" else 0,
        max_residual=max_res, relative_residual=max_rel, jacobian_rank=rank,
        jacobian_nullity=spec.n_params - rank, tangents=tangents,
    )
