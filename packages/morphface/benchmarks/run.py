"""morphface benchmark: geometry decoding, attribute-map generation, landmark fitting, preview rendering.

Usage: python packages/morphface/benchmarks/run.py --device cpu|cuda --out bench-results/morphface-<device>.json

Uses the real ICT-FaceKit model when ``--data`` (default: ../shared/data relative to the repo) holds it,
otherwise the synthetic toy model (reported in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import torch

import morphface
from morphface import AttributeGenerator, PerspectiveCamera, Upsampler, fit, project_points, render_preview
from morphface.data import toy_face_model
from morphface.geometry import similarity_transform
from morphface.io import load_ict_npz
from morphface.uv import geometry_maps, rasterize_uv

HERE = os.path.dirname(os.path.abspath(__file__))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], device: torch.device, *, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]  # median


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default=None)
    p.add_argument(
        "--data", default=os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "shared", "data"))
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller batches")
    args = p.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    npz = os.path.join(args.data, "ict-facekit", "ict_facekit_shapes.npz")
    if os.path.isfile(npz):
        model, model_name = load_ict_npz(npz, device=dev), "ICT-FaceKit Light (26719 v, 100 id, 53 expr)"
    else:
        model, model_name = toy_face_model(grid=65, n_identity=50, device=dev), "toy (4225 v, 50 id)"
    reps = 2 if args.quick else args.repeats
    rows = []

    # 1. sampling + decoding geometry
    b = 16 if args.quick else 64
    gen = torch.Generator(dev).manual_seed(0)
    t = timeit(lambda: model.vertices(model.sample(b, generator=gen)), dev, repeats=reps)
    rows.append(
        {
            "name": "sample + decode geometry",
            "setting": f"batch {b}",
            "seconds": t,
            "throughput": b / t,
            "unit": "faces/s",
        }
    )

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
    rows.append(
        {
            "name": "geometry map + AttributeGenerator",
            "setting": f"{res} px, batch {bm}, {sum(x.numel() for x in g.parameters()) / 1e6:.1f} M params",
            "seconds": t,
            "throughput": bm / t,
            "unit": "maps/s",
        }
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
    rows.append(
        {
            "name": "Upsampler x4",
            "setting": f"{res} -> {4 * res} px, batch {bu}, {sum(x.numel() for x in up.parameters()) / 1e6:.2f} M params",
            "seconds": t,
            "throughput": bu / t,
            "unit": "maps/s",
        }
    )

    # 3. fit to 68 2D landmarks (perspective)
    cam = PerspectiveCamera(800.0, 256.0, 256.0)
    a = model.sample(1, generator=gen)
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
    t = timeit(lambda: fit(model, uv, camera=cam, prior_weight=1.0), dev, repeats=reps)
    rows.append(
        {
            "name": "fit to 68 2D landmarks",
            "setting": "staged: pose, id (+contour), id+expr+pose; 10x20 L-BFGS iters per stage",
            "seconds": t,
            "throughput": 1 / t,
            "unit": "fits/s",
        }
    )

    # 3b. fit_photo on a real photo: dlib detection + 68 landmarks, then the staged fit (needs the landmarks extra)
    crop = os.path.join(args.data, "celeba-id-crops", "7201", "001085.jpg")
    try:
        from morphface.photo import LandmarkDetector, fit_photo

        det = LandmarkDetector()
    except ImportError:
        det = None
    if det is not None and os.path.isfile(crop) and dev.type == "cpu":
        t_det = timeit(lambda: det(crop), dev, repeats=reps)
        t = timeit(lambda: fit_photo(crop, model, detector=det), dev, repeats=reps)
        rows.append(
            {
                "name": "fit_photo (dlib landmarks)",
                "setting": "128 px CelebA crop: HOG detector + 68-point predictor",
                "seconds": t_det,
                "throughput": 1 / t_det,
                "unit": "photos/s",
            }
        )
        rows.append(
            {
                "name": "fit_photo (total)",
                "setting": "detection + landmarks + staged fit (defaults)",
                "seconds": t,
                "throughput": 1 / t,
                "unit": "photos/s",
            }
        )

    # 3c. export one asset: OBJ + MTL + PNG maps + GLB, 256 px maps, ICT's 12 materials
    import tempfile

    from morphface.pipeline import generate_faces

    face = generate_faces(model, ids[:1], attribute_generator=g, generator=gen)[0]
    with tempfile.TemporaryDirectory() as tmp:
        t = timeit(lambda: morphface.export(face, tmp), dev, repeats=reps)
    rows.append(
        {
            "name": "export (OBJ+MTL+PNG+GLB)",
            "setting": f"{res} px maps, {len(face.material_names or [])} materials",
            "seconds": t,
            "throughput": 1 / t,
            "unit": "assets/s",
        }
    )

    # 4. preview render
    v = model.vertices(a)[0]
    t = timeit(lambda: render_preview(v, model.faces, resolution=512), dev, repeats=reps)
    rows.append(
        {
            "name": "render_preview",
            "setting": f"512 px, {model.faces.shape[0]} triangles",
            "seconds": t,
            "throughput": 1 / t,
            "unit": "images/s",
        }
    )

    header = f"{'benchmark':36s} {'setting':50s} {'median s':>10s} {'throughput':>14s}"
    print(f"morphface {morphface.__version__} on {args.device} ({model_name})")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:36s} {r['setting']:50s} {r['seconds']:10.4f} {r['throughput']:9.2f} {r['unit']}")
    result = {
        "package": "morphface",
        "version": morphface.__version__,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": model_name,
        "rows": rows,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
