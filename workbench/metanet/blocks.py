"""Scale/sign equivariant and invariant building blocks (Kalogeropoulos et al. 2024, sec. 4).

A feature vector ``x`` of a hidden node transforms as ``x -> q x`` with one scalar ``q`` per node: ``q > 0`` for
ReLU networks ("scale"), ``q in {-1, +1}`` for tanh networks ("sign"). The blocks here are

* ``canon(x)``: an invariant view of ``x``: ``x / ||x||`` (scale), ``|x|`` (sign), ``x`` (none);
* :class:`ScaleInv`: ``phi(canon(x), extra)``; for sign the symmetrisation ``phi(x, e) + phi(-x, e)`` keeps the
  relative signs between channels, which ``|x|`` would lose;
* :class:`ScaleEq`: ``(Gamma x) * ScaleInv(x, extra)`` with ``Gamma`` bias-free linear -- equivariant times
  invariant is equivariant. ``extra`` are invariant side inputs (canonicalised features of other kinds).

``symmetry="none"`` replaces both by a plain MLP on ``[x, extra]`` (the symmetry-broken GMN ablation).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

SYMMETRIES = ("scale", "sign", "none")


def canon(x: Tensor, symmetry: str) -> Tensor:
    """Invariant canonical form of features ``x (..., d)`` that transform with one scalar per row.

    Scale: ``x / ||x||`` with no epsilon -- an epsilon would break invariance for small features (their norm
    shrinks with q, the epsilon does not); exact zeros map to zero with a finite gradient instead.
    """
    if symmetry == "scale":
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x / torch.where(norm > 0, norm, torch.ones_like(norm))
    if symmetry == "sign":
        return x.abs()
    return x


def squash(x: Tensor, symmetry: str) -> Tensor:
    """Soft magnitude control ``x / (1 + rms(x))`` for features whose magnitude is invariant: under sign flips
    (and in the symmetry-broken model) ``rms(x)`` does not change, so this keeps equivariance while stopping the
    products of message passing from compounding into overflow. Under positive scaling the magnitude *is* the
    group action, so ``"scale"`` features pass through unchanged.
    """
    if symmetry == "scale":
        return x
    # the 1e-12 keeps the gradient of sqrt finite at x = 0 (rows of zeros occur: hidden backward features start at 0)
    return x / (1 + (x.pow(2).mean(-1, keepdim=True) + 1e-12).sqrt())


def mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, d_hidden), nn.SiLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(d_hidden, d_out))
    return nn.Sequential(*layers)


class ScaleInv(nn.Module):
    r"""Invariant map :math:`\phi(\mathrm{canon}(x), e)` with a two-layer MLP :math:`\phi`.

    For sign symmetry :math:`\phi(x, e) + \phi(-x, e)`; since the first layer is linear,
    :math:`W[x; e] = W_x x + W_e e`, both branches share one matrix product:
    :math:`L_2(\sigma(c + a) + \sigma(c - a))` with :math:`a = W_x x`, :math:`c = W_e e + \beta`.

    Args:
        d_in: size of the transforming input ``x``.
        d_extra: size of the invariant side input ``extra`` (0 for none).
        d_out: output size.
        symmetry: ``"scale"``, ``"sign"`` or ``"none"``.
        d_hidden: width of ``phi`` (default ``d_out``).

    ``forward(x, extra=None, pre=None)``: ``pre`` is an already projected invariant side input in phi's hidden
    space (lets callers project node features once per node instead of once per edge).

    Shapes:
        ``x (R, d_in)``, ``extra (R, d_extra)``, ``pre (R, d_hidden)`` -> ``(R, d_out)``.
    """

    def __init__(self, d_in: int, d_extra: int, d_out: int, symmetry: str, d_hidden: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        if symmetry not in SYMMETRIES:
            raise ValueError(f"unknown symmetry {symmetry!r}; expected one of {SYMMETRIES}")
        self.symmetry = symmetry
        d_hidden = d_hidden or d_out
        self.lin_x = nn.Linear(d_in, d_hidden, bias=False)
        self.lin_extra = nn.Linear(d_extra, d_hidden, bias=False) if d_extra else None
        self.bias = nn.Parameter(torch.zeros(d_hidden))
        self.act = nn.SiLU()
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out = nn.Linear(d_hidden, d_out)
        self.reset_parameters()

    def reset_parameters(self):
        self.lin_x.reset_parameters()
        if self.lin_extra is not None:
            self.lin_extra.reset_parameters()
        self.out.reset_parameters()
        bound = 1.0 / (self.lin_x.in_features + (self.lin_extra.in_features if self.lin_extra else 0)) ** 0.5
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, extra: Tensor | None = None, pre: Tensor | None = None) -> Tensor:
        c = self.bias
        if extra is not None:
            c = c + self.lin_extra(extra)
        if pre is not None:
            c = c + pre
        if self.symmetry == "sign":
            a = self.lin_x(x)
            hidden = self.act(c + a) + self.act(c - a)
        else:
            hidden = self.act(self.lin_x(canon(x, self.symmetry)) + c)
        return self.out(self.drop(hidden))


class ScaleEq(nn.Module):
    r"""Equivariant map :math:`(\Gamma x) \odot \mathrm{ScaleInv}(x, e)`; with ``symmetry="none"`` the
    symmetry-broken counterpart, a plain MLP on ``[x, e]`` of the same widths.

    Shapes:
        ``x (R, d_in)``, ``extra (R, d_extra)`` -> ``(R, d_out)``.
    """

    def __init__(self, d_in: int, d_extra: int, d_out: int, symmetry: str, d_hidden: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.symmetry = symmetry
        self.gamma = nn.Linear(d_in, d_out, bias=False) if symmetry != "none" else None
        self.inv = ScaleInv(d_in, d_extra, d_out, symmetry, d_hidden, dropout)

    def forward(self, x: Tensor, extra: Tensor | None = None, pre: Tensor | None = None) -> Tensor:
        if self.gamma is None:
            return self.inv(x, extra, pre)
        return self.gamma(x) * self.inv(x, extra, pre)
