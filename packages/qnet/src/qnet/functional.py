"""Functional core of Quantization Networks (Yang et al., CVPR 2019): soft/hard quantization and init.

Shape letters: ``K`` = number of thresholds (steps) ``n = |Y| - 1``; ``*`` = any shape of the quantized tensor.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _host_kernel
from ._checks import _compiling, check_floating, check_same_device, check_shape, check_tensor
from ._checks import check_finite as _check_finite
from ._chunking import chunk_size
from .levels import Levels, LevelsLike

logger = logging.getLogger(__name__)

__all__ = [
    "hard_quantize",
    "init_parameters",
    "kmeans_1d",
    "level_codes",
    "lsq_quantize",
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
    *,
    grad_temperature: ScalarLike | None = None,
    check_finite: bool = False,
) -> Tensor:
    """Soft quantization: a sum of temperature-scaled sigmoids (Eq. 7 of Yang et al., CVPR 2019).

    ``y = alpha * (sum_i s_i * sigmoid(T * (beta * x - b_i)) - o)``. Gradients are the exact derivative
    (a fused closed-form backward when thresholds and scales are fixed, plain autograd otherwise):
    ``dy/dx = alpha beta T sum_i s_i sig_i (1 - sig_i)``, ``dy/dalpha = y / alpha``,
    ``dy/dbeta = alpha T x sum_i s_i sig_i (1 - sig_i)``, ``dy/db_i = -alpha T s_i sig_i (1 - sig_i)``.
    With fixed thresholds, float32/float64 CPU tensors (outside ``torch.compile``) take a kernel written with
    ``sig = (1 + tanh(z / 2)) / 2``: the same function and exact derivative in fewer memory passes (values
    agree with the sigmoid form to float rounding). Where it can be built (AVX2/AVX-512 CPU and a C++
    compiler), those tensors take a fused C++ kernel instead (one memory pass per direction; compiled once on
    first use and cached; ``QNET_NATIVE_KERNEL=0`` switches it off, ``=1`` requires it; see the package README).

    Convention:
        Half-precision inputs are computed in float32 and cast back, so any finite temperature (e.g. 1e6)
        gives finite values and gradients.

        ``grad_temperature`` (default ``None``: the exact derivative) replaces ``sig_i (1 - sig_i)`` in the
        gradients of ``x`` and ``beta`` by its value at temperature ``T_g``, keeping the factor ``T``:
        ``dy/dx = alpha beta T sum_i s_i sig'_i (1 - sig'_i)`` with ``sig'_i = sigmoid(T_g (beta x - b_i))``.
        This is the official code's surrogate for binary weights (``T_g = 1``, "set T = 1 when train binary
        model"): every weight keeps a gradient (a scaled straight-through estimator) instead of only those
        within ``~1 / (beta T)`` of a threshold. The forward value is unchanged.

    Args:
        x: tensor to quantize, shape ``(*)``, floating point.
        thresholds: the biases ``b_i`` in the ``beta``-scaled domain, shape ``(K,)``.
        scales: the step heights ``s_i``, shape ``(K,)``.
        temperature: ``T > 0`` (float or one-element tensor).
        alpha: output scale (float or one-element tensor, may require grad).
        beta: input scale (float or one-element tensor, may require grad).
        offset: ``o``, subtracted before scaling by ``alpha``.
        grad_temperature: ``T_g > 0`` of the surrogate gradient (see Convention), or ``None`` (exact).
        check_finite: opt-in check that ``x`` holds no NaN/inf (one device sync per call, so off by default
            on this training hot path; skipped under ``torch.compile``). Without it NaN inputs give NaN
            outputs.

    Returns:
        The soft-quantized tensor, shape ``(*)``, dtype of ``x``.

    Raises:
        TypeError: a non-floating tensor or a non-scalar parameter.
        ValueError: shapes disagree, devices differ, ``temperature`` or ``grad_temperature`` is not finite
            and positive, ``grad_temperature`` is combined with thresholds/scales that require grad, or
            (with ``check_finite=True``) ``x`` holds NaN/inf.
        FloatingPointError: on the CPU kernel, ``alpha``, ``beta`` or a product of the scalars (such as
            ``alpha beta T s_i``, the slope at a threshold) is outside ``x``'s dtype range, as after a
            training run has diverged.

    Examples:
        >>> x = torch.tensor([-1.0, 0.0, 1.0])
        >>> soft_quantize(x, torch.tensor([0.0]), torch.tensor([2.0]), 1e6, offset=1.0)
        tensor([-1.,  0.,  1.])
    """
    fn = "soft_quantize"
    _check_steps(x, thresholds, scales, fn=fn)
    if check_finite:
        _check_finite(x, "x", fn=fn)
    _check_scalar(temperature, "temperature", fn=fn, positive=True)
    _check_scalar(alpha, "alpha", fn=fn)
    _check_scalar(beta, "beta", fn=fn)
    _check_scalar(offset, "offset", fn=fn)
    learn_steps = thresholds.requires_grad or scales.requires_grad
    if grad_temperature is not None:
        _check_scalar(grad_temperature, "grad_temperature", fn=fn, positive=True)
        if learn_steps:
            raise ValueError(
                f"{fn}: 'grad_temperature' needs fixed thresholds and scales; got tensors that require grad"
            )
    if not learn_steps and _HOST_KERNEL and _host_kernel.serves(x):
        c = _host_kernel.constants(thresholds, scales, temperature, alpha, beta, offset, grad_temperature)
        return _host_kernel.soft_quantize(x, c, alpha, beta)
    wd = _work_dtype(x)
    xw = _upcast(x, wd)
    a, b, t, o = _as(alpha, x, wd), _as(beta, x, wd), _as(temperature, x, wd), _as(offset, x, wd)
    if not learn_steps:
        # Fused path: loops over the K steps without materialising (*, K) tensors and saves only three
        # tensors of x's size; its backward is the same closed-form exact derivative autograd would give.
        tg = None if grad_temperature is None else _as(grad_temperature, x, wd)
        return _SoftQuantize.apply(xw, thresholds.to(wd), scales.to(wd), t, a, b, o, tg).to(x.dtype)
    z = (xw * b).unsqueeze(-1) - _upcast(thresholds, wd)
    sig = torch.sigmoid(z * t)
    y = (sig * _upcast(scales, wd)).sum(-1) - o
    return (y * a).to(x.dtype)


# CPU float32/float64 inputs with fixed thresholds take the host kernel (switch kept for tests)
_HOST_KERNEL = True

# ``grad * (1 - out) * out`` in one kernel (with ``grad`` a 0-dim step height, broadcast)
_sigmoid_grad = torch.ops.aten.sigmoid_backward.grad_input


class _SoftQuantize(torch.autograd.Function):
    """``alpha * (sum_i s_i sigmoid(T (beta x - b_i)) - o)`` with its exact gradient in closed form.

    Forward writes the output, ``base = sum_i s_i sig_i - o`` and ``g = sum_i s_i sig_i (1 - sig_i)`` (both
    saved, x-sized; with ``grad_temperature`` the sigmoids of ``g`` are taken at that temperature); no
    ``(*, K)`` tensor is formed and the two per-level temporaries are chunk-sized.
    Backward: ``dx = gy g alpha beta T``, ``dalpha = <gy, base>``, ``dbeta = <gy g, x> alpha T``; it is
    first-order only (double backward raises; pass thresholds requiring grad for the plain autograd path).
    """

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
        grad_temperature: Tensor | float | None = None,
    ) -> Tensor:
        bscale = beta * temperature
        bt = (thresholds * temperature).unbind()
        sc = scales.unbind()
        # with a surrogate temperature, g comes from a second pass at that temperature
        own_g = grad_temperature is None
        bscale_g: Tensor | float = 0.0
        bt_g: tuple[Tensor, ...] = ()
        if grad_temperature is not None:
            bscale_g = beta * grad_temperature
            bt_g = (thresholds * grad_temperature).unbind()
        k = len(bt)
        xf = x.reshape(-1)
        n = xf.numel()
        base = torch.empty_like(xf)
        g = torch.empty_like(xf)
        y = torch.empty_like(xf)
        cs = chunk_size(xf, compiling=_compiling())
        xs_buf = torch.empty(cs, dtype=x.dtype, device=x.device)
        sig_buf = torch.empty(cs, dtype=x.dtype, device=x.device)
        for lo in range(0, n, cs):
            hi = min(n, lo + cs)
            xs = torch.mul(xf[lo:hi], bscale, out=xs_buf[: hi - lo])
            sig = sig_buf[: hi - lo]
            acc, gc = base[lo:hi], g[lo:hi]
            # per level: sub -> sigmoid -> accumulate s_i sig_i -> s_i sig_i (1 - sig_i) -> accumulate;
            # the last level reuses ``xs``
            for i in range(k):
                if i == k - 1:
                    sig = xs.sub_(bt[i])
                else:
                    torch.sub(xs, bt[i], out=sig)
                sig.sigmoid_()
                if i == 0:
                    torch.mul(sig, sc[0], out=acc)
                else:
                    acc.addcmul_(sig, sc[i])
                if not own_g:
                    continue
                if i == 0:
                    _sigmoid_grad(sc[0], sig, grad_input=gc)
                else:
                    _sigmoid_grad(sc[i], sig, grad_input=sig)
                    gc.add_(sig)
            if not own_g:
                xs = torch.mul(xf[lo:hi], bscale_g, out=xs_buf[: hi - lo])
                sig = sig_buf[: hi - lo]
                for i in range(k):
                    sig = torch.sub(xs, bt_g[i], out=sig).sigmoid_()
                    if i == 0:
                        _sigmoid_grad(sc[0], sig, grad_input=gc)
                    else:
                        gc.add_(_sigmoid_grad(sc[i], sig, grad_input=sig))
            acc.sub_(offset)
            torch.mul(acc, alpha, out=y[lo:hi])
        tens = [v if isinstance(v, Tensor) else None for v in (temperature, alpha, beta)]
        ctx.scalars = [None if isinstance(v, Tensor) else v for v in (temperature, alpha, beta)]
        ctx.save_for_backward(x, g, base, *[v for v in tens if v is not None])
        ctx.tensor_mask = [v is not None for v in tens]
        return y.view_as(x)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, g, base, *rest = ctx.saved_tensors
        it = iter(rest)
        t, a, b = (next(it) if m else sc for m, sc in zip(ctx.tensor_mask, ctx.scalars))
        need_x, need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[4], ctx.needs_input_grad[5]
        gyf, xf = gy.reshape(-1), x.reshape(-1)
        n = xf.numel()
        cs = chunk_size(xf, compiling=_compiling())
        gx = torch.empty_like(xf) if need_x else None
        buf = None if need_x or not need_b else torch.empty(cs, dtype=xf.dtype, device=xf.device)
        galpha = xf.new_zeros(()) if need_a else None
        gbeta = xf.new_zeros(()) if need_b else None
        abt = a * b * t
        for lo in range(0, n, cs):
            hi = min(n, lo + cs)
            # dot products instead of (gy * ...).sum(): one pass, no temporary
            if galpha is not None:
                galpha += torch.dot(gyf[lo:hi], base[lo:hi])
            if gx is None and buf is None:
                continue
            gg = torch.mul(gyf[lo:hi], g[lo:hi], out=gx[lo:hi] if gx is not None else buf[: hi - lo])  # type: ignore[index]
            if gbeta is not None:
                gbeta += torch.dot(gg, xf[lo:hi])
            if gx is not None:
                gg.mul_(abt)
        return (
            None if gx is None else gx.view_as(x),
            None,
            None,
            None,
            None if galpha is None else galpha.reshape(a.shape),
            None if gbeta is None else (gbeta * (a * t)).reshape(b.shape),
            None,
            None,
        )


def hard_quantize(
    x: Tensor,
    thresholds: Tensor,
    scales: Tensor,
    alpha: ScalarLike = 1.0,
    beta: ScalarLike = 1.0,
    offset: ScalarLike = 0.0,
    *,
    check_finite: bool = False,
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
        check_finite: opt-in NaN/inf check of ``x`` (skipped under ``torch.compile``); without it a NaN
            input maps to the lowest level silently.

    Returns:
        The quantized tensor, shape ``(*)``, dtype of ``x``.

    Raises:
        TypeError: a non-floating tensor or a non-scalar parameter.
        ValueError: shapes disagree, devices differ, or (``check_finite=True``) ``x`` holds NaN/inf.

    Examples:
        >>> hard_quantize(torch.tensor([-0.3, 0.01, 0.2]), torch.tensor([-0.05, 0.05]), torch.ones(2), offset=1.0)
        tensor([-1.,  0.,  1.])
    """
    fn = "hard_quantize"
    _check_steps(x, thresholds, scales, fn=fn)
    if check_finite:
        _check_finite(x, "x", fn=fn)
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


