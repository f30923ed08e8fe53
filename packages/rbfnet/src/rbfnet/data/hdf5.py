"""Reader of the PointNet HDF5 ModelNet form (``modelnet40_ply_hdf5_2048``); needs ``h5py`` (``rbfnet[hdf5]``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .datasets import Transform, _PointDataset

__all__ = ["ModelNetHDF5"]

logger = logging.getLogger(__name__)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ModelNetHDF5 needs h5py, an optional dependency: pip install 'rbfnet[hdf5]'"
        ) from exc
    return h5py


class ModelNetHDF5(_PointDataset):
    """PointNet's HDF5 ModelNet form, as most users hold it (``modelnet40_ply_hdf5_2048``).

    Layout: ``<root>/train_files.txt`` and ``<root>/test_files.txt`` list the ``.h5`` files of each split,
    one per line. The original lists hold paths relative to the PointNet repository
    (``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``); an entry is looked up as given, relative to
    ``root``, and by its base name in ``root``. Each file holds ``data`` ``(S, P, 3)`` float32 xyz (P = 2048,
    unit sphere), ``label`` ``(S, 1)`` or ``(S,)`` integers and optionally ``normal`` ``(S, P, 3)``. Class
    names come from ``shape_names.txt`` when present, else ``class_0 ...``. All files are read into memory
    (about 0.3 GB for all of ModelNet40, 0.6 GB with normals).

    Args:
        root: folder holding the list files (and the ``.h5`` files, or their relative paths).
        split: ``"train"`` or ``"test"`` (reads ``<split>_files.txt``).
        num_points: points per sample (``None``: all P); ``sampling="first"`` takes the first ones, as
            PointNet does.
        use_normals: return ``"normals"`` (needs a ``normal`` dataset in every file).
        sampling: ``"first"`` or ``"random"`` (seeded per item and epoch).
        transform: seeded transform ``(sample, rng) -> sample``.
        seed: base seed.
        classes: class names in label order (default: ``shape_names.txt`` or ``class_<i>``).

    Samples are the package's dicts: ``{"points": (N, 3) float32, "label": int64, "index": int,
    ["normals": (N, 3)]}``.

    Raises:
        ImportError: h5py is not installed.
        FileNotFoundError: ``root``, the list file, or a listed ``.h5`` file is missing (the message names
            the list file and the entry).
        ValueError: a file lacks ``data``/``label`` (or ``normal`` with ``use_normals``), or holds arrays of
            the wrong shape (named with expected vs received), labels < 0, or the split is empty.

    Example:
        >>> ds = ModelNetHDF5("modelnet40_ply_hdf5_2048", "test", num_points=1024)  # doctest: +SKIP
        >>> ds[0]["points"].shape  # doctest: +SKIP
        torch.Size([1024, 3])
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        num_points: int | None = 1024,
        use_normals: bool = False,
        sampling: str = "first",
        transform: Transform | None = None,
        seed: int = 0,
        classes: Sequence[str] | None = None,
    ) -> None:
        fn = "ModelNetHDF5"
        h5py = _h5py()
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{fn}: 'root' {root!r} is not a directory")
        if not isinstance(split, str) or not split:
            raise ValueError(
                f"{fn}: 'split' must be a non-empty str such as 'train' or 'test'; got {split!r}"
            )
        list_file = os.path.join(root, f"{split}_files.txt")
        if not os.path.isfile(list_file):
            raise FileNotFoundError(f"{fn}: file list {list_file!r} is missing (split {split!r})")
        with open(list_file, encoding="utf-8") as fh:
            entries = [ln.strip() for ln in fh if ln.strip()]
        if not entries:
            raise ValueError(f"{fn}: file list {list_file!r} is empty")
        points: list[np.ndarray] = []
        normals: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        sources: list[str] = []
        for entry in entries:
            path = self._resolve(root, entry)
            if path is None:
                raise FileNotFoundError(
                    f"{fn}: {list_file!r} lists {entry!r}, but no such file exists (looked for it as given, "
                    f"relative to {root!r} and as {os.path.basename(entry)!r} in {root!r})"
                )
            with h5py.File(path, "r") as f:
                keys = sorted(f.keys())
                for key in ("data", "label") + (("normal",) if use_normals else ()):
                    if key not in f:
                        raise ValueError(
                            f"{fn}: {path!r} has no {key!r} dataset (keys: {keys})"
                            + ("; use_normals=True needs 'normal' in every file" if key == "normal" else "")
                        )
                data = np.asarray(f["data"][...])
                label = np.asarray(f["label"][...])
                nrm = np.asarray(f["normal"][...]) if use_normals else None
            if data.ndim != 3 or data.shape[2] != 3 or data.shape[1] == 0:
                raise ValueError(
                    f"{fn}: {path!r} 'data' must have shape (S, P, 3) with P >= 1; got {data.shape}"
                )
            if not np.issubdtype(data.dtype, np.floating):
                raise ValueError(f"{fn}: {path!r} 'data' must be floating point; got {data.dtype}")
            raw_shape = label.shape
            if label.ndim == 2 and label.shape[1] == 1:
                label = label[:, 0]
            if label.ndim != 1 or label.shape[0] != data.shape[0]:
                raise ValueError(
                    f"{fn}: {path!r} 'label' must have shape ({data.shape[0]}, 1) or ({data.shape[0]},) to match "
                    f"'data' {data.shape}; got {raw_shape}"
                )
            if not np.issubdtype(label.dtype, np.integer) or (label.size and int(label.min()) < 0):
                raise ValueError(
                    f"{fn}: {path!r} 'label' must hold integers >= 0; got dtype {label.dtype}"
                    + (f", min {label.min()}" if label.size else "")
                )
            if nrm is not None and nrm.shape != data.shape:
                raise ValueError(
                    f"{fn}: {path!r} 'normal' must have the shape of 'data' {data.shape}; got {nrm.shape}"
                )
            points.append(data.astype(np.float32, copy=False))
            labels.append(label.astype(np.int64))
            if nrm is not None:
                normals.append(nrm.astype(np.float32, copy=False))
            sources.extend(f"{path}#{i}" for i in range(data.shape[0]))
        self._points = np.concatenate(points)
        self._normals = np.concatenate(normals) if normals else None
        all_labels = np.concatenate(labels)
        if len(all_labels) == 0:
            raise ValueError(f"{fn}: the files of {list_file!r} hold no shapes")
        if classes is not None:
            names = list(classes)
        else:
            names_file = os.path.join(root, "shape_names.txt")
            if os.path.isfile(names_file):
                with open(names_file, encoding="utf-8") as fh:
                    names = [ln.strip() for ln in fh if ln.strip()]
            else:
                names = [f"class_{i}" for i in range(int(all_labels.max()) + 1)]
        if int(all_labels.max()) >= len(names):
            raise ValueError(
                f"{fn}: labels reach {int(all_labels.max())} but only {len(names)} class names are known "
                "(shape_names.txt or 'classes')"
            )
        super().__init__(
            [(s, int(lbl)) for s, lbl in zip(sources, all_labels)],
            names,
            num_points=num_points,
            use_normals=use_normals,
            sampling=sampling,
            transform=transform,
            seed=seed,
            cache=False,
        )
        logger.info("ModelNetHDF5 %s/%s: %d shapes from %d files", root, split, len(self), len(entries))

    @staticmethod
    def _resolve(root: str, entry: str) -> str | None:
        for cand in (entry, os.path.join(root, entry), os.path.join(root, os.path.basename(entry))):
            if os.path.isfile(cand):
                return cand
        return None

    def _load(self, index: int) -> np.ndarray:
        pts = self._points[index]
        if self._normals is None:
            return pts
        return np.concatenate([pts, self._normals[index]], axis=1)
