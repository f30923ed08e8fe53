"""Write the shipped generator (``src/occfill/weights/occfill_celeba128.pt``) from a training checkpoint.

Only the generator is kept (no discriminators, no optimizer state), with its arch, builder config, training
resolution, step and a pointer to the model card, so the wheel stays small and ``Completer.pretrained()``
loads it offline with ``weights_only=True``.

Usage::

    python packages/occfill/reproduce/export_weights.py /tmp/occfill/ck_full/full_s0.pt
"""

from __future__ import annotations

import argparse
import os
import sys

from occfill.checkpoint import load_checkpoint, save_checkpoint
from occfill.completer import PRETRAINED_FILE
from occfill.models import create_model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--out", default=os.path.join(here, "..", "src", "occfill", "weights", PRETRAINED_FILE))
    args = p.parse_args()
    ck = load_checkpoint(args.checkpoint)
    gen = create_model(ck["arch"], weights=args.checkpoint)
    save_checkpoint(
        args.out,
        gen,
        arch=ck["arch"],
        config=ck["config"],
        step=ck.get("step"),
        resolution=tuple(ck.get("resolution", (128, 128))),
    )
    print(
        f"wrote {os.path.normpath(args.out)} ({os.path.getsize(args.out) / 1e6:.2f} MB, step {ck.get('step')})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
