"""Model registry: ``register_model``, ``create_model``, ``list_models`` (timm/torchvision style)."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register a builder under its function name; refuses duplicates.

    Args:
        fn: a builder ``name(*, weights=None, **kwargs) -> nn.Module``.

    Returns:
        ``fn`` unchanged.

    Raises:
        ValueError: the name is already registered.
    """
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching a glob ``pattern``.

    Args:
        pattern: ``fnmatch`` pattern, e.g. ``"flownet*"``.

    Returns:
        The matching names.
    """
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, *, weights: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``None`` kwargs are dropped so builder defaults win.

    Args:
        name: registered name (see :func:`list_models`).
        weights: optional local checkpoint (never downloaded).
        **kwargs: builder arguments.

    Returns:
        The model.

    Raises:
        ValueError: unknown name.
    """
    if name not in _MODELS:
        raise ValueError(f"create_model: unknown model {name!r}; available: {list_models()}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _MODELS[name](weights=weights, **kwargs)
