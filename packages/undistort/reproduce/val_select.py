"""Score flow models on the VALIDATION pairs only (identities apart from training and test), to choose a
checkpoint without looking at the test split.

    python packages/undistort/reproduce/val_select.py --pairs PAIRS --out VAL.json \\
        --model shipped=packages/undistort/src/undistort/weights/undistorter-real64.pt \\
        --model s1000=RUN/undistorter-1000.pt [...]

Each model (an :class:`undistort.Undistorter` file) runs exactly as ``real_eval.py`` runs it on the test
pairs (``und(x)["flow"]``), here on ``PAIRS/val``:

- flow EPE (px) on the head (exact correspondences), on hair/background and over the whole crop, mean and
  95 % interval over pairs, and the paired head-EPE difference to the first ``--model`` (the reference);
- do-no-harm on the validation pairs' far source photos (500 cm, should be left alone): mean flow, max
  flow (mean and worst over photos), PSNR output vs input (mean and min), the largest local (4x4 mean)
  change outside the head; the same quantities as ``real_eval.py``'s "do no harm" block.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_eval import far_harm_summary, far_photo_harm, load_split

from undistort import Undistorter


def _stat(v: np.ndarray) -> dict:
    ci = 1.96 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "ci95": float(ci), "n": int(v.size)}


@torch.no_grad()
def score(und: Undistorter, val: dict) -> tuple[dict, np.ndarray]:
    """Validation numbers of one model and its per-pair head EPE (for paired differences)."""
    n = val["distorted"].shape[0]
    head_e, bg_e, all_e = [], [], []
    mags, psnrs, local = [], [], []
    for i in range(n):
        fl = und(val["distorted"][i][None])["flow"][0]
        e = (fl - val["flow"][i]).norm(dim=0)
        head = val["head_valid"][i, 0]
        bg = ~val["mask_corrected"][i, 0]
        head_e.append(float(e[head].mean()))
        bg_e.append(float(e[bg].mean()) if bg.any() else 0.0)
        all_e.append(float(e.mean()))
        m, p, loc = far_photo_harm(und, val["corrected"][i], val["mask_corrected"][i, 0])
        mags.append(m)
        psnrs.append(p)
        local.append(loc)
    head_a = np.array(head_e)
    res = {
        "epe_head": _stat(head_a),
        "epe_bg": _stat(np.array(bg_e)),
        "epe_all": _stat(np.array(all_e)),
        "no_harm": far_harm_summary(mags, psnrs, local),
        # per far photo, for bounds on every photo (gate_select.py)
        "far_max_px_all": [m[1] for m in mags],
        "far_psnr_all": psnrs,
    }
    return res, head_a


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True, help="folder with the val/ shards of make_real_pairs.py")
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH of an Undistorter file")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    val = load_split(os.path.join(args.pairs, "val"))
    results: dict = {"n_val": int(val["distorted"].shape[0]), "models": {}}
    ref = None
    for spec in args.model:
        if "=" not in spec:
            raise SystemExit(f"val_select: --model must be NAME=PATH; got {spec!r}")
        name, path = spec.split("=", 1)
        t0 = time.process_time()
        und = Undistorter.load(path).eval()
        res, head = score(und, val)
        res["path"] = path
        if ref is None:
            ref = (name, head)
        else:
            d = head - ref[1]
            res[f"epe_head_minus_{ref[0]}"] = {
                "mean": float(d.mean()),
                "ci95": float(1.96 * d.std(ddof=1) / math.sqrt(d.size)),
                "better_in": float((d < 0).mean()),
            }
        res["cpu_s"] = round(time.process_time() - t0, 1)
        results["models"][name] = res
        print(name, json.dumps(res), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
