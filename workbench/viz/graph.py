"""Draw a network as its weight-space graph (plotly), and the widget that explores it.

Layered layout: column = layer of neurons/channels, nodes spread vertically. Nodes are coloured by bias, edges by
weight magnitude (|w| for a dense weight, the Frobenius norm of the k x k kernel for a conv edge); hovering shows
the values. Pure figure functions live here and are tested; the widget is thin wiring around them.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..reporting.captions import set_caption
from ..graphs import graph_layout, to_graph
from ..nets import NetSpec, Params, check_params, map_params, n_networks
from .widgets import show_in

__all__ = [
    "layered_positions", "graph_summary", "add_network_traces", "network_graph_figure", "side_by_side_figure",
    "graph_explorer_widget",
]

EDGE_BINS = 6


def layered_positions(spec: NetSpec) -> np.ndarray:
    """(n_nodes, 2) positions: x = layer index, y spread evenly in [-1, 1] within the layer."""
    pos = []
    for layer, width in enumerate(spec.widths):
        ys = np.linspace(-1, 1, width) if width > 1 else np.zeros(1)
        pos.extend((layer, y) for y in ys[::-1])
    return np.asarray(pos, dtype=float)


def graph_summary(spec: NetSpec) -> dict:
    """Node/edge counts of one network's graph."""
    return {"nodes": spec.n_nodes, "edges": spec.n_edges, "edge_dim": spec.edge_dim, "parameters": spec.n_params}


def _layer_names(spec: NetSpec) -> list[str]:
    names = ["input"] + [f"hidden {i + 1}" for i in range(len(spec.widths) - 2)] + ["output"]
    return names


def add_network_traces(fig: go.Figure, spec: NetSpec, params: Params, index: int = 0, layer: int | None = None,
                       row: int | None = None, col: int | None = None, showscale: bool = True) -> None:
    """Add the graph of network ``index`` to ``fig`` (optionally in a subplot); ``layer`` highlights one weight
    layer's edges and fades the rest."""
    n_nets = check_params(spec, params)
    if not 0 <= index < n_nets:
        raise IndexError(f"network index {index} is out of range: the batch holds {n_nets} networks")
    if layer is not None and not 0 <= layer < spec.n_layers:
        raise IndexError(f"layer {layer} is out of range: {spec.describe()} has weight layers 0..{spec.n_layers - 1}")
    one = map_params(lambda t: t[index:index + 1].detach().cpu().double(), params)
    graph = to_graph(spec, one)
    layout = graph_layout(spec)
    pos = layered_positions(spec)
    src, dst = layout.edge_index.numpy()
    mask = layout.edge_mask.numpy()
    values = graph.edge_attr.numpy()
    strength = np.sqrt((values**2 * mask).sum(1))  # |w| or kernel Frobenius norm
    edge_layer = layout.edge_layer.numpy()
    top = strength.max() if strength.size and strength.max() > 0 else 1.0
    bins = np.minimum((strength / top * EDGE_BINS).astype(int), EDGE_BINS - 1)
    where = dict(row=row, col=col) if row is not None else {}
    for level in range(EDGE_BINS):
        for highlighted in (False, True):
            sel = (bins == level) & ((edge_layer == layer) == highlighted if layer is not None else highlighted)
            if not sel.any():
                continue
            xs = np.stack([pos[src[sel], 0], pos[dst[sel], 0], np.full(sel.sum(), np.nan)], 1).ravel()
            ys = np.stack([pos[src[sel], 1], pos[dst[sel], 1], np.full(sel.sum(), np.nan)], 1).ravel()
            shade = 0.15 + 0.85 * (level + 1) / EDGE_BINS
            faded = layer is not None and not highlighted
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                line=dict(width=0.5 + 2.5 * (level + 1) / EDGE_BINS,
                          color=f"rgba(40,70,160,{0.08 if faded else shade:.2f})"),
            ), **where)
    # hover targets at edge midpoints (one per edge): the weight or the kernel values
    mid = (pos[src] + pos[dst]) / 2
    text = _edge_hover_text(spec, layout, src, dst, edge_layer, strength, values, mask)
    fig.add_trace(go.Scatter(x=mid[:, 0], y=mid[:, 1], mode="markers", marker=dict(size=4, opacity=0.0),
                             hovertext=text, hoverinfo="text", showlegend=False), **where)
    bias = graph.x[:, 0].numpy()
    kind = layout.node_layer.numpy()
    names = _layer_names(spec)
    node_text = [f"node {i} ({names[kind[i]]})<br>bias {bias[i]:+.3g}" if kind[i] > 0 else f"node {i} (input)"
                 for i in range(spec.n_nodes)]
    lim = max(abs(bias).max(), 1e-6)
    fig.add_trace(go.Scatter(
        x=pos[:, 0], y=pos[:, 1], mode="markers", hovertext=node_text, hoverinfo="text", showlegend=False,
        marker=dict(size=11 if spec.n_nodes < 80 else 7, color=bias, colorscale="RdBu", cmin=-lim, cmax=lim,
                    line=dict(width=1, color="black"),
                    colorbar=dict(title="bias", len=0.6) if showscale else None, showscale=showscale),
    ), **where)


