"""CIFAR-10 ResNet-20 reproduction of Quantization Networks from the pretrained float model (issue 16).

    python packages/qnet/reproduce/cifar10.py --out reports/qnet --data <shared/data> [--schedule cpu|gpu]
    python packages/qnet/reproduce/cifar10.py --out reports/qnet --report-only      # rebuild from runs/ alone
    python packages/qnet/reproduce/cifar10.py --out /tmp/x --data <shared/data> --quick

Starting point: the akamaster option-A ResNet-20 (``qnet.models.resnet20_a``, 81.0 % on the JPEG test split).
Data: ``cifar10-jpeg`` (JPEG q75 copy of CIFAR-10) decoded once by ``qnet.data.read_image_archive``; a
stratified validation split of 5000 images is carved from the 50,000 training images (seed 0) and used for
every hyper-parameter choice; the test split is used only for the final number of each main unit.

Work is cut into *units* (one setting x method x seed, or one validation candidate). Each unit writes
``<out>/runs/<schedule>/<unit>.json`` when it finishes and is skipped when that file exists, so the queue
resumes after an interruption; the report (``<out>/cifar10.md`` + plots) is rebuilt from those files alone.
The queue runs the most informative units first: float reference, validation choices, then W2 and W2/A2
qnet vs LSQ on paired seeds, then the rest.

Methods (same data, epochs, optimiser, augmentation and BN re-estimation for all):
- ``qn``: Quantization Networks (``qnet.quantize``, sigmoid-sum quantizer, T = c * epoch per step);
- ``lsq``: ``qnet.LSQQuantizer`` (Esser et al. 2020), same layers and level sets;
- ``ste``: ``qnet.STEQuantizer`` (DoReFa-style STE), same layers and level sets;
- ``tao``: torch.ao QAT: conv+BN fused into ``torch.ao.nn.intrinsic.qat.ConvBn2d`` (BN folded into the weight
  as torch.ao does) with a per-tensor symmetric fake-quant of the weight, and a ``FakeQuantize`` on the input
  of every quantized conv (= after the ReLU, before the conv); uniform grids only (W2 = {-1, 0, 1} as int range
  [-1, 1]; A2 = uint [0, 3]), so W1 and W3(+-4) have no torch.ao row.
First conv and last linear stay float for every method (the paper's rule).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import random
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import qnet
from qnet import _native
from qnet.data import read_image_archive
from qnet.models import IMAGENET_MEAN, IMAGENET_STD, resnet20_a

# the helpers beside this script (pinning, one-line errors), however the script is loaded
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _qnet_cli import pin, run_cli

logger = logging.getLogger("qnet.reproduce.cifar10")

SETTINGS: dict[str, tuple[str | None, str | None]] = {
    "W2": ("ternary", None),
    "W2/A2": ("ternary", "uint2"),
    "W1": ("binary", None),
    "W3(±4)": ("pm4", None),
    "W32/A2": (None, "uint2"),
    "W1/A2": ("binary", "uint2"),
}
TAO_SETTINGS = ("W2", "W2/A2", "W32/A2")
METHODS = ("qn", "lsq", "ste", "tao")
METHOD_NAMES = {"qn": "qnet", "lsq": "LSQ", "ste": "STE", "tao": "torch.ao QAT", "fp": "float fine-tune"}
# Paper Table 2 (ResNet-18 ImageNet top-1, FP 70.3): deltas vs FP of QN.
PAPER_DELTA = {
    "W1": 66.5 - 70.3,
    "W2": 69.1 - 70.3,
    "W3(±4)": 70.4 - 70.3,
    "W1/A2": 63.4 - 70.3,
    "W32/A2": 65.7 - 70.3,
}
# Third-party CIFAR-10 ResNet-20 port (haoyz/quantization-networks-cifar10, FP 92.08, 200 epochs, T + 5/epoch).
PORT = {"W1": 89.01, "W2": 91.12, "W3(±4)": 92.18, "W1/A2": 56.5}
PORT_FP = 92.08

# Schedules: train images per epoch (a fresh random subset of the train pool each epoch), epochs, batch,
# final test images (all 10,000), per-epoch validation images (soft/hard gap), BN re-estimation batches.
SCHEDULES: dict[str, dict[str, Any]] = {
    "cpu": {
        "per_epoch": 2560,
        "epochs": 6,
        "batch": 128,
        "val_eval": 500,
        "val_final": 2000,
        "bn_batches": 10,
        "seeds": [0, 1, 2],
    },
    "gpu": {
        "per_epoch": 45000,
        "epochs": 15,
        "batch": 128,
        "val_eval": 5000,
        "val_final": 5000,
        "bn_batches": 50,
        "seeds": [0, 1, 2],
    },
    "quick": {
        "per_epoch": 256,
        "epochs": 2,
        "batch": 64,
        "val_eval": 128,
        "val_final": 256,
        "bn_batches": 2,
        "seeds": [0],
        "test": 500,
        "quick": True,
    },
}
# Validation grid (chosen on W2/A2, seed 0, on the validation split; the choice is applied to every setting).
LR_GRID = (0.003, 0.0005)
C_GRID = (5.0, 20.0, 60.0)
# Sec. 4 of the paper: "gradients are clipped with a maximum L2 norm of 5" (AlexNet; "the rest as AlexNet" for
# ResNets). Units run before this was added diverged at lr 0.003 for c >= 20; they are kept in runs/<schedule>-noclip.
GRAD_CLIP_NORM = 5.0
A_INCREMENT_RATIO = 1.0  # activation temperature increment = weight increment * ratio (one knob c)


# --------------------------------------------------------------------------------------------- data
def _load_data(data: str, quick: bool) -> dict[str, Tensor]:
    root = os.path.join(data, "cifar10-jpeg")
    for f in ("train.tar.gz", "test.tar.gz"):
        if not os.path.isfile(os.path.join(root, f)):
            raise FileNotFoundError(f"cifar10-jpeg/{f} not found under {data!r}; pass --data <shared/data>")
    t0 = time.time()
    xtr, ytr, _ = read_image_archive(os.path.join(root, "train.tar.gz"))
    xte, yte, _ = read_image_archive(os.path.join(root, "test.tar.gz"))
    g = torch.Generator().manual_seed(0)
    val_idx, pool_idx = [], []
    for c in range(10):  # stratified: 500 validation images per class
        idx = (ytr == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val_idx.append(idx[:500])
        pool_idx.append(idx[500:])
    vi, pi = torch.cat(val_idx), torch.cat(pool_idx)
    vi = vi[torch.randperm(len(vi), generator=g)]  # class-mixed order: any prefix is a random subset
    logger.info("decoded CIFAR-10 JPEG in %.0f s", time.time() - t0)
    return {"xtr": xtr[pi], "ytr": ytr[pi], "xval": xtr[vi], "yval": ytr[vi], "xte": xte, "yte": yte}


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _norm(x: Tensor, device: torch.device) -> Tensor:
    x = x.to(device).float().div_(255.0)
    return (x - _MEAN.to(device)) / _STD.to(device)


def _augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random crop 32 from the 4-pixel zero-padded image and horizontal flip (the teachers' training recipe)."""
    b = x.shape[0]
    xp = F.pad(x, (4, 4, 4, 4))
    ox = torch.randint(0, 9, (b,), generator=g).tolist()
    oy = torch.randint(0, 9, (b,), generator=g).tolist()
    flip = (torch.rand(b, generator=g) < 0.5).tolist()
    out = torch.empty_like(x)
    for i in range(b):
        crop = xp[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def _batches(x: Tensor, y: Tensor, bs: int, device: torch.device):
    for i in range(0, x.shape[0], bs):
        yield _norm(x[i : i + bs], device), y[i : i + bs].to(device)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, device: torch.device, bs: int = 500) -> float:
    model.eval()
    ok = 0
    for xb, yb in _batches(x, y, bs, device):
        try:
            ok += int((model(xb).argmax(1) == yb).sum())
        except FloatingPointError:  # a diverged qnet model: no accuracy to report
            return float("nan")
    return 100.0 * ok / max(1, x.shape[0])


