"""CIFAR ResNet and Wide ResNet families used by the paper, with a small registry."""

from ._registry import create_model, list_models, register_model
from .resnet import (
    CifarResNet,
    WideResNet,
    convert_cifar_resnet_state_dict,
    resnet8,
    resnet14,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
    wrn_16_1,
    wrn_16_2,
    wrn_28_10,
    wrn_40_1,
    wrn_40_2,
)

__all__ = [
    "CifarResNet",
    "WideResNet",
    "convert_cifar_resnet_state_dict",
    "create_model",
    "list_models",
    "register_model",
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "wrn_16_1",
    "wrn_16_2",
    "wrn_28_10",
    "wrn_40_1",
    "wrn_40_2",
]
