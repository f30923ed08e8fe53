"""Identity encoder: the "Vgg" of the paper's figure, replaced by a small network trained here.

VGG-Face weights cannot be downloaded in this project, so the default identity network is a small CNN
trained with a CosFace (large-margin cosine) identity-classification objective on identity-labelled faces
(``occfill.recipes.train_identity_encoder``). Any ``nn.Module`` mapping ``(B, 3, H, W)`` images in [0, 1]
to ``(B, D)`` embeddings can be used instead (e.g. user-supplied VGG-Face weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_floating, check_positive, check_shape

__all__ = ["CosFaceHead", "IdentityEncoder"]


class IdentityEncoder(nn.Module):
    """Small CNN face-identity encoder producing L2-normalised embeddings.

    Args:
        embedding_dim: embedding size D.
        base_channels: width of the first stage (doubles at each of the 4 stages).
        input_size: images are resized (bilinear) to ``input_size x input_size`` first.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - image: ``(B, 3, H, W)`` in [0, 1]; output: ``(B, D)`` unit vectors.

    Attributes:
        feature_info: one dict per stage with ``num_chs``, ``reduction`` and ``module``.

    Examples:
        >>> enc = IdentityEncoder(embedding_dim=16, base_channels=8)
        >>> torch.allclose(enc(torch.rand(2, 3, 64, 64)).norm(dim=1), torch.ones(2))
        True
    """

    def __init__(
        self,
        embedding_dim: int = 128,
        *,
        base_channels: int = 32,
        input_size: int = 64,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "IdentityEncoder"
        check_positive(embedding_dim, "embedding_dim", fn=fn)
        check_positive(base_channels, "base_channels", fn=fn)
        check_positive(input_size, "input_size", fn=fn)
        self.embedding_dim = int(embedding_dim)
        self.base_channels = int(base_channels)
        self.input_size = int(input_size)
        stages: list[nn.Module] = []
        cin = 3
        self.feature_info: list[dict[str, object]] = []
        for i in range(4):
            cout = base_channels * 2**i
            stages.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(),
                    nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
            )
            self.feature_info.append({"num_chs": cout, "reduction": 2 ** (i + 1), "module": f"stages.{i}"})
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(
            nn.Dropout(0.1), nn.Linear(cin, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def _prep(self, image: torch.Tensor) -> torch.Tensor:
        fn = "IdentityEncoder"
        check_floating(image, "image", fn=fn)
        check_shape(image, "B,3,H,W", "image", fn=fn)
        if image.shape[-1] != self.input_size or image.shape[-2] != self.input_size:
            image = F.interpolate(
                image,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return (image - 0.5) / 0.5

    def forward_intermediates(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after each stage, ``[(B, C_i, H_i, W_i)]``."""
        x = self._prep(image)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """Last feature map ``(B, 8 * base_channels, s, s)``."""
        return self.forward_intermediates(image)[-1]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and project; ``pre_logits=True`` returns the pooled ``(B, C)`` features."""
        pooled = features.mean(dim=(2, 3))
        if pre_logits:
            return pooled
        return F.normalize(self.head(pooled), dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Unit-norm identity embedding of ``image``."""
        return self.forward_head(self.forward_features(image))

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, base_channels={self.base_channels}, input_size={self.input_size}"


class CosFaceHead(nn.Module):
    """Large-margin cosine classifier (CosFace, Wang et al. 2018) used to train :class:`IdentityEncoder`.

    ``logits = s * (cos(theta_j) - m * [j == label])`` with class weights normalised.

    Args:
        embedding_dim: embedding size D.
        num_classes: number of identities N.
        scale: the scale s.
        margin: the cosine margin m.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - embedding: ``(B, D)``; labels: ``(B,)`` int64 or ``None`` (no margin); output ``(B, N)`` logits.

    Examples:
        >>> CosFaceHead(4, 3)(torch.randn(2, 4), torch.tensor([0, 2])).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        scale: float = 16.0,
        margin: float = 0.2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "CosFaceHead"
        check_positive(embedding_dim, "embedding_dim", fn=fn)
        check_positive(num_classes, "num_classes", fn=fn)
        check_positive(scale, "scale", fn=fn)
        check_positive(margin, "margin", fn=fn, strict=False)
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim, device=device, dtype=dtype) * 0.01)

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled cosine logits, with the margin subtracted at the true class when ``labels`` is given."""
        cos = F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1))
        if labels is not None:
            cos = cos - self.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * cos

    def extra_repr(self) -> str:
        n, d = self.weight.shape
        return f"embedding_dim={d}, num_classes={n}, scale={self.scale}, margin={self.margin}"
