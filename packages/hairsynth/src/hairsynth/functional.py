"""Functional ops: masks and compositing, network inputs, losses and image metrics.

Convention:
    Images are ``(B, 3, H, W)`` floats in ``[0, 1]``; masks are ``(B, 1, H, W)`` in ``[0, 1]`` with
    1 = the region to synthesise (the hair region). Stroke maps are a ``(B, 3, H, W)`` colour image
    (0 off strokes) and a ``(B, 1, H, W)`` coverage mask (see :func:`hairsynth.strokes.rasterize_strokes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._checks import check_floating, check_positive, check_range, check_same_device, check_shape

__all__ = [
    "composite",
    "dilate_mask",
    "feather_mask",
    "feature_matching_loss",
    "gan_loss",
    "masked_l1",
    "psnr",
    "sliced_wasserstein_distance",
    "ssim",
    "synthesis_input",
]


def _check_image_mask(
    image: torch.Tensor, mask: torch.Tensor, *, fn: str, image_name: str = "image"
) -> dict[str, int]:
    check_floating(image, image_name, fn=fn)
    check_floating(mask, "mask", fn=fn)
    dims = check_shape(image, "B,3,H,W", image_name, fn=fn)
    if (
        mask.dim() != 4
        or mask.shape[1] != 1
        or mask.shape[-2:] != image.shape[-2:]
        or mask.shape[0] not in (1, dims["B"])
    ):
        raise ValueError(
            f"{fn}: 'mask' must have shape (B, 1, H, W) = ({dims['B']}, 1, {dims['H']}, {dims['W']}) "
            f"(or batch 1); got {tuple(mask.shape)}"
        )
    check_same_device((image_name, image), ("mask", mask), fn=fn)
    check_range(mask, "mask", fn=fn, low=0.0, high=1.0)
    return dims


def dilate_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate a mask with a square ``(2r+1)`` window (max pooling).

    Args:
        mask: ``(B, 1, H, W)`` in ``[0, 1]``.
        radius: window radius in pixels (0 returns the input).

    Returns:
        ``(B, 1, H, W)`` dilated mask.

    Raises:
        TypeError: non-float mask.
        ValueError: bad shape or negative radius.

    Examples:
        >>> m = torch.zeros(1, 1, 5, 5); m[..., 2, 2] = 1
        >>> int(dilate_mask(m, 1).sum())
        9
    """
    fn = "dilate_mask"
    check_floating(mask, "mask", fn=fn)
    check_shape(mask, "B,1,H,W", "mask", fn=fn)
    if not isinstance(radius, int) or radius < 0:
        raise ValueError(f"{fn}: 'radius' must be an int >= 0; got {radius!r}")
    if radius == 0:
        return mask
    return F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)


def feather_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Soft blending mask: 1 inside ``mask``, a ramp down to 0 over a ``radius``-pixel band, 0 beyond it.

    ``feather = max(mask, min(1, 2 * box_mean(mask, 2r+1)))``: exactly 1 wherever ``mask`` is 1, about 1
    right at the mask's edge, falling to exactly 0 farther than ``radius`` (Chebyshev) from the mask.

    Args:
        mask: ``(B, 1, H, W)`` in ``[0, 1]``.
        radius: band width in pixels (0 returns the input).

    Returns:
        ``(B, 1, H, W)`` feathered mask in ``[0, 1]``.

    Raises:
        TypeError: non-float mask.
        ValueError: bad shape or negative radius.

    Examples:
        >>> m = torch.zeros(1, 1, 9, 9); m[..., 4, 4] = 1
        >>> f = feather_mask(m, 2)
        >>> float(f[0, 0, 4, 4]), float(f[0, 0, 0, 0])
        (1.0, 0.0)
    """
    fn = "feather_mask"
    check_floating(mask, "mask", fn=fn)
    check_shape(mask, "B,1,H,W", "mask", fn=fn)
    if not isinstance(radius, int) or radius < 0:
        raise ValueError(f"{fn}: 'radius' must be an int >= 0; got {radius!r}")
    if radius == 0:
        return mask
    soft = F.avg_pool2d(mask, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    return torch.maximum(mask, (2.0 * soft).clamp(max=1.0))


def composite(image: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blend generated pixels into an image: ``image * (1 - mask) + generated * mask``.

    Pixels where ``mask == 0`` are returned bit-exactly equal to ``image`` (selected, not computed).

    Args:
        image: ``(B, 3, H, W)`` target image.
        generated: ``(B, 3, H, W)`` synthesised image.
        mask: ``(B, 1, H, W)`` blending weights in ``[0, 1]`` (batch 1 broadcasts).

    Returns:
        ``(B, 3, H, W)`` composite.

    Raises:
        TypeError: non-float inputs.
        ValueError: shape or device mismatches, mask outside ``[0, 1]``.

    Examples:
        >>> img, gen = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
        >>> m = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
        >>> composite(img, gen, m)[0, 0].tolist()
        [[1.0, 0.5], [0.0, 0.0]]
    """
    fn = "composite"
    dims = _check_image_mask(image, mask, fn=fn)
    check_floating(generated, "generated", fn=fn)
    check_shape(generated, "B,3,H,W", "generated", fn=fn, dims=dims)
    check_same_device(("image", image), ("generated", generated), fn=fn)
    blend = image + (generated - image) * mask
    return torch.where(mask > 0, blend, image)


