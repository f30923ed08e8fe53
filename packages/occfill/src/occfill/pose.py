"""Head pose: angles from 68 landmarks (PnP) and the paper's 3-plane pose map.

Convention:
    Angles are ``(pitch, yaw, roll)`` in radians, in this channel order (the order printed under the pose
    map of the paper's overview figure). The head rotation in the head frame (x to image right for a
    frontal face, y up, z towards the camera) is ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)``; the camera is the
    OpenCV one (x right, y down, z forward), so a camera-frame rotation is ``diag(1, -1, -1) @ R``. This is
    the convention of the ICT-FaceKit renders used in the tests (``ict-faces-128``, whose ``meta.jsonl``
    angles are recovered by :func:`estimate_pose`, see ``tests/test_pose.py``). Positive yaw turns the nose
    towards image right, positive pitch lowers it (towards image bottom), positive roll turns the face
    counter-clockwise as seen in the image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ._checks import (
    check_finite,
    check_floating,
    check_int,
    check_positive,
    check_shape,
    check_size,
    check_tensor,
)
from ._template import LANDMARKS68_CM

logger = logging.getLogger(__name__)

__all__ = [
    "PoseMap",
    "angles_to_rotation",
    "estimate_pose",
    "landmark_heatmaps",
    "pose_map",
    "project_template",
    "rotation_to_angles",
    "smooth_angles",
]

_FLIP = np.diag([1.0, -1.0, -1.0])
_ENCODINGS = ("angles", "heatmaps")


def angles_to_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Head-frame rotation ``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` from ``(pitch, yaw, roll)``.

    Args:
        angles: ``(B, 3)`` floating ``(pitch, yaw, roll)`` in radians.

    Returns:
        ``(B, 3, 3)`` rotation matrices, same dtype and device.

    Raises:
        TypeError: ``angles`` is not a floating tensor.
        ValueError: ``angles`` is not ``(B, 3)``.

    Examples:
        >>> angles_to_rotation(torch.zeros(1, 3))[0]
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
    """
    fn = "angles_to_rotation"
    check_floating(angles, "angles", fn=fn)
    check_shape(angles, "B,3", "angles", fn=fn)
    p, y, r = angles.unbind(-1)
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    cp, sp, cy, sy, cr, sr = p.cos(), p.sin(), y.cos(), y.sin(), r.cos(), r.sin()
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ rx @ ry


