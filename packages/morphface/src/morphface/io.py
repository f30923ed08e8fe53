"""Readers for the ICT-FaceKit model format and mesh writers (OBJ/PLY).

Nothing here downloads or bundles data: every reader takes a user-given path. The ICT-FaceKit "Light"
model (MIT, USC ICT) is a ``FaceXModel/`` directory of OBJ files with identical topology (26 719
vertices, quads + triangles, UVs on polygon corners) and a ``vertex_indices.json`` configuration.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._checks import check_index, check_shape, check_tensor
from ._utils import atomic_write, invalid_file
from .geometry import triangulate
from .models.linear import LinearFaceModel

logger = logging.getLogger(__name__)

__all__ = ["ObjMesh", "load_ict_facekit", "load_ict_npz", "read_obj", "save_mesh", "write_obj"]

_ICT_NEUTRAL = "generic_neutral_mesh.obj"
_ICT_CONFIG = "vertex_indices.json"
_FACE_MATERIAL = "M_Face"


@dataclass
class ObjMesh:
    """A triangulated OBJ mesh with corner UVs.

    Attributes:
        vertices: (V, 3) float32 positions.
        faces: (F, 3) long triangle vertex indices (0-based).
        uvs: (T, 2) float32 texture coordinates (may be empty).
        face_uvs: (F, 3) long indices into ``uvs`` (-1 where a corner has none).
        face_material: (F,) long index into ``materials`` (-1 before any ``usemtl``).
        materials: material names in order of first use.
        mtllib: the ``mtllib`` file name, if any.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    face_uvs: torch.Tensor
    face_material: torch.Tensor
    materials: list[str] = field(default_factory=list)
    mtllib: str | None = None


def _parse_index(tok: str, count: int) -> int:
    i = int(tok)
    return i - 1 if i > 0 else count + i


def read_obj(path: str | os.PathLike[str]) -> ObjMesh:
    """Read a polygonal OBJ file (``v``, ``vt``, ``f v/vt[/vn]``, ``usemtl``), triangulating polygons.

    Corner UVs are kept as in the file (no vertex splitting at seams, unlike ``trimesh.load``), so the
    vertex order and count match the model's topology.

    Args:
        path: the ``.obj`` file.

    Returns:
        An :class:`ObjMesh`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed lines, out-of-range indices or no vertices.
    """
    fn = "read_obj"
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: no file at 'path' {path!r}")
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    polys: list[list[int]] = []
    poly_uv: list[list[int]] = []
    poly_mat: list[int] = []
    materials: list[str] = []
    mat_index: dict[str, int] = {}
    current = -1
    mtllib = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line or line[0] == "#":
                continue
            parts = line.split()
            if not parts:
                continue
            tag = parts[0]
            try:
                if tag == "v":
                    verts.append([float(parts[1]), float(parts[2]), float(parts[3])])
                elif tag == "vt":
                    uvs.append([float(parts[1]), float(parts[2])])
                elif tag == "f":
                    if len(parts) < 4:
                        raise ValueError("a face needs at least 3 corners")
                    vi, ti = [], []
                    for corner in parts[1:]:
                        sub = corner.split("/")
                        vi.append(_parse_index(sub[0], len(verts)))
                        ti.append(_parse_index(sub[1], len(uvs)) if len(sub) > 1 and sub[1] else -1)
                    for k in range(1, len(vi) - 1):  # fan triangulation
                        polys.append([vi[0], vi[k], vi[k + 1]])
                        poly_uv.append([ti[0], ti[k], ti[k + 1]])
                        poly_mat.append(current)
                elif tag == "usemtl":
                    name = parts[1] if len(parts) > 1 else ""
                    if name not in mat_index:
                        mat_index[name] = len(materials)
                        materials.append(name)
                    current = mat_index[name]
                elif tag == "mtllib" and len(parts) > 1:
                    mtllib = parts[1]
            except (ValueError, IndexError) as exc:
                raise ValueError(
                    f"{fn}: malformed line {lineno} of {path!r}: {line.strip()[:60]!r} ({exc})"
                ) from exc
    if not verts:
        raise ValueError(f"{fn}: {path!r} has no vertices")
    v = torch.tensor(verts, dtype=torch.float32)
    f = torch.tensor(polys, dtype=torch.long).reshape(-1, 3)
    if f.numel() and (int(f.min()) < 0 or int(f.max()) >= v.shape[0]):
        raise ValueError(f"{fn}: {path!r} has face indices outside [1, {v.shape[0]}]")
    t = torch.tensor(uvs, dtype=torch.float32).reshape(-1, 2)
    fu = torch.tensor(poly_uv, dtype=torch.long).reshape(-1, 3)
    if fu.numel() and int(fu.max()) >= t.shape[0]:
        raise ValueError(f"{fn}: {path!r} has texture indices outside [1, {t.shape[0]}]")
    return ObjMesh(v, f, t, fu, torch.tensor(poly_mat, dtype=torch.long), materials, mtllib)


