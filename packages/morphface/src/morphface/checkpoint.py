"""Checkpoints: a plain dict of tensors and JSON-able values, written atomically, read with
``weights_only=True``.

Layout: ``format_version``, ``package``, ``package_version``, ``arch`` (class name per network),
``config`` (constructor kwargs per network), ``state_dict`` (per network, ``module.``/``_orig_mod.``
stripped), optional ``optimizer``, ``step``, ``metrics``, ``rng``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from .__about__ import __version__
from ._utils import atomic_write, invalid_file

logger = logging.getLogger(__name__)

__all__ = ["build_from_checkpoint", "clean_state_dict", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1


def clean_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes.

    Args:
        state_dict: a module's state dict.

    Returns:
        A new dict with clean keys.

    Examples:
        >>> list(clean_state_dict({"module._orig_mod.w": torch.zeros(1)}))
        ['w']
    """
    out = {}
    for k, v in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix) :]
        k = k.replace("._orig_mod.", ".").replace(".module.", ".")
        out[k] = v
    return out


def _unwrap(m: nn.Module) -> nn.Module:
    while hasattr(m, "module") and isinstance(m.module, nn.Module):
        m = m.module
    return getattr(m, "_orig_mod", m)


def save_checkpoint(
    path: str | os.PathLike[str],
    networks: dict[str, nn.Module],
    *,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    step: int = 0,
    metrics: dict[str, float] | None = None,
) -> None:
    """Write a checkpoint atomically (temp file + fsync + ``os.replace``).

    Args:
        path: destination ``.pt`` file.
        networks: name -> module (DDP/compiled wrappers are unwrapped); each needs a ``config`` dict
            attribute to be rebuilt by :func:`build_from_checkpoint`.
        optimizers: optional name -> optimizer.
        step: training step.
        metrics: optional scalar metrics.

    Raises:
        TypeError: ``networks`` is not a dict of modules, or ``optimizers`` not a dict of optimizers.
    """
    fn = "save_checkpoint"
    if not isinstance(networks, dict) or not networks:
        raise TypeError(
            f"{fn}: 'networks' must be a non-empty dict name -> nn.Module; got {type(networks).__name__}"
        )
    for name, net in networks.items():
        if not isinstance(net, nn.Module):
            raise TypeError(f"{fn}: 'networks[{name!r}]' must be an nn.Module; got {type(net).__name__}")
    for name, opt in (optimizers or {}).items():
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"{fn}: 'optimizers[{name!r}]' must be a torch.optim.Optimizer; got {type(opt).__name__}"
            )
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "package": "morphface",
        "package_version": __version__,
        "arch": {},
        "config": {},
        "state_dict": {},
        "step": int(step),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "rng": torch.get_rng_state(),
    }
    for name, net in networks.items():
        net = _unwrap(net)
        payload["arch"][name] = type(net).__name__
        payload["config"][name] = dict(getattr(net, "config", {}))
        payload["state_dict"][name] = clean_state_dict(
            {k: v.detach().cpu() for k, v in net.state_dict().items()}
        )
    if optimizers:
        payload["optimizer"] = {k: o.state_dict() for k, o in optimizers.items()}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    logger.info("saved checkpoint %s (step %d)", os.fspath(path), step)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` on the CPU and check its header.

    Args:
        path: the ``.pt`` file.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated / garbage / foreign file ("not a valid morphface checkpoint (truncated or not
            written by morphface)") or a newer format.
    """
    fn = "load_checkpoint"
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: no checkpoint at {path!r}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # PytorchStreamReader / zip / unpickling / "Weights only load failed" errors
        raise invalid_file(fn, path, "morphface checkpoint", exc) from exc
    if not isinstance(ck, dict) or ck.get("package") != "morphface" or "state_dict" not in ck:
        got = ck.get("package") if isinstance(ck, dict) else type(ck).__name__
        raise invalid_file(fn, path, f"morphface checkpoint (package={got!r})")
    if int(ck.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{fn}: {path!r} has format_version {ck['format_version']} but this morphface "
            f"({__version__}) reads up to {FORMAT_VERSION}; upgrade morphface"
        )
    return ck


def build_from_checkpoint(
    path: str | os.PathLike[str], name: str, *, device: torch.device | str | None = None
) -> nn.Module:
    """Rebuild one network of a checkpoint from its ``arch`` + ``config`` and load its weights.

    Args:
        path: the ``.pt`` file.
        name: network name in the checkpoint (e.g. ``"generator"``).
        device: target device.

    Returns:
        The module in eval mode.

    Raises:
        KeyError: no network of that name.
        ValueError: an unknown architecture.
    """
    from .models.attribute import AttributeGenerator, PatchDiscriminator, Upsampler

    ck = load_checkpoint(path)
    if name not in ck["arch"]:
        raise KeyError(
            f"build_from_checkpoint: no network {name!r} in {os.fspath(path)!r}; has {sorted(ck['arch'])}"
        )
    classes: dict[str, type[nn.Module]] = {
        "AttributeGenerator": AttributeGenerator,
        "PatchDiscriminator": PatchDiscriminator,
        "Upsampler": Upsampler,
    }
    arch = ck["arch"][name]
    if arch not in classes:
        raise ValueError(f"build_from_checkpoint: unknown architecture {arch!r}; known {sorted(classes)}")
    cfg = dict(ck["config"][name])
    first = (
        cfg.pop("resolution", None)
        if arch == "AttributeGenerator"
        else cfg.pop("in_channels", None)
        if arch == "PatchDiscriminator"
        else cfg.pop("channels", None)
    )
    net = classes[arch](first, **cfg)
    net.load_state_dict(ck["state_dict"][name])
    return net.to(device).eval()