# --------------------------------------------------------------------------------------------- models
def _tao_model(net: nn.Module, setting: str, calib: Tensor) -> nn.Module:
    """torch.ao QAT: fuse conv+BN of every block conv into ConvBn2d QAT (weight fake-quant, BN folded),
    and fake-quantize the conv's input (the preceding ReLU output); first conv and last linear stay float."""
    import torch.ao.nn.intrinsic as nni
    import torch.ao.nn.intrinsic.qat as nniqat
    from torch.ao.quantization import FakeQuantize, MinMaxObserver, MovingAverageMinMaxObserver, QConfig

    wl, al = SETTINGS[setting]
    wfq = (
        FakeQuantize.with_args(
            observer=MinMaxObserver,
            quant_min=-1,
            quant_max=1,
            dtype=torch.qint8,
            qscheme=torch.per_tensor_symmetric,
        )
        if wl == "ternary"
        else None
    )
    qconfig = QConfig(activation=torch.nn.Identity, weight=wfq if wfq is not None else torch.nn.Identity)
    for block in [b for layer in (net.layer1, net.layer2, net.layer3) for b in layer]:
        for ci, bi in (("conv1", "bn1"), ("conv2", "bn2")):
            conv, bn = getattr(block, ci), getattr(block, bi)
            new: nn.Module = conv
            if wfq is not None:
                fused = nni.ConvBn2d(conv, bn)
                fused.qconfig = qconfig  # type: ignore[assignment]
                new = nniqat.ConvBn2d.from_float(fused)
                setattr(block, bi, nn.Identity())
            if al is not None:
                afq = FakeQuantize(
                    observer=MovingAverageMinMaxObserver,
                    quant_min=0,
                    quant_max=3,
                    dtype=torch.quint8,
                    qscheme=torch.per_tensor_affine,
                )
                new = nn.Sequential(afq, new)
            setattr(block, ci, new)
    if al is not None:  # observe the float activations once (calibration), as the other methods calibrate
        with torch.no_grad():
            net.train()
            net(calib)
    return net


