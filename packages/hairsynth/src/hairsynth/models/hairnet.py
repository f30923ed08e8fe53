"""The two-stage hair synthesis network (synthesis U-Net G1 + refinement/compositing U-Net G2)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from .. import functional as HF
from .._checks import check_floating, check_shape
from ..nn import UNetGenerator

logger = logging.getLogger(__name__)

__all__ = ["HairSynthesisNet", "blend_mask"]


class HairSynthesisNet(nn.Module):
    """Two-stage hair synthesis (reconstruction of the paper's pipeline).

    Stage 1 (``synthesis``, G1) sees ``[I * (1 - M), M, S, S_m]`` and paints the hair region:
    ``C1 = composite(I, G1(.), M)``. Stage 2 (``refinement``, G2) sees ``[C1, M, S, S_m]`` and refines
    and blends it: ``Y2 = clamp(C1 + G2(.), 0, 1)`` (residual, default; G2's last layer starts at zero
    so training starts from ``Y2 = C1``) or ``Y2 = G2(.)``, and the output is ``O = composite(I, Y2, M_f)``.
    With ``feather="inside"`` (default) ``M_f = 1 - feather_mask(1 - M, feather_radius)``: the blending
    ramp lies inside the region and every pixel outside ``M`` is returned bit-exactly (a band outside the
    region, where G2 repaints real background, shows as a light halo along the border). With
    ``feather="outside"`` (hairsynth < 0.3) ``M_f = feather_mask(M, feather_radius)``: pixels farther than
    ``feather_radius`` from the mask are returned bit-exactly. With ``refinement=None`` (the "no refinement
    network" ablation) the output is ``C1``.

    ``resolution`` and ``stroke_width`` are metadata that travel in checkpoints: the square size the model
    was trained at (the :class:`~hairsynth.Synthesizer` resizes photos so their short side matches it) and
    the range of stroke widths, in pixels at that resolution, it saw in training.

    Args:
        base_channels: U-Net width of both stages.
        num_downs: U-Net depth; inputs must be multiples of ``2**num_downs``.
        max_channels: U-Net channel cap.
        norm: normalisation of the U-Nets.
        dropout: dropout in the innermost decoder blocks.
        use_refinement: build the second stage.
        residual_refinement: G2 predicts a correction of ``C1`` (``tanh`` output) instead of an image.
        feather_radius: width in pixels of the blending band of stage 2.
        refinement_base_channels: width of G2 (default ``base_channels``).
        upsample: decoder upsampling, ``"resize"`` (bilinear + conv, default) or ``"transposed"``.
        feather: where the blending ramp of stage 2 lies, ``"inside"`` the region (default) or
            ``"outside"`` it (legacy).
        resolution: training resolution in pixels (``None``: unknown; no resizing at inference).
        stroke_width: ``(low, high)`` training stroke widths in pixels at ``resolution``.
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        ``image (B, 3, H, W)``, ``mask (B, 1, H, W)``, ``stroke_color (B, 3, H, W)``,
        ``stroke_mask (B, 1, H, W)`` -> dict of ``(B, 3, H, W)`` images.

    Examples:
        >>> net = HairSynthesisNet(base_channels=4, num_downs=3)
        >>> x = torch.rand(1, 3, 32, 32); m = torch.zeros(1, 1, 32, 32); m[..., 8:24, 8:24] = 1
        >>> out = net(x, m, torch.zeros(1, 3, 32, 32), torch.zeros(1, 1, 32, 32))
        >>> bool((out["output"][..., 0, 0] == x[..., 0, 0]).all())
        True
    """

    def __init__(
        self,
        *,
        base_channels: int = 64,
        num_downs: int = 8,
        max_channels: int = 512,
        norm: str = "instance",
        dropout: float = 0.5,
        use_refinement: bool = True,
        residual_refinement: bool = True,
        feather_radius: int = 4,
        refinement_base_channels: int | None = None,
        upsample: str = "resize",
        feather: str = "inside",
        resolution: int | None = None,
        stroke_width: tuple[float, float] | list[float] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if feather not in ("inside", "outside"):
            raise ValueError(f"HairSynthesisNet: 'feather' must be 'inside' or 'outside'; got {feather!r}")
        if resolution is not None and (
            not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 8
        ):
            raise ValueError(
                f"HairSynthesisNet: 'resolution' must be None or an int >= 8; got {resolution!r}"
            )
        if stroke_width is not None:
            sw = tuple(float(v) for v in stroke_width)
            if len(sw) != 2 or not 0 < sw[0] <= sw[1]:
                raise ValueError(
                    f"HairSynthesisNet: 'stroke_width' must be None or (low, high) with 0 < low <= high; got {stroke_width!r}"
                )
            stroke_width = (sw[0], sw[1])
        if not isinstance(feather_radius, int) or feather_radius < 0:
            raise ValueError(
                f"HairSynthesisNet: 'feather_radius' must be an int >= 0; got {feather_radius!r}"
            )
        kw: dict[str, Any] = dict(
            num_downs=num_downs,
            max_channels=max_channels,
            norm=norm,
            dropout=dropout,
            upsample=upsample,
            device=device,
            dtype=dtype,
        )
        self.synthesis = UNetGenerator(8, 3, base_channels=base_channels, output="sigmoid", **kw)
        self.refinement: UNetGenerator | None = None
        if use_refinement:
            self.refinement = UNetGenerator(
                8,
                3,
                base_channels=refinement_base_channels or base_channels,
                output="tanh" if residual_refinement else "sigmoid",
                **kw,
            )
            if residual_refinement:
                # zero-initialised last layer: the refinement starts as the identity on C1 and learns a correction
                last = self.refinement.last_conv
                assert isinstance(last, (nn.Conv2d, nn.ConvTranspose2d))  # internal invariant, not user input
                nn.init.zeros_(last.weight)
                if last.bias is not None:
                    nn.init.zeros_(last.bias)
        self.residual_refinement = residual_refinement
        self.feather_radius = feather_radius
        self.feather = feather
        self.upsample = upsample
        self.resolution = resolution
        self.stroke_width = stroke_width
        self.num_downs = num_downs
        #: JSON-able constructor arguments (what checkpoints record)
        self.config: dict[str, Any] = {
            "base_channels": base_channels,
            "num_downs": num_downs,
            "max_channels": max_channels,
            "norm": norm,
            "dropout": dropout,
            "use_refinement": use_refinement,
            "residual_refinement": residual_refinement,
            "feather_radius": feather_radius,
            "refinement_base_channels": refinement_base_channels,
            "upsample": upsample,
            "feather": feather,
            "resolution": resolution,
            "stroke_width": list(stroke_width) if stroke_width is not None else None,
        }

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this."""
        return self.synthesis.size_multiple

    def forward(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        stroke_color: torch.Tensor,
        stroke_mask: torch.Tensor,
        *,
        refine: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Synthesise hair in ``mask`` following the strokes.

        Args:
            image: ``(B, 3, H, W)`` target image in ``[0, 1]`` (content inside ``mask`` is ignored).
            mask: ``(B, 1, H, W)`` region to synthesise, 1 = synthesise.
            stroke_color: ``(B, 3, H, W)`` stroke colours.
            stroke_mask: ``(B, 1, H, W)`` stroke coverage.
            refine: run the refinement stage (when the model has one). ``False`` skips it and returns
                ``C1`` as the output, as a model without refinement does (the synthesis-only phase of the
                staged training schedule uses this).

        Returns:
            Dict with ``stage1`` (G1 output), ``composite1`` (``C1``), ``blend_mask`` (``M_f``, or ``M``
            without refinement) and ``output`` (the final image); with refinement also ``stage2``.

        Raises:
            TypeError: non-float inputs.
            ValueError: shape/device mismatches or sizes not multiples of :attr:`size_multiple`.
        """
        fn = "HairSynthesisNet.forward"
        check_floating(image, "image", fn=fn)
        check_shape(image, "B,3,H,W", "image", fn=fn)
        x1 = HF.synthesis_input(image, mask, stroke_color, stroke_mask)
        mask = mask.expand(image.shape[0], 1, *image.shape[-2:])
        y1 = self.synthesis(x1)
        c1 = HF.composite(image, y1, mask)
        out = {"stage1": y1, "composite1": c1}
        if self.refinement is None or not refine:
            out["blend_mask"] = mask
            out["output"] = c1
            return out
        x2 = torch.cat([c1, mask, stroke_color, stroke_mask], dim=1)
        y2 = self.refinement(x2)
        if self.residual_refinement:
            y2 = (c1 + y2).clamp(0.0, 1.0)
        mf = blend_mask(mask, self.feather_radius, inside=self.feather == "inside")
        out["stage2"] = y2
        out["blend_mask"] = mf
        out["output"] = HF.composite(image, y2, mf)
        return out

    def extra_repr(self) -> str:
        return (
            f"use_refinement={self.refinement is not None}, residual_refinement={self.residual_refinement}, "
            f"feather_radius={self.feather_radius}, feather={self.feather!r}, upsample={self.upsample!r}, "
            f"resolution={self.resolution}, stroke_width={self.stroke_width}"
        )


def blend_mask(mask: torch.Tensor, radius: int, *, inside: bool = True) -> torch.Tensor:
    """The stage-2 blending mask ``M_f``.

    Args:
        mask: ``(B, 1, H, W)`` region in ``[0, 1]``.
        radius: ramp width in pixels (0: the mask itself).
        inside: ramp inside the region (``1 - feather_mask(1 - M, r)``, zero wherever ``M`` is 0) or
            outside it (``feather_mask(M, r)``).

    Returns:
        ``(B, 1, H, W)`` weights in ``[0, 1]``.

    Examples:
        >>> m = torch.zeros(1, 1, 1, 9); m[..., 2:7] = 1
        >>> [round(v, 2) for v in blend_mask(m, 1)[0, 0, 0].tolist()]
        [0.0, 0.0, 0.33, 1.0, 1.0, 1.0, 0.33, 0.0, 0.0]
    """
    if radius == 0:
        return mask
    if inside:
        return (1 - HF.feather_mask(1 - mask, radius)) * mask
    return HF.feather_mask(mask, radius)
