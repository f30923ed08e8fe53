"""Training recipes: factor auto-encoder, single-teacher distillation (CE/KD/AT/FT and IE variants), mutual learning.

They are conveniences around the losses in :mod:`iekd.functional` / :mod:`iekd.nn`, which work in any loop.
Each recipe takes optimizer/scheduler factories, reports per-epoch metrics through ``callback``, shows a
tqdm bar on a TTY (``progress=None``), checkpoints atomically after every epoch when ``checkpoint`` is given,
resumes with ``resume=True``, and wraps the trained modules in ``DistributedDataParallel`` when a process
group with several ranks is initialised (give the loader a ``DistributedSampler``).
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, Literal, overload

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as IF
from .._checks import check_choice, check_int, check_number
from ..hooks import FeatureTap, unwrap_model
from ..nn import FactorAutoencoder, InheritExploreLoss, OFDLoss, Translator, inherit_channel_count
from ._loop import (
    Callback,
    EpochRunner,
    OptimizerFactory,
    SchedulerFactory,
    TrainResult,
    accuracy,
    check_run_args,
    default_scheduler,
    maybe_ddp,
    multistep,
    resolve_device,
    sgd,
    to_device,
)

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "TrainResult", "distill", "multistep", "mutual", "sgd", "train_factor"]

METHODS = ("ce", "kd", "at", "ft", "ofd", "ie-kd", "ie-at", "ie-ft", "ie-ofd")
Method = Literal["ce", "kd", "at", "ft", "ofd", "ie-kd", "ie-at", "ie-ft", "ie-ofd"]


class _Frozen(nn.Module):
    """Holds a module with no trainable parameters that always runs in eval mode (BatchNorm statistics fixed)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(False)

    def forward(self, *args: Any) -> Any:
        return self.inner(*args)


def _check_module(value: Any, name: str, fn: str) -> None:
    if not isinstance(value, nn.Module):
        raise TypeError(f"{fn}: '{name}' must be a torch.nn.Module; got {type(value).__name__}")


def _check_ie_args(
    fn: str,
    split: Any,
    inherit_weight: Any,
    explore_weight: Any,
    explore_encoder: Any,
    p: Any,
    factor_rate: Any,
) -> None:
    """Validate the IE hyper-parameters up front, before any factor or student training."""
    if isinstance(split, bool) or not isinstance(split, (int, float)):
        raise TypeError(
            f"{fn}: 'split' must be a float ratio or an int channel count; got {type(split).__name__}"
        )
    if isinstance(split, int):
        check_int(split, "split", fn=fn, low=1)
    elif not 0.0 < split < 1.0:
        raise ValueError(f"{fn}: 'split' as a ratio must lie in (0, 1); got {split!r}")
    check_number(inherit_weight, "inherit_weight", fn=fn, low=0.0)
    check_number(explore_weight, "explore_weight", fn=fn, low=0.0)
    check_choice(explore_encoder, "explore_encoder", ("frozen", "trainable"), fn=fn)
    check_choice(p, "p", (1, 2), fn=fn)
    check_number(factor_rate, "factor_rate", fn=fn, low=0.0, strict=True)


def _feature_layer(
    model: nn.Module, layer: str | None, fn: str, arg: str, attr: str = "feature_layer"
) -> str:
    if layer is not None:
        return layer
    name = getattr(unwrap_model(model), attr, None)
    if not isinstance(name, str):
        raise ValueError(
            f"{fn}: '{arg}' is required for {type(unwrap_model(model)).__name__} (it has no '{attr}'); "
            "pass the name of the submodule whose output is distilled"
        )
    return name


def _teacher_bn(teacher: nn.Module, name: str | None, fn: str) -> nn.Module:
    """The teacher's BatchNorm whose parameters give OFD's margin (``ofd_margin="bn"``)."""
    if name is None:
        name = getattr(teacher, "pre_relu_bn", None)
        if not isinstance(name, str):
            raise ValueError(
                f"{fn}: 'teacher_bn' is required with ofd_margin='bn' for {type(teacher).__name__} (it has no "
                "'pre_relu_bn'); name the BatchNorm2d before the distilled ReLU, or use ofd_margin='data'"
            )
    modules = dict(teacher.named_modules())
    if name not in modules:
        close = difflib.get_close_matches(name, list(modules), n=3)
        raise ValueError(f"{fn}: teacher has no module {name!r} ('teacher_bn'); close matches: {close}")
    bn = modules[name]
    if not isinstance(bn, nn.BatchNorm2d) or not bn.affine:
        raise ValueError(
            f"{fn}: 'teacher_bn' {name!r} must be an affine nn.BatchNorm2d; got {type(bn).__name__}"
        )
    return bn


