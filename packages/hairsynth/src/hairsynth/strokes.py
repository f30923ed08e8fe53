"""Guide strokes: data type, rasterisation, orientation field, tracing and extraction from real hair.

Convention:
    Pixel ``(x, y)`` is column ``x``, row ``y``; a pixel's centre sits at integer coordinates, ``x``
    grows right and ``y`` grows down. Orientation angles ``theta`` are strand directions in that frame,
    sign-free, in ``[0, pi)``: ``0`` is a horizontal strand, ``pi / 2`` a vertical one. Colours are RGB
    in ``[0, 1]``. Images are ``(B, 3, H, W)`` or ``(3, H, W)`` floats in ``[0, 1]``; masks are
    ``(B, 1, H, W)`` / ``(1, H, W)`` / ``(H, W)`` with 1 = hair / the region to synthesise.

The orientation field and the tracing follow the standard hair-modelling recipe (a bank of oriented
difference-of-Gaussians filters, arg-max orientation, confidence-weighted smoothing of the doubled angle,
streamline tracing); the paper says strokes come from the hair's structure and colour, but its exact
recipe could not be read, so every number here is a configurable reconstruction (see the README).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_finite, check_floating, check_positive, check_range, check_shape, check_tensor

logger = logging.getLogger(__name__)

__all__ = [
    "Stroke",
    "load_strokes",
    "orientation_field",
    "oriented_filter_bank",
    "rasterize_strokes",
    "save_strokes",
    "stroke_orientation_agreement",
    "strokes_from_image",
    "trace_strokes",
]


@dataclass
class Stroke:
    """One guide stroke: a polyline with an RGB colour and a width.

    Args:
        points: ``(N, 2)`` vertices ``(x, y)`` in pixels, ``N >= 1`` (one point is a dot).
        color: RGB in ``[0, 1]``.
        width: diameter of the stroke in pixels (> 0). A pixel is covered when its centre lies within
            ``width / 2`` of the polyline (round caps and joins).

    Raises:
        ValueError: malformed points, colour outside ``[0, 1]`` or a non-positive width.

    Examples:
        >>> s = Stroke([(2, 5), (10, 5)], color=(0.4, 0.2, 0.1), width=1.0)
        >>> s.points.shape
        (2, 2)
    """

    points: np.ndarray
    color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    width: float = 3.0

    def __post_init__(self) -> None:
        pts = np.asarray(
            self.points.detach().cpu().numpy() if isinstance(self.points, torch.Tensor) else self.points,
            dtype=np.float64,
        )
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 1:
            raise ValueError(f"Stroke: 'points' must have shape (N, 2) with N >= 1; got {tuple(pts.shape)}")
        if not np.isfinite(pts).all():
            raise ValueError("Stroke: 'points' must be finite")
        col = tuple(float(c) for c in self.color)
        if len(col) != 3 or not all(0.0 <= c <= 1.0 for c in col):
            raise ValueError(f"Stroke: 'color' must be 3 floats in [0, 1]; got {self.color!r}")
        if not (float(self.width) > 0 and math.isfinite(float(self.width))):
            raise ValueError(f"Stroke: 'width' must be a finite number > 0; got {self.width!r}")
        self.points = pts
        self.color = (col[0], col[1], col[2])
        self.width = float(self.width)

    @property
    def length(self) -> float:
        """Arc length of the polyline in pixels."""
        if len(self.points) < 2:
            return 0.0
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())

    def scaled(self, sx: float, sy: float | None = None) -> Stroke:
        """The stroke on an image resized by ``(sx, sy)`` (pixel centres at integer coordinates map as
        ``x' = (x + 0.5) * sx - 0.5``); the width scales by ``sqrt(sx * sy)``.

        Args:
            sx: horizontal scale (new width / old width).
            sy: vertical scale (default ``sx``).

        Returns:
            A new stroke.

        Examples:
            >>> Stroke([(1.5, 3.5)], (0, 0, 0), 4.0).scaled(0.5).to_dict()
            {'points': [[0.5, 1.5]], 'color': [0.0, 0.0, 0.0], 'width': 2.0}
        """
        sy = sx if sy is None else sy
        if not (sx > 0 and sy > 0):
            raise ValueError(f"Stroke.scaled: scales must be > 0; got ({sx!r}, {sy!r})")
        pts = (self.points + 0.5) * np.array([sx, sy]) - 0.5
        return Stroke(pts, self.color, self.width * math.sqrt(sx * sy))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form ``{"points": [[x, y], ...], "color": [r, g, b], "width": w}``."""
        return {"points": self.points.tolist(), "color": list(self.color), "width": self.width}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stroke:
        """Inverse of :meth:`to_dict`.

        Args:
            d: a mapping with ``points``, and optionally ``color`` and ``width``.

        Returns:
            The stroke.
        """
        if not isinstance(d, dict) or "points" not in d:
            raise ValueError(f"Stroke.from_dict: 'd' must be a dict with a 'points' key; got {d!r:.80}")
        return cls(
            np.asarray(d["points"], dtype=np.float64), tuple(d.get("color", (0, 0, 0))), d.get("width", 3.0)
        )


def save_strokes(strokes: Sequence[Stroke], path: str | os.PathLike[str]) -> None:
    """Write strokes as JSON (``{"strokes": [Stroke.to_dict(), ...]}``).

    Args:
        strokes: the strokes.
        path: output file.
    """
    _check_strokes(strokes, fn="save_strokes")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"strokes": [s.to_dict() for s in strokes]}, fh)


