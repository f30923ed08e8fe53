"""Point-cloud operators in plain torch: farthest point sampling, kNN, ball query, gathering.

Each op uses pytorch3d's implementation when ``pytorch3d.ops`` is importable (see :mod:`rbfnet._compat`)
and ``use_fast_path`` is true, and converts its outputs to the conventions documented here; the
plain-torch path is the reference and is what the tests run.
"""

from __future__ import annotations

import torch

from . import _compat
from ._checks import _compiling, check_int, check_number, check_points, check_same_device, check_tensor

__all__ = ["ball_query", "farthest_point_sample", "gather_points", "knn"]


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather per-cloud rows: ``out[b, ...] = points[b, idx[b, ...]]``.

    Args:
        points: features, shape ``(B, N, C)``.
        idx: indices in ``[0, N)``, shape ``(B, S)`` or ``(B, S, K)``, integer dtype.

    Returns:
        ``(B, S, C)`` or ``(B, S, K, C)``.

    Raises:
        TypeError: non-tensor input or non-integer indices.
        ValueError: batch mismatch, or indices outside ``[0, N)``.

    Examples:
        >>> gather_points(torch.arange(6.0).view(1, 3, 2), torch.tensor([[2, 0]]))
        tensor([[[4., 5.],
                 [0., 1.]]])
    """
    fn = "gather_points"
    check_tensor(points, "points", fn=fn)
    check_tensor(idx, "idx", fn=fn)
    if points.dim() != 3:
        raise ValueError(f"{fn}: 'points' must have shape (B, N, C); got {tuple(points.shape)}")
    if (
        idx.dtype not in (torch.int32, torch.int64)
        or idx.dim() not in (2, 3)
        or idx.shape[0] != points.shape[0]
    ):
        raise ValueError(
            f"{fn}: 'idx' must be an integer tensor of shape (B, S) or (B, S, K) with B={points.shape[0]}; "
            f"got {tuple(idx.shape)} {idx.dtype}"
        )
    if not _compiling() and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= points.shape[1]):
        raise ValueError(
            f"{fn}: 'idx' must lie in [0, N={points.shape[1]}); got values in [{int(idx.min())}, {int(idx.max())}]"
        )
    b, _, c = points.shape
    flat = idx.reshape(b, -1).long()
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, c))
    return out.reshape(*idx.shape, c)


def _fps_torch(points: torch.Tensor, num_samples: int, start_index: int) -> torch.Tensor:
    b, n, _ = points.shape
    idx = torch.zeros(b, num_samples, dtype=torch.long, device=points.device)
    dist = torch.full((b, n), float("inf"), dtype=points.dtype, device=points.device)
    cur = torch.full((b,), start_index, dtype=torch.long, device=points.device)
    ar = torch.arange(b, device=points.device)
    for i in range(num_samples):
        idx[:, i] = cur
        d = (points - points[ar, cur].unsqueeze(1)).square().sum(-1)
        dist = torch.minimum(dist, d)
        cur = dist.argmax(dim=1)
    return idx


def farthest_point_sample(
    points: torch.Tensor, num_samples: int, *, start_index: int = 0, use_fast_path: bool = True
) -> torch.Tensor:
    """Farthest point sampling: iteratively pick the point farthest from those already picked.

    Convention:
        The first sample is ``start_index``; ties go to the lowest index (``argmax``). Distances are
        Euclidean over all ``D`` coordinates.

    Args:
        points: clouds, shape ``(B, N, D)``.
        num_samples: ``S``, number of points to pick, ``1 <= S <= N``.
        start_index: index of the first sample, in ``[0, N)``.
        use_fast_path: use pytorch3d when importable (only for ``start_index == 0``, its convention).

    Returns:
        Indices, shape ``(B, S)``, ``int64``.

    Raises:
        TypeError: non-floating points, non-int sizes.
        ValueError: bad shape, non-finite points, ``S`` outside ``[1, N]``, bad ``start_index``.

    Examples:
        >>> farthest_point_sample(torch.tensor([[[0.0], [1.0], [3.0], [2.9]]]), 3)
        tensor([[0, 2, 1]])
    """
    fn = "farthest_point_sample"
    check_points(points, "points", fn=fn, dim=None)
    check_int(num_samples, "num_samples", fn=fn, low=1)
    check_int(start_index, "start_index", fn=fn, low=0)
    n = points.shape[1]
    if num_samples > n:
        raise ValueError(f"{fn}: 'num_samples' must be <= N={n}; got {num_samples}")
    if start_index >= n:
        raise ValueError(f"{fn}: 'start_index' must be < N={n}; got {start_index}")
    p3d = _compat.get_pytorch3d_ops() if use_fast_path and start_index == 0 else None
    if p3d is not None:
        _, idx = p3d.sample_farthest_points(points, K=num_samples, random_start_point=False)
        return idx.long()
    return _fps_torch(points, num_samples, start_index)


def knn(
    query: torch.Tensor, points: torch.Tensor, k: int, *, use_fast_path: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours of each query point among ``points`` (brute force, sorted by distance).

    Args:
        query: query points, shape ``(B, S, D)``.
        points: reference points, shape ``(B, N, D)``.
        k: number of neighbours, ``1 <= k <= N``.
        use_fast_path: use pytorch3d's ``knn_points`` when importable.

    Returns:
        ``(sq_dists, idx)``: squared distances ``(B, S, k)`` ascending, and indices ``(B, S, k)`` int64.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch, non-finite values, ``k`` outside ``[1, N]``.

    Examples:
        >>> knn(torch.zeros(1, 1, 1), torch.tensor([[[3.0], [1.0], [-2.0]]]), 2)[1]
        tensor([[[1, 2]]])
    """
    fn = "knn"
    dims = check_points(query, "query", fn=fn, dim=None, spec="B,S,D")
    check_points(points, "points", fn=fn, dim=None, dims=dims, spec="B,N,D")
    check_same_device(("query", query), ("points", points), fn=fn)
    check_int(k, "k", fn=fn, low=1)
    if k > points.shape[1]:
        raise ValueError(f"{fn}: 'k' must be <= N={points.shape[1]}; got {k}")
    p3d = _compat.get_pytorch3d_ops() if use_fast_path else None
    if p3d is not None:
        out = p3d.knn_points(query, points, K=k, return_sorted=True)
        return out.dists, out.idx.long()
    d = (query.unsqueeze(2) - points.unsqueeze(1)).square().sum(-1)  # exact differences, (B, S, N)
    vals, idx = torch.topk(d, k, dim=-1, largest=False, sorted=True)
    return vals, idx


