"""Physically-based morphable face model: identity geometry, PBR attribute maps, fitting, export."""

import logging

from .__about__ import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
