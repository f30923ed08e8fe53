"""Own-loop training recipes for the cascade's four networks, with checkpoints, resume, DDP and tqdm.

One loop (:func:`train`) serves four tasks; each task only defines its loss on a batch of
:class:`~undistort.synth.PortraitPairs` items:

- ``"flow"``: EPE on valid head pixels + ``background_weight`` * EPE on background pixels (target 0)
  + ``tv_weight`` * TV(flow) + ``mask_weight`` * BCE(corrected-head mask).
- ``"distance"``: cross-entropy over log-spaced bins + L1 on ``log d``.
- ``"completion"``: weighted L1 (holes x ``hole_weight``) of the completion of the ground-truth warp,
  plus (by default, ``adversarial_weight=0.01``) a hinge GAN against a global + local (hole-centred)
  patch discriminator, :class:`~undistort.models.CompletionDiscriminator` (the dossier's reconstruction).
- ``"segmentation"``: cross-entropy of head vs rest in the distorted image.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sized
from typing import Any, cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from .._checks import check_positive
from ..checkpoint import clean_state_dict, load_checkpoint, save_checkpoint, unwrap
from ..functional import (
    completion_loss,
    distance_to_bin,
    endpoint_error,
    hinge_discriminator_loss,
    hinge_generator_loss,
    total_variation,
)
from ..models import create_model
from ..synth import collate_pairs
from ..warp import warp

logger = logging.getLogger(__name__)

__all__ = ["TASKS", "evaluate", "task_loss", "train"]

TASKS = ("flow", "distance", "completion", "segmentation")


def _batch_to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _complete(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``(warped, completed)``: the ground-truth warp of the distorted image and the model's completion."""
    warped = warp(batch["distorted"], batch["flow"], padding_mode="border")
    return warped, model(warped, batch["holes"], batch["mask_corrected"])


