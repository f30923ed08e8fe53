"""The cascade's networks: SegNet, DistanceNet, FlowNet (distance-conditioned), CompletionNet.

All four are reconstructions (the paper's architecture text could not be read; see the README's
"Deviations"): U-Nets for segmentation and flow, a ResNet-style classifier + regressor for distance,
and a dilated encoder-decoder for completion. Widths are configurable; ``*_small`` builders are sized
for CPU, ``*_paper`` builders follow the dossier's reconstruction.

Convention:
    Images ``(B, 3, H, W)`` in [0, 1]; masks ``(B, 1, H, W)`` in [0, 1] (1 = head); distances in cm;
    flows in pixels (backward, see :mod:`undistort.camera`). ``H`` and ``W`` must be divisible by
    ``2 ** (levels - 1)`` (U-Nets) or 8 (CompletionNet).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_floating, check_same_device, check_shape
from ..checkpoint import load_checkpoint
from ..functional import distance_bin_centers, distance_to_code
from ..warp import unnormalize_flow
from ._registry import register_model

logger = logging.getLogger(__name__)

__all__ = [
    "CompletionDiscriminator",
    "CompletionNet",
    "DistanceNet",
    "FlowNet",
    "SegNet",
    "UNet",
    "completiondisc_paper",
    "completiondisc_small",
    "completionnet_paper",
    "completionnet_small",
    "distancenet_paper",
    "distancenet_small",
    "flownet_paper",
    "flownet_small",
    "segnet_small",
]


def _check_image(image: Tensor, fn: str, channels: int = 3) -> dict[str, int]:
    check_floating(image, "image", fn=fn)
    dims = check_shape(image, f"B,{channels},H,W", "image", fn=fn)
    if dims["H"] == 0 or dims["W"] == 0 or dims["B"] == 0:
        raise ValueError(f"{fn}: 'image' must be non-empty; got {tuple(image.shape)}")
    return dims


def _check_mask(mask: Tensor, dims: dict[str, int], fn: str, name: str = "mask") -> None:
    check_floating(mask, name, fn=fn)
    check_shape(mask, "B,1,H,W", name, fn=fn, dims=dims)


def _check_divisible(dims: dict[str, int], k: int, fn: str, name: str = "image") -> None:
    if dims["H"] % k or dims["W"] % k:
        raise ValueError(
            f"{fn}: '{name}' height and width must be divisible by {k}; got {dims['H']}x{dims['W']}"
        )


def _norm(ch: int) -> nn.Module:
    return nn.GroupNorm(min(8, ch), ch)


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation),
            _norm(cout),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            _norm(cout),
            nn.LeakyReLU(0.1, inplace=True),
        )


class UNet(nn.Module):
    """A plain U-Net: ``levels`` resolutions, max-pool down, bilinear up, skip concatenation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        widths: channel width per level (``len(widths)`` levels).
        bottleneck_channels: extra channels concatenated at the coarsest level (a conditioning code).

    Shape:
        - x: ``(B, in_channels, H, W)``, H and W divisible by ``2 ** (levels - 1)``.
        - cond: ``(B, bottleneck_channels)`` or None.
        - output: ``(B, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int] = (32, 64, 128, 256),
        bottleneck_channels: int = 0,
    ) -> None:
        super().__init__()
        widths = list(widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"UNet: 'widths' must be non-empty positive ints; got {widths}")
        self.levels = len(widths)
        self.bottleneck_channels = bottleneck_channels
        self.down = nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            extra = bottleneck_channels if i == len(widths) - 1 else 0
            self.down.append(_Block(c + extra, w))
            c = w
        self.up = nn.ModuleList()
        for i in range(len(widths) - 2, -1, -1):
            self.up.append(_Block(c + widths[i], widths[i]))
            c = widths[i]
        self.head = nn.Conv2d(c, out_channels, 1)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Run the U-Net; ``cond`` (if any) is broadcast as planes at the coarsest level."""
        skips = []
        for i, blk in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            if i == self.levels - 1 and self.bottleneck_channels:
                if cond is None:
                    raise ValueError("UNet: 'cond' is required when bottleneck_channels > 0")
                x = torch.cat([x, cond[:, :, None, None].to(x).expand(-1, -1, *x.shape[-2:])], 1)
            x = blk(x)
            skips.append(x)
        for j, blk in enumerate(self.up):
            skip = skips[-2 - j]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, skip], 1))
        return self.head(x)


class SegNet(nn.Module):
    """Head segmentation (the cascade's first step): a U-Net with 2 classes (rest, head).

    Args:
        widths: U-Net widths per level.
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        - image: ``(B, 3, H, W)``; output logits ``(B, 2, H, W)``.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128, 256),
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.net = UNet(3, 2, self.widths).to(device=device, dtype=dtype)

    def forward(self, image: Tensor) -> Tensor:
        """Class logits ``(B, 2, H, W)`` (channel 1 = head)."""
        dims = _check_image(image, "SegNet")
        _check_divisible(dims, 2 ** (len(self.widths) - 1), "SegNet")
        return self.net(image)

    def predict_mask(self, image: Tensor) -> Tensor:
        """Soft head mask ``(B, 1, H, W)`` (softmax probability of the head class)."""
        return self.forward(image).softmax(1)[:, 1:2]

    def extra_repr(self) -> str:
        return f"widths={self.widths}"


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.n1(self.c1(x)))
        return F.relu(self.n2(self.c2(y)) + self.skip(x))


