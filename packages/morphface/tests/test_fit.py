"""Fitting to meshes, 3D landmarks and 2D landmarks."""

from __future__ import annotations

import math

import pytest
import torch
from mf_helpers import synthetic_model

from morphface import PerspectiveCamera, fit, project_points
from morphface.fit import umeyama
from morphface.geometry import axis_angle_to_matrix, similarity_transform


class TestFit:
    def test_umeyama_exact(self, device):
        x = torch.randn(2, 10, 3, dtype=torch.float64, device=device)
        rv = torch.tensor([[0.3, -0.2, 0.5], [0.0, 1.0, 0.1]], dtype=torch.float64, device=device)
        t = torch.randn(2, 3, dtype=torch.float64, device=device)
        s = torch.tensor([1.5, 0.7], dtype=torch.float64, device=device)
        y = similarity_transform(x, rv, t, s)
        r, t2, s2 = umeyama(x, y)
        torch.testing.assert_close(r, axis_angle_to_matrix(rv))
        torch.testing.assert_close(t2, t)
        torch.testing.assert_close(s2, s)

    def test_mesh_recovers_coefficients(self, device):
        m, _ = synthetic_model(device=device)
        a = torch.randn(2, 4, dtype=torch.float64, device=device)
        b = torch.rand(2, 2, dtype=torch.float64, device=device)
        target = similarity_transform(
            m.vertices(a, b),
            torch.tensor([[0.1, 0.2, 0.3]] * 2, dtype=torch.float64, device=device),
            torch.ones(2, 3, dtype=torch.float64, device=device),
            torch.full((2,), 1.2, dtype=torch.float64, device=device),
        )
        r = fit(m, target, prior_weight=0.0, expression_prior_weight=0.0)
        torch.testing.assert_close(r.identity, a, atol=1e-5, rtol=0)
        torch.testing.assert_close(r.expression, b, atol=1e-5, rtol=0)
        torch.testing.assert_close(
            r.scale, torch.full((2,), 1.2, dtype=torch.float64, device=device), atol=1e-6, rtol=0
        )
        assert float(r.residuals.max()) < 1e-5

    def test_noisy_3d_landmarks(self, device):
        # 15 landmarks x 3 = 45 observations for 4 identity modes; noise sigma = 0.05 (units of the model,
        # whose modes have std 3..0.5): stated error bound 0.15 on every coefficient (about 3 sigma of the
        # least-squares estimate, sigma / ||mode restricted to landmarks|| ~ 0.05 / 0.5 / sqrt(0.5)).
        m, _ = synthetic_model(device=device)
        a = torch.randn(8, 4, dtype=torch.float64, device=device)
        lm = m.landmarks(m.vertices(a))
        noisy = lm + 0.05 * torch.randn_like(lm)
        r = fit(m, noisy, fit_expression=False, fit_similarity=False, prior_weight=0.05**2)
        assert float((r.identity - a).abs().max()) < 0.15
        assert r.residuals.shape == (8, 15)

    def test_2d_landmarks_perspective(self, device):
        m, _ = synthetic_model(n_vertices=60, device=device)
        cam = PerspectiveCamera(focal=500.0, cx=64.0, cy=64.0)
        a = torch.randn(4, 4, dtype=torch.float64, device=device)
        rot = torch.tensor([[0.05, 0.3, 0.0]] * 4, dtype=torch.float64, device=device)
        trans = torch.tensor([[1.0, -2.0, -80.0]] * 4, dtype=torch.float64, device=device)
        pts = similarity_transform(
            m.landmarks(m.vertices(a)), rot, trans, torch.ones(4, dtype=torch.float64, device=device)
        )
        uv = project_points(pts, cam)
        r = fit(
            m, uv + 0.1 * torch.randn_like(uv), camera=cam, fit_expression=False, prior_weight=0.01, rounds=20
        )
        assert float(r.residuals.mean()) < 0.3  # pixels; noise is 0.1 px per axis
        # mesh error after fit, in model units, far below the prior's spread (mode stds 3..0.5)
        err = (r.identity - a).abs().mean()
        assert float(err) < 0.5

    def test_errors(self, device):
        m, _ = synthetic_model(device=device)
        with pytest.raises(ValueError, match="fit: 'camera' is required for 2D landmarks"):
            fit(m, torch.zeros(15, 2, dtype=torch.float64, device=device))
        with pytest.raises(ValueError, match="fit: 'target' has 7 points but 15 model vertices"):
            fit(m, torch.zeros(7, 3, dtype=torch.float64, device=device))
        with pytest.raises(ValueError, match="fit: 'kind' must be"):
            fit(m, torch.zeros(15, 3, dtype=torch.float64, device=device), kind="image")
        with pytest.raises(ValueError, match=r"fit: 'target' must have shape \(B, N, 2\) or \(B, N, 3\)"):
            fit(m, torch.zeros(2, 3, 4, 5, dtype=torch.float64, device=device))
        with pytest.raises(TypeError, match="fit: 'model' must be a LinearFaceModel"):
            fit("model", torch.zeros(15, 3))
        lm = torch.zeros(15, 3, dtype=torch.float64, device=device)
        with pytest.raises(ValueError, match="fit: 'rounds' must be >= 1; got 0"):
            fit(m, lm, rounds=0)
        with pytest.raises(TypeError, match="fit: 'iters_per_round' must be an int; got float"):
            fit(m, lm, iters_per_round=2.5)
        with pytest.raises(TypeError, match="fit: 'camera' must be a PerspectiveCamera or None; got dict"):
            fit(m, lm[:, :2], camera={"focal": 1.0})
        with pytest.raises(TypeError, match=r"fit: 'vertex_indices' must be a torch\.Tensor; got list"):
            fit(m, lm, vertex_indices=list(range(15)))
        with pytest.raises(ValueError, match=r"fit: 'vertex_indices' must index the 30 vertices \(0 .. 29\)"):
            fit(m, lm, vertex_indices=torch.arange(15, device=device) + 20)
        with pytest.raises(ValueError, match="PerspectiveCamera: 'focal' must be > 0"):
            PerspectiveCamera(focal=0.0, cx=1.0, cy=1.0)
        with pytest.raises(TypeError, match="PerspectiveCamera: 'cx' must be a number; got str"):
            PerspectiveCamera(focal=1.0, cx="1", cy=1.0)

    def test_axis_angle_reference(self, device):
        # 90 degrees about z maps x to y (hand computed)
        r = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64, device=device))
        torch.testing.assert_close(
            r @ torch.tensor([1.0, 0, 0], dtype=torch.float64, device=device),
            torch.tensor([0.0, 1.0, 0], dtype=torch.float64, device=device),
        )
        x = torch.randn(2, 3, dtype=torch.float64, device=device, requires_grad=True)
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (x,))
