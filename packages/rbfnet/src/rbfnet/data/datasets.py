"""Readers for ModelNet in its common public forms, from user-given directories (nothing is downloaded).

Every dataset returns sample dicts ``{"points": FloatTensor (N, 3), "label": LongTensor (), "index": int}``
plus ``"normals": FloatTensor (N, 3)`` when normals are available and requested. Transforms (see
:mod:`rbfnet.data.transforms`) get a ``numpy.random.Generator`` seeded from ``(seed, epoch, index)``;
call :meth:`set_epoch` each epoch for fresh augmentations.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .._fileio import atomic_write
from .transforms import normalize_unit_sphere

__all__ = [
    "ModelNetMesh",
    "ModelNetNormalResampled",
    "PointCloudFolder",
    "read_off",
    "read_point_file",
    "sample_mesh_surface",
    "stack_dataset",
]

logger = logging.getLogger(__name__)

Transform = Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]
_EXTS = (".npy", ".txt", ".ply")


def read_off(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read an OFF mesh, including ModelNet's files whose header line fuses ``OFF`` and the counts.

    Polygons with more than three corners are fan-triangulated.

    Args:
        path: ``.off`` file.

    Returns:
        ``(vertices (V, 3) float64, faces (F, 3) int64)``.

    Raises:
        ValueError: not an OFF file, or truncated.
    """
    with open(path, encoding="utf-8", errors="replace") as fh:
        tokens_lines = [ln.split("#", 1)[0].strip() for ln in fh]
    lines = [ln for ln in tokens_lines if ln]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise ValueError(f"read_off: {os.fspath(path)!r} does not start with 'OFF'")
    head = lines[0][3:].strip()
    rest = lines[1:]
    if not head:
        if not rest:
            raise ValueError(f"read_off: {os.fspath(path)!r} has no counts line")
        head, rest = rest[0], rest[1:]
    try:
        nv, nf = (int(x) for x in head.split()[:2])
        verts = np.array([[float(x) for x in ln.split()[:3]] for ln in rest[:nv]], dtype=np.float64).reshape(
            -1, 3
        )
        faces: list[list[int]] = []
        for ln in rest[nv : nv + nf]:
            vals = [int(x) for x in ln.split()]
            k, idx = vals[0], vals[1 : 1 + vals[0]]
            faces.extend([idx[0], idx[i], idx[i + 1]] for i in range(1, k - 1))
    except (ValueError, IndexError) as err:
        raise ValueError(f"read_off: cannot parse {os.fspath(path)!r}: {err}") from err
    if verts.shape[0] != nv or len(rest) < nv + nf:
        raise ValueError(f"read_off: {os.fspath(path)!r} is truncated ({nv} vertices, {nf} faces announced)")
    return verts, np.asarray(faces, dtype=np.int64).reshape(-1, 3)


