"""Image-classification readers and an in-memory dataset with CIFAR-style augmentation."""

from __future__ import annotations

import logging
import os
import pickle
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .._checks import check_tensor

logger = logging.getLogger(__name__)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "ImageSet",
    "ImageTensorDataset",
    "read_cifar",
    "read_image_folder",
    "stratified_split",
]

# Normalisation of the authors' feeder (pixel values / 255).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
CIFAR100_MEAN = (129.3 / 255, 124.1 / 255, 112.4 / 255)
CIFAR100_STD = (68.2 / 255, 65.4 / 255, 70.4 / 255)

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


class ImageSet(NamedTuple):
    """Images in memory: ``images`` uint8 ``(N, 3, H, W)``, ``labels`` int64 ``(N,)``, ``classes`` names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


def read_image_folder(
    root: str | os.PathLike[str], *, size: int | None = 32, max_per_class: int | None = None
) -> ImageSet:
    """Read an ImageFolder tree (``root/<class>/<image>``) into memory, classes in sorted order.

    Args:
        root: the folder.
        size: resize every image to ``size x size`` (bilinear, antialiased, via Pillow); ``None`` keeps the
            size, which must then be the same for every image.
        max_per_class: read at most this many images per class (sorted file order).

    Returns:
        :class:`ImageSet` with uint8 RGB images.

    Raises:
        FileNotFoundError: ``root`` is not a folder or holds no class folder with images.
        ValueError: ``size`` is not positive, or images differ in size with ``size=None``.
    """
    from PIL import Image

    fn = "read_image_folder"
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{fn}: {root!r} is not a folder")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise TypeError(f"{fn}: 'size' must be an int or None; got {type(size).__name__}")
    if size is not None and size < 1:
        raise ValueError(f"{fn}: 'size' must be >= 1 or None; got {size}")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    images: list[np.ndarray] = []
    labels: list[int] = []
    kept: list[str] = []
    for cls in classes:
        folder = os.path.join(root, cls)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(_IMAGE_EXTS))
        if max_per_class is not None:
            files = files[:max_per_class]
        if not files:
            continue
        label = len(kept)
        kept.append(cls)
        for f in files:
            with Image.open(os.path.join(folder, f)) as im:
                im = im.convert("RGB")
                if size is not None and im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
                arr = np.asarray(im, dtype=np.uint8)
            if images and arr.shape != images[0].shape:
                raise ValueError(
                    f"{fn}: images differ in size ({arr.shape} vs {images[0].shape}); pass 'size'"
                )
            images.append(arr)
            labels.append(label)
    if not images:
        raise FileNotFoundError(f"{fn}: no images found under {root!r} (expected root/<class>/<image>)")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    logger.info("read_image_folder: %d images, %d classes from %s", len(labels), len(kept), root)
    return ImageSet(x, torch.tensor(labels, dtype=torch.int64), kept)


def _unpickle(path: str) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def read_cifar(root: str | os.PathLike[str], *, train: bool = True) -> ImageSet:
    """Read CIFAR-10 or CIFAR-100 "python version" batches from a user-given folder.

    ``root`` is ``cifar-10-batches-py`` / ``cifar-100-python`` itself or a folder containing one of them.
    These files are Python pickles: only read copies from the official source that you trust.

    Args:
        root: the folder.
        train: the training batches (``data_batch_1..5`` / ``train``) or the test batch.

    Returns:
        :class:`ImageSet` with ``(N, 3, 32, 32)`` uint8 images (CIFAR-100: the fine labels).

    Raises:
        FileNotFoundError: no CIFAR batches found.
    """
    root = os.fspath(root)
    for cand in (root, os.path.join(root, "cifar-10-batches-py"), os.path.join(root, "cifar-100-python")):
        if os.path.isfile(os.path.join(cand, "batches.meta")):
            names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
            classes = list(_unpickle(os.path.join(cand, "batches.meta"))["label_names"])
            key = "labels"
            break
        if os.path.isfile(os.path.join(cand, "meta")) and os.path.isfile(
            os.path.join(cand, "train" if train else "test")
        ):
            names = ["train" if train else "test"]
            classes = list(_unpickle(os.path.join(cand, "meta"))["fine_label_names"])
            key = "fine_labels"
            break
    else:
        raise FileNotFoundError(
            f"read_cifar: no CIFAR python batches under {root!r} (expected batches.meta or meta + train/test)"
        )
    data: list[np.ndarray] = []
    labels: list[int] = []
    for n in names:
        d = _unpickle(os.path.join(cand, n))
        data.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(int(v) for v in d[key])
    x = torch.from_numpy(np.concatenate(data))
    return ImageSet(x, torch.tensor(labels, dtype=torch.int64), [str(c) for c in classes])


def stratified_split(
    labels: torch.Tensor, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded per-class split of sample indices into train and test.

    Args:
        labels: int64 ``(N,)``.
        test_fraction: share of each class put in the test set, in ``(0, 1)`` (at least one test and one
            training sample per class with two or more samples).
        seed: RNG seed (a private generator; global RNG untouched).

    Returns:
        ``(train_idx, test_idx)``, sorted int64 tensors.

    Raises:
        ValueError: ``test_fraction`` outside ``(0, 1)`` or ``labels`` not 1-D.

    Examples:
        >>> tr, te = stratified_split(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), test_fraction=0.25)
        >>> len(tr), len(te)
        (6, 2)
    """
    fn = "stratified_split"
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"{fn}: 'test_fraction' must lie in (0, 1); got {test_fraction}")
    check_tensor(labels, "labels", fn=fn)
    if labels.dim() != 1:
        raise ValueError(f"{fn}: 'labels' must have shape (N,); got {tuple(labels.shape)}")
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(labels.cpu()):
        idx = torch.nonzero(labels.cpu() == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(test_fraction * len(idx))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


class ImageTensorDataset(Dataset):
    """In-memory image dataset yielding ``(image, label)`` with optional CIFAR-style augmentation.

    Each item is ``(float32 (3, H, W) normalised image, int64 label)``. With ``augment=True`` the image is
    reflect-padded by ``pad`` pixels, randomly cropped back to ``H x W`` and flipped horizontally with
    probability 0.5 (the authors' CIFAR pipeline), drawing from the global torch RNG (seed it, or the
    DataLoader's generator, for reproducibility).

    Args:
        images: uint8 ``(N, 3, H, W)`` (or float in ``[0, 1]``).
        labels: int64 ``(N,)``.
        mean: per-channel mean of the normalisation.
        std: per-channel standard deviation.
        augment: random crop + flip.
        pad: padding of the random crop.

    Raises:
        ValueError: shapes do not match.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: tuple[float, float, float] = CIFAR10_MEAN,
        std: tuple[float, float, float] = CIFAR10_STD,
        augment: bool = False,
        pad: int = 4,
    ) -> None:
        fn = "ImageTensorDataset"
        check_tensor(images, "images", fn=fn)
        check_tensor(labels, "labels", fn=fn)
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{fn}: 'images' must have shape (N, 3, H, W); got {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"{fn}: 'labels' must have shape ({images.shape[0]},); got {tuple(labels.shape)}"
            )
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        m = torch.tensor(mean).view(1, 3, 1, 1)
        s = torch.tensor(std).view(1, 3, 1, 1)
        self.images = ((x - m) / s).contiguous()
        self.labels = labels.long()
        self.augment = augment
        self.pad = pad

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        if self.augment:
            h, w = x.shape[1:]
            if self.pad > 0:
                x = F.pad(x.unsqueeze(0), (self.pad,) * 4, mode="reflect").squeeze(0)
                dy, dx = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,)))
                x = x[:, dy : dy + h, dx : dx + w]
            if bool(torch.rand(()) < 0.5):
                x = x.flip(-1)
        return x, self.labels[i]
