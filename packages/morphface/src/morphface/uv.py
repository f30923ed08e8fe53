"""UV-space rasterisation of per-vertex attributes and sampling of UV maps back onto vertices.

All in plain torch. Rasterisation computes, once per UV layout, which triangle covers each texel and its
barycentric weights (not differentiable w.r.t. the layout, which is fixed); interpolating attributes
through that raster and sampling maps with ``grid_sample`` are differentiable w.r.t. attributes and maps.

Convention:
    UV ``(u, v)`` in [0, 1] with v pointing up (OBJ convention); texel ``(row, col)`` of an ``(H, W)`` map
    covers ``u in [col/W, (col+1)/W]``, ``v in [1-(row+1)/H, 1-row/H]``, i.e. row 0 is the top (v = 1).
    UDIM-style tiles: tile ``k`` holds ``u in [k, k+1]``. Maps are ``(B, C, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import _compiling, check_floating, check_index, check_shape, check_tensor
from ._raster import interpolate_attributes, rasterize_triangles
from .geometry import vertex_normals

__all__ = [
    "UVRaster",
    "UVRasterizer",
    "fill_uv_holes",
    "geometry_maps",
    "rasterize_uv",
    "sample_uv",
    "uv_maps",
    "vertex_uvs",
]


@dataclass
class UVRaster:
    """Texel-to-triangle lookup of one UV layout.

    Attributes:
        face_index: (H, W) long triangle index per texel, -1 where no triangle covers it.
        bary: (H, W, 3) barycentric weights of the texel centre in that triangle.
    """

    face_index: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(H, W) bool coverage."""
        return self.face_index >= 0


def _resolution(resolution: int | tuple[int, int], fn: str) -> tuple[int, int]:
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    if len(resolution) != 2 or any((not isinstance(r, int)) or r < 1 for r in resolution):
        raise ValueError(f"{fn}: 'resolution' must be a positive int or (H, W); got {resolution!r}")
    return int(resolution[0]), int(resolution[1])


def rasterize_uv(
    uvs: torch.Tensor,
    face_uvs: torch.Tensor,
    resolution: int | tuple[int, int],
    *,
    face_mask: torch.Tensor | None = None,
    tile: int = 0,
) -> UVRaster:
    """Find, for every texel centre, the triangle that covers it in UV space and its barycentrics.

    Args:
        uvs: (T, 2) texture coordinates.
        face_uvs: (F, 3) long indices into ``uvs`` per triangle corner.
        resolution: ``H = W`` as an int, or ``(H, W)``.
        face_mask: optional (F,) bool, the triangles to rasterise (e.g. ICT's ``M_Face`` tile).
        tile: UDIM tile whose ``u in [tile, tile+1]`` is mapped to the image.

    Returns:
        A :class:`UVRaster` on the device of ``uvs``.

    Raises:
        TypeError: non-float ``uvs`` or non-integer ``face_uvs``.
        ValueError: bad shapes, resolution or indices.

    Examples:
        >>> uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> r = rasterize_uv(uv, torch.tensor([[0, 1, 2]]), 4)
        >>> int(r.mask.sum())  # texel centres strictly below the diagonal u + v = 1, plus the diagonal ones
        10
    """
    fn = "rasterize_uv"
    check_floating(uvs, "uvs", fn=fn)
    check_shape(uvs, "T,2", "uvs", fn=fn)
    dims = check_shape(face_uvs, "F,3", "face_uvs", fn=fn)
    if face_uvs.is_floating_point():
        raise TypeError(f"{fn}: 'face_uvs' must be an integer tensor; got {face_uvs.dtype}")
    if face_uvs.numel() and (int(face_uvs.min()) < 0 or int(face_uvs.max()) >= uvs.shape[0]):
        raise ValueError(
            f"{fn}: 'face_uvs' must index [0, {uvs.shape[0] - 1}]; got [{int(face_uvs.min())}, {int(face_uvs.max())}]"
        )
    height, width = _resolution(resolution, fn)
    idx = torch.arange(face_uvs.shape[0], device=uvs.device)
    if face_mask is not None:
        check_shape(face_mask, "F", "face_mask", fn=fn, dims=dims)
        idx = idx[face_mask.to(uvs.device, torch.bool)]
    corner = uvs[face_uvs[idx].to(uvs.device)]  # (F', 3, 2)
    xy = torch.stack([(corner[..., 0] - tile) * width, (1.0 - corner[..., 1]) * height], dim=-1)
    local, bary = rasterize_triangles(xy.double(), height, width)
    face_index = torch.where(local >= 0, idx[local.clamp_min(0)], local)
    return UVRaster(face_index, bary.to(uvs.dtype))


