"""Does dlib see the perspective shift? Landmarks re-detected on near views vs the exact shift.

    python packages/undistort/reproduce/dlib_shift_check.py --data ../shared/data [--n 30]

For every 20th ``celeba-id-crops`` photo of the test identities (``make_real_pairs.py``'s split; at most
``--n``), the fitted ICT-FaceKit head makes a near view at 30 and at 60 cm (:func:`undistort.realpairs.real_pair`,
128 px); dlib (upsampled 2x to 256 px) is run on the near view and on the photo. Printed per distance: the
mean exact landmark shift, the mean difference between the shift dlib measures (near minus far) and the exact
one, their median cosine, and the shipped distance estimator's median answer for the photo's landmarks plus
the exact shift, for dlib on the near view, for dlib on the photo, and for the data set's own landmarks.
Needs the ``undistort[landmarks]`` extra. About 20 CPU-s.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import undistort
from undistort.landmark_distance import LandmarkDistanceEstimator
from undistort.portrait import detect_landmarks
from undistort.realpairs import fit_head, real_pair

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_real_pairs import split_entries


def detect(u8: np.ndarray) -> np.ndarray | None:
    """dlib landmarks on the 128 px image upsampled to 256 px, back in 128 px dlib coordinates."""
    big = np.asarray(Image.fromarray(u8).resize((256, 256), Image.Resampling.LANCZOS))
    r = detect_landmarks(big)
    return None if r is None else (r + 0.5) / 2 - 0.5


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    heads = undistort.load_ict_facekit(os.path.join(args.data, "ict-facekit"))
    photos = split_entries(args.data)["test"][::20][: args.n]
    est = LandmarkDistanceEstimator.pretrained()
    for d in (30.0, 60.0):
        rows = []
        for _, path, lm in photos:
            with Image.open(path) as im:
                img = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
            fit = fit_head(heads, torch.as_tensor(lm), pixel_center=0.0)
            pair = real_pair(img, fit, heads.faces, d, landmarks=heads.landmarks)
            shift = (pair["landmarks_distorted"] - pair["landmarks_corrected"]).double().numpy()
            near = detect((pair["distorted"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
            far = detect((img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
            if near is None or far is None:
                continue
            meas = near - far
            cos = float((meas * shift).sum() / np.sqrt((meas**2).sum() * (shift**2).sum()))
            rows.append(
                (
                    float(np.abs(shift).mean()),
                    float(np.abs(meas - shift).mean()),
                    cos,
                    float(est.predict(lm + shift)),
                    float(est.predict(near)),
                    float(est.predict(far)),
                    float(est.predict(lm)),
                )
            )
        r = np.array(rows)
        print(
            f"d={d:.0f} cm, {len(r)} photos with faces: |exact shift| {r[:, 0].mean():.2f} px, "
            f"|dlib shift - exact| {r[:, 1].mean():.2f} px, median cosine {np.median(r[:, 2]):.2f}; median estimate: "
            f"data-set landmarks + exact shift {np.median(r[:, 3]):.0f} cm, dlib on the near view "
            f"{np.median(r[:, 4]):.0f} cm, dlib on the photo {np.median(r[:, 5]):.0f} cm, data-set landmarks "
            f"{np.median(r[:, 6]):.0f} cm",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
