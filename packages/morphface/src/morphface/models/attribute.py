"""UV-space attribute networks: the conditional attribute generator, a multi-scale PatchGAN discriminator
and the low-to-high resolution upsampler.

The paper (Li et al., CVPR 2020) names a TexNet producing the final albedo / specular / displacement maps
from a UV "geometry map" and GAN-based cascaded upscaling; the architectures are not public. The layers
here are a reconstruction in the style of the paper's period (pix2pixHD-like encoder-decoder generator with
a noise latent, multi-scale PatchGAN, ESRGAN-lite upsampler); see README "Deviations from the paper".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_floating, check_generator, check_int, check_shape

__all__ = ["AttributeGenerator", "PatchDiscriminator", "Upsampler"]


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'instance', 'batch' or 'none'; got {kind!r}")


def _check_norm(kind: object, fn: str) -> None:
    if kind not in ("instance", "batch", "none"):
        raise ValueError(f"{fn}: 'norm' must be 'instance', 'batch' or 'none'; got {kind!r}")


class _Down(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__(nn.Conv2d(cin, cout, 4, 2, 1), _norm(norm, cout), nn.LeakyReLU(0.2))


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), _norm(norm, cout), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class AttributeGenerator(nn.Module):
    """Geometry-conditioned generator of correlated albedo, specular and displacement maps (TexNet).

    ``maps = G(geometry_map, z, noise)``: a U-Net encoder over the 6-channel geometry map (position
    offsets + normals) and a per-texel noise channel (for pore-level detail), with the latent ``z``
    injected at the bottleneck through a learned per-channel scale and bias (AdaIN-style modulation),
    and a decoder with skip connections. Outputs albedo (3, sigmoid, [0, 1]), specular (1, sigmoid) and
    displacement (1, linear, in the dataset's displacement units).

    With ``conditional=False`` (the ablation) the geometry input is replaced by a learned constant map,
    so the same architecture can only learn the marginal distribution of attributes.

    Args:
        resolution: map size H = W (a multiple of ``2 ** n_down``).
        geometry_channels: channels of the geometry map (6: positions + normals).
        out_channels: attribute channels (5).
        latent_dim: size of ``z``.
        base_channels: channels after the first layer (doubled per level, capped at ``max_channels``).
        n_down: encoder levels.
        max_channels: channel cap.
        conditional: condition on geometry (``False``: unconditional ablation).
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        - geometry: (B, 6, H, W); z: (B, latent_dim); output: (B, 5, H, W).

    Examples:
        >>> g = AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=8)
        >>> g(torch.zeros(2, 6, 16, 16), torch.zeros(2, 8)).shape
        torch.Size([2, 5, 16, 16])
    """

    def __init__(
        self,
        resolution: int,
        *,
        geometry_channels: int = 6,
        out_channels: int = 5,
        latent_dim: int = 64,
        base_channels: int = 32,
        n_down: int = 4,
        max_channels: int = 256,
        conditional: bool = True,
        norm: str = "instance",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "AttributeGenerator"
        check_int(n_down, "n_down", fn=fn, minimum=0)
        check_int(resolution, "resolution", fn=fn)
        for name, value in (
            ("geometry_channels", geometry_channels),
            ("out_channels", out_channels),
            ("latent_dim", latent_dim),
            ("base_channels", base_channels),
            ("max_channels", max_channels),
        ):
            check_int(value, name, fn=fn)
        _check_norm(norm, fn)
        if resolution < 2**n_down or resolution % (2**n_down):
            raise ValueError(
                f"{fn}: 'resolution' must be a multiple of 2**n_down = {2**n_down}; got {resolution}"
            )
        self.resolution, self.latent_dim, self.conditional = resolution, latent_dim, conditional
        self.geometry_channels, self.out_channels, self.n_down = geometry_channels, out_channels, n_down
        self.config = {
            "resolution": resolution,
            "geometry_channels": geometry_channels,
            "out_channels": out_channels,
            "latent_dim": latent_dim,
            "base_channels": base_channels,
            "n_down": n_down,
            "max_channels": max_channels,
            "conditional": conditional,
            "norm": norm,
        }
        chs = [min(base_channels * 2**i, max_channels) for i in range(n_down + 1)]
        self.constant = (
            nn.Parameter(torch.randn(1, geometry_channels, resolution, resolution) * 0.1)
            if not conditional
            else None
        )
        self.stem = nn.Sequential(nn.Conv2d(geometry_channels + 1, chs[0], 3, 1, 1), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleList([_Down(chs[i], chs[i + 1], norm) for i in range(n_down)])
        self.style = nn.Linear(latent_dim, 2 * chs[-1])
        self.mid = nn.Sequential(nn.Conv2d(chs[-1], chs[-1], 3, 1, 1), nn.LeakyReLU(0.2))
        self.ups = nn.ModuleList(
            [
                _Up(chs[i + 1] + (chs[i + 1] if i + 1 < n_down else 0), chs[i], norm)
                for i in reversed(range(n_down))
            ]
        )
        self.head = nn.Conv2d(chs[0] * 2, out_channels, 3, 1, 1)
        self.to(device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, latent_dim={self.latent_dim}, conditional={self.conditional}"

    def sample_latent(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``z ~ N(0, I)``.

        Args:
            n: batch size.
            generator: optional RNG.

        Returns:
            (n, latent_dim) on the parameters' device/dtype.
        """
        fn = "AttributeGenerator.sample_latent"
        check_int(n, "n", fn=fn)
        check_generator(generator, fn=fn)
        p = self.style.weight
        gdev = generator.device if generator is not None else p.device
        return torch.randn(n, self.latent_dim, generator=generator, device=gdev).to(p.device, p.dtype)

    def forward(
        self, geometry: torch.Tensor | None, z: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Generate attribute maps.

        Args:
            geometry: (B, 6, H, W) geometry map (ignored, may be ``None``, when unconditional).
            z: (B, latent_dim) latent.
            noise: optional (B, 1, H, W) per-texel noise (default: fresh standard normal).

        Returns:
            (B, 5, H, W) albedo (3), specular (1), displacement (1).
        """
        fn = "AttributeGenerator.forward"
        dims = check_shape(z, f"B,{self.latent_dim}", "z", fn=fn)
        r = self.resolution
        if self.constant is not None:
            x = self.constant.expand(dims["B"], -1, -1, -1)
        else:
            if geometry is None:
                raise ValueError(f"{fn}: 'geometry' is required by a conditional generator; got None")
            check_floating(geometry, "geometry", fn=fn)
            check_shape(geometry, f"B,{self.geometry_channels},{r},{r}", "geometry", fn=fn, dims=dims)
            x = geometry
        if noise is None:
            noise = torch.randn(dims["B"], 1, r, r, device=z.device, dtype=z.dtype)
        h = self.stem(torch.cat([x, noise.to(x.dtype)], 1))
        skips = [h]
        for d in self.downs:
            h = d(h)
            skips.append(h)
        gamma, beta = self.style(z).chunk(2, dim=1)
        h = self.mid(h * (1 + gamma[..., None, None]) + beta[..., None, None])
        for i, up in enumerate(self.ups):
            if i > 0:
                h = torch.cat([h, skips[-1 - i]], 1)
            h = up(h)
        out = self.head(torch.cat([h, skips[0]], 1))
        return torch.cat([torch.sigmoid(out[:, :4]), out[:, 4:]], 1)


class PatchDiscriminator(nn.Module):
    """Multi-scale PatchGAN discriminator (pix2pixHD style) that returns every layer's features.

    Args:
        in_channels: input channels (attributes, plus geometry for a conditional D).
        base_channels: channels of the first layer (doubled per layer, capped at 8x).
        n_layers: stride-2 layers per scale.
        n_scales: number of scales (each one half the previous resolution).
        norm: ``"instance"`` or ``"none"``.
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        - Input: (B, C, H, W). Output: list over scales of lists of feature maps, last = patch logits.

    Examples:
        >>> d = PatchDiscriminator(5, base_channels=4, n_layers=2, n_scales=2)
        >>> out = d(torch.zeros(1, 5, 32, 32))
        >>> len(out), out.pop().pop().shape
        (2, torch.Size([1, 1, 4, 4]))
    """

    def __init__(
        self,
        in_channels: int,
        *,
        base_channels: int = 32,
        n_layers: int = 3,
        n_scales: int = 2,
        norm: str = "instance",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "PatchDiscriminator"
        check_int(in_channels, "in_channels", fn=fn)
        check_int(base_channels, "base_channels", fn=fn)
        check_int(n_layers, "n_layers", fn=fn)
        check_int(n_scales, "n_scales", fn=fn)
        _check_norm(norm, fn)
        self.in_channels, self.n_scales = in_channels, n_scales
        self.config = {
            "in_channels": in_channels,
            "base_channels": base_channels,
            "n_layers": n_layers,
            "n_scales": n_scales,
            "norm": norm,
        }
        self.scales: nn.ModuleList = nn.ModuleList()
        for _ in range(n_scales):
            layers: list[nn.Module] = [
                nn.Sequential(nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2))
            ]
            ch = base_channels
            for i in range(1, n_layers):
                nxt = min(base_channels * 2**i, base_channels * 8)
                layers.append(nn.Sequential(nn.Conv2d(ch, nxt, 4, 2, 1), _norm(norm, nxt), nn.LeakyReLU(0.2)))
                ch = nxt
            layers.append(nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), _norm(norm, ch), nn.LeakyReLU(0.2)))
            layers.append(nn.Conv2d(ch, 1, 3, 1, 1))
            self.scales.append(nn.ModuleList(layers))
        self.to(device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, n_scales={self.n_scales}"

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Features per scale.

        Args:
            x: (B, C, H, W) input.

        Returns:
            For each scale, the list of intermediate features; the last entry is the (B, 1, h, w) logits.
        """
        fn = "PatchDiscriminator.forward"
        check_floating(x, "x", fn=fn)
        check_shape(x, f"B,{self.in_channels},H,W", "x", fn=fn)
        out = []
        for i, layers in enumerate(self.scales):
            h = x if i == 0 else F.avg_pool2d(x, 2**i, 2**i)
            feats = []
            assert isinstance(layers, nn.ModuleList)
            for layer in layers:
                h = layer(h)
                feats.append(h)
            out.append(feats)
        return out


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(ch, ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.body(x)


class Upsampler(nn.Module):
    """Low-to-high resolution transfer of attribute maps (the paper's cascaded GAN upscaling, one stage).

    ``high = bilinear_up(low) + R(low, geometry_high)``: residual blocks on the low-resolution maps, then
    ``log2(scale)`` x2 nearest-upsampling + conv stages, with the high-resolution geometry map (optional)
    concatenated before the last stage so detail can follow the fine geometry. Stages can be cascaded
    (e.g. two x4 upsamplers for 256 -> 4096).

    Args:
        channels: attribute channels (5).
        scale: upscaling factor, a power of two.
        hidden: feature channels.
        n_blocks: residual blocks.
        geometry_channels: channels of the optional high-res geometry input (0 = none).
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        - low: (B, C, h, w); geometry: (B, G, h*scale, w*scale); output: (B, C, h*scale, w*scale).

    Examples:
        >>> Upsampler(5, scale=4, hidden=8, n_blocks=1)(torch.zeros(1, 5, 8, 8)).shape
        torch.Size([1, 5, 32, 32])
    """

    def __init__(
        self,
        channels: int = 5,
        *,
        scale: int = 4,
        hidden: int = 64,
        n_blocks: int = 4,
        geometry_channels: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "Upsampler"
        check_int(channels, "channels", fn=fn)
        check_int(scale, "scale", fn=fn, minimum=2)
        check_int(hidden, "hidden", fn=fn)
        check_int(n_blocks, "n_blocks", fn=fn, minimum=0)
        check_int(geometry_channels, "geometry_channels", fn=fn, minimum=0)
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"Upsampler: 'scale' must be a power of two >= 2; got {scale}")
        self.channels, self.scale, self.geometry_channels = channels, scale, geometry_channels
        self.config = {
            "channels": channels,
            "scale": scale,
            "hidden": hidden,
            "n_blocks": n_blocks,
            "geometry_channels": geometry_channels,
        }
        self.stem = nn.Conv2d(channels, hidden, 3, 1, 1)
        self.blocks = nn.Sequential(*[_ResBlock(hidden) for _ in range(n_blocks)])
        self.ups = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1), nn.LeakyReLU(0.2))
                for _ in range(int(math.log2(scale)))
            ]
        )
        self.fuse = nn.Sequential(nn.Conv2d(hidden + geometry_channels, hidden, 3, 1, 1), nn.LeakyReLU(0.2))
        self.out = nn.Conv2d(hidden, channels, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)
        self.to(device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, scale={self.scale}, geometry_channels={self.geometry_channels}"

    def forward(self, low: torch.Tensor, geometry: torch.Tensor | None = None) -> torch.Tensor:
        """Upsample attribute maps.

        Args:
            low: (B, C, h, w) low-resolution maps.
            geometry: (B, G, h*scale, w*scale) high-resolution geometry map when ``geometry_channels > 0``.

        Returns:
            (B, C, h*scale, w*scale) maps.
        """
        fn = "Upsampler.forward"
        check_floating(low, "low", fn=fn)
        dims = check_shape(low, f"B,{self.channels},h,w", "low", fn=fn)
        h = self.blocks(self.stem(low))
        for up in self.ups:
            h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        if self.geometry_channels:
            if geometry is None:
                raise ValueError(
                    f"{fn}: 'geometry' is required (geometry_channels={self.geometry_channels}); got None"
                )
            s = self.scale
            check_shape(
                geometry,
                f"B,{self.geometry_channels},{dims['h'] * s},{dims['w'] * s}",
                "geometry",
                fn=fn,
                dims=dims,
            )
            h = torch.cat([h, geometry.to(h.dtype)], 1)
        base = F.interpolate(low, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
        return base + self.out(self.fuse(h))