def _edge_hover_text(spec: NetSpec, layout, src, dst, edge_layer, strength, values, mask) -> list[str]:
    """One hover text per edge: its weight, or for a CNN its kernel norm and values (a dense layer's weight)."""
    if spec.kind != "cnn":
        return [f"edge {s}->{d} (layer {l})<br>weight {v[0]:+.3g}" for s, d, l, v in zip(src, dst, edge_layer, values)]
    k = spec.kernel_size
    return [
        f"edge {s}->{d} (layer {l})<br>kernel norm {n:.3g}<br>"
        + ("<br>".join(" ".join(f"{v:+.2f}" for v in row) for row in vals.reshape(k, k)) if mask[i].all()
           else f"dense weight {vals[layout.dense_slot]:+.3g}")
        for i, (s, d, l, n, vals) in enumerate(zip(src, dst, edge_layer, strength, values))
    ]


def network_graph_figure(spec: NetSpec, params: Params, index: int = 0, layer: int | None = None,
                         title: str | None = None) -> go.Figure:
    """Figure of network ``index`` as its graph; ``layer`` highlights one weight layer."""
    fig = go.Figure()
    add_network_traces(fig, spec, params, index, layer)
    _style(fig, spec, title or f"{spec.describe()} -- network {index}")
    highlight = "" if layer is None else f" Weight layer {layer}'s edges are highlighted, the others faded."
    return set_caption(fig, _graph_sentence(spec) + highlight + " " + HOW_TO_READ)


HOW_TO_READ = ("Columns are layers; node colour: the neuron's (channel's) bias; edge darkness and width: |w| (dense) "
               "or the kernel's Frobenius norm (conv). Hover for the values.")


def _graph_sentence(spec: NetSpec, name: str | None = None) -> str:
    s = graph_summary(spec)
    what = "channel" if spec.kind == "cnn" else "neuron"
    return (f"{name or spec.describe()}: {s['nodes']:,} nodes (one per {what}), {s['edges']:,} edges with "
            f"{s['edge_dim']}-dimensional features, {s['parameters']:,} parameters.")


def side_by_side_figure(items: list[tuple[str, NetSpec, Params]], index: int = 0,
                        layer: int | None = None, title: str | None = None) -> go.Figure:
    """Several architectures next to each other (e.g. an MLP and a CNN), same network index."""
    fig = make_subplots(rows=1, cols=len(items), subplot_titles=[t for t, _, _ in items], horizontal_spacing=0.06)
    for col, (_, spec, params) in enumerate(items, start=1):
        chosen = None if layer is None else min(layer, spec.n_layers - 1)
        add_network_traces(fig, spec, params, index, chosen, row=1, col=col, showscale=col == len(items))
        fig.update_xaxes(tickvals=list(range(len(spec.widths))), ticktext=_layer_names(spec), row=1, col=col)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=480, template="plotly_white", margin=dict(l=20, r=20, t=80, b=20),
                      title=title or " vs ".join(t for t, _, _ in items) + f": network {index} as a graph")
    return set_caption(fig, *(_graph_sentence(spec, name) for name, spec, _ in items), HOW_TO_READ)


def _style(fig: go.Figure, spec: NetSpec, title: str) -> None:
    fig.update_layout(title=title, template="plotly_white", height=480, margin=dict(l=20, r=20, t=60, b=20))
    fig.update_xaxes(tickvals=list(range(len(spec.widths))), ticktext=_layer_names(spec), showgrid=False)
    fig.update_yaxes(visible=False)


def graph_explorer_widget(models: dict[str, tuple[NetSpec, Params]]):
    """Dropdown for the architecture, slider for the network, dropdown for the highlighted layer.

    Built with ``ipywidgets.interactive_output`` so that an exception shows in the output area instead of being
    swallowed.
    """
    import ipywidgets as widgets

    names = list(models)
    label = {"style": {"description_width": "initial"}}  # whole labels, never "netw..."
    arch = widgets.Dropdown(options=names, value=names[0], description="network", **label)
    first_spec, first_params = models[names[0]]
    index = widgets.IntSlider(min=0, max=n_networks(first_params) - 1, value=0, description="index", **label)
    layer = widgets.Dropdown(description="layer", **label)

    def layer_options(spec):
        return [("all", -1)] + [(f"{l}: {'conv' if spec.is_conv(l) else 'dense'} {spec.widths[l]}->{spec.widths[l+1]}", l)
                                for l in range(spec.n_layers)]

    layer.options = layer_options(first_spec)
    layer.value = -1

    def on_arch(change):
        spec, params = models[change["new"]]
        index.max = n_networks(params) - 1
        layer.options = layer_options(spec)
        layer.value = -1

    arch.observe(on_arch, names="value")

    view = widgets.Output()  # the figure lands here as widget state (see workbench.viz.widgets)

    def show(name, index, layer):
        spec, params = models[name]
        fig = network_graph_figure(spec, params, min(index, n_networks(params) - 1), None if layer < 0 else layer)
        show_in(view, fig)

    errors = widgets.interactive_output(show, {"name": arch, "index": index, "layer": layer})  # shows exceptions
    box = widgets.VBox([widgets.HBox([arch, index, layer]), view, errors])
    return box
