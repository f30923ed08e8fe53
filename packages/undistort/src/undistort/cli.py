"""Command line: ``python -m undistort {synth,train,correct,calibrate}``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, atomic_torch_save, safe_torch_load

logger = logging.getLogger(__name__)

__all__ = ["load_pairs", "main"]


def _heads(path: str):  # type: ignore[no-untyped-def]
    from .heads import HeadModel, load_ict_facekit

    if path.endswith(".npz") and os.path.basename(path) != "ict_facekit_shapes.npz":
        with np.load(path) as z:
            return HeadModel.from_meshes(z["vertices"], z["faces"])
    return load_ict_facekit(path)


PAIRS_FORMAT = "undistort-pairs"


def _save_pairs(path: str, items: list[dict[str, Any]], head_height: float, config: dict[str, Any]) -> None:
    """Write rendered pairs as one ``.pt`` dict of stacked tensors (atomic; loads with weights_only=True)."""
    from .synth import collate_pairs

    payload = {
        "format": PAIRS_FORMAT,
        "format_version": 1,
        "head_height": float(head_height),
        "config": config,
        "pairs": collate_pairs(items),
    }
    atomic_torch_save(payload, path)


def load_pairs(path: str | os.PathLike) -> tuple[list[dict[str, Any]], float]:
    """Read a pair file written by ``python -m undistort synth --out pairs.pt``.

    Args:
        path: the ``.pt`` file.

    Returns:
        ``(items, head_height)``: the pairs as a list of :class:`~undistort.synth.PortraitPairs`-style
        items (usable as a training dataset) and the head height (cm) used to frame them.

    Raises:
        FileNotFoundError: missing file.
        CheckpointError: (a ``ValueError``) truncated, garbage or not a pair file.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"load_pairs: no file at {p!r}")
    what = "undistort pair file"
    payload = safe_torch_load(p, fn="load_pairs", what=what)
    if not isinstance(payload, dict) or payload.get("format") != PAIRS_FORMAT or "pairs" not in payload:
        raise CheckpointError(
            f"load_pairs: {p!r} is not a valid {what} (truncated or not written by undistort "
            "'synth --out x.pt')"
        )
    batch = payload["pairs"]
    n = int(batch["distorted"].shape[0])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)], float(payload["head_height"])


