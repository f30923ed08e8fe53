"""Functional core of Quantization Networks (Yang et al., CVPR 2019): soft/hard quantization and init.

Shape letters: ``K`` = number of thresholds (steps) ``n = |Y| - 1``; ``*`` = any shape of the quantized tensor.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor

from ._checks import _compiling, check_floating, check_same_device, check_shape, check_tensor
from .levels import Levels, LevelsLike

logger = logging.getLogger(__name__)

__all__ = [
    "hard_quantize",
    "init_parameters",
    "kmeans_1d",
    "level_codes",
    "soft_quantize",
    "ste_quantize",
]

ScalarLike = float | Tensor


def _check_scalar(v: ScalarLike, name: str, *, fn: str, positive: bool = False) -> None:
    if isinstance(v, Tensor):
        if v.numel() != 1:
            raise ValueError(f"{fn}: '{name}' must be a scalar (one element); got shape {tuple(v.shape)}")
        if positive and not _compiling():
            val = float(v)
            if not (math.isfinite(val) and val > 0):
                raise ValueError(f"{fn}: '{name}' must be finite and > 0; got {val!r}")
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{fn}: '{name}' must be a float or a one-element tensor; got {type(v).__name__}")
    if positive and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{fn}: '{name}' must be finite and > 0; got {v!r}")


def _check_steps(x: Tensor, thresholds: Tensor, scales: Tensor, *, fn: str) -> None:
    check_floating(x, "x", fn=fn)
    check_floating(thresholds, "thresholds", fn=fn)
    check_floating(scales, "scales", fn=fn)
    dims = check_shape(thresholds, "K", "thresholds", fn=fn)
    check_shape(scales, "K", "scales", fn=fn, dims=dims)
    check_same_device(("x", x), ("thresholds", thresholds), ("scales", scales), fn=fn)


def _work_dtype(x: Tensor) -> torch.dtype:
    # Half types are computed in float32: T * (beta * x - b) overflows float16 for T > 65504 / |z|, and
    # inf * 0 would give NaN exactly at a threshold.
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _as(v: ScalarLike, like: Tensor, dtype: torch.dtype) -> Tensor | float:
    if not isinstance(v, Tensor):
        return float(v)
    return _upcast(v.to(device=like.device), dtype)


def _upcast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast ``t`` to ``dtype``; for half inputs the gradient flowing back saturates at the half range.

    The exact derivative at a threshold is ``alpha beta T s_i / 4``, which exceeds float16's largest value
    for large ``T``; saturating it keeps gradients finite (documented deviation, half precision only).
    """
    out = t.to(dtype)
    if t.dtype in (torch.float16, torch.bfloat16) and out is not t and out.requires_grad:
        fmax = torch.finfo(t.dtype).max
        out.register_hook(lambda g: g.clamp(-fmax, fmax))
    return out


def soft_quantize(
    x: Tensor,
    thresholds: Tensor,
    scales: Tensor,
    temperature: ScalarLike,
    alpha: ScalarLike = 1.0,
    beta: ScalarLike = 1.0,
    offset: ScalarLike = 0.0,
) -> Tensor:
    """Soft quantization: a sum of temperature-scaled sigmoids (Eq. 7 of Yang et al., CVPR 2019).

    ``y = alpha * (sum_i s_i * sigmoid(T * (beta * x - b_i)) - o)``. Gradients are plain autograd, i.e. the
    exact derivative: ``dy/dx = alpha beta T sum_i s_i sig_i (1 - sig_i)``, ``dy/dalpha = y / alpha``,
    ``dy/dbeta = alpha T x sum_i s_i sig_i (1 - sig_i)``, ``dy/db_i = -alpha T s_i sig_i (1 - sig_i)``.

    Convention:
        Half-precision inputs are computed in float32 and cast back, so any finite temperature (e.g. 1e6)
        gives finite values and gradients.

    Args:
        x: tensor to quantize, shape ``(*)``, floating point.
        thresholds: the biases ``b_i`` in the ``beta``-scaled domain, shape ``(K,)``.
        scales: the step heights ``s_i``, shape ``(K,)``.
        temperature: ``T > 0`` (float or one-element tensor).
        alpha: output scale (float or one-element tensor, may require grad).
        beta: input scale (float or one-element tensor, may require grad).
        offset: ``o``, subtracted before scaling by ``alpha``.

    Returns:
        The soft-quantized tensor, shape ``(*)``, dtype of ``x``.

    Raises:
        TypeError: a non-floating tensor or a non-scalar parameter.
        ValueError: shapes disagree, devices differ, or ``temperature`` is not finite and positive.

    Examples:
        >>> x = torch.tensor([-1.0, 0.0, 1.0])
        >>> soft_quantize(x, torch.tensor([0.0]), torch.tensor([2.0]), 1e6, offset=1.0)
        tensor([-1.,  0.,  1.])
    """
    fn = "soft_quantize"
    _check_steps(x, thresholds, scales, fn=fn)
    _check_scalar(temperature, "temperature", fn=fn, positive=True)
    _check_scalar(alpha, "alpha", fn=fn)
    _check_scalar(beta, "beta", fn=fn)
    _check_scalar(offset, "offset", fn=fn)
    wd = _work_dtype(x)
    xw = _upcast(x, wd)
    a, b, t, o = _as(alpha, x, wd), _as(beta, x, wd), _as(temperature, x, wd), _as(offset, x, wd)
    if not thresholds.requires_grad and not scales.requires_grad:
        # Fused path: loops over the K steps without materialising (*, K) tensors and saves only three
        # tensors of x's size; its backward is the same closed-form exact derivative autograd would give.
        return _SoftQuantize.apply(xw, thresholds.to(wd), scales.to(wd), t, a, b, o).to(x.dtype)
    z = (xw * b).unsqueeze(-1) - _upcast(thresholds, wd)
    sig = torch.sigmoid(z * t)
    y = (sig * _upcast(scales, wd)).sum(-1) - o
    return (y * a).to(x.dtype)


