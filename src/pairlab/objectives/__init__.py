"""Objectives: one module per method family, each registered under ``objectives``."""

from pairlab.objectives.amcl import AMCL
from pairlab.objectives.base import ContrastiveObjective
from pairlab.objectives.cacr import CACR
from pairlab.objectives.circle import CircleLoss
from pairlab.objectives.contrastive_margin import ContrastiveLoss
from pairlab.objectives.cwcl import CWCL
from pairlab.objectives.dcl import DCL
from pairlab.objectives.hardness_aware import HardContrastiveLoss, SimpleLoss
from pairlab.objectives.infonce import CLIPLoss, InfoNCE, NTXent, SupCon
from pairlab.objectives.lifted import LiftedStructureLoss
from pairlab.objectives.multi_similarity import MultiSimilarityLoss
from pairlab.objectives.multiview import MVDHEL, MVInfoNCE
from pairlab.objectives.pmrl import PMRL
from pairlab.objectives.siglip import SigLIPLoss
from pairlab.objectives.soft_supcon import SoftSupCon
from pairlab.objectives.triplet import TripletMarginLoss

__all__ = [
    "AMCL",
    "CACR",
    "CircleLoss",
    "CLIPLoss",
    "ContrastiveLoss",
    "ContrastiveObjective",
    "CWCL",
    "DCL",
    "HardContrastiveLoss",
    "InfoNCE",
    "LiftedStructureLoss",
    "MultiSimilarityLoss",
    "MVDHEL",
    "MVInfoNCE",
    "NTXent",
    "PMRL",
    "SigLIPLoss",
    "SimpleLoss",
    "SoftSupCon",
    "SupCon",
    "TripletMarginLoss",
]
