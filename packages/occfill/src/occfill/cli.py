"""Command line: ``python -m occfill {train-encoder,train,complete} ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import torch
from PIL import Image

from .completer import Completer
from .data import PairedFaces, pil_to_tensor, tensor_to_pil
from .masks import PAPER_EYE_BOX, eye_box_mask
from .models import create_model
from .recipes import CompletionConfig, train_completion, train_identity_encoder

__all__ = ["main"]


def _dataset(args: argparse.Namespace, mask: str) -> PairedFaces:
    if args.layout == "meta":
        return PairedFaces.from_meta_jsonl(args.data, size=args.size, mask=mask)
    return PairedFaces.from_image_folder(args.data, size=args.size, mask=mask)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m occfill", description=__doc__)
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level and show tracebacks of errors"
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data", required=True, help="ImageFolder root, or a folder with meta.jsonl")
        q.add_argument("--layout", choices=("folder", "meta"), default="folder")
        q.add_argument("--size", type=int, default=64, help="training resolution (default 64)")
        q.add_argument("--steps", type=int, default=1000)
        q.add_argument("--batch-size", type=int, default=16)
        q.add_argument("--device", default="cpu")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--out", required=True, help="checkpoint path (.pt)")
        q.add_argument("--checkpoint-every", type=int, default=0)
        q.add_argument("--resume", action="store_true")
        q.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    enc = sub.add_parser("train-encoder", help="train the identity encoder (CosFace)")
    common(enc)
    enc.add_argument("--embedding-dim", type=int, default=128)
    enc.add_argument("--base-channels", type=int, default=32)
    enc.add_argument("--lr", type=float, default=2e-3)

    tr = sub.add_parser("train", help="train the completion GAN")
    common(tr)
    tr.add_argument("--encoder", help="identity-encoder checkpoint (needed unless --identity-weight 0)")
    tr.add_argument(
        "--config", default="{}", help="JSON CompletionConfig overrides, e.g. '{\"use_pose\": false}'"
    )
    tr.add_argument("--mask", choices=("fixed", "random", "landmarks"), default="random")

    comp = sub.add_parser("complete", help="complete one image")
    comp.add_argument("--checkpoint", required=True)
    comp.add_argument("--image", required=True)
    comp.add_argument("--reference", required=True)
    comp.add_argument("--mask", help="mask image (white = occluded); default: the paper's eye box")
    comp.add_argument("--landmarks", help="JSON file with 68 [x, y] landmarks of the image")
    comp.add_argument("--out", required=True)
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--device", default="cpu")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status.

    A user error (missing or invalid file, bad argument value) prints one line ``occfill: error: ...`` to
    stderr and returns 1; ``--verbose`` shows the full traceback instead.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return _run(args)
    except (OSError, ValueError, TypeError, KeyError, ImportError, RuntimeError) as exc:
        if args.verbose:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"occfill: error: {msg} (run with --verbose for the traceback)", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "train-encoder":
        ds = _dataset(args, "fixed")
        train_identity_encoder(
            ds,
            num_classes=ds.num_identities,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            embedding_dim=args.embedding_dim,
            base_channels=args.base_channels,
            input_size=args.size,
            device=args.device,
            seed=args.seed,
            checkpoint=args.out,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            progress=args.progress,
        )
    elif args.command == "train":
        from .recipes import config_from_dict

        cfg: CompletionConfig = config_from_dict(json.loads(args.config))
        encoder = create_model("occfill_identity_encoder", weights=args.encoder) if args.encoder else None
        train_completion(
            _dataset(args, args.mask),
            config=cfg,
            encoder=encoder,
            steps=args.steps,
            batch_size=args.batch_size,
            device=args.device,
            seed=args.seed,
            checkpoint=args.out,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            progress=args.progress,
        )
    else:
        completer = Completer.from_checkpoint(args.checkpoint, device=args.device)
        with Image.open(args.image) as im:
            image = pil_to_tensor(im.convert("RGB"))
        with Image.open(args.reference) as im:
            ref = im.convert("RGB").resize((image.shape[2], image.shape[1]), Image.Resampling.BICUBIC)
            reference = pil_to_tensor(ref)
        if args.mask:
            with Image.open(args.mask) as im:
                mask = (pil_to_tensor(im.convert("L")) > 0.5).float()
        else:
            mask = eye_box_mask(image.shape[1], image.shape[2], box=PAPER_EYE_BOX)[0]
        landmarks = None
        if args.landmarks:
            with open(args.landmarks, encoding="utf-8") as fh:
                landmarks = torch.tensor(json.load(fh), dtype=torch.float32)[None]
        g = torch.Generator(device=args.device).manual_seed(args.seed)
        out = completer.complete(image, mask, reference, landmarks, generator=g)
        tensor_to_pil(out).save(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
