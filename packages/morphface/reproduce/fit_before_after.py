"""0.2.0's joint fit vs 0.3.0's staged fit on dlib landmarks of real photos (issue 21).

Usage (from the git checkout): python packages/morphface/reproduce/fit_before_after.py --out reports/morphface
       [--data /work/shared/data]

0.2.0's ``fit.py`` is taken from git history (commit f1c01ed, the last commit before the staged fit) into a
temporary folder. Eight celeba-id-crops photos of eight identities (every 450th entry of landmarks.json from
the 8th; not the unit test's four), their shipped dlib 68-point landmarks, a 500 px pinhole camera at the
crop centre, ICT-FaceKit (100 identity modes, 53 expressions), default arguments otherwise. For each version:
the joint fit and the identity-only fit (``fit_expression=False``) of the same objective.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from morphface import PerspectiveCamera, fit
from morphface.io import load_ict_npz

OLD_COMMIT = "f1c01ed"


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/morphface")
    p.add_argument(
        "--data", default=os.path.normpath(os.path.join(here, "..", "..", "..", "..", "shared", "data"))
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    src = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:packages/morphface/src/morphface/fit.py"],
        cwd=here,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    src = src.replace("from .", "from morphface.")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fit_020.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(src)
        spec = importlib.util.spec_from_file_location("fit_020", path)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        sys.modules["fit_020"] = old  # dataclasses look the module up
        spec.loader.exec_module(old)
    m = load_ict_npz(os.path.join(args.data, "ict-facekit", "ict_facekit_shapes.npz"))
    with open(os.path.join(args.data, "celeba-id-crops", "landmarks.json"), encoding="utf-8") as fh:
        table = json.load(fh)
    keys = list(table)[7::450][:8]
    y = torch.tensor([table[k] for k in keys], dtype=torch.float32)
    out = {}
    for name, f, cam in (
        ("0.2.0", old.fit, old.PerspectiveCamera(500.0, 63.5, 63.5)),
        ("0.3.0", fit, PerspectiveCamera(500.0, 63.5, 63.5)),
    ):
        t = time.process_time()
        j = f(m, y, camera=cam)
        i = f(m, y, camera=cam, fit_expression=False)
        out[name] = {
            "joint_objective_median": float(j.loss.median()),
            "identity_only_objective_median": float(i.loss.median()),
            "photos_joint_above_identity_only": int((j.loss > i.loss * (1 + 1e-5)).sum()),
            "max_expression": float(j.expression.max()),
            "mean_expression": float(j.expression.mean()),
            "expression_weights_above_0.5": int((j.expression > 0.5).sum()),
            "jaw_residual_px": float(j.residuals[:, :17].mean()),
            "inner_residual_px": float(j.residuals[:, 17:].mean()),
            "cpu_s_per_photo_both_fits": (time.process_time() - t) / len(keys),
        }
        print(name, json.dumps(out[name]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fit_before_after.json"), "w", encoding="utf-8") as fh:
        json.dump({"crops": keys, "focal_px": 500.0, "threads": 1, "results": out}, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
