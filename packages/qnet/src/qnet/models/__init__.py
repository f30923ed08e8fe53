"""Architectures of the small-scale experiments, behind a registry."""

from ._registry import create_model, list_models, register_model
from .cnn import CifarResNet, SmallCNN, resnet20, small_cnn

__all__ = [
    "CifarResNet",
    "SmallCNN",
    "create_model",
    "list_models",
    "register_model",
    "resnet20",
    "small_cnn",
]
