"""Backward warping (``grid_sample``) and forward splatting of images by dense pixel flows.

Convention:
    Flows are in pixels, shape ``(B, 2, H, W)``, channel 0 = ``du`` (to the right), 1 = ``dv`` (down).
    Pixel centres sit at ``j + 0.5`` (``align_corners=False``). Backward: ``out(q) = image(q + flow(q))``.
    Forward: the value of source pixel ``p`` lands at ``p + flow(p)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_finite, check_floating, check_same_device, check_shape

__all__ = ["Warp", "flow_to_grid", "normalize_flow", "splat", "unnormalize_flow", "warp"]


def _check_pair(image: Tensor, flow: Tensor, fn: str) -> dict[str, int]:
    check_floating(image, "image", fn=fn)
    dims = check_shape(image, "B,C,H,W", "image", fn=fn)
    check_floating(flow, "flow", fn=fn)
    check_shape(flow, "B,2,H,W", "flow", fn=fn, dims=dims)
    check_same_device(("image", image), ("flow", flow), fn=fn)
    if dims["H"] == 0 or dims["W"] == 0:
        raise ValueError(f"{fn}: 'image' must have a non-empty H and W; got {tuple(image.shape)}")
    check_finite(image, "image", fn=fn)
    check_finite(flow, "flow", fn=fn)
    return dims


def _check_modes(mode: str, padding_mode: str, fn: str) -> None:
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"{fn}: 'mode' must be 'bilinear' or 'nearest'; got {mode!r}")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(
            f"{fn}: 'padding_mode' must be 'zeros', 'border' or 'reflection'; got {padding_mode!r}"
        )


def normalize_flow(flow: Tensor) -> Tensor:
    """Pixel flow to ``grid_sample`` units (``2 / W`` and ``2 / H`` per pixel).

    Args:
        flow: ``(B, 2, H, W)`` flow in pixels.

    Returns:
        ``(B, 2, H, W)`` flow in normalised coordinates.

    Raises:
        ValueError: wrong shape.
    """
    check_shape(flow, "B,2,H,W", "flow", fn="normalize_flow")
    h, w = flow.shape[-2:]
    return flow * flow.new_tensor([2.0 / w, 2.0 / h]).view(1, 2, 1, 1)


def unnormalize_flow(flow: Tensor) -> Tensor:
    """Inverse of :func:`normalize_flow`.

    Args:
        flow: ``(B, 2, H, W)`` flow in normalised coordinates.

    Returns:
        ``(B, 2, H, W)`` flow in pixels.

    Raises:
        ValueError: wrong shape.
    """
    check_shape(flow, "B,2,H,W", "flow", fn="unnormalize_flow")
    h, w = flow.shape[-2:]
    return flow * flow.new_tensor([w / 2.0, h / 2.0]).view(1, 2, 1, 1)


def flow_to_grid(flow: Tensor) -> Tensor:
    """Sampling grid ``(B, H, W, 2)`` for ``grid_sample`` from a pixel flow.

    Args:
        flow: ``(B, 2, H, W)`` backward flow in pixels.

    Returns:
        ``(B, H, W, 2)`` normalised sampling positions (``x`` first).

    Raises:
        ValueError: wrong shape.
    """
    check_shape(flow, "B,2,H,W", "flow", fn="flow_to_grid")
    h, w = flow.shape[-2:]
    ys = (torch.arange(h, device=flow.device, dtype=flow.dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=flow.device, dtype=flow.dtype) + 0.5) * (2.0 / w) - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy], 0)[None]
    return (base + normalize_flow(flow)).permute(0, 2, 3, 1)


def warp(image: Tensor, flow: Tensor, *, mode: str = "bilinear", padding_mode: str = "zeros") -> Tensor:
    """Backward-warp ``image`` by a pixel flow: ``out(q) = image(q + flow(q))``.

    Args:
        image: ``(B, C, H, W)`` floating image.
        flow: ``(B, 2, H, W)`` backward flow in pixels (same device).
        mode: ``"bilinear"`` or ``"nearest"`` (use nearest for masks).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Returns:
        ``(B, C, H, W)`` warped image.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch, empty image, non-finite image or flow, unknown mode.

    Examples:
        >>> img = torch.arange(16.0).view(1, 1, 4, 4)
        >>> flow = torch.zeros(1, 2, 4, 4); flow[:, 0] = 1.0  # read one pixel to the right
        >>> warp(img, flow)[0, 0, 0].tolist()
        [1.0, 2.0, 3.0, 0.0]
    """
    fn = "warp"
    _check_pair(image, flow, fn)
    _check_modes(mode, padding_mode, fn)
    grid = flow_to_grid(flow.to(image.dtype))
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def splat(image: Tensor, flow: Tensor, *, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Forward-splat ``image`` by a pixel flow with bilinear weights, normalised by the summed weight.

    Each source pixel's value is shared among the four target pixels around ``p + flow(p)``. Colliding
    sources are averaged (no depth ordering: pass only the visible layer).

    Args:
        image: ``(B, C, H, W)`` floating image.
        flow: ``(B, 2, H, W)`` forward flow in pixels.
        eps: weight below which a target pixel counts as empty.

    Returns:
        ``(splatted, weight)``: ``(B, C, H, W)`` image (zero where empty) and ``(B, 1, H, W)`` summed weights.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch, empty image, non-finite image or flow.

    Examples:
        >>> img = torch.arange(4.0).view(1, 1, 2, 2)
        >>> out, w = splat(img, torch.zeros(1, 2, 2, 2))
        >>> torch.equal(out, img)
        True
    """
    fn = "splat"
    dims = _check_pair(image, flow, fn)
    b, c, h, w = dims["B"], image.shape[1], dims["H"], dims["W"]
    xs = torch.arange(w, device=image.device, dtype=image.dtype).view(1, 1, w)
    ys = torch.arange(h, device=image.device, dtype=image.dtype).view(1, h, 1)
    tx = xs + flow[:, 0].to(image.dtype)
    ty = ys + flow[:, 1].to(image.dtype)
    x0, y0 = torch.floor(tx), torch.floor(ty)
    out = image.new_zeros(b, c, h * w)
    wsum = image.new_zeros(b, 1, h * w)
    src = image.reshape(b, c, h * w)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wt = (1 - (tx - xi).abs()) * (1 - (ty - yi).abs())
            ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h) & (wt > 0)
            idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().reshape(b, 1, h * w)
            wt = (wt * ok).reshape(b, 1, h * w)
            out = out.scatter_add(2, idx.expand(b, c, h * w), src * wt)
            wsum = wsum.scatter_add(2, idx, wt)
    res = torch.where(wsum > eps, out / wsum.clamp(min=eps), torch.zeros_like(out))
    return res.view(b, c, h, w), wsum.view(b, 1, h, w)


class Warp(nn.Module):
    """Module twin of :func:`warp`.

    Args:
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Raises:
        ValueError: unknown ``mode`` or ``padding_mode`` (at construction).

    Shape:
        - image: ``(B, C, H, W)``; flow: ``(B, 2, H, W)``; output: ``(B, C, H, W)``.
    """

    def __init__(self, mode: str = "bilinear", padding_mode: str = "zeros") -> None:
        super().__init__()
        _check_modes(mode, padding_mode, "Warp")
        self.mode = mode
        self.padding_mode = padding_mode

    def forward(self, image: Tensor, flow: Tensor) -> Tensor:
        """Warp ``image`` by ``flow`` (see :func:`warp`)."""
        return warp(image, flow, mode=self.mode, padding_mode=self.padding_mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, padding_mode={self.padding_mode!r}"