@torch.no_grad()
def _data_margin(teacher: nn.Module, layer: str, loader: Iterable[Any], device: torch.device) -> torch.Tensor:
    """OFD margin ``E[x | x < 0]`` per channel of the teacher's ``layer`` over one pass of ``loader``."""
    neg: torch.Tensor | None = None
    count: torch.Tensor | None = None
    with FeatureTap(teacher, layer) as tap:
        for batch in loader:
            x, _ = to_device(batch, device)
            teacher(x)
            f = tap[layer].detach()
            n_b = f.clamp(max=0.0).sum(dim=(0, 2, 3))
            c_b = (f < 0).sum(dim=(0, 2, 3))
            neg = n_b if neg is None else neg + n_b
            count = c_b if count is None else count + c_b
    assert neg is not None and count is not None
    count = count.to(neg.dtype)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(neg)  # every rank saw its own shard: pool them so that all ranks share one margin
        dist.all_reduce(count)
    return torch.where(count > 0, neg / count.clamp_min(1.0), torch.zeros_like(neg))


@overload
def _probe(
    model: nn.Module,
    tap: FeatureTap,
    layer: str,
    loader: Iterable[Any],
    device: torch.device,
    with_output: Literal[False] = False,
    *,
    fn: str = "recipes",
) -> torch.Tensor: ...


@overload
def _probe(
    model: nn.Module,
    tap: FeatureTap,
    layer: str,
    loader: Iterable[Any],
    device: torch.device,
    with_output: Literal[True],
    *,
    fn: str = "recipes",
) -> tuple[torch.Tensor, torch.Tensor]: ...


def _probe(
    model: nn.Module,
    tap: FeatureTap,
    layer: str,
    loader: Iterable[Any],
    device: torch.device,
    with_output: bool = False,
    *,
    fn: str = "recipes",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """One no-grad eval-mode forward on the first batch to learn a tapped feature's (and the output's) shape."""
    batch = next(iter(loader), None)
    if batch is None:
        raise ValueError(f"{fn}: 'loader' yields no batch; give it at least one batch")
    x, _ = to_device(batch, device)
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(x[:2])
    model.train(was)
    feat = tap[layer]
    if feat.dim() != 4:
        raise ValueError(
            f"{fn}: layer {layer!r} must output (B, C, H, W) feature maps; got {tuple(feat.shape)}"
        )
    if with_output:
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"{fn}: the network must return a logits tensor; got {type(out).__name__}")
        return feat, out
    return feat


