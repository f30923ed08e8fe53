"""Interactive beard and hair synthesis from guide strokes with generative models.

A PyTorch reconstruction of Olszewski et al., "Intuitive, Interactive Beard and Hair Synthesis with
Generative Models" (CVPR 2020): guide strokes (:mod:`hairsynth.strokes`), a two-stage synthesis +
refinement network (:mod:`hairsynth.models`), losses and metrics (:mod:`hairsynth.functional`),
the :class:`Synthesizer` for interactive editing, training recipes and a ``python -m hairsynth`` CLI.
"""

import logging

from . import functional, models, nn, strokes
from .__about__ import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .functional import (
    composite,
    dilate_mask,
    feather_mask,
    feature_matching_loss,
    gan_loss,
    masked_l1,
    psnr,
    sliced_wasserstein_distance,
    ssim,
    synthesis_input,
)
from .masks import BEARD_STYLES, beard_mask, detect_landmarks
from .models import HairSynthesisNet, create_model, list_models, register_model
from .nn import (
    EfficientNetLite0Features,
    GANLoss,
    PatchDiscriminator,
    PerceptualLoss,
    UNetGenerator,
    VGG19Features,
)
from .strokes import (
    Stroke,
    load_strokes,
    orientation_field,
    oriented_filter_bank,
    rasterize_strokes,
    save_strokes,
    stroke_orientation_agreement,
    strokes_from_image,
    trace_strokes,
)
from .synthesizer import EditSession, Synthesizer

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BEARD_STYLES",
    "EditSession",
    "EfficientNetLite0Features",
    "GANLoss",
    "HairSynthesisNet",
    "PatchDiscriminator",
    "PerceptualLoss",
    "Stroke",
    "Synthesizer",
    "UNetGenerator",
    "VGG19Features",
    "__version__",
    "beard_mask",
    "composite",
    "create_model",
    "detect_landmarks",
    "dilate_mask",
    "feather_mask",
    "feature_matching_loss",
    "functional",
    "gan_loss",
    "list_models",
    "load_checkpoint",
    "load_strokes",
    "masked_l1",
    "models",
    "nn",
    "orientation_field",
    "oriented_filter_bank",
    "psnr",
    "rasterize_strokes",
    "register_model",
    "save_checkpoint",
    "save_strokes",
    "sliced_wasserstein_distance",
    "ssim",
    "stroke_orientation_agreement",
    "strokes",
    "strokes_from_image",
    "synthesis_input",
    "trace_strokes",
]
