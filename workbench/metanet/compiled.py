"""A metanetwork whose forward pass runs through ``torch.compile``, with an eager fallback.

:class:`Compiled` wraps a :class:`~workbench.metanet.ScaleGMN` (or an :class:`~workbench.metanet.NFN`) and shares
its parameters. For ScaleGMN the graph is built eagerly (``to_graph`` makes a PyG ``Batch``, which dynamo does not
trace) and everything after it -- feature initialisation, every message-passing layer, the heads -- is one compiled
function of plain tensors (:meth:`ScaleGMN.graph_deltas`), so inductor fuses the element-wise chains between the
matrix products, forward and backward. For NFN the whole forward is compiled.

Compiling takes seconds to tens of seconds on a CPU the first time a shape is seen; inductor keeps what it built in
its on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default under the system's temporary folder), so a later process
that sees the same model and shapes compiles much faster. ``dynamic=False``: one compiled graph per input shape, so
callers should keep shapes fixed (the training loop does: every step has ``batch_networks`` networks; validation
runs on the eager model).

If compiling fails (no C++ compiler, an unsupported operator), the first call says why in :attr:`failure`, warns
once, and every call from then on runs the eager model: the results are the same up to float rounding either way.
"""
from __future__ import annotations

import time
import warnings

import torch
from torch import nn

from ..nets import NetSpec, Params
from .model import optimize_in_chunks

__all__ = ["Compiled"]

#: compiled graphs dynamo may keep per function before it runs it eagerly (torch's default is 8)
RECOMPILE_LIMIT = 256


class Compiled(nn.Module):
    """``model`` with its forward pass compiled (see the module docstring).

    Attributes:
        model: the wrapped metanetwork (its parameters are this module's parameters).
        failure: None, or why compiling failed (the wrapper then runs ``model`` eagerly).
        first_call_seconds: wall time of the first call, compiling included (None before it).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.spec: NetSpec = model.spec
        self.failure: str | None = None
        self.first_call_seconds: float | None = None
        # dynamo keeps its compiled graphs per function (graph_deltas of every model, one per model, shape and grad
        # mode) and runs eagerly, silently, beyond this many: a process that trains and scores several metanets needs
        # more than the default 8
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        try:
            if hasattr(model, "layered_deltas"):  # ScaleGMN: the pass of the path it runs now, compiled
                path = model.path
                core = model.layered_deltas if path == "dense" else model.graph_deltas
                self._core = torch.compile(core, dynamic=False)
                self._forward = lambda params: model(params, core=self._core, path=path)
            else:
                self._forward = torch.compile(model.forward, dynamic=False)
        except Exception as err:  # noqa: BLE001  (any failure means: run eager)
            self.fall_back(err)

    def fall_back(self, err: BaseException) -> None:
        """Run the eager model from now on, and say why once."""
        self.failure = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}"
        warnings.warn(f"torch.compile failed, running the metanet eagerly (same results up to float rounding): "
                      f"{self.failure}", RuntimeWarning, stacklevel=3)

    @property
    def compiled(self) -> bool:
        """True while calls go through the compiled function."""
        return self.failure is None

    def forward(self, params: Params) -> Params:
        if self.failure is not None:
            return self.model(params)
        if self.first_call_seconds is None:
            start = time.perf_counter()
            try:
                out = self._forward(params)
            except Exception as err:  # noqa: BLE001
                self.fall_back(err)
                out = self.model(params)
            self.first_call_seconds = time.perf_counter() - start
            return out
        return self._forward(params)

    def optimize(self, spec: NetSpec, params: Params, batch_size: int | None = None) -> Params:
        """One-shot optimization through the compiled pass (as :meth:`ScaleGMN.optimize`; each new chunk size
        compiles once more)."""
        return optimize_in_chunks(self, spec, params, batch_size)

    def extra_repr(self) -> str:
        return "eager fallback: " + self.failure if self.failure else "torch.compile"
