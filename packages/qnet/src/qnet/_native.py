"""Fused C++ kernel of the CPU soft quantizer: the default fast path wherever it can be built.

The eager kernel (:mod:`qnet._host_kernel`) runs four ATen passes per level over cache-sized chunks; this one
computes every level of an element in registers and touches memory once per direction (``csrc/
soft_quantize_cpu.cpp``). It is compiled once, on first use, with :func:`torch.utils.cpp_extension.load` for the
CPU's vector unit as PyTorch reports it (AVX2 or AVX-512), and cached under ``TORCH_EXTENSIONS_DIR`` (by default
``~/.cache/torch_extensions``) in a folder named after the Python, torch and qnet versions, so a later process
loads it in milliseconds.

The environment variable ``QNET_NATIVE_KERNEL`` picks the behaviour, read at every call:

* unset or ``auto`` (default): use the kernel when it can be built here (AVX2/AVX-512 CPU, a C++ compiler,
  ``ninja``: a dependency of qnet); otherwise log one warning with the reason and run the eager kernel, which
  computes the same function.
* ``1``: require it; the first call raises ``RuntimeError`` saying why when it cannot be built.
* ``0``: never build it; the eager kernel runs.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import time
from typing import Any

import torch

from .__about__ import __version__

logger = logging.getLogger(__name__)

ENV = "QNET_NATIVE_KERNEL"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "soft_quantize_cpu.cpp")

# ATen's vector types pick their implementation from these macros; the flags match the CPU capability
# torch itself dispatches to on this machine.
_CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2"],
}
_MODES = {"": "auto", "auto": "auto", "1": "on", "on": "on", "0": "off", "off": "off"}
# torch's build lock is a plain file: a process killed mid-build leaves it behind and every later build waits
# on it forever. A real build takes well under a minute, so a lock this old is stale.
STALE_LOCK_S = 600.0


def mode() -> str:
    """``"auto"``, ``"on"`` or ``"off"``, from ``QNET_NATIVE_KERNEL`` (unset: ``"auto"``).

    Raises:
        ValueError: the variable holds something else.
    """
    raw = os.environ.get(ENV, "")
    key = raw.strip().lower()
    if key not in _MODES:
        raise ValueError(f"{ENV} must be one of 'auto', '1' or '0' (unset means 'auto'); got {raw!r}")
    return _MODES[key]


def requested() -> bool:
    """Whether the environment requires the native kernel (``QNET_NATIVE_KERNEL=1``)."""
    return mode() == "on"


@functools.cache
def capability() -> str:
    """The CPU vector capability torch reports (``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, ...)."""
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return str(get()) if get is not None else "DEFAULT"


def missing_tool() -> str | None:
    """Why the kernel cannot be built here (no C++ compiler, no ninja), or ``None``."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx!r} is not on PATH; set CXX)"
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def build_directory(name: str) -> str:
    """Where the kernel ``name`` is built and cached: one folder per Python and torch version."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__}".replace("+", "_")
    return os.path.join(root, tag, name)


def clear_stale_lock(folder: str, max_age_s: float = STALE_LOCK_S) -> bool:
    """Remove ``folder/lock`` when it is older than ``max_age_s`` (a build killed midway); True if removed."""
    lock = os.path.join(folder, "lock")
    try:
        age = time.time() - os.path.getmtime(lock)
    except OSError:  # no lock: nothing to do
        return False
    if age <= max_age_s:
        return False
    logger.warning(
        "qnet: removing a stale build lock %s (%.0f s old, left by an interrupted build)", lock, age
    )
    try:
        os.remove(lock)
    except FileNotFoundError:  # another process removed it first
        pass
    return True


@functools.cache
def _build(cap: str) -> Any:
    from torch.utils.cpp_extension import load

    flags = ["-O3", *_CAPABILITY_FLAGS[cap], f"-DCPU_CAPABILITY={cap}"]
    # at::parallel_for runs serially unless the extension itself is built with OpenMP (as ATen is on Linux)
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    name = f"qnet_native_{__version__.replace('.', '_')}_{cap.lower()}"
    try:
        folder = build_directory(name)
        os.makedirs(folder, exist_ok=True)
        clear_stale_lock(folder)
        logger.info(
            "qnet: loading the native soft-quantizer kernel from %s (compiled on first use, ~30 s)", folder
        )
        return load(
            name=name,
            sources=[SOURCE],
            extra_cflags=flags + openmp,
            extra_ldflags=openmp,
            build_directory=folder,
            verbose=False,
        )
    except Exception as err:  # a compiler / ninja / file-system problem: say what failed
        raise RuntimeError(
            f"qnet's native CPU kernel could not be built ({type(err).__name__}: {err}). It needs a C++ "
            f"compiler, ninja (pip install ninja) and a writable TORCH_EXTENSIONS_DIR; {ENV}=0 uses the eager "
            "kernel"
        ) from err


@functools.cache
def _auto(cap: str) -> Any | None:
    """The kernel in ``auto`` mode: built when possible, else ``None`` after one warning with the reason."""
    reason = missing_tool()
    if reason is None:
        try:
            return _build(cap)
        except RuntimeError as err:
            reason = str(err)
    logger.warning(
        "qnet: the native CPU kernel is not available (%s); the eager kernel runs (same values, slower "
        "training). Set %s=0 to silence this.",
        reason,
        ENV,
    )
    return None


def module() -> Any | None:
    """The compiled kernel module when enabled and available here, else ``None`` (use the eager kernel).

    Raises:
        RuntimeError: ``QNET_NATIVE_KERNEL=1`` on an AVX2/AVX-512 CPU, but the build failed.
        ValueError: ``QNET_NATIVE_KERNEL`` holds an unknown value.
    """
    m = mode()
    if m == "off":
        return None
    cap = capability()
    if cap not in _CAPABILITY_FLAGS:
        _warn_unsupported(cap, m)
        return None
    return _build(cap) if m == "on" else _auto(cap)


@functools.cache
def _warn_unsupported(cap: str, m: str) -> None:
    level = logging.WARNING if m == "on" else logging.INFO
    logger.log(
        level,
        "qnet: the native kernel is built for AVX2/AVX-512 CPUs; this one reports %s: eager kernel",
        cap,
    )
