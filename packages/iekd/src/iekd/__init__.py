"""Inheritance and Exploration Knowledge Distillation (IE-KD) for PyTorch.

Huang et al., "Revisiting Knowledge Distillation: An Inheritance and Exploration Framework", CVPR 2021.
"""

import logging

from . import data, functional, models, recipes
from .__about__ import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .hooks import FeatureTap
from .nn import (
    AttentionTransferLoss,
    DMLLoss,
    ExplorationLoss,
    FactorAutoencoder,
    FactorOutput,
    FactorTransferLoss,
    IELossOutput,
    InheritanceLoss,
    InheritExploreLoss,
    KDLoss,
    OFDConnector,
    OFDLoss,
    ReconstructionLoss,
    Translator,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AttentionTransferLoss",
    "DMLLoss",
    "ExplorationLoss",
    "FactorAutoencoder",
    "FactorOutput",
    "FactorTransferLoss",
    "FeatureTap",
    "IELossOutput",
    "InheritExploreLoss",
    "InheritanceLoss",
    "KDLoss",
    "OFDConnector",
    "OFDLoss",
    "ReconstructionLoss",
    "Translator",
    "__version__",
    "data",
    "functional",
    "load_checkpoint",
    "models",
    "recipes",
    "save_checkpoint",
]
