"""Shared machinery of the training recipes: optimiser factories, epoch loop, checkpoint/resume, progress."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..hooks import unwrap_model

logger = logging.getLogger("iekd.recipes")

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
Callback = Callable[[dict[str, Any]], None]


def sgd(
    lr: float = 0.1, *, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True
) -> OptimizerFactory:
    """Optimizer factory for the paper's SGD (momentum 0.9, Nesterov, weight decay 5e-4).

    Args:
        lr: learning rate.
        momentum: momentum.
        weight_decay: L2 weight decay.
        nesterov: Nesterov momentum.

    Returns:
        A callable ``params -> torch.optim.SGD``.
    """

    def make(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            list(params), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )

    return make


def multistep(milestones: list[int], gamma: float = 0.1) -> SchedulerFactory:
    """Scheduler factory: ``MultiStepLR`` stepped once per epoch (the paper: x0.1 at epochs 80 and 120 of 160).

    Args:
        milestones: epochs at which the learning rate is multiplied by ``gamma``.
        gamma: the factor.

    Returns:
        A callable ``optimizer -> MultiStepLR``.
    """

    def make(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)

    return make


def default_scheduler(epochs: int) -> SchedulerFactory:
    """x0.1 at 50% and 75% of the epochs (80/120 of 160, the paper's schedule)."""
    return multistep([max(1, epochs // 2), max(1, (3 * epochs) // 4)])


@dataclass
class TrainResult:
    """What a recipe returns.

    Attributes:
        model: the trained network (unwrapped), or for :func:`mutual` the first network.
        history: one metrics dict per epoch (``epoch``, mean losses, ``val_acc`` if evaluated).
        extras: auxiliary trained modules (translators, IE encoders, auto-encoders, the peer network).
    """

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, nn.Module] = field(default_factory=dict)


def is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def maybe_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``module`` in DistributedDataParallel when a process group with several ranks is running."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if not any(p.requires_grad for p in module.parameters()):
            return module
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)
    return module


def sync_buffers(module: nn.Module) -> None:
    """Make every rank hold the same buffers (BatchNorm running statistics) after an epoch.

    DDP all-reduces gradients, so parameters agree, but each rank's forward updates its BatchNorm statistics
    on its own shard. Floating buffers are averaged over the ranks (timm's ``distribute_bn(reduce=True)``), the
    others (``num_batches_tracked``, index buffers) are taken from rank 0. A no-op without a multi-rank group.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    world = dist.get_world_size()
    with torch.no_grad():
        for buf in unwrap_model(module).buffers():
            if buf.is_floating_point() or buf.is_complex():
                dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                buf.div_(world)
            else:
                dist.broadcast(buf, src=0)


def progress_iter(it: Iterable[Any], progress: bool | None, desc: str, total: int | None) -> Iterator[Any]:
    """``tqdm`` over ``it`` when asked (``None``: only on a TTY), rank 0 only."""
    show = sys.stderr.isatty() if progress is None else progress
    if show and is_main_process():
        from tqdm.auto import tqdm

        yield from tqdm(it, desc=desc, total=total, leave=False)
    else:
        yield from it


def safe_len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def check_run_args(
    fn: str,
    *,
    loader: Any,
    optimizer: Any,
    scheduler: Any,
    callback: Any,
    progress: Any,
    checkpoint: Any,
    resume: Any,
) -> None:
    """Validate the arguments every recipe shares, before any work (no iteration of ``loader``).

    An empty sized loader (``len(loader) == 0``) is rejected here; an empty unsized one by the shape probe.
    """
    if not hasattr(loader, "__iter__"):
        raise TypeError(
            f"{fn}: 'loader' must be an iterable of (images, labels) batches; got {type(loader).__name__}"
        )
    if safe_len(loader) == 0:
        raise ValueError(f"{fn}: 'loader' yields no batch (len(loader) == 0); give it at least one batch")
    for name, value, what in (
        ("optimizer", optimizer, "(params -> torch.optim.Optimizer)"),
        ("scheduler", scheduler, "(optimizer -> scheduler)"),
        ("callback", callback, "(metrics dict -> None)"),
    ):
        if value is not None and not callable(value):
            raise TypeError(f"{fn}: '{name}' must be a callable {what} or None; got {type(value).__name__}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"{fn}: 'progress' must be a bool or None; got {type(progress).__name__}")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            f"{fn}: 'checkpoint' must be a path (str or os.PathLike) or None; got {type(checkpoint).__name__}"
        )
    if not isinstance(resume, bool):
        raise TypeError(f"{fn}: 'resume' must be a bool; got {type(resume).__name__}")
    if resume and checkpoint is None:
        raise ValueError(f"{fn}: 'resume=True' needs a 'checkpoint' path")


def to_device(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        got = (
            type(batch).__name__
            if not isinstance(batch, (tuple, list))
            else f"{type(batch).__name__} of {len(batch)}"
        )
        raise ValueError(f"recipes: each batch must be a tuple (images, labels); got {got}")
    x, y = batch[0], batch[1]
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@torch.no_grad()
def logits_of(out: Any, fn: str, who: str) -> torch.Tensor:
    """The logits of a network's output: the tensor itself, or the first item of a ``(logits, ...)`` tuple/list.

    Models that return ``(logits, features)`` (common for distillation-ready networks) work in every recipe;
    the features used for distillation still come from the named layer (``student_layer``/``teacher_layer``).
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(
        f"{fn}: the {who} must return a logits tensor or a (logits, ...) tuple; got {type(out).__name__}"
        + (f" of {[type(o).__name__ for o in out]}" if isinstance(out, (tuple, list)) else "")
    )


def accuracy(model: nn.Module, loader: Iterable[Any], device: torch.device) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``loader``; the model's train/eval mode is restored."""
    was = model.training
    model.eval()
    correct = total = 0
    for batch in loader:
        x, y = to_device(batch, device)
        correct += int((logits_of(model(x), "accuracy", "network").argmax(1) == y).sum())
        total += int(y.numel())
    model.train(was)
    return correct / max(total, 1)


def resolve_device(device: torch.device | str | None, model: nn.Module) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


class EpochRunner:
    """Runs ``epochs`` epochs of ``step(batch) -> dict of float losses`` with checkpoint/resume and callbacks."""

    def __init__(
        self,
        *,
        name: str,
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        schedulers: dict[str, Any],
        epochs: int,
        callback: Callback | None,
        progress: bool | None,
        checkpoint: str | os.PathLike[str] | None,
        resume: bool,
        config: dict[str, Any],
    ) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"{name}: 'epochs' must be an int >= 0; got {epochs!r}")
        if resume and checkpoint is None:
            raise ValueError(f"{name}: 'resume=True' needs a 'checkpoint' path")
        self.name = name
        self.modules = modules
        self.optimizers = optimizers
        self.schedulers = schedulers
        self.epochs = epochs
        self.callback = callback
        self.progress = progress
        self.checkpoint = checkpoint
        self.config = config
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        if resume and checkpoint is not None and os.path.isfile(os.fspath(checkpoint)):
            self._load(os.fspath(checkpoint))

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "modules": {k: unwrap_model(m).state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items() if s is not None},
            "epoch": epoch,
            "history": self.history,
            "rng": torch.get_rng_state(),
            "recipe": self.name,
        }

    def _load(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.get("recipe") != self.name:
            raise ValueError(f"{self.name}: checkpoint {path!r} was written by recipe {ckpt.get('recipe')!r}")
        for k, m in self.modules.items():
            unwrap_model(m).load_state_dict(ckpt["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in self.schedulers.items():
            if s is not None and k in ckpt["schedulers"]:
                s.load_state_dict(ckpt["schedulers"][k])
        self.history = list(ckpt.get("history", []))
        self.start_epoch = int(ckpt["epoch"])
        torch.set_rng_state(ckpt["rng"])
        logger.info("%s: resumed from %s at epoch %d", self.name, path, self.start_epoch)

    def run(
        self,
        loader: Iterable[Any],
        step: Callable[[Any], dict[str, float]],
        evaluate: Callable[[], dict[str, float]] | None = None,
    ) -> list[dict[str, Any]]:
        for epoch in range(self.start_epoch, self.epochs):
            set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
            for m in self.modules.values():
                m.train()
            sums: dict[str, float] = {}
            n = 0
            desc = f"{self.name} {epoch + 1}/{self.epochs}"
            for batch in progress_iter(loader, self.progress, desc, safe_len(loader)):
                losses = step(batch)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                logger.debug("%s epoch %d step %d: %s", self.name, epoch, n, losses)
            for m in self.modules.values():
                sync_buffers(m)
            for s in self.schedulers.values():
                if s is not None:
                    s.step()
            metrics: dict[str, Any] = {"epoch": epoch + 1}
            metrics.update({k: v / max(n, 1) for k, v in sums.items()})
            metrics["lr"] = float(next(iter(self.optimizers.values())).param_groups[0]["lr"])
            if evaluate is not None:
                metrics.update(evaluate())
            self.history.append(metrics)
            logger.info("%s epoch %d/%d: %s", self.name, epoch + 1, self.epochs, metrics)
            if self.callback is not None:
                self.callback(dict(metrics))
            if self.checkpoint is not None:
                save_checkpoint(self.checkpoint, state_dict={}, config=self.config, **self._state(epoch + 1))
        return self.history
