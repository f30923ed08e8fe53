"""High-level inference: ``Completer.complete(image, mask, reference, landmarks=None) -> image``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ._checks import check_finite, check_floating, check_positive, check_range, check_shape, check_tensor
from .data import pil_to_tensor, tensor_to_pil
from .functional import composite, occlude
from .models import CompletionGenerator, create_model
from .pose import PoseMap, estimate_pose, smooth_angles

logger = logging.getLogger(__name__)

__all__ = ["Completer"]

ImageLike = torch.Tensor | Image.Image
_GENERATOR_ARCHS = ("occfill_generator", "occfill_inpainting_baseline")
PRETRAINED_FILE = "occfill_celeba128.pt"


def _to_batch(x: ImageLike, name: str, fn: str, channels: int) -> tuple[torch.Tensor, bool]:
    if isinstance(x, Image.Image):
        if channels == 1:
            t = pil_to_tensor(x.convert("L"))
            t = (t > 0.5).float()
        else:
            t = pil_to_tensor(x.convert("RGB"))
        return t[None], True
    check_tensor(x, name, fn=fn)
    check_floating(x, name, fn=fn)
    if x.dim() == 3:
        return x[None], False
    return x, False


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize with antialiasing when shrinking, clamped to [0, 1]."""
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrink).clamp(0.0, 1.0)


