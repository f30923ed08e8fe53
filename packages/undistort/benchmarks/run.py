"""Benchmark: synthesis speed, Undistorter latency at 256/512 px, peak memory.

    python packages/undistort/benchmarks/run.py --device cpu --out bench-results/undistort-cpu.json

Uses the ICT-FaceKit model from ``--data`` (default ``$SHARED_DATA`` or ``../shared/data``) when present,
else a stand-in ellipsoid head. Weights are random (latency does not depend on them).
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
from pathlib import Path

import numpy as np
import torch

import undistort
from undistort.camera import PinholeCamera, head_rotation, synthesize_pair

ROOT = Path(__file__).resolve().parents[3]


def _heads(data: str | None):
    cand = [data, os.environ.get("SHARED_DATA"), str(ROOT.parent / "shared" / "data")]
    for c in cand:
        if c and os.path.isfile(os.path.join(c, "ict-facekit", "ict_facekit_shapes.npz")):
            return undistort.load_ict_facekit(
                os.path.join(c, "ict-facekit")
            ), "ICT-FaceKit (24591 v, 48836 tris)"
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=5, radius=9.0)
    v = torch.tensor(s.vertices, dtype=torch.float32) * torch.tensor([0.8, 1.0, 0.9])
    return undistort.HeadModel.from_meshes(v[None], s.faces), f"stand-in ellipsoid ({len(v)} v)"


_CPU_MS: list[float] = []  # process CPU time of the last _time call (median, ms)


def _time(fn, reps: int, device: torch.device) -> float:
    """Median wall time (ms); the median process CPU time goes to ``_CPU_MS[-1]``.

    On a shared machine wall time grows with other users' load; the process CPU time (summed over this
    process's threads) does not, so with one thread it estimates the wall time of an idle machine.
    """
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    ts, cs = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    _CPU_MS.append(statistics.median(cs) * 1000.0)
    return statistics.median(ts) * 1000.0


def _face_photo(data: str | None):
    """A 256 px real portrait (celeb1k-hair test) for the landmark timing, or None."""
    from PIL import Image

    root = os.path.join(data or os.environ.get("SHARED_DATA", ""), "celeb1k-hair", "test", "images")
    if not os.path.isdir(root):
        return None
    with Image.open(os.path.join(root, sorted(os.listdir(root))[0])) as im:
        return np.asarray(im.convert("RGB"))


def _row(what: str, size: int, ms: float, **extra) -> dict:
    return {"what": what, "size": size, "ms": ms, "cpu_ms": _CPU_MS[-1], **extra}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default="bench-results/undistort-cpu.json")
    ap.add_argument("--data", default=None)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--only-shipped", action="store_true", help="time only the shipped model's rows")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmark: --device cuda requested but CUDA is unavailable")
    torch.manual_seed(0)
    heads, head_desc = _heads(args.data)
    g = torch.Generator().manual_seed(0)
    verts, _ = heads.sample(g)
    colors = undistort.heads.head_colors(heads.region, g, vertices=verts)
    v, f, c = verts.to(dev), heads.faces.to(dev), colors.to(dev)
    rows = []
    for size in () if args.only_shipped else (128, 256, 512):
        cam = PinholeCamera.centered(0.6 * size * 40.0 / 33.8, size)
        t = torch.tensor([0.0, 0.0, 40.0], device=dev)
        rot = head_rotation(0.3, 0.1, 0.0).to(dev)
        ms = _time(
            lambda cam=cam, t=t, rot=rot: synthesize_pair(v, f, c, cam, rot, t), max(3, args.reps // 2), dev
        )
        rows.append(_row("render pair + exact flow", size, ms, model=head_desc))
    mem_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for variant in () if args.only_shipped else ("small", "paper"):
        und = (
            undistort.Undistorter(
                undistort.create_model(f"flownet_{variant}"),
                undistort.create_model(f"distancenet_{variant}"),
                undistort.create_model(f"completionnet_{variant}"),
                undistort.create_model("segnet_small"),
                work_size=256 if variant == "paper" else 128,
            )
            .to(dev)
            .eval()
        )
        for size in (256, 512):
            img = torch.rand(1, 3, size, size, device=dev)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                ms = _time(lambda und=und, img=img: und(img), args.reps, dev)
            peak = (torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else None
            rows.append(
                _row(f"Undistorter[{variant}, work {und.work_size}] full cascade", size, ms, peak_mib=peak)
            )
        if variant == "small":  # same weights in the default contiguous layout (the pre-0.1.0 path)
            ref = (
                undistort.Undistorter(
                    und.flow_net, und.distance_net, und.completion_net, und.seg_net, channels_last=False
                )
                .to(dev)
                .eval()
            )
            for prm in ref.parameters():
                prm.data = prm.data.contiguous()
            img = torch.rand(1, 3, 256, 256, device=dev)
            with torch.inference_mode():
                ms = _time(lambda ref=ref, img=img: ref(img), args.reps, dev)
            rows.append(_row("Undistorter[small, work 128] full cascade, channels_last=False", 256, ms))
            for prm in ref.parameters():
                if prm.dim() == 4:
                    prm.data = prm.data.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            img = torch.rand(1, 3, 256, 256, device=dev)
            ms = _time(
                lambda und=und, img=img: und(img, distance=50.0, mask=torch.ones(1, 1, 256, 256, device=dev)),
                args.reps,
                dev,
            )
        rows.append(_row(f"Undistorter[{variant}] flow+warp only (given mask, distance)", 256, ms))
    # the shipped model through the one-call path on a 256 px portrait (landmarks given), and the
    # landmark detection (dlib, the optional extra) timed apart
    shipped = os.path.join(os.path.dirname(undistort.__file__), "weights", undistort.pipeline.PRETRAINED_FILE)
    if dev.type == "cpu":
        und = (
            undistort.Undistorter.pretrained()
            if os.path.isfile(shipped)
            else undistort.Undistorter(
                undistort.create_model("flownet_small", conditioning="none"), work_size=64
            )
        )
        photo = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
        lm = np.zeros((68, 2))
        lm[36:42] = [100.0, 110.0]
        lm[42:48] = [156.0, 110.0]
        with torch.inference_mode():
            ms = _time(lambda: undistort.correct(photo, model=und, landmarks=lm), args.reps, dev)
        rows.append(_row("correct(): shipped flow net (work 64), crop + map back + warp", 256, ms))
        try:
            from undistort.portrait import LandmarkDetector

            det = LandmarkDetector.load()
            face = _face_photo(args.data)
            if face is not None:
                ms = _time(lambda: det(face), args.reps, dev)
                rows.append(_row("dlib face + 68 landmarks (extra), apart", face.shape[0], ms))
        except ImportError as err:
            print(f"landmark timing skipped: {err}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        f"undistort {undistort.__version__} benchmark on {dev} (torch {torch.__version__}, threads {torch.get_num_threads()})"
    )
    print(f"{'what':<62} {'size':>5} {'wall ms':>9} {'cpu ms':>9}")
    for r in rows:
        print(f"{r['what']:<62} {r['size']:>5} {r['ms']:>9.1f} {r['cpu_ms']:>9.1f}")
    print(f"peak RSS {rss:.0f} MiB (before the networks {mem_before / 1024:.0f} MiB)")
    res = {
        "package": "undistort",
        "version": undistort.__version__,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name()
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "rows": rows,
        "peak_rss_mib": rss,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
