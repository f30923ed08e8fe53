"""Seeded point-cloud transforms on sample dicts.

A transform is called as ``t(sample, rng)`` with ``sample`` a dict holding ``"points"`` (``(N, 3)``
float32 numpy array) and optionally ``"normals"`` (``(N, 3)``), and ``rng`` a ``numpy.random.Generator``
(the datasets derive one per item from ``(seed, epoch, index)``, so results do not depend on workers).
Random parameters are drawn once per call and applied to points and normals alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Compose",
    "Jitter",
    "NormalizeUnitSphere",
    "RandomPointDropout",
    "RandomRotateUp",
    "RandomScaleShift",
    "default_train_transform",
    "normalize_unit_sphere",
]

Sample = dict[str, Any]


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre a cloud at its centroid and scale it so the farthest point lies on the unit sphere.

    Args:
        points: ``(N, 3)`` array.

    Returns:
        ``(N, 3)`` float32 array (a cloud of one point maps to the origin).

    Raises:
        TypeError: ``points`` is not a numpy array.
        ValueError: wrong shape or empty cloud.
    """
    if not isinstance(points, np.ndarray):
        raise TypeError(f"normalize_unit_sphere: 'points' must be a numpy array; got {type(points).__name__}")
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(
            f"normalize_unit_sphere: 'points' must have shape (N, 3) with N >= 1; got {points.shape}"
        )
    p = points.astype(np.float64) - points.astype(np.float64).mean(axis=0, keepdims=True)
    r = float(np.sqrt((p * p).sum(axis=1)).max())
    return (p / r if r > 0 else p).astype(np.float32)


class Compose:
    """Apply transforms in order, sharing one generator.

    Args:
        transforms: the transforms.
    """

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Transform ``sample`` with ``rng``."""
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class NormalizeUnitSphere:
    """Deterministic: see :func:`normalize_unit_sphere` (normals unchanged)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Normalise ``sample["points"]``."""
        return {**sample, "points": normalize_unit_sphere(sample["points"])}

    def __repr__(self) -> str:
        return "NormalizeUnitSphere()"


class RandomScaleShift:
    """Anisotropic scale ``U(low, high)`` per axis, then shift ``U(-shift, shift)`` per axis (PointNet++ /
    DGCNN augmentation). Normals are transformed by the inverse scale and renormalised.

    Args:
        scale: ``(low, high)`` of the per-axis scale factor, ``0 < low <= high``.
        shift: maximum absolute shift, >= 0.
    """

    def __init__(self, scale: tuple[float, float] = (2.0 / 3.0, 1.5), shift: float = 0.2) -> None:
        if (
            not isinstance(scale, (tuple, list))
            or len(scale) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (*scale, shift))
        ):
            raise TypeError(
                f"RandomScaleShift: 'scale' must be a pair of numbers and 'shift' a number; got {scale!r}, {shift!r}"
            )
        if not (0 < scale[0] <= scale[1]) or shift < 0:
            raise ValueError(
                f"RandomScaleShift: need 0 < scale[0] <= scale[1] and shift >= 0; got {scale}, {shift}"
            )
        self.scale = scale
        self.shift = shift

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Scale and shift ``sample``."""
        s = rng.uniform(self.scale[0], self.scale[1], size=3)
        t = rng.uniform(-self.shift, self.shift, size=3)
        out = {**sample, "points": (sample["points"] * s + t).astype(np.float32)}
        if "normals" in sample:
            n = sample["normals"] / s
            out["normals"] = (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(
                np.float32
            )
        return out

    def __repr__(self) -> str:
        return f"RandomScaleShift(scale={self.scale}, shift={self.shift})"


class Jitter:
    """Add Gaussian noise ``N(0, sigma^2)`` clipped to ``[-clip, clip]`` to every coordinate.

    Args:
        sigma: noise standard deviation, >= 0.
        clip: clipping bound, > 0.
    """

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (sigma, clip)):
            raise TypeError(f"Jitter: 'sigma' and 'clip' must be numbers; got {sigma!r}, {clip!r}")
        if sigma < 0 or clip <= 0:
            raise ValueError(f"Jitter: need sigma >= 0 and clip > 0; got sigma={sigma}, clip={clip}")
        self.sigma = sigma
        self.clip = clip

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Jitter ``sample["points"]``."""
        noise = np.clip(self.sigma * rng.standard_normal(sample["points"].shape), -self.clip, self.clip)
        return {**sample, "points": (sample["points"] + noise).astype(np.float32)}

    def __repr__(self) -> str:
        return f"Jitter(sigma={self.sigma}, clip={self.clip})"


class RandomRotateUp:
    """Rotate about the up axis by an angle ``U(0, 2 pi)`` (points and normals).

    Args:
        up_axis: 0, 1 or 2 (x, y or z); ModelNet OFF/class-folder data here is z-up (2), the
            ``modelnet40_normal_resampled`` text form is y-up (1).
    """

    def __init__(self, up_axis: int = 2) -> None:
        if up_axis not in (0, 1, 2):
            raise ValueError(f"RandomRotateUp: 'up_axis' must be 0, 1 or 2; got {up_axis!r}")
        self.up_axis = up_axis

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Rotate ``sample``."""
        a = rng.uniform(0.0, 2.0 * math.pi)
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != self.up_axis]
        rot = np.eye(3)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        out = {**sample, "points": (sample["points"] @ rot.T).astype(np.float32)}
        if "normals" in sample:
            out["normals"] = (sample["normals"] @ rot.T).astype(np.float32)
        return out

    def __repr__(self) -> str:
        return f"RandomRotateUp(up_axis={self.up_axis})"


class RandomPointDropout:
    """PointNet++ random input dropout: drop a fraction ``U(0, max_ratio)`` of the points, replacing each
    dropped point (and normal) by the first point so the cloud keeps ``N`` points.

    Args:
        max_ratio: largest dropout fraction, in ``[0, 1)``.
    """

    def __init__(self, max_ratio: float = 0.875) -> None:
        if isinstance(max_ratio, bool) or not isinstance(max_ratio, (int, float)):
            raise TypeError(
                f"RandomPointDropout: 'max_ratio' must be a number; got {type(max_ratio).__name__}"
            )
        if not 0 <= max_ratio < 1:
            raise ValueError(f"RandomPointDropout: 'max_ratio' must lie in [0, 1); got {max_ratio}")
        self.max_ratio = max_ratio

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Drop points of ``sample``."""
        ratio = rng.uniform(0.0, self.max_ratio)
        drop = rng.random(sample["points"].shape[0]) <= ratio
        out = dict(sample)
        for key in ("points", "normals"):
            if key in sample and drop.any():
                arr = sample[key].copy()
                arr[drop] = arr[0]
                out[key] = arr
        return out

    def __repr__(self) -> str:
        return f"RandomPointDropout(max_ratio={self.max_ratio})"


def default_train_transform(up_axis: int = 2, *, rotate: bool = False) -> Compose:
    """The training augmentation used by the recipes: scale/shift, jitter, point dropout (+ rotation).

    Args:
        up_axis: the data's up axis (for the optional rotation).
        rotate: whether to add a random rotation about the up axis.

    Returns:
        A :class:`Compose`.
    """
    ts: list[Any] = [RandomPointDropout(), RandomScaleShift(), Jitter()]
    if rotate:
        ts.insert(0, RandomRotateUp(up_axis))
    return Compose(ts)
