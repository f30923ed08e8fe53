"""Deep RBFNet classifiers (reconstructed architecture; see the README's "Deviations from the paper")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._checks import check_choice, check_int, check_number
from ..functional import AGGREGATIONS
from ..nn import RBFLayer
from ._common import (
    PointCloudClassifier,
    check_dropout,
    check_num_classes,
    check_widths,
    make_head,
    shared_mlp,
)

__all__ = ["RBFNet"]


class RBFNet(PointCloudClassifier):
    """Point-cloud classifier built on RBF activation layers (Chen et al., arXiv:1812.04302).

    Point-wise aggregation (default; the reading both public re-implementations share): each point's
    responses to the ``M`` kernels of each RBF layer, ``(B, N, M * S)`` for ``S`` scales, go through a
    shared per-point MLP (``mlp``, default 16-128-1024, BN + ReLU), are max-pooled over the points and fed
    to the head (``head``, default 512-256, then ``num_classes``). Kernel-wise aggregation (option): each
    kernel's responses are reduced over the points (``kernel_pool``, default max) into an ``M * S``
    descriptor that goes through BN and the head directly.

    Variants of the paper: single RBF layer (``scales=(1.0,)``); multi-scale (several RBF layers whose
    initial widths are ``scales`` times the automatic width, features concatenated); with normals
    (``use_normals=True``: kernels live in xyz + normal space, ``normals_mode="kernel"``, or the normals
    are concatenated to the per-point responses, ``normals_mode="concat"``).

    Convention:
        Clouds are expected centred and scaled to the unit sphere (kernels are initialised in the unit
        ball); normals are unit vectors. Logits are invariant to the order of the points.

    Args:
        num_classes: ``K``, number of classes, >= 2.
        num_kernels: ``M``, kernels per RBF layer.
        scales: multipliers of the initial width, one RBF layer per entry.
        kernel: RBF kernel, see :data:`rbfnet.functional.KERNELS`.
        aggregation: ``"pointwise"`` or ``"kernelwise"``.
        kernel_pool: reduction over points for ``"kernelwise"``: ``"max"``, ``"sum"`` or ``"mean"``.
        use_normals: whether the model consumes per-point normals.
        normals_mode: ``"kernel"`` (6-D kernels) or ``"concat"`` (point-wise only).
        mlp: widths of the shared per-point MLP (point-wise aggregation).
        head: widths of the hidden FC layers of the classifier.
        dropout: dropout probability after each hidden FC layer.
        center_init: centre initialisation, see :data:`rbfnet.nn.CENTER_INITS`.
        width_init: initial width (float) or ``"auto"``.
        learn_centers: whether centres are learnable.
        learn_widths: whether widths are learnable.
        chunk_size: when set, evaluation-mode forward passes process this many points at a time (memory
            ``O(B * chunk_size * C)`` instead of ``O(B * N * C)``, same result); in training mode the
            point-wise path stays dense so that BatchNorm sees the whole batch.
        generator: random generator for the kernel initialisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - points: ``(B, N, 3)``; normals: ``(B, N, 3)`` when ``use_normals``.
        - output: ``(B, K)`` logits.

    Examples:
        >>> net = RBFNet(10, num_kernels=32, mlp=(16, 32), head=(32,)).eval()
        >>> net(torch.rand(2, 64, 3)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int,
        *,
        num_kernels: int = 300,
        scales: Sequence[float] = (1.0,),
        kernel: str = "gaussian",
        aggregation: str = "pointwise",
        kernel_pool: str = "max",
        use_normals: bool = False,
        normals_mode: str = "kernel",
        mlp: Sequence[int] = (16, 128, 1024),
        head: Sequence[int] = (512, 256),
        dropout: float = 0.3,
        center_init: str = "grid",
        width_init: float | str = "auto",
        learn_centers: bool = True,
        learn_widths: bool = True,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "RBFNet"
        check_num_classes(fn, num_classes)
        check_int(num_kernels, "num_kernels", fn=fn, low=1)
        check_choice(aggregation, "aggregation", ("pointwise", "kernelwise"), fn=fn)
        check_choice(kernel_pool, "kernel_pool", AGGREGATIONS, fn=fn)
        check_choice(normals_mode, "normals_mode", ("kernel", "concat"), fn=fn)
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
            raise TypeError(f"{fn}: 'scales' must be a sequence of numbers; got {type(scales).__name__}")
        if len(scales) < 1:
            raise ValueError(f"{fn}: 'scales' must hold at least one value; got {tuple(scales)}")
        for s in scales:
            check_number(s, "scales", fn=fn, low=0.0, low_open=True)
        check_dropout(fn, dropout)
        if isinstance(width_init, str):
            check_choice(width_init, "width_init", ("auto",), fn=fn)
        else:
            check_number(width_init, "width_init", fn=fn, low=0.0, low_open=True)
        if aggregation == "kernelwise" and use_normals and normals_mode == "concat":
            raise ValueError(f"{fn}: normals_mode='concat' needs aggregation='pointwise'; got 'kernelwise'")
        if aggregation == "pointwise" and isinstance(mlp, Sequence) and len(mlp) < 1:
            raise ValueError(f"{fn}: 'mlp' must hold at least one width for aggregation='pointwise'")
        check_widths(fn, "mlp", mlp, allow_empty=aggregation == "kernelwise")
        check_widths(fn, "head", head, allow_empty=True)
        if chunk_size is not None:
            check_int(chunk_size, "chunk_size", fn=fn, low=1)
        self.num_classes = num_classes
        self.aggregation = aggregation
        self.uses_normals = use_normals
        self.normals_mode = normals_mode
        self.chunk_size = chunk_size
        kdim = 6 if use_normals and normals_mode == "kernel" else 3
        base = 2.0 * num_kernels ** (-1.0 / kdim) if width_init == "auto" else float(width_init)
        self.rbf = nn.ModuleList(
            RBFLayer(
                num_kernels,
                kdim,
                kernel=kernel,
                aggregation=kernel_pool if aggregation == "kernelwise" else None,
                center_init=center_init,
                width_init=base * float(s),
                learn_centers=learn_centers,
                learn_widths=learn_widths,
                chunk_size=chunk_size,
                generator=generator,
                device=device,
                dtype=dtype,
            )
            for s in scales
        )
        feat = num_kernels * len(scales)
        if aggregation == "pointwise":
            in_ch = feat + (3 if use_normals and normals_mode == "concat" else 0)
            self.mlp: nn.Module = shared_mlp(in_ch, mlp, device=device, dtype=dtype)
            self.num_features = int(mlp[-1])
        else:
            self.mlp = nn.BatchNorm1d(feat, device=device, dtype=dtype)
            self.num_features = feat
        self.head = make_head(self.num_features, head, num_classes, dropout, device=device, dtype=dtype)
        self.feature_info = [{"num_chs": self.num_features, "module": "mlp"}]

    def _kernel_input(self, points: torch.Tensor, normals: torch.Tensor | None) -> torch.Tensor:
        if self.uses_normals and self.normals_mode == "kernel":
            assert normals is not None  # checked by the caller
            return torch.cat([points, normals.to(points.dtype)], dim=-1)
        return points

    def _pointwise(self, points: torch.Tensor, normals: torch.Tensor | None) -> torch.Tensor:
        x = self._kernel_input(points, normals)
        f = torch.cat([layer(x) for layer in self.rbf], dim=-1)  # (B, n, M*S)
        if self.uses_normals and self.normals_mode == "concat":
            assert normals is not None
            f = torch.cat([f, normals.to(f.dtype)], dim=-1)
        return self.mlp(f).amax(dim=1)  # (B, C)

    def forward_features(self, points: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """Global descriptor of each cloud.

        Args:
            points: ``(B, N, 3)`` xyz.
            normals: ``(B, N, 3)`` unit normals, required when the model uses normals.

        Returns:
            ``(B, num_features)``.
        """
        self._check_input("RBFNet.forward_features", points, normals)
        if self.aggregation == "kernelwise":
            x = self._kernel_input(points, normals)
            return self.mlp(torch.cat([layer(x) for layer in self.rbf], dim=-1))
        n = points.shape[1]
        if self.chunk_size is None or self.training or self.chunk_size >= n:
            return self._pointwise(points, normals)
        out: torch.Tensor | None = None
        for s in range(0, n, self.chunk_size):
            nrm = None if normals is None else normals[:, s : s + self.chunk_size]
            part = self._pointwise(points[:, s : s + self.chunk_size], nrm)
            out = part if out is None else torch.maximum(out, part)
        assert out is not None
        return out

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, aggregation={self.aggregation!r}, scales={len(self.rbf)}, "
            f"use_normals={self.uses_normals}, normals_mode={self.normals_mode!r}, chunk_size={self.chunk_size}"
        )

    def config_dict(self) -> dict[str, Any]:
        """Plain-data summary of the architecture (for logs and reports)."""
        return {
            "num_classes": self.num_classes,
            "aggregation": self.aggregation,
            "num_scales": len(self.rbf),
            "num_kernels": self.rbf[0].num_kernels,
            "use_normals": self.uses_normals,
        }
