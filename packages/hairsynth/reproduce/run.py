"""Reproduction: the 128-px release model vs its ablations and the inpainting baseline on held-out photos.

    python packages/hairsynth/reproduce/run.py --out reports/hairsynth [--data /work/shared/data] [--quick]
        [--runs /tmp/hairsynth/runs] [--steps 200] [--seeds 0]

Full mode: every variant of ``train_release.py`` (full two-stage model; no refinement network; strokes without
colour; no strokes = pure inpainting with the same network, data, steps and seed; see that file) is trained
to ``--steps`` in resumable units under ``--runs`` (kept checkpoints are reused, so a rerun only evaluates),
then evaluated on held-out photos (``celeb1k-hair/test`` + ``figaro1k/testing``, the first 60 of each) with the
same regions and strokes for every row, plus a non-learned flat-colour fill. Metrics over the edit region:
masked L1 / PSNR / SSIM, the EfficientNet-Lite0 perceptual distance (``hairsynth[perceptual]``), stroke-colour
L1 and structure control (``stroke_orientation_agreement`` of the output with the drawn strokes). Edits that
change something (re-coloured strokes, strokes turned by 90 degrees) are measured and shown.

Quick mode (minutes; CI): 64 px, the tiny network, 30 steps on 32 photos, 16 test photos, no perceptual loss in
training; the same rows and metrics (the perceptual distance only when the extra is installed).

Pinned: one torch thread (``--threads``), ``torch.use_deterministic_algorithms(True)``, seeds; all recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_release as TR

import hairsynth
from hairsynth import functional as HF
from hairsynth.data import HairPairDataset
from hairsynth.models import create_model
from hairsynth.recipes import TrainConfig, train
from hairsynth.strokes import Stroke, rasterize_strokes, stroke_orientation_agreement

VARIANT_NAMES = {
    "full": "full model (G1 + G2, coloured strokes)",
    "no_refinement": "no refinement network",
    "colorless_strokes": "strokes without colour",
    "no_strokes": "no strokes (pure inpainting, same network and budget)",
    "fill": "flat colour fill (mean stroke colour; non-learned)",
}
LOWER_BETTER = {"masked_l1", "perceptual", "stroke_color_l1"}


def _perceptual():
    try:
        return hairsynth.PerceptualLoss("efficientnet_lite0")
    except ImportError:
        return None


def eval_samples(parts: list[HairPairDataset], seed: int = 0) -> list[dict]:
    """Fixed held-out inputs: photo, region (hair mask dilated 2 px), a seeded subset of 3-12 strokes."""
    out = []
    for ds in parts:
        for i in range(len(ds)):
            x, hair, strokes = ds._load(i)
            g = torch.Generator().manual_seed(seed * 7_919 + i)
            k = int(torch.randint(3, 13, (1,), generator=g))
            if len(strokes) > k:
                pick = sorted(torch.randperm(len(strokes), generator=g)[:k].tolist())
                strokes = [strokes[j] for j in pick]
            out.append({"image": x, "mask": HF.dilate_mask(hair[None], 2)[0], "strokes": strokes})
    return out


def _rot90(s: Stroke) -> Stroke:
    c = s.points.mean(0)
    d = s.points - c
    return Stroke(np.stack([-d[:, 1], d[:, 0]], 1) + c, s.color, s.width)


def edit_samples(samples: list[dict], kind: str) -> list[dict]:
    """Edits a user might make: strokes re-coloured (copper / platinum) or turned by 90 degrees."""
    out = []
    for j, s in enumerate(samples):
        if kind == "recolour":
            col = (0.75, 0.32, 0.12) if j % 2 == 0 else (0.92, 0.86, 0.70)
            st = [Stroke(t.points, col, t.width) for t in s["strokes"]]
        else:
            st = [_rot90(t) for t in s["strokes"]]
        out.append({**s, "strokes": st})
    return out


@torch.no_grad()
def predict(model, samples, *, variant: str, bs: int = 16) -> torch.Tensor:
    model.eval()
    outs = []
    for i in range(0, len(samples), bs):
        chunk = samples[i : i + bs]
        img = torch.stack([s["image"] for s in chunk])
        mask = torch.stack([s["mask"] for s in chunk])
        maps = [
            rasterize_strokes([] if variant == "no_strokes" else s["strokes"], tuple(img.shape[-2:]))
            for s in chunk
        ]
        sc, sm = torch.stack([c for c, _ in maps]), torch.stack([m for _, m in maps])
        if variant == "colorless_strokes":
            sc = sm.expand_as(sc).clone()
        outs.append(model(img, mask, sc, sm)["output"])
    return torch.cat(outs)


def fill(samples) -> torch.Tensor:
    outs = []
    for s in samples:
        sc, sm = rasterize_strokes(s["strokes"], tuple(s["image"].shape[-2:]))
        col = (sc * sm).sum((1, 2)) / sm.sum().clamp_min(1) if sm.sum() > 0 else s["image"].mean((1, 2))
        f = col.view(1, 3, 1, 1).expand(1, 3, *s["image"].shape[-2:])
        outs.append(HF.composite(s["image"][None], f, s["mask"][None]))
    return torch.cat(outs)


@torch.no_grad()
def metrics(pred: torch.Tensor, samples, perc) -> dict[str, list[float]]:
    """Per-image metrics (lists, for intervals)."""
    img = torch.stack([s["image"] for s in samples])
    reg = torch.stack([s["mask"] for s in samples])
    maps = [rasterize_strokes(s["strokes"], tuple(img.shape[-2:])) for s in samples]
    sc, sm = torch.stack([c for c, _ in maps]), torch.stack([m for _, m in maps])
    r: dict[str, list[float]] = {
        "masked_l1": [
            float(HF.masked_l1(pred[i : i + 1], img[i : i + 1], reg[i : i + 1])) for i in range(len(img))
        ],
        "masked_psnr": HF.psnr(pred, img, reg).tolist(),
        "masked_ssim": HF.ssim(pred, img, reg).tolist(),
        "stroke_color_l1": [
            float(HF.masked_l1(pred[i : i + 1], sc[i : i + 1], sm[i : i + 1])) for i in range(len(img))
        ],
        "orientation_agreement": [
            stroke_orientation_agreement(pred[i], samples[i]["strokes"], reg[i]) for i in range(len(img))
        ],
    }
    if perc is not None:
        r["perceptual"] = torch.cat(
            [perc.distance(pred[i : i + 8], img[i : i + 8]) for i in range(0, len(img), 8)]
        ).tolist()
    return r


def _ci(v: list[float]) -> tuple[float, float]:
    a = np.array([x for x in v if math.isfinite(x)])
    return float(a.mean()), float(1.96 * a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0


def _paired(a: list[float], b: list[float]) -> tuple[float, float]:
    d = np.array([x - y for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)])
    return float(d.mean()), float(1.96 * d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def _grid(rows, path, scale=1):
    h, w = rows[0][0].shape[-2:]
    canvas = Image.new("RGB", (w * len(rows[0]), h * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            canvas.paste(Image.fromarray(arr), (c * w, r * h))
    if scale != 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.Resampling.NEAREST)
    canvas.save(path)


def _show_strokes(s) -> torch.Tensor:
    masked = s["image"] * (1 - s["mask"]) + 0.5 * s["mask"]
    sc, sm = rasterize_strokes(s["strokes"], tuple(s["image"].shape[-2:]))
    return sc * sm + masked * (1 - sm)


def _quick_models(args, train_parts, seed):
    """Quick mode: tiny 64-px variants trained in-process (no perceptual loss)."""
    models = {}
    for v in TR.VARIANTS:
        for p in train_parts:
            p.stroke_count = (0, 0) if v == "no_strokes" else (3, 12)
            p.colorless_strokes = v == "colorless_strokes"
        cfg = TrainConfig(
            arch="hairsynth_tiny",
            model_kwargs={"resolution": 64, **({"use_refinement": False} if v == "no_refinement" else {})},
            steps=30,
            batch_size=8,
            lr=5e-4,
            log_every=10,
            seed=seed,
        )
        models[v] = train(cfg, torch.utils.data.ConcatDataset(train_parts), progress=False, device="cpu")[
            "model"
        ]
    return models


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="reports/hairsynth")
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", default="/tmp/hairsynth/runs", help="training units' folder (full mode)")
    p.add_argument("--steps", type=int, default=200, help="steps per variant (full mode)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (the committed numbers use 1)")
    p.add_argument(
        "--test-photos", type=int, default=None, help="evaluate on the first N photos of each test split"
    )
    p.add_argument(
        "--extra-seed-variants",
        nargs="+",
        default=list(TR.VARIANTS),
        choices=TR.VARIANTS,
        help="variants also trained/evaluated with the seeds after the first (default: every learned row)",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(TR.VARIANTS),
        choices=TR.VARIANTS,
        help="learned rows to train/evaluate",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seeds[0])
    pins = {
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "seeds": args.seeds,
    }
    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    perc = _perceptual()
    if args.quick:
        size = 64
        mk = lambda r, s, n: HairPairDataset(os.path.join(args.data, r), s, size=size, limit=n, seed=0)  # noqa: E731
        test_parts = [mk("celeb1k-hair", "test", 8), mk("figaro1k", "testing", 8)]
        train_parts = [mk("celeb1k-hair", "train", 16), mk("figaro1k", "training", 16)]
        per_seed = {s: _quick_models(args, train_parts, s) for s in args.seeds}
        steps, budget = 30, "quick: 30 steps, batch 8, 32 photos, 64 px, hairsynth_tiny, no perceptual loss"
    else:
        size = TR.SIZE
        cache = os.path.join(args.runs, "cache")
        test_parts = [TR.dataset(args.data, r, s, n, cache, test=True) for r, s, n in TR.TEST_SPLITS]
        per_seed = {}
        for seed in args.seeds:
            per_seed[seed] = {}
            for v in args.variants:
                if seed != args.seeds[0] and v not in args.extra_seed_variants:
                    continue  # extra seeds only for --extra-seed-variants
                ck = os.path.join(args.runs, f"{v}-s{seed}", "last.pt")
                kept = os.path.join(args.runs, f"{v}-s{seed}", f"step-{args.steps:06d}.pt")
                if os.path.isfile(kept):  # a copy kept at the unit boundary (last.pt may have moved on)
                    ck = kept
                have = torch.load(ck, weights_only=True)["step"] if os.path.isfile(ck) else 0
                if have < args.steps:
                    rc = os.system(
                        f"{sys.executable} {os.path.join(os.path.dirname(__file__), 'train_release.py')} "
                        f"--variant {v} --seed {seed} --steps {args.steps} --out {args.runs} --data {args.data}"
                    )
                    if rc:
                        raise SystemExit(f"training {v} seed {seed} failed")
                ckd = torch.load(ck, weights_only=True)
                if ckd["step"] != args.steps:
                    raise SystemExit(f"{ck} is at step {ckd['step']}, not --steps {args.steps}")
                per_seed[seed][v] = create_model("hairsynth_128", weights=ck)
        steps = args.steps
        budget = (
            f"{steps} steps per variant, batch 4, Adam 5e-4, 10*L1 + LSGAN + 10*feature matching + "
            "EfficientNet-Lite0 perceptual (at 64 px), 300 training photos (150 celeb1k-hair/train + 150 "
            "figaro1k/training), 128 px, one CPU thread"
        )
    if args.test_photos is not None:  # the first N held-out photos of each split (CPU budget)
        for tp in test_parts:
            tp.pairs = tp.pairs[: args.test_photos]
    samples = eval_samples(test_parts)
    rec, ori = edit_samples(samples, "recolour"), edit_samples(samples, "rotate")
    results: dict = {}
    preds: dict = {}
    for seed, models in per_seed.items():
        for v, m in models.items():
            preds[(v, seed)] = predict(m, samples, variant=v)
            results[f"{v}/s{seed}"] = metrics(preds[(v, seed)], samples, perc)
            for kind, ss in (("recolour", rec), ("rotate", ori)) if v in ("full", "no_strokes") else ():
                preds[(v, seed, kind)] = predict(m, ss, variant=v)
                results[f"{v}/s{seed}/{kind}"] = metrics(preds[(v, seed, kind)], ss, perc)
    preds[("fill", 0)] = fill(samples)
    results["fill/s0"] = metrics(preds[("fill", 0)], samples, perc)
    results["ground_truth_orientation"] = [
        stroke_orientation_agreement(s["image"], s["strokes"], s["mask"]) for s in samples
    ]
    img = torch.stack([s["image"] for s in samples])
    reg = torch.stack([s["mask"] for s in samples])
    leak = max(float(((pr - img).abs() * (1 - reg)).max()) for k, pr in preds.items() if len(k) == 2)
    s0 = args.seeds[0]
    names = list(results[f"full/s{s0}"].keys())
    rows = []
    setting = f"{len(samples)} held-out photos ({size} px), {steps} steps/variant"
    table = {}
    present = [v for v in TR.VARIANTS if f"{v}/s{s0}" in results]
    pending = [v for v in TR.VARIANTS if v not in present]
    for v in (*present, "fill"):
        seeds = [s for s in args.seeds if f"{v}/s{s}" in results] if v != "fill" else [s0]
        for mname in names:
            per = [float(np.nanmean(results[f"{v}/s{s}"][mname])) for s in seeds]
            mean, ci = _ci(results[f"{v}/s{s0}"][mname])
            table[(v, mname)] = (float(np.mean(per)), ci, per)
    for v in [
        u for u in ("no_strokes", "no_refinement", "colorless_strokes", "fill") if u in (*present, "fill")
    ]:
        for mname in names:
            d, dci = _paired(results[f"full/s{s0}"][mname], results[f"{v}/s{s0}"][mname])
            rows.append(
                {
                    "setting": f"{setting}; full vs {VARIANT_NAMES[v]}",
                    "metric": mname,
                    "ours": table[("full", mname)][0],
                    "baseline": table[(v, mname)][0],
                    "paired_diff_ci95": [d, dci],
                    "paper": None,
                }
            )
    for kind in ("recolour", "rotate"):
        for mname in ("stroke_color_l1", "orientation_agreement", "masked_psnr"):
            a, b = results[f"full/s{s0}/{kind}"][mname], results[f"no_strokes/s{s0}/{kind}"][mname]
            d, dci = _paired(a, b)
            rows.append(
                {
                    "setting": f"{setting}; edit '{kind}': full vs pure inpainting",
                    "metric": mname,
                    "ours": float(np.nanmean(a)),
                    "baseline": float(np.nanmean(b)),
                    "paired_diff_ci95": [d, dci],
                    "paper": None,
                }
            )
    # grids: reconstruction and edits
    pick = list(range(0, len(samples), max(1, len(samples) // 6)))[:6]
    _grid(
        [
            [
                _show_strokes(samples[i]),
                preds[("fill", 0)][i],
                preds[("no_strokes", s0)][i],
                *[preds[(v, s0)][i] for v in ("no_refinement", "colorless_strokes") if v in present],
                preds[("full", s0)][i],
                samples[i]["image"],
            ]
            for i in pick
        ],
        os.path.join(args.out, "samples.png"),
        scale=2 if size < 128 else 1,
    )
    _grid(
        [
            [
                samples[i]["image"],
                _show_strokes(rec[i]),
                preds[("full", s0, "recolour")][i],
                preds[("no_strokes", s0, "recolour")][i],
                _show_strokes(ori[i]),
                preds[("full", s0, "rotate")][i],
                preds[("no_strokes", s0, "rotate")][i],
            ]
            for i in pick
        ],
        os.path.join(args.out, "edits.png"),
        scale=2 if size < 128 else 1,
    )
    train_logs = {}
    if not args.quick:
        for seed in args.seeds:
            for v in present:
                run = os.path.join(args.runs, f"{v}-s{seed}")
                if f"{v}/s{seed}" not in results:
                    continue
                units = sorted(
                    f for f in os.listdir(run) if f.startswith("unit-") and int(f[5:11]) <= args.steps
                )
                train_logs[f"{v}/s{seed}"] = [json.load(open(os.path.join(run, f))) for f in units]
    cpu = {k: sum(u["cpu_seconds"] for u in us) for k, us in train_logs.items() if us}
    out = {
        "package": "hairsynth",
        "claim": "Stroke-guided two-stage hair synthesis follows the drawn strokes' colour and direction, which an "
        "inpainting network of the same size and budget cannot; the refinement network and stroke colour help.",
        "rows": rows,
        "details": {
            "table": {f"{v}|{m}": t for (v, m), t in table.items()},
            "per_image": {k: v for k, v in results.items()},
            "max_abs_change_outside_region": leak,
            "train_cpu_seconds": cpu,
            "train_units": {
                k: [{kk: vv for kk, vv in u.items() if kk != "history"} for u in us]
                for k, us in train_logs.items()
            },
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "pinned": pins,
            "budget": budget,
            "variants_evaluated": present,
            "variants_pending": pending,
            "perceptual_extractor": "EfficientNet-Lite0 (ImageNet), blocks 0, 2, 4, 10"
            if perc is not None
            else None,
            "torch": torch.__version__,
            "hairsynth": hairsynth.__version__,
            "platform": platform.platform(),
            "quick": args.quick,
            "total_seconds": time.time() - t_start,
        },
    }
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(out, fh, indent=1)
    cols = [
        m
        for m in (
            "masked_l1",
            "masked_psnr",
            "masked_ssim",
            "perceptual",
            "stroke_color_l1",
            "orientation_agreement",
        )
        if m in names
    ]
    head = "| variant | " + " | ".join(cols) + " |"
    md = [
        "# hairsynth reproduction report",
        "",
        f"Command: `{out['details']['command']}` ({'QUICK mode' if args.quick else 'full mode'}; torch {torch.__version__}, "
        f"hairsynth {hairsynth.__version__}; pinned: {pins}; evaluation took {out['details']['total_seconds']:.0f} s).",
        "",
        f"Budget (same for every learned row): {budget}. Training CPU seconds per run: "
        + (
            ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
            or (
                "in-process (quick)"
                if args.quick
                else "not recorded (a checkpoint kept inside a training unit)"
            )
        )
        + ".",
        "",
        f"Held-out data: {setting}; region = hair mask dilated 2 px; 3-12 strokes per photo extracted from the photo's "
        "own hair (so reconstruction metrics are meaningful); every row sees the same photos, regions and strokes.",
        "",
        "Metrics over the region (mean, +-95% CI over photos): masked L1, PSNR dB, SSIM; perceptual = EfficientNet-Lite0 "
        "feature distance to the photo (lower better); stroke colour L1 = output vs stroke colour on stroke pixels "
        "(lower better); orientation agreement = mean cos(2 dtheta) between the output's `orientation_field` and the "
        "drawn stroke directions (1 = follows the strokes, 0 = unrelated).",
        "",
        head,
        "|" + "---|" * (len(cols) + 1),
    ]
    for v in (*present, "fill"):
        cells = []
        for m in cols:
            mean, ci, per = table[(v, m)]
            cells.append(
                f"{mean:.4f} +- {ci:.4f}"
                + (f" (seeds {', '.join(f'{x:.4f}' for x in per)})" if len(per) > 1 else "")
            )
        md.append(f"| {VARIANT_NAMES[v]} | " + " | ".join(cells) + " |")
    gt = _ci(results["ground_truth_orientation"])
    md += [
        f"| (the photo itself: orientation agreement of the ground truth with its strokes) | | | | | | {gt[0]:.4f} +- {gt[1]:.4f} |"
        if len(cols) == 6
        else "",
        "",
        (
            f"Not trained (pending; the CPU budget of this session did not reach them): {', '.join(VARIANT_NAMES[v] for v in pending)}."
            if pending
            else ""
        ),
        "",
        f"Pixels outside the region changed by at most {leak} (must be 0).",
        "",
        "## Edits that change something (full model vs pure inpainting, same photos)",
        "",
        "| edit | metric | full | inpainting | paired diff (95% CI) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "edit '" in r["setting"]:
            kind = r["setting"].split("edit '")[1].split("'")[0]
            md.append(
                f"| {kind} | {r['metric']} | {r['ours']:.4f} | {r['baseline']:.4f} | "
                f"{r['paired_diff_ci95'][0]:+.4f} +- {r['paired_diff_ci95'][1]:.4f} |"
            )
    md += [
        "",
        "![samples](samples.png)",
        "",
        "samples.png columns: strokes on the masked photo, flat fill, pure inpainting, "
        + "".join(f"{VARIANT_NAMES[v]}, " for v in ("no_refinement", "colorless_strokes") if v in present)
        + "full model, photo.",
        "",
        "![edits](edits.png)",
        "",
        "edits.png columns: photo, re-coloured strokes, full model, inpainting; strokes turned 90 degrees, full model, "
        "inpainting.",
        "",
    ]
    for f, what in (
        (
            "beard.png",
            "What the scalp-hair model does on a beard region (`reproduce/beard_demo.py`; no beard training data)",
        ),
        (
            "editor.png",
            "The editor in headless Chromium after a real edit (`reproduce/editor_screenshot.py`)",
        ),
    ):
        if os.path.isfile(os.path.join(args.out, f)):
            md += [f"![{f}]({f})", "", what + ".", ""]
    notes = os.path.join(args.out, "notes.md")  # observations written by hand after looking at the images
    if os.path.isfile(notes):
        with open(notes) as fh:
            md += ["", fh.read()]
    with open(os.path.join(args.out, "report.md"), "w") as fh:
        fh.write("\n".join(md))
    print(f"wrote {args.out}/report.md and results.json in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
