"""Deployment helpers: BatchNorm folding."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ._checks import check_module
from .nn import QConv2d

logger = logging.getLogger(__name__)

__all__ = ["fold_batchnorm"]


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    # w' = w * gamma / sqrt(var + eps) per output channel; b' = (b - mean) * gamma / sqrt(var + eps) + beta
    var = bn.running_var
    mean = bn.running_mean
    assert var is not None and mean is not None
    inv = torch.rsqrt(var.to(conv.weight.dtype) + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(inv)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(inv)
    factor = gamma.to(inv) * inv
    conv.weight.mul_(factor.view(-1, 1, 1, 1))
    b = conv.bias if conv.bias is not None else torch.zeros_like(inv)
    new_bias = (b - mean.to(inv)) * factor + beta.to(inv)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every ``BatchNorm2d`` that directly follows an ``nn.Conv2d`` into that conv (weight and bias).

    ``y = gamma (conv(x) - mean) / sqrt(var + eps) + beta`` becomes one conv with weight
    ``w * gamma / sqrt(var + eps)`` (per output channel) and bias ``(b - mean) gamma / sqrt(var + eps) + beta``;
    the BatchNorm module is replaced by ``nn.Identity``. Pairs are found by tracing the model with
    ``torch.fx`` (a BN whose input is a conv output used by nothing else); the model's class is kept.

    Convention:
        For deployment of a float model before :func:`~qnet.quantize` (fold, then quantize, fine-tune and
        freeze) or for export of a float model; uses the BN running statistics (eval-mode behaviour), so the
        folded model equals the unfolded one in eval mode. Quantized layers (``QConv2d``) are refused: their
        weight quantizer was initialised from the unfolded weights.

    Args:
        model: the model (eval-mode semantics).
        inplace: modify ``model`` instead of a deep copy.

    Returns:
        The model with folded convs, in eval mode.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: the model cannot be traced by ``torch.fx``, or a BN follows a ``QConv2d``.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> folded = fold_batchnorm(net)
        >>> type(folded[1]).__name__
        'Identity'
    """
    check_module(model, "model", fn="fold_batchnorm")
    import torch.fx

    for name, m in model.named_modules():
        if isinstance(m, QConv2d):
            raise ValueError(
                f"fold_batchnorm: '{name}' is a QConv2d; fold the float model before qnet.quantize"
            )

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # data-dependent control flow and friends
        raise ValueError(
            f"fold_batchnorm: 'model' cannot be traced by torch.fx ({type(e).__name__}: {e})"
        ) from e
    target = model if inplace else copy.deepcopy(model)
    pairs: list[tuple[str, str]] = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(target.get_submodule(str(node.target)), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        conv_name, bn_name = str(src.target), str(node.target)
        conv = target.get_submodule(conv_name)
        if type(conv) is nn.Conv2d and conv.out_channels == target.get_submodule(bn_name).num_features:
            pairs.append((conv_name, bn_name))
    for conv_name, bn_name in pairs:
        conv = target.get_submodule(conv_name)
        bn = target.get_submodule(bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"fold_batchnorm: '{bn_name}' tracks no running statistics; nothing to fold")
        _fold_pair(conv, bn)
        parent, _, child = bn_name.rpartition(".")
        setattr(target.get_submodule(parent) if parent else target, child, nn.Identity())
    logger.info("fold_batchnorm: folded %d BatchNorm layers", len(pairs))
    return target.eval()
