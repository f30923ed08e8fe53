"""What the reproduction scripts beside this file share: pinning what their numbers depend on, and one-line errors.

Not part of the wheel: the scripts import it from their own folder.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import torch


def pin(threads: int) -> dict[str, Any]:
    """Pin what the numbers depend on (torch threads, deterministic kernels) and return the settings to record.

    The thread count changes the order of floating-point reductions and so every trained number: the committed
    reports were made with one thread, and a rerun with another count gives different (seed-level) numbers.
    """
    if threads < 1:
        raise ValueError(f"--threads must be >= 1; got {threads}")
    torch.set_num_threads(threads)
    # warn, not fail, where a CUDA kernel has no deterministic form
    torch.use_deterministic_algorithms(True, warn_only=True)
    return {
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def run_cli(prog: str, body: Callable[[], int], *, verbose: bool) -> int:
    """Run ``body``; a user error (missing file, bad value) prints one line and returns 2, the traceback only
    with ``verbose``."""
    try:
        return body()
    except (OSError, ValueError, TypeError, RuntimeError) as err:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {err} (rerun with --verbose for the traceback)", file=sys.stderr)
        return 2
