"""Helpers that keep state identical across ``torch.distributed`` ranks (no-ops in a single process)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    """Number of ranks of the default process group (1 when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


def is_rank0() -> bool:
    """True in a single process and on rank 0 of an initialised process group."""
    return world_size() == 1 or int(dist.get_rank()) == 0


def barrier() -> None:
    """``dist.barrier()`` when more than one rank runs."""
    if world_size() > 1:
        dist.barrier()


def _bn_stats(model: nn.Module) -> list[Tensor]:
    out: list[Tensor] = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for t in (m.running_mean, m.running_var):
                if t is not None:
                    out.append(t)
    return out


@torch.no_grad()
def average_bn_stats(model: nn.Module) -> None:
    """Average BatchNorm running means/variances over the ranks (each rank saw its own batches).

    The sum is all-reduced and divided by the world size, so every rank ends with the same bits.
    """
    n = world_size()
    if n == 1:
        return
    for t in _bn_stats(model):
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(n)


@torch.no_grad()
def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Copy ``module``'s parameters and buffers from rank ``src`` to every rank."""
    if world_size() == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dtype == torch.bool:  # gloo does not broadcast bool tensors
            tmp = t.data.to(torch.uint8)
            dist.broadcast(tmp, src=src)
            t.data.copy_(tmp.bool())
        else:
            dist.broadcast(t.data, src=src)
