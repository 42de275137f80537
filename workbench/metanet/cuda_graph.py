"""One-shot optimization replayed from a captured CUDA graph: for low latency on a GPU.

A one-shot pass of a ScaleGMN is a long chain of small kernels (each layer runs a dozen linear maps, their
element-wise products and two message passes), so at batch 1 a GPU spends its time waiting for Python to launch
them (bench/README.md, "GPU numbers"). :class:`GraphedOneShot` records the pass once, for one architecture, one
batch size and one precision, as a CUDA graph, and then replays it with a single launch. It reads the metanet's parameters where they are, so training the metanet in place afterwards is seen
by later replays; a replaced parameter tensor (``load_state_dict`` with ``assign=True``, ``.to()``) is not.

    shot = GraphedOneShot(model, spec, n_networks=1)   # warm-up and capture (CUDA only)
    new_params = shot(params)                          # like model.optimize(spec, params), same numbers

bench/metanet.py ``--gpu`` times it next to the eager pass; tests/test_gpu.py (marker ``gpu``) checks that
both give the same parameters.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..nets import NetSpec, Params, SpecError, check_params, init_params

__all__ = ["GraphedOneShot"]


class GraphedOneShot:
    """``model``'s one-shot pass for ``n_networks`` networks of ``spec``, captured as a CUDA graph.

    Args:
        model: a ScaleGMN or NFN on a CUDA device (any metanet whose ``forward(params)`` returns new params and
            whose ``spec`` is its architecture).
        spec: the architecture of the networks to optimize; must be the model's.
        n_networks: the batch size every call must have.
        amp_dtype: run the pass under CUDA autocast to this dtype (e.g. ``torch.bfloat16``); None = model dtype.
        warmup: eager passes on a side stream before the capture (CUDA's libraries allocate their workspaces there).

    Calling it with params of ``n_networks`` networks checks them (shapes, finite values), copies them into the
    captured input buffers, replays the graph and returns fresh copies of the outputs (later calls do not overwrite
    a result already returned).

    Raises:
        ValueError: the model is not on a CUDA device, or a call has another number of networks.
        SpecError: ``spec`` is not the model's architecture.
    """

    def __init__(self, model: nn.Module, spec: NetSpec, n_networks: int, *, amp_dtype: torch.dtype | None = None,
                 warmup: int = 3):
        ref = next(model.parameters())
        if ref.device.type != "cuda":
            raise ValueError(f"GraphedOneShot needs a metanet on a CUDA device, and this one is on {ref.device}; "
                             "use model.optimize(spec, params) on a CPU")
        if spec != model.spec:
            raise SpecError(f"this {type(model).__name__} was built for {model.spec.describe()}, not {spec.describe()}")
        if n_networks < 1:
            raise ValueError(f"n_networks must be at least 1, got {n_networks}")
        self.model, self.spec, self.n_networks, self.amp_dtype = model, spec, n_networks, amp_dtype
        self.device = ref.device
        gen = torch.Generator().manual_seed(0)
        self._inputs = [(w.to(self.device, ref.dtype), b.to(self.device, ref.dtype))
                        for w, b in init_params(spec, n_networks, gen)]
        was_training = model.training
        model.eval()
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self._pass()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._outputs = self._pass()
        finally:
            model.train(was_training)

    def _pass(self) -> Params:
        amp = (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with torch.no_grad(), amp:
            return self.model(self._inputs)

    def __call__(self, params: Params) -> Params:
        n = check_params(self.spec, params, finite=True)
        if n != self.n_networks:
            raise ValueError(f"this GraphedOneShot was captured for {self.n_networks} networks and got {n}; "
                             "capture another one for that batch size")
        with torch.no_grad():
            for (w, b), (w_in, b_in) in zip(params, self._inputs):
                w_in.copy_(w)
                b_in.copy_(b)
            self.graph.replay()
            return [(w.clone(), b.clone()) for w, b in self._outputs]
