"""Opt-in fused C++ kernel of the CPU soft quantizer (``QNET_NATIVE_KERNEL=1``).

The eager kernel (:mod:`qnet._host_kernel`) runs four ATen passes per level over cache-sized chunks; this one
computes every level of an element in registers and touches memory once per direction (``csrc/
soft_quantize_cpu.cpp``). It is compiled on first use with :func:`torch.utils.cpp_extension.load` (a C++
compiler and ``ninja`` are needed, ``pip install qnet[native]`` brings ninja; the build is cached under ``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``), for the CPU's vector unit as PyTorch reports it (AVX2 or AVX-512). Nothing is
compiled unless the variable is set. When it is set but the kernel cannot be built, the first call raises
``RuntimeError`` saying why (it never falls back silently: the user asked for it).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
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


def requested() -> bool:
    """Whether the environment asks for the native kernel (``QNET_NATIVE_KERNEL=1``)."""
    return os.environ.get(ENV, "") == "1"


@functools.cache
def capability() -> str:
    """The CPU vector capability torch reports (``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, ...)."""
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return str(get()) if get is not None else "DEFAULT"


@functools.cache
def _build(cap: str) -> Any:
    from torch.utils.cpp_extension import load

    flags = ["-O3", *_CAPABILITY_FLAGS[cap], f"-DCPU_CAPABILITY={cap}"]
    # at::parallel_for runs serially unless the extension itself is built with OpenMP (as ATen is on Linux)
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    name = f"qnet_native_{__version__.replace('.', '_')}_{cap.lower()}"
    logger.info("qnet: compiling the native soft-quantizer kernel (%s, first use only)", name)
    try:
        return load(
            name=name, sources=[SOURCE], extra_cflags=flags + openmp, extra_ldflags=openmp, verbose=False
        )
    except Exception as err:  # a compiler / ninja problem: say what was asked and what failed
        raise RuntimeError(
            f"{ENV}=1 asks for qnet's native CPU kernel, but it could not be built ({type(err).__name__}: "
            f"{err}). It needs a C++ compiler and ninja (pip install ninja); unset {ENV} to use the eager kernel"
        ) from err


def module() -> Any | None:
    """The compiled kernel module when requested and supported here, else ``None`` (use the eager kernel).

    Raises:
        RuntimeError: requested, on an AVX2/AVX-512 CPU, but the build failed.
    """
    if not requested():
        return None
    cap = capability()
    if cap not in _CAPABILITY_FLAGS:
        _warn_unsupported(cap)
        return None
    return _build(cap)


@functools.cache
def _warn_unsupported(cap: str) -> None:
    logger.warning(
        "%s=1 ignored: the native kernel is built for AVX2/AVX-512 CPUs; this one reports %s", ENV, cap
    )
