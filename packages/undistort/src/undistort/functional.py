"""Losses and distance coding used by the cascade (end-point error, total variation, completion L1, bins).

Convention:
    Flows in pixels, ``(B, 2, H, W)``; masks ``(B, 1, H, W)`` or ``(B, H, W)`` with 1/True = counted.
    Distances in the mesh unit (cm); distance bins are log-spaced between ``d_min`` and ``d_max``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_floating, check_positive, check_shape, check_tensor

__all__ = [
    "completion_loss",
    "distance_bin_centers",
    "distance_to_bin",
    "distance_to_code",
    "endpoint_error",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "landmark_nme",
    "total_variation",
]


def _mask4(mask: Tensor | None, ref: Tensor, fn: str) -> Tensor:
    if mask is None:
        return ref.new_ones(ref.shape[0], 1, *ref.shape[-2:])
    check_tensor(mask, "mask", fn=fn)
    m = mask[:, None] if mask.ndim == 3 else mask
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[0] != ref.shape[0] or m.shape[-2:] != ref.shape[-2:]:
        raise ValueError(
            f"{fn}: 'mask' must have shape (B, 1, H, W) or (B, H, W) matching {tuple(ref.shape)}; got {tuple(mask.shape)}"
        )
    return m.to(ref.dtype)


def endpoint_error(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, *, reduction: str = "mean"
) -> Tensor:
    """Mean end-point error ``||pred - target||_2`` over the masked pixels.

    Args:
        pred: ``(B, 2, H, W)`` predicted flow.
        target: ``(B, 2, H, W)`` ground-truth flow.
        mask: ``(B, 1, H, W)`` or ``(B, H, W)`` valid pixels (default all).
        reduction: ``"mean"`` (over all valid pixels of the batch), ``"per_sample"`` ``(B,)`` or ``"none"``
            ``(B, H, W)``.

    Returns:
        The EPE (a scalar, ``(B,)`` or ``(B, H, W)``); 0 where a sample has no valid pixel.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch or unknown reduction.

    Examples:
        >>> p = torch.zeros(1, 2, 1, 2); t = torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]]])
        >>> round(float(endpoint_error(p, t)), 4)
        2.5
    """
    fn = "endpoint_error"
    check_floating(pred, "pred", fn=fn)
    dims = check_shape(pred, "B,2,H,W", "pred", fn=fn)
    check_shape(target, "B,2,H,W", "target", fn=fn, dims=dims)
    if reduction not in ("mean", "per_sample", "none"):
        raise ValueError(f"{fn}: 'reduction' must be 'mean', 'per_sample' or 'none'; got {reduction!r}")
    m = _mask4(mask, pred, fn)[:, 0]
    epe = torch.sqrt(((pred - target.to(pred)) ** 2).sum(1) + 1e-12) * m
    if reduction == "none":
        return epe
    if reduction == "per_sample":
        return epe.sum((1, 2)) / m.sum((1, 2)).clamp(min=1)
    return epe.sum() / m.sum().clamp(min=1)


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation ``mean |dx| + mean |dy|`` of a ``(B, C, H, W)`` map.

    Args:
        x: ``(B, C, H, W)`` map (e.g. a flow).

    Returns:
        Scalar TV.

    Raises:
        TypeError: non-floating input.
        ValueError: wrong shape.
    """
    fn = "total_variation"
    check_floating(x, "x", fn=fn)
    check_shape(x, "B,C,H,W", "x", fn=fn)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs()
    zero = x.new_zeros(())
    return (dx.mean() if dx.numel() else zero) + (dy.mean() if dy.numel() else zero)


