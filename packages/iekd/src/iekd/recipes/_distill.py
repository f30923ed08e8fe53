"""Single-teacher distillation: CE, KD, AT, FT, OFD and their IE variants (IE-KD Steps B and C)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as IF
from .._checks import check_choice, check_int, check_number
from ..hooks import FeatureTap, unwrap_model
from ..nn import FactorAutoencoder, InheritExploreLoss, OFDLoss, Translator, inherit_channel_count
from ._common import (
    METHODS,
    Method,
    _check_ie_args,
    _check_module,
    _data_margin,
    _feature_layer,
    _Frozen,
    _probe,
    _teacher_bn,
)
from ._factor import train_factor
from ._loop import (
    Callback,
    EpochRunner,
    OptimizerFactory,
    SchedulerFactory,
    TrainResult,
    accuracy,
    check_run_args,
    default_scheduler,
    logits_of,
    maybe_ddp,
    resolve_device,
    sgd,
    to_device,
)

logger = logging.getLogger(__name__)


class _DistillStudent(nn.Module):
    """Student + its loss heads; forward returns the loss terms so DDP syncs every trained parameter."""

    def __init__(
        self, student: nn.Module, layer: str | None, method: str, heads: nn.ModuleDict, hp: dict[str, Any]
    ) -> None:
        super().__init__()
        self.student = student
        self.heads = heads
        self.layer = layer
        self.method = method
        self.hp = hp
        # "ce" uses no feature: no hook, so a student without a 'feature_layer' trains as is
        self.tap = FeatureTap(student, layer) if layer is not None else None
        # spatial="pool": the common (H, W) both feature maps are average-pooled to; None = sizes already match
        self.pool_size: tuple[int, int] | None = None

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        t_logits: torch.Tensor | None,
        t_feat: torch.Tensor | None,
        t_factor: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        hp, m = self.hp, self.method
        logits = logits_of(self.student(x), "distill", "student")
        ce = F.cross_entropy(logits, y)
        terms: dict[str, torch.Tensor] = {"ce": ce}
        if m == "ce" or self.tap is None or self.layer is None:
            terms["total"] = ce
            terms["correct"] = (logits.detach().argmax(1) == y).float().mean()
            return terms
        f_s = self.tap[self.layer]
        if self.pool_size is not None and tuple(f_s.shape[2:]) != self.pool_size:
            f_s = F.adaptive_avg_pool2d(f_s, self.pool_size)
        if m in ("kd", "ie-kd"):
            assert t_logits is not None
            terms["kd"] = IF.kd_loss(logits, t_logits, temperature=hp["temperature"])
            total = (1 - hp["alpha"]) * ce + hp["alpha"] * terms["kd"]
        else:
            total = ce
        if m in ("at", "ie-at") and not (m == "ie-at" and hp["ie_at"] == "native"):
            assert t_feat is not None
            terms["at"] = IF.attention_transfer_loss(f_s, t_feat)
            total = total + hp["at_weight"] * terms["at"]
        if m == "ft":
            assert t_factor is not None
            terms["ft"] = IF.factor_transfer_loss(self.heads["translator"](f_s), t_factor, p=hp["p"])
            total = total + hp["ft_weight"] * terms["ft"]
        if m in ("ofd", "ie-ofd") and not (m == "ie-ofd" and hp["ie_ofd"] == "native"):
            assert t_feat is not None
            terms["ofd"] = self.heads["ofd"](f_s, t_feat)
            total = total + hp["ofd_weight"] * terms["ofd"]
        if m == "ie-ofd" and hp["ie_ofd"] == "native":
            assert t_feat is not None
            ie = self.heads["ie"]
            assert isinstance(ie, InheritExploreLoss)
            f_inh, f_exp = ie.split(f_s)
            terms["inherit"] = self.heads["ofd_inh"](f_inh, t_feat)
            terms["explore"] = -self.heads["ofd_exp"](f_exp, t_feat)
            total = total + ie.inherit_weight * terms["inherit"] + ie.explore_weight * terms["explore"]
        elif m == "ie-at" and hp["ie_at"] == "native":
            assert t_feat is not None
            ie = self.heads["ie"]
            assert isinstance(ie, InheritExploreLoss)
            f_inh, f_exp = ie.split(f_s)
            terms["inherit"] = IF.attention_transfer_loss(f_inh, t_feat)
            terms["explore"] = -IF.attention_transfer_loss(f_exp, t_feat)
            total = total + hp["at_weight"] * (terms["inherit"] + terms["explore"])
        elif m.startswith("ie-"):
            assert t_factor is not None
            out = self.heads["ie"](f_s, t_factor)
            terms["inherit"], terms["explore"] = out.inherit, out.explore
            total = total + out.total
        terms["total"] = total
        terms["correct"] = (logits.detach().argmax(1) == y).float().mean()
        return terms


def distill(
    student: nn.Module,
    teacher: nn.Module | None,
    loader: Iterable[Any],
    *,
    method: Method = "ie-kd",
    student_layer: str | None = None,
    teacher_layer: str | None = None,
    factor: FactorAutoencoder | None = None,
    epochs: int = 160,
    factor_epochs: int = 30,
    factor_rate: float = 0.5,
    alpha: float = 0.9,
    temperature: float = 4.0,
    at_weight: float = 1000.0,
    ft_weight: float = 500.0,
    ofd_weight: float = 1e-3,
    inherit_weight: float = 10.0,
    explore_weight: float = 10.0,
    split: float | int = 0.5,
    split_mode: Literal["natural", "random"] = "natural",
    explore_encoder: Literal["frozen", "trainable"] = "trainable",
    ie_at: Literal["additive", "native"] = "additive",
    ie_ofd: Literal["additive", "native"] = "additive",
    ofd_margin: Literal["bn", "data"] = "bn",
    teacher_bn: str | None = None,
    spatial: Literal["strict", "pool"] = "strict",
    p: int = 1,
    optimizer: OptimizerFactory | None = None,
    scheduler: SchedulerFactory | None = None,
    eval_loader: Iterable[Any] | None = None,
    device: torch.device | str | None = None,
    callback: Callback | None = None,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``student`` from a frozen ``teacher`` with one of the paper's methods (or alone with ``ce``).

    Losses per batch (``CE`` = cross-entropy on labels, ``F_T`` = teacher factor, ``IE`` =
    :class:`iekd.InheritExploreLoss` total ``w_inh L_inh + w_exp L_exp``):

    - ``ce``: CE (the "independent" baseline);
    - ``kd``: ``(1 - alpha) CE + alpha KD_T`` (Hinton, ``T^2``-scaled);
    - ``at``: ``CE + at_weight * AT(f_S, f_T)``;
    - ``ft``: ``CE + ft_weight * FT(translator(f_S), F_T)``;
    - ``ie-ft``: ``CE + IE(f_S, F_T)`` (the authors' IE-KD code path);
    - ``ie-kd``: ``(1 - alpha) CE + alpha KD_T + IE(f_S, F_T)``;
    - ``ie-at``: ``CE + at_weight * AT(f_S, f_T) + IE(f_S, F_T)`` (``ie_at="additive"``, default) or
      ``CE + at_weight * (AT(f_inh, f_T) - AT(f_exp, f_T))`` (``ie_at="native"``);
    - ``ofd``: ``CE + ofd_weight * d_p(sigma_m(f_T), r(f_S))`` (Heo et al. 2019, :class:`iekd.OFDLoss`) on
      *pre-ReLU* features;
    - ``ie-ofd``: ``CE + ofd_weight * OFD(f_S, f_T) + IE(f_S, F_T)`` with the factor auto-encoder trained on the
      same pre-ReLU teacher feature (``ie_ofd="additive"``, default), or ``ie_ofd="native"``:
      ``CE + w_inh * d_p(n(r_inh(f_inh)), n(sigma_m(f_T))) - w_exp * d_p(n(r_exp(f_exp)), n(sigma_m(f_T)))``,
      OFD's transforms and partial L2 inside IE's per-sample normalisation (which bounds the exploration term),
      the exploration connector frozen unless ``explore_encoder="trainable"``.

    For ``ofd``/``ie-ofd`` the layers default to the networks' ``pre_relu_layer`` (the last block's output
    before its ReLU), and the teacher margin ``m`` comes from the BatchNorm in front of that ReLU
    (``ofd_margin="bn"``, the OFD code; ``teacher_bn`` or the teacher's ``pre_relu_bn``) or from the negative
    responses of the teacher feature over one pass of ``loader`` (``ofd_margin="data"``).

    The teacher and its factor auto-encoder run in eval mode without gradients. Methods that need ``F_T``
    train a factor auto-encoder first with :func:`train_factor` when ``factor`` is ``None``. ``ce`` needs no
    teacher: pass ``teacher=None`` (a teacher given with ``ce`` is ignored: not moved, not put in eval mode,
    never run), and no feature layer is tapped, so any classifier trains with it.

    Args:
        student: the network to train; returns logits, or a ``(logits, ...)`` tuple such as ``(logits, features)``
            (the first item is used; distilled features come from ``student_layer``).
        teacher: the frozen teacher (logits or a ``(logits, ...)`` tuple); ``None`` only with ``method="ce"``.
        loader: training batches ``(images, labels)``.
        method: one of :data:`METHODS`.
        student_layer: distilled student submodule (default: its ``feature_layer``; unused by ``ce``).
        teacher_layer: distilled teacher submodule (default: its ``feature_layer``; unused by ``ce``).
        factor: a trained teacher :class:`iekd.FactorAutoencoder` (``ft`` and ``ie-*``).
        epochs: student epochs (paper: 160).
        factor_epochs: epochs of the auto-encoder when it is trained here.
        factor_rate: its factor rate.
        alpha: KD weight (0.9 for CIFAR-100 in the authors' configs, 0.95 for CIFAR-10).
        temperature: KD temperature (4; 20 in the authors' CIFAR-10 config).
        at_weight: AT weight ``beta`` (1000, as in the AT code).
        ft_weight: FT weight ``beta`` (500, as in FT).
        ofd_weight: OFD weight (1e-3 on the sum / batch size, as in the OFD CIFAR code; 1e-4 for ImageNet).
        inherit_weight: ``w_inh`` (10, chosen on CIFAR-10 validation; the paper reports 50).
        explore_weight: ``w_exp`` (10).
        split: inheritance share of the student channels (0.5).
        split_mode: ``"natural"`` or ``"random"`` channel split.
        explore_encoder: ``"trainable"`` (authors' code, default: chosen on CIFAR-10 validation) or ``"frozen"``
            (collapse guard).
        ie_at: how IE wraps AT (see above); a reconstruction, see the README's Deviations.
        ie_ofd: how IE wraps OFD (see above); a reconstruction, see the README's Deviations.
        ofd_margin: ``"bn"`` (Gaussian margin from the teacher's BatchNorm, the OFD code) or ``"data"``
            (empirical ``E[x | x < 0]`` per channel over ``loader``).
        teacher_bn: the teacher's BatchNorm before the distilled ReLU (``ofd_margin="bn"``; default: the teacher's
            ``pre_relu_bn``).
        spatial: ``"strict"`` (default): AT, FT and the IE terms need the student and teacher feature maps to
            have the same ``H x W``; ``"pool"``: when they differ, both (and the teacher factor) are average-pooled
            (``adaptive_avg_pool2d``) to the smaller size, so any teacher/student pair works (not for OFD).
        p: factor distance power.
        optimizer: optimizer factory over student + heads (default :func:`sgd` lr 0.1).
        scheduler: scheduler factory (default: x0.1 at 50% and 75% of ``epochs``).
        eval_loader: held-out batches; adds ``val_acc`` to the metrics each epoch.
        device: where to train (default: the student's device).
        callback: called with each epoch's metrics dict.
        progress: tqdm bar (``None``: only on a TTY).
        checkpoint: path written atomically after every epoch.
        resume: continue from ``checkpoint`` if it exists.

    Returns:
        :class:`TrainResult` with the student, the history and ``extras`` (``translator`` / ``ie`` heads,
        ``factor``).

    Raises:
        TypeError: ``student`` (or a given ``teacher``) is not an ``nn.Module``, ``factor`` is not a
            ``FactorAutoencoder``, ``loader`` is not iterable, ``optimizer``/``scheduler``/``callback`` is not
            callable, or a hyper-parameter has the wrong type.
        ValueError: unknown ``method``/``ie_at``/``ie_ofd``/``ofd_margin``/``split_mode``/``explore_encoder``,
            ``teacher=None`` with a method other than ``ce``, ``resume=True`` without ``checkpoint``, an empty
            ``loader``, out-of-range hyper-parameters (negative weights or
            epochs, ``temperature <= 0``, ``alpha`` outside ``[0, 1]``, ``p`` not 1 or 2), bad layer or
            ``teacher_bn`` names, a ``split`` too large for the student's channels, or feature shapes that do not
            fit. All are raised before any training (shapes from one no-grad eval-mode probe of each network on
            the first batch; the factor auto-encoder, if needed, trains only after these checks).
    """
    fn = "distill"
    if method not in METHODS:
        raise ValueError(f"{fn}: 'method' must be one of {METHODS}; got {method!r}")
    _check_module(student, "student", fn)
    check_int(epochs, "epochs", fn=fn, low=0)
    check_run_args(
        fn,
        loader=loader,
        optimizer=optimizer,
        scheduler=scheduler,
        callback=callback,
        progress=progress,
        checkpoint=checkpoint,
        resume=resume,
    )
    if method == "ce":
        if teacher is not None:
            logger.debug("%s: method='ce' ignores the given teacher", fn)
        return _train_ce(
            student,
            loader,
            student_layer=student_layer,
            epochs=epochs,
            optimizer=optimizer,
            scheduler=scheduler,
            eval_loader=eval_loader,
            device=device,
            callback=callback,
            progress=progress,
            checkpoint=checkpoint,
            resume=resume,
        )
    if teacher is None:
        raise ValueError(
            f"{fn}: 'teacher' is required for method={method!r} (only 'ce' trains without one); got None"
        )
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"{fn}: 'teacher' must be a torch.nn.Module or None; got {type(teacher).__name__}")
    if factor is not None and not isinstance(factor, FactorAutoencoder):
        raise TypeError(
            f"{fn}: 'factor' must be an iekd.FactorAutoencoder or None; got {type(factor).__name__}"
        )
    check_int(factor_epochs, "factor_epochs", fn=fn, low=0)
    check_number(temperature, "temperature", fn=fn, low=0.0, strict=True)
    check_number(at_weight, "at_weight", fn=fn, low=0.0)
    check_number(ft_weight, "ft_weight", fn=fn, low=0.0)
    check_choice(split_mode, "split_mode", ("natural", "random"), fn=fn)
    _check_ie_args(fn, split, inherit_weight, explore_weight, explore_encoder, p, factor_rate)
    if ie_at not in ("additive", "native"):
        raise ValueError(f"{fn}: 'ie_at' must be 'additive' or 'native'; got {ie_at!r}")
    check_choice(ie_ofd, "ie_ofd", ("additive", "native"), fn=fn)
    check_choice(spatial, "spatial", ("strict", "pool"), fn=fn)
    check_choice(ofd_margin, "ofd_margin", ("bn", "data"), fn=fn)
    check_number(ofd_weight, "ofd_weight", fn=fn, low=0.0)
    if teacher_bn is not None and not isinstance(teacher_bn, str):
        raise TypeError(
            f"{fn}: 'teacher_bn' must be a module name (str) or None; got {type(teacher_bn).__name__}"
        )
    check_number(alpha, "alpha", fn=fn, low=0.0, high=1.0)
    dev = resolve_device(device, student)
    student = unwrap_model(student).to(dev)
    teacher = unwrap_model(teacher).to(dev).eval()
    is_ofd = method in ("ofd", "ie-ofd")
    attr = "pre_relu_layer" if is_ofd else "feature_layer"
    s_layer = _feature_layer(student, student_layer, fn, "student_layer", attr=attr)
    t_layer = _feature_layer(teacher, teacher_layer, fn, "teacher_layer", attr=attr)
    native = (method == "ie-at" and ie_at == "native") or (method == "ie-ofd" and ie_ofd == "native")
    needs_factor = method == "ft" or (method.startswith("ie-") and not native)
    bn_module: nn.Module | None = None
    if is_ofd and ofd_margin == "bn":
        bn_module = _teacher_bn(teacher, teacher_bn, fn)
    # Probe both features first: every shape / split check runs before the factor auto-encoder trains.
    with FeatureTap(teacher, t_layer) as probe_t, FeatureTap(student, s_layer) as probe_s:
        f_t = _probe(teacher, probe_t, t_layer, loader, dev, fn=fn)
        f_s = _probe(student, probe_s, s_layer, loader, dev, fn=fn)
    pool_size: tuple[int, int] | None = None
    if spatial == "pool" and f_s.shape[2:] != f_t.shape[2:]:
        if is_ofd:
            raise ValueError(
                f"{fn}: OFD needs equal spatial sizes (spatial='pool' is not supported for OFD); student layer "
                f"{s_layer!r} gives {tuple(f_s.shape)}, teacher layer {t_layer!r} gives {tuple(f_t.shape)}"
            )
        pool_size = (min(int(f_s.shape[2]), int(f_t.shape[2])), min(int(f_s.shape[3]), int(f_t.shape[3])))
        f_s = F.adaptive_avg_pool2d(f_s, pool_size)
    if method in ("at", "ie-at") and pool_size is None and f_s.shape[2:] != f_t.shape[2:]:
        raise ValueError(
            f"{fn}: AT needs equal spatial sizes; student layer {s_layer!r} gives {tuple(f_s.shape)}, "
            f"teacher layer {t_layer!r} gives {tuple(f_t.shape)} (or pass spatial='pool')"
        )
    if needs_factor and pool_size is None and f_s.shape[2:] != f_t.shape[2:]:  # the auto-encoder keeps sizes
        raise ValueError(
            f"{fn}: student layer {s_layer!r} gives {tuple(f_s.shape)} but teacher layer {t_layer!r} gives "
            f"{tuple(f_t.shape)}; the factor methods need equal spatial sizes (or pass spatial='pool')"
        )
    if needs_factor and factor is not None and factor.in_channels != f_t.shape[1]:
        raise ValueError(
            f"{fn}: 'factor' expects {factor.in_channels} channels but teacher layer {t_layer!r} "
            f"gives {tuple(f_t.shape)}"
        )
    if method.startswith("ie-"):
        inherit_channel_count(split, int(f_s.shape[1]), fn=fn)
    if is_ofd and f_s.shape[2:] != f_t.shape[2:]:
        raise ValueError(
            f"{fn}: OFD needs equal spatial sizes; student layer {s_layer!r} gives {tuple(f_s.shape)}, "
            f"teacher layer {t_layer!r} gives {tuple(f_t.shape)}"
        )
    if isinstance(bn_module, nn.BatchNorm2d) and bn_module.num_features != f_t.shape[1]:
        raise ValueError(
            f"{fn}: 'teacher_bn' has {bn_module.num_features} channels but teacher layer {t_layer!r} gives "
            f"{tuple(f_t.shape)}"
        )
    if needs_factor and factor is None:
        logger.info("%s: training the teacher factor auto-encoder for %d epochs", fn, factor_epochs)
        factor = train_factor(
            teacher, loader, t_layer, rate=factor_rate, epochs=factor_epochs, device=dev, progress=progress
        )
    if factor is not None:
        factor = factor.to(dev).eval()
    heads = nn.ModuleDict()
    if needs_factor:
        assert factor is not None
        with torch.no_grad():
            ft = factor.encode(f_t)
            ft_shape = ft.shape if pool_size is None else F.adaptive_avg_pool2d(ft, pool_size).shape
        if ft_shape[2:] != f_s.shape[2:]:
            raise ValueError(
                f"{fn}: student layer {s_layer!r} gives {tuple(f_s.shape)} but the teacher factor of layer "
                f"{t_layer!r} is {tuple(ft_shape)}; spatial sizes must match"
            )
    c_s = int(f_s.shape[1])
    if method == "ft":
        assert factor is not None
        heads["translator"] = Translator(c_s, factor.factor_channels, device=dev, dtype=f_s.dtype)
    if method.startswith("ie-"):
        t_ch = factor.factor_channels if factor is not None else 1
        heads["ie"] = InheritExploreLoss(
            c_s,
            t_ch,
            split=split,
            inherit_weight=inherit_weight,
            explore_weight=explore_weight,
            p=p,
            split_mode=split_mode,
            explore_encoder=explore_encoder,
            layer=s_layer,
            device=dev,
            dtype=f_s.dtype,
        )
        if native:
            # native IE-AT / IE-OFD use only the head's channel split, never its encoders: freeze them so that
            # the optimizer and DDP (which waits for a gradient of every trainable parameter) ignore them
            heads["ie"].requires_grad_(False)
    if is_ofd:
        if bn_module is not None:
            assert isinstance(bn_module, nn.BatchNorm2d) and bn_module.weight is not None
            margin = IF.ofd_margin(bn_module.weight.detach(), bn_module.bias.detach())
        else:
            margin = _data_margin(teacher, t_layer, loader, dev)
        margin = margin.to(device=dev, dtype=f_s.dtype)
        kw: dict[str, Any] = {"device": dev, "dtype": f_s.dtype}
        if method == "ofd" or ie_ofd == "additive":
            heads["ofd"] = OFDLoss(c_s, margin, **kw)
        else:
            ie_head = heads["ie"]
            assert isinstance(ie_head, InheritExploreLoss)
            n_inh, n_exp = ie_head.inherit_channels, ie_head.explore_channels
            norm: dict[str, Any] = {"reduction": "mean", "normalize": True, **kw}
            heads["ofd_inh"] = OFDLoss(n_inh, margin, **norm)
            exp_head = OFDLoss(n_exp, margin, **norm)
            heads["ofd_exp"] = _Frozen(exp_head) if explore_encoder == "frozen" else exp_head
    hp = {
        "alpha": alpha,
        "temperature": temperature,
        "at_weight": at_weight,
        "ft_weight": ft_weight,
        "p": p,
        "ie_at": ie_at,
        "ie_ofd": ie_ofd,
        "ofd_weight": ofd_weight,
        "ofd_margin": ofd_margin,
    }
    t_tap = FeatureTap(teacher, t_layer)
    bundle = _DistillStudent(student, s_layer, method, heads, hp)
    bundle.pool_size = pool_size
    config = {"method": method, "student_layer": s_layer, "teacher_layer": t_layer, **hp}

    def teacher_inputs(x: torch.Tensor) -> tuple[Any, Any, Any]:
        t_factor = None
        with torch.no_grad():
            t_logits = logits_of(teacher(x), fn, "teacher")
            t_feat = t_tap[t_layer]
            if factor is not None and needs_factor:
                t_factor = factor.encode(t_feat)
            if pool_size is not None:
                t_feat = F.adaptive_avg_pool2d(t_feat, pool_size)
                t_factor = None if t_factor is None else F.adaptive_avg_pool2d(t_factor, pool_size)
        return t_logits, t_feat, t_factor

    try:
        history = _run_distill_bundle(
            bundle,
            teacher_inputs,
            loader,
            dev=dev,
            epochs=epochs,
            optimizer=optimizer,
            scheduler=scheduler,
            eval_loader=eval_loader,
            callback=callback,
            progress=progress,
            checkpoint=checkpoint,
            resume=resume,
            config=config,
        )
    finally:
        t_tap.remove()
        if bundle.tap is not None:
            bundle.tap.remove()
    extras: dict[str, nn.Module] = dict(heads.items())
    if factor is not None:
        extras["factor"] = factor
    return TrainResult(student, history, extras)


