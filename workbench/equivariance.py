"""Checks that a map of network parameters respects the symmetry group: the shared test helpers, shaped like
e3nn's ``e3nn/util/test.py``.

:func:`equivariance_error` returns the worst mismatch of ``f(g . p)`` against ``g . f(p)`` (or ``f(p)`` for an
invariant map) over random group elements ``g``; :func:`assert_equivariant` asserts it is within a tolerance by
dtype (:data:`DEFAULT_RTOL`) and names the element that broke it; :func:`function_change` measures how far a
parameter change moved a network's logits (zero up to rounding for a group element of the activation's group).
The group itself -- elements, their action on parameters and graphs -- is :mod:`workbench.symmetry`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .forward_pass import forward
from .nets import NetSpec, Params, check_params
from .symmetry import GroupElement, act, random_element

__all__ = ["DEFAULT_RTOL", "SymmetryCheck", "equivariance_error", "assert_equivariant", "function_change"]

#: default relative tolerances of the equivariance checks, by dtype
DEFAULT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2}
_TINY = 1e-30


@dataclass(frozen=True)
class SymmetryCheck:
    """The worst mismatch found by :func:`equivariance_error`.

    ``error`` is ``max |a - b| / (max |b| + tiny)`` over one tensor (``where``), ``b`` the reference side.
    """

    error: float
    abs_error: float
    reference_size: float
    where: str
    element_index: int
    network: int
    element: GroupElement | None

    def describe(self) -> str:
        elem = self.element.describe(self.network) if self.element is not None else "-"
        return (
            f"worst relative error {self.error:.3e} (max |diff| {self.abs_error:.3e}, reference size "
            f"{self.reference_size:.3e}) at {self.where}, group element {self.element_index}, network {self.network}: {elem}"
        )


def _compare(a: Tensor, b: Tensor) -> tuple[float, float, float, int]:
    """Relative error of ``a`` against reference ``b`` (leading dim = networks), and the worst network."""
    a = a.detach().to(torch.float64)
    b = b.detach().to(torch.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch: {tuple(a.shape)} vs reference {tuple(b.shape)}")
    diff = (a - b).abs().reshape(a.shape[0], -1) if a.dim() else (a - b).abs().reshape(1, 1)
    if diff.numel() == 0:
        return 0.0, 0.0, 0.0, 0
    per_net = diff.max(dim=1).values
    if not torch.isfinite(a).all() or not torch.isfinite(b).all():
        return math.inf, math.inf, float(b.abs().max()), int(per_net.nan_to_num(math.inf).argmax())
    size = float(b.abs().max())
    abs_err = float(per_net.max())
    return abs_err / (size + _TINY), abs_err, size, int(per_net.argmax())


def _draws(spec, params, group, n_elements, generator, scale_range):
    n_nets = check_params(spec, params)
    dtype = params[0][0].dtype
    return [random_element(spec, n_nets, group, generator, scale_range=scale_range, dtype=dtype,
                           device=params[0][0].device) for _ in range(n_elements)]


def equivariance_error(
    f: Callable[[Params], Params | Tensor], spec: NetSpec, params: Params, group: str, *, invariant: bool = False,
    n_elements: int = 4, generator: torch.Generator | None = None, scale_range: tuple[float, float] = (1e-2, 1e2),
) -> SymmetryCheck:
    """The worst mismatch of ``f`` under ``n_elements`` random elements ``g`` of ``group`` (e3nn's
    ``equivariance_error``); its ``.error`` is what the negative controls assert to be large.

    Equivariant (default): ``f`` maps params to params and ``f(g . p)`` is compared with ``g . f(p)`` per layer's
    weight and bias. ``invariant=True``: ``f`` returns a tensor with leading dim B and ``f(g . p)`` is compared
    with ``f(p)``.

    Args:
        group: one of :data:`GROUPS` (``group_for(spec)`` for the activation's own group).
        scale_range: positive scales are log-uniform on it (scale groups only).
        generator: torch generator for the draws (CPU).
    """
    reference = f(params)
    worst = SymmetryCheck(0.0, 0.0, 0.0, "-", -1, 0, None)
    for k, g in enumerate(_draws(spec, params, group, n_elements, generator, scale_range)):
        if invariant:
            pairs = [("output", f(act(spec, g, params)), reference)]
        else:
            lhs, rhs = f(act(spec, g, params)), act(spec, g, reference)
            pairs = [(f"layer {layer} {name}", a, b) for layer, ((wa, ba), (wb, bb)) in enumerate(zip(lhs, rhs))
                     for name, a, b in (("weight", wa, wb), ("bias", ba, bb))]
        for where, a, b in pairs:
            err, abs_err, size, net = _compare(a, b)
            if err > worst.error or worst.element is None:
                worst = SymmetryCheck(err, abs_err, size, where, k, net, g)
    return worst


def assert_equivariant(
    f: Callable[[Params], Params | Tensor], spec: NetSpec, params: Params, group: str, *, invariant: bool = False,
    n_elements: int = 4, generator: torch.Generator | None = None, rtol: float | None = None,
    atol: float | None = None, scale_range: tuple[float, float] = (1e-2, 1e2),
) -> float:
    """Assert ``f(g . p) == g . f(p)`` (or ``f(g . p) == f(p)`` with ``invariant=True``) for random ``g`` in
    ``group``; return the worst relative error (e3nn's ``assert_equivariant``).

    Passes when, for every compared tensor (each layer's weight and bias, or the invariant output),
    ``max |a - b| <= atol + rtol * max |b|``.

    Args:
        f: maps batched params of ``spec`` to batched params of ``spec`` (or, invariant, to a tensor ``(B, ...)``).
        invariant: compare with ``f(p)`` itself instead of the transformed ``g . f(p)``.
        rtol: default by dtype (float32 1e-4, float64 1e-9).
        atol: absolute slack (default 0).

    Raises:
        AssertionError: naming the worst relative error, where it occurred and the group element that produced it.
    """
    dtype = params[0][0].dtype
    rtol = DEFAULT_RTOL.get(dtype, 1e-4) if rtol is None else rtol
    atol = 0.0 if atol is None else atol
    worst = equivariance_error(f, spec, params, group, invariant=invariant, n_elements=n_elements,
                               generator=generator, scale_range=scale_range)
    if not worst.abs_error <= atol + rtol * worst.reference_size:
        what = "invariant" if invariant else "equivariant"
        raise AssertionError(f"not {what} under {group!r} (rtol {rtol:g}, atol {atol:g}): {worst.describe()}")
    return worst.error


def function_change(spec: NetSpec, params: Params, new_params: Params, x: Tensor) -> float:
    """``max |f_new(x) - f(x)| / max |f(x)|``: how much a parameter change moved the logits, relative."""
    ref = forward(spec, params, x)
    return float((forward(spec, new_params, x) - ref).abs().max() / (ref.abs().max() + _TINY))
