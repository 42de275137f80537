"""A trained metanetwork as a one-shot optimizer of your own PyTorch network: ``OneShot.load(name)(module)``.

:class:`OneShot` wraps a trained ScaleGMN (or NFN): a shipped optimizer by name (:mod:`workbench.optimizers`), a run
folder's ``best.pt``, or a shipped-format ``.safetensors`` file. Called on an ``nn.Sequential`` it reads the network
(:func:`read_module`: derives the :class:`~workbench.nets.NetSpec`, refuses what the workbench cannot express,
naming the first layer that does not fit), runs one forward pass of the metanetwork and returns a copy of the
module with the new weights -- the same layers, names, dtype and device. :meth:`OneShot.state_dict` gives the same as
a state dict, from a module or from a state dict alone (:func:`read_state_dict`; a state dict carries no activation,
stride or padding, so those are the optimizer's own).

Which networks a metanetwork takes besides its training architecture is decided by measurement
(:mod:`workbench.training.transfer`): architectures whose transfer was measured to work when the optimizer was shipped
run with a :class:`~workbench.training.transfer.TransferWarning` quoting the measurement; everything else is refused.
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from .. import optimizers
from .checkpoints import load_model
from ..errors import WorkbenchError
from ..interop import from_module
from ..metanet import NFN, ScaleGMN
from ..nets import NetSpec, Params, check_params
from .transfer import OneShotError, TransferWarning, check_transfer, for_architecture

__all__ = ["OneShot", "OneShotError", "TransferWarning", "SUPPORTED", "read_module", "read_state_dict"]

#: what :func:`read_module` reads, for error messages
SUPPORTED = ("nn.Sequential (nested is fine) of Linear and Conv2d layers with biases, one activation kind (Tanh or "
             "ReLU) between them, Flatten() before the first Linear layer of an MLP, and for a CNN: conv layers (one "
             "square kernel, stride and padding for all, zero padding, groups=1, dilation=1), each followed by the "
             "activation, then AdaptiveAvgPool2d(1), Flatten() and one Linear layer; Dropout anywhere")


# -- reading a network ---------------------------------------------------------------------------------------------
def _leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The layers of a (nested) ``nn.Sequential`` in the order they run, with their state-dict names."""
    if not isinstance(module, nn.Sequential):
        return [(prefix, module)]
    return [leaf for name, child in module.named_children() for leaf in _leaves(child, f"{prefix}.{name}".lstrip("."))]


_TOKENS = ((nn.Linear, "L"), (nn.Conv2d, "C"), (nn.Tanh, "A"), (nn.ReLU, "A"), (nn.Flatten, "F"),
           (nn.AdaptiveAvgPool2d, "P"), (nn.Dropout, None))
# what may come next: state -> {token: next state}; a network is readable when it ends in an accepting state
_NEXT = {"start": {"F": "flat", "L": "dense", "C": "conv"}, "flat": {"L": "dense"}, "dense": {"A": "dense act"},
         "dense act": {"L": "dense"}, "conv": {"A": "conv act"}, "conv act": {"C": "conv", "P": "pool"},
         "pool": {"F": "pooled"}, "pooled": {"L": "head"}, "head": {}}
_ACCEPT = {"dense", "head"}
_EXPECTED = {"start": "Flatten, Linear or Conv2d", "flat": "a Linear layer", "dense": "the activation (an MLP's "
             "last layer is Linear, with no activation after it)", "dense act": "a Linear layer (the last layer is "
             "Linear, with no activation after it)",
             "conv": "the activation after every conv layer", "conv act": "another Conv2d or AdaptiveAvgPool2d(1)",
             "pool": "Flatten() after the pooling", "pooled": "the one Linear layer of a CNN", "head": "nothing (a "
             "CNN ends with one Linear layer, no activation after it)"}


