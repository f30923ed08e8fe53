"""Train the ternary ResNet-20 that ships inside the qnet wheel (issue 17), resumably, on one CPU thread.

    python packages/qnet/reproduce/train_shipped.py --data <shared/data> --out reports/qnet/shipped \\
        --work /tmp/qnet/shipped --ship packages/qnet/src/qnet/models/weights/resnet20_a_cifar10_ternary.safetensors
    python packages/qnet/reproduce/train_shipped.py --data <shared/data> --out /tmp/x --work /tmp/x --quick

Model: ``qnet.models.resnet20_a`` from the akamaster float ResNet-20 (81.0 % on the JPEG test split), converted by
``qnet.quantize(weight_levels="ternary")``: weights only, first conv and last linear float (the paper's rule).
Recipe (paper, Sec. 4; nothing chosen on the test split): SGD momentum 0.9, lr 0.001 with cosine decay,
weight decay 1e-4 on conv/linear weights (as the CIFAR-10 reproduction), gradients clipped to L2 norm 5,
``T = c * epoch`` advanced every step with ``c = 5`` (the paper's value for ResNets), crop+flip augmentation,
then BatchNorm re-estimation with the hard quantizers, then :func:`qnet.freeze` (hard steps) and
:func:`qnet.export` (2-bit codes). An "epoch" is a fresh random subset of ``--per-epoch`` training images, as in
``cifar10.py`` (the CPU budget allows about three passes over the data; see the README's deviations).

Data: ``cifar10-jpeg``; the stratified 5,000-image validation split (seed 0) of ``cifar10.py`` is held out of
training and used for monitoring only; the 10,000 test images are used once, for the final number.

The run checkpoints (model, optimiser, scheduler, temperature, generator) to ``--work`` after every epoch
(atomically) and resumes from it; the report ``<out>/train_shipped.json`` records every setting and timing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import qnet
from qnet.models import resnet20_a

# the helpers beside this script (pinning, one-line errors; the data split and augmentation of cifar10.py)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _qnet_cli import pin, run_cli
from cifar10 import GRAD_CLIP_NORM, _accuracy, _augment, _load_data, _norm, _param_groups

logger = logging.getLogger("qnet.reproduce.train_shipped")

TEACHER = "cifar10-resnet-teachers/resnet20-12fca82f.th"
DEFAULTS: dict[str, Any] = {
    "lr": 0.001,  # paper Sec. 4: ResNets fine-tuned from the pretrained model with lr 0.001
    "c": 5.0,  # paper Sec. 4: T = c * epoch, c = 5 for ResNets
    "momentum": 0.9,
    "batch": 128,
    "per_epoch": 2560,
    "epochs": 40,
    "val_every": 10,
    "val_images": 1000,
    "bn_batches": 20,
}
QUICK: dict[str, Any] = {
    "per_epoch": 256,
    "epochs": 2,
    "batch": 64,
    "val_every": 1,
    "val_images": 128,
    "bn_batches": 2,
}


def _save_atomic(obj: Any, path: str) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _data(root: str, cache: str | None) -> dict[str, torch.Tensor]:
    if cache and os.path.isfile(cache):
        return dict(torch.load(cache, weights_only=True))
    d = _load_data(root, quick=False)
    if cache:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        _save_atomic(d, cache)
    return d


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, device: torch.device, bs: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(_norm(x[i : i + bs], device)).argmax(1).cpu() for i in range(0, x.shape[0], bs)])


def _set_mode(model: nn.Module, mode: str) -> None:
    for q in qnet.quantizers(model):
        q.set_mode(mode)


def train(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(DEFAULTS)
    for k in DEFAULTS:
        v = getattr(args, k, None)
        if v is not None:
            cfg[k] = v
    if args.quick:
        cfg.update(QUICK)
    device = torch.device("cpu")
    t0, cpu0 = time.time(), time.process_time()
    data = _data(args.data, args.cache)
    xtr, ytr = data["xtr"], data["ytr"]
    logger.info(
        "data: %d train, %d val, %d test images", xtr.shape[0], data["xval"].shape[0], data["xte"].shape[0]
    )

    torch.manual_seed(args.seed)
    model = resnet20_a(weights=os.path.join(args.data, TEACHER))
    model = qnet.quantize(model, weight_levels="ternary", act_levels=None, method="qn", inplace=True)
    bs, spe, epochs = cfg["batch"], cfg["per_epoch"] // cfg["batch"], cfg["epochs"]
    total = spe * epochs
    opt = torch.optim.SGD(_param_groups(model, cfg["lr"]), lr=cfg["lr"], momentum=cfg["momentum"])
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    tsched = qnet.TemperatureSchedule(model, increment=cfg["c"], steps_per_epoch=spe, kind="weight")
    g = torch.Generator().manual_seed(1000 + args.seed)

    os.makedirs(args.work, exist_ok=True)
    ckpt_path = os.path.join(args.work, "train_shipped_state.pt")
    start_epoch, curve, cpu_before = 0, [], 0.0
    if os.path.isfile(ckpt_path):
        st = torch.load(ckpt_path, weights_only=True)
        if st["config"] != cfg:
            raise ValueError(
                f"--work {args.work!r} holds a run with another config {st['config']}; use a new --work"
            )
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sch.load_state_dict(st["scheduler"])
        tsched.load_state_dict(st["temperature"])
        g.set_state(st["generator"])
        start_epoch, curve, cpu_before = st["epoch"], st["curve"], st["cpu_s"]
        logger.info("resumed at epoch %d from %s", start_epoch, ckpt_path)
    cpu_train0 = time.process_time()
    for ep in range(start_epoch, epochs):
        model.train()
        idx = torch.randperm(xtr.shape[0], generator=g)[: spe * bs]
        run_loss = 0.0
        for s in range(spe):
            bi = idx[s * bs : (s + 1) * bs]
            xb = _norm(_augment(xtr[bi], g), device)
            loss = F.cross_entropy(model(xb), ytr[bi])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            opt.step()
            sch.step()
            tsched.step()
            run_loss += float(loss.detach())
        row: dict[str, Any] = {"epoch": ep + 1, "train_loss": run_loss / spe, "T": tsched.value}
        if (ep + 1) % cfg["val_every"] == 0 or ep + 1 == epochs:
            nv = cfg["val_images"]
            _set_mode(model, "soft")
            row["val_soft"] = _accuracy(model, data["xval"][:nv], data["yval"][:nv], device)
            _set_mode(model, "auto")
            row["val_hard"] = _accuracy(model, data["xval"][:nv], data["yval"][:nv], device)
        curve.append(row)
        cpu_now = cpu_before + time.process_time() - cpu_train0
        logger.info("epoch %d/%d %s (train CPU %.0f s)", ep + 1, epochs, row, cpu_now)
        _save_atomic(
            {
                "config": cfg,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sch.state_dict(),
                "temperature": tsched.state_dict(),
                "generator": g.get_state(),
                "epoch": ep + 1,
                "curve": curve,
                "cpu_s": cpu_now,
            },
            ckpt_path,
        )
    train_cpu = cpu_before + time.process_time() - cpu_train0

    # BN statistics re-estimated with the hard (inference) quantizers, then hard steps and export
    gb = torch.Generator().manual_seed(2000 + args.seed)
    bn_idx = torch.randperm(xtr.shape[0], generator=gb)[: cfg["bn_batches"] * bs]
    _set_mode(model, "hard")
    qnet.recalibrate_bn(
        model,
        [_norm(xtr[bn_idx[i : i + bs]], device) for i in range(0, len(bn_idx), bs)],
        num_batches=cfg["bn_batches"],
    )
    _set_mode(model, "auto")
    qnet.freeze(model)
    os.makedirs(os.path.dirname(os.path.abspath(args.ship)), exist_ok=True)
    sizes = qnet.export(model, args.ship)
    # every number below is of the shipped file itself: reloaded into a float ResNet-20 (bit exact)
    shipped = qnet.load(args.ship, resnet20_a())
    with torch.no_grad():
        probe = _norm(data["xte"][:256], device)
        if not torch.equal(shipped(probe), model(probe)):
            raise RuntimeError("the reloaded shipped file does not reproduce the frozen model bit for bit")
    nv = min(cfg["val_images"], data["xval"].shape[0])
    val_acc = _accuracy(shipped, data["xval"][:nv], data["yval"][:nv], device)
    te_stride = (
        1 if not args.quick else 20
    )  # --quick: 500 images, 50 per class (the archive is sorted by class)
    xte, yte = data["xte"][::te_stride], data["yte"][::te_stride]
    nte = int(yte.numel())
    pred = _predict(shipped, xte, device)
    test_acc = 100.0 * int((pred == yte).sum()) / nte
    stride = 5  # the fast test's subset (tests/test_shipped.py): every 5th test image, 200 per class
    subset_correct = int((pred[::stride] == yte[::stride]).sum())
    float_model = resnet20_a(weights=os.path.join(args.data, TEACHER))
    float_pred = _predict(float_model, xte, device)
    float_test = 100.0 * int((float_pred == yte).sum()) / nte
    float_pt = os.path.join(args.work, "resnet20_a_float_state.pt")
    torch.save(float_model.state_dict(), float_pt)
    out = {
        "config": cfg,
        "seed": args.seed,
        "teacher": TEACHER,
        "teacher_sha256": _sha256(os.path.join(args.data, TEACHER)),
        "weight_levels": "ternary",
        "act_levels": None,
        "keep_first_last_float": True,
        "grad_clip_norm": GRAD_CLIP_NORM,
        "curve": curve,
        "val_images": nv,
        "val_acc_shipped": val_acc,
        "test_images": nte,
        "test_correct": int((pred == yte).sum()),
        "test_acc": test_acc,
        "subset_stride": stride,
        "subset_images": int(yte[::stride].numel()),
        "subset_correct": subset_correct,
        "test_correct_float_start": int((float_pred == yte).sum()),
        "test_acc_float_start": float_test,
        "float_subset_correct": int((float_pred[::stride] == yte[::stride]).sum()),
        "shipped_file": os.path.basename(args.ship),
        "shipped_bytes": os.path.getsize(args.ship),
        "shipped_sha256": _sha256(args.ship),
        "float_state_dict_pt_bytes": os.path.getsize(float_pt),
        "export_sizes": sizes,
        "train_cpu_s": train_cpu,
        "total_wall_s_this_invocation": time.time() - t0,
        "total_cpu_s_this_invocation": time.process_time() - cpu0,
        "torch": torch.__version__,
        "qnet": qnet.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "pinned": settings,
        "quick": bool(args.quick),
    }
    os.makedirs(args.out, exist_ok=True)
    _write_json(os.path.join(args.out, "train_shipped.json"), out)
    logger.info(
        "frozen: val %.2f %%, test %.2f %% (float start %.2f %%), %d bytes",
        val_acc,
        test_acc,
        float_test,
        out["shipped_bytes"],
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", required=True, help="the shared data folder (holds cifar10-jpeg/, cifar10-resnet-teachers/)"
    )
    ap.add_argument("--out", default="reports/qnet/shipped", help="folder of the JSON report")
    ap.add_argument("--work", default="/tmp/qnet/shipped", help="folder of the resumable training state")
    ap.add_argument(
        "--ship",
        default=None,
        help="path of the bit-packed file (default <work>/resnet20_a_cifar10_ternary.safetensors)",
    )
    ap.add_argument("--cache", default=None, help="optional .pt cache of the decoded JPEG arrays")
    ap.add_argument("--quick", action="store_true", help="tiny schedule (a minute), for smoke tests")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    for k in ("lr", "c", "momentum"):
        ap.add_argument(f"--{k}", type=float, default=None)
    for k in ("batch", "per_epoch", "epochs"):
        ap.add_argument(f"--{k.replace('_', '-')}", dest=k, type=int, default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.ship is None:
        args.ship = os.path.join(args.work, "resnet20_a_cifar10_ternary.safetensors")

    def body() -> int:
        for f in ("cifar10-jpeg/train.tar.gz", "cifar10-jpeg/test.tar.gz", TEACHER):
            if not os.path.isfile(os.path.join(args.data, f)):
                raise FileNotFoundError(f"--data: {f} not found under {args.data!r}")
        settings = pin(args.threads)
        train(args, settings)
        return 0

    return run_cli("train_shipped.py", body, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
