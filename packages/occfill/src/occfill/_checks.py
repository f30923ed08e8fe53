"""Input validation shared by every public function of ``occfill``.

Each check raises ``TypeError`` or ``ValueError`` naming the function, the argument, what was expected and
what was received. The message is built only on failure, and checks that read tensor values
(``check_range``, ``check_finite``) are skipped while ``torch.compile`` traces, so they cost nothing there.

Shape specs are comma-separated: a letter binds a size (the same letter must match across every tensor
checked with one ``dims`` dict), a number is exact, ``*`` stands for any number of leading dimensions.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "check_finite",
    "check_floating",
    "check_int",
    "check_positive",
    "check_range",
    "check_same_device",
    "check_shape",
    "check_size",
    "check_tensor",
]


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def check_tensor(x: Any, name: str, *, fn: str) -> None:
    """Raise ``TypeError`` unless ``x`` is a ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: '{name}' must be a torch.Tensor; got {type(x).__name__}")


def check_shape(
    x: torch.Tensor, spec: str, name: str, *, fn: str, dims: dict[str, int] | None = None
) -> dict[str, int]:
    """Check ``x`` against ``spec`` (e.g. ``"B,C,H,W"``, ``"*,3"``, ``"N,3"``) and return the bound sizes.

    Args:
        x: the tensor to check.
        spec: comma-separated dimensions; letters bind, digits are exact, a leading ``*`` allows any
            number of extra leading dimensions.
        name: the argument's name, for the message.
        fn: the public function's name, for the message.
        dims: sizes bound by earlier checks of the same call; updated in place and returned.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: wrong number of dimensions or a size mismatch.
    """
    check_tensor(x, name, fn=fn)
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    bound = {} if dims is None else dims
    star = bool(parts) and parts[0] == "*"
    body = parts[1:] if star else parts
    shape = tuple(x.shape)
    if (star and len(shape) < len(body)) or (not star and len(shape) != len(body)):
        raise ValueError(f"{fn}: '{name}' must have shape ({', '.join(parts)}); got {shape}")
    tail = shape[len(shape) - len(body) :]
    for want, got in zip(body, tail):
        if want.isdigit():
            if int(want) != got:
                raise ValueError(f"{fn}: '{name}' must have shape ({', '.join(parts)}); got {shape}")
        elif want in bound and bound[want] != got:
            raise ValueError(
                f"{fn}: '{name}' must have shape ({', '.join(parts)}) with {want}={bound[want]} "
                f"as bound by an earlier argument; got {shape}"
            )
        else:
            bound[want] = got
    return bound


def check_same_device(*named: tuple[str, torch.Tensor], fn: str) -> None:
    """Raise ``ValueError`` unless every ``(name, tensor)`` lives on one device."""
    if len(named) < 2:
        return
    first_name, first = named[0]
    for other_name, other in named[1:]:
        if other.device != first.device:
            raise ValueError(
                f"{fn}: '{other_name}' is on {other.device} but '{first_name}' is on {first.device}; "
                "move them to one device"
            )


def check_floating(x: torch.Tensor, name: str, *, fn: str) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating-point dtype."""
    check_tensor(x, name, fn=fn)
    if not x.is_floating_point():
        raise TypeError(f"{fn}: '{name}' must have a floating-point dtype; got {x.dtype}")


def check_range(
    x: torch.Tensor, name: str, *, fn: str, low: float | None = None, high: float | None = None
) -> None:
    """Raise ``ValueError`` if any value of ``x`` lies outside ``[low, high]`` (skipped under compile)."""
    if _compiling() or x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if (low is not None and lo < low) or (high is not None and hi > high):
        raise ValueError(f"{fn}: '{name}' must lie in [{low}, {high}]; got values in [{lo:.6g}, {hi:.6g}]")


def check_finite(x: torch.Tensor, name: str, *, fn: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity (skipped under compile)."""
    if _compiling():
        return
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{fn}: '{name}' must be finite; got {bad} NaN/inf value(s) of {x.numel()}")


def check_positive(value: float, name: str, *, fn: str, strict: bool = True) -> None:
    """Raise ``ValueError`` unless the scalar ``value`` is > 0 (or >= 0 when ``strict=False``)."""
    ok = value > 0 if strict else value >= 0
    if not ok:
        raise ValueError(f"{fn}: '{name}' must be {'>' if strict else '>='} 0; got {value!r}")


def check_int(value: Any, name: str, *, fn: str, low: int | None = 1) -> None:
    """Raise ``TypeError`` unless ``value`` is an integer (not a bool), ``ValueError`` if it is below ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: '{name}' must be an int; got {type(value).__name__} {value!r}")
    if low is not None and int(value) < low:
        bound = "> 0" if low == 1 else f">= {low}"
        raise ValueError(f"{fn}: '{name}' must be {bound}; got {value!r}")


def check_size(size: Any, name: str, *, fn: str) -> tuple[int, int]:
    """Check that ``size`` is a pair ``(H, W)`` of positive ints and return it as a tuple."""
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
        raise TypeError(f"{fn}: '{name}' must be a pair (H, W) of positive ints; got {size!r}")
    for v in size:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) <= 0:
            raise ValueError(f"{fn}: '{name}' must be a pair (H, W) of positive ints; got {tuple(size)!r}")
    return int(size[0]), int(size[1])
