"""Export of a face asset: OBJ + MTL + albedo / specular / displacement / normal maps as PNG, and glTF 2.0 (.glb).

Materials: one per part of the model (ICT-FaceKit: ``M_Face``, ``M_BackHead``, ``M_Teeth``, ``M_ScleraLeft``,
... on their own UV tiles ``u in [k, k+1]``, or sharing tile 0 with the face like the eyes). The generated maps
go on the face material only (``M_Face``, else the first material); every other part gets a neutral material
(:data:`NEUTRAL_MATERIALS`: the back of the head the face's mean albedo, teeth, gums, sclera and iris plain
colours, the eye overlays nearly transparent), so no part is painted with the face tile.

Maps: albedo 8-bit sRGB; specular 16-bit grey (intensity in [0, 1]); displacement 16-bit grey mapping
``[-range, +range]`` cm to ``[0, 65535]`` (the range is written to ``<name>.json`` and the MTL's ``disp``
line comment); normal 16-bit RGB tangent-space normal (OpenGL convention, +y up) derived from the
displacement by finite differences. No EXR needed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_floating, check_shape
from ._utils import atomic_write
from .io import write_obj

logger = logging.getLogger(__name__)

__all__ = [
    "NEUTRAL_MATERIALS",
    "FaceAsset",
    "displacement_to_normal_map",
    "export",
    "export_glb",
    "linear_to_srgb",
    "write_png",
]

#: name -> (linear base colour RGB, roughness, alpha) for parts without maps (ICT-FaceKit part names; the
#: values follow ICT's own MTL where it gives a colour, and plain choices for sclera/iris/overlays).
#: ``None`` colour: the mean albedo of the face tile (skin of the back of the head and neck).
NEUTRAL_MATERIALS: dict[str, tuple[tuple[float, float, float] | None, float, float]] = {
    "M_BackHead": (None, 0.6, 1.0),
    "M_GumsTongue": ((0.30, 0.03, 0.06), 0.3, 1.0),
    "M_Teeth": ((0.80, 0.78, 0.72), 0.3, 1.0),
    "M_ScleraLeft": ((0.80, 0.78, 0.76), 0.2, 1.0),
    "M_ScleraRight": ((0.80, 0.78, 0.76), 0.2, 1.0),
    "M_IrisLeft": ((0.20, 0.12, 0.06), 0.2, 1.0),
    "M_IrisRight": ((0.20, 0.12, 0.06), 0.2, 1.0),
    "M_LacrimalFluid": ((1.0, 1.0, 1.0), 0.05, 0.1),
    "M_EyeBlend": ((0.5, 0.5, 0.5), 0.5, 0.05),
    "M_EyeOcclusion": ((0.0, 0.0, 0.0), 1.0, 0.15),
    "M_EyeLashes": ((0.02, 0.02, 0.02), 0.8, 1.0),
}
_DEFAULT_NEUTRAL: tuple[tuple[float, float, float] | None, float, float] = ((0.6, 0.6, 0.6), 0.6, 1.0)
_SKIN_ROUGHNESS = 0.5


@dataclass
class FaceAsset:
    """A generated face: base mesh with corner UVs and physically-based attribute maps.

    Attributes:
        vertices: (V, 3) positions (cm).
        faces: (F, 3) long triangles.
        uvs: (T, 2) texture coordinates.
        face_uvs: (F, 3) corner UV indices.
        albedo: optional (3, H, W) linear diffuse albedo in [0, 1].
        specular: optional (1, H, W) specular intensity in [0, 1].
        displacement: optional (1, H, W) displacement along the normal, cm.
        face_material: optional (F,) long material index per triangle (from the model).
        material_names: names for ``face_material``.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    face_uvs: torch.Tensor
    albedo: torch.Tensor | None = None
    specular: torch.Tensor | None = None
    displacement: torch.Tensor | None = None
    face_material: torch.Tensor | None = None
    material_names: list[str] | None = None

    def materials(self) -> tuple[torch.Tensor, list[str], int]:
        """Per-face material index, material names and the index of the textured (face) material.

        Returns:
            ``(face_material (F,), names, textured)``; a single ``"skin"`` material without a material table.
        """
        if self.face_material is None or not self.material_names:
            return torch.zeros(self.faces.shape[0], dtype=torch.long), ["skin"], 0
        names = list(self.material_names)
        textured = next((names.index(n) for n in ("M_Face", "face", "skin") if n in names), 0)
        return self.face_material.detach().cpu().long(), names, textured


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer function (IEC 61966-2-1) for values in [0, 1].

    Args:
        x: linear values.

    Returns:
        sRGB-encoded values.

    Examples:
        >>> round(linear_to_srgb(torch.tensor(0.5)).item(), 4)
        0.7354
    """
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def displacement_to_normal_map(displacement: torch.Tensor, *, uv_extent_cm: float = 25.0) -> torch.Tensor:
    """Tangent-space normals of a displacement map, ``n ~ (-dD/du, -dD/dv, 1)``, by central differences.

    Args:
        displacement: (1, H, W) displacement in cm (row 0 = v = 1).
        uv_extent_cm: physical size of the unit UV square, cm (the ICT face tile spans about 25 cm).

    Returns:
        (3, H, W) unit normals (x along +u, y along +v, z out of the surface).
    """
    fn = "displacement_to_normal_map"
    check_floating(displacement, "displacement", fn=fn)
    check_shape(displacement, "1,H,W", "displacement", fn=fn)
    _, h, w = displacement.shape
    d = F.pad(displacement[None], (1, 1, 1, 1), mode="replicate")[0, 0]
    du = (d[1:-1, 2:] - d[1:-1, :-2]) / (2 * uv_extent_cm / w)
    dv = -(d[2:, 1:-1] - d[:-2, 1:-1]) / (2 * uv_extent_cm / h)  # rows grow downwards, v upwards
    n = torch.stack([-du, -dv, torch.ones_like(du)], 0)
    return n / n.norm(dim=0, keepdim=True)


def write_png(path: str | os.PathLike[str], image: torch.Tensor, *, bits: int = 8) -> None:
    """Write a (C, H, W) image in [0, 1] as an 8- or 16-bit PNG (C = 1 or 3), atomically.

    Args:
        path: destination ``.png``.
        image: (C, H, W) values in [0, 1] (clipped).
        bits: 8 or 16.

    Raises:
        ValueError: bad shape or bit depth.
    """
    import cv2

    fn = "write_png"
    check_floating(image, "image", fn=fn)
    check_shape(image, "C,H,W", "image", fn=fn)
    if image.shape[0] not in (1, 3) or bits not in (8, 16):
        raise ValueError(f"{fn}: need C in (1, 3) and bits in (8, 16); got C={image.shape[0]}, bits={bits}")
    scale, dt = (255.0, np.uint8) if bits == 8 else (65535.0, np.uint16)
    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * scale + 0.5).astype(dt)
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)[..., ::-1]  # RGB -> BGR for OpenCV

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, np.ascontiguousarray(arr)):
            raise OSError(f"{fn}: OpenCV could not write {tmp!r}")

    atomic_write(path, write)


def export(
    face: FaceAsset,
    directory: str | os.PathLike[str],
    *,
    name: str = "face",
    displacement_range: float | None = None,
    uv_extent_cm: float = 25.0,
    albedo_bits: int = 8,
    glb: bool = True,
) -> dict[str, str]:
    """Write ``<name>.obj``, ``<name>.mtl``, ``<name>.json``, the maps present in ``face`` and ``<name>.glb``.

    One material per part (``face.material_names``; ``usemtl`` switches in face order): the maps go on the
    face material, the other parts get neutral colours (:data:`NEUTRAL_MATERIALS`).

    The OBJ keeps the model's vertex order and corner UVs; read it back with
    ``trimesh.load(path, process=False, maintain_order=True)`` to get the same vertex count (without
    ``maintain_order`` trimesh splits vertices at UV seams).

    Args:
        face: the :class:`FaceAsset`.
        directory: output folder (created).
        name: file stem.
        displacement_range: cm mapped to the 16-bit range ``[-r, r]`` (default: the map's max magnitude).
        uv_extent_cm: physical size of the UV square, for the normal map.
        albedo_bits: bit depth of the sRGB albedo PNG, 8 (what viewers expect) or 16 (every map 16-bit).
        glb: also write the glTF 2.0 binary (:func:`export_glb`).

    Returns:
        Dict of written paths (keys ``obj``, ``mtl``, ``json``, ``albedo``, ``specular``,
        ``displacement``, ``normal``, ``glb``).

    Raises:
        TypeError: ``face`` is not a :class:`FaceAsset`.
        ValueError: bad map shapes, ``albedo_bits``, or a ``name`` that is empty or holds a path separator.
    """
    fn = "export"
    if not isinstance(face, FaceAsset):
        raise TypeError(f"{fn}: 'face' must be a FaceAsset; got {type(face).__name__}")
    if not isinstance(name, str) or not name or "/" in name or os.sep in name or name in (".", ".."):
        raise ValueError(f"{fn}: 'name' must be a non-empty file stem without path separators; got {name!r}")
    if albedo_bits not in (8, 16):
        raise ValueError(f"{fn}: 'albedo_bits' must be 8 or 16; got {albedo_bits!r}")
    for attr, channels in (("albedo", 3), ("specular", 1), ("displacement", 1)):
        if getattr(face, attr) is not None:
            check_shape(getattr(face, attr), f"{channels},H,W", f"face.{attr}", fn=fn)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths: dict[str, str] = {}
    face_material, names, textured = face.materials()
    if face_material.shape[0] != face.faces.shape[0]:
        raise ValueError(
            f"{fn}: 'face.face_material' must have one entry per face ({face.faces.shape[0]}); "
            f"got {face_material.shape[0]}"
        )
    skin_block = [
        f"newmtl {names[textured]}",
        "Ka 0 0 0",
        "Kd 1 1 1",
        "Ks 1 1 1",
        "Ns 32",
        "illum 2",
    ]
    meta: dict[str, object] = {
        "units": "cm",
        "albedo": f"sRGB {albedo_bits}-bit",
        "specular": "linear intensity, 16-bit",
        "textured_material": names[textured],
        "materials": names,
    }
    if face.albedo is not None:
        paths["albedo"] = os.path.join(directory, f"{name}_albedo.png")
        write_png(paths["albedo"], linear_to_srgb(face.albedo), bits=albedo_bits)
        skin_block.append(f"map_Kd {name}_albedo.png")
    if face.specular is not None:
        paths["specular"] = os.path.join(directory, f"{name}_specular.png")
        write_png(paths["specular"], face.specular, bits=16)
        skin_block.append(f"map_Ks {name}_specular.png")
    if face.displacement is not None:
        r = (
            float(displacement_range)
            if displacement_range
            else float(face.displacement.abs().max().clamp_min(1e-6))
        )
        paths["displacement"] = os.path.join(directory, f"{name}_displacement.png")
        write_png(paths["displacement"], face.displacement / (2 * r) + 0.5, bits=16)
        skin_block.append(f"# displacement: 0 -> -{r:.6g} cm, 65535 -> +{r:.6g} cm")
        skin_block.append(f"disp {name}_displacement.png")
        meta["displacement_range_cm"] = r
        paths["normal"] = os.path.join(directory, f"{name}_normal.png")
        nmap = displacement_to_normal_map(face.displacement.float(), uv_extent_cm=uv_extent_cm)
        write_png(paths["normal"], nmap * 0.5 + 0.5, bits=16)
        skin_block.append(f"norm {name}_normal.png")
    mtl = [f"# morphface materials for {name}: maps on {names[textured]}, neutral colours elsewhere"]
    for i, mat in enumerate(names):
        if i == textured:
            mtl += skin_block
            continue
        rgb, rough, alpha = _neutral(mat, face.albedo)
        ns = max(1.0, 2.0 / max(rough, 1e-3) ** 2 - 2.0)  # Blinn-Phong exponent of the roughness
        mtl += [
            f"newmtl {mat}",
            "Ka 0 0 0",
            f"Kd {rgb[0]:.4f} {rgb[1]:.4f} {rgb[2]:.4f}",
            "Ks 0.04 0.04 0.04",
            f"Ns {ns:.1f}",
            f"d {alpha:.3f}",
            "illum 2",
        ]
    paths["mtl"] = os.path.join(directory, f"{name}.mtl")
    text = "\n".join(mtl) + "\n"

    def write_text(tmp: str, body: str = text) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(body)

    atomic_write(paths["mtl"], write_text)
    paths["obj"] = os.path.join(directory, f"{name}.obj")
    write_obj(
        paths["obj"],
        face.vertices,
        face.faces,
        uvs=face.uvs,
        face_uvs=face.face_uvs,
        mtllib=f"{name}.mtl",
        face_material=face_material,
        materials=names,
    )
    if glb:
        paths["glb"] = os.path.join(directory, f"{name}.glb")
        export_glb(face, paths["glb"], uv_extent_cm=uv_extent_cm)
    paths["json"] = os.path.join(directory, f"{name}.json")
    body = json.dumps(meta, indent=2)
    atomic_write(paths["json"], lambda tmp: write_text(tmp, body))
    logger.info("exported %s to %s", name, directory)
    return paths


def _neutral(material: str, albedo: torch.Tensor | None) -> tuple[tuple[float, float, float], float, float]:
    """Linear RGB, roughness and alpha of a part without maps."""
    rgb, rough, alpha = NEUTRAL_MATERIALS.get(material, _DEFAULT_NEUTRAL)
    if rgb is None:
        if albedo is not None:
            a = albedo.detach().float().cpu()
            inside = a.sum(0) > 1e-4  # the map is zero outside the UV charts
            mean = a[:, inside].mean(1) if bool(inside.any()) else a.flatten(1).mean(1)
            rgb = (float(mean[0]), float(mean[1]), float(mean[2]))
        else:
            rgb = (0.6, 0.6, 0.6)
    return rgb, rough, alpha


def _to_pil(image: torch.Tensor) -> Any:
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(arr))


def export_glb(face: FaceAsset, path: str | os.PathLike[str], *, uv_extent_cm: float = 25.0) -> str:
    """Write the face as glTF 2.0 binary with PBR metallic-roughness materials, one mesh per material.

    Convention:
        Positions converted to metres (glTF's unit; morphface assets are in cm), +y up. Each triangle's UVs are
        moved into [0, 1] from its UV tile (minus the floor of the triangle's UV centroid). The face material carries the sRGB
        albedo as ``baseColorTexture`` and, when a displacement map exists, its tangent-space normal map as
        ``normalTexture``; metallic 0, roughness 0.5. The specular-intensity map has no core glTF slot and
        is not written (it is in the OBJ's MTL as ``map_Ks``). Other parts get neutral materials.

    Args:
        face: the :class:`FaceAsset`.
        path: destination ``.glb``.
        uv_extent_cm: physical size of the UV square, for the normal map.

    Returns:
        The path written.

    Raises:
        TypeError: ``face`` is not a :class:`FaceAsset`.
        ValueError: ``path`` does not end in ``.glb``.
    """
    import trimesh
    from trimesh.visual.material import PBRMaterial
    from trimesh.visual.texture import TextureVisuals

    fn = "export_glb"
    if not isinstance(face, FaceAsset):
        raise TypeError(f"{fn}: 'face' must be a FaceAsset; got {type(face).__name__}")
    path = os.fspath(path)
    if not path.lower().endswith(".glb"):
        raise ValueError(f"{fn}: 'path' must end in .glb; got {path!r}")
    face_material, names, textured = face.materials()
    verts = face.vertices.detach().cpu().double().numpy() / 100.0  # cm -> m
    faces = face.faces.detach().cpu().long().numpy()
    uvs = face.uvs.detach().cpu().double().numpy()
    fuv = face.face_uvs.detach().cpu().long().numpy()
    fm = face_material.numpy()
    from .geometry import vertex_normals

    normals = vertex_normals(face.vertices.detach().cpu().double(), face.faces.detach().cpu()).numpy()
    scene = trimesh.Scene()
    for i, mat in enumerate(names):
        sel = np.nonzero(fm == i)[0]
        if sel.size == 0:
            continue
        corner_v = faces[sel].reshape(-1)
        corner_t = fuv[sel].reshape(-1) if uvs.shape[0] else np.zeros_like(corner_v)
        if uvs.shape[0]:  # each triangle's UV tile (floor of its centroid) moved to [0, 1]
            tile = np.floor(uvs[fuv[sel]].mean(1)).repeat(3, axis=0)  # (3 F_m, 2)
            corner_uv = uvs[corner_t] - tile
        else:
            tile = np.zeros((corner_v.size, 2))
            corner_uv = np.zeros((corner_v.size, 2))
        key = np.stack([corner_v, corner_t, tile[:, 0], tile[:, 1]], 1).astype(np.int64)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        v = verts[corner_v[first]]
        uv = corner_uv[first]
        if i == textured and face.albedo is not None:
            normal = None
            if face.displacement is not None:
                n = displacement_to_normal_map(face.displacement.float(), uv_extent_cm=uv_extent_cm)
                normal = _to_pil(n * 0.5 + 0.5)
            material = PBRMaterial(
                name=mat,
                baseColorTexture=_to_pil(linear_to_srgb(face.albedo.float())),
                normalTexture=normal,
                metallicFactor=0.0,
                roughnessFactor=_SKIN_ROUGHNESS,
                doubleSided=False,
            )
        else:
            rgb, rough, alpha = (
                _neutral(mat, face.albedo) if i != textured else ((0.6, 0.6, 0.6), _SKIN_ROUGHNESS, 1.0)
            )
            # glTF's baseColorFactor is linear (only textures are sRGB); trimesh stores it as bytes / 255
            factor = np.round(np.clip([*rgb, alpha], 0, 1) * 255).astype(np.uint8)
            material = PBRMaterial(
                name=mat,
                baseColorFactor=factor,
                metallicFactor=0.0,
                roughnessFactor=rough,
                alphaMode="BLEND" if alpha < 1.0 else "OPAQUE",
                doubleSided=alpha < 1.0,
            )
        mesh = trimesh.Trimesh(
            vertices=v,
            faces=inverse.reshape(-1, 3),
            vertex_normals=normals[corner_v[first]],  # smooth across part borders (whole-mesh normals)
            visual=TextureVisuals(uv=uv, material=material),
            process=False,
        )
        scene.add_geometry(mesh, geom_name=mat, node_name=mat)
    data = scene.export(file_type="glb", include_normals=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write(path, write)
    logger.info("exported %s (%d materials)", path, len(scene.geometry))
    return path
