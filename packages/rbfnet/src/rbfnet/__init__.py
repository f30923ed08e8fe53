"""Deep RBFNet: point-cloud feature learning with radial basis functions for PyTorch."""

import logging

from . import data, functional, models, ops, recipes
from .__about__ import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .functional import pairwise_sq_dist, rbf_activation, rbf_kernel
from .models import PointNet, PointNet2SSG, RBFNet, count_parameters, create_model, list_models
from .nn import RBFLayer, init_centers
from .recipes import classification_metrics, evaluate, recalibrate_bn, train

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "PointNet",
    "PointNet2SSG",
    "RBFLayer",
    "RBFNet",
    "__version__",
    "classification_metrics",
    "count_parameters",
    "create_model",
    "data",
    "evaluate",
    "functional",
    "init_centers",
    "list_models",
    "load_checkpoint",
    "models",
    "ops",
    "pairwise_sq_dist",
    "rbf_activation",
    "rbf_kernel",
    "recalibrate_bn",
    "recipes",
    "save_checkpoint",
    "train",
]