def synthesis_input(
    image: torch.Tensor, mask: torch.Tensor, stroke_color: torch.Tensor, stroke_mask: torch.Tensor
) -> torch.Tensor:
    """Stack the first-stage network input ``[I * (1 - M), M, S, S_m]`` (8 channels).

    Args:
        image: ``(B, 3, H, W)`` target image in ``[0, 1]``.
        mask: ``(B, 1, H, W)`` region to synthesise.
        stroke_color: ``(B, 3, H, W)`` stroke colours (0 off strokes).
        stroke_mask: ``(B, 1, H, W)`` stroke coverage.

    Returns:
        ``(B, 8, H, W)`` input.

    Raises:
        TypeError: non-float inputs.
        ValueError: shape or device mismatches.

    Examples:
        >>> x = synthesis_input(torch.rand(2, 3, 8, 8), torch.ones(2, 1, 8, 8), torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8))
        >>> tuple(x.shape), float(x[:, :3].abs().sum())
        ((2, 8, 8, 8), 0.0)
    """
    fn = "synthesis_input"
    dims = _check_image_mask(image, mask, fn=fn)
    check_floating(stroke_color, "stroke_color", fn=fn)
    check_floating(stroke_mask, "stroke_mask", fn=fn)
    check_shape(stroke_color, "B,3,H,W", "stroke_color", fn=fn, dims=dims)
    check_shape(stroke_mask, "B,1,H,W", "stroke_mask", fn=fn, dims=dims)
    check_same_device(("image", image), ("stroke_color", stroke_color), ("stroke_mask", stroke_mask), fn=fn)
    m = mask.expand(dims["B"], 1, dims["H"], dims["W"])
    return torch.cat([image * (1 - m), m, stroke_color, stroke_mask], dim=1)


def gan_loss(
    logits: torch.Tensor, target_is_real: bool, *, mode: str = "lsgan", for_discriminator: bool = True
) -> torch.Tensor:
    """Adversarial loss on discriminator logits.

    ``lsgan``: ``mean((D - t)^2)`` with ``t`` = 1 (real) or 0 (fake). ``vanilla``: binary cross-entropy
    with logits. ``hinge``: discriminator ``mean(relu(1 - D))`` (real) / ``mean(relu(1 + D))`` (fake);
    generator ``-mean(D)`` (``target_is_real`` must then be True).

    Args:
        logits: discriminator output, any shape.
        target_is_real: whether the target label is "real".
        mode: ``"lsgan"``, ``"vanilla"`` or ``"hinge"``.
        for_discriminator: only used by ``hinge`` (generator and discriminator terms differ).

    Returns:
        Scalar loss.

    Raises:
        TypeError: non-float logits.
        ValueError: unknown mode.

    Examples:
        >>> float(gan_loss(torch.zeros(4), True, mode="lsgan"))
        1.0
    """
    fn = "gan_loss"
    check_floating(logits, "logits", fn=fn)
    if mode == "lsgan":
        return ((logits - (1.0 if target_is_real else 0.0)) ** 2).mean()
    if mode == "vanilla":
        target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "hinge":
        if for_discriminator:
            return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()
        if not target_is_real:
            raise ValueError(f"{fn}: hinge generator loss needs 'target_is_real=True'; got False")
        return -logits.mean()
    raise ValueError(f"{fn}: 'mode' must be one of 'lsgan', 'vanilla', 'hinge'; got {mode!r}")


