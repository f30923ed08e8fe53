"""Functional losses of IE-KD and of the distillation methods it is combined with.

Every function validates its inputs first (``iekd._checks``) and then computes in the inputs' dtype and device.

Conventions shared by the factor losses (``factor_distance``, ``inheritance_loss``, ``exploration_loss``,
``factor_transfer_loss``):

* each sample is flattened to a vector of length ``D = C * H * W`` and L2-normalised,
  ``n(v) = v / max(||v||_2, 1e-12)`` (as ``torch.nn.functional.normalize``);
* ``reduction="mean"`` divides the summed ``|n(x) - n(y)|^p`` by ``B * D`` and then takes the ``1/p`` power.
  This is what the authors' code (``loss/factor_transfer.py``) and the FT code do; the values are small
  (order 1e-2) and the paper's reported best weights (lambda = 50 for IE, beta = 500 for FT) go with it.
  ``reduction="batchmean"`` is the per-sample norm ``||n(x_b) - n(y_b)||_p`` averaged over the batch (the
  formula as printed in reviews of the paper); for ``p = 1`` it is exactly ``D`` times the ``"mean"`` value,
  so the weights must be scaled down by ``D`` to match. ``reduction="sum"`` sums the per-sample norms.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ._checks import check_finite as _check_finite
from ._checks import check_floating, check_positive, check_shape, check_tensor

__all__ = [
    "attention_map",
    "attention_transfer_loss",
    "dml_loss",
    "exploration_loss",
    "factor_distance",
    "factor_transfer_loss",
    "inheritance_loss",
    "kd_loss",
    "margin_relu",
    "ofd_loss",
    "ofd_margin",
    "ofd_margin_from_features",
    "partial_l2_loss",
    "reconstruction_loss",
    "split_channels",
]

Reduction = Literal["mean", "batchmean", "sum"]
_REDUCTIONS = ("mean", "batchmean", "sum")


def _finite(fn: str, finite: bool, *named: tuple[str, torch.Tensor]) -> None:
    """Opt-in finiteness check (one device sync per tensor; skipped under ``torch.compile``)."""
    if finite:
        for name, x in named:
            _check_finite(x, name, fn=fn)


def _check_pair(
    x: torch.Tensor, y: torch.Tensor, xname: str, yname: str, fn: str, finite: bool = False
) -> None:
    check_floating(x, xname, fn=fn)
    check_floating(y, yname, fn=fn)
    if x.dim() < 2:
        raise ValueError(
            f"{fn}: '{xname}' must have shape (B, ...) with at least 2 dims; got {tuple(x.shape)}"
        )
    if x.shape != y.shape:
        raise ValueError(
            f"{fn}: '{xname}' and '{yname}' must have the same shape; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(
            f"{fn}: '{yname}' is on {y.device} but '{xname}' is on {x.device}; move them to one device"
        )
    if x.dtype != y.dtype:
        raise ValueError(f"{fn}: '{xname}' and '{yname}' must share a dtype; got {x.dtype} and {y.dtype}")
    _finite(fn, finite, (xname, x), (yname, y))


def _check_p_reduction(p: int, reduction: str, fn: str) -> None:
    if p not in (1, 2):
        raise ValueError(f"{fn}: 'p' must be 1 or 2; got {p!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: 'reduction' must be one of {_REDUCTIONS}; got {reduction!r}")


def _factor_distance(x: torch.Tensor, y: torch.Tensor, p: int, reduction: str) -> torch.Tensor:
    b = x.shape[0]
    nx = F.normalize(x.reshape(b, -1), p=2, dim=1)
    ny = F.normalize(y.reshape(b, -1), p=2, dim=1)
    diff = (nx - ny).abs()
    if p == 2:
        diff = diff.pow(2)
    if reduction == "mean":
        out = diff.sum() / diff.numel()
        return out if p == 1 else out.sqrt()
    per_sample = diff.sum(dim=1)
    if p == 2:
        per_sample = per_sample.sqrt()
    return per_sample.mean() if reduction == "batchmean" else per_sample.sum()


def factor_distance(
    x: torch.Tensor, y: torch.Tensor, *, p: int = 1, reduction: Reduction = "mean", check_finite: bool = False
) -> torch.Tensor:
    """Distance between per-sample L2-normalised factors (the FT / IE-KD factor distance).

    ``d(x, y) = (sum_{b,d} |n(x_b)_d - n(y_b)_d|^p / (B*D))^(1/p)`` for ``reduction="mean"``; see the module
    docstring for the other reductions.

    Args:
        x: factors, shape ``(B, *)`` (usually ``(B, C, H, W)``), floating point.
        y: factors of the same shape, dtype and device as ``x``.
        p: 1 (L1, the paper's choice) or 2.
        reduction: ``"mean"`` (over batch and elements, the authors' code), ``"batchmean"`` or ``"sum"``.
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``.

    Raises:
        TypeError: an input is not a floating tensor.
        ValueError: shapes, dtypes or devices differ, ``p`` or ``reduction`` is invalid.

    Examples:
        >>> x = torch.tensor([[3.0, 4.0]]); y = torch.tensor([[4.0, 3.0]])
        >>> round(float(factor_distance(x, y)), 4)  # (|0.6-0.8| + |0.8-0.6|) / 2
        0.2
    """
    fn = "factor_distance"
    _check_pair(x, y, "x", "y", fn, check_finite)
    _check_p_reduction(p, reduction, fn)
    return _factor_distance(x, y, p, reduction)


def inheritance_loss(
    student_factor: torch.Tensor,
    teacher_factor: torch.Tensor,
    *,
    p: int = 1,
    reduction: Reduction = "mean",
    check_finite: bool = False,
) -> torch.Tensor:
    """Inheritance (similarity) loss, ``L_inh = d(n(F_inh), n(F_T))``.

    The teacher factor is detached: the teacher and its auto-encoder never receive a gradient from it.

    Args:
        student_factor: encoded inheritance half of the student feature, ``(B, C', H, W)``.
        teacher_factor: teacher factor ``E(f_T)``, same shape, dtype and device.
        p: 1 (L1, default, the paper's best distance) or 2.
        reduction: see :func:`factor_distance`.
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``; the student is trained to decrease it.

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes/dtypes/devices, bad ``p``/``reduction``.

    Examples:
        >>> s = torch.randn(2, 4, 3, 3); inheritance_loss(s, s).item()
        0.0
    """
    fn = "inheritance_loss"
    _check_pair(student_factor, teacher_factor, "student_factor", "teacher_factor", fn, check_finite)
    _check_p_reduction(p, reduction, fn)
    return _factor_distance(student_factor, teacher_factor.detach(), p, reduction)


def exploration_loss(
    student_factor: torch.Tensor,
    teacher_factor: torch.Tensor,
    *,
    p: int = 1,
    reduction: Reduction = "mean",
    check_finite: bool = False,
) -> torch.Tensor:
    """Exploration (dis-similarity) loss, ``L_exp = -d(n(F_exp), n(F_T))``.

    Minimising it pushes the exploration half's factor away from the teacher's. It is bounded below
    (normalised vectors are at most 2 apart), so it cannot diverge. The teacher factor is detached.

    Args:
        student_factor: encoded exploration half of the student feature, ``(B, C', H, W)``.
        teacher_factor: teacher factor, same shape, dtype and device.
        p: 1 (default) or 2.
        reduction: see :func:`factor_distance`.
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``<= 0``.

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes/dtypes/devices, bad ``p``/``reduction``.

    Examples:
        >>> x = torch.tensor([[3.0, 4.0]]); y = torch.tensor([[4.0, 3.0]])
        >>> round(float(exploration_loss(x, y)), 4)
        -0.2
    """
    fn = "exploration_loss"
    _check_pair(student_factor, teacher_factor, "student_factor", "teacher_factor", fn, check_finite)
    _check_p_reduction(p, reduction, fn)
    return -_factor_distance(student_factor, teacher_factor.detach(), p, reduction)


def factor_transfer_loss(
    student_factor: torch.Tensor,
    teacher_factor: torch.Tensor,
    *,
    p: int = 1,
    reduction: Reduction = "mean",
    check_finite: bool = False,
) -> torch.Tensor:
    """Factor Transfer loss (Kim et al., 2018): ``d(n(translator(f_S)), n(paraphraser(f_T)))``.

    Numerically the same distance as :func:`inheritance_loss`, applied to the whole student feature.

    Args:
        student_factor: translator output for the whole student feature, ``(B, C', H, W)``.
        teacher_factor: paraphraser (factor auto-encoder) code of the teacher feature, same shape.
        p: 1 (FT's default) or 2.
        reduction: see :func:`factor_distance`.
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``.

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes/dtypes/devices, bad ``p``/``reduction``.

    Examples:
        >>> s = torch.randn(2, 4, 3, 3); factor_transfer_loss(s, 2 * s).abs().item() < 1e-6
        True
    """
    fn = "factor_transfer_loss"
    _check_pair(student_factor, teacher_factor, "student_factor", "teacher_factor", fn, check_finite)
    _check_p_reduction(p, reduction, fn)
    return _factor_distance(student_factor, teacher_factor.detach(), p, reduction)


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, *, p: int = 1, check_finite: bool = False
) -> torch.Tensor:
    """Auto-encoder reconstruction loss, ``mean |target - reconstruction|^p``.

    ``p=1`` (mean absolute error) is what the authors' code trains the factor auto-encoder with; ``p=2``
    (mean squared error) is the squared-L2 form reviews of the paper print.

    Args:
        reconstruction: decoder output ``R(f_T)``, ``(B, C, H, W)``.
        target: the feature it reconstructs, same shape, dtype and device (detached inside).
        p: 1 or 2.
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``.

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes/dtypes/devices or bad ``p``.

    Examples:
        >>> reconstruction_loss(torch.zeros(1, 2), torch.tensor([[1.0, -3.0]])).item()
        2.0
    """
    fn = "reconstruction_loss"
    _check_pair(reconstruction, target, "reconstruction", "target", fn, check_finite)
    if p not in (1, 2):
        raise ValueError(f"{fn}: 'p' must be 1 or 2; got {p!r}")
    diff = (reconstruction - target.detach()).abs()
    return diff.mean() if p == 1 else diff.pow(2).mean()


def _check_logits(
    s: torch.Tensor, t: torch.Tensor, sname: str, tname: str, fn: str, finite: bool = False
) -> None:
    check_floating(s, sname, fn=fn)
    check_floating(t, tname, fn=fn)
    dims = check_shape(s, "B,K", sname, fn=fn)
    check_shape(t, "B,K", tname, fn=fn, dims=dims)
    if s.device != t.device:
        raise ValueError(
            f"{fn}: '{tname}' is on {t.device} but '{sname}' is on {s.device}; move them to one device"
        )
    _finite(fn, finite, (sname, s), (tname, t))


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 4.0,
    check_finite: bool = False,
) -> torch.Tensor:
    """Hinton knowledge distillation: ``T^2 * KL(softmax(z_T/T) || softmax(z_S/T))``, averaged over the batch.

    The ``T^2`` factor keeps the gradient scale independent of the temperature (Hinton et al., 2015).
    The teacher logits are detached.

    Args:
        student_logits: ``(B, K)`` floating.
        teacher_logits: ``(B, K)`` floating, same device.
        temperature: softmax temperature ``T > 0``.
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``.

    Raises:
        TypeError: non-floating logits.
        ValueError: shape/device mismatch or ``temperature <= 0``.

    Examples:
        >>> z = torch.randn(3, 5); kd_loss(z, z).abs().item() < 1e-6
        True
    """
    fn = "kd_loss"
    _check_logits(student_logits, teacher_logits, "student_logits", "teacher_logits", fn, check_finite)
    check_positive(temperature, "temperature", fn=fn)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * (temperature**2)


def attention_map(feature: torch.Tensor, *, p: int = 2) -> torch.Tensor:
    """Spatial attention map of Attention Transfer (Zagoruyko & Komodakis, 2017).

    ``Q = normalize(mean_c |f_c|^p)``, flattened per sample and L2-normalised.

    Args:
        feature: ``(B, C, H, W)`` floating.
        p: the power, ``p >= 1`` (AT uses 2).

    Returns:
        ``(B, H*W)`` tensor of unit L2 norm per row.

    Raises:
        TypeError: non-floating input.
        ValueError: not 4-D, or ``p < 1``.

    Examples:
        >>> attention_map(torch.ones(1, 3, 2, 2)).tolist()
        [[0.5, 0.5, 0.5, 0.5]]
    """
    fn = "attention_map"
    check_floating(feature, "feature", fn=fn)
    check_shape(feature, "B,C,H,W", "feature", fn=fn)
    if p < 1:
        raise ValueError(f"{fn}: 'p' must be >= 1; got {p!r}")
    return F.normalize(feature.abs().pow(p).mean(dim=1).flatten(1), p=2, dim=1)


def attention_transfer_loss(
    student_feature: torch.Tensor, teacher_feature: torch.Tensor, *, p: int = 2, check_finite: bool = False
) -> torch.Tensor:
    """Attention Transfer loss: ``mean_{b,j} (Q_S - Q_T)^2`` over the batch and the ``H*W`` positions.

    This is the reduction of the AT reference code (and RepDistiller), used with weight ``beta = 1000``.
    Channel counts may differ; spatial sizes must match. The teacher feature is detached.

    Args:
        student_feature: ``(B, C_s, H, W)``.
        teacher_feature: ``(B, C_t, H, W)``, same dtype and device.
        p: power of the attention map.
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``.

    Raises:
        TypeError: non-floating inputs.
        ValueError: not 4-D, batch or spatial sizes differ, devices differ.

    Examples:
        >>> f = torch.randn(2, 3, 4, 4); attention_transfer_loss(f, torch.cat([f, f], 1)).abs().item() < 1e-6
        True
    """
    fn = "attention_transfer_loss"
    check_floating(student_feature, "student_feature", fn=fn)
    check_floating(teacher_feature, "teacher_feature", fn=fn)
    dims = check_shape(student_feature, "B,C,H,W", "student_feature", fn=fn)
    dims.pop("C")
    check_shape(teacher_feature, "B,T,H,W", "teacher_feature", fn=fn, dims=dims)
    if student_feature.device != teacher_feature.device:
        raise ValueError(
            f"{fn}: 'teacher_feature' is on {teacher_feature.device} but 'student_feature' is on "
            f"{student_feature.device}; move them to one device"
        )
    _finite(fn, check_finite, ("student_feature", student_feature), ("teacher_feature", teacher_feature))
    qs = attention_map(student_feature, p=p)
    qt = attention_map(teacher_feature.detach().to(student_feature.dtype), p=p)
    return (qs - qt).pow(2).mean()


def dml_loss(
    logits: torch.Tensor,
    peer_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    detach_peer: bool = True,
    check_finite: bool = False,
) -> torch.Tensor:
    """Deep Mutual Learning mimicry term: ``T^2 * KL(softmax(z_peer/T) || softmax(z/T))``, batch-averaged.

    With ``temperature=1`` (DML's setting) this is ``KL(p_peer || p)`` as in the DML paper and the authors'
    ``loss/mutual.py``.

    Args:
        logits: ``(B, K)`` logits of the network being updated.
        peer_logits: ``(B, K)`` logits of its peer.
        temperature: softmax temperature ``> 0``.
        detach_peer: stop the gradient into the peer (DML updates one network at a time).
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``.

    Raises:
        TypeError: non-floating logits.
        ValueError: shape/device mismatch or ``temperature <= 0``.

    Examples:
        >>> z = torch.randn(3, 5); dml_loss(z, z).abs().item() < 1e-6
        True
    """
    fn = "dml_loss"
    _check_logits(logits, peer_logits, "logits", "peer_logits", fn, check_finite)
    check_positive(temperature, "temperature", fn=fn)
    peer = peer_logits.detach() if detach_peer else peer_logits
    log_p = F.log_softmax(logits / temperature, dim=1)
    log_q = F.log_softmax(peer.to(logits.dtype) / temperature, dim=1)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True) * (temperature**2)


def split_channels(
    feature: torch.Tensor, inherit_channels: int, *, index: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a feature along channels into its inheritance and exploration parts.

    Args:
        feature: ``(B, C, H, W)``.
        inherit_channels: number of channels of the inheritance part, ``1 <= n <= C - 1``.
        index: optional permutation of ``range(C)`` (long, shape ``(C,)``); the first ``inherit_channels``
            entries pick the inheritance channels, the rest the exploration channels. ``None``: natural order.

    Returns:
        ``(f_inh, f_exp)`` of shapes ``(B, n, H, W)`` and ``(B, C - n, H, W)``.

    Raises:
        TypeError: ``feature`` or ``index`` is not a tensor, or ``index`` is not integer.
        ValueError: bad rank, ``inherit_channels`` out of range, or ``index`` not of shape ``(C,)``.

    Examples:
        >>> a, b = split_channels(torch.zeros(2, 6, 3, 3), 2)
        >>> tuple(a.shape), tuple(b.shape)
        ((2, 2, 3, 3), (2, 4, 3, 3))
    """
    fn = "split_channels"
    check_tensor(feature, "feature", fn=fn)
    dims = check_shape(feature, "B,C,H,W", "feature", fn=fn)
    c = dims["C"]
    if isinstance(inherit_channels, bool) or not isinstance(inherit_channels, int):
        raise TypeError(f"{fn}: 'inherit_channels' must be an int; got {type(inherit_channels).__name__}")
    if not 1 <= inherit_channels <= c - 1:
        raise ValueError(
            f"{fn}: 'inherit_channels' must lie in [1, {c - 1}] for C={c}; got {inherit_channels}"
        )
    if index is None:
        return feature[:, :inherit_channels], feature[:, inherit_channels:]
    check_tensor(index, "index", fn=fn)
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{fn}: 'index' must be an integer tensor; got {index.dtype}")
    if tuple(index.shape) != (c,):
        raise ValueError(f"{fn}: 'index' must have shape ({c},); got {tuple(index.shape)}")
    index = index.to(feature.device)
    return feature[:, index[:inherit_channels]], feature[:, index[inherit_channels:]]


# --- OFD: A Comprehensive Overhaul of Feature Distillation (Heo et al., ICCV 2019) -----------------------------


def ofd_margin(bn_weight: torch.Tensor, bn_bias: torch.Tensor) -> torch.Tensor:
    """OFD's per-channel margin ``m = E[x | x < 0]`` of a Gaussian pre-ReLU response (Eq. (3) of Heo et al.).

    A BatchNorm layer in front of the ReLU makes channel ``c``'s response approximately ``N(beta_c, gamma_c^2)``
    (its bias and weight). For ``x ~ N(mu, s^2)``: ``E[x | x < 0] = mu - s * phi(mu/s) / Phi(-mu/s)``, and, as in
    the OFD code, ``-3 s`` where ``Phi(-mu/s) <= 1e-3`` (almost no negative responses). A channel with ``s = 0``
    gets ``min(mu, 0)``.

    Args:
        bn_weight: ``(C,)`` BatchNorm weights ``gamma`` (their absolute value is the std).
        bn_bias: ``(C,)`` BatchNorm biases ``beta`` (the mean), same dtype and device.

    Returns:
        ``(C,)`` margins, all ``<= 0``.

    Raises:
        TypeError: non-floating inputs.
        ValueError: not two 1-D tensors of the same length, dtype and device.

    Examples:
        >>> round(float(ofd_margin(torch.tensor([1.0]), torch.tensor([0.0]))), 4)  # -phi(0) / 0.5
        -0.7979
    """
    fn = "ofd_margin"
    check_floating(bn_weight, "bn_weight", fn=fn)
    check_floating(bn_bias, "bn_bias", fn=fn)
    dims = check_shape(bn_weight, "C", "bn_weight", fn=fn)
    check_shape(bn_bias, "C", "bn_bias", fn=fn, dims=dims)
    if bn_weight.device != bn_bias.device or bn_weight.dtype != bn_bias.dtype:
        raise ValueError(
            f"{fn}: 'bn_weight' and 'bn_bias' must share dtype and device; got {bn_weight.dtype} on "
            f"{bn_weight.device} and {bn_bias.dtype} on {bn_bias.device}"
        )
    s, mu = bn_weight.detach().abs(), bn_bias.detach()
    safe_s = torch.where(s > 0, s, torch.ones_like(s))
    z = mu / safe_s
    tail = torch.special.ndtr(-z)  # Phi(-mu/s): probability of a negative response
    pdf = torch.exp(-0.5 * z * z) / (2.0 * torch.pi) ** 0.5
    m = torch.where(tail > 1e-3, mu - safe_s * pdf / tail.clamp_min(1e-3), -3.0 * s)
    return torch.where(s > 0, m, mu.clamp(max=0.0))


def ofd_margin_from_features(feature: torch.Tensor) -> torch.Tensor:
    """Empirical OFD margin: the per-channel mean of the negative responses of ``feature``.

    The paper's definition ``m_c = E[x_c | x_c < 0]`` measured on data instead of assumed Gaussian
    (:func:`ofd_margin`). A channel without a negative response gets 0. To average over many batches, sum the
    negatives and count them yourself (as :func:`iekd.recipes.distill` does with ``ofd_margin="data"``).

    Args:
        feature: pre-ReLU teacher features ``(B, C, H, W)``.

    Returns:
        ``(C,)`` margins, all ``<= 0``.

    Raises:
        TypeError: non-floating input.
        ValueError: not 4-D.

    Examples:
        >>> f = torch.tensor([[[[-1.0, -3.0]], [[2.0, 1.0]]]])  # channel 0: mean(-1, -3); channel 1: none
        >>> ofd_margin_from_features(f).tolist()
        [-2.0, 0.0]
    """
    fn = "ofd_margin_from_features"
    check_floating(feature, "feature", fn=fn)
    check_shape(feature, "B,C,H,W", "feature", fn=fn)
    f = feature.detach()
    neg = f.clamp(max=0.0).sum(dim=(0, 2, 3))
    count = (f < 0).sum(dim=(0, 2, 3)).to(f.dtype)
    return torch.where(count > 0, neg / count.clamp_min(1.0), torch.zeros_like(neg))


def margin_relu(feature: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """OFD's teacher transform ``sigma_m(x) = max(x, m)`` with a per-channel margin ``m <= 0``.

    Positive responses pass unchanged; negative ones are raised to the channel's margin, keeping the "how
    negative on average" information a plain ReLU throws away.

    Args:
        feature: ``(B, C, H, W)``.
        margin: ``(C,)`` margins, same dtype and device.

    Returns:
        ``(B, C, H, W)`` tensor.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes, dtypes or devices do not fit.

    Examples:
        >>> margin_relu(torch.tensor([[[[-2.0, 0.5]]]]), torch.tensor([-1.0])).tolist()
        [[[[-1.0, 0.5]]]]
    """
    fn = "margin_relu"
    check_floating(feature, "feature", fn=fn)
    check_floating(margin, "margin", fn=fn)
    dims = check_shape(feature, "B,C,H,W", "feature", fn=fn)
    check_shape(margin, "C", "margin", fn=fn, dims={"C": dims["C"]})
    if margin.device != feature.device or margin.dtype != feature.dtype:
        raise ValueError(
            f"{fn}: 'margin' must share the feature's dtype and device ({feature.dtype} on {feature.device}); "
            f"got {margin.dtype} on {margin.device}"
        )
    return torch.maximum(feature, margin.view(1, -1, 1, 1))


def _partial_l2(s: torch.Tensor, t: torch.Tensor, reduction: str, normalize: bool) -> torch.Tensor:
    b = s.shape[0]
    if normalize:
        s = F.normalize(s.reshape(b, -1), p=2, dim=1)
        t = F.normalize(t.reshape(b, -1), p=2, dim=1)
    keep = (s > t) | (t > 0)  # skip positions where S <= T <= 0: both "off" after the teacher's ReLU
    sq = (s - t).pow(2) * keep.to(s.dtype)
    if reduction == "mean":
        return sq.sum() / sq.numel()
    total = sq.sum()
    return total / b if reduction == "batchmean" else total


def partial_l2_loss(
    student: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: Reduction = "batchmean",
    normalize: bool = False,
    check_finite: bool = False,
) -> torch.Tensor:
    """OFD's partial L2 distance: ``sum_i (T_i - S_i)^2`` over the positions where NOT ``S_i <= T_i <= 0``.

    Eq. (4) of Heo et al.: where the target is non-positive (a response the teacher's ReLU switches off) a
    student value at or below it is not penalised. ``reduction="batchmean"`` (sum over every element, divided by
    the batch size) is what the OFD code uses, with weight 1e-3 on CIFAR and 1e-4 on ImageNet; ``"mean"``
    divides by every element, ``"sum"`` does not divide. ``normalize=True`` first L2-normalises each sample
    (flattened), which bounds the distance by 4 per sample (used by the native IE-OFD exploration term).
    The target is detached.

    Args:
        student: connector output ``r(f_S)``, ``(B, C, H, W)`` (any shape ``(B, ...)``).
        target: the transformed teacher feature ``sigma_m(f_T)``, same shape, dtype and device.
        reduction: ``"batchmean"`` (OFD), ``"mean"`` or ``"sum"``.
        normalize: L2-normalise each sample of both tensors first.
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``.

    Raises:
        TypeError: non-floating inputs.
        ValueError: mismatched shapes/dtypes/devices or a bad ``reduction``.

    Examples:
        >>> s = torch.tensor([[-3.0, -1.0, 2.0]]); t = torch.tensor([[-2.0, -2.0, 1.0]])
        >>> partial_l2_loss(s, t).item()  # -3 <= -2 <= 0 is skipped: (1)^2 + (1)^2
        2.0
    """
    fn = "partial_l2_loss"
    _check_pair(student, target, "student", "target", fn, check_finite)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: 'reduction' must be one of {_REDUCTIONS}; got {reduction!r}")
    return _partial_l2(student, target.detach(), reduction, bool(normalize))


def ofd_loss(
    student_feature: torch.Tensor,
    teacher_feature: torch.Tensor,
    margin: torch.Tensor,
    *,
    reduction: Reduction = "batchmean",
    normalize: bool = False,
    check_finite: bool = False,
) -> torch.Tensor:
    """Overhaul Feature Distillation loss ``d_p(sigma_m(f_T), r(f_S))`` (Heo et al., 2019).

    ``student_feature`` is the student's pre-ReLU feature already mapped by the connector ``r`` (1x1 conv + BN,
    :class:`iekd.OFDLoss` holds one) to the teacher's channels; ``teacher_feature`` is the teacher's pre-ReLU
    feature (detached), transformed by :func:`margin_relu`; the distance is :func:`partial_l2_loss`.

    Args:
        student_feature: ``r(f_S)``, ``(B, C, H, W)``.
        teacher_feature: pre-ReLU ``f_T``, ``(B, C, H, W)``, same dtype and device.
        margin: ``(C,)`` per-channel margins (:func:`ofd_margin` or :func:`ofd_margin_from_features`).
        reduction: see :func:`partial_l2_loss` (``"batchmean"``: the OFD code's sum / batch size).
        normalize: L2-normalise each sample before the distance (not in OFD; the native IE-OFD option).
        check_finite: raise ``ValueError`` naming the argument if an input holds NaN or inf (off by
            default: the check costs a device sync; skipped under ``torch.compile``).

    Returns:
        Scalar tensor, ``>= 0``.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes, dtypes or devices do not fit, or a bad ``reduction``.

    Examples:
        >>> t = torch.tensor([[[[-2.0, 1.0]]]]); s = torch.tensor([[[[-5.0, 1.0]]]])
        >>> ofd_loss(s, t, torch.tensor([-1.0])).item()  # target [-1, 1]; -5 <= -1 <= 0 is skipped
        0.0
    """
    fn = "ofd_loss"
    check_floating(student_feature, "student_feature", fn=fn)
    dims = check_shape(student_feature, "B,C,H,W", "student_feature", fn=fn)
    check_shape(teacher_feature, "B,C,H,W", "teacher_feature", fn=fn, dims=dims)
    _finite(fn, check_finite, ("student_feature", student_feature), ("teacher_feature", teacher_feature))
    target = margin_relu(teacher_feature.detach(), margin)
    return partial_l2_loss(student_feature, target, reduction=reduction, normalize=normalize)
