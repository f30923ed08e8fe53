"""End-to-end face generation: identity coefficients -> base mesh -> geometry map -> attribute maps."""

from __future__ import annotations

import torch

from ._checks import check_floating, check_shape
from .export import FaceAsset
from .models.attribute import AttributeGenerator
from .models.linear import LinearFaceModel
from .uv import geometry_maps, rasterize_uv

__all__ = ["generate_faces"]


@torch.no_grad()
def generate_faces(
    model: LinearFaceModel,
    identity: torch.Tensor,
    *,
    expression: torch.Tensor | None = None,
    attribute_generator: AttributeGenerator | None = None,
    z: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    position_scale: float = 2.0,
    displacement_scale: float = 0.05,
) -> list[FaceAsset]:
    """Decode identities (and expressions) to meshes and, with an attribute generator, to PBR maps.

    The geometry map is computed on the *neutral* identity (attributes belong to the person, not to the
    expression), with the scaling of :class:`~morphface.data.AttributeMapDataset` (``position_scale``,
    ``displacement_scale`` must match the training data).

    Args:
        model: the linear model (with UVs when an attribute generator is given).
        identity: (B, K) identity coefficients.
        expression: optional (B, E) expression weights for the output meshes.
        attribute_generator: optional trained :class:`~morphface.AttributeGenerator`.
        z: optional (B, latent_dim) latents (default: drawn from ``generator``).
        generator: RNG for latents and noise.
        position_scale: divisor of position offsets used in training.
        displacement_scale: multiplier that turns the network's displacement back into cm.

    Returns:
        One :class:`~morphface.export.FaceAsset` per identity (maps are ``None`` without a generator).

    Raises:
        TypeError: ``model`` is not a :class:`~morphface.LinearFaceModel`.
        ValueError: wrong coefficient shapes, or a generator with a model without UVs.
    """
    fn = "generate_faces"
    if not isinstance(model, LinearFaceModel):
        raise TypeError(f"{fn}: 'model' must be a LinearFaceModel; got {type(model).__name__}")
    check_floating(identity, "identity", fn=fn)
    dims = check_shape(identity, f"B,{model.n_identity}", "identity", fn=fn)
    if z is not None and attribute_generator is not None:
        check_shape(z, f"B,{attribute_generator.latent_dim}", "z", fn=fn, dims=dims)
    verts = model.vertices(identity, expression)
    albedo = specular = displacement = None
    if attribute_generator is not None:
        if model.uvs.shape[0] == 0:
            raise ValueError("generate_faces: 'model' has no UVs, so no geometry map can be made")
        p = next(attribute_generator.parameters())
        raster = rasterize_uv(
            model.uvs, model.face_uvs, attribute_generator.resolution, face_mask=model.uv_face_mask
        )
        neutral = model.vertices(identity)
        pos, nrm, mask = geometry_maps(neutral, model.faces, raster, mean=model.mean)
        geo = torch.cat([pos / position_scale, nrm], 1).to(p.device, p.dtype)
        b = identity.shape[0]
        if z is None:
            z = attribute_generator.sample_latent(b, generator=generator)
        r = attribute_generator.resolution
        gdev = generator.device if generator is not None else p.device
        noise = torch.randn(b, 1, r, r, generator=generator, device=gdev).to(p.device, p.dtype)
        maps = attribute_generator(geo, z.to(p.device, p.dtype), noise) * mask.to(p.device, p.dtype)
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
            )
        )
    return out
