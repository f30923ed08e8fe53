"""Model registry: ``register_model``, ``create_model``, ``list_models`` and the builders."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

from ..checkpoint import load_checkpoint
from .hairnet import HairSynthesisNet

logger = logging.getLogger(__name__)

__all__ = ["create_model", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Decorator adding a builder to the registry under its function name.

    Args:
        fn: the builder.

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
    """Registered model names matching a shell-style pattern.

    Args:
        pattern: ``fnmatch`` pattern.

    Returns:
        Sorted names.

    Examples:
        >>> "hairsynth_unet256" in list_models("hairsynth_*")
        True
    """
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, *, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model, optionally loading a local checkpoint.

    ``None`` kwargs are dropped so the builder's defaults win.

    Args:
        name: a name from :func:`list_models`.
        weights: a local checkpoint written by :func:`hairsynth.save_checkpoint` (never downloaded).
        **kwargs: builder arguments.

    Returns:
        The model.

    Raises:
        ValueError: unknown name, or a kwarg that conflicts with the checkpoint's config.
    """
    if name not in _REGISTRY:
        raise ValueError(f"create_model: unknown model {name!r}; available: {list_models()}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _REGISTRY[name](weights=weights, **kwargs)


_CONFIG_KEYS = (
    "base_channels",
    "num_downs",
    "max_channels",
    "norm",
    "dropout",
    "use_refinement",
    "residual_refinement",
    "feather_radius",
    "refinement_base_channels",
    "upsample",
    "feather",
    "resolution",
    "stroke_width",
)
# what a checkpoint written before these keys existed (hairsynth < 0.3) was built with
_LEGACY_DEFAULTS = {"upsample": "transposed", "feather": "outside"}


def _create_hairnet(
    arch: str, defaults: dict[str, Any], weights: str | os.PathLike[str] | None, **kwargs: Any
) -> HairSynthesisNet:
    valid = [*_CONFIG_KEYS, "device", "dtype"]
    unknown = sorted(k for k in kwargs if k not in valid)
    if unknown:
        raise TypeError(f"{arch}: unknown argument(s) {unknown}; valid: {valid}")
    cfg = dict(defaults)
    ckpt = None
    if weights is not None:
        ckpt = load_checkpoint(weights)
        saved = {**_LEGACY_DEFAULTS, **{k: v for k, v in ckpt.get("config", {}).items() if k in _CONFIG_KEYS}}
        if saved.get("stroke_width") is not None:
            saved["stroke_width"] = tuple(saved["stroke_width"])
        for k, v in kwargs.items():
            if k in saved and saved[k] != (tuple(v) if isinstance(v, list) else v):
                raise ValueError(
                    f"{arch}: argument {k}={v!r} conflicts with the checkpoint's {k}={saved[k]!r}"
                )
        cfg.update(saved)
    cfg.update(kwargs)
    model = HairSynthesisNet(**cfg)
    if ckpt is not None:
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        if missing:
            logger.info("%s: missing keys when loading %s: %s", arch, weights, missing)
        if unexpected:
            logger.warning("%s: unexpected keys when loading %s: %s", arch, weights, unexpected)
    model.arch = arch  # type: ignore[assignment]
    # model.config (set by HairSynthesisNet) records every constructor argument, so checkpoints are complete
    return model


@register_model
def hairsynth_unet256(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> HairSynthesisNet:
    """Paper-scale model for 256 px: two U-Nets with 8 levels, 64 base channels (pix2pix size).

    Args:
        weights: optional local checkpoint.
        **kwargs: overrides of :class:`HairSynthesisNet` arguments.

    Returns:
        The model.
    """
    return _create_hairnet("hairsynth_unet256", {"base_channels": 64, "num_downs": 8}, weights, **kwargs)


@register_model
def hairsynth_unet512(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> HairSynthesisNet:
    """Paper-scale model for 512 px: two U-Nets with 9 levels, 64 base channels.

    Args:
        weights: optional local checkpoint.
        **kwargs: overrides of :class:`HairSynthesisNet` arguments.

    Returns:
        The model.
    """
    return _create_hairnet("hairsynth_unet512", {"base_channels": 64, "num_downs": 9}, weights, **kwargs)


@register_model
def hairsynth_small(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> HairSynthesisNet:
    """CPU-interactive model: 7 levels, 16 base channels, 256 channel cap (the benchmark's interactive model).

    Args:
        weights: optional local checkpoint.
        **kwargs: overrides of :class:`HairSynthesisNet` arguments.

    Returns:
        The model.
    """
    return _create_hairnet(
        "hairsynth_small", {"base_channels": 16, "num_downs": 7, "max_channels": 256}, weights, **kwargs
    )


@register_model
def hairsynth_128(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> HairSynthesisNet:
    """The release model (:meth:`hairsynth.Synthesizer.pretrained`): trained at 128 px, 7 levels, 16 base
    channels, 128 channel cap, resize-then-convolve decoders, a 2-px blending ramp inside the region.

    Args:
        weights: optional local checkpoint.
        **kwargs: overrides of :class:`HairSynthesisNet` arguments.

    Returns:
        The model.
    """
    return _create_hairnet(
        "hairsynth_128",
        {
            "base_channels": 16,
            "num_downs": 7,
            "max_channels": 128,
            "feather_radius": 2,
            "resolution": 128,
            "stroke_width": (2.0, 4.0),
        },
        weights,
        **kwargs,
    )


@register_model
def hairsynth_tiny(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> HairSynthesisNet:
    """Tiny model for tests and the quick start: 4 levels, 8 base channels, 64 channel cap.

    The reproduction uses it widened and deepened (``num_downs=5, base_channels=16, max_channels=128``).

    Args:
        weights: optional local checkpoint.
        **kwargs: overrides of :class:`HairSynthesisNet` arguments.

    Returns:
        The model.
    """
    return _create_hairnet(
        "hairsynth_tiny", {"base_channels": 8, "num_downs": 4, "max_channels": 64}, weights, **kwargs
    )
