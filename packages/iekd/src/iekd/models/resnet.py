"""CIFAR ResNets (He et al., 2016) and Wide ResNets (Zagoruyko & Komodakis, 2016) in plain torch.

These are the families the paper (and the authors' code) distils between: ResNet-20/32/56/110 with a
``6n + 2`` layout and widths 16/32/64, shortcut option ``"A"`` (parameter-free zero padding) or ``"B"``
(1x1 conv + BN; the authors' "resnet56B"), and WRN-d-k with pre-activation blocks.

Every model exposes ``forward_features`` (last feature map before pooling, the IE-KD distillation point),
``forward_head``, ``forward_intermediates``, ``feature_info`` and ``feature_layer`` (the submodule name whose
output ``forward_features`` returns, for :class:`iekd.FeatureTap`), plus ``pre_relu_layer`` (a tap point of the
same feature before its last ReLU) and ``pre_relu_bn`` (the BatchNorm in front of that ReLU), which OFD uses.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model

logger = logging.getLogger(__name__)

__all__ = ["CifarResNet", "WideResNet", "convert_cifar_resnet_state_dict"]


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)


class _ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, shortcut: str, **kw: Any) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False, **kw)
        self.bn1 = nn.BatchNorm2d(planes, **kw)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False, **kw)
        self.bn2 = nn.BatchNorm2d(planes, **kw)
        self.shortcut: nn.Module = nn.Identity()
        self.preact = nn.Identity()  # tap point of the pre-ReLU block output (OFD); no parameters
        if stride != 1 or inplanes != planes:
            if shortcut == "A":
                self.shortcut = _ShortcutA(planes)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, stride, bias=False, **kw), nn.BatchNorm2d(planes, **kw)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(self.preact(out + self.shortcut(x)))


class _Backbone(nn.Module):
    """Shared head/feature API."""

    num_classes: int
    num_features: int
    feature_layer: str
    pre_relu_layer: str
    pre_relu_bn: str
    feature_info: list[dict[str, Any]]
    fc: nn.Linear
    _stage_names: list[str]
    stem: nn.Module
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map before pooling, ``(B, num_features, H/4, W/4)``."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling then the classifier (or the pooled vector when ``pre_logits``)."""
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, 3, H, W)``."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        """Outputs of the stem and the stages (``feature_info`` order), optionally only ``indices``."""
        feats: list[torch.Tensor] = []
        for name in self._stage_names:
            x = getattr(self, name)(x)
            feats.append(x)
        if indices is None:
            return feats
        for i in indices:
            if not -len(feats) <= i < len(feats):
                raise ValueError(f"forward_intermediates: index {i} out of range for {len(feats)} stages")
        return [feats[i] for i in indices]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh ``num_classes``-way linear layer."""
        self.num_classes = num_classes
        w = self.fc.weight
        self.fc = nn.Linear(self.num_features, num_classes, device=w.device, dtype=w.dtype)


class CifarResNet(_Backbone):
    """CIFAR ResNet with ``depth = 6n + 2`` layers.

    Args:
        depth: 8, 14, 20, 32, 44, 56, 110, ... (``(depth - 2) % 6 == 0``).
        num_classes: classifier outputs.
        shortcut: ``"A"`` (zero-pad, He et al.'s CIFAR choice) or ``"B"`` (1x1 conv + BN).
        base_width: channels of the first stage (16 in the paper; the stages use ``w, 2w, 4w``).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(B, 3, H, W)``; output: ``(B, num_classes)``.
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        *,
        shortcut: Literal["A", "B"] = "A",
        base_width: int = 16,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CifarResNet: 'depth' must be 6n + 2 with n >= 1; got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"CifarResNet: 'shortcut' must be 'A' or 'B'; got {shortcut!r}")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        n = (depth - 2) // 6
        w = base_width
        self.depth, self.shortcut, self.base_width = depth, shortcut, base_width
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1, bias=False, **kw), nn.BatchNorm2d(w, **kw), nn.ReLU()
        )
        inplanes = w
        for i, planes in enumerate((w, 2 * w, 4 * w)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_BasicBlock(inplanes, planes, stride, shortcut, **kw))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = 4 * w
        self.fc = nn.Linear(self.num_features, num_classes, **kw)
        self.feature_layer = "layer3"
        # OFD distils before the ReLU: the last block's sum, and the BatchNorm whose statistics give the margin
        # (as the OFD code does, the shortcut is ignored there)
        self.pre_relu_layer = f"layer3.{n - 1}.preact"
        self.pre_relu_bn = f"layer3.{n - 1}.bn2"
        self._stage_names = ["stem", "layer1", "layer2", "layer3"]
        self.feature_info = [
            {"num_chs": c, "reduction": r, "module": m}
            for c, r, m in ((w, 1, "stem"), (w, 1, "layer1"), (2 * w, 2, "layer2"), (4 * w, 4, "layer3"))
        ]
        _init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of ``layer3``, ``(B, 4 * base_width, H/4, W/4)``."""
        return self.layer3(self.layer2(self.layer1(self.stem(x))))


