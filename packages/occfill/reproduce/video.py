"""The video claim on trained generators: identity drift and flicker inside the hole on a turning head.

Claim under test (paper abstract): identity-consistent completion over videos with large head motion. The paper
shows no temporal mechanism; the package's video mode (:meth:`occfill.Completer.complete_video`) completes every
frame with ONE fixed reference, per-frame pose and one shared noise draw.

Sequences (why not ICT renders): ``ict-faces-128`` holds 12 views per head, but every view draws its own light,
background, expression and camera distance and the skin is untextured (no eyes to recognise), so its views are
not a turning-head sequence and dlib's descriptor has nothing to read. Instead, for each of the 24 held-out
test identities of ``celeba-id-crops``, the person's most frontal photo (smallest ``|yaw|`` from
``estimate_pose`` on its landmarks) is the reference, and ``--frames`` of the other photos, chosen evenly by
rank of yaw from the most negative to the most positive, sorted by yaw, are the "frames" of a head turning from
one side to the other. They are different photos (light, expression, hair, background change between frames as
they would not in a real video), so every measure is also taken on the ground-truth frames, which gives the
level of change the real face itself shows.

Rows (every learned row: the same fixed noise for every frame, so noise is not what differs between frames,
except in the "fresh noise" row):
- full, fixed reference (the package's video mode), for each ``--full`` checkpoint;
- full, a different reference photo in every frame (per-frame completion with whatever photo is at hand);
- full, fixed reference, fresh noise in every frame;
- plain inpainting per frame (no reference) for each ``--plain`` checkpoint;
- classical paste of the fixed reference's aligned, colour-matched eyes (``run.paste_baseline``);
- ground truth.

Measures per sequence (then mean over the 24 sequences, with 95 % bootstrap intervals over sequences for paired
differences):
- identity error: dlib ocular-crop descriptor distance of each completed frame to its ground-truth frame, mean
  over frames, and its standard deviation over frames (how unevenly identity is kept along the turn);
- drift: dlib ocular distance of each completed frame to the completed FIRST frame, mean over frames 1..T-1
  (ground truth: the same on the true frames);
- flicker: mean absolute difference (0-1 RGB) between consecutive frames inside the later frame's hole, after
  warping the earlier frame onto the later one by a similarity transform fitted to brow/eye/nose landmarks
  (pose compensation), mean over the T-1 transitions; ground truth measured the same way.

How the claim is read (declared before the runs on the final checkpoints): the video mode (full, fixed
reference) keeps identity consistently over the turn if (a) its drift and flicker are not above the ground
truth's (the completion does not change more than the real face does), (b) against per-frame completion with a
new reference every frame its drift and flicker are lower (paired interval below 0) at no higher identity
error, and (c) its identity error is below plain inpainting's per frame (the reference helps in every frame).
Low drift and flicker alone are cheap (a constant blur has none), so (a) and (b) only count together with the
identity error.

Usage::

    python packages/occfill/reproduce/video.py --data /work/shared/data --out reports/occfill \\
        --full step40=/tmp/occfill/allck/full_s0_step40.pt --plain step40=/tmp/occfill/allck/plain_inpainting_s0_step40.pt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import celeba
from run import DlibIdentity, paste_baseline, pin

from occfill import Completer
from occfill.data import PairedFaces, tensor_to_pil

ALIGN_IDX = list(range(17, 31)) + list(range(36, 48))


def sequences(root: str, frames: int, split: str = "test") -> list[dict[str, Any]]:
    """One turning-head pseudo-sequence per identity of ``split`` (see the module docstring)."""
    ids = celeba.identity_split(root)[split]
    ds = PairedFaces(
        celeba.records(root, ids, celeba.load_landmarks(root)), size=None, mask="landmarks", seed=0
    )
    out = []
    for label in range(len(ids)):
        idx = ds.by_label[label]
        yaw = np.array([ds.records[i].angles[1] for i in idx])  # type: ignore[index]
        ref_k = int(np.argmin(np.abs(yaw)))
        rest = [k for k in np.argsort(yaw) if k != ref_k]
        pick = [rest[int(np.rint(j))] for j in np.linspace(0, len(rest) - 1, frames)]
        items = [ds[idx[k]] for k in pick]
        others = [idx[k] for k in rest if k not in pick]  # per-frame references: photos not in the sequence
        out.append(
            {
                "identity": ids[label],
                "image": torch.stack([it["image"] for it in items]),
                "mask": torch.stack([it["mask"] for it in items]),
                "angles": torch.stack([it["angles"] for it in items]),
                "landmarks": torch.stack([it["landmarks"] for it in items]),
                "reference": ds[idx[ref_k]]["image"],
                "ref_landmarks": ds[idx[ref_k]]["landmarks"],
                "frame_refs": torch.stack(
                    [
                        ds[others[t % len(others)]]["image"] if others else ds[idx[ref_k]]["image"]
                        for t in range(frames)
                    ]
                ),
                "yaw": [float(ds.records[idx[k]].angles[1]) for k in pick],  # type: ignore[index]
            }
        )
    return out


def flicker(frames: torch.Tensor, masks: torch.Tensor, landmarks: torch.Tensor) -> np.ndarray:
    """Per transition: mean |frame_{t+1} - warp(frame_t)| inside the hole of frame t+1 (pose-compensated)."""
    import cv2

    vals = []
    for t in range(len(frames) - 1):
        a, b = frames[t], frames[t + 1]
        mat, _ = cv2.estimateAffinePartial2D(
            landmarks[t][ALIGN_IDX].numpy().astype(np.float64),
            landmarks[t + 1][ALIGN_IDX].numpy().astype(np.float64),
        )
        if mat is None:
            mat = np.eye(2, 3)
        h, w = a.shape[-2:]
        aw = cv2.warpAffine(
            a.permute(1, 2, 0).numpy(), mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        aw_t = torch.from_numpy(aw).permute(2, 0, 1)
        hole = masks[t + 1][0] > 0
        vals.append(float((b - aw_t).abs()[:, hole].mean()))
    return np.array(vals)


def ocular_descriptors(dl: DlibIdentity, images: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """dlib descriptors of the ocular crop only (the same crop as ``DlibIdentity``)."""
    out = []
    for img, m in zip(images, masks, strict=True):
        pil = tensor_to_pil(img.cpu())
        rows = torch.nonzero(m[0].any(dim=1)).flatten()
        h, w = img.shape[-2:]
        top, bot = max(0, int(rows.min()) - h // 10), min(h, int(rows.max()) + 1 + h // 10)
        crop = pil.crop((0, top, w, bot)).resize((150, 150), Image.Resampling.BICUBIC)
        out.append(dl._desc(np.asarray(crop)))
    return np.stack(out)


def complete_rows(seq: dict[str, Any], models: dict[str, Completer]) -> dict[str, torch.Tensor]:
    """Every row's completed frames ``(T, 3, H, W)`` for one sequence."""
    y, m, a, s = seq["image"], seq["mask"], seq["angles"], seq["reference"]
    rows: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, c in models.items():
            if name.startswith("full"):
                rows[f"{name}, fixed reference"] = torch.stack(
                    c.complete_video(list(y), list(m), s, angles=a, seed=0)  # type: ignore[arg-type]
                )
                if name.endswith("*"):  # the extra rows only for the model marked with *
                    g = torch.Generator().manual_seed(0)
                    noise = c.generator.make_noise(1, 128, 128, like=torch.empty(0), generator=g)
                    rows[f"{name}, new reference every frame"] = torch.stack(
                        [
                            c.complete(y[t], m[t], seq["frame_refs"][t], angles=a[t : t + 1], noise=noise)  # type: ignore[misc]
                            for t in range(len(y))
                        ]
                    )
                    rows[f"{name}, fixed reference, fresh noise every frame"] = torch.stack(
                        [
                            c.complete(
                                y[t],
                                m[t],
                                s,
                                angles=a[t : t + 1],
                                generator=torch.Generator().manual_seed(t + 1),
                            )  # type: ignore[misc]
                            for t in range(len(y))
                        ]
                    )
            else:
                rows[f"{name}, per frame"] = torch.stack(
                    c.complete_video(list(y), list(m), s, angles=a, seed=0)  # type: ignore[arg-type]
                )
    batch = {
        "image": y,
        "reference": s[None].expand_as(y).contiguous(),
        "mask": m,
        "landmarks": seq["landmarks"],
        "ref_landmarks": seq["ref_landmarks"][None].expand_as(seq["landmarks"]).contiguous(),
    }
    rows["paste baseline, fixed reference"] = paste_baseline(batch)
    rows["ground truth"] = y
    return rows


