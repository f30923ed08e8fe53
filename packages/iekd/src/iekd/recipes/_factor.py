"""IE-KD Step A: training the teacher's factor auto-encoder."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .. import functional as IF
from .._checks import check_choice, check_int, check_number
from ..hooks import FeatureTap
from ..nn import FactorAutoencoder
from ._common import _check_module, _feature_layer, _probe
from ._loop import (
    Callback,
    EpochRunner,
    OptimizerFactory,
    SchedulerFactory,
    check_run_args,
    maybe_ddp,
    resolve_device,
    sgd,
    to_device,
)

logger = logging.getLogger(__name__)


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