def _build(method: str, setting: str | None, device: torch.device, calib: Tensor, teacher: str) -> nn.Module:
    net = resnet20_a(weights=teacher).to(device)
    if method == "fp" or setting is None:
        return net
    if method == "tao":
        return _tao_model(net, setting, calib)
    wl, al = SETTINGS[setting]
    return qnet.quantize(
        net,
        weight_levels=wl,
        act_levels=al,
        method=method,
        calibration=[calib] if al else None,
        calibration_samples=calib.shape[0],
        inplace=True,
    )


def _param_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    qparams = {id(p) for q in qnet.quantizers(model) for p in q.parameters()}
    decay, no_decay, quant = [], [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in qparams or "activation_post_process" in n:
            quant.append(p)
        elif p.ndim > 1:
            decay.append(p)
        else:
            no_decay.append(p)
    return [
        {"params": decay, "weight_decay": 1e-4},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": quant, "weight_decay": 0.0},
    ]


def _set_quant_mode(model: nn.Module, mode: str) -> None:
    for q in qnet.quantizers(model):
        q.set_mode(mode)


@torch.no_grad()
def _reestimate_bn(
    model: nn.Module, method: str, x: Tensor, n_batches: int, bs: int, device: torch.device
) -> None:
    """BN running statistics re-estimated with the inference-time (hard) quantizers, for every method."""
    if method == "tao":
        from torch.ao.quantization import disable_observer

        model.apply(disable_observer)
    elif method == "qn":
        _set_quant_mode(model, "hard")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for i, (xb, _) in enumerate(_batches(x, torch.zeros(x.shape[0], dtype=torch.long), bs, device)):
        if i >= n_batches:
            break
        model(xb)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()
    if method == "qn":
        _set_quant_mode(model, "auto")


# --------------------------------------------------------------------------------------------- a unit
def run_unit(
    unit: dict[str, Any], data: dict[str, Tensor], sched: dict[str, Any], device: torch.device, teacher: str
) -> dict[str, Any]:
    """Fine-tune one (setting, method, seed, hyper-parameters) from the pretrained float model."""
    t0 = time.time()
    cpu0 = time.process_time()
    method, setting, seed, lr = unit["method"], unit.get("setting"), unit["seed"], unit["lr"]
    c = unit.get("c")
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (global seed: any numpy use in torch helpers)
    g = torch.Generator().manual_seed(1000 + seed)
    xtr, ytr = data["xtr"], data["ytr"]
    calib_idx = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(seed))[:1000]
    calib = _norm(xtr[calib_idx], device)
    model = _build(method, setting, device, calib, teacher)
    epochs, per_epoch, bs = unit.get("epochs", sched["epochs"]), sched["per_epoch"], sched["batch"]
    steps_per_epoch = per_epoch // bs
    total = epochs * steps_per_epoch
    opt = torch.optim.SGD(_param_groups(model, lr), lr=lr, momentum=0.9, nesterov=False)
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    wsched = asched = None
    if method == "qn":
        wl, al = SETTINGS[setting] if setting else (None, None)
        if wl is not None:
            wsched = qnet.TemperatureSchedule(
                model, increment=c, steps_per_epoch=steps_per_epoch, kind="weight"
            )
        if al is not None:
            asched = qnet.TemperatureSchedule(
                model, increment=c * A_INCREMENT_RATIO, steps_per_epoch=steps_per_epoch, kind="input"
            )
    xv, yv = data["xval"][: sched["val_eval"]], data["yval"][: sched["val_eval"]]
    curve: list[dict[str, float]] = []
    losses: list[float] = []
    for ep in range(epochs):
        model.train()
        idx = torch.randperm(xtr.shape[0], generator=g)[: steps_per_epoch * bs]
        run_loss = 0.0
        for s in range(steps_per_epoch):
            bi = idx[s * bs : (s + 1) * bs]
            xb = _norm(_augment(xtr[bi], g), device)
            yb = ytr[bi].to(device)
            try:
                loss = F.cross_entropy(model(xb), yb)
            except FloatingPointError as e:  # qnet's kernel refuses scales that left float32's range
                logger.warning("%s diverged at epoch %d step %d: %s", unit["id"], ep + 1, s, e)
                loss = torch.tensor(float("inf"))
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # the paper's recipe for every network: gradients clipped to an L2 norm of 5 (all methods alike)
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            opt.step()
            sch.step()
            for ts in (wsched, asched):
                if ts is not None:
                    ts.step()
            run_loss += float(loss.detach())
        losses.append(run_loss / steps_per_epoch if math.isfinite(float(loss.detach())) else float("inf"))
        row: dict[str, float] = {"epoch": ep + 1, "train_loss": losses[-1]}
        if method == "qn":
            _set_quant_mode(model, "soft")
            row["val_soft"] = _accuracy(model, xv, yv, device)
            _set_quant_mode(model, "auto")
            if wsched is not None:
                row["T_weight"] = wsched.value
            if asched is not None:
                row["T_act"] = asched.value
        row["val_hard"] = _accuracy(model, xv, yv, device)
        if not math.isfinite(losses[-1]):
            row["diverged"] = 1.0
            curve.append(row)
            break
        curve.append(row)
        logger.info("%s epoch %d: %s", unit["id"], ep + 1, {k: round(v, 3) for k, v in row.items()})
    diverged = any("diverged" in r for r in curve)
    if method != "fp" and not diverged:
        _reestimate_bn(
            model, method, xtr[torch.randperm(xtr.shape[0], generator=g)], sched["bn_batches"], bs, device
        )
    out = dict(unit)
    if unit["kind"] == "val":
        nv = sched["val_final"]
        out["val_acc"] = _accuracy(model, data["xval"][:nv], data["yval"][:nv], device)
        out["val_images"] = nv
    else:
        nte = sched.get("test", data["xte"].shape[0])
        out["test_acc"] = _accuracy(
            model,
            data["xte"][:: max(1, data["xte"].shape[0] // nte)][:nte],
            data["yte"][:: max(1, data["yte"].shape[0] // nte)][:nte],
            device,
        )
    for k in ("val_acc", "test_acc"):  # JSON has no NaN: a diverged model has no accuracy
        if k in out and not math.isfinite(out[k]):
            out[k] = None
    out.update(
        diverged=diverged,
        grad_clip_norm=GRAD_CLIP_NORM,
        curve=curve,
        wall_s=time.time() - t0,
        cpu_s=time.process_time() - cpu0,
        torch_threads=torch.get_num_threads(),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        torch=torch.__version__,
        qnet=qnet.__version__,
        device=str(device),
        machine=platform.machine(),
        schedule=dict(sched),
    )
    return out


# --------------------------------------------------------------------------------------------- queue
def _uid(parts: list[Any]) -> str:
    return "_".join(
        str(p).replace("/", "-").replace("±", "pm").replace("(", "").replace(")", "") for p in parts
    )


def validation_units(sched_name: str) -> list[dict[str, Any]]:
    quick = sched_name == "quick"
    lrs, cs = ((0.01,), (20.0,)) if quick else (LR_GRID, C_GRID)
    units = []
    for lr in lrs:
        units.append({"kind": "val", "method": "fp", "setting": None, "seed": 0, "lr": lr})
    for c in cs:
        for lr in lrs:
            units.append({"kind": "val", "method": "qn", "setting": "W2/A2", "seed": 0, "lr": lr, "c": c})
    for m in ("lsq",) if quick else ("lsq", "ste", "tao"):
        for lr in lrs:
            units.append({"kind": "val", "method": m, "setting": "W2/A2", "seed": 0, "lr": lr})
    for u in units:
        u["id"] = _uid(
            ["val", u["method"], u["setting"] or "fp", f"lr{u['lr']}"]
            + ([f"c{u['c']:g}"] if "c" in u else [])
        )
    return units


def choose(done: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: the validation candidate with the best validation accuracy (ties: first in the grid)."""
    best: dict[str, dict[str, Any]] = {}
    for u in done.values():
        if u["kind"] != "val":
            continue
        m = u["method"]
        if u["val_acc"] is None:  # diverged: never chosen
            continue
        if m not in best or u["val_acc"] > best[m]["val_acc"]:
            best[m] = u
    return best


def main_units(sched: dict[str, Any], chosen: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    seeds = sched["seeds"]
    units: list[dict[str, Any]] = []
    if sched.get("quick"):
        for setting in (None, "W2", "W2/A2"):
            for m in ("fp",) if setting is None else ("qn", "lsq"):
                ch = chosen.get(m)
                if ch is not None:
                    u = {"kind": "main", "method": m, "setting": setting, "seed": 0, "lr": ch["lr"]}
                    if m == "qn":
                        u["c"] = ch["c"]
                    u["id"] = _uid(["main", m, setting or "fp", "seed0"])
                    units.append(u)
        return units

    def add(method: str, setting: str | None, seed: int) -> None:
        ch = chosen.get(method)
        if ch is None:
            return
        u = {"kind": "main", "method": method, "setting": setting, "seed": seed, "lr": ch["lr"]}
        if method == "qn":
            u["c"] = ch["c"]
        u["id"] = _uid(["main", method, setting or "fp", f"seed{seed}"])
        units.append(u)

    for seed in seeds:
        add("fp", None, seed)
    for setting in ("W2", "W2/A2"):  # the headline pairs first
        for seed in seeds:
            for m in ("qn", "lsq"):
                add(m, setting, seed)
    for setting in ("W2", "W2/A2"):
        for seed in seeds:
            for m in ("ste", "tao"):
                add(m, setting, seed)
    for setting in ("W1", "W3(±4)", "W32/A2", "W1/A2"):
        for seed in seeds:
            for m in ("qn", "lsq", "ste", "tao"):
                if m == "tao" and setting not in TAO_SETTINGS:
                    continue
                add(m, setting, seed)
    units += long_units(sched, chosen)
    return units


LONG_FACTOR = 4  # the longer check runs this many times the schedule's epochs


def long_units(sched: dict[str, Any], chosen: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """qnet and LSQ at W2 then W2/A2, first seed, ``LONG_FACTOR`` x the epochs: does the gap close with time?

    Not part of the main table (one seed, a different budget): reported in their own section.
    """
    if sched.get("quick"):
        return []
    epochs = LONG_FACTOR * sched["epochs"]
    units = []
    for setting in ("W2", "W2/A2"):
        for m in ("qn", "lsq"):
            ch = chosen.get(m)
            if ch is None:
                continue
            u = {"kind": "long", "method": m, "setting": setting, "seed": sched["seeds"][0], "lr": ch["lr"]}
            u["epochs"] = epochs
            if m == "qn":
                u["c"] = ch["c"]
            u["id"] = _uid([f"long{epochs}", m, setting, f"seed{u['seed']}"])
            units.append(u)
    return units


def _read_runs(folder: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if os.path.isdir(folder):
        for f in sorted(os.listdir(folder)):
            if f.endswith(".json"):
                with open(os.path.join(folder, f), encoding="utf-8") as fh:
                    r = json.load(fh)
                out[r["id"]] = r
    return out


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------- report
def _t_interval(d: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of paired differences."""
    n = len(d)
    m = statistics.fmean(d)
    if n < 2:
        return m, float("nan"), float("nan")
    tq = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}.get(
        n, 2.0
    )
    h = tq * statistics.stdev(d) / math.sqrt(n)
    return m, m - h, m + h


def _plot_gap(path: str, runs: dict[str, dict[str, Any]], kind: str = "main") -> bool:
    from PIL import Image, ImageDraw

    series: dict[str, list[tuple[float, float]]] = {}
    for setting in SETTINGS:
        rs = [
            r for r in runs.values() if r["kind"] == kind and r["method"] == "qn" and r["setting"] == setting
        ]
        if not rs:
            continue
        n = min(len(r["curve"]) for r in rs)
        pts = []
        for e in range(n):
            gaps = [r["curve"][e]["val_soft"] - r["curve"][e]["val_hard"] for r in rs]
            pts.append((float(e + 1), statistics.fmean(gaps)))
        series[setting] = pts
    if not series:
        return False
    w, h, m = 720, 440, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = [p[0] for s in series.values() for p in s]
    ys = [p[1] for s in series.values() for p in s] + [0.0]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    pad = 0.05 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return m + (x - x0) / (x1 - x0) * (w - 2 * m), h - m - (y - y0) / (y1 - y0) * (h - 2 * m)

    d.rectangle([m, m, w - m, h - m], outline="black")
    zy = px(x0, 0.0)[1]
    d.line([m, zy, w - m, zy], fill=(160, 160, 160))
    for e in range(int(x0), int(x1) + 1, 1 if x1 - x0 <= 12 else 2):
        q = px(float(e), y0)
        d.text((q[0] - 3, h - m + 6), str(e), fill="black")
    for v in np.linspace(y0, y1, 5):
        d.text((4, px(x0, float(v))[1] - 6), f"{v:+.1f}", fill="black")
    d.text((w // 2 - 60, h - 20), "epoch (T = c * epoch)", fill="black")
    title = "mean over seeds" if kind == "main" else "first seed, longer schedule"
    d.text((m, 10), f"qnet: soft - hard validation accuracy (points), {title}", fill="black")
    colors = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75)]
    for i, (name, pts) in enumerate(series.items()):
        col = colors[i % len(colors)]
        qs = [px(*p) for p in pts]
        if len(qs) > 1:
            d.line(qs, fill=col, width=2)
        for q in qs:
            d.ellipse([q[0] - 3, q[1] - 3, q[0] + 3, q[1] + 3], fill=col)
        d.text((w - m - 110, m + 8 + 14 * i), name, fill=col)
    img.save(path)
    return True


def write_report(out: str, sched_name: str) -> str:
    folder = os.path.join(out, "runs", sched_name)
    runs = _read_runs(folder)
    sched = SCHEDULES[sched_name]
    chosen = choose(runs)
    planned = validation_units(sched_name) + main_units(sched, chosen)
    pending = [u["id"] for u in planned if u["id"] not in runs]
    val_pending = [u["id"] for u in validation_units(sched_name) if u["id"] not in runs]
    main = [r for r in runs.values() if r["kind"] == "main"]

    def accs(method: str, setting: str | None) -> dict[int, float]:
        return {
            r["seed"]: r["test_acc"]
            for r in main
            if r["method"] == method and r.get("setting") == setting and r["test_acc"] is not None
        }

    fp = accs("fp", None)
    fp_mean = statistics.fmean(fp.values()) if fp else float("nan")
    cpu_h = sum(r.get("cpu_s", 0.0) for r in runs.values()) / 3600
    lines = [
        "# qnet on CIFAR-10 ResNet-20 (from the pretrained float model)",
        "",
        f"Schedule `{sched_name}`: {sched['epochs']} epochs of {sched['per_epoch']} training images each (a fresh "
        f"random subset of the 45,000-image train pool every epoch; batch {sched['batch']}; SGD momentum 0.9, "
        "cosine learning rate, weight decay 1e-4 on conv/linear weights), random crop (pad 4) + flip, "
        f"BN re-estimated on {sched['bn_batches']} batches with the inference quantizers for every quantized method; "
        f"seeds {sched['seeds']} (paired: a seed fixes the calibration images, the subset order and the "
        "augmentation for every method). Start: akamaster ResNet-20 (option A), 81.03 % on the JPEG test split "
        "before fine-tuning. Test accuracy on all 10,000 JPEG test images, hard (inference) quantizers.",
        "",
        "Data caveat: `cifar10-jpeg` is a JPEG q75 re-encoding of CIFAR-10; absolute numbers are ~10 points under "
        "clean-CIFAR numbers (the teacher scores 91.7 % clean, 81.0 % here), so compare deltas, not absolutes.",
        "",
        f"Compute so far: {cpu_h:.2f} CPU-hours over {len(runs)} finished units (one torch thread each, "
        "`torch.use_deterministic_algorithms(True)`); command: `nice -n 5 env OMP_NUM_THREADS=1 python "
        f"packages/qnet/reproduce/cifar10.py --out reports/qnet --data <shared/data> --schedule {sched_name}`.",
        "",
        "Schedule sizing (measured before launch, one thread, uncontended estimate): a training step of batch 128 "
        "costs 1.0 (float, qnet W2) to 2.0 CPU-s (LSQ W2/A2), qnet W2/A2 1.7 CPU-s; evaluating 500 images with "
        "hard qnet W2/A2 quantizers 7.2 CPU-s (others 1.7-3.1); so a unit is about 4-7 CPU-minutes and the 80 units "
        "(14 validation + 66 main) about 8 CPU-hours. The `gpu` schedule (15 epochs of 45,000 images) has not "
        "been run (no GPU was available to this session).",
        "",
        "## Hyper-parameters chosen on the validation split",
        "",
        "5,000 training images (500 per class, seed 0) held out; every candidate fine-tuned on W2/A2 (float: no "
        f"quantization), seed 0; learning rates {list(LR_GRID)}, qnet temperature increments c in {list(C_GRID)} "
        "(weights and activations alike, T = c * epoch advanced per step). The best validation accuracy per method "
        "is used for every setting and seed. Caveat: the validation images come from the training split the "
        "pretrained model was trained on (clean originals), so validation accuracies are higher than test "
        "accuracies (float: about 92 % vs 81 %); they rank candidates, they are not results.",
        "",
        "| method | candidate | val. acc. (%) | chosen |",
        "|---|---|---|---|",
    ]
    for r in sorted((r for r in runs.values() if r["kind"] == "val"), key=lambda r: (r["method"], r["id"])):
        cand = f"lr {r['lr']}" + (f", c {r['c']:g}" if "c" in r else "")
        mark = "**yes**" if chosen.get(r["method"], {}).get("id") == r["id"] else ""
        acc = "diverged" if r["val_acc"] is None else f"{r['val_acc']:.2f}"
        lines.append(f"| {METHOD_NAMES[r['method']]} | {cand} | {acc} | {mark} |")
    if val_pending:
        lines.append(f"\nPending validation units: {', '.join(val_pending)}.")
    lines += [
        "",
        "## Results (test accuracy %, mean over seeds; delta vs the float fine-tune with the same epochs)",
        "",
        f"Float fine-tune reference: {fp_mean:.2f} % (seeds {sorted(fp)})."
        if fp
        else "Float reference pending.",
        "",
        "| setting | qnet | LSQ | STE | torch.ao QAT | qnet - LSQ (paired, 95 % t-interval) | qnet delta vs FP | paper delta (ImageNet ResNet-18) | port (CIFAR-10 ResNet-20, 200 ep.) delta |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        cells = []
        per = {}
        for m in ("qn", "lsq", "ste", "tao"):
            a = accs(m, setting)
            per[m] = a
            if m == "tao" and setting not in TAO_SETTINGS:
                cells.append("n/a (non-uniform)")
            elif a:
                vals = list(a.values())
                sd = f" ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else ""
                cells.append(f"{statistics.fmean(vals):.2f}{sd} (n={len(vals)})")
            else:
                cells.append("pending")
        common = sorted(set(per["qn"]) & set(per["lsq"]))
        if common:
            mdiff, lo, hi = _t_interval([per["qn"][s] - per["lsq"][s] for s in common])
            diff = (
                f"{mdiff:+.2f} [{lo:+.2f}, {hi:+.2f}] (n={len(common)})"
                if len(common) > 1
                else f"{mdiff:+.2f} (n=1)"
            )
        else:
            diff = "pending"
        qd = f"{statistics.fmean(per['qn'].values()) - fp_mean:+.2f}" if per["qn"] and fp else "pending"
        pd = f"{PAPER_DELTA[setting]:+.1f}" if setting in PAPER_DELTA else "-"
        port = f"{PORT[setting] - PORT_FP:+.2f}" if setting in PORT else "-"
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {diff} | {qd} | {pd} | {port} |")
    gap_ok = _plot_gap(os.path.join(out, "cifar10_soft_hard_gap.png"), runs)
    lines += [
        "",
        "Paper deltas are ImageNet ResNet-18 (Table 2: FP 70.3; W1 66.5, W2 69.1, W3(±4) 70.4, W1/A2 63.4, "
        "W32/A2 65.7); the port is haoyz/quantization-networks-cifar10 (FP 92.08; W1 89.01, W2 91.12, W3(±4) 92.18, "
        "W1/A2 56.5; 200 epochs with T + 5 per epoch), i.e. both with far more training than this schedule.",
        "",
        "## Soft/hard gap per epoch (Fig. 4 analogue)",
        "",
    ]
    if gap_ok:
        lines.append(
            "![soft - hard validation accuracy of qnet per epoch](cifar10_soft_hard_gap.png)\n\n"
            "Mean over finished seeds of (soft-quantizer accuracy at the current T) - (hard-quantizer accuracy) on "
            f"the first {sched['val_eval']} validation images at the end of each epoch (BN in eval mode, before BN "
            "re-estimation)."
        )
        lines += [
            "",
            "| setting | " + " | ".join(f"ep {e}" for e in range(1, sched["epochs"] + 1)) + " |",
            "|---|" + "---|" * sched["epochs"],
        ]
        for setting in SETTINGS:
            rs = [r for r in main if r["method"] == "qn" and r["setting"] == setting]
            if not rs:
                continue
            n = min(len(r["curve"]) for r in rs)
            gaps = [
                statistics.fmean(r["curve"][e]["val_soft"] - r["curve"][e]["val_hard"] for r in rs)
                for e in range(n)
            ]
            lines.append(f"| {setting} | " + " | ".join(f"{g:+.2f}" for g in gaps) + " |")
    else:
        lines.append("Pending (needs finished qnet main units).")
    lines += _long_section(out, runs, sched, accs)
    lines += ["", "## Pending units", "", (", ".join(pending) if pending else "none"), ""]
    text = "\n".join(lines)
    with open(os.path.join(out, "cifar10.md"), "w", encoding="utf-8") as f:
        f.write(text)
    summary = {
        "schedule": sched_name,
        "finished": len(runs),
        "pending": pending,
        "chosen": {
            m: {k: v for k, v in u.items() if k in ("lr", "c", "val_acc", "id")} for m, u in chosen.items()
        },
    }
    _write_json(os.path.join(out, "cifar10_summary.json"), summary)
    return text


def _long_section(
    out: str,
    runs: dict[str, dict[str, Any]],
    sched: dict[str, Any],
    accs: Any,
) -> list[str]:
    """The longer-schedule check: qnet vs LSQ at W2 and W2/A2, first seed, and qnet's soft/hard gap per epoch."""
    epochs = LONG_FACTOR * sched["epochs"]
    seed = sched["seeds"][0]
    lines = [
        "",
        f"## Longer schedule: {epochs} epochs ({LONG_FACTOR}x), seed {seed} (indicative, one seed)",
        "",
        f"Does qnet's gap to LSQ, and its soft/hard gap, close with more training? The same recipe, data pool, "
        f"chosen hyper-parameters and T = c * epoch schedule (so T ends {LONG_FACTOR}x higher), run for {epochs} "
        "epochs; one seed, so differences of a point or two are noise.",
        "",
        f"| setting | qnet, {epochs} ep. | LSQ, {epochs} ep. | qnet - LSQ | qnet, {sched['epochs']} ep. (same seed) | "
        f"LSQ, {sched['epochs']} ep. (same seed) |",
        "|---|---|---|---|---|---|",
    ]
    longs = {(r["method"], r["setting"]): r for r in runs.values() if r["kind"] == "long"}
    for setting in ("W2", "W2/A2"):
        q, lq = longs.get(("qn", setting)), longs.get(("lsq", setting))
        short_q, short_l = accs("qn", setting).get(seed), accs("lsq", setting).get(seed)

        def cell(r: dict[str, Any] | None) -> str:
            if r is None:
                return "pending"
            return "diverged" if r["test_acc"] is None else f"{r['test_acc']:.2f}"

        diff = (
            f"{q['test_acc'] - lq['test_acc']:+.2f}"
            if q and lq and q["test_acc"] is not None and lq["test_acc"] is not None
            else "pending"
        )
        sq = "pending" if short_q is None else f"{short_q:.2f}"
        sl = "pending" if short_l is None else f"{short_l:.2f}"
        lines.append(f"| {setting} | {cell(q)} | {cell(lq)} | {diff} | {sq} | {sl} |")
    done = [r for r in runs.values() if r["kind"] == "long" and r["method"] == "qn"]
    if done and _plot_gap(os.path.join(out, "cifar10_soft_hard_gap_long.png"), runs, kind="long"):
        shown = sorted({1, 2, 4, 6, 8, 12, 16, 20, epochs})
        lines += [
            "",
            "![qnet soft - hard validation accuracy per epoch, longer schedule](cifar10_soft_hard_gap_long.png)",
            "",
            "| setting | " + " | ".join(f"ep {e}" for e in shown) + " |",
            "|---|" + "---|" * len(shown),
        ]
        for r in sorted(done, key=lambda r: list(SETTINGS).index(r["setting"])):
            cur = {row["epoch"]: row["val_soft"] - row["val_hard"] for row in r["curve"]}
            hard = {row["epoch"]: row["val_hard"] for row in r["curve"]}
            lines.append(
                f"| {r['setting']} soft - hard | "
                + " | ".join(f"{cur[e]:+.2f}" if e in cur else "" for e in shown)
                + " |"
            )
            # a small gap means little when both are near chance: the hard accuracy itself
            lines.append(
                f"| {r['setting']} hard | "
                + " | ".join(f"{hard[e]:.2f}" if e in hard else "" for e in shown)
                + " |"
            )
    return lines


# --------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="reports/qnet")
    ap.add_argument("--data", default=None)
    ap.add_argument("--schedule", default="cpu", choices=("cpu", "gpu"))
    ap.add_argument("--quick", action="store_true", help="tiny schedule (minutes), for smoke tests")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-units", type=int, default=None, help="stop after this many new units")
    ap.add_argument("--only", default=None, help="run only units whose id contains this string")
    ap.add_argument("--report-only", action="store_true", help="rebuild the report from runs/ and exit")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s"
    )

    def body() -> int:
        pin(args.threads)
        return _main(args)

    return run_cli("qnet cifar10", body, verbose=args.verbose)


def _main(args: argparse.Namespace) -> int:
    sched_name = "quick" if args.quick else args.schedule
    sched = SCHEDULES[sched_name]
    folder = os.path.join(args.out, "runs", sched_name)
    os.makedirs(folder, exist_ok=True)
    if args.report_only:
        write_report(args.out, sched_name)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available", file=sys.stderr)
        return 2
    data_dir = args.data or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "shared", "data"
    )
    teachers = os.path.join(data_dir, "cifar10-resnet-teachers")
    cand = (
        sorted(f for f in os.listdir(teachers) if f.startswith("resnet20-"))
        if os.path.isdir(teachers)
        else []
    )
    if not cand:
        raise FileNotFoundError(
            f"cifar10-resnet-teachers/resnet20-*.th not found under {data_dir!r}; pass --data"
        )
    teacher = os.path.join(teachers, cand[0])
    with open(teacher, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:8]
    data = _load_data(data_dir, args.quick)
    device = torch.device(args.device)
    new = 0
    while True:
        done = _read_runs(folder)
        queue = validation_units(sched_name)
        if all(u["id"] in done for u in queue):
            queue += main_units(sched, choose(done))
        todo = [u for u in queue if u["id"] not in done and (args.only is None or args.only in u["id"])]
        if not todo or (args.max_units is not None and new >= args.max_units):
            break
        u = todo[0]
        print(f"[{time.strftime('%H:%M:%S')}] unit {u['id']} ({len(todo)} left in this stage)", flush=True)
        r = run_unit(u, data, sched, device, teacher)
        r["teacher_sha256_8"] = sha
        r["argv"] = sys.argv[1:]
        # both kernels compute the same function; recorded because their float rounding differs
        r["soft_quantizer_kernel"] = "native" if _native.module() is not None else "eager"
        _write_json(os.path.join(folder, u["id"] + ".json"), r)
        new += 1
        acc = r["test_acc"] if "test_acc" in r else r["val_acc"]
        print(
            f"  -> {'diverged' if acc is None else f'{acc:.2f}'} % ({'test' if 'test_acc' in r else 'val'}), {r['cpu_s']:.0f} CPU-s, {r['wall_s']:.0f} s wall",
            flush=True,
        )
        write_report(args.out, sched_name)
    write_report(args.out, sched_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
