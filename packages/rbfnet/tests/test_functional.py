"""RBF kernels, distances and the RBF activation against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from rbfnet.functional import KERNELS, pairwise_sq_dist, rbf_activation, rbf_kernel


class TestRbfKernel:
    def test_reference_values(self, device, dtype):
        # Hand computation with r^2 = 4, sigma = 2 -> u = 1:
        # gaussian e^-1, laplacian e^-1, inverse_quadratic 1/2, inverse_multiquadric 1/sqrt(2), multiquadric sqrt(2).
        sq = torch.tensor([[4.0]], device=device, dtype=dtype)
        w = torch.tensor([2.0], device=device, dtype=dtype)
        expected = {
            "gaussian": math.exp(-1.0),
            "laplacian": math.exp(-1.0),
            "inverse_quadratic": 0.5,
            "inverse_multiquadric": 1.0 / math.sqrt(2.0),
            "multiquadric": math.sqrt(2.0),
        }
        for kernel, value in expected.items():
            out = rbf_kernel(sq, w, kernel)
            assert out.dtype == dtype and out.device.type == device.type
            assert out.item() == pytest.approx(value, rel=1e-6)

    def test_gaussian_uses_sigma_squared_without_factor_two(self, device):
        # r = 1, sigma = 1 -> exp(-1), not exp(-1/2).
        out = rbf_kernel(torch.ones(1, 1, device=device), torch.ones(1, device=device))
        assert out.item() == pytest.approx(math.exp(-1.0), rel=1e-6)

    def test_local_kernels_decay(self, device):
        sq = torch.linspace(0, 9, 10, device=device).unsqueeze(-1)
        w = torch.ones(1, device=device)
        for kernel in KERNELS:
            v = rbf_kernel(sq, w, kernel).squeeze(-1)
            diffs = v[1:] - v[:-1]
            if kernel == "multiquadric":
                assert bool((diffs > 0).all())
            else:
                assert v[0].item() == pytest.approx(1.0) and bool((diffs < 0).all())

    def test_errors(self, device):
        sq = torch.ones(2, 3, device=device)
        with pytest.raises(ValueError, match="rbf_kernel: 'kernel' must be one of"):
            rbf_kernel(sq, torch.ones(3, device=device), "cosine")
        with pytest.raises(ValueError, match=r"rbf_kernel: 'widths' must have shape \(M\) with M=3"):
            rbf_kernel(sq, torch.ones(4, device=device))
        with pytest.raises(ValueError, match="rbf_kernel: 'widths' must be > 0"):
            rbf_kernel(sq, torch.tensor([1.0, 0.0, 1.0], device=device))
        with pytest.raises(TypeError, match="rbf_kernel: 'sq_dist' must have a floating-point dtype"):
            rbf_kernel(torch.ones(2, 3, dtype=torch.long, device=device), torch.ones(3, device=device))


class TestPairwiseSqDist:
    def test_matches_explicit_differences(self, device, dtype):
        x = torch.randn(2, 7, 3, device=device, dtype=dtype)
        y = torch.randn(5, 3, device=device, dtype=dtype)
        ref = (x.unsqueeze(2) - y.view(1, 1, 5, 3)).square().sum(-1)  # direct (B, N, M, D) reference
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(pairwise_sq_dist(x, y), ref, atol=tol, rtol=tol)
        yb = torch.randn(2, 5, 3, device=device, dtype=dtype)
        refb = (x.unsqueeze(2) - yb.unsqueeze(1)).square().sum(-1)
        torch.testing.assert_close(pairwise_sq_dist(x, yb), refb, atol=tol, rtol=tol)

    def test_non_negative_at_coincident_points(self, device):
        x = torch.randn(1, 50, 3, device=device) * 1e3
        assert bool((pairwise_sq_dist(x, x[0]) >= 0).all())

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"pairwise_sq_dist: 'y' must have shape \(M, D\) with D=3"):
            pairwise_sq_dist(torch.zeros(1, 2, 3, device=device), torch.zeros(2, 2, device=device))


def _points(device, dtype, b=2, n=9, d=3):
    return torch.rand(b, n, d, device=device, dtype=dtype) * 2 - 1


class TestRbfActivation:
    def test_hand_computed(self, device, dtype):
        # Two points, two kernels. Point (0,0,0) vs centre (1,0,0), sigma 1: d^2 = 1 -> e^-1.
        # Point (0,0,2) vs centre (0,0,0), sigma 2: d^2 = 4, u = 1 -> e^-1; vs centre (1,0,0): d^2 = 5,
        # sigma 1 -> e^-5. Point (0,0,0) vs centre (0,0,0) -> 1.
        p = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]], device=device, dtype=dtype)
        c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], device=device, dtype=dtype)
        w = torch.tensor([1.0, 2.0], device=device, dtype=dtype)
        e = math.exp
        ref = torch.tensor([[[e(-1), 1.0], [e(-5), e(-1)]]], device=device, dtype=dtype)
        torch.testing.assert_close(rbf_activation(p, c, w), ref)
        torch.testing.assert_close(rbf_activation(p, c, w, aggregation="max"), ref.amax(1))
        torch.testing.assert_close(rbf_activation(p, c, w, aggregation="sum"), ref.sum(1))
        torch.testing.assert_close(rbf_activation(p, c, w, aggregation="mean"), ref.mean(1))

    @pytest.mark.parametrize("aggregation", ["max", "sum", "mean"])
    def test_chunked_equals_dense_values_and_grads(self, device, aggregation):
        dt = torch.float64
        p = _points(device, dt, n=23).requires_grad_(True)
        c = (torch.rand(6, 3, device=device, dtype=dt) * 2 - 1).requires_grad_(True)
        w = (torch.rand(6, device=device, dtype=dt) + 0.2).requires_grad_(True)
        dense = rbf_activation(p, c, w, aggregation=aggregation)
        g_dense = torch.autograd.grad(dense.square().sum(), (p, c, w))
        chunked = rbf_activation(p, c, w, aggregation=aggregation, chunk_size=5)
        g_chunk = torch.autograd.grad(chunked.square().sum(), (p, c, w))
        torch.testing.assert_close(chunked, dense)
        for a, b in zip(g_chunk, g_dense):
            torch.testing.assert_close(a, b)
        with torch.no_grad():
            torch.testing.assert_close(rbf_activation(p, c, w, aggregation=aggregation, chunk_size=4), dense)

    @pytest.mark.parametrize("kernel", KERNELS)
    @pytest.mark.parametrize("aggregation", [None, "max", "sum"])
    def test_gradcheck_centres_and_widths(self, device, kernel, aggregation):
        dt = torch.float64
        p = _points(device, dt, b=1, n=5)
        c = (torch.rand(3, 3, device=device, dtype=dt) * 2 - 1).requires_grad_(True)
        w = (torch.rand(3, device=device, dtype=dt) + 0.5).requires_grad_(True)

        def f(cc, ww):
            return rbf_activation(p, cc, ww, kernel=kernel, aggregation=aggregation, chunk_size=2)

        assert torch.autograd.gradcheck(f, (c, w))

    def test_centres_and_widths_receive_gradients(self, device):
        p = _points(device, torch.float32)
        c = torch.zeros(4, 3, device=device, requires_grad=True)
        w = torch.ones(4, device=device, requires_grad=True)
        rbf_activation(p, c, w).sum().backward()
        assert c.grad is not None and w.grad is not None
        assert float(c.grad.abs().sum()) > 0 and float(w.grad.abs().sum()) > 0

    def test_permutation_and_batch_independence(self, device):
        p = _points(device, torch.float64, b=3, n=11)
        c = torch.rand(5, 3, device=device, dtype=torch.float64)
        w = torch.full((5,), 0.4, device=device, dtype=torch.float64)
        perm = torch.randperm(11, device=device)
        for agg in ("max", "sum", "mean"):
            full = rbf_activation(p, c, w, aggregation=agg)
            torch.testing.assert_close(rbf_activation(p[:, perm], c, w, aggregation=agg), full)
            torch.testing.assert_close(rbf_activation(p[1:2], c, w, aggregation=agg), full[1:2])

    def test_bad_clouds_raise(self, device):
        c = torch.zeros(2, 3, device=device)
        w = torch.ones(2, device=device)
        nan = torch.zeros(1, 4, 3, device=device)
        nan[0, 1, 2] = float("nan")
        with pytest.raises(ValueError, match="rbf_activation: 'points' must be finite; got 1 NaN/inf"):
            rbf_activation(nan, c, w)
        with pytest.raises(ValueError, match="rbf_activation: 'points' must hold at least one point"):
            rbf_activation(torch.zeros(1, 0, 3, device=device), c, w)
        # issue 24: a dimension mismatch names the user's points, not the centres
        with pytest.raises(
            ValueError, match=r"rbf_activation: 'points' must have last dimension D=3 .*got \(1, 4, 2\)"
        ):
            rbf_activation(torch.zeros(1, 4, 2, device=device), c, w)
        with pytest.raises(ValueError, match=r"rbf_activation: 'points' must have shape \(B, N, D\)"):
            rbf_activation(torch.zeros(4, 3, device=device), c, w)
        with pytest.raises(TypeError, match=r"rbf_activation: 'points' must be a torch\.Tensor; got list"):
            rbf_activation([[0.0, 0.0, 0.0]], c, w)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="rbf_activation: 'aggregation' must be one of"):
            rbf_activation(torch.zeros(1, 4, 3, device=device), c, w, aggregation="min")
        with pytest.raises(ValueError, match="rbf_activation: 'chunk_size' must be >= 1; got 0"):
            rbf_activation(torch.zeros(1, 4, 3, device=device), c, w, aggregation="max", chunk_size=0)
        with pytest.raises(ValueError, match="rbf_activation: 'widths' must be > 0"):
            rbf_activation(torch.zeros(1, 4, 3, device=device), c, -w)

    def test_dtype_follows_points(self, device):
        p = _points(device, torch.float64)
        out = rbf_activation(p, torch.zeros(2, 3, device=device), torch.ones(2, device=device))
        assert out.dtype == torch.float64 and out.shape == (2, 9, 2)


@pytest.mark.parametrize("aggregation", ["max", "sum", "mean"])
def test_chunked_autograd_keeps_no_dense_tensor(device, aggregation):
    # Memory-aware path (issue: no dense B x N x M tensor for big clouds): with chunk_size, the tensors
    # autograd keeps for the backward pass hold at most B * chunk * M values, while the unchunked path
    # keeps at least one B * N * M tensor (checked too, so the probe itself can fail).
    b, n, m, chunk = 2, 400, 50, 40
    p = torch.rand(b, n, 3, device=device)
    c = torch.rand(m, 3, device=device, requires_grad=True)
    w = (torch.rand(m, device=device) + 0.3).requires_grad_(True)

    def largest_saved(chunk_size):
        sizes = [0]

        def pack(t):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = rbf_activation(p, c, w, aggregation=aggregation, chunk_size=chunk_size)
        out.sum().backward()
        return max(sizes)

    assert largest_saved(chunk) <= b * chunk * m
    assert largest_saved(None) >= b * n * m
