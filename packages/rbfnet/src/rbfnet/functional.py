"""Functional RBF operations: kernels, squared distances and the RBF activation of a point cloud.

Shape letters used throughout: ``B`` clouds in a batch, ``N`` points per cloud, ``D`` coordinates per
point (3 for xyz, 6 for xyz + normals), ``M`` RBF kernels.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.utils.checkpoint as _ckpt

from ._checks import check_choice, check_floating, check_int, check_points, check_same_device, check_shape

__all__ = ["AGGREGATIONS", "KERNELS", "pairwise_sq_dist", "rbf_activation", "rbf_kernel"]

KernelName = Literal["gaussian", "laplacian", "inverse_quadratic", "inverse_multiquadric", "multiquadric"]
Aggregation = Literal["max", "sum", "mean"]

#: Radial basis functions available, as functions of ``u = r^2 / sigma^2``.
KERNELS: tuple[str, ...] = (
    "gaussian",
    "laplacian",
    "inverse_quadratic",
    "inverse_multiquadric",
    "multiquadric",
)
#: Reductions over points that :func:`rbf_activation` supports (kernel-wise aggregation).
AGGREGATIONS: tuple[str, ...] = ("max", "sum", "mean")


def _flush(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # exp(-a) with a > -2 log(eps) is below eps^2 (1.4e-14 in float32): flush it to an exact 0. Far points
    # then contribute nothing (the kernel's local support) and no subnormal floats reach the next layers,
    # which would slow CPU matrix products down severalfold.
    return x.masked_fill(x > -2.0 * math.log(torch.finfo(dtype).eps), math.inf)


def _phi(u: torch.Tensor, kernel: str) -> torch.Tensor:
    if kernel == "gaussian":
        return torch.exp(-_flush(u, u.dtype))
    if kernel == "laplacian":
        return torch.exp(-_flush(torch.sqrt(u.clamp_min(torch.finfo(u.dtype).tiny)), u.dtype))
    if kernel == "inverse_quadratic":
        return 1.0 / (1.0 + u)
    if kernel == "inverse_multiquadric":
        return torch.rsqrt(1.0 + u)
    return torch.sqrt(1.0 + u)  # multiquadric


def rbf_kernel(sq_dist: torch.Tensor, widths: torch.Tensor, kernel: str = "gaussian") -> torch.Tensor:
    """Evaluate a radial basis function on squared distances.

    With ``u = r^2 / sigma^2`` (``r`` the distance of a point to a kernel centre, ``sigma`` the kernel's
    receptive field), the kernels are: ``gaussian`` ``exp(-u)`` (the form of both public
    re-implementations of Deep RBFNet, i.e. ``sigma^2`` and not ``2 sigma^2`` in the exponent),
    ``laplacian`` ``exp(-sqrt(u))``, ``inverse_quadratic`` ``1 / (1 + u)``, ``inverse_multiquadric``
    ``1 / sqrt(1 + u)`` and ``multiquadric`` ``sqrt(1 + u)`` (not local; kept for kernel ablations).

    Convention:
        Distances are Euclidean in the units of the cloud (unit-sphere normalised clouds in the paper's
        setting). All kernels but ``multiquadric`` equal 1 at the centre and decay to 0 with distance.
        The exponential kernels are flushed to exactly 0 where they fall below ``eps**2`` of the dtype
        (``u > 32.2`` in float32, ``u > 72.1`` in float64): a compact support that avoids subnormal floats.

    Args:
        sq_dist: squared distances, shape ``(*, M)``, non-negative.
        widths: receptive fields ``sigma``, shape ``(M,)``, strictly positive.
        kernel: one of :data:`KERNELS`.

    Returns:
        Kernel responses, shape ``(*, M)``, dtype of ``sq_dist``.

    Raises:
        TypeError: non-tensor or non-floating input.
        ValueError: unknown kernel, mismatched ``M``, non-positive widths.

    Examples:
        >>> rbf_kernel(torch.tensor([[0.0, 1.0]]), torch.tensor([1.0, 1.0]))
        tensor([[1.0000, 0.3679]])
    """
    fn = "rbf_kernel"
    check_floating(sq_dist, "sq_dist", fn=fn)
    check_floating(widths, "widths", fn=fn)
    dims = check_shape(sq_dist, "*,M", "sq_dist", fn=fn)
    check_shape(widths, "M", "widths", fn=fn, dims=dims)
    check_choice(kernel, "kernel", KERNELS, fn=fn)
    check_same_device(("sq_dist", sq_dist), ("widths", widths), fn=fn)
    if not torch.compiler.is_compiling() and not bool((widths > 0).all()):
        raise ValueError(f"{fn}: 'widths' must be > 0; got min {float(widths.min()):.6g}")
    return _phi(sq_dist / widths.to(sq_dist.dtype).square(), kernel)


def _sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # ||x||^2 + ||y||^2 - 2 x.y: (B, N, M) without the (B, N, M, D) difference tensor.
    xx = x.square().sum(-1, keepdim=True)
    yy = y.square().sum(-1)
    if y.dim() == 2:
        cross = x @ y.transpose(0, 1)
        return (xx + yy - 2.0 * cross).clamp_min(0.0)
    cross = torch.bmm(x, y.transpose(1, 2))
    return (xx + yy.unsqueeze(1) - 2.0 * cross).clamp_min(0.0)


def pairwise_sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between two point sets, without a ``(B, N, M, D)`` intermediate.

    Computed as ``||x||^2 + ||y||^2 - 2 x.y`` and clamped at 0 (rounding can make it slightly negative).

    Args:
        x: points, shape ``(B, N, D)``.
        y: second set, shape ``(M, D)`` (shared by the batch) or ``(B, M, D)``.

    Returns:
        Squared distances, shape ``(B, N, M)``.

    Raises:
        TypeError: non-floating input.
        ValueError: shape mismatch or non-finite values.

    Examples:
        >>> pairwise_sq_dist(torch.zeros(1, 1, 3), torch.tensor([[1.0, 2.0, 2.0]]))
        tensor([[[9.]]])
    """
    fn = "pairwise_sq_dist"
    dims = check_points(x, "x", fn=fn, dim=None)
    if isinstance(y, torch.Tensor) and y.dim() == 2:
        check_points(y, "y", fn=fn, dim=None, dims=dims, spec="M,D")
    else:
        check_points(y, "y", fn=fn, dim=None, dims=dims, spec="B,M,D")
    check_same_device(("x", x), ("y", y), fn=fn)
    return _sq_dist(x, y.to(x.dtype))


