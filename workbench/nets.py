"""Networks as data: a frozen :class:`NetSpec` and batched parameters for B networks at once.

Batched parameters are a list with one ``(weight, bias)`` pair per layer; every tensor carries a leading
network dimension ``B``:

* linear layer: ``weight (B, out, in)``, ``bias (B, out)``
* conv layer:   ``weight (B, out, in, k, k)``, ``bias (B, out)``

An MLP with ``widths = (d_in, h_1, ..., h_L, n_classes)`` has ``L + 1`` linear layers. A CNN with
``widths = (c_in, c_1, ..., c_L, n_classes)`` has ``L`` conv layers (each followed by the activation), a global
average pool and one dense layer ``c_L -> n_classes``. The operations on batched parameters (check, initialise,
map, flatten, select, concatenate) live here; the vectorised forward pass of all B networks is
:func:`workbench.forward_pass.forward`, and the round trip to ordinary ``nn.Module`` networks is
:mod:`workbench.interop`.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .errors import WorkbenchError

__all__ = [
    "ACTIVATIONS", "KINDS", "Params", "SpecError", "NetSpec", "small_cnn_zoo_spec", "conv_output_size",
    "check_params", "init_params", "n_networks", "map_params", "flatten_params", "unflatten_params", "select",
    "cat_params",
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


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Side length of a conv layer's output for a square input of side ``size`` (may be < 1: does not fit)."""
    return (size + 2 * padding - kernel_size) // stride + 1


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