def feature_matching_loss(
    fake_features: Sequence[torch.Tensor], real_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Discriminator feature matching: ``sum_l mean(|D_l(fake) - D_l(real)|)`` (real features detached).

    Args:
        fake_features: per-layer features of the discriminator on the generated image.
        real_features: the same layers on the real image.

    Returns:
        Scalar loss.

    Raises:
        TypeError: an argument that is not a list or tuple of tensors.
        ValueError: different numbers of layers or mismatched shapes.

    Examples:
        >>> float(feature_matching_loss([torch.ones(1, 2)], [torch.zeros(1, 2)]))
        1.0
    """
    fn = "feature_matching_loss"
    for name, feats in (("fake_features", fake_features), ("real_features", real_features)):
        if not isinstance(feats, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in feats):
            raise TypeError(
                f"{fn}: '{name}' must be a list or tuple of tensors (one per layer); got {type(feats).__name__}"
            )
    if len(fake_features) != len(real_features) or len(fake_features) == 0:
        raise ValueError(
            f"{fn}: 'fake_features' and 'real_features' must be non-empty and of equal length; "
            f"got {len(fake_features)} and {len(real_features)}"
        )
    total = fake_features[0].new_zeros(())
    for i, (a, b) in enumerate(zip(fake_features, real_features)):
        if a.shape != b.shape:
            raise ValueError(f"{fn}: layer {i} shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
        total = total + (a - b.detach()).abs().mean()
    return total


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over the pixels where ``mask`` is nonzero (weighted by ``mask``).

    ``sum(|pred - target| * m) / (C * sum(m))``; with ``mask=None`` the plain mean.

    Args:
        pred: ``(B, C, H, W)``.
        target: ``(B, C, H, W)``.
        mask: optional ``(B, 1, H, W)`` weights in ``[0, 1]``.

    Returns:
        Scalar; 0 for an empty mask.

    Raises:
        TypeError: non-float inputs.
        ValueError: shape or device mismatches.

    Examples:
        >>> p, t = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> float(masked_l1(p, t, torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])))
        2.5
    """
    fn = "masked_l1"
    check_floating(pred, "pred", fn=fn)
    check_floating(target, "target", fn=fn)
    dims = check_shape(pred, "B,C,H,W", "pred", fn=fn)
    check_shape(target, "B,C,H,W", "target", fn=fn, dims=dims)
    err = (pred - target).abs()
    if mask is None:
        return err.mean()
    check_floating(mask, "mask", fn=fn)
    if (
        mask.dim() != 4
        or mask.shape[1] != 1
        or mask.shape[-2:] != pred.shape[-2:]
        or mask.shape[0] not in (1, dims["B"])
    ):
        raise ValueError(
            f"{fn}: 'mask' must have shape (B, 1, H, W) matching 'pred' {tuple(pred.shape)}; got {tuple(mask.shape)}"
        )
    check_same_device(("pred", pred), ("target", target), ("mask", mask), fn=fn)
    m = mask.expand(dims["B"], 1, dims["H"], dims["W"])
    return (err * m).sum() / (m.sum() * dims["C"]).clamp_min(1e-12)


def psnr(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *, data_range: float = 1.0
) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, over the mask: ``10 log10(R^2 / MSE_masked)``.

    Args:
        pred: ``(B, C, H, W)``.
        target: ``(B, C, H, W)``.
        mask: optional ``(B, 1, H, W)`` weights in ``[0, 1]`` (float or bool; batch 1 broadcasts).
        data_range: ``R``, the value range (1 for ``[0, 1]`` images).

    Returns:
        ``(B,)`` PSNR in dB (``inf`` for identical images).

    Raises:
        TypeError: non-float inputs or a mask that is neither float nor bool.
        ValueError: shape or device mismatches, a mask outside ``[0, 1]`` or non-positive ``data_range``.

    Examples:
        >>> round(float(psnr(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.1))[0]), 4)
        20.0
    """
    fn = "psnr"
    check_floating(pred, "pred", fn=fn)
    check_floating(target, "target", fn=fn)
    check_positive(data_range, "data_range", fn=fn)
    dims = check_shape(pred, "B,C,H,W", "pred", fn=fn)
    check_shape(target, "B,C,H,W", "target", fn=fn, dims=dims)
    se = (pred - target) ** 2
    if mask is None:
        mse = se.mean(dim=(1, 2, 3))
    else:
        m = _metric_mask(mask, dims, se, fn=fn).expand(dims["B"], 1, dims["H"], dims["W"])
        mse = (se * m).sum(dim=(1, 2, 3)) / (m.sum(dim=(1, 2, 3)) * dims["C"]).clamp_min(1e-12)
    return 10.0 * torch.log10(data_range**2 / mse)


def _metric_mask(mask: torch.Tensor, dims: dict[str, int], like: torch.Tensor, *, fn: str) -> torch.Tensor:
    """Check a metric's ``(B|1, 1, H, W)`` mask (bool or float in ``[0, 1]``) and expand it to ``like``'s dtype."""
    if not isinstance(mask, torch.Tensor) or not (mask.is_floating_point() or mask.dtype == torch.bool):
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"{fn}: 'mask' must be bool or floating in [0, 1]; got {got}")
    check_shape(mask, "B,1,H,W", "mask", fn=fn, dims={"H": dims["H"], "W": dims["W"]})
    if mask.shape[0] not in (1, dims["B"]):
        raise ValueError(f"{fn}: 'mask' must have batch 1 or {dims['B']}; got {tuple(mask.shape)}")
    check_same_device(("pred", like), ("mask", mask), fn=fn)
    m = mask.to(like.dtype)
    check_range(m, "mask", fn=fn, low=0.0, high=1.0)
    return m


def _gauss_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    r = torch.arange(size, device=like.device, dtype=like.dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, averaged over the mask.

    Gaussian window (``window_size``, ``sigma``), ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``; the map is
    computed on the valid (unpadded) region, averaged over channels, then over the pixels where the
    (correspondingly cropped) mask is nonzero.

    Args:
        pred: ``(B, C, H, W)`` with ``H, W >= window_size``.
        target: ``(B, C, H, W)``.
        mask: optional ``(B, 1, H, W)`` weights in ``[0, 1]`` (float or bool; batch 1 broadcasts).
        data_range: value range ``R``.
        window_size: odd Gaussian window side.
        sigma: Gaussian sigma.

    Returns:
        ``(B,)`` SSIM values (1 for identical images).

    Raises:
        TypeError: non-float inputs or a mask that is neither float nor bool.
        ValueError: shape or device mismatches, a mask outside ``[0, 1]``, images smaller than the window.

    Examples:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> round(float(ssim(x, x)[0]), 6)
        1.0
    """
    fn = "ssim"
    check_floating(pred, "pred", fn=fn)
    check_floating(target, "target", fn=fn)
    dims = check_shape(pred, "B,C,H,W", "pred", fn=fn)
    check_shape(target, "B,C,H,W", "target", fn=fn, dims=dims)
    if not isinstance(window_size, int) or window_size < 3 or window_size % 2 == 0:
        raise ValueError(f"{fn}: 'window_size' must be an odd int >= 3; got {window_size!r}")
    if dims["H"] < window_size or dims["W"] < window_size:
        raise ValueError(
            f"{fn}: images must be at least {window_size}x{window_size}; got {dims['H']}x{dims['W']}"
        )
    c = dims["C"]
    g = _gauss_window(window_size, sigma, pred)

    def blur(x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(pred), blur(target)
    sxx = blur(pred * pred) - mu_x**2
    syy = blur(target * target) - mu_y**2
    sxy = blur(pred * target) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    smap = smap.mean(dim=1, keepdim=True)
    if mask is None:
        return smap.mean(dim=(1, 2, 3))
    h = window_size // 2
    m = _metric_mask(mask, dims, smap, fn=fn)[..., h : dims["H"] - h, h : dims["W"] - h].expand(
        dims["B"], 1, -1, -1
    )
    return (smap * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1e-12)


def sliced_wasserstein_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    mask_x: torch.Tensor | None = None,
    mask_y: torch.Tensor | None = None,
    *,
    patch_size: int = 7,
    num_projections: int = 128,
    max_patches: int = 4096,
    normalize: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced Wasserstein-1 distance between the patch distributions of two image sets.

    Patches (``patch_size`` squared, all channels) whose centre lies in the mask are collected from each
    set, each patch is (by default) normalised per channel to zero mean (so the statistic measures texture, as in
    Karras et al. 2018), up to ``max_patches`` are sampled per set, and the distance is the mean over
    random unit directions of the 1-D Wasserstein-1 distance between the projected samples (computed by
    quantile matching on ``min(n_x, n_y)`` quantiles).

    Args:
        x: ``(B, C, H, W)`` images.
        y: ``(B', C, H', W')`` images.
        mask_x: optional ``(B, 1, H, W)`` patch-centre mask for ``x``.
        mask_y: optional ``(B', 1, H', W')`` patch-centre mask for ``y``.
        patch_size: patch side (odd).
        num_projections: random directions.
        max_patches: cap on patches per set.
        normalize: subtract each patch's per-channel mean (texture only); False keeps colour.
        generator: random generator for directions and patch sampling.

    Returns:
        Scalar distance (0 for identical sets).

    Raises:
        TypeError: non-float inputs.
        ValueError: bad shapes or no patch inside a mask.

    Examples:
        >>> a = torch.rand(1, 1, 8, 8)
        >>> float(sliced_wasserstein_distance(a, a, patch_size=3))
        0.0
    """
    fn = "sliced_wasserstein_distance"
    check_floating(x, "x", fn=fn)
    check_floating(y, "y", fn=fn)
    dx = check_shape(x, "B,C,H,W", "x", fn=fn)
    check_shape(y, "N,C,P,Q", "y", fn=fn, dims={"C": dx["C"]})
    if not isinstance(patch_size, int) or patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"{fn}: 'patch_size' must be an odd int >= 1; got {patch_size!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    def patches(img: torch.Tensor, mask: torch.Tensor | None, name: str) -> torch.Tensor:
        b, c, h, w = img.shape
        p = F.unfold(img, patch_size, padding=patch_size // 2)  # (B, C*k*k, H*W)
        p = p.view(b, c, patch_size * patch_size, h * w)
        if normalize:
            p = p - p.mean(dim=2, keepdim=True)
        p = p.view(b, -1, h * w).transpose(1, 2).reshape(b * h * w, -1)
        if mask is not None:
            check_shape(mask, "B,1,H,W", name, fn=fn, dims={"B": b, "H": h, "W": w})
            keep = (mask.reshape(-1) > 0.5).nonzero().squeeze(1)
            p = p[keep]
        if p.shape[0] == 0:
            raise ValueError(f"{fn}: '{name}' selects no patch centre")
        if p.shape[0] > max_patches:
            idx = torch.randperm(p.shape[0], generator=gen)[:max_patches].to(p.device)
            p = p[idx]
        return p

    px = patches(x, mask_x, "mask_x")
    py = patches(y, mask_y, "mask_y")
    d = px.shape[1]
    dirs = torch.randn(d, num_projections, generator=gen, dtype=torch.float64).to(
        device=x.device, dtype=x.dtype
    )
    dirs = dirs / dirs.norm(dim=0, keepdim=True).clamp_min(1e-12)
    ax = (px @ dirs).sort(dim=0).values
    ay = (py @ dirs).sort(dim=0).values
    n = min(ax.shape[0], ay.shape[0])
    q = (torch.arange(n, device=x.device, dtype=x.dtype) + 0.5) / n
    ix = (q * ax.shape[0]).long().clamp_max(ax.shape[0] - 1)
    iy = (q * ay.shape[0]).long().clamp_max(ay.shape[0] - 1)
    return (ax[ix] - ay[iy]).abs().mean()
