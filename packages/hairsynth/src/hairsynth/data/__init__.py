"""Datasets reading user-given folders of hair photos and masks (nothing is bundled or downloaded)."""

from .hair import HairPairDataset, find_pairs

__all__ = ["HairPairDataset", "find_pairs"]