def load_strokes(path: str | os.PathLike[str]) -> list[Stroke]:
    """Read strokes written by :func:`save_strokes` (or the editor).

    Args:
        path: a JSON file.

    Returns:
        The strokes.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not JSON (truncated or garbage) or does not hold a ``strokes`` list.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_strokes: no strokes file at {os.fspath(path)!r}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(
            f"load_strokes: {os.fspath(path)!r} is not a valid hairsynth strokes file (truncated or not JSON)"
        ) from None
    items = data.get("strokes") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"load_strokes: '{path}' must hold a list or {{'strokes': [...]}}")
    return [Stroke.from_dict(d) for d in items]


def _check_strokes(strokes: Any, *, fn: str) -> None:
    if isinstance(strokes, Stroke) or not isinstance(strokes, Iterable):
        raise TypeError(f"{fn}: 'strokes' must be a sequence of Stroke; got {type(strokes).__name__}")
    for i, s in enumerate(strokes):
        if not isinstance(s, Stroke):
            raise TypeError(f"{fn}: 'strokes[{i}]' must be a Stroke; got {type(s).__name__}")


def _check_size(size: Any, *, fn: str) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size)
    ):
        raise ValueError(f"{fn}: 'size' must be (H, W) with positive ints; got {size!r}")
    return int(size[0]), int(size[1])


def rasterize_strokes(
    strokes: Sequence[Stroke],
    size: tuple[int, int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise strokes into the network's stroke maps (colour image and coverage mask).

    A pixel is covered by a stroke when the distance from its centre to the polyline is at most
    ``width / 2`` (round caps and joins). Later strokes paint over earlier ones. Coverage is binary, so
    the maps are exact and reproducible on every device.

    Args:
        strokes: the strokes, in painting order.
        size: ``(H, W)`` of the output maps.
        device: where to build the maps (default CPU).
        dtype: floating dtype of the maps.

    Returns:
        ``(color, coverage)``: ``(3, H, W)`` stroke colours (0 off strokes) and ``(1, H, W)`` coverage in
        ``{0, 1}``.

    Raises:
        TypeError: ``strokes`` is not a sequence of :class:`Stroke`.
        ValueError: bad ``size``.

    Examples:
        >>> color, cov = rasterize_strokes([Stroke([(2, 5), (10, 5)], (1.0, 0.0, 0.0), 1.0)], (12, 12))
        >>> int(cov.sum()), float(color[0, 5, 6])
        (9, 1.0)
    """
    fn = "rasterize_strokes"
    _check_strokes(strokes, fn=fn)
    h, w = _check_size(size, fn=fn)
    if not dtype.is_floating_point:
        raise TypeError(f"{fn}: 'dtype' must be floating; got {dtype}")
    color = torch.zeros(3, h, w, device=device, dtype=dtype)
    cov = torch.zeros(1, h, w, device=device, dtype=dtype)
    for s in strokes:
        r = s.width / 2.0
        pts = torch.as_tensor(s.points, dtype=torch.float64, device=color.device)
        x0 = max(math.floor(float(pts[:, 0].min()) - r), 0)
        x1 = min(math.ceil(float(pts[:, 0].max()) + r), w - 1)
        y0 = max(math.floor(float(pts[:, 1].min()) - r), 0)
        y1 = min(math.ceil(float(pts[:, 1].max()) + r), h - 1)
        if x0 > x1 or y0 > y1:
            continue
        ys, xs = torch.meshgrid(
            torch.arange(y0, y1 + 1, device=color.device, dtype=torch.float64),
            torch.arange(x0, x1 + 1, device=color.device, dtype=torch.float64),
            indexing="ij",
        )
        p = torch.stack([xs, ys], -1).reshape(-1, 1, 2)  # (P, 1, 2)
        a = pts[:-1] if len(pts) > 1 else pts
        b = pts[1:] if len(pts) > 1 else pts
        ab = (b - a).unsqueeze(0)  # (1, S, 2)
        ap = p - a.unsqueeze(0)  # (P, S, 2)
        denom = (ab * ab).sum(-1).clamp_min(1e-12)
        t = ((ap * ab).sum(-1) / denom).clamp(0.0, 1.0)
        d2 = ((ap - t.unsqueeze(-1) * ab) ** 2).sum(-1).min(dim=1).values
        hit = (d2 <= r * r + 1e-9).reshape(xs.shape)
        sub_c = color[:, y0 : y1 + 1, x0 : x1 + 1]
        col = torch.tensor(s.color, device=color.device, dtype=dtype).view(3, 1, 1)
        color[:, y0 : y1 + 1, x0 : x1 + 1] = torch.where(hit, col, sub_c)
        cov[:, y0 : y1 + 1, x0 : x1 + 1] = torch.where(
            hit, torch.ones_like(cov[:, y0 : y1 + 1, x0 : x1 + 1]), cov[:, y0 : y1 + 1, x0 : x1 + 1]
        )
    return color, cov