def ste_quantize(x: Tensor, values: Tensor, scale: ScalarLike = 1.0, *, check_finite: bool = False) -> Tensor:
    """Nearest-level quantization with a clipped straight-through gradient (the STE/DoReFa baseline).

    ``y = scale * Y[argmin_k |x / scale - Y_k|]``; the backward pass is the identity inside
    ``[scale * Y_0, scale * Y_K]`` and zero outside.

    Args:
        x: tensor to quantize, shape ``(*)``.
        values: sorted levels (any real values), shape ``(L,)``, ``L >= 2``.
        scale: positive step scale.
        check_finite: opt-in NaN/inf check of ``x`` (skipped under ``torch.compile``).

    Returns:
        The quantized tensor, shape ``(*)``.

    Raises:
        TypeError: a non-floating tensor.
        ValueError: ``values`` is not one-dimensional with at least two entries, ``scale`` is not > 0, or
            (``check_finite=True``) ``x`` holds NaN/inf.

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
    if check_finite:
        _check_finite(x, "x", fn=fn)
    v = values.to(x.dtype)
    xn = x / scale
    xc = torch.maximum(torch.minimum(xn, v[-1]), v[0])
    mids = (v[1:] + v[:-1]) / 2
    q = v[torch.bucketize(xc.detach(), mids)]
    return (xc + (q - xc).detach()) * scale


def lsq_quantize(
    x: Tensor, step: Tensor, values: Tensor, grad_scale: float = 1.0, *, check_finite: bool = False
) -> Tensor:
    """Learned step size quantization (LSQ, Esser et al., ICLR 2020, Eqs. 1-3 and Sec. 2.2).

    ``y = s * q(clip(x / s, Y_0, Y_K))`` where ``q`` rounds to the nearest level of ``values`` (for the
    integer grid ``{-Q_N, ..., Q_P}`` this is the paper's ``round``). Gradients (straight-through for the
    rounding):

    - ``dy/dx = 1`` if ``Y_0 <= x / s <= Y_K``, else ``0``;
    - ``dy/ds = g * (q(x / s) - x / s)`` inside, ``g * Y_0`` below (``-Q_N``), ``g * Y_K`` above (``Q_P``),
      with the gradient scale ``g = grad_scale`` (the paper: ``1 / sqrt(N * Q_P)``).

    Convention:
        ``values`` holds the integer levels (``-Q_N ... Q_P``); for a non-uniform set (e.g. ``pm4``) ``q`` is
        the nearest level, a generalisation of the paper's uniform grid (documented deviation).

    Args:
        x: tensor to quantize, shape ``(*)``, floating point.
        step: the learned step size ``s > 0``, a one-element tensor (may require grad).
        values: sorted integer levels, shape ``(L,)``, ``L >= 2``.
        grad_scale: ``g``, multiplies the gradient of ``step`` only (the forward value is unchanged).
        check_finite: opt-in NaN/inf check of ``x`` (skipped under ``torch.compile``).

    Returns:
        The quantized tensor, shape ``(*)``, dtype of ``x``: ``step`` times a level.

    Raises:
        TypeError: a non-floating tensor.
        ValueError: ``step`` is not a single element, ``values`` is not ``(L,)`` with ``L >= 2``,
            ``grad_scale`` is not > 0, or (``check_finite=True``) ``x`` holds NaN/inf.

    Examples:
        >>> lsq_quantize(torch.tensor([-0.8, 0.2, 0.26, 3.0]), torch.tensor(0.5), torch.tensor([-1.0, 0.0, 1.0]))
        tensor([-0.5000,  0.0000,  0.5000,  0.5000])
    """
    fn = "lsq_quantize"
    check_floating(x, "x", fn=fn)
    check_floating(step, "step", fn=fn)
    check_floating(values, "values", fn=fn)
    if step.numel() != 1:
        raise ValueError(f"{fn}: 'step' must be a one-element tensor; got shape {tuple(step.shape)}")
    check_shape(values, "L", "values", fn=fn)
    if values.shape[0] < 2:
        raise ValueError(f"{fn}: 'values' needs at least 2 levels; got {values.shape[0]}")
    if not (isinstance(grad_scale, (int, float)) and not isinstance(grad_scale, bool) and grad_scale > 0):
        raise ValueError(f"{fn}: 'grad_scale' must be a float > 0; got {grad_scale!r}")
    if check_finite:
        _check_finite(x, "x", fn=fn)
    s = step.reshape(()).to(x.dtype)
    sg = (s - s * grad_scale).detach() + s * grad_scale  # value s, gradient scaled by g
    v = values.to(x.dtype)
    xs = x / sg
    xc = torch.maximum(torch.minimum(xs, v[-1]), v[0])
    q = v[torch.bucketize(xc.detach(), (v[1:] + v[:-1]) / 2)]
    return (xc + (q - xc).detach()) * sg


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
