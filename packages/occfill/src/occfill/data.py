"""Readers for identity-labelled faces, yielding the paper's paired training samples.

Nothing is bundled or downloaded: users pass the folders. Two public layouts are read:

- an ImageFolder tree ``root/<identity>/<image>`` of aligned face crops (e.g. Glint360k-style 112 x 112
  crops): :meth:`PairedFaces.from_image_folder`;
- a render set with a ``meta.jsonl`` whose rows hold ``image``, ``identity``, ``pitch``/``yaw``/``roll``
  (radians) and ``landmarks68`` (e.g. ICT-FaceKit renders): :meth:`PairedFaces.from_meta_jsonl`.

A sample is a dict of tensors:

- ``"image"``: ``(3, H, W)`` float in [0, 1], the ground truth y;
- ``"reference"``: ``(3, H, W)``, ANOTHER photo of the same identity (the reference S);
- ``"mask"``: ``(1, H, W)``, 1 = occluded;
- ``"angles"``: ``(3,)`` target ``(pitch, yaw, roll)`` in radians (zeros when unknown);
- ``"has_pose"``: ``()`` bool, whether ``angles`` are known;
- ``"landmarks"``: ``(68, 2)`` pixels (NaN when unknown);
- ``"label"``: ``()`` int64 identity index;
- ``"index"``: ``()`` int64 sample index.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ._checks import check_int
from .masks import PAPER_EYE_BOX, box_masks, eye_box_from_landmarks, random_eye_masks

logger = logging.getLogger(__name__)

__all__ = ["FaceRecord", "PairedFaces", "pil_to_tensor", "tensor_to_pil"]

_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_MASK_MODES = ("fixed", "random", "landmarks")


@dataclass(frozen=True)
class FaceRecord:
    """One face image: its path, identity index, and (optional) pose angles and 68 landmarks."""

    path: str
    label: int
    angles: tuple[float, float, float] | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """Convert a PIL image to a ``(C, H, W)`` float tensor in [0, 1] (RGB: C = 3; mode ``L``: C = 1).

    Args:
        image: a PIL image; modes other than ``L`` are converted to RGB.

    Returns:
        ``(C, H, W)`` float32 tensor.

    Raises:
        TypeError: ``image`` is not a PIL image.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"pil_to_tensor: 'image' must be a PIL.Image.Image; got {type(image).__name__}")
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """Convert a ``(3, H, W)`` or ``(1, H, W)`` tensor in [0, 1] to a PIL image (values are clipped).

    Args:
        image: ``(C, H, W)`` float tensor, C in {1, 3}.

    Returns:
        RGB (C = 3) or ``L`` (C = 1) PIL image.

    Raises:
        TypeError: not a tensor.
        ValueError: wrong shape.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"tensor_to_pil: 'image' must be a torch.Tensor; got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"tensor_to_pil: 'image' must have shape (C, H, W) with C in (1, 3); got {tuple(image.shape)}"
        )
    arr = (image.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


class PairedFaces(Dataset):
    """Paired samples (y, S, mask, pose) from identity-labelled faces; see the module docstring.

    Args:
        records: the face images.
        size: images are resized to ``size x size`` (landmarks scaled alike); ``None`` keeps the files' size
            (all files must then share one size).
        mask: ``"fixed"`` (the paper's box, :data:`occfill.masks.PAPER_EYE_BOX`), ``"random"`` (seeded
            variations of it, see :func:`occfill.masks.random_eye_masks`) or ``"landmarks"`` (the box from
            each image's landmarks; needs landmarks on every record).
        mask_shape: ``"box"`` or ``"headset"``.
        seed: base seed of the reference choice and random masks (sample ``i`` of epoch ``e`` uses
            ``seed + e * 1_000_003 + i``).
        preload: decode every image once and keep the uint8 pixels in memory.

    Raises:
        TypeError: a non-integer ``size``.
        ValueError: empty records, an identity with a single image, a non-positive ``size``, unknown
            ``mask``/``mask_shape`` or missing landmarks.
    """

    def __init__(
        self,
        records: Sequence[FaceRecord],
        *,
        size: int | None = None,
        mask: str = "fixed",
        mask_shape: str = "box",
        seed: int = 0,
        preload: bool = True,
    ) -> None:
        fn = "PairedFaces"
        if len(records) == 0:
            raise ValueError(f"{fn}: 'records' must not be empty")
        if size is not None:
            check_int(size, "size", fn=fn)
        if mask not in _MASK_MODES:
            raise ValueError(f"{fn}: 'mask' must be one of {_MASK_MODES}; got {mask!r}")
        if mask_shape not in ("box", "headset"):
            raise ValueError(f"{fn}: 'mask_shape' must be one of ('box', 'headset'); got {mask_shape!r}")
        if mask == "landmarks" and any(r.landmarks is None for r in records):
            raise ValueError(f"{fn}: mask='landmarks' needs landmarks on every record")
        self.records = list(records)
        self.size = size
        self.mask_mode = mask
        self.mask_shape = mask_shape
        self.seed = int(seed)
        self.epoch = 0
        by_label: dict[int, list[int]] = {}
        for i, r in enumerate(self.records):
            by_label.setdefault(r.label, []).append(i)
        single = [lab for lab, idx in by_label.items() if len(idx) < 2]
        if single:
            raise ValueError(
                f"{fn}: every identity needs >= 2 images to draw a reference; labels {single} have one"
            )
        self.by_label = by_label
        self.num_identities = len(by_label)
        self._cache: list[torch.Tensor] | None = None
        self._orig_sizes: dict[int, tuple[int, int]] = {}
        if preload:
            self._cache = [self._read(i) for i in range(len(self.records))]

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_image_folder(
        cls, root: str | os.PathLike, *, identities: Sequence[str] | None = None, **kwargs: object
    ) -> PairedFaces:
        """Read an ImageFolder tree ``root/<identity>/<image>``; labels follow the sorted identity names.

        Args:
            root: the folder.
            identities: restrict to these identity folder names (labels are re-indexed 0..N-1 in sorted
                order of the kept names).
            **kwargs: passed to :class:`PairedFaces`.

        Returns:
            The dataset; ``dataset.identity_names`` lists the kept names.

        Raises:
            FileNotFoundError: ``root`` is not a folder.
        """
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"PairedFaces.from_image_folder: no folder at {root!r}")
        names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if identities is not None:
            missing = sorted(set(identities) - set(names))
            if missing:
                raise ValueError(f"PairedFaces.from_image_folder: identities {missing} not found in {root!r}")
            names = sorted(identities)
        records = []
        for label, name in enumerate(names):
            folder = os.path.join(root, name)
            files = sorted(f for f in os.listdir(folder) if f.lower().endswith(_EXTS))
            records += [FaceRecord(os.path.join(folder, f), label) for f in files]
        ds = cls(records, **kwargs)  # type: ignore[arg-type]
        ds.identity_names = names
        return ds

    @classmethod
    def from_meta_jsonl(
        cls, root: str | os.PathLike, *, identities: Sequence[int] | None = None, **kwargs: object
    ) -> PairedFaces:
        """Read ``root/meta.jsonl`` rows (``image``, ``identity``, ``pitch``, ``yaw``, ``roll``, ``landmarks68``).

        Args:
            root: the folder holding ``meta.jsonl`` (image paths are relative to it).
            identities: keep only these identity ids (labels re-indexed 0..N-1 in sorted order).
            **kwargs: passed to :class:`PairedFaces`.

        Returns:
            The dataset; ``dataset.identity_names`` lists the kept ids as strings.

        Raises:
            FileNotFoundError: no ``meta.jsonl`` in ``root``.
        """
        root = os.fspath(root)
        meta = os.path.join(root, "meta.jsonl")
        if not os.path.isfile(meta):
            raise FileNotFoundError(f"PairedFaces.from_meta_jsonl: no meta.jsonl in {root!r}")
        with open(meta, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        ids = sorted({int(r["identity"]) for r in rows})
        if identities is not None:
            ids = sorted(set(ids) & {int(i) for i in identities})
        relabel = {v: i for i, v in enumerate(ids)}
        records = [
            FaceRecord(
                os.path.join(root, r["image"]),
                relabel[int(r["identity"])],
                (float(r["pitch"]), float(r["yaw"]), float(r["roll"])),
                tuple((float(x), float(y)) for x, y in r["landmarks68"]) if "landmarks68" in r else None,
            )
            for r in rows
            if int(r["identity"]) in relabel
        ]
        ds = cls(records, **kwargs)  # type: ignore[arg-type]
        ds.identity_names = [str(i) for i in ids]
        return ds

    # ------------------------------------------------------------------ helpers
    identity_names: list[str]

    def set_epoch(self, epoch: int) -> None:
        """Change the seed stream (reference choice, random masks) for a new epoch."""
        self.epoch = int(epoch)

    def _read(self, i: int) -> torch.Tensor:
        with Image.open(self.records[i].path) as im:
            im = im.convert("RGB")
            if self.size is not None and im.size != (self.size, self.size):
                im = im.resize((self.size, self.size), Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def _image(self, i: int) -> torch.Tensor:
        raw = self._cache[i] if self._cache is not None else self._read(i)
        return raw.float().div(255.0)

    def _landmarks(self, i: int, hw: tuple[int, int]) -> torch.Tensor | None:
        rec = self.records[i]
        if rec.landmarks is None:
            return None
        lm = torch.tensor(rec.landmarks, dtype=torch.float32)
        if self.size is not None:
            if i not in self._orig_sizes:
                with Image.open(rec.path) as im:
                    self._orig_sizes[i] = im.size
            w0, h0 = self._orig_sizes[i]
            lm = lm * torch.tensor([hw[1] / w0, hw[0] / h0])
        return lm

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rec = self.records[index]
        rng = np.random.default_rng(self.seed + self.epoch * 1_000_003 + index)
        others = [j for j in self.by_label[rec.label] if j != index]
        ref_index = others[int(rng.integers(len(others)))]
        image = self._image(index)
        reference = self._image(ref_index)
        if reference.shape != image.shape:
            raise ValueError(
                f"PairedFaces: images {rec.path!r} and {self.records[ref_index].path!r} differ in size; pass size="
            )
        h, w = image.shape[-2:]
        lm = self._landmarks(index, (h, w))
        if self.mask_mode == "landmarks":
            assert lm is not None
            mask = box_masks(eye_box_from_landmarks(lm[None]), h, w, shape=self.mask_shape)[0]
        elif self.mask_mode == "random":
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            mask = random_eye_masks(1, h, w, shape=self.mask_shape, generator=g)[0]
        else:
            rel = torch.tensor([PAPER_EYE_BOX], dtype=torch.float64) * torch.tensor(
                [w, h, w, h], dtype=torch.float64
            )
            mask = box_masks(rel, h, w, shape=self.mask_shape, dtype=torch.float32)[0]
        angles = torch.tensor(rec.angles if rec.angles is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
        return {
            "image": image,
            "reference": reference,
            "mask": mask,
            "angles": angles,
            "has_pose": torch.tensor(rec.angles is not None),
            "landmarks": lm if lm is not None else torch.full((68, 2), math.nan),
            "label": torch.tensor(rec.label, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }
