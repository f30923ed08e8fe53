"""Capture intermediate outputs of any ``nn.Module`` with forward hooks."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["FeatureTap", "unwrap_model"]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the module inside ``DistributedDataParallel``/``DataParallel``/``torch.compile`` wrappers.

    Args:
        model: a module, possibly wrapped (several times).

    Returns:
        The innermost wrapped module (``model`` itself when it is not wrapped).

    Examples:
        >>> m = nn.Linear(2, 2); unwrap_model(m) is m
        True
    """
    seen = 0
    while seen < 8:
        inner = getattr(model, "module", None)
        if isinstance(inner, nn.Module) and isinstance(
            model, (nn.parallel.DistributedDataParallel, nn.DataParallel)
        ):
            model = inner
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            break
        seen += 1
    return model


class FeatureTap:
    """Record the outputs of named submodules of a model on every forward pass.

    Works on any ``nn.Module`` (like torchvision's ``create_feature_extractor`` without tracing): a forward
    hook per layer stores the layer's output in :attr:`features`, keyed by the name as given. Wrapped models
    (DDP, ``DataParallel``, ``torch.compile``) are unwrapped first, and a leading ``module.`` or ``_orig_mod.``
    in a layer name is ignored, so the same names work before and after wrapping. Hooks live only on this tap
    (no global state) and are removed by :meth:`remove` or on leaving a ``with`` block.

    Outputs are kept with their autograd graph (so losses on them train the model); call :meth:`clear`
    to drop them. A layer returning a tuple contributes its first tensor.

    Args:
        model: the model to observe.
        layers: submodule names as in ``model.named_modules()`` (e.g. ``"layer3"``, ``"layer3.2.relu"``);
            one name or an iterable of names.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or a name is not a string.
        ValueError: no layers, a duplicated name, or a name that does not exist (the message lists close matches).

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> with FeatureTap(net, ["1"]) as tap:
        ...     y = net(torch.randn(5, 4))
        ...     tap.features["1"].shape
        torch.Size([5, 3])
    """

    def __init__(self, model: nn.Module, layers: str | Iterable[str]) -> None:
        fn = "FeatureTap"
        if not isinstance(model, nn.Module):
            raise TypeError(f"{fn}: 'model' must be a torch.nn.Module; got {type(model).__name__}")
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise ValueError(f"{fn}: 'layers' must name at least one submodule; got none")
        for n in names:
            if not isinstance(n, str):
                raise TypeError(f"{fn}: every layer name must be a str; got {type(n).__name__}")
        if len(set(names)) != len(names):
            raise ValueError(f"{fn}: 'layers' has duplicated names: {names}")
        inner = unwrap_model(model)
        available = {name: mod for name, mod in inner.named_modules() if name}
        self.layers: list[str] = names
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        targets: list[tuple[str, nn.Module]] = []
        for name in names:
            key = name
            for prefix in _WRAPPER_PREFIXES:
                while key.startswith(prefix) and key not in available:
                    key = key[len(prefix) :]
            if key not in available:
                close = difflib.get_close_matches(key, list(available), n=5, cutoff=0.5)
                hint = f"; close matches: {close}" if close else ""
                raise ValueError(
                    f"{fn}: layer {name!r} does not exist in {type(inner).__name__} "
                    f"({len(available)} named submodules){hint}"
                )
            targets.append((name, available[key]))
        for name, mod in targets:
            self._handles.append(mod.register_forward_hook(self._make_hook(name)))
        logger.debug("FeatureTap on %s: %s", type(inner).__name__, names)

    def _make_hook(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)):
                output = next((o for o in output if isinstance(o, torch.Tensor)), None)
            if isinstance(output, torch.Tensor):
                self.features[name] = output

        return hook

    def __getitem__(self, name: str) -> torch.Tensor:
        """The last recorded output of ``name``; ``KeyError`` (with advice) if nothing was recorded."""
        try:
            return self.features[name]
        except KeyError:
            raise KeyError(
                f"FeatureTap: no output recorded for {name!r}; run a forward pass first "
                f"(tapped layers: {self.layers})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def clear(self) -> None:
        """Forget the recorded outputs (and their graphs)."""
        self.features.clear()

    def remove(self) -> None:
        """Remove every hook; the tap records nothing afterwards. Safe to call twice."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.clear()

    @property
    def active(self) -> bool:
        """Whether the hooks are still installed."""
        return bool(self._handles)

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"FeatureTap(layers={self.layers}, active={self.active})"
