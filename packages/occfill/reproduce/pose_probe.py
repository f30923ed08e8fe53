"""Why does the pose map / pose discriminator not help in the reproduction? A targeted probe (CPU, minutes).

The reproduction (``run.py``) found the full model NOT better than "no pose map / pose D" on the posed
renders after 150 GAN steps. Two explanations are checked here on the same data (``ict-faces-128``, 80
training / 20 held-out identities, reference = another render in another pose, landmark eye box), by
default at 32 px (``run.py`` uses 64 px) so that 600 steps per variant fit a few CPU minutes:

1. **Too few steps**: train longer (resuming the same run) and evaluate after each stage.
2. **Nothing forces the networks to use the pose**: in the figure, the pose discriminator sees
   ``(y, L)`` vs ``(G(...), L)``: real and fake carry the SAME pose map, so the discriminator can separate
   them without reading L (it is then a second global discriminator), and the visible lower face already
   shows the head pose to G. Probes: (a) the trained pose discriminator's accuracy at ranking
   ``(y, L)`` above ``(y, L')`` (L' = the pose of the held-out render whose yaw differs most; near 1 =
   pose-consistent), (b) how much G's completion changes when it is given L' instead of L (masked PSNR with the
   right minus the wrong pose map; 0 = G ignores L), and (c) the option that does force it: mismatched
   negatives ``(y, L')`` for the pose discriminator (``CompletionConfig(pose_mismatch=True)``).

Usage::

    python packages/occfill/reproduce/pose_probe.py --out reports/occfill [--data /work/shared/data]

Writes ``pose_probe_seed<seed>.json`` and ``pose_probe_seed<seed>.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

import torch

from occfill.data import PairedFaces
from occfill.functional import composite, masked_psnr, masked_ssim, occlude
from occfill.pose import pose_map
from occfill.recipes import CompletionConfig, train_completion


def _log(msg: str) -> None:
    sys.stderr.write(f"[pose_probe] {msg}\n")
    sys.stderr.flush()


@torch.no_grad()
def _evaluate(res: Any, batch: dict[str, torch.Tensor], wrong: torch.Tensor) -> dict[str, float]:
    gen = res.generator.eval()
    y, s, m, a = batch["image"], batch["reference"], batch["mask"], batch["angles"]
    h, w = y.shape[-2:]

    def complete(angles: torch.Tensor | None) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        pm = pose_map(angles, h, w) if angles is not None else None
        return composite(gen(occlude(y, m), s, pm, mask=m, generator=g), y, m)

    out = complete(a if gen.pose_channels else None)
    r: dict[str, float] = {
        "psnr_mask": float(masked_psnr(out, y, m).mean()),
        "ssim_mask": float(masked_ssim(out, y, m).mean()),
    }
    if gen.pose_channels:
        out_wrong = complete(a[wrong])
        r["psnr_mask_wrong_pose"] = float(masked_psnr(out_wrong, y, m).mean())
        r["hole_change_wrong_pose"] = float(((out_wrong - out).abs() * m).sum() / (3 * m.sum()))
    if "pose" in res.discriminators:
        d = res.discriminators["pose"].eval()
        right = d(y, pose_map(a, h, w)).mean(dim=(1, 2, 3))
        bad = d(y, pose_map(a[wrong], h, w)).mean(dim=(1, 2, 3))
        r["pose_d_accuracy"] = float((right > bad).float().mean())
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/occfill")
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "../shared/data"))
    p.add_argument(
        "--stages", default="150,600", help="comma-separated cumulative step counts to evaluate at"
    )
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, args.threads))
    os.makedirs(args.out, exist_ok=True)
    stages = [int(s) for s in args.stages.split(",")]
    t0 = time.time()
    root = os.path.join(args.data, "ict-faces-128")
    train = PairedFaces.from_meta_jsonl(
        root, identities=range(80), size=args.size, mask="landmarks", seed=0, preload=True
    )
    test = PairedFaces.from_meta_jsonl(
        root, identities=range(80, 100), size=args.size, mask="landmarks", seed=7
    )
    batch = next(iter(torch.utils.data.DataLoader(test, batch_size=len(test))))
    yaw = batch["angles"][:, 1]
    wrong = (yaw[:, None] - yaw[None]).abs().argmax(dim=1)  # the held-out render whose yaw differs most
    base = {
        "base_channels": args.width,
        "depth": 4,
        "d_base_channels": args.width,
        "d_layers": 3,
        "identity_weight": 0.0,
    }
    variants = {
        "no pose map / pose D": CompletionConfig(**base, use_pose=False),
        "pose map + pose D (figure)": CompletionConfig(**base),
        "pose map + pose D with mismatched negatives": CompletionConfig(**base, pose_mismatch=True),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in variants.items():
            ck = os.path.join(tmp, f"{len(results)}.pt")
            results[name] = {}
            for n in stages:
                t = time.time()
                res = train_completion(
                    train,
                    config=cfg,
                    steps=n,
                    batch_size=16,
                    seed=args.seed,
                    checkpoint=ck,
                    resume=True,
                    progress=False,
                )
                rec = sum(h["rec"] for h in res.history[-20:]) / min(20, len(res.history))
                r = _evaluate(res, batch, wrong)
                r["train_rec_last20"] = rec
                results[name][str(n)] = r
                _log(f"{name} @ {n} steps ({time.time() - t:.0f}s): {r}")
    payload = {
        "package": "occfill",
        "experiment": "pose probe on ict-faces-128 held-out identities 80-99",
        "command": "python " + " ".join(sys.argv),
        "seed": args.seed,
        "size": args.size,
        "stages": stages,
        "results": results,
        "wall_s": round(time.time() - t0, 1),
    }
    with open(os.path.join(args.out, f"pose_probe_seed{args.seed}.json"), "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
    cols = [
        ("psnr_mask", "masked PSNR (dB)"),
        ("ssim_mask", "masked SSIM"),
        ("psnr_mask_wrong_pose", "PSNR given a wrong pose map"),
        ("hole_change_wrong_pose", "hole change with a wrong pose map"),
        ("pose_d_accuracy", "pose D ranks right pose above wrong"),
        ("train_rec_last20", "train masked L1 (last 20 steps)"),
    ]
    lines = [
        "| variant | steps | " + " | ".join(c[1] for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for name, by_step in results.items():
        for n, r in by_step.items():
            vals = [f"{r[k]:.4f}" if k in r else "" for k, _ in cols]
            lines.append(f"| {name} | {n} | " + " | ".join(vals) + " |")
    with open(os.path.join(args.out, f"pose_probe_seed{args.seed}.md"), "w", encoding="utf-8") as fh:
        fh.write(
            f"Command: `{payload['command']}` (seed {args.seed}, {args.size} px, wall {payload['wall_s']} s)\n\n"
            + "\n".join(lines)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
