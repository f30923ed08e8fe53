"""Losses of iekd.functional against hand-computed / independent (numpy) references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import iekd.functional as IF


def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class TestFactorDistance:
    def test_hand_values(self, device, dtype):
        # n([3,4]) = [0.6, 0.8], n([4,3]) = [0.8, 0.6]; |diff| = [0.2, 0.2].
        x = torch.tensor([[3.0, 4.0]], device=device, dtype=dtype)
        y = torch.tensor([[4.0, 3.0]], device=device, dtype=dtype)
        tol = {"atol": 1e-6, "rtol": 0}
        torch.testing.assert_close(
            IF.factor_distance(x, y), torch.tensor(0.2, device=device, dtype=dtype), **tol
        )
        # batchmean: per-sample L1 norm = 0.4; p=2 mean: sqrt((0.04 + 0.04) / 2) = 0.2; p=2 batchmean: sqrt(0.08).
        torch.testing.assert_close(IF.factor_distance(x, y, reduction="batchmean").item(), 0.4, **tol)
        torch.testing.assert_close(IF.factor_distance(x, y, p=2).item(), 0.2, **tol)
        torch.testing.assert_close(
            IF.factor_distance(x, y, p=2, reduction="batchmean").item(), math.sqrt(0.08), **tol
        )
        torch.testing.assert_close(
            IF.factor_distance(torch.cat([x, x]), torch.cat([y, y]), reduction="sum").item(), 0.8, **tol
        )

    def test_against_numpy(self, device):
        # Independent numpy implementation of the authors' formula: sum |n(x) - n(y)| / (B * D).
        x = torch.randn(3, 4, 2, 2, dtype=torch.float64, device=device)
        y = torch.randn(3, 4, 2, 2, dtype=torch.float64, device=device)
        xa, ya = x.cpu().numpy().reshape(3, -1), y.cpu().numpy().reshape(3, -1)
        nx = xa / np.linalg.norm(xa, axis=1, keepdims=True)
        ny = ya / np.linalg.norm(ya, axis=1, keepdims=True)
        ref = np.abs(nx - ny).sum() / nx.size
        assert abs(IF.factor_distance(x, y).item() - ref) < 1e-12
        # batchmean with p=1 is exactly D times the mean reduction.
        assert abs(IF.factor_distance(x, y, reduction="batchmean").item() - 16 * ref) < 1e-10

    def test_scale_invariant_and_zero(self, device):
        x = torch.randn(2, 3, 4, 4, device=device)
        assert IF.factor_distance(x, 5 * x).item() < 1e-6

    def test_gradcheck(self, device):
        x = torch.randn(2, 3, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
        y = torch.randn(2, 3, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
        for p in (1, 2):
            for red in ("mean", "batchmean", "sum"):
                assert torch.autograd.gradcheck(
                    lambda a, b, p=p, red=red: IF.factor_distance(a, b, p=p, reduction=red), (x, y)
                )

    def test_errors(self, device):
        x = torch.randn(2, 3, device=device)
        with pytest.raises(ValueError, match=r"factor_distance: 'x' and 'y' must have the same shape"):
            IF.factor_distance(x, torch.randn(2, 4, device=device))
        with pytest.raises(ValueError, match="factor_distance: 'p' must be 1 or 2"):
            IF.factor_distance(x, x, p=3)
        with pytest.raises(ValueError, match="factor_distance: 'reduction'"):
            IF.factor_distance(x, x, reduction="none")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"factor_distance: 'x' must be a torch.Tensor"):
            IF.factor_distance([1.0], x)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="floating-point"):
            IF.factor_distance(x.long(), x.long())
        with pytest.raises(ValueError, match="must share a dtype"):
            IF.factor_distance(x, x.double())


class TestInheritExploreFunctional:
    def test_signs_and_relation(self, device, dtype):
        s = torch.randn(4, 3, 2, 2, device=device, dtype=dtype)
        t = torch.randn(4, 3, 2, 2, device=device, dtype=dtype)
        inh = IF.inheritance_loss(s, t)
        exp = IF.exploration_loss(s, t)
        assert inh.item() > 0 and exp.item() < 0
        torch.testing.assert_close(inh, -exp)
        torch.testing.assert_close(IF.factor_transfer_loss(s, t), inh)
        assert inh.dtype == dtype and inh.device.type == device.type

    def test_teacher_gets_no_gradient(self, device):
        s = torch.randn(2, 3, 2, 2, device=device, requires_grad=True)
        t = torch.randn(2, 3, 2, 2, device=device, requires_grad=True)
        (IF.inheritance_loss(s, t) + IF.exploration_loss(s, t) + IF.factor_transfer_loss(s, t)).backward()
        assert t.grad is None and s.grad is not None

    def test_gradcheck(self, device):
        s = torch.randn(2, 2, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
        t = torch.randn(2, 2, 2, 2, dtype=torch.float64, device=device)
        assert torch.autograd.gradcheck(lambda a: IF.inheritance_loss(a, t), (s,))
        assert torch.autograd.gradcheck(lambda a: IF.exploration_loss(a, t, p=2), (s,))

    def test_errors_name_function(self, device):
        a = torch.randn(2, 3, 2, 2, device=device)
        with pytest.raises(
            ValueError, match=r"exploration_loss: 'student_factor' and 'teacher_factor'.*\(2, 3, 2, 2\)"
        ):
            IF.exploration_loss(a, torch.randn(2, 4, 2, 2, device=device))
        with pytest.raises(ValueError, match="inheritance_loss: 'student_factor' must have shape"):
            IF.inheritance_loss(torch.randn(3, device=device), torch.randn(3, device=device))


class TestReconstruction:
    def test_hand_values(self, device):
        r = torch.zeros(1, 2, device=device)
        t = torch.tensor([[1.0, -3.0]], device=device)
        assert IF.reconstruction_loss(r, t).item() == pytest.approx(2.0)  # (1 + 3) / 2
        assert IF.reconstruction_loss(r, t, p=2).item() == pytest.approx(5.0)  # (1 + 9) / 2

    def test_target_detached(self, device):
        r = torch.randn(2, 3, device=device, requires_grad=True)
        t = torch.randn(2, 3, device=device, requires_grad=True)
        IF.reconstruction_loss(r, t).backward()
        assert t.grad is None

    def test_errors(self, device):
        with pytest.raises(ValueError, match="reconstruction_loss: 'p' must be 1 or 2"):
            IF.reconstruction_loss(torch.zeros(1, 2, device=device), torch.zeros(1, 2, device=device), p=0)


class TestKD:
    def test_against_numpy(self, device, dtype):
        # T^2 * mean_b sum_k p_t (log p_t - log p_s), softmax at temperature T, computed in numpy.
        zs = torch.randn(5, 7, dtype=torch.float64)
        zt = torch.randn(5, 7, dtype=torch.float64)
        temp = 3.0
        ps, pt = _np_softmax(zs.numpy() / temp), _np_softmax(zt.numpy() / temp)
        ref = temp**2 * (pt * (np.log(pt) - np.log(ps))).sum(1).mean()
        got = IF.kd_loss(zs.to(device, dtype), zt.to(device, dtype), temperature=temp)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert abs(got.item() - ref) < tol * max(1.0, ref)

    def test_gradcheck_and_detach(self, device):
        zs = torch.randn(3, 4, dtype=torch.float64, device=device, requires_grad=True)
        zt = torch.randn(3, 4, dtype=torch.float64, device=device, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a: IF.kd_loss(a, zt, temperature=2.0), (zs,))
        IF.kd_loss(zs, zt).backward()
        assert zt.grad is None

    def test_errors(self, device):
        z = torch.randn(3, 4, device=device)
        with pytest.raises(ValueError, match="kd_loss: 'temperature' must be > 0"):
            IF.kd_loss(z, z, temperature=0.0)
        with pytest.raises(ValueError, match=r"kd_loss: 'teacher_logits' must have shape \(B, K\) with K=4"):
            IF.kd_loss(z, torch.randn(3, 5, device=device))


class TestAttention:
    def test_hand_map(self, device):
        # channel 0 = [1, 2], channel 1 = [3, 0]: mean_c f^2 = [5, 2] -> / sqrt(29).
        f = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]], device=device)
        q = IF.attention_map(f)
        torch.testing.assert_close(q, torch.tensor([[5.0, 2.0]], device=device) / math.sqrt(29))

    def test_loss_hand(self, device):
        # Q_s = [1, 0], Q_t = [0, 1]: mean((1)^2, (-1)^2) = 1.
        fs = torch.tensor([[[[1.0, 0.0]]]], device=device)
        ft = torch.tensor([[[[0.0, 1.0]], [[0.0, 2.0]]]], device=device)
        assert IF.attention_transfer_loss(fs, ft).item() == pytest.approx(1.0)

    def test_gradcheck(self, device):
        fs = torch.randn(2, 3, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
        ft = torch.randn(2, 5, 2, 2, dtype=torch.float64, device=device)
        assert torch.autograd.gradcheck(lambda a: IF.attention_transfer_loss(a, ft), (fs,))

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"attention_transfer_loss: 'teacher_feature' must have shape"):
            IF.attention_transfer_loss(
                torch.randn(2, 3, 4, 4, device=device), torch.randn(2, 3, 2, 2, device=device)
            )


class TestDML:
    def test_against_numpy(self, device):
        z = torch.randn(4, 6, dtype=torch.float64)
        zp = torch.randn(4, 6, dtype=torch.float64)
        p, q = _np_softmax(z.numpy()), _np_softmax(zp.numpy())
        ref = (q * (np.log(q) - np.log(p))).sum(1).mean()  # KL(p_peer || p)
        assert abs(IF.dml_loss(z.to(device), zp.to(device)).item() - ref) < 1e-12

    def test_detach_peer(self, device):
        z = torch.randn(2, 3, device=device, requires_grad=True)
        zp = torch.randn(2, 3, device=device, requires_grad=True)
        IF.dml_loss(z, zp).backward()
        assert zp.grad is None
        IF.dml_loss(z, zp, detach_peer=False).backward()
        assert zp.grad is not None


class TestSplit:
    def test_natural_and_index(self, device):
        f = torch.arange(6.0, device=device).view(1, 6, 1, 1)
        a, b = IF.split_channels(f, 2)
        assert a.flatten().tolist() == [0.0, 1.0] and b.flatten().tolist() == [2.0, 3.0, 4.0, 5.0]
        idx = torch.tensor([5, 0, 1, 2, 3, 4])
        a, b = IF.split_channels(f, 1, index=idx)
        assert a.flatten().tolist() == [5.0] and b.flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]

    def test_errors(self, device):
        f = torch.zeros(1, 4, 2, 2, device=device)
        with pytest.raises(ValueError, match=r"split_channels: 'inherit_channels' must lie in \[1, 3\]"):
            IF.split_channels(f, 4)
        with pytest.raises(ValueError, match=r"split_channels: 'index' must have shape \(4,\)"):
            IF.split_channels(f, 2, index=torch.arange(3))
        with pytest.raises(ValueError, match=r"split_channels: 'feature' must have shape \(B, C, H, W\)"):
            IF.split_channels(torch.zeros(4, 2, device=device), 1)


class TestOFD:
    """OFD (Heo et al., 2019): Gaussian margin, margin ReLU, partial L2, the combined loss."""

    def test_margin_matches_scipy_truncated_normal(self, device, dtype):
        from scipy.stats import norm, truncnorm

        gamma = np.array([1.0, 2.0, 0.5, 1.0, -1.5])  # |gamma| is the std (a negative BN weight flips sign)
        beta = np.array([0.0, 1.0, -0.3, 5.0, 0.7])
        got = IF.ofd_margin(
            torch.tensor(gamma, device=device, dtype=dtype), torch.tensor(beta, device=device, dtype=dtype)
        )
        for c, (g, b) in enumerate(zip(np.abs(gamma), beta)):
            if norm.cdf(-b / g) > 1e-3:  # mean of N(b, g^2) truncated to x < 0, by scipy
                ref = truncnorm(a=-np.inf, b=(0.0 - b) / g, loc=b, scale=g).mean()
            else:  # fewer than 0.1% negative responses: the OFD code's -3 * std
                ref = -3.0 * g
            assert abs(got[c].item() - ref) < (1e-5 if dtype == torch.float32 else 1e-10), c
        assert got[3].item() == pytest.approx(-3.0)  # beta / gamma = 5: the fallback branch
        assert got.device == device and got.dtype == dtype

    def test_margin_zero_std_and_errors(self, device):
        # std 0: the response is the constant beta; negative -> beta, positive -> no negative response -> 0.
        got = IF.ofd_margin(torch.zeros(2, device=device), torch.tensor([-0.5, 0.5], device=device))
        assert got.tolist() == [-0.5, 0.0]
        with pytest.raises(ValueError, match=r"ofd_margin: 'bn_bias' must have shape \(C\) with C=3"):
            IF.ofd_margin(torch.ones(3, device=device), torch.ones(2, device=device))
        with pytest.raises(
            TypeError, match=r"ofd_margin: 'bn_weight' must have a floating-point dtype; got torch\.int64"
        ):
            IF.ofd_margin(torch.ones(3, dtype=torch.long, device=device), torch.ones(3, device=device))

    def test_margin_from_features_hand_values(self, device):
        # channel 0 holds -1, -3, 2, 0 -> mean of the negatives -2; channel 1 holds no negative value -> 0.
        f = torch.tensor([[[[-1.0, -3.0]], [[2.0, 1.0]]], [[[2.0, 0.0]], [[0.0, 4.0]]]], device=device)
        assert IF.ofd_margin_from_features(f).tolist() == [-2.0, 0.0]
        with pytest.raises(
            ValueError, match=r"ofd_margin_from_features: 'feature' must have shape \(B, C, H, W\)"
        ):
            IF.ofd_margin_from_features(torch.zeros(2, 3, device=device))

    def test_margin_relu(self, device, dtype):
        f = torch.tensor([[[[-2.0, 0.5]], [[-0.25, -4.0]]]], device=device, dtype=dtype)
        m = torch.tensor([-1.0, -0.5], device=device, dtype=dtype)
        assert IF.margin_relu(f, m).tolist() == [[[[-1.0, 0.5]], [[-0.25, -0.5]]]]
        with pytest.raises(ValueError, match=r"margin_relu: 'margin' must have shape \(C\) with C=2"):
            IF.margin_relu(f, torch.zeros(3, device=device, dtype=dtype))
        with pytest.raises(ValueError, match="margin_relu: 'margin' must share the feature's dtype"):
            IF.margin_relu(f, m.to(torch.float16))

    def test_partial_l2_hand_values(self, device, dtype):
        # position 0: S=-3 <= T=-2 <= 0 -> skipped; position 1: S=-1 > T=-2 -> 1; position 2: T=1 > 0 -> 1.
        s = torch.tensor([[-3.0, -1.0, 2.0], [0.0, 0.0, 0.0]], device=device, dtype=dtype)
        t = torch.tensor([[-2.0, -2.0, 1.0], [1.0, -1.0, -1.0]], device=device, dtype=dtype)
        # sample 2: T=1 > 0 -> 1; S=0 > T=-1 twice -> 1 + 1. Total 2 + 3 = 5 over B=2 samples, 6 elements.
        assert IF.partial_l2_loss(s, t).item() == pytest.approx(2.5)
        assert IF.partial_l2_loss(s, t, reduction="sum").item() == pytest.approx(5.0)
        assert IF.partial_l2_loss(s, t, reduction="mean").item() == pytest.approx(5.0 / 6)
        # normalize: n([3, 4]) = [0.6, 0.8], n([0, -2]) = [0, -1]; 0.6 > 0 -> 0.36; 0.8 > -1 -> 3.24.
        a = torch.tensor([[3.0, 4.0]], device=device, dtype=dtype)
        b = torch.tensor([[0.0, -2.0]], device=device, dtype=dtype)
        assert IF.partial_l2_loss(a, b, normalize=True).item() == pytest.approx(3.6)
        with pytest.raises(ValueError, match="partial_l2_loss: 'reduction' must be one of"):
            IF.partial_l2_loss(s, t, reduction="none")  # type: ignore[arg-type]
        with pytest.raises(
            ValueError, match="partial_l2_loss: 'student' and 'target' must have the same shape"
        ):
            IF.partial_l2_loss(s, t[:, :2])

    def test_ofd_loss_matches_numpy(self, device):
        g = torch.Generator().manual_seed(3)
        s = torch.randn(3, 4, 2, 5, generator=g, dtype=torch.float64)
        t = torch.randn(3, 4, 2, 5, generator=g, dtype=torch.float64)
        m = -torch.rand(4, generator=g, dtype=torch.float64)
        # independent numpy: target = max(t, m_c); keep where s > target or target > 0; sum of squares / B
        sn, tn, mn = s.numpy(), t.numpy(), m.numpy()
        tgt = np.maximum(tn, mn[None, :, None, None])
        keep = (sn > tgt) | (tgt > 0)
        ref = (((sn - tgt) ** 2) * keep).sum() / 3
        got = IF.ofd_loss(s.to(device), t.to(device), m.to(device))
        assert abs(got.item() - ref) < 1e-10

    def test_gradcheck_and_teacher_gets_no_gradient(self, device):
        g = torch.Generator().manual_seed(4)
        s = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
        t = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
        m = torch.tensor([-0.5, -0.2, -1.0], dtype=torch.float64, device=device)
        assert torch.autograd.gradcheck(lambda a: IF.ofd_loss(a, t, m), (s,))
        assert torch.autograd.gradcheck(lambda a: IF.partial_l2_loss(a, t, normalize=True), (s,))
        IF.ofd_loss(s, t, m).backward()
        assert t.grad is None and s.grad is not None

    def test_normalized_partial_l2_is_bounded_and_scale_free(self, device):
        # The native IE-OFD exploration term is -partial_l2(normalize=True): it must not fall without bound when
        # the student simply inflates its features. Positive scaling leaves the normalised distance unchanged,
        # and per sample it is at most ||a - b||^2 <= 4 for unit vectors a, b.
        g = torch.Generator().manual_seed(5)
        s = torch.randn(3, 4, 2, 2, generator=g).to(device)
        t = torch.randn(3, 4, 2, 2, generator=g).to(device)
        base = IF.partial_l2_loss(s, t, normalize=True)
        torch.testing.assert_close(IF.partial_l2_loss(1000.0 * s, t, normalize=True), base)
        assert IF.partial_l2_loss(s, -s, normalize=True, reduction="batchmean").item() <= 4.0 + 1e-5
        assert (
            IF.partial_l2_loss(1000.0 * s, t).item() > 100 * IF.partial_l2_loss(s, t).item()
        )  # unnormalised grows


class TestRemainingGradchecks:
    """float64 gradcheck of the losses not covered above (audit, issue 3: every loss gradchecked)."""

    def test_dml_reconstruction_factor_transfer_attention_map(self, device):
        g = torch.Generator().manual_seed(11)
        z = torch.randn(3, 4, generator=g, dtype=torch.float64).to(device).requires_grad_()
        zp = torch.randn(3, 4, generator=g, dtype=torch.float64).to(device).requires_grad_()
        assert torch.autograd.gradcheck(
            lambda a, b: IF.dml_loss(a, b, temperature=2.0, detach_peer=False), (z, zp)
        )
        r = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
        t = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64).to(device)
        for p in (1, 2):
            assert torch.autograd.gradcheck(lambda a, p=p: IF.reconstruction_loss(a, t, p=p), (r,))
            assert torch.autograd.gradcheck(lambda a, p=p: IF.factor_transfer_loss(a, t, p=p), (r,))
        assert torch.autograd.gradcheck(lambda a: IF.attention_map(a, p=2), (r,))
