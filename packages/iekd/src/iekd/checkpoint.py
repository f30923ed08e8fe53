"""Atomic checkpoints that load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import torch
from torch import nn

from .__about__ import __version__
from .hooks import unwrap_model

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "clean_state_dict",
    "load_checkpoint",
    "load_state_file",
    "save_checkpoint",
]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file is not a valid checkpoint (truncated, garbage, or not written by this package)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_state_file(
    path: str | os.PathLike[str], *, fn: str, map_location: str | torch.device = "cpu"
) -> Any:
    """``torch.load(path, weights_only=True)`` with clear errors for a missing, truncated or garbage file.

    Args:
        path: the file.
        fn: name of the calling function, used in error messages.
        map_location: where tensors are loaded.

    Returns:
        The loaded object (never unpickles code).

    Raises:
        FileNotFoundError: no such file (or it is a folder).
        CheckpointError: the file cannot be read as a ``weights_only`` torch file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: no checkpoint file at {path!r}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any reader failure (zip, unpickler, EOF, IndexError on garbage, ...)
        raise CheckpointError(
            f"{fn}: {path!r} is not a valid iekd checkpoint (truncated, or not written by iekd / torch.save)"
        ) from err


def clean_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Strip ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``) prefixes from state-dict keys.

    Args:
        state_dict: a state dict, possibly from a wrapped model.

    Returns:
        A new dict with clean keys (same tensors).

    Examples:
        >>> list(clean_state_dict({"module.fc.weight": 1}))
        ['fc.weight']
    """
    out: dict[str, Any] = {}
    for k, v in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "_orig_mod."):
                if k.startswith(prefix):
                    k, changed = k[len(prefix) :], True
        out[k] = v
    return out


def _is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    *,
    arch: str | None = None,
    config: dict[str, Any] | None = None,
    state_dict: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    """Write a checkpoint atomically (temp file beside it, ``fsync``, ``os.replace``); rank 0 only.

    The file is a dict with ``format_version``, ``package``, ``package_version``, ``arch``, ``config``,
    ``state_dict`` (unwrapped) and any ``extra`` entries (``optimizer``, ``epoch``, ``metrics``, ...). Only
    tensors and plain Python types may be stored so that it loads with ``weights_only=True``.

    Args:
        path: destination file (its folder is created).
        model: the model whose (clean) state dict is saved; or pass ``state_dict``.
        arch: registry name of the architecture, if any.
        config: JSON-able builder kwargs.
        state_dict: an explicit state dict (used when ``model`` is ``None``).
        **extra: further entries.

    Raises:
        ValueError: neither or both of ``model`` and ``state_dict`` are given.
    """
    if (model is None) == (state_dict is None):
        raise ValueError("save_checkpoint: pass exactly one of 'model' and 'state_dict'")
    if not _is_main_process():
        return
    sd = unwrap_model(model).state_dict() if model is not None else state_dict
    assert sd is not None
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "package": "iekd",
        "package_version": __version__,
        "arch": arch,
        "config": dict(config or {}),
        "state_dict": clean_state_dict(sd),
    }
    payload.update(extra)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        # mkstemp creates the file 0600; give it the usual 0666 & ~umask before it replaces the target.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    logger.info("saved checkpoint %s", path)


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Args:
        path: the file.
        map_location: where tensors are loaded (default CPU).

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: (a ``ValueError``) the file is truncated or garbage, is not an ``iekd`` checkpoint,
            or has a newer format.
    """
    path = os.fspath(path)
    ckpt = load_state_file(path, fn="load_checkpoint", map_location=map_location)
    if not isinstance(ckpt, dict) or ckpt.get("package") != "iekd":
        got = ckpt.get("package") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"load_checkpoint: {path!r} is not a valid iekd checkpoint (not written by iekd.save_checkpoint; "
            f"package={got!r})"
        )
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"load_checkpoint: {path!r} has format_version {ckpt['format_version']}, newer than this iekd "
            f"({__version__}) reads ({FORMAT_VERSION}); upgrade iekd"
        )
    return ckpt