def _responses(
    points: torch.Tensor, centers: torch.Tensor, widths: torch.Tensor, kernel: str
) -> torch.Tensor:
    return _phi(_sq_dist(points, centers) / widths.square(), kernel)


def _reduce_chunk(
    points: torch.Tensor, centers: torch.Tensor, widths: torch.Tensor, kernel: str, aggregation: str
) -> torch.Tensor:
    r = _responses(points, centers, widths, kernel)
    return r.amax(dim=1) if aggregation == "max" else r.sum(dim=1)


def rbf_activation(
    points: torch.Tensor,
    centers: torch.Tensor,
    widths: torch.Tensor,
    *,
    kernel: str = "gaussian",
    aggregation: str | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Responses of every point to every RBF kernel: the RBF "non-linear activation layer" of Deep RBFNet.

    ``phi_ij = phi(||p_i - c_j||^2 / sigma_j^2)`` for point ``p_i`` and kernel ``j`` with centre ``c_j``
    and receptive field ``sigma_j`` (see :func:`rbf_kernel`). With ``aggregation=None`` the per-point
    ``M``-vectors are returned (the point-wise reading of the paper); with ``"max"``, ``"sum"`` or
    ``"mean"`` each kernel's responses are reduced over the points of a cloud (the kernel-wise reading).

    Memory: the point-wise output is ``B*N*M`` values by nature. The kernel-wise path with ``chunk_size``
    processes ``chunk_size`` points at a time, so the largest intermediate is ``B*chunk_size*M``; under
    autograd ``max`` recomputes only the winning point per kernel and ``sum``/``mean`` recompute each
    chunk in the backward pass (activation checkpointing), so memory stays ``O(B*chunk_size*M)``.

    Convention:
        ``points`` and ``centers`` share one coordinate frame and units. Widths are ``sigma`` (not
        ``log sigma``), strictly positive.

    Args:
        points: point clouds, shape ``(B, N, D)``, floating, finite, ``N >= 1``.
        centers: kernel centres, shape ``(M, D)``.
        widths: receptive fields ``sigma``, shape ``(M,)``, > 0.
        kernel: one of :data:`KERNELS`.
        aggregation: ``None`` (point-wise) or one of :data:`AGGREGATIONS` (over points).
        chunk_size: points per chunk for the aggregated path (``None``: all at once). Ignored when
            ``aggregation is None``.

    Returns:
        ``(B, N, M)`` responses when ``aggregation is None``, else ``(B, M)``; dtype of ``points``.

    Raises:
        TypeError: non-tensor or non-floating inputs, non-int ``chunk_size``.
        ValueError: shape mismatch, empty or non-finite cloud, unknown kernel/aggregation, widths <= 0,
            ``chunk_size < 1``, tensors on different devices.

    Examples:
        >>> p = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
        >>> c = torch.zeros(1, 3)
        >>> rbf_activation(p, c, torch.ones(1)).squeeze(-1)
        tensor([[1.0000, 0.3679]])
        >>> rbf_activation(p, c, torch.ones(1), aggregation="sum")
        tensor([[1.3679]])
    """
    fn = "rbf_activation"
    dims = check_points(points, "points", fn=fn, dim=None)
    if isinstance(centers, torch.Tensor) and centers.dim() == 2 and centers.shape[1] != points.shape[-1]:
        raise ValueError(
            f"{fn}: 'points' must have last dimension D={centers.shape[1]} (that of the kernel centres, "
            f"'centers' {tuple(centers.shape)}), i.e. shape (B, N, {centers.shape[1]}); got {tuple(points.shape)}"
        )
    check_points(centers, "centers", fn=fn, dim=None, dims=dims, spec="M,D")
    check_floating(widths, "widths", fn=fn)
    check_shape(widths, "M", "widths", fn=fn, dims=dims)
    check_choice(kernel, "kernel", KERNELS, fn=fn)
    if aggregation is not None:
        check_choice(aggregation, "aggregation", AGGREGATIONS, fn=fn)
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", fn=fn, low=1)
    check_same_device(("points", points), ("centers", centers), ("widths", widths), fn=fn)
    if not torch.compiler.is_compiling() and not bool((widths > 0).all()):
        raise ValueError(f"{fn}: 'widths' must be > 0; got min {float(widths.min()):.6g}")
    centers = centers.to(points.dtype)
    widths = widths.to(points.dtype)
    if aggregation is None:
        return _responses(points, centers, widths, kernel)
    n = points.shape[1]
    step = n if chunk_size is None else min(chunk_size, n)
    if step >= n:
        out = _reduce_chunk(points, centers, widths, kernel, aggregation)
        return out / n if aggregation == "mean" else out
    needs_grad = torch.is_grad_enabled() and (
        points.requires_grad or centers.requires_grad or widths.requires_grad
    )
    if aggregation == "max":
        # Find the winning point per (cloud, kernel) chunk by chunk without a graph, then recompute the
        # response of the winners only: same value and the same (sub)gradient as a dense amax.
        with torch.no_grad():
            best = points.new_full((points.shape[0], centers.shape[0]), -float("inf"))
            arg = torch.zeros(best.shape, dtype=torch.long, device=points.device)
            for s in range(0, n, step):
                r = _responses(points[:, s : s + step], centers, widths, kernel)
                val, idx = r.max(dim=1)
                better = val > best
                best = torch.where(better, val, best)
                arg = torch.where(better, idx + s, arg)
        if not needs_grad:
            return best
        winners = torch.gather(points, 1, arg.unsqueeze(-1).expand(-1, -1, points.shape[-1]))  # (B, M, D)
        sq = (winners - centers.unsqueeze(0)).square().sum(-1)
        return _phi(sq / widths.square(), kernel)
    total = points.new_zeros(points.shape[0], centers.shape[0])
    for s in range(0, n, step):
        chunk = points[:, s : s + step]
        if needs_grad:
            part = _ckpt.checkpoint(_reduce_chunk, chunk, centers, widths, kernel, "sum", use_reentrant=False)
        else:
            part = _reduce_chunk(chunk, centers, widths, kernel, "sum")
        total = total + part
    return total / n if aggregation == "mean" else total
