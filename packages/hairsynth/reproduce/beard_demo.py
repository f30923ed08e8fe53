"""What the shipped scalp-hair model does on a beard region (no beard training data exists).

    python packages/hairsynth/reproduce/beard_demo.py --out reports/hairsynth/beard.png [--data DIR]

For held-out celeb1k-hair test faces: landmarks from the photo (``hairsynth[landmarks]``), a full-beard region
(``beard_mask(image=...)``), five dark-brown guide strokes down the region, the shipped model. Columns: photo,
region and strokes, result.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from PIL import Image

from hairsynth import Stroke, Synthesizer, beard_mask, rasterize_strokes


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="reports/hairsynth/beard.png")
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--photos", nargs="+", default=["28402"])
    args = p.parse_args()
    torch.set_num_threads(1)
    syn = Synthesizer.pretrained()
    rows = []
    for name in args.photos:
        im = Image.open(os.path.join(args.data, "celeb1k-hair", "test", "images", f"{name}.jpg")).convert(
            "RGB"
        )
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
        m = beard_mask(image=im, grow=2)
        _, xs = np.nonzero(m.numpy())
        strokes = []
        for q in (15, 32, 50, 68, 85):
            cx = float(np.percentile(xs, q))
            col = np.nonzero(m[:, int(cx)].numpy())[0]
            if len(col) > 6:
                strokes.append(Stroke([(cx, col.min() + 2), (cx, col.max() - 2)], (0.22, 0.14, 0.09), 3.0))
        out = syn.synthesize(x, m, strokes)
        sc, sm = rasterize_strokes(strokes, tuple(x.shape[-2:]))
        show = x * (1 - m) + 0.5 * m
        show = sc * sm + show * (1 - sm)
        rows.append(torch.cat([x, show, out], -1))
    grid = torch.cat(rows, -2)
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(args.out)
    print("saved", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