def sample_mesh_surface(
    vertices: np.ndarray, faces: np.ndarray, num_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform sampling of a triangle mesh's surface.

    A face is drawn with probability proportional to its area, then a uniform point inside it
    (``sqrt`` barycentric trick). Normals are the sampled faces' unit normals.

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)`` vertex indices.
        num_points: number of samples, >= 1.
        rng: random generator.

    Returns:
        ``(points (num_points, 3), normals (num_points, 3))`` float32.

    Raises:
        TypeError: non-array mesh, non-int ``num_points`` or ``rng`` not a ``numpy.random.Generator``.
        ValueError: wrong shapes, face indices outside the vertices, ``num_points < 1``, or no face with
            positive area.
    """
    fn = "sample_mesh_surface"
    if not isinstance(vertices, np.ndarray) or not isinstance(faces, np.ndarray):
        raise TypeError(
            f"{fn}: 'vertices' and 'faces' must be numpy arrays; got {type(vertices).__name__}, {type(faces).__name__}"
        )
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(
            f"{fn}: need vertices (V, 3) and faces (F, 3); got {vertices.shape} and {faces.shape}"
        )
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)):
        raise TypeError(f"{fn}: 'num_points' must be an int; got {type(num_points).__name__}")
    if num_points < 1:
        raise ValueError(f"{fn}: 'num_points' must be >= 1; got {num_points}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{fn}: 'rng' must be a numpy.random.Generator; got {type(rng).__name__}")
    if faces.size and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[0]):
        raise ValueError(
            f"{fn}: 'faces' must index [0, V={vertices.shape[0]}); got values in [{int(faces.min())}, {int(faces.max())}]"
        )
    tri = vertices[faces]  # (F, 3, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(cross, axis=1)
    total = float(area2.sum())
    if faces.shape[0] == 0 or total <= 0:
        raise ValueError(f"{fn}: the mesh has no face with positive area")
    f = rng.choice(faces.shape[0], size=num_points, p=area2 / total)
    r1 = np.sqrt(rng.random(num_points))
    r2 = rng.random(num_points)
    a, b, c = tri[f, 0], tri[f, 1], tri[f, 2]
    pts = (1 - r1)[:, None] * a + (r1 * (1 - r2))[:, None] * b + (r1 * r2)[:, None] * c
    nrm = cross[f] / np.maximum(area2[f], 1e-300)[:, None]
    return pts.astype(np.float32), nrm.astype(np.float32)


def read_point_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a per-shape point array: ``.npy`` (``(N, C)``), ``.txt`` (comma or space separated rows) or
    ``.ply`` (vertices via trimesh).

    Args:
        path: the file.

    Returns:
        ``(N, C)`` float32 array with ``C >= 3`` (columns 3-5, when present, are normals).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported extension, an unreadable (truncated, garbage) file, or fewer than 3 columns.
    """
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    if ext not in _EXTS:
        raise ValueError(f"read_point_file: unsupported extension {ext!r} in {p!r}; expected one of {_EXTS}")
    if not os.path.isfile(p):
        raise FileNotFoundError(f"read_point_file: no file at {p!r}")
    try:
        if ext == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif ext == ".txt":
            with open(p, encoding="utf-8") as fh:
                text = fh.read().replace(",", " ")
            rows = [ln.split() for ln in text.splitlines() if ln.strip()]
            arr = np.asarray(rows, dtype=np.float64)
        else:
            import trimesh

            geom = trimesh.load(p, process=False)
            arr = np.asarray(geom.vertices)  # type: ignore[attr-defined]
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"read_point_file: {p!r} is not a valid {ext} point file (truncated or not a point array): {reason}"
        ) from exc
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] == 0:
        raise ValueError(
            f"read_point_file: {p!r} must hold an (N, >=3) array with N >= 1; got shape {arr.shape}"
        )
    return arr


