"""The two solvers of :func:`morphface.fit`: projected Levenberg-Marquardt (``"lm"``) and L-BFGS (``"lbfgs"``).

Both minimise the same objective; these tests check LM against known answers, against L-BFGS, against the
first-order optimality (KKT) conditions of the box-constrained problem, and the objective each reports
against the objective recomputed from the returned parameters.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from mf_helpers import synthetic_model

from morphface import PerspectiveCamera, fit, project_points
from morphface.geometry import axis_angle_to_matrix, similarity_transform

SOLVERS = ("lm", "lbfgs")
fit_module = importlib.import_module("morphface.fit")  # the module (morphface.fit is the function)


def _objective(model, r, target, camera, prior_weight, expression_prior_weight, expression=True):
    """The MAP objective of ``fit`` recomputed from a FitResult's PARAMETERS (not its vertices)."""
    verts = model.vertices(r.identity, r.expression if expression else None)
    verts = similarity_transform(verts, r.rotation, r.translation, r.scale)
    pts = torch.stack([verts[i, r.correspondences[i]] for i in range(verts.shape[0])])
    if camera is not None:
        pts = project_points(pts, camera)
    e = (pts - target).pow(2).sum((1, 2)) + prior_weight * r.identity.pow(2).sum(1)
    if expression:
        e = e + expression_prior_weight * r.expression.pow(2).sum(1)
    return e


def _pose(n, device, dtype=torch.float64):
    rot = torch.tensor([[0.1, 0.25, -0.05]], dtype=dtype, device=device).expand(n, 3)
    return rot, torch.tensor([[0.5, -1.0, 2.0]], dtype=dtype, device=device).expand(n, 3)


def _camera() -> PerspectiveCamera:
    return PerspectiveCamera(focal=500.0, cx=64.0, cy=64.0)


def _camera_case(device, n=4, noise=0.3, seed=1, dtype=torch.float64):
    """2D landmarks of sampled faces (expressions partly outside the box) under a pinhole camera."""
    m, _ = synthetic_model(n_vertices=60, n_expression=4, dtype=dtype, device=device)
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 4, generator=g, dtype=dtype).to(device)
    b = (torch.rand(n, 4, generator=g, dtype=dtype) * 1.6 - 0.3).to(device)  # some < 0, some > 1
    rot, _ = _pose(n, device, dtype)
    trans = torch.tensor([[1.0, -2.0, -80.0]], dtype=dtype, device=device).expand(n, 3)
    pts = similarity_transform(
        m.landmarks(m.vertices(a, b)), rot, trans, torch.ones(n, dtype=dtype, device=device)
    )
    cam = _camera()
    uv = project_points(pts, cam)
    uv = uv + noise * torch.randn(uv.shape, generator=g, dtype=dtype).to(device)
    return m, uv, cam


class TestSolverArgument:
    def test_unknown_solver_is_named(self, device):
        m, _ = synthetic_model(device=device)
        lm = torch.zeros(15, 3, dtype=torch.float64, device=device)
        with pytest.raises(ValueError, match=r"fit: 'solver' must be 'auto', 'lm' or 'lbfgs'; got 'newton'"):
            fit(m, lm, solver="newton")
        with pytest.raises(ValueError, match=r"fit: 'solver' must be .*; got 'LM'"):
            fit(m, lm, solver="LM")

    def test_auto_picks_lm_for_landmarks_and_lbfgs_for_meshes(self, device, monkeypatch):
        m, _ = synthetic_model(device=device)
        calls = []
        real = fit_module._fit_lm

        def spy(*args, **kwargs):
            calls.append(args[-1])  # the kind
            return real(*args, **kwargs)

        monkeypatch.setattr(fit_module, "_fit_lm", spy)
        a = torch.randn(1, 4, dtype=torch.float64, device=device)
        fit(m, m.landmarks(m.vertices(a)), rounds=1)
        assert calls == ["landmarks3d"]
        fit(m, m.vertices(a), rounds=1)  # a whole mesh: L-BFGS, no LM call
        assert calls == ["landmarks3d"]
        fit(m, m.vertices(a), rounds=1, solver="lm")  # asked for explicitly: LM on the mesh too
        assert calls == ["landmarks3d", "mesh"]
        fit(m, m.landmarks(m.vertices(a)), rounds=1, solver="lbfgs")
        assert calls == ["landmarks3d", "mesh"]