def _read_vertices_fast(path: str, n_vertices: int) -> torch.Tensor:
    """Read only the ``v`` lines of an OBJ (much faster than :func:`read_obj` for morph targets)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    rows = re.findall(r"^v\s+(\S+)\s+(\S+)\s+(\S+)", text, flags=re.MULTILINE)
    arr = np.asarray(rows, dtype=np.float32)
    if arr.shape != (n_vertices, 3):
        raise ValueError(
            f"load_ict_facekit: {path!r} has {arr.shape[0]} vertices but the neutral mesh has {n_vertices}: "
            "not the same topology"
        )
    return torch.from_numpy(arr)


def _find_model_dir(directory: str) -> str:
    if os.path.isfile(os.path.join(directory, _ICT_NEUTRAL)):
        return directory
    sub = os.path.join(directory, "FaceXModel")
    if os.path.isfile(os.path.join(sub, _ICT_NEUTRAL)):
        return sub
    raise FileNotFoundError(
        f"load_ict_facekit: 'directory' {directory!r} holds neither {_ICT_NEUTRAL} nor FaceXModel/{_ICT_NEUTRAL}; "
        "pass the ICT-FaceKit checkout or its FaceXModel folder"
    )


def _uv_fields(obj: ObjMesh) -> dict[str, Any]:
    face_mask = (
        obj.face_material == obj.materials.index(_FACE_MATERIAL)
        if _FACE_MATERIAL in obj.materials
        else torch.ones(obj.faces.shape[0], dtype=torch.bool)
    )
    face_uvs = obj.face_uvs.clamp_min(0)
    out: dict[str, Any] = {"uvs": obj.uvs, "face_uvs": face_uvs, "uv_face_mask": face_mask}
    if obj.materials and bool((obj.face_material >= 0).all()):
        out["face_material"] = obj.face_material
        out["material_names"] = list(obj.materials)
    return out


def load_ict_facekit(
    directory: str | os.PathLike[str],
    *,
    n_identity: int | None = None,
    strict: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> LinearFaceModel:
    """Read the ICT-FaceKit model from its original OBJ + JSON format.

    ``identityNNN.obj`` files are identity modes (stored as full meshes: mode = mesh - neutral, already
    scaled so that coefficients ~ N(0, 1)); expression OBJs are those named in ``vertex_indices.json``
    (``expressions``), stored as full meshes too. Polygons are triangulated; corner UVs and the
    ``M_Face`` UV tile are kept; the 68 landmark vertices come from ``idx_to_landmark_verts``.

    Args:
        directory: the ICT-FaceKit checkout or its ``FaceXModel`` folder.
        n_identity: keep only the first ``n_identity`` identity modes (default: all found).
        strict: raise if an identity index is missing or an expression listed in the JSON has no OBJ
            (default: warn and skip).
        dtype: floating dtype of the model.
        device: device of the model.

    Returns:
        A :class:`~morphface.LinearFaceModel`.

    Raises:
        FileNotFoundError: no neutral mesh in ``directory``.
        ValueError: a morph target with another vertex count, or missing files with ``strict=True``.
    """
    fn = "load_ict_facekit"
    root = _find_model_dir(os.fspath(directory))
    neutral = read_obj(os.path.join(root, _ICT_NEUTRAL))
    n_vert = neutral.vertices.shape[0]
    config: dict[str, Any] = {}
    cfg_path = os.path.join(root, _ICT_CONFIG)
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as fh:
            config = json.load(fh)
    elif strict:
        raise FileNotFoundError(f"{fn}: no {_ICT_CONFIG} in {root!r}")
    ids = sorted(
        int(m.group(1)) for name in os.listdir(root) if (m := re.fullmatch(r"identity(\d+)\.obj", name))
    )
    if strict and ids != list(range(len(ids))):
        raise ValueError(f"{fn}: identity files must be numbered 0..N-1 without gaps; got {ids[:10]}...")
    if n_identity is not None:
        ids = ids[:n_identity]
    if not ids:
        raise ValueError(f"{fn}: no identityNNN.obj files in {root!r}")
    mean = neutral.vertices
    identity = torch.stack(
        [_read_vertices_fast(os.path.join(root, f"identity{i:03d}.obj"), n_vert) - mean for i in ids]
    )
    names, deltas, missing = [], [], []
    for name in config.get("expressions", []):
        p = os.path.join(root, f"{name}.obj")
        if os.path.isfile(p):
            names.append(name)
            deltas.append(_read_vertices_fast(p, n_vert) - mean)
        else:
            missing.append(name)
    if missing:
        msg = (
            f"{fn}: {len(missing)} expression OBJ(s) listed in {_ICT_CONFIG} are missing (e.g. {missing[:3]})"
        )
        if strict:
            raise ValueError(msg)
        warnings.warn(msg + "; they are skipped", stacklevel=2)
    expression = torch.stack(deltas) if deltas else None
    landmarks = torch.tensor(config.get("idx_to_landmark_verts", []), dtype=torch.long)
    logger.info("read ICT-FaceKit from %s: %d identity modes, %d expressions", root, len(ids), len(names))
    return LinearFaceModel(
        mean,
        identity,
        expression,
        faces=neutral.faces,
        landmark_indices=landmarks,
        expression_names=names,
        dtype=dtype,
        device=device,
        **_uv_fields(neutral),
    )


def load_ict_npz(
    path: str | os.PathLike[str],
    *,
    template_obj: str | os.PathLike[str] | None = None,
    config_json: str | os.PathLike[str] | None = None,
    n_identity: int | None = None,
    expressions: str = "listed",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> LinearFaceModel:
    """Read a compact archive of the ICT-FaceKit shapes (``neutral``, ``identity_shapes``,
    ``expression_shapes``, ``expression_names``, ``faces``), as converted from the OBJ files.

    The archive holds full meshes (not deltas) and no UVs: UVs and the ``M_Face`` tile come from
    ``template_obj`` and the landmarks from ``config_json`` (both default to ``FaceXModel/`` next to the
    archive when present).

    Args:
        path: the ``.npz`` archive.
        template_obj: an ICT OBJ with corner UVs (e.g. ``generic_neutral_mesh.obj``); optional.
        config_json: ``vertex_indices.json``; optional.
        n_identity: keep the first ``n_identity`` identity modes.
        expressions: ``"listed"`` keeps the 53 expressions named in the JSON (ICT's official set, when the
            JSON is available), ``"all"`` keeps every shape in the archive.
        dtype: floating dtype.
        device: target device.

    Returns:
        A :class:`~morphface.LinearFaceModel`.

    Raises:
        FileNotFoundError: no archive at ``path``.
        ValueError: a truncated / garbage file ("not a valid ICT-FaceKit shapes archive"), missing keys or a
            topology mismatch with ``template_obj``.
    """
    fn = "load_ict_npz"
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: no file at 'path' {path!r}")
    if expressions not in ("listed", "all"):
        raise ValueError(f"{fn}: 'expressions' must be 'listed' or 'all'; got {expressions!r}")
    need = {"neutral", "identity_shapes", "faces"}
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if need <= files:
                mean = torch.from_numpy(z["neutral"].astype(np.float32))
                ids = z["identity_shapes"][: n_identity if n_identity is not None else None].astype(
                    np.float32
                )
                identity = torch.from_numpy(ids) - mean
                exp_shapes = (
                    z["expression_shapes"].astype(np.float32) if "expression_shapes" in files else None
                )
                exp_names = [str(s) for s in z["expression_names"]] if "expression_names" in files else []
                polys = torch.from_numpy(z["faces"].astype(np.int64))
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, ValueError (pickled arrays), ...
        raise invalid_file(
            fn, path, "ICT-FaceKit shapes archive", exc, reason="truncated or not a NumPy .npz archive"
        ) from exc
    if not need <= files:
        raise ValueError(f"{fn}: {path!r} must hold keys {sorted(need)}; got {sorted(files)}")
    sibling = os.path.join(os.path.dirname(path), "FaceXModel")
    if template_obj is None and os.path.isfile(os.path.join(sibling, _ICT_NEUTRAL)):
        template_obj = os.path.join(sibling, _ICT_NEUTRAL)
    if config_json is None and os.path.isfile(os.path.join(sibling, _ICT_CONFIG)):
        config_json = os.path.join(sibling, _ICT_CONFIG)
    config: dict[str, Any] = {}
    if config_json is not None:
        with open(config_json, encoding="utf-8") as fh:
            config = json.load(fh)
    expression = None
    names: list[str] = []
    if exp_shapes is not None and len(exp_names) == exp_shapes.shape[0]:
        keep = list(range(len(exp_names)))
        if expressions == "listed" and config.get("expressions"):
            listed = set(config["expressions"])
            keep = [i for i, n in enumerate(exp_names) if n in listed]
        names = [exp_names[i] for i in keep]
        expression = torch.from_numpy(exp_shapes[keep]) - mean
    extra: dict[str, Any] = {"faces": triangulate(polys)}
    if template_obj is not None:
        obj = read_obj(template_obj)
        if obj.vertices.shape[0] != mean.shape[0] or obj.faces.shape[0] != extra["faces"].shape[0]:
            raise ValueError(
                f"{fn}: 'template_obj' has {obj.vertices.shape[0]} vertices / {obj.faces.shape[0]} triangles but "
                f"the archive has {mean.shape[0]} / {extra['faces'].shape[0]}: not the same topology"
            )
        extra["faces"] = obj.faces
        extra.update(_uv_fields(obj))
    landmarks = torch.tensor(config.get("idx_to_landmark_verts", []), dtype=torch.long)
    return LinearFaceModel(
        mean,
        identity,
        expression,
        landmark_indices=landmarks,
        expression_names=names,
        dtype=dtype,
        device=device,
        **extra,
    )


def write_obj(
    path: str | os.PathLike[str],
    vertices: torch.Tensor,
    faces: torch.Tensor,
    *,
    uvs: torch.Tensor | None = None,
    face_uvs: torch.Tensor | None = None,
    mtllib: str | None = None,
    material: str | None = None,
    face_material: torch.Tensor | None = None,
    materials: list[str] | None = None,
) -> None:
    """Write a triangle mesh as OBJ with optional corner UVs and a material reference (atomic write).

    Args:
        path: destination ``.obj``.
        vertices: (V, 3) positions.
        faces: (F, 3) long triangle indices.
        uvs: optional (T, 2) texture coordinates.
        face_uvs: (F, 3) long indices into ``uvs`` (required with ``uvs``).
        mtllib: optional MTL file name written as ``mtllib``.
        material: optional material name written as ``usemtl`` (one material for every face).
        face_material: optional (F,) long index into ``materials`` per face; a ``usemtl`` line is written
            wherever it changes along the face order (faces keep their order).
        materials: material names for ``face_material``.

    Raises:
        ValueError: bad shapes or indices.
    """
    fn = "write_obj"
    dims = check_shape(vertices, "V,3", "vertices", fn=fn)
    check_shape(faces, "F,3", "faces", fn=fn, dims=dims)
    v = vertices.detach().cpu().double().numpy()
    f = faces.detach().cpu().long().numpy()
    if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
        raise ValueError(f"{fn}: 'faces' must index [0, {v.shape[0] - 1}]; got [{f.min()}, {f.max()}]")
    lines = ["# written by morphface"]
    if mtllib:
        lines.append(f"mtllib {mtllib}")
    lines.extend(f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v)
    if uvs is not None:
        if face_uvs is None:
            raise ValueError(f"{fn}: 'face_uvs' is required with 'uvs'; got None")
        check_shape(uvs, "T,2", "uvs", fn=fn)
        check_shape(face_uvs, "F,3", "face_uvs", fn=fn, dims=dims)
        lines.extend(f"vt {a:.6f} {b:.6f}" for a, b in uvs.detach().cpu().double().numpy())
    if face_material is not None:
        check_shape(face_material, "F", "face_material", fn=fn, dims=dims)
        if materials is None:
            raise ValueError(f"{fn}: 'materials' is required with 'face_material'; got None")
        fm = face_material.detach().cpu().long().numpy()
        if fm.size and (fm.min() < 0 or fm.max() >= len(materials)):
            raise ValueError(f"{fn}: 'face_material' must index 'materials' [0, {len(materials) - 1}]")
    else:
        fm = np.zeros(f.shape[0], dtype=np.int64)
        materials = [material] if material else []
    t = face_uvs.detach().cpu().long().numpy() + 1 if uvs is not None and face_uvs is not None else None
    current = -1
    for i, (a, b, c) in enumerate(f):
        if materials and fm[i] != current:
            current = int(fm[i])
            lines.append(f"usemtl {materials[current]}")
        if t is not None:
            ta, tb, tc = t[i]
            lines.append(f"f {a + 1}/{ta} {b + 1}/{tb} {c + 1}/{tc}")
        else:
            lines.append(f"f {a + 1} {b + 1} {c + 1}")
    text = "\n".join(lines) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


def save_mesh(path: str | os.PathLike[str], vertices: torch.Tensor, faces: torch.Tensor) -> None:
    """Write a triangle mesh via trimesh; the format (``.obj``, ``.ply``, ``.stl``, ...) follows the extension.

    Args:
        path: destination file.
        vertices: (V, 3) positions.
        faces: (F, 3) long triangle indices.

    Raises:
        TypeError: non-tensor inputs or non-integer faces.
        ValueError: bad shapes, face indices outside the vertices, or an extension trimesh cannot write.
    """
    import trimesh

    fn = "save_mesh"
    check_tensor(vertices, "vertices", fn=fn)
    check_tensor(faces, "faces", fn=fn)
    dims = check_shape(vertices, "V,3", "vertices", fn=fn)
    check_shape(faces, "F,3", "faces", fn=fn)
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise TypeError(f"{fn}: 'faces' must be an integer tensor; got {faces.dtype}")
    check_index(faces, dims["V"], "faces", fn=fn)
    mesh = trimesh.Trimesh(
        vertices.detach().cpu().double().numpy(), faces.detach().cpu().numpy(), process=False
    )
    ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    try:  # encode in memory first, so an unsupported format fails before any file is touched
        data = mesh.export(file_type=ext)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ValueError(
            f"{fn}: 'path' must end in a mesh format trimesh can write (.obj, .ply, .stl, .off, ...); "
            f"got {ext or 'no extension'!r} ({exc})"
        ) from exc
    if isinstance(data, str):
        payload = data.encode()
    elif isinstance(data, bytes):
        payload = data
    else:
        raise ValueError(f"{fn}: format {ext!r} does not encode to one file; use .obj, .ply, .stl or .off")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(payload)

    atomic_write(path, write)
