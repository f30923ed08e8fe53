"""Modules: the learnable sigmoid-sum :class:`Quantizer`, the STE baseline, and drop-in ``QConv2d``/``QLinear``."""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import functional as QF
from ._checks import _compiling, check_finite, check_floating
from .levels import Levels, LevelsLike

logger = logging.getLogger(__name__)

__all__ = ["LSQQuantizer", "QConv2d", "QLinear", "Quantizer", "STEQuantizer", "make_quantizer"]

_MODES = ("auto", "soft", "hard", "off")


class _QuantizerBase(nn.Module):
    """Shared state of the quantizers: the level set, the mode and the initialised flag."""

    levels: Levels
    values: Tensor
    initialized: Tensor
    temperature: Tensor
    thresholds: Tensor
    scales: Tensor
    offset: Tensor
    range: Tensor

    def __init__(self, levels: LevelsLike, *, mode: str, device: Any, dtype: Any) -> None:
        super().__init__()
        self.levels = Levels.parse(levels)
        self._set_mode(mode, fn=type(self).__name__)
        #: opt-in NaN/inf check of every input (one device sync per call; skipped under torch.compile)
        self.check_finite = False
        fk: dict[str, Any] = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        self.register_buffer("values", torch.tensor(self.levels.values, **fk))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool, device=device))
        self.register_buffer("temperature", torch.ones((), dtype=torch.float32, device=device))

    def _set_mode(self, mode: str, *, fn: str) -> None:
        if mode not in _MODES:
            raise ValueError(f"{fn}: 'mode' must be one of {_MODES}; got {mode!r}")
        self.mode = mode

    def set_mode(self, mode: str) -> None:
        """Set ``"auto"`` (soft in train, hard in eval), ``"soft"``, ``"hard"`` or ``"off"`` (identity).

        Args:
            mode: the new mode.
        """
        self._set_mode(mode, fn=f"{type(self).__name__}.set_mode")

    def set_temperature(self, value: float) -> None:
        """Set the sigmoid temperature ``T`` (ignored by the STE baseline).

        Args:
            value: ``T > 0``.
        """
        if not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
            raise ValueError(
                f"{type(self).__name__}.set_temperature: 'value' must be finite and > 0; got {value!r}"
            )
        self.temperature.fill_(float(value))

    def _use_hard(self) -> bool:
        return self.mode == "hard" or (self.mode == "auto" and not self.training)

    def _maybe_init(self, x: Tensor) -> None:
        # Under torch.compile the flag is not read (it would break the graph): initialise before compiling.
        if _compiling():
            return
        if not bool(self.initialized):
            logger.debug("%s: lazy initialisation from the first input", type(self).__name__)
            self.init_from(x)

    def init_from(self, x: Tensor) -> None:  # pragma: no cover - overridden
        """Initialise the quantizer's parameters from a tensor.

        Args:
            x: pretrained weights or calibration activations.
        """
        raise NotImplementedError

    def export_codes(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - overridden
        """Integer codes and scale such that the hard output equals ``scale * values[codes]``.

        Args:
            x: the tensor to quantize.
        """
        raise NotImplementedError


class Quantizer(_QuantizerBase):
    """Learnable sigmoid-sum quantizer of Quantization Networks (Eqs. 5, 7, 12 of Yang et al., CVPR 2019).

    Holds layer-wise (per-tensor) ``alpha``, ``beta`` and thresholds ``b``; in training mode it applies
    :func:`~qnet.functional.soft_quantize` at the current temperature, in eval mode the hard steps
    :func:`~qnet.functional.hard_quantize` (outputs exactly ``alpha * Y``).

    Convention:
        Thresholds live in the ``beta``-scaled domain. They are frozen after initialisation by default, as in
        every experiment of the paper (its Eq. 11 lists them as learnable: ``learn_thresholds=True``).
        Parameters are initialised lazily from the first input unless :meth:`init_from` was called.

    Args:
        levels: the integer level set (a :class:`~qnet.Levels`, a preset name or a sequence of ints).
        init: threshold initialisation, ``"paper"``, ``"kmeans"`` or ``"midpoint"`` (see
            :func:`~qnet.functional.init_parameters`).
        margin: half-width of the zero bin for ``init="paper"``.
        learn_alpha: train ``alpha``.
        learn_beta: train ``beta``.
        learn_thresholds: train the thresholds ``b_i``.
        mode: ``"auto"``, ``"soft"``, ``"hard"`` or ``"off"``.
        grad_temperature: ``None`` (exact gradient, default) or the temperature ``T_g`` of the official code's
            surrogate gradient (``1.0`` for binary weights); see :func:`~qnet.functional.soft_quantize`.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(*)``.
        - Output: ``(*)``, same dtype.

    Examples:
        >>> q = Quantizer("ternary")
        >>> q.init_from(torch.tensor([-1.0, 0.0, 1.0]))
        >>> q.eval()(torch.tensor([-0.9, 0.01, 0.7])).detach()
        tensor([-0.8000,  0.0000,  0.8000])
    """

    def __init__(
        self,
        levels: LevelsLike,
        *,
        init: str = "paper",
        margin: float = 0.05,
        learn_alpha: bool = True,
        learn_beta: bool = True,
        learn_thresholds: bool = False,
        mode: str = "auto",
        grad_temperature: float | None = None,
        channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(levels, mode=mode, device=device, dtype=dtype)
        if channels is not None and (
            isinstance(channels, bool) or not isinstance(channels, int) or channels < 1
        ):
            raise ValueError(f"Quantizer: 'channels' must be None or an int >= 1; got {channels!r}")
        if channels is not None and grad_temperature is not None:
            raise ValueError("Quantizer: 'grad_temperature' is not supported with per-channel 'channels'")
        self.channels = channels
        if init not in ("paper", "kmeans", "midpoint"):
            raise ValueError(f"Quantizer: 'init' must be 'paper', 'kmeans' or 'midpoint'; got {init!r}")
        if not margin > 0:
            raise ValueError(f"Quantizer: 'margin' must be > 0; got {margin!r}")
        if grad_temperature is not None:
            if isinstance(grad_temperature, bool) or not isinstance(grad_temperature, (int, float)):
                raise TypeError(
                    f"Quantizer: 'grad_temperature' must be a float or None; got {type(grad_temperature).__name__}"
                )
            if not (math.isfinite(grad_temperature) and grad_temperature > 0):
                raise ValueError(
                    f"Quantizer: 'grad_temperature' must be finite and > 0; got {grad_temperature!r}"
                )
            if learn_thresholds:
                raise ValueError(
                    "Quantizer: 'grad_temperature' cannot be combined with learn_thresholds=True"
                )
        self.grad_temperature = None if grad_temperature is None else float(grad_temperature)
        self.init = init
        self.margin = float(margin)
        self.learn_thresholds = bool(learn_thresholds)
        self.learn_alpha = bool(learn_alpha)
        self.learn_beta = bool(learn_beta)
        fk: dict[str, Any] = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        lv = self.levels
        shape = () if channels is None else (channels,)
        self.alpha = nn.Parameter(torch.ones(shape, **fk), requires_grad=learn_alpha)
        self.beta = nn.Parameter(torch.ones(shape, **fk), requires_grad=learn_beta)
        thr = (self.values[1:] + self.values[:-1]) / 2
        if learn_thresholds:
            self.thresholds = nn.Parameter(thr)
        else:
            self.register_buffer("thresholds", thr)
        self.register_buffer("scales", torch.tensor(lv.steps, **fk))
        self.register_buffer("offset", torch.tensor(float(lv.offset), **fk))

    @torch.no_grad()
    def init_from(self, x: Tensor) -> None:
        """Initialise ``alpha``, ``beta`` and thresholds from ``x`` as the paper does (Sec. 3.3).

        Args:
            x: pretrained weights, or activations gathered on calibration data.

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: ``x`` is empty, all zero or not finite.
        """
        check_floating(x, "x", fn="Quantizer.init_from")
        if self.channels is not None:
            if x.dim() < 1 or x.shape[0] != self.channels:
                raise ValueError(
                    f"Quantizer.init_from: 'x' must have {self.channels} channels in dim 0 (per-channel); "
                    f"got shape {tuple(x.shape)}"
                )
            # per channel: x_c / max|x_c| shares one threshold set; beta_c = beta_n / max|x_c|
            m = x.detach().reshape(self.channels, -1).abs().amax(1).to(torch.float64)
            if not bool((m > 0).all()):
                raise ValueError(
                    "Quantizer.init_from: a channel of 'x' is all zero; per-channel beta undefined"
                )
            xn = x.detach().reshape(self.channels, -1) / m.to(x.dtype).unsqueeze(1)
            _, bn, thr = QF.init_parameters(xn, self.levels, init=self.init, margin=self.margin)
            self.beta.copy_((bn / m).to(self.beta))
            self.alpha.copy_((m / bn).to(self.alpha))
            self.thresholds.copy_(thr.to(self.thresholds))
            self.initialized.fill_(True)
            return
        a, b, thr = QF.init_parameters(x, self.levels, init=self.init, margin=self.margin)
        self.alpha.fill_(a)
        self.beta.fill_(b)
        self.thresholds.copy_(thr.to(self.thresholds))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        """Quantize ``x`` (soft in training, hard in eval, identity when ``mode == "off"``).

        Args:
            x: tensor of any shape.

        Returns:
            The quantized tensor, same shape and dtype.
        """
        if self.mode == "off":
            return x
        self._maybe_init(x)
        if self.channels is not None:
            return self._per_channel(x, hard=self._use_hard())
        if self._use_hard():
            return QF.hard_quantize(
                x,
                self.thresholds,
                self.scales,
                self.alpha,
                self.beta,
                self.offset,
                check_finite=self.check_finite,
            )
        return QF.soft_quantize(
            x,
            self.thresholds,
            self.scales,
            self.temperature,
            self.alpha,
            self.beta,
            self.offset,
            grad_temperature=self.grad_temperature,
            check_finite=self.check_finite,
        )

    def _per_channel(self, x: Tensor, *, hard: bool) -> Tensor:
        """Eqs. 7 / 12 with ``alpha``, ``beta`` of shape ``(C,)`` broadcast over dim 0 of ``x`` (plain autograd)."""
        if x.dim() < 1 or x.shape[0] != self.channels:
            raise ValueError(
                f"Quantizer: per-channel input must have {self.channels} channels in dim 0; got {tuple(x.shape)}"
            )
        if self.check_finite:
            check_finite(x, "x", fn="Quantizer")
        view = (-1,) + (1,) * (x.dim() - 1)
        a, b = self.alpha.view(view), self.beta.view(view)
        z = (x * b).unsqueeze(-1) - self.thresholds
        step = (z >= 0).to(x.dtype) if hard else torch.sigmoid(z * self.temperature.to(x.dtype))
        return a * ((step * self.scales).sum(-1) - self.offset)

    @torch.no_grad()
    def export_codes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Level codes ``k`` and scale ``alpha`` with ``hard(x) == alpha * values[k]``.

        Args:
            x: the tensor to quantize.

        Returns:
            ``(codes, scale)``: int64 codes shaped like ``x`` and a 0-dim scale.
        """
        self._maybe_init(x)
        thr = self.thresholds.detach()
        if thr.numel() > 1 and not bool((thr[1:] >= thr[:-1]).all()):
            warnings.warn(
                "Quantizer.export_codes: learned thresholds are no longer sorted; codes use the sorted "
                "thresholds, which differs from the hard forward pass where they crossed",
                stacklevel=2,
            )
        if self.channels is not None:
            view = (-1,) + (1,) * (x.dim() - 1)
            codes = ((x * self.beta.view(view)).unsqueeze(-1) >= thr.sort().values).sum(-1)
            return codes, self.alpha.detach().clone()
        return QF.level_codes(x, thr.sort().values, self.beta), self.alpha.detach().clone()

    def extra_repr(self) -> str:
        gt = "" if self.grad_temperature is None else f", grad_temperature={self.grad_temperature}"
        if self.channels is not None:
            gt += f", channels={self.channels}"
        return (
            f"levels={self.levels}, init={self.init!r}, mode={self.mode!r}, "
            f"learn_thresholds={self.learn_thresholds}{gt}"
        )


class STEQuantizer(_QuantizerBase):
    """Straight-through-estimator baseline (DoReFa style) with the same level sets.

    Weights (signed sets): ``w_t = tanh(w) / max|tanh(w)|`` is rounded to the nearest level of ``Y / p``
    and rescaled by ``s = mean|w| / mean|q|`` (detached; for binary this is the BWN scale ``mean|w|``).
    Activations (unsigned sets): ``x`` is clipped to ``[0, r]`` and rounded to ``r * Y / max(Y)``, with ``r``
    the largest activation seen on calibration data. The gradient is the clipped identity.

    Args:
        levels: the integer level set.
        mode: ``"auto"`` (same forward in train and eval) or ``"off"`` (identity).
        device: device of the buffers.
        dtype: dtype of the buffers.

    Shape:
        - Input: ``(*)``.
        - Output: ``(*)``.

    Examples:
        >>> q = STEQuantizer("binary")
        >>> q(torch.tensor([-0.5, 0.1, 0.3]))
        tensor([-0.3000,  0.3000,  0.3000])
    """

    def __init__(
        self,
        levels: LevelsLike,
        *,
        mode: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(levels, mode=mode, device=device, dtype=dtype)
        fk: dict[str, Any] = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        self.register_buffer("range", torch.ones((), **fk))

    @torch.no_grad()
    def init_from(self, x: Tensor) -> None:
        """Set the activation range ``r = max(x)`` (unsigned sets); weights need no initialisation.

        Args:
            x: calibration activations or weights.

        Raises:
            ValueError: ``x`` is empty or all non-positive for an unsigned set.
        """
        check_floating(x, "x", fn="STEQuantizer.init_from")
        if x.numel() == 0:
            raise ValueError("STEQuantizer.init_from: 'x' is empty")
        if not self.levels.signed:
            r = float(x.detach().max())
            if not r > 0:
                raise ValueError(f"STEQuantizer.init_from: activation range must be > 0; got max(x) = {r!r}")
            self.range.fill_(r)
        self.initialized.fill_(True)

    def _weight_parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = float(self.levels.max_abs)
        t = torch.tanh(x)
        t = t / t.detach().abs().max().clamp_min(1e-12)
        q = QF.ste_quantize(t, self.values / p)
        s = (x.detach().abs().mean() / q.detach().abs().mean().clamp_min(1e-12)).to(x.dtype)
        return q, s

    def forward(self, x: Tensor) -> Tensor:
        """Quantize ``x`` with a straight-through gradient.

        Args:
            x: tensor of any shape.

        Returns:
            The quantized tensor.
        """
        if self.mode == "off":
            return x
        if self.check_finite:
            check_finite(x, "x", fn="STEQuantizer")
        self._maybe_init(x)
        if self.levels.signed:
            q, s = self._weight_parts(x)
            return q * s
        return QF.ste_quantize(x, self.values, self.range / float(self.levels.values[-1]))

    @torch.no_grad()
    def export_codes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Level codes and scale with ``forward(x) == scale * values[codes]``.

        Args:
            x: the tensor to quantize.

        Returns:
            ``(codes, scale)``.
        """
        self._maybe_init(x)
        if self.levels.signed:
            q, s = self._weight_parts(x)
            p = float(self.levels.max_abs)
            codes = torch.bucketize(q * p, (self.values[1:] + self.values[:-1]) / 2)
            return codes, (s / p).detach().clone()
        scale = self.range / float(self.levels.values[-1])
        q = QF.ste_quantize(x, self.values, scale) / scale
        return torch.bucketize(q, (self.values[1:] + self.values[:-1]) / 2), scale.detach().clone()

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"


class LSQQuantizer(_QuantizerBase):
    """Learned step size quantization (LSQ; Esser et al., "Learned Step Size Quantization", ICLR 2020).

    ``y = s * round(clip(x / s, -Q_N, Q_P))`` with a learned step ``s`` (one per tensor), the
    straight-through estimator for ``round`` and the step gradient scaled by ``g = 1 / sqrt(N * Q_P)``
    (Sec. 2.2); see :func:`~qnet.functional.lsq_quantize` for the gradients. ``Q_N = -Y_0``, ``Q_P = Y_K`` of
    the level set, so ``"ternary"`` is ``{-1, 0, 1}`` (``Q_N = Q_P = 1``) and ``"uint2"`` is ``{0, .., 3}``.

    Convention:
        ``N`` is the number of elements for signed sets (weights: ``N_W``, the layer's weight count) and
        the number of elements per sample ``x[0].numel()`` for unsigned sets (activations: ``N_F``, the
        layer's feature count), as in the paper. The step is initialised from the first tensor seen (or
        :meth:`init_from`) as ``2 mean|x| / sqrt(Q_P)`` (paper). Non-uniform sets (``pm4``) round to the
        nearest level (a generalisation; binary ``{-1, 1}`` rounds to the sign).

    Args:
        levels: the integer level set.
        mode: ``"auto"`` (same forward in train and eval) or ``"off"`` (identity).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``(*)``.
        - Output: ``(*)``.

    Examples:
        >>> q = LSQQuantizer("ternary")
        >>> q.init_from(torch.tensor([-1.0, 0.0, 1.0]))  # s = 2 * (2/3) / sqrt(1)
        >>> q(torch.tensor([-2.0, 0.5, 0.9])).detach()
        tensor([-1.3333,  0.0000,  1.3333])
    """

    def __init__(
        self,
        levels: LevelsLike,
        *,
        mode: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(levels, mode=mode, device=device, dtype=dtype)
        fk: dict[str, Any] = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        self.q_p = float(max(self.levels.values[-1], 1))
        self.step = nn.Parameter(torch.ones((), **fk))

    @torch.no_grad()
    def init_from(self, x: Tensor) -> None:
        """Set ``s = 2 mean|x| / sqrt(Q_P)`` (Sec. 2.1 of the paper).

        Args:
            x: pretrained weights or calibration activations.

        Raises:
            TypeError: ``x`` is not floating point.
            ValueError: ``x`` is empty, not finite or all zero.
        """
        fn = "LSQQuantizer.init_from"
        check_floating(x, "x", fn=fn)
        if x.numel() == 0:
            raise ValueError(f"{fn}: 'x' is empty")
        check_finite(x, "x", fn=fn)
        m = float(x.detach().abs().mean())
        if not m > 0:
            raise ValueError(f"{fn}: 'x' is all zero; the step size would be 0")
        self.step.fill_(2.0 * m / math.sqrt(self.q_p))
        self.initialized.fill_(True)

    def grad_scale(self, x: Tensor) -> float:
        """``g = 1 / sqrt(N * Q_P)`` for input ``x`` (``N`` per the Convention).

        Args:
            x: the tensor being quantized.
        """
        n = x.numel() if self.levels.signed or x.dim() < 2 else x[0].numel()
        return 1.0 / math.sqrt(max(n, 1) * self.q_p)

    def forward(self, x: Tensor) -> Tensor:
        """Quantize ``x`` (identity when ``mode == "off"``).

        Args:
            x: tensor of any shape.

        Returns:
            ``step`` times a level, same shape and dtype.
        """
        if self.mode == "off":
            return x
        self._maybe_init(x)
        return QF.lsq_quantize(x, self.step, self.values, self.grad_scale(x), check_finite=self.check_finite)

    @torch.no_grad()
    def export_codes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Level codes and scale with ``forward(x) == scale * values[codes]``.

        Args:
            x: the tensor to quantize.

        Returns:
            ``(codes, scale)``: int64 codes shaped like ``x`` and the 0-dim step.
        """
        self._maybe_init(x)
        s = self.step.detach().abs().clamp_min(1e-12)
        xc = (x / s).clamp(self.values[0], self.values[-1])
        codes = torch.bucketize(xc, (self.values[1:] + self.values[:-1]) / 2)
        return codes, s.clone()

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"


def make_quantizer(
    levels: LevelsLike,
    *,
    method: str = "qn",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Quantizer | STEQuantizer | LSQQuantizer:
    """Build a :class:`Quantizer` (``"qn"``), the :class:`STEQuantizer` (``"ste"``) or :class:`LSQQuantizer` (``"lsq"``).

    Args:
        levels: the level set.
        method: ``"qn"``, ``"ste"`` or ``"lsq"``.
        device: device of the parameters.
        dtype: dtype of the parameters.
        **kwargs: extra keyword arguments of :class:`Quantizer` (ignored keys raise ``TypeError``).

    Returns:
        The quantizer.

    Raises:
        ValueError: unknown ``method``.
    """
    if method == "qn":
        return Quantizer(levels, device=device, dtype=dtype, **kwargs)
    if method in ("ste", "lsq"):
        if kwargs:
            raise TypeError(f"make_quantizer: method {method!r} takes no options; got {sorted(kwargs)}")
        cls = STEQuantizer if method == "ste" else LSQQuantizer
        return cls(levels, device=device, dtype=dtype)
    raise ValueError(f"make_quantizer: 'method' must be 'qn', 'ste' or 'lsq'; got {method!r}")


class _QuantLayer:
    """Mixin: the quantize-inputs, quantize-weights, run sequence written once."""

    weight: Tensor
    weight_quantizer: Quantizer | STEQuantizer | LSQQuantizer | None
    input_quantizer: Quantizer | STEQuantizer | LSQQuantizer | None
    method: str

    def _setup_quant(
        self,
        weight_levels: LevelsLike | None,
        act_levels: LevelsLike | None,
        method: str,
        quantizer_kwargs: dict[str, Any] | None,
        act_quantizer_kwargs: dict[str, Any] | None,
        device: Any,
        dtype: Any,
    ) -> None:
        name = type(self).__name__
        if method not in ("qn", "ste", "lsq"):
            raise ValueError(f"{name}: 'method' must be 'qn', 'ste' or 'lsq'; got {method!r}")
        self.method = method
        wq = None
        if weight_levels is not None:
            lv = Levels.parse(weight_levels)
            if not lv.signed:
                raise ValueError(f"{name}: 'weight_levels' must be a signed set (weights); got {lv}")
            qkw = dict(quantizer_kwargs or {})
            if qkw.pop("per_channel", False):
                if method != "qn":
                    raise ValueError(
                        f"{name}: per-channel weight scales are implemented for method 'qn' only"
                    )
                qkw["channels"] = int(self.weight.shape[0])
            wq = make_quantizer(lv, method=method, device=device, dtype=dtype, **qkw)
            wq.init_from(self.weight.detach())
        aq = None
        if act_levels is not None:
            alv = Levels.parse(act_levels)
            aq = make_quantizer(
                alv, method=method, device=device, dtype=dtype, **(act_quantizer_kwargs or {})
            )
        self.weight_quantizer = wq
        self.input_quantizer = aq

    def quantized_weight(self) -> Tensor:
        """The weight as the forward pass uses it (soft in training, hard in eval).

        Returns:
            Tensor shaped like ``weight``.
        """
        wq = self.weight_quantizer
        return self.weight if wq is None else wq(self.weight)

    def _quant_input(self, x: Tensor) -> Tensor:
        aq = self.input_quantizer
        return x if aq is None else aq(x)


class QConv2d(nn.Conv2d, _QuantLayer):
    """Drop-in ``nn.Conv2d`` whose weights (and optionally inputs) are quantized (Sec. 3 of the paper).

    Same constructor as :class:`torch.nn.Conv2d` plus keyword-only quantization options; ``weight`` and
    ``bias`` keep their names, so a float ``state_dict`` loads into it.

    Args:
        in_channels: as ``nn.Conv2d``.
        out_channels: as ``nn.Conv2d``.
        kernel_size: as ``nn.Conv2d``.
        stride: as ``nn.Conv2d``.
        padding: as ``nn.Conv2d``.
        dilation: as ``nn.Conv2d``.
        groups: as ``nn.Conv2d``.
        bias: as ``nn.Conv2d``.
        padding_mode: as ``nn.Conv2d``.
        device: as ``nn.Conv2d``.
        dtype: as ``nn.Conv2d``.
        weight_levels: signed level set of the weights, or ``None`` for float weights.
        act_levels: level set of the input activations (usually unsigned, e.g. ``"uint2"``), or ``None``.
        method: ``"qn"`` (this paper) or ``"ste"`` (the DoReFa-style baseline).
        quantizer_kwargs: extra options of the weight :class:`Quantizer` (``init``, ``learn_thresholds``...).
        act_quantizer_kwargs: extra options of the input quantizer.

    Shape:
        - Input: ``(B, C_in, H, W)``.
        - Output: ``(B, C_out, H_out, W_out)``.

    Examples:
        >>> conv = QConv2d(3, 4, 3, padding=1, weight_levels="ternary")
        >>> conv(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weight_levels: LevelsLike | None = "ternary",
        act_levels: LevelsLike | None = None,
        method: str = "qn",
        quantizer_kwargs: dict[str, Any] | None = None,
        act_quantizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,  # type: ignore[arg-type]
            device=device,
            dtype=dtype,
        )
        self._setup_quant(
            weight_levels, act_levels, method, quantizer_kwargs, act_quantizer_kwargs, device, dtype
        )

    def forward(self, input: Tensor) -> Tensor:
        """Quantize the input (if configured) and the weight, then convolve.

        Args:
            input: ``(B, C_in, H, W)``.

        Returns:
            ``(B, C_out, H_out, W_out)``.
        """
        return self._conv_forward(self._quant_input(input), self.quantized_weight(), self.bias)

    @classmethod
    def from_float(
        cls,
        mod: nn.Conv2d,
        *,
        weight_levels: LevelsLike | None = "ternary",
        act_levels: LevelsLike | None = None,
        method: str = "qn",
        quantizer_kwargs: dict[str, Any] | None = None,
        act_quantizer_kwargs: dict[str, Any] | None = None,
    ) -> QConv2d:
        """Build a ``QConv2d`` sharing the configuration and copying the parameters of ``mod``.

        The weight quantizer is initialised from ``mod.weight`` (the paper's initialisation).

        Args:
            mod: the float convolution.
            weight_levels: see the class.
            act_levels: see the class.
            method: see the class.
            quantizer_kwargs: see the class.
            act_quantizer_kwargs: see the class.

        Returns:
            The quantized layer on ``mod``'s device and dtype.

        Raises:
            TypeError: ``mod`` is not an ``nn.Conv2d``.
        """
        if not isinstance(mod, nn.Conv2d):
            raise TypeError(f"QConv2d.from_float: 'mod' must be an nn.Conv2d; got {type(mod).__name__}")
        new = cls(
            mod.in_channels,
            mod.out_channels,
            mod.kernel_size,  # type: ignore[arg-type]
            stride=mod.stride,  # type: ignore[arg-type]
            padding=mod.padding,  # type: ignore[arg-type]
            dilation=mod.dilation,  # type: ignore[arg-type]
            groups=mod.groups,
            bias=mod.bias is not None,
            padding_mode=mod.padding_mode,
            device=mod.weight.device,
            dtype=mod.weight.dtype,
            weight_levels=None,
            act_levels=act_levels,
            method=method,
            act_quantizer_kwargs=act_quantizer_kwargs,
        )
        with torch.no_grad():
            new.weight.copy_(mod.weight)
            if mod.bias is not None and new.bias is not None:
                new.bias.copy_(mod.bias)
        new.train(mod.training)
        new._setup_weight_only(weight_levels, method, quantizer_kwargs)
        return new

    def _setup_weight_only(
        self, weight_levels: LevelsLike | None, method: str, quantizer_kwargs: dict[str, Any] | None
    ) -> None:
        aq = self.input_quantizer
        self._setup_quant(
            weight_levels, None, method, quantizer_kwargs, None, self.weight.device, self.weight.dtype
        )
        self.input_quantizer = aq

    def to_float(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the current float (latent) weights.

        Returns:
            The float layer.
        """
        mod = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,  # type: ignore[arg-type]
            stride=self.stride,  # type: ignore[arg-type]
            padding=self.padding,  # type: ignore[arg-type]
            dilation=self.dilation,  # type: ignore[arg-type]
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,  # type: ignore[arg-type]
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        mod.load_state_dict({k: v for k, v in self.state_dict().items() if k in ("weight", "bias")})
        return mod


class QLinear(nn.Linear, _QuantLayer):
    """Drop-in ``nn.Linear`` whose weights (and optionally inputs) are quantized.

    Args:
        in_features: as ``nn.Linear``.
        out_features: as ``nn.Linear``.
        bias: as ``nn.Linear``.
        device: as ``nn.Linear``.
        dtype: as ``nn.Linear``.
        weight_levels: signed level set of the weights, or ``None``.
        act_levels: level set of the inputs, or ``None``.
        method: ``"qn"`` or ``"ste"``.
        quantizer_kwargs: extra options of the weight quantizer.
        act_quantizer_kwargs: extra options of the input quantizer.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Examples:
        >>> QLinear(4, 2, weight_levels="binary")(torch.randn(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weight_levels: LevelsLike | None = "ternary",
        act_levels: LevelsLike | None = None,
        method: str = "qn",
        quantizer_kwargs: dict[str, Any] | None = None,
        act_quantizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup_quant(
            weight_levels, act_levels, method, quantizer_kwargs, act_quantizer_kwargs, device, dtype
        )

    def forward(self, input: Tensor) -> Tensor:
        """Quantize the input (if configured) and the weight, then apply the affine map.

        Args:
            input: ``(*, in_features)``.

        Returns:
            ``(*, out_features)``.
        """
        return F.linear(self._quant_input(input), self.quantized_weight(), self.bias)

    @classmethod
    def from_float(
        cls,
        mod: nn.Linear,
        *,
        weight_levels: LevelsLike | None = "ternary",
        act_levels: LevelsLike | None = None,
        method: str = "qn",
        quantizer_kwargs: dict[str, Any] | None = None,
        act_quantizer_kwargs: dict[str, Any] | None = None,
    ) -> QLinear:
        """Build a ``QLinear`` copying the parameters of ``mod``; see :meth:`QConv2d.from_float`.

        Args:
            mod: the float layer.
            weight_levels: see the class.
            act_levels: see the class.
            method: see the class.
            quantizer_kwargs: see the class.
            act_quantizer_kwargs: see the class.

        Returns:
            The quantized layer.

        Raises:
            TypeError: ``mod`` is not an ``nn.Linear``.
        """
        if not isinstance(mod, nn.Linear):
            raise TypeError(f"QLinear.from_float: 'mod' must be an nn.Linear; got {type(mod).__name__}")
        new = cls(
            mod.in_features,
            mod.out_features,
            bias=mod.bias is not None,
            device=mod.weight.device,
            dtype=mod.weight.dtype,
            weight_levels=None,
            act_levels=act_levels,
            method=method,
            act_quantizer_kwargs=act_quantizer_kwargs,
        )
        with torch.no_grad():
            new.weight.copy_(mod.weight)
            if mod.bias is not None and new.bias is not None:
                new.bias.copy_(mod.bias)
        new.train(mod.training)
        aq = new.input_quantizer
        new._setup_quant(
            weight_levels, None, method, quantizer_kwargs, None, new.weight.device, new.weight.dtype
        )
        new.input_quantizer = aq
        return new

    def to_float(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the current float (latent) weights.

        Returns:
            The float layer.
        """
        mod = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        mod.load_state_dict({k: v for k, v in self.state_dict().items() if k in ("weight", "bias")})
        return mod