def _train_ce(
    student: nn.Module,
    loader: Iterable[Any],
    *,
    student_layer: str | None,
    epochs: int,
    optimizer: OptimizerFactory | None,
    scheduler: SchedulerFactory | None,
    eval_loader: Iterable[Any] | None,
    device: torch.device | str | None,
    callback: Callback | None,
    progress: bool | None,
    checkpoint: str | os.PathLike[str] | None,
    resume: bool,
) -> TrainResult:
    """The ``ce`` branch of :func:`distill`: cross-entropy only, no teacher, no feature hook."""
    dev = resolve_device(device, student)
    student = unwrap_model(student).to(dev)
    bundle = _DistillStudent(student, None, "ce", nn.ModuleDict(), {})
    # same recipe name and module keys as the teacher methods, so checkpoint formats stay one
    config: dict[str, Any] = {"method": "ce", "student_layer": student_layer, "teacher_layer": None}
    history = _run_distill_bundle(
        bundle,
        lambda x: (None, None, None),
        loader,
        dev=dev,
        epochs=epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        eval_loader=eval_loader,
        callback=callback,
        progress=progress,
        checkpoint=checkpoint,
        resume=resume,
        config=config,
    )
    return TrainResult(student, history, {})


def _run_distill_bundle(
    bundle: _DistillStudent,
    teacher_inputs: Callable[[torch.Tensor], tuple[Any, Any, Any]],
    loader: Iterable[Any],
    *,
    dev: torch.device,
    epochs: int,
    optimizer: OptimizerFactory | None,
    scheduler: SchedulerFactory | None,
    eval_loader: Iterable[Any] | None,
    callback: Callback | None,
    progress: bool | None,
    checkpoint: str | os.PathLike[str] | None,
    resume: bool,
    config: dict[str, Any],
) -> Any:
    """The training loop shared by every :func:`distill` method; returns the runner's history.

    ``teacher_inputs(x)`` gives ``(teacher_logits, teacher_feature, teacher_factor)`` for the batch
    (all ``None`` for ``ce``).
    """
    wrapped = maybe_ddp(bundle, dev)
    opt = (optimizer or sgd(0.1))(p_ for p_ in bundle.parameters() if p_.requires_grad)
    sch = (scheduler or default_scheduler(epochs))(opt)
    runner = EpochRunner(
        name="distill",
        modules={"bundle": bundle},
        optimizers={"student": opt},
        schedulers={"student": sch},
        epochs=epochs,
        callback=callback,
        progress=progress,
        checkpoint=checkpoint,
        resume=resume,
        config=config,
    )

    def step(batch: Any) -> dict[str, float]:
        x, y = to_device(batch, dev)
        terms = wrapped(x, y, *teacher_inputs(x))
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def evaluate() -> dict[str, float]:
        assert eval_loader is not None  # only called when given
        return {"val_acc": accuracy(bundle.student, eval_loader, dev)}

    runner.run(loader, step, evaluate if eval_loader is not None else None)
    return runner.history