class TestLevenbergMarquardt:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
    def test_recovers_known_answer_3d(self, device, dtype):
        """Noise-free 3D landmarks, no priors: the exact pose, identity and in-box expression come back."""
        m, _ = synthetic_model(dtype=dtype, device=device)
        g = torch.Generator().manual_seed(3)
        a = torch.randn(3, 4, generator=g, dtype=dtype).to(device)
        b = (0.1 + 0.8 * torch.rand(3, 2, generator=g, dtype=dtype)).to(device)  # strictly inside the box
        rot, trans = _pose(3, device, dtype)
        scale = torch.tensor([1.3, 0.8, 1.0], dtype=dtype, device=device)
        target = similarity_transform(m.landmarks(m.vertices(a, b)), rot, trans, scale)
        r = fit(m, target, prior_weight=0.0, expression_prior_weight=0.0, solver="lm")
        tol = 1e-4 if dtype == torch.float32 else 1e-7
        assert r.identity.dtype == dtype and r.expression.dtype == dtype
        torch.testing.assert_close(r.identity, a, atol=tol, rtol=0)
        torch.testing.assert_close(r.expression, b, atol=tol, rtol=0)
        torch.testing.assert_close(r.scale, scale, atol=tol, rtol=0)
        torch.testing.assert_close(r.rotation, rot, atol=tol, rtol=0)
        torch.testing.assert_close(r.translation, trans, atol=10 * tol, rtol=0)
        assert float(r.residuals.max()) < 10 * tol

    def test_recovers_known_answer_2d(self, device):
        """Noise-free 2D landmarks of neutral faces under perspective, no priors: ~0 px reprojection error and
        the identity coefficients come back."""
        m, _ = synthetic_model(n_vertices=60, n_expression=4, device=device)
        g = torch.Generator().manual_seed(5)
        a = torch.randn(2, 4, generator=g, dtype=torch.float64).to(device)
        rot, _ = _pose(2, device)
        trans = torch.tensor([[1.0, -2.0, -80.0]], dtype=torch.float64, device=device).expand(2, 3)
        ones = torch.ones(2, dtype=torch.float64, device=device)
        uv = project_points(similarity_transform(m.landmarks(m.vertices(a)), rot, trans, ones), _camera())
        r = fit(m, uv, camera=_camera(), fit_expression=False, prior_weight=0.0, solver="lm")
        assert float(r.residuals.max()) < 1e-6  # pixels
        torch.testing.assert_close(r.identity, a, atol=1e-4, rtol=0)

    def test_identity_only_objective_not_above_lbfgs_with_unmodelled_expressions(self, device):
        """Landmarks of faces WITH expressions fitted identity-only (no exact answer): LM's objective is at
        most that of a long L-BFGS run."""
        m, uv, cam = _camera_case(device, noise=0.0)
        r = fit(m, uv, camera=cam, fit_expression=False, prior_weight=0.0, solver="lm")
        ref = fit(m, uv, camera=cam, fit_expression=False, prior_weight=0.0, solver="lbfgs", rounds=40)
        assert torch.all(r.loss <= ref.loss * (1 + 1e-6) + 1e-9), (r.loss, ref.loss)

    @pytest.mark.parametrize("solver", SOLVERS)
    def test_reported_objective_is_the_objective_of_the_returned_parameters(self, device, solver):
        m, uv, cam = _camera_case(device)
        r = fit(m, uv, camera=cam, prior_weight=0.5, expression_prior_weight=2.0, solver=solver)
        torch.testing.assert_close(r.loss, _objective(m, r, uv, cam, 0.5, 2.0), rtol=1e-8, atol=1e-8)
        # the returned vertices are the returned parameters' mesh
        verts = similarity_transform(m.vertices(r.identity, r.expression), r.rotation, r.translation, r.scale)
        torch.testing.assert_close(r.vertices, verts, rtol=1e-8, atol=1e-8)

    def test_lm_objective_not_above_lbfgs(self, device):
        """Same problem, same objective: LM must get at least as low as L-BFGS (tight tolerance)."""
        m, uv, cam = _camera_case(device, n=6)
        for fit_expression in (False, True):
            kw = {
                "camera": cam,
                "prior_weight": 0.5,
                "expression_prior_weight": 2.0,
                "fit_expression": fit_expression,
            }
            lm = fit(m, uv, solver="lm", **kw)
            bf = fit(m, uv, solver="lbfgs", rounds=30, **kw)
            assert torch.all(lm.loss <= bf.loss * (1 + 1e-6) + 1e-9), (fit_expression, lm.loss, bf.loss)
            # and the joint fit is never above the identity-only solution (a feasible point)
            assert torch.all(lm.loss <= lm.identity_loss)

    @pytest.mark.parametrize("bound", [1.0, 0.4])
    def test_first_order_optimality_with_active_box(self, device, bound):
        """KKT conditions of the box-constrained problem at LM's answer (fixed correspondences, 3D, noisy):
        zero gradient in identity and pose; in the expression weights zero gradient inside the box,
        gradient >= 0 at 0 and <= 0 at the bound; the box holds. Tolerance 1e-3 on gradients that are O(10)
        at the active bounds (and O(10-100) at the start); 0.4's L-BFGS ends with gradients of 1-40 here."""
        m, _ = synthetic_model(n_vertices=40, n_expression=4, device=device)
        g = torch.Generator().manual_seed(7)
        a = torch.randn(5, 4, generator=g, dtype=torch.float64).to(device)
        b = torch.tensor([[-0.6, 0.2, 0.9, 1.5]], dtype=torch.float64, device=device).expand(5, 4)
        rot, trans = _pose(5, device)
        target = similarity_transform(
            m.landmarks(m.vertices(a, b)), rot, trans, torch.ones(5, dtype=torch.float64)
        )
        target = target + 0.05 * torch.randn(target.shape, generator=g, dtype=torch.float64).to(device)
        r = fit(m, target, prior_weight=0.1, expression_prior_weight=0.5, expression_bound=bound, solver="lm")
        assert float(r.expression.min()) >= 0.0 and float(r.expression.max()) <= bound
        # both bounds are active somewhere (the test would not exercise the active set otherwise)
        assert bool((r.expression == 0).any()) and bool((r.expression == bound).any())
        alpha = r.identity.clone().requires_grad_(True)
        beta = r.expression.clone().requires_grad_(True)
        rv = r.rotation.clone().requires_grad_(True)
        t = r.translation.clone().requires_grad_(True)
        ls = r.scale.log().clone().requires_grad_(True)
        verts = similarity_transform(m.landmarks(m.vertices(alpha, beta)), rv, t, ls.exp())
        e = (verts - target).pow(2).sum() + 0.1 * alpha.pow(2).sum() + 0.5 * beta.pow(2).sum()
        e.backward()
        for gr in (alpha.grad, rv.grad, t.grad, ls.grad):
            assert float(gr.abs().max()) < 1e-3, gr
        gb = beta.grad
        inside = (r.expression > 1e-9) & (r.expression < bound - 1e-9)
        assert inside.any()
        assert float(gb[inside].abs().max()) < 1e-3
        assert float(gb[r.expression == 0].min()) > 1.0  # would decrease only by leaving the box
        assert float(gb[r.expression == bound].max()) < -1.0

    def test_contour_rows_take_a_candidate_vertex(self, device):
        """With dynamic rows, LM's correspondences for those rows come from each row's candidate strip and
        the fixed rows keep their landmark vertex."""
        m, uv, cam = _camera_case(device)
        rows = [0, 1, 2, 3]
        r = fit(m, uv, camera=cam, contour=rows, solver="lm")
        cand = fit_module.contour_candidates(m, m.landmark_indices.to(device), torch.tensor(rows))
        for i in range(uv.shape[0]):
            for j, row in enumerate(rows):
                assert int(r.correspondences[i, row]) in cand[j].tolist()
            torch.testing.assert_close(r.correspondences[i, 4:], m.landmark_indices[4:].to(device))
        assert torch.all(r.loss <= r.identity_loss)


