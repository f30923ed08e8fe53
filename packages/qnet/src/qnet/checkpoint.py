"""Atomic training checkpoints that load with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import torch
from torch import nn

from .__about__ import __version__
from ._checks import check_module, check_path

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "clean_state_dict", "default_file_mode", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1
NOT_VALID = "not a valid qnet checkpoint (truncated or not written by qnet)"


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` minus the process umask (``0o644`` for umask 022).

    ``tempfile.mkstemp`` creates files readable by their owner only (``0o600``); atomic writers chmod the
    temporary file to this mode before ``os.replace`` so the result has the usual permissions.
    """
    try:  # Linux: read the umask without changing it (no race with other threads)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def clean_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Strip the ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``) prefixes from keys.

    Args:
        state: a state dict.

    Returns:
        A new dict with cleaned keys.
    """
    out = {}
    for k, v in state.items():
        for pre in ("module.", "_orig_mod."):
            while k.startswith(pre):
                k = k[len(pre) :]
        out[k.replace("._orig_mod.", ".")] = v
    return out


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    arch: str | None = None,
    config: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    """Write a checkpoint atomically (temp file, ``fsync``, ``os.replace``).

    Args:
        path: destination ``.pt`` file.
        model: the model (DDP/compile wrappers are stripped from the keys).
        arch: registry name of the architecture.
        config: JSON-able builder arguments.
        **extra: more plain entries (``optimizer``, ``epoch``, ``step``, ``metrics``, ``temperature``...).

    Raises:
        TypeError: ``path`` is not a path or ``model`` is not an ``nn.Module``.
    """
    check_path(path, "path", fn="save_checkpoint")
    check_module(model, "model", fn="save_checkpoint")
    ckpt = {
        "format_version": FORMAT_VERSION,
        "package": "qnet",
        "package_version": __version__,
        "arch": arch,
        "config": dict(config or {}),
        "state_dict": clean_state_dict(model.state_dict()),
        **extra,
    }
    p = os.fspath(path)
    d = os.path.dirname(os.path.abspath(p))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".qnet-ckpt-", suffix=".tmp", dir=d)
    try:
        os.chmod(tmp, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    logger.info("saved checkpoint %s", p)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` on the CPU and check its header.

    Args:
        path: a file written by :func:`save_checkpoint`.

    Returns:
        The checkpoint dict.

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is truncated, garbage or not written by qnet ("not a valid qnet checkpoint"),
            or has a newer format version.
    """
    check_path(path, "path", fn="load_checkpoint")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"load_checkpoint: 'path' {p!r} does not exist or is not a file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle/unpickler errors of a truncated or foreign file
        raise ValueError(f"load_checkpoint: {p!r} is {NOT_VALID} ({type(e).__name__})") from e
    if not isinstance(ckpt, dict) or ckpt.get("package") != "qnet":
        raise ValueError(f"load_checkpoint: {p!r} is {NOT_VALID} (no qnet header)")
    if int(ckpt.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"load_checkpoint: {os.fspath(path)!r} has format_version {ckpt.get('format_version')}; "
            f"this qnet ({__version__}) reads up to {FORMAT_VERSION}: upgrade qnet"
        )
    return ckpt
