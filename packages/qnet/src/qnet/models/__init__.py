"""Architectures of the small-scale experiments, behind a registry."""

from ._registry import create_model, list_models, register_model
from .cnn import CifarResNet, SmallCNN, resnet20, small_cnn
from .resnet_a import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CifarResNetA,
    resnet20_a,
    resnet32_a,
    resnet44_a,
    resnet56_a,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CifarResNet",
    "CifarResNetA",
    "SmallCNN",
    "create_model",
    "list_models",
    "register_model",
    "resnet20",
    "resnet20_a",
    "resnet32_a",
    "resnet44_a",
    "resnet56_a",
    "small_cnn",
]