def ball_query(
    query: torch.Tensor,
    points: torch.Tensor,
    radius: float,
    k: int,
    *,
    use_fast_path: bool = True,
) -> torch.Tensor:
    """Indices of up to ``k`` points within ``radius`` of each query point (PointNet++ grouping).

    Convention:
        A point is inside when its squared distance is ``< radius**2`` (strict). The FIRST ``k`` inside
        points in index order are kept (not the nearest), and missing slots repeat the first one found,
        as in PointNet++. A query with no point inside gets its nearest point in every slot (PointNet++
        would use index 0; this happens only for queries that are not themselves in ``points``).

    Args:
        query: centres, shape ``(B, S, D)``.
        points: reference points, shape ``(B, N, D)``.
        radius: ball radius, > 0.
        k: number of slots, >= 1 (may exceed ``N``: slots are padded).
        use_fast_path: use pytorch3d's ``ball_query`` when importable.

    Returns:
        Indices, shape ``(B, S, k)``, int64.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch, non-finite values, ``radius <= 0``, ``k < 1``.

    Examples:
        >>> ball_query(torch.zeros(1, 1, 1), torch.tensor([[[5.0], [0.5], [0.1]]]), 1.0, 3)
        tensor([[[1, 2, 1]]])
    """
    fn = "ball_query"
    dims = check_points(query, "query", fn=fn, dim=None, spec="B,S,D")
    check_points(points, "points", fn=fn, dim=None, dims=dims, spec="B,N,D")
    check_same_device(("query", query), ("points", points), fn=fn)
    check_number(radius, "radius", fn=fn, low=0.0, low_open=True)
    check_int(k, "k", fn=fn, low=1)
    n = points.shape[1]
    d = (query.unsqueeze(2) - points.unsqueeze(1)).square().sum(-1)  # (B, S, N)
    nearest = d.argmin(dim=-1, keepdim=True)
    p3d = _compat.get_pytorch3d_ops() if use_fast_path else None
    if p3d is not None:
        _, idx, _ = p3d.ball_query(query, points, K=k, radius=radius, return_nn=False)
        idx = idx.long()
    else:
        inside = d < radius * radius
        ar = torch.arange(n, device=points.device).expand_as(inside)
        cand = torch.where(inside, ar, torch.full_like(ar, n))
        idx = cand.topk(min(k, n), dim=-1, largest=False, sorted=True).values
        if k > n:
            idx = torch.cat([idx, idx.new_full((*idx.shape[:2], k - n), n)], dim=-1)
        idx = torch.where(idx == n, idx.new_full((), -1), idx)
    first = idx[..., :1]
    first = torch.where(first < 0, nearest, first)
    return torch.where(idx < 0, first.expand_as(idx), idx)
