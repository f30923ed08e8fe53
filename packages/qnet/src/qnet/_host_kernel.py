"""Eager CPU kernel of :func:`qnet.functional.soft_quantize` for fixed thresholds.

The soft quantizer ``y = alpha (sum_i s_i sigmoid(T (beta x - b_i)) - o)`` is written with
``sigmoid(z) = (1 + tanh(z / 2)) / 2``: one transcendental per level (cheaper than ``sigmoid`` on CPU), and with
the scalars as Python numbers every per-level step is one fused ATen call over a cache-sized chunk:

* ``th_i = tanh(T (beta x - b_i) / 2)``,
* ``y = alpha (S / 2 - o + sum_i s_i th_i / 2)`` with ``S = sum_i s_i``,
* the exact derivative ``g' = dy/dx = alpha beta T / 4 (S - sum_i s_i th_i^2)``.

Forward saves ``x`` and ``y`` (kept alive by the neighbouring layers in a network anyway) and ``g'``; backward is
``dx = gy g'``, ``dbeta = <dx, x> / beta``, ``dalpha = <gy, y> / alpha``, one pass over the chunks, with exact
fallbacks when ``alpha`` or ``beta`` is zero. Under ``torch.compile`` the general kernel is traced instead,
on whole tensors: inductor fuses its sigmoids with the neighbouring layers, which is faster than calling this
kernel as an opaque operator (and inductor's CPU ``tanh`` is not vectorised, so tracing this one would be slow).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _native
from ._checks import _compiling
from ._chunking import chunk_size, chunks, total

ScalarLike = float | Tensor


class Constants(NamedTuple):
    """The soft quantizer's scalars as Python numbers."""

    thresholds: list[float]
    scales: list[float]
    temperature: float
    offset: float
    grad_temperature: float | None
    alpha: float
    beta: float

    @property
    def gscale(self) -> float:
        # g' is stored scaled by alpha beta T (dx = gy g' in one pass); by T when alpha beta is zero
        a, b, t = self.alpha, self.beta, self.temperature
        return a * b * t if a * b != 0.0 else t


