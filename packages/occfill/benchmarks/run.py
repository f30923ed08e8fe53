"""occfill benchmark: completion latency per face (128/256 px), training step time, pose estimation, peak memory.

Usage::

    python packages/occfill/benchmarks/run.py --device cpu|cuda --out bench-results/occfill-<device>.json

Synthetic inputs (random pixels): the timings do not depend on image content. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch

from occfill import Completer, CompletionConfig, CompletionGenerator, train_completion
from occfill.masks import eye_box_mask
from occfill.pose import estimate_pose, project_template


class _Synthetic(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 3, size, size, generator=g)
        self.mask = eye_box_mask(size, size)[0]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "image": self.x[i],
            "reference": self.x[(i + 1) % len(self.x)],
            "mask": self.mask,
            "angles": torch.zeros(3),
        }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: str, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def _cpu_time(fn, repeats: int, warmup: int = 2) -> list[float]:
    """Process CPU seconds per call (all threads): unlike wall time, not inflated by other processes."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--out", default=None, help="JSON output path (default bench-results/occfill-<device>.json)"
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("occfill bench: --device cuda requested but CUDA is not available")
    torch.set_num_threads(args.threads)
    out_path = args.out or os.path.join("bench-results", f"occfill-{dev}.json")
    rows = []
    torch.manual_seed(0)
    gen = CompletionGenerator().to(dev)  # default size: base 32, depth 4
    completer = Completer(gen)
    n_params = sum(p.numel() for p in gen.parameters())
    for size in (128, 256):
        x = torch.rand(1, 3, size, size, device=dev)
        m = eye_box_mask(size, size, device=dev)
        a = torch.zeros(1, 3, device=dev)
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ts = _time(lambda x=x, m=m, a=a: completer.complete(x, m, x, angles=a), dev, args.repeats)
        rows.append(
            {
                "name": f"complete {size}px (batch 1)",
                "median_ms": 1e3 * statistics.median(ts),
                "min_ms": 1e3 * min(ts),
                "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None,
            }
        )
    try:  # the generator shipped in the wheel, at its 128-px training resolution (landmark time apart)
        shipped = Completer.pretrained(device=dev)
        x = torch.rand(1, 3, 128, 128, device=dev)
        m = eye_box_mask(128, 128, device=dev)
        a = torch.zeros(1, 3, device=dev)
        fn = lambda: shipped.complete(x, m, x, angles=a)  # noqa: E731
        ts = _time(fn, dev, args.repeats)
        cpu = _cpu_time(fn, max(args.repeats, 20)) if dev == "cpu" else None
        rows.append(
            {
                "name": "shipped generator: complete 128px (batch 1)",
                "median_ms": 1e3 * statistics.median(ts),
                "min_ms": 1e3 * min(ts),
                "cpu_median_ms": 1e3 * statistics.median(cpu) if cpu else None,
                "peak_cuda_mb": None,
                "generator_params": sum(p.numel() for p in shipped.generator.parameters()),
            }
        )
    except FileNotFoundError:
        pass
    lm = project_template(torch.tensor([[0.1, 0.3, 0.05]], dtype=torch.float64), (128, 128))
    ts = _time(lambda: estimate_pose(lm, (128, 128)), "cpu", args.repeats * 4)
    rows.append(
        {
            "name": "estimate_pose (68 landmarks, PnP)",
            "median_ms": 1e3 * statistics.median(ts),
            "min_ms": 1e3 * min(ts),
            "peak_cuda_mb": None,
        }
    )
    for size, batch in ((64, 16), (128, 8)):
        ds = _Synthetic(64, size)
        cfg = CompletionConfig(identity_weight=0.0)
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        train_completion(ds, config=cfg, steps=2, batch_size=batch, device=dev, progress=False)
        _sync(dev)
        t2 = time.perf_counter() - t
        t = time.perf_counter()
        train_completion(ds, config=cfg, steps=2 + args.repeats, batch_size=batch, device=dev, progress=False)
        _sync(dev)
        per_step = (time.perf_counter() - t - t2) / args.repeats
        rows.append(
            {
                "name": f"train step {size}px batch {batch} (G + global D + pose D)",
                "median_ms": 1e3 * per_step,
                "min_ms": None,
                "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None,
            }
        )
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = {
        "package": "occfill",
        "device": dev,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "generator_params": n_params,
        "peak_rss_mb": peak_rss_mb,
        "gpu": torch.cuda.get_device_name() if dev == "cuda" else None,
    }
    print(
        f"occfill benchmark on {dev} (torch {torch.__version__}, {args.threads} thread(s), generator {n_params / 1e6:.2f} M params)"
    )
    print(f"{'case':<55} {'median ms':>10} {'min ms':>10} {'peak CUDA MB':>13}")
    for r in rows:
        mn = "" if r["min_ms"] is None else f"{r['min_ms']:.1f}"
        pk = "" if r["peak_cuda_mb"] is None else f"{r['peak_cuda_mb']:.0f}"
        cpu = f"  (process CPU {r['cpu_median_ms']:.1f} ms)" if r.get("cpu_median_ms") else ""
        print(f"{r['name']:<55} {r['median_ms']:>10.1f} {mn:>10} {pk:>13}{cpu}")
    print(f"peak RSS of the process: {peak_rss_mb:.0f} MB")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
