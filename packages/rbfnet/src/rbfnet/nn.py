"""Module twins of :mod:`rbfnet.functional`: the learnable RBF layer."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_choice, check_floating, check_int, check_number, check_points, check_positive
from .functional import AGGREGATIONS, KERNELS, rbf_activation

__all__ = ["CENTER_INITS", "RBFLayer", "init_centers"]

#: Centre initialisations of :class:`RBFLayer` (``"sampled"`` needs :meth:`RBFLayer.init_from_points`).
CENTER_INITS: tuple[str, ...] = ("uniform_ball", "uniform_cube", "grid")


def init_centers(
    num_kernels: int,
    in_dim: int,
    method: str = "uniform_ball",
    *,
    radius: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Initial kernel centres.

    ``uniform_ball``: uniform in the ball of ``radius`` (the unit sphere that normalised clouds fill);
    ``uniform_cube``: uniform in ``[-radius, radius]^D``; ``grid``: the ``num_kernels`` nodes closest to
    the origin of a regular grid with ``ceil(M^(1/D))`` nodes per axis spanning ``[-radius, radius]``.

    Args:
        num_kernels: ``M``, number of centres, >= 1.
        in_dim: ``D``, dimension of the space, >= 1.
        method: one of :data:`CENTER_INITS`.
        radius: extent of the initial layout, > 0.
        generator: random generator for the random layouts.
        device: device of the result.
        dtype: floating dtype of the result (default: torch's default dtype).

    Returns:
        Centres, shape ``(M, D)``.

    Raises:
        TypeError: non-int sizes.
        ValueError: unknown method, non-positive sizes or radius.

    Examples:
        >>> init_centers(8, 3, "grid").abs().max().item()
        1.0
    """
    fn = "init_centers"
    check_int(num_kernels, "num_kernels", fn=fn, low=1)
    check_int(in_dim, "in_dim", fn=fn, low=1)
    check_choice(method, "method", CENTER_INITS, fn=fn)
    check_positive(radius, "radius", fn=fn)
    dtype = dtype or torch.get_default_dtype()
    if method == "uniform_cube":
        u = torch.rand(num_kernels, in_dim, generator=generator, dtype=torch.float64)
        out = (2.0 * u - 1.0) * radius
    elif method == "uniform_ball":
        g = torch.randn(num_kernels, in_dim, generator=generator, dtype=torch.float64)
        g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        r = torch.rand(num_kernels, 1, generator=generator, dtype=torch.float64) ** (1.0 / in_dim)
        out = g * r * radius
    else:
        per_axis = max(2, math.ceil(num_kernels ** (1.0 / in_dim) - 1e-9))
        axis = torch.linspace(-radius, radius, per_axis, dtype=torch.float64)
        nodes = torch.cartesian_prod(*([axis] * in_dim)).reshape(-1, in_dim)
        order = torch.argsort(nodes.norm(dim=1), stable=True)
        out = nodes[order[:num_kernels]]
    return out.to(device=device, dtype=dtype)


