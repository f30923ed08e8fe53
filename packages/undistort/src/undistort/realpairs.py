"""Training pairs whose pixels are real: a head model fitted to a real portrait's 68 landmarks, moved close.

A real portrait taken from afar is treated as the *reference* (corrected) view. The linear head model is
fitted to its 68 iBUG landmarks (:func:`fit_head`, scaled orthographic camera, ridge-regularised identity
and expression coefficients), the fitted head is placed at the reference distance and at a near distance
``d`` with the focal length scaled so that the *face* keeps its size (the anchor is the centre of the
eyes, not the ears' axis), and the exact dense perspective flow between the two views is rasterised over
the head (:func:`undistort.camera.synthesize_pair`). Outside the head (hair, neck, background) and in the
holes the near view cannot show (ears), the flow is extended smoothly (:func:`harmonic_fill`: a membrane
that keeps the head's flow and is pinned to zero at the image border). The near-distance input is the
real photo warped by the inverse of that flow (:func:`invert_flow`; exact rasterised correspondences on
the head), so ``warp(distorted, flow)`` gives the real photo back wherever the near view sees it.

Conventions: landmark and pixel coordinates follow :mod:`undistort.camera` (pixel centres at
``j + 0.5``); dlib/OpenCV coordinates (centres at ``j``) are shifted by ``+0.5`` on the way in
(:func:`fit_head` takes ``pixel_center=0.0`` for those).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ._checks import check_finite, check_floating, check_positive, check_shape
from .camera import PinholeCamera, synthesize_pair
from .heads import HeadModel
from .warp import warp

logger = logging.getLogger(__name__)

__all__ = [
    "EYE_LANDMARKS",
    "HeadFit",
    "RealPortraitPairs",
    "fit_head",
    "harmonic_fill",
    "invert_flow",
    "load_landmark_crops",
    "real_pair",
]

EYE_LANDMARKS = tuple(range(36, 48))
"""iBUG-68 indices of the two eyes' contours; their mean is the face anchor."""


@dataclass
class HeadFit:
    """A head model fitted to 2-D landmarks under a scaled orthographic camera.

    Attributes:
        vertices: ``(V, 3)`` fitted head in the head frame, origin moved to the face anchor (eye centre).
        rotation: ``(3, 3)`` head-to-camera rotation (camera ``y`` down, ``z`` forward).
        scale: pixels per mesh unit (cm) at the anchor plane.
        center: ``(2,)`` image position of the anchor (pixels, centres at ``j + 0.5``).
        identity: ``(K,)`` identity coefficients.
        expression: ``(E,)`` expression weights in [0, 1].
        rms: root-mean-square landmark residual in pixels.
    """

    vertices: Tensor
    rotation: Tensor
    scale: float
    center: Tensor
    identity: Tensor
    expression: Tensor
    rms: float

    def project(self, points: Tensor) -> Tensor:
        """Scaled orthographic projection ``(N, 3)`` head-frame (anchor origin) -> ``(N, 2)`` pixels."""
        return self.scale * (points @ self.rotation.T)[:, :2] + self.center


def _orthonormal_rows(a: Tensor) -> tuple[Tensor, float]:
    """Nearest scaled pair of orthonormal rows to a ``(2, 3)`` affine camera: ``(R (3, 3), scale)``."""
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    r12 = u @ vh
    r3 = torch.linalg.cross(r12[0], r12[1])
    return torch.cat([r12, r3[None]]), float(s.mean())


