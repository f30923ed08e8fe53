"""Strokes: rasterisation, orientation field, tracing, extraction from real images."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from hairsynth import (
    Stroke,
    load_strokes,
    orientation_field,
    oriented_filter_bank,
    rasterize_strokes,
    save_strokes,
    strokes_from_image,
    trace_strokes,
)


def _angle_err(a: torch.Tensor, b: float) -> torch.Tensor:
    """Sign-free angular difference in [0, pi/2]."""
    return (torch.remainder(a - b + math.pi / 2, math.pi) - math.pi / 2).abs()


def _grating(theta0: float, size: int, period: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Stripes whose intensity is constant along the direction (cos theta0, sin theta0)."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    return 0.5 + 0.5 * torch.cos(2 * math.pi / period * (-xx * math.sin(theta0) + yy * math.cos(theta0)))


class TestStroke:
    def test_validation(self):
        with pytest.raises(ValueError, match=r"Stroke: 'points' must have shape \(N, 2\)"):
            Stroke(np.zeros((3, 3)))
        with pytest.raises(ValueError, match=r"Stroke: 'points' must have shape"):
            Stroke(np.zeros((0, 2)))
        with pytest.raises(ValueError, match=r"Stroke: 'color' must be 3 floats in \[0, 1\]"):
            Stroke([(0, 0), (1, 1)], color=(1.5, 0, 0))
        with pytest.raises(ValueError, match=r"Stroke: 'width' must be a finite number > 0"):
            Stroke([(0, 0), (1, 1)], width=0)
        with pytest.raises(ValueError, match=r"Stroke: 'points' must be finite"):
            Stroke([(0, 0), (float("nan"), 1)])

    def test_length_and_json_roundtrip(self, tmp_path):
        s = Stroke([(0, 0), (3, 4), (3, 10)], color=(0.1, 0.2, 0.3), width=2.5)
        assert s.length == pytest.approx(11.0)  # 5 + 6 by hand
        save_strokes([s], tmp_path / "s.json")
        (back,) = load_strokes(tmp_path / "s.json")
        assert np.array_equal(back.points, s.points) and back.color == s.color and back.width == s.width
        (tmp_path / "bad.json").write_text('{"strokes": 3}')
        with pytest.raises(ValueError, match=r"load_strokes: '.*bad.json' must hold a list or"):
            load_strokes(tmp_path / "bad.json")
        (tmp_path / "nopoints.json").write_text('[{"color": [0, 0, 0]}]')
        with pytest.raises(ValueError, match=r"Stroke.from_dict: 'd' must be a dict with a 'points' key"):
            load_strokes(tmp_path / "nopoints.json")


class TestRasterize:
    def test_horizontal_width1_is_exact(self, device):
        # width 1: covered iff distance to the segment <= 0.5, i.e. exactly row 5, columns 2..10 (9 pixels)
        color, cov = rasterize_strokes(
            [Stroke([(2, 5), (10, 5)], (1.0, 0.5, 0.0), 1.0)], (12, 14), device=device
        )
        want = torch.zeros(1, 12, 14, device=device)
        want[0, 5, 2:11] = 1
        assert torch.equal(cov, want)
        assert torch.equal(color[1], 0.5 * want[0])
        assert color.device.type == device.type

    def test_width3_round_caps(self, device):
        # width 3 (r = 1.5): rows 4..6 for x in 2..10; caps: (1, 4..6) at distance <= sqrt(2) <= 1.5,
        # (0, 5) at distance 2 > 1.5 not covered, (1, 3) at sqrt(1 + 4) > 1.5 not covered. 27 + 3 + 3 = 33.
        _, cov = rasterize_strokes([Stroke([(2, 5), (10, 5)], (1, 1, 1), 3.0)], (12, 14), device=device)
        assert int(cov.sum()) == 33
        assert cov[0, 4:7, 1].tolist() == [1, 1, 1] and cov[0, 5, 0] == 0 and cov[0, 3, 1] == 0

    def test_diagonal_and_dot(self, device):
        # a diagonal of width 1 from (1, 1) to (5, 5): pixel centres (k, k) at distance 0; (k+1, k) at
        # distance 1/sqrt(2) > 0.5, so exactly the 5 diagonal pixels
        _, cov = rasterize_strokes([Stroke([(1, 1), (5, 5)], width=1.0)], (8, 8), device=device)
        assert torch.equal(cov[0], torch.diag(torch.tensor([0, 1, 1, 1, 1, 1, 0, 0.0], device=device)))
        # a single point of width 3 is a disc of radius 1.5: 9 pixels (centre, 4 at 1, 4 at sqrt 2)
        _, cov = rasterize_strokes([Stroke([(4, 4)], width=3.0)], (8, 8), device=device)
        assert int(cov.sum()) == 9

    def test_later_strokes_paint_over(self, device):
        a = Stroke([(0, 2), (7, 2)], (1.0, 0.0, 0.0), 1.0)
        b = Stroke([(3, 0), (3, 7)], (0.0, 0.0, 1.0), 1.0)
        color, _ = rasterize_strokes([a, b], (8, 8), device=device)
        assert color[:, 2, 3].tolist() == [0.0, 0.0, 1.0]
        assert color[:, 2, 0].tolist() == [1.0, 0.0, 0.0]

    def test_clipped_and_empty(self, device):
        _, cov = rasterize_strokes([Stroke([(-20, -20), (-10, -10)], width=2.0)], (8, 8), device=device)
        assert cov.sum() == 0
        c, cov = rasterize_strokes([], (4, 5), device=device, dtype=torch.float64)
        assert c.shape == (3, 4, 5) and cov.dtype == torch.float64 and cov.sum() == 0

    def test_errors(self):
        with pytest.raises(TypeError, match=r"rasterize_strokes: 'strokes' must be a sequence of Stroke"):
            rasterize_strokes(Stroke([(0, 0)]), (4, 4))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"rasterize_strokes: 'strokes\[0\]' must be a Stroke"):
            rasterize_strokes([[(0, 0)]], (4, 4))  # type: ignore[list-item]
        with pytest.raises(ValueError, match=r"rasterize_strokes: 'size' must be \(H, W\)"):
            rasterize_strokes([], (4, 0))


class TestOrientationField:
    @pytest.mark.parametrize("theta0", [0.0, 0.3, 1.0, math.pi / 2, 2.0, 2.8])
    def test_recovers_grating_angle(self, theta0, device):
        img = _grating(theta0, 64, 5.0).to(device)[None, None]
        theta, conf = orientation_field(img)
        inner = (slice(None), slice(None), slice(16, 48), slice(16, 48))
        # 32 filter angles are pi/32 ~ 0.098 apart: after smoothing the error must stay below half a bin
        assert _angle_err(theta[inner], theta0).max() < 0.05
        assert conf[inner].min() > 0.95
        assert theta.min() >= 0 and theta.max() < math.pi
        assert theta.device.type == device.type

    def test_rgb_and_mask(self, device):
        img = _grating(0.7, 48, 4.0).to(device)
        rgb = torch.stack([img, img, img])[None]
        mask = torch.zeros(1, 1, 48, 48, device=device, dtype=torch.float64)
        mask[..., 8:40, 8:40] = 1
        theta, conf = orientation_field(rgb, mask)
        assert _angle_err(theta[..., 12:36, 12:36], 0.7).max() < 0.05
        assert conf[..., :4, :].abs().max() == 0  # confidence is zero outside the mask

    def test_filter_bank(self, device):
        bank = oriented_filter_bank(8, kernel_size=9, device=device)
        assert bank.shape == (8, 1, 9, 9) and bank.device.type == device.type
        assert bank.sum(dim=(1, 2, 3)).abs().max() < 1e-6  # zero-mean kernels
        # kernel 4 (theta = pi/2) is kernel 0 (theta = 0) transposed
        assert torch.allclose(bank[4, 0], bank[0, 0].T, atol=1e-6)

    def test_errors(self, device):
        img = torch.zeros(1, 1, 8, 8, device=device)
        with pytest.raises(TypeError, match=r"orientation_field: 'image' must be a torch.Tensor"):
            orientation_field(np.zeros((8, 8)))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"orientation_field: 'image' must have a floating-point dtype"):
            orientation_field(torch.zeros(1, 1, 8, 8, dtype=torch.uint8, device=device))
        with pytest.raises(ValueError, match=r"orientation_field: 'image' must have shape \(B, 3\|1, H, W\)"):
            orientation_field(torch.zeros(1, 2, 8, 8, device=device))
        with pytest.raises(ValueError, match=r"orientation_field: 'image' must be finite"):
            orientation_field(torch.full((1, 1, 8, 8), float("nan"), device=device))
        with pytest.raises(ValueError, match=r"orientation_field: 'mask' must have shape"):
            orientation_field(img, torch.zeros(1, 1, 8, 9, device=device))
        with pytest.raises(ValueError, match=r"orientation_field: 'mask' must lie in \[0.0, 1.0\]"):
            orientation_field(img, torch.full((1, 1, 8, 8), 2.0, device=device))
        with pytest.raises(ValueError, match=r"orientation_field: 'smooth_sigma' must be >= 0"):
            orientation_field(img, smooth_sigma=-1.0)
        with pytest.raises(ValueError, match=r"oriented_filter_bank: 'kernel_size' must be an odd int"):
            oriented_filter_bank(8, kernel_size=4)


class TestTrace:
    def test_follows_circular_flow(self, device):
        # flow tangent to circles around (32, 32): a streamline must keep its radius and its segments
        # must be tangent (perpendicular to the radius)
        n, c = 64, 32.0
        yy, xx = torch.meshgrid(torch.arange(n).double(), torch.arange(n).double(), indexing="ij")
        theta = torch.remainder(torch.atan2(yy - c, xx - c) + math.pi / 2, math.pi).to(device)
        r = torch.hypot(xx - c, yy - c)
        mask = ((r < 28) & (r > 4)).double().to(device)
        lines = trace_strokes(theta, torch.ones_like(theta), mask, spacing=8.0)
        assert len(lines) >= 10
        assert max(len(ln) for ln in lines) >= 30
        for ln in lines:
            rr = np.hypot(ln[:, 0] - c, ln[:, 1] - c)
            assert rr.max() - rr.min() < 2.0  # Euler drift of a 1-px step around r >= 4 stays small
            seg = np.diff(ln, axis=0)
            mid = (ln[1:] + ln[:-1]) / 2 - c
            cosang = np.abs((seg * mid).sum(1)) / (np.linalg.norm(seg, axis=1) * np.linalg.norm(mid, axis=1))
            assert cosang.max() < math.sin(math.radians(20))

    def test_stops_at_mask_border_and_straight_field(self, device):
        theta = torch.zeros(32, 32, device=device)  # horizontal flow
        mask = torch.zeros(32, 32, device=device)
        mask[10:20, 5:25] = 1
        lines = trace_strokes(theta, torch.ones_like(theta), mask, spacing=4.0, max_length=100)
        assert lines
        for ln in lines:
            assert np.ptp(ln[:, 1]) < 1e-9  # horizontal
            assert ln[:, 0].min() >= 4.5 and ln[:, 0].max() <= 24.5  # inside the mask (nearest pixel)

    def test_errors(self, device):
        z4 = torch.zeros(4, 4, device=device)
        with pytest.raises(ValueError, match=r"trace_strokes: 'theta', 'confidence' and 'mask' must share"):
            trace_strokes(z4, z4, torch.zeros(4, 5, device=device))
        with pytest.raises(ValueError, match=r"trace_strokes: 'theta' must have shape \(H, W\)"):
            trace_strokes(torch.zeros(2, 4, 4, device=device), z4, z4)
        with pytest.raises(TypeError, match=r"trace_strokes: 'mask' must be a torch.Tensor"):
            trace_strokes(z4, z4, np.zeros((4, 4)))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"trace_strokes: 'step' must be > 0"):
            trace_strokes(z4, z4, z4, step=0.0)


class TestStrokesFromImage:
    def test_synthetic_grating(self, device):
        # dark-brown stripes at 0.5 rad inside a square: strokes follow 0.5 rad and take the image colour
        g = _grating(0.5, 64, 5.0, torch.float32)
        img = torch.stack([0.2 + 0.3 * g, 0.1 + 0.2 * g, 0.05 + 0.1 * g]).to(device)
        mask = torch.zeros(64, 64, device=device)
        mask[8:56, 8:56] = 1
        strokes = strokes_from_image(img, mask, max_strokes=6, width=3.0)
        assert 1 <= len(strokes) <= 6
        for s in strokes:
            d = np.diff(s.points, axis=0)
            ang = np.arctan2(d[:, 1], d[:, 0])
            err = np.abs(np.remainder(ang - 0.5 + np.pi / 2, np.pi) - np.pi / 2)
            assert err.max() < 0.1
            assert s.width == 3.0
            assert 0.2 <= s.color[0] <= 0.5 and s.color[2] <= 0.15

    def test_mask_kinds_agree(self, device):
        """Nonzero = hair for every mask kind: a coloured (even pure blue) PIL mask, an RGB array, a 3-channel tensor."""
        from PIL import Image

        g = _grating(0.5, 48, 5.0, torch.float32)
        img = torch.stack([0.2 + 0.3 * g, 0.1 + 0.2 * g, 0.05 + 0.1 * g]).to(device)
        m = torch.zeros(48, 48)
        m[8:40, 8:40] = 1
        rgb = np.zeros((48, 48, 3), np.uint8)
        rgb[m.numpy() > 0] = (0, 0, 255)  # blue hair label: its red channel is 0 everywhere
        want = [s.to_dict() for s in strokes_from_image(img, m.to(device))]
        assert want
        for kind in (Image.fromarray(rgb), rgb, torch.from_numpy(rgb).permute(2, 0, 1).float().to(device)):
            assert [s.to_dict() for s in strokes_from_image(img, kind)] == want

    def test_errors(self, device):
        img, ones = torch.rand(3, 16, 16, device=device), torch.ones(16, 16, device=device)
        with pytest.raises(ValueError, match=r"strokes_from_image: 'mask' must have shape \(H, W\)"):
            strokes_from_image(img, torch.ones(16, 17, device=device))
        with pytest.raises(ValueError, match=r"strokes_from_image: 'image' must have shape"):
            strokes_from_image(torch.rand(4, 16, 16, device=device), ones)
        with pytest.raises(ValueError, match=r"strokes_from_image: 'width' must be > 0 or a"):
            strokes_from_image(img, ones, width=(3.0, 1.0))
        with pytest.raises(
            ValueError, match=r"strokes_from_image: 'max_strokes' must be None or an int >= 0"
        ):
            strokes_from_image(img, ones, max_strokes=-1)
        with pytest.raises(TypeError, match=r"strokes_from_image: 'mask' must be a torch.Tensor, PIL image"):
            strokes_from_image(img, "mask.png")
        with pytest.raises(TypeError, match=r"strokes_from_image: 'image' must be a torch.Tensor, PIL image"):
            strokes_from_image([[0.0]], ones)
        with pytest.raises(TypeError, match=r"strokes_from_image: 'image' must have a floating-point dtype"):
            strokes_from_image(torch.zeros(3, 16, 16, dtype=torch.uint8, device=device), ones)

    def test_real_hair_photo(self, shared_data):
        from PIL import Image

        root = os.path.join(shared_data, "figaro1k", "training")
        img = Image.open(os.path.join(root, "images", "Frame00001.jpg"))
        mask = Image.open(os.path.join(root, "masks", "Frame00001.png"))
        strokes = strokes_from_image(img, mask, max_strokes=12)
        assert 6 <= len(strokes) <= 12
        m = np.asarray(mask) > 0
        for s in strokes:
            xi, yi = np.rint(s.points[:, 0]).astype(int), np.rint(s.points[:, 1]).astype(int)
            assert m[yi, xi].all()  # traced inside the hair
            assert s.length >= 8.0
