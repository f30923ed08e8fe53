"""The paper's networks: generator G, global and pose discriminators, an optional local discriminator.

The overview figure fixes only the blocks and their inputs: G takes the reference S, the occluded input M
and the pose map L joined (here: concatenated channels) plus noise z; the global discriminator sees the
image; the pose discriminator sees the image joined with L. Every layer below is our choice (a small U-Net
and PatchGAN-style discriminators), listed under "Deviations" in the README.

Convention:
    Images are float ``(B, 3, H, W)`` in [0, 1] (mapped to [-1, 1] inside the networks); masks
    ``(B, 1, H, W)`` with 1 = occluded; pose maps ``(B, P, H, W)``. H and W must be divisible by
    ``2 ** depth`` for the generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_floating, check_int, check_positive, check_shape

__all__ = ["CompletionGenerator", "LocalDiscriminator", "PatchDiscriminator", "PoseDiscriminator"]

_NOISE_MODES = ("input", "none")


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class _Down(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 4, 2, 1), _norm(cout), nn.LeakyReLU(0.2))


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin + cskip, cout, 3, 1, 1), _norm(cout), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.conv(torch.cat([x, skip], dim=1))


class _ResBlock(nn.Module):
    def __init__(self, c: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, dilation, dilation=dilation),
            _norm(c),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, c, 3, 1, 1),
            _norm(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.body(x), 0.2)


class CompletionGenerator(nn.Module):
    """Generator G: ``y_hat = G([S (+) M (+) L], z)`` (a U-Net; layers are our choice).

    Args:
        use_reference: join the reference S at the input (the paper); ``False`` gives the plain inpainting
            baseline (same network without S).
        pose_channels: channels P of the pose map L (3 for the paper's pitch/yaw/roll planes, 68 for
            heatmaps, 0 to drop L: the "no pose map" ablation).
        mask_channel: also join the binary mask (not drawn in the figure; off by default).
        noise: ``"input"`` joins ``noise_channels`` planes of N(0, 1) noise z at the input (the figure draws
            z into G; where it enters is not known), ``"none"`` drops z.
        noise_channels: number of noise planes.
        id_dim: if > 0, an identity embedding ``(B, id_dim)`` is tiled and joined at the bottleneck
            (feature injection, an option not shown in the figure).
        base_channels: width of the first level.
        depth: number of stride-2 levels (H, W divisible by ``2 ** depth``).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - occluded: ``(B, 3, H, W)``; reference: ``(B, 3, H, W)``; pose: ``(B, P, H, W)``.
        - mask: ``(B, 1, H, W)`` (required with ``mask_channel``); noise: ``(B, noise_channels, H, W)``.
        - output: ``(B, 3, H, W)`` in (0, 1), the raw generator image (compose with
          :func:`occfill.functional.composite` to keep the visible pixels).

    Examples:
        >>> g = CompletionGenerator(base_channels=8, depth=2)
        >>> x = torch.rand(1, 3, 16, 16)
        >>> g(x, x, torch.zeros(1, 3, 16, 16)).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(
        self,
        *,
        use_reference: bool = True,
        pose_channels: int = 3,
        mask_channel: bool = False,
        noise: str = "input",
        noise_channels: int = 1,
        id_dim: int = 0,
        base_channels: int = 32,
        depth: int = 4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "CompletionGenerator"
        if noise not in _NOISE_MODES:
            raise ValueError(f"{fn}: 'noise' must be one of {_NOISE_MODES}; got {noise!r}")
        check_int(pose_channels, "pose_channels", fn=fn, low=0)
        check_int(noise_channels, "noise_channels", fn=fn)
        check_int(id_dim, "id_dim", fn=fn, low=0)
        check_int(base_channels, "base_channels", fn=fn)
        check_int(depth, "depth", fn=fn)
        self.use_reference = bool(use_reference)
        self.pose_channels = int(pose_channels)
        self.mask_channel = bool(mask_channel)
        self.noise = noise
        self.noise_channels = int(noise_channels)
        self.id_dim = int(id_dim)
        self.base_channels = int(base_channels)
        self.depth = int(depth)
        cin = 3 + (3 if use_reference else 0) + pose_channels + (1 if mask_channel else 0)
        cin += noise_channels if noise == "input" else 0
        self.in_channels = cin
        widths = [base_channels * min(2**i, 8) for i in range(depth + 1)]
        self.stem = nn.Sequential(nn.Conv2d(cin, widths[0], 3, 1, 1), _norm(widths[0]), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleList(_Down(widths[i], widths[i + 1]) for i in range(depth))
        cb = widths[-1]
        self.fuse = nn.Conv2d(cb + id_dim, cb, 1) if id_dim > 0 else nn.Identity()
        self.bottleneck = nn.Sequential(_ResBlock(cb, 2), _ResBlock(cb, 4))
        self.ups = nn.ModuleList(_Up(widths[i + 1], widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], 3, 3, 1, 1)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def make_noise(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        like: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | None:
        """Draw the noise planes z ``(B, noise_channels, H, W)`` (``None`` when ``noise="none"``)."""
        if self.noise == "none":
            return None
        return torch.randn(
            batch,
            self.noise_channels,
            height,
            width,
            generator=generator,
            device=like.device,
            dtype=like.dtype,
        )

    def forward(
        self,
        occluded: torch.Tensor,
        reference: torch.Tensor | None,
        pose: torch.Tensor | None,
        *,
        mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        id_embedding: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generate a full face from the joined inputs; see the class docstring for shapes."""
        fn = "CompletionGenerator"
        check_floating(occluded, "occluded", fn=fn)
        dims = check_shape(occluded, "B,3,H,W", "occluded", fn=fn)
        b, _, h, w = occluded.shape
        step = 2**self.depth
        if h % step or w % step:
            raise ValueError(f"{fn}: H and W must be divisible by 2**depth={step}; got {(h, w)}")
        parts = [occluded * 2.0 - 1.0]
        if self.use_reference:
            if reference is None:
                raise ValueError(f"{fn}: 'reference' is required when use_reference=True; got None")
            check_shape(reference, "B,3,H,W", "reference", fn=fn, dims=dims)
            parts.append(reference * 2.0 - 1.0)
        if self.pose_channels > 0:
            if pose is None:
                raise ValueError(
                    f"{fn}: 'pose' is required when pose_channels={self.pose_channels}; got None"
                )
            check_shape(pose, f"B,{self.pose_channels},H,W", "pose", fn=fn, dims=dims)
            parts.append(pose)
        if self.mask_channel:
            if mask is None:
                raise ValueError(f"{fn}: 'mask' is required when mask_channel=True; got None")
            check_shape(mask, "B,1,H,W", "mask", fn=fn, dims=dims)
            parts.append(mask)
        if self.noise == "input":
            if noise is None:
                noise = self.make_noise(b, h, w, like=occluded, generator=generator)
            assert noise is not None
            check_shape(noise, f"B,{self.noise_channels},H,W", "noise", fn=fn, dims=dims)
            parts.append(noise)
        x = self.stem(torch.cat(parts, dim=1))
        skips = [x]
        for down in self.downs:
            x = down(x)
            skips.append(x)
        if self.id_dim > 0:
            if id_embedding is None:
                raise ValueError(f"{fn}: 'id_embedding' is required when id_dim={self.id_dim}; got None")
            check_shape(id_embedding, f"B,{self.id_dim}", "id_embedding", fn=fn, dims=dims)
            tiled = id_embedding[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            x = torch.cat([x, tiled], dim=1)
        x = self.bottleneck(self.fuse(x))
        skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return torch.sigmoid(self.head(x))

    def extra_repr(self) -> str:
        return (
            f"use_reference={self.use_reference}, pose_channels={self.pose_channels}, "
            f"mask_channel={self.mask_channel}, noise={self.noise!r}, noise_channels={self.noise_channels}, "
            f"id_dim={self.id_dim}, base_channels={self.base_channels}, depth={self.depth}"
        )


class PatchDiscriminator(nn.Module):
    """PatchGAN-style discriminator (our layer choice); the global discriminator of the paper.

    Args:
        in_channels: input channels (3 for an image).
        base_channels: width of the first layer.
        n_layers: number of stride-2 convolutions.
        spectral_norm: wrap convolutions in spectral normalisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - image: ``(B, in_channels, H, W)`` in [0, 1] for the first 3 channels (mapped to [-1, 1]).
        - output: ``(B, 1, H / 2**n_layers, W / 2**n_layers)`` logits (roughly).

    Examples:
        >>> PatchDiscriminator(base_channels=8, n_layers=2)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        base_channels: int = 32,
        n_layers: int = 3,
        spectral_norm: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = type(self).__name__
        check_positive(in_channels, "in_channels", fn=fn)
        check_positive(base_channels, "base_channels", fn=fn)
        check_positive(n_layers, "n_layers", fn=fn)
        self.in_channels = int(in_channels)
        self.base_channels = int(base_channels)
        self.n_layers = int(n_layers)
        self.spectral_norm = bool(spectral_norm)
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(n_layers):
            cout = base_channels * min(2**i, 8)
            layers += [sn(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        layers += [sn(nn.Conv2d(cin, cin, 3, 1, 1)), nn.LeakyReLU(0.2), sn(nn.Conv2d(cin, 1, 3, 1, 1))]
        self.net = nn.Sequential(*layers)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Patch logits of ``image``."""
        fn = type(self).__name__
        check_floating(image, "image", fn=fn)
        check_shape(image, f"B,{self.in_channels},H,W", "image", fn=fn)
        return self.net(image * 2.0 - 1.0)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, base_channels={self.base_channels}, n_layers={self.n_layers}, "
            f"spectral_norm={self.spectral_norm}"
        )


class PoseDiscriminator(nn.Module):
    """Pose discriminator D_p: sees an image joined with the target pose map L.

    Real pairs are ``(y, L)`` and fake pairs ``(output, L)`` with the SAME L (the figure); optional
    mismatched real pairs ``(y, L')`` are our extension (see the training recipe).

    Args:
        pose_channels: channels P of L.
        base_channels: width of the first layer.
        n_layers: number of stride-2 convolutions.
        spectral_norm: use spectral normalisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - image: ``(B, 3, H, W)``; pose: ``(B, P, H, W)``; output: patch logits ``(B, 1, h, w)``.

    Examples:
        >>> d = PoseDiscriminator(base_channels=8, n_layers=2)
        >>> d(torch.rand(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)).shape
        torch.Size([1, 1, 4, 4])
    """

    def __init__(
        self,
        pose_channels: int = 3,
        *,
        base_channels: int = 32,
        n_layers: int = 3,
        spectral_norm: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive(pose_channels, "pose_channels", fn="PoseDiscriminator")
        self.pose_channels = int(pose_channels)
        self.body = PatchDiscriminator(
            3 + pose_channels,
            base_channels=base_channels,
            n_layers=n_layers,
            spectral_norm=spectral_norm,
            device=device,
            dtype=dtype,
        )

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Patch logits of ``image (+) pose``."""
        fn = "PoseDiscriminator"
        check_floating(image, "image", fn=fn)
        check_floating(pose, "pose", fn=fn)
        dims = check_shape(image, "B,3,H,W", "image", fn=fn)
        check_shape(pose, f"B,{self.pose_channels},H,W", "pose", fn=fn, dims=dims)
        # the body maps its whole input x -> 2x - 1; undo that for the pose planes so L enters as given
        return self.body(torch.cat([image, (pose + 1.0) * 0.5], dim=1))

    def extra_repr(self) -> str:
        return f"pose_channels={self.pose_channels}"


class LocalDiscriminator(nn.Module):
    """Local (ocular-crop) discriminator: an OPTION, not in the paper's figure.

    Crops each image to the bounding box of its mask (differentiably, bilinear ``grid_sample``), resizes
    the crop to ``crop_size`` and scores it with a :class:`PatchDiscriminator`.

    Args:
        crop_size: side of the resized crop.
        base_channels: width of the first layer.
        n_layers: number of stride-2 convolutions.
        spectral_norm: use spectral normalisation.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - image: ``(B, 3, H, W)``; mask: ``(B, 1, H, W)`` (non-empty); output: ``(B, 1, h, w)`` logits.

    Examples:
        >>> from occfill.masks import eye_box_mask
        >>> d = LocalDiscriminator(crop_size=16, base_channels=8, n_layers=2)
        >>> d(torch.rand(2, 3, 32, 32), eye_box_mask(32, 32, batch=2)).shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(
        self,
        *,
        crop_size: int = 32,
        base_channels: int = 32,
        n_layers: int = 3,
        spectral_norm: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive(crop_size, "crop_size", fn="LocalDiscriminator")
        self.crop_size = int(crop_size)
        self.body = PatchDiscriminator(
            3,
            base_channels=base_channels,
            n_layers=n_layers,
            spectral_norm=spectral_norm,
            device=device,
            dtype=dtype,
        )

    @staticmethod
    def crop(image: torch.Tensor, mask: torch.Tensor, size: int) -> torch.Tensor:
        """Crop ``image`` to the bounding box of ``mask`` (per image) and resize to ``size x size``."""
        b, _, h, w = image.shape
        rows = mask.amax(dim=3).squeeze(1) > 0  # (B, H)
        cols = mask.amax(dim=2).squeeze(1) > 0  # (B, W)
        ar_h = torch.arange(h, device=image.device)
        ar_w = torch.arange(w, device=image.device)
        y0 = torch.where(rows, ar_h, h).amin(dim=1).to(image.dtype)
        y1 = torch.where(rows, ar_h, -1).amax(dim=1).to(image.dtype) + 1
        x0 = torch.where(cols, ar_w, w).amin(dim=1).to(image.dtype)
        x1 = torch.where(cols, ar_w, -1).amax(dim=1).to(image.dtype) + 1
        # normalised [-1, 1] coordinates (align_corners=False): pixel edge e -> 2 e / size - 1
        t = torch.linspace(0.0, 1.0, size, device=image.device, dtype=image.dtype)
        t = (t * (size - 1) + 0.5) / size  # sample centres of the output pixels
        gx = (x0[:, None] + (x1 - x0)[:, None] * t) * (2.0 / w) - 1.0  # (B, size)
        gy = (y0[:, None] + (y1 - y0)[:, None] * t) * (2.0 / h) - 1.0
        grid = torch.stack(
            [gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)], dim=-1
        )  # (B, size, size, 2)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Patch logits of the ocular crop of ``image``."""
        fn = "LocalDiscriminator"
        check_floating(image, "image", fn=fn)
        check_floating(mask, "mask", fn=fn)
        dims = check_shape(image, "B,3,H,W", "image", fn=fn)
        check_shape(mask, "B,1,H,W", "mask", fn=fn, dims=dims)
        return self.body(self.crop(image, mask, self.crop_size))

    def extra_repr(self) -> str:
        return f"crop_size={self.crop_size}"
