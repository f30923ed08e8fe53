"""Levenberg-Marquardt vs L-BFGS for the staged 2D-landmark fit on VALIDATION photos (issue 21, fit speed).

Usage: python packages/morphface/reproduce/fit_solver_validation.py --out reports/morphface
       [--data /work/shared/data] [--quick]

Same photos, camera, model and criterion as ``expression_prior_validation.py``: celeba-id-crops' 23 validation
identities (7400-7428 of the identity split of ``real_textures.py``), the first two crops of each (46 photos) with
their shipped dlib 68-point landmarks; 500 px pinhole at the crop centre; ICT-FaceKit; ``prior_weight=1`` and
the default expression prior. Criterion, fixed before running: held-out inner-landmark error (even / odd iBUG rows
17-67 as two folds, each fitted with the jawline and the other fold; mean distance in px of the held-out fold's
projected landmark vertices), per photo, paired between the two solvers; reported with the standard error of
the paired difference. Also: the objective each solver reaches on the all-landmark fit (same function: lower is
better), expression statistics, whether any joint objective exceeds the identity-only one, and the CPU time per
photo of one unbatched fit (``fit_photo``'s setting).

Decision rule, fixed before the first run: ``fit(solver="auto")`` uses Levenberg-Marquardt for landmark fits only
if LM is not worse on the held-out criterion, i.e. for BOTH the identity-only and the joint fit the upper end of
the 95 % interval of the paired difference (LM - L-BFGS; mean + 1.96 SE) is below a non-inferiority margin of
0.05 px (about 3 % of the ~1.5 px held-out error, the size of difference ``expression_prior_validation.py``
judged negligible), and LM's joint objective is never above its identity-only objective. Otherwise "auto" keeps
L-BFGS. The verdict is computed here and written to the JSON / markdown.

Also reported, added after the decision and not used by it: shape accuracy against ground truth on the first 60
ict-faces-128 renders (the report's section-2 fitting set: ICT identities with known coefficients, random pose,
expressions and focal length): median neutral face-region vertex error (mm) after similarity alignment, each render
fitted alone with ``prior_weight=1`` and the all-57-expression model, as ``reproduce/run.py`` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch

import morphface
from morphface import PerspectiveCamera, fit, project_points
from morphface.fit import IBUG_CONTOUR_ROWS, umeyama
from morphface.io import load_ict_npz

SOLVERS = ("lbfgs", "lm")
#: non-inferiority margin of the decision rule (px of held-out landmark error)
MARGIN_PX = 0.05

logger = logging.getLogger("fit_solver_validation")
FACE = torch.arange(9409)  # ICT face region, vertices 0..9408
N_RENDERS = 60


def aligned_error_mm(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean per-vertex distance (mm) after similarity (Umeyama) alignment of pred to gt (cm inputs, (V, 3))."""
    r, t, s = umeyama(pred[None].double(), gt[None].double())
    p = s[:, None, None] * (pred[None].double() @ r.transpose(1, 2)) + t[:, None]
    return float((p[0] - gt.double()).norm(dim=-1).mean() * 10)


