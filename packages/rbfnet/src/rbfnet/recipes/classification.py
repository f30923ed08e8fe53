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
from ..data.batching import as_dense_batch

__all__ = ["classification_metrics", "evaluate", "recalibrate_bn", "train", "vote_views"]

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


def _forward(model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    batch = as_dense_batch(batch)
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
    votes: int = 1,
    vote_seed: int = 0,
    vote_scale: tuple[float, float] = (0.8, 1.25),
    vote_rotate: bool = False,
    up_axis: int = 2,
) -> dict[str, Any]:
    """Evaluate a classifier: loss, overall / class-mean / per-class accuracy and inference throughput.

    Test-time voting (``votes > 1``, as the PointNet++ tooling does): every cloud is classified in
    ``votes`` views and the softmax probabilities are averaged; the metrics and the loss use the averaged
    probabilities. View 0 is the cloud itself; view ``k >= 1`` scales it isotropically by ``s_k``, drawn
    uniformly from ``vote_scale`` by a generator seeded with ``vote_seed`` (one scale per view, the same
    for every cloud, so the result does not depend on batch size or order), and with ``vote_rotate``
    also rotates it by ``2 pi k / votes`` about ``up_axis`` (normals are rotated alike). See
    :func:`vote_views`. Rotated views only help a model trained with rotation augmentation.

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
        votes: views per cloud (1: no voting).
        vote_seed: seed of the views' scales.
        vote_scale: ``(low, high)`` range of the isotropic scales, ``0 < low <= high``.
        vote_rotate: also rotate view ``k`` by ``2 pi k / votes`` about ``up_axis``.
        up_axis: 0, 1 or 2 (x, y, z); ModelNet class-folder data here is z-up.

    Returns:
        :func:`classification_metrics` plus ``"loss"``, ``"num_samples"``, ``"clouds_per_s"`` (under
        DDP: all samples over the slowest rank's forward time; with voting, clouds per second of all
        views together) and ``"votes"``.

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
    views = vote_views(votes, seed=vote_seed, scale=vote_scale, rotate=vote_rotate, up_axis=up_axis)
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
            if len(views) == 1:
                logits, y = _forward(inner, batch, dev)
            else:
                logits, y = _vote_forward(inner, batch, dev, views)
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
    out.update(
        {
            "loss": loss_sum / n,
            "num_samples": n,
            "clouds_per_s": n / max(seconds, 1e-9),
            "votes": len(views),
        }
    )
    return out


def vote_views(
    votes: int,
    *,
    seed: int = 0,
    scale: tuple[float, float] = (0.8, 1.25),
    rotate: bool = False,
    up_axis: int = 2,
) -> list[tuple[float, torch.Tensor]]:
    """The views of test-time voting: ``votes`` pairs ``(scale s_k, rotation R_k (3, 3))``.

    View 0 is ``(1.0, I)``. View ``k >= 1`` has ``s_k ~ U(scale)`` from ``torch.Generator`` seeded with
    ``seed`` (drawn in order ``k = 1, 2, ...``) and, with ``rotate``, ``R_k`` the rotation by
    ``2 pi k / votes`` about ``up_axis`` (else ``I``). A view maps a cloud ``p`` ``(N, 3)`` to
    ``s_k * p @ R_k.T``.

    Args:
        votes: number of views, >= 1.
        seed: seed of the scales.
        scale: ``(low, high)`` with ``0 < low <= high``.
        rotate: rotate the views about the up axis.
        up_axis: 0, 1 or 2.

    Returns:
        The views, float64 rotations on the CPU.

    Raises:
        TypeError: non-int ``votes``/``seed``/``up_axis``.
        ValueError: ``votes < 1``, a bad ``scale`` range or ``up_axis`` outside 0..2.
    """
    fn = "evaluate"
    check_int(votes, "votes", fn=fn, low=1)
    check_int(seed, "vote_seed", fn=fn)
    check_int(up_axis, "up_axis", fn=fn, low=0)
    if up_axis > 2:
        raise ValueError(f"{fn}: 'up_axis' must be 0, 1 or 2; got {up_axis}")
    if (
        not isinstance(scale, (tuple, list))
        or len(scale) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
        or not 0 < scale[0] <= scale[1] < math.inf
    ):
        raise ValueError(f"{fn}: 'vote_scale' must be (low, high) with 0 < low <= high; got {scale!r}")
    gen = torch.Generator().manual_seed(seed)
    draws = torch.rand(votes, generator=gen, dtype=torch.float64)
    a, b = (u for u in range(3) if u != up_axis)
    views: list[tuple[float, torch.Tensor]] = [(1.0, torch.eye(3, dtype=torch.float64))]
    for k in range(1, votes):
        s = float(scale[0] + (scale[1] - scale[0]) * draws[k - 1])
        rot = torch.eye(3, dtype=torch.float64)
        if rotate:
            t = 2 * math.pi * k / votes
            rot[a, a], rot[a, b], rot[b, a], rot[b, b] = math.cos(t), -math.sin(t), math.sin(t), math.cos(t)
        views.append((s, rot))
    return views


def _vote_forward(
    model: nn.Module, batch: Any, device: torch.device, views: list[tuple[float, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    dense = as_dense_batch(batch)
    probs: torch.Tensor | None = None
    y = dense["label"]
    for s, rot in views:
        view = dict(dense)
        r = rot.to(dense["points"].dtype)
        view["points"] = s * (dense["points"] @ r.T)
        if dense.get("normals") is not None:
            view["normals"] = dense["normals"] @ r.T
        logits, y = _forward(model, view, device)
        p = logits.float().softmax(dim=1)
        probs = p if probs is None else probs + p
    assert probs is not None  # votes >= 1
    return (probs / len(views)).clamp_min(1e-30).log(), y


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    data: Dataset | DataLoader,  # type: ignore[type-arg]
    *,
    num_batches: int | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
) -> int:
    """Re-estimate every BatchNorm layer's running mean and variance from data (BatchNorm warm-up).

    The RBF responses are small (often ``1e-3`` to ``1e-2``), so after a short training or fine-tune the
    running statistics (momentum 0.1 from mean 0 / variance 1) are still far from the batch statistics the
    network was trained with, and eval mode can then score near chance. This resets the running
    statistics and recomputes them as the exact average over ``num_batches`` batches of ``data`` (momentum
    ``None``), with every other module in eval mode (no dropout), and restores the model's mode and
    momenta. No parameter changes.

    Args:
        model: the classifier (a DDP wrapper is unwrapped).
        data: a dataset or loader of any batch form the recipes accept (use the training data, without
            test samples).
        num_batches: batches to use (``None``: all).
        batch_size: batch size for a dataset (ignored for a loader); >= 2.
        device: device (default: the model's).
        num_workers: loader workers.

    Returns:
        Number of clouds used (0 when the model has no BatchNorm layer).

    Raises:
        TypeError: ``model`` is not a module, ``data`` is neither a dataset nor a loader.
        ValueError: ``num_batches < 1`` or ``batch_size < 2``.
    """
    fn = "recalibrate_bn"
    check_module(model, "model", fn=fn)
    if not isinstance(data, DataLoader) and not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(
            f"{fn}: 'data' must be a Dataset (with __len__) or a DataLoader; got {type(data).__name__}"
        )
    if num_batches is not None:
        check_int(num_batches, "num_batches", fn=fn, low=1)
    check_int(batch_size, "batch_size", fn=fn, low=2)
    inner = _unwrap(model)
    bns = [m for m in inner.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        logger.warning("recalibrate_bn: the model has no BatchNorm layer; nothing to do")
        return 0
    dev = torch.device(device) if device is not None else next(inner.parameters()).device
    loader = (
        data
        if isinstance(data, DataLoader)
        else DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    )
    modes = {m: m.training for m in inner.modules()}
    momenta = [m.momentum for m in bns]
    seen = 0
    try:
        inner.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: the exact mean over the batches
            m.train()
        for i, batch in enumerate(loader):
            if num_batches is not None and i >= num_batches:
                break
            _, y = _forward(inner, batch, dev)
            seen += int(y.numel())
    finally:
        for bn, mom in zip(bns, momenta):
            bn.momentum = mom
        for mod, was in modes.items():
            mod.training = was
    _sync_buffers(model)
    logger.info("recalibrate_bn: running statistics of %d BatchNorm layers from %d clouds", len(bns), seen)
    return seen


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
    collate_fn: Callable[[list[Any]], Any] | None = None,
    bn_recalibration: bool = False,
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
        collate_fn: ``DataLoader`` collate function, e.g. :func:`rbfnet.data.collate_flat` for samples of
            different sizes (flat ``pos``/``batch`` batches); samples may also be ``(points, label)``
            tuples (see :mod:`rbfnet.data.batching`).
        bn_recalibration: after every epoch, re-estimate the BatchNorm running statistics on
            ``train_set`` (:func:`recalibrate_bn`) before evaluating and checkpointing: for short
            fine-tunes, whose running statistics have not caught up with the small RBF responses.

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
            collate_fn=collate_fn,
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
        if bn_recalibration:
            part = _Shard(train_set, rank, world) if distributed else train_set
            recalibrate_bn(
                model,
                DataLoader(part, batch_size=max(batch_size, 2), shuffle=False, collate_fn=collate_fn),
                device=dev,
            )
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
            val_data: Any = val_set
            if collate_fn is not None:
                # a plain loader: under DDP every rank then evaluates the whole set (same metrics)
                val_data = DataLoader(
                    val_set,
                    batch_size=batch_size,
                    shuffle=False,
                    num_workers=num_workers,
                    collate_fn=collate_fn,
                )
            m = evaluate(
                model,
                val_data,
                batch_size=batch_size,
                device=dev,
                num_workers=num_workers,
                progress=progress,
                distributed=False if collate_fn is not None else None,
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
