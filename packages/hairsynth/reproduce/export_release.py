"""Export the trained full model as the shipped release weights (``src/hairsynth/weights/hairsynth_128.pt``).

    python packages/hairsynth/reproduce/export_release.py --ckpt /tmp/hairsynth/runs/full-s0/last.pt \\
        [--data /work/shared/data]

Keeps only the generator (no optimiser or discriminator state), stores it in float16 (a ``weights_only``
checkpoint; the loader casts back to the model's dtype), and records the model-card metric: masked L1 and
PSNR of the exported weights on the first 8 photos of ``celeb1k-hair/test`` (held out) at 128 px, which
``tests/test_pretrained.py`` recomputes.
"""

from __future__ import annotations

import argparse
import os

import torch

from hairsynth import functional as HF
from hairsynth import save_checkpoint
from hairsynth.data import HairPairDataset
from hairsynth.models import create_model
from hairsynth.synthesizer import pretrained_weights_path


@torch.no_grad()
def card_metrics(model, data: str, n: int = 8) -> dict[str, float]:
    """Masked L1 / PSNR on the first ``n`` photos of celeb1k-hair/test (deterministic strokes, seed 0)."""
    ds = HairPairDataset(
        os.path.join(data, "celeb1k-hair"),
        "test",
        size=128,
        stroke_width=(2.0, 4.0),
        augment=False,
        deterministic=True,
        seed=0,
        limit=n,
    )
    model.eval()
    b = [ds[i] for i in range(len(ds))]
    img, mask = torch.stack([s["image"] for s in b]), torch.stack([s["mask"] for s in b])
    out = model(
        img, mask, torch.stack([s["stroke_color"] for s in b]), torch.stack([s["stroke_mask"] for s in b])
    )
    o = out["output"]
    return {
        "card_celeb_test8_masked_l1": float(HF.masked_l1(o, img, mask)),
        "card_celeb_test8_masked_psnr": float(HF.psnr(o, img, mask).mean()),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--out", default=pretrained_weights_path())
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = create_model("hairsynth_128", weights=args.ckpt)
    step = int(torch.load(args.ckpt, weights_only=True)["step"])
    half = create_model("hairsynth_128", **{k: v for k, v in model.config.items() if k != "stroke_width"})
    half.load_state_dict(model.state_dict())
    half = half.half()
    save_checkpoint(args.out, half, arch="hairsynth_128", config=model.config, step=step)
    back = create_model("hairsynth_128", weights=args.out)  # float32 model from the float16 file
    metrics = card_metrics(back, args.data)
    save_checkpoint(args.out, half, arch="hairsynth_128", config=model.config, step=step, metrics=metrics)
    print(args.out, os.path.getsize(args.out), metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
