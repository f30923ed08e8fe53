"""Plain-torch triangle rasteriser shared by UV rasterisation and preview rendering (private).

Every triangle's pixel bounding box is enumerated in one vectorised pass (no Python loop over triangles),
barycentric coordinates are computed for each (triangle, pixel) candidate, and the candidates inside the
triangle are kept. Ties go to the nearest candidate when ``depth`` is given, otherwise to the last one.

Convention: pixel ``(row, col)`` has its centre at ``(x, y) = (col + 0.5, row + 0.5)``; ``x`` runs along
the width, ``y`` along the height.
"""

from __future__ import annotations

import torch

_EPS = 1e-12


def rasterize_triangles(
    xy: torch.Tensor,
    height: int,
    width: int,
    *,
    depth: torch.Tensor | None = None,
    chunk: int = 4_000_000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise triangles given in pixel coordinates.

    Args:
        xy: (F, 3, 2) float corner positions in pixels.
        height: image height H.
        width: image width W.
        depth: optional (F, 3) depth per corner; the smallest interpolated depth wins.
        chunk: maximal number of (triangle, pixel) candidates processed at once.

    Returns:
        ``(face_index, bary)``: (H, W) long triangle index, -1 where empty; (H, W, 3) barycentric weights
        (zeros where empty), in the dtype of ``xy``.
    """
    dev = xy.device
    n_faces = xy.shape[0]
    face_index = torch.full((height * width,), -1, dtype=torch.long, device=dev)
    bary_out = xy.new_zeros(height * width, 3)
    zbuf = xy.new_full((height * width,), float("inf")) if depth is not None else None
    if n_faces == 0:
        return face_index.view(height, width), bary_out.view(height, width, 3)
    with torch.no_grad():
        lo = torch.floor(xy.min(dim=1).values - 0.5).long() + 1  # first pixel whose centre >= min
        hi = torch.floor(xy.max(dim=1).values - 0.5).long()  # last pixel whose centre <= max
        lo[:, 0].clamp_(0, width)
        lo[:, 1].clamp_(0, height)
        hi[:, 0].clamp_(-1, width - 1)
        hi[:, 1].clamp_(-1, height - 1)
        bw = (hi[:, 0] - lo[:, 0] + 1).clamp_min(0)
        bh = (hi[:, 1] - lo[:, 1] + 1).clamp_min(0)
        counts = bw * bh
        keep = torch.nonzero(counts > 0).flatten()
        if keep.numel() == 0:
            return face_index.view(height, width), bary_out.view(height, width, 3)
        # process faces in groups whose candidate total stays under ``chunk``
        cum = torch.cumsum(counts[keep], 0)
        group = torch.div(cum - 1, chunk, rounding_mode="floor")
        for g in torch.unique(group).tolist():
            fids = keep[group == g]
            c = counts[fids]
            fi = torch.repeat_interleave(fids, c)
            start = torch.cumsum(c, 0) - c
            local = torch.arange(fi.numel(), device=dev) - torch.repeat_interleave(start, c)
            bwf = bw[fi]
            px = lo[fi, 0] + local % bwf
            py = lo[fi, 1] + torch.div(local, bwf, rounding_mode="floor")
            p = torch.stack([px.to(xy.dtype) + 0.5, py.to(xy.dtype) + 0.5], dim=-1)
            tri = xy[fi]
            a, b, c3 = tri[:, 0], tri[:, 1], tri[:, 2]
            v0, v1, v2 = b - a, c3 - a, p - a
            den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
            ok = den.abs() > _EPS
            den = torch.where(ok, den, torch.ones_like(den))
            w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
            w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
            w0 = 1.0 - w1 - w2
            tol = -1e-7
            inside = ok & (w0 >= tol) & (w1 >= tol) & (w2 >= tol)
            if not bool(inside.any()):
                continue
            fi, px, py = fi[inside], px[inside], py[inside]
            w = torch.stack([w0[inside], w1[inside], w2[inside]], dim=-1)
            pix = py * width + px
            if depth is not None and zbuf is not None:
                z = (w * depth[fi].to(xy.dtype)).sum(-1)
                zbuf.scatter_reduce_(0, pix, z, reduce="amin")
                win = z <= zbuf[pix]
                fi, pix, w = fi[win], pix[win], w[win]
            face_index[pix] = fi
            bary_out[pix] = w
    return face_index.view(height, width), bary_out.view(height, width, 3)


def interpolate_attributes(
    attributes: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor, bary: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Barycentric interpolation of per-vertex attributes (differentiable in ``attributes``).

    Args:
        attributes: (B, V, C) per-vertex values.
        faces: (F, 3) long vertex indices.
        face_index: (H, W) long, -1 where empty.
        bary: (H, W, 3) barycentric weights.

    Returns:
        ``(maps, mask)``: (B, C, H, W) interpolated values (0 where empty) and a (H, W) bool coverage mask.
    """
    height, width = face_index.shape
    mask = face_index >= 0
    flat = face_index.flatten().clamp_min(0)
    corner = faces[flat]  # (P, 3)
    vals = attributes[:, corner]  # (B, P, 3, C)
    w = (bary.reshape(-1, 3) * mask.flatten().unsqueeze(-1)).to(attributes.dtype)
    out = (vals * w[None, :, :, None]).sum(2)  # (B, P, C)
    return out.permute(0, 2, 1).reshape(attributes.shape[0], -1, height, width), mask
