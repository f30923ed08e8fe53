"""Private helpers: atomic file writes and array coercion."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` for a temp file beside ``path``, fsync it, then ``os.replace`` it."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        # mkstemp creates 0600, and some writers (safetensors) recreate the file: set ordinary permissions
        # (0666 minus the umask) on what was written, just before it takes the final name
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class InvalidFileError(ValueError):
    """A file that exists but cannot be parsed as what the caller expects (truncated, garbage, foreign)."""


def invalid_file(
    fn: str,
    path: str,
    what: str,
    exc: BaseException | None = None,
    *,
    reason: str = "truncated or not written by morphface",
) -> InvalidFileError:
    """Build the one error every morphface loader raises for an unreadable file.

    Args:
        fn: the public function that failed (message prefix).
        path: the file.
        what: what the file should have been, e.g. ``"morphface checkpoint"``.
        exc: the underlying parser error; only its type is named (chain it with ``from exc``).
        reason: the likely cause, in parentheses after ``what``.

    Returns:
        The error to raise (``raise invalid_file(...) from exc``).
    """
    # the parser's own message (zip / pickle / stream-reader internals) stays on the chained exception only
    detail = f" [{type(exc).__name__}]" if exc is not None else ""
    return InvalidFileError(f"{fn}: {path!r} is not a valid {what} ({reason}){detail}")


def as_vertex_tensor(mesh: Any, *, fn: str, name: str = "mesh") -> torch.Tensor:
    """Coerce a trimesh mesh, array or tensor to a float tensor of vertex positions (no copy if possible)."""
    if isinstance(mesh, torch.Tensor):
        out = mesh
    elif isinstance(mesh, np.ndarray):
        out = torch.from_numpy(np.ascontiguousarray(mesh))
    elif hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        out = torch.from_numpy(np.ascontiguousarray(np.asarray(mesh.vertices)))
    else:
        raise TypeError(
            f"{fn}: '{name}' must be a trimesh.Trimesh, a numpy array or a torch.Tensor; got {type(mesh).__name__}"
        )
    if not out.is_floating_point():
        raise TypeError(f"{fn}: '{name}' must hold floating-point vertex positions; got {out.dtype}")
    return out
