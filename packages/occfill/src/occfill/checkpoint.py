"""Atomic, ``weights_only``-loadable checkpoints.

A checkpoint is a ``.pt`` dict: ``format_version``, ``package``, ``package_version``, ``arch``, ``config``
(JSON-able builder kwargs), ``state_dict`` (unwrapped: ``module.``/``_orig_mod.`` stripped), and optional
``modules`` (further named state dicts, e.g. discriminators), ``optimizer``, ``epoch``, ``step``,
``metrics``, ``rng`` and ``resolution`` (``[H, W]`` of the training images). Only tensors and plain Python types are stored, so it loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .__about__ import __version__

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "clean_state_dict", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1


def clean_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Strip DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes from the keys.

    Args:
        state_dict: a model's state dict.

    Returns:
        A new dict with clean keys.

    Examples:
        >>> clean_state_dict({"module._orig_mod.w": 1})
        {'w': 1}
    """
    out = {}
    for k, v in state_dict.items():
        while k.startswith(("module.", "_orig_mod.")):
            k = k.split(".", 1)[1]
        out[k] = v
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    config: Mapping[str, Any] | None = None,
    modules: Mapping[str, nn.Module] | None = None,
    optimizer: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    step: int | None = None,
    metrics: Mapping[str, float] | None = None,
    rng: Mapping[str, Any] | None = None,
    resolution: tuple[int, int] | None = None,
) -> None:
    """Write a checkpoint atomically (temp file beside ``path``, fsync, ``os.replace``).

    Under ``torch.distributed`` only rank 0 writes.

    Args:
        path: destination ``.pt`` file.
        model: the main model (DDP/compiled wrappers are unwrapped).
        arch: registry name of the main model's builder.
        config: JSON-able builder kwargs.
        modules: further named models whose state dicts are stored under ``"modules"``.
        optimizer: named optimizer state dicts.
        epoch: epoch counter.
        step: step counter.
        metrics: scalar metrics.
        rng: RNG states (tensors).
        resolution: ``(H, W)`` the model was trained at (stored as ``"resolution"``; :class:`occfill.Completer`
            resizes inputs to it and the result back).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_checkpoint: 'model' must be an nn.Module; got {type(model).__name__}")
    if (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_rank() != 0
    ):
        return
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "package": "occfill",
        "package_version": __version__,
        "arch": arch,
        "config": dict(config or {}),
        "state_dict": clean_state_dict(_unwrap(model).state_dict()),
    }
    if modules:
        payload["modules"] = {k: clean_state_dict(_unwrap(m).state_dict()) for k, m in modules.items()}
    for key, value in (
        ("optimizer", optimizer),
        ("epoch", epoch),
        ("step", step),
        ("metrics", metrics),
        ("rng", rng),
        ("resolution", [int(v) for v in resolution] if resolution is not None else None),
    ):
        if value is not None:
            payload[key] = dict(value) if isinstance(value, Mapping) else value
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus the umask)
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    logger.info("saved checkpoint %s (arch=%s, step=%s)", path, arch, step)


def _current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _not_valid(path: str, why: str) -> ValueError:
    return ValueError(
        f"load_checkpoint: {path!r} is not a valid occfill checkpoint (truncated or not written by occfill): "
        f"{why}"
    )


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check that it is an occfill one.

    Args:
        path: the ``.pt`` file.
        map_location: where tensors are loaded.

    Returns:
        The checkpoint dict (see the module docstring).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a truncated, garbage or foreign file (the message names the file and says it is not a
            valid occfill checkpoint), or a newer ``format_version``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path!r}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip/pickle/unpickler errors of every kind: one clear message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _not_valid(path, f"torch.load failed ({type(exc).__name__}: {first[:200]})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("package") != "occfill":
        got = ckpt.get("package") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise _not_valid(path, f"package={got!r}")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise _not_valid(path, "no 'state_dict' entry")
    if int(ckpt.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"load_checkpoint: {path!r} has format_version {ckpt['format_version']}, newer than this occfill "
            f"({__version__}) reads ({FORMAT_VERSION}); upgrade occfill"
        )
    return ckpt
