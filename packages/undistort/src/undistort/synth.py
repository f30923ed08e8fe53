"""``PortraitPairs``: synthetic (distorted, corrected, flow) portrait pairs rendered from user-given heads.

Each item is drawn deterministically from ``(seed, index)``: a head (identity and expressions, or one of
the user's meshes), a pose, a camera-to-subject distance (log-uniform), a focal length keeping the head
at a given fraction of the image, a light and a background; then :func:`undistort.camera.synthesize_pair`
renders both views and the exact correction flow.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._checks import check_positive
from .camera import PinholeCamera, head_rotation, synthesize_pair
from .heads import HeadModel, head_colors

__all__ = ["PortraitPairs", "collate_pairs"]


class PortraitPairs(Dataset):
    """Synthetic perspective-portrait pairs (the paper's training-data synthesis, reconstructed).

    Args:
        heads: the head source (:func:`~undistort.heads.load_ict_facekit` or ``HeadModel.from_meshes``).
        length: number of items.
        image_size: square image side ``S`` in pixels.
        distance_range: ``(d_min, d_max)`` of the log-uniform camera-to-anchor distance (cm).
        distance_ref: reference (corrected) distance ``d_ref`` (cm).
        yaw: maximum absolute yaw (radians).
        pitch: maximum absolute pitch (radians).
        roll: maximum absolute roll (radians).
        head_fraction: ``(lo, hi)`` fraction of the image height taken by the head's height at the anchor
            plane (sets ``f = frac * S * d / head_height``).
        shift: maximum anchor shift from the image centre, as a fraction of ``S``.
        max_expressions: maximum number of active expressions per head.
        num_identities: if set, identities come from a fixed pool of this size drawn with
            ``identity_seed`` (use another ``identity_seed`` for held-out identities); else every item has
            a fresh identity.
        identity_seed: seed of the identity pool.
        seed: seed of everything else (poses, distances, lights, backgrounds).
        visibility_tol: depth tolerance of the flow's visibility test (cm).
        anchor: ``"face"`` (default): the dolly zoom keeps the *face* size: the head is shifted so the
            anchor plane passes through the eyes (mean depth of the 12 eye landmarks; needs a model with
            68 landmarks, else the model origin is used) and ``distance`` is the camera-to-eyes distance.
            ``"origin"``: the model's own origin (ICT-FaceKit: near the ears' axis; the 0.2 behaviour, which
            shrinks the face in the reference view: inter-ocular distance x0.67 at 25 cm).

    Raises:
        TypeError: ``heads`` is not a :class:`~undistort.heads.HeadModel`.
        ValueError: non-positive sizes or distances, malformed ranges, negative angles, shift or
            ``max_expressions``.

    Each item is a dict: ``distorted``, ``corrected`` ``(3, S, S)`` in [0, 1]; ``flow`` ``(2, S, S)``
    backward flow in pixels; ``valid``, ``holes``, ``mask``, ``mask_corrected`` ``(1, S, S)`` float
    (``mask`` = head in the distorted image); ``distance``, ``focal`` scalars; ``identity`` int64;
    ``landmarks_distorted``/``landmarks_corrected`` ``(L, 2)`` when the head model has landmarks.
    """

    def __init__(
        self,
        heads: HeadModel,
        *,
        length: int = 1000,
        image_size: int = 128,
        distance_range: tuple[float, float] = (25.0, 160.0),
        distance_ref: float = 500.0,
        yaw: float = math.radians(30),
        pitch: float = math.radians(15),
        roll: float = math.radians(10),
        head_fraction: tuple[float, float] = (0.55, 0.65),
        shift: float = 0.04,
        max_expressions: int = 3,
        num_identities: int | None = None,
        identity_seed: int = 0,
        seed: int = 0,
        visibility_tol: float = 0.75,
        anchor: str = "face",
    ) -> None:
        fn = "PortraitPairs"
        if anchor not in ("face", "origin"):
            raise ValueError(f"{fn}: 'anchor' must be 'face' or 'origin'; got {anchor!r}")
        self.anchor = anchor
        if not isinstance(heads, HeadModel):
            raise TypeError(f"{fn}: 'heads' must be a HeadModel; got {type(heads).__name__}")
        check_positive(length, "length", fn=fn)
        check_positive(image_size, "image_size", fn=fn)
        if len(distance_range) != 2 or len(head_fraction) != 2:
            raise ValueError(
                f"{fn}: 'distance_range' and 'head_fraction' must be (lo, hi) pairs; got "
                f"{distance_range}, {head_fraction}"
            )
        for name, value in (("yaw", yaw), ("pitch", pitch), ("roll", roll), ("shift", shift)):
            check_positive(value, name, fn=fn, strict=False)
        check_positive(max_expressions, "max_expressions", fn=fn, strict=False)
        lo, hi = distance_range
        check_positive(lo, "distance_range[0]", fn=fn)
        if not hi >= lo:
            raise ValueError(f"{fn}: 'distance_range' must be (lo, hi) with hi >= lo; got {distance_range}")
        check_positive(distance_ref, "distance_ref", fn=fn)
        if not 0 < head_fraction[0] <= head_fraction[1]:
            raise ValueError(f"{fn}: 'head_fraction' must be (lo, hi) with 0 < lo <= hi; got {head_fraction}")
        self.heads = heads
        self.length, self.image_size = int(length), int(image_size)
        self.distance_range, self.distance_ref = (float(lo), float(hi)), float(distance_ref)
        self.yaw, self.pitch, self.roll = float(yaw), float(pitch), float(roll)
        self.head_fraction, self.shift = head_fraction, float(shift)
        self.max_expressions, self.seed, self.visibility_tol = (
            int(max_expressions),
            int(seed),
            float(visibility_tol),
        )
        ext = heads.neutral.amax(0) - heads.neutral.amin(0)
        self.head_height = float(ext[1])
        self.identities: Tensor | None = None
        if num_identities is not None:
            check_positive(num_identities, "num_identities", fn=fn)
            g = torch.Generator().manual_seed(int(identity_seed))
            self.identities = torch.randn(int(num_identities), heads.num_identities, generator=g)

    def __len__(self) -> int:
        return self.length

    def _uniform(self, g: torch.Generator, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(f"PortraitPairs: index {index} out of range for length {self.length}")
        index = index % self.length
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        heads = self.heads
        if self.identities is not None:
            ident = int(torch.randint(self.identities.shape[0], (1,), generator=g))
            e = heads.expression_basis.shape[0]
            b = torch.zeros(e)
            if e and self.max_expressions > 0:
                n = int(torch.randint(self.max_expressions + 1, (1,), generator=g))
                allowed = [i for i, nm in enumerate(heads.expression_names) if nm != "mouthClose"] or list(
                    range(e)
                )
                for j in torch.randperm(len(allowed), generator=g)[:n].tolist():
                    b[allowed[j]] = float(torch.rand((), generator=g)) * 0.8
            verts = heads.vertices(self.identities[ident], b)
        else:
            verts, _ = heads.sample(g, max_expressions=self.max_expressions)
            ident = -1
        if self.anchor == "face" and heads.landmarks.numel() == 68:
            z0 = verts[heads.landmarks[36:48].long(), 2].mean()
            verts = verts - torch.stack([z0 * 0, z0 * 0, z0])
        s = self.image_size
        lo, hi = self.distance_range
        d = math.exp(self._uniform(g, math.log(lo), math.log(hi)))
        frac = self._uniform(g, *self.head_fraction)
        f = frac * s * d / self.head_height
        rot = head_rotation(
            self._uniform(g, -self.yaw, self.yaw),
            self._uniform(g, -self.pitch, self.pitch),
            self._uniform(g, -self.roll, self.roll),
        )
        su, sv = (self._uniform(g, -self.shift, self.shift) * s for _ in range(2))
        t = torch.tensor([su * d / f, sv * d / f, d])
        light = torch.tensor([self._uniform(g, -1, 1), self._uniform(g, -1, 0.3), -1.0])
        c0, c1 = torch.rand(3, generator=g), torch.rand(3, generator=g)
        ramp = torch.linspace(0, 1, s)
        vert = bool(torch.rand((), generator=g) < 0.5)
        r = ramp.view(1, s, 1) if vert else ramp.view(1, 1, s)
        bg = (c0.view(3, 1, 1) * (1 - r) + c1.view(3, 1, 1) * r).expand(3, s, s).contiguous()
        colors = head_colors(heads.region, g, vertices=verts)
        cam = PinholeCamera.centered(f, s)
        lms = heads.landmarks if heads.landmarks.numel() else None
        out = synthesize_pair(
            verts,
            heads.faces,
            colors,
            cam,
            rot,
            t,
            distance_ref=self.distance_ref,
            light_dir=light,
            background=bg,
            landmarks=lms,
            visibility_tol=self.visibility_tol,
        )
        item: dict[str, Any] = {
            "distorted": out["distorted"],
            "corrected": out["corrected"],
            "flow": out["flow"],
            "valid": out["valid"][None].float(),  # type: ignore[index]
            "holes": out["holes"][None].float(),  # type: ignore[index]
            "mask": out["mask_distorted"][None].float(),  # type: ignore[index]
            "mask_corrected": out["mask_corrected"][None].float(),  # type: ignore[index]
            "distance": torch.tensor(d, dtype=torch.float32),
            "focal": torch.tensor(f, dtype=torch.float32),
            "identity": torch.tensor(ident),
        }
        if lms is not None:
            item["landmarks_distorted"] = out["landmarks_distorted"]
            item["landmarks_corrected"] = out["landmarks_corrected"]
        return item


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    """Stack a list of :class:`PortraitPairs` items into a batch dict.

    Args:
        items: dataset items with identical keys.

    Returns:
        Dict of stacked tensors (batch first).

    Raises:
        ValueError: an empty list.
    """
    if not items:
        raise ValueError("collate_pairs: 'items' must be a non-empty list of PortraitPairs items; got []")
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
