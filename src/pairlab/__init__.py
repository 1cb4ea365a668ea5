"""pairlab: contrastive learning where the pair is the first-class object."""

from pairlab.nce import NCEResult, nce
from pairlab.objectives import DCL, CLIPLoss, InfoNCE, NTXent, SupCon
from pairlab.scores import Temperature, normalize, similarity_matrix

__version__ = "0.1.0"

__all__ = [
    "CLIPLoss",
    "DCL",
    "InfoNCE",
    "NCEResult",
    "NTXent",
    "SupCon",
    "Temperature",
    "nce",
    "normalize",
    "similarity_matrix",
]
