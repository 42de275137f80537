"""Figures for the gauge-freedom notebook: pure ``compute_...`` / ``..._figure`` functions returning plotly figures
(tested by pytest) and thin ipywidgets wrappers built with ``interactive_output``.
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from ..reporting.captions import num, set_caption
from ..gauge import conv_output_size, conv_to_toeplitz, conv_vs_dense_directions, distance_to_convolution
from ..forward_pass import forward
from ..nets import NetSpec, Params, check_params, select
from ..symmetry import SymmetryError, act, group_for, unit_scaling
from .widgets import show_in

__all__ = ["compute_scaling_demo", "toeplitz_figure", "directions_figure", "scaling_widget"]

BEFORE, AFTER = "#1f77b4", "#ff7f0e"


def _demo_scale(spec: NetSpec, log10_scale: float, sign_flip: bool, strict: bool) -> float:
    group = group_for(spec)
    if strict and group == "scale" and sign_flip:
        raise SymmetryError("relu is not odd (relu(-x) != -relu(x)): a sign flip changes the function; "
                            "pass strict=False to show it anyway")
    if strict and group == "sign" and log10_scale != 0:
        raise SymmetryError("tanh is odd but not positively homogeneous: only sign flips preserve the function; "
                            "pass strict=False to show what a positive scale does")
    return (-1.0 if sign_flip else 1.0) * 10.0 ** log10_scale


def compute_scaling_demo(
    spec: NetSpec,
    params: Params,
    hidden_layer: int,
    unit: int,
    x: Tensor,
    *,
    log10_scale: float = 0.0,
    sign_flip: bool = False,
    network: int = 0,
    n_examples: int = 8,
    strict: bool = True,
) -> tuple[go.Figure, float]:
    """Scale one hidden neuron (MLP) or channel (CNN) of one network and show that the logits do not move.

    The unit's bias and incoming weights are multiplied by ``q = (-1 if sign_flip) * 10**log10_scale`` and its
    outgoing weights divided by ``q``.

    Args:
        hidden_layer: index among hidden layers (0 = ``spec.widths[1]``); ``unit``: neuron/channel inside it.
        x: probe inputs for :func:`workbench.forward_pass.forward`.
        strict: refuse scales outside the activation's symmetry group (positive for ReLU, +-1 for tanh).

    Returns:
        the figure (incoming weights, outgoing weights, logits; before vs after) and ``max |delta logits|``
        over all of ``x``.
    """
    check_params(spec, params)
    scale = _demo_scale(spec, log10_scale, sign_flip, strict)
    single = select(params, network)
    g = unit_scaling(spec, hidden_layer, unit, scale, 1, dtype=single[0][0].dtype, device=single[0][0].device)
    scaled = act(spec, g, single)
    with torch.no_grad():
        before = forward(spec, single, x)[0]  # (N, classes)
        after = forward(spec, scaled, x)[0]
    delta = float((after - before).abs().max())
    fig = _scaling_demo_figure(spec, single, scaled, before, after, hidden_layer, unit, n_examples)
    fig.update_layout(
        title=f"{spec.family}: hidden layer {hidden_layer}, {'channel' if spec.kind == 'cnn' else 'neuron'} {unit} "
              f"scaled by {scale:.3g}; max |delta logits| = {delta:.1e}",
    )
    kind = "channel" if spec.kind == "cnn" else "neuron"
    set_caption(fig, f"The {kind}'s incoming weights and bias are multiplied by {scale:.3g} and its outgoing weights "
                     f"divided by it; the logits of {min(n_examples, len(x))} inputs before (rings) and after (dots) "
                     f"differ by at most {delta:.1e} over all {len(x)} probe inputs"
                     + (", float rounding: the function is unchanged." if delta < 1e-5 else
                        ": the function changed (this scale is not a symmetry of the activation)."))
    return fig, delta


def _scaling_demo_figure(spec: NetSpec, single: Params, scaled: Params, before: Tensor, after: Tensor,
                         hidden_layer: int, unit: int, n_examples: int) -> go.Figure:
    """The three panels of :func:`compute_scaling_demo`: the unit's incoming and outgoing weights and the logits
    of the first ``n_examples`` inputs, before vs after the scaling."""

    def incoming(p):
        w, b = p[hidden_layer]
        return torch.cat([w[0, unit].reshape(-1), b[0, unit].reshape(1)])

    def outgoing(p):
        return p[hidden_layer + 1][0][0, :, unit].reshape(-1)

    kind = "channel" if spec.kind == "cnn" else "neuron"
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        f"into {kind} {unit} (weights, bias last)", f"out of {kind} {unit}", "logits",
    ))
    for col, fn in ((1, incoming), (2, outgoing)):
        for name, p, color in (("before", single, BEFORE), ("after", scaled, AFTER)):
            vals = fn(p).detach().cpu()
            fig.add_trace(go.Bar(y=vals.tolist(), name=name, marker_color=color, legendgroup=name,
                                 showlegend=col == 1), row=1, col=col)
    shown_before = before[:n_examples].reshape(-1).detach().cpu().tolist()
    shown_after = after[:n_examples].reshape(-1).detach().cpu().tolist()
    fig.add_trace(go.Scatter(y=shown_before, mode="markers", name="logits before", legendgroup="before",
                             marker=dict(color=BEFORE, size=12, symbol="circle-open", line=dict(width=2))), 1, 3)
    fig.add_trace(go.Scatter(y=shown_after, mode="markers", name="logits after", legendgroup="after",
                             marker=dict(color=AFTER, size=6)), 1, 3)
    fig.update_xaxes(title_text="weight index", row=1, col=1)
    fig.update_xaxes(title_text="weight index", row=1, col=2)
    fig.update_xaxes(title_text="example x class", row=1, col=3)
    fig.update_layout(barmode="group", height=380)
    return fig


def toeplitz_figure(
    weight: Tensor,
    in_size: int,
    stride: int = 1,
    padding: int = 0,
    *,
    channel_scales: Tensor | None = None,
    position_scales: Tensor | None = None,
    generator: torch.Generator | None = None,
    scale_range: tuple[float, float] = (0.25, 4.0),
) -> tuple[go.Figure, dict[str, float]]:
    """The unrolled matrix of one conv layer, rescaled per output channel and per output neuron.

    Args:
        weight: ``(out, in, k, k)`` kernel of one network.
        channel_scales: ``(out,)`` scales, constant over positions (random log-uniform if None).
        position_scales: ``(out * H'W',)`` scales, one per output neuron (random log-uniform if None).

    Returns:
        the figure (three heatmaps) and the relative distances to the nearest convolution:
        ``{"original", "per_channel", "per_position"}``.
    """
    n_out, n_in, k, _ = weight.shape
    weight = weight.detach().to(torch.float64).cpu()
    matrix = conv_to_toeplitz(weight, in_size, stride, padding)  # (out*P, in*Q)
    n_pos = math.prod(conv_output_size(in_size, k, stride, padding))
    low, high = math.log(scale_range[0]), math.log(scale_range[1])

    def draw(n):
        return torch.exp(low + torch.rand(n, generator=generator, dtype=torch.float64) * (high - low))

    q_channel = draw(n_out) if channel_scales is None else channel_scales.to(torch.float64).cpu()
    q_channel = q_channel.repeat_interleave(n_pos)  # constant over the positions of a channel
    q_position = draw(n_out * n_pos) if position_scales is None else position_scales.to(torch.float64).cpu()
    panels = {
        "original": matrix,
        "per_channel": q_channel[:, None] * matrix,
        "per_position": q_position[:, None] * matrix,
    }
    dist = {name: distance_to_convolution(m, n_out, n_in, k, in_size, stride, padding) for name, m in panels.items()}
    titles = (  # two lines each: three one-line titles run into each other below ~1100 px
        f"conv as matrix<br>({matrix.shape[0]} x {matrix.shape[1]})",
        f"per-channel scale<br>distance {dist['per_channel']:.2f}",
        f"per-position scale<br>distance {dist['per_position']:.2f}",
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.05)
    for col, m in enumerate(panels.values(), start=1):
        bound = float(m.abs().max()) or 1.0
        fig.add_trace(go.Heatmap(z=m.tolist(), colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
                                 showscale=col == 3), row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    # two short title lines: a one-line title is cut off in a notebook's output area (~1000 px)
    fig.update_layout(height=480, margin=dict(t=130),
                      title="Doubly-block-Toeplitz view: only per-channel scales stay convolutions<br>"
                            "<sup>distance = relative Frobenius distance to the nearest convolution</sup>")
    return set_caption(fig, _toeplitz_caption(weight.shape, matrix.shape, dist)), dist


def _toeplitz_caption(kernel_shape, matrix_shape, dist: dict[str, float]) -> str:
    n_out, n_in, k, _ = kernel_shape

    def effect(distance: float) -> str:
        return (f"keeps it a convolution (distance {distance:.1e})" if distance < 1e-6 else
                f"moves it {distance:.2f} (relative) away from the nearest convolution")

    return (f"One conv layer ({n_out} x {n_in} channels, {k} x {k} kernels) unrolled to its {matrix_shape[0]} x "
            f"{matrix_shape[1]} matrix. Scaling every output channel {effect(dist['per_channel'])}; scaling every "
            f"output neuron separately {effect(dist['per_position'])}.")


def directions_figure(spec: NetSpec) -> go.Figure:
    """Bars per conv layer: scaling directions of the conv layer versus the dense layer with the same inputs and
    outputs (log y axis)."""
    table = conv_vs_dense_directions(spec)
    x = [f"conv layer {i}" for i in table.index]
    conv, dense = table["conv scaling directions"].tolist(), table["dense scaling directions"].tolist()
    fig = go.Figure([
        go.Bar(x=x, y=conv, name="conv: one per channel", text=conv, textposition="outside"),
        go.Bar(x=x, y=dense, name="dense: one per neuron", text=dense, textposition="outside"),
    ])
    # the log axis starts at 1 (10^0), so a bar's height is its count's order of magnitude; plotly's automatic
    # range starts just below the smallest count and leaves the conv bars a few pixels high
    top = math.log10(max(conv + dense + [1])) * 1.15 + 0.1
    fig.update_layout(barmode="group", height=380, margin=dict(t=100),
                      yaxis=dict(type="log", range=[0, top], title="scaling directions (log scale)"),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                      title=f"Scaling gauge freedom per layer<br><sup>{spec.describe()}</sup>")
    return set_caption(fig, f"Positive scalings that leave a ReLU network's function unchanged, per conv layer: "
                            f"{sum(conv):,} in all for the CNN (one per channel) against {sum(dense):,} for the same "
                            f"layers written as dense layers (one per neuron, channel x position), "
                            f"{sum(dense) / max(sum(conv), 1):,.0f} times as many.")


def gauge_l1_figure(frame, spec: NetSpec | None = None) -> go.Figure:
    """Bars per network: the share of its L1 norm that balancing removes with a CNN's scalings (one per channel)
    and with the same function's MLP scalings (one per neuron); ``frame`` from
    :func:`workbench.balance.cnn_vs_mlp_gauge_l1`. ``spec`` (the CNN's, optional) lets the caption count the two
    kinds of scalings."""
    x = [f"network {int(i)}" for i in frame["network"]]
    fig = go.Figure([
        go.Bar(x=x, y=frame["removed_by_channels_pct"].tolist(), name="CNN: one scale per channel",
               text=[f"{v:.1f} %" for v in frame["removed_by_channels_pct"]], textposition="outside"),
        go.Bar(x=x, y=frame["removed_by_neurons_pct"].tolist(), name="same function as an MLP: one scale per neuron",
               text=[f"{v:.1f} %" for v in frame["removed_by_neurons_pct"]], textposition="outside"),
    ])
    top = float(max(frame["removed_by_neurons_pct"].max(), frame["removed_by_channels_pct"].max(), 1.0)) * 1.25
    fig.update_layout(barmode="group", height=380, margin=dict(t=100), yaxis=dict(range=[0, top],
                      title="L1 norm removed by balancing (%)"),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                      title="How much of the L1 norm is gauge (same weights, unrolled; the function is unchanged)")
    return set_caption(fig, _gauge_l1_caption(frame, spec))


def _gauge_l1_caption(frame, spec: NetSpec | None) -> str:
    """The finding of the L1 figure: how much of what per-neuron scalings remove the per-channel ones already do."""
    channels, neurons = frame["removed_by_channels_pct"], frame["removed_by_neurons_pct"]
    share = float(channels.sum() / neurons.sum() * 100) if neurons.sum() > 0 else float("nan")
    cnn_part = mlp_part = ending = ""
    if spec is not None and spec.kind == "cnn":
        n_channels = sum(spec.hidden_widths)
        n_neurons = sum(c * s * s for c, s in zip(spec.hidden_widths, spec.spatial_sizes()[1:]))
        cnn_part, mlp_part = f" with its {n_channels:,} channel scalings", f" with {n_neurons:,} neuron scalings"
        ending = f", with {n_neurons / n_channels:,.0f} times fewer scalings"
    return (f"Balancing (moving to the L1-smallest point of the scaling orbit; the function is unchanged) removes "
            f"{num(channels.mean())} % of the L1 norm on average from the CNN{cnn_part}, and {num(neurons.mean())} % "
            f"from the same function written as an MLP{mlp_part} (over {len(frame)} networks): the channel scalings "
            f"remove {num(share, 0)} % of what the neuron scalings do{ending}.")


def scaling_widget(spec: NetSpec, params: Params, x: Tensor, *, network: int = 0):
    """Sliders for :func:`compute_scaling_demo`: hidden layer, unit, and log10 scale (ReLU) or a sign flip (tanh).

    Built with ``ipywidgets.interactive_output`` so exceptions surface in the output area.
    """
    import ipywidgets as widgets

    hidden = spec.hidden_widths
    label = {"style": {"description_width": "initial"}}  # whole labels ("hidden la..." otherwise)
    layer = widgets.IntSlider(value=0, min=0, max=max(len(hidden) - 1, 0), description="hidden layer", **label)
    unit = widgets.IntSlider(value=0, min=0, max=hidden[0] - 1, description="unit", **label)
    scales = group_for(spec) == "scale"  # a log10-scale slider for positive scales, a checkbox for sign flips
    if scales:
        control = widgets.FloatSlider(value=1.0, min=-2.0, max=2.0, step=0.1, description="log10 scale", **label)
    else:
        control = widgets.Checkbox(value=True, description="flip sign", indent=False, **label)

    def on_layer(change):
        unit.max = hidden[change["new"]] - 1

    layer.observe(on_layer, names="value")

    # figure as Output *state*, not captured display messages: see workbench.viz.widgets (headless runs hang)
    view = widgets.Output()

    def show(hidden_layer, unit_index, value):
        kwargs = {"log10_scale": value} if scales else {"sign_flip": value}
        fig, delta = compute_scaling_demo(spec, params, hidden_layer, unit_index, x, network=network, **kwargs)
        show_in(view, fig, f"max |delta logits| = {delta:.1e}")

    out = widgets.interactive_output(show, {"hidden_layer": layer, "unit_index": unit, "value": control})
    return widgets.VBox([widgets.HBox([layer, unit, control]), view, out])
