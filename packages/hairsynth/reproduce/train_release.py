"""Resumable CPU training units of the 128-px release model and its same-budget ablations.

    nice -n 12 python packages/hairsynth/reproduce/train_release.py --variant full --steps 500 \\
        --out /tmp/hairsynth/runs --data /work/shared/data [--seed 0]

Each call trains ``--variant`` up to ``--steps`` optimisation steps in total, resuming from
``<out>/<variant>-s<seed>/last.pt`` when it exists (so a run is continued by calling again with a larger
``--steps``). One torch thread, deterministic algorithms, seeded. Data: self-supervised pairs from
``celeb1k-hair/train`` + ``figaro1k/training`` at 128 px (the ``val`` splits are for choices, the
``test``/``testing`` splits are held out for :mod:`reproduce.run`). Strokes are extracted once per photo and
cached in ``<out>/cache`` (plain tensors, loaded with ``weights_only=True``).

Variants (same network, data, steps and seed): ``full`` (two stages, coloured strokes), ``no_refinement``
(synthesis network only), ``colorless_strokes`` (strokes carry coverage only), ``no_strokes`` (pure
inpainting: the stroke maps are empty).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from hairsynth.data import HairPairDataset
from hairsynth.recipes import TrainConfig, train
from hairsynth.strokes import Stroke

SIZE = 128
STROKE_WIDTH = (2.0, 4.0)
#: the release architecture (registered as ``hairsynth_128``)
MODEL_KWARGS = {
    "base_channels": 16,
    "num_downs": 7,
    "max_channels": 128,
    "feather_radius": 2,
    "resolution": SIZE,
    "stroke_width": list(STROKE_WIDTH),
}
#: (folder, split, photos used): the first photos of each split (CPU budget; see the report)
TRAIN_SPLITS = (("celeb1k-hair", "train", 150), ("figaro1k", "training", 150))
TEST_SPLITS = (("celeb1k-hair", "test", 60), ("figaro1k", "testing", 60))
VARIANTS = ("full", "no_refinement", "colorless_strokes", "no_strokes")


def variant_model_kwargs(variant: str) -> dict:
    """Model kwargs of a variant."""
    kw = dict(MODEL_KWARGS)
    if variant == "no_refinement":
        kw["use_refinement"] = False
    return kw


def dataset(
    data: str,
    root: str,
    split: str,
    limit: int,
    cache_dir: str,
    *,
    variant: str = "full",
    test: bool = False,
    seed: int = 0,
) -> HairPairDataset:
    """A 128-px :class:`HairPairDataset` whose stroke extraction is cached on disk."""
    ds = HairPairDataset(
        os.path.join(data, root),
        split,
        size=SIZE,
        stroke_width=STROKE_WIDTH,
        stroke_count=(0, 0) if variant == "no_strokes" else (3, 12),
        colorless_strokes=variant == "colorless_strokes",
        augment=not test,
        deterministic=test,
        seed=seed,
        limit=limit,
    )
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"{root}-{split}-{limit}-{SIZE}-s{seed}.pt")
    if os.path.isfile(path):
        blob = torch.load(path, weights_only=True)
        for i, (x, m, strokes) in enumerate(blob):
            ds._cache[i] = (
                x.float() / 255.0,
                m.float(),
                [Stroke(p.double().numpy(), tuple(c), float(w)) for p, c, w in strokes],
            )
        return ds
    t0 = time.time()
    blob = []
    for i in range(len(ds)):
        x, m, strokes = ds._load(i)
        stored = [
            (torch.from_numpy(s.points).float(), [float(c) for c in s.color], float(s.width)) for s in strokes
        ]
        blob.append(((x * 255.0).round().to(torch.uint8), m.to(torch.uint8), stored))
        # train on exactly what a later run reads back from the cache (float32 points), so a run that
        # extracts the strokes and one that loads them take the same steps
        ds._cache[i] = (
            (x * 255.0).round() / 255.0,
            m,
            [Stroke(p.double().numpy(), tuple(c), float(w)) for p, c, w in stored],
        )
    tmp = path + ".tmp"
    torch.save(blob, tmp)
    os.replace(tmp, path)
    print(f"extracted strokes of {len(ds)} photos ({root}/{split}) in {time.time() - t0:.0f} s", flush=True)
    return ds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=VARIANTS, default="full")
    p.add_argument("--steps", type=int, required=True, help="total steps to reach (resumes)")
    p.add_argument("--out", default="/tmp/hairsynth/runs")
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--extract-only", default=None, help="only extract and cache strokes of FOLDER/SPLIT")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    cache = os.path.join(args.out, "cache")
    if args.extract_only:
        for r, s, n in TRAIN_SPLITS + TEST_SPLITS:
            if f"{r}/{s}" == args.extract_only:
                dataset(args.data, r, s, n, cache, test=(r, s, n) in TEST_SPLITS)
        return 0
    parts = [dataset(args.data, r, s, n, cache, variant=args.variant, seed=0) for r, s, n in TRAIN_SPLITS]
    train_ds = torch.utils.data.ConcatDataset(parts)
    run = os.path.join(args.out, f"{args.variant}-s{args.seed}")
    last = os.path.join(run, "last.pt")
    cfg = TrainConfig(
        arch="hairsynth_128",
        model_kwargs=variant_model_kwargs(args.variant),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=5e-4,
        l1_weight=10.0,
        adv_weight=1.0,
        fm_weight=10.0,
        perceptual_weight=1.0,
        perceptual_extractor="efficientnet_lite0",
        perceptual_size=64,
        disc_base_channels=16,
        checkpoint_every=50,
        log_every=10,
        seed=args.seed,
    )
    t0, c0 = time.time(), time.process_time()
    res = train(
        cfg,
        train_ds,
        out_dir=run,
        resume=last if os.path.isfile(last) else None,
        progress=False,
        device="cpu",
    )
    rec = {
        "variant": args.variant,
        "seed": args.seed,
        "step": res["step"],
        "wall_seconds": time.time() - t0,
        "cpu_seconds": time.process_time() - c0,
        "history": res["history"],
        "torch_threads": torch.get_num_threads(),
        "deterministic": True,
        "train_photos": len(train_ds),
    }
    with open(os.path.join(run, f"unit-{res['step']:06d}.json"), "w") as fh:
        json.dump(rec, fh)
    print(json.dumps({k: v for k, v in rec.items() if k != "history"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
