"""Choose the do-no-harm gate of the shipped flow network on VALIDATION data (rule: reports/undistort/gate.md).

    python packages/undistort/reproduce/gate_select.py --pairs PAIRS --data SHARED_DATA --out GATE.json
    # the chosen gate, once on test (whole photos only; the pairs go through real_eval.py --model FILE)
    python packages/undistort/reproduce/gate_select.py --pairs PAIRS --data SHARED_DATA --out TEST.json \\
        --split test --lo 0.15 --save-model /tmp/gated.pt

For every candidate ``lo`` (``hi = lo + 0.10``; ``--lo`` restricts the list) the shipped weights run with
``flow_gate=(lo, hi)`` on

- the validation pairs (``PAIRS/val``): flow EPE on the head / hair and background / whole crop and the
  far-photo do-no-harm block, exactly as ``val_select.py`` scores them, plus the head EPE per distance bin;
- the first ``--n-photos`` whole photos of ``celeb1k-hair/<split>/images`` through
  :func:`undistort.correct` with dlib landmarks: max flow (px at the photo's size) and PSNR output vs input.

Bound (a): every far photo max flow <= 0.5 px and PSNR >= 35 dB; bound (b): every whole photo with a face
max flow <= 2.0 px and PSNR >= 35 dB. ``--split test`` skips the pairs (``real_eval.py`` scores them).

Other weights (``reports/undistort/photo_identity.md``): ``--model NAME=PATH`` (repeatable) scores each
Undistorter file with each gate of ``--gates`` (e.g. ``none,0.15``); ``--n-photos 0`` scores every photo of
the split and adds (b-all): at most 2 % of the photos with a face exceed (b)'s limits, (b) itself still
read on the first 20. dlib runs once per photo (the landmarks are reused by every candidate).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_photos
from real_eval import load_split, psnr, real_grid
from val_select import score

import undistort
from undistort import Undistorter

CANDIDATES = [None, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30]
WIDTH = 0.10
FAR_MAX_PX, FAR_MIN_DB = 0.5, 35.0
PHOTO_MAX_PX, PHOTO_MIN_DB = 2.0, 35.0
BOUND_B_PHOTOS = 20
B_ALL_MAX_SHARE = 0.02
SHIPPED = os.path.join(
    os.path.dirname(os.path.abspath(undistort.__file__)), "weights", undistort.pipeline.PRETRAINED_FILE
)
BINS = [(25, 40), (40, 65), (65, 100), (100, 160)]


def gated(lo: float | None, path: str = SHIPPED) -> Undistorter:
    und = Undistorter.load(path).eval()
    und.flow_gate = None if lo is None else (lo, lo + WIDTH)
    return und


@torch.no_grad()
def pairs_block(und: Undistorter, val: dict) -> dict:
    res, head = score(und, val)  # holds far_max_px_all / far_psnr_all, one value per far photo
    d = val["distance"].reshape(-1).numpy()
    res["epe_head_by_bin"] = {
        f"{a}-{b}": float(head[(d >= a) & (d < b)].mean()) if ((d >= a) & (d < b)).any() else None
        for a, b in BINS
    }
    res["bound_a"] = bool(max(res["far_max_px_all"]) <= FAR_MAX_PX and min(res["far_psnr_all"]) >= FAR_MIN_DB)
    return res


def photo_landmarks(tools, data: str, split: str, n: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """``(file, photo, dlib landmarks or None)`` for the first ``n`` photos of the split (``n = 0``: all)."""
    root = os.path.join(data, "celeb1k-hair", split, "images")
    files = sorted(os.listdir(root))
    out = []
    for f in files[:n] if n > 0 else files:
        with Image.open(os.path.join(root, f)) as im:
            arr = np.asarray(im.convert("RGB"))
        det = real_photos.detect(tools, arr)
        out.append((f, arr, None if det is None else det[0]))
    return out


def harmed(row: dict) -> bool:
    """A whole photo (a row of :func:`photos_block`, with a face) beyond bound (b)'s limits."""
    return row["flow_max_px"] > PHOTO_MAX_PX or row["psnr_db"] < PHOTO_MIN_DB


def photos_block(und: Undistorter, photos: list) -> dict:
    rows = []
    for f, arr, lm in photos:
        if lm is None:
            rows.append({"file": f, "face": False})
            continue
        out, info = undistort.correct(arr, model=und, landmarks=lm, return_info=True)
        rows.append(
            {
                "file": f,
                "face": True,
                "flow_max_px": float(info["flow"].norm(dim=0).max()),
                "psnr_db": psnr(torch.from_numpy(out).float() / 255, torch.from_numpy(arr).float() / 255),
            }
        )

    first = [r for r in rows[:BOUND_B_PHOTOS] if r["face"]]
    faces = [r for r in rows if r["face"]]
    res = {
        "rows": rows,
        "n_faces": len(first),
        "flow_max_px_worst": max(r["flow_max_px"] for r in first),
        "psnr_min_db": min(r["psnr_db"] for r in first),
        "n_failing": sum(harmed(r) for r in first),
        "bound_b": not any(harmed(r) for r in first),
    }
    if len(rows) > BOUND_B_PHOTOS:
        bad = [r["file"] for r in faces if harmed(r)]
        res["all"] = {
            "n_faces": len(faces),
            "n_failing": len(bad),
            "failing": bad,
            "flow_max_px_worst": max(r["flow_max_px"] for r in faces),
            "psnr_min_db": min(r["psnr_db"] for r in faces),
            "bound_b_all": len(bad) <= B_ALL_MAX_SHARE * len(faces),
        }
    return res


