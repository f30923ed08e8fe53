"""Module twins of the losses in :mod:`occfill.functional` (config in the module, work in the function)."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_positive
from .functional import discriminator_loss, generator_adversarial_loss, identity_loss, masked_l1_loss

__all__ = ["AdversarialLoss", "IdentityLoss", "MaskedL1Loss"]


class MaskedL1Loss(nn.Module):
    """Twin of :func:`occfill.functional.masked_l1_loss`.

    Args:
        hole_weight: weight of the occluded pixels.
        valid_weight: weight of the visible pixels.

    Shape:
        - output, target: ``(B, C, H, W)``; mask: ``(B, 1, H, W)``; result: scalar.

    Examples:
        >>> MaskedL1Loss()(torch.ones(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 0.0]]]]))
        tensor(3.)
    """

    def __init__(self, hole_weight: float = 5.0, valid_weight: float = 1.0) -> None:
        super().__init__()
        check_positive(hole_weight, "hole_weight", fn="MaskedL1Loss", strict=False)
        check_positive(valid_weight, "valid_weight", fn="MaskedL1Loss", strict=False)
        self.hole_weight = float(hole_weight)
        self.valid_weight = float(valid_weight)

    def forward(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Weighted L1 (see the functional)."""
        return masked_l1_loss(
            output, target, mask, hole_weight=self.hole_weight, valid_weight=self.valid_weight
        )

    def extra_repr(self) -> str:
        return f"hole_weight={self.hole_weight}, valid_weight={self.valid_weight}"


class IdentityLoss(nn.Module):
    """Identity loss with a frozen identity network: ``1 - cos(E(output), E(reference))``.

    Twin of :func:`occfill.functional.identity_loss`; the encoder's parameters are frozen and it is kept
    in eval mode. The reference features are computed without gradient.

    Args:
        encoder: any module mapping ``(B, 3, H, W)`` images in [0, 1] to ``(B, D)`` features.

    Shape:
        - output, reference: ``(B, 3, H, W)``; result: scalar.

    Examples:
        >>> from occfill.models import IdentityEncoder
        >>> loss = IdentityLoss(IdentityEncoder(embedding_dim=8, base_channels=4))
        >>> x = torch.rand(2, 3, 32, 32)
        >>> float(loss(x, x)) < 1e-6
        True
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"IdentityLoss: 'encoder' must be an nn.Module; got {type(encoder).__name__}")
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> IdentityLoss:
        """Keep the encoder in eval mode whatever ``mode`` is."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Mean ``1 - cos`` between the embeddings of ``output`` and ``reference``."""
        with torch.no_grad():
            ref = self.encoder(reference)
        return identity_loss(self.encoder(output), ref)


class AdversarialLoss(nn.Module):
    """Twin of :func:`~occfill.functional.discriminator_loss` / :func:`~occfill.functional.generator_adversarial_loss`.

    ``forward(fake_logits)`` gives the generator loss; ``forward(fake_logits, real_logits)`` the
    discriminator loss.

    Args:
        kind: ``"hinge"``, ``"lsgan"`` or ``"bce"``.

    Examples:
        >>> AdversarialLoss()(torch.tensor([-2.0]), torch.tensor([2.0]))
        tensor(0.)
    """

    def __init__(self, kind: str = "hinge") -> None:
        super().__init__()
        if kind not in ("hinge", "lsgan", "bce"):
            raise ValueError(
                f"AdversarialLoss: 'kind' must be one of ('hinge', 'lsgan', 'bce'); got {kind!r}"
            )
        self.kind = kind

    def forward(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Generator loss (``real_logits`` None) or discriminator loss."""
        if real_logits is None:
            return generator_adversarial_loss(fake_logits, kind=self.kind)
        return discriminator_loss(real_logits, fake_logits, kind=self.kind)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
