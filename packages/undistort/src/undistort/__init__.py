"""Learning perspective undistortion of portraits: flow synthesis, networks, warping, calibration.

A PyTorch implementation of Zhao et al., "Learning Perspective Undistortion of Portraits" (ICCV 2019):
exact dolly-zoom correction flows rendered from 3D heads (:mod:`undistort.camera`), a synthetic pair
data set (:class:`undistort.synth.PortraitPairs`), the cascade's networks, warping, and the
:class:`Undistorter` pipeline with single-portrait camera calibration.
"""

import logging

from . import camera, functional, heads, models, portrait, realpairs, recipes, synth
from .__about__ import __version__
from .camera import (
    PinholeCamera,
    dolly_zoom,
    head_rotation,
    magnification,
    project,
    rasterize,
    render,
    synthesize_pair,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .functional import (
    completion_loss,
    distance_bin_centers,
    distance_to_bin,
    distance_to_code,
    endpoint_error,
    hinge_discriminator_loss,
    hinge_generator_loss,
    total_variation,
)
from .heads import HeadModel, load_ict_facekit
from .models import (
    CompletionDiscriminator,
    CompletionNet,
    DistanceNet,
    FlowNet,
    SegNet,
    create_model,
    list_models,
)
from .pipeline import Undistorter
from .portrait import correct
from .realpairs import RealPortraitPairs, fit_head, real_pair
from .recipes import evaluate, train
from .synth import PortraitPairs, collate_pairs
from .warp import Warp, splat, warp

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "CompletionDiscriminator",
    "CompletionNet",
    "DistanceNet",
    "FlowNet",
    "HeadModel",
    "PinholeCamera",
    "PortraitPairs",
    "RealPortraitPairs",
    "SegNet",
    "Undistorter",
    "Warp",
    "__version__",
    "camera",
    "collate_pairs",
    "completion_loss",
    "correct",
    "create_model",
    "distance_bin_centers",
    "distance_to_bin",
    "distance_to_code",
    "dolly_zoom",
    "endpoint_error",
    "evaluate",
    "fit_head",
    "functional",
    "head_rotation",
    "heads",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "list_models",
    "load_checkpoint",
    "load_ict_facekit",
    "magnification",
    "models",
    "portrait",
    "project",
    "rasterize",
    "real_pair",
    "realpairs",
    "recipes",
    "render",
    "save_checkpoint",
    "splat",
    "synth",
    "synthesize_pair",
    "total_variation",
    "train",
    "warp",
]
