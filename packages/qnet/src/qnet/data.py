"""Readers for image classification data from user-given paths (nothing is bundled or downloaded).

Samples are ``(image, label)`` tuples: ``image`` a float tensor ``(C, H, W)`` in ``[0, 1]`` (then normalised
if ``mean``/``std`` are given), ``label`` an int.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "CIFARBatches",
    "ImageArchiveDataset",
    "ImageFolderDataset",
    "TensorImageDataset",
    "read_image_archive",
    "stratified_split",
]

_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")


class TensorImageDataset(Dataset[tuple[Tensor, int]]):
    """In-memory ``uint8`` images ``(N, C, H, W)`` with labels, optional normalisation and flip.

    Args:
        images: ``uint8`` tensor ``(N, C, H, W)``.
        labels: ``int64`` tensor ``(N,)``.
        mean: per-channel mean (on the ``[0, 1]`` scale) or ``None``.
        std: per-channel std or ``None``.
        flip: random horizontal flip (drawn with ``torch``'s global RNG in the worker).
        classes: class names.

    Raises:
        ValueError: shapes disagree.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flip: bool = False,
        classes: Sequence[str] = (),
    ) -> None:
        if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                "TensorImageDataset: 'images' must be (N, C, H, W) and 'labels' (N,); "
                f"got {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels.long()
        c = images.shape[1]
        self.mean = torch.tensor(mean if mean is not None else [0.0] * c).view(c, 1, 1)
        self.std = torch.tensor(std if std is not None else [1.0] * c).view(c, 1, 1)
        self.flip = flip
        self.classes = list(classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i].float().div(255.0)
        if self.flip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return (x - self.mean) / self.std, int(self.labels[i])

    def subset(self, index: Sequence[int] | Tensor, *, flip: bool | None = None) -> TensorImageDataset:
        """A new dataset holding the rows ``index`` (same normalisation).

        Args:
            index: row indices.
            flip: override the flip flag.

        Returns:
            The subset.
        """
        idx = torch.as_tensor(index, dtype=torch.long)
        return TensorImageDataset(
            self.images[idx],
            self.labels[idx],
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            flip=self.flip if flip is None else flip,
            classes=self.classes,
        )


def read_image_archive(
    path: str | os.PathLike[str], *, classes: Sequence[str] | None = None
) -> tuple[Tensor, Tensor, list[str]]:
    """Decode a ``.tar``/``.tar.gz`` archive of ``<class>/<image>`` members into memory, once.

    The archive is read sequentially (tar.gz has no random access); every image is decoded with PIL as RGB.
    All images must have one size.

    Args:
        path: the archive (e.g. ``cifar10-jpeg/test.tar.gz``).
        classes: class names in label order; default: ``classes.txt`` beside the archive if present, else
            the sorted folder names found in the archive.

    Returns:
        ``(images, labels, classes)``: ``uint8`` ``(N, 3, H, W)``, ``int64`` ``(N,)`` and the class names.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a readable tar archive, no image member, a member of an unknown class, or images
            of different sizes.
    """
    import tarfile

    from PIL import Image

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"read_image_archive: 'path' {p!r} does not exist or is not a file")
    if classes is None:
        ctxt = os.path.join(os.path.dirname(p), "classes.txt")
        if os.path.isfile(ctxt):
            with open(ctxt, encoding="utf-8") as f:
                classes = f.read().split()
    imgs: list[np.ndarray] = []
    names: list[str] = []
    try:
        with tarfile.open(p) as t:
            for m in t:
                if not m.isfile() or not m.name.lower().endswith(_IMG_EXT) or "/" not in m.name:
                    continue
                fobj = t.extractfile(m)
                if fobj is None:
                    continue
                with Image.open(fobj) as im:
                    imgs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
                names.append(m.name.split("/")[-2])
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"read_image_archive: {p!r} is not a readable tar archive of images ({e})") from e
    if not imgs:
        raise ValueError(f"read_image_archive: {p!r} holds no image member '<class>/<image>'")
    cls = sorted(set(names)) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(cls)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(f"read_image_archive: {p!r} has members of classes {unknown[:5]} not in 'classes'")
    if len({a.shape for a in imgs}) != 1:
        raise ValueError(f"read_image_archive: images of {p!r} have different sizes; resize them first")
    images = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([index[n] for n in names], dtype=torch.long)
    return images, labels, cls


