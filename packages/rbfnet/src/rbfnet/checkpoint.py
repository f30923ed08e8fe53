"""Atomic, ``weights_only``-loadable checkpoints."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .__about__ import __version__
from ._fileio import atomic_write

__all__ = ["FORMAT_VERSION", "clean_state_dict", "load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
FORMAT_VERSION = 1


def clean_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes and move tensors to CPU.

    Args:
        state_dict: a module's state dict.

    Returns:
        A new dict with clean keys.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v.detach().cpu()
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    epoch: int | None = None,
    step: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (temp file beside ``path``, fsync, ``os.replace``) with the usual
    permissions (``0o666`` minus the umask, not the ``0o600`` of a bare ``tempfile.mkstemp``).

    The file is a dict with ``format_version``, ``package``, ``package_version``, ``arch`` and ``config``
    (from a model built by :func:`rbfnet.create_model`), ``state_dict`` (prefixes stripped) and the
    optional training state; only tensors and plain types, so it loads with ``weights_only=True``.

    Args:
        path: destination file.
        model: the model (DDP / compiled wrappers are unwrapped).
        optimizer: optimizer whose state to store.
        scheduler: LR scheduler whose state to store.
        epoch: epochs completed.
        step: optimizer steps completed.
        metrics: plain-data metrics.
        extra: further plain-data entries (e.g. RNG states as tensors).

    Raises:
        TypeError: ``path`` is not a path, or ``model`` is not a module.
    """
    fn = "save_checkpoint"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: 'path' must be a str or os.PathLike; got {type(path).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: 'model' must be a torch.nn.Module; got {type(model).__name__}")
    inner = _unwrap(model)
    ckpt: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "package": "rbfnet",
        "package_version": __version__,
        "arch": getattr(inner, "arch", type(inner).__name__),
        "config": dict(getattr(inner, "config", {})),
        "state_dict": clean_state_dict(inner.state_dict()),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        ckpt["scheduler"] = scheduler.state_dict()
    if epoch is not None:
        ckpt["epoch"] = int(epoch)
    if step is not None:
        ckpt["step"] = int(step)
    if metrics is not None:
        ckpt["metrics"] = dict(metrics)
    if extra is not None:
        ckpt.update(extra)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    atomic_write(path, lambda fh: torch.save(ckpt, fh), suffix=".pt")
    logger.info("saved checkpoint %s (arch=%s, epoch=%s)", path, ckpt["arch"], epoch)


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Args:
        path: checkpoint file.
        map_location: where tensors are placed.

    Returns:
        The checkpoint dict.

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: missing file.
        ValueError: a truncated or garbage file, or one not written by rbfnet ("not a valid rbfnet
            checkpoint"; the message names the file), or a newer format than this version reads.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_checkpoint: 'path' must be a str or os.PathLike; got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path!r}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip/pickle/EOF/OS errors of a truncated or foreign file
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"load_checkpoint: {path!r} is not a valid rbfnet checkpoint (truncated or not written by "
            f"rbfnet): {reason}"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("package") != "rbfnet":
        got = ckpt.get("package") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"load_checkpoint: {path!r} is not a valid rbfnet checkpoint (truncated or not written by "
            f"rbfnet): package={got!r}"
        )
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(
            f"load_checkpoint: {path!r} is not a valid rbfnet checkpoint (truncated or not written by "
            "rbfnet): it holds no 'state_dict'"
        )
    fv = ckpt.get("format_version")
    if not isinstance(fv, int) or fv > FORMAT_VERSION:
        raise ValueError(
            f"load_checkpoint: {path!r} has format_version {fv!r}; this rbfnet {__version__} reads <= "
            f"{FORMAT_VERSION}: upgrade rbfnet"
        )
    return ckpt
