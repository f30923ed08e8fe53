"""Backward warping and forward splatting."""

from __future__ import annotations

import math

import pytest
import torch

from undistort.warp import Warp, flow_to_grid, normalize_flow, splat, unnormalize_flow, warp


def _smooth_image(h, w, device, dtype=torch.float64):
    ys = torch.arange(h, dtype=dtype, device=device) + 0.5
    xs = torch.arange(w, dtype=dtype, device=device) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return (
        torch.stack([torch.sin(xx / 10) + yy / 10, torch.cos(yy / 8) * xx / 20, xx * 0 + 0.5])[None],
        xx,
        yy,
    )


class TestWarp:
    def test_integer_shift_by_hand(self, device):
        img = torch.arange(16.0, device=device).view(1, 1, 4, 4)
        flow = torch.zeros(1, 2, 4, 4, device=device)
        flow[:, 1] = -1.0  # read the row above
        out = warp(img, flow)
        assert torch.equal(out[0, 0, 1:], img[0, 0, :-1])
        assert torch.equal(out[0, 0, 0], torch.zeros(4, device=device))

    def test_samples_a_known_function(self, device):
        # image = a function sampled on the grid; a known smooth flow; bilinear warp == function at the
        # moved positions for a LINEAR function (bilinear interpolation is exact there)
        h, w = 24, 32
        ys = torch.arange(h, dtype=torch.float64, device=device) + 0.5
        xs = torch.arange(w, dtype=torch.float64, device=device) + 0.5
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        lin = lambda x, y: 0.3 * x - 0.7 * y + 2.0  # noqa: E731
        img = lin(xx, yy)[None, None]
        flow = torch.stack([1.5 * torch.sin(yy / 6), 0.8 * torch.cos(xx / 7)])[None]
        out = warp(img, flow)
        want = lin(xx + flow[0, 0], yy + flow[0, 1])
        inner = (slice(3, -3), slice(3, -3))
        assert torch.allclose(out[0, 0][inner], want[inner], atol=1e-9)

    def test_undoes_a_known_warp(self, device):
        # Translate a smooth image by (+2.25, -1.5) px, then warp back with the opposite flow.
        img, _, _ = _smooth_image(32, 32, device)
        f1 = torch.zeros(1, 2, 32, 32, dtype=torch.float64, device=device)
        f1[:, 0], f1[:, 1] = 2.25, -1.5
        moved = warp(img, f1)
        back = warp(moved, -f1)
        inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
        # two bilinear resamplings of a smooth image: only the interpolation error remains, bounded by
        # frac * (1 - frac) * |f''| / 2 per axis and pass (<= 0.25 * 0.01 / 2 * 2 passes ~ 3e-3 here)
        assert (back[inner] - img[inner]).abs().max() < 6e-3
        assert (moved[inner] - img[inner]).abs().max() > 0.05  # the warp did move it

    def test_gradcheck(self, device):
        img = torch.rand(1, 2, 5, 6, dtype=torch.float64, device=device, requires_grad=True)
        flow = (torch.rand(1, 2, 5, 6, dtype=torch.float64, device=device) * 2 - 1).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b: warp(a, b, padding_mode="border"), (img, flow))

    def test_module_equals_functional(self, device):
        img = torch.rand(2, 3, 8, 8, device=device)
        flow = torch.randn(2, 2, 8, 8, device=device)
        m = Warp(padding_mode="border")
        assert torch.equal(m(img, flow), warp(img, flow, padding_mode="border"))
        assert "border" in repr(m)

    def test_dtype_and_device_kept(self, device, dtype):
        img = torch.rand(1, 3, 4, 4, device=device, dtype=dtype)
        out = warp(img, torch.zeros(1, 2, 4, 4, device=device, dtype=dtype))
        assert out.dtype == dtype and out.device == img.device
        assert torch.allclose(out, img)

    def test_normalize_roundtrip(self, device):
        f = torch.randn(2, 2, 6, 10, device=device)
        assert torch.allclose(unnormalize_flow(normalize_flow(f)), f)
        # zero flow -> pixel centres in normalised units: (j + 0.5) * 2 / W - 1
        g = flow_to_grid(torch.zeros(1, 2, 2, 4, device=device))
        assert torch.allclose(g[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75], device=device))

    def test_errors(self, device):
        img = torch.rand(1, 3, 4, 4, device=device)
        with pytest.raises(ValueError, match=r"warp: 'flow' must have shape \(B, 2, H, W\) with H=4"):
            warp(img, torch.zeros(1, 2, 5, 4, device=device))
        with pytest.raises(ValueError, match="warp: 'image' must have a non-empty H and W"):
            warp(torch.rand(1, 3, 0, 4, device=device), torch.zeros(1, 2, 0, 4, device=device))
        with pytest.raises(ValueError, match="warp: 'flow' must be finite"):
            warp(img, torch.full((1, 2, 4, 4), math.nan, device=device))
        with pytest.raises(TypeError, match="warp: 'image' must have a floating-point dtype"):
            warp(img.to(torch.uint8), torch.zeros(1, 2, 4, 4, device=device))
        with pytest.raises(ValueError, match="warp: 'mode' must be"):
            warp(img, torch.zeros(1, 2, 4, 4, device=device), mode="bicubic")
        bad = img.clone()
        bad[0, 1, 2, 3] = math.nan
        with pytest.raises(ValueError, match=r"warp: 'image' must be finite; got 1 NaN/inf value\(s\) of 48"):
            warp(bad, torch.zeros(1, 2, 4, 4, device=device))
        # the module twin rejects a bad mode when built, not at its first forward
        with pytest.raises(
            ValueError, match="Warp: 'padding_mode' must be 'zeros', 'border' or 'reflection'"
        ):
            Warp(padding_mode="wrap")


class TestSplat:
    def test_integer_shift_inverts_warp(self, device):
        img = torch.rand(1, 3, 8, 8, device=device)
        fwd = torch.zeros(1, 2, 8, 8, device=device)
        fwd[:, 0] = 2.0  # source p lands at p + 2 (right)
        out, wsum = splat(img, fwd)
        assert torch.allclose(out[..., 2:], img[..., :-2])
        assert torch.equal(wsum[0, 0, :, :2], torch.zeros(8, 2, device=device))
        # backward warp by -2 gives the same image where defined
        assert torch.allclose(warp(img, -fwd)[..., 2:], out[..., 2:])

    def test_fractional_shift_preserves_constant(self, device):
        img = torch.full((1, 1, 6, 6), 0.7, device=device)
        fwd = torch.full((1, 2, 6, 6), 0.5, device=device)
        out, wsum = splat(img, fwd)
        covered = wsum[0, 0] > 1e-6
        assert torch.allclose(out[0, 0][covered], torch.full_like(out[0, 0][covered], 0.7))
        # total weight is conserved for targets inside the image: sum of bilinear weights = #sources fully inside
        assert float(wsum.sum()) == pytest.approx(25.0 + 5 * 0.5 * 2 + 0.25, rel=1e-6)

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"splat: 'flow' must have shape \(B, 2, H, W\)"):
            splat(torch.rand(1, 3, 4, 4, device=device), torch.zeros(1, 3, 4, 4, device=device))
        with pytest.raises(ValueError, match="splat: 'image' must be finite"):
            splat(torch.full((1, 1, 4, 4), math.inf, device=device), torch.zeros(1, 2, 4, 4, device=device))
