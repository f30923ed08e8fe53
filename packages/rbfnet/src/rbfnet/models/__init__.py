"""Classifiers: Deep RBFNet variants and the PointNet / PointNet++ (SSG) baselines, with a registry.

Builders (registered names): ``rbfnet_single``, ``rbfnet_multiscale``, ``rbfnet_normals``,
``rbfnet_kernelwise``, ``pointnet`` (vanilla) and ``pointnet2_ssg``. Every builder takes
``num_classes`` and architecture kwargs, plus ``weights``: a local checkpoint path, or ``"modelnet10"``
for the weights shipped inside the wheel (``rbfnet_single``, ``rbfnet_kernelwise``, ``pointnet``; see
:func:`shipped_weights`). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ._common import count_parameters
from ._registry import create_model, is_model, list_models, register_model
from .pointnet2_cls import PointNet2SSG, SetAbstraction
from .pointnet_cls import PointNet
from .rbfnet_cls import RBFNet

__all__ = [
    "PRETRAINED_TAGS",
    "PointNet",
    "PointNet2SSG",
    "RBFNet",
    "SetAbstraction",
    "count_parameters",
    "create_model",
    "is_model",
    "list_models",
    "pointnet",
    "pointnet2_ssg",
    "rbfnet_kernelwise",
    "rbfnet_multiscale",
    "rbfnet_normals",
    "rbfnet_single",
    "register_model",
    "shipped_weights",
]


#: Tags of the weights shipped inside the wheel: ``create_model(name, weights=tag)``.
PRETRAINED_TAGS = ("modelnet10",)


def shipped_weights() -> dict[str, str]:
    """Weights shipped inside the wheel, by ``"<arch>-<tag>"``.

    Returns:
        ``{"rbfnet_single-modelnet10": path, ...}`` for every file present (local paths; nothing is
        downloaded). Load one with ``create_model(arch, weights=tag)``; its model card is the checkpoint's
        ``"card"`` entry (:func:`rbfnet.load_checkpoint`) and the README's "Trained weights" section.
    """
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
    if not os.path.isdir(folder):
        return {}
    return {
        f[: -len(".pt")]: os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".pt")
    }


def _resolve_weights(arch: str, weights: Any) -> str | os.PathLike[str]:
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"{arch}: 'weights' must be a checkpoint path or one of {PRETRAINED_TAGS}; got {type(weights).__name__}"
        )
    if isinstance(weights, str) and weights in PRETRAINED_TAGS:
        shipped = shipped_weights()
        key = f"{arch}-{weights}"
        if key not in shipped:
            have = sorted(k for k in shipped if k.endswith("-" + weights))
            raise ValueError(
                f"{arch}: no shipped {weights!r} weights for {arch!r}; shipped: {have or 'none'} "
                "(or pass the path of a local checkpoint)"
            )
        return shipped[key]
    return weights


def _weights_name(weights: Any) -> str:
    return repr(os.fspath(weights)) if isinstance(weights, (str, os.PathLike)) else repr(weights)


def _build(
    arch: str, cls: type[nn.Module], defaults: dict[str, Any], weights: Any, kwargs: dict[str, Any]
) -> Any:
    from ..checkpoint import load_checkpoint

    config = dict(defaults)
    if weights is not None:
        weights = _resolve_weights(arch, weights)
        ckpt = load_checkpoint(weights)
        if ckpt.get("arch") != arch:
            raise ValueError(
                f"{arch}: checkpoint {os.fspath(weights)!r} holds arch {ckpt.get('arch')!r}, not {arch!r}"
            )
        saved = dict(ckpt.get("config", {}))
        for k, v in kwargs.items():
            if k in saved and _plain(saved[k]) != _plain(v):
                raise ValueError(
                    f"{arch}: argument {k}={v!r} conflicts with the checkpoint's {k}={saved[k]!r}"
                )
        config.update(saved)
    config.update(kwargs)
    if "num_classes" not in config:
        raise ValueError(f"{arch}: 'num_classes' is required (or pass 'weights' with a saved config)")
    model = cls(**config)
    model.arch = arch  # type: ignore[assignment]
    model.config = {k: _plain(v) for k, v in config.items() if k not in ("device", "dtype", "generator")}  # type: ignore[assignment]
    if weights is not None:
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ValueError(
                f"{arch}: {_weights_name(weights)} is not a valid rbfnet checkpoint for this model "
                f"(truncated or not written by rbfnet): {' '.join(first[:2])[:300]}"
            ) from exc
    return model


def _plain(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


@register_model
def rbfnet_single(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> RBFNet:
    """Single RBF layer, point-wise aggregation (the paper's headline model, reconstructed).

    Args:
        weights: local checkpoint path.
        **kwargs: :class:`RBFNet` arguments (``num_classes`` required).

    Returns:
        The model.
    """
    return _build("rbfnet_single", RBFNet, {}, weights, kwargs)  # type: ignore[no-any-return]


@register_model
def rbfnet_multiscale(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> RBFNet:
    """Three RBF layers with initial widths x0.5, x1, x2 (multi-scale variant; reconstructed).

    Args:
        weights: local checkpoint path.
        **kwargs: :class:`RBFNet` arguments (``num_classes`` required).

    Returns:
        The model.
    """
    return _build("rbfnet_multiscale", RBFNet, {"scales": (0.5, 1.0, 2.0)}, weights, kwargs)  # type: ignore[no-any-return]


@register_model
def rbfnet_normals(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> RBFNet:
    """Single RBF layer whose kernels live in xyz + normal space (variant with normals; reconstructed).

    Args:
        weights: local checkpoint path.
        **kwargs: :class:`RBFNet` arguments (``num_classes`` required).

    Returns:
        The model.
    """
    return _build("rbfnet_normals", RBFNet, {"use_normals": True}, weights, kwargs)  # type: ignore[no-any-return]


@register_model
def rbfnet_kernelwise(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> RBFNet:
    """Kernel-wise aggregation: each kernel's max response over the points feeds the head directly.

    Args:
        weights: local checkpoint path.
        **kwargs: :class:`RBFNet` arguments (``num_classes`` required).

    Returns:
        The model.
    """
    return _build("rbfnet_kernelwise", RBFNet, {"aggregation": "kernelwise"}, weights, kwargs)  # type: ignore[no-any-return]


@register_model
def pointnet(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> PointNet:
    """PointNet vanilla baseline.

    Args:
        weights: local checkpoint path.
        **kwargs: :class:`PointNet` arguments (``num_classes`` required).

    Returns:
        The model.
    """
    return _build("pointnet", PointNet, {}, weights, kwargs)  # type: ignore[no-any-return]


@register_model
def pointnet2_ssg(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> PointNet2SSG:
    """PointNet++ single-scale-grouping baseline.

    Args:
        weights: local checkpoint path.
        **kwargs: :class:`PointNet2SSG` arguments (``num_classes`` required).

    Returns:
        The model.
    """
    return _build("pointnet2_ssg", PointNet2SSG, {}, weights, kwargs)  # type: ignore[no-any-return]