def train_factor(
    teacher: nn.Module,
    loader: Iterable[Any],
    layer: str | None = None,
    *,
    rate: float = 0.5,
    p: int = 1,
    epochs: int = 30,
    factor: FactorAutoencoder | None = None,
    optimizer: OptimizerFactory | None = None,
    scheduler: SchedulerFactory | None = None,
    device: torch.device | str | None = None,
    callback: Callback | None = None,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> FactorAutoencoder:
    """Train the teacher's factor auto-encoder on frozen teacher features (IE-KD Step A).

    The teacher runs in eval mode under ``no_grad``; only the auto-encoder learns, with
    :func:`iekd.functional.reconstruction_loss`. Defaults follow the authors' code: 30 epochs of SGD at a
    constant lr 0.1 (momentum 0.9, Nesterov, wd 5e-4), L1 reconstruction, rate 0.5.

    Args:
        teacher: the pre-trained teacher (not modified).
        loader: yields ``(images, labels)`` batches (labels unused).
        layer: teacher submodule whose output is encoded; ``None``: the model's ``feature_layer``.
        rate: factor rate ``C'/C`` for a new auto-encoder.
        p: reconstruction loss power (1 = L1, authors' code; 2 = MSE).
        epochs: training epochs.
        factor: an existing auto-encoder to keep training (else a new one is built).
        optimizer: optimizer factory (default :func:`sgd` with lr 0.1).
        scheduler: scheduler factory stepped per epoch (default: none, constant lr).
        device: where to train (default: the teacher's device).
        callback: called with each epoch's metrics dict (``epoch``, ``rec``, ``lr``).
        progress: tqdm bar (``None``: only on a TTY).
        checkpoint: path written atomically after every epoch.
        resume: continue from ``checkpoint`` if it exists.

    Returns:
        The trained :class:`iekd.FactorAutoencoder` (in eval mode).

    Raises:
        TypeError: ``teacher`` is not an ``nn.Module``, ``factor`` not a ``FactorAutoencoder``, ``loader`` not
            iterable, a non-callable ``optimizer``/``scheduler``/``callback``, or a hyper-parameter of the wrong
            type.
        ValueError: ``rate <= 0``, ``p`` not 1 or 2, ``epochs < 0``, ``resume=True`` without ``checkpoint``, an
            empty ``loader``, or a layer that does not exist / does not output ``(B, C, H, W)`` maps; all raised
            before any training.
    """
    fn = "train_factor"
    _check_module(teacher, "teacher", fn)
    if factor is not None and not isinstance(factor, FactorAutoencoder):
        raise TypeError(
            f"{fn}: 'factor' must be an iekd.FactorAutoencoder or None; got {type(factor).__name__}"
        )
    check_number(rate, "rate", fn=fn, low=0.0, strict=True)
    check_choice(p, "p", (1, 2), fn=fn)
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
    dev = resolve_device(device, teacher)
    teacher = teacher.to(dev).eval()
    layer = _feature_layer(teacher, layer, fn, "layer")
    with FeatureTap(teacher, layer) as tap:
        feat = _probe(teacher, tap, layer, loader, dev, fn=fn)
        if factor is None:
            factor = FactorAutoencoder(int(feat.shape[1]), rate, device=dev, dtype=feat.dtype)
        elif factor.in_channels != feat.shape[1]:
            raise ValueError(
                f"{fn}: 'factor' expects {factor.in_channels} channels but layer {layer!r} gives {feat.shape[1]}"
            )
        factor.to(dev)
        wrapped = maybe_ddp(factor, dev)
        opt = (optimizer or sgd(0.1))(factor.parameters())
        sch = scheduler(opt) if scheduler is not None else None
        runner = EpochRunner(
            name=fn,
            modules={"factor": factor},
            optimizers={"factor": opt},
            schedulers={"factor": sch},
            epochs=epochs,
            callback=callback,
            progress=progress,
            checkpoint=checkpoint,
            resume=resume,
            config={"in_channels": factor.in_channels, "rate": factor.rate, "layer": layer},
        )

        def step(batch: Any) -> dict[str, float]:
            x, _ = to_device(batch, dev)
            with torch.no_grad():
                teacher(x)
            f_t = tap[layer].detach()
            out = wrapped(f_t)
            loss = IF.reconstruction_loss(out.reconstruction, f_t, p=p)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"rec": float(loss.detach())}

        runner.run(loader, step)
    return factor.eval()


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

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        t_logits: torch.Tensor | None,
        t_feat: torch.Tensor | None,
        t_factor: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        hp, m = self.hp, self.method
        logits = self.student(x)
        ce = F.cross_entropy(logits, y)
        terms: dict[str, torch.Tensor] = {"ce": ce}
        if m == "ce" or self.tap is None or self.layer is None:
            terms["total"] = ce
            terms["correct"] = (logits.detach().argmax(1) == y).float().mean()
            return terms
        f_s = self.tap[self.layer]
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
    inherit_weight: float = 50.0,
    explore_weight: float = 50.0,
    split: float | int = 0.5,
    split_mode: Literal["natural", "random"] = "natural",
    explore_encoder: Literal["frozen", "trainable"] = "frozen",
    ie_at: Literal["additive", "native"] = "additive",
    ie_ofd: Literal["additive", "native"] = "additive",
    ofd_margin: Literal["bn", "data"] = "bn",
    teacher_bn: str | None = None,
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
        student: the network to train (returns logits).
        teacher: the frozen teacher (returns logits); ``None`` is allowed only with ``method="ce"``.
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
        inherit_weight: ``w_inh`` (50, the paper's best).
        explore_weight: ``w_exp`` (50).
        split: inheritance share of the student channels (0.5).
        split_mode: ``"natural"`` or ``"random"`` channel split.
        explore_encoder: ``"frozen"`` (collapse guard, default) or ``"trainable"`` (authors' code).
        ie_at: how IE wraps AT (see above); a reconstruction, see the README's Deviations.
        ie_ofd: how IE wraps OFD (see above); a reconstruction, see the README's Deviations.
        ofd_margin: ``"bn"`` (Gaussian margin from the teacher's BatchNorm, the OFD code) or ``"data"``
            (empirical ``E[x | x < 0]`` per channel over ``loader``).
        teacher_bn: the teacher's BatchNorm before the distilled ReLU (``ofd_margin="bn"``; default: the teacher's
            ``pre_relu_bn``).
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
    if method in ("at", "ie-at") and f_s.shape[2:] != f_t.shape[2:]:
        raise ValueError(
            f"{fn}: AT needs equal spatial sizes; student layer {s_layer!r} gives {tuple(f_s.shape)}, "
            f"teacher layer {t_layer!r} gives {tuple(f_t.shape)}"
        )
    if needs_factor and f_s.shape[2:] != f_t.shape[2:]:  # the factor auto-encoder keeps the spatial size
        raise ValueError(
            f"{fn}: student layer {s_layer!r} gives {tuple(f_s.shape)} but teacher layer {t_layer!r} gives "
            f"{tuple(f_t.shape)}; the factor methods need equal spatial sizes"
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
            ft_shape = factor.encode(f_t).shape
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
    config = {"method": method, "student_layer": s_layer, "teacher_layer": t_layer, **hp}

    def teacher_inputs(x: torch.Tensor) -> tuple[Any, Any, Any]:
        t_factor = None
        with torch.no_grad():
            t_logits = teacher(x)
            t_feat = t_tap[t_layer]
            if factor is not None and needs_factor:
                t_factor = factor.encode(t_feat)
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


class _MutualNet(nn.Module):
    """One DML network + (for IE-DML) its online factor auto-encoder and its IE loss head."""

    def __init__(self, net: nn.Module, layer: str, heads: nn.ModuleDict, hp: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.heads = heads
        self.layer = layer
        self.hp = hp
        self.tap = FeatureTap(net, layer)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, peer_logits: torch.Tensor, peer_factor: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        f = self.tap[self.layer]
        ce = F.cross_entropy(logits, y)
        kl = IF.dml_loss(logits, peer_logits, temperature=self.hp["temperature"])
        terms = {"ce": ce, "kl": kl}
        total = ce + self.hp["kl_weight"] * kl
        if "ae" in self.heads:
            out = self.heads["ae"](f.detach())
            terms["rec"] = IF.reconstruction_loss(out.reconstruction, f.detach(), p=self.hp["p"])
            total = total + terms["rec"]
        if peer_factor is not None:
            ie = self.heads["ie"](f, peer_factor)
            terms["inherit"], terms["explore"] = ie.inherit, ie.explore
            total = total + ie.total
        terms["total"] = total
        return terms

    @torch.no_grad()
    def peer_view(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This network's logits and the "teacher factor" it offers its peer (``None`` without IE)."""
        logits = self.net(x)
        ae = self.heads["ae"] if "ae" in self.heads else None
        if isinstance(ae, FactorAutoencoder):
            return logits, ae.encode(self.tap[self.layer])
        if self.hp.get("ie_factor") == "feature":
            return logits, self.tap[self.layer]
        return logits, None


def mutual(
    net_a: nn.Module,
    net_b: nn.Module,
    loader: Iterable[Any],
    *,
    ie: bool = False,
    layer_a: str | None = None,
    layer_b: str | None = None,
    epochs: int = 200,
    kl_weight: float = 1.0,
    temperature: float = 1.0,
    factor_rate: float = 0.5,
    inherit_weight: float = 50.0,
    explore_weight: float = 50.0,
    split: float | int = 0.5,
    explore_encoder: Literal["frozen", "trainable"] = "frozen",
    ie_factor: Literal["online", "feature"] = "online",
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
    """Deep Mutual Learning of two networks, or its IE variant (IE-DML) with ``ie=True``.

    Per batch (as in the authors' ``processors/DML.py``): forward both, update A with
    ``CE + kl_weight * KL(p_B || p_A)``, then re-forward both and update B symmetrically.

    IE-DML (a reconstruction; the paper's wiring is not available): each network owns a factor auto-encoder
    trained online on its own detached feature (reconstruction loss added to its update) and an
    :class:`iekd.InheritExploreLoss` head; network A's loss adds ``IE(f_A, F_B)`` where ``F_B`` is B's current
    factor (detached), and symmetrically for B. Both networks thus inherit from and explore away from each other.
    ``ie_factor="feature"`` is the alternative reading: no auto-encoders, the peer's raw (detached) feature plays
    the teacher factor, and the IE encoders map each half to the peer's channel count.

    Args:
        net_a: first network (returns logits).
        net_b: second network (returns logits; same number of classes).
        loader: training batches ``(images, labels)``.
        ie: add the IE terms (IE-DML).
        layer_a: distilled submodule of ``net_a`` (default: its ``feature_layer``).
        layer_b: distilled submodule of ``net_b``.
        epochs: epochs (authors' DML configs: 200).
        kl_weight: mimicry weight (1, as in the authors' ResNet-56/20 DML config).
        temperature: softmax temperature of the mimicry term.
        factor_rate: factor rate of the online auto-encoders (IE-DML).
        inherit_weight: ``w_inh``.
        explore_weight: ``w_exp``.
        split: inheritance share of the channels.
        explore_encoder: ``"frozen"`` or ``"trainable"``.
        ie_factor: what each network offers its peer as the "teacher factor" in IE-DML: ``"online"`` (default,
            the code of an auto-encoder trained online on its own feature) or ``"feature"`` (its raw feature).
        p: distance / reconstruction power.
        optimizer: optimizer factory, one optimizer per network (default :func:`sgd` lr 0.1).
        scheduler: scheduler factory (default: x0.1 at 50% and 75% of ``epochs``).
        eval_loader: held-out batches; adds ``val_acc_a``/``val_acc_b`` each epoch.
        device: where to train (default: ``net_a``'s device).
        callback: called with each epoch's metrics dict.
        progress: tqdm bar (``None``: only on a TTY).
        checkpoint: path written atomically after every epoch.
        resume: continue from ``checkpoint`` if it exists.

    Returns:
        :class:`TrainResult` with ``model = net_a``, ``extras["peer"] = net_b`` and the IE heads.

    Raises:
        TypeError: a network is not an ``nn.Module``, ``ie`` is not a bool, ``loader`` is not iterable,
            ``optimizer``/``scheduler``/``callback`` is not callable, or a hyper-parameter has the wrong type.
        ValueError: ``net_a is net_b``, out-of-range hyper-parameters (negative weights or epochs,
            ``temperature <= 0``, ``p`` not 1 or 2, bad ``split``/``explore_encoder``/``ie_factor``),
            ``resume=True`` without ``checkpoint``, an empty ``loader``, networks whose logits
            differ in class count, or features that do not fit (spatial sizes, a ``split`` too large for a
            network's channels). All are raised before any training (shapes from one no-grad eval-mode probe of
            both networks on the first batch).
    """
    fn = "mutual"
    _check_module(net_a, "net_a", fn)
    _check_module(net_b, "net_b", fn)
    if net_a is net_b:
        raise ValueError(
            f"{fn}: 'net_a' and 'net_b' must be two different networks; got the same object twice"
        )
    if not isinstance(ie, bool):
        raise TypeError(f"{fn}: 'ie' must be a bool; got {type(ie).__name__}")
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
    check_number(kl_weight, "kl_weight", fn=fn, low=0.0)
    check_number(temperature, "temperature", fn=fn, low=0.0, strict=True)
    _check_ie_args(fn, split, inherit_weight, explore_weight, explore_encoder, p, factor_rate)
    check_choice(ie_factor, "ie_factor", ("online", "feature"), fn=fn)
    dev = resolve_device(device, net_a)
    net_a = unwrap_model(net_a).to(dev)
    net_b = unwrap_model(net_b).to(dev)
    la = _feature_layer(net_a, layer_a, fn, "layer_a")
    lb = _feature_layer(net_b, layer_b, fn, "layer_b")
    hp = {"kl_weight": kl_weight, "temperature": temperature, "p": p, "ie_factor": ie_factor if ie else None}
    heads_a, heads_b = nn.ModuleDict(), nn.ModuleDict()
    # One no-grad probe of both networks on the first batch: every shape check runs before training.
    with FeatureTap(net_a, la) as ta, FeatureTap(net_b, lb) as tb:
        fa, za = _probe(net_a, ta, la, loader, dev, with_output=True, fn=fn)
        fb, zb = _probe(net_b, tb, lb, loader, dev, with_output=True, fn=fn)
    if za.dim() != 2 or zb.dim() != 2 or za.shape[1] != zb.shape[1]:
        raise ValueError(
            f"{fn}: 'net_a' and 'net_b' must output logits (B, K) with the same number of classes K; "
            f"got {tuple(za.shape)} and {tuple(zb.shape)}"
        )
    if ie:
        if fa.shape[2:] != fb.shape[2:]:
            raise ValueError(
                f"{fn}: IE-DML needs equal spatial sizes; layer {la!r} gives {tuple(fa.shape)}, "
                f"layer {lb!r} gives {tuple(fb.shape)}"
            )
        inherit_channel_count(split, int(fa.shape[1]), fn=f"{fn} (net_a)")
        inherit_channel_count(split, int(fb.shape[1]), fn=f"{fn} (net_b)")
        kw: dict[str, Any] = {"device": dev, "dtype": fa.dtype}
        if ie_factor == "online":
            ae_a = FactorAutoencoder(int(fa.shape[1]), factor_rate, **kw)
            ae_b = FactorAutoencoder(int(fb.shape[1]), factor_rate, **kw)
            heads_a["ae"], heads_b["ae"] = ae_a, ae_b
            ch_a, ch_b = ae_a.factor_channels, ae_b.factor_channels  # the factor each network offers
        else:
            ch_a, ch_b = int(fa.shape[1]), int(fb.shape[1])
        ie_kw: dict[str, Any] = {
            "split": split,
            "inherit_weight": inherit_weight,
            "explore_weight": explore_weight,
            "p": p,
            "explore_encoder": explore_encoder,
            **kw,
        }
        heads_a["ie"] = InheritExploreLoss(int(fa.shape[1]), ch_b, layer=la, **ie_kw)
        heads_b["ie"] = InheritExploreLoss(int(fb.shape[1]), ch_a, layer=lb, **ie_kw)
    a = _MutualNet(net_a, la, heads_a, hp)
    b = _MutualNet(net_b, lb, heads_b, hp)
    wa, wb = maybe_ddp(a, dev), maybe_ddp(b, dev)
    make_opt = optimizer or sgd(0.1)
    opt_a = make_opt(q for q in a.parameters() if q.requires_grad)
    opt_b = make_opt(q for q in b.parameters() if q.requires_grad)
    make_sch = scheduler or default_scheduler(epochs)
    runner = EpochRunner(
        name=fn,
        modules={"a": a, "b": b},
        optimizers={"a": opt_a, "b": opt_b},
        schedulers={"a": make_sch(opt_a), "b": make_sch(opt_b)},
        epochs=epochs,
        callback=callback,
        progress=progress,
        checkpoint=checkpoint,
        resume=resume,
        config={"ie": ie, "layer_a": la, "layer_b": lb, **hp},
    )

    def step(batch: Any) -> dict[str, float]:
        x, y = to_device(batch, dev)
        out: dict[str, float] = {}
        for wme, peer, opt, tag in ((wa, b, opt_a, "a"), (wb, a, opt_b, "b")):
            peer_logits, peer_factor = peer.peer_view(x)
            terms = wme(x, y, peer_logits, peer_factor if ie else None)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            out.update({f"{k}_{tag}": float(v.detach()) for k, v in terms.items()})
        return out

    def evaluate() -> dict[str, float]:
        assert eval_loader is not None
        return {
            "val_acc_a": accuracy(net_a, eval_loader, dev),
            "val_acc_b": accuracy(net_b, eval_loader, dev),
        }

    try:
        runner.run(loader, step, evaluate if eval_loader is not None else None)
    finally:
        a.tap.remove()
        b.tap.remove()
    extras: dict[str, nn.Module] = {"peer": net_b}
    for k, v in heads_a.items():
        extras[f"{k}_a"] = v
    for k, v in heads_b.items():
        extras[f"{k}_b"] = v
    return TrainResult(net_a, runner.history, extras)
