"""Small-scale reproduction of IE-KD's core table on real offline data (faces-24id).

    python packages/iekd/reproduce/run.py --out reports/iekd --data /work/shared/data [--quick] [--device cuda]

Task: 24-identity face classification, 2668 real crops resized to ``--size`` px, one seeded stratified
80/20 split by image (seed 0). A ResNet-20 teacher is trained with cross-entropy (seed 0), its factor
auto-encoder is trained once (L1 reconstruction; a second one on the pre-ReLU feature for ie-ofd), then a
ResNet-8 student is trained with ce, kd, at, ft, ofd, ie-kd, ie-at, ie-ft, ie-ofd, and two ResNet-8s with dml and
ie-dml, for each seed. Reported: final held-out top-1
accuracy, mean +/- std over seeds, beside the paper's (secondary-source, CIFAR-10) gains.

Default (full): 24 identities at 16 px (32 px, the CIFAR size, with ``--size 32``; about 4x slower), seeds 1 2 3,
teacher 30 epochs, students 12 epochs. ``--quick``: 8 identities, 16 px, one seed, teacher 8 epochs, factor
auto-encoders 2 epochs, students 3 epochs (a smoke check of the pipeline, not a result). Run with ``OMP_NUM_THREADS=1`` on a shared 2-core machine.
Writes ``report.md``, ``results.json`` and ``accuracy_curves.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from typing import Any

import torch
from torch.utils.data import DataLoader

import iekd
from iekd.data import ImageTensorDataset, read_image_folder, stratified_split
from iekd.recipes import distill, mutual, sgd, train_factor

# the helpers beside this script (pinning, one-line errors), however the script is loaded
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _iekd_cli import pin, run_cli

METHODS = [
    "ce",
    "kd",
    "at",
    "ft",
    "ofd",
    "ie-kd",
    "ie-at",
    "ie-ft",
    "ie-ofd",
    "dml",
    "ie-dml",
    "ie-kd-trainable",
]
IE_METHODS = ("ie-kd", "ie-at", "ie-ft", "ie-ofd", "ie-dml")
BASE = {
    "kd": "ce",
    "at": "ce",
    "ft": "ce",
    "ofd": "ce",
    "dml": "ce",
    "ie-kd": "kd",
    "ie-at": "at",
    "ie-ft": "ft",
    "ie-ofd": "ofd",
    "ie-dml": "dml",
    "ie-kd-trainable": "kd",  # collapse check: the authors' jointly trained exploration encoder
}
# Secondary source only (paper-notes file; the paper's PDF could not be read): CIFAR-10 ResNet-56 -> ResNet-20,
# top-1 error 7.78% (baseline) -> 6.53% (IE-KD, best variant): a gain of 1.25 points.
PAPER_GAIN = {"ie-kd": 1.25}


def _loaders(
    data: str, size: int, classes: int | None, batch: int, seed: int
) -> tuple[DataLoader, DataLoader, int, dict]:
    s = read_image_folder(os.path.join(data, "faces-24id"), size=size)
    x, y = s.images, s.labels
    if classes is not None:
        keep = y < classes
        x, y = x[keep], y[keep]
    tr, te = stratified_split(y, test_fraction=0.2, seed=0)
    train = DataLoader(
        ImageTensorDataset(x[tr], y[tr], augment=True, pad=max(1, size // 8)),
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    test = DataLoader(ImageTensorDataset(x[te], y[te]), batch_size=512)
    info = {"train_images": len(tr), "test_images": len(te), "classes": int(y.max()) + 1, "size": size}
    return train, test, int(y.max()) + 1, info


def _plot(curves: dict[str, list[float]], path: str, title: str) -> None:
    from PIL import Image, ImageDraw

    w, h, m = 720, 420, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    colors = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#17becf",
    ]
    n = max(len(c) for c in curves.values())
    lo = min(min(c) for c in curves.values())
    hi = max(max(c) for c in curves.values())
    lo, hi = max(0.0, lo - 2), min(100.0, hi + 2)
    d.rectangle([m, m // 2, w - 150, h - m], outline="black")

    def xy(i: int, v: float) -> tuple[float, float]:
        x = m + (w - 150 - m) * (i / max(n - 1, 1))
        y = (h - m) - (h - m - m // 2) * ((v - lo) / max(hi - lo, 1e-9))
        return x, y

    for k in range(5):
        v = lo + (hi - lo) * k / 4
        _, yy = xy(0, v)
        d.text((5, yy - 6), f"{v:.0f}", fill="black")
    d.text((m, h - m + 10), "epoch 1", fill="black")
    d.text((w - 200, h - m + 10), f"epoch {n}", fill="black")
    d.text((m, 5), title, fill="black")
    for j, (name, c) in enumerate(curves.items()):
        col = colors[j % len(colors)]
        d.line([xy(i, v) for i, v in enumerate(c)], fill=col, width=2)
        d.text((w - 140, m + 16 * j), name, fill=col)
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/iekd")
    ap.add_argument("--data", default=os.environ.get("SHARED_DATA", "../shared/data"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--seeds", type=int, nargs="*", default=None, help="student seeds (default 1 2 3; quick: 1)"
    )
    ap.add_argument(
        "--size", type=int, default=None, help="image size (default 16; the paper's CIFAR size is 32)"
    )
    ap.add_argument("--epochs", type=int, default=None, help="student epochs (default 12; quick: 3)")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="teacher epochs (default 30; quick: 8)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the committed report was made with 1)",
    )
    ap.add_argument("--verbose", action="store_true", help="show tracebacks of errors")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_cli("iekd reproduce", lambda: _run(args, argv), verbose=args.verbose)


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    if not os.path.isdir(os.path.join(args.data, "faces-24id")):
        raise FileNotFoundError(f"{os.path.join(args.data, 'faces-24id')} not found (pass --data)")
    settings = pin(args.threads)
    dev = torch.device(args.device)
    cfg: dict[str, Any]
    if args.quick:
        # a smoke check of the whole pipeline (every method, report, plot), not a result: short schedules so that
        # it stays under 3 minutes even on a busy shared 2-core machine
        cfg = {"size": 16, "classes": 8, "teacher_epochs": 8, "factor_epochs": 2, "epochs": 3, "lr": 0.05}
        seeds = args.seeds or [1]
    else:
        cfg = {
            "size": 16,
            "classes": None,
            "teacher_epochs": 30,
            "factor_epochs": 5,
            "epochs": 12,
            "lr": 0.05,
        }
        seeds = args.seeds or [1, 2, 3]
    for key, val in (("size", args.size), ("epochs", args.epochs), ("teacher_epochs", args.teacher_epochs)):
        if val is not None:
            cfg[key] = val
    batch = 64
    t_start = time.time()
    torch.manual_seed(0)
    train, test, ncls, info = _loaders(args.data, cfg["size"], cfg["classes"], batch, seed=0)
    teacher = iekd.models.resnet20(num_classes=ncls).to(dev)
    tres = distill(
        teacher,
        None,
        train,
        method="ce",
        epochs=cfg["teacher_epochs"],
        optimizer=sgd(cfg["lr"]),
        eval_loader=test,
        progress=None,
        device=dev,
    )
    teacher_acc = 100 * tres.history[-1]["val_acc"]
    print(f"teacher resnet20: {teacher_acc:.2f}% ({time.time() - t_start:.0f}s)", flush=True)
    torch.manual_seed(0)
    factor = train_factor(
        teacher, train, epochs=cfg["factor_epochs"], optimizer=sgd(0.1), progress=None, device=dev
    )
    torch.manual_seed(
        0
    )  # ie-ofd distils the pre-ReLU feature: its factor auto-encoder is trained on that layer
    factor_pre = train_factor(
        teacher,
        train,
        teacher.pre_relu_layer,
        epochs=cfg["factor_epochs"],
        optimizer=sgd(0.1),
        progress=None,
        device=dev,
    )
    acc: dict[str, list[float]] = {m: [] for m in METHODS}
    curves: dict[str, list[list[float]]] = {m: [] for m in METHODS}
    explore: dict[str, list[float]] = {}
    for seed in seeds:
        for method in METHODS:
            t0 = time.time()
            torch.manual_seed(seed)
            train.generator.manual_seed(seed)  # type: ignore[union-attr]
            student = iekd.models.resnet8(num_classes=ncls).to(dev)
            kw: dict[str, Any] = {
                "epochs": cfg["epochs"],
                "optimizer": sgd(cfg["lr"]),
                "eval_loader": test,
                "progress": None,
                "device": dev,
                # the committed faces-24id report ran with the 0.1-0.3 defaults (frozen exploration encoder,
                # lambda 50); pinned so that the report stays reproducible after the 0.4.0 defaults changed
                "inherit_weight": 50.0,
                "explore_weight": 50.0,
                "explore_encoder": "frozen",
            }
            if method in ("dml", "ie-dml"):
                peer = iekd.models.resnet8(num_classes=ncls).to(dev)
                res = mutual(student, peer, train, ie=method == "ie-dml", **kw)
                hist = [100 * (h["val_acc_a"] + h["val_acc_b"]) / 2 for h in res.history]
            else:
                # AT's beta = 1000 was set for 8x8 (and larger) maps of 32 px CIFAR inputs; the mean over H*W
                # positions grows as 1/(H*W), so beta is scaled by (size/32)^2 to keep the same balance.
                at_w = 1000.0 * (cfg["size"] / 32) ** 2
                if method == "ie-kd-trainable":
                    kw["explore_encoder"] = "trainable"
                name = "ie-kd" if method == "ie-kd-trainable" else method
                fac = factor_pre if method == "ie-ofd" else factor
                res = distill(student, teacher, train, method=name, factor=fac, at_weight=at_w, **kw)  # type: ignore[arg-type]
                hist = [100 * h["val_acc"] for h in res.history]
                if "explore" in res.history[-1]:
                    explore.setdefault(method, []).append(float(res.history[-1]["explore"]))
            acc[method].append(hist[-1])
            curves[method].append(hist)
            print(f"seed {seed} {method:<7} {hist[-1]:.2f}%  ({time.time() - t0:.0f}s)", flush=True)
    wall = time.time() - t_start
    os.makedirs(args.out, exist_ok=True)

    def ms(v: list[float]) -> tuple[float, float]:
        return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

    rows = []
    setting = f"faces-24id {info['classes']} ids {info['size']}px, resnet20 -> resnet8"
    for m in METHODS:
        mean, std = ms(acc[m])
        base = BASE.get(m)
        rows.append(
            {
                "setting": f"{setting}, {m}",
                "metric": "top-1 acc % (mean over seeds)",
                "ours": round(mean, 2),
                "std": round(std, 2),
                "baseline": round(ms(acc[base])[0], 2) if base else None,
                "paper": None,
            }
        )
    for m in IE_METHODS:
        gain = ms(acc[m])[0] - ms(acc[BASE[m]])[0]
        rows.append(
            {
                "setting": f"{setting}, {m} vs {BASE[m]}",
                "metric": "gain in top-1 acc (points)",
                "ours": round(gain, 2),
                "baseline": 0.0,
                "paper": PAPER_GAIN.get(m),
            }
        )
    ie_wins = [m for m in IE_METHODS if ms(acc[m])[0] > ms(acc[BASE[m]])[0]]
    verdict = (
        f"{len(ie_wins)}/{len(IE_METHODS)} IE variants beat their base method on mean accuracy ({', '.join(ie_wins) or 'none'}); "
        f"{len(seeds)} seed(s), so differences below ~1 std are not significant. "
        "The paper's own numbers (CIFAR-10, secondary source) are not directly comparable."
    )
    cmd = "python packages/iekd/reproduce/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "package": "iekd",
        "claim": "IE variants (inherit + explore terms) improve on their base distillation method and IE-DML on DML "
        "(paper: CIFAR-10 ResNet-56->20 error 7.78% -> 6.53%, secondary source)",
        "rows": rows,
        "verdict": verdict,
        "teacher_acc": round(teacher_acc, 2),
        "final_explore_loss": {m: round(statistics.mean(v), 5) for m, v in explore.items()},
        "seeds": seeds,
        "config": {**cfg, **info, "batch": batch, "device": str(dev)},
        "command": cmd,
        "wall_s": round(wall, 1),
        "pinned": settings,
        "torch": torch.__version__,
        "machine": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.machine(),
        "iekd": iekd.__version__,
    }
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    mean_curves = {
        m: [statistics.mean(c[i] for c in curves[m]) for i in range(len(curves[m][0]))] for m in METHODS
    }
    _plot(mean_curves, os.path.join(args.out, "accuracy_curves.png"), "held-out top-1 % (mean over seeds)")
    lines = [
        "# iekd reproduction: IE-KD on real faces (small scale)",
        "",
        f"Command: `{cmd}`  ",
        f"Device: {result['machine']} ({dev}), torch {torch.__version__}, iekd {iekd.__version__}; wall time {wall:.0f} s.  ",
        f"Pinned: {settings['torch_threads']} torch thread(s) (`--threads`, default 1), deterministic algorithms "
        f"{'on' if settings['deterministic_algorithms'] else 'off'}, seeds fixed; the numbers depend on the thread count.  ",
        f"Data: faces-24id, {info['classes']} identities, {info['train_images']} train / {info['test_images']} test "
        f"images (stratified split, seed 0), resized to {info['size']}x{info['size']}.  ",
        f"Teacher: ResNet-20 trained with CE for {cfg['teacher_epochs']} epochs (seed 0): **{teacher_acc:.2f}%**. "
        f"Factor auto-encoder (rate 0.5, L1) trained {cfg['factor_epochs']} epochs.  ",
        f"Students: ResNet-8, {cfg['epochs']} epochs, SGD lr {cfg['lr']} (Nesterov, wd 5e-4, x0.1 at 50%/75%), "
        f"batch {batch}, seeds {seeds}. Library defaults for every weight (KD alpha 0.9 T 4, AT 1000, FT 500, "
        "OFD 1e-3 with the BN margin on pre-ReLU features, IE 50/50, split 0.5, frozen exploration encoder, "
        "additive IE-AT / IE-OFD), except AT's beta = 1000 * (size/32)^2 "
        f"= {1000.0 * (cfg['size'] / 32) ** 2:.0f} (map-size scaling). DML rows average the two ResNet-8 peers.",
        "",
        "| method | top-1 % (mean +/- std) | base method | base top-1 % | gain (points) | paper gain (CIFAR-10, secondary) |",
        "|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        mean, std = ms(acc[m])
        base = BASE.get(m)
        bmean = ms(acc[base])[0] if base else None
        gain_s = f"{mean - bmean:+.2f}" if bmean is not None else ""
        paper = f"{PAPER_GAIN[m]:+.2f}" if m in PAPER_GAIN else ""
        lines.append(
            f"| {m} | {mean:.2f} +/- {std:.2f} | {base or ''} | {'' if bmean is None else f'{bmean:.2f}'} | {gain_s} | {paper} |"
        )
    lines += [
        "",
        f"Verdict: {verdict}",
        "",
        "Per-seed accuracies: " + "; ".join(f"{m}: {', '.join(f'{a:.1f}' for a in acc[m])}" for m in METHODS),
        "",
        "Collapse check (last-epoch mean exploration loss L_exp; more negative = farther from the teacher factor): "
        + "; ".join(f"{m}: {statistics.mean(v):.4f}" for m, v in explore.items())
        + ". `ie-kd-trainable` trains the exploration encoder jointly (authors' code); the default freezes it so that "
        "only the student's exploration channels can move L_exp.",
        "",
        "![accuracy curves](accuracy_curves.png)",
        "",
        "Notes: the paper's tables could not be read (see the package README, Deviations); its CIFAR-10 gain is",
        f"quoted from a secondary source only. This is a {info['classes']}-class face task at small scale, not CIFAR.",
    ]
    rpath = os.path.join(args.out, "report.md")
    text = "\n".join(lines) + "\n"
    _keep_cifar_section(rpath, text, args.out)
    table_start = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
    print("\n".join(lines[table_start : table_start + len(METHODS) + 4]))  # the whole table and the verdict
    return 0


def _keep_cifar_section(rpath: str, text: str, out: str) -> None:
    """Write the faces report, then rebuild the CIFAR-10 section from ``<out>/runs`` when there are runs."""
    with open(rpath, "w") as fh:
        fh.write(text)
    runs = os.path.join(out, "runs")
    if os.path.isdir(runs):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import cifar10

        for schedule in sorted(os.listdir(runs)):
            if schedule in cifar10.SCHEDULES and os.listdir(os.path.join(runs, schedule)):
                cifar10.write_report(out, schedule)


if __name__ == "__main__":
    raise SystemExit(main())
