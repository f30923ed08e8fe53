"""Identity-preserving face completion for large ocular-region occlusions (VR headsets).

A PyTorch slice of *Identity Preserving Face Completion for Large Ocular Region Occlusion* (Zhao et al.,
BMVC 2018): eye-region masks, head-pose maps, the generator with its global and pose discriminators, the
identity loss with a pluggable identity encoder, training recipes and a :class:`Completer` for inference.
"""

import logging

from . import masks, pose
from .__about__ import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .completer import Completer
from .data import PairedFaces
from .functional import (
    composite,
    discriminator_loss,
    generator_adversarial_loss,
    identity_loss,
    masked_l1_loss,
    masked_psnr,
    masked_ssim,
    occlude,
)
from .models import (
    CompletionGenerator,
    IdentityEncoder,
    LocalDiscriminator,
    PatchDiscriminator,
    PoseDiscriminator,
    create_model,
    list_models,
)
from .nn import AdversarialLoss, IdentityLoss, MaskedL1Loss
from .pose import PoseMap, estimate_pose, pose_map
from .recipes import CompletionConfig, evaluate_completion, train_completion, train_identity_encoder

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AdversarialLoss",
    "Completer",
    "CompletionConfig",
    "CompletionGenerator",
    "IdentityEncoder",
    "IdentityLoss",
    "LocalDiscriminator",
    "MaskedL1Loss",
    "PairedFaces",
    "PatchDiscriminator",
    "PoseDiscriminator",
    "PoseMap",
    "__version__",
    "composite",
    "create_model",
    "discriminator_loss",
    "estimate_pose",
    "evaluate_completion",
    "generator_adversarial_loss",
    "identity_loss",
    "list_models",
    "load_checkpoint",
    "masked_l1_loss",
    "masked_psnr",
    "masked_ssim",
    "masks",
    "occlude",
    "pose",
    "pose_map",
    "save_checkpoint",
    "train_completion",
    "train_identity_encoder",
]