def _layer_problem(layer: nn.Module) -> str | None:
    """Why one layer of a supported type is still not readable (settings the workbench's networks do not have)."""
    if isinstance(layer, (nn.Linear, nn.Conv2d)) and layer.bias is None:
        return "it has no bias (the graph view stores a bias on every neuron); use bias=True"
    if isinstance(layer, nn.Conv2d):
        k, s, p = layer.kernel_size, layer.stride, layer.padding
        if isinstance(p, str) or layer.padding_mode != "zeros" or layer.groups != 1 or layer.dilation != (1, 1):
            return "only zero padding given as a number, groups=1 and dilation=1 are supported"
        if k[0] != k[1] or s[0] != s[1] or p[0] != p[1]:
            return "kernel, stride and padding must be square (the same along both axes)"
    if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
        return "only Flatten() with its defaults (start_dim=1, end_dim=-1) is supported"
    if isinstance(layer, nn.AdaptiveAvgPool2d) and layer.output_size not in (1, (1, 1)):
        return "only global average pooling, AdaptiveAvgPool2d(1), is supported"
    return None


def read_module(module: nn.Module) -> tuple[NetSpec, Params]:
    """``(spec, params)`` of a network the workbench can express, with B = 1 (copies of its weights).

    Raises :class:`OneShotError` naming the first layer that does not fit (its name as in the module's state dict)
    and listing what is supported (:data:`SUPPORTED`)."""
    if not isinstance(module, nn.Sequential):
        raise OneShotError(f"the one shot reads nn.Sequential networks; got {type(module).__name__} (the order in "
                           f"which a custom module's forward calls its layers is unknown). Supported: {SUPPORTED}")
    state, activation, last = "start", None, None
    for name, layer in _leaves(module):
        where = f"layer {name!r} ({layer!r:.80})"
        token = next((t for cls, t in _TOKENS if type(layer) is cls), "?")
        if token == "?":
            raise OneShotError(f"{where} is not supported. Supported: {SUPPORTED}")
        problem = _layer_problem(layer)
        if problem:
            raise OneShotError(f"{where}: {problem}")
        if token is None:  # Dropout: the identity in eval mode
            continue
        if token == "A":
            activation = activation or type(layer)
            if type(layer) is not activation:
                raise OneShotError(f"{where}: the network mixes {activation.__name__} and {type(layer).__name__}; "
                                   "one activation kind throughout is supported")
        if token not in _NEXT[state]:
            raise OneShotError(f"{where} cannot come here: expected {_EXPECTED[state]}. Supported: {SUPPORTED}")
        state, last = _NEXT[state][token], where
    if state not in _ACCEPT:
        ends = f"the network ends after {last}" if last else "the network has no layers"
        raise OneShotError(f"{ends}: expected {_EXPECTED[state]} next. Supported: {SUPPORTED}")
    return from_module(module)


def _state_layers(state: Mapping[str, Tensor], source: str) -> dict[str, dict[str, Tensor]]:
    """``{layer prefix: {"weight": w, "bias": b}}`` of a state dict, in the order the layers first appear."""
    if not isinstance(state, Mapping) or not state:
        raise OneShotError(f"{source} is not a state dict of tensors (got {type(state).__name__})")
    layers: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        prefix, _, leaf = str(key).rpartition(".")
        if not isinstance(value, Tensor) or leaf not in ("weight", "bias") or not value.is_floating_point():
            raise OneShotError(f"{source} holds {key!r}, which is not the floating-point weight or bias of a Linear "
                               "or Conv2d layer (BatchNorm statistics? an optimizer state?). Supported: a state dict "
                               f"of {SUPPORTED}")
        layers.setdefault(prefix, {})[leaf] = value
    for prefix, pair in layers.items():
        if set(pair) != {"weight", "bias"}:
            raise OneShotError(f"{source}: layer {prefix!r} has no {'bias' if 'weight' in pair else 'weight'}; "
                               "every layer needs a weight and a bias")
        if pair["weight"].dim() not in (2, 4) or pair["bias"].dim() != 1:
            raise OneShotError(f"{source}: {prefix}.weight has shape {tuple(pair['weight'].shape)}; expected a Linear "
                               "(out, in) or Conv2d (out, in, k, k) weight and a bias (out,)")
    return layers