def fit_head(
    heads: HeadModel,
    landmarks: Tensor | np.ndarray,
    *,
    pixel_center: float = 0.5,
    iters: int = 8,
    identity_reg: float = 0.5,
    expression_reg: float = 0.1,
    jaw_weight: float = 0.5,
) -> HeadFit:
    """Fit the head model's identity, expression and pose to 68 iBUG landmarks (scaled orthographic).

    Alternates (1) the pose: an affine camera by least squares, projected onto a scaled rotation, and
    (2) the shape: ridge-regularised linear least squares for the identity coefficients and expression
    weights (clipped to [0, 1]), with residuals measured in mesh units (cm) so the regularisers do not
    depend on the image size. Jaw-contour points (0-16), which follow the silhouette rather than fixed
    skin points, count with ``jaw_weight``.

    Args:
        heads: the head model; it needs 68 ``landmarks`` vertex indices (ICT-FaceKit's ``FaceXModel``).
        landmarks: ``(68, 2)`` image landmarks (x, y).
        pixel_center: where the centre of pixel ``j`` lies in ``landmarks`` coordinates' frame offset:
            ``0.5`` for this package's convention (centres at ``j + 0.5``), ``0.0`` for dlib/OpenCV
            coordinates (they are shifted by ``+0.5``).
        iters: pose/shape alternations.
        identity_reg: ridge weight on the identity coefficients (cm^2 per unit coefficient^2).
        expression_reg: ridge weight on the expression weights.
        jaw_weight: weight of the jaw-contour landmarks.

    Returns:
        The :class:`HeadFit` (vertices with the face anchor at the origin).

    Raises:
        ValueError: the model has no 68 landmarks, or ``landmarks`` is not ``(68, 2)`` finite.
    """
    fn = "fit_head"
    if heads.landmarks.numel() != 68:
        raise ValueError(
            f"{fn}: 'heads' must have 68 landmark vertices (ICT-FaceKit with FaceXModel/vertex_indices.json); "
            f"got {heads.landmarks.numel()}"
        )
    lm = torch.as_tensor(np.asarray(landmarks), dtype=torch.float64)
    check_shape(lm, "68,2", "landmarks", fn=fn)
    check_finite(lm, "landmarks", fn=fn)
    p = lm + (0.5 - float(pixel_center))
    idx = heads.landmarks.long()
    base = heads.neutral[idx].double()  # (68, 3)
    ib = heads.identity_basis[:, idx].double()  # (K, 68, 3)
    eb = heads.expression_basis[:, idx].double()  # (E, 68, 3)
    k, e = ib.shape[0], eb.shape[0]
    w = torch.ones(68, dtype=torch.float64)
    w[:17] = jaw_weight
    sw = w.sqrt()[:, None]
    a = torch.zeros(k, dtype=torch.float64)
    b = torch.zeros(e, dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64)
    scale, t = 1.0, torch.zeros(2, dtype=torch.float64)
    for _ in range(max(1, iters)):
        x = base + torch.einsum("k,kvc->vc", a, ib) + torch.einsum("k,kvc->vc", b, eb)
        # (1) affine camera p = A x + t, weighted least squares, then the nearest scaled rotation
        xh = torch.cat([x, torch.ones(68, 1, dtype=x.dtype)], 1)
        sol = torch.linalg.lstsq(sw * xh, sw * p).solution  # (4, 2)
        rot, scale = _orthonormal_rows(sol[:3].T)
        t = (w[:, None] * (p - scale * (x @ rot[:2].T))).sum(0) / w.sum()
        # (2) shape: residual in cm, linear in (a, b)
        target = (p - t) / scale - base @ rot[:2].T  # (68, 2)
        cols = torch.cat([ib, eb]) @ rot[:2].T  # (K+E, 68, 2)
        m = (sw[None] * cols).reshape(k + e, -1).T  # (136, K+E)
        rhs = (sw * target).reshape(-1)
        reg = torch.cat([torch.full((k,), identity_reg), torch.full((e,), expression_reg)]).to(m)
        coef = torch.linalg.solve(m.T @ m + torch.diag(reg), m.T @ rhs)
        a, b = coef[:k], coef[k:].clamp(0.0, 1.0)
    verts = heads.vertices(a.float(), b.float()).double()
    x = verts[idx]
    rms = float(((scale * (x @ rot[:2].T) + t - p) ** 2).sum(1).mean().sqrt())
    anchor = verts[idx[list(EYE_LANDMARKS)]].mean(0)
    center = t + scale * (anchor @ rot[:2].T)
    return HeadFit(
        vertices=(verts - anchor).float(),
        rotation=rot.float(),
        scale=float(scale),
        center=center.float(),
        identity=a.float(),
        expression=b.float(),
        rms=rms,
    )


