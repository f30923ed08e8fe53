"""Batch forms the recipes accept, and the adapter from PyG-style flat batches to dense clouds.

The models take dense clouds ``(B, N, 3)``. Three batch forms reach them through :func:`as_dense_batch`
(which :func:`rbfnet.train` and :func:`rbfnet.evaluate` call on every batch):

* the package's dicts ``{"points": (B, N, 3), "label": (B,), ["normals": (B, N, 3)]}``;
* ``(points, label)`` tuples or lists (what ``TensorDataset`` or a plain ``Dataset`` returning tuples
  gives after the default collation);
* PyG-style flat batches: a dict or an object (such as ``torch_geometric.data.Batch``) with ``pos``
  ``(P, 3)``, ``batch`` ``(P,)`` (the cloud index of every point; variable points per cloud), the labels
  in ``y`` or ``label`` ``(B,)`` / ``(B, 1)``, and optionally ``normal`` ``(P, 3)``. They go through
  :func:`flat_to_dense`. :func:`collate_flat` builds such batches from samples of different sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._checks import check_floating, check_points

__all__ = ["as_dense_batch", "collate_flat", "flat_to_dense"]


def flat_to_dense(
    pos: torch.Tensor,
    batch: torch.Tensor,
    *,
    num_points: int | None = None,
    normals: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn a flat batch (``pos`` ``(P, 3)`` + ``batch`` vector) into dense clouds ``(B, N, 3)``.

    Cloud ``b`` holds the points with ``batch == b``, in their order. Every cloud is brought to ``N``
    points (``num_points``, default: the largest cloud): a cloud with fewer points repeats them
    cyclically (``0, 1, ..., n-1, 0, 1, ...``), one with more keeps ``N`` evenly spaced ones
    (``floor(j * n / N)``). Repeating points leaves max pooling unchanged, so for the max-pooling models
    (every registered model with its defaults) the logits in eval mode equal those of each cloud run
    alone at its own size; ``sum``/``mean`` kernel pooling and BatchNorm statistics in training mode see
    the repeats. Differentiable (a gather).

    Args:
        pos: ``(P, 3)`` points of all clouds, floating, finite.
        batch: ``(P,)`` integer cloud index of each point, ``0 <= batch < B``; need not be sorted.
        num_points: ``N`` (default: the largest cloud's size).
        normals: optional ``(P, 3)`` per-point normals, gathered alike.
        batch_size: ``B`` (default: ``batch.max() + 1``); every cloud must hold at least one point.

    Returns:
        ``(points (B, N, 3), normals (B, N, 3) or None)`` on ``pos``'s device and dtype.

    Raises:
        TypeError: non-tensors, floating ``batch`` or integer ``pos``.
        ValueError: wrong shapes, ``batch`` and ``pos`` of different lengths or devices, negative indices,
            an empty cloud, ``num_points < 1``.

    Example:
        >>> pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]])
        >>> pts, _ = flat_to_dense(pos, torch.tensor([0, 0, 1]))
        >>> pts[:, :, 0]
        tensor([[0., 1.],
                [2., 2.]])
    """
    fn = "flat_to_dense"
    check_points(pos, "pos", fn=fn, dim=3, spec="P,D")
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"{fn}: 'batch' must be a torch.Tensor of cloud indices; got {type(batch).__name__}")
    if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
        raise TypeError(f"{fn}: 'batch' must hold integer cloud indices; got dtype {batch.dtype}")
    if batch.dim() != 1 or batch.shape[0] != pos.shape[0]:
        raise ValueError(
            f"{fn}: 'batch' must have shape (P,) = ({pos.shape[0]},) like 'pos' {tuple(pos.shape)}; "
            f"got {tuple(batch.shape)}"
        )
    if batch.device != pos.device:
        raise ValueError(f"{fn}: 'batch' is on {batch.device} but 'pos' is on {pos.device}")
    if normals is not None:
        check_points(normals, "normals", fn=fn, dim=3, spec="P,D", dims={"P": pos.shape[0]})
    if num_points is not None and (
        isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1
    ):
        raise ValueError(f"{fn}: 'num_points' must be an int >= 1 or None; got {num_points!r}")
    batch = batch.long()
    if int(batch.min()) < 0:
        raise ValueError(f"{fn}: 'batch' must hold indices >= 0; got min {int(batch.min())}")
    b = int(batch.max()) + 1 if batch_size is None else int(batch_size)
    if int(batch.max()) >= b:
        raise ValueError(f"{fn}: 'batch' holds index {int(batch.max())} but batch_size is {b}")
    counts = torch.bincount(batch, minlength=b)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()[:5]
        raise ValueError(f"{fn}: clouds {empty} hold no points (every index in [0, {b}) needs at least one)")
    n = int(counts.max()) if num_points is None else num_points
    order = torch.argsort(batch, stable=True)  # points of cloud 0, then cloud 1, ... in their order
    start = torch.cumsum(counts, 0) - counts
    j = torch.arange(n, device=pos.device).unsqueeze(0)  # (1, N)
    c = counts.unsqueeze(1)  # (B, 1)
    local = torch.where(c >= n, torch.div(j * c, n, rounding_mode="floor"), j % c)
    idx = order[start.unsqueeze(1) + local]  # (B, N)
    points = pos[idx]
    return points, (normals[idx] if normals is not None else None)


