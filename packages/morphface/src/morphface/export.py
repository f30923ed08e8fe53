"""Export of a face asset: OBJ + MTL + albedo / specular / displacement / normal maps as PNG.

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

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_floating, check_shape
from ._utils import atomic_write
from .io import write_obj

logger = logging.getLogger(__name__)

__all__ = ["FaceAsset", "displacement_to_normal_map", "export", "linear_to_srgb", "write_png"]


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
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    face_uvs: torch.Tensor
    albedo: torch.Tensor | None = None
    specular: torch.Tensor | None = None
    displacement: torch.Tensor | None = None


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
) -> dict[str, str]:
    """Write ``<name>.obj``, ``<name>.mtl``, ``<name>.json`` and the maps present in ``face``.

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

    Returns:
        Dict of written paths (keys ``obj``, ``mtl``, ``json``, ``albedo``, ``specular``,
        ``displacement``, ``normal``).

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
    mtl = [
        f"# morphface material for {name}",
        "newmtl skin",
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
    }
    if face.albedo is not None:
        paths["albedo"] = os.path.join(directory, f"{name}_albedo.png")
        write_png(paths["albedo"], linear_to_srgb(face.albedo), bits=albedo_bits)
        mtl.append(f"map_Kd {name}_albedo.png")
    if face.specular is not None:
        paths["specular"] = os.path.join(directory, f"{name}_specular.png")
        write_png(paths["specular"], face.specular, bits=16)
        mtl.append(f"map_Ks {name}_specular.png")
    if face.displacement is not None:
        r = (
            float(displacement_range)
            if displacement_range
            else float(face.displacement.abs().max().clamp_min(1e-6))
        )
        paths["displacement"] = os.path.join(directory, f"{name}_displacement.png")
        write_png(paths["displacement"], face.displacement / (2 * r) + 0.5, bits=16)
        mtl.append(f"# displacement: 0 -> -{r:.6g} cm, 65535 -> +{r:.6g} cm")
        mtl.append(f"disp {name}_displacement.png")
        meta["displacement_range_cm"] = r
        paths["normal"] = os.path.join(directory, f"{name}_normal.png")
        nmap = displacement_to_normal_map(face.displacement.float(), uv_extent_cm=uv_extent_cm)
        write_png(paths["normal"], nmap * 0.5 + 0.5, bits=16)
        mtl.append(f"norm {name}_normal.png")
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
        material="skin",
    )
    paths["json"] = os.path.join(directory, f"{name}.json")
    body = json.dumps(meta, indent=2)
    atomic_write(paths["json"], lambda tmp: write_text(tmp, body))
    logger.info("exported %s to %s", name, directory)
    return paths
