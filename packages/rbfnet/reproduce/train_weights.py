"""Train the weights shipped in the wheel (``create_model(name, weights="modelnet10")``) on ModelNet10.

    OMP_NUM_THREADS=1 python packages/rbfnet/reproduce/train_weights.py --model rbfnet_kernelwise \
        --epochs 15 --points 256 --out /tmp/rbfnet/weights [--data /work/shared/data]

One model per call, seed 0, on the full official ModelNet10 train split (3991 shapes,
``modelnet10-pc1024``), with the reproduction's recipe (:func:`rbfnet.train`: Adam 1e-3, weight decay 1e-4,
lr x0.5 every ``max(1, epochs // 4)`` epochs, batch 32, point dropout + anisotropic scale/shift + jitter).
No validation-based selection: the weights are those of the LAST finished epoch. ``--finalize`` turns
an interrupted run (stopped for lack of CPU time) into the shipped file from its last finished epoch, and
the card records both the epochs done and the schedule they came from. The test split (908 shapes, the
first ``--points`` points of each file) is evaluated once, after the weights are rounded to float16 (the
stored form), and that accuracy goes on the model card. One torch thread and deterministic algorithms are
pinned and recorded in ``<out>/<model>.json``. Not shipped in the wheel.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time

import torch

import rbfnet
from rbfnet.checkpoint import save_checkpoint
from rbfnet.data import PointCloudFolder, default_train_transform


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=["rbfnet_single", "rbfnet_kernelwise", "pointnet"])
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--points", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--out", required=True)
    p.add_argument(
        "--max-per-class", type=int, default=None, help="smoke runs only (not for shipped weights)"
    )
    p.add_argument(
        "--finalize",
        action="store_true",
        help="train nothing: take the last finished epoch of an interrupted run (<out>/<model>-work/last.pt), "
        "evaluate it and write the shipped file and its card (epochs done and scheduled are both recorded)",
    )
    p.add_argument("--trained-commit", default=None, help="with --finalize: the commit the run trained at")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    root = os.path.join(args.data, "modelnet10-pc1024")
    tr = PointCloudFolder(
        root,
        "train",
        num_points=args.points,
        sampling="random",
        transform=default_train_transform(),
        seed=args.seed,
        max_per_class=args.max_per_class,
    )
    te = PointCloudFolder(root, "test", num_points=args.points, max_per_class=args.max_per_class)
    model = rbfnet.create_model(args.model, num_classes=len(tr.classes))
    os.makedirs(args.out, exist_ok=True)
    t0 = time.process_time()
    work = os.path.join(args.out, args.model + "-work")
    if args.finalize:
        last = rbfnet.load_checkpoint(os.path.join(work, "last.pt"))
        model.load_state_dict(last["state_dict"])
        history = list(last["metrics"]["history"])
        cpu_train = None
    else:
        out = rbfnet.train(
            model,
            tr,
            None,
            epochs=args.epochs,
            batch_size=args.batch,
            lr=1e-3,
            weight_decay=1e-4,
            lr_step=max(1, args.epochs // 4),
            lr_gamma=0.5,
            seed=args.seed,
            device="cpu",
            checkpoint_dir=work,
            resume=True,
            progress=False,
        )
        history = out["history"]
        cpu_train = time.process_time() - t0
    epochs_done = len(history)
    # the stored form: float16 parameters (BatchNorm running statistics stay float32: the variances of the
    # small RBF responses would fall into float16's subnormal range), loaded back into a float32 model
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(prm.half().float())
    model.eval()
    metrics = rbfnet.evaluate(model, te, batch_size=args.batch, progress=False)
    path = os.path.join(args.out, f"{args.model}-modelnet10.pt")
    card = {
        "arch": args.model,
        "data": "ModelNet10 (modelnet10-pc1024: official split, 3991 train / 908 test, unit sphere); "
        "ModelNet is for academic research use only",
        "points": args.points,
        "test_sampling": "first points of each file (PointCloudFolder sampling='first')",
        "epochs": epochs_done,
        "schedule_epochs": args.epochs,
        "stopped_early": epochs_done < args.epochs,
        "batch_size": args.batch,
        "seed": args.seed,
        "recipe": "rbfnet.train: Adam lr 1e-3, wd 1e-4, lr x0.5 every max(1, schedule_epochs // 4) "
        "epochs, batch 32, default_train_transform(); weights of the last finished epoch, no selection",
        "test_overall_acc": metrics["overall_acc"],
        "test_class_mean_acc": metrics["class_mean_acc"],
        "test_num_samples": metrics["num_samples"],
        "train_seconds_in_recipe": sum(float(r["train_seconds"]) for r in history),
        "train_cpu_seconds": cpu_train,
        "train_loss_last": history[-1]["train_loss"] if history else None,
        "train_acc_last": history[-1]["train_acc"] if history else None,
        "commit": (args.trained_commit or _commit()) if args.finalize else _commit(),
        "finalized_at_commit": _commit() if args.finalize else None,
        "rbfnet_version": rbfnet.__version__,
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "python": platform.python_version(),
        "classes": tr.classes,
    }
    for prm in model.parameters():  # stored in float16 (half the size); loading casts back
        prm.data = prm.data.half()
    save_checkpoint(path, model, extra={"parameter_dtype": "float16", "card": card})
    model.float()
    with open(os.path.join(args.out, f"{args.model}.json"), "w", encoding="utf-8") as fh:
        json.dump({**card, "history": history}, fh, indent=2)
    logging.getLogger("train_weights").info(
        "%s: %d epochs, test OA %.4f (%d clouds)",
        args.model,
        epochs_done,
        metrics["overall_acc"],
        metrics["num_samples"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
