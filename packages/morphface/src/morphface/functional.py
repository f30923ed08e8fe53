"""GAN losses of the attribute model (LSGAN + pix2pixHD feature matching) and masked L1."""

from __future__ import annotations

import torch

from ._checks import check_floating, check_shape, check_tensor

__all__ = ["feature_matching_loss", "lsgan_loss", "masked_l1"]


def _check_features(feats: object, name: str, fn: str) -> None:
    """``feats`` must be a non-empty list (per scale) of non-empty lists of tensors."""
    if not isinstance(feats, (list, tuple)) or not feats:
        raise TypeError(
            f"{fn}: '{name}' must be a non-empty list (one entry per scale) of lists of tensors; "
            f"got {type(feats).__name__} {'(empty)' if isinstance(feats, (list, tuple)) else ''}".rstrip()
        )
    for i, scale in enumerate(feats):
        if not isinstance(scale, (list, tuple)) or not scale:
            raise TypeError(
                f"{fn}: '{name}[{i}]' must be a non-empty list of tensors; got {type(scale).__name__}"
            )
        for j, t in enumerate(scale):
            check_tensor(t, f"{name}[{i}][{j}]", fn=fn)


def lsgan_loss(logits: list[list[torch.Tensor]], target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss averaged over discriminator scales (Mao et al. 2017).

    ``mean((D - 1)^2)`` for real targets, ``mean(D^2)`` for fake ones, per scale, then averaged.

    Args:
        logits: output of :class:`~morphface.PatchDiscriminator` (the last feature per scale is used).
        target_is_real: whether the target label is "real".

    Returns:
        Scalar loss.

    Examples:
        >>> lsgan_loss([[torch.ones(1, 1, 2, 2)]], True).item()
        0.0
    """
    if isinstance(logits, (list, tuple)) and not logits:
        raise ValueError("lsgan_loss: 'logits' must hold at least one scale; got []")
    _check_features(logits, "logits", "lsgan_loss")
    total = logits[0][-1].new_zeros(())
    for feats in logits:
        d = feats[-1]
        total = total + ((d - 1) ** 2).mean() if target_is_real else total + (d**2).mean()
    return total / len(logits)


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD feature matching: L1 between discriminator features of fake and (detached) real inputs,
    averaged over layers (excluding logits) and scales.

    Args:
        fake: discriminator features of generated maps.
        real: discriminator features of real maps.

    Returns:
        Scalar loss.
    """
    _check_features(fake, "fake", "feature_matching_loss")
    _check_features(real, "real", "feature_matching_loss")
    if len(fake) != len(real):
        raise ValueError(f"feature_matching_loss: 'fake' has {len(fake)} scales but 'real' has {len(real)}")
    total = fake[0][-1].new_zeros(())
    n = 0
    for ff, rr in zip(fake, real):
        for f, r in zip(ff[:-1], rr[:-1]):
            total = total + (f - r.detach()).abs().mean()
            n += 1
    return total / max(n, 1)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over covered texels.

    Args:
        pred: (B, C, H, W).
        target: (B, C, H, W).
        mask: (B, 1, H, W) or (1, H, W) float/bool coverage.

    Returns:
        Scalar ``sum(|pred - target| * mask) / (C * sum(mask))``.

    Examples:
        >>> masked_l1(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.tensor([[[1.0, 0], [0, 0]]])).item()
        1.0
    """
    fn = "masked_l1"
    check_floating(pred, "pred", fn=fn)
    dims = check_shape(pred, "B,C,H,W", "pred", fn=fn)
    check_shape(target, "B,C,H,W", "target", fn=fn, dims=dims)
    m = mask.to(pred.dtype)
    m = m.expand(pred.shape[0], 1, *pred.shape[-2:])
    return ((pred - target).abs() * m).sum() / (m.sum() * pred.shape[1]).clamp_min(1.0)
