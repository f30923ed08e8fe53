"""PointNet++ single-scale-grouping (SSG) classifier in plain torch: a baseline of Deep RBFNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_int, check_number
from ..ops import ball_query, farthest_point_sample, gather_points
from ._common import (
    PointCloudClassifier,
    check_dropout,
    check_num_classes,
    check_widths,
    make_head,
    shared_mlp,
)

__all__ = ["PointNet2SSG", "SetAbstraction"]


class SetAbstraction(nn.Module):
    """PointNet++ set abstraction: FPS centroids, ball-query grouping, shared MLP, max-pool per group.

    Args:
        num_centroids: ``S`` centroids (``None``: group all points into one).
        radius: ball radius.
        num_neighbors: ``K`` points per ball.
        in_channels: feature channels of the input points (0 for xyz only).
        mlp: widths of the shared MLP applied to ``[relative xyz, features]``.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - xyz ``(B, N, 3)``, features ``(B, N, C)`` or ``None``.
        - output: xyz ``(B, S, 3)``, features ``(B, S, mlp[-1])``.
    """

    def __init__(
        self,
        num_centroids: int | None,
        radius: float,
        num_neighbors: int,
        in_channels: int,
        mlp: Sequence[int],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_centroids = num_centroids
        self.radius = radius
        self.num_neighbors = num_neighbors
        self.mlp = shared_mlp(in_channels + 3, mlp, device=device, dtype=dtype)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Abstract a point set into ``S`` centroids.

        Args:
            xyz: ``(B, N, 3)`` coordinates.
            features: ``(B, N, C)`` point features, or ``None``.

        Returns:
            ``(new_xyz (B, S, 3), new_features (B, S, mlp[-1]))``.
        """
        if self.num_centroids is None:
            new_xyz = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = xyz.unsqueeze(1)  # (B, 1, N, 3), relative to the origin as in PointNet++
            if features is not None:
                grouped = torch.cat([grouped, features.unsqueeze(1)], dim=-1)
        else:
            s = min(self.num_centroids, xyz.shape[1])
            with torch.no_grad():
                idx = farthest_point_sample(xyz.detach(), s)
            new_xyz = gather_points(xyz, idx)
            with torch.no_grad():
                nbr = ball_query(new_xyz.detach(), xyz.detach(), self.radius, self.num_neighbors)
            grouped = gather_points(xyz, nbr) - new_xyz.unsqueeze(2)  # (B, S, K, 3)
            if features is not None:
                grouped = torch.cat([grouped, gather_points(features, nbr)], dim=-1)
        return new_xyz, self.mlp(grouped).amax(dim=2)  # (B, S, C')

    def extra_repr(self) -> str:
        return f"num_centroids={self.num_centroids}, radius={self.radius}, num_neighbors={self.num_neighbors}"


class PointNet2SSG(PointCloudClassifier):
    """PointNet++ SSG classifier (Qi et al., NeurIPS 2017): SA(512, 0.2, 32; 64-64-128),
    SA(128, 0.4, 64; 128-128-256), SA(all; 256-512-1024), FC 512-256-K with dropout.

    Plain torch (FPS and ball query from :mod:`rbfnet.ops`, no compiled extension); the grouping indices
    are computed without gradients, as in the CUDA original.

    Args:
        num_classes: ``K``, >= 2.
        use_normals: whether normals are used as the first layer's point features.
        sa1: ``(num_centroids, radius, num_neighbors)`` of the first set abstraction.
        sa2: same for the second.
        mlps: widths of the three set abstractions' MLPs.
        head: widths of the hidden FC layers.
        dropout: dropout probability after each hidden FC layer (0.5 in PointNet++; 0.3 here so all
            baselines share one head; set it to 0.5 for the original).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - points: ``(B, N, 3)``; normals: ``(B, N, 3)`` when ``use_normals``.
        - output: ``(B, K)`` logits.

    Examples:
        >>> net = PointNet2SSG(10, sa1=(16, 0.4, 8), sa2=(4, 0.8, 8), mlps=((8,), (8,), (16,)), head=(8,))
        >>> net.eval()(torch.rand(2, 64, 3)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int,
        *,
        use_normals: bool = False,
        sa1: tuple[int, float, int] = (512, 0.2, 32),
        sa2: tuple[int, float, int] = (128, 0.4, 64),
        mlps: Sequence[Sequence[int]] = ((64, 64, 128), (128, 128, 256), (256, 512, 1024)),
        head: Sequence[int] = (512, 256),
        dropout: float = 0.3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "PointNet2SSG"
        check_num_classes(fn, num_classes)
        for name, sa in (("sa1", sa1), ("sa2", sa2)):
            if not isinstance(sa, (tuple, list)) or len(sa) != 3:
                raise TypeError(f"{fn}: '{name}' must be (num_centroids, radius, num_neighbors); got {sa!r}")
            check_int(sa[0], f"{name}[0] (num_centroids)", fn=fn, low=1)
            check_number(sa[1], f"{name}[1] (radius)", fn=fn, low=0.0, low_open=True)
            check_int(sa[2], f"{name}[2] (num_neighbors)", fn=fn, low=1)
        if not isinstance(mlps, (tuple, list)) or len(mlps) != 3:
            raise ValueError(f"{fn}: 'mlps' must hold three non-empty width lists; got {mlps!r}")
        for m in mlps:
            check_widths(fn, "mlps", m)
        check_widths(fn, "head", head, allow_empty=True)
        check_dropout(fn, dropout)
        self.num_classes = num_classes
        self.uses_normals = use_normals
        kw = {"device": device, "dtype": dtype}
        self.sa1 = SetAbstraction(sa1[0], sa1[1], sa1[2], 3 if use_normals else 0, mlps[0], **kw)  # type: ignore[arg-type]
        self.sa2 = SetAbstraction(sa2[0], sa2[1], sa2[2], mlps[0][-1], mlps[1], **kw)  # type: ignore[arg-type]
        self.sa3 = SetAbstraction(None, 0.0, 0, mlps[1][-1], mlps[2], **kw)  # type: ignore[arg-type]
        self.num_features = int(mlps[2][-1])
        self.head = make_head(self.num_features, head, num_classes, dropout, device=device, dtype=dtype)
        self.feature_info = [
            {"num_chs": int(mlps[0][-1]), "module": "sa1"},
            {"num_chs": int(mlps[1][-1]), "module": "sa2"},
            {"num_chs": self.num_features, "module": "sa3"},
        ]

    def forward_features(self, points: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """Global descriptor of each cloud.

        Args:
            points: ``(B, N, 3)`` xyz.
            normals: ``(B, N, 3)`` unit normals, required when the model uses normals.

        Returns:
            ``(B, num_features)``.
        """
        self._check_input("PointNet2SSG.forward_features", points, normals)
        feats = normals.to(points.dtype) if self.uses_normals and normals is not None else None
        xyz, feats = self.sa1(points, feats)
        xyz, feats = self.sa2(xyz, feats)
        _, feats = self.sa3(xyz, feats)
        return feats.squeeze(1)
