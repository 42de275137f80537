"""ScaleGMN: permutation- and scale/sign-equivariant graph metanetwork that outputs new network weights."""
from .blocks import SYMMETRIES, ScaleEq, ScaleInv, canon
from .layers import ScaleGMNConv
from .model import ScaleGMN, default_symmetry

__all__ = ["SYMMETRIES", "ScaleEq", "ScaleInv", "canon", "ScaleGMNConv", "ScaleGMN", "default_symmetry"]
