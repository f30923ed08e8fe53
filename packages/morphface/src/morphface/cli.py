"""Command line: ``python -m morphface {sample,fit,export,preview}``.

Models are read from a user-given path: an ICT-FaceKit folder (OBJ format), an ICT shapes ``.npz``
archive, or a model saved by :meth:`morphface.LinearFaceModel.save` (``.npz``/``.safetensors``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch

from ._utils import invalid_file
from .export import FaceAsset, export, write_png
from .fit import PerspectiveCamera, fit
from .io import load_ict_facekit, load_ict_npz, read_obj, save_mesh
from .models.attribute import AttributeGenerator, Upsampler
from .models.linear import LinearFaceModel
from .pipeline import displace, generate_faces
from .render import render_preview

logger = logging.getLogger("morphface.cli")


def load_any_model(path: str) -> LinearFaceModel:
    """Load a linear model from an ICT folder, an ICT ``.npz`` archive or a saved morphface model.

    Args:
        path: the folder or file.

    Returns:
        The model.
    """
    if os.path.isdir(path):
        return load_ict_facekit(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"--model: no such file or folder {path!r}")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                is_ict = "identity_shapes" in z.files
        except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, ...
            raise invalid_file("--model", path, "morphface model or ICT-FaceKit .npz archive", exc) from exc
        return load_ict_npz(path) if is_ict else LinearFaceModel.load(path)
    return LinearFaceModel.load(path)


def _generator(path: str | None, device: str) -> AttributeGenerator | None:
    if not path:
        return None
    from .checkpoint import build_from_checkpoint

    net = build_from_checkpoint(path, "generator", device=device)
    if not isinstance(net, AttributeGenerator):
        raise ValueError(f"'generator' in {path!r} is a {type(net).__name__}, not an AttributeGenerator")
    return net


def _upsamplers(paths: Sequence[str] | None, device: str) -> list[Upsampler]:
    from .checkpoint import build_from_checkpoint

    out = []
    for path in paths or ():
        net = build_from_checkpoint(path, "upsampler", device=device)
        if not isinstance(net, Upsampler):
            raise ValueError(f"'upsampler' in {path!r} is a {type(net).__name__}, not an Upsampler")
        out.append(net)
    return out


def _preview_png(path: str, f: FaceAsset, model: LinearFaceModel, resolution: int) -> None:
    img = render_preview(
        f.vertices,
        f.faces,
        resolution=resolution,
        albedo=f.albedo,
        specular=f.specular if f.specular is not None else 0.1,
        uvs=f.uvs,
        face_uvs=f.face_uvs,
        uv_face_mask=model.uv_face_mask,
    )
    write_png(path, img.permute(2, 0, 1))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point.

    A user error (a missing or invalid file, a bad value) prints one line ``morphface: error: ...`` to stderr
    and returns 1; ``--verbose`` re-raises it with the traceback. Usage errors exit 2 through argparse.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status.
    """
    p = argparse.ArgumentParser(prog="python -m morphface", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="sample identities from the prior and write meshes (+ maps)")
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truncation", type=float, default=2.0)
    s.add_argument("--generator", help="attribute-generator checkpoint (.pt)")
    s.add_argument(
        "--upsampler",
        action="append",
        help="upsampler checkpoint (.pt, from train_upsampler); repeat to cascade stages in order",
    )
    s.add_argument("--device", default="cpu", help="torch device of the networks (cpu, cuda, cuda:1, ...)")
    s.add_argument("--out", required=True)
    s.add_argument("--preview", action="store_true", help="also render PNG previews")
    f = sub.add_parser(
        "fit", help="fit the model to landmarks (.npy/.json, (L,2) pixels or (L,3)) or a mesh (.obj)"
    )
    f.add_argument("--model", required=True)
    f.add_argument("--target", required=True)
    f.add_argument("--focal", type=float)
    f.add_argument("--cx", type=float)
    f.add_argument("--cy", type=float)
    f.add_argument("--prior-weight", type=float, default=1.0)
    f.add_argument("--no-expression", action="store_true")
    f.add_argument(
        "--solver",
        default="auto",
        choices=("auto", "lm", "lbfgs"),
        help="Levenberg-Marquardt or L-BFGS (auto: LM for landmarks, L-BFGS for meshes)",
    )
    f.add_argument("--out", required=True, help="output .json with coefficients and residuals")
    f.add_argument("--mesh-out", help="optional mesh file of the fit (.obj/.ply)")
    e = sub.add_parser("export", help="export a face (coefficients from .npy/.json) as OBJ + MTL + PNG maps")
    e.add_argument("--model", required=True)
    e.add_argument("--identity", help=".npy or fit .json; default: the mean face")
    e.add_argument("--generator", help="attribute-generator checkpoint (.pt)")
    e.add_argument("--upsampler", action="append", help="upsampler checkpoint (.pt); repeat to cascade")
    e.add_argument("--device", default="cpu", help="torch device of the networks")
    e.add_argument("--albedo-bits", type=int, choices=(8, 16), default=8, help="albedo PNG bit depth")
    e.add_argument(
        "--bake-displacement",
        type=int,
        metavar="LEVELS",
        help="bake the displacement into the mesh after LEVELS midpoint subdivisions (face tile only); "
        "the displacement and normal maps are then not written, so renderers do not apply them twice",
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", required=True)
    v = sub.add_parser("preview", help="render a mesh file to PNG")
    v.add_argument("--mesh", required=True)
    v.add_argument("--resolution", type=int, default=512)
    v.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return _run(p, args)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        if args.verbose:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"morphface: error: {msg} (run with --verbose for the traceback)\n")
        return 1


