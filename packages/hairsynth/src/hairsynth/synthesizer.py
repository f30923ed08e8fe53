"""High-level inference: ``Synthesizer.synthesize(image, mask, strokes)`` and the progressive-edit session."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from . import functional as HF
from ._checks import check_finite, check_range
from .models import HairSynthesisNet, create_model
from .models.hairnet import blend_mask
from .strokes import Stroke, rasterize_strokes

logger = logging.getLogger(__name__)

__all__ = ["EditSession", "Synthesizer", "pretrained_weights_path"]

#: file name of the shipped release weights inside the package
PRETRAINED_FILE = "hairsynth_128.pt"


def pretrained_weights_path() -> str:
    """Path of the release model's checkpoint inside the installed package (``hairsynth/weights/``).

    Returns:
        The file path (it may be missing in a source checkout without the weights).
    """
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", PRETRAINED_FILE)


try:  # pillow is a declared dependency; keep the import local to this module
    from PIL import Image as _PILImage
except ImportError:  # pragma: no cover
    _PILImage = None  # type: ignore[assignment]


def _is_pil(x: Any) -> bool:
    return _PILImage is not None and isinstance(x, _PILImage.Image)


def _image_to_tensor(image: Any, *, fn: str) -> tuple[torch.Tensor, bool]:
    """Return ``(B, 3, H, W)`` float and whether the input was unbatched."""
    if _is_pil(image):
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous(), True
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"{fn}: an array 'image' must have shape (H, W, 3); got {image.shape}")
        arr = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).unsqueeze(0), True
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"{fn}: 'image' must be a torch.Tensor, PIL image or (H, W, 3) array; got {type(image).__name__}"
        )
    if not image.is_floating_point():
        raise TypeError(f"{fn}: a tensor 'image' must be floating point in [0, 1]; got {image.dtype}")
    single = image.dim() == 3
    x = image.unsqueeze(0) if single else image
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{fn}: 'image' must have shape (3, H, W) or (B, 3, H, W); got {tuple(image.shape)}")
    return x, single


def _mask_to_tensor(mask: Any, b: int, h: int, w: int, *, fn: str) -> torch.Tensor:
    if _is_pil(mask):
        mask = np.asarray(mask.convert("L"))
    if isinstance(mask, np.ndarray):
        if mask.dtype == np.bool_ or mask.dtype == np.uint8:
            mask = torch.from_numpy((mask > 0).astype(np.float32))
        else:
            mask = torch.from_numpy(mask.astype(np.float32))
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{fn}: 'mask' must be a torch.Tensor, PIL image or array; got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        mask = mask.float()
    if not mask.is_floating_point():
        raise TypeError(f"{fn}: a tensor 'mask' must be bool or floating in [0, 1]; got {mask.dtype}")
    m = mask
    while m.dim() < 4:
        m = m.unsqueeze(0)
    if m.dim() != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != (h, w) or m.shape[0] not in (1, b):
        raise ValueError(
            f"{fn}: 'mask' must have shape (H, W), (1, H, W) or (B, 1, H, W) with (H, W) = ({h}, {w}); got {tuple(mask.shape)}"
        )
    check_finite(m, "mask", fn=fn)
    check_range(m, "mask", fn=fn, low=0.0, high=1.0)
    return m.expand(b, 1, h, w)


def _check_stroke_list(strokes: Any, *, fn: str, name: str = "strokes") -> list[Stroke]:
    if isinstance(strokes, Stroke) or not isinstance(strokes, (list, tuple)):
        raise TypeError(f"{fn}: '{name}' must be a list of Stroke; got {type(strokes).__name__}")
    for i, s in enumerate(strokes):
        if not isinstance(s, Stroke):
            raise TypeError(f"{fn}: '{name}[{i}]' must be a Stroke; got {type(s).__name__}")
    return list(strokes)


class Synthesizer:
    """Interactive hair synthesis with a trained :class:`~hairsynth.models.HairSynthesisNet`.

    Args:
        model: the network, or a registry name (then ``weights`` is loaded into it).
        weights: local checkpoint for a registry name.
        device: where to run (default: the model's device).
        colorless_strokes: feed strokes as white coverage only (for models trained that way).

    Examples:
        >>> from hairsynth.models import create_model
        >>> syn = Synthesizer(create_model("hairsynth_tiny"))
        >>> img = torch.rand(3, 40, 40); m = torch.zeros(40, 40); m[10:30, 10:30] = 1
        >>> out = syn.synthesize(img, m, [Stroke([(12, 12), (28, 28)], (0.3, 0.2, 0.1), 3.0)])
        >>> tuple(out.shape), bool((out[:, :5] == img[:, :5]).all())
        ((3, 40, 40), True)
    """

    def __init__(
        self,
        model: HairSynthesisNet | str,
        *,
        weights: str | os.PathLike[str] | None = None,
        device: torch.device | str | None = None,
        colorless_strokes: bool = False,
    ) -> None:
        if isinstance(model, str):
            model = create_model(model, weights=weights)  # type: ignore[assignment]
        elif weights is not None:
            raise ValueError("Synthesizer: 'weights' is only used with a registry name as 'model'")
        if not isinstance(model, HairSynthesisNet):
            raise TypeError(
                f"Synthesizer: 'model' must be a HairSynthesisNet or a registry name; got {type(model).__name__}"
            )
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.colorless_strokes = colorless_strokes

    @classmethod
    def pretrained(cls, *, device: torch.device | str | None = None) -> Synthesizer:
        """The trained release model shipped inside the package (``hairsynth_128``; loads offline).

        See the model card in the README (data, licences, recipe, metrics).

        Args:
            device: where to run.

        Returns:
            A :class:`Synthesizer`.

        Raises:
            FileNotFoundError: the weights file is missing from this installation.
        """
        path = pretrained_weights_path()
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Synthesizer.pretrained: the shipped weights {path!r} are missing from this installation"
            )
        return cls("hairsynth_128", weights=path, device=device)

    def working_size(self, h: int, w: int) -> tuple[int, int]:
        """The size ``(h', w')`` the network runs at for an ``h x w`` photo: short side = the model's
        training resolution (or ``(h, w)`` when the model records none).

        Args:
            h: photo height.
            w: photo width.

        Returns:
            ``(h', w')``.
        """
        r = getattr(self.model, "resolution", None)
        if r is None or min(h, w) == r:
            return h, w
        s = r / min(h, w)
        return max(1, round(h * s)), max(1, round(w * s))

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        return next(self.model.parameters()).device

    def synthesize(
        self,
        image: Any,
        mask: Any,
        strokes: Sequence[Stroke] | Sequence[Sequence[Stroke]] | tuple[torch.Tensor, torch.Tensor],
        *,
        return_all: bool = False,
    ) -> Any:
        """Synthesise hair inside ``mask`` of ``image`` following ``strokes``.

        When the model records its training resolution ``R`` (``model.resolution``, stored in its
        checkpoint), the photo is resized so that its short side is ``R`` (image bilinear antialiased, the
        region so that it covers the full-size region, strokes re-drawn with points and widths scaled), the
        network runs at that size, and its output is resized back and composited into the full-size photo
        over the full-size region: the output has the input's size and only the region changes. Stroke
        widths are in pixels of the photo as given (the model saw ``model.stroke_width`` pixels at ``R``).
        The working image is padded (replicate) to a multiple of the network's size multiple and cropped
        back, so any size works. Pixels outside the model's blending mask (the region itself for the
        default ``feather="inside"``) are returned unchanged (bit-exact for float tensors).

        Args:
            image: ``(3, H, W)`` / ``(B, 3, H, W)`` float tensor in ``[0, 1]``, a PIL image or an
                ``(H, W, 3)`` array (uint8 or float).
            mask: region to synthesise (1 = synthesise): tensor ``(H, W)`` / ``(1, H, W)`` /
                ``(B, 1, H, W)`` in ``[0, 1]``, bool tensor, PIL image or array (nonzero = 1).
            strokes: a list of :class:`Stroke` (applied to every image), a list of such lists (one per
                image), or pre-rasterised ``(stroke_color (B, 3, H, W), stroke_mask (B, 1, H, W))``.
            return_all: also return the intermediate maps (dict).

        Returns:
            The edited image in the input's kind (PIL in, PIL out; tensor in, tensor out with the input's
            shape, device and dtype; array in, float array out), or a dict when ``return_all``.

        Raises:
            TypeError: unsupported input kinds.
            ValueError: shape mismatches, an image or mask outside ``[0, 1]``, malformed strokes.
        """
        fn = "Synthesizer.synthesize"
        was_pil, was_np = _is_pil(image), isinstance(image, np.ndarray)
        x, single = _image_to_tensor(image, fn=fn)
        check_finite(x, "image", fn=fn)
        check_range(x, "image", fn=fn, low=0.0, high=1.0)
        b, _, h, w = x.shape
        m = _mask_to_tensor(mask, b, h, w, fn=fn)
        sc: torch.Tensor | None
        sm: torch.Tensor | None
        per: list[list[Stroke]] = []
        if (
            isinstance(strokes, tuple)
            and len(strokes) == 2
            and all(isinstance(t, torch.Tensor) for t in strokes)
        ):
            sc, sm = cast("tuple[torch.Tensor, torch.Tensor]", strokes)
            assert sc is not None and sm is not None
            for i, (what, t) in enumerate((("stroke_color", sc), ("stroke_mask", sm))):
                if not t.is_floating_point():
                    raise TypeError(
                        f"{fn}: 'strokes[{i}]' ({what}) must be floating in [0, 1]; got {t.dtype}"
                    )
                if t.numel() and not (float(t.min()) >= 0.0 and float(t.max()) <= 1.0):
                    raise ValueError(
                        f"{fn}: 'strokes[{i}]' ({what}) must lie in [0, 1]; got values in "
                        f"[{float(t.min()):.6g}, {float(t.max()):.6g}]"
                    )
            if sc.dim() == 3:
                sc, sm = sc.unsqueeze(0), sm.unsqueeze(0)
            if tuple(sc.shape) not in ((b, 3, h, w), (1, 3, h, w)) or tuple(sm.shape) not in (
                (b, 1, h, w),
                (1, 1, h, w),
            ):
                raise ValueError(
                    f"{fn}: pre-rasterised 'strokes' must be ((B, 3, H, W), (B, 1, H, W)) with (B, H, W) = ({b}, {h}, {w}); "
                    f"got {tuple(sc.shape)}, {tuple(sm.shape)}"
                )
            sc, sm = sc.expand(b, 3, h, w), sm.expand(b, 1, h, w)
        else:
            if isinstance(strokes, (list, tuple)) and len(strokes) > 0 and not isinstance(strokes[0], Stroke):
                per = [_check_stroke_list(s, fn=fn, name=f"strokes[{i}]") for i, s in enumerate(strokes)]
                if len(per) != b:
                    raise ValueError(f"{fn}: got {len(per)} stroke lists for a batch of {b} images")
            else:
                per = [_check_stroke_list(strokes, fn=fn)] * b
            sc, sm = None, None  # rasterised below, at the network's working size
        dev = self.device
        dt = next(self.model.parameters()).dtype
        lh, lw = self.working_size(h, w)
        scale = (lw / w, lh / h)
        if (lh, lw) == (h, w):
            xl, ml = x, m
        else:  # the network's training resolution: image antialiased, region covering, strokes re-drawn
            xl = F.interpolate(x, size=(lh, lw), mode="bilinear", align_corners=False, antialias=True)
            xl = xl.clamp(0.0, 1.0)
            ml = (F.interpolate(m, size=(lh, lw), mode="area") > 0).to(x.dtype)
        if sc is None or sm is None:
            maps = [rasterize_strokes([s.scaled(*scale) for s in st], (lh, lw)) for st in per]
            sc = torch.stack([c for c, _ in maps])
            sm = torch.stack([v for _, v in maps])
        elif (lh, lw) != (h, w):
            cov = F.interpolate(sm, size=(lh, lw), mode="area")
            col = F.interpolate(sc * sm, size=(lh, lw), mode="area") / cov.clamp_min(1e-6)
            sm = (cov > 0.25).to(sc.dtype)
            sc = (col * sm).clamp(0.0, 1.0)
        xd, md, scd, smd = (t.to(device=dev, dtype=dt) for t in (xl, ml, sc, sm))
        if self.colorless_strokes:
            scd = smd.expand_as(scd).clone()
        mult = self.model.size_multiple
        ph, pw = (-lh) % mult, (-lw) % mult
        if ph or pw:
            xd = F.pad(xd, (0, pw, 0, ph), mode="replicate")
            md, scd, smd = (F.pad(t, (0, pw, 0, ph)) for t in (md, scd, smd))
        with torch.inference_mode():
            res = self.model(xd, md, scd, smd)
        res = {k: v[..., :lh, :lw] for k, v in res.items()}
        if (lh, lw) != (h, w):  # back to the photo's size; the blend ramp is re-made on the full-size region
            res = {
                k: F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
                for k, v in res.items()
                if k != "blend_mask"
            }
            if self.model.refinement is None:
                res["blend_mask"] = m.to(dev)
            else:
                r = max(0, round(self.model.feather_radius * w / lw))
                res["blend_mask"] = blend_mask(m.to(dev), r, inside=self.model.feather == "inside")
        # the network only ever changes pixels under its blending mask: copy the rest from the input exactly
        out = HF.composite(x.to(dev), res["output"].to(x.dtype), res["blend_mask"].to(x.dtype))
        if return_all:
            res["output"] = out
            return res
        if was_pil:
            arr = (out[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
            return _PILImage.fromarray(arr)
        if was_np:
            return out[0].permute(1, 2, 0).cpu().numpy()
        out = out.to(image.device)
        return out[0] if single else out

    def session(self, image: Any, mask: Any) -> EditSession:
        """Start a progressive-refinement session on one image.

        Args:
            image: as for :meth:`synthesize` (one image).
            mask: as for :meth:`synthesize`.

        Returns:
            An :class:`EditSession`.
        """
        return EditSession(self, image, mask)


class EditSession:
    """The paper's interactive loop: add strokes (or change the mask) and re-render.

    The image and mask are checked when the session starts (and the mask again in :meth:`set_mask`),
    so a bad input fails before any stroke is drawn.

    Args:
        synthesizer: the :class:`Synthesizer`.
        image: the target image (one image), as for :meth:`Synthesizer.synthesize`.
        mask: the edit region, as for :meth:`Synthesizer.synthesize`.

    Raises:
        TypeError: ``synthesizer`` is not a :class:`Synthesizer`, or an unsupported image/mask kind.
        ValueError: a batch of several images, an image or mask outside ``[0, 1]``, or a mask whose
            size differs from the image's.
    """

    def __init__(self, synthesizer: Synthesizer, image: Any, mask: Any) -> None:
        fn = "EditSession"
        if not isinstance(synthesizer, Synthesizer):
            raise TypeError(f"{fn}: 'synthesizer' must be a Synthesizer; got {type(synthesizer).__name__}")
        x, _ = _image_to_tensor(image, fn=fn)
        if x.shape[0] != 1:
            raise ValueError(f"{fn}: 'image' must be one image; got a batch of {x.shape[0]}")
        check_finite(x, "image", fn=fn)
        check_range(x, "image", fn=fn, low=0.0, high=1.0)
        self._size = (int(x.shape[-2]), int(x.shape[-1]))
        _mask_to_tensor(mask, 1, *self._size, fn=fn)
        self.synthesizer = synthesizer
        self.image = image
        self.mask = mask
        self.strokes: list[Stroke] = []
        self.history: list[Any] = []

    def add_stroke(self, stroke: Stroke) -> None:
        """Append a stroke.

        Args:
            stroke: the stroke.

        Raises:
            TypeError: not a :class:`Stroke`.
        """
        if not isinstance(stroke, Stroke):
            raise TypeError(f"EditSession.add_stroke: 'stroke' must be a Stroke; got {type(stroke).__name__}")
        self.strokes.append(stroke)

    def undo(self) -> Stroke | None:
        """Remove and return the last stroke (``None`` if there is none).

        Returns:
            The removed stroke.
        """
        return self.strokes.pop() if self.strokes else None

    def set_mask(self, mask: Any) -> None:
        """Replace the edit region.

        Args:
            mask: new mask.

        Raises:
            TypeError: an unsupported mask kind.
            ValueError: a mask outside ``[0, 1]`` or of another size than the image.
        """
        _mask_to_tensor(mask, 1, *self._size, fn="EditSession.set_mask")
        self.mask = mask

    def render(self) -> Any:
        """Run the synthesis with the current strokes and mask, and keep the result in ``history``.

        Returns:
            The edited image (same kind as the session's image).
        """
        out = self.synthesizer.synthesize(self.image, self.mask, list(self.strokes))
        self.history.append(out)
        return out
