"""Small CNN and CIFAR ResNet-20 (He et al., 2016), the architectures of the small-scale experiments."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from ._registry import register_model

__all__ = ["CifarResNet", "SmallCNN", "resnet20", "small_cnn"]


def _load_weights(
    model: nn.Module, weights: str | os.PathLike[str] | None, arch: str, config: dict[str, Any]
) -> None:
    if weights is None:
        return
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(weights)
    if ckpt.get("arch") not in (None, arch):
        raise ValueError(f"{arch}: checkpoint {os.fspath(weights)!r} holds arch {ckpt.get('arch')!r}")
    for k, v in (ckpt.get("config") or {}).items():
        if k in config and config[k] != v:
            raise ValueError(f"{arch}: argument {k}={config[k]!r} conflicts with the checkpoint's {k}={v!r}")
    model.load_state_dict(ckpt["state_dict"])


def _check_ints(fn: str, **kw: Any) -> None:
    for name, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{fn}: '{name}' must be an int >= 1; got {v!r}")


class SmallCNN(nn.Module):
    """Four Conv-BN-ReLU(-Pool) blocks and a linear classifier (the paper's block order).

    Args:
        num_classes: number of classes.
        in_chans: input channels.
        width: channels of the first block (doubled after each pooling).
        device: parameter device.
        dtype: parameter dtype.

    Raises:
        ValueError: ``num_classes``, ``in_chans`` or ``width`` is not a positive int.

    Shape:
        - Input: ``(B, in_chans, H, W)``.
        - Output: ``(B, num_classes)`` logits.

    Examples:
        >>> SmallCNN(num_classes=10)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        width: int = 32,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_ints("SmallCNN", num_classes=num_classes, in_chans=in_chans, width=width)
        fk: dict[str, Any] = {"device": device, "dtype": dtype}
        w = width
        chans = [in_chans, w, 2 * w, 2 * w, 4 * w]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False, **fk),
                nn.BatchNorm2d(chans[i + 1], **fk),
                nn.ReLU(inplace=True),
            ]
            if i in (0, 1, 3):
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = chans[-1]
        self.fc = nn.Linear(chans[-1], num_classes, **fk)

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature maps ``(B, 4 * width, H / 8, W / 8)``.

        Args:
            x: images ``(B, C, H, W)``.
        """
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool and classify feature maps.

        Args:
            x: feature maps.
            pre_logits: return the pooled features instead of logits.
        """
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``.

        Args:
            x: images ``(B, C, H, W)``.
        """
        return self.forward_head(self.forward_features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, fk: dict[str, Any]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, **fk)
        self.bn1 = nn.BatchNorm2d(cout, **fk)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False, **fk)
        self.bn2 = nn.BatchNorm2d(cout, **fk)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False, **fk), nn.BatchNorm2d(cout, **fk)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x if self.downsample is None else self.downsample(x)
        return self.relu(out + sc)


class CifarResNet(nn.Module):
    """CIFAR ResNet (3 stages of ``n`` basic blocks, 16/32/64 channels); ResNet-20 has ``n = 3``.

    Args:
        depth: ``6 n + 2`` (20, 32, 44, 56...).
        num_classes: number of classes.
        in_chans: input channels.
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        - Input: ``(B, in_chans, H, W)``.
        - Output: ``(B, num_classes)``.

    Raises:
        ValueError: ``depth`` is not ``6 n + 2``, or ``num_classes``/``in_chans`` is not a positive int.

    Examples:
        >>> CifarResNet(20)(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_ints("CifarResNet", num_classes=num_classes, in_chans=in_chans)
        if isinstance(depth, bool) or not isinstance(depth, int) or (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CifarResNet: 'depth' must be 6n + 2 (20, 32, 44, 56...); got {depth}")
        n = (depth - 2) // 6
        fk: dict[str, Any] = {"device": device, "dtype": dtype}
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False, **fk)
        self.bn1 = nn.BatchNorm2d(16, **fk)
        self.relu = nn.ReLU(inplace=True)
        stages = []
        cin = 16
        for i, cout in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(_BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, fk))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 64
        self.fc = nn.Linear(64, num_classes, **fk)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        """Last-stage feature maps ``(B, 64, H / 4, W / 4)``.

        Args:
            x: images.
        """
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool and classify.

        Args:
            x: feature maps.
            pre_logits: return pooled features.
        """
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits.

        Args:
            x: images ``(B, C, H, W)``.
        """
        return self.forward_head(self.forward_features(x))


@register_model
def small_cnn(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> SmallCNN:
    """Build :class:`SmallCNN`.

    Args:
        weights: optional local checkpoint.
        **kwargs: :class:`SmallCNN` arguments.

    Returns:
        The model.
    """
    model = SmallCNN(**kwargs)
    _load_weights(model, weights, "small_cnn", kwargs)
    return model


@register_model
def resnet20(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNet:
    """Build the CIFAR ResNet-20.

    Args:
        weights: optional local checkpoint.
        **kwargs: :class:`CifarResNet` arguments except ``depth``.

    Returns:
        The model.
    """
    if "depth" in kwargs and kwargs["depth"] != 20:
        raise ValueError(f"resnet20: 'depth' is fixed to 20; got {kwargs['depth']}")
    kwargs.pop("depth", None)
    model = CifarResNet(20, **kwargs)
    _load_weights(model, weights, "resnet20", kwargs)
    return model
