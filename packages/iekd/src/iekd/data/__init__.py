"""Readers for user-given image-classification data: ImageFolder trees and CIFAR python batches.

Nothing is bundled or downloaded: pass the path of data you already have.
"""

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
    "ImageSet",
    "ImageTensorDataset",
    "read_cifar",
    "read_image_folder",
    "stratified_split",
]
