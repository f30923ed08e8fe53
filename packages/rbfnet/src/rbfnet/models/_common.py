"""Building blocks shared by the classifiers: shared per-point MLPs and the classification head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._checks import check_int, check_module, check_points, check_same_device


class SharedMLP(nn.Sequential):
    """Per-point MLP on channel-last input ``(*, C)``: Linear (no bias) + BatchNorm + ReLU per layer.

    All leading dimensions are flattened into one batch for the BatchNorm statistics (the same statistics
    as a 1x1 convolution over ``(B, C, N)``), and restored on output. Channel-last linear layers avoid the
    slow CPU path of ``Conv1d`` with kernel size 1.

    Args:
        in_ch: input channels.
        widths: output channels of each layer.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        in_ch: int,
        widths: Sequence[int],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        layers: list[nn.Module] = []
        c = in_ch
        for w in widths:
            layers += [
                nn.Linear(c, w, bias=False, device=device, dtype=dtype),
                nn.BatchNorm1d(w, device=device, dtype=dtype),
                nn.ReLU(),
            ]
            c = w
        super().__init__(*layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``(*, C)``; returns ``(*, widths[-1])``."""
        lead = x.shape[:-1]
        y = super().forward(x.reshape(-1, x.shape[-1]))
        return y.reshape(*lead, self.out_channels)


def shared_mlp(
    in_ch: int,
    widths: Sequence[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> SharedMLP:
    """Build a :class:`SharedMLP`.

    Args:
        in_ch: input channels.
        widths: output channels of each layer.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Returns:
        The module.
    """
    return SharedMLP(in_ch, widths, device=device, dtype=dtype)


def make_head(
    in_ch: int,
    widths: Sequence[int],
    num_classes: int,
    dropout: float,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """FC classifier ``in_ch -> widths... -> num_classes`` with BN, ReLU and dropout after each hidden layer.

    Args:
        in_ch: input features.
        widths: hidden layer widths.
        num_classes: output logits.
        dropout: dropout probability after each hidden layer.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Returns:
        The head.
    """
    layers: list[nn.Module] = []
    c = in_ch
    for w in widths:
        layers += [
            nn.Linear(c, w, bias=False, device=device, dtype=dtype),
            nn.BatchNorm1d(w, device=device, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(dropout),
        ]
        c = w
    layers.append(nn.Linear(c, num_classes, device=device, dtype=dtype))
    return nn.Sequential(*layers)


def _autocast_on(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4 takes no argument
        return bool(torch.is_autocast_enabled())


def check_cloud_input(
    fn: str,
    points: torch.Tensor,
    normals: torch.Tensor | None,
    uses_normals: bool,
    ref: torch.Tensor | None = None,
) -> None:
    """Validate ``points`` ``(B, N, 3)`` and optional ``normals`` ``(B, N, 3)`` for a classifier.

    With ``ref`` (a parameter of the model), the points must also share its device and, outside autocast,
    its dtype (the model is never silently cast, nor the input).
    """
    dims = check_points(points, "points", fn=fn, dim=3)
    if ref is not None:
        if points.device != ref.device:
            raise ValueError(
                f"{fn}: 'points' is on {points.device} but the model's parameters are on {ref.device}; "
                "move one of them"
            )
        if points.dtype != ref.dtype and not _autocast_on(points.device.type):
            raise TypeError(
                f"{fn}: 'points' has dtype {points.dtype} but the model's parameters are {ref.dtype}; "
                f"cast the points (points.to({ref.dtype})) or the model"
            )
    if uses_normals:
        if normals is None:
            raise ValueError(
                f"{fn}: this model was built with use_normals=True; 'normals' (B, N, 3) is required"
            )
        check_points(normals, "normals", fn=fn, dim=3, dims=dims)
        check_same_device(("points", points), ("normals", normals), fn=fn)


def check_num_classes(fn: str, num_classes: int) -> None:
    """Raise unless ``num_classes`` is an int >= 2."""
    check_int(num_classes, "num_classes", fn=fn, low=2)


def check_widths(fn: str, name: str, widths: Any, *, allow_empty: bool = False) -> None:
    """Raise unless ``widths`` is a sequence of ints >= 1 (non-empty unless ``allow_empty``)."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"{fn}: '{name}' must be a sequence of ints; got {type(widths).__name__}")
    if not widths and not allow_empty:
        raise ValueError(f"{fn}: '{name}' must hold at least one width; got {tuple(widths)}")
    for w in widths:
        check_int(w, name, fn=fn, low=1)


def check_dropout(fn: str, dropout: Any) -> None:
    """Raise unless ``dropout`` is a number in ``[0, 1)``."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"{fn}: 'dropout' must be a number in [0, 1); got {type(dropout).__name__}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{fn}: 'dropout' must lie in [0, 1); got {dropout}")


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``.

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The parameter count.

    Raises:
        TypeError: ``model`` is not a module.
    """
    check_module(model, "model", fn="count_parameters")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class PointCloudClassifier(nn.Module):
    """Shared interface of the classifiers: ``forward_features`` -> global descriptor -> ``head``.

    Subclasses set ``self.head`` (an ``nn.Sequential`` ending in the logit layer), ``self.num_classes``
    and ``self.uses_normals``, and implement ``forward_features(points, normals)`` -> ``(B, num_features)``.
    """

    head: nn.Sequential
    num_classes: int
    uses_normals: bool

    def _check_input(self, fn: str, points: torch.Tensor, normals: torch.Tensor | None) -> None:
        ref = next(self.head.parameters(), None)
        check_cloud_input(fn, points, normals, self.uses_normals, ref)

    def forward_features(self, points: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """Global descriptors ``(B, num_features)`` of clouds ``(B, N, 3)``; implemented by subclasses."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classifier head.

        Args:
            x: global descriptors, ``(B, num_features)``.
            pre_logits: return the last hidden layer ``(B, head[-1])`` instead of the logits.

        Returns:
            ``(B, K)`` logits, or the pre-logit features.
        """
        return self.head[:-1](x) if pre_logits else self.head(x)

    def forward(self, points: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """Classify clouds.

        Args:
            points: ``(B, N, 3)`` xyz.
            normals: ``(B, N, 3)`` unit normals, required when the model uses normals.

        Returns:
            ``(B, K)`` logits.
        """
        return self.forward_head(self.forward_features(points, normals))

    def forward_flat(
        self,
        pos: torch.Tensor,
        batch: torch.Tensor,
        normals: torch.Tensor | None = None,
        *,
        num_points: int | None = None,
    ) -> torch.Tensor:
        """Classify a PyG-style flat batch: ``pos`` ``(P, 3)`` with the cloud index of every point in
        ``batch`` ``(P,)`` (variable points per cloud), via :func:`rbfnet.data.flat_to_dense`.

        For the max-pooling models (all registered ones with their defaults), in eval mode the logits of
        each cloud equal those of the cloud alone at its own size.

        Args:
            pos: ``(P, 3)`` points.
            batch: ``(P,)`` integer cloud indices.
            normals: ``(P, 3)`` normals, required when the model uses normals.
            num_points: points per dense cloud (default: the largest cloud's size).

        Returns:
            ``(B, K)`` logits, ``B = batch.max() + 1``.
        """
        from ..data.batching import flat_to_dense

        points, dense_normals = flat_to_dense(pos, batch, num_points=num_points, normals=normals)
        return self(points, dense_normals)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, use_normals={self.uses_normals}"