def renders_part(data: str, npz: str, n_renders: int = N_RENDERS) -> dict[str, object] | None:
    """Both solvers on the first ``n_renders`` ict-faces-128 renders: shape error against the true identity."""
    meta_path = os.path.join(data, "ict-faces-128", "meta.jsonl")
    if not os.path.isfile(meta_path):
        logger.warning("ict-faces-128 not found under %s: render part skipped", data)
        return None
    model_all = load_ict_npz(npz, expressions="all")  # the renders use all 57 shapes
    with open(meta_path, encoding="utf-8") as fh:
        meta = [json.loads(line) for line in fh][:n_renders]
    coeffs = torch.from_numpy(
        np.load(os.path.join(data, "ict-faces-128", "identity_coefficients.npy"))
    ).float()
    gts = [model_all.vertices(coeffs[m["identity"]][None])[0, FACE] for m in meta]
    out: dict[str, object] = {"renders": len(meta)}
    errs: dict[str, np.ndarray] = {}
    for solver in SOLVERS:
        e, res, cpu = [], [], []
        for m, gt in zip(meta, gts):
            cam = PerspectiveCamera(m["focal_px"], 64.0, 64.0)
            c = time.process_time()
            r = fit(model_all, torch.tensor(m["landmarks68"]), camera=cam, prior_weight=1.0, solver=solver)
            cpu.append(time.process_time() - c)
            e.append(aligned_error_mm(model_all.vertices(r.identity)[0, FACE], gt))
            res.append(float(r.residuals.mean()))
        errs[solver] = np.asarray(e)
        out[solver] = {
            "median_face_error_mm": float(np.median(e)),
            "mean_face_error_mm": float(np.mean(e)),
            "mean_landmark_residual_px": float(np.mean(res)),
            "cpu_s_per_render_median": float(np.median(cpu)),
        }
        logger.info("renders, %s %s", solver, json.dumps(out[solver]))
    d = errs["lm"] - errs["lbfgs"]
    out["mean_face_error_mm_lm_minus_lbfgs"] = float(d.mean())
    out["mean_face_error_mm_lm_minus_lbfgs_se"] = float(d.std(ddof=1) / math.sqrt(len(d)))
    out["renders_lm_more_accurate"] = int((d < 0).sum())
    out["baseline_mean_face_median_mm"] = float(
        np.median([aligned_error_mm(model_all.mean[FACE], g) for g in gts])
    )
    return out