def uv_maps(
    vertex_attributes: torch.Tensor, faces: torch.Tensor, raster: UVRaster
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise per-vertex attributes into UV maps by barycentric interpolation (differentiable).

    Args:
        vertex_attributes: (B, V, C) or (V, C) values per vertex.
        faces: (F, 3) long triangle vertex indices (same triangle order as the raster's ``face_uvs``).
        raster: the layout's :class:`UVRaster`.

    Returns:
        ``(maps, mask)``: (B, C, H, W) maps (0 outside the layout) and the (H, W) bool mask.

    Raises:
        TypeError: non-float attributes or non-integer faces.
        ValueError: bad shapes, face indices outside the vertices, or a raster of more triangles than
            ``faces``.

    Examples:
        >>> uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> f = torch.tensor([[0, 1, 2]])
        >>> maps, mask = uv_maps(uv, f, rasterize_uv(uv, f, 4))  # the UVs themselves as attribute
        >>> maps.shape
        torch.Size([1, 2, 4, 4])
    """
    fn = "uv_maps"
    check_floating(vertex_attributes, "vertex_attributes", fn=fn)
    attr = vertex_attributes.unsqueeze(0) if vertex_attributes.ndim == 2 else vertex_attributes
    dims = check_shape(attr, "B,V,C", "vertex_attributes", fn=fn)
    check_shape(faces, "F,3", "faces", fn=fn)
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise TypeError(f"{fn}: 'faces' must be an integer tensor; got {faces.dtype}")
    check_index(faces, dims["V"], "faces", fn=fn)
    if not _compiling() and raster.face_index.numel() and int(raster.face_index.max()) >= faces.shape[0]:
        raise ValueError(
            f"{fn}: 'raster' refers to triangle {int(raster.face_index.max())} but 'faces' has "
            f"{faces.shape[0]}; rasterise the same triangles (in the same order) as 'faces'"
        )
    fi = raster.face_index.to(attr.device)
    return interpolate_attributes(attr, faces.to(attr.device).long(), fi, raster.bary.to(attr.device))


def geometry_maps(
    vertices: torch.Tensor, faces: torch.Tensor, raster: UVRaster, *, mean: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Position ("geometry") and normal maps of a batch of meshes, the CNN's view of geometry.

    Args:
        vertices: (B, V, 3) positions.
        faces: (F, 3) long triangles.
        raster: the UV layout's :class:`UVRaster`.
        mean: optional (V, 3) mean shape; when given the position map holds offsets ``vertices - mean``.

    Returns:
        ``(positions, normals, mask)``: (B, 3, H, W), (B, 3, H, W) unit normals, (H, W) bool.
    """
    fn = "geometry_maps"
    check_floating(vertices, "vertices", fn=fn)
    dims = check_shape(vertices, "B,V,3", "vertices", fn=fn)
    pos = vertices
    if mean is not None:
        check_shape(mean, "V,3", "mean", fn=fn, dims=dims)
        pos = vertices - mean
    normals = vertex_normals(vertices, faces)
    maps, mask = uv_maps(torch.cat([pos, normals], dim=-1), faces, raster)
    n = maps[:, 3:]
    n = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return maps[:, :3], n * mask, mask


def vertex_uvs(
    faces: torch.Tensor, face_uvs: torch.Tensor, uvs: torch.Tensor, n_vertices: int
) -> torch.Tensor:
    """One UV per vertex (the last corner that references it wins; seams pick one side).

    Args:
        faces: (F, 3) long triangle vertex indices.
        face_uvs: (F, 3) long corner UV indices.
        uvs: (T, 2) texture coordinates.
        n_vertices: V.

    Returns:
        (V, 2) UVs; vertices referenced by no triangle get ``NaN``.
    """
    fn = "vertex_uvs"
    dims = check_shape(faces, "F,3", "faces", fn=fn)
    check_shape(face_uvs, "F,3", "face_uvs", fn=fn, dims=dims)
    check_shape(uvs, "T,2", "uvs", fn=fn)
    out = uvs.new_full((n_vertices, 2), float("nan"))
    out[faces.flatten().long()] = uvs[face_uvs.flatten().long()]
    return out


def sample_uv(maps: torch.Tensor, uv: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Sample UV maps at given UV coordinates (differentiable in ``maps`` and ``uv``).

    Args:
        maps: (B, C, H, W) UV maps.
        uv: (N, 2) or (B, N, 2) coordinates in [0, 1] (v up).
        mode: ``"bilinear"`` or ``"nearest"``.

    Returns:
        (B, N, C) sampled values (border texels are repeated outside [0, 1]).

    Raises:
        ValueError: bad shapes or mode.

    Examples:
        >>> m = torch.arange(4.0).view(1, 1, 2, 2)  # rows top->bottom: [0, 1], [2, 3]
        >>> sample_uv(m, torch.tensor([[0.25, 0.75]])).flatten().tolist()  # centre of the top-left texel
        [0.0]
    """
    fn = "sample_uv"
    check_floating(maps, "maps", fn=fn)
    dims = check_shape(maps, "B,C,H,W", "maps", fn=fn)
    check_tensor(uv, "uv", fn=fn)
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"{fn}: 'mode' must be 'bilinear' or 'nearest'; got {mode!r}")
    if uv.ndim == 2:
        check_shape(uv, "N,2", "uv", fn=fn)
        uv = uv.unsqueeze(0).expand(dims["B"], -1, -1)
    check_shape(uv, "B,N,2", "uv", fn=fn, dims=dims)
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1).to(maps.dtype).unsqueeze(1)
    out = F.grid_sample(maps, grid, mode=mode, padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def fill_uv_holes(maps: torch.Tensor, mask: torch.Tensor, *, iterations: int = 8) -> torch.Tensor:
    """Extend map values outwards from covered texels (3x3 average dilation), so sampling near seams and
    bilinear filtering at the layout's border do not blend in zeros.

    Args:
        maps: (B, C, H, W).
        mask: (H, W) or (B, 1, H, W) bool coverage.
        iterations: number of one-texel dilation steps.

    Returns:
        (B, C, H, W) maps equal to ``maps`` where covered.

    Raises:
        TypeError: non-float maps or a non-tensor mask.
        ValueError: bad shapes or a negative ``iterations``.
    """
    fn = "fill_uv_holes"
    check_floating(maps, "maps", fn=fn)
    dims = check_shape(maps, "B,C,H,W", "maps", fn=fn)
    check_tensor(mask, "mask", fn=fn)
    if tuple(mask.shape) not in ((dims["H"], dims["W"]), (dims["B"], 1, dims["H"], dims["W"])):
        raise ValueError(
            f"{fn}: 'mask' must have shape ({dims['H']}, {dims['W']}) or "
            f"({dims['B']}, 1, {dims['H']}, {dims['W']}); got {tuple(mask.shape)}"
        )
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"{fn}: 'iterations' must be an int >= 0; got {iterations!r}")
    m = mask.to(maps.dtype)
    m = m.view(1, 1, *m.shape[-2:]).expand(maps.shape[0], 1, -1, -1) if m.ndim == 2 else m
    out = maps * m
    for _ in range(iterations):
        s = F.avg_pool2d(out, 3, 1, 1, count_include_pad=False)
        c = F.avg_pool2d(m, 3, 1, 1, count_include_pad=False)
        grown = (c > 0).to(maps.dtype)
        out = torch.where(m > 0, out, s / c.clamp_min(1e-12) * grown)
        m = torch.maximum(m, grown)
    return out


class UVRasterizer(nn.Module):
    """Module twin of :func:`uv_maps`: holds one UV layout's raster and maps vertex attributes into UV.

    Args:
        faces: (F, 3) long triangle vertex indices.
        uvs: (T, 2) texture coordinates.
        face_uvs: (F, 3) corner UV indices.
        resolution: ``H = W`` or ``(H, W)``.
        face_mask: optional (F,) bool triangles to include.
        tile: UDIM tile.
        device: device of the buffers.

    Shape:
        - Input: (B, V, C). Output: (B, C, H, W).

    Examples:
        >>> uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> f = torch.tensor([[0, 1, 2]])
        >>> UVRasterizer(f, uv, f, 8)(torch.ones(1, 3, 1)).shape
        torch.Size([1, 1, 8, 8])
    """

    face_index: torch.Tensor
    bary: torch.Tensor
    faces: torch.Tensor

    def __init__(
        self,
        faces: torch.Tensor,
        uvs: torch.Tensor,
        face_uvs: torch.Tensor,
        resolution: int | tuple[int, int],
        *,
        face_mask: torch.Tensor | None = None,
        tile: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        raster = rasterize_uv(uvs, face_uvs, resolution, face_mask=face_mask, tile=tile)
        self.resolution = _resolution(resolution, "UVRasterizer")
        self.register_buffer("faces", faces.long().to(device), persistent=False)
        self.register_buffer("face_index", raster.face_index.to(device), persistent=False)
        self.register_buffer("bary", raster.bary.to(device), persistent=False)

    @property
    def raster(self) -> UVRaster:
        """The layout's :class:`UVRaster`."""
        return UVRaster(self.face_index, self.bary)

    @property
    def mask(self) -> torch.Tensor:
        """(H, W) bool coverage."""
        return self.face_index >= 0

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, covered={int(self.mask.sum())}"

    def forward(self, vertex_attributes: torch.Tensor) -> torch.Tensor:
        """Rasterise attributes.

        Args:
            vertex_attributes: (B, V, C).

        Returns:
            (B, C, H, W) maps.
        """
        return uv_maps(vertex_attributes, self.faces, self.raster)[0]
