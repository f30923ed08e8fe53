"""Step time and peak memory of one training step for ce, kd, ft and ie-kd (student + teacher fwd/bwd).

    python packages/iekd/benchmarks/run.py --device cpu --out bench-results/iekd-cpu.json

Setting: the paper's CIFAR-10 pair, teacher ResNet-56 -> student ResNet-20 (option A, 10 classes), 32x32 inputs,
batch 128, random data (timing only), SGD step included. The figure to watch is IE-KD's step time as a ratio of
KD's, measured in the same run, round-robin (goal: <= 1.15x).
Peak memory: ``torch.cuda.max_memory_allocated`` of one step on CUDA; on CPU the peak resident set size of a fresh
process that builds the method and runs warm-up plus one step (``ru_maxrss``), beside that of a process that only
builds the models (so the difference is the step's own memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

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
    teacher = iekd.models.resnet56(num_classes=10).to(device).eval()
    student = iekd.models.resnet20(num_classes=10).to(device)
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
    y = torch.randint(0, 10, (batch,), device=device)

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


def _cpu_peak_rss_mib(method: str, batch: int, threads: int) -> float:
    """Peak RSS (MiB, ``VmHWM``) of a fresh process that builds ``method`` and runs 3 steps (``none``: build only)."""
    here = os.path.dirname(os.path.abspath(__file__))
    built = "kd" if method == "none" else method
    n = 0 if method == "none" else 3
    code = (
        f"import resource, sys, torch; sys.path.insert(0, {here!r}); torch.set_num_threads({threads}); "
        f"import run; step, _ = run.make_step({built!r}, torch.device('cpu'), {batch})\n"
        f"for _ in range({n}): step()\n"
        # VmHWM: this process image's own peak (ru_maxrss would carry the parent's peak over fork + exec)
        "line = [s for s in open('/proc/self/status') if s.startswith('VmHWM:')]\n"
        "print(int(line[0].split()[1]) if line else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--out", default=None, help="JSON output path")
    ap.add_argument("--batch", type=int, default=128, help="batch size (default 128, the paper's)")
    ap.add_argument("--steps", type=int, default=None, help="timed rounds (default 10 on CPU, 50 on CUDA)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--no-memory", action="store_true", help="skip the CPU peak-RSS subprocesses")
    ap.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    args = ap.parse_args(argv)
    try:
        return _main(args)
    except (ValueError, RuntimeError, OSError, subprocess.CalledProcessError) as err:
        if args.verbose:
            traceback.print_exc()
        print(f"iekd bench: error: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but CUDA is not available")
    if args.batch < 1 or args.threads < 1 or (args.steps is not None and args.steps < 1):
        raise ValueError("--batch, --steps and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    batch = args.batch
    steps = args.steps or (10 if cpu else 50)
    warmup = 2 if cpu else 10
    methods = ["ce", "kd", "ft", "ie-kd"]
    mem_note = "torch.cuda.max_memory_allocated of one step" if not cpu else "not measured (--no-memory)"
    base_rss = None
    cpu_peaks: dict[str, float] = {}
    if cpu and not args.no_memory:
        base_rss = _cpu_peak_rss_mib("none", batch, args.threads)
        cpu_peaks = {m: _cpu_peak_rss_mib(m, batch, args.threads) for m in methods}
        mem_note = (
            "peak RSS (VmHWM) of a fresh process (build + 3 steps); step_mem = minus a build-only process"
        )
    t0 = time.time()
    rows = bench(methods, device, batch, steps, warmup)
    wall = time.time() - t0
    kd = next(r for r in rows if r["method"] == "kd")["step_ms"]
    for r in rows:
        r["vs_kd_ratio"] = r["step_ms"] / kd
        if r["method"] in cpu_peaks and base_rss is not None:
            r["peak_mib"] = cpu_peaks[r["method"]]
            r["step_mem_mib"] = cpu_peaks[r["method"]] - base_rss
    ratio = next(r for r in rows if r["method"] == "ie-kd")["vs_kd_ratio"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        f"iekd benchmark: ResNet-56 -> ResNet-20, 32x32, batch {batch}, {steps} timed rounds, device {device}, "
        f"{torch.get_num_threads()} thread(s), load average {load}"
    )
    print(f"{'method':<8} {'step ms':>10} {'/ kd':>7} {'peak MiB':>10}")
    for r in rows:
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        print(f"{r['method']:<8} {r['step_ms']:>10.1f} {r['vs_kd_ratio']:>6.3f}x {peak:>10}")
    print(f"IE-KD step / KD step: {ratio:.3f}x (goal <= 1.15x)")
    result = {
        "package": "iekd",
        "version": iekd.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if not cpu
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_1min": load,
        "batch": batch,
        "steps": steps,
        "wall_s": round(wall, 1),
        "memory": mem_note,
        "build_only_peak_rss_mib": base_rss,
        "rows": rows,
        "ie_kd_vs_kd_ratio": ratio,
        "ie_kd_overhead_vs_kd_pct": 100.0 * (ratio - 1.0),
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