def oriented_filter_bank(
    num_orientations: int = 32,
    *,
    kernel_size: int = 17,
    sigma_across_low: float = 1.0,
    sigma_across_high: float = 2.0,
    sigma_along: float = 2.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Bank of oriented difference-of-Gaussians line filters.

    Kernel ``k`` responds to strands along ``theta_k = k * pi / K``: with along/across coordinates
    ``u = x cos(theta) + y sin(theta)``, ``v = -x sin(theta) + y cos(theta)``,
    ``f(u, v) = exp(-u^2 / 2 s_a^2) (g_l(v) - g_h(v)) / (1/s_l - 1/s_h)`` where
    ``g_s(v) = exp(-v^2 / 2 s^2) / s``; each kernel is then made zero-mean so flat regions give 0.

    Args:
        num_orientations: ``K`` angles in ``[0, pi)``.
        kernel_size: odd kernel side.
        sigma_across_low: narrow across-strand sigma ``s_l``.
        sigma_across_high: wide across-strand sigma ``s_h``.
        sigma_along: along-strand sigma ``s_a``.
        device: output device.
        dtype: output dtype.

    Returns:
        ``(K, 1, k, k)`` kernels for ``conv2d``.

    Raises:
        ValueError: bad sizes or sigmas.
    """
    fn = "oriented_filter_bank"
    if not isinstance(num_orientations, int) or num_orientations < 2:
        raise ValueError(f"{fn}: 'num_orientations' must be an int >= 2; got {num_orientations!r}")
    if not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"{fn}: 'kernel_size' must be an odd int >= 3; got {kernel_size!r}")
    for n, sig in (
        ("sigma_across_low", sigma_across_low),
        ("sigma_across_high", sigma_across_high),
        ("sigma_along", sigma_along),
    ):
        check_positive(float(sig), n, fn=fn)
    if not sigma_across_high > sigma_across_low:
        raise ValueError(
            f"{fn}: 'sigma_across_high' must exceed 'sigma_across_low'; got {sigma_across_high} <= {sigma_across_low}"
        )
    half = kernel_size // 2
    r = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    th = torch.arange(num_orientations, dtype=torch.float64) * math.pi / num_orientations
    c, s = th.cos().view(-1, 1, 1), th.sin().view(-1, 1, 1)
    u = xx * c + yy * s
    v = -xx * s + yy * c
    sl, sh, sa = float(sigma_across_low), float(sigma_across_high), float(sigma_along)
    g = torch.exp(-(v**2) / (2 * sl**2)) / sl - torch.exp(-(v**2) / (2 * sh**2)) / sh
    k = torch.exp(-(u**2) / (2 * sa**2)) * g / (1.0 / sl - 1.0 / sh)
    k = k - k.mean(dim=(1, 2), keepdim=True)
    return k.unsqueeze(1).to(device=device, dtype=dtype)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    half = max(1, math.ceil(3 * sigma))
    r = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(
        F.pad(x, (half, half, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c
    )
    return F.conv2d(
        F.pad(x, (0, 0, half, half), mode="replicate"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )


def _as_batch_image(image: torch.Tensor, *, fn: str) -> torch.Tensor:
    check_floating(image, "image", fn=fn)
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[1] not in (1, 3):
        raise ValueError(
            f"{fn}: 'image' must have shape (B, 3|1, H, W) or (3|1, H, W); got {tuple(image.shape)}"
        )
    check_finite(image, "image", fn=fn)
    return image


def _as_batch_mask(mask: torch.Tensor | None, like: torch.Tensor, *, fn: str) -> torch.Tensor | None:
    if mask is None:
        return None
    check_tensor(mask, "mask", fn=fn)
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if mask.dim() == 3:
        mask = mask.unsqueeze(0)
    b, _, h, w = like.shape
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != (h, w) or mask.shape[0] not in (1, b):
        raise ValueError(
            f"{fn}: 'mask' must have shape (B, 1, H, W) matching the image ({b}, ., {h}, {w}); got {tuple(mask.shape)}"
        )
    if mask.device != like.device:
        raise ValueError(
            f"{fn}: 'mask' is on {mask.device} but 'image' is on {like.device}; move them to one device"
        )
    mask = mask.to(like.dtype)
    check_range(mask, "mask", fn=fn, low=0.0, high=1.0)
    return mask.expand(b, 1, h, w)


def orientation_field(
    image: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    num_orientations: int = 32,
    kernel_size: int = 17,
    sigma_across_low: float = 1.0,
    sigma_across_high: float = 2.0,
    sigma_along: float = 2.0,
    smooth_sigma: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense hair orientation field from a bank of oriented filters.

    Steps: grey image; responses of :func:`oriented_filter_bank`; per pixel the orientation of the
    strongest absolute response (``abs`` so dark and bright strands both count); the doubled-angle vector
    ``c * (cos 2theta, sin 2theta)`` weighted by that response ``c`` is Gaussian-smoothed (inside
    ``mask`` only, by normalised convolution) and halved back: ``theta = atan2(.) / 2 mod pi``.

    Args:
        image: ``(B, 3, H, W)`` or ``(B, 1, H, W)`` (or unbatched) floats, ideally in ``[0, 1]``.
        mask: optional ``(B, 1, H, W)`` region (1 = hair) used for smoothing; outside it the confidence
            is set to 0.
        num_orientations: number of filter angles ``K``.
        kernel_size: odd filter side.
        sigma_across_low: narrow across-strand sigma.
        sigma_across_high: wide across-strand sigma.
        sigma_along: along-strand sigma.
        smooth_sigma: sigma (pixels) of the doubled-angle smoothing; 0 disables it.

    Returns:
        ``(theta, confidence)``, both ``(B, 1, H, W)``: strand angle in ``[0, pi)`` and a coherence in
        ``[0, 1]`` (length of the smoothed doubled-angle vector over the smoothed response; 1 where all
        nearby pixels agree; without smoothing, the normalised peak response).

    Raises:
        TypeError: non-tensor or integer image.
        ValueError: bad shapes or non-finite values.

    Examples:
        >>> x = torch.arange(32.0)
        >>> img = (0.5 + 0.5 * torch.cos(2 * math.pi * x / 4)).view(1, 32).expand(32, 32)  # vertical stripes
        >>> theta, conf = orientation_field(img[None, None])
        >>> round(float(theta[0, 0, 16, 16]), 2)  # vertical strands: pi / 2
        1.57
    """
    fn = "orientation_field"
    img = _as_batch_image(image, fn=fn)
    m = _as_batch_mask(mask, img, fn=fn)
    if smooth_sigma < 0:
        raise ValueError(f"{fn}: 'smooth_sigma' must be >= 0; got {smooth_sigma!r}")
    grey = img if img.shape[1] == 1 else (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
    bank = oriented_filter_bank(
        num_orientations,
        kernel_size=kernel_size,
        sigma_across_low=sigma_across_low,
        sigma_across_high=sigma_across_high,
        sigma_along=sigma_along,
        device=img.device,
        dtype=img.dtype,
    )
    half = kernel_size // 2
    resp = F.conv2d(F.pad(grey, (half, half, half, half), mode="reflect"), bank).abs()  # (B, K, H, W)
    c, idx = resp.max(dim=1, keepdim=True)
    ang = idx.to(img.dtype) * (math.pi / num_orientations)
    vx, vy = c * torch.cos(2 * ang), c * torch.sin(2 * ang)
    weight = c
    if m is not None:
        vx, vy, weight = vx * m, vy * m, weight * m
    if smooth_sigma > 0:
        vx, vy, weight = (_gaussian_blur(t, smooth_sigma) for t in (vx, vy, weight))
    theta = torch.remainder(0.5 * torch.atan2(vy, vx), math.pi)
    conf = torch.sqrt(vx**2 + vy**2) / weight.clamp_min(1e-12)
    if smooth_sigma == 0:
        conf = c / c.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    conf = conf.clamp(0.0, 1.0)
    if m is not None:
        conf = conf * (m > 0.5).to(conf.dtype)
    return theta, conf


def _bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = field.shape[-2:]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    return (
        field[..., y0, x0] * (1 - fx) * (1 - fy)
        + field[..., y0, x1] * fx * (1 - fy)
        + field[..., y1, x0] * (1 - fx) * fy
        + field[..., y1, x1] * fx * fy
    )


def _trace_one_way(
    seeds: np.ndarray,
    sign: float,
    vec2: np.ndarray,
    conf: np.ndarray,
    mask: np.ndarray,
    *,
    step: float,
    max_steps: int,
    max_turn: float,
    min_confidence: float,
) -> list[list[tuple[float, float]]]:
    h, w = mask.shape
    n = len(seeds)
    pos = seeds.astype(np.float64).copy()
    paths: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    alive = np.ones(n, dtype=bool)
    prev = np.zeros((n, 2))
    v = _bilinear(vec2, pos[:, 0], pos[:, 1])
    th = 0.5 * np.arctan2(v[1], v[0])
    prev[:, 0], prev[:, 1] = sign * np.cos(th), sign * np.sin(th)
    cos_max = math.cos(max_turn)
    for _ in range(max_steps):
        idx = np.nonzero(alive)[0]
        if idx.size == 0:
            break
        p = pos[idx]
        v = _bilinear(vec2, p[:, 0], p[:, 1])
        th = 0.5 * np.arctan2(v[1], v[0])
        d = np.stack([np.cos(th), np.sin(th)], 1)
        dot = (d * prev[idx]).sum(1)
        d[dot < 0] *= -1.0
        dot = np.abs(dot)
        nxt = p + step * d
        xi, yi = np.rint(nxt[:, 0]).astype(np.int64), np.rint(nxt[:, 1]).astype(np.int64)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        ok = inside & (dot >= cos_max)
        xi_c, yi_c = np.clip(xi, 0, w - 1), np.clip(yi, 0, h - 1)
        ok &= mask[yi_c, xi_c] > 0.5
        ok &= _bilinear(conf, nxt[:, 0], nxt[:, 1]) >= min_confidence
        for j in np.nonzero(ok)[0]:
            paths[idx[j]].append((float(nxt[j, 0]), float(nxt[j, 1])))
        alive[idx[~ok]] = False
        pos[idx[ok]] = nxt[ok]
        prev[idx[ok]] = d[ok]
    return paths


def trace_strokes(
    theta: torch.Tensor,
    confidence: torch.Tensor,
    mask: torch.Tensor,
    *,
    spacing: float | None = None,
    step: float = 1.0,
    max_length: float | None = None,
    min_length: float = 8.0,
    max_turn_deg: float = 30.0,
    min_confidence: float = 0.2,
    generator: torch.Generator | None = None,
) -> list[np.ndarray]:
    """Trace streamlines of an orientation field inside a mask.

    Seeds lie on a jittered grid of the given spacing (a cheap stand-in for Poisson-disk sampling) inside
    the mask; from each seed the line is integrated both ways with fixed steps along ``+-(cos, sin)``
    of the (bilinearly sampled doubled-angle) field, flipping the sign to stay continuous, and stops at
    the mask border, the image border, low confidence, a turn sharper than ``max_turn_deg`` per step or
    ``max_length``.

    Args:
        theta: ``(H, W)`` or ``(1, 1, H, W)`` strand angles in radians (sign-free).
        confidence: same shape, in ``[0, 1]``.
        mask: same shape, 1 = trace here.
        spacing: seed grid spacing in pixels (default ``W / 16``).
        step: integration step in pixels.
        max_length: maximum length in pixels (default ``max(H, W) / 2``).
        min_length: shorter lines are dropped.
        max_turn_deg: maximum turn per step.
        min_confidence: stop where the confidence falls below this.
        generator: random generator for seed jitter and order.

    Returns:
        List of ``(N, 2)`` float arrays of ``(x, y)`` points, longest first.

    Raises:
        ValueError: shape mismatches or bad numbers.
    """
    fn = "trace_strokes"
    maps = []
    for name, t in (("theta", theta), ("confidence", confidence), ("mask", mask)):
        check_tensor(t, name, fn=fn)
        if t.dim() == 4 and t.shape[:2] == (1, 1):
            t = t[0, 0]
        if t.dim() != 2:
            raise ValueError(f"{fn}: '{name}' must have shape (H, W) or (1, 1, H, W); got {tuple(t.shape)}")
        maps.append(t)
    if not (maps[0].shape == maps[1].shape == maps[2].shape):
        raise ValueError(
            f"{fn}: 'theta', 'confidence' and 'mask' must share (H, W); got "
            f"{tuple(maps[0].shape)}, {tuple(maps[1].shape)}, {tuple(maps[2].shape)}"
        )
    check_positive(step, "step", fn=fn)
    h, w = maps[0].shape
    spacing = float(spacing) if spacing is not None else max(w / 16.0, 2.0)
    check_positive(spacing, "spacing", fn=fn)
    max_length = float(max_length) if max_length is not None else max(h, w) / 2.0
    check_positive(max_length, "max_length", fn=fn)
    th = maps[0].detach().double().cpu().numpy()
    conf = maps[1].detach().double().cpu().numpy()
    m = maps[2].detach().double().cpu().numpy()
    vec2 = np.stack([np.cos(2 * th), np.sin(2 * th)])
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    gy = np.arange(spacing / 2, h, spacing)
    gx = np.arange(spacing / 2, w, spacing)
    sy, sx = np.meshgrid(gy, gx, indexing="ij")
    jit = (torch.rand((2, *sx.shape), generator=gen, dtype=torch.float64).numpy() - 0.5) * spacing * 0.8
    seeds = np.stack([(sx + jit[0]).ravel(), (sy + jit[1]).ravel()], 1)
    seeds[:, 0] = np.clip(seeds[:, 0], 0, w - 1)
    seeds[:, 1] = np.clip(seeds[:, 1], 0, h - 1)
    keep = m[np.rint(seeds[:, 1]).astype(int), np.rint(seeds[:, 0]).astype(int)] > 0.5
    keep &= _bilinear(conf, seeds[:, 0], seeds[:, 1]) >= min_confidence
    seeds = seeds[keep]
    if len(seeds) == 0:
        return []
    order = torch.randperm(len(seeds), generator=gen).numpy()
    seeds = seeds[order]
    max_steps = max(1, int(max_length / (2 * step)))
    kw = dict(
        step=step, max_steps=max_steps, max_turn=math.radians(max_turn_deg), min_confidence=min_confidence
    )
    fwd = _trace_one_way(seeds, 1.0, vec2, conf, m, **kw)  # type: ignore[arg-type]
    bwd = _trace_one_way(seeds, -1.0, vec2, conf, m, **kw)  # type: ignore[arg-type]
    out = []
    for i in range(len(seeds)):
        pts = [*bwd[i][::-1], (float(seeds[i, 0]), float(seeds[i, 1])), *fwd[i]]
        arr = np.asarray(pts, dtype=np.float64)
        if len(arr) >= 2 and np.linalg.norm(np.diff(arr, axis=0), axis=1).sum() >= min_length:
            out.append(arr)
    out.sort(key=lambda a: -len(a))
    return out


def _to_chw_float(image: Any, *, fn: str, name: str = "image") -> torch.Tensor:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    if isinstance(image, np.ndarray):
        arr = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        if arr.ndim == 3 and arr.shape[-1] in (1, 3):
            arr = arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr))
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"{fn}: '{name}' must be a torch.Tensor, PIL image or numpy array; got {type(image).__name__}"
        )
    return image


