"""morphface small-scale reproduction (Li et al., CVPR 2020, "Learning Formation of Physically-Based Face
Attributes").

Usage: python packages/morphface/reproduce/run.py --out reports/morphface [--data /work/shared/data] [--quick]

The paper's data (4000 light-stage scans with albedo/specular/displacement) and code are private and its
text reports no table we could read, so every "paper" cell is null. What is measured, on the real
ICT-FaceKit Light model (the group's public linear model) and procedural attribute maps:

1. linear model: held-out reconstruction error vs number of PCA components (built from sampled scans);
2. fitting: face-region error after fitting 68 noisy 3D landmarks, and 68 2D landmarks of real renders
   (ict-faces-128, known identity coefficients), vs the mean-face baseline;
3. the attribute generator's attribute-geometry correlations vs the data's and vs an unconditional
   ablation, the upsampler vs bilinear upscaling, and preview images of sampled / interpolated faces.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

import morphface
from morphface import (
    AttributeGenerator,
    LinearFaceModel,
    PatchDiscriminator,
    PerspectiveCamera,
    Upsampler,
    fit,
)
from morphface.data import AttributeMapDataset, attribute_geometry_statistics
from morphface.fit import EXPRESSION_PRIOR_SCALE, umeyama
from morphface.functional import masked_l1
from morphface.interpolation import interpolate
from morphface.io import load_ict_npz
from morphface.pipeline import generate_faces
from morphface.recipes import train_attribute_model, train_upsampler
from morphface.render import render_preview
from morphface.uv import geometry_maps, rasterize_uv

HERE = os.path.dirname(os.path.abspath(__file__))
FACE = torch.arange(9409)  # ICT face region, vertices 0..9408
log = logging.getLogger("morphface.reproduce")


def aligned_error_mm(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean per-vertex distance (mm) after similarity (Umeyama) alignment of pred to gt (cm inputs)."""
    r, t, s = umeyama(pred[None].double(), gt[None].double())
    p = s[:, None, None] * (pred[None].double() @ r.transpose(1, 2)) + t[:, None]
    return float((p[0] - gt.double()).norm(dim=-1).mean() * 10)