def read_state_dict(state: Mapping[str, Tensor], like: NetSpec, source: str = "the state dict"
                    ) -> tuple[NetSpec, Params]:
    """``(spec, params)`` of a network saved as a state dict of Linear / Conv2d layers (``weight`` and ``bias`` per
    layer, in the order they run). A state dict holds no activation, stride or padding: those are ``like``'s (the
    optimizer's training networks'); pass the module itself to have them checked."""
    layers = _state_layers(state, source)
    params = [(p["weight"].detach().clone()[None], p["bias"].detach().clone()[None]) for p in layers.values()]
    return _spec_of(params, like, source), params


def _spec_of(params: Params, like: NetSpec, source: str) -> NetSpec:
    """The spec of state-dict layers: conv layers then one dense layer (a CNN) or dense layers only (an MLP)."""
    convs = [w.dim() == 5 for w, _ in params]
    n_conv = sum(convs)
    if convs != [True] * n_conv + [False] * (len(params) - n_conv) or (n_conv and len(params) != n_conv + 1):
        raise OneShotError(f"{source}: its layers are not dense layers only (an MLP) nor conv layers followed by one "
                           "dense layer (a CNN)")
    widths = [params[0][0].shape[2]] + [w.shape[1] for w, _ in params]
    for i, (w, _) in enumerate(params[1:], start=1):
        if w.shape[2] != widths[i]:
            raise OneShotError(f"{source}: layer {i} takes {w.shape[2]} inputs but the layer before gives {widths[i]}")
    try:
        if not n_conv:
            spec = NetSpec.mlp(widths, like.activation)
        else:
            k = params[0][0].shape[-1]
            stride, padding = (like.stride, like.padding) if like.kind == "cnn" else (1, 0)
            spec = NetSpec.cnn(widths[0], widths[1:-1], widths[-1], k, stride, padding, like.activation)
        check_params(spec, params)
    except WorkbenchError as err:
        raise OneShotError(f"{source}: {err}") from None
    return spec


