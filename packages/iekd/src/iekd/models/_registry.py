"""Model registry: ``register_model``, ``create_model``, ``list_models``."""

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
        ValueError: a builder of that name is already registered.
    """
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style ``pattern``.

    Args:
        pattern: e.g. ``"resnet*"``.

    Returns:
        The matching names.

    Examples:
        >>> "resnet20" in list_models("resnet*")
        True
    """
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, *, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``None`` kwargs are dropped so that the builder's defaults win.

    Args:
        name: a name from :func:`list_models`.
        weights: optional local checkpoint (written by :func:`iekd.save_checkpoint`), never downloaded.
        **kwargs: builder arguments (e.g. ``num_classes=100``).

    Returns:
        The model.

    Raises:
        ValueError: unknown ``name`` (the message lists close names).

    Examples:
        >>> create_model("resnet20", num_classes=10).num_classes
        10
    """
    if name not in _MODELS:
        import difflib

        close = difflib.get_close_matches(name, list(_MODELS), n=5)
        raise ValueError(f"create_model: unknown model {name!r}; close names: {close or list_models()}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _MODELS[name](weights=weights, **kwargs)
