"""Symmetry-aware fully-amortized optimization with Scale Equivariant Graph Metanetworks: the workbench package.

On import, torch's CPU intra-op threads are set to ``WORKBENCH_THREADS`` (default 1). The workbench's tensors are
many small ones; on a 2-core machine two OpenMP threads made the metanetwork's elementwise ops up to 40x slower
whenever another process held the second core (measured: 0.06 s vs 2.8 s per forward), while a single thread
loses at most ~1.4x on the largest matmuls. Set ``WORKBENCH_THREADS=0`` to leave torch's own default (here and in
worker processes). A value that is not such a number is ignored on import and refused by every command
(:mod:`workbench.system.environment`), so that ``python -m workbench --help`` works whatever the environment holds.
"""
from .system.environment import apply_threads as _apply_threads

_apply_threads()

from .forward_pass import forward  # noqa: E402
from .nets import NetSpec, check_params, init_params, small_cnn_zoo_spec  # noqa: E402

__version__ = "0.1.0"
__all__ = ["NetSpec", "small_cnn_zoo_spec", "init_params", "forward", "check_params", "OneShot"]


def __getattr__(name: str):
    """``workbench.OneShot`` (:mod:`workbench.training.oneshot`), imported on first use: it loads the metanetwork and
    PyG, which ``import workbench`` (and every command line start) would otherwise pay for."""
    if name == "OneShot":
        from .training.oneshot import OneShot

        return OneShot
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
