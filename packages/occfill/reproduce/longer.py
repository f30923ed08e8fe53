"""Longer training of the full model and of plain inpainting (seed 0), and whether it replaces the shipped file.

Training (one process, one thread, from scratch; NOT resumed from the report's step-40 checkpoints)::

    OMP_NUM_THREADS=1 python packages/occfill/reproduce/train_celeba.py --data DATA --ckpt-dir CK \\
        --steps 400 --unit 40 --seeds 0 --variants full plain_inpainting

writes ``CK/<variant>_s0_step<N>.pt`` every 40 steps (the last step lives only in ``CK/<variant>_s0.pt``, whose
recorded step is read). The step evaluated is the LAST step both variants reached, a multiple of 40 (``--step
auto``), fixed before any number of this script was looked at. The step-40 snapshot of this run is not
bit-identical to the generator shipped in 0.3.0 (also full, seed 0, step 40, same recipe; max abs weight
difference 0.007: training differs slightly between machines/sessions), so both are rows.

Rows, on the same 48 held-out test crops with the same metrics and noise as ``run.py`` (plus masked L1):
full at step S (and with a WRONG-identity reference), plain inpainting at step S, the shipped 0.3.0 file, this
run's step-40 snapshots of both variants, and the classical paste baseline. Paired differences: per test
image, 95 % bootstrap interval over the 48 images (2000 resamples, seed 0). One training seed: the intervals
cover test-image variation only, not training-seed variation (which the main report's three seeds at step 40
put at about 0.02-0.03 in ocular distance and 0.3 dB in PSNR). Many intervals are shown; none is corrected
for multiplicity.

Decision rule (declared in this docstring and committed before the step-S numbers were computed): the full
model at step S REPLACES the shipped generator (``src/occfill/weights/occfill_celeba128.pt``, 0.3.0) iff it is
not worse than that file on the 48 test crops, per paired difference ``new - shipped`` with its 95 % interval:

1. masked PSNR: lower end of the interval >= -0.10 dB;
2. masked L1 (mean absolute error in the hole, 0-1 RGB): upper end <= +0.002;
3. dlib ocular identity distance: upper end <= +0.010.

The margins are "no measurable harm" bounds: 0.1 dB is a third of the PSNR spread over training seeds at step
40, 0.002 is about 1 % of the hole's L1 error, and 0.010 is a third of the full-vs-plain-inpainting ocular gain
of the main report. Whole-face identity, SSIM and the perceptual distance are reported but not part of the
rule. If the rule says keep, the 0.3.0 file stays and the report says so.

Usage::

    python packages/occfill/reproduce/longer.py --data /work/shared/data --out reports/occfill \\
        --ckpt-dir /tmp/occfill/long --shipped /tmp/occfill/shipck/full_s0_step40.pt \\
        --log /tmp/occfill/long.log --cache /tmp/occfill/longcache
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import (
    DlibIdentity,
    Perceptual,
    _checkpoints,
    _test_batch,
    complete_with,
    dlib_truth,
    paste_baseline,
    pin,
    save_grid,
)

from occfill.checkpoint import load_checkpoint
from occfill.functional import masked_psnr, masked_ssim
from occfill.models import create_model

log = logging.getLogger("occfill.longer")

METRICS = ("id_dist_ocular", "id_dist_whole", "psnr_mask", "l1_mask", "ssim_mask", "perceptual")
RULE = (  # (metric, which end of the interval of new - shipped, bound, "<=" or ">=")
    ("psnr_mask", "lo", -0.10, ">="),
    ("l1_mask", "hi", 0.002, "<="),
    ("id_dist_ocular", "hi", 0.010, "<="),
)
SHIPPED = "full, step 40, shipped in 0.3.0"
PASTE = "classical paste baseline"
NOTES_MARK = "<!-- hand notes below: kept when the script rewrites this file -->"


def masked_l1(out: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean absolute error inside the hole per image: ``(B,)`` from ``(B, 3, H, W)`` images, ``(B, 1, H, W)`` mask."""
    return ((out - y).abs() * m).sum(dim=(1, 2, 3)) / (3 * m.sum(dim=(1, 2, 3)).clamp_min(1))


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def last_common_step(ckpt_dir: str, unit: int) -> int:
    """The last step (a multiple of ``unit``) for which both full and plain inpainting (seed 0) have a file."""
    found = _checkpoints(ckpt_dir)
    full, plain = found.get(("full", 0), {}), found.get(("plain_inpainting", 0), {})
    common = [s for s in set(full) & set(plain) if s % unit == 0 and s > 0]
    if not common:
        raise SystemExit(f"longer.py: no common step (multiple of {unit}) of full and plain in {ckpt_dir}")
    return max(common)


