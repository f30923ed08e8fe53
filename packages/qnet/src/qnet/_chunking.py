"""Cache-sized chunks for the CPU soft-quantization kernels (elementwise math, so chunking never changes values)."""

from __future__ import annotations

import torch
from torch import Tensor

# On CPU the elementwise passes are memory-bound: run them over chunks of this many elements so that the
# per-level temporaries stay in cache. Other devices (and torch.compile, where in-place writes into slices
# would become whole-tensor copies) take the whole tensor at once.
CPU_CHUNK = 1 << 16


def chunk_size(x: Tensor, *, compiling: bool = False) -> int:
    """Elements per chunk for ``x``: :data:`CPU_CHUNK` on CPU, all of ``x`` elsewhere or when compiling."""
    n = x.numel()
    return max(1, min(n, CPU_CHUNK)) if x.device.type == "cpu" and not compiling else max(1, n)


def chunks(t: Tensor, size: int) -> tuple[Tensor, ...]:
    """Views of ``t`` (flat) of ``size`` elements; ``split()`` costs tens of microseconds, so one chunk is free."""
    return (t,) if t.numel() <= size else tuple(t.split(size))


def total(parts: list[Tensor]) -> Tensor:
    """Sum of 0-dim partial results."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum()