def measure(
    dl: DlibIdentity, seq: dict[str, Any], out: torch.Tensor, truth_desc: np.ndarray
) -> dict[str, Any]:
    d = ocular_descriptors(dl, out, seq["mask"])
    err = np.linalg.norm(d - truth_desc, axis=1)
    drift = np.linalg.norm(d[1:] - d[0], axis=1)
    fl = flicker(out, seq["mask"], seq["landmarks"])
    return {
        "id_error": float(err.mean()),
        "id_error_sd_over_frames": float(err.std(ddof=1)),
        "id_error_per_frame": err.tolist(),
        "drift_to_first": float(drift.mean()),
        "drift_per_frame": drift.tolist(),
        "flicker": float(fl.mean()),
        "flicker_per_transition": fl.tolist(),
    }


def boot(d: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    b = [float(d[rng.integers(0, len(d), len(d))].mean()) for _ in range(2000)]
    return float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))


def plot(res: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.2), dpi=80)
    for name, r in rows.items():
        style = "k--" if name == "ground truth" else "-"
        if name != "ground truth":  # its identity error is 0 by definition
            ax[0].plot(np.mean(r["id_error_per_frame"], 0), style, marker="o", ms=3, label=name)
        else:
            ax[0].plot([], [], style, label=name)
        ax[1].plot(range(1, res["frames"]), np.mean(r["drift_per_frame"], 0), style, marker="o", ms=3)
        ax[2].plot(range(1, res["frames"]), np.mean(r["flicker_per_transition"], 0), style, marker="o", ms=3)
    ax[0].set(
        title="identity error (to true frame)", xlabel="frame (yaw rank)", ylabel="dlib ocular distance"
    )
    ax[1].set(title="drift (to the first frame)", xlabel="frame", ylabel="dlib ocular distance")
    ax[2].set(
        title="flicker in the hole (pose-compensated)", xlabel="transition t-1 -> t", ylabel="mean |diff|"
    )
    for a in ax:
        a.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.22, 1, 1))
    fig.savefig(path)
    plt.close(fig)


