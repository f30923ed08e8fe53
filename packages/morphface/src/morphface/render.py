"""A small plain-torch preview renderer: z-buffered triangle rasterisation, Lambert + Blinn-Phong shading.

Meant for looking at generated faces as PNGs, not for inverse rendering (visibility is not differentiable,
shading is).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_floating, check_index, check_int, check_positive, check_shape
from ._raster import rasterize_triangles
from .fit import PerspectiveCamera, project_points
from .geometry import vertex_normals

__all__ = ["default_camera", "render_preview"]


def default_camera(
    vertices: torch.Tensor, resolution: int, *, fov_deg: float = 20.0, margin: float = 1.15
) -> tuple[PerspectiveCamera, torch.Tensor]:
    """A camera looking down -z at the mesh, framing its bounding box.

    Args:
        vertices: (V, 3) positions (the face looks along +z).
        resolution: image size in pixels.
        fov_deg: vertical field of view.
        margin: framing margin (> 1 leaves a border).

    Returns:
        ``(camera, offset)``: the camera and the (3,) translation that moves the mesh into eye space.
    """
    lo, hi = vertices.min(0).values, vertices.max(0).values
    centre = (lo + hi) / 2
    half = float((hi - lo)[:2].max()) / 2 * margin
    focal = resolution / 2 / torch.tan(torch.tensor(fov_deg / 2 * torch.pi / 180)).item()
    dist = half * focal / (resolution / 2) + float(hi[2] - centre[2])
    offset = -centre + centre.new_tensor([0.0, 0.0, -dist])
    return PerspectiveCamera(focal, resolution / 2, resolution / 2), offset


def render_preview(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    *,
    resolution: int = 256,
    albedo: torch.Tensor | None = None,
    specular: torch.Tensor | float = 0.1,
    uvs: torch.Tensor | None = None,
    face_uvs: torch.Tensor | None = None,
    uv_face_mask: torch.Tensor | None = None,
    camera: PerspectiveCamera | None = None,
    light_dir: tuple[float, float, float] = (0.3, 0.4, 1.0),
    ambient: float = 0.15,
    shininess: float = 32.0,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    gamma: float = 2.2,
) -> torch.Tensor:
    """Render a mesh with Lambert diffuse + Blinn-Phong specular under one directional light.

    ``colour = albedo * (ambient + max(0, n.l)) + specular * max(0, n.h)^shininess``, then ``^(1/gamma)``.

    Args:
        vertices: (V, 3) positions in the model frame (face looking along +z) or, with ``camera``,
            eye space (camera at the origin looking down -z).
        faces: (F, 3) long triangles.
        resolution: image size (square).
        albedo: None (grey), a (V, 3) per-vertex colour, or a (3, H, W) UV map (needs ``uvs``/``face_uvs``);
            linear RGB in [0, 1].
        specular: a scalar, (V,) per-vertex, or (1, H, W) UV map of specular intensity.
        uvs: (T, 2) texture coordinates for UV maps.
        face_uvs: (F, 3) corner UV indices.
        uv_face_mask: optional (F,) bool, the triangles textured by the UV maps (others stay grey with the
            scalar specular 0.1), e.g. ICT's face tile, whose UV square other parts (eyeballs) overlap.
        camera: optional camera; ``None`` frames the mesh with :func:`default_camera`.
        light_dir: direction towards the light in eye space.
        ambient: ambient term.
        shininess: Blinn-Phong exponent.
        background: RGB of empty pixels.
        gamma: display gamma (1 = linear output).

    Returns:
        (H, W, 3) image in [0, 1], on the device/dtype of ``vertices``.

    Raises:
        TypeError: non-float vertices, non-integer faces or resolution.
        ValueError: bad shapes, out-of-range face indices, ``resolution`` < 1, a negative ``specular``,
            ``shininess`` or ``gamma`` <= 0, or UV maps without ``uvs``/``face_uvs``.

    Examples:
        >>> v = torch.tensor([[-1.0, -1, 0], [1, -1, 0], [0, 1, 0]])
        >>> render_preview(v, torch.tensor([[0, 1, 2]]), resolution=16).shape
        torch.Size([16, 16, 3])
    """
    fn = "render_preview"
    check_floating(vertices, "vertices", fn=fn)
    dims = check_shape(vertices, "V,3", "vertices", fn=fn)
    check_shape(faces, "F,3", "faces", fn=fn)
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise TypeError(f"{fn}: 'faces' must be an integer tensor; got {faces.dtype}")
    check_index(faces, dims["V"], "faces", fn=fn)
    check_int(resolution, "resolution", fn=fn)
    if not isinstance(specular, torch.Tensor):
        check_positive(specular, "specular", fn=fn, strict=False)
    check_positive(shininess, "shininess", fn=fn)
    check_positive(gamma, "gamma", fn=fn)
    uv_maps = (albedo is not None and albedo.ndim == 3) or (
        isinstance(specular, torch.Tensor) and specular.ndim == 3
    )
    if uv_maps and (uvs is None or face_uvs is None):
        raise ValueError(f"{fn}: UV-map albedo/specular need 'uvs' and 'face_uvs'; got None")
    if albedo is not None and albedo.ndim == 2:
        check_shape(albedo, "V,3", "albedo", fn=fn, dims=dims)
    faces = faces.long().to(vertices.device)
    if camera is None:
        camera, offset = default_camera(vertices.detach(), resolution)
        eye = vertices + offset
    else:
        eye = vertices
    pix = project_points(eye, camera)
    depth = -eye[:, 2]
    face_index, bary = rasterize_triangles(
        pix[faces].detach(), resolution, resolution, depth=depth[faces].detach()
    )
    mask = face_index >= 0
    fi = face_index.clamp_min(0)
    w = bary.to(vertices.dtype)
    normals = vertex_normals(eye, faces)

    def interp(attr: torch.Tensor) -> torch.Tensor:  # (V, C) -> (H, W, C)
        return (attr[faces[fi]] * w[..., None]).sum(-2)

    n = interp(normals)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    p = interp(eye)
    view = -p / p.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n = torch.where((n * view).sum(-1, keepdim=True) < 0, -n, n)  # light back faces like front faces
    light = vertices.new_tensor(light_dir)
    light = light / light.norm()
    half = light + view
    half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if uv_maps and uvs is not None and face_uvs is not None:
        corner_uv = uvs.to(vertices)[face_uvs.long().to(vertices.device)[fi]]  # (H, W, 3, 2)
        uv_px = (corner_uv * w[..., None]).sum(-2)
        grid = torch.stack([uv_px[..., 0] * 2 - 1, 1 - uv_px[..., 1] * 2], -1)[None]

        def sample(m: torch.Tensor) -> torch.Tensor:
            return F.grid_sample(
                m[None].to(vertices), grid, mode="bilinear", padding_mode="border", align_corners=False
            )[0].permute(1, 2, 0)

    if albedo is None:
        kd = vertices.new_full((resolution, resolution, 3), 0.7)
    elif albedo.ndim == 2:
        kd = interp(albedo.to(vertices))
    else:
        check_shape(albedo, "3,H,W", "albedo", fn=fn)
        kd = sample(albedo)
    if isinstance(specular, torch.Tensor):
        if specular.ndim == 1:
            ks = interp(specular.to(vertices)[:, None])
        else:
            check_shape(specular, "1,H,W", "specular", fn=fn)
            ks = sample(specular)
    else:
        ks = vertices.new_full((resolution, resolution, 1), float(specular))
    if uv_maps and uv_face_mask is not None:
        textured = uv_face_mask.to(vertices.device)[fi][..., None]
        kd = (
            torch.where(textured, kd, torch.full_like(kd, 0.7))
            if albedo is not None and albedo.ndim == 3
            else kd
        )
        ks = (
            torch.where(textured, ks, torch.full_like(ks, 0.1))
            if isinstance(specular, torch.Tensor) and specular.ndim == 3
            else ks
        )
    diffuse = kd * (ambient + (n @ light).clamp_min(0)[..., None])
    spec = ks * (n * half).sum(-1, keepdim=True).clamp_min(0) ** shininess
    colour = (diffuse + spec).clamp(0, 1) ** (1.0 / gamma)
    bg = vertices.new_tensor(background).expand_as(colour)
    return torch.where(mask[..., None], colour, bg)
