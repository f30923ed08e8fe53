"""Small mesh-geometry helpers: vertex normals, polygon triangulation, midpoint subdivision, similarity
transforms."""

from __future__ import annotations

import torch

from ._checks import check_floating, check_shape, check_tensor

__all__ = ["axis_angle_to_matrix", "similarity_transform", "subdivide", "triangulate", "vertex_normals"]


def triangulate(polygons: torch.Tensor) -> torch.Tensor:
    """Split quads (and pass triangles) into triangles, fan-wise.

    Args:
        polygons: (F, 3) or (F, 4) long vertex indices; in the (F, 4) form a triangle is padded with -1
            in its last column (the ICT-FaceKit convention).

    Returns:
        (T, 3) long triangle indices: quad ``(a, b, c, d)`` becomes ``(a, b, c)`` and ``(a, c, d)``.

    Raises:
        TypeError: ``polygons`` is not an integer tensor.
        ValueError: it does not have 3 or 4 columns.

    Examples:
        >>> triangulate(torch.tensor([[0, 1, 2, 3], [0, 2, 4, -1]])).tolist()
        [[0, 1, 2], [0, 2, 4], [0, 2, 3]]
    """
    fn = "triangulate"
    check_tensor(polygons, "polygons", fn=fn)
    if polygons.is_floating_point() or polygons.dtype == torch.bool:
        raise TypeError(f"{fn}: 'polygons' must be an integer tensor; got {polygons.dtype}")
    if polygons.ndim != 2 or polygons.shape[1] not in (3, 4):
        raise ValueError(f"{fn}: 'polygons' must have shape (F, 3) or (F, 4); got {tuple(polygons.shape)}")
    polygons = polygons.long()
    if polygons.shape[1] == 3:
        return polygons
    first = polygons[:, [0, 1, 2]]
    quad = polygons[:, 3] >= 0
    second = polygons[quad][:, [0, 2, 3]]
    return torch.cat([first, second], dim=0)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (differentiable).

    Args:
        vertices: (B, V, 3) or (V, 3) positions.
        faces: (F, 3) long triangle indices, counter-clockwise seen from outside.

    Returns:
        Unit normals with the shape of ``vertices``; isolated vertices get the zero vector.

    Examples:
        >>> v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
        >>> vertex_normals(v, torch.tensor([[0, 1, 2]]))[0].tolist()
        [0.0, 0.0, 1.0]
    """
    fn = "vertex_normals"
    check_floating(vertices, "vertices", fn=fn)
    check_shape(vertices, "*,V,3", "vertices", fn=fn)
    check_shape(faces, "F,3", "faces", fn=fn)
    squeeze = vertices.ndim == 2
    v = vertices.unsqueeze(0) if squeeze else vertices
    f = faces.long()
    a, b, c = v[:, f[:, 0]], v[:, f[:, 1]], v[:, f[:, 2]]
    fn_ = torch.linalg.cross(b - a, c - a, dim=-1)
    n = torch.zeros_like(v)
    for k in range(3):
        n = n.index_add(1, f[:, k], fn_)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return n.squeeze(0) if squeeze else n


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, stable at zero angle (differentiable).

    Args:
        axis_angle: (..., 3) rotation vectors in radians.

    Returns:
        (..., 3, 3) rotation matrices.

    Examples:
        >>> import math
        >>> r = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
        >>> [round(x, 4) + 0.0 for x in (r @ torch.tensor([1.0, 0.0, 0.0])).tolist()]
        [0.0, 1.0, 0.0]
    """
    fn = "axis_angle_to_matrix"
    check_floating(axis_angle, "axis_angle", fn=fn)
    check_shape(axis_angle, "*,3", "axis_angle", fn=fn)
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-20)
    small = theta2 < 1e-8
    # sin(t)/t and (1-cos t)/t^2 with Taylor fallbacks near 0
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-20))
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def similarity_transform(
    points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Apply ``x -> s R x + t`` (rotation as axis-angle).

    Args:
        points: (B, N, 3) points.
        rotation: (B, 3) axis-angle.
        translation: (B, 3).
        scale: (B,) or (B, 1) positive scales.

    Returns:
        (B, N, 3) transformed points.
    """
    fn = "similarity_transform"
    dims = check_shape(points, "B,N,3", "points", fn=fn)
    check_shape(rotation, "B,3", "rotation", fn=fn, dims=dims)
    check_shape(translation, "B,3", "translation", fn=fn, dims=dims)
    r = axis_angle_to_matrix(rotation)
    s = scale.reshape(-1, 1, 1)
    return s * (points @ r.transpose(1, 2)) + translation[:, None, :]


def _split_edges(tri: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique undirected edges of (F, 3) triangles and, per triangle, the index ``n + edge`` of the
    midpoints of its edges (ab, bc, ca)."""
    e = torch.stack([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], 1)  # (F, 3, 2)
    uniq, inv = torch.unique(e.sort(-1).values.reshape(-1, 2), dim=0, return_inverse=True)
    return uniq, n + inv.view(-1, 3)


def _four(tri: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
    a, b, c = tri.unbind(1)
    ab, bc, ca = mid.unbind(1)
    return torch.stack(
        [torch.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))], 1
    ).reshape(-1, 3)