def rotation_to_angles(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`angles_to_rotation` (pitch in [-pi/2, pi/2]).

    Args:
        rotation: ``(B, 3, 3)`` floating head-frame rotation matrices.

    Returns:
        ``(B, 3)`` ``(pitch, yaw, roll)`` in radians.

    Raises:
        TypeError: ``rotation`` is not a floating tensor.
        ValueError: ``rotation`` is not ``(B, 3, 3)``.

    Examples:
        >>> a = torch.tensor([[0.1, -0.3, 0.05]])
        >>> torch.allclose(rotation_to_angles(angles_to_rotation(a)), a)
        True
    """
    fn = "rotation_to_angles"
    check_floating(rotation, "rotation", fn=fn)
    check_shape(rotation, "B,3,3", "rotation", fn=fn)
    pitch = torch.asin(rotation[:, 2, 1].clamp(-1.0, 1.0))
    yaw = torch.atan2(-rotation[:, 2, 0], rotation[:, 2, 2])
    roll = torch.atan2(-rotation[:, 0, 1], rotation[:, 1, 1])
    return torch.stack([pitch, yaw, roll], dim=-1)


def _template(device: torch.device | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(LANDMARKS68_CM, dtype=dtype, device=device)


def _intrinsics(height: int, width: int, focal: float | None) -> np.ndarray:
    f = 2.0 * max(height, width) if focal is None else float(focal)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def project_template(
    angles: torch.Tensor,
    image_size: tuple[int, int],
    *,
    distance: float = 60.0,
    focal: float | None = None,
) -> torch.Tensor:
    """Project the generic 68-landmark template at the given head poses (pinhole camera).

    Useful to synthesise landmarks of a known pose, e.g. to test :func:`estimate_pose`.

    Args:
        angles: ``(B, 3)`` ``(pitch, yaw, roll)`` in radians.
        image_size: ``(H, W)`` of the image; the principal point is its centre.
        distance: distance of the template's centroid from the camera, in cm.
        focal: focal length in pixels (default ``2 * max(H, W)``).

    Returns:
        ``(B, 68, 2)`` landmarks ``(x, y)`` in pixels, dtype and device of ``angles``.

    Raises:
        TypeError: ``angles`` is not a floating tensor, ``image_size`` is not a pair.
        ValueError: bad shapes, non-positive ``image_size`` entries or a non-positive ``distance``/``focal``.
    """
    fn = "project_template"
    check_floating(angles, "angles", fn=fn)
    check_shape(angles, "B,3", "angles", fn=fn)
    check_positive(distance, "distance", fn=fn)
    if focal is not None:
        check_positive(focal, "focal", fn=fn)
    h, w = check_size(image_size, "image_size", fn=fn)
    k = torch.as_tensor(_intrinsics(h, w, focal), dtype=angles.dtype, device=angles.device)
    tmpl = _template(angles.device, angles.dtype)
    tmpl = tmpl - tmpl.mean(dim=0)
    flip = torch.as_tensor(_FLIP, dtype=angles.dtype, device=angles.device)
    cam = flip @ angles_to_rotation(angles)
    pts = tmpl @ cam.transpose(1, 2) + torch.tensor(
        [0.0, 0.0, distance], dtype=angles.dtype, device=angles.device
    )
    uvw = pts @ k.T
    return uvw[..., :2] / uvw[..., 2:3]


def estimate_pose(
    landmarks: torch.Tensor | np.ndarray,
    image_size: tuple[int, int],
    *,
    focal: float | None = None,
) -> torch.Tensor:
    """Head pose ``(pitch, yaw, roll)`` from 68 landmarks by PnP against a generic 3D template.

    Solves OpenCV's iterative PnP (Levenberg-Marquardt), started from a frontal pose at the distance that
    matches the landmarks' width, between the observed landmarks and the ICT-FaceKit neutral head's 68
    landmark vertices (``occfill._template``). The paper does not say how its pose angles were obtained;
    this estimator is our choice.

    Args:
        landmarks: ``(B, 68, 2)`` or ``(68, 2)`` landmarks ``(x, y)`` in pixels (tensor or array).
        image_size: ``(H, W)`` of the image the landmarks live in; the principal point is its centre.
        focal: focal length in pixels, if known; default ``2 * max(H, W)`` (the angles depend little on
            it: on the ict-faces-128 renders the mean yaw error grows from 0.015 to 0.020 rad).

    Returns:
        ``(B, 3)`` float angles in radians on the device (and, for floating tensors, dtype) of
        ``landmarks``; ``(1, 3)`` for a single ``(68, 2)`` input.

    Raises:
        TypeError: ``landmarks`` is neither a tensor nor an array, has an integer dtype (refused: integer
            pixel positions are almost always a mistaken cast, and rounding moves the angles), or
            ``image_size`` is not a pair.
        ValueError: wrong shape, non-finite values, bad ``image_size`` or ``focal``.
    """
    fn = "estimate_pose"
    if isinstance(landmarks, np.ndarray):
        if not np.issubdtype(landmarks.dtype, np.floating):
            raise TypeError(
                f"{fn}: 'landmarks' must hold floating-point pixel coordinates; got a {landmarks.dtype} array "
                "(integer landmarks are refused rather than guessed at: convert with .astype(float) if "
                "whole-pixel positions are really meant)"
            )
        lm_t = torch.from_numpy(np.asarray(landmarks, dtype=np.float64))
        out_device, out_dtype = torch.device("cpu"), torch.float32
    else:
        check_tensor(landmarks, "landmarks", fn=fn)
        if not landmarks.is_floating_point():
            raise TypeError(
                f"{fn}: 'landmarks' must hold floating-point pixel coordinates; got a {landmarks.dtype} tensor "
                "(integer landmarks are refused rather than guessed at: convert with .float() if whole-pixel "
                "positions are really meant)"
            )
        lm_t = landmarks
        out_device = landmarks.device
        out_dtype = landmarks.dtype
    if lm_t.dim() == 2:
        lm_t = lm_t.unsqueeze(0)
    check_shape(lm_t, "B,68,2", "landmarks", fn=fn)
    h, w = check_size(image_size, "image_size", fn=fn)
    if focal is not None:
        check_positive(focal, "focal", fn=fn)
    lm = lm_t.detach().to("cpu", torch.float64)
    check_finite(lm, "landmarks", fn=fn)
    import cv2  # local import: OpenCV is only needed here

    k = _intrinsics(h, w, focal)
    tmpl = np.asarray(LANDMARKS68_CM, dtype=np.float64)
    tmpl = tmpl - tmpl.mean(axis=0)
    tmpl_width = float(tmpl[:, 0].max() - tmpl[:, 0].min())
    out = np.zeros((lm.shape[0], 3))
    for i, pts in enumerate(lm.numpy()):
        width_px = max(float(pts[:, 0].max() - pts[:, 0].min()), 1e-6)
        rvec0 = np.array([[math.pi], [0.0], [0.0]])  # frontal face seen by an OpenCV camera
        tvec0 = np.array([[0.0], [0.0], [k[0, 0] * tmpl_width / width_px]])
        ok, rvec, _ = cv2.solvePnP(
            tmpl,
            pts.reshape(-1, 1, 2),
            k,
            None,
            rvec0,
            tvec0,
            useExtrinsicGuess=True,
            flags=cv2.SOLVEPNP_ITERATIVE,
        )
        if not ok:
            logger.warning("%s: PnP failed for item %d; returning a frontal pose", fn, i)
            continue
        rot_cam, _ = cv2.Rodrigues(rvec)
        head = _FLIP @ rot_cam
        out[i] = rotation_to_angles(torch.from_numpy(head[None]))[0].numpy()
    return torch.from_numpy(out).to(device=out_device, dtype=out_dtype)


def pose_map(
    angles: torch.Tensor, height: int, width: int, *, max_angle: float = math.pi / 2
) -> torch.Tensor:
    """The paper's pose map: the three angles, normalised, each broadcast over one H x W plane.

    ``L[b, c, :, :] = angles[b, c] / max_angle``. The figure shows three uniform planes labelled
    "(pitch, yaw, roll)"; the normalisation is our choice (values stay in [-1, 1] for |angle| <= max_angle
    and are not clipped beyond).

    Args:
        angles: ``(B, 3)`` ``(pitch, yaw, roll)`` in radians.
        height: map height H.
        width: map width W.
        max_angle: the angle mapped to 1, in radians.

    Returns:
        ``(B, 3, H, W)`` pose map, dtype and device of ``angles``.

    Raises:
        TypeError: ``angles`` is not a floating tensor, ``height``/``width`` are not ints.
        ValueError: wrong shape, non-finite angles, non-positive sizes.

    Examples:
        >>> pose_map(torch.tensor([[0.0, math.pi / 4, 0.0]]), 2, 2)[0, 1]
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])
    """
    fn = "pose_map"
    check_floating(angles, "angles", fn=fn)
    check_shape(angles, "B,3", "angles", fn=fn)
    check_int(height, "height", fn=fn)
    check_int(width, "width", fn=fn)
    check_positive(max_angle, "max_angle", fn=fn)
    check_finite(angles, "angles", fn=fn)
    return (angles / max_angle)[:, :, None, None].expand(-1, -1, height, width).contiguous()


def smooth_angles(angles: torch.Tensor, strength: float, *, causal: bool = True) -> torch.Tensor:
    """Exponentially smooth a sequence of head-pose angles over time (video mode; our option).

    Causal (a live stream): ``s_0 = a_0``, ``s_t = strength * s_{t-1} + (1 - strength) * a_t``, which
    lags a turning head by about ``strength / (1 - strength)`` frames. ``causal=False`` (a recorded video)
    runs the same filter forwards and then backwards over the forward result, which removes that lag (a
    zero-phase filter) and smooths twice as strongly.

    Args:
        angles: ``(T, 3)`` per-frame ``(pitch, yaw, roll)`` in radians (T frames in time order).
        strength: the smoothing factor in [0, 1); 0 returns a copy of ``angles``.
        causal: use only past frames (True) or the whole sequence (False).

    Returns:
        ``(T, 3)`` smoothed angles, dtype and device of ``angles``.

    Raises:
        TypeError: ``angles`` is not a floating tensor.
        ValueError: wrong shape, non-finite angles or ``strength`` outside [0, 1).

    Examples:
        >>> smooth_angles(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 0.5)[:, 1]
        tensor([0.0000, 0.5000])
    """
    fn = "smooth_angles"
    check_floating(angles, "angles", fn=fn)
    check_shape(angles, "T,3", "angles", fn=fn)
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"{fn}: 'strength' must lie in [0, 1); got {strength!r}")
    check_finite(angles, "angles", fn=fn)

    def ema(seq: torch.Tensor) -> torch.Tensor:
        rows = [seq[0]]
        for t in range(1, seq.shape[0]):
            rows.append(strength * rows[-1] + (1.0 - strength) * seq[t])
        return torch.stack(rows)

    if strength == 0.0 or angles.shape[0] == 0:
        return angles.clone()
    out = ema(angles)
    if not causal:
        out = ema(out.flip(0)).flip(0)
    return out


def landmark_heatmaps(
    landmarks: torch.Tensor, height: int, width: int, *, sigma: float = 2.0
) -> torch.Tensor:
    """Landmark heatmaps, an alternative pose encoding (not the paper's; an option here).

    ``H[b, k, i, j] = exp(-((j + 0.5 - x_k)^2 + (i + 0.5 - y_k)^2) / (2 sigma^2))`` (pixel centres).

    Args:
        landmarks: ``(B, K, 2)`` landmarks ``(x, y)`` in pixels.
        height: map height H.
        width: map width W.
        sigma: Gaussian standard deviation in pixels.

    Returns:
        ``(B, K, H, W)`` heatmaps in (0, 1].

    Raises:
        TypeError: ``landmarks`` is not a floating tensor.
        ValueError: wrong shape, non-finite values, non-positive sizes or ``sigma``.

    Examples:
        >>> landmark_heatmaps(torch.tensor([[[0.5, 0.5]]]), 2, 2, sigma=1.0)[0, 0, 0, 0]
        tensor(1.)
    """
    fn = "landmark_heatmaps"
    check_floating(landmarks, "landmarks", fn=fn)
    check_shape(landmarks, "B,K,2", "landmarks", fn=fn)
    check_int(height, "height", fn=fn)
    check_int(width, "width", fn=fn)
    check_positive(sigma, "sigma", fn=fn)
    check_finite(landmarks, "landmarks", fn=fn)
    ys = torch.arange(height, device=landmarks.device, dtype=landmarks.dtype) + 0.5
    xs = torch.arange(width, device=landmarks.device, dtype=landmarks.dtype) + 0.5
    dx = xs.view(1, 1, 1, width) - landmarks[..., 0, None, None]
    dy = ys.view(1, 1, height, 1) - landmarks[..., 1, None, None]
    return torch.exp(-(dx**2 + dy**2) / (2.0 * sigma**2))


class PoseMap(nn.Module):
    """Pose-map encoder, twin of :func:`pose_map` (default) and :func:`landmark_heatmaps`.

    Args:
        encoding: ``"angles"`` (the paper's 3 planes; input ``(B, 3)`` angles) or ``"heatmaps"`` (our
            option; input ``(B, K, 2)`` landmarks, K = ``num_landmarks``).
        max_angle: angle mapped to 1 by the ``"angles"`` encoding, in radians.
        sigma: heatmap standard deviation in pixels (``"heatmaps"``).
        num_landmarks: K for the ``"heatmaps"`` encoding.

    Shape:
        - pose: ``(B, 3)`` angles or ``(B, K, 2)`` landmarks.
        - output: ``(B, C, H, W)`` with ``C = out_channels`` (3, or K).

    Examples:
        >>> PoseMap()(torch.zeros(2, 3), (8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        encoding: str = "angles",
        *,
        max_angle: float = math.pi / 2,
        sigma: float = 2.0,
        num_landmarks: int = 68,
    ) -> None:
        super().__init__()
        if encoding not in _ENCODINGS:
            raise ValueError(f"PoseMap: 'encoding' must be one of {_ENCODINGS}; got {encoding!r}")
        check_positive(max_angle, "max_angle", fn="PoseMap")
        check_positive(sigma, "sigma", fn="PoseMap")
        check_positive(num_landmarks, "num_landmarks", fn="PoseMap")
        self.encoding = encoding
        self.max_angle = float(max_angle)
        self.sigma = float(sigma)
        self.num_landmarks = int(num_landmarks)

    @property
    def out_channels(self) -> int:
        """Number of channels of the map."""
        return 3 if self.encoding == "angles" else self.num_landmarks

    def forward(self, pose: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Encode ``pose`` as a ``(B, C, H, W)`` map of spatial ``size = (H, W)``."""
        h, w = check_size(size, "size", fn="PoseMap")
        if self.encoding == "angles":
            return pose_map(pose, h, w, max_angle=self.max_angle)
        check_shape(pose, f"B,{self.num_landmarks},2", "pose", fn="PoseMap")
        return landmark_heatmaps(pose, h, w, sigma=self.sigma)

    def extra_repr(self) -> str:
        if self.encoding == "angles":
            return f"encoding='angles', max_angle={self.max_angle:.4g}"
        return f"encoding='heatmaps', sigma={self.sigma}, num_landmarks={self.num_landmarks}"
