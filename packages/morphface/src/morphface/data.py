"""Training data for the UV-space attribute model: a toy face model and procedural attribute maps.

No real albedo / specular / displacement maps in correspondence with a public face model exist (the
paper's 4000 light-stage scans are private), so attribute maps are *generated* from geometry with a known,
documented dependence plus independent nuisance variation. A trained generator can then be scored on how
well it reproduces that dependence (see :func:`attribute_geometry_statistics`).

The generator (:class:`ProceduralAttributes`), per sample, from the position-offset map ``P`` (cm, offset
from the mean shape), the normal map ``N`` and the coverage mask, with ``<.>`` the masked mean:

- **tone**: ``w = <P_x * sign(X_x)>`` (face broadness, > 0 when the face is wider than the mean) and
  ``t = sigmoid(tone_gain * w / tone_scale + tone_noise * eps1)``; albedo RGB
  ``A = lerp(light_rgb, dark_rgb, t) * (1 + redness * tanh(P_z / 0.5))`` clipped to [0, 1], so tone is
  correlated with broadness and redness with local forward protrusion;
- **specular intensity**: ``S = spec_base + spec_gain * T(u, v) * N_z^2 * (1 + 0.3 * eps2)``, with
  ``T`` a fixed Gaussian "T-zone" (forehead + nose line) in UV, so shine follows forward-facing areas;
- **displacement** (cm): ``D = amp * n(u, v)`` with ``n`` unit-variance band-limited noise (pores) and
  ``amp = disp_scale * (0.5 + sigmoid(age_gain * l / tone_scale + eps3))``, ``l = <P_y * sign(X_y)>`` (face
  length), so detail amplitude is correlated with face length but its pattern is random.

``eps1..3 ~ N(0, 1)`` are drawn from the caller's generator, so the data are reproducible.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._checks import check_floating, check_int, check_positive, check_shape
from .models.linear import LinearFaceModel
from .uv import UVRaster, geometry_maps, rasterize_uv

logger = logging.getLogger(__name__)

__all__ = [
    "ATTRIBUTE_CHANNELS",
    "AttributeMapDataset",
    "ProceduralAttributes",
    "attribute_geometry_statistics",
    "toy_face_model",
]

#: channel layout of an attribute stack: albedo RGB, specular, displacement
ATTRIBUTE_CHANNELS = {"albedo": slice(0, 3), "specular": slice(3, 4), "displacement": slice(4, 5)}


def toy_face_model(
    *,
    grid: int = 33,
    n_identity: int = 20,
    n_expression: int = 4,
    n_landmarks: int = 68,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> LinearFaceModel:
    """A small synthetic face-like linear model (no files needed): a half-ellipsoid grid with UVs.

    Identity modes are smooth random displacement fields (low-frequency cosines in UV, orthonormalised,
    scaled by decreasing standard deviations 2.0 -> 0.1 cm); expressions are smooth local bumps. For tests,
    examples and the quick start; use :func:`morphface.io.load_ict_facekit` for the real model.

    Args:
        grid: vertices per side (V = grid^2).
        n_identity: identity modes K.
        n_expression: expression blendshapes E.
        n_landmarks: landmark vertices (evenly spread, fixed by ``seed``).
        seed: seed of the random fields.
        dtype: floating dtype.
        device: device.

    Returns:
        A :class:`~morphface.LinearFaceModel` in centimetres (about 16 x 22 x 10 cm), looking along +z.

    Examples:
        >>> m = toy_face_model(grid=9, n_identity=3)
        >>> m.vertices(m.sample(2)).shape
        torch.Size([2, 81, 3])
    """
    if grid < 3 or n_identity < 1 or n_identity > 3 * grid * grid:
        raise ValueError(
            f"toy_face_model: need grid >= 3 and 1 <= n_identity <= 3*grid^2; got {grid}, {n_identity}"
        )
    g = torch.Generator().manual_seed(seed)
    lin = torch.linspace(0.04, 0.96, grid, dtype=torch.float64)
    vv, uu = torch.meshgrid(lin, lin, indexing="ij")
    u, v = uu.flatten(), vv.flatten()
    th, ph = (u - 0.5) * math.pi * 0.85, (v - 0.5) * math.pi * 0.85
    mean = torch.stack(
        [8.0 * torch.sin(th) * torch.cos(ph), 11.0 * torch.sin(ph), 5.0 * torch.cos(th) * torch.cos(ph)], -1
    )
    n_v = grid * grid
    fields = []
    for _ in range(n_identity):
        k = torch.randint(0, 3, (2,), generator=g).double()
        phase = torch.rand(3, generator=g, dtype=torch.float64) * 2 * math.pi
        amp = torch.randn(3, generator=g, dtype=torch.float64)
        f = torch.stack(
            [
                amp[c] * torch.cos(math.pi * (k[0] * u + k[1] * v) + phase[c] + c)
                + 0.3
                * torch.randn(1, generator=g, dtype=torch.float64)
                * torch.cos(math.pi * (2 * u + c * v))
                for c in range(3)
            ],
            -1,
        )
        fields.append(f.flatten())
    q, _ = torch.linalg.qr(torch.stack(fields, 1))
    std = torch.logspace(math.log10(2.0), math.log10(0.1), n_identity, dtype=torch.float64)
    basis = (q.T * std[:, None] * math.sqrt(n_v)).view(n_identity, n_v, 3) / math.sqrt(n_v)
    basis = basis * (std / basis.flatten(1).norm(dim=1))[:, None, None]  # exact per-mode norm = std
    exprs = []
    for _ in range(n_expression):
        c = torch.rand(2, generator=g, dtype=torch.float64) * 0.6 + 0.2
        bump = torch.exp(-((u - c[0]) ** 2 + (v - c[1]) ** 2) / 0.02)
        d = torch.randn(3, generator=g, dtype=torch.float64)
        exprs.append(bump[:, None] * d[None] * 1.5)
    expression = torch.stack(exprs) if exprs else None
    faces = []
    for r in range(grid - 1):
        for cc in range(grid - 1):
            a, b, d2, e = r * grid + cc, r * grid + cc + 1, (r + 1) * grid + cc, (r + 1) * grid + cc + 1
            faces += [[a, b, e], [a, e, d2]]
    f_t = torch.tensor(faces, dtype=torch.long)
    lm = torch.linspace(0, n_v - 1, n_landmarks, dtype=torch.float64).round().long().unique()
    return LinearFaceModel(
        mean,
        basis,
        expression,
        faces=f_t,
        uvs=torch.stack([u, v], -1),
        face_uvs=f_t.clone(),
        landmark_indices=lm,
        expression_names=[f"bump{j}" for j in range(n_expression)],
        identity_variance=std**2,
        dtype=dtype,
        device=device,
    )


def _band_noise(
    shape: tuple[int, int, int], generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    b, h, w = shape
    n = torch.randn(
        b, 1, h, w, generator=generator, device=like.device if generator is None else generator.device
    )
    n = n.to(like.device, like.dtype)
    k = torch.tensor([1.0, 2.0, 1.0], dtype=like.dtype, device=like.device)
    k2 = (k[:, None] * k[None]) / 16
    n = F.conv2d(F.pad(n, (1, 1, 1, 1), mode="reflect"), k2.view(1, 1, 3, 3))
    return n / n.flatten(1).std(1).clamp_min(1e-8).view(b, 1, 1, 1)


@dataclass
class ProceduralAttributes:
    """Documented geometry -> attribute generator (see the module docstring for the formulas).

    Attributes:
        light_rgb: albedo at tone 0 (linear RGB).
        dark_rgb: albedo at tone 1.
        tone_gain: weight of the geometry feature in the tone logit.
        tone_noise: weight of the independent nuisance in the tone logit.
        tone_scale: cm of broadness / length that count as one unit.
        redness: strength of protrusion-driven redness.
        spec_base: specular intensity floor.
        spec_gain: T-zone specular gain.
        age_gain: weight of face length in the detail-amplitude logit.
        disp_scale: displacement amplitude scale (cm).
    """

    light_rgb: tuple[float, float, float] = (0.80, 0.62, 0.52)
    dark_rgb: tuple[float, float, float] = (0.30, 0.19, 0.13)
    tone_gain: float = 2.0
    tone_noise: float = 0.7
    tone_scale: float = 0.3
    redness: float = 0.15
    spec_base: float = 0.15
    spec_gain: float = 0.6
    age_gain: float = 2.0
    disp_scale: float = 0.02

    def features(self, positions: torch.Tensor, mean_map: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Geometry features driving the attributes: (broadness, length) per sample, in cm.

        Args:
            positions: (B, 3, H, W) position-offset map (cm).
            mean_map: (1, 3, H, W) position map of the mean shape (for the signs of x and y).
            mask: (H, W) bool coverage.

        Returns:
            (B, 2) features ``(w, l)``.
        """
        m = mask.to(positions.dtype)
        denom = m.sum().clamp_min(1.0)
        w = (positions[:, 0] * torch.sign(mean_map[:, 0]) * m).sum((1, 2)) / denom
        l_ = (positions[:, 1] * torch.sign(mean_map[:, 1]) * m).sum((1, 2)) / denom
        return torch.stack([w, l_], -1)

    def t_zone(
        self,
        height: int,
        width: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """(H, W) fixed T-zone weight in UV: a forehead band plus a vertical nose line around u = 0.5."""
        y = 1 - (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
        x = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
        vv, uu = torch.meshgrid(y, x, indexing="ij")
        forehead = torch.exp(-((vv - 0.78) ** 2) / 0.01) * torch.exp(-((uu - 0.5) ** 2) / 0.06)
        nose = torch.exp(-((uu - 0.5) ** 2) / 0.004) * ((vv > 0.35) & (vv < 0.8)).to(dtype)
        return (forehead + nose).clamp(0, 1)

    def __call__(
        self,
        positions: torch.Tensor,
        normals: torch.Tensor,
        mask: torch.Tensor,
        mean_map: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generate attribute maps.

        Args:
            positions: (B, 3, H, W) position-offset map (cm).
            normals: (B, 3, H, W) unit normals.
            mask: (H, W) bool coverage.
            mean_map: (1, 3, H, W) mean-shape position map.
            generator: RNG for the nuisance variables and pore noise.

        Returns:
            (B, 5, H, W): albedo (3), specular (1), displacement (1, cm); zero outside ``mask``.
        """
        fn = "ProceduralAttributes"
        check_floating(positions, "positions", fn=fn)
        dims = check_shape(positions, "B,3,H,W", "positions", fn=fn)
        check_shape(normals, "B,3,H,W", "normals", fn=fn, dims=dims)
        b, _, h, w = positions.shape
        gdev = generator.device if generator is not None else positions.device
        eps = torch.randn(b, 3, generator=generator, device=gdev).to(positions.device, positions.dtype)
        feats = self.features(positions, mean_map, mask)
        t = torch.sigmoid(self.tone_gain * feats[:, 0] / self.tone_scale + self.tone_noise * eps[:, 0])
        light = positions.new_tensor(self.light_rgb).view(1, 3, 1, 1)
        dark = positions.new_tensor(self.dark_rgb).view(1, 3, 1, 1)
        base = light + (dark - light) * t.view(b, 1, 1, 1)
        albedo = (base * (1 + self.redness * torch.tanh(positions[:, 2:3] / 0.5))).clamp(0, 1)
        tz = self.t_zone(h, w, device=positions.device, dtype=positions.dtype)
        spec = self.spec_base + self.spec_gain * tz * normals[:, 2:3] ** 2 * (
            1 + 0.3 * torch.tanh(eps[:, 1])
        ).view(b, 1, 1, 1)
        amp = self.disp_scale * (
            0.5 + torch.sigmoid(self.age_gain * feats[:, 1] / self.tone_scale + eps[:, 2])
        )
        disp = amp.view(b, 1, 1, 1) * _band_noise((b, h, w), generator, positions)
        m = mask.to(positions.dtype)
        return torch.cat([albedo, spec.clamp(0, 1), disp], 1) * m


class AttributeMapDataset(Dataset[dict[str, torch.Tensor]]):
    """Geometry maps of random identities with procedural attribute maps (precomputed, deterministic).

    Each sample is a dict: ``"geometry"`` (6, H, W) = position offsets (cm, divided by
    ``position_scale``) and unit normals; ``"attributes"`` (5, H, W) = albedo, specular, displacement
    (divided by ``displacement_scale``); ``"mask"`` (1, H, W) float; ``"identity"`` (K,) coefficients;
    ``"features"`` (2,) the generator's geometry features.

    Args:
        model: the linear face model (needs UVs).
        resolution: map size H = W.
        n_samples: number of identities.
        seed: seed for identities, nuisance variables and noise.
        attributes: the attribute generator (default :class:`ProceduralAttributes`).
        position_scale: divisor of the position offsets (cm).
        displacement_scale: divisor of the displacement (cm), so networks see O(1) values.
        truncation: identity coefficient truncation.
        batch: identities processed at once while precomputing.

    Raises:
        TypeError: ``model`` is not a :class:`~morphface.LinearFaceModel`, or a size is not an int.
        ValueError: a size < 1, a scale <= 0, or a model without UVs.
    """

    def __init__(
        self,
        model: LinearFaceModel,
        resolution: int,
        n_samples: int,
        *,
        seed: int = 0,
        attributes: ProceduralAttributes | None = None,
        position_scale: float = 2.0,
        displacement_scale: float = 0.05,
        truncation: float = 3.0,
        batch: int = 32,
    ) -> None:
        fn = "AttributeMapDataset"
        if not isinstance(model, LinearFaceModel):
            raise TypeError(f"{fn}: 'model' must be a LinearFaceModel; got {type(model).__name__}")
        check_int(resolution, "resolution", fn=fn)
        check_int(n_samples, "n_samples", fn=fn)
        check_int(batch, "batch", fn=fn)
        check_positive(position_scale, "position_scale", fn=fn)
        check_positive(displacement_scale, "displacement_scale", fn=fn)
        if model.uvs.shape[0] == 0:
            raise ValueError(
                f"{fn}: 'model' has no UVs; load it with UVs (e.g. load_ict_npz with template_obj)"
            )
        if n_samples < 1:
            raise ValueError(f"{fn}: 'n_samples' must be >= 1; got {n_samples}")
        self.resolution = resolution
        self.position_scale = position_scale
        self.displacement_scale = displacement_scale
        self.attributes = attributes or ProceduralAttributes()
        gen = torch.Generator().manual_seed(seed)
        raster: UVRaster = rasterize_uv(model.uvs, model.face_uvs, resolution, face_mask=model.uv_face_mask)
        faces = model.faces
        with torch.no_grad():
            mean_map, _, mask = geometry_maps(model.mean[None], faces, raster)
            geo, att, ids, feats = [], [], [], []
            for start in range(0, n_samples, batch):
                n = min(batch, n_samples - start)
                a = model.sample(n, generator=gen, truncation=truncation).cpu()
                verts = model.vertices(a.to(model.mean.device))
                pos, nrm, _ = geometry_maps(verts, faces, raster, mean=model.mean)
                attr = self.attributes(
                    pos.cpu().float(), nrm.cpu().float(), mask.cpu(), mean_map.cpu().float(), generator=gen
                )
                feats.append(self.attributes.features(pos.cpu().float(), mean_map.cpu().float(), mask.cpu()))
                attr[:, 4:5] = attr[:, 4:5] / displacement_scale
                geo.append(torch.cat([pos.cpu().float() / position_scale, nrm.cpu().float()], 1))
                att.append(attr)
                ids.append(a.float())
        self.geometry = torch.cat(geo)
        self.attribute_maps = torch.cat(att)
        self.identity = torch.cat(ids)
        self.features = torch.cat(feats)
        self.mask = mask.cpu().float()[None]
        self.mean_map = mean_map.cpu().float()
        logger.info(
            "AttributeMapDataset: %d samples at %d px, coverage %.3f",
            n_samples,
            resolution,
            float(self.mask.mean()),
        )

    def __len__(self) -> int:
        return int(self.geometry.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "geometry": self.geometry[i],
            "attributes": self.attribute_maps[i],
            "mask": self.mask,
            "identity": self.identity[i],
            "features": self.features[i],
        }


def attribute_geometry_statistics(
    attributes: torch.Tensor, geometry: torch.Tensor, features: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """The three attribute-geometry dependencies the procedural data encode, measured on a set of maps.

    - ``tone_vs_broadness``: Pearson correlation across samples between the masked mean albedo luminance
      and the broadness feature ``w`` (the data make it strongly negative: broader -> darker);
    - ``specular_vs_normal_z``: Pearson correlation over covered texels (pooled over samples) between
      specular intensity and ``N_z^2 * T``;
    - ``detail_vs_length``: correlation across samples between the displacement standard deviation and the
      length feature ``l``.

    Args:
        attributes: (B, 5, H, W) attribute maps (dataset scaling).
        geometry: (B, 6, H, W) geometry maps (positions, normals).
        features: (B, 2) geometry features ``(w, l)`` of the samples.
        mask: (1, H, W) or (H, W) coverage.

    Returns:
        Dict of the three correlations.
    """
    fn = "attribute_geometry_statistics"
    dims = check_shape(attributes, "B,5,H,W", "attributes", fn=fn)
    check_shape(geometry, "B,6,H,W", "geometry", fn=fn, dims=dims)
    m = mask.reshape(mask.shape[-2], mask.shape[-1]) > 0.5

    def corr(x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
        den = (x.norm() * y.norm()).clamp_min(1e-12)
        return float((x * y).sum() / den)

    lum = (0.2126 * attributes[:, 0] + 0.7152 * attributes[:, 1] + 0.0722 * attributes[:, 2])[:, m].mean(1)
    tz = ProceduralAttributes().t_zone(
        m.shape[0], m.shape[1], device=attributes.device, dtype=attributes.dtype
    )
    spec = attributes[:, 3][:, m].flatten()
    ref = (geometry[:, 5] ** 2 * tz)[:, m].flatten()
    disp_std = attributes[:, 4][:, m].std(1)
    return {
        "tone_vs_broadness": corr(lum, features[:, 0]),
        "specular_vs_normal_z": corr(spec, ref),
        "detail_vs_length": corr(disp_std, features[:, 1]),
    }
