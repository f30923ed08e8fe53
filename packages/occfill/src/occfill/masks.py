"""Ocular-region occlusion masks: the paper's eye rectangle, headset shapes, random training variation.

Convention:
    A mask is a float tensor of shape ``(B, 1, H, W)`` holding 1 where the face is OCCLUDED (the pixels to
    synthesise) and 0 where it is visible. Boxes are ``(x0, y0, x1, y1)`` in pixels, x to the right and y
    down, with pixel ``(i, j)`` covering ``[j, j + 1) x [i, i + 1)``; a pixel belongs to a box when its
    centre does. Landmarks are ``(B, 68, 2)`` in the iBUG/dlib 68-point order, ``(x, y)`` in pixels.

The default box is the one of the paper's overview figure: one axis-aligned rectangle over the eyes, from
0.24 W to 0.82 W and 0.20 H to 0.64 H (about 0.58 W x 0.44 H; measured on the figure, see the README).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ._checks import _compiling, check_finite, check_floating, check_int, check_positive, check_shape

logger = logging.getLogger(__name__)

__all__ = [
    "PAPER_EYE_BOX",
    "box_masks",
    "eye_box_from_landmarks",
    "eye_box_mask",
    "random_eye_masks",
]

#: Relative ``(x0, y0, x1, y1)`` of the rectangle drawn in the paper's overview figure.
PAPER_EYE_BOX: tuple[float, float, float, float] = (0.24, 0.20, 0.82, 0.64)

_SHAPES = ("box", "headset")


def _check_shape_name(shape: str, fn: str) -> None:
    if shape not in _SHAPES:
        raise ValueError(f"{fn}: 'shape' must be one of {_SHAPES}; got {shape!r}")


def _check_dtype(dtype: torch.dtype | None, fn: str) -> None:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"{fn}: 'dtype' must be a floating torch.dtype; got {dtype!r}")


def _check_rel_box(box: Any, fn: str) -> None:
    ok = isinstance(box, (tuple, list)) and len(box) == 4
    if ok:
        try:
            vals = [float(v) for v in box]
        except (TypeError, ValueError):
            ok = False
        else:
            ok = all(0.0 <= v <= 1.0 for v in vals) and vals[0] < vals[2] and vals[1] < vals[3]
    if not ok:
        raise ValueError(
            f"{fn}: 'box' must be 4 relative coordinates (x0, y0, x1, y1) in [0, 1] with x0 < x1 and "
            f"y0 < y1; got {box!r}"
        )


def box_masks(
    boxes: torch.Tensor,
    height: int,
    width: int,
    *,
    shape: str = "box",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Rasterise one occlusion per image from pixel boxes.

    Convention:
        See the module docstring: 1 = occluded, pixel centres decide membership.

    Args:
        boxes: ``(B, 4)`` float boxes ``(x0, y0, x1, y1)`` in pixels, ``x0 < x1`` and ``y0 < y1``.
        height: output height H in pixels.
        width: output width W in pixels.
        shape: ``"box"`` (the paper's rectangle) or ``"headset"`` (our option: the box with rounded
            corners of radius 0.25 * min(box w, box h) and a triangular nose notch, 0.3 box widths wide
            and 0.35 box heights high, cut from the middle of its lower edge).
        dtype: floating dtype of the result (default: the dtype of ``boxes``).

    Returns:
        ``(B, 1, H, W)`` mask in {0, 1} on the device of ``boxes``.

    Raises:
        TypeError: ``boxes`` is not a floating tensor, ``height``/``width`` are not ints, ``dtype`` is not
            floating.
        ValueError: bad shape, non-finite or empty boxes, non-positive size, unknown ``shape``.

    Examples:
        >>> m = box_masks(torch.tensor([[1.0, 1.0, 3.0, 2.0]]), 4, 4)
        >>> m[0, 0]
        tensor([[0., 0., 0., 0.],
                [0., 1., 1., 0.],
                [0., 0., 0., 0.],
                [0., 0., 0., 0.]])
    """
    fn = "box_masks"
    check_floating(boxes, "boxes", fn=fn)
    check_shape(boxes, "B,4", "boxes", fn=fn)
    check_int(height, "height", fn=fn)
    check_int(width, "width", fn=fn)
    _check_shape_name(shape, fn)
    _check_dtype(dtype, fn)
    check_finite(boxes, "boxes", fn=fn)
    if (
        not _compiling()
        and boxes.numel()
        and bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any())
    ):
        raise ValueError(f"{fn}: 'boxes' must satisfy x0 < x1 and y0 < y1; got {boxes.tolist()}")
    out_dtype = boxes.dtype if dtype is None else dtype
    b = boxes.to(torch.float64) if boxes.dtype == torch.float64 else boxes.float()
    ys = torch.arange(height, device=b.device, dtype=b.dtype).add_(0.5).view(1, height, 1)
    xs = torch.arange(width, device=b.device, dtype=b.dtype).add_(0.5).view(1, 1, width)
    x0, y0, x1, y1 = (b[:, k].view(-1, 1, 1) for k in range(4))
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    if shape == "headset":
        bw, bh = x1 - x0, y1 - y0
        r = 0.25 * torch.minimum(bw, bh)
        # rounded corners: outside the corner squares, or within r of the nearest corner-circle centre
        cx = torch.clamp(xs, x0 + r, x1 - r)
        cy = torch.clamp(ys, y0 + r, y1 - r)
        inside = inside & (((xs - cx) ** 2 + (ys - cy) ** 2) <= r**2)
        # nose notch: triangle with apex at (centre, y1 - 0.35 bh) and base 0.3 bw on the lower edge
        mid = 0.5 * (x0 + x1)
        apex = y1 - 0.35 * bh
        half = 0.15 * bw * (ys - apex) / (0.35 * bh)
        inside = inside & ~((ys > apex) & ((xs - mid).abs() < half))
    return inside.unsqueeze(1).to(out_dtype)


