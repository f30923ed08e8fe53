"""Fit the landmark distance estimator on training identities, choose its ridge weight on validation ones.

    python packages/undistort/reproduce/train_distance.py --data ../shared/data --out FILE.json \\
        [--per-photo 4] [--quick]

Samples: every ``celeba-id-crops`` photo of the training identities (the split of ``make_real_pairs.py``:
identities sorted numerically, the last 40 test, the 20 before them validation) with its dlib landmarks
(``landmarks.json``), at the 64 px scale of the pairs; the ICT-FaceKit head is fitted to them
(:func:`undistort.realpairs.fit_head`) and ``--per-photo`` distances are drawn log-uniformly in [25, 500] cm;
the sample's landmarks are the photo's dlib landmarks plus the exact perspective displacement of the fitted
head from 500 cm to that distance (:func:`undistort.landmark_distance.perspective_landmarks`). The ridge
weight and the target (``1/d`` or ``log d``) are chosen on the validation identities by the mean
``|100/d_hat - 100/d|`` (the global warp's displacement is proportional to ``1/d_hat - 1/d_ref``, so this is
the error in the size of the correction it drives); the mean |log error| is recorded too. Test identities
are never read: the held-out accuracy on the test pairs is measured by ``real_eval.py``.

The dead zone of :meth:`~undistort.landmark_distance.LandmarkDistanceEstimator.correction_distance`
(``margin``, in 1/cm) is set on the validation photos as they are (each the 500 cm reference, i.e. "leave
alone"): the 95th percentile of ``1/d_hat - 1/500`` over them, so that 95 % of those photos get no warp at
all (the rule was fixed before any test number with a margin was seen).

``--detector`` (the detector in the loop): instead of adding the exact shift to the data set's landmarks,
each photo is resized to 64 px, moved to one distance drawn log-uniformly in [25, 500] cm by its fitted head
(:func:`undistort.realpairs.real_pair`, the pairs' construction) and dlib is run on that near image and on
the 64 px photo itself (both upsampled 4x, as ``real_eval.py``'s detector rows), giving one near sample and
one 500 cm sample per photo (photos without a detected face are skipped). ``--every K`` keeps every K-th
photo of both splits (the detector costs ~0.27 CPU-s per photo).
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
from PIL import Image

import undistort
from undistort.landmark_distance import LandmarkDistanceEstimator, perspective_landmarks
from undistort.realpairs import fit_head

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_real_pairs import split_entries

MARGIN_QUANTILE = 0.95
RIDGES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
SIZE = 64


def lm64_of(entry) -> np.ndarray:
    """An entry's dlib landmarks at the 64 px scale (dlib coordinates)."""
    _, path, lm = entry
    with Image.open(path) as im:
        w0, h0 = im.size
    return np.stack([(lm[:, 0] + 0.5) * SIZE / w0 - 0.5, (lm[:, 1] + 0.5) * SIZE / h0 - 0.5], 1)