# -- the optimizer -----------------------------------------------------------------------------------------------------
class OneShot:
    """A trained metanetwork that maps a network to a new one of the same architecture in one forward pass.

    Args:
        model: the trained ScaleGMN or NFN (its ``spec`` is the architecture of its training networks).
        name: where it came from (a shipped name or a file), for messages.
        provenance: the shipped record (run, commit, held-out gain with its interval, measured transfers); None for
            a run's checkpoint (which then takes its training architecture only).
        zoo: what its training networks were: ``dataset`` and ``seed`` (the data split's), as the record's ``zoo``
            field or a run folder's ``run.json`` hold them; :attr:`dataset` and :attr:`data_seed` (None and 0 unknown).

    ``OneShot.load("mlp-tanh-ce")(net)`` returns a copy of ``net`` with the new weights; :meth:`state_dict` the same
    as a state dict. The pass runs in the network's dtype (float64 networks in float64; half precision in float32).
    """

    def __init__(self, model: ScaleGMN | NFN, name: str, provenance: dict | None = None, zoo: dict | None = None):
        self.model, self.name, self.provenance = model.eval(), name, provenance
        zoo = zoo or (provenance or {}).get("zoo") or {}
        self.dataset, self.data_seed = zoo.get("dataset"), int(zoo.get("seed", 0))
        self._built: dict[tuple, nn.Module] = {}

    @classmethod
    def load(cls, source: str | os.PathLike, map_location="cpu") -> "OneShot":
        """A shipped optimizer by name (:func:`workbench.optimizers.available`), a run folder or its ``best.pt``
        (loaded with ``weights_only=True``), or a shipped-format ``.safetensors`` file (its ``.json`` beside it)."""
        text = os.fspath(source)
        if text in optimizers.names():
            model, record = optimizers.load(text)
            return cls(model.to(map_location), text, record)
        path = Path(text)
        if path.suffix == ".safetensors":
            model, record = optimizers.load_file(path)
            return cls(model.to(map_location), str(path), record)
        if path.is_dir() and (path / "best.pt").is_file():
            path = path / "best.pt"
        if path.suffix != ".pt" and not path.is_file():
            shipped = ", ".join(optimizers.names()) or "none shipped"
            raise OneShotError(f"{text!r} is neither a shipped optimizer ({shipped}) nor a metanetwork checkpoint; "
                               "pass one of those names, a run folder or <run folder>/best.pt")
        model = load_model(path, map_location=map_location)
        try:  # the run folder's identity names the data set its zoo was trained on, and the zoo's seed
            identity = json.loads((path.parent / "run.json").read_text())
            zoo = {"dataset": str(identity["dataset"]), "seed": int((identity.get("zoo") or {}).get("seed", 0))}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            zoo = None
        return cls(model, str(path), zoo=zoo)

    @property
    def spec(self) -> NetSpec:
        """The architecture of the networks the metanetwork was trained on."""
        return self.model.spec

    def __repr__(self) -> str:
        return f"OneShot({self.name!r}: {type(self.model).__name__} for {self.spec.describe()})"

    def __call__(self, module: nn.Module) -> nn.Module:
        """A copy of ``module`` (an ``nn.Sequential`` :func:`read_module` reads) holding the one-shot weights."""
        spec, params = read_module(module)
        new = self.params(spec, params)
        out = copy.deepcopy(module)
        layers = [layer for _, layer in _leaves(out) if isinstance(layer, (nn.Linear, nn.Conv2d))]
        with torch.no_grad():
            for layer, (w, b) in zip(layers, new):
                layer.weight.copy_(w[0])
                layer.bias.copy_(b[0])
        return out

    def state_dict(self, network: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The one-shot weights as a state dict with ``network``'s keys, dtypes and devices: of a module (its
        architecture checked) or of a state dict (activation, stride and padding taken as the optimizer's)."""
        if isinstance(network, nn.Module):
            return self(network).state_dict()
        spec, params = read_state_dict(network, self.spec)
        new = dict(zip(_state_layers(network, "the state dict"), self.params(spec, params)))
        out = {}
        for key, value in network.items():
            prefix, _, leaf = key.rpartition(".")
            out[key] = new[prefix][0 if leaf == "weight" else 1][0].to(value.device, value.dtype).clone()
        return out

    def params(self, spec: NetSpec, params: Params) -> Params:
        """The one shot of batched ``params`` of ``spec`` (:mod:`workbench.nets`), in their dtype and device; the
        architecture checked by :func:`~workbench.training.transfer.check_transfer` (a :class:`TransferWarning` for an
        architecture whose transfer was measured to work)."""
        record = self.provenance or {}
        note = check_transfer(self.spec, spec, model="nfn" if isinstance(self.model, NFN) else "scalegmn",
                              objective=record.get("objective", "ce"), reference=record.get("fresh_zoo"),
                              measured={t["variant"]: t for t in record.get("transfers", [])})
        if note:
            warnings.warn(note, TransferWarning, stacklevel=3)
        dtype, device = params[0][0].dtype, params[0][0].device
        compute = torch.float64 if dtype == torch.float64 else torch.float32
        new = self._model_for(spec, compute).optimize(self._pass_spec(spec), params)
        bad = [f"layer {l} {n}" for l, pair in enumerate(new) for n, t in zip(("weight", "bias"), pair)
               if not bool(torch.isfinite(t).all())]
        if bad:
            raise OneShotError(f"the one shot of {self.name} gave NaN or infinite values ({', '.join(bad[:4])}); the "
                               "network's weights may be far outside the scale of its training networks")
        return [(w.to(device, dtype), b.to(device, dtype)) for w, b in new]

    def _pass_spec(self, spec: NetSpec) -> NetSpec:
        """``spec`` as the metanetwork is built for it: the image size is the training networks' (nothing in the
        pass depends on it; a module does not say it)."""
        return replace(spec, image_size=self.spec.image_size) if spec.kind == "cnn" else spec

    def _model_for(self, spec: NetSpec, dtype: torch.dtype) -> nn.Module:
        """The metanetwork for networks of ``spec`` in ``dtype``: the trained one, or its weights on one built for
        ``spec`` (:func:`~workbench.training.transfer.for_architecture`), cached."""
        key = (self._pass_spec(spec), dtype)
        if key not in self._built:
            model = self.model if key[0] == self.spec else for_architecture(self.model, key[0])
            if dtype != next(self.model.parameters()).dtype:
                model = copy.deepcopy(model).to(dtype)
            self._built[key] = model.eval()
        return self._built[key]
