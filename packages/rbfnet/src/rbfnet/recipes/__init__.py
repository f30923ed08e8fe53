"""Training and evaluation recipes."""

from .classification import classification_metrics, evaluate, train

__all__ = ["classification_metrics", "evaluate", "train"]
