"""Symmetry-aware fully-amortized optimization with Scale Equivariant Graph Metanetworks: the workbench package.

On import, torch's CPU intra-op threads are set to ``WORKBENCH_THREADS`` (default 1). The workbench's tensors are
many small ones; on a 2-core machine two OpenMP threads made the metanetwork's elementwise ops up to 40x slower
whenever another process held the second core (measured: 0.06 s vs 2.8 s per forward), while a single thread
loses at most ~1.4x on the largest matmuls. Set ``WORKBENCH_THREADS=0`` to leave torch's own default.
"""
import os as _os

import torch as _torch

_threads = int(_os.environ.get("WORKBENCH_THREADS", "1"))
if _threads > 0:
    _torch.set_num_threads(_threads)

from .forward_pass import forward  # noqa: E402
from .nets import NetSpec, check_params, init_params, small_cnn_zoo_spec  # noqa: E402

__version__ = "0.1.0"
__all__ = ["NetSpec", "small_cnn_zoo_spec", "init_params", "forward", "check_params"]
