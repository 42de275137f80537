"""Networks as data: a frozen :class:`NetSpec` and batched parameters for B networks at once.

Batched parameters are a list with one ``(weight, bias)`` pair per layer; every tensor carries a leading
network dimension ``B``:

* linear layer: ``weight (B, out, in)``, ``bias (B, out)``
* conv layer:   ``weight (B, out, in, k, k)``, ``bias (B, out)``

An MLP with ``widths = (d_in, h_1, ..., h_L, n_classes)`` has ``L + 1`` linear layers. A CNN with
``widths = (c_in, c_1, ..., c_L, n_classes)`` has ``L`` conv layers (each followed by the activation), a global
average pool and one dense layer ``c_L -> n_classes``. :func:`forward` evaluates all B networks on the same
inputs in one vectorised call (batched matmuls / grouped convolutions).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import operator
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import WorkbenchError

__all__ = [
    "ACTIVATIONS", "KINDS", "Params", "SpecError", "NetSpec", "small_cnn_zoo_spec", "check_params", "init_params",
    "n_networks", "map_params", "flatten_params", "unflatten_params", "select", "cat_params", "activation_fn",
    "conv_output_size", "conv_route", "conv_taps", "im2col", "prepare_inputs", "forward", "to_module", "from_module",
]

ACTIVATIONS = ("tanh", "relu")
KINDS = ("mlp", "cnn")
MAX_PARAMS = 10**8  # per network: the workbench handles zoos of small networks; larger specs are corrupt or hostile

Params = list[tuple[Tensor, Tensor]]


class SpecError(WorkbenchError, ValueError):
    """A network description or its parameters do not fit together."""


@dataclass(frozen=True)
class NetSpec:
    """What a network looks like, independent of its weights.

    Args:
        kind: ``"mlp"`` or ``"cnn"``.
        widths: node counts per layer, inputs first and classes last. MLP: ``(d_in, ..., n_classes)``;
            CNN: ``(in_channels, c_1, ..., c_L, n_classes)``.
        activation: ``"tanh"`` or ``"relu"`` (applied after every layer but the last).
        kernel_size, stride, padding: conv hyperparameters (CNN only, the same for every conv layer).
        image_size: side length of the (square) input image; needed for CNN spatial bookkeeping
            (Toeplitz unrolling), optional otherwise.
    """

    kind: str
    widths: tuple[int, ...]
    activation: str
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    image_size: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SpecError(f"unknown network kind {self.kind!r}; expected one of {KINDS}")
        if self.activation not in ACTIVATIONS:
            raise SpecError(
                f"unknown activation {self.activation!r}; the workbench supports {ACTIVATIONS} "
                "(their scaling symmetries are sign flips for tanh, positive scales for relu)"
            )
        if isinstance(self.widths, (str, bytes, dict)) or not hasattr(self.widths, "__iter__"):
            raise SpecError(f"widths must be a list of integers, got {type(self.widths).__name__} {self.widths!r:.80}")
        widths = tuple(_as_int(w, "widths") for w in self.widths)
        object.__setattr__(self, "widths", widths)
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, _as_int(getattr(self, name), name))
        if self.image_size is not None:
            object.__setattr__(self, "image_size", _as_int(self.image_size, "image_size"))
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise SpecError(f"widths must list at least two positive sizes, got {self.widths!r}")
        if self.n_params > MAX_PARAMS:
            raise SpecError(
                f"widths {widths} describe {self.n_params:,} parameters per network, more than the workbench's "
                f"limit of {MAX_PARAMS:,} (zoos of small networks); is the spec corrupt?"
            )
        if self.kind == "cnn":
            if len(widths) < 3:
                raise SpecError(f"a CNN needs at least one conv layer: widths (c_in, c_1, ..., n_classes), got {widths}")
            if self.kernel_size < 1 or self.stride < 1 or self.padding < 0:
                raise SpecError(
                    f"bad conv settings kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                )
            if self.image_size is not None:
                self.spatial_sizes()  # a SpecError when the image shrinks to nothing
        elif (self.kernel_size, self.stride, self.padding) != (1, 1, 0):
            raise SpecError("kernel_size/stride/padding only apply to CNNs")

    # -- constructors -------------------------------------------------------------------------------------------
    @classmethod
    def mlp(cls, widths: Sequence[int], activation: str = "relu") -> "NetSpec":
        return cls("mlp", tuple(widths), activation)

    @classmethod
    def cnn(
        cls,
        in_channels: int,
        channels: Sequence[int],
        n_classes: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 0,
        activation: str = "relu",
        image_size: int | None = None,
    ) -> "NetSpec":
        return cls("cnn", (in_channels, *channels, n_classes), activation, kernel_size, stride, padding, image_size)

    # -- structure ----------------------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of weight layers (conv + dense)."""
        return len(self.widths) - 1

    @property
    def n_conv(self) -> int:
        return self.n_layers - 1 if self.kind == "cnn" else 0

    @property
    def n_classes(self) -> int:
        return self.widths[-1]

    @property
    def edge_dim(self) -> int:
        """Size of one edge feature: 1 for MLPs, k*k for CNNs (dense edges use one slot of it)."""
        return self.kernel_size**2 if self.kind == "cnn" else 1

    def is_conv(self, layer: int) -> bool:
        return layer < self.n_conv

    def weight_shape(self, layer: int) -> tuple[int, ...]:
        out, inp = self.widths[layer + 1], self.widths[layer]
        if self.is_conv(layer):
            return (out, inp, self.kernel_size, self.kernel_size)
        return (out, inp)

    def bias_shape(self, layer: int) -> tuple[int, ...]:
        return (self.widths[layer + 1],)

    @property
    def n_params(self) -> int:
        return sum(math.prod(self.weight_shape(l)) + self.widths[l + 1] for l in range(self.n_layers))

    @property
    def n_nodes(self) -> int:
        return sum(self.widths)

    @property
    def n_edges(self) -> int:
        return sum(self.widths[l] * self.widths[l + 1] for l in range(self.n_layers))

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return self.widths[1:-1]

    def spatial_sizes(self, image_size: int | None = None) -> list[int]:
        """Side length of the feature maps entering each conv layer and leaving the last one (CNN only), for
        inputs of side ``image_size`` (default ``self.image_size``); a SpecError when they shrink to nothing."""
        size = self.image_size if image_size is None else image_size
        if self.kind != "cnn" or size is None:
            raise SpecError("spatial sizes need a CNN spec with image_size set")
        sizes = [int(size)]
        for layer in range(self.n_conv):
            sizes.append(conv_output_size(sizes[-1], self.kernel_size, self.stride, self.padding))
            if sizes[-1] < 1:
                raise SpecError(
                    f"image_size={size} shrinks to nothing at conv layer {layer} "
                    f"(kernel {self.kernel_size}, stride {self.stride}, padding {self.padding})"
                )
        return sizes

    @property
    def family(self) -> str:
        """Short family name used across the workbench, e.g. ``"cnn-tanh"``."""
        return f"{self.kind}-{self.activation}"

    def describe(self) -> str:
        if self.kind == "mlp":
            return f"MLP {'-'.join(map(str, self.widths))} ({self.activation}), {self.n_params:,} parameters"
        conv = f"{self.n_conv} x conv {self.kernel_size}x{self.kernel_size}/s{self.stride}/p{self.padding}"
        return (
            f"CNN {conv} channels {self.widths[1:-1]} -> GAP -> dense {self.widths[-1]} "
            f"({self.activation}), {self.n_params:,} parameters"
        )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetSpec":
        if not isinstance(d, dict):
            raise SpecError(f"a NetSpec description must be a dict of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"unknown NetSpec fields {sorted(map(str, unknown))}; valid fields are {sorted(known)}")
        missing = [k for k in ("kind", "widths", "activation") if k not in d]
        if missing:
            raise SpecError(f"NetSpec description lacks the fields {missing}; it has {sorted(map(str, d))}")
        return cls(**d)


def _as_int(value, name: str) -> int:
    """``value`` as an int (Python or numpy integers; not bools, floats or strings), else a SpecError."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise SpecError(f"NetSpec {name} must hold integers, got {type(value).__name__} {value!r:.80}")


def small_cnn_zoo_spec(activation: str = "tanh") -> NetSpec:
    """The Small CNN Zoo architecture (Unterthiner et al. 2020): 1x32x32 input, 3 x conv 16 3x3 stride 2 valid,
    global average pooling, dense 10; 4,970 parameters."""
    return NetSpec.cnn(1, (16, 16, 16), 10, kernel_size=3, stride=2, padding=0, activation=activation, image_size=32)


# -- parameters -------------------------------------------------------------------------------------------------
def check_params(spec: NetSpec, params: Params, *, finite: bool = False) -> int:
    """Validate batched ``params`` against ``spec``; return the network count B.

    Raises :class:`SpecError` naming the layer and the expected shape on any mismatch, and (with
    ``finite=True``) on NaN/inf values.
    """
    if not isinstance(params, (list, tuple)):
        raise SpecError(f"params must be a list of (weight, bias) pairs, got {type(params).__name__}")
    if len(params) != spec.n_layers:
        raise SpecError(f"{spec.describe()} has {spec.n_layers} layers but params has {len(params)} (weight, bias) pairs")
    batch = None
    for layer, pair in enumerate(params):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise SpecError(f"params[{layer}] must be a (weight, bias) pair")
        weight, bias = pair
        for name, t, shape in (("weight", weight, spec.weight_shape(layer)), ("bias", bias, spec.bias_shape(layer))):
            if not isinstance(t, Tensor):
                raise SpecError(f"layer {layer} {name} must be a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise SpecError(f"layer {layer} {name} has dtype {t.dtype}; network parameters must be floating point")
            if t.is_meta:
                raise SpecError(f"layer {layer} {name} is on the meta device (shapes without data); load or "
                                "initialise real parameters first")
            if tuple(t.shape[1:]) != shape or t.dim() != len(shape) + 1:
                raise SpecError(
                    f"layer {layer} {name} has shape {tuple(t.shape)}; expected (B, {', '.join(map(str, shape))}) "
                    f"for {spec.describe()}"
                )
            if batch is None:
                batch = t.shape[0]
            elif t.shape[0] != batch:
                raise SpecError(f"layer {layer} {name} holds {t.shape[0]} networks but earlier tensors hold {batch}")
            if finite and not torch.isfinite(t).all():
                bad = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).nonzero().flatten().tolist()
                raise SpecError(
                    f"layer {layer} {name} contains NaN or inf values (networks {bad[:10]}"
                    f"{' ...' if len(bad) > 10 else ''}); drop or repair those networks first"
                )
    return int(batch)


def init_params(
    spec: NetSpec,
    n: int,
    generator: torch.Generator | None = None,
    *,
    init_scale: float | Tensor = 1.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Params:
    """Fresh parameters for ``n`` networks: uniform(-s, s) with s = init_scale * sqrt(1 / fan_in) (PyTorch's
    default fan-in rule); biases likewise. ``init_scale`` may be a per-network tensor of shape (n,)."""
    scale = torch.as_tensor(init_scale, dtype=dtype).to(device).reshape(-1)
    if scale.numel() not in (1, n):
        raise SpecError(f"init_scale must be a scalar or have {n} entries, got {scale.numel()}")
    params = []
    for layer in range(spec.n_layers):
        wshape = spec.weight_shape(layer)
        fan_in = math.prod(wshape[1:])
        bound = math.sqrt(1.0 / fan_in)
        w = torch.rand((n, *wshape), generator=generator, dtype=dtype).to(device) * 2 - 1
        b = torch.rand((n, *spec.bias_shape(layer)), generator=generator, dtype=dtype).to(device) * 2 - 1
        s = (scale * bound).reshape(-1, *([1] * len(wshape)))
        params.append((w * s, b * s.reshape(-1, 1)))
    return params


def n_networks(params: Params) -> int:
    """B, the number of networks in a batch of parameters (the leading dimension of every tensor)."""
    return int(params[0][1].shape[0])


def map_params(fn, params: Params) -> Params:
    """``fn`` applied to every weight and bias tensor: ``map_params(lambda t: t.double(), params)``.

    The one place for per-tensor operations on batched parameters (device/dtype moves, detaching, noise), in the
    manner of nfn's ``WeightSpaceFeatures.map``."""
    return [(fn(w), fn(b)) for w, b in params]


def flatten_params(params: Params) -> Tensor:
    """(B, n_params): weights then bias per layer, flattened row-major."""
    b = n_networks(params)
    return torch.cat([t.reshape(b, -1) for pair in params for t in pair], dim=1)


def unflatten_params(spec: NetSpec, flat: Tensor) -> Params:
    if flat.dim() != 2 or flat.shape[1] != spec.n_params:
        raise SpecError(f"flat params must have shape (B, {spec.n_params}), got {tuple(flat.shape)}")
    out, pos = [], 0
    for layer in range(spec.n_layers):
        pair = []
        for shape in (spec.weight_shape(layer), spec.bias_shape(layer)):
            size = math.prod(shape)
            pair.append(flat[:, pos : pos + size].reshape(-1, *shape))
            pos += size
        out.append(tuple(pair))
    return out


def select(params: Params, index) -> Params:
    """Networks ``index`` (int, slice, list or bool/long tensor) of a batch, keeping the batch dimension."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return [(w[index], b[index]) for w, b in params]


def cat_params(parts: Sequence[Params]) -> Params:
    return [(torch.cat([p[l][0] for p in parts]), torch.cat([p[l][1] for p in parts])) for l in range(len(parts[0]))]


# -- the vectorised forward pass ------------------------------------------------------------------------------
def activation_fn(name: str):
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return torch.relu
    raise SpecError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Side length of a conv layer's output for a square input of side ``size`` (may be < 1: does not fit)."""
    return (size + 2 * padding - kernel_size) // stride + 1


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


# -- plain torch.nn.Module interop ----------------------------------------------------------------------------
def to_module(spec: NetSpec, params: Params, index: int = 0) -> nn.Sequential:
    """Network ``index`` of a batch as an ordinary ``nn.Sequential`` (copies the weights)."""
    check_params(spec, params)
    act_cls = {"tanh": nn.Tanh, "relu": nn.ReLU}[spec.activation]
    layers: list[nn.Module] = []
    for layer in range(spec.n_layers):
        w, b = params[layer]
        if spec.is_conv(layer):
            mod = nn.Conv2d(spec.widths[layer], spec.widths[layer + 1], spec.kernel_size, spec.stride, spec.padding)
        else:
            if spec.kind == "cnn" or layer == 0:
                layers.append(nn.Flatten() if spec.kind == "mlp" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
            mod = nn.Linear(spec.widths[layer], spec.widths[layer + 1])
        mod = mod.to(dtype=w.dtype, device=w.device)
        with torch.no_grad():
            mod.weight.copy_(w[index])
            mod.bias.copy_(b[index])
        layers.append(mod)
        if layer < spec.n_layers - 1:
            layers.append(act_cls())
    return nn.Sequential(*layers)


def from_module(module: nn.Module, image_size: int | None = None) -> tuple[NetSpec, Params]:
    """Read a plain PyTorch network into ``(spec, params)`` with B = 1.

    Understands ``nn.Sequential`` (nested is fine) made of Linear, Conv2d (square kernels, one stride/padding for
    all), Tanh/ReLU, Flatten, AdaptiveAvgPool2d(1) and Dropout; anything else is an error naming the module.
    """
    flat: list[nn.Module] = []

    def walk(m):
        if isinstance(m, nn.Sequential):
            for c in m:
                walk(c)
        else:
            flat.append(m)

    walk(module)
    linears = [m for m in flat if isinstance(m, (nn.Linear, nn.Conv2d))]
    acts = {type(m) for m in flat if isinstance(m, (nn.Tanh, nn.ReLU))}
    for m in flat:
        if not isinstance(m, (nn.Linear, nn.Conv2d, nn.Tanh, nn.ReLU, nn.Flatten, nn.AdaptiveAvgPool2d, nn.Dropout)):
            raise SpecError(
                f"from_module cannot read {type(m).__name__}; supported: Linear, Conv2d, Tanh, ReLU, Flatten, "
                "AdaptiveAvgPool2d(1), Dropout"
            )
    if not linears:
        raise SpecError("the module has no Linear or Conv2d layers")
    if len(acts) > 1 or (not acts and len(linears) > 1):
        raise SpecError(f"expected exactly one activation type (Tanh or ReLU) in the module, found {sorted(a.__name__ for a in acts)}")
    # a single linear layer has no activation; its spec still needs one, and either gives the same function
    activation = "tanh" if acts == {nn.Tanh} else "relu"
    if any(m.bias is None for m in linears):
        raise SpecError("every layer needs a bias (the graph view stores biases as node features)")
    convs = [m for m in linears if isinstance(m, nn.Conv2d)]
    params = [(m.weight.detach().clone()[None], m.bias.detach().clone()[None]) for m in linears]
    if not convs:
        widths = [linears[0].in_features] + [m.out_features for m in linears]
        for i, m in enumerate(linears[1:], start=1):
            if m.in_features != widths[i]:
                raise SpecError(f"Linear layer {i} takes {m.in_features} inputs but the layer before gives {widths[i]}")
        return NetSpec.mlp(widths, activation), params
    k, s, p = convs[0].kernel_size, convs[0].stride, convs[0].padding
    for c in convs:
        if c.kernel_size != k or c.stride != s or c.padding != p or k[0] != k[1] or c.groups != 1 or c.dilation != (1, 1):
            raise SpecError("conv layers must share one square kernel size, stride and padding, with groups=1, dilation=1")
    if not (len(linears) == len(convs) + 1 and isinstance(linears[-1], nn.Linear) and linears[: len(convs)] == convs):
        raise SpecError("a CNN must be conv layers, then global average pooling, then exactly one Linear layer")
    for m in flat:
        if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1)):
            raise SpecError(f"the pooling before the dense layer must be global (AdaptiveAvgPool2d(1)), got {m}")
    widths = [convs[0].in_channels] + [c.out_channels for c in convs] + [linears[-1].out_features]
    for i, c in enumerate(convs[1:], start=1):
        if c.in_channels != widths[i]:
            raise SpecError(f"Conv2d layer {i} takes {c.in_channels} channels but the layer before gives {widths[i]}")
    if linears[-1].in_features != widths[-2]:
        raise SpecError(f"the dense layer takes {linears[-1].in_features} inputs but the last conv layer has "
                        f"{widths[-2]} channels (global average pooling gives one input per channel)")
    spec = NetSpec.cnn(widths[0], widths[1:-1], widths[-1], k[0], s[0] if isinstance(s, tuple) else s,
                       p[0] if isinstance(p, tuple) else p, activation, image_size)
    return spec, params
