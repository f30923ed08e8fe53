"""Identity items from whole real photos, cropped exactly as :func:`undistort.correct` crops them.

    python packages/undistort/reproduce/make_photo_identity.py --data ../shared/data --out PHOTOID.pt

For every photo of ``celeb1k-hair/train/images`` (never used by any evaluation; the do-no-harm bound (b)
reads ``val``/``test``) where dlib finds a face: the largest face's 68 landmarks, the face crop of
:func:`undistort.portrait.face_crop` (128 px) and its 64 px version (antialiased bilinear, what
:class:`undistort.Undistorter` feeds its 64 px network). ``train_real.py --photo-identity PHOTOID.pt``
mixes them into training batches as far photos with a zero correction flow
(``reports/undistort/photo_identity.md``). Written atomically; float16 images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_photos

from undistort.portrait import face_crop


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="train", choices=["train"], help="only train: val/test are evaluation")
    ap.add_argument("--work-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tools, why = real_photos.load_dlib()
    if tools is None:
        raise SystemExit(f"make_photo_identity: dlib is needed: {why}")
    root = os.path.join(args.data, "celeb1k-hair", args.split, "images")
    files = sorted(os.listdir(root))
    crops, names, missed = [], [], []
    t0 = time.time()
    for i, f in enumerate(files):
        with Image.open(os.path.join(root, f)) as im:
            arr = np.asarray(im.convert("RGB"))
        det = real_photos.detect(tools, arr)
        if det is None:
            missed.append(f)
            continue
        crop = face_crop(arr, det[0])[None]
        small = F.interpolate(
            crop, size=(args.work_size,) * 2, mode="bilinear", align_corners=False, antialias=True
        )
        crops.append(small[0].half())
        names.append(f)
        if i % 100 == 0:
            print(i, len(files), f"{time.time() - t0:.0f}s", flush=True)
    out = {"image": torch.stack(crops), "file": names, "no_face": missed, "split": args.split}
    tmp = args.out + ".tmp"
    torch.save(out, tmp)
    os.replace(tmp, args.out)
    print(f"{len(names)} crops, {len(missed)} without a face, {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