class _WideBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, dropout: float, **kw: Any) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, **kw)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False, **kw)
        self.bn2 = nn.BatchNorm2d(planes, **kw)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False, **kw)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Conv2d(inplanes, planes, 1, stride, bias=False, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.dropout(F.relu(self.bn2(y))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(_Backbone):
    """Wide ResNet WRN-``depth``-``widen`` (pre-activation blocks, ``depth = 6n + 4``).

    Args:
        depth: 10, 16, 22, 28, 40, ...
        widen: width factor ``k`` (stage widths ``16k, 32k, 64k``).
        num_classes: classifier outputs.
        dropout: dropout between the convolutions of a block.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(B, 3, H, W)``; output: ``(B, num_classes)``.
    """

    def __init__(
        self,
        depth: int = 16,
        widen: int = 2,
        num_classes: int = 10,
        *,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet: 'depth' must be 6n + 4 with n >= 1; got {depth}")
        if widen < 1:
            raise ValueError(f"WideResNet: 'widen' must be >= 1; got {widen}")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.depth, self.widen, self.num_classes = depth, widen, num_classes
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False, **kw)
        inplanes = 16
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_WideBlock(inplanes, planes, stride, dropout, **kw))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.act = nn.Sequential(nn.BatchNorm2d(inplanes, **kw), nn.ReLU())
        self.num_features = inplanes
        self.fc = nn.Linear(inplanes, num_classes, **kw)
        self.feature_layer = "act"
        self.pre_relu_layer = "act.0"  # the final BatchNorm, before its ReLU (OFD)
        self.pre_relu_bn = "act.0"
        self._stage_names = ["stem", "layer1", "layer2", "layer3", "act"]
        self.feature_info = [
            {"num_chs": c, "reduction": r, "module": m}
            for c, r, m in (
                (16, 1, "stem"),
                (widths[0], 1, "layer1"),
                (widths[1], 2, "layer2"),
                (widths[2], 4, "layer3"),
                (widths[2], 4, "act"),
            )
        ]
        _init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the final BN + ReLU, ``(B, 64 * widen, H/4, W/4)``."""
        return self.act(self.layer3(self.layer2(self.layer1(self.stem(x)))))


_FOREIGN_RENAMES = (("conv1.", "stem.0."), ("bn1.", "stem.1."), ("linear.", "fc."))


def convert_cifar_resnet_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Map a state dict of the common CIFAR-ResNet layout (He et al. option A) onto :class:`CifarResNet` keys.

    The layout is the one of the widely shared ``resnet20/32/44/56`` CIFAR-10 files (a dict with
    ``state_dict`` and ``best_prec1``, trained under ``nn.DataParallel``). The mapping is:

    - a leading ``module.`` (``DataParallel``/DDP) or ``_orig_mod.`` (``torch.compile``) is stripped;
    - ``conv1.*`` -> ``stem.0.*``, ``bn1.*`` -> ``stem.1.*`` (the stem; only top-level keys, block keys such as
      ``layer1.0.conv1.weight`` keep their names), ``linear.*`` -> ``fc.*``;
    - every ``layer{1,2,3}.{j}.{conv1,bn1,conv2,bn2}.*`` key is unchanged (option A shortcuts have no keys).

    Keys already in :class:`CifarResNet` form pass through unchanged.

    Args:
        state_dict: the foreign state dict.

    Returns:
        A new dict (same tensors) with :class:`CifarResNet` key names.

    Examples:
        >>> sorted(convert_cifar_resnet_state_dict({"module.conv1.weight": 0, "module.linear.bias": 1}))
        ['fc.bias', 'stem.0.weight']
    """
    from ..checkpoint import clean_state_dict

    out: dict[str, Any] = {}
    for k, v in clean_state_dict(state_dict).items():
        for old, new in _FOREIGN_RENAMES:
            if k.startswith(old):
                k = new + k[len(old) :]
                break
        out[k] = v
    return out


def _read_weights(weights: str | os.PathLike[str], arch: str) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """``(state_dict, config, foreign)`` of an iekd checkpoint or a foreign ``{"state_dict": ...}`` file."""
    from ..checkpoint import CheckpointError, load_state_file

    path = os.fspath(weights)
    obj = load_state_file(path, fn=arch)
    if isinstance(obj, dict) and obj.get("package") == "iekd":
        from ..checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        if ckpt.get("arch") not in (None, arch):
            raise ValueError(f"{arch}: checkpoint {path!r} holds arch {ckpt.get('arch')!r}")
        return dict(ckpt["state_dict"]), dict(ckpt.get("config") or {}), False
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return dict(obj["state_dict"]), {}, True
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), {}, True
    raise CheckpointError(
        f"{arch}: {path!r} is not a valid iekd checkpoint (truncated, or not written by iekd) nor a "
        "{'state_dict': ...} / plain state-dict file"
    )