class TestRotationOutput:
    def test_matrix_to_axis_angle_round_trip_including_angle_pi(self, device):
        g = torch.Generator().manual_seed(11)
        axes = torch.randn(64, 3, generator=g, dtype=torch.float64)
        axes = axes / axes.norm(dim=-1, keepdim=True)
        angles = torch.cat(
            [
                torch.rand(56, generator=g, dtype=torch.float64) * math.pi,
                torch.tensor([0.0, 1e-9, 1e-4, math.pi - 1e-4, math.pi - 1e-9, math.pi, math.pi, math.pi]),
            ]
        )
        rv = (axes * angles[:, None]).to(device)
        mat = axis_angle_to_matrix(rv)
        back = fit_module._matrix_to_axis_angle(mat)
        torch.testing.assert_close(axis_angle_to_matrix(back), mat, atol=1e-9, rtol=0)
        assert float(back.norm(dim=-1).max()) <= math.pi + 1e-9
        # away from pi the axis-angle itself comes back (at pi, v and -v are the same rotation)
        torch.testing.assert_close(back[:56], rv[:56], atol=1e-7, rtol=0)

    @pytest.mark.parametrize("solver", SOLVERS)
    def test_returned_pose_reproduces_the_vertices_at_half_a_turn(self, device, solver):
        """A target turned by exactly pi: the FitResult's rotation must still be the fitted one."""
        m, _ = synthetic_model(device=device)
        a = torch.randn(2, 4, dtype=torch.float64, device=device)
        rv = torch.tensor([[0.0, math.pi, 0.0], [math.pi * 0.6, 0.0, math.pi * 0.8]], dtype=torch.float64)
        rv = rv.to(device)
        zeros, ones = (
            torch.zeros(2, 3, dtype=torch.float64, device=device),
            torch.ones(2, dtype=torch.float64),
        )
        target = similarity_transform(m.landmarks(m.vertices(a)), rv, zeros, ones.to(device))
        r = fit(m, target, fit_expression=False, prior_weight=0.0, solver=solver)
        assert float(r.residuals.max()) < 1e-5
        verts = similarity_transform(m.vertices(r.identity), r.rotation, r.translation, r.scale)
        torch.testing.assert_close(r.vertices, verts, atol=1e-8, rtol=0)