def _mask_to_hw(mask: Any, *, fn: str) -> torch.Tensor:
    """Boolean ``(H, W)`` hair mask, nonzero in any channel = hair, from a tensor, array or PIL image."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(mask, Image.Image):
        return torch.from_numpy(np.asarray(mask.convert("RGB")) != 0).any(-1)
    if isinstance(mask, np.ndarray):
        arr = mask != 0
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):  # (H, W, C) image layout
            arr = arr[..., :3].any(-1)
        m = torch.from_numpy(np.ascontiguousarray(arr))
    elif isinstance(mask, torch.Tensor):
        m = mask != 0
    else:
        raise TypeError(
            f"{fn}: 'mask' must be a torch.Tensor, PIL image or numpy array; got {type(mask).__name__}"
        )
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if m.dim() == 3 and m.shape[0] in (3, 4):  # (C, H, W) colour mask
        m = m[:3].any(0)
    return m


def strokes_from_image(
    image: Any,
    mask: Any,
    *,
    max_strokes: int | None = None,
    width: float | tuple[float, float] = (2.0, 4.0),
    spacing: float | None = None,
    min_length: float = 8.0,
    max_length: float | None = None,
    smooth_sigma: float = 4.0,
    min_confidence: float = 0.2,
    generator: torch.Generator | None = None,
) -> list[Stroke]:
    """Extract guide strokes from a real hair image, as used to build training pairs.

    The orientation field of the hair (:func:`orientation_field`) is traced into streamlines
    (:func:`trace_strokes`); each becomes a :class:`Stroke` coloured with the median RGB of the image
    along its path, with a width drawn uniformly from ``width``. ``max_strokes`` keeps a random subset
    (sparse strokes, like a user's).

    Args:
        image: ``(3, H, W)`` float tensor in ``[0, 1]`` (or ``(1, 3, H, W)``), a PIL image, or an
            ``(H, W, 3)`` uint8 array.
        mask: ``(H, W)``/``(1, H, W)``/``(1, 1, H, W)`` tensor, a ``(3, H, W)`` tensor, an ``(H, W)`` or
            ``(H, W, 3)`` array, or a PIL image (any mode); nonzero in any colour channel = hair.
        max_strokes: keep at most this many strokes (random subset); ``None`` keeps all.
        width: a fixed width or a ``(low, high)`` range in pixels.
        spacing: seed spacing (default ``W / 16``).
        min_length: drop shorter lines (pixels).
        max_length: longest line (default ``max(H, W) / 2``).
        smooth_sigma: orientation smoothing sigma.
        min_confidence: tracing stops below this coherence.
        generator: random generator (seeds, subset, widths).

    Returns:
        The strokes (possibly empty if the mask is empty).

    Raises:
        TypeError: unsupported image or mask type.
        ValueError: shape mismatch between image and mask, or bad options.
    """
    fn = "strokes_from_image"
    img = _to_chw_float(image, fn=fn)
    if img.dim() == 4 and img.shape[0] == 1:
        img = img[0]
    check_shape(img, "3,H,W", "image", fn=fn)
    check_floating(img, "image", fn=fn)
    mk = _mask_to_hw(mask, fn=fn).to(img.device)
    if tuple(mk.shape) != tuple(img.shape[-2:]):
        raise ValueError(
            f"{fn}: 'mask' must have shape (H, W) = {tuple(img.shape[-2:])}; got {tuple(mk.shape)}"
        )
    mk = mk.to(img.dtype)
    if isinstance(width, (tuple, list)):
        if len(width) != 2 or not 0 < width[0] <= width[1]:
            raise ValueError(
                f"{fn}: 'width' must be > 0 or a (low, high) range with 0 < low <= high; got {width!r}"
            )
        w_lo, w_hi = float(width[0]), float(width[1])
    else:
        check_positive(float(width), "width", fn=fn)
        w_lo = w_hi = float(width)
    if max_strokes is not None and (not isinstance(max_strokes, int) or max_strokes < 0):
        raise ValueError(f"{fn}: 'max_strokes' must be None or an int >= 0; got {max_strokes!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    theta, conf = orientation_field(img, mk, smooth_sigma=smooth_sigma)
    lines = trace_strokes(
        theta[0, 0],
        conf[0, 0],
        mk,
        spacing=spacing,
        min_length=min_length,
        max_length=max_length,
        min_confidence=min_confidence,
        generator=gen,
    )
    if max_strokes is not None and len(lines) > max_strokes:
        pick = torch.randperm(len(lines), generator=gen)[:max_strokes].tolist()
        lines = [lines[i] for i in sorted(pick)]
    arr = img.detach().float().cpu().numpy()
    h, w = arr.shape[-2:]
    out = []
    widths = torch.rand(len(lines), generator=gen, dtype=torch.float64).numpy() * (w_hi - w_lo) + w_lo
    for pts, wd in zip(lines, widths):
        if len(pts) > 3:  # keep every 3rd vertex (and the last): same shape at a third of the raster cost
            pts = np.concatenate([pts[:-1:3], pts[-1:]])
        xi = np.clip(np.rint(pts[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.rint(pts[:, 1]).astype(int), 0, h - 1)
        col = np.clip(np.median(arr[:, yi, xi], axis=1), 0.0, 1.0)
        out.append(Stroke(pts, (float(col[0]), float(col[1]), float(col[2])), float(wd)))
    logger.debug("%s: %d strokes", fn, len(out))
    return out


def stroke_orientation_agreement(
    image: torch.Tensor,
    strokes: Sequence[Stroke],
    mask: torch.Tensor | None = None,
    *,
    step: float = 1.0,
    **field_kwargs: Any,
) -> float:
    """Structure control: agreement between an image's hair orientation and drawn stroke directions.

    The image's :func:`orientation_field` ``theta`` is sampled (nearest pixel) every ``step`` pixels along
    each stroke's polyline, where the polyline direction is ``phi = atan2(dy, dx) mod pi`` (x right, y
    down, as ``theta``); the score is the mean of ``cos(2 (theta - phi))`` over the samples inside
    ``mask``: 1 when the strands follow the strokes, about 0 for unrelated directions, -1 when they are
    perpendicular. Single-point strokes carry no direction and are skipped.

    Args:
        image: ``(3, H, W)`` / ``(1, 3, H, W)`` float image in ``[0, 1]``.
        strokes: the drawn strokes (pixel coordinates of ``image``).
        mask: optional ``(H, W)`` / ``(1, 1, H, W)`` region; samples outside it are ignored (and the field is
            smoothed inside it).
        step: sampling distance along the polylines in pixels.
        **field_kwargs: passed to :func:`orientation_field`.

    Returns:
        The mean agreement in ``[-1, 1]`` (NaN when no sample falls inside the image and mask).

    Raises:
        TypeError: ``strokes`` is not a sequence of :class:`Stroke`.
        ValueError: ``step <= 0``.

    Examples:
        >>> y, x = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
        >>> img = (0.5 + 0.5 * torch.cos(2 * math.pi * x / 4)).expand(3, 48, 48)  # vertical strands
        >>> along = [Stroke([(24, 8), (24, 40)], (0, 0, 0), 3.0)]
        >>> across = [Stroke([(8, 24), (40, 24)], (0, 0, 0), 3.0)]
        >>> round(stroke_orientation_agreement(img, along), 2), round(stroke_orientation_agreement(img, across), 2)
        (1.0, -1.0)
    """
    fn = "stroke_orientation_agreement"
    if not isinstance(strokes, (list, tuple)) or not all(isinstance(s, Stroke) for s in strokes):
        raise TypeError(f"{fn}: 'strokes' must be a sequence of Stroke; got {type(strokes).__name__}")
    if not step > 0:
        raise ValueError(f"{fn}: 'step' must be > 0; got {step!r}")
    img = image[None] if image.dim() == 3 else image
    m = None
    if mask is not None:
        m = mask.to(img.dtype)
        while m.dim() < 4:
            m = m[None]
    theta, _ = orientation_field(img, m, **field_kwargs)
    th = theta[0, 0]
    h, w = th.shape
    total, n = 0.0, 0
    for s in strokes:
        pts = s.points
        for a, b in itertools.pairwise(pts):
            d = b - a
            seg = float(np.hypot(d[0], d[1]))
            if seg == 0:
                continue
            phi = math.atan2(float(d[1]), float(d[0])) % math.pi
            for t in np.arange(0.0, seg, step) / seg:
                x, y = (a + t * d).round().astype(int)
                if not (0 <= x < w and 0 <= y < h):
                    continue
                if m is not None and float(m[0, 0, y, x]) <= 0:
                    continue
                total += math.cos(2.0 * (float(th[y, x]) - phi))
                n += 1
    return total / n if n else float("nan")
