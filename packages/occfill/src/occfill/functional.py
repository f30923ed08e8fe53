"""Functional ops, losses and metrics of occfill.

Convention:
    Images are float ``(B, 3, H, W)`` in [0, 1]; masks are ``(B, 1, H, W)`` with 1 = occluded (to fill).
    Discriminator outputs are raw logits of any shape ``(B, ...)``. Embeddings are ``(B, D)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_floating, check_positive, check_shape

__all__ = [
    "composite",
    "discriminator_loss",
    "generator_adversarial_loss",
    "identity_loss",
    "masked_l1_loss",
    "masked_psnr",
    "masked_ssim",
    "occlude",
]

_GAN_KINDS = ("hinge", "lsgan", "bce")


def _check_image_mask(image: torch.Tensor, mask: torch.Tensor, fn: str, iname: str = "image") -> None:
    check_floating(image, iname, fn=fn)
    check_floating(mask, "mask", fn=fn)
    dims = check_shape(image, "B,C,H,W", iname, fn=fn)
    check_shape(mask, "B,1,H,W", "mask", fn=fn, dims=dims)


def occlude(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The occluded input M of the paper: the image with the masked pixels set to 0 (black).

    ``M = image * (1 - mask)``, as in the figure's input panel (a black rectangle).

    Args:
        image: ``(B, C, H, W)`` image in [0, 1].
        mask: ``(B, 1, H, W)``, 1 = occluded.

    Returns:
        ``(B, C, H, W)`` occluded image.

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes.

    Examples:
        >>> occlude(torch.ones(1, 3, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))[0, 0]
        tensor([[0., 1.],
                [1., 1.]])
    """
    _check_image_mask(image, mask, "occlude")
    return image * (1.0 - mask)


