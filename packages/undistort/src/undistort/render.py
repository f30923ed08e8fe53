"""A plain-torch z-buffer rasteriser and a Lambert + Blinn-Phong shader.

The rasteriser works on one mesh already projected to the image: each vertex carries its pixel
coordinates ``(u, v)`` and its camera depth ``z``. It returns, per pixel, the index of the visible triangle
and its perspective-correct barycentric coordinates, from which any per-vertex attribute (colour, normal,
3D position in any frame) is interpolated with :func:`interpolate`.

Convention:
    Pixel ``(i, j)`` (row ``i``, column ``j``) covers ``[j, j+1) x [i, i+1)`` in continuous image
    coordinates; its centre is ``(j + 0.5, i + 0.5)``. ``u`` grows to the right, ``v`` downwards. Depth
    ``z`` is the distance along the optical axis (positive in front of the camera); smaller wins.
    Triangles of either winding are drawn (no back-face culling): occlusion is resolved by the z-buffer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_floating, check_positive, check_shape, check_tensor

logger = logging.getLogger(__name__)

__all__ = ["Fragments", "interpolate", "rasterize", "shade", "vertex_normals"]

_CHUNK = 1 << 21  # candidate (triangle, pixel) pairs evaluated at once


@dataclass
class Fragments:
    """Per-pixel output of :func:`rasterize`.

    Attributes:
        face_index: ``(H, W)`` int64, index of the visible triangle, ``-1`` where nothing is drawn.
        bary: ``(H, W, 3)`` perspective-correct barycentric weights of the triangle's three vertices
            (zeros where nothing is drawn).
        depth: ``(H, W)`` camera depth of the visible surface (``inf`` where nothing is drawn).
    """

    face_index: Tensor
    bary: Tensor
    depth: Tensor

    @property
    def mask(self) -> Tensor:
        """``(H, W)`` bool, True where a triangle covers the pixel centre."""
        return self.face_index >= 0


def rasterize(vertices: Tensor, faces: Tensor, height: int, width: int, *, near: float = 1e-3) -> Fragments:
    """Rasterise a projected triangle mesh with a z-buffer.

    Every triangle is tested against the pixel centres inside its bounding box (triangles are grouped by
    bounding-box size so that small and large triangles cost what they cover), and the nearest fragment
    wins per pixel. Barycentrics are perspective-correct: screen-space weights ``w_k`` become
    ``(w_k / z_k) / sum_j (w_j / z_j)``.

    Args:
        vertices: ``(V, 3)`` floating ``(u, v, z)``: pixel coordinates and camera depth.
        faces: ``(F, 3)`` integer vertex indices.
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.
        near: triangles with any vertex at ``z <= near`` are dropped.

    Returns:
        The :class:`Fragments` of the image (on the vertices' device).

    Raises:
        TypeError: ``vertices`` is not floating or ``faces`` is not an integer tensor.
        ValueError: wrong shapes, a non-positive size, or face indices out of range.

    Examples:
        >>> v = torch.tensor([[0.0, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, 4.0, 1.0]])
        >>> frag = rasterize(v, torch.tensor([[0, 1, 2]]), 4, 4)
        >>> int(frag.mask.sum())
        10
    """
    fn = "rasterize"
    check_floating(vertices, "vertices", fn=fn)
    check_shape(vertices, "V,3", "vertices", fn=fn)
    check_tensor(faces, "faces", fn=fn)
    check_shape(faces, "F,3", "faces", fn=fn)
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise TypeError(f"{fn}: 'faces' must be an integer tensor; got {faces.dtype}")
    check_positive(height, "height", fn=fn)
    check_positive(width, "width", fn=fn)
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[0]):
        raise ValueError(
            f"{fn}: 'faces' must index [0, {vertices.shape[0] - 1}]; got [{int(faces.min())}, {int(faces.max())}]"
        )
    dev, dt = vertices.device, vertices.dtype
    faces = faces.long()
    npix = height * width
    tri = vertices[faces]  # (F, 3, 3)
    xs, ys, zs = tri[..., 0], tri[..., 1], tri[..., 2]
    x0 = torch.ceil(xs.amin(1) - 0.5).clamp(min=0)
    x1 = torch.floor(xs.amax(1) - 0.5).clamp(max=width - 1)
    y0 = torch.ceil(ys.amin(1) - 0.5).clamp(min=0)
    y1 = torch.floor(ys.amax(1) - 0.5).clamp(max=height - 1)
    area = (xs[:, 1] - xs[:, 0]) * (ys[:, 2] - ys[:, 0]) - (xs[:, 2] - xs[:, 0]) * (ys[:, 1] - ys[:, 0])
    keep = (
        (zs > near).all(1) & (x1 >= x0) & (y1 >= y0) & (area.abs() > 1e-12) & torch.isfinite(tri).all((1, 2))
    )
    fid = keep.nonzero().squeeze(1)
    size = torch.maximum(x1 - x0 + 1, y1 - y0 + 1)[fid]

    pix_l, dep_l, face_l, bary_l = [], [], [], []
    lo = 0
    s = 1
    max_size = int(size.max()) if fid.numel() else 0
    while lo < max_size:
        sel = fid[(size > lo) & (size <= s)]
        if sel.numel():
            off = torch.arange(s, device=dev)
            oy, ox = torch.meshgrid(off, off, indexing="ij")
            ox, oy = ox.reshape(-1), oy.reshape(-1)
            step = max(1, _CHUNK // (s * s))
            for c in range(0, sel.numel(), step):
                f = sel[c : c + step]
                px = x0[f, None] + ox.to(dt)  # (n, s*s)
                py = y0[f, None] + oy.to(dt)
                ok = (px <= x1[f, None]) & (py <= y1[f, None])
                cx, cy = px + 0.5, py + 0.5
                ax, bx, qx = xs[f, 0, None], xs[f, 1, None], xs[f, 2, None]
                ay, by, qy = ys[f, 0, None], ys[f, 1, None], ys[f, 2, None]
                ar = area[f, None]
                w0 = ((bx - cx) * (qy - cy) - (qx - cx) * (by - cy)) / ar
                w1 = ((qx - cx) * (ay - cy) - (ax - cx) * (qy - cy)) / ar
                w2 = 1.0 - w0 - w1
                eps = -1e-7
                ok = ok & (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
                idx = ok.nonzero(as_tuple=True)
                if idx[0].numel() == 0:
                    continue
                w = torch.stack([w0[idx], w1[idx], w2[idx]], 1).clamp(min=0)
                ff = f[idx[0]]
                inv = w / zs[ff]
                sinv = inv.sum(1)
                pix_l.append((py[idx] * width + px[idx]).long())
                dep_l.append(1.0 / sinv)
                face_l.append(ff)
                bary_l.append(inv / sinv[:, None])
        lo, s = s, s * 2

    face_index = torch.full((npix,), -1, dtype=torch.long, device=dev)
    bary = torch.zeros(npix, 3, dtype=dt, device=dev)
    depth = torch.full((npix,), float("inf"), dtype=dt, device=dev)
    if pix_l:
        pix = torch.cat(pix_l)
        dep = torch.cat(dep_l)
        depth = depth.scatter_reduce(0, pix, dep, reduce="amin")
        win = (dep <= depth[pix]).nonzero().squeeze(1)
        cand = torch.full((npix,), -1, dtype=torch.long, device=dev)
        cand = cand.scatter_reduce(0, pix[win], win, reduce="amax")
        hit = (cand >= 0).nonzero().squeeze(1)
        face_index[hit] = torch.cat(face_l)[cand[hit]]
        bary[hit] = torch.cat(bary_l)[cand[hit]]
    return Fragments(face_index.view(height, width), bary.view(height, width, 3), depth.view(height, width))


def interpolate(fragments: Fragments, faces: Tensor, attributes: Tensor) -> Tensor:
    """Interpolate per-vertex attributes at every pixel with the fragments' barycentrics.

    Args:
        fragments: output of :func:`rasterize` for the same ``faces``.
        faces: ``(F, 3)`` integer vertex indices.
        attributes: ``(V, D)`` per-vertex values (colours, normals, 3D points in any frame).

    Returns:
        ``(H, W, D)`` interpolated values, zeros where nothing is drawn.

    Raises:
        TypeError: ``attributes`` is not floating.
        ValueError: ``attributes`` is not 2-D.
    """
    fn = "interpolate"
    check_floating(attributes, "attributes", fn=fn)
    check_shape(attributes, "V,D", "attributes", fn=fn)
    fi = fragments.face_index.clamp(min=0)
    corner = attributes[faces.long()[fi]]  # (H, W, 3, D)
    out = (corner * fragments.bary.to(attributes.dtype)[..., None]).sum(-2)
    return out * fragments.mask[..., None].to(out.dtype)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals (right-handed winding ``(a, b, c)`` -> ``(b-a) x (c-a)``).

    Args:
        vertices: ``(V, 3)`` positions.
        faces: ``(F, 3)`` integer vertex indices.

    Returns:
        ``(V, 3)`` unit normals (zero for unreferenced vertices).

    Raises:
        TypeError: ``vertices`` is not floating.
        ValueError: wrong shapes.
    """
    fn = "vertex_normals"
    check_floating(vertices, "vertices", fn=fn)
    check_shape(vertices, "V,3", "vertices", fn=fn)
    check_shape(faces, "F,3", "faces", fn=fn)
    f = faces.long()
    a, b, c = vertices[f[:, 0]], vertices[f[:, 1]], vertices[f[:, 2]]
    n = torch.linalg.cross(b - a, c - a)
    out = torch.zeros_like(vertices)
    for k in range(3):
        out.index_add_(0, f[:, k], n)
    return torch.nn.functional.normalize(out, dim=-1, eps=1e-12)


def shade(
    albedo: Tensor,
    normals: Tensor,
    points: Tensor,
    light_dir: Tensor,
    *,
    ambient: float = 0.35,
    diffuse: float = 0.75,
    specular: float = 0.15,
    shininess: float = 24.0,
) -> Tensor:
    """Lambert + Blinn-Phong shading of surface points seen from a camera at the origin.

    ``I = albedo * (ambient + diffuse * max(0, n.l)) + specular * max(0, n.h)^shininess`` with
    ``h = normalize(l + v)``, ``v`` the unit vector from the point to the camera. Normals are flipped to
    face the camera (two-sided lighting).

    Args:
        albedo: ``(..., 3)`` colours in [0, 1].
        normals: ``(..., 3)`` surface normals in camera coordinates.
        points: ``(..., 3)`` surface points in camera coordinates.
        light_dir: ``(3,)`` direction *towards* the light, camera coordinates.
        ambient: ambient weight.
        diffuse: diffuse weight.
        specular: specular weight.
        shininess: Blinn-Phong exponent.

    Returns:
        ``(..., 3)`` shaded colours clamped to [0, 1].

    Raises:
        TypeError: a tensor argument is not floating.
        ValueError: mismatched shapes.
    """
    fn = "shade"
    for name, t in (("albedo", albedo), ("normals", normals), ("points", points)):
        check_floating(t, name, fn=fn)
        check_shape(t, "*,3", name, fn=fn)
    check_shape(light_dir, "3", "light_dir", fn=fn)
    if normals.shape != points.shape:
        raise ValueError(
            f"{fn}: 'normals' and 'points' must have one shape; got {normals.shape} and {points.shape}"
        )
    v = torch.nn.functional.normalize(-points, dim=-1, eps=1e-12)
    n = torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)
    n = torch.where((n * v).sum(-1, keepdim=True) < 0, -n, n)
    ldir = torch.nn.functional.normalize(light_dir.to(points), dim=0)
    ndl = (n * ldir).sum(-1, keepdim=True).clamp(min=0)
    h = torch.nn.functional.normalize(ldir + v, dim=-1, eps=1e-12)
    spec = (n * h).sum(-1, keepdim=True).clamp(min=0) ** shininess
    return (albedo * (ambient + diffuse * ndl) + specular * spec * (ndl > 0)).clamp(0, 1)