def git_state(here: str) -> dict[str, object]:
    """The commit this ran from and whether the package had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", os.path.dirname(here)],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        )
        return {"commit": head.stdout.strip(), "package_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "package_dirty": None}


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/morphface")
    p.add_argument(
        "--data", default=os.path.normpath(os.path.join(here, "..", "..", "..", "..", "shared", "data"))
    )
    p.add_argument("--quick", action="store_true", help="8 identities (16 photos), 6 renders")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("morphface").setLevel(logging.WARNING)  # one line per fit otherwise
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - pins the legacy global RNG for any library that uses it
    torch.manual_seed(0)
    lmk = os.path.join(args.data, "celeba-id-crops", "landmarks.json")
    npz = os.path.join(args.data, "ict-facekit", "ict_facekit_shapes.npz")
    if not (os.path.isfile(lmk) and os.path.isfile(npz)):
        sys.exit(f"celeba-id-crops or ict-facekit missing under {args.data}; pass --data")
    with open(lmk, encoding="utf-8") as fh:
        table = json.load(fh)
    ids = sorted({k.split("/")[0] for k in table}, key=int)
    n_tr, n_va = int(0.7 * len(ids)), int(0.1 * len(ids))
    val_ids = ids[n_tr : n_tr + n_va]
    if args.quick:
        val_ids = val_ids[:8]
    keys = [k for i in val_ids for k in sorted(k for k in table if k.split("/")[0] == i)[:2]]
    y = torch.tensor([table[k] for k in keys], dtype=torch.float32)
    model = load_ict_npz(npz)
    cam = PerspectiveCamera(500.0, 63.5, 63.5)
    lm = model.landmark_indices
    inner = list(range(17, 68))
    folds = [inner[0::2], inner[1::2]]
    jaw = list(range(17))

    def heldout_error(solver: str, expression: bool) -> torch.Tensor:
        errs = []
        for held in folds:
            kept = jaw + [r for r in inner if r not in held]
            r = fit(
                model,
                y[:, kept],
                camera=cam,
                vertex_indices=lm[kept],
                contour=list(IBUG_CONTOUR_ROWS),
                fit_expression=expression,
                solver=solver,
            )
            pred = project_points(r.vertices[:, lm[held]], cam)
            errs.append((pred - y[:, held]).norm(dim=-1).mean(1))
        return torch.stack(errs).mean(0)

    t0, c0 = time.time(), time.process_time()
    rows: dict[str, dict[str, object]] = {}
    scores: dict[str, torch.Tensor] = {}
    losses: dict[str, torch.Tensor] = {}
    for solver in SOLVERS:
        for expression in (False, True):
            name = f"{solver}, {'joint' if expression else 'identity-only'}"
            score = heldout_error(solver, expression)
            full = fit(model, y, camera=cam, fit_expression=expression, solver=solver)
            scores[name], losses[name] = score, full.loss
            cpu = []
            for i in range(len(keys)):  # unbatched, as fit_photo calls it
                c1 = time.process_time()
                fit(model, y[i], camera=cam, fit_expression=expression, solver=solver)
                cpu.append(time.process_time() - c1)
            rows[name] = {
                "heldout_landmark_px_mean": float(score.mean()),
                "heldout_landmark_px_sem": float(score.std() / math.sqrt(len(score))),
                "objective_all_landmarks_mean": float(full.loss.mean()),
                "identity_only_objective_mean": float(full.identity_loss.mean()),
                "fit_residual_px_all_landmarks": float(full.residuals.mean()),
                "max_expression": float(full.expression.max()),
                "mean_expression": float(full.expression.mean()),
                "expression_weights_above_0.5": int((full.expression > 0.5).sum()),
                "photos_joint_above_identity_only": int((full.loss > full.identity_loss * (1 + 1e-5)).sum()),
                "cpu_s_per_photo_unbatched_median": float(np.median(cpu)),
                "cpu_s_per_photo_unbatched_max": float(np.max(cpu)),
            }
            logger.info("%s %s", name, json.dumps(rows[name]))
    paired = {}
    for what in ("identity-only", "joint"):
        d = scores[f"lm, {what}"] - scores[f"lbfgs, {what}"]
        dl = losses[f"lm, {what}"] - losses[f"lbfgs, {what}"]
        se = float(d.std() / math.sqrt(len(d)))
        paired[what] = {
            "heldout_px_lm_minus_lbfgs_mean": float(d.mean()),
            "heldout_px_lm_minus_lbfgs_se": se,
            "heldout_px_lm_minus_lbfgs_upper95": float(d.mean()) + 1.96 * se,
            "photos_lm_heldout_better": int((d < 0).sum()),
            "objective_lm_minus_lbfgs_mean": float(dl.mean()),
            "photos_lm_objective_lower": int((dl < 0).sum()),
        }
        logger.info("%s %s", what, json.dumps(paired[what]))
    not_worse = all(paired[w]["heldout_px_lm_minus_lbfgs_upper95"] < MARGIN_PX for w in paired)
    monotone = rows["lm, joint"]["photos_joint_above_identity_only"] == 0
    decision = {
        "rule": f"LM for landmark fits iff mean + 1.96 SE of the paired held-out difference (LM - L-BFGS) < "
        f"{MARGIN_PX} px for identity-only AND joint fits, and LM's joint objective never above identity-only",
        "lm_not_worse": bool(not_worse),
        "lm_joint_never_above_identity_only": bool(monotone),
        "auto_uses_lm_for_landmarks": bool(not_worse and monotone),
    }
    logger.info("decision %s", json.dumps(decision))
    renders = renders_part(args.data, npz, 6 if args.quick else N_RENDERS)
    result = {
        "purpose": "decide whether fit(solver='auto') may use Levenberg-Marquardt instead of L-BFGS (0.4.0)",
        "command": " ".join(
            ["python", "packages/morphface/reproduce/fit_solver_validation.py", *sys.argv[1:]]
        ),
        "photos": keys,
        "identities": len(val_ids),
        "camera_focal_px": 500.0,
        "criterion": "mean held-out inner-landmark distance (px), 2 folds (even/odd iBUG rows 17-67), paired",
        "settings": {"torch_threads": 1, "deterministic_algorithms": True, "seed": 0, "quick": args.quick},
        "rows": rows,
        "paired": paired,
        "decision": decision,
        "renders_after_decision": renders,
        "git": git_state(here),
        "cpu_seconds": time.process_time() - c0,
        "wall_seconds": time.time() - t0,
        "load_average_after": list(os.getloadavg()),
        "versions": {"morphface": morphface.__version__, "torch": torch.__version__},
    }
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "fit_solver_validation.json")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    md = os.path.join(args.out, "fit_solver_validation.md")
    with open(md, "w", encoding="utf-8") as fh:
        fh.write(markdown(result))
    logger.info("wrote %s and %s", out, md)


def markdown(r: dict) -> str:
    """The result as a markdown report (what reports/morphface/fit_solver_validation.md holds)."""
    n = len(r["photos"])
    la = "/".join(f"{x:.1f}" for x in r["load_average_after"])
    lines = [
        "# Fit solver validation: Levenberg-Marquardt vs L-BFGS",
        "",
        f"`{r['command']}`; morphface {r['versions']['morphface']}, torch {r['versions']['torch']}, one thread; "
        f"{n} validation photos of {r['identities']} identities (celeba-id-crops, shipped dlib landmarks), "
        f"{r['camera_focal_px']:g} px pinhole, ICT-FaceKit, default priors; {r['cpu_seconds']:.0f} s CPU, "
        f"{r['wall_seconds']:.0f} s wall (load average after: {la}).",
        f"Code: commit {r['git']['commit']}"
        + (" with uncommitted changes" if r["git"]["package_dirty"] else "")
        + ".",
        "",
        f"Criterion (fixed before running): {r['criterion']}.",
        "",
        "| solver, fit | held-out px (mean +/- SE) | objective, all landmarks (mean) | identity-only objective "
        "(mean) | fit residual px | max / mean expression | weights > 0.5 | joint > identity-only | "
        "CPU s per photo, unbatched (median / max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, x in r["rows"].items():
        lines.append(
            f"| {name} | {x['heldout_landmark_px_mean']:.3f} +/- {x['heldout_landmark_px_sem']:.3f} | "
            f"{x['objective_all_landmarks_mean']:.1f} | {x['identity_only_objective_mean']:.1f} | "
            f"{x['fit_residual_px_all_landmarks']:.3f} | {x['max_expression']:.2f} / {x['mean_expression']:.3f} | "
            f"{x['expression_weights_above_0.5']} | {x['photos_joint_above_identity_only']} of {n} | "
            f"{x['cpu_s_per_photo_unbatched_median']:.3f} / {x['cpu_s_per_photo_unbatched_max']:.3f} |"
        )
    lines += [
        "",
        "| paired, LM - L-BFGS | held-out px: mean (SE), upper 95 % | photos LM better held-out | "
        "objective: mean difference | photos LM objective lower |",
        "|---|---|---|---|---|",
    ]
    for what, x in r["paired"].items():
        lines.append(
            f"| {what} | {x['heldout_px_lm_minus_lbfgs_mean']:+.4f} ({x['heldout_px_lm_minus_lbfgs_se']:.4f}), "
            f"{x['heldout_px_lm_minus_lbfgs_upper95']:+.4f} | {x['photos_lm_heldout_better']} of {n} | "
            f"{x['objective_lm_minus_lbfgs_mean']:+.2f} | {x['photos_lm_objective_lower']} of {n} |"
        )
    d = r["decision"]
    lines += [
        "",
        f"Decision rule: {d['rule']}.",
        f"LM not worse: {'yes' if d['lm_not_worse'] else 'no'}; LM joint never above identity-only: "
        f'{"yes" if d["lm_joint_never_above_identity_only"] else "no"}; by the rule `solver="auto"` should use '
        f"{'LM' if d['auto_uses_lm_for_landmarks'] else 'L-BFGS'} for landmark fits.",
        "",
    ]
    rd = r.get("renders_after_decision")
    if rd:
        lines += [
            f"Also reported, after the decision and not used by it: shape accuracy on the first {rd['renders']} "
            "ict-faces-128 renders (true identity known; each render fitted alone, `prior_weight=1`, all 57 "
            "expressions; neutral face-region vertex error after similarity alignment).",
            "",
            "| solver | median face error mm | mean face error mm | mean landmark residual px | CPU s per render (median) |",
            "|---|---|---|---|---|",
        ]
        for solver in SOLVERS:
            x = rd[solver]
            lines.append(
                f"| {solver} | {x['median_face_error_mm']:.3f} | {x['mean_face_error_mm']:.3f} | "
                f"{x['mean_landmark_residual_px']:.3f} | {x['cpu_s_per_render_median']:.3f} |"
            )
        lines += [
            f"| mean face (baseline) | {rd['baseline_mean_face_median_mm']:.3f} | | | |",
            "",
            f"Paired, LM - L-BFGS: mean face error {rd['mean_face_error_mm_lm_minus_lbfgs']:+.3f} mm (SE "
            f"{rd['mean_face_error_mm_lm_minus_lbfgs_se']:.3f}); LM more accurate on {rd['renders_lm_more_accurate']} "
            f"of {rd['renders']} renders.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
