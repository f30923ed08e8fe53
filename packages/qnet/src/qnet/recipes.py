"""Own-loop training and evaluation recipes (fine-tuning with a temperature schedule, checkpoints, DDP)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_iterable, check_module, check_path
from ._dist import average_bn_stats, barrier, is_rank0, world_size
from .checkpoint import load_checkpoint, save_checkpoint
from .convert import TemperatureSchedule, _unwrap

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "train"]


def _progress(it: Iterable[Any], progress: bool | None, desc: str, total: int | None) -> Iterable[Any]:
    show = (sys.stderr.isatty() if progress is None else progress) and is_rank0()
    if not show:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=False)


def _is_ddp(model: nn.Module) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel) and world_size() > 1


def _xy(batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    if isinstance(batch, dict):
        return batch["image"].to(device), batch["label"].to(device)
    x, y = batch[0], batch[1]
    return x.to(device), torch.as_tensor(y).to(device)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[Any], *, device: torch.device | str | None = None
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` in eval mode (hard quantizers).

    With a ``DistributedDataParallel`` model (and ``loader`` sharded, e.g. by a ``DistributedSampler``)
    the counts are summed over the ranks, so every rank returns the metrics of the whole data.

    Args:
        model: a classifier (plain, DDP or compiled).
        loader: batches of ``(images, labels)``.
        device: device (default: the model's).

    Returns:
        ``{"accuracy": in [0, 1], "loss": float, "n": int}``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``loader`` is not an iterable of batches.
        ValueError: ``loader`` yielded no sample.
    """
    check_module(model, "model", fn="evaluate")
    check_iterable(loader, "loader", fn="evaluate")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval()
    correct = total = 0
    loss = 0.0
    for batch in loader:
        x, y = _xy(batch, dev)
        out = model(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        total += int(y.numel())
    model.train(was)
    if _is_ddp(model):
        sums = torch.tensor([float(correct), loss, float(total)], dtype=torch.float64, device=dev)
        torch.distributed.all_reduce(sums)
        correct, loss, total = int(sums[0]), float(sums[1]), int(sums[2])
    if total == 0:
        raise ValueError("evaluate: 'loader' yielded no sample")
    return {"accuracy": correct / max(total, 1), "loss": loss / max(total, 1), "n": total}


def train(
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    epochs: int,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    quantizer_lr: float | None = None,
    milestones: tuple[int, ...] = (),
    temperature: TemperatureSchedule | Sequence[TemperatureSchedule] | None = None,
    grad_clip: float | None = 5.0,
    quantizer_grad_clip: float | None = 5.0,
    eval_loader: Iterable[Any] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
    max_steps: int | None = None,
    sync_bn_stats: bool = True,
) -> list[dict[str, Any]]:
    """Fine-tune a (converted) classifier with SGD as in the paper (Sec. 4.1).

    Network weights use SGD with momentum and weight decay, step-decayed by 10x at ``milestones``; quantizer
    parameters (``alpha``, ``beta``, thresholds) use their own learning rate and no weight decay; gradients of
    network weights are clipped to L2 norm ``grad_clip``. ``temperature.step()`` is called after every epoch
    (or every step when the schedule has ``steps_per_epoch``).

    Distributed training: wrap the converted model in ``DistributedDataParallel`` yourself (after
    :func:`~qnet.quantize` / :func:`~qnet.calibrate` / :func:`~qnet.set_phase`, since DDP registers the
    trainable parameters when it wraps) and shard ``train_loader`` with a ``DistributedSampler`` (its
    ``set_epoch`` is called here). After each epoch the BatchNorm running statistics are averaged over the
    ranks (``sync_bn_stats``), so every rank holds the same model; rank 0 alone writes the checkpoint and
    the others wait for it.

    Args:
        model: the model (plain, DDP or compiled).
        train_loader: batches of ``(images, labels)``.
        epochs: number of epochs.
        lr: learning rate of the network weights.
        momentum: SGD momentum.
        weight_decay: weight decay of the network weights.
        quantizer_lr: learning rate of the quantizer parameters (default ``lr``).
        milestones: epochs at which both learning rates are divided by 10.
        temperature: a temperature schedule, several (e.g. one for weights and a slower one for
            activations), or ``None`` to leave temperatures alone.
        grad_clip: max L2 norm of network-weight gradients, or ``None``.
        quantizer_grad_clip: max L2 norm of the quantizer-parameter gradients (clipped on their own:
            ``dL/dbeta`` sums over every element of a tensor and is scaled by ``T``), or ``None``.
        eval_loader: evaluated after each epoch when given.
        checkpoint: path written (atomically) after each epoch.
        resume: continue from ``checkpoint`` if it exists (model, optimizer, schedule, epoch).
        callback: called with each epoch's record.
        progress: tqdm bar; ``None`` shows it only on a TTY.
        device: training device (default: the model's).
        max_steps: stop after this many optimizer steps in total (smoke runs).
        sync_bn_stats: with a DDP model, average BatchNorm running statistics over the ranks after each
            epoch (each rank updated them on its own batches).

    Returns:
        One record per epoch: ``{"epoch", "train_loss", "train_accuracy", "temperature" (list, one value
        per schedule at the epoch's start), "step", ...eval metrics}``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, a loader is not an iterable of batches,
            ``temperature`` holds something other than :class:`~qnet.TemperatureSchedule`, or ``checkpoint``
            is not a path.
        ValueError: ``epochs < 1``, a non-positive learning rate or ``max_steps``, ``resume`` without a
            ``checkpoint``, or an epoch in which ``train_loader`` yielded no batch.
    """
    fn = "train"
    check_module(model, "model", fn=fn)
    check_iterable(train_loader, "train_loader", fn=fn)
    if eval_loader is not None:
        check_iterable(eval_loader, "eval_loader", fn=fn)
    if checkpoint is not None:
        check_path(checkpoint, "checkpoint", fn=fn)
    if resume and checkpoint is None:
        raise ValueError(f"{fn}: 'resume=True' needs a 'checkpoint' path; got checkpoint=None")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"{fn}: 'epochs' must be an int >= 1; got {epochs!r}")
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise ValueError(f"{fn}: 'max_steps' must be an int >= 1 or None; got {max_steps!r}")
    if not lr > 0 or (quantizer_lr is not None and not quantizer_lr > 0):
        raise ValueError(f"train: learning rates must be > 0; got lr={lr}, quantizer_lr={quantizer_lr}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    inner = _unwrap(model)
    if temperature is None:
        scheds: list[TemperatureSchedule] = []
    elif isinstance(temperature, TemperatureSchedule):
        scheds = [temperature]
    else:
        if not hasattr(temperature, "__iter__"):
            raise TypeError(
                f"{fn}: 'temperature' must be a TemperatureSchedule, a sequence of them or None; "
                f"got {type(temperature).__name__}"
            )
        scheds = list(temperature)
        bad = [type(t).__name__ for t in scheds if not isinstance(t, TemperatureSchedule)]
        if bad:
            raise TypeError(f"{fn}: 'temperature' must hold TemperatureSchedule objects; got {bad[:3]}")
    qparams: list[nn.Parameter] = []
    nparams: list[nn.Parameter] = []
    for name, p in inner.named_parameters():
        if not p.requires_grad:
            continue
        (qparams if "quantizer." in name else nparams).append(p)
    groups: list[dict[str, Any]] = [{"params": nparams, "weight_decay": weight_decay, "lr": lr}]
    if qparams:
        groups.append({"params": qparams, "weight_decay": 0.0, "lr": quantizer_lr or lr})
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=0.1)
    start_epoch, step = 0, 0
    history: list[dict[str, Any]] = []
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        ck = load_checkpoint(checkpoint)
        inner.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        for sch, st in zip(scheds, ck.get("temperature") or []):
            sch.load_state_dict(st)
        start_epoch, step = int(ck["epoch"]) + 1, int(ck.get("step", 0))
        history = list(ck.get("metrics", []))
        logger.info("train: resumed from %s at epoch %d", checkpoint, start_epoch)
    for epoch in range(start_epoch, epochs):
        model.train()
        tot_loss, tot_correct, tot_n = 0.0, 0, 0
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # type: ignore[union-attr]
        t_epoch = [sch.value for sch in scheds]
        for batch in _progress(train_loader, progress, f"epoch {epoch}", None):
            x, y = _xy(batch, dev)
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(nparams, grad_clip)
            if quantizer_grad_clip is not None and qparams:
                torch.nn.utils.clip_grad_norm_(qparams, quantizer_grad_clip)
            opt.step()
            step += 1
            for sch in scheds:
                if sch.steps_per_epoch is not None:
                    sch.step()
            tot_loss += float(loss.detach()) * y.numel()
            tot_correct += int((out.detach().argmax(1) == y).sum())
            tot_n += int(y.numel())
            logger.debug("epoch %d step %d loss %.4f", epoch, step, float(loss.detach()))
            if max_steps is not None and step >= max_steps:
                break
        if tot_n == 0:
            raise ValueError(f"{fn}: 'train_loader' yielded no batch in epoch {epoch}")
        sched.step()
        if sync_bn_stats and _is_ddp(model):
            average_bn_stats(inner)
        rec: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": tot_loss / max(tot_n, 1),
            "train_accuracy": tot_correct / max(tot_n, 1),
            "temperature": t_epoch,
            "step": step,
        }
        for sch in scheds:
            if sch.steps_per_epoch is None:
                sch.step()
        if eval_loader is not None:
            rec.update({f"eval_{k}": v for k, v in evaluate(model, eval_loader, device=dev).items()})
        history.append(rec)
        logger.info("train: %s", rec)
        if callback is not None:
            callback(rec)
        if checkpoint is not None and is_rank0():
            save_checkpoint(
                checkpoint,
                inner,
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                temperature=[sch.state_dict() for sch in scheds],
                epoch=epoch,
                step=step,
                metrics=history,
            )
        if _is_ddp(model):
            barrier()  # rank 0 may be writing a checkpoint the others resume from
        if max_steps is not None and step >= max_steps:
            break
    return history
