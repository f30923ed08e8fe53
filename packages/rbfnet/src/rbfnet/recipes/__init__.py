"""Training and evaluation recipes."""

from .classification import classification_metrics, evaluate, recalibrate_bn, train, vote_views

__all__ = ["classification_metrics", "evaluate", "recalibrate_bn", "train", "vote_views"]
