"""Optional fast paths. pytorch3d's point ops are used when importable; plain torch otherwise."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["get_pytorch3d_ops"]


def get_pytorch3d_ops() -> ModuleType | None:
    """Return ``pytorch3d.ops`` when it can be imported, else ``None`` (the plain-torch path is used)."""
    try:
        return importlib.import_module("pytorch3d.ops")
    except Exception:  # ImportError, or a broken binary build
        return None
