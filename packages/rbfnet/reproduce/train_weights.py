"""Train the weights shipped in the wheel (``create_model(name, weights="modelnet10")``) on ModelNet10.

    OMP_NUM_THREADS=1 python packages/rbfnet/reproduce/train_weights.py --model rbfnet_kernelwise \
        --epochs 15 --points 256 --out /tmp/rbfnet/weights [--data /work/shared/data]

One model per call, seed 0, on the full official ModelNet10 train split (3991 shapes,
``modelnet10-pc1024``), with the reproduction's recipe (:func:`rbfnet.train`: Adam 1e-3, weight decay 1e-4,
lr x0.5 every ``max(1, epochs // 4)`` epochs, batch 32, point dropout + anisotropic scale/shift + jitter).
No validation-based selection: the weights are those of the LAST epoch. The test split (908 shapes, the
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
    w0 = time.perf_counter()
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
        checkpoint_dir=os.path.join(args.out, args.model + "-work"),
        resume=True,
        progress=False,
    )
    cpu_train = time.process_time() - t0
    # the stored form: float16 parameters, loaded back into a float32 model
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    metrics = rbfnet.evaluate(model, te, batch_size=args.batch, progress=False)
    path = os.path.join(args.out, f"{args.model}-modelnet10.pt")
    card = {
        "arch": args.model,
        "data": "ModelNet10 (modelnet10-pc1024: official split, 3991 train / 908 test, unit sphere)",
        "points": args.points,
        "epochs": args.epochs,
        "batch_size": args.batch,
        "seed": args.seed,
        "recipe": "Adam lr 1e-3, wd 1e-4, lr x0.5 every max(1, epochs // 4) epochs, "
        "default_train_transform(); last-epoch weights, no selection",
        "test_overall_acc": metrics["overall_acc"],
        "test_class_mean_acc": metrics["class_mean_acc"],
        "test_num_samples": metrics["num_samples"],
        "train_cpu_seconds": cpu_train,
        "train_wall_seconds": time.perf_counter() - w0,
        "train_loss_last": out["history"][-1]["train_loss"] if out["history"] else None,
        "commit": _commit(),
        "rbfnet_version": rbfnet.__version__,
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "python": platform.python_version(),
        "classes": tr.classes,
    }
    save_checkpoint(path, model, extra={"state_dict_dtype": "float16", "card": card})
    # rewrite the state dict in float16 (half the size); loading casts it back to the model's dtype
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = {
        k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()
    }
    torch.save(ckpt, path)
    with open(os.path.join(args.out, f"{args.model}.json"), "w", encoding="utf-8") as fh:
        json.dump({**card, "history": out["history"]}, fh, indent=2)
    logging.getLogger("train_weights").info(
        "%s: test OA %.4f (%d clouds), %.0f CPU-s",
        args.model,
        metrics["overall_acc"],
        metrics["num_samples"],
        cpu_train,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
