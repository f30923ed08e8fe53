"""Model registry: ``register_model``, ``create_model``, ``list_models``."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_model", "is_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Decorator: register a builder under its function name (refuses duplicates).

    Args:
        fn: builder ``(*, weights=None, **kwargs) -> nn.Module``.

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
    """Sorted names of registered models matching the glob ``pattern``.

    Args:
        pattern: shell-style pattern, e.g. ``"rbfnet_*"``.

    Returns:
        Matching names.

    Raises:
        TypeError: ``pattern`` is not a string.
    """
    if not isinstance(pattern, str):
        raise TypeError(f"list_models: 'pattern' must be a str; got {type(pattern).__name__}")
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model.

    Args:
        name: model name.

    Returns:
        ``True`` when registered.
    """
    return name in _MODELS


def create_model(name: str, *, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``None``-valued kwargs are dropped so the builder's defaults win.

    Args:
        name: a name from :func:`list_models`.
        weights: path of a local checkpoint written by :func:`rbfnet.save_checkpoint`, or ``"modelnet10"``
            for the weights shipped in the wheel (:func:`rbfnet.models.shipped_weights`); never downloaded.
        **kwargs: builder arguments (``num_classes`` and architecture options).

    Returns:
        The model, with ``arch`` and ``config`` attributes recording how it was built.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: unknown name, or a kwarg that conflicts with the checkpoint's config.
    """
    if not isinstance(name, str):
        raise TypeError(f"create_model: 'name' must be a str; got {type(name).__name__}")
    if name not in _MODELS:
        raise ValueError(f"create_model: unknown model {name!r}; available: {list_models()}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _MODELS[name](weights=weights, **kwargs)
