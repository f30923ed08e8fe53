"""End-to-end face generation: identity coefficients -> base mesh -> geometry map -> attribute maps
(-> cascaded low-to-high resolution upsampling)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._checks import check_floating, check_generator, check_positive, check_shape, check_tensor
from .export import FaceAsset
from .geometry import subdivide, vertex_normals
from .models.attribute import AttributeGenerator, Upsampler
from .models.linear import LinearFaceModel
from .uv import geometry_maps, rasterize_uv, sample_uv, vertex_uvs

__all__ = ["displace", "generate_faces"]


@torch.no_grad()
def generate_faces(
    model: LinearFaceModel,
    identity: torch.Tensor,
    *,
    expression: torch.Tensor | None = None,
    attribute_generator: AttributeGenerator | None = None,
    z: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    upsamplers: Upsampler | Sequence[Upsampler] = (),
    position_scale: float = 2.0,
    displacement_scale: float = 0.05,
) -> list[FaceAsset]:
    """Decode identities (and expressions) to meshes and, with an attribute generator, to PBR maps.

    The geometry map is computed on the *neutral* identity (attributes belong to the person, not to the
    expression), with the scaling of :class:`~morphface.data.AttributeMapDataset` (``position_scale``,
    ``displacement_scale`` must match the training data). With ``upsamplers`` the generated maps go
    through the cascade of :class:`~morphface.Upsampler` stages (low-to-high resolution transfer, e.g.
    256 -> 1024 px with one x4 stage or two x2 stages); a stage with ``geometry_channels > 0`` gets the
    geometry map rasterised at its output resolution.

    Args:
        model: the linear model (with UVs when an attribute generator is given).
        identity: (B, K) identity coefficients.
        expression: optional (B, E) expression weights for the output meshes.
        attribute_generator: optional trained :class:`~morphface.AttributeGenerator`.
        z: optional (B, latent_dim) latents (default: drawn from ``generator``).
        generator: RNG for latents and noise.
        upsamplers: one :class:`~morphface.Upsampler` or a sequence of them applied in order to the
            generated maps (needs ``attribute_generator``).
        position_scale: divisor of position offsets used in training.
        displacement_scale: multiplier that turns the network's displacement back into cm.

    Returns:
        One :class:`~morphface.export.FaceAsset` per identity (maps are ``None`` without a generator).

    Raises:
        TypeError: ``model`` is not a :class:`~morphface.LinearFaceModel`.
        ValueError: wrong coefficient shapes, a generator with a model without UVs, or upsamplers that
            do not match the generator's channels (or come without a generator).
    """
    fn = "generate_faces"
    if not isinstance(model, LinearFaceModel):
        raise TypeError(f"{fn}: 'model' must be a LinearFaceModel; got {type(model).__name__}")
    check_floating(identity, "identity", fn=fn)
    dims = check_shape(identity, f"B,{model.n_identity}", "identity", fn=fn)
    if attribute_generator is not None and not isinstance(attribute_generator, AttributeGenerator):
        raise TypeError(
            f"{fn}: 'attribute_generator' must be an AttributeGenerator or None; "
            f"got {type(attribute_generator).__name__}"
        )
    check_generator(generator, fn=fn)
    check_positive(position_scale, "position_scale", fn=fn)
    check_positive(displacement_scale, "displacement_scale", fn=fn)
    stages = [upsamplers] if isinstance(upsamplers, Upsampler) else list(upsamplers)
    for i, st in enumerate(stages):
        if not isinstance(st, Upsampler):
            raise TypeError(f"{fn}: 'upsamplers[{i}]' must be an Upsampler; got {type(st).__name__}")
    if stages and attribute_generator is None:
        raise ValueError(
            f"{fn}: 'upsamplers' need an 'attribute_generator' whose maps they upsample; got None"
        )
    if attribute_generator is not None:
        for i, st in enumerate(stages):
            if st.channels != attribute_generator.out_channels:
                raise ValueError(
                    f"{fn}: 'upsamplers[{i}]' takes {st.channels} channels but the generator makes "
                    f"{attribute_generator.out_channels}"
                )
            if st.geometry_channels not in (0, attribute_generator.geometry_channels):
                raise ValueError(
                    f"{fn}: 'upsamplers[{i}]' expects {st.geometry_channels} geometry channels; the geometry "
                    f"map has {attribute_generator.geometry_channels} (or use 0)"
                )
    if z is not None and attribute_generator is not None:
        check_shape(z, f"B,{attribute_generator.latent_dim}", "z", fn=fn, dims=dims)
    verts = model.vertices(identity, expression)
    albedo = specular = displacement = None
    if attribute_generator is not None:
        if model.uvs.shape[0] == 0:
            raise ValueError("generate_faces: 'model' has no UVs, so no geometry map can be made")
        p = next(attribute_generator.parameters())
        neutral = model.vertices(identity)

        def geometry_at(res: int) -> tuple[torch.Tensor, torch.Tensor]:
            raster = rasterize_uv(model.uvs, model.face_uvs, res, face_mask=model.uv_face_mask)
            pos, nrm, mask = geometry_maps(neutral, model.faces, raster, mean=model.mean)
            geo = torch.cat([pos / position_scale, nrm], 1).to(p.device, p.dtype)
            return geo, mask.to(p.device, p.dtype)

        r = attribute_generator.resolution
        geo, mask = geometry_at(r)
        b = identity.shape[0]
        if z is None:
            z = attribute_generator.sample_latent(b, generator=generator)
        gdev = generator.device if generator is not None else p.device
        noise = torch.randn(b, 1, r, r, generator=generator, device=gdev).to(p.device, p.dtype)
        maps = attribute_generator(geo, z.to(p.device, p.dtype), noise) * mask
        for st in stages:
            r = r * st.scale
            geo, mask = geometry_at(r)
            q = next(st.parameters())
            hi = st(maps.to(q.device, q.dtype), geo.to(q.device, q.dtype) if st.geometry_channels else None)
            # albedo and specular stay in [0, 1] (the generator's sigmoid range); displacement is free
            maps = torch.cat([hi[:, :4].clamp(0, 1), hi[:, 4:]], 1).to(p.device, p.dtype) * mask
        albedo, specular, displacement = maps[:, :3], maps[:, 3:4], maps[:, 4:5] * displacement_scale
    out = []
    for i in range(verts.shape[0]):
        out.append(
            FaceAsset(
                verts[i],
                model.faces,
                model.uvs,
                model.face_uvs,
                None if albedo is None else albedo[i],
                None if specular is None else specular[i],
                None if displacement is None else displacement[i],
                model.face_material,
                list(model.material_names),
            )
        )
    return out


def displace(
    face: FaceAsset,
    *,
    subdivisions: int = 0,
    face_mask: torch.Tensor | None = None,
    scale: float = 1.0,
) -> FaceAsset:
    """Bake the displacement map into the mesh: the high-frequency geometry detail as vertices.

    ``x' = x + scale * D(uv(x)) * n(x)``, after ``subdivisions`` levels of midpoint subdivision
    (:func:`~morphface.geometry.subdivide`, 4x the triangles per level) so the mesh is dense enough to
    carry the detail; ``n`` are the unit vertex normals of the subdivided base mesh and ``D`` is sampled
    bilinearly at each vertex's UV (at a UV seam, one of the vertex's corner UVs is used). Vertices
    outside ``face_mask``'s triangles, or with a UV outside [0, 1], do not move. Differentiable in the
    displacement map and the vertices.

    Convention: displacement in the mesh's units (cm for ICT) along the outward normal (triangles
    counter-clockwise seen from outside), as in :class:`~morphface.export.FaceAsset`.

    Args:
        face: a :class:`~morphface.export.FaceAsset` with a displacement map.
        subdivisions: levels of midpoint subdivision before displacing (0 keeps the topology).
        face_mask: optional (F,) bool, the triangles whose vertices may move (e.g. the model's
            ``uv_face_mask``, the UV tile the map covers); default all.
        scale: multiplier of the displacement.

    Returns:
        A new :class:`~morphface.export.FaceAsset` with the displaced (and subdivided) mesh and UVs and
        the same maps. The displacement is now in the vertices: when rendering or exporting it, do not
        apply its ``disp`` map a second time.

    Raises:
        TypeError: ``face`` is not a :class:`~morphface.export.FaceAsset`, or a non-bool ``face_mask``.
        ValueError: no displacement map, a negative ``subdivisions`` or a ``face_mask`` of the wrong length.

    Examples:
        >>> from morphface.data import toy_face_model
        >>> m = toy_face_model(grid=5, n_identity=1)
        >>> face = FaceAsset(m.mean, m.faces, m.uvs, m.face_uvs, displacement=torch.full((1, 8, 8), 0.1))
        >>> detailed = displace(face, subdivisions=1)
        >>> detailed.faces.shape[0] == 4 * m.faces.shape[0]
        True
    """
    fn = "displace"
    if not isinstance(face, FaceAsset):
        raise TypeError(f"{fn}: 'face' must be a FaceAsset; got {type(face).__name__}")
    if face.displacement is None:
        raise ValueError(f"{fn}: 'face' has no displacement map; got displacement=None")
    check_shape(face.displacement, "1,H,W", "face.displacement", fn=fn)
    if not isinstance(subdivisions, int) or isinstance(subdivisions, bool) or subdivisions < 0:
        raise ValueError(f"{fn}: 'subdivisions' must be an int >= 0; got {subdivisions!r}")
    n_faces = face.faces.shape[0]
    if face_mask is not None:
        check_tensor(face_mask, "face_mask", fn=fn)
        if face_mask.dtype != torch.bool:
            raise TypeError(f"{fn}: 'face_mask' must be a bool tensor; got {face_mask.dtype}")
        check_shape(face_mask, f"{n_faces}", "face_mask", fn=fn)
    verts, faces = face.vertices, face.faces
    uvs, face_uvs = face.uvs, face.face_uvs
    mask = (
        face_mask.to(faces.device)
        if face_mask is not None
        else torch.ones(n_faces, dtype=torch.bool, device=faces.device)
    )
    material = face.face_material
    for _ in range(subdivisions):
        verts, faces, uvs_s, fuv_s = subdivide(verts, faces, uvs=uvs, face_uvs=face_uvs)
        assert uvs_s is not None and fuv_s is not None
        uvs, face_uvs = uvs_s, fuv_s
        mask = mask.repeat_interleave(4)
        if material is not None:
            material = material.repeat_interleave(4)
    normals = vertex_normals(verts, faces)
    uv = vertex_uvs(faces[mask], face_uvs[mask], uvs, verts.shape[0])
    ok = torch.isfinite(uv).all(-1) & (uv >= 0).all(-1) & (uv <= 1).all(-1)
    uv = torch.where(ok[:, None], uv, torch.zeros_like(uv))
    d = sample_uv(face.displacement[None].to(verts.dtype), uv.to(verts.dtype))[0, :, 0]
    d = torch.where(ok, d, torch.zeros_like(d))
    return FaceAsset(
        verts + scale * d[:, None] * normals,
        faces,
        uvs,
        face_uvs,
        face.albedo,
        face.specular,
        face.displacement,
        material,
        face.material_names,
    )
