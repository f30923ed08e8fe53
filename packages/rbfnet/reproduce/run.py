"""Reproduction of Deep RBFNet's claim on real ModelNet data: a single RBF layer classifies more accurately
than PointNet++ with far fewer parameters and less compute.

    python packages/rbfnet/reproduce/run.py --out reports/rbfnet [--data /work/shared/data] [--quick]

Every model is trained with the same recipe (rbfnet.train) on the full ModelNet10 split (3 seeds) and on
the 40-class ModelNet40 subset; each run keeps its checkpoint under ``--work-dir`` and resumes from it after
an interruption, and writes its own result JSON; the report is rebuilt from whatever runs exist, so
partial results are reported as they come. ``--jobs`` trains several runs in parallel processes (useful on
a GPU). ``--report-only`` rebuilds the report from existing runs. ``--ablations`` trains the small seeded
ablations that fit a CPU budget instead (per-kernel vs per-point pooling and kernel functions on a
ModelNet10 slice, the normals variant on the 156-shape ``modelnet40-normal-mini``); their runs land in
their own settings under ``--work-dir``, so the report keeps every finished full run beside them.
``--provenance TEXT`` appends TEXT to ``<work-dir>/provenance.md``, which every report build includes.
Not shipped in the wheel.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import rbfnet  # noqa: E402
from rbfnet.data import ModelNetNormalResampled, PointCloudFolder, default_train_transform  # noqa: E402
from rbfnet.profiling import measure_model  # noqa: E402

MODELS = ["rbfnet_single", "rbfnet_multiscale", "rbfnet_kernelwise", "pointnet", "pointnet2_ssg"]
# Ablations of the single-layer model (label -> builder, kwargs): learnable vs fixed kernels (the abstract's
# "kernel distribution and receptive field optimised jointly"), kernel count, centre layout, kernel function.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "rbfnet_single": ("rbfnet_single", {}),
    "rbfnet_single-fixed": ("rbfnet_single", {"learn_centers": False, "learn_widths": False}),
    "rbfnet_single-m64": ("rbfnet_single", {"num_kernels": 64}),
    "rbfnet_single-m1024": ("rbfnet_single", {"num_kernels": 1024}),
    "rbfnet_single-ball": ("rbfnet_single", {"center_init": "uniform_ball"}),
    "rbfnet_single-invquad": ("rbfnet_single", {"kernel": "inverse_quadratic"}),
    # per-kernel pooling (the option; cheaper on CPUs) with its reductions, kernels, fixed kernels, normals
    "rbfnet_kernelwise": ("rbfnet_kernelwise", {}),
    "rbfnet_kernelwise-sum": ("rbfnet_kernelwise", {"kernel_pool": "sum"}),
    "rbfnet_kernelwise-mean": ("rbfnet_kernelwise", {"kernel_pool": "mean"}),
    "rbfnet_kernelwise-laplacian": ("rbfnet_kernelwise", {"kernel": "laplacian"}),
    "rbfnet_kernelwise-invquad": ("rbfnet_kernelwise", {"kernel": "inverse_quadratic"}),
    "rbfnet_kernelwise-invmultiquad": ("rbfnet_kernelwise", {"kernel": "inverse_multiquadric"}),
    "rbfnet_kernelwise-multiquad": ("rbfnet_kernelwise", {"kernel": "multiquadric"}),
    "rbfnet_kernelwise-fixed": ("rbfnet_kernelwise", {"learn_centers": False, "learn_widths": False}),
    "rbfnet_kernelwise-m64": ("rbfnet_kernelwise", {"num_kernels": 64}),
    "rbfnet_kernelwise-m1024": ("rbfnet_kernelwise", {"num_kernels": 1024}),
    "rbfnet_kernelwise-ball": ("rbfnet_kernelwise", {"center_init": "uniform_ball"}),
    # normals: kernels in the 6-D xyz + normal space; for the point-wise model also normals concatenated
    "rbfnet_kernelwise-normals": ("rbfnet_kernelwise", {"use_normals": True}),
    "rbfnet_normals": ("rbfnet_normals", {}),
    "rbfnet_normals-concat": ("rbfnet_normals", {"normals_mode": "concat"}),
}
# Published ModelNet40 overall accuracy (full official split, 1024 xyz points), see the research dossier.
PAPER_MN40 = {"pointnet": 89.2, "pointnet2_ssg": 90.7}


def ablation_settings(epochs: int | None) -> dict[str, dict[str, Any]]:
    """Small seeded ablations sized for a CPU budget (about 20 CPU-minutes in all on one core).

    Most vary the per-kernel pooling model (``rbfnet_kernelwise``), several times cheaper on a CPU than the
    point-wise default: its three reductions over the points, the five kernel functions, fixed kernels,
    the kernel count (M = 64 / 1024 vs 300), the centre layout (uniform ball vs grid) and the normals; the normals are also tried on the point-wise model (6-D kernels or concatenated).
    Per-kernel vs per-point pooling itself is compared in the full settings.
    """
    return {
        "modelnet10-small-ablation": {
            "kind": "ablation",
            "reference": "rbfnet_kernelwise",
            "folder": "modelnet10-pc1024",
            "train_per_class": 40,
            "test_per_class": None,
            "points": 256,
            "epochs": epochs or 15,
            "seeds": [0, 1],
            "models": [
                "rbfnet_kernelwise",
                "rbfnet_kernelwise-sum",
                "rbfnet_kernelwise-mean",
                "rbfnet_kernelwise-laplacian",
                "rbfnet_kernelwise-invquad",
                "rbfnet_kernelwise-invmultiquad",
                "rbfnet_kernelwise-multiquad",
                "rbfnet_kernelwise-fixed",
                "rbfnet_kernelwise-m64",
                "rbfnet_kernelwise-m1024",
                "rbfnet_kernelwise-ball",
            ],
            "batch": 16,
        },
        "modelnet40-normal-mini": {
            "kind": "ablation",
            "reference": "rbfnet_kernelwise",
            "format": "normal",
            "folder": "modelnet40-normal-mini",
            "train_per_class": None,
            "test_per_class": None,
            "points": 256,
            "epochs": epochs or 30,
            "seeds": [0, 1, 2],
            "models": ["rbfnet_kernelwise", "rbfnet_kernelwise-normals"],
            "batch": 16,
        },
        "modelnet40-normal-mini-pointwise": {
            "kind": "ablation",
            "reference": "rbfnet_single",
            "format": "normal",
            "folder": "modelnet40-normal-mini",
            "train_per_class": None,
            "test_per_class": None,
            "points": 256,
            "epochs": epochs or 30,
            "seeds": [0, 1, 2],
            "models": ["rbfnet_single", "rbfnet_normals", "rbfnet_normals-concat"],
            "batch": 16,
        },
    }


def settings(quick: bool, epochs: int | None, ablations: bool = False) -> dict[str, dict[str, Any]]:
    if ablations:
        return ablation_settings(epochs)
    if quick:
        return {
            "modelnet10-quick": {
                "folder": "modelnet10-pc1024",
                "train_per_class": 20,
                "test_per_class": 10,
                "points": 256,
                "epochs": epochs or 4,
                "seeds": [0],
                "models": ["rbfnet_single", "rbfnet_kernelwise", "pointnet"],
                "batch": 16,
            }
        }
    e = epochs or 25
    return {
        "modelnet10-ablation": {
            "kind": "ablation",
            "reference": "rbfnet_single",
            "folder": "modelnet10-pc1024",
            "train_per_class": None,
            "test_per_class": None,
            "points": 1024,
            "epochs": e,
            "seeds": [0],
            "models": list(VARIANTS),
            "batch": 32,
        },
        "modelnet10": {
            "folder": "modelnet10-pc1024",
            "train_per_class": None,
            "test_per_class": None,
            "points": 1024,
            "epochs": e,
            "seeds": [0, 1, 2],
            "models": MODELS,
            "batch": 32,
        },
        "modelnet40-sub": {
            "folder": "modelnet40-pc1024-sub",
            "train_per_class": None,
            "test_per_class": None,
            "points": 1024,
            "epochs": e,
            "seeds": [0, 1, 2],
            "models": MODELS,
            "batch": 32,
        },
    }


def pin_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Pin what the numbers depend on and return it for the result files and the report.

    torch threads (``--threads``, default 1: the committed CPU runs used one thread; more threads change
    float summation order and so the last digits, which can flip a few test predictions), deterministic
    algorithms (``torch.use_deterministic_algorithms``; on CUDA ``warn_only`` because scatter-style kernels
    have no deterministic twin there, with ``CUBLAS_WORKSPACE_CONFIG`` set and cuDNN benchmarking off), and
    the run's seed (model init, shuffling, dropout and augmentations are all derived from it).
    """
    torch.set_num_threads(int(args.threads))
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    cuda = str(args.device).startswith("cuda")
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    return {
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": cuda,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def run_dir(work: str, setting: str, model: str, seed: int) -> str:
    return os.path.join(work, setting, model, f"seed{seed}")


def run_one(args: argparse.Namespace, setting: str, model_name: str, seed: int) -> None:
    cfg = settings(args.quick, args.epochs, args.ablations)[setting]
    root = os.path.join(args.data, cfg["folder"])
    folder = run_dir(args.work_dir, setting, model_name, seed)
    os.makedirs(folder, exist_ok=True)
    if os.path.isfile(os.path.join(folder, "result.json")):
        with open(os.path.join(folder, "result.json"), encoding="utf-8") as fh:
            if json.load(fh).get("complete"):
                return
    pinned = pin_settings(args)
    dev = torch.device(args.device)
    tr: PointCloudFolder | ModelNetNormalResampled
    te: PointCloudFolder | ModelNetNormalResampled
    if cfg.get("format") == "normal":  # PointNet++ text form with normals (y up); all models get them
        tr = ModelNetNormalResampled(
            root,
            "train",
            num_points=cfg["points"],
            sampling="random",
            transform=default_train_transform(up_axis=1),
            seed=seed,
        )
        te = ModelNetNormalResampled(root, "test", num_points=cfg["points"])
    else:
        tr = PointCloudFolder(
            root,
            "train",
            num_points=cfg["points"],
            max_per_class=cfg["train_per_class"],
            sampling="random",
            transform=default_train_transform(),
            seed=seed,
        )
        te = PointCloudFolder(root, "test", num_points=cfg["points"], max_per_class=cfg["test_per_class"])
    torch.manual_seed(seed)
    arch, extra = VARIANTS.get(model_name, (model_name, {}))
    model = rbfnet.create_model(arch, num_classes=len(tr.classes), **extra).to(dev)
    epochs = int(cfg["epochs"])

    def partial(epoch: int, record: dict[str, Any]) -> None:
        ckpt = (
            torch.load(os.path.join(folder, "last.pt"), weights_only=True)
            if os.path.isfile(os.path.join(folder, "last.pt"))
            else {}
        )
        hist = ckpt.get("metrics", {}).get("history", [record])
        with open(os.path.join(folder, "result.json"), "w", encoding="utf-8") as fh:
            json.dump(
                {"complete": False, "history": hist, "setting": setting, "model": model_name, "seed": seed},
                fh,
            )

    out = rbfnet.train(
        model,
        tr,
        te,
        epochs=epochs,
        batch_size=cfg["batch"],
        lr=1e-3,
        lr_step=max(1, epochs // 4),
        lr_gamma=0.5,
        seed=seed,
        device=dev,
        checkpoint_dir=folder,
        resume=True,
        callback=lambda e, r: partial(e, r),
        num_workers=args.workers,
    )
    final = rbfnet.evaluate(model, te, device=dev, batch_size=cfg["batch"])
    speed = measure_model(
        model, batch_size=32, num_points=cfg["points"], device=dev, train_step=False, repeats=5
    )
    res = {
        "complete": True,
        "setting": setting,
        "model": model_name,
        "seed": seed,
        "epochs": epochs,
        "points": cfg["points"],
        "train_size": len(tr),
        "test_size": len(te),
        "params": rbfnet.count_parameters(model),
        "overall_acc": final["overall_acc"],
        "class_mean_acc": final["class_mean_acc"],
        "per_class_acc": final["per_class_acc"],
        "classes": tr.classes,
        "train_seconds": out["train_seconds"],
        "infer_clouds_per_s": speed["infer_clouds_per_s"],
        "history": out["history"],
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "pinned": {**pinned, "seed": seed},
    }
    if args.drop_checkpoints:
        for name in ("last.pt", "best.pt"):
            if os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
    with open(os.path.join(folder, "result.json"), "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=2)


def _subset(cfg: dict[str, Any]) -> str:
    tr, te = cfg["train_per_class"], cfg["test_per_class"]
    if tr is None and te is None:
        return "all shapes" + (", official split lists" if cfg.get("format") == "normal" else "")
    return f"{'all' if tr is None else tr} train / {'all' if te is None else te} test shapes per class"


def _pm(v: tuple[float, float], n: int) -> str:
    return f"{v[0]:.2f} +- {v[1]:.2f}" if n > 1 else f"{v[0]:.2f}"


def _mean_std(v: list[float]) -> tuple[float, float]:
    a = np.asarray(v, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def build_report(args: argparse.Namespace, command: str, wall: float) -> None:
    try:
        from plots import line_plot, scatter_plot
    except ImportError:  # pillow missing: report without plots
        logging.getLogger("reproduce").warning("pillow is not installed: the report is written without plots")

        def line_plot(*a: Any, **k: Any) -> None:  # type: ignore[misc]
            return None

        scatter_plot = line_plot

    os.makedirs(args.out, exist_ok=True)
    # Every setting that has runs in the work dir is reported, so that a --quick smoke run does not hide
    # finished full runs (and vice versa); settings without any run are left out unless just requested.
    requested = settings(args.quick, args.epochs, args.ablations)
    full_epochs = None if (args.quick or args.ablations) else args.epochs
    cfgs = {}
    for name, cfg in {
        **settings(False, full_epochs),
        **settings(True, args.epochs if args.quick else None),
        **ablation_settings(args.epochs if args.ablations else None),
    }.items():
        has_runs = os.path.isdir(os.path.join(args.work_dir, name))
        if has_runs or (name in requested and not args.report_only):
            cfgs[name] = cfg
    cfgs = dict(sorted(cfgs.items(), key=lambda kv: kv[1].get("kind") == "ablation"))
    rows: list[dict[str, Any]] = []
    md = [
        "# Deep RBFNet reproduction (rbfnet " + rbfnet.__version__ + ")",
        "",
        "Claim checked (abstract of arXiv:1812.04302): *a network with a single RBF layer classifies 3-D objects "
        "more accurately than PointNet++, with far fewer parameters and less computation / faster training.*",
        "The paper's own numbers could not be read (only the abstract is reachable), so the `paper` column holds the "
        "published PointNet / PointNet++ ModelNet40 accuracies (full official split) where they exist, else null.",
        "",
        f"Command: `{command}`  ",
        "Seeds: per setting below; every model uses the same recipe (Adam 1e-3, wd 1e-4, lr x0.5 every epochs/4, "
        "batch as listed, point dropout + anisotropic scale/shift + jitter). Accuracies are at the LAST epoch on the "
        "test split (no test-set model selection). Training devices of the runs: "
        + (", ".join(sorted(_devices(args))) or "none yet")
        + f"; report built in {wall:.0f} s.",
        "",
    ]
    md += [_pinned_line(args), ""]
    prov = _provenance(args)
    if prov:
        md += ["### How the runs were executed", "", prov, ""]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    ablation_text: list[str] = []
    for setting, cfg in cfgs.items():
        ablation = cfg.get("kind") == "ablation"
        res = []
        for m in cfg["models"]:
            for s in cfg["seeds"]:
                p = os.path.join(run_dir(args.work_dir, setting, m, s), "result.json")
                if os.path.isfile(p):
                    with open(p, encoding="utf-8") as fh:
                        res.append(json.load(fh))
        md += [
            f"## {setting}",
            "",
            f"Data `{cfg['folder']}` ({_subset(cfg)}), "
            f"{cfg['points']} points, {cfg['epochs']} epochs, batch {cfg['batch']}, seeds {cfg['seeds']}"
            + (f"; ablation, reference model `{cfg['reference']}`." if ablation else "."),
            "",
            "| model | runs done | params | OA % (mean +- sd) | class-mean acc % | train s/epoch | inference clouds/s |"
            + (" OA - reference (points) |" if ablation else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if ablation else ""),
        ]
        rows_at = len(md)
        summary[setting] = {}
        curves: dict[str, tuple[list[float], list[float]]] = {}
        for m in cfg["models"]:
            done = [r for r in res if r["model"] == m and r.get("complete")]
            part = [r for r in res if r["model"] == m and not r.get("complete")]
            if not done:
                md.append(
                    f"| {m} | 0 ({len(part)} partial) | - | - | - | - | - |" + (" - |" if ablation else "")
                )
                if part:
                    h = part[0]["history"]
                    curves[m + " (partial)"] = (
                        [r["epoch"] for r in h],
                        [r.get("val_overall_acc", 0.0) for r in h],
                    )
                continue
            oa = _mean_std([100 * r["overall_acc"] for r in done])
            ca = _mean_std([100 * r["class_mean_acc"] for r in done])
            spe = float(np.mean([r["train_seconds"] / r["epochs"] for r in done]))
            ips = float(np.mean([r["infer_clouds_per_s"] for r in done]))
            summary[setting][m] = {
                "oa": oa,
                "ca": ca,
                "params": done[0]["params"],
                "spe": spe,
                "ips": ips,
                "n": len(done),
                "test_size": int(done[0].get("test_size", 0)),
                "per_seed": [100 * r["overall_acc"] for r in done],
            }
            md.append(
                f"| {m} | {len(done)} | {done[0]['params']:,} | {_pm(oa, len(done))} | {_pm(ca, len(done))} "
                f"| {spe:.1f} | {ips:.0f} |"
            )
            h0 = done[0]["history"]
            epochs_x = [r["epoch"] for r in h0]
            mean_curve = np.mean(
                [[r.get("val_overall_acc", 0.0) for r in d["history"]] for d in done], axis=0
            )
            curves[m] = (epochs_x, [float(v) for v in mean_curve])
        if ablation:
            ref_v = summary[setting].get(cfg["reference"])
            for i in range(rows_at, len(md)):
                m = md[i].split("|")[1].strip()
                if m in summary[setting]:
                    delta = "-" if ref_v is None else f"{summary[setting][m]['oa'][0] - ref_v['oa'][0]:+.2f}"
                    md[i] += f" {delta} |"
            if summary[setting]:
                ablation_text.append(_ablation_summary(setting, cfg, summary[setting]))
        md.append("")
        if curves:
            line_plot(
                os.path.join(args.out, f"acc_vs_epoch_{setting}.png"),
                curves,
                title=f"{setting}: test OA vs epoch",
                xlabel="epoch",
                ylabel="overall accuracy",
            )
            md += [f"![accuracy vs epoch](acc_vs_epoch_{setting}.png)", ""]
        if summary[setting]:
            scatter_plot(
                os.path.join(args.out, f"acc_vs_params_{setting}.png"),
                {m: (v["params"], v["oa"][0] / 100) for m, v in summary[setting].items()},
                title=f"{setting}: OA vs parameters",
                xlabel="parameters (log)",
                ylabel="overall accuracy",
            )
            md += [f"![accuracy vs parameters](acc_vs_params_{setting}.png)", ""]
        base = summary[setting].get(cfg["reference"] if ablation else "pointnet2_ssg")
        for m, v in summary[setting].items():
            label = f"{setting}, {cfg['points']} pts, {cfg['epochs']} epochs, {v['n']} seed(s): {m}"
            paper = PAPER_MN40.get(m) if setting.startswith("modelnet40") and not ablation else None
            for metric, ours, b in (
                ("overall_acc_%", v["oa"][0], None if base is None else base["oa"][0]),
                ("class_mean_acc_%", v["ca"][0], None if base is None else base["ca"][0]),
                ("params", v["params"], None if base is None else base["params"]),
                ("train_s_per_epoch", v["spe"], None if base is None else base["spe"]),
                ("inference_clouds_per_s", v["ips"], None if base is None else base["ips"]),
            ):
                rows.append(
                    {
                        "setting": label,
                        "metric": metric,
                        "ours": ours,
                        "baseline": b,
                        "paper": paper if metric == "overall_acc_%" else None,
                    }
                )
    bench: dict[str, Any] | None = None
    if args.bench_json is None and os.path.isfile(os.path.join(args.out, "bench-cuda-h100.json")):
        args.bench_json = os.path.join(args.out, "bench-cuda-h100.json")
    if args.bench_json and os.path.isfile(args.bench_json):
        with open(args.bench_json, encoding="utf-8") as fh:
            bench = json.load(fh)
        md += [
            "## Compute, measured alone (benchmark)",
            "",
            f"`benchmarks/run.py` on {bench['device']}, batch {bench['batch_size']}, 1024 points, 40 classes, one "
            "process (the training-time columns above were measured with many runs sharing one GPU, so they are "
            "only indicative):",
            "",
            "| model | params | inference clouds/s | training clouds/s | training peak MB |",
            "|---|---|---|---|---|",
        ]
        for r in bench["models"]:
            peak = "-" if r.get("train_peak_mb") is None else f"{r['train_peak_mb']:.0f}"
            md.append(
                f"| {r['model']} | {r['params']:,} | {r['infer_clouds_per_s']:.0f} | {r['train_clouds_per_s']:.0f} | {peak} |"
            )
        big = bench.get("big_layer")
        if big and big.get("backward_peak_mb") is not None:
            md += [
                "",
                f"Memory-aware RBF layer (`big_layer`): {big['batch']} clouds x {big['points']:,} points x "
                f"{big['kernels']:,} kernels, max over points, chunks of {big['chunk']:,} points: one dense response "
                f"tensor would take {big['dense_tensor_mb']:,.0f} MB; the chunked forward peaked at "
                f"{big['peak_mb']:,.0f} MB and forward + backward at {big['backward_peak_mb']:,.0f} MB of GPU memory "
                "(input and several chunk-sized temporaries included).",
            ]
        md.append("")
    cpu_path = os.path.join(args.out, "bench-cpu.json")
    if os.path.isfile(cpu_path):  # the same benchmark on the CPU (no peak memory there)
        with open(cpu_path, encoding="utf-8") as fh:
            cpu = json.load(fh)
        md += [
            "### Compute on a CPU (benchmark)",
            "",
            f"`benchmarks/run.py --device cpu` (`bench-cpu.json`), batch {cpu['batch_size']}, 1024 points, 40 classes, "
            f"{cpu['threads']} thread(s) on a 2-core machine shared with other jobs, so only the order of magnitude "
            "and the ranking within one run are meaningful:",
            "",
            "| model | params | inference clouds/s | training clouds/s |",
            "|---|---|---|---|",
        ]
        for r in cpu["models"]:
            md.append(
                f"| {r['model']} | {r['params']:,} | {r['infer_clouds_per_s']:.1f} | {r['train_clouds_per_s']:.1f} |"
            )
        md.append("")
    main = {k: v for k, v in summary.items() if cfgs[k].get("kind") != "ablation"}
    verdict = _verdict(main, bench)
    md += ["## Verdict", "", verdict, ""]
    pooling = _pooling_summary(main)
    if pooling is not None:
        ablation_text.insert(0, pooling)
    if ablation_text:
        md += ["## Ablations", "", *[t + "\n" for t in ablation_text]]
    ran = {k for k, v in summary.items() if v}
    not_run = []
    if "modelnet40-normal-mini" not in ran:
        not_run.append(
            "the normals variant (`rbfnet_normals`; the full data sets available carry no normals, only the "
            "156-shape normal-resampled sample does: `--ablations`)"
        )
    if "modelnet10-small-ablation" not in ran:
        not_run.append("the small CPU ablations of pooling and kernel functions (`--ablations`)")
    if "modelnet10-ablation" not in ran:
        not_run.append(
            "the full-data `modelnet10-ablation` setting of this script (fixed vs learnable kernels, M = 64 / "
            "1024, centre layout, kernel function), which is defined but was not run for lack of GPU time"
        )
    md += [
        "Notes: the `baseline` column of results.json is PointNet++ (SSG) trained here with the same recipe. "
        "The training budget is far below the usual 200-250 epochs, so all absolute accuracies are lower than "
        "published ones; the comparison between models is like for like. The ModelNet40 subset has 40 training "
        "shapes per class (1600 in all), far fewer than the official 9843, so its accuracies are not comparable "
        "with the published 89.2 / 90.7. In the ablation settings the `baseline` column of results.json is the "
        "setting's reference model (named in its heading), not PointNet++, and `paper` is null; their timing "
        "columns were measured on 2 CPU cores shared with other jobs and are not comparable between runs."
        + (" Not evaluated here: " + "; ".join(not_run) + "." if not_run else ""),
    ]
    with open(os.path.join(args.out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(md) + "\n")
    claim = (
        "A single RBF layer network beats PointNet++ in ModelNet classification accuracy with far fewer "
        "parameters and less computation (Chen et al., arXiv:1812.04302, abstract)."
    )
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump({"package": "rbfnet", "claim": claim, "rows": rows, "verdict": verdict}, fh, indent=2)


def _provenance(args: argparse.Namespace) -> str:
    """``<work-dir>/provenance.md`` (how the runs were executed), after appending ``--provenance``."""
    path = os.path.join(args.work_dir, "provenance.md")
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            text = fh.read().strip()
    if args.provenance and args.provenance.strip() not in text:
        text = (text + "\n\n" + args.provenance.strip()).strip()
        os.makedirs(args.work_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return text


def _compare(v: dict[str, Any], ref: dict[str, Any]) -> tuple[float, float, str]:
    """OA difference of ``v`` to ``ref`` (points), the noise level and a word: the noise is 2 x the larger
    of the standard error over seeds and the binomial standard error of a difference of two accuracies on
    this test set (the seeds share the test set, so the latter does not shrink with more seeds)."""
    d = v["oa"][0] - ref["oa"][0]
    n = max(v["test_size"], 1)
    p1, p2 = v["oa"][0] / 100, ref["oa"][0] / 100
    binom = 100 * math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
    seeds = (
        math.sqrt(v["oa"][1] ** 2 / v["n"] + ref["oa"][1] ** 2 / ref["n"])
        if min(v["n"], ref["n"]) > 1
        else 0.0
    )
    noise = 2 * max(binom, seeds)
    return d, noise, ("better" if d > noise else ("worse" if d < -noise else "within noise"))


def _ablation_summary(setting: str, cfg: dict[str, Any], models: dict[str, dict[str, Any]]) -> str:
    """One paragraph per ablation setting: each variant's OA difference to the reference (see _compare)."""
    ref_name = cfg["reference"]
    ref = models.get(ref_name)
    if ref is None:
        return f"**{setting}**: the reference `{ref_name}` has not finished."
    parts = []
    for m, v in models.items():
        if m == ref_name:
            continue
        d, noise, word = _compare(v, ref)
        seeds = ""
        if min(v["n"], ref["n"]) > 1 and min(v["per_seed"]) > max(ref["per_seed"]):
            seeds = ", every seed above every reference seed"
        elif min(v["n"], ref["n"]) > 1 and max(v["per_seed"]) < min(ref["per_seed"]):
            seeds = ", every seed below every reference seed"
        parts.append(
            f"`{m}` {v['oa'][0]:.2f}% ({d:+.2f}, {word}; noise +-{noise:.1f}, {v['n']} seed(s){seeds})"
        )
    return (
        f"**{setting}** ({cfg['points']} points, {cfg['epochs']} epochs, {ref['test_size']} test clouds): "
        f"reference `{ref_name}` {ref['oa'][0]:.2f}% ({ref['n']} seed(s)); " + "; ".join(parts) + "."
    )


def _pooling_summary(main: dict[str, dict[str, dict[str, Any]]]) -> str | None:
    """Per-kernel vs per-point pooling in the full settings (rbfnet_kernelwise vs rbfnet_single)."""
    parts = []
    for setting, models in main.items():
        if "rbfnet_kernelwise" in models and "rbfnet_single" in models:
            kw, pw = models["rbfnet_kernelwise"], models["rbfnet_single"]
            d, noise, word = _compare(kw, pw)
            parts.append(
                f"{setting}: per-kernel {kw['oa'][0]:.2f}% vs per-point {pw['oa'][0]:.2f}% ({d:+.2f}, {word}; "
                f"noise +-{noise:.1f}, {min(kw['n'], pw['n'])} seeds) with x{kw['params'] / pw['params']:.2f} "
                "the parameters"
            )
    if not parts:
        return None
    return "**Per-kernel vs per-point pooling** (full settings above, same recipe): " + "; ".join(parts) + "."


def _pinned_line(args: argparse.Namespace) -> str:
    """What the runs pinned, from their result files (runs made before rbfnet 0.3.0 record nothing)."""
    seen: dict[str, int] = {}
    old = 0
    for dirpath, _, files in os.walk(args.work_dir):
        if "result.json" in files:
            with open(os.path.join(dirpath, "result.json"), encoding="utf-8") as fh:
                r = json.load(fh)
            if not r.get("complete"):
                continue
            pin = r.get("pinned")
            if not pin:
                old += 1
                continue
            key = (
                f"{pin['torch_threads']} torch thread(s), deterministic algorithms "
                f"{'on (warn-only on CUDA)' if pin.get('deterministic_warn_only') else 'on'} "
                f"({'on' if pin['deterministic_algorithms'] else 'OFF'}), torch {pin['torch']}"
            )
            seen[key] = seen.get(key, 0) + 1
    parts = [f"{n} run(s): {k}" for k, n in sorted(seen.items())]
    if old:
        parts.append(
            f"{old} run(s) made before rbfnet 0.3.0 record no pinned settings (CPU runs: one thread by "
            "OMP_NUM_THREADS=1, per their provenance below; H100 runs: default threads, non-deterministic)"
        )
    return (
        "Pinned settings (reproduce/run.py pins them itself: `--threads` (default 1), "
        "`torch.use_deterministic_algorithms(True)`, the run's seed for init, shuffling, dropout and "
        "augmentation): " + ("; ".join(parts) if parts else "no finished run yet") + "."
    )


def _devices(args: argparse.Namespace) -> set[str]:
    out = set()
    for dirpath, _, files in os.walk(args.work_dir):
        if "result.json" in files:
            with open(os.path.join(dirpath, "result.json"), encoding="utf-8") as fh:
                d = json.load(fh).get("device")
            if d:
                out.add(str(d))
    return out


def _verdict(summary: dict[str, dict[str, dict[str, Any]]], bench: dict[str, Any] | None = None) -> str:
    parts = []
    acc_claim = [
        models["pointnet2_ssg"]["oa"][0]
        < max(v["oa"][0] for m, v in models.items() if m.startswith("rbfnet"))
        for models in summary.values()
        if "pointnet2_ssg" in models and any(m.startswith("rbfnet") for m in models)
    ]
    if acc_claim:
        parts.append(
            "Accuracy part of the claim: "
            + (
                "REPRODUCED in every setting run."
                if all(acc_claim)
                else "NOT reproduced"
                + (" in any setting run." if not any(acc_claim) else " in some settings.")
            )
        )
    for setting, models in summary.items():
        base = models.get("pointnet2_ssg")
        rbf = {m: v for m, v in models.items() if m.startswith("rbfnet")}
        if not rbf:
            parts.append(f"{setting}: no RBFNet run finished.")
            continue
        best_m = max(rbf, key=lambda m: rbf[m]["oa"][0])
        b = rbf[best_m]
        txt = f"{setting}: best RBFNet variant {best_m} OA {b['oa'][0]:.2f}% ({b['params']:,} params)"
        if base is None:
            parts.append(
                txt + "; PointNet++ not run in this setting, so the accuracy claim is not tested here."
            )
            continue
        diff = b["oa"][0] - base["oa"][0]
        sd = math.sqrt(b["oa"][1] ** 2 + base["oa"][1] ** 2)
        acc = (
            "higher than"
            if diff > max(sd, 0.3)
            else ("lower than" if diff < -max(sd, 0.3) else "within noise of")
        )
        single = rbf.get("rbfnet_single")
        single_txt = (
            ""
            if single is None
            else f"; the single-layer model alone: {single['oa'][0]:.2f}% "
            f"({single['oa'][0] - base['oa'][0]:+.2f} points)"
        )
        parts.append(
            txt
            + f" is {acc} PointNet++ SSG {base['oa'][0]:.2f}% ({base['params']:,} params), {diff:+.2f} points"
            + single_txt
            + f"; parameters x{b['params'] / base['params']:.2f}, training time per epoch "
            f"x{b['spe'] / base['spe']:.2f}, inference throughput x{b['ips'] / base['ips']:.1f}."
        )
    if bench is not None:
        by = {r["model"]: r for r in bench["models"]}
        if "rbfnet_single" in by and "pointnet2_ssg" in by:
            a, b = by["rbfnet_single"], by["pointnet2_ssg"]
            parts.append(
                f"Parameters and compute part: REPRODUCED. Measured alone on {bench['device']}, rbfnet_single "
                f"has x{a['params'] / b['params']:.2f} the parameters of PointNet++ SSG, trains "
                f"x{a['train_clouds_per_s'] / b['train_clouds_per_s']:.1f} and infers "
                f"x{a['infer_clouds_per_s'] / b['infer_clouds_per_s']:.1f} faster (clouds/s); note that PointNet "
                "vanilla, with the same head, is as small and as fast and was as accurate as RBFNet here."
            )
    return " ".join(parts) if parts else "No run finished."


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="reports/rbfnet")
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--ablations",
        action="store_true",
        help="train the small CPU-sized ablations (pooling, kernel functions, kernel count, centres, normals) instead",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--work-dir", default=None, help="checkpoints and per-run results (default: <out>/runs)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per run")
    p.add_argument("--only", default=None, help="comma list of setting:model[:seed] to run (default: all)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument(
        "--drop-checkpoints", action="store_true", help="delete last.pt / best.pt after a run completes"
    )
    p.add_argument("--bench-json", default=None, help="benchmark JSON to summarise in the report")
    p.add_argument("--provenance", default=None, help="free text on how the runs were executed")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (pinned and recorded; default 1)"
    )
    p.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads < 1:
        p.error(f"--threads must be >= 1; got {args.threads}")
    args.work_dir = args.work_dir or os.path.join(args.out, "runs")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.run_one:
        setting, model, seed = args.run_one.split(":")
        run_one(args, setting, model, int(seed))
        return 0
    t0 = time.time()
    argv = list(sys.argv[1:])
    if "--provenance" in argv:  # recorded in its own section
        i = argv.index("--provenance")
        argv[i : i + 2] = ["--provenance", "'...'"]
    command = "python packages/rbfnet/reproduce/run.py " + " ".join(argv)
    if not args.report_only:
        todo = []
        for setting, cfg in settings(args.quick, args.epochs, args.ablations).items():
            for m in cfg["models"]:
                for s in cfg["seeds"]:
                    key = f"{setting}:{m}:{s}"
                    if args.only is None or any(
                        key == o or key.startswith(o + ":") for o in args.only.split(",")
                    ):
                        todo.append(key)
        # the slowest model first so that parallel jobs finish together
        todo.sort(key=lambda k: 0 if "pointnet2" in k else 1)
        running: list[subprocess.Popen[bytes]] = []
        base_cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--out",
            args.out,
            "--data",
            args.data,
            "--device",
            args.device,
            "--work-dir",
            args.work_dir,
            "--workers",
            str(args.workers),
        ]
        if args.quick:
            base_cmd.append("--quick")
        if args.ablations:
            base_cmd.append("--ablations")
        if args.epochs is not None:
            base_cmd += ["--epochs", str(args.epochs)]
        if args.drop_checkpoints:
            base_cmd.append("--drop-checkpoints")
        base_cmd += ["--threads", str(args.threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        for key in todo:
            if args.jobs <= 1:
                run_one(args, *key.split(":")[:2], int(key.split(":")[2]))  # type: ignore[misc]
                build_report(args, command, time.time() - t0)
                continue
            while len(running) >= args.jobs:
                running = [r for r in running if r.poll() is None]
                time.sleep(1.0)
            running.append(subprocess.Popen([*base_cmd, "--run-one", key], env=env))
        for r in running:
            r.wait()
    build_report(args, command, time.time() - t0)
    print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
