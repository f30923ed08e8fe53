"""Procedural meshes for unit tests (no data needed)."""

from __future__ import annotations

import torch


def grid_mesh(
    n: int = 6, *, margin: float = 0.1, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
):
    """A flat (n x n)-vertex grid in the unit square with UV = xy mapped to [margin, 1 - margin].

    Returns (vertices (V, 3), faces (F, 3), uvs (V, 2), face_uvs (F, 3)); vertex k has UV k.
    """
    lin = torch.linspace(margin, 1 - margin, n, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    uvs = torch.stack([xx.flatten(), yy.flatten()], -1)
    verts = torch.cat([uvs, torch.zeros(n * n, 1, dtype=dtype, device=device)], -1)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            faces += [[a, b, e], [a, e, d]]
    f = torch.tensor(faces, dtype=torch.long, device=device)
    return verts, f, uvs, f.clone()


def synthetic_model(
    n_vertices: int = 30,
    n_identity: int = 4,
    n_expression: int = 2,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
):
    """A LinearFaceModel with an orthogonal identity basis of known stds and random blendshapes."""
    from morphface import LinearFaceModel

    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n_vertices, 3, generator=g, dtype=dtype) * 5
    q, _ = torch.linalg.qr(torch.randn(n_vertices * 3, n_identity, generator=g, dtype=dtype))
    std = torch.linspace(3.0, 0.5, n_identity, dtype=dtype)
    basis = (q.T * std[:, None]).view(n_identity, n_vertices, 3)
    expr = torch.randn(n_expression, n_vertices, 3, generator=g, dtype=dtype) * 0.5
    lm = torch.arange(0, n_vertices, 2)
    return LinearFaceModel(mean, basis, expr, landmark_indices=lm, device=device, dtype=dtype), std
