"""Benchmark of rbfnet: parameters, forward / training-step throughput and peak memory of RBFNet variants,
PointNet and PointNet++ at 1,024 points; scaling over point count and kernel count; and the memory-aware
RBF layer on 32 clouds x 10,000 points x 1,024 kernels (chunked, inference).

    python packages/rbfnet/benchmarks/run.py --device cpu|cuda --out bench-results/rbfnet-<device>.json

Not shipped in the wheel. CPU defaults are reduced (batch 8; say so in the JSON) so that the run stays short
on a small machine; ``--batch-size`` overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import torch

import rbfnet
from rbfnet.profiling import measure_model

MODELS = [
    "rbfnet_single",
    "rbfnet_multiscale",
    "rbfnet_normals",
    "rbfnet_kernelwise",
    "pointnet",
    "pointnet2_ssg",
]


def _rss_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:
        return None


def big_layer(device: torch.device, batch: int, points: int, kernels: int, chunk: int) -> dict[str, Any]:
    """Kernel-wise RBF layer on a big batch, chunked; reports time, peak memory and the dense size avoided."""
    layer = rbfnet.RBFLayer(kernels, aggregation="max", chunk_size=chunk, device=device)
    x = torch.rand(batch, points, 3, device=device) * 2 - 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        y = layer(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    row: dict[str, Any] = {
        "batch": batch,
        "points": points,
        "kernels": kernels,
        "chunk": chunk,
        "seconds": dt,
        "out_shape": list(y.shape),
        "dense_tensor_mb": batch * points * kernels * 4 / 2**20,
        "chunk_tensor_mb": batch * chunk * kernels * 4 / 2**20,
        "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "process_max_rss_mb": _rss_mb(),
    }
    # with gradients: max aggregation recomputes only the winning point per kernel
    x.requires_grad_(False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    layer(x).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    row["backward_seconds"] = time.perf_counter() - t0
    row["backward_peak_mb"] = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    )
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="fewer settings")
    args = p.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    bs = args.batch_size or (32 if dev.type == "cuda" else 8)
    repeats = 5 if dev.type == "cuda" else 2
    result: dict[str, Any] = {
        "package": "rbfnet",
        "version": rbfnet.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": bs,
        "models": [],
        "scaling_points": [],
        "scaling_kernels": [],
        "big_layer": None,
    }
    print(f"rbfnet benchmark on {result['device']} (batch {bs}, 1024 points, 40 classes)")
    print(
        f"{'model':20s} {'params':>9s} {'infer c/s':>10s} {'train c/s':>10s} {'inf MB':>8s} {'train MB':>9s}"
    )
    for name in MODELS:
        r = measure_model(
            rbfnet.create_model(name, num_classes=40), batch_size=bs, device=dev, repeats=repeats
        )
        result["models"].append({"model": name, **r})
        fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        print(
            f"{name:20s} {r['params']:9d} {r['infer_clouds_per_s']:10.1f} {r['train_clouds_per_s']:10.1f} "
            f"{fmt(r['infer_peak_mb']):>8s} {fmt(r['train_peak_mb']):>9s}"
        )
    pts_list = (
        [256, 512, 1024, 2048] if args.quick or dev.type == "cpu" else [256, 512, 1024, 2048, 4096, 8192]
    )
    print("\nscaling over points (inference clouds/s)")
    for name in ("rbfnet_single", "pointnet", "pointnet2_ssg"):
        for n in pts_list:
            if name == "pointnet2_ssg" and dev.type == "cpu" and n > 1024:
                continue
            r = measure_model(
                rbfnet.create_model(name, num_classes=40),
                batch_size=bs,
                num_points=n,
                device=dev,
                train_step=False,
                repeats=repeats,
            )
            result["scaling_points"].append({"model": name, "points": n, **r})
            print(f"  {name:16s} N={n:5d} {r['infer_clouds_per_s']:9.1f}")
    print("\nscaling over kernels (rbfnet_single, 1024 points)")
    for m in (64, 128, 300, 600, 1024) if not args.quick else (64, 300, 1024):
        r = measure_model(
            rbfnet.create_model("rbfnet_single", num_classes=40, num_kernels=m),
            batch_size=bs,
            device=dev,
            repeats=repeats,
        )
        result["scaling_kernels"].append({"kernels": m, **r})
        print(
            f"  M={m:5d} params {r['params']:8d} infer {r['infer_clouds_per_s']:9.1f} train {r['train_clouds_per_s']:9.1f}"
        )
    big = big_layer(dev, 32, 10000, 1024, 1000 if dev.type == "cuda" else 500)
    result["big_layer"] = big
    print(
        f"\nRBF layer 32 x 10000 points x 1024 kernels, max over points, chunk {big['chunk']}: "
        f"{big['seconds']:.2f} s fwd, {big['backward_seconds']:.2f} s fwd+bwd; dense tensor would be "
        f"{big['dense_tensor_mb']:.0f} MB, chunk {big['chunk_tensor_mb']:.0f} MB; peak "
        f"{big['peak_mb'] if big['peak_mb'] is not None else big['process_max_rss_mb']:.0f} MB"
        f"{' (GPU)' if big['peak_mb'] is not None else ' (process max RSS)'}"
    )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.out}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
