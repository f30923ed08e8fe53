"""Train the shipped flow network on pairs made from real photos, in resumable units (CPU, one thread).

    python packages/undistort/reproduce/make_real_pairs.py --data ../shared/data --out PAIRS   # shards
    python packages/undistort/reproduce/train_real.py --pairs PAIRS --out RUN --total-steps 2000 --unit 100

Each call of the unit loop trains ``--unit`` steps from the last checkpoint (model, Adam state, step,
RNG) and writes it atomically, so the run can be stopped and resumed at any unit boundary (``RUN/STOP``
ends the loop after the current unit). The learning rate follows one cosine schedule over
``--total-steps`` whatever the unit size. Data: the shards written by ``make_real_pairs.py`` (train
split; shards that appear while training are picked up at the next unit), with random horizontal flips.
Loss: the package's ``flow`` task (EPE over every pixel, the extended flow being the target everywhere,
+ 0.01 TV + 0.1 mask BCE). The network is ``flownet_small`` without distance conditioning (the committed
synthetic report found the conditioned net worse with an estimated distance).

Fine-tuning (``reports/undistort/photo_identity.md``): ``--init FILE`` starts from the flow network of an
:class:`undistort.Undistorter` file (fresh Adam); ``--photo-identity CROPS --photo-identity-fraction F``
replaces a share ``F`` of the items that are not far-photo identity items by whole-photo crops of
``make_photo_identity.py`` with zero flow; ``--save-every N`` keeps ``undistorter-<step>.pt`` candidates.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time

import torch

from undistort import Undistorter, create_model
from undistort.checkpoint import load_checkpoint, save_checkpoint
from undistort.recipes.train import task_loss

KEYS = ("distorted", "corrected", "flow", "valid", "mask", "mask_corrected", "distance")


def load_shards(folder: str) -> dict[str, torch.Tensor]:
    """Concatenate the ``*.pt`` shards of one split (float32 images and flows, float masks)."""
    files = sorted(glob.glob(os.path.join(folder, "*.pt")))
    if not files:
        raise SystemExit(f"train_real: no shards in {folder!r}")
    parts = [torch.load(f, weights_only=True) for f in files]
    out = {}
    for k in KEYS:
        out[k] = torch.cat([p[k] for p in parts]).float()
    return out


def batch_of(
    data: dict[str, torch.Tensor],
    idx: torch.Tensor,
    flip: torch.Tensor,
    same: torch.Tensor | None = None,
    photo: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """A training batch; ``same`` marks items replaced by their far photo with zero flow (identity pairs).

    ``photo`` (``{"sel": (B,) bool, "image": (k, 3, S, S), "mask": (k, 1, S, S)}``, ``k`` = selected items)
    replaces the selected items by whole-photo crops with zero flow, valid everywhere, and the given
    corrected-mask target.
    """
    b = {k: v[idx].clone() for k, v in data.items()}
    if same is not None and bool(same.any()):
        b["distorted"][same] = b["corrected"][same]
        b["flow"][same] = 0.0
        b["distance"][same] = 500.0
    if photo is not None and bool(photo["sel"].any()):
        sel = photo["sel"]
        b["distorted"][sel] = photo["image"]
        b["corrected"][sel] = photo["image"]
        b["flow"][sel] = 0.0
        b["valid"][sel] = 1.0
        b["mask_corrected"][sel] = photo["mask"]
        b["distance"][sel] = 500.0
    if bool(flip.any()):
        for k in ("distorted", "flow", "valid", "mask", "mask_corrected"):
            b[k][flip] = b[k][flip].flip(-1)
        b["flow"][flip, 0] = -b["flow"][flip, 0]
    return b


@torch.no_grad()
def val_epe(net: torch.nn.Module, data: dict[str, torch.Tensor]) -> float:
    net.eval()
    tot, n = 0.0, 0
    for s in range(0, data["distorted"].shape[0], 16):
        b = {k: v[s : s + 16] for k, v in data.items()}
        out = net(b["distorted"], b["mask"], None)
        tot += float((out["flow"] - b["flow"]).norm(dim=1).mean((1, 2)).sum())
        n += b["distorted"].shape[0]
    net.train()
    return tot / max(n, 1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True, help="folder with train/ and val/ shards")
    ap.add_argument("--out", required=True)
    ap.add_argument("--total-steps", type=int, default=2000)
    ap.add_argument("--unit", type=int, default=100)
    ap.add_argument("--units", type=int, default=10**6, help="stop after this many units in this call")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--identity-fraction",
        type=float,
        default=0.0,
        help="share of batch items replaced by their far photo with zero flow (on top of the data's own)",
    )
    ap.add_argument("--init", default=None, help="warm start: the flow network of this Undistorter file")
    ap.add_argument(
        "--photo-identity", default=None, help="crops of make_photo_identity.py, used as zero-flow items"
    )
    ap.add_argument("--photo-identity-fraction", type=float, default=0.0, help="share of batch items")
    ap.add_argument("--save-every", type=int, default=0, help="also keep undistorter-<step>.pt every N steps")
    args = ap.parse_args()
    if args.photo_identity_fraction > 0 and not args.photo_identity:
        raise SystemExit("train_real: --photo-identity-fraction needs --photo-identity")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "flow.pt")
    log_path = os.path.join(args.out, "log.jsonl")
    val = load_shards(os.path.join(args.pairs, "val"))
    photos = photo_masks = None
    if args.photo_identity:
        photos = torch.load(args.photo_identity, weights_only=True)["image"].float()
        # corrected-mask target of the photo items: what the starting network predicts (a fixed pseudo-label,
        # so the mask head is neither taught nor untaught there); all ones for a fresh network
        photo_masks = torch.ones(photos.shape[0], 1, *photos.shape[-2:])
        if args.init:
            with torch.no_grad():
                init_net = Undistorter.load(args.init).flow_net.eval()
                logits = init_net(photos, torch.ones_like(photo_masks), None)["mask_logits"]
                photo_masks = (torch.sigmoid(logits) > 0.5).float()
    for _unit in range(args.units):
        if os.path.exists(os.path.join(args.out, "STOP")):
            print("STOP file found", flush=True)
            break
        torch.manual_seed(args.seed)
        net = create_model("flownet_small", conditioning="none")
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
        step = 0
        if os.path.exists(ckpt_path):
            ck = load_checkpoint(ckpt_path)
            net.load_state_dict(ck["state_dict"])
            opt.load_state_dict(ck["optimizer"])
            step = int(ck["step"])
            torch.set_rng_state(ck["rng"])
        elif args.init:
            # loaded here, after the seed, as the committed runs did: building the network draws from the RNG
            net.load_state_dict(Undistorter.load(args.init).flow_net.state_dict())
        if step >= args.total_steps:
            print(f"done: step {step}", flush=True)
            break
        data = load_shards(os.path.join(args.pairs, "train"))
        n = data["distorted"].shape[0]
        t0, c0 = time.time(), time.process_time()
        losses = []
        for _ in range(min(args.unit, args.total_steps - step)):
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.total_steps))
            for grp in opt.param_groups:
                grp["lr"] = lr
            idx = torch.randint(n, (args.batch_size,))
            flip = torch.rand(args.batch_size) < 0.5
            same = torch.rand(args.batch_size) < args.identity_fraction
            photo = None
            if photos is not None and photo_masks is not None:
                sel = (torch.rand(args.batch_size) < args.photo_identity_fraction) & ~same
                pidx = torch.randint(photos.shape[0], (int(sel.sum()),))
                photo = {"sel": sel, "image": photos[pidx], "mask": photo_masks[pidx]}
            loss, m = task_loss("flow", net, batch_of(data, idx, flip, same, photo))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(m["epe"])
        v = val_epe(net, val)
        rec = {
            "step": step,
            "train_epe": sum(losses) / len(losses),
            "val_epe": v,
            "train_pairs": n,
            "cpu_s": round(time.process_time() - c0, 1),
            "wall_s": round(time.time() - t0, 1),
            "lr": lr,
            "identity_fraction": args.identity_fraction,
            "photo_identity_fraction": args.photo_identity_fraction,
        }
        save_checkpoint(
            ckpt_path, net, arch="flownet_small", config=net.config, optimizer=opt, step=step, metrics=rec
        )  # type: ignore[arg-type]
        if args.save_every and step % args.save_every == 0:
            Undistorter(net, work_size=64).save(os.path.join(args.out, f"undistorter-{step}.pt"))
        with open(log_path, "a") as fh:
            fh.write(json.dumps({**rec, "init": args.init}) + "\n")
        print(json.dumps(rec), flush=True)
    # the pipeline form of the latest weights (what undistort ships)
    if os.path.exists(ckpt_path):
        ck = load_checkpoint(ckpt_path)
        net = create_model("flownet_small", conditioning="none")
        net.load_state_dict(ck["state_dict"])
        Undistorter(net, work_size=64).save(os.path.join(args.out, "undistorter.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
