"""Masks, compositing, losses and metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from hairsynth import (
    GANLoss,
    composite,
    dilate_mask,
    feather_mask,
    feature_matching_loss,
    gan_loss,
    masked_l1,
    psnr,
    sliced_wasserstein_distance,
    ssim,
    synthesis_input,
)


def _mask(device, dtype=torch.float32, size=16):
    m = torch.zeros(2, 1, size, size, device=device, dtype=dtype)
    m[0, :, 4:10, 3:12] = 1
    m[1, :, 8:14, 8:14] = 1
    return m


class TestComposite:
    def test_outside_mask_is_bit_exact(self, device, dtype):
        img = torch.rand(2, 3, 16, 16, device=device, dtype=dtype)
        gen = torch.rand(2, 3, 16, 16, device=device, dtype=dtype) * 1e6  # wild values must not leak out
        m = _mask(device, dtype)
        out = composite(img, gen, m)
        out_m = (m == 0).expand_as(img)
        assert torch.equal(out[out_m], img[out_m])
        assert torch.equal(out[~out_m], gen[~out_m])
        assert out.dtype == dtype and out.device.type == device.type

    def test_soft_mask_value(self, device):
        # 0.25 * 1 + 0.75 * 0 = 0.25 by hand
        out = composite(
            torch.zeros(1, 3, 2, 2, device=device),
            torch.ones(1, 3, 2, 2, device=device),
            torch.full((1, 1, 2, 2), 0.25, device=device),
        )
        assert torch.allclose(out, torch.full_like(out, 0.25))

    def test_gradcheck(self, device):
        img = torch.rand(1, 3, 4, 4, device=device, dtype=torch.float64, requires_grad=True)
        gen = torch.rand(1, 3, 4, 4, device=device, dtype=torch.float64, requires_grad=True)
        m = torch.rand(1, 1, 4, 4, device=device, dtype=torch.float64) * 0.8 + 0.1
        assert torch.autograd.gradcheck(lambda a, b: composite(a, b, m), (img, gen))

    def test_errors(self, device):
        img = torch.rand(1, 3, 8, 8, device=device)
        with pytest.raises(ValueError, match=r"composite: 'mask' must have shape \(B, 1, H, W\)"):
            composite(img, img, torch.ones(1, 3, 8, 8, device=device))
        with pytest.raises(ValueError, match=r"composite: 'mask' must lie in \[0.0, 1.0\]"):
            composite(img, img, torch.full((1, 1, 8, 8), -1.0, device=device))
        with pytest.raises(ValueError, match=r"composite: 'generated' must have shape \(B, 3, H, W\)"):
            composite(img, torch.rand(1, 3, 8, 9, device=device), torch.ones(1, 1, 8, 8, device=device))
        with pytest.raises(TypeError, match=r"composite: 'mask' must have a floating-point dtype"):
            composite(img, img, torch.ones(1, 1, 8, 8, dtype=torch.bool, device=device))


class TestMasks:
    def test_dilate(self, device):
        m = torch.zeros(1, 1, 7, 7, device=device)
        m[..., 3, 3] = 1
        assert int(dilate_mask(m, 2).sum()) == 25  # a 5x5 square by hand

    def test_feather(self, device):
        m = _mask(device)
        f = feather_mask(m, 3)
        assert torch.equal(f[m == 1], torch.ones_like(f[m == 1]))  # 1 inside the mask
        far = dilate_mask(m, 3) == 0
        assert torch.equal(f[far], torch.zeros_like(f[far]))  # 0 beyond the band
        band = (dilate_mask(m, 3) > 0) & (m == 0)
        assert (f[band] > 0).all() and (f[band] < 1).any()  # a ramp in between
        # directly beside the mask the ramp is higher than at the far edge of the band
        assert f[0, 0, 6, 12] > f[0, 0, 6, 14]

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"dilate_mask: 'radius' must be an int >= 0"):
            dilate_mask(torch.zeros(1, 1, 4, 4, device=device), -1)
        with pytest.raises(ValueError, match=r"feather_mask: 'mask' must have shape \(B, 1, H, W\)"):
            feather_mask(torch.zeros(1, 4, 4, device=device), 1)


def test_synthesis_input(device):
    img = torch.rand(2, 3, 16, 16, device=device)
    m = _mask(device)
    sc, sm = torch.rand(2, 3, 16, 16, device=device), torch.rand(2, 1, 16, 16, device=device)
    x = synthesis_input(img, m, sc, sm)
    assert x.shape == (2, 8, 16, 16)
    assert torch.equal(
        x[:, :3][m.expand(-1, 3, -1, -1) == 1], torch.zeros_like(img[m.expand(-1, 3, -1, -1) == 1])
    )
    assert torch.equal(x[:, 3:4], m) and torch.equal(x[:, 4:7], sc) and torch.equal(x[:, 7:], sm)
    with pytest.raises(ValueError, match=r"synthesis_input: 'stroke_mask' must have shape \(B, 1, H, W\)"):
        synthesis_input(img, m, sc, sc)


class TestLosses:
    def test_gan_values(self, device):
        z = torch.tensor([0.5, -1.0], device=device)
        # by hand: lsgan real ((0.5-1)^2 + (-2)^2)/2 = 2.125; fake (0.25 + 1)/2 = 0.625
        assert gan_loss(z, True).item() == pytest.approx(2.125)
        assert gan_loss(z, False).item() == pytest.approx(0.625)
        # hinge D real: (relu(0.5) + relu(2))/2 = 1.25; fake: (relu(1.5) + relu(0))/2 = 0.75; G: -mean = 0.25
        assert gan_loss(z, True, mode="hinge").item() == pytest.approx(1.25)
        assert gan_loss(z, False, mode="hinge").item() == pytest.approx(0.75)
        assert gan_loss(z, True, mode="hinge", for_discriminator=False).item() == pytest.approx(0.25)
        # vanilla real: mean(log(1 + exp(-z)))
        want = np.mean(np.log1p(np.exp(-np.array([0.5, -1.0]))))
        assert gan_loss(z, True, mode="vanilla").item() == pytest.approx(want, rel=1e-6)
        assert (
            GANLoss("hinge")(z, True).item() == gan_loss(z, True, mode="hinge").item()
        )  # module == functional
        with pytest.raises(ValueError, match=r"gan_loss: 'mode' must be one of"):
            gan_loss(z, True, mode="wgan")
        with pytest.raises(ValueError, match=r"GANLoss: 'mode' must be one of"):
            GANLoss("x")

    def test_feature_matching(self, device):
        a = [torch.ones(1, 2, device=device), torch.zeros(1, 3, device=device)]
        b = [torch.zeros(1, 2, device=device), torch.full((1, 3), 2.0, device=device)]
        assert feature_matching_loss(a, b).item() == pytest.approx(3.0)  # 1 + 2 by hand
        with pytest.raises(
            ValueError, match=r"feature_matching_loss: 'fake_features' and 'real_features' must be"
        ):
            feature_matching_loss(a, b[:1])
        # a bare tensor is not a list of layers (it used to be iterated row by row without complaint)
        with pytest.raises(
            TypeError, match=r"feature_matching_loss: 'fake_features' must be a list or tuple of tensors"
        ):
            feature_matching_loss(torch.ones(2, device=device), b)  # type: ignore[arg-type]

    def test_masked_l1(self, device):
        p = torch.zeros(1, 2, 2, 2, device=device)
        t = torch.arange(8.0, device=device).view(1, 2, 2, 2)
        m = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], device=device)
        # selected values: channel 0 -> 0, 3; channel 1 -> 4, 7; mean = 14 / 4 = 3.5
        assert masked_l1(p, t, m).item() == pytest.approx(3.5)
        assert masked_l1(p, t).item() == pytest.approx(3.5)  # 28 / 8
        with pytest.raises(ValueError, match=r"masked_l1: 'mask' must have shape \(B, 1, H, W\)"):
            masked_l1(p, t, torch.ones(1, 2, 2, 2, device=device))


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Independent SSIM: scipy correlate1d with the same 11-tap sigma-1.5 Gaussian, valid region."""
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    g /= g.sum()

    def f(x):
        return correlate1d(correlate1d(x, g, axis=0, mode="constant"), g, axis=1, mode="constant")[5:-5, 5:-5]

    c1, c2 = 0.01**2, 0.03**2
    mx, my = f(a), f(b)
    sxx, syy, sxy = f(a * a) - mx**2, f(b * b) - my**2, f(a * b) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


