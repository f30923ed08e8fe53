"""Benchmark: latency per edit (Synthesizer.synthesize) at 128, 256 and 512 px, stroke extraction time, memory.

    python packages/hairsynth/benchmarks/run.py --device cpu|cuda --out bench-results/hairsynth-<device>.json \
        [--threads 2] [--configs pretrained:512 ...] [--markdown reports/hairsynth/bench.md]

The paper's interactivity bar is "under one second" per edit (met on a GPU in the paper); issue 20 asks
< 0.5 s per edit at 512 px on 2 CPU threads for the shipped model. Rows ``pretrained:SIZE`` time the shipped
model (``Synthesizer.pretrained()``: it runs at 128 px whatever the photo size, then composites back at full
size); the other rows use random weights of an architecture (latency does not depend on the weights). An
edit = rasterise 12 strokes + resize to the working size + both networks + compositing. Every row records the
wall time and the process CPU time per edit (all threads of the process) and the 1-minute load average
before and after it, because on a machine shared with other jobs the wall time measures the contention too.

Memory per model: ``peak_mem_MiB`` is the CUDA allocator's peak (weights included) or, on CPU, the peak RSS
of a fresh process that measures only that model (``--no-isolate``: one process, peaks accumulate);
``edit_mem_MiB`` is that peak minus the memory in use before the first edit (model and inputs loaded),
i.e. what an edit adds on top of the loaded model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

import hairsynth
from hairsynth import Stroke, Synthesizer, create_model, strokes_from_image
from hairsynth.synthesizer import pretrained_weights_path

CONFIGS = [
    ("pretrained", 128),  # the shipped weights (rows skipped when the weights are not installed)
    ("pretrained", 256),
    ("pretrained", 512),
    ("hairsynth_128", 128),  # the shipped release model (runs at 128 px whatever the photo size)
    ("hairsynth_128", 256),
    ("hairsynth_128", 512),
    ("hairsynth_small", 256),
    ("hairsynth_small", 512),
    ("hairsynth_unet256", 256),
    ("hairsynth_unet512", 512),
]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_mb(dev: torch.device) -> float:
    """Peak memory so far: CUDA allocator peak, or the process's peak RSS on CPU (Linux: KiB -> MiB)."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_mb(dev: torch.device) -> float:
    """Memory in use now: CUDA allocated, or the process's current RSS on CPU (Linux /proc)."""
    if dev.type == "cuda":
        return torch.cuda.memory_allocated(dev) / 2**20
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: fall back to the peak
        return _peak_mb(dev)


def _inputs(size: int):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask = (
        ((xx - size / 2) ** 2 / (0.3 * size) ** 2 + (yy - 0.65 * size) ** 2 / (0.25 * size) ** 2) < 1
    ).float()
    strokes = []
    for k in range(12):
        x0 = size * (0.3 + 0.4 * k / 11)
        pts = [(x0 + 0.05 * size * math.sin(t / 3), size * 0.45 + t * size / 40) for t in range(12)]
        strokes.append(Stroke(pts, (0.25, 0.18, 0.12), 3.0 * size / 256))
    return img, mask, strokes


def _edit_row(arch: str, size: int, dev: torch.device, repeats: int) -> dict:
    """Latency and memory of one edit (``Synthesizer.synthesize``): shipped weights or a random-weight model."""
    load0 = os.getloadavg()[0]
    if arch == "pretrained":
        syn = Synthesizer.pretrained(device=dev)
        model = syn.model
    else:
        model = create_model(arch).to(dev)
        syn = Synthesizer(model)
    img, mask, strokes = _inputs(size)
    img, mask = img.to(dev), mask.to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    loaded = _current_mb(dev)  # weights + inputs, before any edit
    syn.synthesize(img, mask, strokes)  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        _sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        syn.synthesize(img, mask, strokes)
        _sync(dev)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    peak = _peak_mb(dev)
    row = {
        "what": "edit latency",
        "arch": arch,
        "size": size,
        "params_M": sum(q.numel() for q in model.parameters()) / 1e6,
        "median_s": med,
        "min_s": min(times),
        "median_process_cpu_s": statistics.median(cpu),
        "under_1s": med < 1.0,
        "under_0.5s": med < 0.5,
        "process_cpu_under_0.5s": statistics.median(cpu) < 0.5,
        "peak_mem_MiB": peak,
        "edit_mem_MiB": peak - loaded,
        "threads": torch.get_num_threads(),
        "working_size": list(syn.working_size(size, size)),
        "loadavg_1min_before_after": [load0, os.getloadavg()[0]],
        "repeats": repeats,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }
    if arch == "pretrained":
        with open(pretrained_weights_path(), "rb") as fh:
            row["weights_sha256_12"] = hashlib.sha256(fh.read()).hexdigest()[:12]
    return row