def completion_loss(
    pred: Tensor, target: Tensor, holes: Tensor, mask: Tensor | None = None, *, hole_weight: float = 6.0
) -> Tensor:
    """Weighted L1 of the completion step: holes count ``hole_weight`` times, other head pixels once.

    Args:
        pred: ``(B, C, H, W)`` completed image.
        target: ``(B, C, H, W)`` reference image.
        holes: ``(B, 1, H, W)`` or ``(B, H, W)`` hole pixels.
        mask: pixels counted with weight 1 (default all).
        hole_weight: weight of hole pixels.

    Returns:
        Scalar loss (weighted mean over pixels and channels).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch or negative weight.
    """
    fn = "completion_loss"
    check_floating(pred, "pred", fn=fn)
    dims = check_shape(pred, "B,C,H,W", "pred", fn=fn)
    check_shape(target, "B,C,H,W", "target", fn=fn, dims=dims)
    check_positive(hole_weight, "hole_weight", fn=fn, strict=False)
    hm = _mask4(holes, pred, fn)
    vm = _mask4(mask, pred, fn)
    w = vm * (1 - hm) + hole_weight * hm
    l1 = (pred - target.to(pred)).abs().mean(1, keepdim=True)
    return (l1 * w).sum() / w.sum().clamp(min=1e-8)


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss of a discriminator: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``.

    The adversarial term of the completion step as the project's dossier reconstructs it (the paper's loss
    text could not be read; see the README's "Deviations"). Patch discriminators give one logit per patch;
    the means run over every patch of the batch.

    Args:
        real_logits: discriminator logits on reference images, any shape.
        fake_logits: logits on completed images, any shape.

    Returns:
        Scalar loss (0 when real logits are >= 1 and fake logits <= -1).

    Raises:
        TypeError: non-floating inputs.
        ValueError: empty inputs.

    Examples:
        >>> real = torch.tensor([2.0, 0.5]); fake = torch.tensor([-2.0, 0.0])
        >>> float(hinge_discriminator_loss(real, fake))  # (0 + 0.5) / 2 + (0 + 1) / 2
        0.75
    """
    fn = "hinge_discriminator_loss"
    check_floating(real_logits, "real_logits", fn=fn)
    check_floating(fake_logits, "fake_logits", fn=fn)
    for name, x in (("real_logits", real_logits), ("fake_logits", fake_logits)):
        if x.numel() == 0:
            raise ValueError(f"{fn}: '{name}' must be non-empty; got shape {tuple(x.shape)}")
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """Generator side of the hinge GAN: ``-mean(D(fake))``.

    Args:
        fake_logits: discriminator logits on completed images, any shape.

    Returns:
        Scalar loss.

    Raises:
        TypeError: non-floating input.
        ValueError: empty input.

    Examples:
        >>> float(hinge_generator_loss(torch.tensor([1.0, -3.0])))
        1.0
    """
    fn = "hinge_generator_loss"
    check_floating(fake_logits, "fake_logits", fn=fn)
    if fake_logits.numel() == 0:
        raise ValueError(f"{fn}: 'fake_logits' must be non-empty; got shape {tuple(fake_logits.shape)}")
    return -fake_logits.mean()


def distance_bin_centers(num_bins: int, d_min: float, d_max: float) -> Tensor:
    """Centres of ``num_bins`` log-spaced distance bins on ``[d_min, d_max]`` (geometric bin midpoints).

    Args:
        num_bins: ``K``.
        d_min: smallest distance.
        d_max: largest distance.

    Returns:
        ``(K,)`` float64 centres.

    Raises:
        ValueError: ``K < 1`` or ``0 < d_min < d_max`` violated.

    Examples:
        >>> [round(c, 2) for c in distance_bin_centers(2, 25.0, 100.0).tolist()]
        [35.36, 70.71]
    """
    fn = "distance_bin_centers"
    if int(num_bins) < 1:
        raise ValueError(f"{fn}: 'num_bins' must be >= 1; got {num_bins}")
    check_positive(d_min, "d_min", fn=fn)
    if not d_max > d_min:
        raise ValueError(f"{fn}: 'd_max' must be > 'd_min'; got d_min={d_min}, d_max={d_max}")
    edges = torch.linspace(math.log(d_min), math.log(d_max), num_bins + 1, dtype=torch.float64)
    return torch.exp((edges[:-1] + edges[1:]) / 2)


def distance_to_bin(distance: Tensor, num_bins: int, d_min: float, d_max: float) -> Tensor:
    """Index of the log-spaced bin holding each distance (clamped to ``[0, K-1]``).

    Args:
        distance: ``(B,)`` distances.
        num_bins: ``K``.
        d_min: smallest distance.
        d_max: largest distance.

    Returns:
        ``(B,)`` int64 bin indices.

    Raises:
        TypeError: non-floating distance.
        ValueError: bad bin parameters or non-positive distances.

    Examples:
        >>> distance_to_bin(torch.tensor([26.0, 99.0]), 2, 25.0, 100.0).tolist()
        [0, 1]
    """
    fn = "distance_to_bin"
    check_floating(distance, "distance", fn=fn)
    check_shape(distance, "B", "distance", fn=fn)
    distance_bin_centers(num_bins, d_min, d_max)  # validates the bin parameters
    if distance.numel() and float(distance.min()) <= 0:
        raise ValueError(f"{fn}: 'distance' must be > 0; got min {float(distance.min())}")
    t = (torch.log(distance) - math.log(d_min)) / (math.log(d_max) - math.log(d_min))
    return (t * num_bins).floor().clamp(0, num_bins - 1).long()


def distance_to_code(
    distance: Tensor, num_bins: int, d_min: float, d_max: float, *, mode: str = "onehot"
) -> Tensor:
    """Distance conditioning code fed to the flow network: ``(B, K)`` one-hot bins, ``(B, 1)`` log-d, or ``(B, 0)``.

    ``"logd"`` maps ``log d`` linearly so ``d_min -> -1`` and ``d_max -> 1``; ``"soft"`` spreads a one-hot
    linearly between the two nearest bin centres (in log space), so a continuous estimate can be fed.

    Args:
        distance: ``(B,)`` distances.
        num_bins: ``K``.
        d_min: smallest distance.
        d_max: largest distance.
        mode: ``"onehot"``, ``"soft"``, ``"logd"`` or ``"none"``.

    Returns:
        ``(B, D)`` code with ``D = K`` (onehot/soft), 1 (logd) or 0 (none).

    Raises:
        ValueError: unknown mode (plus the checks of :func:`distance_to_bin`).
    """
    fn = "distance_to_code"
    if mode not in ("onehot", "soft", "logd", "none"):
        raise ValueError(f"{fn}: 'mode' must be 'onehot', 'soft', 'logd' or 'none'; got {mode!r}")
    check_floating(distance, "distance", fn=fn)
    check_shape(distance, "B", "distance", fn=fn)
    if mode == "none":
        return distance.new_zeros(distance.shape[0], 0)
    if mode == "onehot":
        return F.one_hot(distance_to_bin(distance, num_bins, d_min, d_max), num_bins).to(distance.dtype)
    lo, hi = math.log(d_min), math.log(d_max)
    t = (torch.log(distance.clamp(min=1e-6)) - lo) / (hi - lo)
    if mode == "logd":
        return (2 * t - 1)[:, None]
    pos = (t * num_bins - 0.5).clamp(0, num_bins - 1)
    i0 = pos.floor().long().clamp(max=num_bins - 1)
    i1 = (i0 + 1).clamp(max=num_bins - 1)
    w1 = (pos - i0.to(pos.dtype))[:, None]
    return (
        F.one_hot(i0, num_bins).to(distance.dtype) * (1 - w1)
        + F.one_hot(i1, num_bins).to(distance.dtype) * w1
    )


def landmark_nme(
    pred: Tensor, target: Tensor, *, align: str = "none", normalize: tuple[int, int] = (36, 45)
) -> Tensor:
    """Normalised mean landmark error, raw or *shape-only* (after the best similarity alignment).

    ``align="similarity"`` first maps ``pred`` onto ``target`` with the least-squares rotation, uniform
    scale and translation (Umeyama), so a global zoom or shift costs nothing: what remains is the shape
    error. The mean point distance is divided by the target's distance between landmarks ``normalize``
    (default the outer eye corners of iBUG-68) and returned in percent.

    Args:
        pred: ``(B, L, 2)`` or ``(L, 2)`` predicted landmarks.
        target: same shape, reference landmarks.
        align: ``"none"`` or ``"similarity"``.
        normalize: the two landmark indices whose target distance normalises the error.

    Returns:
        ``(B,)`` (or a scalar for ``(L, 2)`` inputs) NME in % of the normalising distance.

    Raises:
        ValueError: shape mismatch or unknown ``align``.

    Examples:
        >>> t = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]])
        >>> round(float(landmark_nme(2 * t + 3, t, align="similarity", normalize=(0, 1))), 4)
        0.0
    """
    fn = "landmark_nme"
    check_floating(pred, "pred", fn=fn)
    single = pred.ndim == 2
    p = pred[None] if single else pred
    t = (target[None] if target.ndim == 2 else target).to(p)
    check_shape(p, "B,L,2", "pred", fn=fn)
    check_shape(t, f"{p.shape[0]},{p.shape[1]},2", "target", fn=fn)
    if align not in ("none", "similarity"):
        raise ValueError(f"{fn}: 'align' must be 'none' or 'similarity'; got {align!r}")
    if align == "similarity":
        pm, tm = p.mean(1, keepdim=True), t.mean(1, keepdim=True)
        pc, tc = p - pm, t - tm
        cov = tc.transpose(1, 2) @ pc  # (B, 2, 2)
        u, sv, vh = torch.linalg.svd(cov)
        d = torch.sign(torch.linalg.det(u @ vh))
        corr = torch.ones_like(sv)
        corr[:, 1] = d
        rot = u @ torch.diag_embed(corr) @ vh
        scale = (sv * corr).sum(1) / (pc**2).sum((1, 2)).clamp(min=1e-12)
        p = scale[:, None, None] * pc @ rot.transpose(1, 2) + tm
    norm = (t[:, normalize[0]] - t[:, normalize[1]]).norm(dim=-1).clamp(min=1e-12)
    err = 100.0 * (p - t).norm(dim=-1).mean(1) / norm
    return err[0] if single else err
