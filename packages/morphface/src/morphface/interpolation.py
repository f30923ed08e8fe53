"""Interpolation of coefficients and latents (linear or spherical)."""

from __future__ import annotations

import torch

from ._checks import check_floating, check_shape

__all__ = ["interpolate"]


def interpolate(
    a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float, *, mode: str = "linear"
) -> torch.Tensor:
    """Interpolate between two coefficient / latent vectors.

    ``linear``: ``(1 - t) a + t b``. ``slerp``: spherical interpolation of the directions along the last
    dimension with linearly interpolated norms (the usual choice for Gaussian latents, which keeps the
    interpolants at a typical radius).

    Args:
        a: (..., D) start.
        b: (..., D) end, same shape.
        t: a float or a (T,) tensor of weights.
        mode: ``"linear"`` or ``"slerp"``.

    Returns:
        (..., D) for a float ``t``, (T, ..., D) for a tensor ``t``.

    Raises:
        TypeError: non-tensor or non-float ``a`` / ``b``, or a ``t`` that is neither a number nor a tensor.
        ValueError: shape mismatch or unknown mode.

    Examples:
        >>> interpolate(torch.zeros(2), torch.ones(2), torch.tensor([0.0, 0.5])).tolist()
        [[0.0, 0.0], [0.5, 0.5]]
    """
    fn = "interpolate"
    check_floating(a, "a", fn=fn)
    check_floating(b, "b", fn=fn)
    if a.shape != b.shape:
        raise ValueError(
            f"{fn}: 'a' and 'b' must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if mode not in ("linear", "slerp"):
        raise ValueError(f"{fn}: 'mode' must be 'linear' or 'slerp'; got {mode!r}")
    if isinstance(t, bool) or not isinstance(t, (int, float, torch.Tensor)):
        raise TypeError(f"{fn}: 't' must be a float or a (T,) tensor; got {type(t).__name__}")
    scalar = not isinstance(t, torch.Tensor)
    tt = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(-1)
    if isinstance(t, torch.Tensor):
        check_shape(t.reshape(-1), "T", "t", fn=fn)
    w = tt.view(-1, *([1] * a.ndim))
    if mode == "linear":
        out = (1 - w) * a + w * b
    else:
        na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
        ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
        omega = torch.acos((ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
        so = torch.sin(omega)
        close = so < 1e-6
        wa = torch.where(close, 1 - w, torch.sin((1 - w) * omega) / so)
        wb = torch.where(close, w, torch.sin(w * omega) / so)
        direction = wa * ua + wb * ub
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out = direction * ((1 - w) * na + w * nb)
    return out[0] if scalar else out