def _run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the parsed command (errors propagate to :func:`main`)."""
    device = getattr(args, "device", "cpu")
    if getattr(args, "upsampler", None) and not args.generator:
        p.error(f"{args.command}: --upsampler needs --generator (it upsamples the generated maps)")
    if getattr(args, "bake_displacement", None) is not None:
        if not args.generator:
            p.error("export: --bake-displacement needs --generator (a displacement map to bake)")
        if args.bake_displacement < 0:
            p.error(f"export: --bake-displacement must be >= 0; got {args.bake_displacement}")
    if args.command == "sample":
        model = load_any_model(args.model).to(device)
        gen = torch.Generator(device).manual_seed(args.seed)
        ids = model.sample(args.n, generator=gen, truncation=args.truncation)
        faces = generate_faces(
            model,
            ids,
            attribute_generator=_generator(args.generator, device),
            upsamplers=_upsamplers(args.upsampler, device),
            generator=gen,
        )
        os.makedirs(args.out, exist_ok=True)
        np.save(os.path.join(args.out, "identity.npy"), ids.cpu().numpy())
        for i, face in enumerate(faces):
            if face.albedo is not None:
                export(face, args.out, name=f"face{i:03d}")
            else:
                save_mesh(os.path.join(args.out, f"face{i:03d}.obj"), face.vertices, face.faces)
            if args.preview:
                _preview_png(os.path.join(args.out, f"face{i:03d}.png"), face, model, 512)
        logger.info("wrote %d faces to %s", args.n, args.out)
    elif args.command == "fit":
        model = load_any_model(args.model)
        if args.target.endswith(".obj"):
            target = read_obj(args.target).vertices
        elif args.target.endswith(".json"):
            with open(args.target, encoding="utf-8") as fh:
                target = torch.tensor(json.load(fh), dtype=torch.float32)
        else:
            target = torch.from_numpy(np.load(args.target).astype(np.float32))
        cam = None
        if target.shape[-1] == 2:
            if args.focal is None or args.cx is None or args.cy is None:
                p.error("2D landmarks need --focal, --cx and --cy")
            cam = PerspectiveCamera(args.focal, args.cx, args.cy)
        r = fit(
            model,
            target,
            camera=cam,
            prior_weight=args.prior_weight,
            fit_expression=not args.no_expression,
            solver=args.solver,
        )
        res = {
            "identity": r.identity[0].tolist(),
            "expression": r.expression[0].tolist(),
            "expression_names": model.expression_names,
            "rotation": r.rotation[0].tolist(),
            "translation": r.translation[0].tolist(),
            "scale": float(r.scale[0]),
            "mean_residual": float(r.residuals.mean()),
            "residuals": r.residuals[0].tolist(),
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1)
        if args.mesh_out:
            save_mesh(args.mesh_out, r.vertices[0], model.faces)
        logger.info("fit: mean residual %.4g", res["mean_residual"])
    elif args.command == "export":
        model = load_any_model(args.model)
        ident = torch.zeros(1, model.n_identity)
        if args.identity:
            if args.identity.endswith(".json"):
                with open(args.identity, encoding="utf-8") as fh:
                    ident = torch.tensor(json.load(fh)["identity"], dtype=torch.float32)[None]
            else:
                arr = np.load(args.identity).astype(np.float32)
                ident = torch.from_numpy(arr.reshape(-1, arr.shape[-1]))[:1]
            if ident.shape[-1] != model.n_identity:
                p.error(
                    f"export: --identity has {ident.shape[-1]} coefficients but the model has {model.n_identity} "
                    "identity modes; use the model the coefficients were fitted with"
                )
        gen = torch.Generator(device).manual_seed(args.seed)
        face = generate_faces(
            model.to(device),
            ident.to(device),
            attribute_generator=_generator(args.generator, device),
            upsamplers=_upsamplers(args.upsampler, device),
            generator=gen,
        )[0]
        if args.bake_displacement is not None:
            face = dataclasses.replace(
                displace(face, subdivisions=args.bake_displacement, face_mask=model.uv_face_mask),
                displacement=None,
            )
        paths = export(face, args.out, albedo_bits=args.albedo_bits)
        logger.info("exported %s", ", ".join(sorted(paths)))
    elif args.command == "preview":
        mesh = read_obj(args.mesh)
        img = render_preview(mesh.vertices, mesh.faces, resolution=args.resolution)
        write_png(args.out, img.permute(2, 0, 1))
        logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
