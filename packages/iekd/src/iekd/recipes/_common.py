"""Shared pieces of the recipes: method names, argument checks, feature probing, the OFD margin."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from typing import Any, Literal, overload

import torch
from torch import nn

from .._checks import check_choice, check_int, check_number
from ..hooks import FeatureTap, unwrap_model
from ._loop import (
    logits_of,
    to_device,
)

logger = logging.getLogger(__name__)

METHODS = ("ce", "kd", "at", "ft", "ofd", "ie-kd", "ie-at", "ie-ft", "ie-ofd")
Method = Literal["ce", "kd", "at", "ft", "ofd", "ie-kd", "ie-at", "ie-ft", "ie-ofd"]


class _Frozen(nn.Module):
    """Holds a module with no trainable parameters that always runs in eval mode (BatchNorm statistics fixed)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(False)

    def forward(self, *args: Any) -> Any:
        return self.inner(*args)


def _check_module(value: Any, name: str, fn: str) -> None:
    if not isinstance(value, nn.Module):
        raise TypeError(f"{fn}: '{name}' must be a torch.nn.Module; got {type(value).__name__}")


def _check_ie_args(
    fn: str,
    split: Any,
    inherit_weight: Any,
    explore_weight: Any,
    explore_encoder: Any,
    p: Any,
    factor_rate: Any,
) -> None:
    """Validate the IE hyper-parameters up front, before any factor or student training."""
    if isinstance(split, bool) or not isinstance(split, (int, float)):
        raise TypeError(
            f"{fn}: 'split' must be a float ratio or an int channel count; got {type(split).__name__}"
        )
    if isinstance(split, int):
        check_int(split, "split", fn=fn, low=1)
    elif not 0.0 < split < 1.0:
        raise ValueError(f"{fn}: 'split' as a ratio must lie in (0, 1); got {split!r}")
    check_number(inherit_weight, "inherit_weight", fn=fn, low=0.0)
    check_number(explore_weight, "explore_weight", fn=fn, low=0.0)
    check_choice(explore_encoder, "explore_encoder", ("frozen", "trainable"), fn=fn)
    check_choice(p, "p", (1, 2), fn=fn)
    check_number(factor_rate, "factor_rate", fn=fn, low=0.0, strict=True)


def _feature_layer(
    model: nn.Module, layer: str | None, fn: str, arg: str, attr: str = "feature_layer"
) -> str:
    if layer is not None:
        return layer
    name = getattr(unwrap_model(model), attr, None)
    if not isinstance(name, str):
        raise ValueError(
            f"{fn}: '{arg}' is required for {type(unwrap_model(model)).__name__} (it has no '{attr}'); "
            "pass the name of the submodule whose output is distilled"
        )
    return name


def _teacher_bn(teacher: nn.Module, name: str | None, fn: str) -> nn.Module:
    """The teacher's BatchNorm whose parameters give OFD's margin (``ofd_margin="bn"``)."""
    if name is None:
        name = getattr(teacher, "pre_relu_bn", None)
        if not isinstance(name, str):
            raise ValueError(
                f"{fn}: 'teacher_bn' is required with ofd_margin='bn' for {type(teacher).__name__} (it has no "
                "'pre_relu_bn'); name the BatchNorm2d before the distilled ReLU, or use ofd_margin='data'"
            )
    modules = dict(teacher.named_modules())
    if name not in modules:
        close = difflib.get_close_matches(name, list(modules), n=3)
        raise ValueError(f"{fn}: teacher has no module {name!r} ('teacher_bn'); close matches: {close}")
    bn = modules[name]
    if not isinstance(bn, nn.BatchNorm2d) or not bn.affine:
        raise ValueError(
            f"{fn}: 'teacher_bn' {name!r} must be an affine nn.BatchNorm2d; got {type(bn).__name__}"
        )
    return bn


@torch.no_grad()
def _data_margin(teacher: nn.Module, layer: str, loader: Iterable[Any], device: torch.device) -> torch.Tensor:
    """OFD margin ``E[x | x < 0]`` per channel of the teacher's ``layer`` over one pass of ``loader``."""
    neg: torch.Tensor | None = None
    count: torch.Tensor | None = None
    with FeatureTap(teacher, layer) as tap:
        for batch in loader:
            x, _ = to_device(batch, device)
            teacher(x)
            f = tap[layer].detach()
            n_b = f.clamp(max=0.0).sum(dim=(0, 2, 3))
            c_b = (f < 0).sum(dim=(0, 2, 3))
            neg = n_b if neg is None else neg + n_b
            count = c_b if count is None else count + c_b
    assert neg is not None and count is not None
    count = count.to(neg.dtype)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(neg)  # every rank saw its own shard: pool them so that all ranks share one margin
        dist.all_reduce(count)
    return torch.where(count > 0, neg / count.clamp_min(1.0), torch.zeros_like(neg))


@overload
def _probe(
    model: nn.Module,
    tap: FeatureTap,
    layer: str,
    loader: Iterable[Any],
    device: torch.device,
    with_output: Literal[False] = False,
    *,
    fn: str = "recipes",
) -> torch.Tensor: ...


@overload
def _probe(
    model: nn.Module,
    tap: FeatureTap,
    layer: str,
    loader: Iterable[Any],
    device: torch.device,
    with_output: Literal[True],
    *,
    fn: str = "recipes",
) -> tuple[torch.Tensor, torch.Tensor]: ...


def _probe(
    model: nn.Module,
    tap: FeatureTap,
    layer: str,
    loader: Iterable[Any],
    device: torch.device,
    with_output: bool = False,
    *,
    fn: str = "recipes",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """One no-grad eval-mode forward on the first batch to learn a tapped feature's (and the output's) shape."""
    batch = next(iter(loader), None)
    if batch is None:
        raise ValueError(f"{fn}: 'loader' yields no batch; give it at least one batch")
    x, _ = to_device(batch, device)
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(x[:2])
    model.train(was)
    feat = tap[layer]
    if feat.dim() != 4:
        raise ValueError(
            f"{fn}: layer {layer!r} must output (B, C, H, W) feature maps; got {tuple(feat.shape)}"
        )
    logits = logits_of(out, fn, "network")
    if with_output:
        return feat, logits
    return feat
