"""Learning perspective undistortion of portraits: flow synthesis, networks, warping, calibration."""

import logging

from .__about__ import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
