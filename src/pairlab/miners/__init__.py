"""Miners: choose which pairs/triplets of a batch enter a loss (registered under ``miners``).

A miner only changes V or W of the one equation (DESIGN §1). Call ``miner(embeddings [B, D],
labels [B])`` -> :class:`~pairlab.miners.base.Mined`; pass it as ``indices_tuple`` to a margin loss,
or ``mined.weights(targets)`` as ``weights`` to the InfoNCE family.
"""

from pairlab.miners.base import Mined, Miner
from pairlab.miners.batch_easy_hard import BatchEasyHardMiner
from pairlab.miners.batch_hard import BatchHardMiner
from pairlab.miners.batch_semi_hard import BatchSemiHardMiner
from pairlab.miners.distance_weighted import DistanceWeightedMiner
from pairlab.miners.multi_similarity_miner import MultiSimilarityMiner
from pairlab.miners.pair_margin import PairMarginMiner

__all__ = [
    "BatchEasyHardMiner",
    "BatchHardMiner",
    "BatchSemiHardMiner",
    "DistanceWeightedMiner",
    "Mined",
    "Miner",
    "MultiSimilarityMiner",
    "PairMarginMiner",
]
