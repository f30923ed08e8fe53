"""The longer, fair ModelNet10 run (issue 22): every model, 3 seeds, the schedule users know, in resumable units.

One unit = one model x one seed: ModelNet10 (``modelnet10-pc1024``, official split, 1024 points), 100
epochs, the same recipe for every model (:func:`rbfnet.train`: Adam 1e-3, weight decay 1e-4, step decay
x0.7 every 20 epochs as in the PointNet++ tooling, batch 32, ``default_train_transform()``), the test split
evaluated after every epoch. Each unit writes ``<out>/<model>/seed<k>/result.json`` as it goes
(``complete: false`` with the epochs done, then ``true``) holding the LAST-epoch accuracy (no selection)
and the best-of-schedule accuracy with its epoch (the convention of the PointNet++ tooling; it selects on
the test split, so it is optimistic); checkpoints go to ``--ckpt-dir`` (never committed), and a unit
resumes from its ``last.pt`` after any interruption, repeating the uninterrupted run.

    # status of every unit
    python packages/rbfnet/reproduce/long_run.py --list
    # CPU: the next pending unit(s), one thread each, stopping cleanly after ~50 minutes
    OMP_NUM_THREADS=1 nice -n 10 python packages/rbfnet/reproduce/long_run.py --units next --max-minutes 50
    # GPU (prepared one-command variant; repeat it until --list shows every unit done: each call stops
    # cleanly after 9 minutes, on a checkpoint, so it fits a 10-minute command limit)
    python packages/rbfnet/reproduce/long_run.py --device cuda --units all --jobs 15 --max-minutes 9
    # the summary table (pending rows named)
    python packages/rbfnet/reproduce/long_run.py --report

Threads (``--threads``, default 1), deterministic algorithms and the seed are pinned and recorded in every
result file. Not shipped in the wheel.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

import rbfnet
from rbfnet.data import PointCloudFolder, default_train_transform

MODELS = ["rbfnet_single", "rbfnet_multiscale", "rbfnet_kernelwise", "pointnet", "pointnet2_ssg"]
SEEDS = [0, 1, 2]
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(
    os.path.join(HERE, "..", "..", "..", "reports", "rbfnet", "runs", "modelnet10-long")
)

log = logging.getLogger("long_run")


def unit_dir(root: str, model: str, seed: int) -> str:
    return os.path.join(root, model, f"seed{seed}")


def read_result(args: argparse.Namespace, model: str, seed: int) -> dict[str, Any] | None:
    p = os.path.join(unit_dir(args.out, model, seed), "result.json")
    if not os.path.isfile(p):
        return None
    with open(p, encoding="utf-8") as fh:
        return dict(json.load(fh))


def _write_json(path: str, obj: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


def pin(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(int(args.threads))
    cuda = str(args.device).startswith("cuda")
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    return {
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": True,
        "deterministic_warn_only": cuda,
        "torch": str(torch.__version__),
        "python": sys.version.split()[0],
    }


def _summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    if not history:
        return {"epochs_done": 0}
    best = max(history, key=lambda r: r["val_overall_acc"])
    last = history[-1]
    return {
        "epochs_done": len(history),
        "last_overall_acc": last["val_overall_acc"],
        "last_class_mean_acc": last["val_class_mean_acc"],
        "best_overall_acc": best["val_overall_acc"],
        "best_class_mean_acc": best["val_class_mean_acc"],
        "best_epoch": best["epoch"],
        "train_seconds": sum(float(r["train_seconds"]) for r in history),
    }


def run_unit(args: argparse.Namespace, model_name: str, seed: int, deadline: float) -> bool:
    """Train (or resume) one unit until it completes or ``deadline`` passes; True when complete."""
    done = read_result(args, model_name, seed)
    if done and done.get("complete"):
        return True
    pinned = pin(args)
    root = os.path.join(args.data, "modelnet10-pc1024")
    tr = PointCloudFolder(
        root,
        "train",
        num_points=args.points,
        sampling="random",
        transform=default_train_transform(),
        seed=seed,
        max_per_class=args.max_per_class,
    )
    te = PointCloudFolder(root, "test", num_points=args.points, max_per_class=args.max_per_class)
    dev = torch.device(args.device)
    torch.manual_seed(seed)
    model = rbfnet.create_model(model_name, num_classes=len(tr.classes)).to(dev)
    ckpt = os.path.join(args.ckpt_dir, model_name, f"seed{seed}")
    res_path = os.path.join(unit_dir(args.out, model_name, seed), "result.json")
    meta = {
        "setting": "modelnet10-long",
        "model": model_name,
        "seed": seed,
        "epochs": args.epochs,
        "points": args.points,
        "batch": args.batch,
        "recipe": f"Adam 1e-3, wd 1e-4, lr x{args.lr_gamma} every {args.lr_step} epochs, batch {args.batch}, "
        "default_train_transform()",
        "train_size": len(tr),
        "test_size": len(te),
        "params": rbfnet.count_parameters(model),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "pinned": {**pinned, "seed": seed},
    }

    def callback(epoch: int, record: dict[str, Any]) -> bool:
        last = (
            rbfnet.load_checkpoint(os.path.join(ckpt, "last.pt"))
            if os.path.isfile(os.path.join(ckpt, "last.pt"))
            else {"metrics": {"history": [record]}}
        )
        hist = list(last["metrics"]["history"])
        _write_json(res_path, {"complete": False, **meta, **_summary(hist), "history": hist})
        if time.time() > deadline and epoch < args.epochs:
            log.info("%s seed %d: time budget reached after epoch %d; resume later", model_name, seed, epoch)
            return True
        return False

    out = rbfnet.train(
        model,
        tr,
        te,
        epochs=args.epochs,
        batch_size=args.batch,
        lr=1e-3,
        weight_decay=1e-4,
        lr_step=args.lr_step,
        lr_gamma=args.lr_gamma,
        seed=seed,
        device=dev,
        checkpoint_dir=ckpt,
        resume=True,
        callback=callback,
        num_workers=args.workers,
        progress=False,
    )
    hist = out["history"]
    complete = len(hist) >= args.epochs
    _write_json(res_path, {"complete": complete, **meta, **_summary(hist), "history": hist})
    return complete


def units(args: argparse.Namespace) -> list[tuple[str, int]]:
    allu = [(m, s) for s in SEEDS for m in args.models]
    if args.units in ("all", "next"):
        pending = [(m, s) for m, s in allu if not (read_result(args, m, s) or {}).get("complete")]
        return pending if args.units == "all" else pending[: max(1, args.jobs)]
    out = []
    for tok in args.units.split(","):
        m, s = tok.split(":")
        out.append((m, int(s)))
    return out


def report(args: argparse.Namespace) -> str:
    lines = [
        "# ModelNet10, longer schedule (issue 22)",
        "",
        f"{args.epochs} epochs, {args.points} points, seeds {SEEDS}, same recipe for every model (Adam 1e-3, "
        f"wd 1e-4, lr x{args.lr_gamma} every {args.lr_step} epochs, batch {args.batch}). LAST = accuracy after "
        "the last epoch (no selection); BEST = best test accuracy over the schedule (test-set selection, "
        "optimistic; the PointNet++ tooling's convention).",
        "",
        "| model | seeds done | params | LAST OA % (mean +- sd) | BEST OA % (mean +- sd) | pending |",
        "|---|---|---|---|---|---|",
    ]
    for m in args.models:
        rs = [(s, read_result(args, m, s)) for s in SEEDS]
        done = [r for _, r in rs if r and r.get("complete")]
        pend = [
            f"seed {s}" + (f" ({r['epochs_done']}/{r['epochs']} epochs)" if r else " (not started)")
            for s, r in rs
            if not (r and r.get("complete"))
        ]

        def ms(key: str, done: list[dict[str, Any]] = done) -> str:
            if not done:
                return "-"
            v = np.array([100 * r[key] for r in done])
            return f"{v.mean():.2f} +- {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

        params = f"{done[0]['params']:,}" if done else "-"
        lines.append(
            f"| {m} | {len(done)}/{len(SEEDS)} | {params} | {ms('last_overall_acc')} | {ms('best_overall_acc')} "
            f"| {', '.join(pend) or 'none'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="result JSONs (committed)")
    p.add_argument("--ckpt-dir", default=os.path.join("reproduce-out", "rbfnet-long"), help="checkpoints")
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--units", default="next", help="'next', 'all' or a comma list of model:seed")
    p.add_argument("--jobs", type=int, default=1, help="units trained in parallel processes")
    p.add_argument(
        "--max-minutes", type=float, default=None, help="stop cleanly after the epoch that passes it"
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr-step", type=int, default=20)
    p.add_argument("--lr-gamma", type=float, default=0.7)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--max-per-class", type=int, default=None, help="smoke tests only")
    p.add_argument("--list", action="store_true", help="print the status of every unit")
    p.add_argument("--report", action="store_true", help="write <out>/../../long_run.md and print it")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for m in args.models:
        if m not in MODELS:
            p.error(f"--models: unknown model {m!r}; choose from {MODELS}")
    if args.list or args.report:
        text = report(args)
        if args.report:
            path = os.path.join(os.path.dirname(os.path.dirname(args.out)), "long_run.md")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        sys.stdout.write(text)
        return 0
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else float("inf")
    todo = units(args)
    if not todo:
        log.info("every unit is complete")
        return 0
    if args.jobs <= 1:
        for m, s in todo:
            if not run_unit(args, m, s, deadline):
                break  # out of time
        return 0
    # parallel: one process per unit, each with the same deadline
    procs: list[subprocess.Popen[bytes]] = []
    for m, s in todo:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--out",
            args.out,
            "--ckpt-dir",
            args.ckpt_dir,
            "--data",
            args.data,
            "--device",
            args.device,
            "--units",
            f"{m}:{s}",
            "--epochs",
            str(args.epochs),
            "--lr-step",
            str(args.lr_step),
            "--lr-gamma",
            str(args.lr_gamma),
            "--points",
            str(args.points),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
        ]
        if args.max_minutes:
            cmd += ["--max-minutes", f"{max(0.0, deadline - time.time()) / 60:.3f}"]
        if args.max_per_class is not None:
            cmd += ["--max-per-class", str(args.max_per_class)]
        while len([q for q in procs if q.poll() is None]) >= args.jobs:
            time.sleep(1.0)
        if time.time() > deadline:
            break
        procs.append(subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads))))
    for q in procs:
        q.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
