"""Training recipes."""

from .train import TASKS, evaluate, task_loss, train

__all__ = ["TASKS", "evaluate", "task_loss", "train"]
