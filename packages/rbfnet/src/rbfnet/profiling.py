"""Throughput and memory measurement of classifiers (used by the benchmark, the CLI and the reproduction)."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int, check_module
from .models import count_parameters

__all__ = ["measure_model"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_model(
    model: nn.Module,
    *,
    batch_size: int = 32,
    num_points: int = 1024,
    device: torch.device | str = "cpu",
    train_step: bool = True,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Parameters, inference and training-step throughput (clouds/s) and peak memory of a classifier.

    Random unit-ball clouds (and normals when the model uses them) of ``batch_size x num_points``;
    the median of ``repeats`` timed runs after ``warmup`` untimed ones. Peak memory is CUDA's
    ``max_memory_allocated`` on GPU; on CPU it is not measured (``None``).

    Args:
        model: a classifier taking ``(points, normals)``.
        batch_size: clouds per batch.
        num_points: points per cloud.
        device: where to run.
        train_step: also time forward + backward + SGD step in training mode.
        repeats: timed repetitions.
        warmup: untimed repetitions first.
        seed: seed of the random input.

    Returns:
        ``{"params", "infer_clouds_per_s", "infer_peak_mb", "train_clouds_per_s", "train_peak_mb"}``.

    Raises:
        TypeError: ``model`` is not a module, or non-int sizes.
        ValueError: ``batch_size``, ``num_points`` or ``repeats`` below 1, ``warmup`` below 0.
    """
    fn = "measure_model"
    check_module(model, "model", fn=fn)
    check_int(batch_size, "batch_size", fn=fn, low=1)
    check_int(num_points, "num_points", fn=fn, low=1)
    check_int(repeats, "repeats", fn=fn, low=1)
    check_int(warmup, "warmup", fn=fn, low=0)
    dev = torch.device(device)
    model = model.to(dev)
    g = torch.Generator().manual_seed(seed)
    pts = F.normalize(torch.randn(batch_size, num_points, 3, generator=g), dim=-1)
    pts = (pts * torch.rand(batch_size, num_points, 1, generator=g)).to(dev)
    nrm = F.normalize(torch.randn(batch_size, num_points, 3, generator=g), dim=-1).to(dev)
    uses = bool(getattr(model, "uses_normals", False))
    args = (pts, nrm if uses else None)
    out: dict[str, Any] = {"params": count_parameters(model)}

    def timed(fn: Any) -> tuple[float, float | None]:
        for _ in range(warmup):
            fn()
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times = []
        for _ in range(repeats):
            _sync(dev)
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        return sorted(times)[len(times) // 2], peak

    model.eval()
    with torch.no_grad():
        t, peak = timed(lambda: model(*args))
    out["infer_clouds_per_s"] = batch_size / t
    out["infer_peak_mb"] = peak
    if train_step:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)
        y = torch.randint(int(getattr(model, "num_classes", 2)), (batch_size,), generator=g).to(dev)

        def step() -> None:
            loss = F.cross_entropy(model(*args), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t, peak = timed(step)
        out["train_clouds_per_s"] = batch_size / t
        out["train_peak_mb"] = peak
        model.eval()
    return out