def _load_weights(
    model: nn.Module,
    state_dict: dict[str, Any],
    saved: dict[str, Any],
    foreign: bool,
    arch: str,
    path: str,
    kwargs: dict[str, Any],
) -> None:
    for k, v in kwargs.items():
        if k in saved and saved[k] != v and k not in ("device", "dtype"):
            raise ValueError(f"{arch}: argument {k}={v!r} conflicts with the checkpoint's {k}={saved[k]!r}")
    if foreign:
        state_dict = convert_cifar_resnet_state_dict(state_dict)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{arch}: the weights in {path!r} do not fit this architecture ({kwargs}): {err}"
        ) from err
    logger.info("%s: loaded weights from %s", arch, path)


def _resnet(arch: str, depth: int, weights: str | os.PathLike[str] | None, **kwargs: Any) -> CifarResNet:
    if weights is None:
        return CifarResNet(depth, **kwargs)
    sd, saved, foreign = _read_weights(weights, arch)
    if foreign:
        # a foreign CIFAR ResNet file: option A unless told otherwise, classes from the classifier
        kwargs.setdefault("shortcut", "A")
        fc = convert_cifar_resnet_state_dict(sd).get("fc.weight")
        if isinstance(fc, torch.Tensor):
            kwargs.setdefault("num_classes", int(fc.shape[0]))
    for k, v in saved.items():
        kwargs.setdefault(k, v)
    model = CifarResNet(depth, **kwargs)
    _load_weights(model, sd, saved, foreign, arch, os.fspath(weights), kwargs)
    return model


def _wrn(
    arch: str, depth: int, widen: int, weights: str | os.PathLike[str] | None, **kwargs: Any
) -> WideResNet:
    if weights is None:
        return WideResNet(depth, widen, **kwargs)
    sd, saved, foreign = _read_weights(weights, arch)
    for k, v in saved.items():
        kwargs.setdefault(k, v)
    model = WideResNet(depth, widen, **kwargs)
    if foreign:
        from ..checkpoint import clean_state_dict

        sd, foreign = clean_state_dict(sd), False
    _load_weights(model, sd, saved, foreign, arch, os.fspath(weights), kwargs)
    return model


@register_model
def resnet8(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-8 (n=1).

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _resnet("resnet8", 8, weights, **kwargs)


@register_model
def resnet14(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-14 (n=2).

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _resnet("resnet14", 14, weights, **kwargs)


@register_model
def resnet20(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n=3), the paper's CIFAR-10 student.

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _resnet("resnet20", 20, weights, **kwargs)


@register_model
def resnet32(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 (n=5).

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _resnet("resnet32", 32, weights, **kwargs)


@register_model
def resnet44(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-44 (n=7).

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _resnet("resnet44", 44, weights, **kwargs)


@register_model
def resnet56(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-56 (n=9), the paper's CIFAR-10 teacher.

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _resnet("resnet56", 56, weights, **kwargs)


@register_model
def resnet110(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-110 (n=18).

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _resnet("resnet110", 110, weights, **kwargs)


@register_model
def wrn_16_1(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> WideResNet:
    """Wide ResNet WRN-16-1.

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _wrn("wrn_16_1", 16, 1, weights, **kwargs)


@register_model
def wrn_16_2(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> WideResNet:
    """Wide ResNet WRN-16-2.

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _wrn("wrn_16_2", 16, 2, weights, **kwargs)


@register_model
def wrn_40_1(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> WideResNet:
    """Wide ResNet WRN-40-1.

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _wrn("wrn_40_1", 40, 1, weights, **kwargs)


@register_model
def wrn_40_2(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> WideResNet:
    """Wide ResNet WRN-40-2.

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _wrn("wrn_40_2", 40, 2, weights, **kwargs)


@register_model
def wrn_28_10(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> WideResNet:
    """Wide ResNet WRN-28-10.

    Args:
        weights: optional local checkpoint path (never downloaded): an :func:`iekd.save_checkpoint` file, or a
            ``{"state_dict": ...}`` file of the common CIFAR-ResNet layout, mapped by
            :func:`convert_cifar_resnet_state_dict` and loaded with ``strict=True``.
        **kwargs: constructor arguments, e.g. ``num_classes``; one that conflicts with the
            checkpoint's config raises ``ValueError``.

    Returns:
        The model.
    """
    return _wrn("wrn_28_10", 28, 10, weights, **kwargs)
