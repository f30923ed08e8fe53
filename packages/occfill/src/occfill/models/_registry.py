"""Model registry: ``register_model``, ``create_model``, ``list_models``."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["create_model", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register a builder under its function name; duplicates are refused."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching the shell-style ``pattern``.

    Args:
        pattern: ``fnmatch`` pattern, e.g. ``"occfill_*"``.

    Returns:
        The matching names.

    Raises:
        TypeError: ``pattern`` is not a string.
    """
    if not isinstance(pattern, str):
        raise TypeError(f"list_models: 'pattern' must be a str; got {type(pattern).__name__}")
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, *, weights: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model, optionally loading a local checkpoint (never downloaded).

    ``None`` kwargs are dropped so the builder's defaults win.

    Args:
        name: registered name (see :func:`list_models`).
        weights: path of an occfill checkpoint whose ``config`` and ``state_dict`` are used.
        **kwargs: builder keyword arguments; one that conflicts with the checkpoint's config raises.

    Returns:
        The model (in train mode).

    Raises:
        ValueError: unknown name, or a kwarg conflicting with the checkpoint's config.
    """
    if name not in _REGISTRY:
        raise ValueError(f"create_model: unknown model {name!r}; known: {list_models()}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if weights is None:
        return _REGISTRY[name](**kwargs)
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(weights)
    if ckpt.get("arch") != name:
        raise ValueError(
            f"create_model: checkpoint {os.fspath(weights)!r} holds arch {ckpt.get('arch')!r}, not {name!r}"
        )
    config = dict(ckpt.get("config", {}))
    for k, v in kwargs.items():
        if k in config and config[k] != v:
            raise ValueError(f"create_model: {k}={v!r} conflicts with the checkpoint's {k}={config[k]!r}")
        config.setdefault(k, v)
    model = _REGISTRY[name](**config)
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing:
        logger.info("create_model(%s): missing keys %s", name, missing)
    if unexpected:
        logger.warning("create_model(%s): unexpected keys %s", name, unexpected)
    return model
