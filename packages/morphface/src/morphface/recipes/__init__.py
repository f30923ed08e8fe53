"""Own-loop training recipes."""

from .train import train_attribute_model, train_upsampler

__all__ = ["train_attribute_model", "train_upsampler"]
