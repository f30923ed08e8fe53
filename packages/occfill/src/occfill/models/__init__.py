"""Networks of occfill and their registry builders."""

from __future__ import annotations

from typing import Any

from ._registry import create_model, list_models, register_model
from .encoder import CosFaceHead, IdentityEncoder
from .networks import CompletionGenerator, LocalDiscriminator, PatchDiscriminator, PoseDiscriminator

__all__ = [
    "CompletionGenerator",
    "CosFaceHead",
    "IdentityEncoder",
    "LocalDiscriminator",
    "PatchDiscriminator",
    "PoseDiscriminator",
    "create_model",
    "list_models",
    "occfill_generator",
    "occfill_global_discriminator",
    "occfill_identity_encoder",
    "occfill_inpainting_baseline",
    "occfill_local_discriminator",
    "occfill_pose_discriminator",
    "register_model",
]


@register_model
def occfill_generator(**kwargs: Any) -> CompletionGenerator:
    """The paper's generator G: input S (+) M (+) L plus noise z (see :class:`CompletionGenerator`)."""
    return CompletionGenerator(**kwargs)


@register_model
def occfill_inpainting_baseline(**kwargs: Any) -> CompletionGenerator:
    """Plain inpainting baseline: the same generator without the reference S."""
    if kwargs.get("use_reference", False):
        raise ValueError(
            "occfill_inpainting_baseline: use_reference=True conflicts with this builder (False)"
        )
    kwargs["use_reference"] = False
    return CompletionGenerator(**kwargs)


@register_model
def occfill_global_discriminator(**kwargs: Any) -> PatchDiscriminator:
    """Global discriminator (output vs ground truth y)."""
    return PatchDiscriminator(**kwargs)


@register_model
def occfill_pose_discriminator(**kwargs: Any) -> PoseDiscriminator:
    """Pose discriminator ((output, L) vs (y, L))."""
    return PoseDiscriminator(**kwargs)


@register_model
def occfill_local_discriminator(**kwargs: Any) -> LocalDiscriminator:
    """Local ocular-crop discriminator (an option, not in the paper's figure)."""
    return LocalDiscriminator(**kwargs)


@register_model
def occfill_identity_encoder(**kwargs: Any) -> IdentityEncoder:
    """Small identity encoder trained here (stands in for the figure's "Vgg")."""
    return IdentityEncoder(**kwargs)
