"""Model registry: ``register_model``, ``create_model``, ``list_models``."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_model", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register a builder under its function name (duplicates are refused).

    Args:
        fn: a builder ``fn(*, weights=None, **kwargs) -> nn.Module``.

    Returns:
        ``fn`` unchanged.

    Raises:
        ValueError: the name is already registered.
    """
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching ``pattern`` (``fnmatch``), sorted.

    Args:
        pattern: a shell-style pattern.

    Returns:
        The names.
    """
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def create_model(name: str, *, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``None`` keyword values are dropped so the builder's defaults win.

    Args:
        name: a name from :func:`list_models`.
        weights: optional local checkpoint written by :func:`qnet.checkpoint.save_checkpoint`.
        **kwargs: builder arguments.

    Returns:
        The model.

    Raises:
        ValueError: unknown name.
    """
    if name not in _REGISTRY:
        raise ValueError(f"create_model: unknown model {name!r}; available: {list_models()}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _REGISTRY[name](weights=weights, **kwargs)
