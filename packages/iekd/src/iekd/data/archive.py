"""Class-folder images read straight from a tar archive, and a seeded in-memory CIFAR batch loader."""

from __future__ import annotations

import io
import logging
import os
import tarfile
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_tensor
from .datasets import ImageSet

logger = logging.getLogger(__name__)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TensorLoader", "cifar_augment", "read_image_archive"]

# The normalisation the common pretrained CIFAR-10 ResNet files were trained with (ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


def read_image_archive(
    path: str | os.PathLike[str],
    *,
    classes: list[str] | None = None,
    size: int | None = None,
    max_per_class: int | None = None,
) -> ImageSet:
    """Read a class-folder tree (``<class>/<image>`` members) from a tar archive into memory, in one pass.

    The archive (``.tar``, ``.tar.gz``, ``.tar.bz2``, ``.tar.xz``) is read sequentially once and never
    extracted; every image is decoded with Pillow to RGB ``uint8``. A leading folder common to all members
    (``train/<class>/<image>``) is allowed. Labels follow ``classes`` when given, else the sorted class names
    (for CIFAR-10 that is the standard label order).

    Args:
        path: the archive.
        classes: class names in label order; members of other classes are skipped. Default: every class.
        size: resize to ``size x size`` (bilinear); ``None`` keeps the size, which must be the same everywhere.
        max_per_class: decode at most this many images per class folder (the first ones in archive order).

    Returns:
        :class:`ImageSet` with ``(N, 3, H, W)`` uint8 images, members in archive order.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        ValueError: ``path`` is not a tar archive or is truncated; a class has no image (naming the class
            and the archive); images differ in size with ``size=None``.
    """
    from PIL import Image

    fn = "read_image_archive"
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: {path!r} is not a file")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"{fn}: 'size' must be an int >= 1 or None; got {size!r}")
    if max_per_class is not None and (
        isinstance(max_per_class, bool) or not isinstance(max_per_class, int) or max_per_class < 1
    ):
        raise ValueError(f"{fn}: 'max_per_class' must be an int >= 1 or None; got {max_per_class!r}")
    if classes is not None and (not classes or len(set(classes)) != len(classes)):
        raise ValueError(f"{fn}: 'classes' must be a non-empty list of distinct names; got {classes!r}")
    if not tarfile.is_tarfile(path):
        raise ValueError(f"{fn}: {path!r} is not a tar archive (.tar, .tar.gz, .tar.bz2, .tar.xz)")
    raw: list[tuple[str, np.ndarray]] = []
    folders: set[str] = set()
    counts: dict[str, int] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                parts = [p for p in m.name.split("/") if p not in ("", ".")]
                if m.isdir():
                    if parts:
                        folders.add("/".join(parts))
                    continue
                if not m.isfile() or len(parts) < 2 or not parts[-1].lower().endswith(_IMAGE_EXTS):
                    continue
                folder = "/".join(parts[:-1])
                if max_per_class is not None:
                    if counts.get(folder, 0) >= max_per_class:
                        continue
                    counts[folder] = counts.get(folder, 0) + 1
                fh = tar.extractfile(m)
                if fh is None:
                    continue
                with Image.open(io.BytesIO(fh.read())) as im:
                    im = im.convert("RGB")
                    if size is not None and im.size != (size, size):
                        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
                    raw.append((folder, np.asarray(im, dtype=np.uint8)))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(
            f"{fn}: {path!r} is not a readable tar archive (truncated or corrupt): {err}"
        ) from err
    if not raw:
        raise ValueError(f"{fn}: no images in {path!r} (expected members <class>/<image>)")
    # a single common top folder (e.g. "train/") is a prefix, not a class
    tops = {d.split("/")[0] for d, _ in raw}
    strip = len(tops) == 1 and all("/" in d for d, _ in raw)
    names = [d.split("/", 1)[1] if strip else d for d, _ in raw]
    found = sorted(set(names))
    empty_dirs = sorted(
        d.split("/", 1)[1] if strip and "/" in d else d
        for d in folders
        if d.count("/") == (1 if strip else 0)
    )
    order = list(classes) if classes is not None else sorted(set(found) | set(empty_dirs))
    for c in order:
        if c not in found:
            raise ValueError(f"{fn}: class {c!r} has no images in {path!r}")
    index = {c: i for i, c in enumerate(order)}
    keep = [i for i, n in enumerate(names) if n in index]
    shapes = {raw[i][1].shape for i in keep}
    if len(shapes) > 1:
        raise ValueError(f"{fn}: images in {path!r} differ in size ({sorted(shapes)}); pass 'size'")
    x = torch.from_numpy(np.stack([raw[i][1] for i in keep])).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([index[names[i]] for i in keep], dtype=torch.int64)
    logger.info("%s: %d images, %d classes from %s", fn, len(keep), len(order), path)
    return ImageSet(x, y, order)