def harmonic_fill(values: Tensor, known: Tensor, *, iters: int = 60, border: float | None = 0.0) -> Tensor:
    """Fill unknown pixels of ``values`` smoothly: a discrete membrane (Laplace equation) solved coarse to fine.

    Known pixels keep their values; unknown pixels become the average of their four neighbours (Jacobi
    iterations, initialised from a coarser solve), with the image border pinned to ``border`` (``None``:
    free border, replicate padding).

    Args:
        values: ``(B, C, H, W)`` floating values (read where ``known``).
        known: ``(B, 1, H, W)`` bool or {0, 1} mask of known pixels.
        iters: Jacobi iterations per pyramid level.
        border: value outside the image (Dirichlet), or ``None`` for a free (Neumann) border.

    Returns:
        ``(B, C, H, W)`` filled values (equal to ``values`` where ``known``).

    Raises:
        ValueError: shape mismatch or non-finite known values.
    """
    fn = "harmonic_fill"
    check_floating(values, "values", fn=fn)
    dims = check_shape(values, "B,C,H,W", "values", fn=fn)
    check_shape(known, "B,1,H,W", "known", fn=fn, dims={"B": dims["B"], "H": dims["H"], "W": dims["W"]})
    k = known.to(values.dtype)
    v = torch.where(k > 0, values, torch.zeros_like(values))
    check_finite(v, "values (known pixels)", fn=fn)
    return _fill(v, k, iters, border)


def _fill(v: Tensor, k: Tensor, iters: int, border: float | None) -> Tensor:
    h, w = v.shape[-2:]
    if min(h, w) > 8:
        vs = F.avg_pool2d(v * k, 2, ceil_mode=True)
        ks = F.avg_pool2d(k, 2, ceil_mode=True)
        coarse = _fill(vs / ks.clamp(min=1e-6), (ks > 0).to(k), iters, border)
        x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    else:
        x = (
            torch.zeros_like(v)
            if border is not None
            else (v * k).sum((2, 3), keepdim=True).expand_as(v) / (k.sum((2, 3), keepdim=True).clamp(min=1))
        )
    x = torch.where(k > 0, v, x)
    kernel = v.new_tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).view(1, 1, 3, 3)
    c = v.shape[1]
    kernel = kernel.expand(c, 1, 3, 3)
    for _ in range(iters):
        if border is None:
            xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        else:
            xp = F.pad(x, (1, 1, 1, 1), mode="constant", value=float(border))
        avg = F.conv2d(xp, kernel, groups=c)
        x = torch.where(k > 0, v, avg)
    return x


def invert_flow(flow: Tensor, *, iters: int = 40, init: Tensor | None = None) -> Tensor:
    """Invert a smooth backward flow by fixed-point iteration: ``g(p) = -flow(p + g(p))``.

    If ``corrected = warp(distorted, flow)`` then ``distorted ~= warp(corrected, g)`` (where the map is
    one-to-one).

    Args:
        flow: ``(B, 2, H, W)`` backward flow in pixels.
        iters: fixed-point iterations (converges when the flow's Jacobian norm is below 1).
        init: optional ``(B, 2, H, W)`` starting guess (default ``-flow``).

    Returns:
        ``(B, 2, H, W)`` the inverse flow.
    """
    fn = "invert_flow"
    check_floating(flow, "flow", fn=fn)
    check_shape(flow, "B,2,H,W", "flow", fn=fn)
    g = -flow if init is None else init
    for _ in range(iters):
        g = -warp(flow, g, padding_mode="border")
    return g