def composite(generated: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Paste the generated pixels into the hole: ``mask * generated + (1 - mask) * image``.

    For a binary mask the pixels outside the hole are the input's, bit for bit (``torch.where``).

    Args:
        generated: ``(B, C, H, W)`` generator output.
        image: ``(B, C, H, W)`` image whose visible pixels are kept.
        mask: ``(B, 1, H, W)``, 1 = occluded; soft values blend linearly.

    Returns:
        ``(B, C, H, W)`` composite.

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes.

    Examples:
        >>> composite(torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2), torch.tensor([[[[1.0, 0.0]]]]))
        tensor([[[[0., 1.]]]])
    """
    fn = "composite"
    _check_image_mask(image, mask, fn)
    check_floating(generated, "generated", fn=fn)
    check_shape(
        generated, f"{image.shape[0]},{image.shape[1]},{image.shape[2]},{image.shape[3]}", "generated", fn=fn
    )
    blended = mask * generated + (1.0 - mask) * image
    return torch.where(mask == 0, image, torch.where(mask == 1, generated, blended))


def masked_l1_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    hole_weight: float = 5.0,
    valid_weight: float = 1.0,
) -> torch.Tensor:
    """Reconstruction L1 with a heavier weight inside the hole (our term; the figure draws none).

    ``mean_{b,c,h,w} |output - target| * (hole_weight * mask + valid_weight * (1 - mask))``.

    Args:
        output: ``(B, C, H, W)`` prediction.
        target: ``(B, C, H, W)`` ground truth y.
        mask: ``(B, 1, H, W)``, 1 = occluded.
        hole_weight: weight of the occluded pixels.
        valid_weight: weight of the visible pixels.

    Returns:
        Scalar loss.

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes or negative weights.

    Examples:
        >>> masked_l1_loss(torch.ones(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 0.0]]]]))
        tensor(3.)
    """
    fn = "masked_l1_loss"
    _check_image_mask(target, mask, fn, "target")
    check_floating(output, "output", fn=fn)
    check_shape(output, ",".join(str(s) for s in target.shape), "output", fn=fn)
    check_positive(hole_weight, "hole_weight", fn=fn, strict=False)
    check_positive(valid_weight, "valid_weight", fn=fn, strict=False)
    weight = hole_weight * mask + valid_weight * (1.0 - mask)
    return ((output - target).abs() * weight).mean()


def identity_loss(embedding: torch.Tensor, reference_embedding: torch.Tensor) -> torch.Tensor:
    """Identity loss between high-level features of the output and of the reference S.

    ``mean_b (1 - cos(e_b, r_b))``. The figure compares "Vgg" features of the output with those of the
    reference; the cosine form is our choice (the paper's norm is not available).

    Args:
        embedding: ``(B, D)`` features of the completed image.
        reference_embedding: ``(B, D)`` features of the reference (usually detached).

    Returns:
        Scalar loss in [0, 2].

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes.

    Examples:
        >>> identity_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]))
        tensor(1.)
    """
    fn = "identity_loss"
    check_floating(embedding, "embedding", fn=fn)
    check_floating(reference_embedding, "reference_embedding", fn=fn)
    dims = check_shape(embedding, "B,D", "embedding", fn=fn)
    check_shape(reference_embedding, "B,D", "reference_embedding", fn=fn, dims=dims)
    return (1.0 - F.cosine_similarity(embedding, reference_embedding, dim=1, eps=1e-8)).mean()


def _check_kind(kind: str, fn: str) -> None:
    if kind not in _GAN_KINDS:
        raise ValueError(f"{fn}: 'kind' must be one of {_GAN_KINDS}; got {kind!r}")


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, *, kind: str = "hinge"
) -> torch.Tensor:
    """Discriminator loss on real and fake logits.

    - ``"hinge"``: ``mean(relu(1 - real)) + mean(relu(1 + fake))``
    - ``"lsgan"``: ``mean((real - 1)^2) + mean(fake^2)``
    - ``"bce"``: ``softplus(-real).mean() + softplus(fake).mean()`` (the log form of the dossier's equations)

    The GAN formulation of the paper is not available; hinge is our default.

    Args:
        real_logits: ``(B, ...)`` logits on real samples (y, or y joined with L for the pose D).
        fake_logits: ``(B, ...)`` logits on generated samples.
        kind: ``"hinge"``, ``"lsgan"`` or ``"bce"``.

    Returns:
        Scalar loss.

    Raises:
        TypeError: non-floating inputs.
        ValueError: unknown ``kind``.

    Examples:
        >>> discriminator_loss(torch.tensor([2.0]), torch.tensor([-2.0]))
        tensor(0.)
    """
    fn = "discriminator_loss"
    check_floating(real_logits, "real_logits", fn=fn)
    check_floating(fake_logits, "fake_logits", fn=fn)
    _check_kind(kind, fn)
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    if kind == "lsgan":
        return (real_logits - 1.0).pow(2).mean() + fake_logits.pow(2).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_adversarial_loss(fake_logits: torch.Tensor, *, kind: str = "hinge") -> torch.Tensor:
    """Generator side of the adversarial loss.

    ``"hinge"``: ``-mean(fake)``; ``"lsgan"``: ``mean((fake - 1)^2)``; ``"bce"``: ``softplus(-fake).mean()``
    (non-saturating).

    Args:
        fake_logits: ``(B, ...)`` discriminator logits on generated samples.
        kind: ``"hinge"``, ``"lsgan"`` or ``"bce"``.

    Returns:
        Scalar loss.

    Raises:
        TypeError: non-floating input.
        ValueError: unknown ``kind``.

    Examples:
        >>> generator_adversarial_loss(torch.tensor([1.0, 3.0]))
        tensor(-2.)
    """
    fn = "generator_adversarial_loss"
    check_floating(fake_logits, "fake_logits", fn=fn)
    _check_kind(kind, fn)
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "lsgan":
        return (fake_logits - 1.0).pow(2).mean()
    return F.softplus(-fake_logits).mean()


def masked_psnr(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, max_val: float = 1.0
) -> torch.Tensor:
    """PSNR over the masked pixels only, per image.

    ``10 log10(max_val^2 / MSE)`` with MSE averaged over the channels of the pixels where ``mask = 1``.

    Args:
        output: ``(B, C, H, W)`` completion.
        target: ``(B, C, H, W)`` ground truth.
        mask: ``(B, 1, H, W)`` region to score (1 = scored); each image needs a non-empty mask.
        max_val: peak signal value.

    Returns:
        ``(B,)`` PSNR in dB (``inf`` for a perfect match).

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes, non-positive ``max_val``.

    Examples:
        >>> masked_psnr(torch.full((1, 1, 1, 2), 0.1), torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2)).round()
        tensor([20.])
    """
    fn = "masked_psnr"
    _check_image_mask(target, mask, fn, "target")
    check_floating(output, "output", fn=fn)
    check_shape(output, ",".join(str(s) for s in target.shape), "output", fn=fn)
    check_positive(max_val, "max_val", fn=fn)
    se = ((output - target) ** 2 * mask).sum(dim=(1, 2, 3))
    n = mask.sum(dim=(1, 2, 3)) * target.shape[1]
    mse = se / n.clamp_min(1.0)
    return 10.0 * torch.log10(max_val**2 / mse)


def masked_ssim(
    output: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_val: float = 1.0,
    window: int = 7,
) -> torch.Tensor:
    """Mean SSIM over the masked pixels, per image (uniform window, Wang et al. 2004 constants).

    The SSIM map uses a ``window x window`` box filter (reflect padding), ``C1 = (0.01 max_val)^2`` and
    ``C2 = (0.03 max_val)^2``, is averaged over channels and then over the pixels where ``mask = 1``.

    Args:
        output: ``(B, C, H, W)`` completion.
        target: ``(B, C, H, W)`` ground truth.
        mask: ``(B, 1, H, W)`` region to score.
        max_val: dynamic range of the images.
        window: odd box-window size.

    Returns:
        ``(B,)`` SSIM in [-1, 1].

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes, an even or non-positive ``window``.

    Examples:
        >>> x = torch.rand(1, 1, 8, 8)
        >>> masked_ssim(x, x, torch.ones(1, 1, 8, 8))
        tensor([1.])
    """
    fn = "masked_ssim"
    _check_image_mask(target, mask, fn, "target")
    check_floating(output, "output", fn=fn)
    check_shape(output, ",".join(str(s) for s in target.shape), "output", fn=fn)
    check_positive(max_val, "max_val", fn=fn)
    if window <= 0 or window % 2 == 0:
        raise ValueError(f"{fn}: 'window' must be a positive odd integer; got {window!r}")
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    pad = window // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), window, stride=1)

    mu_x, mu_y = blur(output), blur(target)
    sxx = blur(output * output) - mu_x**2
    syy = blur(target * target) - mu_y**2
    sxy = blur(output * target) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    ssim = ssim.mean(dim=1, keepdim=True)
    return (ssim * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp_min(1.0)