def subdivide(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    *,
    uvs: torch.Tensor | None = None,
    face_uvs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One level of midpoint (1-to-4, linear) subdivision that keeps corner UVs.

    Every edge gets a vertex at its midpoint, shared by the triangles on both sides; each triangle
    ``(a, b, c)`` becomes ``(a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca)``, so triangle ``i`` of the
    input becomes triangles ``4i .. 4i+3``. UVs are split the same way over the corner-UV triangles, so
    seams stay seams. The surface does not move (no smoothing): the detail comes from a displacement map.

    Args:
        vertices: (V, 3) or (B, V, 3) positions.
        faces: (F, 3) long triangles.
        uvs: optional (T, 2) texture coordinates.
        face_uvs: (F, 3) long corner UV indices, required with ``uvs``.

    Returns:
        ``(vertices, faces, uvs, face_uvs)``: (V + E, 3) or (B, V + E, 3) positions (the original vertices
        first, then one per unique edge), (4F, 3) faces, and the same for the UVs (``None`` without them).

    Raises:
        TypeError: non-float positions or UVs, or non-integer indices.
        ValueError: bad shapes, ``uvs`` without ``face_uvs``, or indices out of range.

    Examples:
        >>> v = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [2, 2, 0]])
        >>> v2, f2, _, _ = subdivide(v, torch.tensor([[0, 1, 2], [1, 3, 2]]))
        >>> v2.shape, f2.shape  # 4 + 5 edges (the shared one once), 2 x 4 triangles
        (torch.Size([9, 3]), torch.Size([8, 3]))
    """
    fn = "subdivide"
    check_floating(vertices, "vertices", fn=fn)
    check_tensor(faces, "faces", fn=fn)
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise TypeError(f"{fn}: 'faces' must be an integer tensor; got {faces.dtype}")
    dims = check_shape(faces, "F,3", "faces", fn=fn)
    if vertices.ndim not in (2, 3) or vertices.shape[-1] != 3:
        raise ValueError(f"{fn}: 'vertices' must have shape (V, 3) or (B, V, 3); got {tuple(vertices.shape)}")
    if (uvs is None) != (face_uvs is None):
        raise ValueError(f"{fn}: 'uvs' and 'face_uvs' must be given together; got only one")
    if uvs is not None and face_uvs is not None:
        check_floating(uvs, "uvs", fn=fn)
        check_shape(uvs, "T,2", "uvs", fn=fn)
        check_tensor(face_uvs, "face_uvs", fn=fn)
        if face_uvs.is_floating_point() or face_uvs.dtype == torch.bool:
            raise TypeError(f"{fn}: 'face_uvs' must be an integer tensor; got {face_uvs.dtype}")
        check_shape(face_uvs, "F,3", "face_uvs", fn=fn, dims=dims)
    n = vertices.shape[-2]
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= n):
        raise ValueError(
            f"{fn}: 'faces' must index the {n} vertices (0 .. {n - 1}); "
            f"got indices in [{int(faces.min())}, {int(faces.max())}]"
        )
    if uvs is not None and face_uvs is not None and face_uvs.numel():
        t = uvs.shape[0]
        if int(face_uvs.min()) < 0 or int(face_uvs.max()) >= t:
            raise ValueError(
                f"{fn}: 'face_uvs' must index the {t} uvs (0 .. {t - 1}); "
                f"got indices in [{int(face_uvs.min())}, {int(face_uvs.max())}]"
            )
    faces = faces.long()
    edges, mid = _split_edges(faces, n)
    new_v = torch.cat([vertices, 0.5 * (vertices[..., edges[:, 0], :] + vertices[..., edges[:, 1], :])], -2)
    new_f = _four(faces, mid)
    new_uv = new_fuv = None
    if uvs is not None and face_uvs is not None:
        fuv = face_uvs.long()
        uv_edges, uv_mid = _split_edges(fuv, uvs.shape[0])
        new_uv = torch.cat([uvs, 0.5 * (uvs[uv_edges[:, 0]] + uvs[uv_edges[:, 1]])], 0)
        new_fuv = _four(fuv, uv_mid)
    return new_v, new_f, new_uv, new_fuv
