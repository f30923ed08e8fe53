"""Texture from a photo: project the image onto a fitted mesh, into the model's UV layout, with a
visibility / confidence mask (the texture-extraction step of eos, FLAME and DECA tooling).

For every texel of the UV layout: the surface point it maps to (barycentric interpolation over its
triangle), that point projected into the photo by the fit's pinhole camera, and the photo's colour there,
bilinearly sampled. The confidence is ``cos(theta)`` between the surface normal and the direction to the
camera where the point is the nearest surface along its pixel ray (a z-buffer test), inside the image and
facing the camera at more than ``min_cos``; 0 elsewhere (occluded, back-facing, outside the layout or the image).

What comes out is the photo's colour, lighting and all (no de-lighting): an albedo estimate only under
flat, diffuse light.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ._checks import check_floating, check_index, check_shape
from ._raster import rasterize_triangles
from .fit import PerspectiveCamera, project_points
from .geometry import vertex_normals
from .uv import rasterize_uv, uv_maps

logger = logging.getLogger(__name__)

__all__ = ["project_texture"]


def project_texture(
    image: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uvs: torch.Tensor,
    face_uvs: torch.Tensor,
    camera: PerspectiveCamera,
    resolution: int,
    *,
    face_mask: torch.Tensor | None = None,
    min_cos: float = 0.15,
    depth_tolerance: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project a photo onto a mesh in eye space and unwrap it into UV space.

    Convention:
        ``vertices`` in eye space (camera at the origin looking down -z, y up; e.g. ``FitResult.vertices``
        of a 2D-landmark fit). Pixel coordinates as :func:`~morphface.project_points` gives them with the
        pixel ``(i, j)`` covering ``[j, j+1] x [i, i+1]`` (as :func:`~morphface.render_preview` renders);
        for a camera fitted to landmarks in the pixel-centre convention (dlib, OpenCV) add 0.5 to ``cx``
        and ``cy``. UV maps: row 0 is v = 1. Triangles wound counter-clockwise seen from outside (normals
        point out).

    Args:
        image: (3, H, W) photo, float in [0, 1] (any encoding; it is sampled, not converted).
        vertices: (V, 3) eye-space positions.
        faces: (F, 3) long triangles (all of them take part in the visibility test).
        uvs: (T, 2) texture coordinates.
        face_uvs: (F, 3) long corner UV indices.
        camera: the :class:`~morphface.PerspectiveCamera` of the photo.
        resolution: size R of the square UV texture.
        face_mask: optional (F,) bool, the triangles of the UV tile to unwrap (ICT: ``M_Face``); others
            still occlude.
        min_cos: texels seen more obliquely than this (cosine) get confidence 0.
        depth_tolerance: z-buffer slack in the vertices' units (default 0.5 % of the median depth).

    Returns:
        ``(texture, confidence)``: (3, R, R) colours (0 where the confidence is 0) and (1, R, R) confidence
        in [0, 1].

    Raises:
        TypeError: non-float image/vertices/uvs.
        ValueError: bad shapes, indices or a resolution < 1.
    """
    fn = "project_texture"
    check_floating(image, "image", fn=fn)
    check_shape(image, "3,H,W", "image", fn=fn)
    check_floating(vertices, "vertices", fn=fn)
    dims = check_shape(vertices, "V,3", "vertices", fn=fn)
    check_shape(faces, "F,3", "faces", fn=fn)
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise TypeError(f"{fn}: 'faces' must be an integer tensor; got {faces.dtype}")
    check_index(faces, dims["V"], "faces", fn=fn)
    if not isinstance(camera, PerspectiveCamera):
        raise TypeError(f"{fn}: 'camera' must be a PerspectiveCamera; got {type(camera).__name__}")
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"{fn}: 'resolution' must be a positive int; got {resolution!r}")
    if not 0.0 <= min_cos < 1.0:
        raise ValueError(f"{fn}: 'min_cos' must be in [0, 1); got {min_cos}")
    if not bool(torch.isfinite(vertices).all()):
        raise ValueError(f"{fn}: 'vertices' must be finite; got NaN/inf")
    if bool((vertices[:, 2] >= 0).any()):
        raise ValueError(f"{fn}: 'vertices' must lie in front of the camera (z < 0 in eye space)")
    dev = vertices.device
    faces = faces.long().to(dev)
    _, h, w = image.shape
    # z-buffer of the whole mesh in the photo
    pix = project_points(vertices, camera)
    depth = -vertices[:, 2]
    zi, zb = rasterize_triangles(pix[faces].detach().double(), h, w, depth=depth[faces].detach().double())
    zbuf = torch.where(zi >= 0, (depth[faces[zi.clamp_min(0)]].double() * zb).sum(-1), torch.inf)
    tol = float(depth_tolerance) if depth_tolerance is not None else 0.005 * float(depth.median())
    # surface point, normal of every texel
    raster = rasterize_uv(uvs.to(dev), face_uvs.to(dev), resolution, face_mask=face_mask)
    normals = vertex_normals(vertices, faces)
    maps, mask = uv_maps(torch.cat([vertices, normals], -1), faces, raster)
    pos = maps[0, :3].permute(1, 2, 0)  # (R, R, 3)
    nrm = F.normalize(maps[0, 3:].permute(1, 2, 0), dim=-1)
    to_cam = F.normalize(-pos, dim=-1)
    cos = (nrm * to_cam).sum(-1)
    tp = project_points(pos, camera)  # (R, R, 2) texel positions in the photo
    gx, gy = tp[..., 0] / w * 2 - 1, tp[..., 1] / h * 2 - 1
    inside = (gx > -1) & (gx < 1) & (gy > -1) & (gy < 1)
    px = tp[..., 0].floor().long().clamp(0, w - 1)
    py = tp[..., 1].floor().long().clamp(0, h - 1)
    visible = -pos[..., 2].double() <= zbuf[py, px] + tol
    ok = mask & inside & visible & (cos > min_cos)
    grid = torch.stack([gx, gy], -1)[None].to(image.dtype)
    colour = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    conf = torch.where(ok, cos, torch.zeros_like(cos)).clamp(0, 1)[None].to(image.dtype)
    texture = colour * (conf > 0)
    logger.debug("project_texture: %d of %d layout texels visible", int(ok.sum()), int(mask.sum()))
    return texture, conf
