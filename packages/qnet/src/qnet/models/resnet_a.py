"""CIFAR ResNets with the parameter-free "option A" shortcut (He et al., CVPR 2016, Sec. 4.2).

The layout and parameter names match the widely used pretrained CIFAR-10 ResNet-20/32/44/56 files of
Y. Idelbayev (``akamaster/pytorch_resnet_cifar10``): ``conv1``, ``bn1``, ``layer1..3.<i>.{conv1,bn1,conv2,bn2}``,
``linear``; :func:`resnet20_a` and its siblings load those ``.th`` files with ``strict=True`` (the DataParallel
``module.`` prefix is stripped). Those models were trained on inputs normalised with the ImageNet statistics
:data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` (RGB in ``[0, 1]`` first).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._registry import register_model

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CifarResNetA",
    "resnet20_a",
    "resnet32_a",
    "resnet44_a",
    "resnet56_a",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean the option-A CIFAR-10 teachers were trained with (RGB, ``[0, 1]`` scale)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel std the option-A CIFAR-10 teachers were trained with."""


class _ShortcutA(nn.Module):
    """Parameter-free shortcut: ``x[:, :, ::2, ::2]`` zero-padded with ``pad`` channels on each side."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class _BlockA(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, fk: dict[str, Any]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, **fk)
        self.bn1 = nn.BatchNorm2d(cout, **fk)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False, **fk)
        self.bn2 = nn.BatchNorm2d(cout, **fk)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = _ShortcutA(cout // 4)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNetA(nn.Module):
    """CIFAR ResNet of depth ``6 n + 2`` with option-A shortcuts (16/32/64 channels, ``n`` blocks per stage).

    Convention:
        Inputs are RGB images in ``[0, 1]`` normalised with the statistics the weights were trained with
        (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD` for the akamaster CIFAR-10 files).

    Args:
        depth: ``6 n + 2`` (20, 32, 44, 56, ...).
        num_classes: number of classes.
        in_chans: input channels.
        device: parameter device.
        dtype: parameter dtype.

    Raises:
        ValueError: ``depth`` is not ``6 n + 2`` (``n >= 1``), or ``num_classes``/``in_chans`` is not a
            positive int.

    Shape:
        - Input: ``(B, in_chans, H, W)`` with ``H``, ``W`` divisible by 4 (32 x 32 for CIFAR).
        - Output: ``(B, num_classes)`` logits.

    Examples:
        >>> CifarResNetA(20)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
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
        for name, v in (("num_classes", num_classes), ("in_chans", in_chans)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"CifarResNetA: '{name}' must be an int >= 1; got {v!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNetA: 'depth' must be 6n + 2 (20, 32, 44, 56...); got {depth!r}")
        n = (depth - 2) // 6
        self.depth = depth
        fk: dict[str, Any] = {"device": device, "dtype": dtype}
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False, **fk)
        self.bn1 = nn.BatchNorm2d(16, **fk)
        self.relu = nn.ReLU()
        cin = 16
        stages = []
        for i, cout in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(_BlockA(cin, cout, 2 if (i > 0 and j == 0) else 1, fk))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = 64
        self.linear = nn.Linear(64, num_classes, **fk)
        self.feature_info = [
            {"num_chs": 16, "reduction": 1, "module": "layer1"},
            {"num_chs": 32, "reduction": 2, "module": "layer2"},
            {"num_chs": 64, "reduction": 4, "module": "layer3"},
        ]
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        """Last-stage feature maps ``(B, 64, H / 4, W / 4)`` from images ``(B, C, H, W)``.

        Args:
            x: normalised images.
        """
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pooling, then the linear classifier.

        Args:
            x: feature maps ``(B, 64, h, w)``.
            pre_logits: return the pooled ``(B, 64)`` features.
        """
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.linear(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` from normalised images ``(B, C, H, W)``.

        Args:
            x: normalised images.
        """
        return self.forward_head(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"depth={self.depth}"


def _load_weights_a(model: CifarResNetA, weights: str | os.PathLike[str], arch: str) -> None:
    """Load a qnet checkpoint or a ``.th`` file of the akamaster repository, strictly."""
    from ..checkpoint import NOT_VALID, clean_state_dict, load_checkpoint

    p = os.fspath(weights)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{arch}: 'weights' {p!r} does not exist or is not a file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated / garbage / pickled code
        raise ValueError(f"{arch}: {p!r} is {NOT_VALID} ({type(e).__name__})") from e
    if isinstance(ckpt, dict) and ckpt.get("package") == "qnet":
        ckpt = load_checkpoint(p)
        if ckpt.get("arch") not in (None, arch):
            raise ValueError(f"{arch}: checkpoint {p!r} holds arch {ckpt.get('arch')!r}")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{arch}: {p!r} is {NOT_VALID} (no 'state_dict' entry)")
    state = clean_state_dict(ckpt["state_dict"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{arch}: {p!r} does not match the architecture: {e}") from e


def _build(depth: int, weights: str | os.PathLike[str] | None, kwargs: dict[str, Any]) -> CifarResNetA:
    arch = f"resnet{depth}_a"
    if "depth" in kwargs and kwargs["depth"] != depth:
        raise ValueError(f"{arch}: 'depth' is fixed to {depth}; got {kwargs['depth']!r}")
    kwargs.pop("depth", None)
    model = CifarResNetA(depth, **kwargs)
    if weights is not None:
        _load_weights_a(model, weights, arch)
    return model


@register_model
def resnet20_a(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNetA:
    """CIFAR ResNet-20 with option-A shortcuts.

    Args:
        weights: a local qnet checkpoint or akamaster ``resnet20-*.th`` file (loaded with ``strict=True``).
        **kwargs: :class:`CifarResNetA` arguments except ``depth``.

    Returns:
        The model.

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        ValueError: ``weights`` is not a valid checkpoint or does not match the architecture.
    """
    return _build(20, weights, kwargs)


@register_model
def resnet32_a(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNetA:
    """CIFAR ResNet-32 with option-A shortcuts (see :func:`resnet20_a`).

    Args:
        weights: a local qnet checkpoint or akamaster ``resnet32-*.th`` file.
        **kwargs: :class:`CifarResNetA` arguments except ``depth``.

    Returns:
        The model.
    """
    return _build(32, weights, kwargs)


@register_model
def resnet44_a(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNetA:
    """CIFAR ResNet-44 with option-A shortcuts (see :func:`resnet20_a`).

    Args:
        weights: a local qnet checkpoint or akamaster ``resnet44-*.th`` file.
        **kwargs: :class:`CifarResNetA` arguments except ``depth``.

    Returns:
        The model.
    """
    return _build(44, weights, kwargs)


@register_model
def resnet56_a(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNetA:
    """CIFAR ResNet-56 with option-A shortcuts (see :func:`resnet20_a`).

    Args:
        weights: a local qnet checkpoint or akamaster ``resnet56-*.th`` file.
        **kwargs: :class:`CifarResNetA` arguments except ``depth``.

    Returns:
        The model.
    """
    return _build(56, weights, kwargs)
