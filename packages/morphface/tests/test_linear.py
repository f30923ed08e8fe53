"""LinearFaceModel: decoding, PCA build, projection, sampling, persistence, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from mf_helpers import synthetic_model

from morphface import LinearFaceModel


class TestLinearFaceModel:
    def test_vertices_formula(self, device, dtype):
        m, _ = synthetic_model(device=device, dtype=dtype)
        a = torch.randn(3, 4, device=device, dtype=dtype)
        b = torch.rand(3, 2, device=device, dtype=dtype)
        # reference: the explicit sum of the ICT loader, V = mean + sum a_k U_k + sum b_j E_j
        ref = (
            m.mean
            + torch.einsum("bk,kvc->bvc", a, m.identity_basis)
            + torch.einsum("bj,jvc->bvc", b, m.expression_basis)
        )
        out = m.vertices(a, b)
        assert out.shape == (3, 30, 3) and out.dtype == dtype and out.device.type == device.type
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(m.vertices(), m.mean[None])
        torch.testing.assert_close(m(a, b), out)
        # expression only: identity defaults to zeros with the expression's batch size
        torch.testing.assert_close(m.vertices(expression=b), m.vertices(torch.zeros_like(a), b))
        # identity only (no expression product, 0.4.0): the neutral face of the explicit sum
        ref_neutral = m.mean + torch.einsum("bk,kvc->bvc", a, m.identity_basis)
        torch.testing.assert_close(m.vertices(a), ref_neutral)
        torch.testing.assert_close(m.vertices(a), m.vertices(a, torch.zeros_like(b)))

    def test_gradcheck(self, device):
        m, _ = synthetic_model(device=device)
        a = torch.randn(2, 4, device=device, dtype=torch.float64, requires_grad=True)
        b = torch.rand(2, 2, device=device, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, y: m.vertices(x, y), (a, b))

    def test_project_inverts_vertices(self, device, dtype):
        m, _ = synthetic_model(device=device, dtype=dtype)
        a = torch.randn(5, 4, device=device, dtype=dtype)
        b = torch.rand(5, 2, device=device, dtype=dtype)
        ia, ib = m.project(m.vertices(a, b), with_expression=True)
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        torch.testing.assert_close(ia, a, atol=tol, rtol=tol)
        torch.testing.assert_close(ib, b, atol=tol, rtol=tol)
        ia, ib = m.project(m.vertices(a))
        torch.testing.assert_close(ia, a, atol=tol, rtol=tol)
        assert torch.equal(ib, torch.zeros_like(ib))

    def test_project_ridge_shrinks(self, device):
        m, _ = synthetic_model(device=device)
        a = torch.randn(1, 4, device=device, dtype=torch.float64)
        # orthogonal basis with squared norms std^2: ridge solution = a * std^2 / (std^2 + lambda)
        _, std = synthetic_model(device=device)
        ia, _ = m.project(m.vertices(a), prior_weight=1.0)
        torch.testing.assert_close(ia, a * std.to(device) ** 2 / (std.to(device) ** 2 + 1.0))

    def test_build_recovers_known_basis(self, device):
        m, std = synthetic_model(n_vertices=40, n_identity=3, device=device)
        # data exactly whitened in the span: coefficients with identity covariance and zero mean
        n = 60
        g = torch.Generator().manual_seed(1)
        c = torch.randn(n, 3, generator=g, dtype=torch.float64)
        c = c - c.mean(0)
        c = c @ torch.linalg.inv(torch.linalg.cholesky(c.T @ c / (n - 1))).T  # sample covariance == I
        data = m.vertices(c.to(device))
        built = LinearFaceModel.build(data, 3)
        torch.testing.assert_close(built.mean, m.mean, atol=1e-9, rtol=0)
        torch.testing.assert_close(built.identity_variance.cpu(), std**2, atol=1e-8, rtol=1e-8)
        # same modes up to sign
        for k in range(3):
            u, w = built.identity_basis[k].flatten(), m.identity_basis[k].flatten()
            assert torch.allclose(u, w, atol=1e-8) or torch.allclose(u, -w, atol=1e-8)

    def test_build_from_trimesh(self):
        base = trimesh.creation.icosphere(subdivisions=1)
        meshes = [trimesh.Trimesh(base.vertices * (1 + 0.1 * i), base.faces, process=False) for i in range(5)]
        m = LinearFaceModel.build(meshes, 2)
        assert m.n_vertices == len(base.vertices) and m.faces.shape == (len(base.faces), 3)
        assert m.n_identity == 2

    def test_sample_generator_reproducible(self, device):
        m, _ = synthetic_model(device=device)
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        if device.type == "cuda":
            g1, g2 = torch.Generator(device).manual_seed(3), torch.Generator(device).manual_seed(3)
        s1, s2 = m.sample(7, generator=g1), m.sample(7, generator=g2)
        assert torch.equal(s1, s2) and s1.shape == (7, 4) and s1.device.type == device.type
        assert float(m.sample(1000, truncation=1.0).abs().max()) <= 1.0

    @pytest.mark.parametrize("ext", [".npz", ".safetensors"])
    def test_save_load_roundtrip(self, tmp_path, ext, device):
        m, _ = synthetic_model(device=device)
        p = tmp_path / f"model{ext}"
        m.save(p)
        m2 = LinearFaceModel.load(p, device=device)
        for k, v in m.state_dict().items():
            assert torch.equal(v, m2.state_dict()[k]), k
        assert m2.expression_names == m.expression_names
        assert not list(tmp_path.glob(".tmp-*"))  # atomic write left no temp file

    def test_state_dict_roundtrip(self, device):
        m, _ = synthetic_model(device=device)
        m2, _ = synthetic_model(seed=5, device=device)
        m2.load_state_dict(m.state_dict())
        a = torch.randn(2, 4, device=device, dtype=torch.float64)
        torch.testing.assert_close(m2.vertices(a), m.vertices(a))

    def test_errors(self, device, tmp_path):
        m, _ = synthetic_model(device=device)
        with pytest.raises(ValueError, match=r"LinearFaceModel.vertices: 'identity' must have shape"):
            m.vertices(torch.zeros(1, 5, device=device, dtype=torch.float64))
        with pytest.raises(TypeError, match=r"'identity' must have a floating-point dtype"):
            m.vertices(torch.zeros(1, 4, dtype=torch.long, device=device))
        with pytest.raises(ValueError, match=r"LinearFaceModel.project: 'mesh' must have 30 vertices"):
            m.project(np.zeros((31, 3)))
        with pytest.raises(ValueError, match=r"'mesh' must be finite"):
            m.project(torch.full((30, 3), float("nan")))
        with pytest.raises(TypeError, match=r"LinearFaceModel.project: 'mesh' must be a trimesh"):
            m.project([1, 2, 3])
        with pytest.raises(ValueError, match=r"LinearFaceModel.build: all meshes must share one topology"):
            LinearFaceModel.build([np.zeros((4, 3)), np.zeros((5, 3)), np.zeros((4, 3))], 1)
        with pytest.raises(ValueError, match=r"'n_components' must be an int in \[1, 2\]"):
            LinearFaceModel.build(np.random.default_rng(0).random((3, 4, 3)), 3)
        with pytest.raises(ValueError, match=r"LinearFaceModel: 'faces' must index vertices"):
            LinearFaceModel(torch.zeros(3, 3), torch.zeros(1, 3, 3), faces=torch.tensor([[0, 1, 5]]))
        with pytest.raises(
            ValueError, match=r"LinearFaceModel.save: 'path' must end in .npz or .safetensors"
        ):
            m.save(tmp_path / "x.pt")
        with pytest.raises(ValueError, match=r"'n' must be a positive int"):
            m.sample(0)
        with pytest.raises(TypeError, match=r"LinearFaceModel.sample: 'generator' must be a torch.Generator"):
            m.sample(2, generator=3)