class Completer:
    """Fill the ocular region of faces with a trained generator, keeping every visible pixel exactly.

    The pose map L is built from the target's head pose: from ``angles`` if given, else estimated from
    ``landmarks`` with :func:`occfill.pose.estimate_pose`, else frontal (zeros, with a warning once).

    Args:
        generator: a :class:`occfill.models.CompletionGenerator` (put in eval mode here).
        pose_map: the pose encoder matching the generator's ``pose_channels`` (default: the paper's 3-plane
            angle map).
        focal: focal length in pixels for pose estimation (default ``2 * max(H, W)``).
        resolution: ``(H, W)`` (or one int) the generator was trained at; inputs of another size are resized
            to it, completed there and the completion resized back (visible pixels are kept exactly, the mask
            is shrunk conservatively: a low-resolution pixel is a hole if any pixel under it is).
            :meth:`from_checkpoint` reads it from the checkpoint. ``None``: run at the input's size.

    Raises:
        TypeError: ``generator`` is not a :class:`~occfill.models.CompletionGenerator` or ``pose_map`` not a
            :class:`~occfill.PoseMap`.
        ValueError: a non-positive ``focal`` or a pose map whose channels the generator does not take.

    Examples:
        >>> from occfill.models import CompletionGenerator
        >>> c = Completer(CompletionGenerator(base_channels=8, depth=2))
        >>> x = torch.rand(1, 3, 16, 16); m = torch.zeros(1, 1, 16, 16); m[..., 4:8, 2:14] = 1
        >>> out = c.complete(x, m, x, angles=torch.zeros(1, 3))
        >>> bool((out[m.expand_as(out) == 0] == x[m.expand_as(x) == 0]).all())
        True
    """

    def __init__(
        self,
        generator: CompletionGenerator,
        *,
        pose_map: PoseMap | None = None,
        focal: float | None = None,
        resolution: Sequence[int] | int | None = None,
    ) -> None:
        if not isinstance(generator, CompletionGenerator):
            raise TypeError(
                f"Completer: 'generator' must be a CompletionGenerator; got {type(generator).__name__}"
            )
        if pose_map is not None and not isinstance(pose_map, PoseMap):
            raise TypeError(f"Completer: 'pose_map' must be a PoseMap or None; got {type(pose_map).__name__}")
        if focal is not None:
            check_positive(focal, "focal", fn="Completer")
        self.generator = generator.eval()
        self.pose_map = pose_map if pose_map is not None else PoseMap()
        if generator.pose_channels not in (0, self.pose_map.out_channels):
            raise ValueError(
                f"Completer: generator expects {generator.pose_channels} pose channels but the pose map gives "
                f"{self.pose_map.out_channels}"
            )
        self.focal = focal
        if resolution is not None:
            res = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
            if len(res) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in res
            ):
                raise ValueError(
                    f"Completer: 'resolution' must be a positive int or an (H, W) pair of them; got {resolution!r}"
                )
            self.resolution: tuple[int, int] | None = (int(res[0]), int(res[1]))
        else:
            self.resolution = None
        self._warned = False

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, *, device: torch.device | str = "cpu", **kwargs: Any
    ) -> Completer:
        """Build from a generator checkpoint written by the training recipe.

        Args:
            path: checkpoint file (``arch`` ``occfill_generator`` or ``occfill_inpainting_baseline``).
            device: device to move the generator to.
            **kwargs: passed to :class:`Completer`.

        Returns:
            The completer.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not an occfill checkpoint, or one of another model (e.g. a discriminator or the
                identity encoder).
        """
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        arch = ckpt.get("arch", "occfill_generator")
        if arch not in _GENERATOR_ARCHS:
            raise ValueError(
                f"Completer.from_checkpoint: {os.fspath(path)!r} holds arch {arch!r}; expected one of "
                f"{_GENERATOR_ARCHS}"
            )
        gen = create_model(arch, weights=path).to(device)
        if "resolution" in ckpt and "resolution" not in kwargs:
            kwargs["resolution"] = tuple(int(v) for v in ckpt["resolution"])
        return cls(gen, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def pretrained(cls, *, device: torch.device | str = "cpu", **kwargs: Any) -> Completer:
        """The generator shipped inside the wheel (128 px, trained on celeba-id-crops; see ``MODEL_CARD.md``).

        Works offline: the weights are a file of the installed package. CelebA terms apply to them:
        non-commercial research use only.

        Args:
            device: device to move the generator to.
            **kwargs: passed to :class:`Completer`.

        Returns:
            The completer (``resolution`` (128, 128)).

        Raises:
            FileNotFoundError: the weights file is missing from this installation.
        """
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", PRETRAINED_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Completer.pretrained: the shipped weights {path!r} are missing from this installation of occfill"
            )
        return cls.from_checkpoint(path, device=device, **kwargs)

    def complete_photo(
        self,
        photo: Any,
        reference: Any,
        *,
        mask: ImageLike | None = None,
        seed: int = 0,
    ) -> ImageLike:
        """One call on raw photos: find the faces, align them, fill the ocular region, paste it back.

        Needs the optional extra ``occfill[landmarks]`` (dlib face detector + 68-point predictor). Both photos
        are aligned by their eye centres to the model's resolution (the ``celeba-id-crops`` convention, see
        :mod:`occfill.landmarks`); the hole is the eye box from the target's landmarks (or ``mask``, in photo
        pixels); the pose comes from the aligned landmarks; the completed crop is warped back into the photo,
        where only the hole changes.

        Args:
            photo: the target: PIL image, file path or ``(3, H, W)`` float tensor in [0, 1].
            reference: an unoccluded photo of the same person (any size, any pose).
            mask: optional ``(1, H, W)`` tensor or PIL image in photo pixels (non-zero = fill); default: the
                eye box from the landmarks.
            seed: seed of the noise.

        Returns:
            The completed photo, same size and type as ``photo`` (a PIL image for a path).

        Raises:
            ImportError: the ``occfill[landmarks]`` extra is missing (the message says what to install).
            ValueError: no face found in ``photo`` or ``reference`` (named), or a mask of another size.
        """
        import cv2

        from .landmarks import align_face
        from .masks import box_masks, eye_box_from_landmarks

        fn = "Completer.complete_photo"
        size = self.resolution[0] if self.resolution is not None else 128
        tgt = align_face(photo, size, name="photo")
        ref = align_face(reference, size, name="reference")
        h, w = tgt["photo"].shape[:2]
        if mask is None:
            crop_mask = box_masks(eye_box_from_landmarks(tgt["landmarks"][None]), size, size)[0]
        else:
            m, _ = _to_batch(mask, "mask", fn, 1)
            check_shape(m, f"1,1,{h},{w}", "mask", fn=fn)
            check_finite(m, "mask", fn=fn)
            mw = cv2.warpAffine(
                (m[0, 0] != 0).float().numpy(), tgt["matrix"], (size, size), flags=cv2.INTER_LINEAR
            )
            crop_mask = torch.from_numpy((mw > 0).astype(np.float32))[None]
        g = torch.Generator(device=self.device).manual_seed(int(seed))
        crop = self.complete(tgt["crop"], crop_mask, ref["crop"], tgt["landmarks"], generator=g)
        inv = cv2.invertAffineTransform(tgt["matrix"])
        back = cv2.warpAffine(
            (crop.permute(1, 2, 0).cpu().numpy() * 255.0).astype(np.float32),
            inv,
            (w, h),
            flags=cv2.INTER_CUBIC,
        )
        alpha = cv2.warpAffine(crop_mask[0].numpy().astype(np.float32), inv, (w, h), flags=cv2.INTER_LINEAR)
        alpha = np.clip(alpha, 0.0, 1.0)[..., None]
        out = tgt["photo"].astype(np.float32) * (1.0 - alpha) + np.clip(back, 0, 255) * alpha
        out_u8 = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        if isinstance(photo, torch.Tensor):
            res = torch.from_numpy(out_u8).permute(2, 0, 1).to(photo.dtype).div(255.0).to(photo.device)
            keep = torch.from_numpy(alpha[..., 0] == 0).to(photo.device).expand_as(res)
            res[keep] = photo[keep]  # untouched pixels are returned exactly
            return res
        return Image.fromarray(out_u8)

    @property
    def device(self) -> torch.device:
        """Device of the generator's parameters."""
        return next(self.generator.parameters()).device

    def _pose(
        self,
        b: int,
        hw: tuple[int, int],
        like: torch.Tensor,
        landmarks: torch.Tensor | None,
        angles: torch.Tensor | None,
    ) -> torch.Tensor | None:
        if self.generator.pose_channels == 0:
            return None
        if self.pose_map.encoding == "heatmaps":
            if landmarks is None:
                raise ValueError("Completer.complete: a heatmap pose map needs 'landmarks'; got None")
            return self.pose_map(landmarks.to(like), hw)
        if angles is None:
            if landmarks is not None:
                angles = estimate_pose(landmarks, hw, focal=self.focal)
            else:
                if not self._warned:
                    logger.warning(
                        "Completer.complete: no landmarks or angles given; assuming a frontal pose"
                    )
                    self._warned = True
                angles = like.new_zeros(b, 3)
        check_shape(angles, f"{b},3", "angles", fn="Completer.complete")
        return self.pose_map(angles.to(like), hw)

    @overload
    def complete(
        self,
        image: torch.Tensor,
        mask: ImageLike,
        reference: ImageLike,
        landmarks: torch.Tensor | None = None,
        *,
        angles: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor: ...

    @overload
    def complete(
        self,
        image: Image.Image,
        mask: ImageLike,
        reference: ImageLike,
        landmarks: torch.Tensor | None = None,
        *,
        angles: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Image.Image: ...

    @torch.no_grad()
    def complete(
        self,
        image: ImageLike,
        mask: ImageLike,
        reference: ImageLike,
        landmarks: torch.Tensor | None = None,
        *,
        angles: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ImageLike:
        """Complete the masked region of ``image`` using ``reference`` (same person, any pose).

        Args:
            image: ``(B, 3, H, W)`` / ``(3, H, W)`` tensor in [0, 1], or a PIL image (the target).
            mask: ``(B, 1, H, W)`` / ``(1, H, W)`` tensor or PIL image (non-zero = occluded).
            reference: occlusion-free photo(s) of the same identity, same size as ``image``.
            landmarks: ``(B, 68, 2)`` target landmarks in pixels, used to estimate the pose.
            angles: ``(B, 3)`` target ``(pitch, yaw, roll)``; overrides ``landmarks``.
            noise: ``(B, noise_channels, H', W')`` noise planes (H', W' padded to a multiple of
                ``2 ** depth``); fixed noise makes the output deterministic.
            generator: torch generator for the noise when ``noise`` is None.

        Returns:
            The completed image, of the type and shape of ``image``; outside the mask it equals ``image``.

        Raises:
            TypeError: unsupported input types (non-floating tensors included).
            ValueError: mismatched shapes (``landmarks`` ``(B, K, 2)``, ``angles`` ``(B, 3)`` included),
                NaN/inf in any input (named), or values outside [0, 1].
        """
        fn = "Completer.complete"
        x, was_pil = _to_batch(image, "image", fn, 3)
        single = not was_pil and isinstance(image, torch.Tensor) and image.dim() == 3
        m, _ = _to_batch(mask, "mask", fn, 1)
        s, _ = _to_batch(reference, "reference", fn, 3)
        dims = check_shape(x, "B,3,H,W", "image", fn=fn)
        check_shape(m, "B,1,H,W", "mask", fn=fn, dims=dims)
        if s.shape[0] == 1 and x.shape[0] > 1:
            s = s.expand(x.shape[0], -1, -1, -1)
        if self.resolution is not None and s.dim() == 4 and tuple(s.shape[-2:]) != tuple(x.shape[-2:]):
            check_shape(s, "B,3,h,w", "reference", fn=fn, dims={"B": dims["B"]})
            s = _resize(s.float(), self.resolution)  # any size is fine: it goes to the model's resolution
            check_shape(x, "B,3,H,W", "image", fn=fn)
        else:
            check_shape(s, "B,3,H,W", "reference", fn=fn, dims=dims)
        check_finite(x, "image", fn=fn)
        check_finite(m, "mask", fn=fn)
        check_finite(s, "reference", fn=fn)
        check_range(x, "image", fn=fn, low=0.0, high=1.0)
        check_range(s, "reference", fn=fn, low=0.0, high=1.0)
        if landmarks is not None:
            check_floating(landmarks, "landmarks", fn=fn)
            landmarks = landmarks if landmarks.dim() == 3 else landmarks[None]
            check_shape(landmarks, f"{x.shape[0]},K,2", "landmarks", fn=fn)
            check_finite(landmarks, "landmarks", fn=fn)
        if angles is not None:
            check_floating(angles, "angles", fn=fn)
            check_shape(angles, f"{x.shape[0]},3", "angles", fn=fn)
            check_finite(angles, "angles", fn=fn)
        dev = self.device
        dtype = next(self.generator.parameters()).dtype
        x, m, s = x.to(dev, dtype), (m != 0).to(dev, dtype), s.to(dev, dtype)
        x_full, m_full = x, m
        b, _, h0, w0 = x.shape
        if self.resolution is not None and (h0, w0) != self.resolution:
            rh, rw = self.resolution
            x = _resize(x, self.resolution)
            m = (F.interpolate(m, size=self.resolution, mode="area") > 0).to(dtype)
            if tuple(s.shape[-2:]) != self.resolution:
                s = _resize(s, self.resolution)
            if landmarks is not None:
                landmarks = landmarks * landmarks.new_tensor([rw / w0, rh / h0])
        h, w = x.shape[-2:]
        step = 2**self.generator.depth
        ph, pw = (-h) % step, (-w) % step
        pose = self._pose(b, (h + ph, w + pw), x, landmarks, angles)
        occ = occlude(x, m)
        if ph or pw:
            pad = (0, pw, 0, ph)
            occ_p, s_p, m_p = (
                F.pad(occ, pad, mode="replicate"),
                F.pad(s, pad, mode="replicate"),
                F.pad(m, pad),
            )
        else:
            occ_p, s_p, m_p = occ, s, m
        raw = self.generator(occ_p, s_p, pose, mask=m_p, noise=noise, generator=generator)[..., :h, :w]
        if (h, w) != (h0, w0):
            raw = _resize(raw, (h0, w0))
        out = composite(raw, x_full, m_full)
        if was_pil:
            return tensor_to_pil(out[0])
        return out[0] if single else out

    def complete_video(
        self,
        frames: Sequence[ImageLike] | torch.Tensor,
        masks: Sequence[ImageLike] | torch.Tensor,
        reference: ImageLike,
        landmarks: torch.Tensor | None = None,
        *,
        angles: torch.Tensor | None = None,
        seed: int = 0,
        pose_smoothing: float = 0.0,
        causal: bool = True,
    ) -> list[ImageLike]:
        """Complete a video: one fixed reference, per-frame pose, ONE noise draw shared by every frame.

        The paper claims identity-consistent video completion without showing a temporal component; here
        coherence comes from the shared reference and noise (the generator is deterministic given them, so
        the completion changes only as much as the frame and its pose change), plus optional exponential
        smoothing of the per-frame angles against landmark jitter (:func:`occfill.pose.smooth_angles`; our
        option). With per-frame random noise instead, the completion flickers from frame to frame
        (``tests/test_completer.py::TestVideo`` measures both on a slowly turning real face).

        Args:
            frames: T frames (tensors ``(3, H, W)`` or PIL images) or a ``(T, 3, H, W)`` tensor.
            masks: T masks matching the frames, or a ``(T, 1, H, W)`` tensor.
            reference: the one reference photo.
            landmarks: ``(T, 68, 2)`` per-frame landmarks.
            angles: ``(T, 3)`` per-frame angles (override ``landmarks``).
            seed: seed of the shared noise.
            pose_smoothing: smoothing strength ``a`` in [0, 1) of the per-frame angles
                (``s_t = a * s_{t-1} + (1 - a) * angles_t``); 0 turns it off.
            causal: smooth with past frames only (live use; lags by about ``a / (1 - a)`` frames), or
                ``False`` for a recorded video: forward-backward smoothing without lag.

        Returns:
            The T completed frames, each of the type of the corresponding input frame.

        Raises:
            TypeError: ``frames``/``masks`` are neither sequences nor tensors.
            ValueError: frame/mask count mismatch, ``landmarks``/``angles`` not one row per frame, or bad
                ``pose_smoothing``.
        """
        fn = "Completer.complete_video"
        if not isinstance(frames, (torch.Tensor, Sequence)) or isinstance(frames, str):
            raise TypeError(
                f"{fn}: 'frames' must be a sequence of frames or a tensor; got {type(frames).__name__}"
            )
        if not isinstance(masks, (torch.Tensor, Sequence)) or isinstance(masks, str):
            raise TypeError(
                f"{fn}: 'masks' must be a sequence of masks or a tensor; got {type(masks).__name__}"
            )
        n = len(frames)
        if len(masks) != n:
            raise ValueError(f"{fn}: 'masks' must have one entry per frame ({n}); got {len(masks)}")
        if not 0.0 <= pose_smoothing < 1.0:
            raise ValueError(f"{fn}: 'pose_smoothing' must lie in [0, 1); got {pose_smoothing!r}")
        if n == 0:
            return []
        if landmarks is not None:
            check_shape(landmarks, f"{n},68,2", "landmarks", fn=fn)
        if angles is not None:
            check_shape(angles, f"{n},3", "angles", fn=fn)
        first, _ = _to_batch(frames[0], "frames", fn, 3)
        hf, wf = first.shape[-2:]
        h, w = self.resolution if self.resolution is not None else (hf, wf)
        step = 2**self.generator.depth
        hp, wp = h + (-h) % step, w + (-w) % step
        g = torch.Generator().manual_seed(int(seed))
        noise = self.generator.make_noise(1, hp, wp, like=torch.empty(0), generator=g)
        if noise is not None:
            noise = noise.to(self.device, next(self.generator.parameters()).dtype)
        if (
            angles is None
            and landmarks is not None
            and self.generator.pose_channels
            and self.pose_map.encoding == "angles"
        ):
            angles = estimate_pose(landmarks, (hf, wf), focal=self.focal)
        if angles is not None and pose_smoothing > 0:
            angles = smooth_angles(angles, pose_smoothing, causal=causal)
        out: list[ImageLike] = []
        for t in range(n):
            lm_t = landmarks[t : t + 1] if landmarks is not None else None
            an_t = angles[t : t + 1] if angles is not None else None
            out.append(self.complete(frames[t], masks[t], reference, lm_t, angles=an_t, noise=noise))
        return out
