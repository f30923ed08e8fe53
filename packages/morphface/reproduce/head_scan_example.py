"""A complete real PBR head for reference: the Lee Perry-Smith scan (CC BY 3.0) rendered with its own albedo map
by morphface's preview renderer, next to its albedo, specular and normal maps.

Usage: python packages/morphface/reproduce/head_scan_example.py --out reports/morphface [--data /work/shared/data]

"Infinite, 3D Head Scan" by Lee Perry-Smith is licensed under a Creative Commons Attribution 3.0 Unported License.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import trimesh
from PIL import Image

from morphface import render_preview


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/morphface")
    p.add_argument(
        "--data", default=os.path.normpath(os.path.join(here, "..", "..", "..", "..", "shared", "data"))
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    root = os.path.join(args.data, "head-scan-lps")
    if not os.path.isfile(os.path.join(root, "LeePerrySmith.glb")):
        sys.exit(f"head-scan-lps missing under {args.data}")
    mesh = trimesh.load(os.path.join(root, "LeePerrySmith.glb"), force="mesh", process=False)
    v = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float64))
    f = torch.from_numpy(np.asarray(mesh.faces, dtype=np.int64))
    uv = torch.from_numpy(np.asarray(mesh.visual.uv, dtype=np.float64))
    # trimesh flips the glb's v on load (glTF convention), but this scan's UVs are meant with v = 0 at the
    # image BOTTOM (three.js loads its maps with flipY = true): flip back, or the lips land on the chin
    uv[:, 1] = 1.0 - uv[:, 1]

    def load(name: str, size: int = 512) -> Image.Image:
        with Image.open(os.path.join(root, name)) as im:
            return im.convert("RGB").resize((size, size), Image.LANCZOS)

    col = load("Map-COL.jpg")
    albedo = (
        torch.from_numpy(np.asarray(col, dtype=np.float64) / 255.0).permute(2, 0, 1) ** 2.2
    )  # sRGB -> ~linear
    spec = torch.from_numpy(np.asarray(load("Map-SPEC.jpg"), dtype=np.float64)[..., 0] / 255.0)[None]
    img = render_preview(
        v, f, resolution=512, albedo=albedo, specular=spec, uvs=uv, face_uvs=f, shininess=24.0
    )
    render = Image.fromarray((img.numpy() * 255 + 0.5).astype(np.uint8))
    panel = Image.new("RGB", (512 * 4, 512), "white")
    for i, im in enumerate(
        [render, col, load("Map-SPEC.jpg"), load("Infinite-Level_02_Tangent_SmoothUV.jpg")]
    ):
        panel.paste(im, (512 * i, 0))
    os.makedirs(args.out, exist_ok=True)
    panel.resize((1024, 256), Image.LANCZOS).save(os.path.join(args.out, "head_scan_lps.png"))


if __name__ == "__main__":
    main()
