"""Physically-based morphable face model: identity geometry, PBR attribute maps, fitting, export."""

import logging

from . import geometry, io, uv
from .__about__ import __version__
from .fit import FitResult, PerspectiveCamera, fit, project_points
from .models import LinearFaceModel

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "FitResult",
    "LinearFaceModel",
    "PerspectiveCamera",
    "__version__",
    "fit",
    "geometry",
    "io",
    "project_points",
    "uv",
]
