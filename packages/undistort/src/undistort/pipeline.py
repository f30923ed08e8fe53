"""``Undistorter``: the whole cascade (segment, estimate distance, predict flow, warp, complete).

Networks run at a working resolution (``work_size``); the predicted flow is resized to the input's
resolution and the full-resolution image is warped, so the output keeps the input's size and detail.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_finite, check_floating, check_positive, check_range, check_shape
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .models import CompletionNet, DistanceNet, FlowNet, SegNet, create_model
from .warp import warp

logger = logging.getLogger(__name__)

__all__ = ["PRETRAINED_FILE", "Undistorter", "to_image_tensor"]

PRETRAINED_FILE = "undistorter-real64.pt"
PRETRAINED_PASSED_DO_NO_HARM = False
"""Whether the shipped weights met the do-no-harm bounds of the model card (False: a warning on load)."""


def to_image_tensor(image: Any, *, fn: str = "to_image_tensor") -> tuple[Tensor, str]:
    """Convert a tensor, PIL image or NumPy array to a ``(B, 3, H, W)`` float image in [0, 1].

    Args:
        image: ``(3, H, W)``/``(B, 3, H, W)`` floating tensor in [0, 1]; a PIL image (converted to RGB);
            or a NumPy ``(H, W, 3)`` array (``uint8`` in [0, 255] or floating in [0, 1]).
        fn: the caller's name, for error messages.

    Returns:
        ``(tensor, kind)`` with ``kind`` in ``{"tensor3", "tensor4", "pil", "numpy_uint8", "numpy_float"}``.

    Raises:
        TypeError: unsupported type or dtype.
        ValueError: wrong channel count, empty image, non-finite values, or floating values outside
            [0, 1] (beyond a ``1e-3`` resampling tolerance; e.g. a float image in [0, 255]).
    """
    kind: str
    if isinstance(image, Tensor):
        check_floating(image, "image", fn=fn)
        if image.ndim == 3:
            x, kind = image[None], "tensor3"
        elif image.ndim == 4:
            x, kind = image, "tensor4"
        else:
            raise ValueError(
                f"{fn}: 'image' must have shape (3, H, W) or (B, 3, H, W); got {tuple(image.shape)}"
            )
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a dependency
            Image = None  # type: ignore[assignment]
        if Image is not None and isinstance(image, Image.Image):
            arr, kind = np.asarray(image.convert("RGB")), "pil"
        elif isinstance(image, np.ndarray):
            arr = image
            kind = "numpy_uint8" if image.dtype == np.uint8 else "numpy_float"
            if kind == "numpy_float" and not np.issubdtype(image.dtype, np.floating):
                raise TypeError(f"{fn}: NumPy 'image' must be uint8 or floating; got {image.dtype}")
        else:
            raise TypeError(
                f"{fn}: 'image' must be a torch.Tensor, PIL.Image or numpy.ndarray; got {type(image).__name__}"
            )
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"{fn}: 'image' must have shape (H, W, 3); got {arr.shape}")
        x = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None]
        x = x.float() / 255.0 if kind in ("pil", "numpy_uint8") else x.float()
    if x.shape[1] != 3:
        raise ValueError(f"{fn}: 'image' must have 3 channels; got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{fn}: 'image' must be non-empty; got shape {tuple(x.shape)}")
    check_finite(x, "image", fn=fn)
    _check_unit_range(x, fn)
    return x, kind


def _check_unit_range(x: Tensor, fn: str) -> None:
    """Images are in [0, 1]; a float image in [0, 255] would otherwise be corrected silently into garbage."""
    try:
        check_range(x, "image", fn=fn, low=-_RANGE_TOL, high=1.0 + _RANGE_TOL)
    except ValueError as err:
        raise ValueError(f"{err} (images are floats in [0, 1]: divide 8-bit values by 255)") from None


_RANGE_TOL = 1e-3


def _from_tensor(x: Tensor, kind: str) -> Any:
    if kind == "tensor4":
        return x
    if kind == "tensor3":
        return x[0]
    arr = x[0].permute(1, 2, 0).detach().cpu().clamp(0, 1).numpy()
    if kind == "numpy_float":
        return arr
    u8 = (arr * 255.0 + 0.5).astype(np.uint8)
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(u8)
    return u8


def _check_flow_gate(gate: Any, fn: str) -> tuple[float, float] | None:
    if gate is None:
        return None
    try:
        lo, hi = (float(v) for v in gate)
    except (TypeError, ValueError):
        raise ValueError(
            f"{fn}: 'flow_gate' must be None or a pair (lo, hi) of numbers; got {gate!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi):
        raise ValueError(f"{fn}: 'flow_gate' must satisfy 0 <= lo < hi (finite, px); got {gate!r}")
    return lo, hi


def gate_scale(flow: Tensor, gate: tuple[float, float]) -> Tensor:
    """Per-image factor of the do-no-harm gate: ``clamp((m - lo) / (hi - lo), 0, 1)``.

    Args:
        flow: ``(B, 2, H, W)`` flow in pixels.
        gate: ``(lo, hi)`` thresholds on ``m``, the mean flow magnitude of each image, in the same pixels.

    Returns:
        ``(B,)`` factors in [0, 1].
    """
    lo, hi = gate
    m = flow.norm(dim=1).flatten(1).mean(1)
    return ((m - lo) / (hi - lo)).clamp(0.0, 1.0)


class Undistorter(nn.Module):
    """The cascade: SegNet -> DistanceNet -> FlowNet(distance) -> warp -> CompletionNet.

    Args:
        flow_net: the distance-conditioned flow network (required).
        distance_net: distance estimator (required unless a distance is always passed, or the flow net
            has ``conditioning="none"``).
        completion_net: fills holes revealed by the correction (optional; without it holes keep the warp).
        seg_net: head segmentation (optional; without it pass ``mask`` or the whole image counts as head).
        work_size: square working resolution of the networks.
        head_height_cm: physical height of what the head mask covers, for :meth:`estimate_camera`
            (default: the ICT-FaceKit head+neck height that the synthetic masks cover).
        hole_threshold: probability threshold of the corrected-head mask, in (0, 1).
        channels_last: store the sub-networks' 4-D weights in ``torch.channels_last`` memory format
            (performance only: the oneDNN CPU convolutions, pooling and concatenations run about 1.3x
            faster; results equal the default layout's to float rounding, ~1e-5). The networks passed in
            are converted in place. ``False`` keeps PyTorch's default (contiguous) layout.
        flow_gate: ``(lo, hi)`` in work-size pixels, a do-no-harm gate (not in the paper): each image's
            predicted flow is scaled by ``clamp((m - lo) / (hi - lo), 0, 1)``, ``m`` its mean magnitude
            over the work-size crop, so a photo the network barely wants to change is left exactly alone and a
            confident correction (``m >= hi``) passes unchanged; continuous in ``m``. ``None`` (default): no
            gate. No gate passed the declared do-no-harm bound, so :meth:`pretrained` sets none
            (``reports/undistort/gate.md``).

    Shape:
        - image: ``(B, 3, H, W)``; output ``corrected`` ``(B, 3, H, W)``, ``flow`` ``(B, 2, H, W)``.
    """

    def __init__(
        self,
        flow_net: FlowNet,
        distance_net: DistanceNet | None = None,
        completion_net: CompletionNet | None = None,
        seg_net: SegNet | None = None,
        *,
        work_size: int = 128,
        head_height_cm: float = 33.8,
        hole_threshold: float = 0.5,
        channels_last: bool = True,
        flow_gate: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        fn = "Undistorter"
        if not isinstance(flow_net, FlowNet):
            raise TypeError(f"{fn}: 'flow_net' must be a FlowNet; got {type(flow_net).__name__}")
        for name, net, cls in (
            ("distance_net", distance_net, DistanceNet),
            ("completion_net", completion_net, CompletionNet),
            ("seg_net", seg_net, SegNet),
        ):
            if net is not None and not isinstance(net, cls):
                raise TypeError(f"{fn}: '{name}' must be a {cls.__name__} or None; got {type(net).__name__}")
        check_positive(work_size, "work_size", fn=fn)
        check_positive(head_height_cm, "head_height_cm", fn=fn)
        if not 0.0 < float(hole_threshold) < 1.0:
            raise ValueError(f"{fn}: 'hole_threshold' must lie in (0, 1); got {hole_threshold!r}")
        self.flow_net, self.distance_net, self.completion_net, self.seg_net = (
            flow_net,
            distance_net,
            completion_net,
            seg_net,
        )
        self.work_size, self.head_height_cm, self.hole_threshold = (
            int(work_size),
            float(head_height_cm),
            float(hole_threshold),
        )
        self.flow_gate = _check_flow_gate(flow_gate, fn)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            # Parameters only (a memory-format change, not a value change); ``.to(device)`` preserves it.
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # valid kwarg, not in stubs

    @property
    def flow_gate(self) -> tuple[float, float] | None:
        """The do-no-harm gate ``(lo, hi)`` (work-size pixels) or None; assigning it checks the pair."""
        return self._flow_gate

    @flow_gate.setter
    def flow_gate(self, gate: tuple[float, float] | None) -> None:
        self._flow_gate = _check_flow_gate(gate, "Undistorter.flow_gate")

    def extra_repr(self) -> str:
        return (
            f"work_size={self.work_size}, head_height_cm={self.head_height_cm}, "
            f"hole_threshold={self.hole_threshold}, channels_last={self.channels_last}, "
            f"flow_gate={self.flow_gate}"
        )

    def _resize(self, x: Tensor, mode: str = "bilinear") -> Tensor:
        s = self.work_size
        if x.shape[-2:] == (s, s):
            return x
        if mode == "nearest":
            return F.interpolate(x, size=(s, s), mode="nearest")
        return F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)

    def _prepare(self, image: Tensor, mask: Tensor | None, fn: str) -> tuple[Tensor, Tensor, Tensor]:
        check_floating(image, "image", fn=fn)
        dims = check_shape(image, "B,3,H,W", "image", fn=fn)
        if dims["B"] == 0 or dims["H"] == 0 or dims["W"] == 0:
            raise ValueError(f"{fn}: 'image' must be non-empty; got {tuple(image.shape)}")
        check_finite(image, "image", fn=fn)
        _check_unit_range(image, fn)
        small = self._resize(image)
        if mask is not None:
            check_floating(mask, "mask", fn=fn)
            check_shape(mask, "B,1,H,W", "mask", fn=fn, dims=dims)
            small_mask = self._resize(mask.to(image), "nearest")
        elif self.seg_net is not None:
            small_mask = self.seg_net.predict_mask(small)
        else:
            small_mask = small.new_ones(small.shape[0], 1, *small.shape[-2:])
        return image, small, small_mask

    def _distance(
        self, small: Tensor, small_mask: Tensor, distance: Tensor | float | None, fn: str
    ) -> Tensor | None:
        b = small.shape[0]
        if distance is not None:
            d = torch.as_tensor(distance, dtype=small.dtype, device=small.device).reshape(-1)
            if d.numel() == 1:
                d = d.expand(b)
            if d.shape != (b,):
                raise ValueError(
                    f"{fn}: 'distance' must be a scalar or have shape ({b},); got {tuple(d.shape)}"
                )
            if not bool((d > 0).all()) or not bool(torch.isfinite(d).all()):
                raise ValueError(f"{fn}: 'distance' must be finite and > 0 (cm); got {d.tolist()}")
            return d
        if self.distance_net is not None:
            mask_in = small_mask if self.distance_net.in_channels == 4 else None
            return self.distance_net(small, mask_in)["distance"]
        if self.flow_net.code_dim:
            raise ValueError(f"{fn}: no 'distance' given and no distance_net to estimate it")
        return None

    def forward(
        self, image: Tensor, mask: Tensor | None = None, distance: Tensor | float | None = None
    ) -> dict[str, Tensor]:
        """Run the cascade on a ``(B, 3, H, W)`` batch.

        Args:
            image: ``(B, 3, H, W)`` images in [0, 1].
            mask: ``(B, 1, H, W)`` head masks (default: SegNet, else all ones).
            distance: known camera distances (cm), scalar or ``(B,)``; default: DistanceNet's estimate.

        Returns:
            Dict: ``corrected`` ``(B, 3, H, W)``, ``flow`` ``(B, 2, H, W)`` (pixels of the input),
            ``distance`` ``(B,)`` (NaN when neither given nor estimated), ``holes`` and ``mask``
            ``(B, 1, H, W)``.

        Raises:
            TypeError: non-floating inputs.
            ValueError: wrong shapes, empty, non-finite or out-of-[0, 1] images, a non-positive or
                non-finite distance, missing distance.
        """
        fn = "Undistorter"
        image, small, small_mask = self._prepare(image, mask, fn)
        d = self._distance(small, small_mask, distance, fn)
        pred = self.flow_net(small, small_mask, d)
        small_flow = pred["flow"]
        if self.flow_gate is not None:
            small_flow = small_flow * gate_scale(small_flow, self.flow_gate).view(-1, 1, 1, 1)
        h, w = image.shape[-2:]
        s = self.work_size
        flow = F.interpolate(small_flow, size=(h, w), mode="bilinear", align_corners=False)
        flow = flow * flow.new_tensor([w / s, h / s]).view(1, 2, 1, 1)
        corrected = warp(image, flow, padding_mode="border")
        ref_mask = (torch.sigmoid(pred["mask_logits"]) > self.hole_threshold).to(small.dtype)
        moved_mask = warp(small_mask, small_flow, mode="nearest")
        holes_small = ref_mask * (moved_mask < 0.5).to(small.dtype)
        holes = F.interpolate(holes_small, size=(h, w), mode="nearest")
        if self.completion_net is not None:
            warped_small = warp(small, small_flow, padding_mode="border")
            filled = self.completion_net(warped_small, holes_small, ref_mask)
            filled_full = F.interpolate(filled, size=(h, w), mode="bilinear", align_corners=False)
            corrected = corrected * (1 - holes) + filled_full * holes
        full_mask = F.interpolate(small_mask, size=(h, w), mode="bilinear", align_corners=False)
        dist = d if d is not None else image.new_full((image.shape[0],), float("nan"))
        return {"corrected": corrected, "flow": flow, "distance": dist, "holes": holes, "mask": full_mask}

    @torch.no_grad()
    def undistort(
        self, image: Any, *, mask: Tensor | None = None, distance: Tensor | float | None = None
    ) -> tuple[Any, dict[str, Tensor]]:
        """Correct a portrait given as a tensor, PIL image or NumPy array; returns the same kind.

        Args:
            image: ``(3, H, W)``/``(B, 3, H, W)`` tensor in [0, 1], a PIL image, or an ``(H, W, 3)`` array.
            mask: optional ``(B, 1, H, W)`` head mask (tensor inputs).
            distance: known camera distance (cm), skipping the estimate.

        Returns:
            ``(corrected, info)``; ``info`` holds ``distance`` ``(B,)``, ``flow`` ``(B, 2, H, W)``, ``holes``.

        Raises:
            TypeError: unsupported image type.
            ValueError: wrong channel count, empty, non-finite or out-of-[0, 1] image, bad distance.
        """
        x, kind = to_image_tensor(image, fn="Undistorter.undistort")
        p = next(self.parameters())
        out = self.forward(x.to(device=p.device, dtype=p.dtype), mask, distance)
        info = {"distance": out["distance"], "flow": out["flow"], "holes": out["holes"]}
        return _from_tensor(out["corrected"].clamp(0, 1), kind), info

    @torch.no_grad()
    def estimate_camera(self, image: Any, *, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Single-portrait calibration: camera-to-subject distance and focal length.

        ``d`` comes from the DistanceNet; the focal length follows from the head's image height:
        ``f = d * h_px / head_height_cm`` (pinhole similar triangles at the anchor plane).

        Args:
            image: as in :meth:`undistort`.
            mask: optional ``(B, 1, H, W)`` head mask (default: SegNet, else the whole image).

        Returns:
            Dict with ``distance`` ``(B,)`` (cm), ``focal`` ``(B,)`` (pixels of the input) and
            ``focal_35mm`` ``(B,)`` (35 mm-equivalent, from the image width).

        Raises:
            ValueError: no distance network, or invalid images.
        """
        fn = "Undistorter.estimate_camera"
        if self.distance_net is None:
            raise ValueError(f"{fn}: needs a distance_net")
        x, _ = to_image_tensor(image, fn=fn)
        p = next(self.parameters())
        x = x.to(device=p.device, dtype=p.dtype)
        x, small, small_mask = self._prepare(x, mask, fn)
        d = self._distance(small, small_mask, None, fn)
        if d is None:  # unreachable: a distance_net exists
            raise ValueError(f"{fn}: could not estimate a distance")
        full_mask = (
            F.interpolate(small_mask, size=x.shape[-2:], mode="nearest") if mask is None else mask.to(x)
        )
        rows = (full_mask[:, 0] > 0.5).any(-1)  # (B, H)
        idx = torch.arange(rows.shape[-1], device=x.device)
        top = torch.where(rows, idx, rows.shape[-1]).amin(-1)
        bottom = torch.where(rows, idx, -1).amax(-1)
        h_px = (bottom - top + 1).clamp(min=0).to(x.dtype)
        focal = d * h_px / self.head_height_cm
        return {"distance": d, "focal": focal, "focal_35mm": focal * 36.0 / x.shape[-1]}

    # ------------------------------------------------------------------------------ persistence
    def _parts(self) -> dict[str, nn.Module | None]:
        return {
            "flow_net": self.flow_net,
            "distance_net": self.distance_net,
            "completion_net": self.completion_net,
            "seg_net": self.seg_net,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Save every sub-network (arch + config + weights) in one atomic checkpoint.

        Args:
            path: destination ``.pt`` file.

        Raises:
            ValueError: a sub-network was not built by a registered builder (no ``arch``/``config``).
        """
        config: dict[str, Any] = {
            "work_size": self.work_size,
            "head_height_cm": self.head_height_cm,
            "hole_threshold": self.hole_threshold,
            "channels_last": self.channels_last,
            "flow_gate": None if self.flow_gate is None else list(self.flow_gate),
            "parts": {},
        }
        for name, m in self._parts().items():
            if m is None:
                continue
            arch, cfg = getattr(m, "arch", None), getattr(m, "config", None)
            if arch is None or cfg is None:
                raise ValueError(
                    f"Undistorter.save: '{name}' was not built with create_model (no arch/config)"
                )
            config["parts"][name] = {"arch": arch, "config": cfg}
        save_checkpoint(path, self, arch="undistorter", config=config)

    @classmethod
    def pretrained(cls, *, map_location: str | torch.device = "cpu") -> Undistorter:
        """The model shipped inside the package (offline): a flow network trained on pairs made from real
        photos (see the model card, ``undistort/weights/MODEL_CARD.md``).

        Returns:
            The pipeline in eval mode (flow network only, work size 64, face crops as
            :func:`undistort.correct` makes them).

        Raises:
            FileNotFoundError: the weights are missing from this installation.
        """
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", PRETRAINED_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Undistorter.pretrained: the shipped weights {path!r} are missing from this installation"
            )
        if not PRETRAINED_PASSED_DO_NO_HARM:
            warnings.warn(
                "undistort: the shipped model did NOT pass its do-no-harm bounds: on a few portraits taken "
                "from afar it still moves features by about a pixel at its 64 px work size (see "
                "undistort/weights/MODEL_CARD.md and reports/undistort/gate.md); check results before use, "
                "lower undistort.correct(..., strength=...), or set model.flow_gate = (0.15, 0.25)",
                UserWarning,
                stacklevel=2,
            )
        return cls.load(path, map_location=map_location)

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Undistorter:
        """Rebuild an :class:`Undistorter` saved with :meth:`save` (``weights_only=True``).

        Args:
            path: the checkpoint.
            map_location: device of the loaded tensors.

        Returns:
            The pipeline in eval mode.

        Raises:
            ValueError: not an Undistorter checkpoint.
        """
        ckpt = load_checkpoint(path, map_location=map_location)
        if ckpt.get("arch") != "undistorter":
            raise ValueError(
                f"Undistorter.load: {os.fspath(path)!r} holds arch {ckpt.get('arch')!r}, not 'undistorter'"
            )
        try:
            cfg = ckpt["config"]
            parts = {name: create_model(p["arch"], **p["config"]) for name, p in cfg["parts"].items()}
        except (KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(
                f"Undistorter.load: {os.fspath(path)!r} is not a valid undistort checkpoint (truncated or "
                f"not written by undistort; malformed config: {err!r})"
            ) from err
        model = cls(
            parts["flow_net"],  # type: ignore[arg-type]
            parts.get("distance_net"),  # type: ignore[arg-type]
            parts.get("completion_net"),  # type: ignore[arg-type]
            parts.get("seg_net"),  # type: ignore[arg-type]
            work_size=cfg["work_size"],
            head_height_cm=cfg["head_height_cm"],
            hole_threshold=cfg["hole_threshold"],
            channels_last=cfg.get("channels_last", True),
            flow_gate=cfg.get("flow_gate"),
        )
        model.load_state_dict(ckpt["state_dict"])
        return model.eval()