def serves(x: Tensor) -> bool:
    """Whether ``x`` (with fixed thresholds) takes this kernel: CPU float32/float64, outside torch.compile."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not _compiling()


def _scalar(v: ScalarLike) -> float:
    return float(v.detach()) if isinstance(v, Tensor) else float(v)


def constants(
    thresholds: Tensor,
    scales: Tensor,
    temperature: ScalarLike,
    alpha: ScalarLike,
    beta: ScalarLike,
    offset: ScalarLike,
    grad_temperature: ScalarLike | None,
) -> Constants:
    """Read the scalars (one host read each; tensors must be real, not traced)."""
    return Constants(
        thresholds=[float(v) for v in thresholds.detach().tolist()],
        scales=[float(v) for v in scales.detach().tolist()],
        temperature=_scalar(temperature),
        offset=_scalar(offset),
        grad_temperature=None if grad_temperature is None else _scalar(grad_temperature),
        alpha=_scalar(alpha),
        beta=_scalar(beta),
    )


def check_range(c: Constants, dtype: torch.dtype) -> None:
    """Raise before any work when a coefficient the kernel passes as a scalar of ``dtype`` is not finite.

    The per-level coefficients are products such as ``alpha beta T s_i``; once a training run has blown up
    ``alpha`` or ``beta`` they leave ``dtype``'s range (``float(1e39)`` has no float32 value), which would
    otherwise surface as an anonymous ATen conversion error or as silent infs in every activation.
    """
    big = torch.finfo(dtype).max
    s_max = max((abs(v) for v in c.scales), default=0.0)
    b_max = max((abs(v) for v in c.thresholds), default=0.0)
    t_max = max(c.temperature, c.grad_temperature or 0.0)
    checks = (
        ("alpha", c.alpha),
        ("beta", c.beta),
        ("alpha * beta * temperature * max|scales|", c.gscale * s_max),
        ("alpha * max|scales|", c.alpha * s_max),
        ("beta * temperature", c.beta * t_max),
        ("temperature * max|thresholds|", t_max * b_max),
    )
    for name, v in checks:
        if not (math.isfinite(v) and abs(v) <= big):
            raise FloatingPointError(
                f"soft_quantize: {name} = {v:.3g} is outside the range of {dtype} (|v| <= {big:.3g}); "
                f"got alpha={c.alpha:.3g}, beta={c.beta:.3g}, temperature={c.temperature:.3g}: the quantizer's "
                "scales have diverged (lower the learning rate, clip gradients, or cap the temperature)"
            )


def forward(x: Tensor, c: Constants, *, need_g: bool, unscaled: bool = False) -> tuple[Tensor, Tensor | None]:
    """``y`` (flat) and, with ``need_g``, ``g' = gscale * sum_i s_i sig_i (1 - sig_i)`` (flat).

    ``unscaled``: return ``y / alpha`` (the derivative of ``y`` in ``alpha``) instead of ``y``.

    Raises:
        FloatingPointError: a scalar coefficient is outside ``x.dtype``'s range (see :func:`check_range`).
    """
    check_range(c, x.dtype)
    a, b, t, tg = c.alpha, c.beta, c.temperature, c.grad_temperature
    gscale = c.gscale
    # alpha is folded into the per-level coefficients: no separate scaling pass
    ya = 1.0 if unscaled else a
    native = _native.module()
    if native is not None:
        # sigmoid form in one fused pass: sig_i = sigmoid(T beta x - T b_i)
        y, g = native.forward(
            x.reshape(-1).contiguous(),
            [-t * v for v in c.thresholds],
            [ya * v for v in c.scales],
            [gscale * v for v in c.scales],
            b * t,
            -ya * c.offset,
            need_g,
            b * (t if tg is None else tg),
            [] if tg is None else [-tg * v for v in c.thresholds],
        )
        return y, g
    k = len(c.scales)
    # every 0-dim constant in one tensor: the tanh shifts -T b_i / 2 (and at T_g), y's and g's offsets
    shifts = [-0.5 * t * v for v in c.thresholds]
    shifts_g = shifts if tg is None else [-0.5 * tg * v for v in c.thresholds]
    s_total = sum(c.scales)
    consts = torch.tensor(
        [*shifts, *shifts_g, ya * (0.5 * s_total - c.offset), 0.25 * gscale * s_total],
        dtype=x.dtype,
        device=x.device,
    ).unbind()
    nb, nbg, base0, g0 = consts[:k], consts[k : 2 * k], consts[2 * k], consts[2 * k + 1]
    y_coef = [0.5 * ya * v for v in c.scales]
    g_coef = [-0.25 * gscale * v for v in c.scales]
    h, hg = 0.5 * b * t, 0.5 * b * (t if tg is None else tg)
    xf = x.reshape(-1)
    y = torch.empty_like(xf)
    g = torch.empty_like(xf) if need_g else None
    cs = chunk_size(xf)
    buf = torch.empty(cs, dtype=x.dtype, device=x.device)
    g_parts: Any = itertools.repeat(None) if g is None else chunks(g, cs)
    for xc, yc, gc in zip(chunks(xf, cs), chunks(y, cs), g_parts):
        th = buf if xc.numel() == cs else buf[: xc.numel()]
        for i in range(k):
            torch.add(nb[i], xc, alpha=h, out=th).tanh_()
            if i == 0:
                torch.add(base0, th, alpha=y_coef[0], out=yc)
            else:
                yc.add_(th, alpha=y_coef[i])
            if gc is not None and tg is None:
                _accumulate_g(gc, th, g0, g_coef[i], first=i == 0)
        if gc is not None and tg is not None:
            # surrogate gradient: the sigmoids of g' at T_g (the factor T kept in gscale)
            for i in range(k):
                torch.add(nbg[i], xc, alpha=hg, out=th).tanh_()
                _accumulate_g(gc, th, g0, g_coef[i], first=i == 0)
    return y, g


def _accumulate_g(gc: Tensor, th: Tensor, g0: Tensor, value: float, *, first: bool) -> None:
    """``gc (+)= value * th^2`` (``g0 + value th^2`` on the first level): builds ``g' = k (S - sum s th^2) / 4``."""
    if first:
        torch.addcmul(g0, th, th, value=value, out=gc)
    else:
        gc.addcmul_(th, th, value=value)