def _cmd_synth(args: argparse.Namespace) -> int:
    from PIL import Image

    from .synth import PortraitPairs

    ds = PortraitPairs(
        _heads(args.heads),
        length=args.num,
        image_size=args.image_size,
        seed=args.seed,
        num_identities=args.identities,
        identity_seed=args.seed,
    )
    if args.out.endswith(".pt"):
        items = [ds[i] for i in range(args.num)]
        cfg = {
            "num": args.num,
            "image_size": args.image_size,
            "seed": args.seed,
            "identities": args.identities,
        }
        _save_pairs(args.out, items, ds.head_height, cfg)
        print(f"wrote {args.out}: {args.num} pairs ({', '.join(sorted(items[0]))})")
        return 0
    rows = []
    for i in range(args.num):
        it = ds[i]
        holes = it["holes"].expand(3, -1, -1)
        rows.append(torch.cat([it["distorted"], it["corrected"], holes], 2))
        logger.info("pair %d: distance %.1f cm, focal %.1f px", i, float(it["distance"]), float(it["focal"]))
    grid = torch.cat(rows, 1).permute(1, 2, 0).clamp(0, 1).numpy()
    Image.fromarray((grid * 255 + 0.5).astype(np.uint8)).save(args.out)
    print(f"wrote {args.out}: {args.num} rows of distorted | corrected | holes")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .models import create_model
    from .pipeline import Undistorter
    from .recipes import train
    from .synth import PortraitPairs

    data: Any
    if args.pairs is not None:
        data, head_height = load_pairs(args.pairs)
        image_size = int(data[0]["distorted"].shape[-1])
    else:
        heads = _heads(args.heads)
        kw = {"image_size": args.image_size, "num_identities": args.identities, "identity_seed": args.seed}
        ds = PortraitPairs(heads, length=args.train_size, seed=args.seed, **kw)
        data = [ds[i] for i in range(len(ds))] if args.cache else ds
        head_height, image_size = ds.head_height, args.image_size
    tasks = [t for t in args.tasks.split(",") if t]
    archs = {
        "flow": "flownet_small",
        "distance": "distancenet_small",
        "completion": "completionnet_small",
        "segmentation": "segnet_small",
    }
    nets = {}
    base = os.path.splitext(args.out)[0]
    for task in tasks:
        if task not in archs:
            raise ValueError(f"train: unknown task {task!r} in --tasks; choose from {sorted(archs)}")
        torch.manual_seed(args.seed)
        net = create_model(archs[task])
        out = train(
            task,
            net,
            data,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            checkpoint=f"{base}.{task}.pt",
            checkpoint_every=args.checkpoint_every,
            progress=None,
            device=args.device,
            num_workers=args.workers,
            seed=args.seed,
            **({"adversarial_weight": args.adversarial_weight} if task == "completion" else {}),
        )
        nets[task] = out["model"]
        print(f"{task}: final {json.dumps(out['history'][-1]) if out['history'] else 'already trained'}")
    if "flow" not in nets:
        return 0
    und = Undistorter(
        nets["flow"],  # type: ignore[arg-type]
        nets.get("distance"),  # type: ignore[arg-type]
        nets.get("completion"),  # type: ignore[arg-type]
        nets.get("segmentation"),  # type: ignore[arg-type]
        work_size=image_size,
        head_height_cm=head_height,
    )
    und.save(args.out)
    print(f"wrote {args.out}")
    return 0


