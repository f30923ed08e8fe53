"""Pinhole camera, the dolly-zoom reference camera, and the paper's data synthesis.

A portrait taken at camera-to-subject distance ``d`` is compared with the same head seen from the
reference distance ``d_ref`` with the focal length scaled so the anchor plane keeps its image size (a
"dolly zoom"). The dense correction flow between the two views follows analytically from vertex
correspondence: every reference pixel sees a surface point whose position in the near view is known.

Convention:
    Camera frame: ``x`` right, ``y`` down, ``z`` forward (depth), units of the mesh (cm for ICT-FaceKit).
    Head frame (ICT-FaceKit): ``x`` to the subject's left as seen by the viewer's right, ``y`` up,
    ``z`` out of the face; :func:`head_rotation` maps it to the camera frame (a frontal head has
    ``R = diag(1, -1, -1)``). ``x_c = R X + t`` with ``t = (t_x, t_y, d)``: the head-frame origin (the
    *anchor*) sits at depth ``d``. Pixel coordinates are continuous, pixel centres at ``j + 0.5``.
    Flows are in pixels, ``(B, 2, H, W)`` with channel 0 = ``du`` (x) and 1 = ``dv`` (y).

    The correction flow returned by :func:`synthesize_pair` is *backward*: on the reference grid,
    ``flow(q) = p(q) - q`` where ``p(q)`` is where the surface seen at reference pixel ``q`` appears in the
    near (distorted) image, so ``warp(distorted, flow)`` gives the corrected image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_finite, check_floating, check_positive, check_shape, check_tensor
from .render import Fragments, interpolate, rasterize, shade, vertex_normals

__all__ = [
    "Fragments",
    "PinholeCamera",
    "dolly_zoom",
    "head_rotation",
    "interpolate",
    "magnification",
    "project",
    "rasterize",
    "render",
    "shade",
    "synthesize_pair",
    "vertex_normals",
]


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera with square pixels looking down ``+z``.

    Attributes:
        focal: focal length in pixels.
        cx: principal point ``u`` in pixels (continuous coordinates).
        cy: principal point ``v`` in pixels.
        width: image width in pixels.
        height: image height in pixels.
    """

    focal: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def centered(cls, focal: float, width: int, height: int | None = None) -> PinholeCamera:
        """A camera whose principal point is the image centre.

        Args:
            focal: focal length in pixels.
            width: image width in pixels.
            height: image height in pixels (defaults to ``width``).

        Returns:
            The camera.
        """
        h = width if height is None else height
        return cls(float(focal), width / 2.0, h / 2.0, int(width), int(h))

    def focal_35mm(self) -> float:
        """35 mm-equivalent focal length (36 mm sensor width mapped to the image width)."""
        return self.focal * 36.0 / self.width

    def project(self, points: Tensor) -> Tensor:
        """Project camera-frame points; see :func:`project`.

        Args:
            points: ``(..., 3)`` points in the camera frame.

        Returns:
            ``(..., 3)`` ``(u, v, z)``.
        """
        return project(points, self.focal, (self.cx, self.cy))


def _check_camera(camera: Any, fn: str) -> None:
    if not isinstance(camera, PinholeCamera):
        raise TypeError(f"{fn}: 'camera' must be a PinholeCamera; got {type(camera).__name__}")
    if not (math.isfinite(camera.focal) and camera.focal > 0) or camera.width < 1 or camera.height < 1:
        raise ValueError(
            f"{fn}: 'camera' must have a finite focal > 0 and a size >= 1x1; got focal={camera.focal}, "
            f"{camera.width}x{camera.height}"
        )


