"""Metanetworks that output new network weights: ScaleGMN (permutation- and scale/sign-equivariant graph
metanetwork) and NFN (permutation-equivariant neural functional network, the peer baseline)."""
from .blocks import SYMMETRIES, ScaleEq, ScaleInv, canon
from .compiled import Compiled
from .config import MetanetConfig
from .cuda_graph import GraphedOneShot
from .layers import ScaleGMNConv
from .model import ScaleGMN
from .nfn import NFN, NPLinear, count_parameters, matched_hidden, rescale_response

__all__ = ["MetanetConfig", "Compiled", "GraphedOneShot", "SYMMETRIES", "ScaleEq", "ScaleInv", "canon", "ScaleGMNConv",
           "ScaleGMN", "NFN", "NPLinear", "count_parameters", "matched_hidden", "rescale_response"]