def _adversarial_step(
    model: nn.Module,
    disc: nn.Module,
    d_opt: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    *,
    hole_weight: float,
    adversarial_weight: float,
) -> tuple[Tensor, dict[str, float]]:
    """One discriminator update, then the completion net's loss (L1 + adversarial term) to back-propagate.

    Real samples are the warped image with the *reference* pixels in the holes, fake ones the completion
    (identical outside the holes), so the discriminator judges only what the completion net paints.
    ``disc`` may be DDP-wrapped: its update runs through the wrapper (gradients all-reduced), while the
    generator term calls the bare module with frozen parameters (no discriminator gradients, no sync).
    """
    warped, pred = _complete(model, batch)
    holes = batch["holes"]
    l1 = completion_loss(pred, batch["corrected"], holes, batch["mask_corrected"], hole_weight=hole_weight)
    hm = holes.to(warped)
    real = warped.detach() * (1 - hm) + batch["corrected"].to(warped) * hm
    b = real.shape[0]
    logits = disc(torch.cat([real, pred.detach()]), torch.cat([holes, holes]))
    d_loss = sum(hinge_discriminator_loss(v[:b], v[b:]) for v in logits.values())
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()  # type: ignore[union-attr]
    d_opt.step()
    bare = unwrap(disc)
    params = [p for p in bare.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        g_logits = bare(pred, holes)
        adv = sum(hinge_generator_loss(v) for v in g_logits.values())
    finally:
        for p in params:
            p.requires_grad_(True)
    loss = l1 + adversarial_weight * adv
    return loss, {
        "loss": float(loss.detach()),
        "l1": float(l1.detach()),
        "adv_g": float(adv.detach()),  # type: ignore[union-attr]
        "d_loss": float(d_loss.detach()),  # type: ignore[union-attr]
    }


def task_loss(
    task: str,
    model: nn.Module,
    batch: dict[str, Tensor],
    *,
    tv_weight: float = 0.01,
    mask_weight: float = 0.1,
    hole_weight: float = 6.0,
    background_weight: float = 0.1,
) -> tuple[Tensor, dict[str, float]]:
    """Loss of one task on one batch (see the module docstring).

    Args:
        task: one of ``TASKS``.
        model: the network of that task (may be DDP-wrapped).
        batch: a collated :class:`~undistort.synth.PortraitPairs` batch on the model's device.
        tv_weight: flow TV weight.
        mask_weight: flow corrected-mask BCE weight.
        hole_weight: completion hole weight.
        background_weight: flow weight of background pixels (zero-flow target).

    Returns:
        ``(loss, metrics)`` with floats for logging (``epe`` for flow, ``abs_rel`` for distance).

    Raises:
        ValueError: unknown task.
    """
    if task == "flow":
        out = model(batch["distorted"], batch["mask"], batch["distance"])
        epe = endpoint_error(out["flow"], batch["flow"], batch["valid"])
        epe_bg = endpoint_error(out["flow"], batch["flow"], 1 - batch["mask_corrected"])
        bce = F.binary_cross_entropy_with_logits(out["mask_logits"], batch["mask_corrected"])
        loss = epe + background_weight * epe_bg + tv_weight * total_variation(out["flow"]) + mask_weight * bce
        return loss, {"loss": float(loss.detach()), "epe": float(epe.detach())}
    if task == "distance":
        net = unwrap(model)
        out = model(batch["distorted"], batch["mask"] if getattr(net, "in_channels", 4) == 4 else None)
        target = distance_to_bin(batch["distance"], net.num_bins, net.d_min, net.d_max)  # type: ignore[arg-type]
        ce = F.cross_entropy(out["logits"], target)
        l1 = (out["log_distance"] - batch["distance"].log()).abs().mean()
        loss = ce + l1
        rel = ((out["distance"].detach() - batch["distance"]).abs() / batch["distance"]).mean()
        return loss, {
            "loss": float(loss.detach()),
            "abs_rel": float(rel),
            "acc": float((out["logits"].argmax(1) == target).float().mean()),
        }
    if task == "completion":
        _, pred = _complete(model, batch)
        loss = completion_loss(
            pred, batch["corrected"], batch["holes"], batch["mask_corrected"], hole_weight=hole_weight
        )
        return loss, {"loss": float(loss.detach())}
    if task == "segmentation":
        logits = model(batch["distorted"])
        loss = F.cross_entropy(logits, batch["mask"][:, 0].long())
        return loss, {"loss": float(loss.detach())}
    raise ValueError(f"task_loss: 'task' must be one of {TASKS}; got {task!r}")


@torch.no_grad()
def evaluate(
    task: str,
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Mean metrics of :func:`task_loss` over a dataset (eval mode, no gradients).

    Args:
        task: one of ``TASKS``.
        model: the network.
        dataset: items of :class:`~undistort.synth.PortraitPairs`.
        batch_size: batch size.
        device: where to run (default: the model's device).

    Returns:
        Dict of sample-weighted mean metrics.

    Raises:
        TypeError: ``model`` is not a module or ``dataset`` has no length.
        ValueError: unknown task, empty dataset, non-positive batch size.
    """
    fn = "evaluate"
    if task not in TASKS:
        raise ValueError(f"{fn}: 'task' must be one of {TASKS}; got {task!r}")
    _check_model_and_data(fn, model, dataset, batch_size)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_pairs):  # type: ignore[arg-type]
        b = batch["distorted"].shape[0]
        _, m = task_loss(task, model, _batch_to(batch, dev))
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v * b
        n += b
    model.train(was)
    return {k: v / max(n, 1) for k, v in sums.items()}


def _disc_extra(disc: nn.Module | None, d_opt: torch.optim.Optimizer | None) -> dict[str, Any] | None:
    """The discriminator's checkpoint entry (plain data: arch, config, state dict, optimizer state)."""
    if disc is None:
        return None
    bare = unwrap(disc)
    entry: dict[str, Any] = {
        "arch": getattr(bare, "arch", type(bare).__name__.lower()),
        "config": dict(getattr(bare, "config", {})),
        "state_dict": clean_state_dict(bare.state_dict()),
    }
    if d_opt is not None:
        entry["optimizer"] = d_opt.state_dict()
    return {"discriminator": entry}


def _check_model_and_data(fn: str, model: Any, dataset: Any, batch_size: int) -> None:
    """Argument checks shared by :func:`train` and :func:`evaluate` (before any data is rendered)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: 'model' must be an nn.Module; got {type(model).__name__}")
    if next(iter(model.parameters()), None) is None:
        raise ValueError(f"{fn}: 'model' has no parameters")
    if not isinstance(dataset, Sized):
        raise TypeError(
            f"{fn}: 'dataset' must be a sized dataset (PortraitPairs or a list of its items); "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError(f"{fn}: 'dataset' must be non-empty; got length 0")
    check_positive(batch_size, "batch_size", fn=fn)


def _forever(loader: DataLoader, sampler: Any) -> Iterator[dict[str, Tensor]]:
    epoch = 0
    while True:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train(
    task: str,
    model: nn.Module,
    dataset: Dataset,
    *,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    tv_weight: float = 0.01,
    mask_weight: float = 0.1,
    hole_weight: float = 6.0,
    background_weight: float = 0.1,
    adversarial_weight: float = 0.01,
    discriminator: nn.Module | None = None,
    discriminator_lr: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Train one network of the cascade with Adam and a cosine learning-rate schedule.

    Under an initialised ``torch.distributed`` process group the model (and the completion task's
    discriminator) is wrapped in ``DistributedDataParallel``, the data is sharded with a
    ``DistributedSampler``, and only rank 0 writes checkpoints and shows progress.

    The completion task trains adversarially by default (``adversarial_weight=0.01``, the dossier's
    reconstruction): each step first updates the discriminator with the hinge loss (Adam, betas
    (0.5, 0.999)), then the completion net with L1 + ``adversarial_weight`` x the generator hinge term. When
    ``discriminator`` is None one is built (``completiondisc_paper`` for ``completionnet_paper``, else
    ``completiondisc_small``); its weights and optimizer go in the checkpoint (``extra``) and are restored
    on resume. ``adversarial_weight=0`` trains with L1 only.

    Args:
        task: ``"flow"``, ``"distance"``, ``"completion"`` or ``"segmentation"``.
        model: the network, built by a registered builder (its ``arch``/``config`` go in checkpoints).
        dataset: :class:`~undistort.synth.PortraitPairs` or a list of its items.
        steps: total optimisation steps (including steps done before a resume).
        batch_size: per-process batch size.
        lr: peak learning rate.
        weight_decay: Adam weight decay.
        tv_weight: flow TV weight.
        mask_weight: flow mask BCE weight.
        hole_weight: completion hole weight.
        background_weight: flow weight of background pixels.
        adversarial_weight: completion only: weight of the hinge-GAN generator term (0: L1 only).
        discriminator: completion only: the critic (e.g. ``create_model("completiondisc_small")``);
            built automatically when None and ``adversarial_weight > 0``.
        discriminator_lr: discriminator learning rate (default ``lr``).
        checkpoint: path of the checkpoint written at the end (and every ``checkpoint_every`` steps).
        checkpoint_every: period in steps (0: only at the end).
        resume: continue from ``checkpoint`` if it exists (model, optimizer, step).
        callback: called as ``callback(step, metrics)`` after every step.
        progress: tqdm bar; ``None`` shows it only on a TTY (rank 0).
        device: training device (default: the model's).
        num_workers: DataLoader workers.
        seed: seed of the data order.

    Returns:
        Dict with ``history`` (list of per-step metric dicts of this run), ``step`` (final step),
        ``model`` (the unwrapped model) and ``discriminator`` (the unwrapped critic, or None).

    Raises:
        TypeError: ``model`` or ``discriminator`` is not a module, ``dataset`` has no length.
        ValueError: unknown task, empty dataset, non-positive steps/batch size/lr, negative
            ``adversarial_weight``/``checkpoint_every``/``num_workers``, or a ``discriminator`` given for
            another task or with ``adversarial_weight=0``.
    """
    fn = "train"
    if task not in TASKS:
        raise ValueError(f"{fn}: 'task' must be one of {TASKS}; got {task!r}")
    _check_model_and_data(fn, model, dataset, batch_size)
    check_positive(steps, "steps", fn=fn)
    check_positive(lr, "lr", fn=fn)
    check_positive(checkpoint_every, "checkpoint_every", fn=fn, strict=False)
    check_positive(num_workers, "num_workers", fn=fn, strict=False)
    check_positive(adversarial_weight, "adversarial_weight", fn=fn, strict=False)
    if discriminator_lr is not None:
        check_positive(discriminator_lr, "discriminator_lr", fn=fn)
    if discriminator is not None:
        if not isinstance(discriminator, nn.Module):
            raise TypeError(f"{fn}: 'discriminator' must be an nn.Module; got {type(discriminator).__name__}")
        if task != "completion":
            raise ValueError(f"{fn}: 'discriminator' is only used by task 'completion'; got task {task!r}")
        if adversarial_weight == 0:
            raise ValueError(f"{fn}: a 'discriminator' was given but 'adversarial_weight' is 0")
    gan = task == "completion" and adversarial_weight > 0
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    start = 0
    ckpt: dict[str, Any] = {}
    if checkpoint is not None and resume and os.path.isfile(checkpoint):
        ckpt = load_checkpoint(checkpoint, map_location=dev)
        unwrap(model).load_state_dict(ckpt["state_dict"])
        if "optimizer" in ckpt:
            opt.load_state_dict(ckpt["optimizer"])
        start = int(ckpt.get("step", 0))
        logger.info("%s: resumed %s from step %d", fn, checkpoint, start)
    saved_disc = ckpt.get("extra", {}).get("discriminator") if ckpt else None
    d_opt: torch.optim.Optimizer | None = None
    if gan:
        if discriminator is None:
            if saved_disc is not None:
                discriminator = create_model(saved_disc["arch"], **saved_disc["config"])
            else:
                big = getattr(unwrap(model), "arch", "") == "completionnet_paper"
                discriminator = create_model("completiondisc_paper" if big else "completiondisc_small")
        discriminator.to(dev)
        d_opt = torch.optim.Adam(
            discriminator.parameters(),
            lr=discriminator_lr if discriminator_lr is not None else lr,
            betas=(0.5, 0.999),
            weight_decay=weight_decay,
        )
        if saved_disc is not None:
            unwrap(discriminator).load_state_dict(saved_disc["state_dict"])
            if "optimizer" in saved_disc:
                d_opt.load_state_dict(saved_disc["optimizer"])

    def cosine(s: int) -> float:  # s counts this run's steps; the schedule continues from ``start``
        return 0.5 * (1 + math.cos(math.pi * min(s + start, steps) / steps)) * 0.95 + 0.05

    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    net: nn.Module = model
    disc: nn.Module | None = discriminator
    if distributed:
        ids = [dev.index] if dev.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if discriminator is not None:
            disc = nn.parallel.DistributedDataParallel(discriminator, device_ids=ids)
    g = torch.Generator().manual_seed(seed + start)
    sampler: Any = (
        DistributedSampler(dataset, shuffle=True, seed=seed)
        if distributed
        else RandomSampler(cast(Sized, dataset), generator=g)
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_pairs,
        drop_last=False,
    )  # type: ignore[arg-type]
    show = progress if progress is not None else sys.stderr.isatty()
    bar = None
    if show and rank == 0 and start < steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc=f"train {task}", leave=False)
    history: list[dict[str, float]] = []
    arch = getattr(unwrap(model), "arch", type(unwrap(model)).__name__.lower())
    config = getattr(unwrap(model), "config", {})
    net.train()
    it = _forever(loader, sampler)
    step = start
    kw = {
        "tv_weight": tv_weight,
        "mask_weight": mask_weight,
        "hole_weight": hole_weight,
        "background_weight": background_weight,
    }

    def save(path: str | os.PathLike, metrics: dict[str, float]) -> None:
        # one writer for the periodic and the final checkpoint (model, optimiser, discriminator state)
        save_checkpoint(
            path,
            model,
            arch=arch,
            config=config,
            optimizer=opt,
            step=step,
            metrics=metrics,
            extra=_disc_extra(discriminator, d_opt),
        )

    while step < steps:
        batch = _batch_to(next(it), dev)
        if disc is not None and d_opt is not None:
            loss, metrics = _adversarial_step(
                net, disc, d_opt, batch, hole_weight=hole_weight, adversarial_weight=adversarial_weight
            )
        else:
            loss, metrics = task_loss(task, net, batch, **kw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        metrics["lr"] = float(sched.get_last_lr()[0])
        history.append(metrics)
        logger.debug("%s %s step %d: %s", fn, task, step, metrics)
        if callback is not None:
            callback(step, metrics)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if (
            checkpoint is not None
            and rank == 0
            and checkpoint_every
            and step % checkpoint_every == 0
            and step < steps
        ):
            save(checkpoint, metrics)
    if bar is not None:
        bar.close()
    if checkpoint is not None and rank == 0 and history:
        save(checkpoint, history[-1])
    if distributed:
        dist.barrier()
    logger.info("%s %s: finished at step %d", fn, task, step)
    return {
        "history": history,
        "step": step,
        "model": unwrap(model),
        "discriminator": None if discriminator is None else unwrap(discriminator),
    }
