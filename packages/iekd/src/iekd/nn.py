"""Modules of IE-KD: factor auto-encoder, translators, the inheritance/exploration loss and loss twins.

Each loss module stores its configuration and calls the function of the same name in
:mod:`iekd.functional`; the maths lives in one place.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from . import functional as IF
from ._checks import check_choice, check_finite, check_floating, check_number, check_shape

logger = logging.getLogger(__name__)

__all__ = [
    "AttentionTransferLoss",
    "DMLLoss",
    "ExplorationLoss",
    "FactorAutoencoder",
    "FactorOutput",
    "FactorTransferLoss",
    "IELossOutput",
    "InheritExploreLoss",
    "InheritanceLoss",
    "KDLoss",
    "OFDConnector",
    "OFDLoss",
    "ReconstructionLoss",
    "Translator",
]


def _coder(
    cin: int,
    cout: int,
    *,
    use_bn: bool,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> nn.Sequential:
    """3-conv "Coder" of the authors' ``model/auto_encoder.py``: spatial size kept, no conv bias."""
    kw: dict[str, Any] = {"device": device, "dtype": dtype}
    layers: list[nn.Module] = [nn.LeakyReLU(0.1)]
    for a, b in ((cin, cin), (cin, cout), (cout, cout)):
        conv = nn.Conv2d(a, b, 3, padding=1, bias=False, **kw)
        # He init as in the authors' code: N(0, sqrt(2 / (k * k * C_out))).
        with torch.no_grad():
            std = math.sqrt(2.0 / (9 * b))
            if generator is None or generator.device == conv.weight.device:
                conv.weight.normal_(0.0, std, generator=generator)
            else:  # draw with the user's generator on its device, then move
                w = torch.empty(conv.weight.shape, device=generator.device).normal_(
                    0.0, std, generator=generator
                )
                conv.weight.copy_(w)
        layers.append(conv)
        if use_bn:
            layers.append(nn.BatchNorm2d(b, **kw))
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