def eye_box_mask(
    height: int,
    width: int,
    *,
    box: tuple[float, float, float, float] = PAPER_EYE_BOX,
    batch: int = 1,
    shape: str = "box",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The paper's fixed eye rectangle for aligned faces, as a mask.

    Args:
        height: image height H.
        width: image width W.
        box: relative ``(x0, y0, x1, y1)`` in [0, 1]; the default is :data:`PAPER_EYE_BOX`.
        batch: number of copies B.
        shape: ``"box"`` or ``"headset"`` (see :func:`box_masks`).
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        ``(B, 1, H, W)`` mask, 1 = occluded.

    Raises:
        TypeError: ``height``/``width``/``batch`` are not ints, ``dtype`` is not floating.
        ValueError: a relative coordinate outside [0, 1], an empty box, non-positive sizes, unknown ``shape``.

    Examples:
        >>> eye_box_mask(112, 112).mean().item() > 0.2
        True
    """
    fn = "eye_box_mask"
    _check_rel_box(box, fn)
    check_int(height, "height", fn=fn)
    check_int(width, "width", fn=fn)
    check_int(batch, "batch", fn=fn)
    _check_shape_name(shape, fn)
    _check_dtype(dtype, fn)
    rel = torch.tensor([box], dtype=torch.float64, device=device)
    px = rel * torch.tensor([width, height, width, height], dtype=torch.float64, device=device)
    return box_masks(px.expand(batch, 4), height, width, shape=shape, dtype=dtype)


def eye_box_from_landmarks(
    landmarks: torch.Tensor,
    *,
    pad_x: float = 0.12,
    pad_top: float = 0.35,
    pad_bottom: float = 0.1,
    include_nose: bool = True,
) -> torch.Tensor:
    """Eye-region box from 68 landmarks: brows (17-26) and eyes (36-47), padded.

    The box spans the brow and eye landmarks, widened by ``pad_x`` times its width on each side and raised
    by ``pad_top`` times its height; with ``include_nose`` its lower edge reaches the nose-bridge
    landmark 29 (then is lowered by ``pad_bottom`` times the height), like the figure's rectangle that covers "brows, eyes and the upper nose". These margins
    are our choice (the paper's mask protocol is not available).

    Args:
        landmarks: ``(B, 68, 2)`` float landmarks ``(x, y)`` in pixels.
        pad_x: horizontal padding, a fraction of the landmark box width, on each side.
        pad_top: extra height above the brows, a fraction of the landmark box height.
        pad_bottom: extra height below the lower edge, a fraction of the landmark box height.
        include_nose: extend the lower edge down to landmark 29 when it is lower than the eyes.

    Returns:
        ``(B, 4)`` boxes ``(x0, y0, x1, y1)`` in pixels (not clipped to the image).

    Raises:
        TypeError: ``landmarks`` is not a floating tensor.
        ValueError: wrong shape, non-finite values or negative padding.

    Examples:
        >>> lm = torch.zeros(1, 68, 2); lm[0, 36:48] = torch.tensor([[10.0, 20.0], [30.0, 24.0]]).repeat(6, 1)
        >>> lm[0, 17:27] = torch.tensor([12.0, 16.0]); lm[0, 29] = torch.tensor([20.0, 30.0])
        >>> eye_box_from_landmarks(lm, pad_x=0.0, pad_top=0.0, pad_bottom=0.0)
        tensor([[10., 16., 30., 30.]])
    """
    fn = "eye_box_from_landmarks"
    check_floating(landmarks, "landmarks", fn=fn)
    check_shape(landmarks, "B,68,2", "landmarks", fn=fn)
    check_positive(pad_x, "pad_x", fn=fn, strict=False)
    check_positive(pad_top, "pad_top", fn=fn, strict=False)
    check_positive(pad_bottom, "pad_bottom", fn=fn, strict=False)
    check_finite(landmarks, "landmarks", fn=fn)
    pts = torch.cat([landmarks[:, 17:27], landmarks[:, 36:48]], dim=1)
    lo = pts.amin(dim=1)
    hi = pts.amax(dim=1)
    w = hi[:, 0] - lo[:, 0]
    h = hi[:, 1] - lo[:, 1]
    x0 = lo[:, 0] - pad_x * w
    x1 = hi[:, 0] + pad_x * w
    y0 = lo[:, 1] - pad_top * h
    y1 = (torch.maximum(hi[:, 1], landmarks[:, 29, 1]) if include_nose else hi[:, 1]) + pad_bottom * h
    return torch.stack([x0, y0, x1, y1], dim=1)


def random_eye_masks(
    batch: int,
    height: int,
    width: int,
    *,
    box: tuple[float, float, float, float] = PAPER_EYE_BOX,
    shift: float = 0.04,
    scale: float = 0.1,
    shape: str = "box",
    headset_prob: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Seeded random variations of the eye rectangle, for training.

    Each mask is ``box`` shifted by up to ``shift`` (fraction of W and H) and with width and height scaled
    by a factor in ``[1 - scale, 1 + scale]``; with ``headset_prob > 0`` that fraction of masks uses the
    headset shape. The variation is our choice: the paper's mask protocol is not available.

    Args:
        batch: number of masks B.
        height: image height H.
        width: image width W.
        box: relative base box ``(x0, y0, x1, y1)``.
        shift: maximum absolute shift, a fraction of the image size.
        scale: maximum relative change of the box size.
        shape: base shape, ``"box"`` or ``"headset"``.
        headset_prob: probability that a mask is headset-shaped instead of ``shape``.
        generator: torch generator on the CPU for reproducible draws.
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        ``(B, 1, H, W)`` masks, 1 = occluded.

    Raises:
        TypeError: ``batch``/``height``/``width`` are not ints, ``dtype`` is not floating, ``generator`` is not
            a ``torch.Generator``.
        ValueError: a bad ``box``, non-positive sizes, negative ``shift``/``scale``, ``scale >= 1``,
            ``headset_prob`` outside [0, 1].

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_eye_masks(2, 64, 64, generator=g).shape
        torch.Size([2, 1, 64, 64])
    """
    fn = "random_eye_masks"
    check_int(batch, "batch", fn=fn)
    check_int(height, "height", fn=fn)
    check_int(width, "width", fn=fn)
    _check_rel_box(box, fn)
    _check_dtype(dtype, fn)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{fn}: 'generator' must be a torch.Generator or None; got {type(generator).__name__}"
        )
    check_positive(shift, "shift", fn=fn, strict=False)
    check_positive(scale, "scale", fn=fn, strict=False)
    if scale >= 1.0:
        raise ValueError(f"{fn}: 'scale' must be < 1; got {scale!r}")
    if not 0.0 <= headset_prob <= 1.0:
        raise ValueError(f"{fn}: 'headset_prob' must lie in [0, 1]; got {headset_prob!r}")
    _check_shape_name(shape, fn)
    u = torch.rand(batch, 5, generator=generator, dtype=torch.float64)
    x0, y0, x1, y1 = box
    cx = 0.5 * (x0 + x1) + shift * (2 * u[:, 0] - 1)
    cy = 0.5 * (y0 + y1) + shift * (2 * u[:, 1] - 1)
    hw = 0.5 * (x1 - x0) * (1 + scale * (2 * u[:, 2] - 1))
    hh = 0.5 * (y1 - y0) * (1 + scale * (2 * u[:, 3] - 1))
    rel = torch.stack([cx - hw, cy - hh, cx + hw, cy + hh], dim=1)
    px = rel * torch.tensor([width, height, width, height], dtype=torch.float64)
    px = px.to(device)
    masks = box_masks(px, height, width, shape=shape, dtype=dtype)
    if headset_prob > 0.0:
        use = (u[:, 4] < headset_prob).to(device)
        other = box_masks(px, height, width, shape="headset", dtype=dtype)
        masks = torch.where(use.view(-1, 1, 1, 1), other, masks)
    return masks
