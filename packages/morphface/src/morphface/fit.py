"""Fitting the linear model to a mesh in correspondence, to sparse 3D landmarks or to 2D landmarks.

MAP objective (Gaussian noise of variance ``sigma^2`` on the target, standard-normal identity prior):

.. math:: E = \\sum_i \\|\\pi(s R v_i(\\alpha, \\beta) + t) - y_i\\|^2
             + \\lambda_{id} \\|\\alpha\\|^2 + \\lambda_{exp} \\|\\beta\\|^2, \\quad \\beta \\in [0, 1]^E

with ``pi`` the identity (3D targets) or a pinhole projection (2D targets); ``lambda_id = sigma^2``
makes it the exact MAP estimate. Started from a closed-form similarity initialisation (Umeyama) for 3D
targets or a centroid/scale initialisation for 2D targets, and minimised in stages by one of two solvers:
projected Levenberg-Marquardt with analytic Jacobians and an active set for the expression box (``solver="lm"``,
the default for landmark fits since it was validated on real photos, ``reproduce/fit_solver_validation.py``),
or L-BFGS with the expression weights projected onto the box between rounds (``solver="lbfgs"``, 0.4.0's
solver and the default for whole-mesh fits).
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ._checks import (
    check_finite,
    check_floating,
    check_index,
    check_int,
    check_positive,
    check_shape,
    check_tensor,
)
from ._utils import as_vertex_tensor
from .geometry import axis_angle_to_matrix, similarity_transform
from .models.linear import LinearFaceModel

logger = logging.getLogger(__name__)

__all__ = [
    "EXPRESSION_PRIOR_SCALE",
    "IBUG_CONTOUR_ROWS",
    "FitResult",
    "PerspectiveCamera",
    "contour_candidates",
    "fit",
    "project_points",
    "umeyama",
]

#: Default ``expression_prior_weight`` per unit of ``max(prior_weight, 1)``.
EXPRESSION_PRIOR_SCALE = 50.0
#: iBUG-68 jawline rows whose correspondence is dynamic (the chin, row 8, stays fixed).
IBUG_CONTOUR_ROWS = (*range(0, 8), *range(9, 17))


def _contour_rows(contour: Any, kind: str, n_points: int, default_ok: bool) -> torch.Tensor:
    fn = "fit"
    if contour is None:
        return torch.zeros(0, dtype=torch.long)
    if isinstance(contour, str):
        if contour != "auto":
            raise ValueError(f"{fn}: 'contour' must be 'auto', None or a sequence of rows; got {contour!r}")
        ok = default_ok and n_points == 68 and kind == "landmarks2d"
        return torch.tensor(IBUG_CONTOUR_ROWS if ok else (), dtype=torch.long)
    rows = torch.as_tensor(list(contour), dtype=torch.long)
    if rows.ndim != 1 or (rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n_points)):
        raise ValueError(f"{fn}: 'contour' rows must be in [0, {n_points - 1}]; got {rows.tolist()}")
    return rows


def contour_candidates(
    model: LinearFaceModel, indices: torch.Tensor, rows: torch.Tensor, *, n_candidates: int = 24
) -> torch.Tensor:
    """Candidate vertices for dynamic (contour) correspondences, one strip per contour row.

    For contour row ``r`` with landmark vertex ``v = indices[r]`` on the mean shape: the vertices of the
    face region (the ``uv_face_mask`` triangles, or all) at the height of ``v`` (within 4 % of the
    landmark set's height), on its side and no further forward than ``v``: the strip that the outline of
    the jaw sweeps across as the head turns. Up to ``n_candidates`` of them, evenly spread by distance
    from ``v``, with ``v`` itself first.

    Args:
        model: the model.
        indices: (L,) landmark vertex indices.
        rows: (R,) rows of ``indices`` that are contour points.
        n_candidates: strip size C.

    Returns:
        (R, C) long vertex indices (rows with fewer candidates repeat ``v``).
    """
    mean = model.mean
    if model.faces.numel():
        allowed = model.faces[model.uv_face_mask].unique()
    else:
        allowed = torch.arange(model.n_vertices, device=mean.device)
    pts = mean[allowed]
    lmk = mean[indices]
    cx = lmk[:, 0].mean()
    height = float(lmk[:, 1].max() - lmk[:, 1].min()) or 1.0
    out = torch.empty(rows.numel(), n_candidates, dtype=torch.long, device=mean.device)
    for i, r in enumerate(rows.tolist()):
        v = lmk[r]
        side = 1.0 if float(v[0] - cx) >= 0 else -1.0
        ok = (
            ((pts[:, 1] - v[1]).abs() < 0.04 * height)
            & ((pts[:, 0] - cx) * side >= (v[0] - cx) * side - 0.02 * height)
            & (pts[:, 2] <= v[2] + 0.02 * height)
        )
        cand = allowed[ok]
        row = torch.full((n_candidates,), int(indices[r]), dtype=torch.long, device=mean.device)
        if cand.numel():
            order = cand[(mean[cand] - v).norm(dim=-1).argsort()]
            pick = torch.linspace(0, order.numel() - 1, n_candidates - 1, device=mean.device).round().long()
            row[1:] = order[pick]
        out[i] = row
    return out


@dataclass
class PerspectiveCamera:
    """Pinhole camera at the origin looking down -z, y up (OpenGL eye space).

    Convention:
        A point ``(x, y, z)`` with ``z < 0`` projects to pixel ``u = cx + f x / (-z)``,
        ``v = cy - f y / (-z)`` (v grows downwards, origin at the top-left image corner).

    Attributes:
        focal: focal length in pixels.
        cx: principal point, horizontal pixel coordinate.
        cy: principal point, vertical pixel coordinate.
    """

    focal: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        fn = "PerspectiveCamera"
        for name in ("focal", "cx", "cy"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{fn}: '{name}' must be a number; got {type(value).__name__}")
        check_positive(self.focal, "focal", fn=fn)


def project_points(points: torch.Tensor, camera: PerspectiveCamera) -> torch.Tensor:
    """Project eye-space points to pixels (differentiable).

    Args:
        points: (..., 3) points with negative z.
        camera: the :class:`PerspectiveCamera`.

    Returns:
        (..., 2) pixel coordinates ``(u, v)``.

    Examples:
        >>> project_points(torch.tensor([1.0, 2.0, -10.0]), PerspectiveCamera(100.0, 64.0, 64.0)).tolist()
        [74.0, 44.0]
    """
    fn = "project_points"
    check_floating(points, "points", fn=fn)
    check_shape(points, "*,3", "points", fn=fn)
    depth = (-points[..., 2]).clamp_min(1e-6)
    u = camera.cx + camera.focal * points[..., 0] / depth
    v = camera.cy - camera.focal * points[..., 1] / depth
    return torch.stack([u, v], dim=-1)


def umeyama(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form least-squares similarity ``target ~ s R source + t`` (Umeyama 1991).

    Args:
        source: (B, N, 3) points.
        target: (B, N, 3) points.

    Returns:
        ``(rotation, translation, scale)``: (B, 3, 3), (B, 3), (B,).
    """
    fn = "umeyama"
    dims = check_shape(source, "B,N,3", "source", fn=fn)
    check_shape(target, "B,N,3", "target", fn=fn, dims=dims)
    mu_s, mu_t = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    xs, xt = source - mu_s, target - mu_t
    cov = xt.transpose(1, 2) @ xs / source.shape[1]
    u, sv, vh = torch.linalg.svd(cov)
    d = torch.ones_like(sv)
    d[:, 2] = torch.sign(torch.linalg.det(u @ vh))
    rot = u @ torch.diag_embed(d) @ vh
    var_s = xs.pow(2).sum((1, 2)) / source.shape[1]
    scale = (sv * d).sum(1) / var_s.clamp_min(1e-12)
    trans = mu_t[:, 0] - scale[:, None] * (rot @ mu_s[:, 0, :, None])[..., 0]
    return rot, trans, scale


def _matrix_to_axis_angle(r: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle vectors, angle in [0, pi].

    Through the unit quaternion by Shepperd's method (divide by the largest of the four candidate components),
    so it stays accurate near angle pi, where the skew-symmetric part of ``r`` vanishes.
    """
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    m01, m02, m10 = r[..., 0, 1], r[..., 0, 2], r[..., 1, 0]
    m12, m20, m21 = r[..., 1, 2], r[..., 2, 0], r[..., 2, 1]
    big = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    h = big.clamp_min(1e-12).sqrt() / 2  # (..., 4): |w|, |x|, |y|, |z| if that component is the largest
    d = 4 * h
    cands = torch.stack(
        [
            torch.stack(
                [h[..., 0], (m21 - m12) / d[..., 0], (m02 - m20) / d[..., 0], (m10 - m01) / d[..., 0]], -1
            ),
            torch.stack(
                [(m21 - m12) / d[..., 1], h[..., 1], (m01 + m10) / d[..., 1], (m02 + m20) / d[..., 1]], -1
            ),
            torch.stack(
                [(m02 - m20) / d[..., 2], (m01 + m10) / d[..., 2], h[..., 2], (m12 + m21) / d[..., 2]], -1
            ),
            torch.stack(
                [(m10 - m01) / d[..., 3], (m02 + m20) / d[..., 3], (m12 + m21) / d[..., 3], h[..., 3]], -1
            ),
        ],
        -2,
    )  # (..., 4 candidates, 4 quaternion components w, x, y, z)
    pick = big.argmax(-1)[..., None, None].expand(*big.shape[:-1], 1, 4)
    q = cands.gather(-2, pick)[..., 0, :]
    q = torch.where(q[..., :1] < 0, -q, q)  # w >= 0: angle in [0, pi]
    v = q[..., 1:]
    sin_half = v.norm(dim=-1)
    angle = 2 * torch.atan2(sin_half, q[..., 0])
    factor = torch.where(
        sin_half > 1e-12, angle / sin_half.clamp_min(1e-12), 2.0 / q[..., 0].clamp_min(1e-12)
    )
    return v * factor[..., None]


@dataclass
class FitResult:
    """Result of :func:`fit`.

    Attributes:
        identity: (B, K) identity coefficients.
        expression: (B, E) expression weights in [0, 1] (zeros when not fitted).
        rotation: (B, 3) axis-angle of the similarity transform (model frame -> target frame).
        translation: (B, 3) translation.
        scale: (B,) scale.
        vertices: (B, V, 3) the fitted mesh in the target's frame (eye space for 2D targets).
        residuals: (B, N) per-point Euclidean error (target units: length or pixels).
        loss: final objective value per sample, (B,).
        identity_loss: (B,) objective of the identity-only stage (expression weights zero), a feasible
            point of the joint problem: ``loss <= identity_loss`` always.
        correspondences: (B, N) model vertex matched to each target point (contour rows chosen per sample).
    """

    identity: torch.Tensor
    expression: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    vertices: torch.Tensor
    residuals: torch.Tensor
    loss: torch.Tensor
    identity_loss: torch.Tensor
    correspondences: torch.Tensor


def fit(
    model: LinearFaceModel,
    target: Any,
    *,
    kind: str = "auto",
    vertex_indices: torch.Tensor | None = None,
    camera: PerspectiveCamera | None = None,
    fit_expression: bool = True,
    fit_similarity: bool = True,
    prior_weight: float = 1.0,
    expression_prior_weight: float | None = None,
    expression_bound: float = 1.0,
    contour: Any = "auto",
    rounds: int = 10,
    iters_per_round: int = 20,
    init_distance: float | None = None,
    solver: str = "auto",
) -> FitResult:
    """Fit identity (and expression) coefficients and a similarity transform to a target, in stages.

    Stages: (1) rigid pose with the mean shape; (2) identity + pose (the identity-only solution, with
    contour correspondences re-chosen between rounds and then frozen); (3) bounded expression + identity +
    pose started from stage 2, keeping each sample's best iterate, so the joint objective is never above
    the identity-only one (``FitResult.loss <= FitResult.identity_loss``).

    Args:
        model: the :class:`~morphface.LinearFaceModel`.
        target: a mesh in correspondence ((V, 3) or (B, V, 3), or a ``trimesh.Trimesh``), 3D landmarks
            (B, L, 3) or 2D landmarks (B, L, 2) in pixels; unbatched inputs get B = 1.
        kind: ``"mesh"``, ``"landmarks3d"``, ``"landmarks2d"`` or ``"auto"`` (from the shape: last dim 2 ->
            2D landmarks; V points -> mesh; otherwise 3D landmarks).
        vertex_indices: (L,) model vertices matching the landmark rows (default: the model's landmarks),
            or a vertex subset for ``"mesh"`` fits.
        camera: :class:`PerspectiveCamera`, required for 2D landmarks.
        fit_expression: also fit expression weights (kept in [0, 1]).
        fit_similarity: also fit rotation, translation and scale (always on for 2D landmarks).
        prior_weight: weight of ``||alpha||^2``; set it to the target noise variance for the MAP estimate.
        expression_prior_weight: weight of ``||beta||^2``; default ``EXPRESSION_PRIOR_SCALE * max(prior_weight,
            1)``, set by hand; a validation sweep on real photos (``reproduce/expression_prior_validation.py``)
            prefers weaker priors for landmark error at the price of saturated blendshapes (README, Deviations).
        expression_bound: expression weights are kept in ``[0, expression_bound]`` (<= 1).
        contour: jawline rows of the target whose model vertex is re-chosen per sample, as eos does: among
            a strip of candidate vertices at that height running back from the landmark vertex, the one
            whose projection is nearest the target point (the outline of a turned face is not a fixed
            vertex). ``"auto"``: iBUG rows 0-7 and 9-16 for 68-point 2D fits with the model's landmarks;
            ``None``: fixed correspondences; or a sequence of row indices.
        rounds: rounds per stage (L-BFGS: expression weights are projected to the box after each; both
            solvers: contour correspondences are re-chosen after each identity round).
        iters_per_round: iterations per round (an upper bound for ``"lm"``).
        init_distance: for 2D fits, initial camera distance (default: from the landmark spread).
        solver: ``"lm"``: projected Levenberg-Marquardt (Gauss-Newton with analytic Jacobians, an
            active set for the expression box, float64 normal equations of size 7 + K + E); ``"lbfgs"``:
            L-BFGS with strong-Wolfe line search, expressions projected onto the box after each round (the
            0.4 solver); ``"auto"``: ``"lm"`` for landmark fits, ``"lbfgs"`` for whole-mesh fits (whose
            Jacobian would hold 3V x (7 + K + E) entries per sample). On 46 validation photos LM reached a
            lower objective and a lower held-out landmark error than L-BFGS at about 1/15 of the CPU time
            (``reports/morphface/fit_solver_validation.md``). Both minimise the same objective in
            the same stages; with ``"lm"``, ``iters_per_round`` bounds the iterations of a round, which
            ends early once the objective stops decreasing (relative change < 1e-10), and the contour
            rounds of stage 2 end once the correspondences stop changing.

    Returns:
        A :class:`FitResult`.

    Raises:
        TypeError: non-float target, a ``camera`` that is not a :class:`PerspectiveCamera`, non-integer
            ``vertex_indices``, ``rounds`` or ``iters_per_round``.
        ValueError: bad shapes, unknown ``kind``, a missing camera or landmarks, out-of-range
            ``vertex_indices``, ``rounds`` / ``iters_per_round`` < 1, negative prior weights, an
            ``expression_bound`` outside (0, 1], ``contour`` rows outside the target, or an unknown
            ``solver``.
    """
    fn = "fit"
    if not isinstance(model, LinearFaceModel):
        raise TypeError(f"{fn}: 'model' must be a LinearFaceModel; got {type(model).__name__}")
    y = as_vertex_tensor(target, fn=fn, name="target").to(model.mean.device)
    if y.ndim == 2:
        y = y.unsqueeze(0)
    if y.ndim != 3 or y.shape[-1] not in (2, 3):
        raise ValueError(f"{fn}: 'target' must have shape (B, N, 2) or (B, N, 3); got {tuple(y.shape)}")
    check_finite(y, "target", fn=fn)
    check_positive(prior_weight, "prior_weight", fn=fn, strict=False)
    if expression_prior_weight is None:
        expression_prior_weight = EXPRESSION_PRIOR_SCALE * max(float(prior_weight), 1.0)
    check_positive(expression_prior_weight, "expression_prior_weight", fn=fn, strict=False)
    if isinstance(expression_bound, bool) or not isinstance(expression_bound, numbers.Real):
        raise TypeError(f"{fn}: 'expression_bound' must be a number; got {type(expression_bound).__name__}")
    if not 0.0 < expression_bound <= 1.0:
        raise ValueError(f"{fn}: 'expression_bound' must be in (0, 1]; got {expression_bound}")
    check_int(rounds, "rounds", fn=fn)
    if solver not in ("auto", "lm", "lbfgs"):
        raise ValueError(f"{fn}: 'solver' must be 'auto', 'lm' or 'lbfgs'; got {solver!r}")
    check_int(iters_per_round, "iters_per_round", fn=fn)
    if camera is not None and not isinstance(camera, PerspectiveCamera):
        raise TypeError(f"{fn}: 'camera' must be a PerspectiveCamera or None; got {type(camera).__name__}")
    if init_distance is not None:
        check_positive(init_distance, "init_distance", fn=fn)
    if vertex_indices is not None:
        check_tensor(vertex_indices, "vertex_indices", fn=fn)
        if vertex_indices.is_floating_point() or vertex_indices.dtype == torch.bool:
            raise TypeError(f"{fn}: 'vertex_indices' must be an integer tensor; got {vertex_indices.dtype}")
        check_shape(vertex_indices, "L", "vertex_indices", fn=fn)
        check_index(vertex_indices, model.n_vertices, "vertex_indices", fn=fn)
    if kind == "auto":
        kind = (
            "landmarks2d"
            if y.shape[-1] == 2
            else ("mesh" if y.shape[1] == model.n_vertices else "landmarks3d")
        )
    if kind not in ("mesh", "landmarks3d", "landmarks2d"):
        raise ValueError(f"{fn}: 'kind' must be 'auto', 'mesh', 'landmarks3d' or 'landmarks2d'; got {kind!r}")
    want_dim = 2 if kind == "landmarks2d" else 3
    if y.shape[-1] != want_dim:
        raise ValueError(
            f"{fn}: kind={kind!r} needs a target with last dimension {want_dim}; got {tuple(y.shape)}"
        )
    if kind == "mesh":
        idx = vertex_indices if vertex_indices is not None else torch.arange(model.n_vertices)
        if y.shape[1] == model.n_vertices and vertex_indices is not None:
            y = y[:, vertex_indices.to(y.device)]
    else:
        idx = vertex_indices if vertex_indices is not None else model.landmark_indices
        if idx.numel() == 0:
            raise ValueError(
                f"{fn}: landmark fitting needs 'vertex_indices' or a model with landmarks; got none"
            )
    idx = idx.to(model.mean.device).long()
    if y.shape[1] != idx.numel():
        raise ValueError(
            f"{fn}: 'target' has {y.shape[1]} points but {idx.numel()} model vertices are matched "
            f"(kind={kind!r}); for a mesh the topology must be the model's ({model.n_vertices} vertices)"
        )
    if kind == "landmarks2d":
        if camera is None:
            raise ValueError(f"{fn}: 'camera' is required for 2D landmarks; got None")
        fit_similarity = True
    dtype = model.mean.dtype
    dev = model.mean.device
    y = y.to(device=dev, dtype=dtype)
    bsz = y.shape[0]
    n_e = model.n_expression if fit_expression else 0

    rows = _contour_rows(contour, kind, idx.numel(), vertex_indices is None and kind == "landmarks2d")
    cand = contour_candidates(model, idx, rows) if rows.numel() else None
    idx_b = idx.unsqueeze(0).expand(bsz, -1).clone()  # per-sample correspondences (contour rows move)

    mean_pts = model.mean[idx].unsqueeze(0).expand(bsz, -1, -1)
    rot0 = torch.zeros(bsz, 3, dtype=dtype, device=dev)
    trans0 = torch.zeros(bsz, 3, dtype=dtype, device=dev)
    logs0 = torch.zeros(bsz, 1, dtype=dtype, device=dev)
    rot_m0 = torch.eye(3, dtype=dtype, device=dev).expand(bsz, 3, 3)
    if fit_similarity and kind != "landmarks2d":
        r, t, s = umeyama(mean_pts, y)
        rot_m0 = r
        rot0, trans0, logs0 = _matrix_to_axis_angle(r), t, s.clamp_min(1e-6).log()[:, None]
    elif kind == "landmarks2d":
        assert camera is not None
        spread3 = (mean_pts[..., :2] - mean_pts[..., :2].mean(1, keepdim=True)).norm(dim=-1).mean(1)
        spread2 = (y - y.mean(1, keepdim=True)).norm(dim=-1).mean(1).clamp_min(1e-6)
        dist = (
            camera.focal * spread3 / spread2
            if init_distance is None
            else torch.full_like(spread2, init_distance)
        )
        c2 = y.mean(1)
        c3 = mean_pts.mean(1)
        trans0 = torch.stack(
            [
                (c2[:, 0] - camera.cx) * dist / camera.focal - c3[:, 0],
                -(c2[:, 1] - camera.cy) * dist / camera.focal - c3[:, 1],
                -dist - c3[:, 2],
            ],
            -1,
        )

    if solver == "auto":
        solver = "lbfgs" if kind == "mesh" else "lm"
    if solver == "lm":
        return _fit_lm(
            model,
            y,
            idx_b,
            rows,
            cand,
            camera if kind == "landmarks2d" else None,
            fit_similarity,
            float(prior_weight),
            float(expression_prior_weight),
            float(expression_bound),
            n_e,
            rounds,
            iters_per_round,
            (rot_m0, trans0, logs0),
            kind,
        )

    alpha = torch.zeros(bsz, model.n_identity, dtype=dtype, device=dev, requires_grad=True)
    beta = torch.zeros(bsz, n_e, dtype=dtype, device=dev, requires_grad=True)
    rot = rot0.clone().requires_grad_(fit_similarity)
    trans = trans0.clone().requires_grad_(fit_similarity)
    logs = logs0.clone().requires_grad_(fit_similarity)
    rigid = [rot, trans, logs] if fit_similarity else []
    bases: dict[str, torch.Tensor] = {}

    def gather_bases() -> None:
        bases["mean"] = model.mean[idx_b]  # (B, L, 3)
        bases["id"] = model.identity_basis[:, idx_b].permute(1, 0, 2, 3).flatten(2)  # (B, K, 3L)
        bases["ex"] = model.expression_basis[:, idx_b].permute(1, 0, 2, 3).flatten(2)  # (B, E, 3L)

    gather_bases()

    def points(a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        p = bases["mean"].flatten(1) + torch.einsum("bk,bkn->bn", a, bases["id"])
        if b is not None and n_e:
            p = p + torch.einsum("be,ben->bn", b, bases["ex"][:, : b.shape[1]])
        p = p.view(bsz, -1, 3)
        p = similarity_transform(p, rot, trans, logs.exp()) if fit_similarity else p
        return project_points(p, camera) if kind == "landmarks2d" and camera is not None else p

    def objective(use_beta: bool) -> torch.Tensor:
        b = beta if use_beta and n_e else None
        res = points(alpha, b) - y
        e = res.pow(2).sum((1, 2)) + prior_weight * alpha.pow(2).sum(1)
        if b is not None:
            e = e + expression_prior_weight * b.pow(2).sum(1)
        return e

    def make_opt(group: list[torch.Tensor]) -> torch.optim.LBFGS:
        return torch.optim.LBFGS(
            group,
            lr=1.0,
            max_iter=iters_per_round,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-10,
            tolerance_change=1e-14,
        )

    def update_contour() -> None:
        """eos-style contour: each jawline row takes the candidate vertex whose projection is nearest."""
        if cand is None:
            return
        with torch.no_grad():
            full = model.vertices(alpha, beta if n_e else None)  # (B, V, 3)
            c = full[:, cand.flatten()].view(bsz, cand.shape[0], cand.shape[1], 3)
            c = similarity_transform(c.flatten(1, 2), rot, trans, logs.exp()).view_as(c)
            c2 = project_points(c, camera) if kind == "landmarks2d" and camera is not None else c
            d = (c2 - y[:, rows, None, :]).norm(dim=-1)  # (B, R, C)
            best = d.argmin(-1)
            idx_b[:, rows] = cand[torch.arange(cand.shape[0], device=dev)[None], best]
        gather_bases()

    def run_stage(
        group: list[torch.Tensor],
        use_beta: bool,
        n_rounds: int,
        contour_each: bool,
        after_round: Callable[[], None] | None = None,
    ) -> None:
        """L-BFGS rounds on ``group``; reverts a round that turns the objective non-finite."""
        opt = make_opt(group)
        failures = 0
        for _ in range(n_rounds):
            saved = [p.detach().clone() for p in group]

            def closure(o: torch.optim.LBFGS = opt) -> torch.Tensor:
                o.zero_grad()
                loss = objective(use_beta).sum()
                loss.backward()
                return loss

            opt.step(closure)
            with torch.no_grad():
                if use_beta and n_e:
                    beta.clamp_(0.0, expression_bound)  # projection onto the box [0, bound]^E
                if not bool(torch.isfinite(objective(use_beta)).all()):
                    for p, v in zip(group, saved):
                        p.copy_(v)
                    failures += 1
                    if failures > 2:
                        logger.warning(
                            "fit: the objective kept turning non-finite; stopped at the last finite iterate"
                        )
                        return
                    opt = make_opt(group)
                    continue
            if contour_each and cand is not None:
                update_contour()
                opt = make_opt(group)  # the objective changed: fresh curvature history
            if after_round is not None:
                after_round()

    # stage 1: rigid pose with the mean shape (and contour correspondences for that pose)
    if fit_similarity:
        run_stage(rigid, False, 1, cand is not None)
    # stage 2: identity (+ pose); contour correspondences re-chosen between rounds, then frozen
    run_stage([alpha, *rigid], False, rounds, cand is not None)
    if cand is not None:
        update_contour()
        run_stage([alpha, *rigid], False, max(1, rounds // 3), False)
    with torch.no_grad():
        identity_loss = objective(False)
    # stage 3: expression (bounded, with its prior) + identity + pose, from the identity-only solution; each
    # sample keeps its best iterate, so the joint objective never exceeds the identity-only one (beta = 0 is
    # a feasible point of the same problem)
    if n_e:
        keep = [p.detach().clone() for p in (alpha, beta, *rigid)]
        best = identity_loss.clone()

        def track_best() -> None:
            nonlocal best
            with torch.no_grad():
                cur = objective(True)
                better = cur < best
                best = torch.where(better, cur, best)
                for k, p in zip(keep, (alpha, beta, *rigid)):
                    k[better] = p.detach()[better]

        run_stage([alpha, beta, *rigid], True, rounds, False, track_best)
        with torch.no_grad():
            for k, p in zip(keep, (alpha, beta, *rigid)):
                p.copy_(k)
    with torch.no_grad():
        loss = objective(True)
        res = (points(alpha, beta if n_e else None) - y).norm(dim=-1)
        expr = beta.detach().clone() if n_e else model.mean.new_zeros(bsz, model.n_expression)
        if n_e < model.n_expression:
            expr = model.mean.new_zeros(bsz, model.n_expression)
        verts = model.vertices(alpha.detach(), expr)
        if fit_similarity:
            verts = similarity_transform(verts, rot, trans, logs.exp())
    logger.info("fit (%s): mean residual %.4g over %d points", kind, float(res.mean()), res.shape[1])
    return FitResult(
        alpha.detach(),
        expr,
        rot.detach(),
        trans.detach(),
        logs.detach().exp()[:, 0],
        verts,
        res,
        loss,
        identity_loss,
        idx_b.clone(),
    )


def _neg_skew(q: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) matrices ``M`` with ``M d = d x q`` (the derivative of ``exp([d]x) q`` at 0)."""
    qx, qy, qz = q.unbind(-1)
    z = torch.zeros_like(qx)
    return torch.stack(
        [torch.stack([z, qz, -qy], -1), torch.stack([-qz, z, qx], -1), torch.stack([qy, -qx, z], -1)], -2
    )


def _fit_lm(
    model: LinearFaceModel,
    y: torch.Tensor,
    idx_b: torch.Tensor,
    rows: torch.Tensor,
    cand: torch.Tensor | None,
    camera: PerspectiveCamera | None,
    fit_similarity: bool,
    prior_weight: float,
    expression_prior_weight: float,
    expression_bound: float,
    n_e: int,
    rounds: int,
    iters_per_round: int,
    init: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    kind: str,
) -> FitResult:
    """The staged fit of :func:`fit` solved by projected Levenberg-Marquardt (``solver="lm"``).

    Per sample, the residual ``r`` (2L pixel or 3L length coordinates) of ``pi(s R x + t)``, with
    ``x = m + A alpha + E beta`` the (L, 3) landmark vertices, has the analytic Jacobian
    ``d pi / d p`` (2 x 3 per point, identity for 3D) times ``[d x q | I | q | s R A | s R E]`` for the
    rotation increment ``d`` (``R <- exp([d]x) R``, ``q = s R x``), translation, log-scale, identity and
    expression. Each iteration solves ``(J^T J + P + mu diag(J^T J + P)) delta = -(J^T r + P theta)``
    (``P``: the prior weights), with the expression weights that sit on a bound and whose gradient
    points outwards held fixed (active set), projects the new expression weights onto the box, and keeps
    the step only where the objective decreased (``mu`` shrinks on success, grows on failure). Only the
    landmark vertices' rows of the bases are used (gathered per sample, since contour rows move).

    Contour correspondences alternate with the continuous solve, each step lowering the objective; the
    alternation stops at a local optimum, which can differ from the one L-BFGS's path reaches (on 2 of 46
    validation photos LM's identity-only objective ended higher, on 44 lower:
    ``reports/morphface/fit_solver_validation.md``).
    """
    dtype, dev = model.mean.dtype, model.mean.device
    work = torch.float64 if dev.type != "mps" else dtype
    bsz, n_pts = y.shape[0], y.shape[1]
    n_k = model.n_identity
    yw = y.to(work)
    rot_m, trans, logs = (v.to(work).clone() for v in init)
    alpha = torch.zeros(bsz, n_k, dtype=work, device=dev)
    beta = torch.zeros(bsz, n_e, dtype=work, device=dev)
    eye3 = torch.eye(3, dtype=work, device=dev)
    bases: dict[str, torch.Tensor] = {}

    def gather() -> None:
        bases["m"] = model.mean[idx_b].to(work)  # (B, L, 3)
        bases["A"] = model.identity_basis[:, idx_b].permute(1, 2, 3, 0).to(work)  # (B, L, 3, K)
        if n_e:
            bases["E"] = model.expression_basis[:, idx_b].permute(1, 2, 3, 0).to(work)  # (B, L, 3, E)

    gather()
    if cand is not None:
        flat = cand.flatten()
        cand_m = model.mean[flat].to(work)  # (RC, 3)
        cand_a = model.identity_basis[:, flat].to(work)  # (K, RC, 3)
        cand_e = model.expression_basis[:, flat].to(work) if n_e else None

    def forward(
        a: torch.Tensor, b: torch.Tensor | None, rm: torch.Tensor, t: torch.Tensor, ls: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Objective (B,), residuals (B, L, d), q = s R x and p = q + t (B, L, 3)."""
        x = bases["m"] + torch.einsum("blck,bk->blc", bases["A"], a)
        if b is not None:
            x = x + torch.einsum("blce,be->blc", bases["E"], b)
        q = ls.exp()[:, :, None] * (x @ rm.transpose(1, 2))
        p = q + t[:, None, :]
        if camera is not None:
            depth = (-p[..., 2]).clamp_min(1e-6)
            u = camera.cx + camera.focal * p[..., 0] / depth
            v = camera.cy - camera.focal * p[..., 1] / depth
            res = torch.stack([u, v], -1) - yw
        else:
            res = p - yw
        e = res.pow(2).sum((1, 2)) + prior_weight * a.pow(2).sum(1)
        if b is not None:
            e = e + expression_prior_weight * b.pow(2).sum(1)
        return e, res, q, p

    def lm(use_a: bool, use_b: bool, max_iter: int) -> bool:
        """Up to ``max_iter`` LM iterations on the chosen groups; True when every sample converged."""
        nonlocal rot_m, trans, logs, alpha, beta
        b_now = beta if use_b else None
        e, res, q, p = forward(alpha, b_now, rot_m, trans, logs)
        damp = torch.full((bsz,), 1e-3, dtype=work, device=dev)
        done = torch.zeros(bsz, dtype=torch.bool, device=dev)
        for _ in range(max_iter):
            s = logs.exp()[:, :, None, None]
            cols: list[torch.Tensor] = []
            prior: list[torch.Tensor] = []
            theta: list[torch.Tensor] = []
            if fit_similarity:
                cols += [_neg_skew(q), eye3.expand(bsz, n_pts, 3, 3), q[..., None]]
                prior.append(torch.zeros(bsz, 7, dtype=work, device=dev))
                theta.append(torch.zeros(bsz, 7, dtype=work, device=dev))
            if use_a:
                cols.append(s * torch.einsum("bij,bljk->blik", rot_m, bases["A"]))
                prior.append(torch.full((bsz, n_k), prior_weight, dtype=work, device=dev))
                theta.append(alpha)
            if use_b:
                cols.append(s * torch.einsum("bij,blje->blie", rot_m, bases["E"]))
                prior.append(torch.full((bsz, n_e), expression_prior_weight, dtype=work, device=dev))
                theta.append(beta)
            jac = torch.cat(cols, -1)  # (B, L, 3, P)
            if camera is not None:
                depth = (-p[..., 2]).clamp_min(1e-6)
                f_d = camera.focal / depth
                zero = torch.zeros_like(f_d)
                proj = torch.stack(
                    [
                        torch.stack([f_d, zero, f_d * p[..., 0] / depth], -1),
                        torch.stack([zero, -f_d, -f_d * p[..., 1] / depth], -1),
                    ],
                    -2,
                )  # (B, L, 2, 3)
                jac = proj @ jac
            jac = jac.flatten(1, 2)  # (B, dL, P)
            pw = torch.cat(prior, 1)
            hess = jac.transpose(1, 2) @ jac + torch.diag_embed(pw)
            grad = (jac.transpose(1, 2) @ res.flatten(1)[..., None])[..., 0] + pw * torch.cat(theta, 1)
            if use_b:  # active set: weights on a bound whose gradient points out of the box stay there
                gb = grad[:, -n_e:]
                fixed = ((beta <= 0) & (gb > 0)) | ((beta >= expression_bound) & (gb < 0))
                free = torch.ones_like(grad, dtype=torch.bool)
                free[:, -n_e:] = ~fixed
                keep = (free[:, :, None] & free[:, None, :]).to(work)
                hess = hess * keep + torch.diag_embed((~free).to(work))
                grad = grad * free.to(work)
            diag = hess.diagonal(dim1=1, dim2=2)
            floor = 1e-9 * diag.amax(1, keepdim=True) + 1e-12
            damped = hess + torch.diag_embed(damp[:, None] * diag.clamp_min(0) + floor)
            step, info = torch.linalg.solve_ex(damped, -grad[..., None])
            step = step[..., 0]
            ok_solve = (info == 0) & torch.isfinite(step).all(1)
            step = torch.where(ok_solve[:, None], step, torch.zeros_like(step))
            i = 0
            rm2, t2, ls2, a2, b2 = rot_m, trans, logs, alpha, beta
            if fit_similarity:
                rm2 = axis_angle_to_matrix(step[:, 0:3]) @ rot_m
                t2 = trans + step[:, 3:6]
                ls2 = logs + step[:, 6:7]
                i = 7
            if use_a:
                a2 = alpha + step[:, i : i + n_k]
                i += n_k
            if use_b:
                b2 = (beta + step[:, i : i + n_e]).clamp(0.0, expression_bound)
            e2, res2, q2, p2 = forward(a2, b2 if use_b else None, rm2, t2, ls2)
            acc = ok_solve & torch.isfinite(e2) & (e2 < e) & ~done
            gain = (e - e2).clamp_min(0)
            a_ = acc[:, None]
            rot_m = torch.where(acc[:, None, None], rm2, rot_m)
            trans = torch.where(a_, t2, trans)
            logs = torch.where(a_, ls2, logs)
            alpha = torch.where(a_, a2, alpha)
            if use_b:
                beta = torch.where(a_, b2, beta)
            q = torch.where(acc[:, None, None], q2, q)
            p = torch.where(acc[:, None, None], p2, p)
            res = torch.where(acc[:, None, None], res2, res)
            e = torch.where(acc, e2, e)
            damp = torch.where(acc, (damp * 0.3).clamp_min(1e-9), damp * 10.0)
            done = done | (acc & (gain <= 1e-10 * e + 1e-14)) | (~acc & (damp > 1e8))
            if bool(done.all()):
                return True
        return False

    def update_contour() -> bool:
        """eos-style contour: each jawline row takes the candidate vertex whose projection is nearest;
        True when a correspondence changed."""
        if cand is None:
            return False
        pts = cand_m + torch.einsum("bk,kvc->bvc", alpha, cand_a)
        if n_e and cand_e is not None:
            pts = pts + torch.einsum("be,evc->bvc", beta, cand_e)
        pts = logs.exp()[:, :, None] * (pts @ rot_m.transpose(1, 2)) + trans[:, None, :]
        c = pts.view(bsz, cand.shape[0], cand.shape[1], 3)
        c2 = project_points(c, camera) if camera is not None else c
        best = (c2 - yw[:, rows, None, :]).norm(dim=-1).argmin(-1)  # (B, R)
        new = cand[torch.arange(cand.shape[0], device=dev)[None], best]
        changed = bool((idx_b[:, rows] != new).any())
        idx_b[:, rows] = new
        gather()
        return changed

    with torch.no_grad():
        # stage 1: rigid pose with the mean shape (and contour correspondences for that pose)
        if fit_similarity:
            lm(False, False, iters_per_round)
            update_contour()
        # stage 2: identity (+ pose); contour correspondences re-chosen between rounds until they settle
        for _ in range(rounds):
            converged = lm(True, False, iters_per_round)
            changed = update_contour()
            if converged and not changed:
                break
        if cand is not None:  # correspondences now frozen
            lm(True, False, max(1, rounds // 3) * iters_per_round)
        identity_loss = forward(alpha, None, rot_m, trans, logs)[0]
        # stage 3: bounded expression + identity + pose from the identity-only solution (beta = 0, a
        # feasible point); LM keeps only decreasing steps, so the joint objective ends <= identity_loss
        if n_e:
            lm(True, True, rounds * iters_per_round)
        loss, res, _, _ = forward(alpha, beta if n_e else None, rot_m, trans, logs)
        expr = model.mean.new_zeros(bsz, model.n_expression)
        if n_e == model.n_expression and n_e:
            expr = beta.to(dtype)
        scale = logs.exp()[:, 0]
        verts = model.vertices(alpha.to(dtype), expr if n_e else None)
        verts = (
            scale.to(dtype)[:, None, None] * (verts @ rot_m.to(dtype).transpose(1, 2))
            + trans.to(dtype)[:, None, :]
        )
    dist = res.norm(dim=-1).to(dtype)
    logger.info("fit (%s, lm): mean residual %.4g over %d points", kind, float(dist.mean()), dist.shape[1])
    return FitResult(
        alpha.to(dtype),
        expr,
        _matrix_to_axis_angle(rot_m).to(dtype),
        trans.to(dtype),
        scale.to(dtype),
        verts,
        dist,
        loss.to(dtype),
        identity_loss.to(dtype),
        idx_b.clone(),
    )