def real_pair(
    image: Tensor,
    fit: HeadFit,
    faces: Tensor,
    distance: float,
    *,
    distance_ref: float = 500.0,
    landmarks: Tensor | None = None,
    fill_iters: int = 60,
    invert_iters: int = 40,
) -> dict[str, Tensor]:
    """A realistic near-distance version of a real far portrait, with its exact correction flow.

    The fitted head sits at ``distance_ref`` (the photo) and at ``distance`` (the made input), face
    anchored (focal ``f = scale * d``: the eyes' plane keeps its size). The correction flow (backward, on
    the photo's grid) is the rasterised correspondence where the near view sees the surface (``valid``),
    extended smoothly elsewhere (:func:`harmonic_fill`, zero at the image border). The input is
    ``warp(image, g)`` with ``g`` the exact near-to-reference correspondence on the near view's head and
    the fixed-point inverse of the extended flow elsewhere.

    Args:
        image: ``(3, H, W)`` the real photo in [0, 1] (the reference view).
        fit: :func:`fit_head` result in this image's pixels.
        faces: ``(F, 3)`` triangles of the head model.
        distance: near camera-to-face distance ``d`` (cm); ``d >= distance_ref`` gives the identity pair.
        distance_ref: the photo's (reference) distance (cm).
        landmarks: optional ``(L,)`` vertex indices whose projections are returned in both views.
        fill_iters: Jacobi iterations per level of the flow extension.
        invert_iters: fixed-point iterations of the inversion.

    Returns:
        Dict: ``distorted``, ``corrected`` (= ``image``) ``(3, H, W)``; ``flow`` ``(2, H, W)`` backward
        correction flow on the photo's grid (defined everywhere); ``inverse_flow`` ``(2, H, W)`` on the
        near grid; ``valid`` (exact head correspondences), ``holes`` (reference head not seen from near),
        ``mask`` (head in the near view), ``mask_corrected`` (head in the photo) ``(H, W)`` bool; and
        ``landmarks_distorted``/``landmarks_corrected`` ``(L, 2)`` when ``landmarks`` is given.

    Raises:
        ValueError: wrong shapes or non-positive distances.
    """
    fn = "real_pair"
    check_floating(image, "image", fn=fn)
    dims = check_shape(image, "3,H,W", "image", fn=fn)
    check_positive(distance, "distance", fn=fn)
    check_positive(distance_ref, "distance_ref", fn=fn)
    h, w = dims["H"], dims["W"]
    cx, cy = w / 2.0, h / 2.0
    s = fit.scale
    tx, ty = (float(fit.center[0]) - cx) / s, (float(fit.center[1]) - cy) / s
    d = float(distance)
    cam = PinholeCamera(s * d, cx, cy, w, h)
    t = torch.tensor([tx, ty, d], dtype=fit.vertices.dtype)
    verts = fit.vertices
    out = synthesize_pair(
        verts,
        faces,
        torch.zeros_like(verts),
        cam,
        fit.rotation,
        t,
        distance_ref=distance_ref,
        landmarks=landmarks,
        visibility_tol=0.75,
    )
    valid = out["valid"]
    flow_exact = out["flow"]
    mask_ref, mask_near = out["mask_corrected"], out["mask_distorted"]
    assert isinstance(valid, Tensor) and isinstance(flow_exact, Tensor)
    assert isinstance(mask_ref, Tensor) and isinstance(mask_near, Tensor)
    if d >= distance_ref:  # the identity pair: nothing moves
        flow = torch.zeros(1, 2, h, w)
        g = torch.zeros(1, 2, h, w)
    else:
        flow = harmonic_fill(flow_exact[None].float(), valid[None, None], iters=fill_iters)
        g = invert_flow(flow, iters=invert_iters)
        fwd = out["forward_flow"]
        assert isinstance(fwd, Tensor)
        # exact correspondences on the near view's head where the surface is also seen from the reference
        g = torch.where(mask_near[None, None], fwd[None].float(), g)
    distorted = warp(image[None].float(), g, padding_mode="border")[0].clamp(0, 1)
    res: dict[str, Tensor] = {
        "distorted": distorted,
        "corrected": image.float(),
        "flow": flow[0],
        "inverse_flow": g[0],
        "valid": valid,
        "holes": mask_ref & ~valid,
        "mask": mask_near,
        "mask_corrected": mask_ref,
    }
    if landmarks is not None:
        ld, lc = out["landmarks_distorted"], out["landmarks_corrected"]
        assert isinstance(ld, Tensor) and isinstance(lc, Tensor)
        res["landmarks_distorted"], res["landmarks_corrected"] = ld.float(), lc.float()
    return res


