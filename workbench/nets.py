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
import math
import operator
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import WorkbenchError

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
                size = self.image_size
                for layer in range(self.n_conv):
                    size = (size + 2 * self.padding - self.kernel_size) // self.stride + 1
                    if size < 1:
                        raise SpecError(
                            f"image_size={self.image_size} shrinks to nothing at conv layer {layer} "
                            f"(kernel {self.kernel_size}, stride {self.stride}, padding {self.padding})"
                        )
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

    def spatial_sizes(self) -> list[int]:
        """Side length of the feature maps entering each conv layer and leaving the last one (CNN only)."""
        if self.kind != "cnn" or self.image_size is None:
            raise SpecError("spatial sizes need a CNN spec with image_size set")
        sizes = [self.image_size]
        for _ in range(self.n_conv):
            sizes.append((sizes[-1] + 2 * self.padding - self.kernel_size) // self.stride + 1)
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
    return int(params[0][1].shape[0])


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


def to_(params: Params, *, dtype=None, device=None) -> Params:
    return [(w.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)) for w, b in params]


def detach(params: Params) -> Params:
    return [(w.detach(), b.detach()) for w, b in params]


# -- the vectorised forward pass ------------------------------------------------------------------------------
def activation_fn(name: str):
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return torch.relu
    raise SpecError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


def _dropout(h: Tensor, p, n_nets: int, layout: str, generator) -> Tensor:
    """Inverted dropout with a per-network rate ``p`` (float or (B,) tensor). ``layout`` says where the network
    dimension lives: "bn" for (B, N, C), "nbc" for (N, B*C, H, W)."""
    p = torch.as_tensor(p, dtype=h.dtype, device=h.device).reshape(-1)
    if p.numel() == 1:
        p = p.expand(n_nets)
    if not bool((p > 0).any()):
        return h
    keep = (1 - p).clamp_min(1e-6)
    if layout == "bn":
        shape_keep = keep.reshape(-1, 1, 1)
    else:  # (N, B*C, H, W): repeat each network's rate over its channels
        channels = h.shape[1] // n_nets
        shape_keep = keep.repeat_interleave(channels).reshape(1, -1, 1, 1)
    mask = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype) < shape_keep
    return h * mask / shape_keep


def forward(
    spec: NetSpec,
    params: Params,
    x: Tensor,
    *,
    dropout: float | Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Logits of all B networks on the shared inputs ``x``.

    Args:
        x: MLP ``(N, d_in)`` (images are flattened); CNN ``(N, c_in, H, W)``.
        dropout: rate after each hidden activation (float or per-network (B,) tensor); 0 at evaluation.

    Shapes:
        returns ``(B, N, n_classes)``.
    """
    n_nets = len(params[0][1]) if params else 0
    act = activation_fn(spec.activation)
    use_dropout = isinstance(dropout, Tensor) or dropout > 0
    if spec.kind == "mlp":
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != spec.widths[0]:
            raise SpecError(f"inputs have {x.shape[1]} features; {spec.describe()} expects {spec.widths[0]}")
        w, b = params[0]
        h = torch.einsum("ni,boi->bno", x, w) + b[:, None, :]  # (B, N, h1)
        for layer in range(1, spec.n_layers):
            h = act(h)
            if use_dropout:
                h = _dropout(h, dropout, n_nets, "bn", generator)
            w, b = params[layer]
            h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))  # (B, N, out)
        return h

    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] != spec.widths[0]:
        raise SpecError(f"inputs of shape {tuple(x.shape)} do not fit {spec.describe()} (expected (N, C, H, W))")
    n = x.shape[0]
    h = x
    for layer in range(spec.n_conv):
        w, b = params[layer]  # (B, out, in, k, k), (B, out)
        out = w.shape[1]
        groups = 1 if layer == 0 else n_nets  # the first layer reads the shared input
        h = F.conv2d(
            h, w.reshape(n_nets * out, *w.shape[2:]), b.reshape(-1), stride=spec.stride, padding=spec.padding,
            groups=groups,
        )  # (N, B*out, H', W')
        h = act(h)
        if use_dropout:
            h = _dropout(h, dropout, n_nets, "nbc", generator)
    pooled = h.mean(dim=(2, 3)).reshape(n, n_nets, -1).transpose(0, 1)  # (B, N, c_L)
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