def samples(heads, entries, per_photo: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 68, 2)`` landmarks (64 px, dlib coordinates) and ``(N,)`` distances."""
    g = np.random.default_rng(seed)
    lms, ds = [], []
    for entry in entries:
        lm64 = lm64_of(entry)
        fit = fit_head(heads, torch.as_tensor(lm64), pixel_center=0.0)
        for d in np.exp(g.uniform(math.log(25.0), math.log(500.0), per_photo)):
            disp = perspective_landmarks(fit, heads, float(d), image_size=(SIZE, SIZE)).double().numpy()
            lms.append(lm64 + disp)
            ds.append(float(d))
    return np.stack(lms), np.asarray(ds)


def samples_detected(heads, entries, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detector-in-the-loop samples: ``(N, 68, 2)`` landmarks, ``(N,)`` distances, ``(M, 68, 2)`` far ones."""
    from real_eval import detect64

    from undistort.realpairs import real_pair

    g = np.random.default_rng(seed)
    lms, ds, far = [], [], []
    for entry in entries:
        with Image.open(entry[1]) as im:
            img = im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.LANCZOS)
        photo = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        d = float(np.exp(g.uniform(math.log(25.0), math.log(500.0))))
        fit = fit_head(heads, torch.as_tensor(lm64_of(entry)), pixel_center=0.0)
        near = detect64(real_pair(photo, fit, heads.faces, d)["distorted"])
        here = detect64(photo)
        if near is not None:
            lms.append(near.numpy())
            ds.append(d)
        if here is not None:
            far.append(here.numpy())
            lms.append(here.numpy())
            ds.append(500.0)
    return np.stack(lms), np.asarray(ds), np.stack(far)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-photo", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="every 8th training photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector", action="store_true", help="dlib run on rendered near views (see above)")
    ap.add_argument("--every", type=int, default=1, help="every K-th photo of both splits")
    args = ap.parse_args()
    t0, c0 = time.time(), time.process_time()
    torch.set_num_threads(1)
    heads = undistort.load_ict_facekit(os.path.join(args.data, "ict-facekit"))
    sp = split_entries(args.data)
    train = sp["train"][:: (8 if args.quick else 1) * args.every]
    val = sp["val"][:: args.every]
    if args.detector:
        xtr, dtr, _ = samples_detected(heads, train, args.seed)
        xva, dva, lva = samples_detected(heads, val, args.seed + 1)
    else:
        xtr, dtr = samples(heads, train, args.per_photo, args.seed)
        xva, dva = samples(heads, val, args.per_photo, args.seed + 1)
        lva = np.stack([lm64_of(e) for e in val])
    scores: dict[str, float] = {}
    log_scores: dict[str, float] = {}
    for target in ("inverse", "log"):
        for r in RIDGES:
            est = LandmarkDistanceEstimator.fit(xtr, dtr, ridge=r, target=target)
            pv = est.predict(xva)
            scores[f"{target}/{r}"] = float(np.abs(100 / pv - 100 / dva).mean())
            log_scores[f"{target}/{r}"] = float(np.abs(np.log(pv) - np.log(dva)).mean())
    best = min(scores, key=scores.__getitem__)
    target, ridge = best.split("/")[0], float(best.split("/")[1])
    const_d = float(
        np.exp(np.log(dtr).mean())
    )  # the constant guess: geometric mean of the training distances
    const_inv = float(np.median(1 / dtr))  # the best constant for the |1/d| error
    est = LandmarkDistanceEstimator.fit(xtr, dtr, ridge=ridge, target=target)
    pv = est.predict(xva)
    # the dead zone: validation photos as they are (500 cm) should be left alone
    excess = np.maximum(1 / est.predict(lva) - 1 / 500.0, 0.0)
    est.margin = float(np.quantile(excess, MARGIN_QUANTILE))
    pe = est.correction_distance(xva)
    near = dva < 160
    bins = {}
    for lo, hi in ((25, 40), (40, 65), (65, 100), (100, 160), (160, 300), (300, 501)):
        m = (dva >= lo) & (dva < hi)
        if not m.any():
            continue
        bins[f"{lo}-{hi}"] = {
            "n": int(m.sum()),
            "median_est": float(np.median(pv[m])),
            "abs_rel_error": float((np.abs(pv[m] - dva[m]) / dva[m]).mean()),
            "abs_inv_error_100_per_cm": float(np.abs(100 / pv[m] - 100 / dva[m]).mean()),
            "median_correction_distance": float(np.median(pe[m])),
            "abs_inv_error_100_per_cm_with_margin": float(np.abs(100 / pe[m] - 100 / dva[m]).mean()),
        }
    meta = {
        "data": "celeba-id-crops training identities (171), "
        + (
            "dlib run on 64 px near views rendered by the fitted head and on the photos (upsampled 4x)"
            if args.detector
            else "dlib landmarks + exact perspective displacement"
        ),
        "command": "python packages/undistort/reproduce/train_distance.py " + " ".join(sys.argv[1:]),
        "n_train_photos": len(train),
        "n_train": len(dtr),
        "n_val": len(dva),
        "distance_range_cm": [25.0, 500.0],
        "image_size": SIZE,
        "selection": "target and ridge minimising the validation mean |100/d_hat - 100/d|",
        "target": target,
        "ridge": ridge,
        "val_abs_inv_error_by_target_ridge": scores,
        "val_abs_log_error_by_target_ridge": log_scores,
        "val_abs_inv_error": scores[best],
        "val_abs_inv_error_constant": float(np.abs(100 * const_inv - 100 / dva).mean()),
        "val_abs_log_error": log_scores[best],
        "val_abs_log_error_constant": float(np.abs(np.log(dva) - math.log(const_d)).mean()),
        "val_abs_rel_error_near": float((np.abs(pv[near] - dva[near]) / dva[near]).mean()),
        "val_abs_rel_error_near_constant": float((np.abs(const_d - dva[near]) / dva[near]).mean()),
        "constant_guess_cm": {"geometric_mean": const_d, "inverse_median": 1 / const_inv},
        "val_by_bin": bins,
        "far_val_predicted_under_160cm": float((pv[dva > 300] < 160).mean()),
        "margin_per_cm": est.margin,
        "margin_rule": f"quantile {MARGIN_QUANTILE} of max(0, 1/d_hat - 1/500) on the {len(lva)} validation photos as they are",
        "val_photos_left_alone_with_margin": float((excess <= est.margin).mean()),
        "val_photos_left_alone_without_margin": float((excess <= 0).mean()),
        "val_abs_inv_error_with_margin": float(np.abs(100 / pe - 100 / dva).mean()),
        "seed": args.seed,
        "cpu_s": round(time.process_time() - c0, 1),
    }
    est.meta = meta
    est.save(args.out)
    print(json.dumps(meta, indent=1), f"wall {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
