"""Own-loop training and evaluation recipe shared by RBFNet, PointNet and PointNet++.

One recipe for every classifier of :mod:`rbfnet.models` (same optimizer, schedule, augmentation, batch),
so that comparisons are like for like. Works on CPU and CUDA, and under ``torch.distributed`` (DDP, one
process per device, a ``DistributedSampler``; rank 0 logs, shows progress and writes checkpoints).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .._checks import check_int, check_module, check_number
from ..checkpoint import load_checkpoint, save_checkpoint

__all__ = ["classification_metrics", "evaluate", "train"]

logger = logging.getLogger(__name__)

Callback = Callable[[int, dict[str, Any]], "bool | None"]


def _progress_on(progress: bool | None) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def _sync_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks; integer buffers
    (``num_batches_tracked``) take rank 0's value. Afterwards every rank holds the same model."""
    if _world() == 1:
        return
    for buf in _unwrap(model).buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(_world())
        else:
            dist.broadcast(buf, src=0)


class _Shard(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Samples ``rank, rank + world, ...`` of a dataset: a padding-free split for evaluation."""

    def __init__(self, dataset: Dataset, rank: int, world: int) -> None:  # type: ignore[type-arg]
        self.dataset, self.indices = dataset, range(rank, len(dataset), world)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def _forward(
    model: nn.Module, batch: dict[str, Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, dict) or "points" not in batch or "label" not in batch:
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise TypeError(
            "train/evaluate: each sample must be a dict with 'points' (N, 3) and 'label' (see rbfnet.data); "
            f"got a batch of {got}"
        )
    pts = batch["points"].to(device, non_blocking=True)
    nrm = batch.get("normals")
    uses = bool(getattr(_unwrap(model), "uses_normals", False))
    if uses and nrm is None:
        raise ValueError(
            "train/evaluate: the model uses normals but the dataset returns none (use_normals=True)"
        )
    logits = model(pts, nrm.to(device, non_blocking=True) if uses and nrm is not None else None)
    return logits, batch["label"].to(device, non_blocking=True)


def classification_metrics(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Overall accuracy, class-balanced (class-mean) accuracy and per-class accuracy.

    Args:
        pred: predicted labels ``(S,)``.
        target: true labels ``(S,)``.
        num_classes: ``K``.

    Returns:
        ``{"overall_acc", "class_mean_acc", "per_class_acc" (list of K, NaN for absent classes),
        "confusion" (K x K nested list, rows = truth)}``; accuracies in [0, 1].

    Raises:
        TypeError: ``num_classes`` is not an int.
        ValueError: mismatched lengths, an empty set, ``num_classes < 1`` or labels outside
            ``[0, num_classes)``.
    """
    fn = "classification_metrics"
    check_int(num_classes, "num_classes", fn=fn, low=1)
    pred = np.asarray(pred, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(
            f"{fn}: 'pred' and 'target' must be non-empty and equal in shape; got {pred.shape} and {target.shape}"
        )
    for name, arr in (("pred", pred), ("target", target)):
        if int(arr.min()) < 0 or int(arr.max()) >= num_classes:
            raise ValueError(
                f"{fn}: '{name}' must lie in [0, {num_classes}) (num_classes); got {int(arr.min())}..{int(arr.max())}"
            )
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(conf, (target, pred), 1)
    return _metrics_from_confusion(conf)


def _metrics_from_confusion(conf: np.ndarray) -> dict[str, Any]:
    support = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)
    return {
        "overall_acc": float(np.trace(conf) / max(int(conf.sum()), 1)),
        "class_mean_acc": float(np.nanmean(per_class)),
        "per_class_acc": [float(x) for x in per_class],
        "confusion": conf.tolist(),
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset | DataLoader,  # type: ignore[type-arg]
    *,
    num_classes: int | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool | None = None,
    distributed: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a classifier: loss, overall / class-mean / per-class accuracy and inference throughput.

    Under an initialised process group (DDP), a dataset is split over the ranks (rank ``r`` takes samples
    ``r, r + world, ...``, no padding), the confusion matrix, loss and sample count are all-reduced, and
    every rank returns the same metrics, equal to a single-process evaluation of the whole set. A
    ``DataLoader`` is used as given: its results are all-reduced only when its sampler is a
    ``DistributedSampler`` (which may repeat a few samples to even out the shards); otherwise each rank
    evaluates the whole loader on its own. Call it on every rank, or pass ``distributed=False`` to
    evaluate the whole set in this process alone (e.g. on rank 0 only).

    Args:
        model: a classifier taking ``(points, normals)`` (a DDP wrapper is unwrapped).
        dataset: a dataset of sample dicts, or a ready ``DataLoader``.
        num_classes: ``K`` (default: the model's ``num_classes``).
        batch_size: evaluation batch size (ignored for a ``DataLoader``).
        device: device (default: the model's).
        num_workers: loader workers.
        progress: tqdm bar (``None``: only on a TTY); rank 0 only.
        distributed: split the set over the ranks and all-reduce (``None``: when a process group with
            more than one rank is initialised; ``False``: never).

    Returns:
        :func:`classification_metrics` plus ``"loss"``, ``"num_samples"`` and ``"clouds_per_s"`` (under
        DDP: all samples over the slowest rank's forward time).

    Raises:
        TypeError: ``model`` is not a module, ``dataset`` is neither a dataset nor a loader, non-int sizes,
            or samples that are not dicts with ``"points"`` and ``"label"``.
        ValueError: an empty evaluation set, labels outside ``[0, num_classes)``, more logits than
            ``num_classes``, ``batch_size < 1``, or ``distributed=True`` without an initialised process group.
    """
    fn = "evaluate"
    check_module(model, "model", fn=fn)
    if not isinstance(dataset, DataLoader) and not (
        hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    ):
        raise TypeError(
            f"{fn}: 'dataset' must be a Dataset (with __len__) or a DataLoader; got {type(dataset).__name__}"
        )
    if num_classes is not None:
        check_int(num_classes, "num_classes", fn=fn, low=1)
    check_int(batch_size, "batch_size", fn=fn, low=1)
    check_int(num_workers, "num_workers", fn=fn, low=0)
    inner = _unwrap(model)
    k = int(num_classes if num_classes is not None else getattr(inner, "num_classes"))  # noqa: B009
    dev = torch.device(device) if device is not None else next(inner.parameters()).device
    if distributed and not (dist.is_available() and dist.is_initialized()):
        raise ValueError("evaluate: distributed=True needs an initialised torch.distributed process group")
    world = _world() if distributed is not False else 1
    if isinstance(dataset, DataLoader):
        loader = dataset
        reduce = world > 1 and isinstance(dataset.sampler, DistributedSampler)
    else:
        reduce = world > 1
        part = _Shard(dataset, _rank(), world) if reduce else dataset
        loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = inner.training
    inner.eval()
    conf = torch.zeros(k, k, dtype=torch.int64)
    loss_sum, seconds = 0.0, 0.0
    it: Iterable[Any] = loader
    if _progress_on(progress) and _rank() == 0:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc="eval", leave=False)
    try:
        for batch in it:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            logits, y = _forward(inner, batch, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds += time.perf_counter() - t0
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
                raise ValueError(
                    f"evaluate: labels must lie in [0, {k}) (num_classes); got {int(y.min())}..{int(y.max())}"
                )
            if logits.shape[1] > k:
                raise ValueError(
                    f"evaluate: the model gives {logits.shape[1]} logits but 'num_classes' is {k}"
                )
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            conf += torch.bincount((y * k + logits.argmax(1)).cpu(), minlength=k * k).view(k, k)
    finally:
        inner.train(was_training)
    if reduce:
        # gloo reduces CPU tensors; NCCL needs them on the GPU
        comm = torch.device("cpu") if dist.get_backend() == "gloo" else dev
        stats = torch.tensor([loss_sum], dtype=torch.float64, device=comm)
        conf_c = conf.to(comm)
        dist.all_reduce(conf_c)
        dist.all_reduce(stats)
        slowest = torch.tensor([seconds], dtype=torch.float64, device=comm)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        conf, loss_sum, seconds = conf_c.cpu(), float(stats[0]), float(slowest[0])
    n = int(conf.sum())
    if n == 0:
        raise ValueError("evaluate: the evaluation set is empty")
    out = _metrics_from_confusion(conf.numpy())
    out.update({"loss": loss_sum / n, "num_samples": n, "clouds_per_s": n / max(seconds, 1e-9)})
    return out


def train(
    model: nn.Module,
    train_set: Dataset,  # type: ignore[type-arg]
    val_set: Dataset | None = None,  # type: ignore[type-arg]
    *,
    epochs: int = 200,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    lr_step: int = 20,
    lr_gamma: float = 0.7,
    label_smoothing: float = 0.0,
    max_steps: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    callback: Callback | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train a point-cloud classifier with Adam + step decay and cross-entropy (the PointNet++ recipe).

    Each epoch: shuffled batches (``drop_last`` when the set is larger than a batch, since BatchNorm needs
    more than one sample), ``dataset.set_epoch(epoch)`` when available so that seeded augmentations change,
    then evaluation of ``val_set``. The global torch RNG (dropout) is re-seeded from ``(seed, epoch, rank)``
    at the start of every epoch so that a resumed run repeats the uninterrupted one.

    With ``checkpoint_dir``, ``last.pt`` (model, optimizer, scheduler, epoch, step, history) is written
    atomically after every epoch and ``best.pt`` whenever validation overall accuracy improves;
    ``resume=True`` continues from ``last.pt`` when it exists.

    Distributed data parallel: start one process per device (e.g. ``torchrun``), initialise the process
    group, build the model and call ``train`` on every rank exactly as in one process (or pass a model you
    wrapped in ``DistributedDataParallel`` yourself). The recipe wraps the model in DDP (which broadcasts
    rank 0's weights), shards ``train_set`` with a ``DistributedSampler`` (``batch_size`` is per process),
    averages the BatchNorm running statistics over the ranks after every epoch (every rank then holds the
    same model), evaluates ``val_set`` sharded over the ranks (:func:`evaluate`), lets rank 0 alone write
    checkpoints, and returns on every rank once they are written. ``checkpoint_dir`` must be shared by the
    ranks for ``resume``.

    Args:
        model: classifier taking ``(points, normals)``; built by :func:`rbfnet.create_model` for
            checkpoints that rebuild it.
        train_set: dataset of sample dicts.
        val_set: optional evaluation dataset.
        epochs: number of epochs.
        batch_size: batch size (per process).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        lr_step: epochs between learning-rate decays.
        lr_gamma: decay factor.
        label_smoothing: cross-entropy label smoothing.
        max_steps: stop after this many optimizer steps in total (e.g. smoke tests).
        seed: seed of shuffling, dropout and augmentations.
        device: training device (default: the model's).
        num_workers: loader workers.
        checkpoint_dir: folder for ``last.pt`` / ``best.pt``.
        resume: continue from ``checkpoint_dir/last.pt`` if present.
        callback: called as ``callback(epoch, record)`` after each epoch; returning ``True`` stops.
        progress: tqdm bars (``None``: only on a TTY); rank 0 only.

    Returns:
        ``{"history": [per-epoch records], "best": best record or None, "steps": int,
        "train_seconds": float}``. A record holds ``epoch``, ``lr``, ``train_loss``, ``train_acc``,
        ``train_seconds``, ``train_clouds_per_s`` and, with ``val_set``, ``val_*`` metrics.

    Raises:
        TypeError: ``model`` is not a module, a set is not a dataset, hyper-parameters of the wrong type,
            or samples that are not dicts with ``"points"`` and ``"label"``.
        ValueError: hyper-parameters out of range, an empty ``train_set``, or a model/dataset normals
            mismatch.
    """
    fn = "train"
    check_module(model, "model", fn=fn)
    for set_name, ds in (("train_set", train_set), ("val_set", val_set)):
        if ds is not None and not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise TypeError(f"{fn}: '{set_name}' must be a Dataset with __len__; got {type(ds).__name__}")
    for name, val in (("epochs", epochs), ("batch_size", batch_size), ("lr_step", lr_step)):
        if isinstance(val, bool) or not isinstance(val, int):
            raise TypeError(f"{fn}: '{name}' must be an int >= 1; got {type(val).__name__}")
        if val < 1:
            raise ValueError(f"{fn}: '{name}' must be an int >= 1; got {val!r}")
    check_number(lr, "lr", fn=fn, low=0.0, low_open=True)
    check_number(weight_decay, "weight_decay", fn=fn, low=0.0)
    check_number(lr_gamma, "lr_gamma", fn=fn, low=0.0, low_open=True)
    check_number(label_smoothing, "label_smoothing", fn=fn, low=0.0, high=1.0)
    if max_steps is not None:
        check_int(max_steps, "max_steps", fn=fn, low=1)
    check_int(seed, "seed", fn=fn)
    check_int(num_workers, "num_workers", fn=fn, low=0)
    if resume and checkpoint_dir is None:
        raise ValueError(f"{fn}: resume=True needs 'checkpoint_dir'")
    if len(train_set) == 0:  # type: ignore[arg-type]
        raise ValueError(f"{fn}: 'train_set' is empty")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = _rank(), _world()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        net: nn.Module = model  # wrapped by the user: used as is
        model = model.module
        dev = torch.device(device) if device is not None else next(model.parameters()).device
    else:
        dev = torch.device(device) if device is not None else next(model.parameters()).device
        model.to(dev)
        # DDP broadcasts rank 0's parameters and buffers when it wraps, so every rank starts alike.
        net = (
            nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
            if distributed
            else model
        )
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    start_epoch, step = 0, 0
    last_path = None if checkpoint_dir is None else os.path.join(os.fspath(checkpoint_dir), "last.pt")
    best_path = None if checkpoint_dir is None else os.path.join(os.fspath(checkpoint_dir), "best.pt")
    if resume and last_path is not None and os.path.isfile(last_path):
        ckpt = load_checkpoint(last_path, map_location=dev)
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt.get("step", 0))
        history = list(ckpt.get("metrics", {}).get("history", []))
        best = ckpt.get("metrics", {}).get("best")
        logger.info("resumed from %s at epoch %d (step %d)", last_path, start_epoch, step)
    # Samples per process per epoch (a DistributedSampler pads the shards to equal length).
    local = math.ceil(len(train_set) / world)  # type: ignore[arg-type]
    drop_last = local > batch_size
    sampler: DistributedSampler[Any] | None = (
        DistributedSampler(train_set, shuffle=True, seed=seed, drop_last=False) if distributed else None
    )
    show = _progress_on(progress) and rank == 0
    total_seconds = sum(float(r.get("train_seconds", 0.0)) for r in history)
    for epoch in range(start_epoch, epochs):
        if max_steps is not None and step >= max_steps:
            break
        torch.manual_seed(seed * 100003 + epoch + 7919 * rank)  # dropout masks differ between ranks
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        gen = torch.Generator().manual_seed(seed * 100003 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            generator=gen if sampler is None else None,
            pin_memory=dev.type == "cuda",
        )
        net.train()
        it: Iterable[Any] = loader
        if show:
            from tqdm.auto import tqdm

            it = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        loss_sum, correct, seen = 0.0, 0, 0
        t0 = time.perf_counter()
        for batch in it:
            logits, y = _forward(net, batch, dev)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * y.numel()
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += y.numel()
            logger.debug("epoch %d step %d loss %.4f", epoch, step, float(loss.detach()))
            if max_steps is not None and step >= max_steps:
                break
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        # DDP all-reduces gradients but each rank updates its own BatchNorm running statistics: average
        # them, so that every rank evaluates and checkpoints the same model.
        _sync_buffers(model)
        if distributed:  # epoch records (and callbacks' decisions) are the same on every rank
            comm = torch.device("cpu") if dist.get_backend() == "gloo" else dev
            tot = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=comm)
            dist.all_reduce(tot)
            loss_sum, correct, seen = float(tot[0]), int(tot[1]), int(tot[2])
            wall = torch.tensor([seconds], dtype=torch.float64, device=comm)
            dist.all_reduce(wall, op=dist.ReduceOp.MAX)
            seconds = float(wall[0])
        total_seconds += seconds
        sched.step()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": float(opt.param_groups[0]["lr"]),
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "train_seconds": seconds,
            "train_clouds_per_s": seen / max(seconds, 1e-9),
        }
        if val_set is not None:
            m = evaluate(
                model, val_set, batch_size=batch_size, device=dev, num_workers=num_workers, progress=progress
            )
            record.update({f"val_{k}": v for k, v in m.items() if k != "confusion"})
            if best is None or record["val_overall_acc"] > best["val_overall_acc"]:
                best = dict(record)
                if best_path is not None and rank == 0:
                    save_checkpoint(best_path, model, epoch=epoch + 1, step=step, metrics={"record": record})
        history.append(record)
        logger.info(
            "epoch %d/%d loss %.4f acc %.4f%s",
            epoch + 1,
            epochs,
            record["train_loss"],
            record["train_acc"],
            f" val_acc {record['val_overall_acc']:.4f}" if val_set is not None else "",
        )
        if last_path is not None and rank == 0:
            save_checkpoint(
                last_path,
                model,
                optimizer=opt,
                scheduler=sched,
                epoch=epoch + 1,
                step=step,
                metrics={"history": history, "best": best},
            )
        if callback is not None and callback(epoch + 1, record):
            logger.info("callback stopped training after epoch %d", epoch + 1)
            break
    if distributed:
        dist.barrier()  # rank 0's checkpoints exist on return, on every rank
    return {"history": history, "best": best, "steps": step, "train_seconds": total_seconds}