def project(points: Tensor, focal: float | Tensor, principal: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """Pinhole projection ``u = f x / z + c_x``, ``v = f y / z + c_y``; depth ``z`` is kept.

    Args:
        points: ``(..., 3)`` points in the camera frame (``z > 0`` in front).
        focal: focal length in pixels (a float or a tensor broadcastable to ``points[..., 0]``).
        principal: principal point ``(c_x, c_y)`` in pixels.

    Returns:
        ``(..., 3)`` ``(u, v, z)``.

    Raises:
        TypeError: ``points`` is not a floating tensor.
        ValueError: ``points`` does not end in 3.

    Examples:
        >>> project(torch.tensor([[1.0, 2.0, 4.0]]), 8.0, (16.0, 16.0))
        tensor([[18., 20.,  4.]])
    """
    fn = "project"
    check_floating(points, "points", fn=fn)
    check_shape(points, "*,3", "points", fn=fn)
    z = points[..., 2]
    u = focal * points[..., 0] / z + principal[0]
    v = focal * points[..., 1] / z + principal[1]
    return torch.stack([u, v, z], -1)


def dolly_zoom(focal: float, translation: Tensor, distance_ref: float) -> tuple[float, Tensor]:
    """The reference camera of the paper's data synthesis: move back to ``d_ref``, zoom to keep size.

    ``t_ref = t + (0, 0, d_ref - d)`` and ``f_ref = f d_ref / d`` (``d = t_z``), so points on the anchor
    plane ``z = d`` project to the same pixels in both views.

    Args:
        focal: near focal length in pixels.
        translation: ``(3,)`` near head translation ``(t_x, t_y, d)``.
        distance_ref: reference distance ``d_ref`` (same unit as ``d``).

    Returns:
        ``(f_ref, t_ref)``.

    Raises:
        ValueError: non-positive focal, distance or reference distance.

    Examples:
        >>> f, t = dolly_zoom(500.0, torch.tensor([0.0, 0.0, 50.0]), 500.0)
        >>> f, t.tolist()
        (5000.0, [0.0, 0.0, 500.0])
    """
    fn = "dolly_zoom"
    check_positive(focal, "focal", fn=fn)
    check_positive(distance_ref, "distance_ref", fn=fn)
    check_shape(translation, "3", "translation", fn=fn)
    d = float(translation[2])
    check_positive(d, "translation[2] (distance)", fn=fn)
    t_ref = translation.clone()
    t_ref[2] = distance_ref
    return focal * distance_ref / d, t_ref


def magnification(depth_offset: Tensor | float, distance: float, distance_ref: float = math.inf) -> Tensor:
    """Image magnification of a point ``z`` ahead of the anchor, near view relative to reference view.

    Under the dolly zoom, a point at depth ``d - z`` is scaled by ``f / (d - z)`` in the near view and
    ``f d_ref / (d (d_ref - z))`` in the reference view; their ratio is
    ``(1 - z / d_ref) / (1 - z / d)`` (``1 / (1 - z / d)`` for ``d_ref -> inf``).

    Args:
        depth_offset: ``z`` (towards the camera, same unit as ``distance``).
        distance: near distance ``d``.
        distance_ref: reference distance (``inf`` for weak perspective).

    Returns:
        The magnification (a tensor).

    Raises:
        ValueError: non-positive distances.

    Examples:
        >>> round(float(magnification(10.0, 30.0)), 3), round(float(magnification(10.0, 160.0)), 3)
        (1.5, 1.067)
    """
    fn = "magnification"
    check_positive(distance, "distance", fn=fn)
    check_positive(distance_ref, "distance_ref", fn=fn)
    z = torch.as_tensor(depth_offset, dtype=torch.float64)
    ref = 1.0 - z / distance_ref if math.isfinite(distance_ref) else torch.ones_like(z)
    return ref / (1.0 - z / distance)


def head_rotation(
    yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Rotation from the head frame (``y`` up, ``z`` out of the face) to the camera frame.

    ``R = F @ Rz(roll) @ Ry(yaw) @ Rx(pitch)`` with ``F = diag(1, -1, -1)`` turning a frontal head towards
    the camera; angles in radians, positive yaw turns the face to the viewer's right.

    Args:
        yaw: rotation about the head's vertical axis.
        pitch: rotation about the head's left-right axis.
        roll: rotation about the viewing axis.
        dtype: floating dtype of the result.

    Returns:
        ``(3, 3)`` rotation matrix.

    Raises:
        ValueError: a non-finite angle.

    Examples:
        >>> head_rotation().tolist()
        [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]
    """
    for name, angle in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
        if not math.isfinite(float(angle)):
            raise ValueError(f"head_rotation: '{name}' must be a finite angle (radians); got {angle!r}")
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    rx = torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rz = torch.tensor([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]], dtype=torch.float64)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    r = flip @ rz @ ry @ rx
    return (r + 0.0).to(dtype)  # + 0.0 turns -0.0 into 0.0


def render(
    vertices: Tensor,
    faces: Tensor,
    colors: Tensor | None,
    camera: PinholeCamera,
    rotation: Tensor,
    translation: Tensor,
    *,
    light_dir: Tensor | None = None,
    background: Tensor | None = None,
    ambient: float = 0.35,
    specular: float = 0.15,
    uv: Tensor | None = None,
    texture: Tensor | None = None,
) -> dict[str, Any]:
    """Render a shaded head-frame mesh with per-vertex or UV-mapped colours through a pinhole camera.

    Args:
        vertices: ``(V, 3)`` head-frame positions.
        faces: ``(F, 3)`` integer triangles.
        colors: ``(V, 3)`` per-vertex albedo in [0, 1] (``None`` when ``texture`` is given).
        camera: the pinhole camera.
        rotation: ``(3, 3)`` head-to-camera rotation (see :func:`head_rotation`).
        translation: ``(3,)`` head translation ``(t_x, t_y, d)``.
        light_dir: ``(3,)`` camera-frame direction towards the light (default: from the camera).
        background: ``(3, H, W)`` image behind the head (default black).
        ambient: ambient light weight.
        specular: specular weight.
        uv: texture coordinates in [0, 1] (``v`` up, OBJ convention), per vertex ``(V, 2)`` or per
            triangle corner ``(F, 3, 2)`` (for meshes with UV seams, such as ICT-FaceKit).
        texture: ``(3, Th, Tw)`` albedo texture sampled bilinearly at the interpolated ``uv``.

    Returns:
        A dict with ``image`` ``(3, H, W)``, ``mask`` ``(H, W)`` bool, ``depth`` ``(H, W)``, ``points``
        ``(H, W, 3)`` head-frame surface points, and ``fragments``.

    Raises:
        TypeError: non-floating inputs, or ``camera`` is not a :class:`PinholeCamera`.
        ValueError: wrong shapes or non-finite vertices.
    """
    fn = "render"
    _check_camera(camera, fn)
    check_floating(vertices, "vertices", fn=fn)
    dims = check_shape(vertices, "V,3", "vertices", fn=fn)
    if texture is not None:
        check_floating(texture, "texture", fn=fn)
        check_shape(texture, "3,Th,Tw", "texture", fn=fn)
        if uv is None:
            raise ValueError(f"{fn}: 'uv' is required with 'texture'")
        check_floating(uv, "uv", fn=fn)
        if uv.ndim == 2:
            check_shape(uv, "V,2", "uv", fn=fn, dims=dims)
        else:
            check_shape(uv, f"{faces.shape[0]},3,2", "uv", fn=fn)
    elif colors is None:
        raise ValueError(f"{fn}: give 'colors' or 'uv' + 'texture'")
    else:
        check_shape(colors, "V,3", "colors", fn=fn, dims=dims)
    check_shape(rotation, "3,3", "rotation", fn=fn)
    check_shape(translation, "3", "translation", fn=fn)
    check_finite(vertices, "vertices", fn=fn)
    h, w = camera.height, camera.width
    if background is not None:
        check_shape(background, f"3,{h},{w}", "background", fn=fn)
    cam = vertices @ rotation.to(vertices).T + translation.to(vertices)
    frag = rasterize(camera.project(cam), faces, h, w)
    mask = frag.mask
    normals = vertex_normals(cam, faces)
    pts_cam = interpolate(frag, faces, cam)
    nrm = interpolate(frag, faces, normals)
    if texture is not None and uv is not None:
        if uv.ndim == 2:
            uvp = interpolate(frag, faces, uv.to(vertices))
        else:
            uvp = (uv.to(vertices)[frag.face_index.clamp(min=0)] * frag.bary[..., None]).sum(-2)
        grid = torch.stack([uvp[..., 0] * 2 - 1, 1 - uvp[..., 1] * 2], -1)[None]
        alb = F.grid_sample(
            texture.to(vertices)[None], grid, mode="bilinear", padding_mode="border", align_corners=False
        )[0].permute(1, 2, 0)
    elif colors is not None:
        alb = interpolate(frag, faces, colors.to(vertices))
    else:  # unreachable: checked above
        raise ValueError(f"{fn}: give 'colors' or 'uv' + 'texture'")
    ldir = light_dir if light_dir is not None else vertices.new_tensor([0.0, 0.0, -1.0])
    img = shade(alb, nrm, pts_cam, ldir.to(vertices), ambient=ambient, specular=specular)
    img = img.permute(2, 0, 1)
    bg = background.to(img) if background is not None else torch.zeros_like(img)
    img = torch.where(mask[None], img, bg)
    points = interpolate(frag, faces, vertices)
    return {"image": img, "mask": mask, "depth": frag.depth, "points": points, "fragments": frag}


def synthesize_pair(
    vertices: Tensor,
    faces: Tensor,
    colors: Tensor | None,
    camera: PinholeCamera,
    rotation: Tensor,
    translation: Tensor,
    *,
    distance_ref: float = 500.0,
    light_dir: Tensor | None = None,
    background: Tensor | None = None,
    landmarks: Tensor | None = None,
    visibility_tol: float = 0.75,
    uv: Tensor | None = None,
    texture: Tensor | None = None,
) -> dict[str, Tensor | float]:
    """Render a head at distance ``d`` and at the dolly-zoom reference, with the exact correction flow.

    The near view uses ``camera`` and ``translation = (t_x, t_y, d)``; the reference view
    :func:`dolly_zoom` s to ``distance_ref``. For every reference pixel ``q`` showing surface point ``X'``
    (found by the rasteriser with barycentric interpolation of head-frame vertices), the backward flow is
    ``flow(q) = pi_near(R X' + t) - q``. It is *valid* where ``X'`` is also visible in the near view: its
    near depth matches the near z-buffer (within ``visibility_tol``) at the pixel it projects to. Reference
    head pixels that are not valid are *holes* (e.g. ears hidden at close range), filled by completion.

    Args:
        vertices: ``(V, 3)`` head-frame positions (the origin is the anchor).
        faces: ``(F, 3)`` integer triangles.
        colors: ``(V, 3)`` per-vertex albedo in [0, 1] (``None`` with ``uv`` + ``texture``).
        camera: the near camera (its focal length is ``f``).
        rotation: ``(3, 3)`` head-to-camera rotation.
        translation: ``(3,)`` ``(t_x, t_y, d)``.
        distance_ref: reference distance ``d_ref``.
        light_dir: ``(3,)`` camera-frame direction towards the light.
        background: ``(3, H, W)`` background (shared by both views).
        landmarks: ``(L,)`` vertex indices whose projections are returned in both views.
        visibility_tol: depth tolerance (mesh units) of the visibility test.
        uv: texture coordinates (see :func:`render`).
        texture: ``(3, Th, Tw)`` albedo texture (see :func:`render`).

    Returns:
        A dict: ``distorted``/``corrected`` ``(3, H, W)`` images, ``flow`` ``(2, H, W)`` backward flow in
        pixels (zero where not valid), ``valid`` (flow defined), ``holes``, ``mask_distorted``,
        ``mask_corrected`` ``(H, W)`` bool, ``forward_flow`` ``(2, H, W)`` (near grid -> reference, zero
        off the head), ``distance``, ``focal``, ``focal_ref`` floats, and when ``landmarks`` is given
        ``landmarks_distorted``/``landmarks_corrected`` ``(L, 2)``.

    Raises:
        TypeError: non-floating inputs, or ``camera`` is not a :class:`PinholeCamera`.
        ValueError: wrong shapes, non-positive distances.
    """
    fn = "synthesize_pair"
    _check_camera(camera, fn)
    check_floating(vertices, "vertices", fn=fn)
    check_shape(translation, "3", "translation", fn=fn)
    check_positive(visibility_tol, "visibility_tol", fn=fn)
    d = float(translation[2])
    check_positive(d, "translation[2] (distance)", fn=fn)
    if landmarks is not None:
        check_tensor(landmarks, "landmarks", fn=fn)
        check_shape(landmarks, "L", "landmarks", fn=fn)
    f_ref, t_ref = dolly_zoom(camera.focal, translation, distance_ref)
    cam_ref = PinholeCamera(f_ref, camera.cx, camera.cy, camera.width, camera.height)
    kw: dict[str, Any] = {"light_dir": light_dir, "background": background, "uv": uv, "texture": texture}
    near = render(vertices, faces, colors, camera, rotation, translation, **kw)
    ref = render(vertices, faces, colors, cam_ref, rotation, t_ref, **kw)
    r = rotation.to(vertices)
    h, w = camera.height, camera.width
    # backward flow on the reference grid
    xr = ref["points"] @ r.T + translation.to(vertices)  # surface points in the near camera frame
    p = camera.project(xr)
    jj = torch.arange(w, device=vertices.device, dtype=vertices.dtype) + 0.5
    ii = torch.arange(h, device=vertices.device, dtype=vertices.dtype) + 0.5
    qy, qx = torch.meshgrid(ii, jj, indexing="ij")
    flow = torch.stack([p[..., 0] - qx, p[..., 1] - qy], 0)
    pj = torch.floor(p[..., 0]).long()
    pi = torch.floor(p[..., 1]).long()
    inside = (pj >= 0) & (pj < w) & (pi >= 0) & (pi < h) & ref["mask"]
    zbuf = near["depth"][pi.clamp(0, h - 1), pj.clamp(0, w - 1)]
    valid = (
        inside
        & near["mask"][pi.clamp(0, h - 1), pj.clamp(0, w - 1)]
        & ((p[..., 2] - zbuf).abs() <= visibility_tol)
    )
    flow = flow * valid[None].to(flow.dtype)
    # forward flow on the near grid
    xn = near["points"] @ r.T + t_ref.to(vertices)
    pr = cam_ref.project(xn)
    fwd = torch.stack([pr[..., 0] - qx, pr[..., 1] - qy], 0) * near["mask"][None].to(vertices.dtype)
    out: dict[str, Tensor | float] = {
        "distorted": near["image"],
        "corrected": ref["image"],
        "flow": flow,
        "valid": valid,
        "holes": ref["mask"] & ~valid,
        "mask_distorted": near["mask"],
        "mask_corrected": ref["mask"],
        "forward_flow": fwd,
        "distance": d,
        "focal": float(camera.focal),
        "focal_ref": float(f_ref),
    }
    if landmarks is not None:
        lv = vertices[landmarks.long()]
        out["landmarks_distorted"] = camera.project(lv @ r.T + translation.to(vertices))[:, :2]
        out["landmarks_corrected"] = cam_ref.project(lv @ r.T + t_ref.to(vertices))[:, :2]
    return out
