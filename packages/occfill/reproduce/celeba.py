"""celeba-id-crops with real poses: dlib-68 landmarks (``landmarks.json``) -> :func:`occfill.estimate_pose`.

Split (by identity, sorted CelebA identity numbers): the last 24 identities are the TEST set (never trained on,
never used to choose anything), the 12 before them a VALIDATION set, the rest (195 identities) training.
No hyper-parameter was tuned in this release (the package defaults were used), so the validation split only
serves the smoke checks of ``run.py --quick``.
"""

from __future__ import annotations

import json
import os

import torch

from occfill.data import FaceRecord, PairedFaces
from occfill.pose import estimate_pose

N_TEST, N_VAL = 24, 12
SIZE = 128


def identity_split(root: str) -> dict[str, list[str]]:
    """Identity folder names of the train/val/test splits."""
    names = sorted((d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))), key=int)
    return {
        "train": names[: -(N_TEST + N_VAL)],
        "val": names[-(N_TEST + N_VAL) : -N_TEST],
        "test": names[-N_TEST:],
    }


def load_landmarks(root: str) -> dict[str, torch.Tensor]:
    """``relative path -> (68, 2)`` float32 landmarks in crop pixels."""
    with open(os.path.join(root, "landmarks.json"), encoding="utf-8") as fh:
        raw = json.load(fh)
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in raw.items()}


def records(
    root: str, identities: list[str], landmarks: dict[str, torch.Tensor], *, per_id: int | None = None
) -> list[FaceRecord]:
    """FaceRecords with (pitch, yaw, roll) from ``estimate_pose`` on the crop's own landmarks."""
    recs: list[FaceRecord] = []
    for label, name in enumerate(identities):
        files = sorted(f for f in os.listdir(os.path.join(root, name)) if f.endswith(".jpg"))
        if per_id is not None:
            files = files[:per_id]
        keys = [f"{name}/{f}" for f in files]
        lms = torch.stack([landmarks[k] for k in keys])
        angles = estimate_pose(lms, (SIZE, SIZE))
        for k, lm, a in zip(keys, lms, angles, strict=True):
            recs.append(
                FaceRecord(
                    os.path.join(root, k),
                    label,
                    tuple(float(v) for v in a),  # type: ignore[arg-type]
                    tuple((float(x), float(y)) for x, y in lm),  # type: ignore[arg-type]
                )
            )
    return recs


def dataset(
    root: str, split: str, *, seed: int = 0, per_id: int | None = None, mask: str = "landmarks"
) -> PairedFaces:
    """A :class:`PairedFaces` of one split with real poses and landmark-following eye masks."""
    ids = identity_split(root)[split]
    ds = PairedFaces(records(root, ids, load_landmarks(root), per_id=per_id), size=None, mask=mask, seed=seed)
    ds.identity_names = ids
    return ds
