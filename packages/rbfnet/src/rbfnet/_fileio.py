"""Atomic file writes with the usual permissions (``0o666`` minus the umask, as ``open()`` gives)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO

__all__ = ["atomic_write", "default_file_mode"]


def _umask() -> int:
    # /proc avoids os.umask(0)/os.umask(old), which changes process-wide state for an instant
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def default_file_mode() -> int:
    """Mode a plain ``open(path, "w")`` would give a new file: ``0o666`` minus the process umask."""
    return 0o666 & ~_umask()


def atomic_write(path: str, write: Callable[[IO[bytes]], None], *, suffix: str = ".tmp") -> None:
    """Write ``path`` atomically: a temp file beside it, ``write(fh)``, fsync, normal mode, ``os.replace``.

    ``tempfile.mkstemp`` creates its file with mode ``0o600``; the file is given the usual
    ``0o666 & ~umask`` before it replaces ``path``, so others can read it as they could any file the user
    writes. The temp file is removed on any error.

    Args:
        path: destination file (its folder must exist).
        write: called with the open binary file.
        suffix: suffix of the temp file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
