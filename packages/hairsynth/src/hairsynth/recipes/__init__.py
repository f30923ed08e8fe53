"""Training and evaluation recipes."""

from .train import TrainConfig, evaluate, train

__all__ = ["TrainConfig", "evaluate", "train"]
