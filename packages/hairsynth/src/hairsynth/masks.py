"""Facial-hair region presets from 68 facial landmarks (for adding hair to clean-shaven faces).

Convention:
    Landmarks follow the 68-point iBUG 300-W layout used by dlib and most face-alignment tools: 0-16 jaw,
    17-26 brows, 27-35 nose (31-35 its lower edge), 36-47 eyes, 48-59 outer lips, 60-67 inner lips. Points
    are ``(x, y)`` pixels, ``x`` right and ``y`` down. Returned masks are ``(H, W)`` float tensors with
    1 = region to synthesise; the lips (48-59) are always excluded.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["BEARD_STYLES", "beard_mask"]

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


def beard_mask(
    landmarks: Any,
    size: tuple[int, int],
    *,
    style: str = "full_beard",
    grow: int = 0,
) -> torch.Tensor:
    """Region mask of a facial-hair style built from 68 facial landmarks.

    The style's landmark outline is filled, optionally dilated by ``grow`` pixels, and the outer-lip
    polygon is removed (lips do not grow hair). Use it as the ``mask`` of
    :meth:`hairsynth.Synthesizer.synthesize` to add a beard to a clean-shaven face.

    Args:
        landmarks: ``(68, 2)`` array or tensor of ``(x, y)`` pixel positions.
        size: ``(H, W)`` of the image.
        style: one of :data:`BEARD_STYLES` (``"full_beard"``, ``"goatee"``, ``"moustache"``,
            ``"chin_strap"``).
        grow: dilation of the region in pixels (>= 0) before the lips are removed.

    Returns:
        ``(H, W)`` float32 mask in ``{0, 1}``.

    Raises:
        ValueError: landmarks not ``(68, 2)`` or not finite, unknown style, bad size or ``grow``.

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