class _PointDataset(Dataset):  # type: ignore[type-arg]
    """Common machinery: item list, in-memory cache, subsampling, seeded transforms."""

    def __init__(
        self,
        items: list[tuple[str, int]],
        classes: list[str],
        *,
        num_points: int | None,
        use_normals: bool,
        sampling: str,
        transform: Transform | None,
        seed: int,
        cache: bool,
    ) -> None:
        if sampling not in ("first", "random"):
            raise ValueError(
                f"{type(self).__name__}: 'sampling' must be 'first' or 'random'; got {sampling!r}"
            )
        if num_points is not None and (not isinstance(num_points, int) or num_points < 1):
            raise ValueError(
                f"{type(self).__name__}: 'num_points' must be a positive int or None; got {num_points!r}"
            )
        self.items = items
        self.classes = classes
        self.num_points = num_points
        self.use_normals = use_normals
        self.sampling = sampling
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every item, ``(len,)`` int64."""
        return np.asarray([lbl for _, lbl in self.items], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch mixed into the per-item random seed.

        Args:
            epoch: epoch number.
        """
        self.epoch = int(epoch)

    def _load(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def _raw(self, index: int) -> np.ndarray:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        arr = self._load(index)
        if self._cache is not None:
            self._cache[index] = arr
        return arr

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.items):
            raise IndexError(f"{type(self).__name__}: index {index} out of range [0, {len(self.items)})")
        arr = self._raw(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n = arr.shape[0]
        if self.num_points is not None:
            if self.sampling == "first" or n < self.num_points:
                sel = np.arange(self.num_points) % n  # repeat when the file holds fewer points
            else:
                sel = rng.choice(n, size=self.num_points, replace=False)
            arr = arr[sel]
        sample: dict[str, Any] = {"points": np.ascontiguousarray(arr[:, :3], dtype=np.float32)}
        if self.use_normals:
            if arr.shape[1] < 6:
                raise ValueError(
                    f"{type(self).__name__}: use_normals=True but {self.items[index][0]!r} has {arr.shape[1]} columns"
                )
            sample["normals"] = np.ascontiguousarray(arr[:, 3:6], dtype=np.float32)
        if self.transform is not None:
            sample = self.transform(sample, rng)
        out: dict[str, Any] = {
            "points": torch.from_numpy(np.ascontiguousarray(sample["points"], dtype=np.float32)),
            "label": torch.tensor(self.items[index][1], dtype=torch.long),
            "index": index,
        }
        if "normals" in sample:
            out["normals"] = torch.from_numpy(np.ascontiguousarray(sample["normals"], dtype=np.float32))
        return out


def _class_names(root: str, candidates: Sequence[str]) -> list[str] | None:
    for name in candidates:
        p = os.path.join(root, name)
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as fh:
                return [ln.strip() for ln in fh if ln.strip()]
    return None


class PointCloudFolder(_PointDataset):
    """Class-folder tree of per-shape point arrays: ``<root>/<class>/<split>/<name>.npy|.txt|.ply``.

    The class order comes from ``shape_names.txt`` in ``root`` when present, else the sorted folder names.
    Files holding 6+ columns carry normals in columns 3-5.

    Args:
        root: dataset folder.
        split: sub-folder name, e.g. ``"train"`` or ``"test"``.
        num_points: points per sample (``None``: all of the file); files with fewer are repeated.
        classes: restrict to (and order by) these class names.
        use_normals: return ``"normals"`` (needs 6-column files).
        sampling: ``"first"`` (the first ``num_points`` points) or ``"random"`` (seeded subset).
        transform: seeded transform ``(sample, rng) -> sample``.
        seed: base seed of the per-item generators.
        cache: keep loaded arrays in memory.
        max_per_class: keep at most this many shapes per class (first in sorted order), e.g. for tests.

    Raises:
        FileNotFoundError: ``root`` or a class folder is missing.
        ValueError: no shapes found, unknown class names.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        num_points: int | None = 1024,
        classes: Sequence[str] | None = None,
        use_normals: bool = False,
        sampling: str = "first",
        transform: Transform | None = None,
        seed: int = 0,
        cache: bool = True,
        max_per_class: int | None = None,
    ) -> None:
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"PointCloudFolder: 'root' {root!r} is not a directory")
        if max_per_class is not None and (
            isinstance(max_per_class, bool) or not isinstance(max_per_class, int) or max_per_class < 1
        ):
            raise ValueError(
                f"PointCloudFolder: 'max_per_class' must be an int >= 1 or None; got {max_per_class!r}"
            )
        names = list(classes) if classes is not None else _class_names(root, ("shape_names.txt",))
        if names is None:
            names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, split)))
        items: list[tuple[str, int]] = []
        for label, cls in enumerate(names):
            folder = os.path.join(root, cls, split)
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"PointCloudFolder: class folder {folder!r} is missing")
            files = sorted(f for f in os.listdir(folder) if f.lower().endswith(_EXTS))
            if max_per_class is not None:
                files = files[:max_per_class]
            items.extend((os.path.join(folder, f), label) for f in files)
        if not items:
            raise ValueError(f"PointCloudFolder: no {_EXTS} files under {root!r} for split {split!r}")
        super().__init__(
            items,
            names,
            num_points=num_points,
            use_normals=use_normals,
            sampling=sampling,
            transform=transform,
            seed=seed,
            cache=cache,
        )
        logger.info("PointCloudFolder %s/%s: %d shapes, %d classes", root, split, len(items), len(names))

    def _load(self, index: int) -> np.ndarray:
        return read_point_file(self.items[index][0])


class ModelNetNormalResampled(_PointDataset):
    """PointNet++ ``modelnet40_normal_resampled`` text form: ``<root>/<class>/<name>.txt`` with rows
    ``x,y,z,nx,ny,nz``, split lists ``modelnet{C}_{split}.txt`` and ``modelnet{C}_shape_names.txt``.

    Args:
        root: dataset folder.
        split: ``"train"`` or ``"test"`` (reads the official list file).
        num_classes: 40 or 10 (which list files to read).
        num_points: points per sample; the PointNet++ loader reads the first 1024 lines (``sampling="first"``).
        use_normals: return ``"normals"``.
        sampling: ``"first"`` or ``"random"``.
        transform: seeded transform.
        seed: base seed.
        cache: keep parsed arrays in memory.
        normalize: centre and scale xyz to the unit sphere (PointNet++ ``pc_normalize``).

    Raises:
        FileNotFoundError: list files or shape files missing.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        num_classes: int = 40,
        num_points: int | None = 1024,
        use_normals: bool = True,
        sampling: str = "first",
        transform: Transform | None = None,
        seed: int = 0,
        cache: bool = True,
        normalize: bool = True,
    ) -> None:
        root = os.fspath(root)
        if num_classes not in (10, 40):
            raise ValueError(f"ModelNetNormalResampled: 'num_classes' must be 10 or 40; got {num_classes!r}")
        names = _class_names(root, (f"modelnet{num_classes}_shape_names.txt",))
        split_file = os.path.join(root, f"modelnet{num_classes}_{split}.txt")
        if names is None or not os.path.isfile(split_file):
            raise FileNotFoundError(
                f"ModelNetNormalResampled: need modelnet{num_classes}_shape_names.txt and "
                f"modelnet{num_classes}_{split}.txt in {root!r}"
            )
        index = {c: i for i, c in enumerate(names)}
        items: list[tuple[str, int]] = []
        with open(split_file, encoding="utf-8") as fh:
            for ln in fh:
                shape = ln.strip()
                if not shape:
                    continue
                cls = shape.rsplit("_", 1)[0]
                if cls not in index:
                    raise ValueError(f"ModelNetNormalResampled: shape {shape!r} has unknown class {cls!r}")
                path = os.path.join(root, cls, shape + ".txt")
                if not os.path.isfile(path):
                    raise FileNotFoundError(f"ModelNetNormalResampled: listed shape file {path!r} is missing")
                items.append((path, index[cls]))
        self.normalize = normalize
        super().__init__(
            items,
            names,
            num_points=num_points,
            use_normals=use_normals,
            sampling=sampling,
            transform=transform,
            seed=seed,
            cache=cache,
        )

    def _load(self, index: int) -> np.ndarray:
        arr = read_point_file(self.items[index][0])
        if self.normalize:
            arr = arr.copy()
            arr[:, :3] = normalize_unit_sphere(arr[:, :3])
        return arr