class ImageArchiveDataset(TensorImageDataset):
    """A ``<class>/<image>`` tar(.gz) archive decoded into memory once (see :func:`read_image_archive`).

    Args:
        path: the archive.
        classes: class names in label order (default: ``classes.txt`` beside it, else sorted folders).
        mean: normalisation mean (``[0, 1]`` scale).
        std: normalisation std.
        flip: random horizontal flip.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: see :func:`read_image_archive`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        classes: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flip: bool = False,
    ) -> None:
        images, labels, cls = read_image_archive(path, classes=classes)
        super().__init__(images, labels, mean=mean, std=std, flip=flip, classes=cls)


class ImageFolderDataset(TensorImageDataset):
    """``root/<class>/<image>`` tree (ImageFolder layout) read into memory at a fixed size.

    Args:
        root: the folder.
        size: output side length (images are resized to ``size x size`` with bilinear filtering).
        grayscale: read as one channel.
        max_per_class: keep at most this many images per class (sorted by file name).
        mean: normalisation mean.
        std: normalisation std.
        flip: random horizontal flip.

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no image.
        ValueError: ``size`` is not a positive int.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        size: int = 32,
        grayscale: bool = False,
        max_per_class: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flip: bool = False,
    ) -> None:
        from PIL import Image

        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"ImageFolderDataset: 'size' must be an int >= 1; got {size!r}")
        r = os.fspath(root)
        if not os.path.isdir(r):
            raise FileNotFoundError(f"ImageFolderDataset: 'root' {r!r} is not a directory")
        classes = sorted(d for d in os.listdir(r) if os.path.isdir(os.path.join(r, d)))
        imgs, labels = [], []
        for ci, c in enumerate(classes):
            files = sorted(f for f in os.listdir(os.path.join(r, c)) if f.lower().endswith(_IMG_EXT))
            files = files[:max_per_class] if max_per_class else files
            for f in files:
                with Image.open(os.path.join(r, c, f)) as im:
                    im = im.convert("L" if grayscale else "RGB").resize(
                        (size, size), Image.Resampling.BILINEAR
                    )
                    a = np.asarray(im, dtype=np.uint8)
                imgs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
                labels.append(ci)
        if not imgs:
            raise FileNotFoundError(f"ImageFolderDataset: no image found under {r!r}")
        super().__init__(
            torch.from_numpy(np.stack(imgs)),
            torch.tensor(labels),
            mean=mean,
            std=std,
            flip=flip,
            classes=classes,
        )


class CIFARBatches(TensorImageDataset):
    """CIFAR-10/100 "python version" batches (``data_batch_1..5``, ``test_batch`` or ``train``/``test``).

    Args:
        root: folder holding the batch files (e.g. ``cifar-10-batches-py``).
        train: read the training batches, else the test batch.
        mean: normalisation mean.
        std: normalisation std.
        flip: random horizontal flip.

    Raises:
        FileNotFoundError: no batch file found.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        train: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flip: bool = False,
    ) -> None:
        r = os.fspath(root)
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["train"] if train else ["test_batch", "test"]
        files = [os.path.join(r, n) for n in names if os.path.isfile(os.path.join(r, n))]
        if not files:
            raise FileNotFoundError(f"CIFARBatches: no {'training' if train else 'test'} batch file in {r!r}")
        data, labels = [], []
        for f in files:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="latin1")
            data.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(d.get("labels", d.get("fine_labels", [])))
        super().__init__(
            torch.from_numpy(np.concatenate(data)), torch.tensor(labels), mean=mean, std=std, flip=flip
        )


def stratified_split(labels: Tensor, fraction: float, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split indices per class into ``(train, held_out)`` with ``fraction`` of each class held out.

    Args:
        labels: ``(N,)`` integer labels.
        fraction: held-out fraction in ``(0, 1)``.
        seed: permutation seed.

    Returns:
        Two sorted index tensors.

    Raises:
        TypeError: ``labels`` is not an integer tensor.
        ValueError: ``labels`` is not one-dimensional or ``fraction`` outside ``(0, 1)``.
    """
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex():
        got = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise TypeError(f"stratified_split: 'labels' must be an integer tensor; got {got}")
    if labels.dim() != 1:
        raise ValueError(f"stratified_split: 'labels' must have shape (N,); got {tuple(labels.shape)}")
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"stratified_split: 'fraction' must lie in (0, 1); got {fraction}")
    g = torch.Generator().manual_seed(seed)
    tr, te = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = max(1, round(idx.numel() * fraction))
        te.append(idx[:k])
        tr.append(idx[k:])
    return torch.cat(tr).sort().values, torch.cat(te).sort().values
