"""Batched parameters <-> ordinary ``torch.nn`` networks: one network of a batch as an ``nn.Sequential``
(:func:`to_module`) and a plain PyTorch MLP or CNN read back into ``(spec, params)`` (:func:`from_module`).

The tests hold :func:`workbench.forward_pass.forward` to these modules: every network of a batch computes what the
same weights compute in ``nn.Sequential``.
"""
from __future__ import annotations

import torch
from torch import nn

from .nets import NetSpec, Params, SpecError, check_params

__all__ = ["to_module", "from_module"]


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