class ModelNetMesh(_PointDataset):
    """Original ModelNet OFF meshes ``<root>/<class>/<split>/<name>.off``, sampled on the surface.

    Each mesh is sampled once (area-weighted, ``samples_per_mesh`` points with face normals, seeded by
    ``(seed, mesh index)``), normalised to the unit sphere and, with ``cache_dir``, saved as
    ``<cache_dir>/<class>/<split>/<name>_<samples>_s<seed>.npy`` (written atomically) and re-read next time.

    Args:
        root: folder of the ModelNet10/40 OFF tree.
        split: ``"train"`` or ``"test"``.
        num_points: points per sample drawn from the cached samples.
        samples_per_mesh: surface samples per mesh (cached).
        classes: restrict to (and order by) these classes (default: sorted folders).
        use_normals: return ``"normals"`` (face normals).
        sampling: ``"first"`` or ``"random"``.
        transform: seeded transform.
        seed: base seed (surface sampling and transforms).
        cache_dir: where sampled clouds are cached (``None``: in memory only).

    Raises:
        FileNotFoundError: missing folders.
        ValueError: no meshes found.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        num_points: int | None = 1024,
        samples_per_mesh: int = 2048,
        classes: Sequence[str] | None = None,
        use_normals: bool = False,
        sampling: str = "random",
        transform: Transform | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ModelNetMesh: 'root' {root!r} is not a directory")
        if (
            isinstance(samples_per_mesh, bool)
            or not isinstance(samples_per_mesh, int)
            or samples_per_mesh < 1
        ):
            raise ValueError(
                f"ModelNetMesh: 'samples_per_mesh' must be an int >= 1; got {samples_per_mesh!r}"
            )
        names = (
            list(classes)
            if classes is not None
            else sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, split)))
        )
        items: list[tuple[str, int]] = []
        for label, cls in enumerate(names):
            folder = os.path.join(root, cls, split)
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"ModelNetMesh: class folder {folder!r} is missing")
            items.extend(
                (os.path.join(folder, f), label) for f in sorted(os.listdir(folder)) if f.endswith(".off")
            )
        if not items:
            raise ValueError(f"ModelNetMesh: no .off files under {root!r} for split {split!r}")
        self.samples_per_mesh = samples_per_mesh
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.split = split
        self.root = root
        super().__init__(
            items,
            names,
            num_points=num_points,
            use_normals=use_normals,
            sampling=sampling,
            transform=transform,
            seed=seed,
            cache=True,
        )

    def _cache_path(self, index: int) -> str | None:
        if self.cache_dir is None:
            return None
        path, label = self.items[index]
        name = re.sub(r"\.off$", "", os.path.basename(path))
        return os.path.join(
            self.cache_dir,
            self.classes[label],
            self.split,
            f"{name}_{self.samples_per_mesh}_s{self.seed}.npy",
        )

    def _load(self, index: int) -> np.ndarray:
        cpath = self._cache_path(index)
        if cpath is not None and os.path.isfile(cpath):
            try:
                cached = np.load(cpath, allow_pickle=False)
                if cached.ndim == 2 and cached.shape == (self.samples_per_mesh, 6):
                    return cached
                reason = f"shape {cached.shape}"
            except (OSError, ValueError, EOFError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning(
                "ModelNetMesh: cache file %r is not a valid rbfnet cache (truncated or not written by rbfnet: "
                "%s); resampling the mesh and rewriting it",
                cpath,
                reason,
            )
        verts, faces = read_off(self.items[index][0])
        rng = np.random.default_rng([self.seed, index, 12345])
        pts, nrm = sample_mesh_surface(verts, faces, self.samples_per_mesh, rng)
        arr = np.concatenate([normalize_unit_sphere(pts), nrm], axis=1).astype(np.float32)
        if cpath is not None:
            os.makedirs(os.path.dirname(cpath), exist_ok=True)
            atomic_write(cpath, lambda fh: np.save(fh, arr), suffix=".npy")
        return arr


def stack_dataset(dataset: Dataset) -> dict[str, torch.Tensor]:  # type: ignore[type-arg]
    """Materialise a (small, fixed-size) dataset as stacked tensors.

    Args:
        dataset: any of this module's datasets (all samples must have the same number of points).

    Returns:
        ``{"points": (S, N, 3), "label": (S,), ["normals": (S, N, 3)]}``.

    Raises:
        TypeError: ``dataset`` is not a sized dataset.
        ValueError: ``dataset`` is empty.
    """
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(
            f"stack_dataset: 'dataset' must be a Dataset with __len__; got {type(dataset).__name__}"
        )
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("stack_dataset: 'dataset' is empty")
    samples = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    out = {
        "points": torch.stack([s["points"] for s in samples]),
        "label": torch.stack([s["label"] for s in samples]),
    }
    if samples and "normals" in samples[0]:
        out["normals"] = torch.stack([s["normals"] for s in samples])
    return out
