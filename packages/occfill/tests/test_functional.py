"""Losses, composite and metrics: hand-computed values, gradcheck, twins, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from occfill import AdversarialLoss, IdentityLoss, MaskedL1Loss
from occfill.functional import (
    composite,
    discriminator_loss,
    generator_adversarial_loss,
    identity_loss,
    masked_l1_loss,
    masked_psnr,
    masked_ssim,
    occlude,
)
from occfill.models import IdentityEncoder


def _mask(device, b=2, h=6, w=6):
    m = torch.zeros(b, 1, h, w, device=device)
    m[..., 1:4, 2:5] = 1
    return m


class TestCompositeOcclude:
    def test_outside_pixels_bit_exact(self, device, dtype):
        y = torch.rand(2, 3, 6, 6, device=device, dtype=dtype)
        g = torch.rand(2, 3, 6, 6, device=device, dtype=dtype)
        m = _mask(device).to(dtype)
        out = composite(g, y, m)
        keep = m.expand_as(y) == 0
        assert torch.equal(out[keep], y[keep]) and torch.equal(out[~keep], g[~keep])
        occ = occlude(y, m)
        assert torch.equal(occ[keep], y[keep]) and bool((occ[~keep] == 0).all())

    def test_soft_mask_blend(self, device):
        # by hand: 0.25 * 1 + 0.75 * 0 = 0.25
        out = composite(
            torch.ones(1, 1, 1, 1, device=device),
            torch.zeros(1, 1, 1, 1, device=device),
            torch.full((1, 1, 1, 1), 0.25, device=device),
        )
        assert float(out) == 0.25

    def test_gradcheck(self, device):
        y = torch.rand(1, 3, 4, 4, dtype=torch.float64, device=device)
        g = torch.rand(1, 3, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
        m = _mask(device, 1, 4, 4).double()
        assert torch.autograd.gradcheck(lambda x: composite(x, y, m), (g,))

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"composite: 'mask' must have shape \(B, 1, H, W\)"):
            composite(
                torch.rand(1, 3, 4, 4, device=device),
                torch.rand(1, 3, 4, 4, device=device),
                torch.rand(1, 3, 4, 4, device=device),
            )
        with pytest.raises(ValueError, match="composite: 'generated' must have shape"):
            composite(
                torch.rand(1, 3, 2, 4, device=device),
                torch.rand(1, 3, 4, 4, device=device),
                torch.rand(1, 1, 4, 4, device=device),
            )


class TestMaskedL1:
    def test_reference_value(self, device):
        # by hand: |diff| = 1 everywhere; 9 hole pixels weight 5, 27 visible weight 1; 3 channels, 2 images
        # mean = (9 * 5 + 27 * 1) / 36 = 2.0
        m = _mask(device)
        got = masked_l1_loss(torch.ones(2, 3, 6, 6, device=device), torch.zeros(2, 3, 6, 6, device=device), m)
        assert math.isclose(float(got), 2.0, rel_tol=1e-6)

    def test_module_equals_functional_and_gradcheck(self, device):
        o = torch.rand(2, 3, 6, 6, dtype=torch.float64, device=device, requires_grad=True)
        t = torch.rand(2, 3, 6, 6, dtype=torch.float64, device=device)
        m = _mask(device).double()
        mod = MaskedL1Loss(hole_weight=3.0)
        assert torch.equal(mod(o, t, m), masked_l1_loss(o, t, m, hole_weight=3.0))
        assert "hole_weight=3.0" in repr(mod)
        assert torch.autograd.gradcheck(lambda x: masked_l1_loss(x, t, m), (o,))

    def test_errors(self, device):
        m = _mask(device)
        with pytest.raises(ValueError, match="masked_l1_loss: 'hole_weight' must be >= 0"):
            masked_l1_loss(
                torch.rand(2, 3, 6, 6, device=device),
                torch.rand(2, 3, 6, 6, device=device),
                m,
                hole_weight=-1,
            )


class TestIdentityLoss:
    def test_reference_values(self, device):
        e = torch.tensor([[1.0, 0.0], [1.0, 1.0]], device=device)
        r = torch.tensor([[0.0, 3.0], [2.0, 2.0]], device=device)
        # by hand: cos = 0 and 1 -> losses 1 and 0 -> mean 0.5
        assert math.isclose(float(identity_loss(e, r)), 0.5, abs_tol=1e-6)

    def test_gradcheck(self, device):
        e = torch.randn(3, 5, dtype=torch.float64, device=device, requires_grad=True)
        r = torch.randn(3, 5, dtype=torch.float64, device=device)
        assert torch.autograd.gradcheck(lambda x: identity_loss(x, r), (e,))

    def test_module_freezes_encoder_and_matches(self, device):
        enc = IdentityEncoder(8, base_channels=4, input_size=16).to(device)
        mod = IdentityLoss(enc).train()
        assert not enc.training and all(not p.requires_grad for p in enc.parameters())
        x = torch.rand(2, 3, 16, 16, device=device, requires_grad=True)
        s = torch.rand(2, 3, 16, 16, device=device)
        got = mod(x, s)
        assert torch.allclose(got, identity_loss(enc(x), enc(s)))
        got.backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0

    def test_errors(self, device):
        with pytest.raises(
            ValueError, match=r"identity_loss: 'reference_embedding' must have shape \(B, D\)"
        ):
            identity_loss(torch.rand(2, 4, device=device), torch.rand(2, 5, device=device))
        with pytest.raises(TypeError, match=r"IdentityLoss: 'encoder' must be an nn\.Module"):
            IdentityLoss("vgg")  # type: ignore[arg-type]


class TestAdversarial:
    @pytest.mark.parametrize(
        ("kind", "d_want", "g_want"),
        [
            # real = [2, 0], fake = [-0.5, 1]; by hand
            ("hinge", (0 + 1) / 2 + (0.5 + 2) / 2, -(-0.5 + 1) / 2),
            ("lsgan", (1 + 1) / 2 + (0.25 + 1) / 2, (2.25 + 0) / 2),
            (
                "bce",
                (math.log1p(math.exp(-2)) + math.log(2)) / 2
                + (math.log1p(math.exp(-0.5)) + math.log1p(math.e)) / 2,
                (math.log1p(math.exp(0.5)) + math.log1p(math.exp(-1))) / 2,
            ),
        ],
    )
    def test_reference_values(self, device, kind, d_want, g_want):
        real = torch.tensor([2.0, 0.0], device=device, dtype=torch.float64)
        fake = torch.tensor([-0.5, 1.0], device=device, dtype=torch.float64)
        assert math.isclose(float(discriminator_loss(real, fake, kind=kind)), d_want, rel_tol=1e-9)
        assert math.isclose(float(generator_adversarial_loss(fake, kind=kind)), g_want, rel_tol=1e-9)
        mod = AdversarialLoss(kind)
        assert torch.equal(mod(fake, real), discriminator_loss(real, fake, kind=kind))
        assert torch.equal(mod(fake), generator_adversarial_loss(fake, kind=kind))

    def test_errors(self, device):
        with pytest.raises(ValueError, match="discriminator_loss: 'kind' must be one of"):
            discriminator_loss(torch.zeros(1, device=device), torch.zeros(1, device=device), kind="wgan")
        with pytest.raises(ValueError, match="AdversarialLoss: 'kind' must be one of"):
            AdversarialLoss("wgan")


class TestMetrics:
    def test_psnr_reference(self, device):
        y = torch.zeros(2, 3, 6, 6, device=device)
        o = y.clone()
        m = _mask(device)
        o[m.expand_as(o) == 1] = 0.1  # MSE in the hole = 0.01 -> 20 dB; outside errors are ignored
        o[0, :, 5, 5] = 1.0
        assert torch.allclose(masked_psnr(o, y, m), torch.tensor([20.0, 20.0], device=device), atol=1e-4)

    def test_ssim_against_numpy(self, device):
        # independent reference: the same uniform-window SSIM written with numpy loops
        g = torch.Generator().manual_seed(0)
        a = torch.rand(1, 1, 9, 9, generator=g, dtype=torch.float64)
        b = (a + 0.1 * torch.rand(1, 1, 9, 9, generator=g, dtype=torch.float64)).clamp(0, 1)
        an, bn = np.pad(a[0, 0].numpy(), 1, mode="reflect"), np.pad(b[0, 0].numpy(), 1, mode="reflect")
        c1, c2 = 0.01**2, 0.03**2
        vals = []
        for i in range(9):
            for j in range(9):
                pa, pb = an[i : i + 3, j : j + 3], bn[i : i + 3, j : j + 3]
                ma, mb = pa.mean(), pb.mean()
                va, vb, cov = (pa**2).mean() - ma**2, (pb**2).mean() - mb**2, (pa * pb).mean() - ma * mb
                vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
        want = float(np.mean(vals))
        got = masked_ssim(
            a.to(device), b.to(device), torch.ones(1, 1, 9, 9, dtype=torch.float64, device=device), window=3
        )
        assert math.isclose(float(got), want, rel_tol=1e-9)

    def test_errors(self, device):
        x = torch.rand(1, 3, 8, 8, device=device)
        with pytest.raises(ValueError, match="masked_ssim: 'window' must be a positive odd integer"):
            masked_ssim(x, x, torch.ones(1, 1, 8, 8, device=device), window=4)
