"""Architectures of the small-scale experiments, behind a registry."""

from ._registry import create_model, list_models, register_model
from .cnn import CifarResNet, SmallCNN, resnet20, small_cnn
from .pretrained import SHIPPED_WEIGHTS, resnet20_a_ternary, shipped_weights_path
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
    "SHIPPED_WEIGHTS",
    "CifarResNet",
    "CifarResNetA",
    "SmallCNN",
    "create_model",
    "list_models",
    "register_model",
    "resnet20",
    "resnet20_a",
    "resnet20_a_ternary",
    "resnet32_a",
    "resnet44_a",
    "resnet56_a",
    "shipped_weights_path",
    "small_cnn",
]