class DistanceNet(nn.Module):
    """Camera-to-subject distance from a portrait: ResNet-style trunk, bin logits + log-distance regression.

    The paper predicts the distance before the flow (abstract: single-portrait calibration). Here a
    classifier over ``num_bins`` log-spaced bins in ``[d_min, d_max]`` is trained with cross-entropy and a
    regression head on ``log d`` with L1 (reconstruction, see README).

    Args:
        widths: channels of the four stages.
        blocks: basic blocks per stage.
        num_bins: number of distance bins ``K``.
        d_min: smallest distance (cm).
        d_max: largest distance (cm).
        in_channels: 3 (RGB) or 4 (RGB + head mask).
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        - image: ``(B, 3, H, W)``; mask: ``(B, 1, H, W)`` when ``in_channels == 4``.
        - output: dict ``logits`` ``(B, K)``, ``log_distance`` ``(B,)``, ``distance`` ``(B,)``.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 1, 1),
        *,
        num_bins: int = 8,
        d_min: float = 25.0,
        d_max: float = 160.0,
        in_channels: int = 4,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_channels not in (3, 4):
            raise ValueError(f"DistanceNet: 'in_channels' must be 3 or 4; got {in_channels}")
        if len(widths) != len(blocks) or not widths:
            raise ValueError(
                f"DistanceNet: 'widths' and 'blocks' must have one non-zero length; got {widths}, {blocks}"
            )
        distance_bin_centers(num_bins, d_min, d_max)  # validates
        self.widths, self.blocks = tuple(widths), tuple(blocks)
        self.num_bins, self.d_min, self.d_max, self.in_channels = (
            num_bins,
            float(d_min),
            float(d_max),
            in_channels,
        )
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], 5, 2, 2, bias=False),
            _norm(widths[0]),
            nn.ReLU(),
        ]
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(_BasicBlock(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.trunk = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_bins)
        self.regressor = nn.Linear(c, 1)
        nn.init.zeros_(self.regressor.weight)
        mid = 0.5 * (torch.log(torch.tensor(d_min)) + torch.log(torch.tensor(d_max)))
        nn.init.constant_(self.regressor.bias, float(mid))
        self.to(device=device, dtype=dtype)

    def forward_features(self, image: Tensor, mask: Tensor | None = None) -> Tensor:
        """Pooled trunk features ``(B, C)``."""
        fn = "DistanceNet"
        dims = _check_image(image, fn)
        x = image
        if self.in_channels == 4:
            if mask is None:
                raise ValueError(f"{fn}: 'mask' is required when in_channels == 4")
            _check_mask(mask, dims, fn)
            check_same_device(("image", image), ("mask", mask), fn=fn)
            x = torch.cat([image, mask.to(image)], 1)
        return self.trunk(x).mean((2, 3))

    def forward(self, image: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Bin logits, log-distance and distance (``exp`` of the regression head)."""
        feat = self.forward_features(image, mask)
        logd = self.regressor(feat)[:, 0]
        return {"logits": self.classifier(feat), "log_distance": logd, "distance": logd.exp()}

    def bin_centers(self) -> Tensor:
        """``(K,)`` distance bin centres (float64)."""
        return distance_bin_centers(self.num_bins, self.d_min, self.d_max)

    def extra_repr(self) -> str:
        return f"widths={self.widths}, blocks={self.blocks}, num_bins={self.num_bins}, d_range=({self.d_min}, {self.d_max})"


