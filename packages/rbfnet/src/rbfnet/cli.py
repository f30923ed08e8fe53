"""Command line: ``python -m rbfnet train|eval|bench``.

``train`` also runs under ``torchrun`` (one process per device): it joins the process group from the
environment, :func:`rbfnet.train` shards the data, and rank 0 writes the checkpoints and ``result.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["main"]

logger = logging.getLogger("rbfnet")


def _dataset(args: argparse.Namespace, split: str, *, train: bool, use_normals: bool) -> Any:
    from .data import ModelNetMesh, ModelNetNormalResampled, PointCloudFolder, default_train_transform

    tf = default_train_transform(up_axis=1 if args.format == "normal" else 2) if train else None
    sampling = "random" if train else "first"
    if args.format == "folder":
        return PointCloudFolder(
            args.data,
            split,
            num_points=args.num_points,
            transform=tf,
            sampling=sampling,
            use_normals=use_normals,
        )
    if args.format == "normal":
        return ModelNetNormalResampled(
            args.data,
            split,
            num_classes=args.num_classes_file,
            num_points=args.num_points,
            transform=tf,
            use_normals=use_normals,
        )
    return ModelNetMesh(
        args.data,
        split,
        num_points=args.num_points,
        transform=tf,
        use_normals=use_normals,
        cache_dir=args.cache_dir,
    )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root (user-given; nothing is downloaded)")
    p.add_argument("--format", choices=("folder", "normal", "off"), default="folder")
    p.add_argument("--num-classes-file", type=int, default=40, choices=(10, 40), help="for --format normal")
    p.add_argument("--cache-dir", default=None, help="surface-sample cache for --format off")
    p.add_argument("--num-points", type=int, default=1024)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=32)


def _init_distributed(args: argparse.Namespace) -> bool:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1) unless one exists.

    Returns whether this call created it (and must destroy it). Under CUDA each process takes the GPU
    ``LOCAL_RANK`` and NCCL, otherwise gloo.
    """
    import torch.distributed as dist

    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if str(args.device).startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def _cmd_train(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from .models import is_model

    if not is_model(args.model):
        raise ValueError(f"unknown model {args.model!r}; see 'python -m rbfnet bench' for the names")
    own_group = _init_distributed(args)
    try:
        return _train(args)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from .models import create_model
    from .recipes import evaluate, train

    rank = dist.get_rank() if dist.is_initialized() else 0
    uses_normals = args.model == "rbfnet_normals"
    tr = _dataset(args, "train", train=True, use_normals=uses_normals)
    te = _dataset(args, "test", train=False, use_normals=uses_normals)
    torch.manual_seed(args.seed)
    model = create_model(args.model, num_classes=len(tr.classes))
    out = train(
        model,
        tr,
        te,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        checkpoint_dir=args.out,
        resume=args.resume,
        max_steps=args.max_steps,
        progress=None,
    )
    final = evaluate(model, te, device=args.device, batch_size=args.batch_size)  # all ranks: same metrics
    final.pop("confusion")
    if rank != 0:
        return 0
    result = {"best": out["best"], "final": final, "train_seconds": out["train_seconds"]}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "result.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    sys.stdout.write(json.dumps({k: final[k] for k in ("overall_acc", "class_mean_acc")}) + "\n")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .models import create_model
    from .recipes import evaluate

    ckpt = load_checkpoint(args.weights)
    model = create_model(str(ckpt["arch"]), weights=args.weights).to(args.device)
    te = _dataset(args, "test", train=False, use_normals=bool(getattr(model, "uses_normals", False)))
    m = evaluate(model, te, device=args.device, batch_size=args.batch_size)
    m.pop("confusion")
    sys.stdout.write(json.dumps(m, indent=2) + "\n")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .models import create_model, list_models
    from .profiling import measure_model

    names = args.models or list_models()
    rows = []
    for name in names:
        m = create_model(name, num_classes=40)
        r = measure_model(
            m, batch_size=args.batch_size, num_points=args.num_points, device=args.device, repeats=2
        )
        rows.append({"model": name, **r})
        sys.stdout.write(
            f"{name:20s} params {r['params']:>9d}  infer {r['infer_clouds_per_s']:8.1f} clouds/s  "
            f"train {r['train_clouds_per_s']:8.1f} clouds/s\n"
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0


def _add_verbose(p: argparse.ArgumentParser) -> None:
    # also accepted after the sub-command; SUPPRESS keeps the top-level value when absent here
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="tracebacks")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m rbfnet``.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        Exit status: 0, or 2 after a user error (missing file, bad argument, invalid checkpoint), which
        prints one line to stderr (the traceback with ``--verbose``).
    """
    parser = argparse.ArgumentParser(prog="python -m rbfnet", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train a model on a ModelNet copy")
    _add_verbose(p)
    _add_data_args(p)
    p.add_argument("--model", default="rbfnet_single")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint / result folder")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p = sub.add_parser("eval", help="evaluate a checkpoint")
    _add_verbose(p)
    _add_data_args(p)
    p.add_argument("--weights", required=True)
    p = sub.add_parser("bench", help="parameters and throughput of every model on random clouds")
    _add_verbose(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-points", type=int, default=1024)
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--out", default=None, help="JSON file")
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 alone logs progress
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"train": _cmd_train, "eval": _cmd_eval, "bench": _cmd_bench}[args.cmd](args)
    except _USER_ERRORS as exc:
        # a user error (missing file, bad argument, invalid checkpoint): one line, non-zero exit;
        # the traceback only with --verbose
        if args.verbose:
            raise
        sys.stderr.write(f"rbfnet {args.cmd}: error: {_one_line(exc)}\n")
        return 2


_USER_ERRORS = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
    TypeError,
)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."
