"""Contrast for conditional generative models (SoftREPA): per-pair error grids, soft tokens, a small denoiser.

* :func:`pair_errors` / :func:`mean_pair_errors` / :func:`matching_rank`: the ``[B, M]`` error matrix of any
  conditional model with one shared noise and timestep per grid, in bounded-memory chunks.
* :class:`SoftTokens`, :class:`TokenConditioned`, :func:`train_soft_tokens`: learnable conditioning tokens
  trained alone with :class:`pairlab.objectives.error_contrast.ErrorContrast`.
* :class:`TinyDenoiser`, :func:`train_denoiser`: a CPU-sized conditional denoiser for checks.
* :class:`FlowMatching`, :class:`VariancePreserving`: noising schedules.
"""

from pairlab.generative.denoiser import TinyDenoiser, train_denoiser
from pairlab.generative.pair_errors import matching_rank, mean_pair_errors, pair_errors
from pairlab.generative.schedules import FlowMatching, VariancePreserving
from pairlab.generative.soft_tokens import SoftTokens, TokenConditioned, train_soft_tokens

__all__ = [
    "FlowMatching",
    "SoftTokens",
    "TinyDenoiser",
    "TokenConditioned",
    "VariancePreserving",
    "matching_rank",
    "mean_pair_errors",
    "pair_errors",
    "train_denoiser",
    "train_soft_tokens",
]
