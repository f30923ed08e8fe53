"""morphface benchmark: sampling + decoding, attribute maps, fitting, fit_photo, export, preview rendering.

Usage: python packages/morphface/benchmarks/run.py --device cpu|cuda --out bench-results/morphface-<device>.json
       [--markdown reports/morphface/benchmark_cpu.md] [--threads 1] [--repeats 5] [--quick]

Uses the real ICT-FaceKit model when ``--data`` (default: ../shared/data relative to the repo) holds it,
otherwise the synthetic toy model (reported in the JSON). Every row records the median over repeats of the wall
time AND of this process's CPU time (``time.process_time``): on a shared, loaded machine the wall time also
counts the time the process waited for a core, the CPU time does not. Throughputs are from the wall medians.

``--only fit`` times the fitting rows alone (the default solver and 0.4.0's L-BFGS as a peer, same run).

Targets (issue 21), checked in the JSON and the markdown table: sample + decode >= 200 faces/s on CPU;
``fit_photo`` < 1 s per photo apart from the landmark detection (timed separately); export time per asset is
reported for OBJ (+ MTL + PNG maps) and GLB separately. Peers measured in the same run are reported as ratios
(numpy-only decode vs torch decode).
"""

from __future__ import annotations

import os

# the numpy peer must run on the same number of threads as torch: BLAS reads these when numpy is imported
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import morphface  # noqa: E402
from morphface import (  # noqa: E402
    AttributeGenerator,
    PerspectiveCamera,
    Upsampler,
    fit,
    project_points,
    render_preview,
)
from morphface.data import toy_face_model  # noqa: E402
from morphface.export import export_glb  # noqa: E402
from morphface.geometry import similarity_transform  # noqa: E402
from morphface.io import load_ict_npz  # noqa: E402
from morphface.pipeline import generate_faces  # noqa: E402
from morphface.uv import geometry_maps, rasterize_uv  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
#: celeba-id-crops photos for the fit_photo rows (train identities of the real-texture split, 128 px crops)
PHOTOS = (
    "7201/001085.jpg",
    "7226/193567.jpg",
    "7246/188759.jpg",
    "7270/015941.jpg",
    "7294/014595.jpg",
    "7315/159871.jpg",
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], object], device: torch.device, *, repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """Median wall and process-CPU seconds of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"seconds": statistics.median(wall), "cpu_seconds": statistics.median(cpu), "repeats": repeats}


def row(
    name: str, setting: str, t: dict[str, Any], per_call: float, unit: str, **extra: Any
) -> dict[str, Any]:
    """A result row; ``per_call`` items are processed per timed call (throughput = per_call / wall median)."""
    return {
        "name": name,
        "setting": setting,
        **t,
        "throughput": per_call / t["seconds"],
        "cpu_throughput": per_call / t["cpu_seconds"] if t["cpu_seconds"] > 0 else None,
        "unit": unit,
        **extra,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default=None, help="results JSON")
    p.add_argument("--markdown", default=None, help="also write the table as markdown here")
    p.add_argument(
        "--data", default=os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "shared", "data"))
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the committed table: 1)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller batches")
    p.add_argument(
        "--only",
        default="all",
        choices=("all", "fit"),
        help="'fit': only the fitting rows (fit to 2D landmarks, fit_photo), each with its L-BFGS peer",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    t_start, c_start = time.perf_counter(), time.process_time()
    npz = os.path.join(args.data, "ict-facekit", "ict_facekit_shapes.npz")
    if os.path.isfile(npz):
        model, model_name = load_ict_npz(npz, device=dev), "ICT-FaceKit Light (26719 v, 100 id, 53 expr)"
    else:
        model, model_name = toy_face_model(grid=65, n_identity=50, device=dev), "toy (4225 v, 50 id)"
    reps = 2 if args.quick else args.repeats
    rows: list[dict[str, Any]] = []

    full = args.only == "all"
    gen = torch.Generator(dev).manual_seed(0)
    if full:
        # 1. sampling + decoding geometry: torch (the library) and a numpy-only peer doing the same arithmetic
        b = 16 if args.quick else 64
        reps_fast = 10 * reps  # tens of ms per call: more repeats for a stable median on a loaded machine
        t = timeit(lambda: model.vertices(model.sample(b, generator=gen)), dev, repeats=reps_fast)
        rows.append(
            row("sample + decode geometry (torch)", f"batch {b}", t, b, "faces/s", target=">= 200 faces/s")
        )
        mean_np = model.mean.detach().cpu().numpy().reshape(-1)
        id_np = model.identity_basis.detach().cpu().numpy().reshape(model.n_identity, -1)
        rng = np.random.default_rng(0)

        def numpy_decode() -> np.ndarray:
            # the library's arithmetic: clamped N(0, I) identity, mean + a U (no expression product for neutral faces)
            a = np.clip(rng.standard_normal((b, model.n_identity), dtype=np.float32), -3.0, 3.0)
            out = mean_np + a @ id_np
            return out.reshape(b, -1, 3)

        if dev.type == "cpu":
            t = timeit(numpy_decode, dev, repeats=reps_fast)
            rows.append(row("sample + decode geometry (numpy peer)", f"batch {b}, float32", t, b, "faces/s"))

        # 2. geometry map + attribute generator at 256 px
        res = 256
        g = AttributeGenerator(res, device=dev).eval()
        raster = rasterize_uv(model.uvs, model.face_uvs, res, face_mask=model.uv_face_mask)
        bm = 2 if args.quick else 8
        ids = model.sample(bm, generator=gen)

        @torch.no_grad()
        def maps() -> torch.Tensor:
            pos, nrm, _ = geometry_maps(model.vertices(ids), model.faces, raster, mean=model.mean)
            return g(torch.cat([pos / 2.0, nrm], 1), g.sample_latent(bm))

        t = timeit(maps, dev, repeats=reps)
        n_par = sum(x.numel() for x in g.parameters()) / 1e6
        rows.append(
            row(
                "geometry map + AttributeGenerator",
                f"{res} px, batch {bm}, {n_par:.1f} M params",
                t,
                bm,
                "maps/s",
            )
        )

        # 2b. low-to-high resolution transfer: one x4 Upsampler stage, 256 -> 1024 px with the 1024 px geometry map
        up = Upsampler(5, scale=4, geometry_channels=6, device=dev).eval()
        bu = 1 if args.quick or dev.type == "cpu" else 4
        raster_hi = rasterize_uv(model.uvs, model.face_uvs, 4 * res, face_mask=model.uv_face_mask)
        ids_u = ids[:1].expand(bu, -1)
        pos_hi, nrm_hi, _ = geometry_maps(model.vertices(ids_u), model.faces, raster_hi, mean=model.mean)
        geo_hi = torch.cat([pos_hi / 2.0, nrm_hi], 1)
        low = torch.rand(bu, 5, res, res, device=dev)

        @torch.no_grad()
        def upsample() -> torch.Tensor:
            return up(low, geo_hi)

        t = timeit(upsample, dev, repeats=reps)
        n_par = sum(x.numel() for x in up.parameters()) / 1e6
        rows.append(
            row("Upsampler x4", f"{res} -> {4 * res} px, batch {bu}, {n_par:.2f} M params", t, bu, "maps/s")
        )

    # 3. fit to 68 2D landmarks of a sampled face (perspective), default staged fit
    cam = PerspectiveCamera(800.0, 256.0, 256.0)
    a = model.sample(1, generator=torch.Generator(dev).manual_seed(3))  # the same face with --only fit
    lm = model.landmarks(model.vertices(a))
    uv = project_points(
        similarity_transform(
            lm,
            torch.tensor([[0.05, 0.2, 0.0]], device=dev),
            torch.tensor([[0.0, 0.0, -100.0]], device=dev),
            torch.ones(1, device=dev),
        ),
        cam,
    )
    staged = "sampled face; staged: pose, identity (+contour), expression"
    t = timeit(lambda: fit(model, uv, camera=cam), dev, repeats=reps)
    rows.append(row("fit to 68 2D landmarks", f"{staged}; solver 'auto' (the default)", t, 1, "fits/s"))
    t = timeit(lambda: fit(model, uv, camera=cam, solver="lbfgs"), dev, repeats=reps)
    rows.append(
        row(
            "fit to 68 2D landmarks (L-BFGS peer)",
            f"{staged}; solver 'lbfgs' (0.4.0's solver: 10 x 20 L-BFGS iters per stage)",
            t,
            1,
            "fits/s",
        )
    )

    # 3b. fit_photo on real photos: landmark detection alone, the fit alone (what fit_photo does after the
    # detector, same camera), and fit_photo in total; one call per photo after a warm-up, medians over photos
    try:
        from morphface.photo import (
            _ASSUMED_DISTANCE_CM,
            _FACE_WIDTH_CM,
            LandmarkDetector,
            fit_photo,
            load_image,
        )

        det: Any = LandmarkDetector()
    except ImportError:
        det = None
    crops = [os.path.join(args.data, "celeba-id-crops", k) for k in PHOTOS[: 2 if args.quick else None]]
    if det is not None and all(os.path.isfile(c) for c in crops) and dev.type == "cpu":
        t_det = {"seconds": [], "cpu_seconds": []}
        t_fit = {"seconds": [], "cpu_seconds": []}
        t_peer = {"seconds": [], "cpu_seconds": []}
        t_all = {"seconds": [], "cpu_seconds": []}
        fit_photo(crops[0], model, detector=det)  # warm-up
        for crop in crops:
            w, c = time.perf_counter(), time.process_time()
            lms, _ = det(crop)
            t_det["seconds"].append(time.perf_counter() - w)
            t_det["cpu_seconds"].append(time.process_time() - c)
            h_img, w_img = load_image(crop).shape[:2]
            jaw = float((lms[0, 16] - lms[0, 0]).norm())
            cam_p = PerspectiveCamera(
                _ASSUMED_DISTANCE_CM * jaw / _FACE_WIDTH_CM, (w_img - 1) / 2, (h_img - 1) / 2
            )
            w, c = time.perf_counter(), time.process_time()
            fit(model, lms[0], camera=cam_p)
            t_fit["seconds"].append(time.perf_counter() - w)
            t_fit["cpu_seconds"].append(time.process_time() - c)
            w, c = time.perf_counter(), time.process_time()
            fit(model, lms[0], camera=cam_p, solver="lbfgs")
            t_peer["seconds"].append(time.perf_counter() - w)
            t_peer["cpu_seconds"].append(time.process_time() - c)
            w, c = time.perf_counter(), time.process_time()
            fit_photo(crop, model, detector=det)
            t_all["seconds"].append(time.perf_counter() - w)
            t_all["cpu_seconds"].append(time.process_time() - c)

        def med(d: dict[str, list[float]]) -> dict[str, Any]:
            return {
                "seconds": statistics.median(d["seconds"]),
                "cpu_seconds": statistics.median(d["cpu_seconds"]),
                "repeats": len(d["seconds"]),
                "per_photo_seconds": d["seconds"],
                "per_photo_cpu_seconds": d["cpu_seconds"],
            }

        where = f"{len(crops)} CelebA crops (128 px), one call each, median over photos"
        rows.append(
            row(
                "fit_photo: landmarks only",
                f"{where}; dlib HOG detector + 68-point predictor",
                med(t_det),
                1,
                "photos/s",
            )
        )
        rows.append(
            row(
                "fit_photo: fit only (apart from landmarks)",
                f"{where}; staged fit with fit_photo's camera and defaults",
                med(t_fit),
                1,
                "photos/s",
                target="< 1 s per photo",
            )
        )
        rows.append(
            row(
                "fit_photo: fit only, L-BFGS peer (0.4.0's solver)",
                f"{where}; the same fit with solver='lbfgs', timed right after it",
                med(t_peer),
                1,
                "photos/s",
            )
        )
        rows.append(row("fit_photo: total", f"{where}; landmarks + staged fit", med(t_all), 1, "photos/s"))

    if full:
        # 3c. export one asset (ICT's 12 materials): OBJ + MTL + JSON + PNG maps, and GLB, separately, at the
        # generator's 256 px and at 1024 px maps
        face = generate_faces(model, ids[:1], attribute_generator=g, generator=gen)[0]
        n_mat = len(face.material_names or [])
        for size in (res, 4 * res):
            f = face
            if size != res:
                bigger = {}
                for key in ("albedo", "specular", "displacement"):
                    m = getattr(face, key)
                    bigger[key] = torch.nn.functional.interpolate(
                        m[None], size=(size, size), mode="bilinear"
                    )[0]
                f = dataclasses.replace(face, **bigger)
            with tempfile.TemporaryDirectory() as tmp:
                t = timeit(lambda f=f, tmp=tmp: morphface.export(f, tmp, glb=False), dev, repeats=reps)
                rows.append(
                    row(
                        "export OBJ (+MTL, JSON, 4 PNG maps)",
                        f"{size} px maps, {n_mat} materials",
                        t,
                        1,
                        "assets/s",
                        target="reported",
                    )
                )
                t = timeit(
                    lambda f=f, tmp=tmp: export_glb(f, os.path.join(tmp, "face.glb")), dev, repeats=reps
                )
                rows.append(
                    row(
                        "export GLB",
                        f"{size} px maps, {n_mat} materials, PBR",
                        t,
                        1,
                        "assets/s",
                        target="reported",
                    )
                )

        # 4. preview render
        v = model.vertices(a)[0]
        t = timeit(lambda: render_preview(v, model.faces, resolution=512), dev, repeats=reps)
        rows.append(row("render_preview", f"512 px, {model.faces.shape[0]} triangles", t, 1, "images/s"))

    # targets and peer ratios
    by = {r["name"]: r for r in rows}
    targets: dict[str, Any] = {}
    dec = by.get("sample + decode geometry (torch)")
    if dec:
        targets["sample + decode >= 200 faces/s"] = {
            "wall_faces_per_s": dec["throughput"],
            "cpu_faces_per_s": dec["cpu_throughput"],
            "met": bool(dec["throughput"] >= 200),
        }
    fo = by.get("fit_photo: fit only (apart from landmarks)")
    targets["fit_photo < 1 s per photo apart from landmarks"] = (
        {
            "wall_s": fo["seconds"],
            "cpu_s": fo["cpu_seconds"],
            "met": bool(fo["seconds"] < 1.0),
            "met_in_cpu_time": bool(fo["cpu_seconds"] < 1.0),
        }
        if fo
        else {"met": None, "why": "landmarks extra, photos or CPU device missing"}
    )
    ratios: dict[str, float] = {}
    if dec and "sample + decode geometry (numpy peer)" in by:
        peer = by["sample + decode geometry (numpy peer)"]
        ratios["decode torch / numpy throughput (wall)"] = dec["throughput"] / peer["throughput"]
        ratios["decode torch / numpy throughput (cpu)"] = peer["cpu_seconds"] / dec["cpu_seconds"]
    if fo:
        tot = by["fit_photo: total"]
        ratios["fit_photo fit-only share of total (wall)"] = fo["seconds"] / tot["seconds"]
        peer = by["fit_photo: fit only, L-BFGS peer (0.4.0's solver)"]
        ratios["fit_photo fit-only speed-up over L-BFGS (wall)"] = peer["seconds"] / fo["seconds"]
        ratios["fit_photo fit-only speed-up over L-BFGS (cpu)"] = peer["cpu_seconds"] / fo["cpu_seconds"]
    t_total, c_total = time.perf_counter() - t_start, time.process_time() - c_start

    print(
        f"morphface {morphface.__version__} on {args.device} ({model_name}), {torch.get_num_threads()} thread(s)"
    )
    header = f"{'benchmark':44s} {'median wall s':>13s} {'median CPU s':>13s} {'throughput':>16s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:44s} {r['seconds']:13.4f} {r['cpu_seconds']:13.4f} {r['throughput']:10.2f} {r['unit']}"
        )
    for k, v_ in targets.items():
        print(
            f"target {k}: {'met' if v_.get('met') else 'MISSED' if v_.get('met') is False else 'not measured'}"
        )
    result = {
        "package": "morphface",
        "version": morphface.__version__,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "model": model_name,
        "only": args.only,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "total_wall_s": t_total,
        "total_cpu_s": c_total,
        "rows": rows,
        "targets": targets,
        "ratios": ratios,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.out}")
    if args.markdown:
        write_markdown(args.markdown, result)
        print(f"wrote {args.markdown}")


def write_markdown(path: str, r: dict[str, Any]) -> None:
    """The results as a markdown table (what reports/morphface/benchmark_cpu.md holds)."""
    la, lb = r["load_average_before"], r["load_average_after"]
    lines = [
        f"# morphface {r['version']} benchmark ({r['device']})"
        + (" - fitting rows only (`--only fit`)" if r.get("only", "all") != "all" else ""),
        "",
        f"Machine: {r['device_name']}, {r['cpu_count']} cores; torch {r['torch']}, numpy {r['numpy']}, "
        f"{r['threads']} torch thread(s) (numpy's BLAS also 1); model {r['model']}.",
        f"Load average (1/5/15 min) before {la and '/'.join(f'{x:.1f}' for x in la)}, after "
        f"{lb and '/'.join(f'{x:.1f}' for x in lb)}; whole run {r['total_wall_s']:.0f} s wall, "
        f"{r['total_cpu_s']:.0f} s CPU.",
        "",
        "| benchmark | setting | n | median wall s | median CPU s | throughput (wall) | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['name']} | {x['setting']} | {x['repeats']} | {x['seconds']:.4g} | {x['cpu_seconds']:.4g} | "
            f"{x['throughput']:.4g} {x['unit']} | {x.get('target', '')} |"
        )
    lines += ["", "| target (issue 21) | measured | met |", "|---|---|---|"]
    for k, v in r["targets"].items():
        meas = ", ".join(f"{a} {b:.3g}" for a, b in v.items() if isinstance(b, float))
        met = "yes" if v.get("met") else "no" if v.get("met") is False else "n/a"
        if "met_in_cpu_time" in v:
            met = f"wall: {met}; CPU time: {'yes' if v['met_in_cpu_time'] else 'no'}"
        lines.append(f"| {k} | {meas} | {met} |")
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3g} |" for k, v in r["ratios"].items()]
    lines.append("")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    main()