def cifar_augment(
    images: torch.Tensor, *, pad: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """CIFAR augmentation of a batch: zero-pad by ``pad``, random ``H x W`` crop, horizontal flip (p = 0.5).

    The standard CIFAR pipeline (He et al. 2016; ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``),
    vectorised over the batch, one independent crop and flip per image, drawn from ``generator`` (seed it for
    reproducible runs). Apply it before normalisation so that the padding is black, as torchvision does.

    Args:
        images: ``(B, C, H, W)`` tensor (any dtype).
        pad: padding in pixels, ``>= 0``.
        flip: also flip each image horizontally with probability 0.5.
        generator: a CPU ``torch.Generator``; ``None`` uses the global RNG.

    Returns:
        ``(B, C, H, W)``, same dtype and device.

    Raises:
        TypeError: ``images`` is not a tensor.
        ValueError: not 4-D, or ``pad < 0``.

    Examples:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> cifar_augment(x, pad=0, flip=False).equal(x)
        True
    """
    fn = "cifar_augment"
    check_tensor(images, "images", fn=fn)
    if images.dim() != 4:
        raise ValueError(f"{fn}: 'images' must have shape (B, C, H, W); got {tuple(images.shape)}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"{fn}: 'pad' must be an int >= 0; got {pad!r}")
    b, c, h, w = images.shape
    out = images
    if pad > 0:
        offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
        xp = F.pad(images, (pad, pad, pad, pad))
        rows = (offsets[:, :1] + torch.arange(h)).to(images.device)  # (B, H)
        cols = (offsets[:, 1:] + torch.arange(w)).to(images.device)  # (B, W)
        bi = torch.arange(b, device=images.device)[:, None, None, None]
        ci = torch.arange(c, device=images.device)[None, :, None, None]
        out = xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(images.device)
        out = torch.where(mask[:, None, None, None], out.flip(-1), out)
    return out


class _EpochSampler:
    """Holds the epoch number; recipes call ``loader.sampler.set_epoch(e)`` before each epoch."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class TensorLoader:
    """A seeded in-memory batch loader: shuffle, :func:`cifar_augment`, normalise, yield ``(x, y)``.

    Far cheaper than a per-item ``Dataset`` + ``DataLoader`` for 32x32 images held as one ``uint8`` tensor.
    Every epoch draws its order and augmentation from ``torch.Generator().manual_seed(seed, epoch)``-derived
    seeds, so a run resumed at epoch ``e`` (the recipes call ``loader.sampler.set_epoch(e)``) sees exactly the
    batches an uninterrupted run would. Iterating without ``set_epoch`` advances the epoch by itself.

    Args:
        images: ``(N, 3, H, W)`` uint8 (or float in ``[0, 1]``).
        labels: int64 ``(N,)``.
        batch_size: images per batch.
        shuffle: reshuffle every epoch.
        augment: :func:`cifar_augment` (pad-4 crop + flip) every batch.
        mean: normalisation mean (default: ImageNet statistics, those of the common CIFAR ResNet files).
        std: normalisation std.
        seed: base seed of order and augmentation.
        drop_last: drop a last incomplete batch.

    Raises:
        TypeError / ValueError: bad tensors or sizes.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int = 128,
        shuffle: bool = False,
        augment: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        fn = "TensorLoader"
        check_tensor(images, "images", fn=fn)
        check_tensor(labels, "labels", fn=fn)
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{fn}: 'images' must have shape (N, 3, H, W); got {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"{fn}: 'labels' must have shape ({images.shape[0]},); got {tuple(labels.shape)}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{fn}: 'batch_size' must be an int >= 1; got {batch_size!r}")
        self.images, self.labels = images, labels.long()
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.seed, self.drop_last = int(seed), drop_last
        self.sampler = _EpochSampler()
        self._explicit = False
        self.sampler.set_epoch = self._set_epoch  # type: ignore[method-assign]

    def _set_epoch(self, epoch: int) -> None:
        self.sampler.epoch, self._explicit = int(epoch), True

    def __len__(self) -> int:
        n = int(self.labels.shape[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.sampler.epoch
        if not self._explicit:
            self.sampler.epoch += 1
        self._explicit = False
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = int(self.labels.shape[0])
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx]
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            if self.augment:
                x = cifar_augment(x, pad=4, generator=g)
            yield (x - self.mean) / self.std, self.labels[idx]