def line_plot(
    path: str, xs: list[float], series: dict[str, list[float]], title: str, xlabel: str, ylabel: str
) -> None:
    """A small PNG line plot with PIL (no matplotlib dependency)."""
    w, h, m = 560, 360, 56
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    allv = [v for s in series.values() for v in s]
    ymax = max(allv) * 1.05 or 1.0
    xmin, xmax = min(xs), max(xs)

    def px(x: float, y: float) -> tuple[float, float]:
        return m + (x - xmin) / (xmax - xmin or 1) * (w - 2 * m), h - m - y / ymax * (h - 2 * m)

    d.rectangle([m, m, w - m, h - m], outline="black")
    for i in range(5):
        y = ymax * i / 4
        d.text((4, px(xmin, y)[1] - 6), f"{y:.2f}", fill="black")
    for x in xs:
        d.text((px(x, 0)[0] - 6, h - m + 4), f"{x:g}", fill="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"]
    for k, (name, ys) in enumerate(series.items()):
        c = colours[k % len(colours)]
        pts = [px(x, y) for x, y in zip(xs, ys)]
        d.line(pts, fill=c, width=2)
        for p in pts:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=c)
        d.text((w - m - 170, m + 8 + 14 * k), name, fill=c)
    d.text((m, 8), title, fill="black")
    d.text((w // 2 - 40, h - 18), xlabel, fill="black")
    d.text((4, 24), ylabel, fill="black")
    img.save(path)


def to_pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray((img.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8))


def strip(images: list[Image.Image]) -> Image.Image:
    w, h = images[0].size
    out = Image.new("RGB", (w * len(images), h), "white")
    for i, im in enumerate(images):
        out.paste(im, (i * w, 0))
    return out


def _load(path: str) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return dict(json.load(fh))


def companion_sections(out: str) -> list[str]:
    """Sections 4-8 of the report: the companion results written into ``out`` by the other scripts.

    Each section reads its JSON when present (else says which command makes it), so the report stays one
    document that agrees with every file beside it.
    """
    lines: list[str] = []
    missing = "Not in this folder; `{}` writes it."
    # 4. fitting on real photos
    lines += ["## 4. Fitting on real photos: 0.2.0's joint fit vs the staged fit", ""]
    fba = _load(os.path.join(out, "fit_before_after.json"))
    cmd = "python packages/morphface/reproduce/fit_before_after.py --out reports/morphface"
    if fba is None:
        lines += [missing.format(cmd), ""]
    else:
        o, n = fba["results"]["0.2.0"], fba["results"]["0.3.0"]
        k = len(fba["crops"])
        lines += [
            f"`{cmd}` -> `fit_before_after.json`: {k} celeba-id-crops photos of {k} identities, their shipped dlib 68-point",
            f"landmarks, a {fba['focal_px']:g} px pinhole camera, ICT-FaceKit (100 identity modes, 53 expressions), default arguments;",
            "each version's joint fit and identity-only fit of the same objective (the staged fit is unchanged since 0.3.0).",
            "",
            "| measured on the photos | 0.2.0 joint fit | staged fit (0.3.0+) |",
            "|---|---|---|",
            f"| photos whose joint objective is above their identity-only objective | {o['photos_joint_above_identity_only']} of {k} | {n['photos_joint_above_identity_only']} of {k} |",
            f"| median joint / identity-only objective (px^2 + priors) | {o['joint_objective_median']:.1f} / {o['identity_only_objective_median']:.1f} | {n['joint_objective_median']:.1f} / {n['identity_only_objective_median']:.1f} |",
            f"| largest expression weight; weights > 0.5 (of {k} x 53) | {o['max_expression']:.2f}; {o['expression_weights_above_0.5']} | {n['max_expression']:.2f}; {n['expression_weights_above_0.5']} |",
            f"| mean expression weight | {o['mean_expression']:.3f} | {n['mean_expression']:.3f} |",
            f"| mean jawline / inner landmark residual (px) | {o['jaw_residual_px']:.2f} / {o['inner_residual_px']:.2f} | {n['jaw_residual_px']:.2f} / {n['inner_residual_px']:.2f} |",
            "",
            "No 3D truth exists for these photos: this shows the objective and the expression weights, not shape accuracy.",
            "",
        ]
    # 5. expression prior on validation photos
    lines += ["## 5. The default expression prior, checked on validation photos", ""]
    epv = _load(os.path.join(out, "expression_prior_validation.json"))
    cmd = "python packages/morphface/reproduce/expression_prior_validation.py --out reports/morphface"
    if epv is None:
        lines += [missing.format(cmd), ""]
    else:
        lines += [
            f"`{cmd}` -> `expression_prior_validation.json`: {len(epv['photos'])} photos of the {epv['identities']} validation",
            "identities of celeba-id-crops (used by no test and no other row), staged fit with `prior_weight=1` and",
            "`expression_prior_weight` s on a grid. Criterion fixed before the run: held-out landmark error (the inner landmarks",
            "split into two folds; each fold predicted from a fit to the jawline and the other fold). Rule: the largest s within",
            "one standard error of the best.",
            "",
            "| s | held-out landmark error (px) | minus best (SE) | max expression | weights > 0.5 | mean expression | joint > identity-only | identity within / between |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in epv["rows"].items():
            diff = (
                f"{r['paired_diff_to_best_px']:+.3f} ({r['paired_diff_to_best_se_px']:.3f})"
                if "paired_diff_to_best_px" in r
                else "-"
            )
            lines.append(
                f"| {name} | {r['heldout_landmark_px_mean']:.3f} +/- {r['heldout_landmark_px_sem']:.3f} | {diff} | "
                f"{r['max_expression']:.2f} | {r['expression_weights_above_0.5']} | {r['mean_expression']:.3f} | "
                f"{r['photos_joint_above_identity_only']} of {len(epv['photos'])} | {r['identity_within_over_between']:.3f} |"
            )
        d50 = epv["rows"].get(f"{epv['library_default']:g}", {})
        pick = epv["rows"][f"{epv['rule_pick']:g}"]
        grid = [(float(n), r) for n, r in epv["rows"].items() if r["expression_prior_weight"] is not None]
        mild = [s for s, _ in grid if all(r["expression_weights_above_0.5"] == 0 for t, r in grid if t >= s)]
        ratios = [r["identity_within_over_between"] for r in epv["rows"].values()]
        above = sum(r["photos_joint_above_identity_only"] for r in epv["rows"].values())
        lines += [
            "",
            f"The rule picks s = {epv['rule_pick']:g} (best mean: s = {epv['best_mean']}); the library keeps its hand-set default",
            f"s = {epv['library_default']:g}, which costs {d50.get('paired_diff_to_best_px', float('nan')):.3f} px "
            f"(SE {d50.get('paired_diff_to_best_se_px', float('nan')):.3f}) of held-out landmark error against the best. The reason",
            f"is in the columns the criterion cannot see: at s = {epv['rule_pick']:g} the fit has "
            f"{pick['expression_weights_above_0.5']} expression weights above 0.5 (largest {pick['max_expression']:.2f}),",
            "saturated blendshapes like the caricatures of issue 21, while "
            + (
                f"from s = {min(mild):g} up no weight exceeds 0.5."
                if mild
                else "every grid value has some weight > 0.5."
            ),
            "Held-out landmarks reward any deformation that moves the mouth and brows, plausible or not, so this criterion alone",
            "cannot choose the prior; the default stays a judgement (README, Deviations). The joint objective is above the",
            f"identity-only one on {above} photo-settings of {len(epv['photos']) * len(epv['rows'])}; identity consistency (mean",
            "aligned distance between two photos of one person over that between different people) barely moves with s",
            f"({min(ratios):.2f}-{max(ratios):.2f}; 68 landmarks pin down identity poorly).",
            "",
        ]
    # 6. real skin textures
    lines += ["## 6. Real skin textures from photos (negative result)", ""]
    rt = _load(os.path.join(out, "real_textures", "results.json"))
    cmd = "python packages/morphface/reproduce/real_textures.py --out reports/morphface/real_textures"
    if rt is None:
        lines += [missing.format(cmd), ""]
    else:
        res = rt["results"]
        n_tr, n_te = rt["n_maps"]["train"], rt["n_maps"]["test"]
        sid = rt["split_identities"]
        lines += [
            f"`{cmd}` -> `real_textures/report.md` (morphface {rt['versions']['morphface']}): each photo fitted and unwrapped into",
            f"ICT's face UV tile at {rt['config']['res']} px with the visibility / confidence mask; {n_tr} train / {n_te} test photos",
            f"of {sid['train']} / {sid['test']} identities (split by identity; the {sid['val']} validation identities are the ones",
            f"of section 5); {rt['config']['cpu_seconds']} CPU-seconds per network. Metrics on the test photos against their real",
            "maps (confident texels only):",
            "",
            "| method | weighted L1 to the real map | fine-detail ratio | corr(luminance, alpha_0) |",
            "|---|---|---|---|",
        ]
        for name, r in res.items():
            l1 = f"{r['weighted_l1']:.3f} +/- {r['weighted_l1_ci95']:.3f}" if "weighted_l1" in r else "-"
            lines.append(
                f"| {name} | {l1} | {r['fine_detail_ratio']:.3f} | {r['corr_luminance_alpha0']:.2f} |"
            )
        lines += [
            "",
            "![real UV maps](real_textures/real_uv_maps.png)",
            "",
            "What the picture shows (six test photos as columns): top row, the unwrapped photos: recognisable faces with eyes,",
            "nose and mostly open, smiling mouths where ICT's layout puts them, black where a texel was hidden, too oblique or",
            "outside the crop (one person wears a dark hat); second row, the conditional generator: nearly the same blurry",
            "average face in every column, with an orange band along the lower (neck) edge; third row, the mean of the",
            "training maps: one pale average face with a dark open mouth, identical in every column; bottom row, the",
            "procedural formula: flat pale-pink squares with no features.",
            "",
            "The generators trained on real maps end a little below the mean-map baseline in L1 (intervals overlap), with about a",
            "third of the real fine detail; conditioning on geometry makes no measurable difference, and the real maps show no",
            "luminance-geometry correlation for a generator to learn. A working real-data pipeline with an honest negative result",
            "at CPU scale, not a trained texture model; the photos keep their lighting (nothing is de-lit).",
            "",
        ]
    # 7. reference scan
    lines += ["## 7. A complete real PBR head (reference only)", ""]
    if os.path.isfile(os.path.join(out, "head_scan_lps.png")):
        lines += [
            "`python packages/morphface/reproduce/head_scan_example.py --out reports/morphface` -> `head_scan_lps.png`: the Lee Perry-Smith scan rendered",
            "by `render_preview` with its own albedo and specular maps, then its albedo, specular and tangent-space normal maps.",
            "",
            "![head scan](head_scan_lps.png)",
            "",
            "What it shows: a bald man with closed eyes on bare shoulders; the albedo map is pale skin with red lips, darker",
            "stubble around mouth, chin and cheeks and both ears at the sides; the specular map is bright on forehead, nose and",
            "lips and dark on the cheeks and stubble; the normal map is light blue with faint outlines of the ears and wrinkles.",
            'Not used for training or metrics. "Infinite, 3D Head Scan" by Lee Perry-Smith, CC BY 3.0.',
            "",
        ]
    else:
        lines += [
            missing.format(
                "python packages/morphface/reproduce/head_scan_example.py --out reports/morphface"
            ),
            "",
        ]
    # 8. benchmark
    lines += ["## 8. Benchmark (CPU)", ""]
    bench = _load(os.path.join(out, "benchmark_cpu.json"))
    cmd = (
        "python packages/morphface/benchmarks/run.py --device cpu{} --out reports/morphface/benchmark_cpu.json "
        "--markdown reports/morphface/benchmark_cpu.md"
    )
    if bench is None:
        lines += [missing.format(cmd.format("")), ""]
    else:
        reps = {r["repeats"] for r in bench["rows"] if r["name"] == "render_preview"}
        cmd = cmd.format(f" --repeats {reps.pop()}" if reps else "")
        la = bench.get("load_average_before") or [float("nan")]
        lines += [
            f"`{cmd}` (morphface {bench['version']}, {bench['threads']} thread, {bench['cpu_count']} cores, load average "
            f"{la[0]:.1f} at the start: the machine was busy with other jobs). Medians; wall time includes waiting for a core,",
            "CPU time is this process's own. Full table: `benchmark_cpu.md`.",
            "",
            "| benchmark | median wall s | median CPU s | throughput (wall) |",
            "|---|---|---|---|",
        ]
        for r in bench["rows"]:
            lines.append(
                f"| {r['name']} ({r['setting']}) | {r['seconds']:.3g} | {r['cpu_seconds']:.3g} | {r['throughput']:.3g} {r['unit']} |"
            )
        lines += ["", "| target (issue 21) | met |", "|---|---|"]
        for k, v in bench["targets"].items():
            lines.append(
                f"| {k} | {'yes' if v.get('met') else 'no' if v.get('met') is False else 'not measured'} |"
            )
        lines += [""]
    return lines


LABELS = {
    "tone_vs_broadness": "albedo tone vs face broadness (corr.)",
    "specular_vs_normal_z": "specular vs N_z^2 x T-zone (corr.)",
    "detail_vs_length": "displacement amplitude vs face length (corr.)",
}


def generator_section(
    args: argparse.Namespace,
    cfg: dict[str, int],
    model: LinearFaceModel,
    rows: list[dict[str, object]],
    timings: dict[str, float],
) -> tuple[dict[str, dict[str, float]], float, float, float]:
    """Section 3: attribute GAN vs unconditional, upsamplers vs bilinear, end to end, previews (appends rows).

    Returns ``(stats, l1_up, l1_bil, l1_cascade)``.
    """
    q = args.quick
    res = cfg["gan_res"]
    t0 = time.time()
    ds = AttributeMapDataset(model, res, cfg["gan_train"], seed=args.seed)
    val = AttributeMapDataset(model, res, cfg["gan_val"], seed=args.seed + 1)
    stats = {"data": attribute_geometry_statistics(val.attribute_maps, val.geometry, val.features, val.mask)}
    curves: dict[str, list[float]] = {}
    gens: dict[str, AttributeGenerator] = {}
    for name, cond in (("conditional", True), ("unconditional", False)):
        torch.manual_seed(args.seed)
        g = AttributeGenerator(res, base_channels=16, max_channels=128, conditional=cond)
        d = PatchDiscriminator(11 if cond else 5, base_channels=16)
        logs = train_attribute_model(
            g,
            d,
            ds,
            steps=cfg["gan_steps"],
            batch_size=8,
            seed=args.seed,
            checkpoint_path=os.path.join(args.out, f"_gan_{name}.pt"),
            progress=False,
        )
        os.remove(os.path.join(args.out, f"_gan_{name}.pt"))  # checkpoints are not committed
        curves[name] = [
            float(np.mean([r_["l1"] for r_ in logs[i : i + 20]])) for i in range(0, len(logs), 20)
        ]
        with torch.no_grad():
            zgen = torch.Generator().manual_seed(args.seed + 7)
            outs = (
                g(
                    val.geometry,
                    g.sample_latent(len(val), generator=zgen),
                    torch.randn(len(val), 1, res, res, generator=zgen),
                )
                * val.mask
            )
        stats[name] = attribute_geometry_statistics(outs, val.geometry, val.features, val.mask)
        stats[name]["val_l1_albedo"] = float(masked_l1(outs[:, :3], val.attribute_maps[:, :3], val.mask))
        gens[name] = g
    stats["data"]["val_l1_albedo"] = 0.0
    line_plot(
        os.path.join(args.out, "generator_training_l1.png"),
        [20 * i for i in range(len(curves["conditional"]))],
        curves,
        "attribute GAN: training masked L1 (20-step means)",
        "step",
        "masked L1",
    )
    for key, lab in LABELS.items():
        rows.append(
            {
                "setting": f"attribute GAN {res}px, {cfg['gan_steps']} steps, {cfg['gan_val']} held-out identities; data value {stats['data'][key]:.3f}",
                "metric": lab,
                "ours": stats["conditional"][key],
                "baseline": stats["unconditional"][key],
                "paper": None,
            }
        )
    timings["generator"] = time.time() - t0
    log.info("generator done in %.1fs: %s", timings["generator"], stats)

    def fit_upsampler(up: Upsampler, maps: torch.Tensor, **data: torch.Tensor) -> None:
        # every upsampler of this report trains with the same recipe settings
        train_upsampler(
            up, maps, **data, steps=cfg["up_steps"], batch_size=4, lr=5e-4, seed=args.seed, progress=False
        )

    # upsampler x4: 64 -> 256
    t0 = time.time()
    hi_train = AttributeMapDataset(model, 4 * res, cfg["up_train"], seed=args.seed + 2)
    hi_val = AttributeMapDataset(model, 4 * res, 16, seed=args.seed + 3)
    torch.manual_seed(args.seed)
    up = Upsampler(5, scale=4, hidden=16, n_blocks=3, geometry_channels=6)
    fit_upsampler(up, hi_train.attribute_maps, geometry=hi_train.geometry, mask=hi_train.mask)
    with torch.no_grad():
        lo = torch.nn.functional.avg_pool2d(hi_val.attribute_maps, 4)
        pred = up(lo, hi_val.geometry)
        bil = torch.nn.functional.interpolate(lo, scale_factor=4.0, mode="bilinear", align_corners=False)
        l1_up, l1_bil = (
            float(masked_l1(pred, hi_val.attribute_maps, hi_val.mask)),
            float(masked_l1(bil, hi_val.attribute_maps, hi_val.mask)),
        )
    rows.append(
        {
            "setting": f"Upsampler x4 (64->256 px) with 256 px geometry, {cfg['up_steps']} steps, 16 held-out identities",
            "metric": "held-out masked L1 of attribute maps",
            "ours": l1_up,
            "baseline": l1_bil,
            "paper": None,
        }
    )

    # the paper's cascade: two x2 stages, 64 -> 128 (maps only) -> 256 (with the 256 px geometry map), each
    # trained on its own pairs (area-downsampled maps), then chained on the held-out 64 px maps
    pool = torch.nn.functional.avg_pool2d
    mid_mask = (pool(hi_train.mask[None], 2)[0] > 0.5).float()
    torch.manual_seed(args.seed)
    s1 = Upsampler(5, scale=2, hidden=16, n_blocks=3)
    fit_upsampler(s1, pool(hi_train.attribute_maps, 2), mask=mid_mask)
    torch.manual_seed(args.seed)
    s2 = Upsampler(5, scale=2, hidden=16, n_blocks=3, geometry_channels=6)
    fit_upsampler(s2, hi_train.attribute_maps, geometry=hi_train.geometry, mask=hi_train.mask)
    with torch.no_grad():
        l1_cascade = float(masked_l1(s2(s1(lo), hi_val.geometry), hi_val.attribute_maps, hi_val.mask))
    rows.append(
        {
            "setting": f"Upsampler cascade x2 -> x2 (64->128->256 px), stages trained separately, {cfg['up_steps']} steps each, 16 held-out identities",
            "metric": "held-out masked L1 of attribute maps",
            "ours": l1_cascade,
            "baseline": l1_bil,
            "paper": None,
        }
    )

    # end to end at 4x resolution: generate_faces(conditional generator, upsamplers=[x4 stage]) on held-out
    # identities; are the attribute-geometry couplings still there at 256 px?
    n_e2e = 16 if q else 64
    ids_e2e = val.identity[:n_e2e]
    faces_hi = generate_faces(
        model,
        ids_e2e,
        attribute_generator=gens["conditional"],
        upsamplers=[up],
        generator=torch.Generator().manual_seed(args.seed + 7),
    )
    maps_hi = []
    for f in faces_hi:
        assert f.albedo is not None and f.specular is not None and f.displacement is not None
        maps_hi.append(torch.cat([f.albedo, f.specular, f.displacement / 0.05]))  # dataset scaling
    raster_hi = rasterize_uv(model.uvs, model.face_uvs, 4 * res, face_mask=model.uv_face_mask)
    with torch.no_grad():
        pos_hi, nrm_hi, mask_hi = geometry_maps(
            model.vertices(ids_e2e), model.faces, raster_hi, mean=model.mean
        )
    geo_hi = torch.cat([pos_hi / 2.0, nrm_hi], 1)
    data_hi = AttributeMapDataset(model, 4 * res, n_e2e, seed=args.seed + 4)
    stats["upsampled_256"] = attribute_geometry_statistics(
        torch.stack(maps_hi), geo_hi, val.features[:n_e2e], mask_hi.float()
    )
    # the baseline on the same identities, latents and noise: the 64 px maps before the upsampler
    faces_lo = generate_faces(
        model,
        ids_e2e,
        attribute_generator=gens["conditional"],
        generator=torch.Generator().manual_seed(args.seed + 7),
    )
    maps_lo = []
    for f in faces_lo:
        assert f.albedo is not None and f.specular is not None and f.displacement is not None
        maps_lo.append(torch.cat([f.albedo, f.specular, f.displacement / 0.05]))
    stats["generator_64_same_ids"] = attribute_geometry_statistics(
        torch.stack(maps_lo), val.geometry[:n_e2e], val.features[:n_e2e], val.mask
    )
    stats["data_256"] = attribute_geometry_statistics(
        data_hi.attribute_maps, data_hi.geometry, data_hi.features, data_hi.mask
    )
    for key in ("tone_vs_broadness", "detail_vs_length"):
        rows.append(
            {
                "setting": f"generator 64px + Upsampler x4 via generate_faces, {n_e2e} held-out identities at 256 px; data value at 256 px {stats['data_256'][key]:.3f}; baseline = the 64 px generator output",
                "metric": LABELS[key],
                "ours": stats["upsampled_256"][key],
                "baseline": stats["generator_64_same_ids"][key],
                "paper": None,
            }
        )
    timings["upsampler"] = time.time() - t0

    # ---------------------------------------------------------------- previews
    t0 = time.time()
    g = gens["conditional"]
    pg = torch.Generator().manual_seed(args.seed + 11)
    ids = model.sample(4, generator=pg, truncation=2.0)
    faces = generate_faces(model, ids, attribute_generator=g, generator=pg)
    size = 192

    def shot(face: morphface.FaceAsset) -> Image.Image:
        return to_pil(
            render_preview(
                face.vertices,
                face.faces,
                resolution=size,
                albedo=face.albedo,
                specular=face.specular,
                uvs=face.uvs,
                face_uvs=face.face_uvs,
                uv_face_mask=model.uv_face_mask,
            )
        )

    strip([shot(f) for f in faces]).save(os.path.join(args.out, "preview_sampled.png"))
    ts = torch.linspace(0, 1, 5)
    id_path = interpolate(ids[0], ids[1], ts, mode="slerp")
    z_path = interpolate(
        g.sample_latent(1, generator=pg)[0], g.sample_latent(1, generator=pg)[0], ts, mode="slerp"
    )
    inter = []
    for i in range(5):
        gg = torch.Generator().manual_seed(0)
        f = generate_faces(
            model, id_path[i : i + 1], attribute_generator=g, z=z_path[i : i + 1], generator=gg
        )[0]
        inter.append(shot(f))
    strip(inter).save(os.path.join(args.out, "preview_interpolated.png"))
    maps = faces[0]
    assert maps.albedo is not None and maps.specular is not None and maps.displacement is not None
    panel = [
        to_pil(maps.albedo.permute(1, 2, 0)),
        to_pil(maps.specular.expand(3, -1, -1).permute(1, 2, 0)),
        to_pil(
            (maps.displacement / (2 * maps.displacement.abs().max()) + 0.5).expand(3, -1, -1).permute(1, 2, 0)
        ),
    ]
    strip([im.resize((size, size), Image.NEAREST) for im in panel]).save(
        os.path.join(args.out, "generated_maps.png")
    )
    timings["previews"] = time.time() - t0
    return stats, l1_up, l1_bil, l1_cascade


def reuse_generator_section(
    args: argparse.Namespace, cfg: dict[str, int], rows: list[dict[str, object]], timings: dict[str, float]
) -> tuple[dict[str, dict[str, float]], float, float, float, str]:
    """Section 3 read back from the ``results.json`` already in ``--out`` (``--reuse-generator``).

    Its rows, statistics and timings are copied unchanged, its pictures are left in place; the run that made
    them must have had the same mode (quick or full), seed and section-3 configuration.

    Returns ``(stats, l1_up, l1_bil, l1_cascade, version)``; ``version``: the morphface version that made them.
    """
    path = os.path.join(args.out, "results.json")
    if not os.path.isfile(path):
        sys.exit(f"--reuse-generator: no earlier results at {path}; run without it first")
    with open(path, encoding="utf-8") as fh:
        prev = json.load(fh)
    keys = ("gan_res", "gan_train", "gan_val", "gan_steps", "up_train", "up_steps")
    if prev.get("quick") != args.quick or prev.get("seed") != args.seed:
        sys.exit(f"--reuse-generator: {path} was made with quick={prev.get('quick')} seed={prev.get('seed')}")
    if any(prev["config"].get(k) != cfg[k] for k in keys):
        sys.exit(f"--reuse-generator: {path} has another section-3 configuration: {prev['config']}")
    carried = [r for r in prev["rows"] if _section(r) == "generator"]
    rows.extend(carried)
    for k in ("generator", "upsampler", "previews"):
        timings[k] = prev["timings_s"][k]
    up = next(r for r in carried if str(r["setting"]).startswith("Upsampler x4"))
    cascade = next(r for r in carried if str(r["setting"]).startswith("Upsampler cascade"))
    version = prev.get("sections", {}).get("generator") or prev["versions"]["morphface"]
    return prev["statistics"], float(up["ours"]), float(up["baseline"]), float(cascade["ours"]), version


def reuse_fitting_section(
    args: argparse.Namespace, cfg: dict[str, int], rows: list[dict[str, object]], timings: dict[str, float]
) -> tuple[float, float, float | None, str]:
    """Section 2 read back from the ``results.json`` already in ``--out`` (``--reuse-fitting``).

    Returns ``(seconds per 3D target, seconds per 2D image, mean 2D landmark residual, version)``.
    """
    path = os.path.join(args.out, "results.json")
    if not os.path.isfile(path):
        sys.exit(f"--reuse-fitting: no earlier results at {path}; run without it first")
    with open(path, encoding="utf-8") as fh:
        prev = json.load(fh)
    if prev.get("quick") != args.quick or prev.get("seed") != args.seed:
        sys.exit(f"--reuse-fitting: {path} was made with quick={prev.get('quick')} seed={prev.get('seed')}")
    if any(prev["config"].get(k) != cfg[k] for k in ("n_fit3d", "n_fit2d")):
        sys.exit(f"--reuse-fitting: {path} has another fitting configuration: {prev['config']}")
    if "fit_2d_mean_landmark_residual_px" not in prev:
        sys.exit(f"--reuse-fitting: {path} predates 0.4.0 (no fit residual recorded); run without it")
    rows.extend(r for r in prev["rows"] if _section(r) == "fitting")
    timings["fitting"] = prev["timings_s"]["fitting"]
    version = prev.get("sections", {}).get("fitting") or prev["versions"]["morphface"]
    per = prev["fit_seconds_per_target"]
    return float(per["3d"]), float(per["2d"]), prev["fit_2d_mean_landmark_residual_px"], version


def _section(row: dict[str, object]) -> str:
    """Which report section a result row belongs to (rows of runs before 0.4.0 carry no tag)."""
    if "section" in row:
        return str(row["section"])
    setting = str(row["setting"])
    return (
        "linear"
        if setting.startswith("linear model")
        else "fitting"
        if setting.startswith("fit to")
        else "generator"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/morphface")
    p.add_argument(
        "--data", default=os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "shared", "data"))
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (the committed numbers use 1)"
    )
    p.add_argument(
        "--reuse-fitting",
        action="store_true",
        help="copy section 2 (fitting) from the results.json already in --out, and say so in the report",
    )
    p.add_argument(
        "--reuse-generator",
        action="store_true",
        help="recompute sections 1-2 only; copy section 3 (GAN, upsamplers, previews: most of the CPU time) "
        "from the results.json already in --out, and say so in the report",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # pin what the numbers depend on: thread count (float reduction order), deterministic kernels, seeds
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - pins the legacy global RNG for any library that uses it
    torch.manual_seed(args.seed)
    settings = {
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "seed": args.seed,
        "numpy_seed": args.seed,
        "python_random_seed": args.seed,
        "device": "cpu",
    }
    t_start, c_start = time.time(), time.process_time()
    os.makedirs(args.out, exist_ok=True)
    npz = os.path.join(args.data, "ict-facekit", "ict_facekit_shapes.npz")
    if not os.path.isfile(npz):
        sys.exit(f"ICT-FaceKit data not found at {npz}; pass --data")
    q = args.quick
    cfg = {
        "n_train_scans": 120 if q else 400,
        "n_test_scans": 20 if q else 100,
        "n_fit3d": 10 if q else 100,
        "n_fit2d": 6 if q else 60,
        "gan_res": 64,
        "gan_train": 64 if q else 384,
        "gan_val": 32 if q else 128,
        "gan_steps": 40 if q else 400,
        "up_train": 8 if q else 48,
        "up_steps": 5 if q else 150,
    }
    rows: list[dict[str, object]] = []
    sections = {"linear": morphface.__version__, "fitting": morphface.__version__}  # who computed what
    timings: dict[str, float] = {}
    gen = torch.Generator().manual_seed(args.seed)
    model = load_ict_npz(npz)

    # ---------------------------------------------------------------- 1. linear model
    t0 = time.time()
    a_train = model.sample(cfg["n_train_scans"], generator=gen)
    a_test = model.sample(cfg["n_test_scans"], generator=gen)
    train = model.vertices(a_train)[:, FACE]
    test = model.vertices(a_test)[:, FACE]
    built = LinearFaceModel.build(train, 100)
    ks = [0, 1, 2, 5, 10, 20, 50, 100]
    coeff, _ = built.project(test)
    ref_basis = model.identity_basis[:, FACE]
    curve_built, curve_ict = [], []
    for k in ks:
        rec = built.mean + torch.einsum("bk,kvc->bvc", coeff[:, :k], built.identity_basis[:k])
        curve_built.append(float((rec - test).norm(dim=-1).mean() * 10))
        # reference: ICT's own modes truncated to k (the data were drawn from them; PCA of the whole head)
        rec2 = model.mean[FACE] + torch.einsum("bk,kvc->bvc", a_test[:, :k], ref_basis[:k])
        curve_ict.append(float((rec2 - test).norm(dim=-1).mean() * 10))
    line_plot(
        os.path.join(args.out, "linear_reconstruction.png"),
        ks,
        {"PCA built from sampled scans": curve_built, "ICT modes (whole-head PCA)": curve_ict},
        "held-out reconstruction error, face region",
        "number of identity components",
        "mean vertex error (mm)",
    )
    for k in (10, 50, 100):
        rows.append(
            {
                "setting": f"linear model, {cfg['n_train_scans']} train / {cfg['n_test_scans']} held-out sampled ICT scans, K={k}",
                "metric": "held-out mean vertex error, face (mm)",
                "ours": curve_built[ks.index(k)],
                "baseline": curve_built[0],
                "paper": None,
            }
        )
    timings["linear"] = time.time() - t0
    log.info(
        "linear model done in %.1fs: %s", timings["linear"], dict(zip(ks, [round(c, 3) for c in curve_built]))
    )

    # ---------------------------------------------------------------- 2. fitting
    res2: list[float] = []
    if args.reuse_fitting:
        fit_time_3d, fit_time_2d, fit_res_2d, sections["fitting"] = reuse_fitting_section(
            args, cfg, rows, timings
        )
    else:
        t0 = time.time()
        a = model.sample(cfg["n_fit3d"], generator=gen)
        truth = model.vertices(a)
        lm = model.landmarks(truth)
        noisy = lm + 0.1 * torch.randn(lm.shape, generator=gen)  # 1 mm per axis
        r = fit(model, noisy, fit_expression=False, prior_weight=0.01)
        e3 = [aligned_error_mm(r.vertices[i, FACE], truth[i, FACE]) for i in range(len(a))]
        b3 = [aligned_error_mm(model.mean[FACE], truth[i, FACE]) for i in range(len(a))]
        rows.append(
            {
                "setting": f"fit to 68 3D landmarks, noise 1 mm/axis, {len(a)} sampled ICT identities",
                "metric": "median face vertex error after similarity alignment (mm)",
                "ours": float(np.median(e3)),
                "baseline": float(np.median(b3)),
                "paper": None,
            }
        )
        fit_time_3d = (time.time() - t0) / len(a)
        meta_path = os.path.join(args.data, "ict-faces-128", "meta.jsonl")
        e2, b2, res2 = [], [], []
        if os.path.isfile(meta_path):
            model_all = load_ict_npz(npz, expressions="all")  # the renders use all 57 shapes
            with open(meta_path, encoding="utf-8") as fh:
                meta = [json.loads(line) for line in fh][: cfg["n_fit2d"]]
            coeffs = torch.from_numpy(
                np.load(os.path.join(args.data, "ict-faces-128", "identity_coefficients.npy"))
            ).float()
            t1 = time.time()
            for m_ in meta:
                cam = PerspectiveCamera(m_["focal_px"], 64.0, 64.0)
                out = fit(model_all, torch.tensor(m_["landmarks68"]), camera=cam, prior_weight=1.0)
                gt = model_all.vertices(coeffs[m_["identity"]][None])[0, FACE]
                e2.append(aligned_error_mm(model_all.vertices(out.identity)[0, FACE], gt))
                b2.append(aligned_error_mm(model_all.mean[FACE], gt))
                res2.append(float(out.residuals.mean()))
            fit_time_2d = (time.time() - t1) / len(meta)
            rows.append(
                {
                    "setting": f"fit to 68 2D landmarks of {len(meta)} real ict-faces-128 renders (perspective, pose, expressions)",
                    "metric": "median neutral face vertex error after similarity alignment (mm)",
                    "ours": float(np.median(e2)),
                    "baseline": float(np.median(b2)),
                    "paper": None,
                }
            )
        else:
            fit_time_2d = float("nan")
            log.warning("ict-faces-128 not found: 2D landmark fitting skipped")
        timings["fitting"] = time.time() - t0
        log.info("fitting done in %.1fs", timings["fitting"])
        fit_res_2d = float(np.mean(res2)) if res2 else None

    # ---------------------------------------------------------------- 3. attribute generator (+ previews)
    res = cfg["gan_res"]
    if args.reuse_generator:
        stats, l1_up, l1_bil, l1_cascade, sections["generator"] = reuse_generator_section(
            args, cfg, rows, timings
        )
    else:
        stats, l1_up, l1_bil, l1_cascade = generator_section(args, cfg, model, rows, timings)
        sections["generator"] = morphface.__version__
    for r_ in rows:
        r_["section"] = _section(r_)
    labels = LABELS
    timings["total"] = time.time() - t_start
    cpu_total = time.process_time() - c_start

    # ---------------------------------------------------------------- report
    gain = stats["conditional"]["tone_vs_broadness"] - stats["data"]["tone_vs_broadness"]
    verdict = (
        "Partially reproduced, at toy scale and on substitute data: the paper's claims are qualitative and its data private. "
        f"The geometry-conditioned generator learns the albedo-geometry coupling (tone correlation {stats['conditional']['tone_vs_broadness']:.2f} "
        f"vs data {stats['data']['tone_vs_broadness']:.2f}, difference {gain:+.2f}) that the unconditional ablation cannot "
        f"({stats['unconditional']['tone_vs_broadness']:.2f}); landmark fitting beats the mean face; the linear baseline behaves as PCA should. "
        "These couplings are planted in procedural data: on real photos (section 6) the generator learns no measurable "
        "albedo-geometry coupling and barely beats the mean map, a negative result; the staged fit on real detector landmarks "
        "never ends above the identity-only fit (sections 4-5)."
    )
    claim = (
        "A generative model in UV space learns to correlate albedo (and specular / displacement) with geometry, giving "
        "anatomically consistent physically-based assets; the linear model supports fitting and interpolation."
    )
    results = {
        "package": "morphface",
        "claim": claim,
        "rows": rows,
        "verdict": verdict,
        "command": " ".join(["python", "packages/morphface/reproduce/run.py", *sys.argv[1:]]),
        "seed": args.seed,
        "settings": settings,
        "quick": q,
        "config": cfg,
        "timings_s": timings,
        "statistics": stats,
        "fit_seconds_per_target": {"3d": fit_time_3d, "2d": fit_time_2d},
        "fit_2d_mean_landmark_residual_px": fit_res_2d,
        "versions": {"morphface": morphface.__version__, "torch": torch.__version__},
        "sections": sections,
        "cpu_seconds_this_run": cpu_total,
    }
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2)

    def fmt(v: object) -> str:
        return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    lines = [
        "# morphface reproduction report",
        "",
        f"Paper: Li et al., *Learning Formation of Physically-Based Face Attributes*, CVPR 2020. morphface {morphface.__version__}, torch {torch.__version__}.",
        "",
        f"Command: `{results['command']}` (seed {args.seed}{', quick mode' if q else ''}); this run "
        f"{timings['total']:.0f} s wall, {cpu_total:.0f} s CPU, one process on a shared CPU.",
        "",
        f"Pinned settings: torch threads {settings['torch_threads']}, `torch.use_deterministic_algorithms` "
        f"{settings['deterministic_algorithms']}, seeds (torch, numpy, random) {args.seed}, device cpu; a rerun of "
        "the command above with the same torch version gives the same numbers.",
        "",
        "Which morphface version computed what: section 1 (linear model) "
        f"{sections['linear']}, this run; section 2 (fitting) {sections['fitting']}"
        + (
            ", carried over from the results.json of an earlier run of that version (`--reuse-fitting`: same "
            "configuration and pinned settings, only the report rebuilt)"
            if args.reuse_fitting
            else ", this run"
        )
        + f"; section 3 (attribute generator, upsamplers, previews) {sections['generator']}"
        + (
            ", carried over unchanged from that version's run (`--reuse-generator`, saving its ~15 CPU-minutes); "
            "that run predates the pinned settings above, so a rerun is not shown to give its numbers bit for bit."
            if args.reuse_generator
            else ", this run."
        ),
        "Sections 4-8 summarise the companion results in this folder (own scripts, named in each section).",
        "",
        "**Paper numbers:** none. The paper's text beyond the introduction, its code and its 4000-scan data set are not public;",
        "it reports its generative results mostly qualitatively (FID/IS per a secondary summary, values not recovered). Every",
        '"paper" cell is therefore empty, and the data below are substitutes: the real ICT-FaceKit Light linear model (MIT),',
        "real renders of it (ict-faces-128), and procedural attribute maps whose dependence on geometry is documented in",
        "`morphface.data` (no public albedo/specular/displacement data in correspondence exist).",
        "",
        f"**Claim tested:** {claim}",
        "",
        "| setting | metric | ours | baseline | paper |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r_['setting']} | {r_['metric']} | {fmt(r_['ours'])} | {fmt(r_['baseline'])} | {fmt(r_['paper'])} |"
        for r_ in rows
    ]
    lines += [
        "",
        "Baselines: linear rows, the mean face (K=0); fitting rows, the mean face; generator rows, the identical architecture",
        "trained identically but unconditional (learned constant instead of the geometry map); upsampler rows, bilinear upscaling;",
        "end-to-end rows, the same statistic of the 64 px generator output before upsampling (same identities, latents, noise).",
        "",
        "## 1. Linear model",
        "",
        f"PCA (`LinearFaceModel.build`) of {cfg['n_train_scans']} face meshes sampled from ICT-FaceKit (100 modes, N(0, I)), evaluated on",
        f"{cfg['n_test_scans']} held-out samples. The ICT curve truncates the generating modes themselves; they are a PCA of the",
        "whole head, so on the face region the face-only PCA built here needs fewer components for the same error.",
        "",
        "| K | " + " | ".join(str(k) for k in ks) + " |",
        "|---|" + "---|" * len(ks),
        "| PCA built (mm) | " + " | ".join(f"{c:.3f}" for c in curve_built) + " |",
        "| ICT modes, whole-head PCA (mm) | " + " | ".join(f"{c:.3f}" for c in curve_ict) + " |",
        "",
        "![reconstruction](linear_reconstruction.png)",
        "",
        "The plot (committed full run): both curves fall steeply from 5.07 mm at K = 0 and reach 0 at K = 100; the PCA built",
        "here lies slightly below ICT's own modes between K = 5 and 50.",
        "",
        "## 2. Fitting",
        "",
        f"3D: 68 landmarks with 1 mm Gaussian noise per axis, identity only, prior weight 0.01 (= noise variance in cm^2), {fit_time_3d:.2f} s per target (batched).",
        "2D: the 68 projected landmarks stored with each real render, perspective camera with the render's focal length, the staged fit",
        "(pose, identity with dynamic jawline correspondences, then identity + 57 expressions in [0, 1] + pose from the identity solution),",
        f"prior weight 1 px^2 and the default expression prior {EXPRESSION_PRIOR_SCALE:g}; mean landmark residual {fit_res_2d if fit_res_2d is not None else float('nan'):.2f} px, {fit_time_2d:.2f} s wall per image",
        "(one at a time, on the loaded machine; section 8 has CPU times). Errors are on the neutral face region (vertices 0-9408) after similarity alignment, so they measure shape, not pose.",
        "68 landmarks from one view constrain only part of the 100-dimensional identity, so the gain over the mean face is modest.",
        "",
        "## 3. Attribute generator",
        "",
        "`AttributeGenerator` (U-Net + latent modulation + noise) against a 2-scale PatchGAN with LSGAN + 10 x feature matching + 10 x masked L1,",
        f"{res} px, {cfg['gan_train']} training identities, {cfg['gan_steps']} steps of batch 8, Adam 2e-4 (0.5, 0.999).",
        "",
        "| statistic | data | conditional (ours) | unconditional (ablation) |",
        "|---|---|---|---|",
    ]
    for key in [*labels, "val_l1_albedo"]:
        lines.append(
            f"| {labels.get(key, 'held-out albedo masked L1 (lower is better)')} | {stats['data'][key]:.3f} | {stats['conditional'][key]:.3f} | {stats['unconditional'][key]:.3f} |"
        )
    lines += [
        "",
        "The specular statistic is high for both because the T-zone is a fixed UV pattern that an unconditional model can learn;",
        "the tone and detail statistics need the geometry and separate the two models.",
        "",
        "![training](generator_training_l1.png)",
        "",
        "The plot (committed full run): the conditional generator's training L1 falls from about 0.20 to 0.13 and stays below the",
        "unconditional one, which levels off near 0.155 after about 150 steps.",
        "",
        f"Upsampler x4 (64 -> 256 px, with the 256 px geometry map): held-out masked L1 {l1_up:.4f} vs bilinear {l1_bil:.4f};",
        f"the paper-style cascade of two separately trained x2 stages (64 -> 128 -> 256): {l1_cascade:.4f}.",
        "End to end (`generate_faces` with the 64 px conditional generator and the x4 stage), the geometry couplings at 256 px:",
        "",
        "| statistic | data, 256 px | generator 64 px | generator + Upsampler, 256 px |",
        "|---|---|---|---|",
        *[
            f"| {labels[k]} | {stats['data_256'][k]:.3f} | {stats['generator_64_same_ids'][k]:.3f} | {stats['upsampled_256'][k]:.3f} |"
            for k in labels
        ],
        "",
        "Sampled faces (identity from the ICT prior, maps from the conditional generator; only the face UV tile is textured):",
        "",
        "![sampled](preview_sampled.png)",
        "",
        "What the committed picture shows: four bald heads on grey shoulders with visibly different shapes (the third narrow, the",
        "fourth broad and heavy-jawed); the face is a pinkish-brown with a fine mottled pink/green noise, darker on the broader",
        "faces; the scalp, neck and shoulders are untextured grey and the eyes white. Nobody would take them for skin.",
        "",
        "Interpolation (slerp of identity coefficients and generator latent):",
        "",
        "![interpolated](preview_interpolated.png)",
        "",
        "What it shows: five heads whose shape changes smoothly from the first sampled face towards the second, with the same",
        "mottled pinkish-brown face texture throughout.",
        "",
        "Generated maps of the first face (albedo, specular, displacement). At this CPU budget (64 px, a few hundred steps)",
        "the albedo still carries visible GAN noise; the statistics above, not the pictures, are the result.",
        "",
        "![maps](generated_maps.png)",
        "",
        "What it shows: the albedo is a brownish square of pink/green mottling with no facial features; the specular map is dark",
        "with a bright forehead and nose (the T-zone) inside a faint face outline; the displacement is an even grey blotchy noise",
        "over the whole tile. These are the procedural-data maps (section 3); the maps learned from real photos are in section 6.",
        "",
        *companion_sections(args.out),
        f"**Verdict:** {verdict}",
        "",
        "Timings (s, wall; a carried-over section keeps the time of the run that computed it): "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
        "",
    ]
    with open(os.path.join(args.out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    log.info("wrote %s in %.0f s", os.path.join(args.out, "report.md"), timings["total"])


if __name__ == "__main__":
    main()