def _check_int(value: Any, name: str, fn: str, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: '{name}' must be an int; got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{fn}: '{name}' must be >= {low}; got {value}")


def inherit_channel_count(split: Any, student_channels: int, *, fn: str) -> int:
    """Number of inheritance channels that ``split`` (a ratio in ``(0, 1)`` or an int count) gives of ``C_s``.

    Shared by :class:`InheritExploreLoss` and the recipes, which call it as soon as they know the student's
    channel count, before any training. Raises ``TypeError``/``ValueError`` prefixed with ``fn``.
    """
    if isinstance(split, bool) or not isinstance(split, (int, float)):
        raise TypeError(
            f"{fn}: 'split' must be a float ratio or an int channel count; got {type(split).__name__}"
        )
    if isinstance(split, int):
        n_inh = split
    else:
        if not 0.0 < split < 1.0:
            raise ValueError(f"{fn}: 'split' as a ratio must lie in (0, 1); got {split!r}")
        n_inh = round(split * student_channels)
    if not 1 <= n_inh <= student_channels - 1:
        raise ValueError(
            f"{fn}: 'split'={split!r} gives {n_inh} inheritance channels of the student's {student_channels}; "
            f"need 1..{student_channels - 1}"
        )
    return n_inh


class Translator(nn.Module):
    """Convolutional encoder mapping a feature to a factor (FT's translator, IE-KD's part encoders).

    Structure (authors' ``Coder``): LeakyReLU(0.1), then three ``conv3x3 -> BN -> LeakyReLU(0.1)`` blocks,
    ``in -> in -> out -> out`` channels, stride 1, no conv bias.

    Args:
        in_channels: channels of the input feature.
        out_channels: channels of the factor.
        use_bn: include the BatchNorm layers (the authors' default).
        generator: optional RNG for the weight initialisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(B, in_channels, H, W)``.
        - Output: ``(B, out_channels, H, W)``.

    Examples:
        >>> Translator(8, 4)(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 4, 5, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        use_bn: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_int(in_channels, "in_channels", "Translator")
        _check_int(out_channels, "out_channels", "Translator")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.use_bn = use_bn
        self.body = _coder(
            in_channels, out_channels, use_bn=use_bn, generator=generator, device=device, dtype=dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` of shape ``(B, in_channels, H, W)`` into ``(B, out_channels, H, W)``."""
        fn = "Translator"
        check_floating(x, "x", fn=fn)
        check_shape(x, f"B,{self.in_channels},H,W", "x", fn=fn)
        return self.body(x)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, use_bn={self.use_bn}"


class FactorOutput(NamedTuple):
    """Result of :class:`FactorAutoencoder`: ``factor`` ``(B, C', H, W)`` and ``reconstruction`` ``(B, C, H, W)``."""

    factor: torch.Tensor
    reconstruction: torch.Tensor


class FactorAutoencoder(nn.Module):
    """The teacher's compact factor extractor (FT's "paraphraser"; IE-KD Step A).

    ``F_T = E(f_T)`` with ``C' = max(1, round(rate * C))`` channels, and ``R(f_T) = D(E(f_T))``. It is trained
    alone on frozen teacher features with :func:`iekd.functional.reconstruction_loss` (see
    :func:`iekd.recipes.train_factor`) and then frozen while the student learns.

    Args:
        in_channels: channels ``C`` of the teacher feature.
        rate: factor rate, ``C' / C`` (0.5 in the paper's CIFAR setting: 64 -> 32).
        use_bn: BatchNorm in the coders (authors' default).
        generator: optional RNG for the initialisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: :class:`FactorOutput` with ``factor (B, C', H, W)`` and ``reconstruction (B, C, H, W)``.

    Examples:
        >>> ae = FactorAutoencoder(8, 0.5)
        >>> out = ae(torch.randn(2, 8, 4, 4)); out.factor.shape, out.reconstruction.shape
        (torch.Size([2, 4, 4, 4]), torch.Size([2, 8, 4, 4]))
    """

    def __init__(
        self,
        in_channels: int,
        rate: float = 0.5,
        *,
        use_bn: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "FactorAutoencoder"
        _check_int(in_channels, "in_channels", fn)
        check_number(rate, "rate", fn=fn, low=0.0, strict=True)
        self.in_channels = in_channels
        self.rate = float(rate)
        self.factor_channels = max(1, round(rate * in_channels))
        self.use_bn = use_bn
        kw: dict[str, Any] = {"use_bn": use_bn, "generator": generator, "device": device, "dtype": dtype}
        self.encoder = Translator(in_channels, self.factor_channels, **kw)
        self.decoder = Translator(self.factor_channels, in_channels, **kw)

    def encode(self, feature: torch.Tensor) -> torch.Tensor:
        """The factor ``E(f)``, ``(B, C', H, W)``, of a feature ``(B, C, H, W)``."""
        return self.encoder(feature)

    def forward(self, feature: torch.Tensor) -> FactorOutput:
        """Encode and decode ``feature`` ``(B, C, H, W)``."""
        factor = self.encoder(feature)
        return FactorOutput(factor, self.decoder(factor))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, rate={self.rate}, factor_channels={self.factor_channels}"


class IELossOutput(NamedTuple):
    """Result of :class:`InheritExploreLoss`.

    ``inherit`` and ``explore`` are the unweighted terms (``L_inh >= 0``, ``L_exp <= 0``);
    ``total = inherit_weight * inherit + explore_weight * explore``. All are scalar tensors.
    """

    inherit: torch.Tensor
    explore: torch.Tensor
    total: torch.Tensor


class _FrozenTranslator(Translator):
    """A translator whose parameters never train and whose BatchNorm always runs in eval mode."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for prm in self.parameters():
            prm.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> _FrozenTranslator:
        return super().train(False)


class InheritExploreLoss(nn.Module):
    """Inheritance and exploration losses on a student feature (IE-KD Steps B and C).

    The student feature ``f_S`` (``C_s`` channels) is split along channels into ``f_inh`` (the first
    ``inherit_channels`` channels, or a fixed random subset) and ``f_exp`` (the rest). Each part is encoded to
    the teacher factor's shape, ``F_inh = E_inh(f_inh)`` and ``F_exp = E_exp(f_exp)``, and

    ``L_inh = d(F_inh, F_T)``, ``L_exp = -d(F_exp, F_T)``, ``total = w_inh * L_inh + w_exp * L_exp``

    with ``d`` the normalised factor distance (:func:`iekd.functional.factor_distance`). The task loss is added
    by the caller: ``L = L_task + total``.

    Convention:
        ``reduction="mean"`` (the authors' code) divides by ``B * D``. The default weights
        ``inherit_weight = explore_weight = 10`` and ``explore_encoder="trainable"`` were chosen on a CIFAR-10
        validation split (ResNet-56 -> ResNet-20, lambda in {1, 10, 50} x both encoders; README, Deviations);
        the paper's reported best is 50 on this scale. The teacher factor is detached.

        ``explore_encoder``: ``"trainable"`` (default) trains ``E_exp`` jointly as the authors' code does;
        ``"frozen"`` guards against the collapse in which a trainable ``E_exp`` alone pushes its output away
        from ``F_T`` without the student's exploration channels changing: it keeps ``E_exp`` at its random
        initialisation with no gradient and BatchNorm in eval mode, so ``L_exp`` can only fall by moving
        ``f_exp``.

    Args:
        student_channels: channels ``C_s`` of the student feature.
        teacher_channels: channels ``C'`` of the teacher factor ``F_T`` (the factor auto-encoder's output).
        split: inheritance share, a float in ``(0, 1)`` (0.5 = the paper's best) or an int channel count.
        inherit_weight: ``w_inh >= 0``.
        explore_weight: ``w_exp >= 0``.
        p: distance power, 1 (L1, paper) or 2.
        reduction: ``"mean"``, ``"batchmean"`` or ``"sum"`` (see :mod:`iekd.functional`).
        split_mode: ``"natural"`` (contiguous channels, authors' default) or ``"random"`` (one fixed
            permutation drawn at construction and stored in the ``split_index`` buffer).
        explore_encoder: ``"frozen"`` or ``"trainable"`` (see Convention).
        use_bn: BatchNorm in the encoders.
        layer: name of the student layer, used in error messages.
        check_finite: raise ``ValueError`` naming the argument when ``student_feature`` or ``teacher_factor``
            holds NaN or inf (off by default: one device sync per call; skipped under ``torch.compile``). A
            plain attribute, so ``loss.check_finite = True`` turns it on later.
        generator: optional RNG for initialisation and the random split.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - student_feature: ``(B, C_s, H, W)``; teacher_factor: ``(B, C', H, W)``.
        - Output: :class:`IELossOutput` of scalars.

    Examples:
        >>> ie = InheritExploreLoss(8, 4)
        >>> out = ie(torch.randn(2, 8, 4, 4), torch.randn(2, 4, 4, 4))
        >>> bool(out.inherit >= 0), bool(out.explore <= 0)
        (True, True)
    """

    split_index: torch.Tensor

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        *,
        split: float | int = 0.5,
        inherit_weight: float = 10.0,
        explore_weight: float = 10.0,
        p: int = 1,
        reduction: IF.Reduction = "mean",
        split_mode: Literal["natural", "random"] = "natural",
        explore_encoder: Literal["frozen", "trainable"] = "trainable",
        use_bn: bool = True,
        layer: str | None = None,
        check_finite: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "InheritExploreLoss"
        _check_int(student_channels, "student_channels", fn, low=2)
        _check_int(teacher_channels, "teacher_channels", fn)
        n_inh = inherit_channel_count(split, student_channels, fn=fn)
        check_number(inherit_weight, "inherit_weight", fn=fn, low=0.0)
        check_number(explore_weight, "explore_weight", fn=fn, low=0.0)
        if p not in (1, 2):
            raise ValueError(f"{fn}: 'p' must be 1 or 2; got {p!r}")
        if reduction not in ("mean", "batchmean", "sum"):
            raise ValueError(f"{fn}: 'reduction' must be 'mean', 'batchmean' or 'sum'; got {reduction!r}")
        if split_mode not in ("natural", "random"):
            raise ValueError(f"{fn}: 'split_mode' must be 'natural' or 'random'; got {split_mode!r}")
        if explore_encoder not in ("frozen", "trainable"):
            raise ValueError(
                f"{fn}: 'explore_encoder' must be 'frozen' or 'trainable'; got {explore_encoder!r}"
            )
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.inherit_channels = n_inh
        self.explore_channels = student_channels - n_inh
        self.inherit_weight = float(inherit_weight)
        self.explore_weight = float(explore_weight)
        self.p = p
        self.reduction = reduction
        self.split_mode = split_mode
        self.explore_encoder_mode = explore_encoder
        self.layer = layer
        self.check_finite = bool(check_finite)
        if split_mode == "random":
            idx = torch.randperm(
                student_channels, generator=generator, device=generator.device if generator else None
            )
        else:
            idx = torch.arange(student_channels)
        self.register_buffer("split_index", idx.to(device=device))
        kw: dict[str, Any] = {"use_bn": use_bn, "generator": generator, "device": device, "dtype": dtype}
        self.inherit_encoder = Translator(n_inh, teacher_channels, **kw)
        exp_cls = _FrozenTranslator if explore_encoder == "frozen" else Translator
        self.explore_encoder = exp_cls(self.explore_channels, teacher_channels, **kw)

    def split(self, student_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split ``(B, C_s, H, W)`` into ``(f_inh, f_exp)`` along channels."""
        index = None if self.split_mode == "natural" else self.split_index
        return IF.split_channels(student_feature, self.inherit_channels, index=index)

    def _check(self, student_feature: torch.Tensor, teacher_factor: torch.Tensor) -> None:
        where = f"InheritExploreLoss(layer={self.layer!r})" if self.layer else "InheritExploreLoss"
        check_floating(student_feature, "student_feature", fn=where)
        check_floating(teacher_factor, "teacher_factor", fn=where)
        if student_feature.dim() != 4 or student_feature.shape[1] != self.student_channels:
            raise ValueError(
                f"{where}: 'student_feature' must have shape (B, {self.student_channels}, H, W); "
                f"got {tuple(student_feature.shape)}"
            )
        s, t = student_feature.shape, teacher_factor.shape
        if teacher_factor.dim() != 4 or t[1] != self.teacher_channels or t[0] != s[0] or t[2:] != s[2:]:
            raise ValueError(
                f"{where}: 'teacher_factor' must have shape ({s[0]}, {self.teacher_channels}, {s[2]}, {s[3]}) "
                f"to match the student feature {tuple(s)}; got {tuple(t)}"
            )
        if student_feature.dtype != teacher_factor.dtype:
            raise ValueError(
                f"{where}: 'student_feature' and 'teacher_factor' must share a dtype; "
                f"got {student_feature.dtype} and {teacher_factor.dtype}"
            )
        if student_feature.device != teacher_factor.device:
            raise ValueError(
                f"{where}: 'teacher_factor' is on {teacher_factor.device} but 'student_feature' is on "
                f"{student_feature.device}; move them to one device"
            )
        if self.check_finite:
            check_finite(student_feature, "student_feature", fn=where)
            check_finite(teacher_factor, "teacher_factor", fn=where)

    def encode(self, student_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(F_inh, F_exp)``, each ``(B, C', H, W)``, of a student feature ``(B, C_s, H, W)``."""
        f_inh, f_exp = self.split(student_feature)
        return self.inherit_encoder(f_inh), self.explore_encoder(f_exp)

    def forward(self, student_feature: torch.Tensor, teacher_factor: torch.Tensor) -> IELossOutput:
        """Compute ``L_inh``, ``L_exp`` and the weighted total; see the class docstring."""
        self._check(student_feature, teacher_factor)
        f_inh, f_exp = self.encode(student_feature)
        inh = IF.inheritance_loss(f_inh, teacher_factor, p=self.p, reduction=self.reduction)
        exp = IF.exploration_loss(f_exp, teacher_factor, p=self.p, reduction=self.reduction)
        return IELossOutput(inh, exp, self.inherit_weight * inh + self.explore_weight * exp)

    def extra_repr(self) -> str:
        return (
            f"student_channels={self.student_channels}, teacher_channels={self.teacher_channels}, "
            f"inherit_channels={self.inherit_channels}, inherit_weight={self.inherit_weight}, "
            f"explore_weight={self.explore_weight}, p={self.p}, reduction={self.reduction!r}, "
            f"split_mode={self.split_mode!r}, explore_encoder={self.explore_encoder_mode!r}"
        )


class InheritanceLoss(nn.Module):
    """Module twin of :func:`iekd.functional.inheritance_loss`.

    Args:
        p: 1 or 2.
        reduction: ``"mean"``, ``"batchmean"`` or ``"sum"``.

    Shape:
        - Inputs: two tensors ``(B, C', H, W)``; output: scalar.

    Examples:
        >>> x = torch.randn(2, 3, 2, 2); InheritanceLoss()(x, x).item()
        0.0
    """

    def __init__(self, *, p: int = 1, reduction: IF.Reduction = "mean", check_finite: bool = False) -> None:
        super().__init__()
        fn = type(self).__name__
        check_choice(p, "p", (1, 2), fn=fn)
        check_choice(reduction, "reduction", ("mean", "batchmean", "sum"), fn=fn)
        self.p, self.reduction = p, reduction
        self.check_finite = bool(check_finite)

    def forward(self, student_factor: torch.Tensor, teacher_factor: torch.Tensor) -> torch.Tensor:
        """See :func:`iekd.functional.inheritance_loss`."""
        return IF.inheritance_loss(
            student_factor, teacher_factor, p=self.p, reduction=self.reduction, check_finite=self.check_finite
        )

    def extra_repr(self) -> str:
        return f"p={self.p}, reduction={self.reduction!r}"


class ExplorationLoss(InheritanceLoss):
    """Module twin of :func:`iekd.functional.exploration_loss`.

    Args:
        p: 1 or 2.
        reduction: ``"mean"``, ``"batchmean"`` or ``"sum"``.

    Shape:
        - Inputs: two tensors ``(B, C', H, W)``; output: scalar ``<= 0``.

    Examples:
        >>> x = torch.randn(2, 3, 2, 2); ExplorationLoss()(x, x).item()
        -0.0
    """

    def forward(self, student_factor: torch.Tensor, teacher_factor: torch.Tensor) -> torch.Tensor:
        """See :func:`iekd.functional.exploration_loss`."""
        return IF.exploration_loss(
            student_factor, teacher_factor, p=self.p, reduction=self.reduction, check_finite=self.check_finite
        )


class FactorTransferLoss(InheritanceLoss):
    """Module twin of :func:`iekd.functional.factor_transfer_loss`.

    Args:
        p: 1 or 2.
        reduction: ``"mean"``, ``"batchmean"`` or ``"sum"``.

    Shape:
        - Inputs: two tensors ``(B, C', H, W)``; output: scalar.

    Examples:
        >>> x = torch.randn(2, 3, 2, 2); FactorTransferLoss()(x, x).item()
        0.0
    """

    def forward(self, student_factor: torch.Tensor, teacher_factor: torch.Tensor) -> torch.Tensor:
        """See :func:`iekd.functional.factor_transfer_loss`."""
        return IF.factor_transfer_loss(
            student_factor, teacher_factor, p=self.p, reduction=self.reduction, check_finite=self.check_finite
        )


class ReconstructionLoss(nn.Module):
    """Module twin of :func:`iekd.functional.reconstruction_loss`.

    Args:
        p: 1 (mean absolute error, authors' code) or 2 (mean squared error).

    Shape:
        - Inputs: two tensors ``(B, C, H, W)``; output: scalar.

    Examples:
        >>> ReconstructionLoss()(torch.zeros(1, 2), torch.ones(1, 2)).item()
        1.0
    """

    def __init__(self, *, p: int = 1) -> None:
        super().__init__()
        check_choice(p, "p", (1, 2), fn="ReconstructionLoss")
        self.p = p

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """See :func:`iekd.functional.reconstruction_loss`."""
        return IF.reconstruction_loss(reconstruction, target, p=self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class KDLoss(nn.Module):
    """Module twin of :func:`iekd.functional.kd_loss`.

    Args:
        temperature: softmax temperature ``T > 0``.

    Shape:
        - Inputs: two tensors ``(B, K)``; output: scalar.

    Examples:
        >>> z = torch.randn(2, 3); KDLoss(temperature=2.0)(z, z).abs().item() < 1e-6
        True
    """

    def __init__(self, *, temperature: float = 4.0, check_finite: bool = False) -> None:
        super().__init__()
        check_number(temperature, "temperature", fn="KDLoss", low=0.0, strict=True)
        self.temperature = float(temperature)
        self.check_finite = bool(check_finite)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """See :func:`iekd.functional.kd_loss`."""
        return IF.kd_loss(
            student_logits, teacher_logits, temperature=self.temperature, check_finite=self.check_finite
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class AttentionTransferLoss(nn.Module):
    """Module twin of :func:`iekd.functional.attention_transfer_loss`.

    Args:
        p: power of the attention map.

    Shape:
        - Inputs: ``(B, C_s, H, W)`` and ``(B, C_t, H, W)``; output: scalar.

    Examples:
        >>> f = torch.randn(2, 3, 4, 4); AttentionTransferLoss()(f, f).item()
        0.0
    """

    def __init__(self, *, p: int = 2, check_finite: bool = False) -> None:
        super().__init__()
        check_number(p, "p", fn="AttentionTransferLoss")
        if p < 1:
            raise ValueError(f"AttentionTransferLoss: 'p' must be >= 1; got {p!r}")
        self.p = p
        self.check_finite = bool(check_finite)

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        """See :func:`iekd.functional.attention_transfer_loss`."""
        return IF.attention_transfer_loss(
            student_feature, teacher_feature, p=self.p, check_finite=self.check_finite
        )

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DMLLoss(nn.Module):
    """Module twin of :func:`iekd.functional.dml_loss`.

    Args:
        temperature: softmax temperature (DML uses 1).
        detach_peer: stop gradients into the peer network.

    Shape:
        - Inputs: two tensors ``(B, K)``; output: scalar.

    Examples:
        >>> z = torch.randn(2, 3); DMLLoss()(z, z).abs().item() < 1e-6
        True
    """

    def __init__(
        self, *, temperature: float = 1.0, detach_peer: bool = True, check_finite: bool = False
    ) -> None:
        super().__init__()
        check_number(temperature, "temperature", fn="DMLLoss", low=0.0, strict=True)
        self.temperature = float(temperature)
        self.detach_peer = detach_peer
        self.check_finite = bool(check_finite)

    def forward(self, logits: torch.Tensor, peer_logits: torch.Tensor) -> torch.Tensor:
        """See :func:`iekd.functional.dml_loss`."""
        return IF.dml_loss(
            logits,
            peer_logits,
            temperature=self.temperature,
            detach_peer=self.detach_peer,
            check_finite=self.check_finite,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, detach_peer={self.detach_peer}"


class OFDConnector(nn.Sequential):
    """OFD's student-side connector ``r``: a 1x1 convolution (no bias) and BatchNorm (Heo et al., 2019).

    It maps the student's pre-ReLU feature to the teacher's channel count; initialised as in the OFD code
    (conv weights ``N(0, sqrt(2 / C_out))``, BN weight 1, bias 0).

    Args:
        in_channels: student channels.
        out_channels: teacher channels.
        generator: optional RNG for the initialisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(B, in_channels, H, W)``; output: ``(B, out_channels, H, W)``.

    Examples:
        >>> OFDConnector(4, 6)(torch.randn(2, 4, 3, 3)).shape
        torch.Size([2, 6, 3, 3])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_int(in_channels, "in_channels", "OFDConnector")
        _check_int(out_channels, "out_channels", "OFDConnector")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        conv = nn.Conv2d(in_channels, out_channels, 1, bias=False, **kw)
        with torch.no_grad():
            std = math.sqrt(2.0 / out_channels)
            if generator is None or generator.device == conv.weight.device:
                conv.weight.normal_(0.0, std, generator=generator)
            else:
                w = torch.empty(conv.weight.shape, device=generator.device).normal_(
                    0.0, std, generator=generator
                )
                conv.weight.copy_(w)
        super().__init__(conv, nn.BatchNorm2d(out_channels, **kw))
        self.in_channels, self.out_channels = in_channels, out_channels


class OFDLoss(nn.Module):
    """Overhaul Feature Distillation (Heo et al., ICCV 2019): connector + margin-ReLU teacher + partial L2.

    ``loss = d_p(sigma_m(f_T), r(f_S))`` on pre-ReLU features, with the connector ``r`` (:class:`OFDConnector`,
    trained with the student) and the per-channel teacher margin ``m`` (a buffer; :func:`iekd.functional.ofd_margin`
    from the teacher's BatchNorm before the ReLU, or :func:`iekd.functional.ofd_margin_from_features`). Calls
    :func:`iekd.functional.ofd_loss`.

    Convention:
        ``reduction="batchmean"`` (sum over elements / batch size) as in the OFD code, which weights the loss by
        1e-3 on CIFAR (the ``ofd_weight`` default of :func:`iekd.recipes.distill`). Both features are taken
        *before* the ReLU (``pre_relu_layer`` of the :mod:`iekd.models` networks).

    Args:
        student_channels: channels of the student's pre-ReLU feature.
        margin: ``(C_t,)`` teacher margins (``<= 0``); their length sets the teacher channel count.
        reduction: ``"batchmean"``, ``"mean"`` or ``"sum"``.
        normalize: L2-normalise each sample of ``r(f_S)`` and ``sigma_m(f_T)`` first (not in OFD; used by the
            native IE-OFD option, where it bounds the exploration term).
        generator: optional RNG for the connector's initialisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - student_feature ``(B, C_s, H, W)``, teacher_feature ``(B, C_t, H, W)``; output: scalar.

    Examples:
        >>> loss = OFDLoss(4, torch.full((6,), -0.5))
        >>> float(loss(torch.randn(2, 4, 3, 3), torch.randn(2, 6, 3, 3)).detach()) >= 0
        True
    """

    margin: torch.Tensor

    def __init__(
        self,
        student_channels: int,
        margin: torch.Tensor,
        *,
        reduction: IF.Reduction = "batchmean",
        normalize: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "OFDLoss"
        _check_int(student_channels, "student_channels", fn)
        check_floating(margin, "margin", fn=fn)
        check_shape(margin, "C", "margin", fn=fn)
        if reduction not in ("mean", "batchmean", "sum"):
            raise ValueError(f"{fn}: 'reduction' must be 'mean', 'batchmean' or 'sum'; got {reduction!r}")
        self.student_channels = student_channels
        self.teacher_channels = int(margin.shape[0])
        self.reduction = reduction
        self.normalize = bool(normalize)
        self.register_buffer("margin", margin.detach().clone().to(device=device, dtype=dtype or margin.dtype))
        self.connector = OFDConnector(
            student_channels, self.teacher_channels, generator=generator, device=device, dtype=dtype
        )

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        """``d_p(sigma_m(f_T), r(f_S))``; see :func:`iekd.functional.ofd_loss`."""
        fn = "OFDLoss"
        check_floating(student_feature, "student_feature", fn=fn)
        check_shape(student_feature, f"B,{self.student_channels},H,W", "student_feature", fn=fn)
        return IF.ofd_loss(
            self.connector(student_feature),
            teacher_feature,
            self.margin,
            reduction=self.reduction,
            normalize=self.normalize,
        )

    def extra_repr(self) -> str:
        return (
            f"student_channels={self.student_channels}, teacher_channels={self.teacher_channels}, "
            f"reduction={self.reduction!r}, normalize={self.normalize}"
        )
