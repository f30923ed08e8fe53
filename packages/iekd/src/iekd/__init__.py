"""Inheritance and Exploration Knowledge Distillation (IE-KD) for PyTorch."""

import logging

from .__about__ import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
