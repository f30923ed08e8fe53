"""Identity-preserving face completion for large ocular-region occlusions (VR headsets)."""

import logging

from .__about__ import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