def cpu_seconds_from_log(path: str | None, step: int) -> dict[str, float]:
    """Process CPU seconds of each variant at ``step`` from ``train_celeba.py``'s log (one process each)."""
    if not path or not os.path.isfile(path):
        return {}
    out: dict[str, float] = {}
    pat = re.compile(rf"(\w+) s0 step {step}: ([\d.]+) CPU s")
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            mt = pat.search(line)
            if mt:
                out[f"{mt.group(1)}_s0"] = float(mt.group(2))
    return out


def paired(a: dict[str, np.ndarray], b: dict[str, np.ndarray], k: str) -> dict[str, float]:
    """Mean of the per-image difference ``a - b`` and its 95 % bootstrap interval over images."""
    d = a[k] - b[k]
    rng = np.random.default_rng(0)
    boots = [float(d[rng.integers(0, len(d), len(d))].mean()) for _ in range(2000)]
    return {
        "mean": float(d.mean()),
        "lo": float(np.percentile(boots, 2.5)),
        "hi": float(np.percentile(boots, 97.5)),
    }


def decide(comp: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Apply the docstring's rule to ``{metric: paired(new, shipped, metric)}``."""
    checks = []
    for k, end, bound, op in RULE:
        v = comp[k][end]
        ok = v >= bound if op == ">=" else v <= bound
        checks.append({"metric": k, "end": end, "value": v, "bound": bound, "op": op, "pass": bool(ok)})
    return {"replace": all(c["pass"] for c in checks), "checks": checks}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "../shared/data"))
    p.add_argument("--out", default="reports/occfill")
    p.add_argument(
        "--ckpt-dir", required=True, help="train_celeba.py's folder (both variants, all snapshots)"
    )
    p.add_argument(
        "--step", default="auto", help="step to evaluate, or 'auto': the last both variants reached"
    )
    p.add_argument("--unit", type=int, default=40, help="snapshot interval (auto picks a multiple of it)")
    p.add_argument(
        "--shipped", required=True, help="the generator shipped in 0.3.0 (a copy; export overwrites it)"
    )
    p.add_argument("--log", help="train_celeba.py's log, for the CPU seconds at the evaluated step")
    p.add_argument(
        "--cache", help="folder caching the ground truth's dlib descriptors and each row's metrics"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="skip rows whose checkpoint is missing (pipeline check)"
    )
    p.add_argument("--quick", action="store_true", help="first 8 test crops only (pipeline check)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    settings = pin(0)
    t0, c0 = time.time(), time.process_time()
    s = last_common_step(args.ckpt_dir, args.unit) if args.step == "auto" else int(args.step)
    found = _checkpoints(args.ckpt_dir)

    def ck(variant: str, step: int) -> str | None:
        return found.get((variant, 0), {}).get(step)

    ckpts: dict[str, str | None] = {
        f"full, step {s}": ck("full", s),
        f"plain inpainting, step {s}": ck("plain_inpainting", s),
        SHIPPED: args.shipped,
        "full, step 40, this run": ck("full", 40),
        "plain inpainting, step 40, this run": ck("plain_inpainting", 40),
    }
    missing = [name for name, path in ckpts.items() if path is None or not os.path.isfile(path)]
    if missing and not args.dry_run:
        raise SystemExit(f"longer.py: no checkpoint for {missing} in {args.ckpt_dir} (use --dry-run to skip)")
    ckpts = {k: v for k, v in ckpts.items() if k not in missing}
    for name in missing:
        log.warning("dry run: skipping %s (no checkpoint)", name)

    batch = _test_batch(os.path.join(args.data, "celeba-id-crops"), 2)
    if args.quick:
        batch = {k: v[:8] for k, v in batch.items()}
        batch["wrong"] = (torch.arange(8) + 2) % 8
    y, m = batch["image"], batch["mask"]
    n = len(y)
    dl, perc = DlibIdentity(), Perceptual()
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    truth = dlib_truth(dl, y, m, args.cache)

    def metrics(out: torch.Tensor, key: str | None) -> dict[str, np.ndarray]:
        """Per-image metrics of a completed batch, cached under ``key`` (checkpoint hash + row kind)."""
        path = os.path.join(args.cache, f"longer_{key}_{n}.npz") if (args.cache and key) else None
        if path and os.path.isfile(path):
            return dict(np.load(path))
        wd, od = dl(out, m)
        res = {
            "id_dist_ocular": np.linalg.norm(od - truth[1], axis=1),
            "id_dist_whole": np.linalg.norm(wd - truth[0], axis=1),
            "psnr_mask": masked_psnr(out, y, m).numpy(),
            "l1_mask": masked_l1(out, y, m).numpy(),
            "ssim_mask": masked_ssim(out, y, m).numpy(),
            "perceptual": perc(out, y).numpy(),
        }
        if path:
            np.savez(path, **res)
        return res

    per_image: dict[str, dict[str, np.ndarray]] = {}
    outs: dict[str, torch.Tensor] = {}
    hashes: dict[str, str] = {}
    steps_in_file: dict[str, int | None] = {}
    for name, path in ckpts.items():
        assert path is not None
        hashes[name] = sha256(path)
        ckd = load_checkpoint(path)
        steps_in_file[name] = ckd.get("step")
        gen = create_model(ckd["arch"], weights=path).eval()
        outs[name] = complete_with(gen, batch)
        per_image[name] = metrics(outs[name], hashes[name][:16] + "_gen")
        if name == f"full, step {s}":
            wrong = complete_with(gen, batch, reference=batch["image"][batch["wrong"]])
            per_image[f"full, step {s}, WRONG-identity reference"] = metrics(
                wrong, hashes[name][:16] + "_wrong"
            )
        log.info("evaluated %s (%s)", name, path)
    outs[PASTE] = paste_baseline(batch)
    per_image[PASTE] = metrics(outs[PASTE], "paste")

    full_n, plain_n = f"full, step {s}", f"plain inpainting, step {s}"
    pairs = [
        (full_n, SHIPPED),
        (full_n, "full, step 40, this run"),
        (full_n, plain_n),
        (full_n, PASTE),
        (full_n, f"full, step {s}, WRONG-identity reference"),
        (plain_n, "plain inpainting, step 40, this run"),
        ("full, step 40, this run", SHIPPED),
        ("full, step 40, this run", "plain inpainting, step 40, this run"),
    ]
    comparisons: dict[str, dict[str, float]] = {}
    for a, b in pairs:
        if a in per_image and b in per_image:
            for k in METRICS:
                comparisons[f"{a} - {b}, {k}"] = paired(per_image[a], per_image[b], k)
    decision = None
    if full_n in per_image and SHIPPED in per_image:
        decision = decide({k: comparisons[f"{full_n} - {SHIPPED}, {k}"] for k in METRICS})
        log.info("decision rule: %s", "REPLACE the shipped generator" if decision["replace"] else "KEEP it")
    summary = {name: {k: float(v.mean()) for k, v in r.items()} for name, r in per_image.items()}
    budget: dict[str, Any] = {}
    bp = os.path.join(args.ckpt_dir, "budget.json")
    if os.path.isfile(bp):
        with open(bp, encoding="utf-8") as fh:
            budget["budget_json_total_cpu_s"] = json.load(fh)
    budget[f"log_cpu_s_at_step_{s}"] = cpu_seconds_from_log(args.log, s)
    budget["log_cpu_s_at_step_40"] = cpu_seconds_from_log(args.log, 40)
    res = {
        "step": s,
        "n_test_images": n,
        "quick": args.quick,
        "dry_run": bool(missing),
        "rule": [dict(zip(("metric", "end", "bound", "op"), r, strict=True)) for r in RULE],
        "decision": decision,
        "summary": summary,
        "comparisons": comparisons,
        "checkpoints": ckpts,
        "sha256": hashes,
        "step_recorded_in_file": steps_in_file,
        "train_cpu_seconds": budget,
        "settings": settings,
        "command": "python " + " ".join(sys.argv),
        "wall_s": round(time.time() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "longer.json"), "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)
    idx = list(range(0, n, max(1, n // 8)))[:6]
    grid_rows = [SHIPPED, full_n, plain_n, PASTE]
    rows = [y[idx] * (1 - m[idx]), batch["reference"][idx]] + [outs[k][idx] for k in grid_rows if k in outs]
    save_grid([*rows, y[idx]], os.path.join(args.out, "grid_longer128.png"))
    write_report(args.out, res, [k for k in grid_rows if k in outs])
    for name, r in summary.items():
        log.info("%s %s", name, {k: round(v, 4) for k, v in r.items()})
    return 0


def write_report(out_dir: str, res: dict[str, Any], grid_rows: list[str]) -> None:
    """``longer.md`` from the results; text after ``NOTES_MARK`` in an existing file is kept."""
    path = os.path.join(out_dir, "longer.md")
    notes = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        if NOTES_MARK in old:
            notes = old.split(NOTES_MARK, 1)[1]
    s, n = res["step"], res["n_test_images"]
    lines = [
        f"# occfill: longer training (step {s}) of the full model and plain inpainting, seed 0",
        "",
        f"**Command.** `{res['command']}`; one torch thread, deterministic algorithms, torch "
        f"{res['settings']['torch']}; wall {res['wall_s']:.0f} s (rows cached from a dry run are not recomputed).",
        "",
        f"{n} held-out test crops (24 identities never trained on), the same test set, masks, references and noise "
        "as `report.md`. One training seed: the intervals are over test images only. See the docstring of "
        "`reproduce/longer.py` for the training command and the decision rule, declared before these numbers.",
        "",
        "| row | dlib id distance, ocular (lower better) | whole face | masked PSNR (dB) | masked L1 (lower better) "
        "| masked SSIM | EfficientNet-Lite0 perceptual (lower better) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in res["summary"].items():
        lines.append(
            f"| {name} | {r['id_dist_ocular']:.3f} | {r['id_dist_whole']:.3f} | {r['psnr_mask']:.2f} | "
            f"{r['l1_mask']:.4f} | {r['ssim_mask']:.3f} | {r['perceptual']:.3f} |"
        )
    lines += ["", "Paired differences (per test image; 95 % bootstrap interval over images):", ""]
    for k, v in res["comparisons"].items():
        lines.append(f"- {k}: {v['mean']:+.4f} [{v['lo']:+.4f}, {v['hi']:+.4f}]")
    lines += ["", "## Decision rule (declared before the numbers)", ""]
    d = res["decision"]
    if d is None:
        lines.append("Not applied (a row is missing: dry run).")
    else:
        for c in d["checks"]:
            lines.append(
                f"- {c['metric']}: {c['end']} end of (step {s} - shipped) = {c['value']:+.4f}, needs {c['op']} "
                f"{c['bound']:+.3f}: {'pass' if c['pass'] else 'FAIL'}"
            )
        lines += [
            "",
            f"**Outcome: {'REPLACE' if d['replace'] else 'KEEP'}** the shipped generator "
            f"({'the full model at step ' + str(s) + ' becomes the shipped file' if d['replace'] else 'the 0.3.0 file stays'}).",
        ]
    b = res["train_cpu_seconds"]
    lines += [
        "",
        "## Budget",
        "",
        f"Process CPU seconds of training (one thread) at step {s}, from the training log: "
        + (", ".join(f"{k} {v:.0f}" for k, v in b.get(f"log_cpu_s_at_step_{s}", {}).items()) or "n/a")
        + "; at step 40: "
        + (", ".join(f"{k} {v:.0f}" for k, v in b.get("log_cpu_s_at_step_40", {}).items()) or "n/a")
        + "; budget.json (each variant's whole run): "
        + (", ".join(f"{k} {v:.0f}" for k, v in b.get("budget_json_total_cpu_s", {}).items()) or "n/a")
        + ".",
        "",
        "![grid](grid_longer128.png)",
        "",
        "Grid rows: occluded input, reference, " + ", ".join(grid_rows) + ", ground truth.",
        "",
        NOTES_MARK,
    ]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + (notes if notes else "\n"))


if __name__ == "__main__":
    sys.exit(main())