def load_landmark_crops(folder: str | os.PathLike) -> list[tuple[str, str, np.ndarray]]:
    """``(identity, path, landmarks (68, 2) dlib coordinates)`` of an ImageFolder with a ``landmarks.json``.

    The format of ``celeba-id-crops``: ``landmarks.json`` maps ``"<identity>/<file>"`` to 68 ``[x, y]``
    pairs (pixel centres at integers, as dlib).

    Args:
        folder: the data folder.

    Returns:
        Entries sorted by identity then file.

    Raises:
        FileNotFoundError: no ``landmarks.json`` in ``folder``.
    """
    root = os.fspath(folder)
    path = os.path.join(root, "landmarks.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_landmark_crops: no landmarks.json in {root!r}")
    with open(path) as fh:
        table = json.load(fh)
    out = []
    for rel in sorted(table):
        ident = rel.split("/")[0]
        out.append((ident, os.path.join(root, rel), np.asarray(table[rel], dtype=np.float64)))
    return out


class RealPortraitPairs(Dataset):
    """Near-distance inputs made from real far portraits (see :func:`real_pair`), seeded per item.

    Args:
        heads: the head model with 68 landmarks (ICT-FaceKit).
        entries: ``(identity, image path, landmarks (68, 2))`` list (e.g. :func:`load_landmark_crops`),
            landmarks in dlib coordinates (pixel centres at integers) of the stored image.
        length: number of items (entries are cycled through in a seeded order).
        image_size: side ``S`` of the returned square images (photos are resized first).
        distance_range: ``(lo, hi)`` log-uniform near distance (cm).
        distance_ref: the photos' (reference) distance.
        identity_fraction: share of identity pairs (``distance = distance_ref``, zero flow), which teach
            the network to leave far portraits alone.
        seed: seed of the order and distances.
        work_size: resolution at which the pair is made before resizing to ``image_size`` (default
            ``image_size``).

    Each item matches :class:`~undistort.synth.PortraitPairs` for the ``flow`` task: ``distorted``,
    ``corrected`` ``(3, S, S)``; ``flow`` ``(2, S, S)`` defined everywhere; ``valid`` (all ones: the
    extended flow is the target everywhere), ``head_valid`` (exact head correspondences), ``holes``,
    ``mask`` (all ones: no head mask is given to the network), ``mask_head`` (near-view head),
    ``mask_corrected`` ``(1, S, S)``; ``distance``, ``focal``, ``identity``, ``fit_rms``;
    ``landmarks_distorted``/``landmarks_corrected`` ``(68, 2)`` (the fitted head's landmark vertices).
    """

    def __init__(
        self,
        heads: HeadModel,
        entries: list[tuple[str, str, np.ndarray]],
        *,
        length: int | None = None,
        image_size: int = 64,
        distance_range: tuple[float, float] = (25.0, 160.0),
        distance_ref: float = 500.0,
        identity_fraction: float = 0.1,
        seed: int = 0,
        work_size: int | None = None,
    ) -> None:
        fn = "RealPortraitPairs"
        if not isinstance(heads, HeadModel):
            raise TypeError(f"{fn}: 'heads' must be a HeadModel; got {type(heads).__name__}")
        if not entries:
            raise ValueError(f"{fn}: 'entries' must be non-empty")
        check_positive(image_size, "image_size", fn=fn)
        lo, hi = distance_range
        check_positive(lo, "distance_range[0]", fn=fn)
        if not hi >= lo:
            raise ValueError(f"{fn}: 'distance_range' must be (lo, hi) with hi >= lo; got {distance_range}")
        if not 0.0 <= identity_fraction <= 1.0:
            raise ValueError(f"{fn}: 'identity_fraction' must lie in [0, 1]; got {identity_fraction}")
        self.heads, self.entries = heads, list(entries)
        self.length = int(length) if length is not None else len(self.entries)
        self.image_size, self.work_size = int(image_size), int(work_size or image_size)
        self.distance_range, self.distance_ref = (float(lo), float(hi)), float(distance_ref)
        self.identity_fraction, self.seed = float(identity_fraction), int(seed)
        ids = sorted({e[0] for e in self.entries})
        self._id_index = {k: i for i, k in enumerate(ids)}
        self._order = torch.randperm(len(self.entries), generator=torch.Generator().manual_seed(self.seed))

    def __len__(self) -> int:
        return self.length

    def draw_distance(self, g: torch.Generator) -> float:
        """The near distance of one item (identity pairs at ``distance_ref``)."""
        if float(torch.rand((), generator=g)) < self.identity_fraction:
            return self.distance_ref
        lo, hi = self.distance_range
        u = float(torch.rand((), generator=g))
        return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))

    def load(self, i: int) -> tuple[Tensor, Tensor]:
        """Entry ``i``'s photo ``(3, W, W)`` at ``work_size`` and its landmarks in dlib coordinates."""
        from PIL import Image

        _, path, lms = self.entries[i]
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            w0, h0 = rgb.size
            ws = self.work_size
            img = rgb.resize((ws, ws), Image.Resampling.LANCZOS) if (w0, h0) != (ws, ws) else rgb
            arr = np.asarray(img, dtype=np.float32) / 255.0
        sx, sy = ws / w0, ws / h0
        lm = torch.as_tensor(lms, dtype=torch.float64)
        lm = torch.stack([(lm[:, 0] + 0.5) * sx - 0.5, (lm[:, 1] + 0.5) * sy - 0.5], 1)
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), lm

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(f"RealPortraitPairs: index {index} out of range for length {self.length}")
        index = index % self.length
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        i = int(self._order[index % len(self.entries)])
        img, lm = self.load(i)
        fit = fit_head(self.heads, lm, pixel_center=0.0)
        d = self.draw_distance(g)
        pair = real_pair(
            img, fit, self.heads.faces, d, distance_ref=self.distance_ref, landmarks=self.heads.landmarks
        )
        s, ws = self.image_size, self.work_size
        item: dict[str, Any] = {
            "distorted": pair["distorted"],
            "corrected": pair["corrected"],
            "flow": pair["flow"],
            "valid": torch.ones(1, ws, ws),
            "head_valid": pair["valid"][None].float(),
            "holes": pair["holes"][None].float(),
            "mask": torch.ones(1, ws, ws),
            "mask_head": pair["mask"][None].float(),
            "mask_corrected": pair["mask_corrected"][None].float(),
            "distance": torch.tensor(d, dtype=torch.float32),
            "focal": torch.tensor(fit.scale * d, dtype=torch.float32),
            "identity": torch.tensor(self._id_index[self.entries[i][0]]),
            "fit_rms": torch.tensor(fit.rms, dtype=torch.float32),
            "landmarks_distorted": pair["landmarks_distorted"],
            "landmarks_corrected": pair["landmarks_corrected"],
        }
        if s != ws:
            r = s / ws
            for k in ("distorted", "corrected"):
                item[k] = F.interpolate(
                    item[k][None], size=(s, s), mode="bilinear", antialias=True, align_corners=False
                )[0]
            item["flow"] = (
                F.interpolate(
                    item["flow"][None], size=(s, s), mode="bilinear", antialias=True, align_corners=False
                )[0]
                * r
            )
            for k in ("valid", "head_valid", "holes", "mask", "mask_head", "mask_corrected"):
                item[k] = (F.interpolate(item[k][None], size=(s, s), mode="area")[0] > 0.5).float()
            for k in ("landmarks_distorted", "landmarks_corrected"):
                item[k] = item[k] * r
            item["focal"] = item["focal"] * r
        return item
