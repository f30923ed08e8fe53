"""Physically-based morphable face model: identity geometry, PBR attribute maps, fitting, export."""

import logging

from . import checkpoint, data, functional, geometry, io, recipes, uv
from .__about__ import __version__
from .fit import FitResult, PerspectiveCamera, fit, project_points
from .models import LinearFaceModel
from .models.attribute import AttributeGenerator, PatchDiscriminator, Upsampler

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AttributeGenerator",
    "FitResult",
    "LinearFaceModel",
    "PatchDiscriminator",
    "PerspectiveCamera",
    "Upsampler",
    "__version__",
    "checkpoint",
    "data",
    "fit",
    "functional",
    "geometry",
    "io",
    "project_points",
    "recipes",
    "uv",
]
