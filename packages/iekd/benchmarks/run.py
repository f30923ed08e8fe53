"""Step time and peak memory of one training step for ce, kd, ft and ie-kd (student + teacher fwd/bwd).

    python packages/iekd/benchmarks/run.py --device cpu --out bench-results/iekd-cpu.json

Setting: the paper's CIFAR pair, teacher ResNet-56 -> student ResNet-20, 32x32 inputs, random data (timing
only), SGD step included. The figure to watch is IE-KD's overhead over plain KD (goal: < 15%).
Peak memory is measured with ``torch.cuda.max_memory_allocated`` on CUDA; on CPU it is not measured (null).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import iekd
import iekd.functional as IF


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(method: str, device: torch.device, batch: int) -> tuple:
    """Build one method's models and return ``(step, cleanup)``."""
    torch.manual_seed(0)
    teacher = iekd.models.resnet56(num_classes=100).to(device).eval()
    student = iekd.models.resnet20(num_classes=100).to(device)
    t_tap = iekd.FeatureTap(teacher, "layer3")
    s_tap = iekd.FeatureTap(student, "layer3")
    factor = iekd.FactorAutoencoder(64, 0.5, device=device).eval()
    heads = torch.nn.ModuleDict()
    if method == "ft":
        heads["translator"] = iekd.Translator(64, 32, device=device)
    if method == "ie-kd":
        heads["ie"] = iekd.InheritExploreLoss(64, 32, device=device)
    params = list(student.parameters()) + [p for p in heads.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (batch,), device=device)

    def step() -> None:
        logits = student(x)
        loss = F.cross_entropy(logits, y)
        if method != "ce":
            with torch.no_grad():
                t_logits = teacher(x)
                f_t = t_tap["layer3"]
                t_factor = factor.encode(f_t) if method in ("ft", "ie-kd") else None
            if method in ("kd", "ie-kd"):
                loss = 0.1 * loss + 0.9 * IF.kd_loss(logits, t_logits, temperature=4.0)
            if method == "ft":
                assert t_factor is not None
                loss = loss + 500 * IF.factor_transfer_loss(heads["translator"](s_tap["layer3"]), t_factor)
            if method == "ie-kd":
                loss = loss + heads["ie"](s_tap["layer3"], t_factor).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def cleanup() -> None:
        t_tap.remove()
        s_tap.remove()

    return step, cleanup


def bench(methods: list[str], device: torch.device, batch: int, steps: int, warmup: int) -> list[dict]:
    """Time the methods round-robin (one step each per round) so that load drift hits all alike."""
    built = {m: make_step(m, device, batch) for m in methods}
    peaks: dict[str, float | None] = {}
    for m, (step, _) in built.items():
        for _ in range(warmup):
            step()
        _sync(device)
        if device.type == "cuda":  # peak of one step of this method alone
            torch.cuda.reset_peak_memory_stats(device)
            step()
            _sync(device)
            peaks[m] = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            peaks[m] = None
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(steps):
        for m, (step, _) in built.items():
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[m].append(time.perf_counter() - t0)
    for _, cleanup in built.values():
        cleanup()
    return [
        {"method": m, "step_ms": 1000 * statistics.median(times[m]), "peak_mib": peaks[m]} for m in methods
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--out", default=None, help="JSON output path")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 32 on CPU, 128 on CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="timed rounds (default 10 on CPU, 50 on CUDA)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("iekd bench: --device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    batch = args.batch or (32 if cpu else 128)
    steps = args.steps or (10 if cpu else 50)
    warmup = 2 if cpu else 10
    rows = bench(["ce", "kd", "ft", "ie-kd"], device, batch, steps, warmup)
    kd = next(r for r in rows if r["method"] == "kd")["step_ms"]
    for r in rows:
        r["vs_kd_pct"] = 100.0 * (r["step_ms"] / kd - 1.0)
    ie_over = next(r for r in rows if r["method"] == "ie-kd")["vs_kd_pct"]
    print(
        f"iekd benchmark: ResNet-56 -> ResNet-20, 32x32, batch {batch}, {steps} timed steps, device {device}"
    )
    print(f"{'method':<8} {'step ms':>10} {'vs kd':>8} {'peak MiB':>10}")
    for r in rows:
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        print(f"{r['method']:<8} {r['step_ms']:>10.1f} {r['vs_kd_pct']:>7.1f}% {peak:>10}")
    print(f"IE-KD overhead over KD: {ie_over:.1f}% (goal < 15%)")
    result = {
        "package": "iekd",
        "version": iekd.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if not cpu
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "steps": steps,
        "rows": rows,
        "ie_kd_overhead_vs_kd_pct": ie_over,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
