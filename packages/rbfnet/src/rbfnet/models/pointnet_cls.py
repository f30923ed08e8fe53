"""PointNet (vanilla, no transform nets) classifier in plain torch: a baseline of Deep RBFNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._common import (
    PointCloudClassifier,
    check_dropout,
    check_num_classes,
    check_widths,
    make_head,
    shared_mlp,
)

__all__ = ["PointNet"]


class PointNet(PointCloudClassifier):
    """PointNet vanilla (Qi et al., CVPR 2017, "PointNet (vanilla)" row of its Table 1): shared per-point
    MLP 64-64-64-128-1024 (BN + ReLU), max-pool over points, FC 512-256-K with dropout.

    Args:
        num_classes: ``K``, >= 2.
        use_normals: whether normals are concatenated to xyz as input (6 channels).
        mlp: widths of the shared per-point MLP.
        head: widths of the hidden FC layers.
        dropout: dropout probability after each hidden FC layer.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - points: ``(B, N, 3)``; normals: ``(B, N, 3)`` when ``use_normals``.
        - output: ``(B, K)`` logits.

    Examples:
        >>> PointNet(10, mlp=(8, 16), head=(16,)).eval()(torch.rand(2, 32, 3)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int,
        *,
        use_normals: bool = False,
        mlp: Sequence[int] = (64, 64, 64, 128, 1024),
        head: Sequence[int] = (512, 256),
        dropout: float = 0.3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_num_classes("PointNet", num_classes)
        check_dropout("PointNet", dropout)
        check_widths("PointNet", "mlp", mlp)
        check_widths("PointNet", "head", head, allow_empty=True)
        self.num_classes = num_classes
        self.uses_normals = use_normals
        self.mlp = shared_mlp(6 if use_normals else 3, mlp, device=device, dtype=dtype)
        self.num_features = int(mlp[-1])
        self.head = make_head(self.num_features, head, num_classes, dropout, device=device, dtype=dtype)
        self.feature_info = [{"num_chs": self.num_features, "module": "mlp"}]

    def forward_features(self, points: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """Global descriptor of each cloud.

        Args:
            points: ``(B, N, 3)`` xyz.
            normals: ``(B, N, 3)`` unit normals, required when the model uses normals.

        Returns:
            ``(B, num_features)``.
        """
        self._check_input("PointNet.forward_features", points, normals)
        x = points if not self.uses_normals else torch.cat([points, normals.to(points.dtype)], -1)  # type: ignore[union-attr]
        return self.mlp(x).amax(dim=1)