def _get(batch: Any, *names: str) -> Any:
    for name in names:
        if isinstance(batch, Mapping):
            if name in batch and batch[name] is not None:
                return batch[name]
        elif getattr(batch, name, None) is not None:
            return getattr(batch, name)
    return None


def as_dense_batch(batch: Any) -> dict[str, Any]:
    """Bring any accepted batch form (module docstring) to ``{"points", "label", ["normals"]}``.

    Args:
        batch: a package dict, a ``(points, label)`` pair, or a flat ``pos``/``batch`` batch.

    Returns:
        ``{"points": (B, N, 3), "label": (B,) int64, ["normals": (B, N, 3)]}``.

    Raises:
        TypeError: an unrecognised batch form (the message lists the accepted ones).
        ValueError: labels that are not one per cloud; see :func:`flat_to_dense` for flat batches.
    """
    if isinstance(batch, Mapping) and "points" in batch and "label" in batch:
        return dict(batch)
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        points, label = batch
        return {"points": points, "label": _labels(label, points.shape[0])}
    pos, vec = _get(batch, "pos"), _get(batch, "batch")
    if isinstance(pos, torch.Tensor) and isinstance(vec, torch.Tensor):
        y = _get(batch, "y", "label")
        if y is None:
            raise TypeError("train/evaluate: a flat batch (pos, batch) needs its labels in 'y' or 'label'")
        nrm = _get(batch, "normal", "normals")
        size = int(vec.max()) + 1 if vec.numel() else 0
        y = torch.as_tensor(y)
        if y.dim() >= 1 and y.reshape(-1).shape[0] > size:
            size = y.reshape(-1).shape[0]
        points, normals = flat_to_dense(pos, vec, normals=nrm, batch_size=size)
        out = {"points": points, "label": _labels(y, size)}
        if normals is not None:
            out["normals"] = normals
        return out
    got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
    raise TypeError(
        "train/evaluate: each batch must be a dict with 'points' (B, N, 3) and 'label' (see rbfnet.data), "
        "a (points, label) pair, or a flat batch with 'pos' (P, 3), 'batch' (P,) and 'y' "
        f"(rbfnet.data.flat_to_dense); got a batch of {got}"
    )


def _labels(label: Any, b: int) -> torch.Tensor:
    y = torch.as_tensor(label)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1 or y.shape[0] != b:
        raise ValueError(
            f"train/evaluate: labels must have shape ({b},) or ({b}, 1), one per cloud; got {tuple(y.shape)}"
        )
    if y.is_floating_point():
        raise TypeError(f"train/evaluate: labels must be integers; got dtype {y.dtype}")
    return y.long()


def collate_flat(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Collate samples of different sizes into one flat batch (a ``DataLoader`` ``collate_fn``).

    Args:
        samples: dicts with ``"points"`` or ``"pos"`` ``(n_i, 3)``, ``"label"`` or ``"y"`` and optionally
            ``"normals"`` ``(n_i, 3)``.

    Returns:
        ``{"pos": (P, 3), "batch": (P,) int64, "y": (B,) int64, ["normal": (P, 3)]}``.

    Raises:
        TypeError: a sample that is not such a dict.
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("collate_flat: 'samples' is empty")
    pos, vec, ys, nrm = [], [], [], []
    for i, s in enumerate(samples):
        p = _get(s, "points", "pos") if isinstance(s, Mapping) else None
        y = _get(s, "label", "y") if isinstance(s, Mapping) else None
        if not isinstance(p, torch.Tensor) or y is None:
            raise TypeError(
                f"collate_flat: sample {i} must be a dict with 'points' (n, 3) and 'label'; got {type(s).__name__}"
            )
        check_floating(p, "points", fn="collate_flat")
        pos.append(p)
        vec.append(torch.full((p.shape[0],), i, dtype=torch.long, device=p.device))
        ys.append(torch.as_tensor(y).reshape(-1)[:1].long())
        n = _get(s, "normals", "normal")
        if n is not None:
            nrm.append(n)
    out = {"pos": torch.cat(pos), "batch": torch.cat(vec), "y": torch.cat(ys)}
    if nrm and len(nrm) == len(pos):
        out["normal"] = torch.cat(nrm)
    return out