class TestMetrics:
    def test_psnr_by_hand(self, device):
        p = torch.zeros(1, 1, 2, 2, device=device)
        t = torch.tensor([[[[0.1, 0.1], [0.5, 0.5]]]], device=device)
        m = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], device=device)
        assert psnr(p, t, m).item() == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB
        assert psnr(p, t).item() == pytest.approx(10 * math.log10(1 / 0.13), abs=1e-4)  # mse (0.02+0.5)/4

    def test_ssim_matches_scipy_reference(self, device):
        rng = np.random.default_rng(0)
        a = rng.random((24, 24))
        b = np.clip(a + 0.1 * rng.standard_normal((24, 24)), 0, 1)
        got = ssim(torch.tensor(a, device=device)[None, None], torch.tensor(b, device=device)[None, None])
        assert got.item() == pytest.approx(_ssim_reference(a, b), abs=1e-10)
        assert ssim(torch.tensor(a)[None, None], torch.tensor(a)[None, None]).item() == pytest.approx(1.0)

    def test_ssim_mask_and_errors(self, device):
        x = torch.rand(1, 3, 30, 20, device=device)
        y = x.clone()
        y[..., 20:, :] = torch.rand(1, 3, 10, 20, device=device)
        m = torch.zeros(1, 1, 30, 20, device=device)
        m[..., 5:10, :] = 1  # windows centred on rows 5..9 see rows 0..14 only, where x == y
        assert ssim(x, y, m).item() == pytest.approx(1.0, abs=1e-5)
        assert ssim(x, y).item() < 0.9
        with pytest.raises(ValueError, match=r"ssim: images must be at least 11x11"):
            ssim(torch.rand(1, 1, 8, 8, device=device), torch.rand(1, 1, 8, 8, device=device))
        with pytest.raises(ValueError, match=r"ssim: 'mask' must lie in \[0.0, 1.0\]"):
            ssim(x, y, m * 3)
        with pytest.raises(TypeError, match=r"psnr: 'mask' must be bool or floating"):
            psnr(x, y, m.long())
        with pytest.raises(ValueError, match=r"psnr: 'mask' must lie in \[0.0, 1.0\]"):
            psnr(x, y, m - 1)
        # a bool mask is the same as its float version
        assert torch.equal(psnr(x, y, m.bool()), psnr(x, y, m)) and torch.equal(
            ssim(x, y, m.bool()), ssim(x, y, m)
        )

    def test_swd_shift_by_hand(self, device):
        # 1 channel, 1x1 patches, no normalisation: every direction is +-1, so SWD is the 1-D W1 distance
        # between the pixel distributions; a constant shift c gives exactly |c|
        x = torch.rand(1, 1, 16, 16, device=device, dtype=torch.float64)
        d = sliced_wasserstein_distance(x, x + 0.3, patch_size=1, normalize=False, num_projections=8)
        assert d.item() == pytest.approx(0.3, abs=1e-9)
        assert sliced_wasserstein_distance(x, x, patch_size=3).item() == 0.0
        # y, another uniform-noise texture, is closer to x than y * 0.2, whose patches have 5x smaller spread
        y = torch.rand(1, 1, 16, 16, device=device, dtype=torch.float64)
        assert sliced_wasserstein_distance(x, y * 0.2) > sliced_wasserstein_distance(x, y)
        with pytest.raises(
            ValueError, match=r"sliced_wasserstein_distance: 'mask_x' selects no patch centre"
        ):
            sliced_wasserstein_distance(x, x, torch.zeros(1, 1, 16, 16, device=device, dtype=torch.float64))