def backward(
    gy: Tensor,
    x: Tensor,
    y: Tensor,
    g: Tensor | None,
    c: Constants,
    *,
    need_x: bool,
    need_a: bool,
    need_b: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(dx, dalpha, dbeta)`` given the forward's ``y`` and ``g'`` (flat or shaped like ``x``).

    ``dx = rx gy g'``, ``dalpha = <gy, y> / alpha``, ``dbeta = <gy g', x> alpha T / gscale``: the products and
    dot products come from the native kernel when enabled, else from one pass over cache-sized chunks.
    """
    a, b, t = c.alpha, c.beta, c.temperature
    gscale = c.gscale
    # dy/dalpha = y / alpha; when alpha is zero, y carries no information: recompute the unscaled sum
    yb = None
    if need_a:
        yb = forward(x, c, need_g=False, unscaled=True)[0] if a == 0.0 else y.reshape(-1)
    need_dot_x = need_b and g is not None
    rx = a * b * t / gscale  # 1 unless alpha beta == 0
    gf = None if g is None else g.reshape(-1)
    native = _native.module()
    if native is not None:
        gx, dot_x, dot_y = native.backward(
            gy.reshape(-1).contiguous(),
            x.reshape(-1).contiguous(),
            None if yb is None else yb.contiguous(),
            None if gf is None else gf.contiguous(),
            rx,
            need_x,
            need_dot_x,
        )
    else:
        gx, dot_x, dot_y = _products_chunked(gy, x, yb, gf, rx, need_x=need_x, need_dot_x=need_dot_x)
    galpha = None if yb is None else (dot_y if a == 0.0 else dot_y / a).to(x.dtype)
    # dy/dbeta = alpha T x g = x (dy/dx) / beta; with g' = gscale g: <gy g', x> alpha T / gscale
    gbeta = (dot_x * (a * t / gscale)).to(x.dtype) if need_dot_x else None
    return None if gx is None else gx.view_as(x), galpha, gbeta


def _products_chunked(
    gy: Tensor, x: Tensor, yb: Tensor | None, g: Tensor | None, rx: float, *, need_x: bool, need_dot_x: bool
) -> tuple[Tensor | None, Tensor, Tensor]:
    """``(rx gy g', <gy g', x>, <gy, yb>)`` in one pass over cache-sized chunks (flat ``yb`` and ``g'``).

    Each chunk of ``gy`` is read once and ``u = gy g'`` stays in cache for ``<u, x>``. Dot products not asked
    for (``yb`` None, ``need_dot_x`` False) come back as zeros, ``dx`` as None unless ``need_x``.
    """
    gyf, xf = gy.reshape(-1), x.reshape(-1)
    cs = chunk_size(xf)
    gx = torch.empty_like(xf) if need_x else None
    buf = torch.empty(cs, dtype=xf.dtype, device=xf.device) if need_dot_x and gx is None else None
    dots_y: list[Tensor] = []
    dots_x: list[Tensor] = []
    none = itertools.repeat(None)
    need_u = (gx is not None or buf is not None) and g is not None
    parts = zip(
        chunks(gyf, cs),
        chunks(yb, cs) if yb is not None else none,
        chunks(g, cs) if need_u and g is not None else none,
        chunks(xf, cs),
        chunks(gx, cs) if gx is not None else itertools.repeat(buf),
    )
    for gyc, yc, gc, xc, oc in parts:
        if yc is not None:
            dots_y.append(torch.dot(gyc, yc))
        if gc is None or oc is None:
            continue
        u = torch.mul(gyc, gc, out=oc if oc.numel() == gyc.numel() else oc[: gyc.numel()])
        if need_dot_x:
            dots_x.append(torch.dot(u, xc))
        if gx is not None and rx != 1.0:
            u.mul_(rx)
    return (
        gx,
        total(dots_x) if dots_x else xf.new_zeros(()),
        total(dots_y) if dots_y else xf.new_zeros(()),
    )


class SoftQuantizeHost(torch.autograd.Function):
    """Eager autograd wrapper of :func:`forward` / :func:`backward` (first-order: double backward raises)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, alpha: Tensor | None, beta: Tensor | None, c: Constants, grad_enabled: bool
    ) -> Tensor:
        # forward runs with grad disabled: the caller's mode is passed in; under no_grad nothing is saved
        need_x = grad_enabled and ctx.needs_input_grad[0]
        need_a = grad_enabled and alpha is not None and ctx.needs_input_grad[1]
        need_b = grad_enabled and beta is not None and ctx.needs_input_grad[2]
        y, g = forward(x, c, need_g=need_x or need_b)
        ctx.consts = c
        ctx.needs = (need_x, need_a, need_b)
        ctx.shapes = tuple(None if v is None else v.shape for v in (alpha, beta))
        ctx.save_for_backward(x, y, g)
        return y.view_as(x)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, y, g = ctx.saved_tensors
        need_x, need_a, need_b = ctx.needs
        gx, galpha, gbeta = backward(gy, x, y, g, ctx.consts, need_x=need_x, need_a=need_a, need_b=need_b)
        return (
            gx,
            None if galpha is None else galpha.reshape(ctx.shapes[0]),
            None if gbeta is None else gbeta.reshape(ctx.shapes[1]),
            None,
            None,
        )


def soft_quantize(x: Tensor, c: Constants, alpha: ScalarLike, beta: ScalarLike) -> Tensor:
    """The soft quantizer of ``x`` with the scalars ``c`` (read by :func:`constants` from ``alpha``, ``beta``...)."""
    # gradients flow back through .to() to parameters kept on another device (a no-op otherwise)
    a_t = alpha.to(x.device) if isinstance(alpha, Tensor) else None
    b_t = beta.to(x.device) if isinstance(beta, Tensor) else None
    return SoftQuantizeHost.apply(x, a_t, b_t, c, torch.is_grad_enabled())
