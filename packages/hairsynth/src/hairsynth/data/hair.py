"""Self-supervised training pairs from real hair photos: mask the hair, extract its strokes, re-synthesise."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..functional import dilate_mask
from ..strokes import Stroke, rasterize_strokes, strokes_from_image

logger = logging.getLogger(__name__)

__all__ = ["HairPairDataset", "find_pairs"]

_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp")
_MASK_EXT = (".png", ".pbm", ".bmp", ".jpg")


def find_pairs(root: str | os.PathLike[str], split: str | None = None) -> list[tuple[str, str]]:
    """List ``(image, mask)`` file pairs under ``root[/split]/images`` and ``.../masks`` (matched by stem).

    This is the layout of the Figaro-1k and CelebAMask-HQ hair subsets (``images/*.jpg``,
    ``masks/*.png``, nonzero = hair).

    Args:
        root: dataset folder.
        split: optional sub-folder (``train``, ``test``, ``training``, ...).

    Returns:
        Sorted pairs.

    Raises:
        FileNotFoundError: the folders are missing or hold no matching pair.
    """
    base = os.path.join(os.fspath(root), split) if split else os.fspath(root)
    idir, mdir = os.path.join(base, "images"), os.path.join(base, "masks")
    if not (os.path.isdir(idir) and os.path.isdir(mdir)):
        raise FileNotFoundError(f"find_pairs: expected folders {idir!r} and {mdir!r}")
    masks = {os.path.splitext(f)[0]: f for f in os.listdir(mdir) if f.lower().endswith(_MASK_EXT)}
    pairs = []
    for f in sorted(os.listdir(idir)):
        stem, ext = os.path.splitext(f)
        if ext.lower() in _IMG_EXT and stem in masks:
            pairs.append((os.path.join(idir, f), os.path.join(mdir, masks[stem])))
    if not pairs:
        raise FileNotFoundError(f"find_pairs: no image/mask pairs in {base!r}")
    return pairs


class HairPairDataset(Dataset):
    """Training pairs built the way the paper builds its real-image data (reconstruction).

    Each photo is resized (short side ``size``, bilinear; mask nearest) and centre-cropped to
    ``size x size``; the region to synthesise is the hair mask dilated by ``mask_dilation`` pixels; guide
    strokes are extracted automatically from the hair (:func:`hairsynth.strokes.strokes_from_image`,
    cached per image) and a random subset of ``stroke_count`` strokes is rasterised per sample, so the
    network learns from sparse input. With ``augment`` the sample is flipped horizontally at random
    (image, masks and stroke maps together).

    Args:
        root: dataset folder (see :func:`find_pairs`).
        split: sub-folder or ``None``.
        size: output side in pixels.
        stroke_count: ``(low, high)`` number of strokes per sample (inclusive).
        stroke_width: ``(low, high)`` stroke width in pixels at ``size``.
        mask_dilation: dilation of the hair mask in pixels.
        colorless_strokes: strokes carry no colour (ablation): the colour map equals the coverage.
        augment: random horizontal flips.
        deterministic: draw the stroke subset from a generator seeded by ``(seed, index)`` (evaluation).
        seed: seed for ``deterministic`` sampling and stroke extraction.
        limit: use only the first ``limit`` pairs.

    Raises:
        ValueError: a bad ``size``, ``stroke_count``, ``stroke_width``, ``mask_dilation`` or ``limit``.
        FileNotFoundError: no image/mask pairs under ``root[/split]`` (see :func:`find_pairs`).

    Sample:
        dict with ``image (3, S, S)`` in ``[0, 1]``, ``mask (1, S, S)`` (region to synthesise),
        ``hair_mask (1, S, S)``, ``stroke_color (3, S, S)``, ``stroke_mask (1, S, S)``, ``index`` (int).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = None,
        *,
        size: int = 256,
        stroke_count: tuple[int, int] = (3, 12),
        stroke_width: tuple[float, float] = (2.0, 4.0),
        mask_dilation: int = 2,
        colorless_strokes: bool = False,
        augment: bool = True,
        deterministic: bool = False,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        fn = "HairPairDataset"
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"{fn}: 'size' must be an int >= 16; got {size!r}")
        if len(stroke_count) != 2 or not 0 <= stroke_count[0] <= stroke_count[1]:
            raise ValueError(
                f"{fn}: 'stroke_count' must be (low, high) with 0 <= low <= high; got {stroke_count!r}"
            )
        if len(stroke_width) != 2 or not 0 < float(stroke_width[0]) <= float(stroke_width[1]):
            raise ValueError(
                f"{fn}: 'stroke_width' must be (low, high) with 0 < low <= high; got {stroke_width!r}"
            )
        if not isinstance(mask_dilation, int) or mask_dilation < 0:
            raise ValueError(f"{fn}: 'mask_dilation' must be an int >= 0; got {mask_dilation!r}")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"{fn}: 'limit' must be None or an int >= 1; got {limit!r}")
        self.pairs = find_pairs(root, split)
        if limit is not None:
            self.pairs = self.pairs[: int(limit)]
        self.size = size
        self.stroke_count = (int(stroke_count[0]), int(stroke_count[1]))
        self.stroke_width = (float(stroke_width[0]), float(stroke_width[1]))
        self.mask_dilation, self.colorless_strokes = mask_dilation, colorless_strokes
        self.augment, self.deterministic, self.seed = augment, deterministic, seed
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, list[Stroke]]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor, list[Stroke]]:
        if i in self._cache:
            return self._cache[i]
        from PIL import Image

        ip, mp = self.pairs[i]
        img = np.asarray(Image.open(ip).convert("RGB"), dtype=np.float32) / 255.0
        msk = (np.asarray(Image.open(mp).convert("L")) > 127).astype(np.float32)
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
        m = torch.from_numpy(msk)[None, None]
        h, w = x.shape[-2:]
        s = self.size / min(h, w)
        nh, nw = max(self.size, round(h * s)), max(self.size, round(w * s))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        m = F.interpolate(m, size=(nh, nw), mode="nearest")
        t, le = (nh - self.size) // 2, (nw - self.size) // 2
        x = x[0, :, t : t + self.size, le : le + self.size].contiguous()
        m = m[0, :, t : t + self.size, le : le + self.size].contiguous()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        strokes = strokes_from_image(x, m, width=self.stroke_width, generator=gen)
        self._cache[i] = (x, m, strokes)
        return x, m, strokes

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"HairPairDataset: index {i} out of range for {len(self)} samples")
        x, hair, strokes = self._load(i)
        gen = torch.Generator().manual_seed(self.seed * 7_919 + i) if self.deterministic else None
        lo, hi = self.stroke_count
        k = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        if len(strokes) > k:
            pick = sorted(torch.randperm(len(strokes), generator=gen)[:k].tolist())
            strokes = [strokes[j] for j in pick]
        sc, sm = rasterize_strokes(strokes, (self.size, self.size))
        if self.colorless_strokes:
            sc = sm.expand(3, -1, -1).clone()
        mask = dilate_mask(hair[None], self.mask_dilation)[0] if self.mask_dilation > 0 else hair
        sample: dict[str, Any] = {
            "image": x,
            "mask": mask,
            "hair_mask": hair,
            "stroke_color": sc,
            "stroke_mask": sm,
        }
        if self.augment and bool(torch.rand((), generator=gen) < 0.5):
            sample = {k2: v.flip(-1) for k2, v in sample.items()}
        sample["index"] = i
        return sample