def _write_markdown(res: dict, path: str) -> None:
    """The latency rows as a markdown table, with the 512-px shipped-model verdict (wall and process CPU)."""
    md = [
        f"# hairsynth benchmark ({res['device']}, torch {res['torch']}, "
        f"hairsynth {res['version']}, {res['date_utc']} UTC)",
        "",
        f"Command: `{res['command']}`; {res.get('cpu_count')} CPUs. Per edit: median over the repeats after one "
        "warm-up; process CPU = CPU time of all threads of the process during the edit.",
        "",
        "| arch | photo px | working px | threads | OMP_WAIT_POLICY | median wall s | min wall s | median process CPU s | "
        "load avg before/after | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        if r["what"] != "edit latency":
            continue
        la = r.get("loadavg_1min_before_after", [float("nan")] * 2)
        md.append(
            f"| {'hairsynth_128 (shipped weights)' if r['arch'] == 'pretrained' else r['arch']} | {r['size']} | "
            f"{'x'.join(str(v) for v in r.get('working_size', ['?']))} | {r.get('threads', '?')} | {r.get('omp_wait_policy', 'default')} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
            f"{r.get('median_process_cpu_s', float('nan')):.3f} | {la[0]:.1f} / {la[1]:.1f} | "
            f"{r['peak_mem_MiB']:.0f} |"
        )
    loads = [v for r in res["rows"] for v in r.get("loadavg_1min_before_after", [])]
    if loads:
        md += [
            "",
            f"Machine load during the rows: 1-minute load average {min(loads):.1f}-{max(loads):.1f} on "
            f"{res.get('cpu_count')} CPUs"
            + (
                " (loaded: other processes competed for the CPUs, so wall times include waiting for a CPU; "
                "the process CPU time does not)."
                if max(loads) > 0.5 * (res.get("cpu_count") or 1)
                else "."
            ),
        ]
    ship = [r for r in res["rows"] if r.get("arch") == "pretrained" and r["size"] == 512]
    ship = [r for r in ship if r.get("threads") == 2] or ship
    if ship:
        md += [
            "",
            "Target (issue 20): < 0.5 s per edit at 512 px on 2 CPU threads for the shipped model.",
            "",
        ]
    for r in ship:
        md.append(
            f"- {r['threads']} threads, OMP_WAIT_POLICY {r.get('omp_wait_policy', 'default')}: median wall "
            f"{r['median_s']:.3f} s ({'under' if r['median_s'] < 0.5 else 'NOT under'} 0.5 s), median process CPU "
            f"{r['median_process_cpu_s']:.3f} s ({'under' if r['median_process_cpu_s'] < 0.5 else 'over'} 0.5 s)."
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(md) + "\n")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch CPU threads (default: torch's); several values: every row once per value",
    )
    p.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="CPU: measure every model in this process (peak RSS then accumulates over the rows)",
    )
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)  # ARCH:SIZE, one row (internal)
    p.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help="only these rows, ARCH:SIZE (ARCH 'pretrained': shipped model)",
    )
    p.add_argument("--no-extraction", action="store_true", help="skip the stroke-extraction rows")
    p.add_argument(
        "--omp-wait-policies",
        nargs="+",
        default=None,
        choices=("default", "ACTIVE", "PASSIVE"),
        help="CPU: run every row once per OpenMP wait policy (env OMP_WAIT_POLICY of the row's process; "
        "'default': as inherited). On a loaded machine spinning OpenMP threads inflate wall and CPU time",
    )
    p.add_argument("--markdown", default=None, help="also write the table as markdown to this file")
    args = p.parse_args()
    threads: list[int | None] = list(args.threads) if args.threads else [None]
    if threads[0]:
        torch.set_num_threads(threads[0])
    dev = torch.device(args.device)
    rows = []
    configs = CONFIGS
    if args.configs:
        configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.configs]
    if args.config:
        arch, size = args.config.split(":")
        configs = [(arch, int(size))]
    if not os.path.isfile(pretrained_weights_path()):
        configs = [c for c in configs if c[0] != "pretrained"]
    policies: list[str] = list(args.omp_wait_policies or ["default"])
    for pol, nt, (arch, size) in [(w, t, c) for w in policies for t in threads for c in configs]:
        if nt and not (dev.type == "cpu" and args.isolate and not args.config):
            torch.set_num_threads(nt)
        if dev.type == "cpu" and args.isolate and not args.config:
            # a fresh process per configuration: the CPU peak RSS is a per-process high-water mark, so
            # in one process every row would include the earlier (larger) models' peaks
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--device",
                "cpu",
                "--repeats",
                str(args.repeats),
            ]
            cmd += ["--config", f"{arch}:{size}"] + (["--threads", str(nt)] if nt else [])
            env = dict(os.environ)
            if pol != "default":
                env["OMP_WAIT_POLICY"] = pol
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
            row = json.loads(out.strip().splitlines()[-1])
        else:
            row = _edit_row(arch, size, dev, args.repeats)
        rows.append(row)
        print(
            f"{arch:18s} {size:4d}px {row['threads']} thr  median {row['median_s'] * 1000:8.1f} ms  min {row['min_s'] * 1000:8.1f} ms  "
            f"peak {row['peak_mem_MiB']:.0f} MiB (edit {row['edit_mem_MiB']:.0f} MiB)"
        )
    if args.config:
        print(json.dumps(rows[-1]))
        return 0
    if threads[0]:
        torch.set_num_threads(threads[0])
    for size in () if args.no_extraction else (256, 512):
        img, mask, _ = _inputs(size)
        g = torch.Generator().manual_seed(0)
        yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
        hair = 0.5 + 0.5 * torch.cos(2 * math.pi * (xx * 0.8 - yy * 0.6) / 5) * torch.rand(
            size, size, generator=g
        )
        img = torch.stack([0.3 * hair, 0.2 * hair, 0.1 * hair]).to(dev)
        times = []
        n = 0
        for _ in range(max(1, args.repeats // 2)):
            _sync(dev)
            t0 = time.perf_counter()
            n = len(strokes_from_image(img, mask.to(dev)))
            _sync(dev)
            times.append(time.perf_counter() - t0)
        rows.append(
            {"what": "stroke extraction", "size": size, "median_s": statistics.median(times), "strokes": n}
        )
        print(
            f"strokes_from_image {size:4d}px  median {statistics.median(times) * 1000:8.1f} ms  ({n} strokes)"
        )
    res = {
        "package": "hairsynth",
        "version": hairsynth.__version__,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "nice": os.nice(0),
        "torch": torch.__version__,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "rows": rows,
    }
    print(
        "\n| what | arch | size | median s | under 1 s | peak MiB | edit MiB |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['what']} | {r.get('arch', '-')} | {r['size']} | {r['median_s']:.3f} | {r.get('under_1s', '-')} | "
            f"{r.get('peak_mem_MiB', float('nan')):.0f} | {r.get('edit_mem_MiB', float('nan')):.0f} |"
        )
    if args.markdown:
        _write_markdown(res, args.markdown)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