def choose(out: dict, *, photo_identity_rule: bool) -> None:
    """Apply the declared selection rule to the validation results in ``out`` (adds ``chosen``).

    ``gate.md``: the smallest gate (never "none") meeting (a) and (b). ``photo_identity.md``: among all
    candidates meeting (a), (b) and (b-all), the lowest head EPE; if none does, ``for_test`` names the one
    with the fewest photos failing (b)'s limits over the whole split (ties: lower head EPE).
    """
    cands = out["candidates"]

    def meets(k: str) -> bool:
        r = cands[k]
        return bool(
            r["pairs"]["bound_a"]
            and r["photos"]["bound_b"]
            and r["photos"].get("all", {}).get("bound_b_all", True)
        )

    def epe(k: str) -> float:
        return float(cands[k]["pairs"]["epe_head"]["mean"])

    if not photo_identity_rule:
        ok = [k for k in cands if not k.endswith("none") and meets(k)]  # in candidate order: smallest lo
        out["chosen"] = ok[0] if ok else None
        return
    ok = sorted((k for k in cands if meets(k)), key=epe)
    out["chosen"] = ok[0] if ok else None
    if not ok:
        out["for_test"] = min(
            cands, key=lambda k: (cands[k]["photos"].get("all", cands[k]["photos"])["n_failing"], epe(k))
        )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True, help="folder with the val/ shards of make_real_pairs.py")
    ap.add_argument("--data", required=True, help="the shared data folder (celeb1k-hair)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--split", choices=["val", "test"], default="val")
    ap.add_argument("--lo", type=float, action="append", help="only these candidates (repeatable)")
    ap.add_argument("--gates", default=None, help="comma list of gate lo values or 'none' (overrides --lo)")
    ap.add_argument(
        "--model", action="append", default=None, help="NAME=PATH of Undistorter files (repeatable)"
    )
    ap.add_argument("--n-photos", type=int, default=BOUND_B_PHOTOS, help="0: every photo of the split")
    ap.add_argument("--save-model", default=None, help="write the (single) gated model here")
    ap.add_argument(
        "--figure", default=None, help="PNG of the photos exceeding (b)'s limits with the last candidate"
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    tools, why = real_photos.load_dlib()
    if tools is None:
        raise SystemExit(f"gate_select: dlib is needed for the whole photos: {why}")
    if args.gates:
        gates = [None if g.strip() == "none" else float(g) for g in args.gates.split(",")]
    else:
        gates = CANDIDATES if not args.lo else list(args.lo)
    models = [("shipped", SHIPPED)]
    if args.model:
        models = [tuple(m.split("=", 1)) for m in args.model]  # type: ignore[misc]
    photos = photo_landmarks(tools, args.data, args.split, args.n_photos)
    val = load_split(os.path.join(args.pairs, "val")) if args.split == "val" else None
    out: dict = {"split": args.split, "width": WIDTH, "candidates": {}}
    for name, path in models:
        for lo in gates:
            t0 = time.process_time()
            und = gated(lo, path)
            res: dict = {"model": name, "path": path, "gate": und.flow_gate}
            if val is not None:
                res["pairs"] = pairs_block(und, val)
            res["photos"] = photos_block(und, photos)
            res["cpu_s"] = round(time.process_time() - t0, 1)
            key = "none" if lo is None else f"{lo:.2f}"
            out["candidates"][key if not args.model else f"{name}/{key}"] = res
            ph = {k: v for k, v in res["photos"].items() if k != "rows"}
            print(name, lo, json.dumps(ph)[:500], flush=True)
            if val is not None:
                p = res["pairs"]
                print(
                    f"  head EPE {p['epe_head']['mean']:.3f} bins {p['epe_head_by_bin']} bound_a {p['bound_a']} "
                    f"far worst {max(p['far_max_px_all']):.3f} psnr min {min(p['far_psnr_all']):.1f}",
                    flush=True,
                )
            if args.save_model:
                und.save(args.save_model)
    if args.figure:
        bad = [r["file"] for r in res["photos"]["rows"] if r["face"] and harmed(r)]
        fig = Path(args.figure)
        real_grid(tools, und, args.data, fig.parent, 0, split=args.split, names=bad, filename=fig.name)
        out["figure"] = {"path": args.figure, "files": bad}
    if val is not None:
        choose(out, photo_identity_rule=bool(args.model))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
