"""Interactive beard and hair synthesis from guide strokes with generative models."""

import logging

from .__about__ import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