NOTES_MARK = "<!-- hand notes below: kept when the script rewrites this file -->"


def write_report(out_dir: str, res: dict[str, Any]) -> None:
    """``video.md``: the rows and paired differences of ``res``; text after ``NOTES_MARK`` is kept."""
    path = os.path.join(out_dir, "video.md")
    notes = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        if NOTES_MARK in old:
            notes = old.split(NOTES_MARK, 1)[1]
    lines = [
        "# occfill: the video claim on trained generators (turning-head pseudo-sequences)",
        "",
        f"**Command.** `{res['command']}`; one torch thread; wall {res['wall_s']:.0f} s, {res['cpu_s']:.0f} CPU-s.",
        "",
        f"{res['sequences']} sequences (one per held-out test identity), {res['frames']} frames each: the person's "
        "other photos sorted by estimated yaw (mean yaw range first to last frame "
        f"{res['yaw_range_deg_mean']:.1f} degrees), completed with the most frontal photo as the fixed "
        "reference. Frames are different photos, not a video: the ground-truth row gives the change the real "
        "face itself shows between them. Measures (see `reproduce/video.py`): identity error = dlib ocular "
        "distance of each completed frame to its true frame; drift = dlib ocular distance of each completed "
        "frame to the completed first frame; flicker = mean |difference| in the hole between consecutive "
        "frames after a landmark similarity warp.",
        "",
        "Models: " + ", ".join(f"{k} = `{v}`" for k, v in res["models"].items()) + ".",
        "",
        "| row | identity error (lower better) | its SD over frames | drift to first frame | flicker in the hole |",
        "|---|---|---|---|---|",
    ]
    for name, r in res["rows"].items():
        lines.append(
            f"| {name} | {r['id_error']:.3f} | {r['id_error_sd_over_frames']:.3f} | {r['drift_to_first']:.3f} | "
            f"{r['flicker']:.4f} |"
        )
    lines += ["", "Paired differences (per sequence; 95 % bootstrap interval over sequences):", ""]
    for k, v in res["paired_differences"].items():
        lines.append(f"- {k}: {v['mean']:+.4f} [{v['lo']:+.4f}, {v['hi']:+.4f}]")
    if res.get("strip_rows"):
        lines += [
            "",
            "![strip](video_strip.png)",
            "",
            "Strip (first sequence, 64 px, frames left to right): " + ", ".join(res["strip_rows"]) + ".",
        ]
    lines += ["", NOTES_MARK]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + (notes if notes else "\n"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "../shared/data"))
    p.add_argument("--out", default="reports/occfill")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument(
        "--full", nargs="+", default=[], help="NAME=checkpoint of a full model (NAME* gets the extra rows)"
    )
    p.add_argument("--plain", nargs="+", default=[], help="NAME=checkpoint of a plain-inpainting model")
    p.add_argument("--quick", action="store_true", help="4 identities (pipeline check)")
    p.add_argument(
        "--append",
        action="store_true",
        help="keep the rows already measured in --out/video.json and measure only the new ones",
    )
    args = p.parse_args()
    settings = pin(0)
    t0, c0 = time.time(), time.process_time()
    root = os.path.join(args.data, "celeba-id-crops")
    seqs = sequences(root, args.frames)
    if args.quick:
        seqs = seqs[:4]
    models: dict[str, Completer] = {}
    for kind, specs in (("full", args.full), ("plain inpainting", args.plain)):
        for spec in specs:
            name, path = spec.split("=", 1)
            models[f"{kind} {name}"] = Completer.from_checkpoint(path)
    dl = DlibIdentity()
    per_seq: dict[str, list[dict[str, Any]]] = {}
    old_path = os.path.join(args.out, "video.json")
    if args.append and os.path.isfile(old_path):
        with open(old_path, encoding="utf-8") as fh:
            per_seq = json.load(fh)["per_sequence"]
    done = set(per_seq)
    strip = None
    for i, seq in enumerate(seqs):
        rows = complete_rows(seq, models)
        truth_desc = (
            ocular_descriptors(dl, seq["image"], seq["mask"]) if set(rows) - done else np.zeros((0, 128))
        )
        for name, out in rows.items():
            if name in done:
                continue
            per_seq.setdefault(name, []).append(measure(dl, seq, out, truth_desc))
        if i == 0:
            strip = rows
        print(f"[{time.strftime('%H:%M:%S')}] sequence {i + 1}/{len(seqs)}", flush=True)
    summary: dict[str, Any] = {}
    for name, lst in per_seq.items():
        summary[name] = {
            k: float(np.mean([s[k] for s in lst]))
            for k in ("id_error", "id_error_sd_over_frames", "drift_to_first", "flicker")
        }
        for k in ("id_error_per_frame", "drift_per_frame", "flicker_per_transition"):
            summary[name][k] = np.array([s[k] for s in lst]).tolist()
    diffs = {}
    names = list(per_seq)
    fixed = [n for n in names if n.endswith("fixed reference") and n.startswith("full")]
    for a in fixed:
        for b in names:
            if b == a:
                continue
            for k in ("id_error", "drift_to_first", "flicker"):
                d = np.array([x[k] - y[k] for x, y in zip(per_seq[a], per_seq[b], strict=True)])
                lo, hi = boot(d)
                diffs[f"{a} - {b}, {k}"] = {"mean": float(d.mean()), "lo": lo, "hi": hi}
    res = {
        "frames": args.frames,
        "sequences": len(seqs),
        "identities": [s["identity"] for s in seqs],
        "yaw_range_deg_mean": float(np.mean([np.degrees(s["yaw"][-1] - s["yaw"][0]) for s in seqs])),
        "models": {n: s.split("=", 1)[1] for n, s in zip(models, args.full + args.plain, strict=True)},
        "rows": summary,
        "paired_differences": diffs,
        "per_sequence": per_seq,
        "settings": settings,
        "command": "python " + " ".join(sys.argv),
        "wall_s": round(time.time() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "video.json"), "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)
    try:  # matplotlib is not a dependency of occfill or its extras: the plot is skipped without it
        plot(res, os.path.join(args.out, "video_drift.png"))
    except ImportError as exc:
        print(f"no plot ({exc}); the numbers are in video.json", flush=True)
    if strip is not None:  # first sequence: one row per method, frames left to right, 64 px, palette PNG
        keys = ["ground truth"] + [k for k in strip if k != "ground truth"]
        img = torch.cat([torch.cat(list(strip[k]), dim=2) for k in keys], dim=1)
        img = F.interpolate(img[None], scale_factor=0.5, mode="area")[0]
        tensor_to_pil(img).quantize(colors=128).save(os.path.join(args.out, "video_strip.png"), optimize=True)
        res["strip_rows"] = keys
        with open(os.path.join(args.out, "video.json"), "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1)
    write_report(args.out, res)
    for name, r in summary.items():
        print(
            f"{name}: id_error {r['id_error']:.3f} drift {r['drift_to_first']:.3f} flicker {r['flicker']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
