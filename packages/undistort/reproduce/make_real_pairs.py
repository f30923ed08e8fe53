"""Write pairs made from real photos (celeba-id-crops) as shards: train / val / test identities apart.

    python packages/undistort/reproduce/make_real_pairs.py --data ../shared/data --out PAIRS \\
        [--train 600 --val 160 --test 160 --shard 80]

Identities (CelebA identity numbers, sorted numerically): the last 40 are the test split, the 20 before
them validation, the rest (171) training. Each pair: a crop resized to 64 px (the photo, the reference
view at 500 cm), its dlib landmarks, the ICT-FaceKit head fitted to them, a near distance log-uniform in
[25, 160] cm (10 % of training pairs at 500 cm, the identity pair), and the input and exact/extended
flow of :func:`undistort.realpairs.real_pair`. Shards already written are skipped (resumable).
Images and flows are stored as float16, masks as bool.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import undistort
from undistort.realpairs import RealPortraitPairs, load_landmark_crops

SEEDS = {"train": 0, "val": 1, "test": 2}


def split_entries(data: str) -> dict[str, list]:
    """``celeba-id-crops`` entries by split (identities disjoint)."""
    ents = load_landmark_crops(os.path.join(data, "celeba-id-crops"))
    ids = sorted({e[0] for e in ents}, key=int)
    test_ids, val_ids = set(ids[-40:]), set(ids[-60:-40])
    return {
        "train": [e for e in ents if e[0] not in test_ids and e[0] not in val_ids],
        "val": [e for e in ents if e[0] in val_ids],
        "test": [e for e in ents if e[0] in test_ids],
    }


def write_split(heads, entries, split: str, n: int, shard: int, out: str) -> None:
    ds = RealPortraitPairs(
        heads,
        entries,
        length=n,
        image_size=64,
        seed=SEEDS[split],
        identity_fraction=0.1 if split == "train" else 0.0,
    )
    os.makedirs(os.path.join(out, split), exist_ok=True)
    for s0 in range(0, n, shard):
        path = os.path.join(out, split, f"{s0:05d}.pt")
        if os.path.exists(path):
            continue
        t = time.time()
        rng = range(s0, min(n, s0 + shard))
        items = [ds[i] for i in rng]
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        for k in ("distorted", "corrected", "flow"):
            batch[k] = batch[k].half()
        for k in ("valid", "head_valid", "holes", "mask", "mask_head", "mask_corrected"):
            batch[k] = batch[k].bool()
        batch["path"] = [entries[int(ds._order[i % len(entries)])][1] for i in rng]
        tmp = path + ".tmp"
        torch.save(batch, tmp)
        os.replace(tmp, path)
        print(split, s0, f"{time.time() - t:.0f}s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--val", type=int, default=160)
    ap.add_argument("--test", type=int, default=160)
    ap.add_argument("--shard", type=int, default=80)
    ap.add_argument("--splits", default="val,train,test")
    args = ap.parse_args()
    torch.set_num_threads(1)
    heads = undistort.load_ict_facekit(os.path.join(args.data, "ict-facekit"))
    entries = split_entries(args.data)
    for split in args.splits.split(","):
        write_split(heads, entries[split], split, getattr(args, split), args.shard, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
