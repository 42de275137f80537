"""Symmetry-aware fully-amortized optimization with Scale Equivariant Graph Metanetworks: the workbench package."""
from .nets import NetSpec, small_cnn_zoo_spec, init_params, forward, check_params

__version__ = "0.1.0"
__all__ = ["NetSpec", "small_cnn_zoo_spec", "init_params", "forward", "check_params"]
