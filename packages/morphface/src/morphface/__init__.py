"""Physically-based morphable face model: identity geometry, PBR attribute maps, fitting, export."""

import logging

from . import checkpoint, data, functional, geometry, io, recipes, uv
from .__about__ import __version__
from .export import FaceAsset, export
from .fit import FitResult, PerspectiveCamera, fit, project_points
from .interpolation import interpolate
from .models import LinearFaceModel
from .models.attribute import AttributeGenerator, PatchDiscriminator, Upsampler
from .photo import LandmarkDetector, PhotoFit, fit_photo
from .pipeline import displace, generate_faces
from .render import render_preview

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AttributeGenerator",
    "FaceAsset",
    "FitResult",
    "LandmarkDetector",
    "LinearFaceModel",
    "PatchDiscriminator",
    "PerspectiveCamera",
    "PhotoFit",
    "Upsampler",
    "__version__",
    "checkpoint",
    "data",
    "displace",
    "export",
    "fit",
    "fit_photo",
    "functional",
    "generate_faces",
    "geometry",
    "interpolate",
    "io",
    "project_points",
    "recipes",
    "render_preview",
    "uv",
]
