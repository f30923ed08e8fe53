"""Deep RBFNet: point-cloud feature learning with radial basis functions for PyTorch."""

import logging

from .__about__ import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