class FlowNet(nn.Module):
    """Correction-flow U-Net conditioned on the camera distance.

    Input: RGB, head mask, and the distance code (:func:`~undistort.functional.distance_to_code`) as
    constant planes at the input and at the bottleneck. Output: backward flow in pixels (``tanh``-bounded
    at ``max_flow`` of the image size) and logits of the *corrected* head mask (used to find the holes that
    completion fills).

    Args:
        widths: U-Net widths per level.
        conditioning: ``"onehot"``, ``"soft"``, ``"logd"`` or ``"none"`` (the ablation).
        num_bins: distance bins ``K`` of the one-hot/soft code.
        d_min: smallest distance (cm).
        d_max: largest distance (cm).
        max_flow: flow bound as a fraction of the image half-size (normalised coordinates).
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        - image ``(B, 3, H, W)``, mask ``(B, 1, H, W)``, distance ``(B,)``.
        - output dict: ``flow`` ``(B, 2, H, W)`` pixels, ``mask_logits`` ``(B, 1, H, W)``.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128, 256),
        *,
        conditioning: str = "soft",
        num_bins: int = 8,
        d_min: float = 25.0,
        d_max: float = 160.0,
        max_flow: float = 0.5,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if conditioning not in ("onehot", "soft", "logd", "none"):
            raise ValueError(
                f"FlowNet: 'conditioning' must be 'onehot', 'soft', 'logd' or 'none'; got {conditioning!r}"
            )
        distance_bin_centers(num_bins, d_min, d_max)
        self.widths, self.conditioning = tuple(widths), conditioning
        self.num_bins, self.d_min, self.d_max, self.max_flow = (
            num_bins,
            float(d_min),
            float(d_max),
            float(max_flow),
        )
        self.code_dim = {"onehot": num_bins, "soft": num_bins, "logd": 1, "none": 0}[conditioning]
        self.net = UNet(4 + self.code_dim, 3, self.widths, bottleneck_channels=self.code_dim)
        nn.init.zeros_(self.net.head.weight)
        if self.net.head.bias is not None:
            nn.init.zeros_(self.net.head.bias)
        self.to(device=device, dtype=dtype)

    def code(self, distance: Tensor) -> Tensor:
        """Distance code ``(B, D)`` fed to the network."""
        return distance_to_code(distance, self.num_bins, self.d_min, self.d_max, mode=self.conditioning)

    def forward(self, image: Tensor, mask: Tensor, distance: Tensor | None = None) -> dict[str, Tensor]:
        """Predict the backward correction flow (pixels) and the corrected head-mask logits."""
        fn = "FlowNet"
        dims = _check_image(image, fn)
        _check_divisible(dims, 2 ** (len(self.widths) - 1), fn)
        _check_mask(mask, dims, fn)
        check_same_device(("image", image), ("mask", mask), fn=fn)
        x = torch.cat([image, mask.to(image)], 1)
        cond = None
        if self.code_dim:
            if distance is None:
                raise ValueError(f"{fn}: 'distance' is required when conditioning={self.conditioning!r}")
            check_floating(distance, "distance", fn=fn)
            check_shape(distance, "B", "distance", fn=fn, dims=dims)
            cond = self.code(distance.to(image))
            x = torch.cat([x, cond[:, :, None, None].expand(-1, -1, dims["H"], dims["W"])], 1)
        out = self.net(x, cond)
        flow = unnormalize_flow(torch.tanh(out[:, :2]) * self.max_flow)
        return {"flow": flow, "mask_logits": out[:, 2:3]}

    def extra_repr(self) -> str:
        return f"widths={self.widths}, conditioning={self.conditioning!r}, num_bins={self.num_bins}, max_flow={self.max_flow}"


class CompletionNet(nn.Module):
    """Fills regions revealed by the correction (e.g. ears): encoder, dilated bottleneck, decoder.

    Input: the warped image, the hole mask and the corrected head mask; output is composited so pixels
    outside the holes are kept: ``out = warped * (1 - holes) + pred * holes``.

    Args:
        width: base width (the dilated bottleneck has ``4 * width`` channels at 1/8 resolution).
        dilations: dilation rates of the bottleneck blocks.
        device: parameter device.
        dtype: parameter dtype.

    Raises:
        ValueError: ``width < 1`` or empty / non-positive ``dilations`` (at construction).

    Shape:
        - warped ``(B, 3, H, W)``, holes ``(B, 1, H, W)``, mask ``(B, 1, H, W)``; output ``(B, 3, H, W)``.
    """

    def __init__(
        self,
        width: int = 32,
        dilations: Sequence[int] = (2, 4, 8, 16),
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if int(width) < 1 or not dilations or min(int(r) for r in dilations) < 1:
            raise ValueError(
                f"CompletionNet: 'width' must be >= 1 and 'dilations' non-empty positive ints; got "
                f"width={width}, dilations={tuple(dilations)}"
            )
        self.width, self.dilations = int(width), tuple(int(r) for r in dilations)
        w = self.width
        self.enc = nn.ModuleList([_Block(5, w), _Block(w, 2 * w), _Block(2 * w, 4 * w), _Block(4 * w, 4 * w)])
        self.mid = nn.Sequential(*[_Block(4 * w, 4 * w, dilation=r) for r in self.dilations])
        self.dec = nn.ModuleList([_Block(8 * w, 4 * w), _Block(6 * w, 2 * w), _Block(3 * w, w)])
        self.head = nn.Conv2d(w, 3, 1)
        self.to(device=device, dtype=dtype)

    def forward(self, warped: Tensor, holes: Tensor, mask: Tensor) -> Tensor:
        """Completed image ``(B, 3, H, W)``, equal to ``warped`` outside the holes."""
        fn = "CompletionNet"
        check_floating(warped, "warped", fn=fn)
        dims = check_shape(warped, "B,3,H,W", "warped", fn=fn)
        _check_divisible(dims, 8, fn, "warped")
        _check_mask(holes, dims, fn, "holes")
        _check_mask(mask, dims, fn, "mask")
        hm = holes.to(warped)
        x = torch.cat([warped * (1 - hm), hm, mask.to(warped)], 1)
        skips = []
        for i, blk in enumerate(self.enc):
            if i > 0:
                x = F.avg_pool2d(x, 2)
            x = blk(x)
            skips.append(x)
        x = self.mid(x)
        for j, blk in enumerate(self.dec):
            skip = skips[-2 - j]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, skip], 1))
        pred = torch.sigmoid(self.head(x))
        return warped * (1 - hm) + pred * hm

    def extra_repr(self) -> str:
        return f"width={self.width}, dilations={self.dilations}"


def _patch_net(in_channels: int, width: int, n_layers: int, spectral: bool) -> nn.Sequential:
    """PatchGAN: ``n_layers`` 4x4 stride-2 convolutions (widths ``width * 2**i``, capped at ``8 * width``),
    LeakyReLU(0.2), then a 3x3 convolution to one logit per patch."""

    def sn(conv: nn.Conv2d) -> nn.Module:
        return nn.utils.parametrizations.spectral_norm(conv) if spectral else conv

    layers: list[nn.Module] = []
    c = in_channels
    for i in range(n_layers):
        w = width * min(2**i, 8)
        layers += [sn(nn.Conv2d(c, w, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
        c = w
    layers.append(sn(nn.Conv2d(c, 1, 3, 1, 1)))
    return nn.Sequential(*layers)


class CompletionDiscriminator(nn.Module):
    """Hinge-GAN critic of the completion step: a global and a local (hole-centred) patch discriminator.

    The dossier's reconstruction of the paper's completion loss (its text could not be read): L1 plus a
    hinge GAN with a *global* discriminator on the whole corrected image and a *local* one on a crop
    centred on the revealed regions (the holes), in the style of global + local inpainting critics; both
    are PatchGANs (one logit per patch) with spectral normalisation. Both see the RGB image and the hole
    mask, so real and completed images are judged with the same holes.

    Args:
        width: channels of the first convolution (doubling per layer, capped at ``8 * width``).
        n_layers: stride-2 convolutions per discriminator (patch logits at ``1 / 2**n_layers`` resolution).
        local: also run the local discriminator on a hole-centred crop.
        crop_fraction: side of the local crop as a fraction of the image side (in (0, 1]).
        spectral_norm: spectral normalisation of every convolution.
        device: parameter device.
        dtype: parameter dtype.

    Convention:
        The crop is centred on the hole pixels' centroid (the image centre when a sample has no hole),
        shifted to stay inside the image, and resampled bilinearly at the image's pixel density.

    Shape:
        - image ``(B, 3, H, W)`` in [0, 1], holes ``(B, 1, H, W)`` (1 = revealed region).
        - output dict: ``global`` ``(B, 1, H / 2**n, W / 2**n)`` and, with ``local``, ``local``
          ``(B, 1, h / 2**n, w / 2**n)`` with ``h = round(crop_fraction * H)``.

    Examples:
        >>> d = CompletionDiscriminator(width=4, n_layers=2)
        >>> out = d(torch.rand(2, 3, 16, 16), torch.zeros(2, 1, 16, 16))
        >>> tuple(out["global"].shape), tuple(out["local"].shape)
        ((2, 1, 4, 4), (2, 1, 2, 2))
    """

    def __init__(
        self,
        width: int = 64,
        n_layers: int = 3,
        *,
        local: bool = True,
        crop_fraction: float = 0.5,
        spectral_norm: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "CompletionDiscriminator"
        if int(width) < 1 or int(n_layers) < 1:
            raise ValueError(f"{fn}: 'width' and 'n_layers' must be >= 1; got {width}, {n_layers}")
        if not 0.0 < float(crop_fraction) <= 1.0:
            raise ValueError(f"{fn}: 'crop_fraction' must be in (0, 1]; got {crop_fraction}")
        self.width, self.n_layers = int(width), int(n_layers)
        self.local, self.crop_fraction, self.spectral_norm = (
            bool(local),
            float(crop_fraction),
            bool(spectral_norm),
        )
        self.global_net = _patch_net(4, self.width, self.n_layers, self.spectral_norm)
        self.local_net = _patch_net(4, self.width, self.n_layers, self.spectral_norm) if self.local else None
        self.to(device=device, dtype=dtype)

    def crop(self, x: Tensor, holes: Tensor) -> Tensor:
        """The hole-centred crop ``(B, C, h, w)`` of ``x`` (see Convention)."""
        b, _, h, w = x.shape
        ch, cw = max(1, round(self.crop_fraction * h)), max(1, round(self.crop_fraction * w))
        sy, sx = ch / h, cw / w  # half-extent of the crop in normalised coordinates
        hm = holes[:, 0].to(x)
        ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) * 2 / h - 1
        xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) * 2 / w - 1
        n = hm.sum((1, 2))
        cy = (hm.sum(2) * ys).sum(1) / n.clamp(min=1e-8)
        cx = (hm.sum(1) * xs).sum(1) / n.clamp(min=1e-8)
        cy = torch.where(n > 0, cy, torch.zeros_like(cy)).clamp(-1 + sy, 1 - sy)
        cx = torch.where(n > 0, cx, torch.zeros_like(cx)).clamp(-1 + sx, 1 - sx)
        theta = x.new_zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = sx, sy
        theta[:, 0, 2], theta[:, 1, 2] = cx.detach(), cy.detach()
        grid = F.affine_grid(theta, [b, x.shape[1], ch, cw], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def forward(self, image: Tensor, holes: Tensor) -> dict[str, Tensor]:
        """Patch logits of the global (and local) discriminator; real images should score high."""
        fn = "CompletionDiscriminator"
        dims = _check_image(image, fn)
        _check_mask(holes, dims, fn, "holes")
        check_same_device(("image", image), ("holes", holes), fn=fn)
        k = 2**self.n_layers
        need = k if not self.local else math.ceil(k / self.crop_fraction)
        if dims["H"] < need or dims["W"] < need:
            raise ValueError(
                f"{fn}: 'image' must be at least {need}x{need} for n_layers={self.n_layers}"
                f"{f' and crop_fraction={self.crop_fraction}' if self.local else ''}; got {dims['H']}x{dims['W']}"
            )
        x = torch.cat([image, holes.to(image)], 1)
        out = {"global": self.global_net(x)}
        if self.local_net is not None:
            out["local"] = self.local_net(self.crop(x, holes))
        return out

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, n_layers={self.n_layers}, local={self.local}, "
            f"crop_fraction={self.crop_fraction}, spectral_norm={self.spectral_norm}"
        )


# ---------------------------------------------------------------------------------------------- builders


def _build(
    cls: type[nn.Module],
    arch: str,
    defaults: dict[str, Any],
    weights: str | os.PathLike | None,
    kwargs: dict[str, Any],
) -> Any:
    config = dict(defaults)
    if weights is not None:
        ckpt = load_checkpoint(weights)
        if ckpt.get("arch") != arch:
            raise ValueError(
                f"{arch}: checkpoint {os.fspath(weights)!r} holds arch {ckpt.get('arch')!r}, not {arch!r}"
            )
        for k, v in ckpt.get("config", {}).items():
            if k in kwargs and kwargs[k] != v and not (isinstance(v, list) and tuple(v) == tuple(kwargs[k])):
                raise ValueError(
                    f"{arch}: argument {k}={kwargs[k]!r} conflicts with the checkpoint's {k}={v!r}"
                )
            config[k] = v
    config.update(kwargs)
    device, dtype = config.pop("device", None), config.pop("dtype", None)
    model = cls(**config, device=device, dtype=dtype)
    if weights is not None:
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        if missing:
            logger.info("%s: missing keys %s", arch, missing)
        if unexpected:
            logger.warning("%s: unexpected keys %s", arch, unexpected)
    model.arch = arch  # type: ignore[assignment]
    model.config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}  # type: ignore[assignment]
    return model


@register_model
def segnet_small(*, weights: str | os.PathLike | None = None, **kwargs: Any) -> SegNet:
    """SegNet with widths (16, 32, 64, 128) for CPU use.

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`SegNet` arguments.

    Returns:
        The model.
    """
    return _build(SegNet, "segnet_small", {"widths": (16, 32, 64, 128)}, weights, kwargs)


@register_model
def distancenet_small(*, weights: str | os.PathLike | None = None, **kwargs: Any) -> DistanceNet:
    """DistanceNet with widths (16, 32, 64, 128), one block per stage.

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`DistanceNet` arguments.

    Returns:
        The model.
    """
    return _build(
        DistanceNet,
        "distancenet_small",
        {"widths": (16, 32, 64, 128), "blocks": (1, 1, 1, 1)},
        weights,
        kwargs,
    )


@register_model
def distancenet_paper(*, weights: str | os.PathLike | None = None, **kwargs: Any) -> DistanceNet:
    """DistanceNet as the dossier's reconstruction: ResNet-18 layout (64..512, 2 blocks per stage).

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`DistanceNet` arguments.

    Returns:
        The model.
    """
    return _build(
        DistanceNet,
        "distancenet_paper",
        {"widths": (64, 128, 256, 512), "blocks": (2, 2, 2, 2)},
        weights,
        kwargs,
    )


@register_model
def flownet_small(*, weights: str | os.PathLike | None = None, **kwargs: Any) -> FlowNet:
    """FlowNet with widths (16, 32, 64, 128) for CPU use.

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`FlowNet` arguments.

    Returns:
        The model.
    """
    return _build(FlowNet, "flownet_small", {"widths": (16, 32, 64, 128)}, weights, kwargs)


@register_model
def flownet_paper(*, weights: str | os.PathLike | None = None, **kwargs: Any) -> FlowNet:
    """FlowNet as the dossier's reconstruction: 5-level U-Net (64, 128, 256, 512, 512).

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`FlowNet` arguments.

    Returns:
        The model.
    """
    return _build(FlowNet, "flownet_paper", {"widths": (64, 128, 256, 512, 512)}, weights, kwargs)


@register_model
def completionnet_small(*, weights: str | os.PathLike | None = None, **kwargs: Any) -> CompletionNet:
    """CompletionNet with base width 16.

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`CompletionNet` arguments.

    Returns:
        The model.
    """
    return _build(CompletionNet, "completionnet_small", {"width": 16}, weights, kwargs)


@register_model
def completionnet_paper(*, weights: str | os.PathLike | None = None, **kwargs: Any) -> CompletionNet:
    """CompletionNet with base width 64 and dilations (2, 4, 8, 16) (dossier reconstruction).

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`CompletionNet` arguments.

    Returns:
        The model.
    """
    return _build(CompletionNet, "completionnet_paper", {"width": 64}, weights, kwargs)


@register_model
def completiondisc_small(
    *, weights: str | os.PathLike | None = None, **kwargs: Any
) -> CompletionDiscriminator:
    """Global + local hinge-GAN discriminator for ``completionnet_small``: width 16, 3 layers.

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`CompletionDiscriminator` arguments.

    Returns:
        The model.
    """
    return _build(
        CompletionDiscriminator, "completiondisc_small", {"width": 16, "n_layers": 3}, weights, kwargs
    )


@register_model
def completiondisc_paper(
    *, weights: str | os.PathLike | None = None, **kwargs: Any
) -> CompletionDiscriminator:
    """Global + local hinge-GAN discriminator for ``completionnet_paper``: width 64, 4 layers.

    Args:
        weights: local checkpoint to load (never downloaded).
        **kwargs: overrides of :class:`CompletionDiscriminator` arguments.

    Returns:
        The model.
    """
    return _build(
        CompletionDiscriminator, "completiondisc_paper", {"width": 64, "n_layers": 4}, weights, kwargs
    )