def _cmd_correct(args: argparse.Namespace) -> int:
    from PIL import Image

    from .pipeline import Undistorter
    from .portrait import correct

    src = args.input if args.input is not None else args.image
    dst = args.output if args.output is not None else args.out
    if src is None or dst is None:
        raise ValueError("correct: give the input and output images (correct IN.jpg OUT.jpg)")
    if args.heads is not None:  # the physical global warp with a known distance
        if args.model is not None or args.whole_image or args.flow_gate is not None:
            raise ValueError(
                "correct: --heads (the global warp) does not take --model, --whole-image or --flow-gate"
            )
        if args.distance is None:
            raise ValueError("correct: --heads needs --distance CM, the camera-to-face distance (e.g. 35)")
        from .heads import load_ict_facekit

        heads = load_ict_facekit(args.heads)
        out = correct(src, method="global", heads=heads, distance=args.distance, strength=args.strength)
        out.save(dst)
        print(f"wrote {dst} (global warp from {args.distance:g} cm)")
        return 0
    if args.model is not None:
        und = Undistorter.load(args.model, map_location=args.device).to(args.device)
    else:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            und = Undistorter.pretrained(map_location=args.device).to(args.device)
        for w in caught:  # one line each, not the two-line warnings format
            print(f"python -m undistort correct: warning: {w.message}", file=sys.stderr)
    if args.flow_gate is not None:
        und.flow_gate = tuple(args.flow_gate)  # checked by the property: a clear error for a bad pair
    if args.whole_image:
        if not os.path.isfile(src):
            raise FileNotFoundError(f"correct: no file at {src!r}")
        with Image.open(src) as im:
            out, info = und.undistort(im.convert("RGB"), distance=args.distance)
        out.save(dst)
        print(f"wrote {dst}; distance {float(info['distance'][0]):.1f} cm")
        return 0
    out = correct(src, model=und, strength=args.strength)
    out.save(dst)
    print(f"wrote {dst}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from PIL import Image

    from .pipeline import Undistorter

    und = Undistorter.load(args.model, map_location=args.device).to(args.device)
    cam = und.estimate_camera(Image.open(args.image))
    res = {k: float(v[0]) for k, v in cam.items()}
    print(json.dumps(res))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr (exit status 2)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m undistort``."""
    p = _Parser(prog="python -m undistort", description="Perspective undistortion of portraits")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log INFO messages and show tracebacks of errors"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser(
        "synth", help="render synthetic pairs: a data set (--out x.pt) or a preview grid (--out x.png)"
    )
    s.add_argument(
        "--heads",
        required=True,
        help="ICT-FaceKit folder/npz, or an .npz with 'vertices' (M,V,3) and 'faces'",
    )
    s.add_argument(
        "--out",
        required=True,
        help="x.pt: the pairs as stacked tensors (train --pairs x.pt); other: a PNG grid of "
        "distorted | corrected | holes",
    )
    s.add_argument("--num", type=int, default=4)
    s.add_argument("--image-size", type=int, default=128)
    s.add_argument(
        "--identities", type=int, default=None, help="identity pool size (default: fresh per pair)"
    )
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_synth)
    t = sub.add_parser("train", help="train the cascade on synthetic pairs and save an Undistorter")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--heads", help="render pairs on the fly from this head source")
    src.add_argument("--pairs", help="train on a pair file written by 'synth --out x.pt'")
    t.add_argument("--out", required=True, help="Undistorter checkpoint (per-task checkpoints go beside it)")
    t.add_argument("--tasks", default="flow,distance,completion,segmentation")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--image-size", type=int, default=64)
    t.add_argument("--train-size", type=int, default=512)
    t.add_argument("--identities", type=int, default=278, help="identity pool size (paper: 278 individuals)")
    t.add_argument("--cache", action="store_true", help="render the training set once into memory")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument(
        "--adversarial-weight",
        type=float,
        default=0.01,
        help="completion: hinge-GAN weight with a global + local patch discriminator (0: L1 only)",
    )
    t.add_argument("--workers", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_cmd_train)
    c = sub.add_parser(
        "correct",
        help="correct the largest face of a photo (dlib landmarks: the undistort[landmarks] extra)",
    )
    c.add_argument("input", nargs="?", default=None, help="input photo")
    c.add_argument("output", nargs="?", default=None, help="output image (same size as the input)")
    c.add_argument("--model", default=None, help="Undistorter checkpoint (default: the shipped model)")
    c.add_argument("--image", default=None, help="input photo (same as the first positional argument)")
    c.add_argument("--out", default=None, help="output image (same as the second positional argument)")
    c.add_argument("--strength", type=float, default=1.0, help="scale of the correction flow (0-2)")
    c.add_argument(
        "--whole-image",
        action="store_true",
        help="run the cascade on the whole image resized to its work size (no face detection)",
    )
    c.add_argument(
        "--distance", type=float, default=None, help="known camera distance (cm): --whole-image or --heads"
    )
    c.add_argument(
        "--heads",
        default=None,
        help="ICT-FaceKit folder: correct with the physical global warp from --distance instead of the network",
    )
    c.add_argument(
        "--flow-gate",
        nargs=2,
        type=float,
        default=None,
        metavar=("LO", "HI"),
        help="do-no-harm gate of the network's flow (work-size px), e.g. 0.15 0.25 (see the README)",
    )
    c.add_argument("--device", default="cpu")
    c.set_defaults(func=_cmd_correct)
    k = sub.add_parser("calibrate", help="estimate camera distance and focal length of a portrait")
    k.add_argument("--model", required=True)
    k.add_argument("--image", required=True)
    k.add_argument("--device", default="cpu")
    k.set_defaults(func=_cmd_calibrate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m undistort``.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (OSError, ValueError, TypeError, ImportError, LookupError, RuntimeError) as err:
        # user errors (missing/garbage files, bad values, a missing optional extra): one line, no traceback
        if args.verbose:
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"python -m undistort {args.cmd}: error: {msg} (--verbose for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
