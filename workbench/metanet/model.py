"""ScaleGMN as a fully-amortized optimizer: network parameters in, improved network parameters out.

Pipeline for B networks of one :class:`~workbench.nets.NetSpec`:

0. with ``scale_norm`` (ReLU networks): each network divided by its path-norm scale, the update multiplied back
   (:mod:`workbench.metanet.global_scale`: exactly equivariant, and degree 1 in a global rescale of the input);
1. the graph: the dense layered form by default (:mod:`workbench.metanet.dense`: broadcasts and axis sums, chunked
   by networks on a CPU), or ``to_graph``'s PyG ``Batch`` (``path="pyg"``; built with tensor ops on the model's
   device);
2. feature initialisation -- bias-free linear maps of the (per-layer normalised) biases and weights, which commute
   with scalars; node-type embeddings multiplied into hidden nodes (keeps equivariance) and added on input/output
   nodes (they carry no symmetry); a learned per-layer multiplier on edge features;
3. ``n_layers`` x :class:`~workbench.metanet.layers.ScaleGMNConv`;
4. the weight-output head: a new bias per non-input node (equivariant, 1 channel) and a new weight/kernel per edge
   (equivariant, ``edge_dim`` channels), each times a learnable per-layer output scale (initialised 0.01), added
   to the input: ``theta' = theta + delta``.

Per-layer normalisation constants are fixed scalars (fit once on the training zoo), so dividing by them commutes
with every scaling symmetry.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..graphs import NODE_HIDDEN, from_graph, graph_layout, node_values, to_graph
from ..nets import NetSpec, Params, SpecError, cat_params, check_params, map_params, n_networks
from ..symmetry import group_for
from .blocks import SYMMETRIES, ScaleEq, ScaleInv, canon, squash
from .config import MetanetConfig
from .dense import Layered, chunk_networks, inv_on_edges, layered, split_networks, squash_edges
from .global_scale import path_norm_scale, rescale
from .layers import ScaleGMNConv

__all__ = ["ScaleGMN", "optimize_in_chunks", "PATHS"]

#: how a pass runs: on the dense layered form (:mod:`workbench.metanet.dense`, the default) or on PyG's edge lists
PATHS = ("dense", "pyg")


class ScaleGMN(nn.Module):
    r"""Scale Equivariant Graph Metanetwork that maps networks to new networks in one forward pass.

    Args:
        spec: architecture of the networks it reads and writes (fixes node types and layer count).
        config: the architecture (:class:`~workbench.metanet.MetanetConfig`, default ``MetanetConfig()``; its
            ``model`` must be ``"scalegmn"``). Used here: ``hidden`` (feature size), ``n_layers`` (message-passing
            layers), ``bidirectional`` (backward messages, the "-B" variant), ``symmetry`` (``"scale"`` for ReLU,
            ``"sign"`` for tanh, ``"none"`` for the symmetry-broken GMN ablation; None picks the group of ``spec``'s
            activation), ``dropout`` (inside the invariant MLPs), ``out_scale_init`` (initial per-layer output scale
            of the residual update) and ``gate``: a multiplicative update
            ``theta' = theta + delta + s_l * gamma(G, theta) * theta`` with ``gamma`` *invariant* per weight/bias (an
            invariant times ``theta`` transforms like ``theta``, so equivariance is kept) and ``s_l`` a per-layer
            scale initialised at ``out_scale_init``: shrinking, pruning (gamma = -1 gives exactly 0) or rescaling a
            weight is then one output away instead of a large additive delta.

    Shapes:
        ``forward(params)``: batched params of B networks -> batched params of B networks.
    """

    def __init__(self, spec: NetSpec, config: MetanetConfig | None = None):
        super().__init__()
        config = MetanetConfig() if config is None else config
        if config.model != "scalegmn":
            raise ValueError(f"ScaleGMN got a config for model {config.model!r}; "
                             "workbench.training.train_config.build_model builds the class a config names")
        symmetry = config.symmetry or group_for(spec)
        if symmetry not in SYMMETRIES:
            raise ValueError(f"unknown symmetry {symmetry!r}; expected one of {SYMMETRIES}")
        if symmetry == "sign" and spec.activation != "tanh":
            raise ValueError(f"sign symmetry suits odd activations (tanh); {spec.family} networks are not odd")
        if symmetry == "scale" and spec.activation != "relu":
            raise ValueError(
                f"positive-scale symmetry suits ReLU networks; {spec.family} networks only have sign symmetry"
            )
        self.config = replace(config, symmetry=symmetry)  # the group actually used, also when chosen from spec
        hidden, n_layers, bidirectional = config.hidden, config.n_layers, config.bidirectional
        dropout, out_scale_init, gate = config.dropout, config.out_scale_init, config.gate
        self.spec, self.hidden, self.symmetry, self.bidirectional = spec, hidden, symmetry, bidirectional
        self.gate = gate
        self.path = "dense"
        self.scale_norm = config.scale_norm and symmetry == "scale"
        layout = graph_layout(spec)
        n_types, n_wlayers, d = layout.n_node_types, spec.n_layers, hidden
        hidden_type = torch.zeros(n_types, dtype=torch.bool)
        hidden_type[layout.node_type[layout.node_kind == NODE_HIDDEN].unique()] = True
        self.register_buffer("hidden_type", hidden_type, persistent=False)
        self.register_buffer("w_norm", torch.ones(n_wlayers))
        self.register_buffer("b_norm", torch.ones(n_wlayers))

        self.init_node = nn.Linear(1, d, bias=False)
        self.init_edge = nn.Linear(spec.edge_dim, d, bias=False)
        self.type_mul = nn.Parameter(torch.ones(n_types, d))
        self.type_add = nn.Parameter(torch.zeros(n_types, d))
        self.edge_mul = nn.Parameter(torch.ones(n_wlayers, d))
        if bidirectional:
            self.type_add_g = nn.Parameter(torch.zeros(n_types, d))
        if self.scale_norm:  # the invariant scale feature's embeddings (input/output nodes only); the reference log
            # scale is a persistent buffer, so a checkpoint of the model without scale_norm cannot load silently
            self.register_buffer("log_scale_ref", torch.zeros(()))
            self.scale_embed = nn.Parameter(torch.zeros(n_types, d))
            self.scale_embed_g = nn.Parameter(torch.zeros(n_types, d)) if bidirectional else None
        self.layers = nn.ModuleList(ScaleGMNConv(d, symmetry, bidirectional, dropout) for _ in range(n_layers))
        n_side = 2 * d if bidirectional else 0
        self.head_bias = ScaleEq(d, n_side // 2, 1, symmetry, d_hidden=d)
        self.head_edge_w = nn.Linear(d, spec.edge_dim, bias=False) if symmetry != "none" else None
        self.head_edge = ScaleInv(d, 0, spec.edge_dim, symmetry, d_hidden=d)
        self.head_side_dst = nn.Linear(2 * d if bidirectional else d, d, bias=False)
        self.head_side_src = nn.Linear(2 * d if bidirectional else d, d, bias=False)
        self.out_scale_w = nn.Parameter(torch.full((n_wlayers,), float(out_scale_init)))
        self.out_scale_b = nn.Parameter(torch.full((n_wlayers,), float(out_scale_init)))
        if gate:
            self.head_gate_b = ScaleInv(d, n_side // 2, 1, symmetry, d_hidden=d)
            self.head_gate_w = ScaleInv(d, 0, spec.edge_dim, symmetry, d_hidden=d)
            self.gate_scale_w = nn.Parameter(torch.full((n_wlayers,), float(out_scale_init)))
            self.gate_scale_b = nn.Parameter(torch.full((n_wlayers,), float(out_scale_init)))
        self.reset_parameters()

    @classmethod
    def for_spec(cls, spec: NetSpec, **settings) -> "ScaleGMN":
        """A ScaleGMN for networks of ``spec``, the fields of its :class:`MetanetConfig` given by keyword (the rest
        default; ``symmetry`` from the activation): ``ScaleGMN.for_spec(spec, hidden=8, n_layers=2)``."""
        return cls(spec, MetanetConfig(**settings))

    def reset_parameters(self):
        nn.init.normal_(self.type_add, std=1.0)
        with torch.no_grad():
            self.type_add[self.hidden_type] = 0.0  # hidden nodes get multiplicative embeddings only
            self.type_mul.fill_(1.0)
            self.edge_mul.fill_(1.0)
        if self.bidirectional:
            nn.init.normal_(self.type_add_g, std=1.0)
            with torch.no_grad():
                self.type_add_g[self.hidden_type] = 0.0

    @torch.no_grad()
    def fit_normalization(self, params: Params) -> "ScaleGMN":
        """Set the per-layer weight and bias scales to their RMS over ``params`` (e.g. the training zoo), each
        network divided by its path-norm scale first when ``scale_norm`` is on (what the pass then reads).

        These are fixed scalars, so dividing inputs by them (and multiplying outputs back) keeps equivariance.
        """
        scale = self.input_scale(params)
        fit_layer_rms(self, params if scale is None else rescale(params, 1 / scale))
        if scale is not None:
            self.log_scale_ref.fill_(float(scale.double().log().median()))
        return self

    def input_scale(self, params: Params) -> Tensor | None:
        """The path-norm scale ``s (B,)`` the pass divides each network by (:mod:`workbench.metanet.global_scale`),
        or None when ``scale_norm`` is off or the symmetry is not positive scaling."""
        return path_norm_scale(self.spec, params) if self.scale_norm else None

    def scale_feature(self, scale: Tensor) -> Tensor:
        r"""The invariant the pass reads in place of the scale it divides out: :math:`	anh(\log(s / s_0) / 2)`
        per network (``s_0`` the training zoo's median), bounded, so the update stays within a constant of degree 1
        in the input's scale while the model still knows a network's size (0.1x to 10x of the zoo's map to
        -0.82 .. 0.82)."""
        return torch.tanh((scale.log() - self.log_scale_ref.to(scale.dtype)) / 2)

    def _io_scale_terms(self, node_type: Tensor, feature: Tensor | None, hidden: Tensor) -> tuple:
        """``feature * embedding`` on input and output nodes (0 on hidden ones, whose features must transform):
        for ``h`` and ``g``, shapes ``feature (..., 1, 1)`` times ``(n, d)``; (None, None) without scale_norm."""
        if feature is None:
            return None, None
        io = (~hidden).to(feature.dtype)  # (n, 1)
        h_term = feature * (io * self.scale_embed[node_type])
        g_term = feature * (io * self.scale_embed_g[node_type]) if self.bidirectional else None
        return h_term, g_term

    # -- the forward pass ------------------------------------------------------------------------------------
    def deltas(self, params: Params, core=None) -> tuple[Tensor, Tensor]:
        """Raw updates for B networks: node values ``(B*n,)`` (0 on input nodes) and edge values ``(B*E, F)``.

        With ``gate`` the multiplicative part ``s_l * gamma * theta`` is included (it needs the input values); with
        ``scale_norm`` the pass reads each network divided by its scale and its update is multiplied back.
        The graph is built here; the rest is :meth:`graph_deltas` on its plain tensors, or ``core``, a compiled
        form of it (:class:`~workbench.metanet.Compiled`)."""
        scale = self.input_scale(params)
        graph = to_graph(self.spec, params if scale is None else rescale(params, 1 / scale), check=False)
        feature = None if scale is None else self.scale_feature(scale).repeat_interleave(self.spec.n_nodes)
        db, dw = (core or self.graph_deltas)(graph.x, graph.edge_attr, graph.edge_index, graph.edge_mask,
                                             graph.node_type, graph.node_layer, graph.edge_layer, feature)
        if scale is None:
            return db, dw
        return (db.reshape(len(scale), -1) * scale[:, None]).reshape(db.shape), \
            (dw.reshape(len(scale), -1) * scale[:, None]).reshape(dw.shape)

    def graph_deltas(self, x: Tensor, edge_attr: Tensor, edge_index: Tensor, edge_mask: Tensor, node_type: Tensor,
                     node_layer: Tensor, edge_layer: Tensor, node_scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`deltas` on a batch graph's tensors (``to_graph``'s fields of those names; ``node_scale (N,)`` the
        :meth:`scale_feature` of each node's network, with ``scale_norm``): a function of tensors only, which
        ``torch.compile`` can trace whole."""
        hidden = self.hidden_type[node_type][:, None]  # (N, 1) bool
        has_bias = node_layer > 0
        bias_layer = (node_layer - 1).clamp_min(0)
        b = x / self.b_norm[bias_layer][:, None].to(x.dtype)  # (N, 1)
        b = torch.where(has_bias[:, None], b, torch.zeros_like(b))
        h = self.init_node(b)  # (N, d)
        h = torch.where(hidden, h * self.type_mul[node_type], h + self.type_add[node_type])
        e = edge_attr / self.w_norm[edge_layer][:, None].to(edge_attr.dtype)  # (E, F)
        e = self.init_edge(e) * self.edge_mul[edge_layer]  # (E, d)
        g = None
        if self.bidirectional:
            g = torch.where(hidden, torch.zeros_like(h), self.type_add_g[node_type].to(h.dtype))
        h_term, g_term = self._io_scale_terms(node_type, None if node_scale is None else node_scale[:, None], hidden)
        if h_term is not None:  # invariant, on nodes without symmetry
            h = h + h_term
            g = g + g_term if self.bidirectional else g
        h, e = squash(h, self.symmetry), squash(e, self.symmetry)
        for layer in self.layers:
            h, g, e = layer(h, g, e, edge_index)

        s = self.symmetry
        node_side = canon(g, s) if self.bidirectional else None
        db = self.head_bias(h, node_side).squeeze(-1)  # (N,)
        db = db * (self.out_scale_b[bias_layer] * self.b_norm[bias_layer]).to(db.dtype)
        db = torch.where(has_bias, db, torch.zeros_like(db))
        src, dst = edge_index
        side = torch.cat([canon(h, s), canon(g, s)], -1) if self.bidirectional else canon(h, s)  # (N, 2d) invariant
        pre = self.head_side_dst(side)[dst] + self.head_side_src(side)[src]  # (E, d)
        inv = self.head_edge(e, pre=pre)  # (E, F)
        dw = inv if self.head_edge_w is None else self.head_edge_w(e) * inv
        dw = dw * (self.out_scale_w[edge_layer] * self.w_norm[edge_layer]).to(dw.dtype)[:, None]
        if self.gate:  # invariant gates times the input values: equivariant, and 0 at gamma = -1 / s_l
            gb = self.head_gate_b(h, node_side).squeeze(-1) * self.gate_scale_b[bias_layer].to(h.dtype)  # (N,)
            db = db + torch.where(has_bias, gb * x.squeeze(-1).to(db.dtype), torch.zeros_like(db))
            gw = self.head_gate_w(e, pre=pre) * self.gate_scale_w[edge_layer].to(e.dtype)[:, None]  # (E, F)
            dw = dw + gw * edge_attr.to(dw.dtype)
        dw = dw * edge_mask  # dense edges of a CNN only use their one slot
        return db, dw

    # -- the same pass on the dense layered form (workbench/metanet/dense.py) -------------------------------------
    @property
    def path(self) -> str:
        """How :meth:`forward` runs the pass: ``"dense"`` (default; the layered form, :mod:`workbench.metanet.dense`)
        or ``"pyg"`` (PyG message passing on ``to_graph``'s edge lists, the reference). Equal to float rounding."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        if value not in PATHS:
            raise ConfigError(f"ScaleGMN.path is {value!r}, but must be one of {list(PATHS)} ('dense': the fast "
                              "layered pass, 'pyg': the PyG message passing it is tested against)")
        self._path = value

    def layered_deltas(self, params: Params, feature: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        """:meth:`graph_deltas` on the dense layered form: the updates ``(dw_l, db_l)`` of every layer of B
        networks, shaped like their weights and biases (with ``gate``, the multiplicative part included; with
        ``scale_norm``, ``feature (B,)`` is each network's :meth:`scale_feature`). A function of tensors only, which
        ``torch.compile`` can trace whole."""
        lay, layout = layered(self.spec), graph_layout(self.spec, params[0][1].device)
        h, g, e = self._layered_inputs(params, lay, layout, feature)
        for i, layer in enumerate(self.layers):  # g starts at 0 on hidden nodes: the first layer knows it
            h, g, e = layer(h, g, e, replace(lay, g_zero_on_hidden=True) if i == 0 else lay)
        return self._layered_heads(params, h, g, e, lay)

    def _layered_inputs(self, params: Params, lay: Layered, layout,
                        feature: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
        """The initial features (as in :meth:`graph_deltas`): ``h, g (B, n, d)`` and ``e (B, E, d)``."""
        node_type, n_nets = layout.node_type, n_networks(params)
        hidden = self.hidden_type[node_type][:, None]  # (n, 1) bool
        b = node_values(self.spec, params)  # (B, n), 0 on input nodes
        b_norm = torch.cat([self.b_norm.new_ones(lay.widths[0])] +
                           [self.b_norm[l].expand(w) for l, w in enumerate(lay.widths[1:])])  # (n,)
        h = self.init_node((b / b_norm.to(b.dtype))[..., None])  # (B, n, d)
        h = torch.where(hidden, h * self.type_mul[node_type], h + self.type_add[node_type])
        g = None
        if self.bidirectional:
            g = torch.where(hidden, torch.zeros_like(h[0]), self.type_add_g[node_type].to(h.dtype))  # (n, d)
            g = g.expand(n_nets, *g.shape)  # (B, n, d)
        h_term, g_term = self._io_scale_terms(node_type, None if feature is None else feature[:, None, None], hidden)
        if h_term is not None:  # invariant, on nodes without symmetry
            h = h + h_term
            g = g + g_term if self.bidirectional else g
        es = []
        for l, (w, _) in enumerate(params):
            w = w / self.w_norm[l].to(w.dtype)
            if lay.conv[l]:  # (B, out, in, k, k) -> (B, out * in, k * k) -> (B, out * in, d)
                e = self.init_edge(w.reshape(n_nets, -1, w.shape[-1] * w.shape[-2]))
            else:  # a scalar in the slot of its edge feature: one column of the map
                e = w.reshape(n_nets, -1, 1) * self.init_edge.weight[:, lay.slot]  # (B, out * in, d)
            es.append(e * self.edge_mul[l])
        return squash(h, self.symmetry), g, squash_edges(torch.cat(es, 1), self.symmetry)

    def _layered_heads(self, params: Params, h: Tensor, g: Tensor | None, e: Tensor,
                       lay: Layered) -> list[tuple[Tensor, Tensor]]:
        """The weight-output heads of :meth:`graph_deltas` on the layered form: ``(dw_l, db_l)`` per layer."""
        s = self.symmetry
        node_side = canon(g, s) if self.bidirectional else None
        db = self.head_bias(h, node_side)  # (B, n, 1) ~ q_i
        side = torch.cat([canon(h, s), canon(g, s)], -1) if self.bidirectional else canon(h, s)  # invariant
        a, b = self.head_side_dst(side), self.head_side_src(side)  # (B, n, d) invariant
        c = lay.on_edges(torch.add, a + self.head_edge.bias, b)  # (B, E, d) invariant
        dw = inv_on_edges(self.head_edge, e, c)  # (B, E, F) invariant
        if self.head_edge_w is not None:
            dw = self.head_edge_w(e) * dw  # (B, E, F) ~ e
        if self.gate:  # invariant gates, times the input values below: equivariant, and 0 at gamma = -1 / s_l
            gb = self.head_gate_b(h, node_side)  # (B, n, 1) invariant
            gw = inv_on_edges(self.head_gate_w, e, lay.on_edges(torch.add, a + self.head_gate_w.bias, b))
        dws, dbs = lay.edge_parts(dw), lay.node_parts(db[..., 0])[1:]  # (B, out, in, F), (B, out)
        gws, gbs = (lay.edge_parts(gw), lay.node_parts(gb[..., 0])[1:]) if self.gate else (None, None)
        out = []
        for l, (w, bias) in enumerate(params):
            dw_l = dws[l].reshape(w.shape) if lay.conv[l] else dws[l][..., lay.slot]  # a dense layer: its one slot
            dw_l = dw_l * (self.out_scale_w[l] * self.w_norm[l]).to(dw.dtype)
            db_l = dbs[l] * (self.out_scale_b[l] * self.b_norm[l]).to(db.dtype)
            if self.gate:
                gw_l = gws[l].reshape(w.shape) if lay.conv[l] else gws[l][..., lay.slot]
                dw_l = dw_l + gw_l * self.gate_scale_w[l].to(gw.dtype) * w.to(gw.dtype)
                db_l = db_l + gbs[l] * self.gate_scale_b[l].to(gb.dtype) * bias.to(gb.dtype)
            out.append((dw_l, db_l))
        return out

    def forward(self, params: Params, core=None, *, path: str | None = None) -> Params:
        """New parameters ``theta + delta`` for B networks (differentiable; used in training).

        Args:
            path: ``"dense"`` or ``"pyg"`` for this call (default :attr:`path`). The dense pass runs a CPU batch in
                chunks of networks that fit the cache (:func:`workbench.metanet.dense.chunk_networks`).
            core: a compiled :meth:`layered_deltas` (dense) or :meth:`graph_deltas` (pyg), as
                :class:`~workbench.metanet.Compiled` passes it; the dense one runs the batch whole.
        """
        path = self.path if path is None else path
        if path == "pyg":
            delta = from_graph(self.spec, self.deltas(params, core))
        elif path != "dense":
            raise ConfigError(f"path is {path!r}, but must be one of {list(PATHS)}")
        else:
            scale = self.input_scale(params)
            inputs = params if scale is None else rescale(params, 1 / scale)
            feature = None if scale is None else self.scale_feature(scale)
            if core is not None or params[0][1].device.type != "cpu":
                delta = (core or self.layered_deltas)(inputs, feature)
            else:
                sizes = chunk_networks(n_networks(params), self.spec.n_edges, self.hidden)
                features = [None] * len(sizes) if feature is None else feature.split(sizes)
                parts = [self.layered_deltas(part, f) for part, f in zip(split_networks(inputs, sizes), features)]
                delta = parts[0] if len(parts) == 1 else cat_params(parts)
            delta = delta if scale is None else rescale(delta, scale)
        return [(w + dw_l.to(w.dtype), b + db_l.to(b.dtype)) for (w, b), (dw_l, db_l) in zip(params, delta)]

    def optimize(self, spec: NetSpec, params: Params, batch_size: int | None = None) -> Params:
        """One-shot optimization of any number of networks: no gradients, in eval mode, chunked by ``batch_size``.

        Parameters are moved to the model's device and dtype; the result is returned there.
        """
        return optimize_in_chunks(self, spec, params, batch_size)

    def extra_repr(self) -> str:
        return f"spec={self.spec.family} {self.spec.widths}, symmetry={self.symmetry!r}"


@torch.no_grad()
def fit_layer_rms(metanet: nn.Module, params: Params) -> None:
    """Set ``metanet.w_norm[l]`` / ``b_norm[l]`` to the RMS of layer l's weights / biases over ``params``.

    An all-zero weight layer keeps scale 1 and an all-zero bias layer borrows its weights' scale, so no division
    by zero can follow. Shared by ScaleGMN and NFN: both divide their inputs by these fixed scalars."""
    check_params(metanet.spec, params)
    for layer, (w, b) in enumerate(params):
        w_rms = w.double().pow(2).mean().sqrt()
        b_rms = b.double().pow(2).mean().sqrt()
        w_rms = w_rms if w_rms > 0 else torch.tensor(1.0)
        metanet.w_norm[layer] = w_rms
        metanet.b_norm[layer] = b_rms if b_rms > 1e-8 else w_rms


@torch.no_grad()
def optimize_in_chunks(model: nn.Module, spec: NetSpec, params: Params, batch_size: int | None = None) -> Params:
    """``model(params)`` for any number of networks of ``spec`` (a metanet's ``optimize``: ScaleGMN and NFN): the
    architecture checked, no gradients, eval mode (restored after), chunks of ``batch_size`` networks, inputs moved
    to the model's device and dtype."""
    if spec != model.spec:
        raise SpecError(f"this {type(model).__name__} was built for {model.spec.describe()}, not {spec.describe()}")
    n_nets = check_params(spec, params, finite=True)
    ref = next(model.parameters())
    params = map_params(lambda t: t.to(ref.device, ref.dtype), params)
    was_training = model.training
    model.eval()
    try:
        step = batch_size or n_nets
        chunks = [model([(w[s:s + step], b[s:s + step]) for w, b in params]) for s in range(0, n_nets, step)]
    finally:
        model.train(was_training)
    if len(chunks) == 1:
        return chunks[0]
    return [(torch.cat([c[l][0] for c in chunks]), torch.cat([c[l][1] for c in chunks])) for l in range(len(params))]
