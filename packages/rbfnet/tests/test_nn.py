"""RBFLayer: module == functional, initialisations, parameters, state_dict."""

from __future__ import annotations

import math

import pytest
import torch

from rbfnet import RBFLayer, init_centers, rbf_activation


class TestInitCenters:
    def test_grid_is_regular_and_deterministic(self, device):
        # 27 kernels in 3-D: ceil(27^(1/3)) = 3 nodes per axis in {-1, 0, 1}: the full 3x3x3 grid.
        c = init_centers(27, 3, "grid", device=device)
        assert c.shape == (27, 3)
        assert sorted(set(c.flatten().tolist())) == [-1.0, 0.0, 1.0]
        assert len({tuple(r) for r in c.tolist()}) == 27
        # 20 kernels: 3 nodes per axis again; the 20 closest to the origin are the centre, the 6 face
        # centres (norm 1), the 12 edge midpoints (norm sqrt 2) and the first corner (norm sqrt 3).
        c20 = init_centers(20, 3, "grid", device=device)
        norms = sorted(round(v, 6) for v in c20.norm(dim=1).tolist())
        assert norms == [0.0] + [1.0] * 6 + [round(math.sqrt(2.0), 6)] * 12 + [round(math.sqrt(3.0), 6)]

    def test_random_layouts_in_range_and_seeded(self, device):
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        a = init_centers(500, 3, "uniform_ball", radius=0.5, generator=g1, device=device)
        b = init_centers(500, 3, "uniform_ball", radius=0.5, generator=g2, device=device)
        torch.testing.assert_close(a, b)
        assert float(a.norm(dim=1).max()) <= 0.5 + 1e-6
        # uniform in a ball: the fraction inside radius r/2 is (1/2)^3 = 0.125
        frac = float((a.norm(dim=1) < 0.25).float().mean())
        assert 0.08 < frac < 0.17
        cube = init_centers(500, 3, "uniform_cube", generator=g1, device=device)
        assert float(cube.abs().max()) <= 1.0

    def test_errors(self):
        with pytest.raises(ValueError, match="init_centers: 'method' must be one of"):
            init_centers(4, 3, "sphere")
        with pytest.raises(ValueError, match="init_centers: 'num_kernels' must be >= 1; got 0"):
            init_centers(0, 3)


class TestRBFLayer:
    def test_module_equals_functional(self, device, dtype):
        layer = RBFLayer(10, aggregation="max", center_init="uniform_ball", device=device, dtype=dtype)
        x = torch.rand(2, 30, 3, device=device, dtype=dtype)
        ref = rbf_activation(x, layer.centers, layer.log_widths.exp(), aggregation="max")
        torch.testing.assert_close(layer(x), ref)
        assert layer.centers.dtype == dtype and layer.centers.device.type == device.type

    def test_auto_width(self, device):
        # auto width = 2 * radius * M^(-1/D): 2 * 64^(-1/3) = 0.5
        layer = RBFLayer(64, device=device)
        torch.testing.assert_close(layer.widths, torch.full((64,), 0.5, device=device))
        assert RBFLayer(8, width_init=0.3).widths[0].item() == pytest.approx(0.3)

    def test_parameters_learnable_flags(self, device):
        layer = RBFLayer(5, learn_widths=False, device=device)
        assert layer.centers.requires_grad and not layer.log_widths.requires_grad
        x = torch.rand(1, 20, 3, device=device)
        layer(x).sum().backward()
        assert layer.centers.grad is not None and layer.log_widths.grad is None

    def test_gradcheck_through_log_widths(self, device):
        layer = RBFLayer(3, aggregation="sum", device=device, dtype=torch.float64)
        x = torch.rand(1, 6, 3, device=device, dtype=torch.float64)

        def f(c, lw):
            return rbf_activation(x, c, lw.exp(), aggregation="sum")

        assert torch.autograd.gradcheck(
            f, (layer.centers.detach().requires_grad_(), layer.log_widths.detach().requires_grad_())
        )

    def test_tensor_init_and_sampled_init(self, device):
        c = torch.randn(4, 3, device=device)
        layer = RBFLayer(4, center_init=c, device=device)
        torch.testing.assert_close(layer.centers.detach(), c)
        pts = torch.rand(2, 50, 3, device=device)
        layer.init_from_points(pts, generator=torch.Generator().manual_seed(0))
        flat = pts.reshape(-1, 3)
        # every sampled centre is one of the data points
        d = torch.cdist(layer.centers.detach(), flat).min(dim=1).values
        assert float(d.max()) == 0.0
        assert layer.center_init == "sampled"
        with pytest.raises(ValueError, match=r"RBFLayer: 'center_init' must have shape \(5, 3\)"):
            RBFLayer(5, center_init=c)
        with pytest.raises(ValueError, match=r"RBFLayer\.init_from_points: 'points' must hold >= 4 points"):
            layer.init_from_points(torch.rand(1, 3, 3, device=device))

    def test_state_dict_round_trip(self, device):
        a = RBFLayer(6, in_dim=6, kernel="inverse_quadratic", center_init="uniform_cube", device=device)
        b = RBFLayer(6, in_dim=6, kernel="inverse_quadratic", device=device)
        b.load_state_dict(a.state_dict())
        x = torch.rand(2, 10, 6, device=device)
        torch.testing.assert_close(a(x), b(x))
        assert "kernel='inverse_quadratic'" in repr(a)

    def test_wrong_input_dim(self, device):
        layer = RBFLayer(4, device=device)
        # issue 24: the message names the points (the user's argument), not the layer's centres
        with pytest.raises(
            ValueError, match=r"RBFLayer: 'points' must have last dimension 3 .*got \(1, 5, 6\)"
        ):
            layer(torch.rand(1, 5, 6, device=device))

    def test_constructor_errors(self):
        with pytest.raises(ValueError, match="RBFLayer: 'kernel' must be one of"):
            RBFLayer(4, kernel="box")
        with pytest.raises(ValueError, match="RBFLayer: 'width_init' must be a finite number > 0"):
            RBFLayer(4, width_init=-1.0)
        with pytest.raises(TypeError, match="RBFLayer: 'num_kernels' must be an int; got float"):
            RBFLayer(4.0)  # type: ignore[arg-type]

    def test_large_batch_kernelwise_is_chunked(self, device):
        # Memory-aware path: 4 x 5000 points x 512 kernels with chunk 500 equals the dense result.
        layer = RBFLayer(512, aggregation="max", chunk_size=500, device=device)
        x = torch.rand(4, 5000, 3, device=device) * 2 - 1
        with torch.no_grad():
            chunked = layer(x)
            layer.chunk_size = None
            dense = layer(x)
        torch.testing.assert_close(chunked, dense)
        assert math.isfinite(float(chunked.sum()))
