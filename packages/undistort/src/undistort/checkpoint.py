"""Atomic checkpoints that load with ``weights_only=True``.

A checkpoint is a dict: ``format_version``, ``package``, ``package_version``, ``arch``, ``config``
(JSON-able builder kwargs), ``state_dict`` (unwrapped), and optionally ``optimizer``, ``step``, ``epoch``,
``metrics``, ``rng``. Only tensors and plain Python types are stored.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import torch
from torch import nn

from .__about__ import __version__

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_torch_save",
    "clean_state_dict",
    "load_checkpoint",
    "safe_torch_load",
    "save_checkpoint",
]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a valid undistort checkpoint (truncated, garbage, or written by something else)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def safe_torch_load(path: str, *, map_location: str | torch.device = "cpu", fn: str, what: str) -> Any:
    """``torch.load(weights_only=True)`` that turns any read failure into one clear :class:`CheckpointError`.

    Args:
        path: the file (already checked to exist).
        map_location: where tensors go.
        fn: the caller's name, for the message.
        what: what the file should be (e.g. ``"undistort checkpoint"``).

    Returns:
        The loaded object.

    Raises:
        CheckpointError: the file is truncated, garbage, or holds objects that ``weights_only`` refuses.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # zip/stream/unpickling errors of every kind
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{fn}: {path!r} is not a valid {what} (truncated or not written by undistort): {first}"
        ) from err


def clean_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Strip DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes.

    Args:
        state_dict: a model state dict.

    Returns:
        A new dict with clean keys.
    """
    out = {}
    for k, v in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the target folder, fsync, then rename over ``path``.

    An interrupted write never leaves a truncated file behind: ``path`` holds either the old or the new
    content.

    Args:
        obj: what to save (tensors, containers and plain Python values, so that it loads with
            ``weights_only=True``).
        path: destination file; its folder is created if missing.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        # mkstemp creates the file 0600; give it the usual permissions (0666 minus the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    config: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    epoch: int = 0,
    metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (temp file beside it, fsync, ``os.replace``).

    Args:
        path: destination ``.pt`` file.
        model: the model (DDP/compiled wrappers are unwrapped).
        arch: registered model name.
        config: JSON-able builder kwargs.
        optimizer: optional optimizer whose state is stored.
        step: global step.
        epoch: epoch.
        metrics: scalar metrics.
        extra: more plain data (tensors, numbers, strings, lists, dicts).

    Raises:
        ValueError: empty ``arch``.
    """
    if not arch:
        raise ValueError("save_checkpoint: 'arch' must be a non-empty string")
    ckpt: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "package": "undistort",
        "package_version": __version__,
        "arch": arch,
        "config": dict(config or {}),
        "state_dict": clean_state_dict(unwrap(model).state_dict()),
        "step": int(step),
        "epoch": int(epoch),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "rng": torch.get_rng_state(),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if extra:
        ckpt["extra"] = extra
    path = os.fspath(path)
    atomic_torch_save(ckpt, path)
    logger.info("saved checkpoint %s (arch=%s, step=%d)", path, arch, step)


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check that it is ours.

    Args:
        path: the ``.pt`` file.
        map_location: where tensors go.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: missing file.
        CheckpointError: (a ``ValueError``) truncated, garbage or foreign file.
        ValueError: a newer format.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"load_checkpoint: no file at {p!r}")
    what = "undistort checkpoint"
    ckpt = safe_torch_load(p, map_location=map_location, fn="load_checkpoint", what=what)
    if not isinstance(ckpt, dict) or ckpt.get("package") != "undistort" or "state_dict" not in ckpt:
        got = ckpt.get("package") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"load_checkpoint: {p!r} is not a valid {what} (truncated or not written by undistort; "
            f"package={got!r})"
        )
    fv = int(ckpt.get("format_version", -1))
    if fv > FORMAT_VERSION:
        raise ValueError(
            f"load_checkpoint: {p!r} has format_version {fv}, newer than this undistort "
            f"({__version__}, format {FORMAT_VERSION}); upgrade undistort"
        )
    return ckpt