class _SoftQuantize(torch.autograd.Function):
    """``alpha * (sum_i s_i sigmoid(T (beta x - b_i)) - o)`` with its exact gradient in closed form."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        thresholds: Tensor,
        scales: Tensor,
        temperature: Tensor | float,
        alpha: Tensor | float,
        beta: Tensor | float,
        offset: Tensor | float,
    ) -> Tensor:
        xs = x * (beta * temperature)
        bt = thresholds * temperature
        acc = torch.zeros_like(x)
        g = torch.zeros_like(x)
        for i in range(thresholds.shape[0]):
            sig = (xs - bt[i]).sigmoid_()
            acc.addcmul_(sig, scales[i])
            g.addcmul_(sig.neg().add_(1).mul_(sig), scales[i])
        del xs
        base = acc.sub_(offset)
        tens = [v if isinstance(v, Tensor) else None for v in (temperature, alpha, beta)]
        ctx.scalars = [None if isinstance(v, Tensor) else v for v in (temperature, alpha, beta)]
        ctx.save_for_backward(x, g, base, *[v for v in tens if v is not None])
        ctx.tensor_mask = [v is not None for v in tens]
        return base * alpha

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, g, base, *rest = ctx.saved_tensors
        it = iter(rest)
        t, a, b = (next(it) if m else sc for m, sc in zip(ctx.tensor_mask, ctx.scalars))
        gx = galpha = gbeta = None
        if ctx.needs_input_grad[0]:
            gx = gy * g * (a * b * t)
        if ctx.needs_input_grad[4]:
            galpha = (gy * base).sum().reshape(a.shape)
        if ctx.needs_input_grad[5]:
            gbeta = ((gy * x * g).sum() * (a * t)).reshape(b.shape)
        return gx, None, None, None, galpha, gbeta, None


def hard_quantize(
    x: Tensor,
    thresholds: Tensor,
    scales: Tensor,
    alpha: ScalarLike = 1.0,
    beta: ScalarLike = 1.0,
    offset: ScalarLike = 0.0,
) -> Tensor:
    """Hard quantization: unit steps, the ``T -> infinity`` limit of :func:`soft_quantize` (Eq. 12).

    ``y = alpha * (sum_i s_i * A(beta * x - b_i) - o)`` with ``A(z) = 1`` if ``z >= 0`` else ``0`` (Eq. 1).
    With sorted thresholds and ``s``, ``o`` from a :class:`~qnet.Levels` set, the output is exactly
    ``alpha * Y_k``. Used at inference; its gradient with respect to ``x`` is zero.

    Args:
        x: tensor to quantize, shape ``(*)``.
        thresholds: the biases ``b_i``, shape ``(K,)``.
        scales: the step heights ``s_i``, shape ``(K,)``.
        alpha: output scale.
        beta: input scale.
        offset: ``o``.

    Returns:
        The quantized tensor, shape ``(*)``, dtype of ``x``.

    Raises:
        TypeError: a non-floating tensor or a non-scalar parameter.
        ValueError: shapes disagree or devices differ.

    Examples:
        >>> hard_quantize(torch.tensor([-0.3, 0.01, 0.2]), torch.tensor([-0.05, 0.05]), torch.ones(2), offset=1.0)
        tensor([-1.,  0.,  1.])
    """
    fn = "hard_quantize"
    _check_steps(x, thresholds, scales, fn=fn)
    _check_scalar(alpha, "alpha", fn=fn)
    _check_scalar(beta, "beta", fn=fn)
    _check_scalar(offset, "offset", fn=fn)
    wd = _work_dtype(x)
    z = (x.to(wd) * _as(beta, x, wd)).unsqueeze(-1) >= thresholds.to(wd)
    y = (z.to(wd) * scales.to(wd)).sum(-1) - _as(offset, x, wd)
    return (y * _as(alpha, x, wd)).to(x.dtype)


def level_codes(x: Tensor, thresholds: Tensor, beta: ScalarLike = 1.0) -> Tensor:
    """Integer level index ``k`` of each element: the number of thresholds with ``beta * x >= b_i``.

    For sorted thresholds, ``hard_quantize(x) == alpha * Y[level_codes(x)]``.

    Args:
        x: tensor, shape ``(*)``.
        thresholds: sorted biases ``b_i``, shape ``(K,)``.
        beta: input scale.

    Returns:
        ``torch.int64`` codes in ``[0, K]``, shape ``(*)``.

    Raises:
        TypeError: a non-floating tensor.
        ValueError: ``thresholds`` is not one-dimensional.

    Examples:
        >>> level_codes(torch.tensor([-0.3, 0.01, 0.2]), torch.tensor([-0.05, 0.05]))
        tensor([0, 1, 2])
    """
    fn = "level_codes"
    check_floating(x, "x", fn=fn)
    check_floating(thresholds, "thresholds", fn=fn)
    check_shape(thresholds, "K", "thresholds", fn=fn)
    _check_scalar(beta, "beta", fn=fn)
    wd = _work_dtype(x)
    z = (x.to(wd) * _as(beta, x, wd)).unsqueeze(-1) >= thresholds.to(wd)
    return z.sum(-1)


def ste_quantize(x: Tensor, values: Tensor, scale: ScalarLike = 1.0) -> Tensor:
    """Nearest-level quantization with a clipped straight-through gradient (the STE/DoReFa baseline).

    ``y = scale * Y[argmin_k |x / scale - Y_k|]``; the backward pass is the identity inside
    ``[scale * Y_0, scale * Y_K]`` and zero outside.

    Args:
        x: tensor to quantize, shape ``(*)``.
        values: sorted levels (any real values), shape ``(L,)``, ``L >= 2``.
        scale: positive step scale.

    Returns:
        The quantized tensor, shape ``(*)``.

    Raises:
        TypeError: a non-floating tensor.
        ValueError: ``values`` is not one-dimensional with at least two entries, or ``scale`` is not > 0.

    Examples:
        >>> ste_quantize(torch.tensor([-0.8, 0.2, 3.0]), torch.tensor([-1.0, 0.0, 1.0]))
        tensor([-1.,  0.,  1.])
    """
    fn = "ste_quantize"
    check_floating(x, "x", fn=fn)
    check_floating(values, "values", fn=fn)
    check_shape(values, "L", "values", fn=fn)
    if values.shape[0] < 2:
        raise ValueError(f"{fn}: 'values' needs at least 2 levels; got {values.shape[0]}")
    _check_scalar(scale, "scale", fn=fn, positive=True)
    v = values.to(x.dtype)
    xn = x / scale
    xc = torch.maximum(torch.minimum(xn, v[-1]), v[0])
    mids = (v[1:] + v[:-1]) / 2
    q = v[torch.bucketize(xc.detach(), mids)]
    return (xc + (q - xc).detach()) * scale


def kmeans_1d(x: Tensor, k: int, *, iters: int = 50, max_samples: int = 200_000) -> Tensor:
    """Deterministic 1-D k-means (Lloyd) with quantile initialisation.

    Args:
        x: values, any shape (flattened).
        k: number of clusters (>= 1).
        iters: Lloyd iterations.
        max_samples: the sorted values are sub-sampled with a fixed stride above this size.

    Returns:
        Sorted cluster centres, shape ``(k,)``, dtype of ``x`` (empty clusters keep their previous centre).

    Raises:
        TypeError: ``x`` is not floating point.
        ValueError: ``k < 1`` or ``x`` is empty.

    Examples:
        >>> kmeans_1d(torch.tensor([0.0, 0.1, 5.0, 5.1]), 2)
        tensor([0.0500, 5.0500])
    """
    fn = "kmeans_1d"
    check_floating(x, "x", fn=fn)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{fn}: 'k' must be an integer >= 1; got {k!r}")
    if x.numel() == 0:
        raise ValueError(f"{fn}: 'x' is empty")
    v = x.detach().reshape(-1).to(torch.float64).sort().values
    if v.numel() > max_samples:
        stride = math.ceil(v.numel() / max_samples)
        v = v[stride // 2 :: stride].contiguous()
    qs = (torch.arange(k, dtype=v.dtype, device=v.device) + 0.5) / k
    centres = torch.quantile(v, qs) if v.numel() > 1 else v.repeat(k)
    for _ in range(iters):
        bounds = (centres[1:] + centres[:-1]) / 2
        idx = torch.bucketize(v, bounds)
        sums = torch.zeros_like(centres).scatter_add_(0, idx, v)
        counts = torch.zeros_like(centres).scatter_add_(0, idx, torch.ones_like(v))
        new = torch.where(counts > 0, sums / counts.clamp_min(1), centres).sort().values
        if torch.equal(new, centres):
            break
        centres = new
    return centres.to(x.dtype)


def init_parameters(
    x: Tensor, levels: LevelsLike, *, init: str = "paper", margin: float = 0.05
) -> tuple[float, float, Tensor]:
    """The paper's initialisation of ``(alpha, beta, thresholds)`` from a pretrained tensor (Sec. 3.3).

    ``beta = 5 p / (4 q)`` with ``p = max|Y|`` and ``q = max|x|`` (inputs sit in the sigmoid's linear region),
    ``alpha = 1 / beta``. Thresholds (in the ``beta``-scaled domain):

    * ``init="paper"``: binary ``{-1, 1}`` -> ``b = 0``; ternary ``{-1, 0, 1}`` -> ``b = -margin, +margin``
      (TWN-like); any other set -> 1-D k-means of ``beta * x`` into ``|Y|`` clusters, ``b_i`` = midpoint of
      consecutive sorted centres, then (signed sets containing 0) the two thresholds around level 0 are forced
      to ``-margin, +margin``.
    * ``init="kmeans"``: k-means midpoints for every set, nothing forced.
    * ``init="midpoint"``: linear thresholds ``(Y_i + Y_{i+1}) / 2`` (round to the nearest level).

    Args:
        x: the pretrained weights, or calibration activations, any shape.
        levels: the level set.
        init: ``"paper"``, ``"kmeans"`` or ``"midpoint"``.
        margin: half-width of the zero bin for ``"paper"``.

    Returns:
        ``(alpha, beta, thresholds)``: two floats and sorted thresholds of shape ``(K,)``, dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a floating tensor.
        ValueError: unknown ``init``, non-positive ``margin``, ``x`` empty, all zero or not finite.

    Examples:
        >>> a, b, t = init_parameters(torch.tensor([-2.0, 0.5, 1.0]), "ternary")
        >>> round(b, 4), t
        (0.625, tensor([-0.0500,  0.0500]))
    """
    fn = "init_parameters"
    check_tensor(x, "x", fn=fn)
    check_floating(x, "x", fn=fn)
    lv = Levels.parse(levels)
    if init not in ("paper", "kmeans", "midpoint"):
        raise ValueError(f"{fn}: 'init' must be 'paper', 'kmeans' or 'midpoint'; got {init!r}")
    if not (isinstance(margin, (int, float)) and margin > 0):
        raise ValueError(f"{fn}: 'margin' must be > 0; got {margin!r}")
    if x.numel() == 0:
        raise ValueError(f"{fn}: 'x' is empty")
    xd = x.detach().to(torch.float64)
    if not bool(torch.isfinite(xd).all()):
        raise ValueError(f"{fn}: 'x' must be finite")
    q = float(xd.abs().max())
    if q == 0.0:
        raise ValueError(f"{fn}: 'x' is all zeros; cannot set beta = 5 p / (4 max|x|)")
    beta = 5.0 * lv.max_abs / (4.0 * q)
    alpha = 1.0 / beta
    vals = torch.tensor(lv.values, dtype=torch.float64)
    if init == "midpoint":
        thr = (vals[1:] + vals[:-1]) / 2
    elif init == "paper" and lv.values == (-1, 1):
        thr = torch.zeros(1, dtype=torch.float64)
    elif init == "paper" and lv.values == (-1, 0, 1):
        thr = torch.tensor([-margin, margin], dtype=torch.float64)
    else:
        centres = kmeans_1d(xd * beta, lv.n + 1)
        thr = (centres[1:] + centres[:-1]) / 2
        j = lv.values.index(0) if 0 in lv.values else -1
        if init == "paper" and 0 < j < lv.n:
            thr[j - 1] = -margin
            thr[j] = margin
        thr = thr.sort().values
    return alpha, beta, thr.to(device=x.device, dtype=x.dtype)
