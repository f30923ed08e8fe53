"""Readers for user-given image-classification data: ImageFolder trees, tar archives, CIFAR python batches.

Nothing is bundled or downloaded: pass the path of data you already have.
"""

from .archive import IMAGENET_MEAN, IMAGENET_STD, TensorLoader, cifar_augment, read_image_archive
from .datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    ImageSet,
    ImageTensorDataset,
    read_cifar,
    read_image_folder,
    stratified_split,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageSet",
    "ImageTensorDataset",
    "TensorLoader",
    "cifar_augment",
    "read_cifar",
    "read_image_archive",
    "read_image_folder",
    "stratified_split",
]
