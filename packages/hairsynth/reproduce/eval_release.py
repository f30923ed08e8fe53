"""Held-out evaluation of a longer-trained release candidate against the shipped 100-step model.

    python packages/hairsynth/reproduce/eval_release.py --out reports/hairsynth \\
        --candidate /tmp/hairsynth/runs/full-s0/last.pt \\
        --inpaint100 /tmp/hairsynth/no_strokes-s0-step100/last.pt \\
        --inpaint-long /tmp/hairsynth/runs/no_strokes-s0/last.pt [--test-photos 30]

Rows (same held-out photos, regions and strokes as ``run.py``: the first ``--test-photos`` of
``celeb1k-hair/test`` and of ``figaro1k/testing``): the candidate (the full model of seed 0 trained longer with
``train_release.py``'s recipe), the shipped weights (``--baseline``, default the installed package's
``hairsynth_128.pt``: the 100-step full model, float16), the 100-step pure-inpainting model of seed 0 (a
*smaller* budget: reference only), with ``--inpaint-long`` the pure-inpainting model trained for as many steps
as the candidate (the same-budget baseline), and the flat fill. Same metrics as ``run.py`` (masked L1 / PSNR /
SSIM, EfficientNet-Lite0 perceptual distance, stroke-colour L1, orientation agreement), paired differences
candidate - each other model with 95% intervals over photos, and the edits (re-coloured / turned strokes).

Decision rule (fixed before the candidate was evaluated): the candidate replaces the shipped weights iff its
mean perceptual distance AND masked L1 are lower than the 100-step model's and its orientation agreement is
not lower by more than the 95% interval of the paired difference. The rule's verdict is written to the JSON.

Writes ``release_eval.json``, ``release_eval.md``, ``release_samples.png`` and ``release_edits.png``.
Pinned: one torch thread, deterministic algorithms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as R
import train_release as TR

import hairsynth
from hairsynth.models import create_model
from hairsynth.synthesizer import pretrained_weights_path

COLS = ("masked_l1", "masked_psnr", "masked_ssim", "perceptual", "stroke_color_l1", "orientation_agreement")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="reports/hairsynth")
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--candidate", required=True, help="training checkpoint of the longer run")
    p.add_argument(
        "--baseline",
        default=None,
        help="the model to replace (default: the weights shipped in the installed package, hairsynth_128.pt)",
    )
    p.add_argument("--inpaint100", required=True, help="pure-inpainting (no_strokes) checkpoint at 100 steps")
    p.add_argument(
        "--inpaint-long",
        default=None,
        help="pure-inpainting checkpoint trained as long as the candidate (the same-budget baseline)",
    )
    p.add_argument("--cache", default="/tmp/hairsynth/runs/cache", help="stroke cache of train_release.py")
    p.add_argument("--test-photos", type=int, default=30, help="first N photos of each test split")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    perc = R._perceptual()
    if perc is None:
        raise SystemExit("eval_release.py needs the hairsynth[perceptual] extra")
    cache = args.cache
    baseline = args.baseline or pretrained_weights_path()
    test_parts = [TR.dataset(args.data, r, s, n, cache, test=True) for r, s, n in TR.TEST_SPLITS]
    for tp in test_parts:
        tp.pairs = tp.pairs[: args.test_photos]
    samples = R.eval_samples(test_parts)
    rec, ori = R.edit_samples(samples, "recolour"), R.edit_samples(samples, "rotate")
    cand_step = int(torch.load(args.candidate, weights_only=True)["step"])
    ckpts = {
        "candidate": (args.candidate, "full"),
        "full100": (baseline, "full"),
        "inpaint100": (args.inpaint100, "no_strokes"),
    }
    names = {
        "candidate": f"full model, {cand_step} steps (candidate)",
        "full100": "full model, 100 steps (the shipped weights)",
        "inpaint100": "pure inpainting, 100 steps (smaller budget; reference only)",
        "fill": "flat colour fill (non-learned)",
    }
    if args.inpaint_long:
        long_step = int(torch.load(args.inpaint_long, weights_only=True)["step"])
        if long_step != cand_step:
            raise SystemExit(
                f"--inpaint-long is at step {long_step}, the candidate at {cand_step}: not the same budget"
            )
        ckpts["inpaintlong"] = (args.inpaint_long, "no_strokes")
        names["inpaintlong"] = f"pure inpainting, {cand_step} steps (same budget as the candidate)"
    res: dict[str, dict[str, list[float]]] = {}
    preds: dict[str, torch.Tensor] = {}
    for key, (ck, variant) in ckpts.items():
        m = create_model("hairsynth_128", weights=ck)
        for kind, ss in (("", samples), ("/recolour", rec), ("/rotate", ori)):
            preds[key + kind] = R.predict(m, ss, variant=variant)
            res[key + kind] = R.metrics(preds[key + kind], ss, perc)
    preds["fill"] = R.fill(samples)
    res["fill"] = R.metrics(preds["fill"], samples, perc)
    summary = {k: {c: R._ci(v[c]) for c in COLS} for k, v in res.items()}
    paired = {
        f"candidate-{b}{kind}": {c: R._paired(res["candidate" + kind][c], res[b + kind][c]) for c in COLS}
        for b in [k for k in ckpts if k != "candidate"]
        for kind in ("", "/recolour", "/rotate")
    }
    d = paired["candidate-full100"]
    verdict = (
        d["perceptual"][0] < 0
        and d["masked_l1"][0] < 0
        and d["orientation_agreement"][0] >= -d["orientation_agreement"][1]
    )
    pick = list(range(0, len(samples), max(1, len(samples) // 6)))[:6]
    inpaint_col = "inpaintlong" if "inpaintlong" in ckpts else "inpaint100"
    R._grid(
        [
            [
                R._show_strokes(samples[i]),
                preds[inpaint_col][i],
                preds["full100"][i],
                preds["candidate"][i],
                samples[i]["image"],
            ]
            for i in pick
        ],
        os.path.join(args.out, "release_samples.png"),
    )
    R._grid(
        [
            [
                samples[i]["image"],
                R._show_strokes(rec[i]),
                preds["full100/recolour"][i],
                preds["candidate/recolour"][i],
                R._show_strokes(ori[i]),
                preds["full100/rotate"][i],
                preds["candidate/rotate"][i],
            ]
            for i in pick
        ],
        os.path.join(args.out, "release_edits.png"),
    )
    units = sorted(f for f in os.listdir(os.path.dirname(args.candidate)) if f.startswith("unit-"))
    logs = [json.load(open(os.path.join(os.path.dirname(args.candidate), f))) for f in units]
    logs = [u for u in logs if u["step"] <= cand_step]
    cpu = sum(u["cpu_seconds"] for u in logs)
    out = {
        "candidate": args.candidate,
        "candidate_step": cand_step,
        "replace_shipped": bool(verdict),
        "rule": "replace iff perceptual and masked L1 lower (paired mean) and orientation agreement not lower "
        "by more than its 95% interval",
        "summary": summary,
        "paired_candidate_minus": paired,
        "per_image": res,
        "train_units": [{k: v for k, v in u.items() if k != "history"} for u in logs],
        "train_cpu_seconds_total": cpu,
        "photos": len(samples),
        "pinned": {"torch_threads": torch.get_num_threads(), "deterministic_algorithms": True},
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "torch": torch.__version__,
        "hairsynth": hairsynth.__version__,
        "seconds": time.time() - t0,
    }
    with open(os.path.join(args.out, "release_eval.json"), "w") as fh:
        json.dump(out, fh, indent=1)
    md = [
        "# hairsynth: longer-trained release candidate vs the 100-step model (held-out photos)",
        "",
        f"Command: `{out['command']}` (torch {torch.__version__}, one thread, deterministic algorithms; "
        f"evaluation took {out['seconds']:.0f} s).",
        "",
        f"Candidate: the full model of seed 0 continued from its 100-step checkpoint to step {cand_step} with the "
        f"same recipe as the report (batch 4, Adam 5e-4, joint schedule, 300 training photos, 128 px, one CPU "
        f"thread), in resumable units: {', '.join(str(u['step']) for u in logs)}; training CPU time "
        f"{cpu:.0f} s ({cpu / 60:.1f} CPU-minutes) in all, including the first 100 steps.",
        "",
        f"Held-out: {len(samples)} photos (the first {args.test_photos} of celeb1k-hair/test and of "
        "figaro1k/testing), same regions and strokes as the report. Mean +- 95% interval over photos.",
        "",
        "| model | " + " | ".join(COLS) + " |",
        "|---|" + "---|" * len(COLS),
    ]
    for k in [*ckpts, "fill"]:
        md.append(
            f"| {names[k]} | "
            + " | ".join(f"{summary[k][c][0]:.4f} +- {summary[k][c][1]:.4f}" for c in COLS)
            + " |"
        )
    md += ["", "Paired differences (candidate minus the other model; 95% interval over photos):", ""]
    md += ["| vs | photos | " + " | ".join(COLS) + " |", "|---|---|" + "---|" * len(COLS)]
    for key, dd in paired.items():
        b, _, kind = key.partition("-")[2].partition("/")
        md.append(
            f"| {names[b]} | {kind or 'reconstruction'} | "
            + " | ".join(f"{dd[c][0]:+.4f} +- {dd[c][1]:.4f}" for c in COLS)
            + " |"
        )
    md += [
        "",
        f"Decision rule ({out['rule']}): **{'replace' if verdict else 'keep'}** the shipped weights.",
        "",
        (
            f"The same-budget baseline is the pure-inpainting row at {cand_step} steps (same network, data, "
            "seed and recipe, empty stroke maps); the 100-step inpainting row is a smaller budget, for reference."
            if "inpaintlong" in ckpts
            else f"The inpainting row had 100 steps, the candidate {cand_step}: a same-budget inpainting baseline "
            "was not trained, so the candidate-vs-inpainting differences mix method and budget."
        ),
        "",
        "![release_samples](release_samples.png)",
        "",
        "release_samples.png columns: strokes on the masked photo, pure inpainting "
        f"({cand_step if inpaint_col == 'inpaintlong' else 100} steps), full model "
        f"(100 steps), full model ({cand_step} steps), photo.",
        "",
        "![release_edits](release_edits.png)",
        "",
        "release_edits.png columns: photo; re-coloured strokes, full 100 steps, full "
        f"{cand_step} steps; strokes turned 90 degrees, full 100 steps, full {cand_step} steps.",
        "",
    ]
    notes = os.path.join(args.out, "release_notes.md")  # written by hand after looking at the pictures
    if os.path.isfile(notes):
        md += [open(notes).read()]
    with open(os.path.join(args.out, "release_eval.md"), "w") as fh:
        fh.write("\n".join(md))
    print(f"wrote {args.out}/release_eval.md; replace_shipped={verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
