"""Architectures and the model registry."""

from ._registry import (
    create_model,
    hairsynth_small,
    hairsynth_tiny,
    hairsynth_unet256,
    hairsynth_unet512,
    list_models,
    register_model,
)
from .hairnet import HairSynthesisNet

__all__ = [
    "HairSynthesisNet",
    "create_model",
    "hairsynth_small",
    "hairsynth_tiny",
    "hairsynth_unet256",
    "hairsynth_unet512",
    "list_models",
    "register_model",
]
