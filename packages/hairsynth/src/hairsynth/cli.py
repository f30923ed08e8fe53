"""``python -m hairsynth``: extract strokes, synthesise, train, run the editor."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    else:
        logging.getLogger("hairsynth").warning(
            "no --weights given: using an untrained %s", args.arch or "hairsynth_small"
        )
        model = create_model(args.arch or "hairsynth_small")
    return Synthesizer(model, device=args.device)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the command-line interface.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    p = argparse.ArgumentParser(prog="python -m hairsynth", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
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
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )

    if args.cmd == "list-models":
        from .models import list_models

        print("\n".join(list_models()))
        return 0
    from PIL import Image

    if args.cmd == "extract-strokes":
        import torch

        from .strokes import save_strokes, strokes_from_image

        st = strokes_from_image(
            Image.open(args.image),
            Image.open(args.mask),
            max_strokes=args.max_strokes,
            generator=torch.Generator().manual_seed(args.seed),
        )
        save_strokes(st, args.out)
        print(json.dumps({"strokes": len(st), "out": args.out}))
        return 0
    if args.cmd == "synthesize":
        from .strokes import load_strokes

        out = _synth(args).synthesize(
            Image.open(args.image), Image.open(args.mask), load_strokes(args.strokes)
        )
        out.save(args.out)
        print(json.dumps({"out": args.out}))
        return 0
    if args.cmd == "train":
        from .data import HairPairDataset
        from .recipes import TrainConfig, train

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
    if args.cmd == "editor":
        from .editor import serve

        img = Image.open(args.image)
        mask = Image.open(args.mask) if args.mask else None
        print(f"hairsynth editor: open http://127.0.0.1:{args.port}/ (Ctrl-C to stop)")
        serve(_synth(args), img, mask, port=args.port)  # type: ignore[arg-type]
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