class RBFLayer(nn.Module):
    """Learnable radial-basis-function activation layer (Deep RBFNet, Chen et al. 2018).

    ``M`` kernels with learnable centres ``c_j`` (their spatial distribution) and learnable receptive fields
    ``sigma_j`` (stored as ``log sigma`` so they stay positive) respond to each point of a cloud;
    see :func:`rbfnet.functional.rbf_activation`. The paper optimises both jointly, end to end.

    Args:
        num_kernels: ``M``, number of kernels.
        in_dim: ``D``, dimension of the points the kernels live in (3: xyz; 6: xyz + normals).
        kernel: one of :data:`rbfnet.functional.KERNELS`.
        aggregation: ``None`` (per-point responses) or ``"max"``/``"sum"``/``"mean"`` over points.
        center_init: one of :data:`CENTER_INITS`, or an ``(M, D)`` tensor of centres. For centres sampled
            from data, call :meth:`init_from_points` after construction.
        width_init: initial ``sigma``: a float, or ``"auto"`` = ``2 * init_radius * M^(-1/D)`` (about the
            spacing of ``M`` kernels spread over the ball).
        init_radius: extent of the initial centre layout.
        learn_centers: whether centres receive gradients.
        learn_widths: whether widths receive gradients.
        chunk_size: points per chunk in the aggregated path (bounds memory, see the functional).
        generator: random generator for the centre initialisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(B, N, D)``.
        - Output: ``(B, N, M)`` (``aggregation=None``) or ``(B, M)``.

    Examples:
        >>> layer = RBFLayer(16, generator=torch.Generator().manual_seed(0))
        >>> layer(torch.rand(2, 100, 3)).shape
        torch.Size([2, 100, 16])
    """

    def __init__(
        self,
        num_kernels: int,
        in_dim: int = 3,
        *,
        kernel: str = "gaussian",
        aggregation: str | None = None,
        center_init: str | torch.Tensor = "grid",
        width_init: float | str = "auto",
        init_radius: float = 1.0,
        learn_centers: bool = True,
        learn_widths: bool = True,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "RBFLayer"
        check_int(num_kernels, "num_kernels", fn=fn, low=1)
        check_int(in_dim, "in_dim", fn=fn, low=1)
        check_choice(kernel, "kernel", KERNELS, fn=fn)
        if aggregation is not None:
            check_choice(aggregation, "aggregation", AGGREGATIONS, fn=fn)
        if chunk_size is not None:
            check_int(chunk_size, "chunk_size", fn=fn, low=1)
        check_positive(init_radius, "init_radius", fn=fn)
        if isinstance(width_init, str):
            check_choice(width_init, "width_init", ("auto",), fn=fn)
            sigma = 2.0 * init_radius * num_kernels ** (-1.0 / in_dim)
        else:
            check_number(width_init, "width_init", fn=fn, low=0.0, low_open=True)
            sigma = float(width_init)
        if not isinstance(center_init, (str, torch.Tensor)):
            raise TypeError(
                f"{fn}: 'center_init' must be one of {CENTER_INITS} or an (M, D) tensor; got {type(center_init).__name__}"
            )
        if isinstance(center_init, torch.Tensor):
            check_floating(center_init, "center_init", fn=fn)
            check_points(center_init, "center_init", fn=fn, dim=in_dim, spec="M,D")
            if center_init.shape[0] != num_kernels:
                raise ValueError(
                    f"{fn}: 'center_init' must have shape ({num_kernels}, {in_dim}); got {tuple(center_init.shape)}"
                )
            centers = center_init.detach().clone().to(device=device, dtype=dtype or center_init.dtype)
            init_name = "tensor"
        else:
            centers = init_centers(
                num_kernels,
                in_dim,
                center_init,
                radius=init_radius,
                generator=generator,
                device=device,
                dtype=dtype,
            )
            init_name = center_init
        self.num_kernels = num_kernels
        self.in_dim = in_dim
        self.kernel = kernel
        self.aggregation = aggregation
        self.chunk_size = chunk_size
        self.center_init = init_name
        self.centers = nn.Parameter(centers, requires_grad=learn_centers)
        self.log_widths = nn.Parameter(
            torch.full((num_kernels,), math.log(sigma), device=centers.device, dtype=centers.dtype),
            requires_grad=learn_widths,
        )

    @property
    def widths(self) -> torch.Tensor:
        """Receptive fields ``sigma = exp(log_widths)``, shape ``(M,)``."""
        return self.log_widths.exp()

    @torch.no_grad()
    def init_from_points(self, points: torch.Tensor, *, generator: torch.Generator | None = None) -> None:
        """Re-initialise the centres by sampling them from data (the "sampled" initialisation).

        Farthest point sampling picks ``M`` well-spread points of the pooled clouds (a random start point
        drawn from ``generator``).

        Args:
            points: clouds, shape ``(B, N, D)`` or ``(N, D)``, with ``B * N >= M``.
            generator: random generator for the first sampled point.

        Raises:
            ValueError: too few points, wrong last dimension, non-finite values.
        """
        fn = "RBFLayer.init_from_points"
        pts = points.reshape(1, -1, points.shape[-1]) if isinstance(points, torch.Tensor) else points
        check_points(pts, "points", fn=fn, dim=self.in_dim)
        if pts.shape[1] < self.num_kernels:
            raise ValueError(f"{fn}: 'points' must hold >= {self.num_kernels} points; got {pts.shape[1]}")
        from .ops import farthest_point_sample

        start = int(torch.randint(pts.shape[1], (1,), generator=generator).item())
        idx = farthest_point_sample(pts, self.num_kernels, start_index=start)
        self.centers.copy_(pts[0, idx[0]].to(self.centers))
        self.center_init = "sampled"

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Kernel responses.

        Args:
            points: ``(B, N, D)`` clouds.

        Returns:
            ``(B, N, M)``, or ``(B, M)`` when the layer aggregates over points.

        Raises:
            ValueError: ``points`` is not ``(B, N, in_dim)`` (the message names ``points``, with the
                expected and received shapes), empty or non-finite.
        """
        check_points(points, "points", fn=type(self).__name__, dim=self.in_dim)
        return rbf_activation(
            points,
            self.centers,
            self.widths,
            kernel=self.kernel,
            aggregation=self.aggregation,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"num_kernels={self.num_kernels}, in_dim={self.in_dim}, kernel={self.kernel!r}, "
            f"aggregation={self.aggregation!r}, center_init={self.center_init!r}, chunk_size={self.chunk_size}"
        )
