"""Neural Functional Networks (NFN; Zhou et al., NeurIPS 2023) as a one-shot optimizer beside ScaleGMN.

An NFN reads a network's weights as *weight-space features* -- one tensor per layer, ``W_l (B, n_{l+1}, n_l, c)``
and ``b_l (B, n_{l+1}, c)`` with ``c`` channels -- and stacks layers that commute with permutations of the hidden
neurons. It knows nothing about the scaling symmetries (sign flips for tanh, positive scales for ReLU): two
networks that compute the same function but differ by a rescaling are, for it, different inputs. That is the
comparison the workbench wants: permutation equivariance alone (NFN) against permutation + scaling equivariance
(ScaleGMN).

The NP layer (the paper's "neural permutation" parameter sharing), written here from the math. Index the neurons
by level ``m = 0..L`` (0 = inputs, L = outputs); weight layer ``l`` maps level ``l`` to level ``l + 1``. Every
neuron ``j`` of level ``m`` has a *level feature* that is equivariant under permutations of that level and
invariant under all others::

    N_m[j] = [ mean_k W_{m-1}[j, k]   (row mean of the layer ending at level m),     m >= 1
               b_{m-1}[j]              (the neuron's bias),                           m >= 1
               mean_i W_m[i, j]        (column mean of the layer starting at level m), m <= L - 1 ]

and the whole network has a global, fully invariant feature ``G = [mean W_l, mean b_l for every l]``. A layer then
outputs, with one channel-mixing linear map per term and layer,

    W'_l[j, k] = A_l W_l[j, k] + R_l N_{l+1}[j] + C_l N_l[k] + G_l G
    b'_l[j]    = S_l N_{l+1}[j] + H_l G

which covers every term of the paper's NP layer: the layer's own weights, its row, column and full means, the
neighbouring layers' row/column means and biases, and the means of all layers. NP sharing treats input and output
neurons as exchangeable too (a larger group than the true one), so -- as in the paper -- learned embeddings of the
input and output neurons are added after the first layer; the model is then equivariant to permutations of the
hidden neurons exactly (input and output neurons fixed), like ScaleGMN.

CNNs: each conv kernel's ``k x k`` taps become ``k * k`` input channels of its edge (the paper's approach), the
final dense layer has one channel; the global average pooling maps conv channels to the dense layer's inputs one
to one, so the channel permutations are the hidden-neuron permutations of an MLP.

The optimizer around it is ScaleGMN's: per-layer RMS normalisation fit once on the training zoo, ``n_layers`` NP
layers of ``hidden`` channels with ReLU, an NP head, and the residual update
``theta' = theta + s_l * rms_l * delta`` with a learnable per-layer output scale ``s_l`` initialised at 0.01
(optionally a multiplicative gate ``+ t_l * gamma * theta``, as ScaleGMN's ``gate``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..nets import NetSpec, Params, SpecError, check_params, map_params
from ..symmetry import act, group_for, inverse, random_element
from .config import MetanetConfig
from .model import fit_layer_rms, optimize_in_chunks

__all__ = ["NFN", "NPLinear", "count_parameters", "matched_hidden", "rescale_response"]

Features = tuple[list[Tensor], list[Tensor]]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a metanetwork (ScaleGMN, NFN or any module); buffers such as the normalisation
    constants are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class NPLinear(nn.Module):
    """One permutation-equivariant linear layer between weight-space feature lists (the NP layer).

    Args:
        w_in, b_in: input channels of each layer's weight and bias features.
        w_out, b_out: output channels of each layer's weight and bias features.

    Shapes:
        ``forward(ws, bs)``: ``ws[l] (B, n_{l+1}, n_l, w_in[l])``, ``bs[l] (B, n_{l+1}, b_in[l])`` ->
        the same with ``w_out`` / ``b_out`` channels.
    """

    def __init__(self, w_in: list[int], b_in: list[int], w_out: list[int], b_out: list[int]):
        super().__init__()
        n = len(w_in)
        if not n or not len(b_in) == len(w_out) == len(b_out) == n:
            raise ValueError("NPLinear needs the same (positive) number of layers in w_in, b_in, w_out and b_out")
        self.n_layers, self.w_out, self.b_out = n, list(w_out), list(b_out)
        level = [(w_in[m - 1] + b_in[m - 1] if m >= 1 else 0) + (w_in[m] if m < n else 0) for m in range(n + 1)]
        self.own = nn.ModuleList(nn.Linear(w_in[l], w_out[l], bias=False) for l in range(n))
        # the terms indexed by the output neuron j feed both the weight and the bias outputs: one map for both
        self.row = nn.ModuleList(nn.Linear(level[l + 1], w_out[l] + b_out[l], bias=False) for l in range(n))
        self.col = nn.ModuleList(nn.Linear(level[l], w_out[l], bias=False) for l in range(n))
        self.glob = nn.Linear(sum(w_in) + sum(b_in), sum(w_out) + sum(b_out))  # the only bias of the layer

    def forward(self, ws: list[Tensor], bs: list[Tensor]) -> Features:
        n = self.n_layers
        rows = [w.mean(2) for w in ws]  # (B, n_{l+1}, c): indexed by the neurons of level l + 1
        cols = [w.mean(1) for w in ws]  # (B, n_l, c): indexed by the neurons of level l
        levels = []
        for m in range(n + 1):
            parts = ([rows[m - 1], bs[m - 1]] if m >= 1 else []) + ([cols[m]] if m < n else [])
            levels.append(torch.cat(parts, -1))
        g = self.glob(torch.cat([w.mean((1, 2)) for w in ws] + [b.mean(1) for b in bs], -1))
        g = g.split(self.w_out + self.b_out, -1)
        out_w, out_b = [], []
        for l in range(n):
            rw, rb = self.row[l](levels[l + 1]).split([self.w_out[l], self.b_out[l]], -1)
            cw = self.col[l](levels[l])
            out_w.append(self.own[l](ws[l]) + rw[:, :, None] + cw[:, None] + g[l][:, None, None])
            out_b.append(rb + g[n + l][:, None])
        return out_w, out_b


class NFN(nn.Module):
    r"""Neural Functional Network (permutation-equivariant NP layers) that maps networks to new networks.

    Args:
        spec: architecture of the networks it reads and writes.
        config: the architecture (:class:`~workbench.metanet.MetanetConfig`, default ``MetanetConfig(model="nfn")``;
            its ``model`` must be ``"nfn"``). Used here: ``hidden`` (channels of the weight-space features),
            ``n_layers`` (NP layers of ``hidden`` channels, each followed by ReLU; an NP head follows), ``dropout``
            (on the hidden features), ``out_scale_init`` (initial per-layer output scale of the residual update),
            ``gate`` (also output a multiplicative update ``t_l * gamma * theta`` per weight and bias, as ScaleGMN's
            gate) and ``io_embed`` (learned embeddings of the input and output neurons, which breaks NP's
            exchangeability of those neurons; the hidden neurons stay exchangeable either way).

    Shapes:
        ``forward(params)``: batched params of B networks -> batched params of B networks.
    """

    symmetry = "none"  # no scaling symmetry: hidden-neuron permutations only (read by code that shows the group)
    bidirectional = False

    def __init__(self, spec: NetSpec, config: MetanetConfig | None = None):
        super().__init__()
        config = MetanetConfig(model="nfn") if config is None else config
        if config.model != "nfn":
            raise ValueError(f"NFN got a config for model {config.model!r}; "
                             "workbench.training.train_config.build_model builds the class a config names")
        hidden, n_layers, dropout = config.hidden, config.n_layers, config.dropout
        out_scale_init, gate, io_embed = config.out_scale_init, config.gate, config.io_embed
        self.spec, self.hidden, self.gate, self.io_embed = spec, hidden, gate, io_embed
        self.config = config
        n, h = spec.n_layers, hidden
        self.channels = [spec.kernel_size ** 2 if spec.is_conv(l) else 1 for l in range(n)]  # raw weight channels
        self.register_buffer("w_norm", torch.ones(n))
        self.register_buffer("b_norm", torch.ones(n))
        widths = [h] * n
        self.layers = nn.ModuleList(
            NPLinear(self.channels if i == 0 else widths, [1] * n if i == 0 else widths, widths, widths)
            for i in range(n_layers))
        k = 2 if gate else 1  # additive delta (+ gate) per weight tap and bias
        self.head = NPLinear(widths, widths, [k * c for c in self.channels], [k] * n)
        self.dropout = nn.Dropout(dropout)
        if io_embed:
            self.emb_in = nn.Parameter(torch.empty(spec.widths[0], h))
            self.emb_out_w = nn.Parameter(torch.empty(spec.widths[-1], h))
            self.emb_out_b = nn.Parameter(torch.empty(spec.widths[-1], h))
        self.out_scale_w = nn.Parameter(torch.full((n,), float(out_scale_init)))
        self.out_scale_b = nn.Parameter(torch.full((n,), float(out_scale_init)))
        if gate:
            self.gate_scale_w = nn.Parameter(torch.full((n,), float(out_scale_init)))
            self.gate_scale_b = nn.Parameter(torch.full((n,), float(out_scale_init)))
        self.reset_parameters()

    @classmethod
    def for_spec(cls, spec: NetSpec, **settings) -> "NFN":
        """An NFN for networks of ``spec``, the fields of its :class:`MetanetConfig` given by keyword (the rest
        default): ``NFN.for_spec(spec, hidden=8, n_layers=2)``."""
        return cls(spec, MetanetConfig(**{"model": "nfn", **settings}))

    def reset_parameters(self):
        if self.io_embed:
            for emb in (self.emb_in, self.emb_out_w, self.emb_out_b):
                nn.init.normal_(emb, std=1.0)

    @torch.no_grad()
    def fit_normalization(self, params: Params) -> "NFN":
        """Set the per-layer weight and bias scales to their RMS over ``params`` (e.g. the training zoo), as
        :meth:`ScaleGMN.fit_normalization` does."""
        fit_layer_rms(self, params)
        return self

    # -- the forward pass ------------------------------------------------------------------------------------
    def features(self, params: Params) -> Features:
        """The raw head outputs: ``ws[l] (B, n_{l+1}, n_l, k * c_l)`` and ``bs[l] (B, n_{l+1}, k)`` (k = 2 with
        the gate: additive channels first, gate channels second)."""
        ws, bs = [], []
        for l, (w, b) in enumerate(params):
            ws.append(w.reshape(*w.shape[:3], -1) / self.w_norm[l].to(w.dtype))  # conv taps -> channels
            bs.append((b / self.b_norm[l].to(b.dtype))[..., None])
        for i, layer in enumerate(self.layers):
            ws, bs = layer(ws, bs)
            if i == 0 and self.io_embed:  # input neurons: columns of layer 0; output neurons: rows of the last layer
                ws[0] = ws[0] + self.emb_in.to(ws[0].dtype)
                ws[-1] = ws[-1] + self.emb_out_w.to(ws[-1].dtype)[:, None]
                bs[-1] = bs[-1] + self.emb_out_b.to(bs[-1].dtype)
            ws = [self.dropout(torch.relu(w)) for w in ws]
            bs = [self.dropout(torch.relu(b)) for b in bs]
        return self.head(ws, bs)

    def forward(self, params: Params) -> Params:
        """New parameters ``theta + delta`` for B networks (differentiable; used in training)."""
        ws, bs = self.features(params)
        new = []
        for l, ((w, b), fw, fb) in enumerate(zip(params, ws, bs)):
            c = self.channels[l]
            dw = fw[..., :c].reshape(w.shape) * (self.out_scale_w[l] * self.w_norm[l]).to(fw.dtype)
            db = fb[..., 0] * (self.out_scale_b[l] * self.b_norm[l]).to(fb.dtype)
            if self.gate:
                dw = dw + fw[..., c:].reshape(w.shape) * self.gate_scale_w[l].to(fw.dtype) * w.to(fw.dtype)
                db = db + fb[..., 1] * self.gate_scale_b[l].to(fb.dtype) * b.to(fb.dtype)
            new.append((w + dw.to(w.dtype), b + db.to(b.dtype)))
        return new

    def optimize(self, spec: NetSpec, params: Params, batch_size: int | None = None) -> Params:
        """One-shot optimization of any number of networks (:func:`workbench.metanet.model.optimize_in_chunks`)."""
        return optimize_in_chunks(self, spec, params, batch_size)

    def extra_repr(self) -> str:
        return f"spec={self.spec.family} {self.spec.widths}, hidden={self.hidden}, permutations only"


def matched_hidden(spec: NetSpec, n_parameters: int, n_layers: int, *, gate: bool = True) -> int:
    """The NFN ``hidden`` size for networks of ``spec`` with ``n_layers`` NP layers whose trainable parameter count
    is closest (as a ratio) to ``n_parameters`` -- e.g. :func:`count_parameters` of the ScaleGMN it is compared
    with, so both metanetworks get a comparable budget."""
    if n_parameters < 1:
        raise ValueError(f"n_parameters must be positive, got {n_parameters}")

    def count(hidden: int) -> int:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return count_parameters(NFN.for_spec(spec, hidden=hidden, n_layers=n_layers, gate=gate))

    # every map is hidden x hidden, hidden x const or const: the count is exactly a h^2 + b h + c
    c1, c2, c3 = count(1), count(2), count(3)
    a = (c3 - 2 * c2 + c1) / 2
    b = c2 - c1 - 3 * a
    c = c1 - a - b
    if a > 0:
        root = (-b + math.sqrt(max(b * b - 4 * a * (c - n_parameters), 0.0))) / (2 * a)
    else:
        root = (n_parameters - c) / max(b, 1e-12)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(sorted(candidates), key=lambda h: abs(math.log(count(h) / n_parameters)))


@torch.no_grad()
def rescale_response(model: nn.Module, spec: NetSpec, params: Params, generator: torch.Generator | None = None, *,
                     group: str | None = None, scale_range: tuple[float, float] = (0.25, 4.0)) -> Tensor:
    """How differently a metanetwork updates a network and a rescaled copy that computes the same function.

    For each network ``theta`` a random function-preserving element ``g`` of ``group`` is drawn (default: sign flips
    of the hidden neurons for tanh networks, positive scales log-uniform on ``scale_range`` for ReLU networks; see
    :func:`workbench.symmetry.random_element`), and the update of the copy, mapped back, is compared with the update
    of the original::

        response = || g^-1(f(g theta)) - f(theta) || / || f(theta) - theta ||     (norms over all parameters)

    0 for an exactly equivariant model (ScaleGMN: float rounding, ~1e-6 in float32), of order 1 for a model that
    only knows permutations (NFN, the symmetry-broken GMN). Runs in eval mode without gradients in the model's
    dtype. Returns a float64 tensor ``(B,)`` on the CPU.
    """
    if getattr(model, "spec", spec) != spec:
        raise SpecError(f"this metanetwork was built for {model.spec.describe()}, not {spec.describe()}")
    n_nets = check_params(spec, params, finite=True)
    ref = next(model.parameters())
    params = map_params(lambda t: t.to(ref.device, ref.dtype), params)
    g = random_element(spec, n_nets, group or group_for(spec), generator, scale_range=scale_range,
                       dtype=ref.dtype, device=ref.device)
    was_training = model.training
    model.eval()
    try:
        new = model(params)
        back = act(spec, inverse(g), model(act(spec, g, params)))
    finally:
        model.train(was_training)

    def flat(pairs):
        return torch.cat([t.reshape(n_nets, -1).double() for pair in pairs for t in pair], 1)

    update = flat(new) - flat(params)
    diff = flat(back) - flat(new)
    size = torch.linalg.vector_norm(update, dim=1)
    return (torch.linalg.vector_norm(diff, dim=1) / size.clamp_min(1e-300)).cpu()
