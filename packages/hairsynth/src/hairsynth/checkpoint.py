"""Atomic checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint is a ``.pt`` dict: ``format_version``, ``package``, ``package_version``, ``arch``, ``config``
(JSON-able builder kwargs), ``state_dict`` (unwrapped: ``module.``/``_orig_mod.`` stripped) and optional
``optimizer``, ``extra_state_dicts`` (e.g. discriminators), ``step``, ``epoch``, ``metrics``, ``rng``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import torch

from .__about__ import __version__

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "clean_state_dict", "load_checkpoint", "load_weights_file", "save_checkpoint"]

FORMAT_VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")


def clean_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Strip DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) prefixes from every key.

    Args:
        state_dict: a model state_dict.

    Returns:
        A new dict with clean keys.

    Examples:
        >>> clean_state_dict({"module._orig_mod.w": 1})
        {'w': 1}
    """
    out = {}
    for k, v in state_dict.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k = k[len(p) :]
                    changed = True
        out[k] = v
    return out


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if isinstance(inner, torch.nn.Module):
            model = inner
        else:
            return model


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    *,
    arch: str,
    config: Mapping[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra_state_dicts: Mapping[str, Mapping[str, Any]] | None = None,
    step: int | None = None,
    epoch: int | None = None,
    metrics: Mapping[str, float] | None = None,
    rng: bool = False,
) -> None:
    """Write a checkpoint atomically (temp file beside ``path``, ``fsync``, ``os.replace``).

    Call it on rank 0 only under DDP.

    Args:
        path: target file.
        model: the model (DDP/compiled wrappers are unwrapped).
        arch: registry name of the architecture.
        config: JSON-able builder kwargs.
        optimizer: optional optimizer whose state is saved.
        extra_state_dicts: more named state_dicts (discriminators, their optimizers, ...).
        step: optional global step.
        epoch: optional epoch.
        metrics: optional float metrics.
        rng: also save the torch CPU RNG state.

    Raises:
        TypeError: ``model`` is not a module.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"save_checkpoint: 'model' must be an nn.Module; got {type(model).__name__}")
    ckpt: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "package": "hairsynth",
        "package_version": __version__,
        "arch": str(arch),
        "config": dict(config or {}),
        "state_dict": clean_state_dict(_unwrap(model).state_dict()),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if extra_state_dicts:
        ckpt["extra_state_dicts"] = {k: clean_state_dict(v) for k, v in extra_state_dicts.items()}
    if step is not None:
        ckpt["step"] = int(step)
    if epoch is not None:
        ckpt["epoch"] = int(epoch)
    if metrics:
        ckpt["metrics"] = {k: float(v) for k, v in metrics.items()}
    if rng:
        ckpt["rng"] = torch.get_rng_state()
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus the umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            torch.save(ckpt, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    logger.info("saved checkpoint %s (arch=%s, step=%s)", path, arch, step)


def _umask() -> int:
    """The process umask (read without changing it where ``/proc`` tells it, else set-and-restore)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_weights_file(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    what: str = "hairsynth checkpoint",
) -> Any:
    """``torch.load(path, weights_only=True)`` with a clear error for a missing, truncated or foreign file.

    Args:
        path: the file.
        map_location: where tensors are loaded.
        what: what the file should be, for the error message.

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be read as a weights-only torch file (truncated, garbage, a pickle that
            holds code); the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {what} at {path!r}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip/pickle/unpickler errors of every kind
        logger.debug("torch.load(%r, weights_only=True) failed: %r", path, e)
        raise ValueError(
            f"{path!r} is not a valid {what} (truncated or not written by "
            f"{'hairsynth' if 'hairsynth' in what else 'torch.save with plain tensors'})"
        ) from None


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: checkpoint file.
        map_location: where tensors are loaded.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated or garbage file ("... is not a valid hairsynth checkpoint (truncated or not
            written by hairsynth)"), not a hairsynth checkpoint, or an unknown format version.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path!r}")
    try:
        ckpt = load_weights_file(path, map_location=map_location, what="hairsynth checkpoint")
    except ValueError as e:
        raise ValueError(f"load_checkpoint: {e}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"load_checkpoint: {path!r} is not a checkpoint dict with a 'state_dict'")
    if ckpt.get("package") != "hairsynth":
        raise ValueError(
            f"load_checkpoint: {path!r} was written by package {ckpt.get('package')!r}, not 'hairsynth'"
        )
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"load_checkpoint: {path!r} has format_version {ckpt.get('format_version')!r}; this hairsynth "
            f"({__version__}) reads format_version {FORMAT_VERSION}"
        )
    return ckpt
