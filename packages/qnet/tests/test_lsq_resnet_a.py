"""Issue 16: LSQ quantizer (hand-computed forward and gradients), option-A CIFAR ResNets, archive reader."""

from __future__ import annotations

import math
import os

import pytest
import torch

import qnet
from qnet.functional import lsq_quantize
from qnet.models import IMAGENET_MEAN, IMAGENET_STD, CifarResNetA, resnet20_a


class TestLSQ:
    def test_weights_forward_and_gradients_by_hand(self, dtype):
        # ternary {-1, 0, 1}: Q_N = Q_P = 1; s = 0.5; N = 4 -> g = 1 / sqrt(4 * 1) = 0.5
        # x / s = [-1.6, 0.4, 0.52, 6.0] -> clip [-1, 0.4, 0.52, 1] -> round [-1, 0, 1, 1] -> y = s * that
        x = torch.tensor([-0.8, 0.2, 0.26, 3.0], dtype=dtype, requires_grad=True)
        q = qnet.LSQQuantizer("ternary", dtype=dtype)
        with torch.no_grad():
            q.step.fill_(0.5)
        q.initialized.fill_(True)
        y = q(x)
        torch.testing.assert_close(y.detach(), torch.tensor([-0.5, 0.0, 0.5, 0.5], dtype=dtype))
        gy = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=dtype)
        y.backward(gy)
        # dy/dx: 1 inside [-Q_N, Q_P] (elements 1, 2), 0 outside (elements 0, 3)
        torch.testing.assert_close(x.grad, torch.tensor([0.0, 2.0, 3.0, 0.0], dtype=dtype))
        # dy/ds = g * sum gy * [-Q_N, round(v) - v, round(v) - v, Q_P]
        #       = 0.5 * (1 * -1 + 2 * (0 - 0.4) + 3 * (1 - 0.52) + 4 * 1) = 0.5 * 3.64 = 1.82
        torch.testing.assert_close(q.step.grad, torch.tensor(1.82, dtype=dtype))

    def test_activations_forward_and_gradients_by_hand(self):
        # uint2 {0..3}: Q_N = 0, Q_P = 3; batch 2 of 3 features: N_F = 3 -> g = 1 / sqrt(3 * 3) = 1 / 3
        # x / 0.4 = [[-0.25, 1.25, 3.75], [1.75, 5, 0.125]] -> clip/round [[0, 1, 3], [2, 3, 0]]
        x = torch.tensor([[-0.1, 0.5, 1.5], [0.7, 2.0, 0.05]], dtype=torch.float64, requires_grad=True)
        q = qnet.LSQQuantizer("uint2", dtype=torch.float64)
        with torch.no_grad():
            q.step.fill_(0.4)
        q.initialized.fill_(True)
        y = q(x)
        torch.testing.assert_close(
            y.detach(), torch.tensor([[0.0, 0.4, 1.2], [0.8, 1.2, 0.0]], dtype=torch.float64)
        )
        y.sum().backward()
        torch.testing.assert_close(
            x.grad, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]], dtype=torch.float64)
        )
        # ds = (0 + (1 - 1.25) + 3 + (2 - 1.75) + 3 + (0 - 0.125)) / 3 = 5.875 / 3
        torch.testing.assert_close(q.step.grad, torch.tensor(5.875 / 3, dtype=torch.float64))

    def test_init_is_two_mean_abs_over_sqrt_qp(self):
        w = torch.tensor([-3.0, 1.0, 0.0, 2.0])  # mean |w| = 1.5
        q = qnet.LSQQuantizer("uint2")  # Q_P = 3
        q.init_from(w.abs())
        assert math.isclose(float(q.step.detach()), 2 * 1.5 / math.sqrt(3), rel_tol=1e-6)

    def test_functional_grad_scale_only_scales_step_gradient(self):
        x = torch.tensor([0.3, -0.9], requires_grad=True)
        s = torch.tensor(0.5, requires_grad=True)
        y = lsq_quantize(x, s, torch.tensor([-1.0, 0.0, 1.0]), grad_scale=0.25)
        torch.testing.assert_close(y.detach(), torch.tensor([0.5, -0.5]))
        y.sum().backward()
        # v = [0.6, -1.8]: ds = 0.25 * ((1 - 0.6) + (-1)) = -0.15; dx = [1, 0]
        torch.testing.assert_close(s.grad, torch.tensor(-0.15))
        torch.testing.assert_close(x.grad, torch.tensor([1.0, 0.0]))

    def test_freeze_export_matches_forward(self, tmp_path):
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
        q = qnet.quantize(net, weight_levels="ternary", method="lsq", keep_first_last=False).eval()
        x = torch.randn(2, 3, 8, 8)
        before = q(x)
        qnet.export(q, tmp_path / "m.safetensors")
        loaded = qnet.load(tmp_path / "m.safetensors", net)
        torch.testing.assert_close(loaded(x), before)

    @pytest.mark.parametrize(
        ("call", "exc", "match"),
        [
            (
                lambda: lsq_quantize(torch.ones(2), torch.ones(2), torch.tensor([0.0, 1.0])),
                ValueError,
                r"lsq_quantize: 'step' must be a one-element",
            ),
            (
                lambda: lsq_quantize(
                    torch.ones(2), torch.tensor(1.0), torch.tensor([0.0, 1.0]), grad_scale=0.0
                ),
                ValueError,
                r"'grad_scale' must be a float > 0; got 0\.0",
            ),
            (
                lambda: lsq_quantize(
                    torch.tensor([float("nan")]),
                    torch.tensor(1.0),
                    torch.tensor([0.0, 1.0]),
                    check_finite=True,
                ),
                ValueError,
                r"lsq_quantize: 'x' must be finite",
            ),
            (
                lambda: qnet.LSQQuantizer("ternary").init_from(torch.zeros(3)),
                ValueError,
                r"LSQQuantizer.init_from: 'x' is all zero",
            ),
            (
                lambda: qnet.quantize(torch.nn.Linear(2, 2), method="lsqq"),
                ValueError,
                r"quantize: 'method' must be 'qn', 'ste' or 'lsq'; got 'lsqq'",
            ),
        ],
    )
    def test_bad_input(self, call, exc, match):
        with pytest.raises(exc, match=match):
            call()


class TestResNetA:
    def test_shapes_and_no_shortcut_params(self):
        m = CifarResNetA(20)
        assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        # 269,722 trainable parameters (README of the teachers' folder)
        assert sum(p.numel() for p in m.parameters()) == 269_722
        assert len(m.state_dict()) == 97 + 19  # 97 file entries + 19 BatchNorm num_batches_tracked

    def test_bad_depth(self):
        with pytest.raises(ValueError, match=r"CifarResNetA: 'depth' must be 6n \+ 2.*got 21"):
            CifarResNetA(21)
        with pytest.raises(ValueError, match=r"resnet20_a: 'depth' is fixed to 20; got 32"):
            resnet20_a(depth=32)

    def test_option_a_shortcut_by_hand(self):
        from qnet.models.resnet_a import _ShortcutA

        x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
        y = _ShortcutA(8)(x)
        assert y.shape == (2, 32, 2, 2)
        assert torch.equal(y[:, :8], torch.zeros(2, 8, 2, 2)) and torch.equal(
            y[:, 24:], torch.zeros(2, 8, 2, 2)
        )
        assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])

    def test_garbage_weights(self, tmp_path):
        p = tmp_path / "bad.th"
        p.write_bytes(b"\x80\x02garbage")
        with pytest.raises(
            ValueError, match=r"resnet20_a: '.*bad\.th' is not a valid qnet checkpoint \(truncated"
        ):
            resnet20_a(weights=p)

    def test_pretrained_strict_load_and_accuracy(self, shared_data):
        teachers = os.path.join(shared_data, "cifar10-resnet-teachers")
        test_tar = os.path.join(shared_data, "cifar10-jpeg", "test.tar.gz")
        files = (
            sorted(f for f in os.listdir(teachers) if f.startswith("resnet20-"))
            if os.path.isdir(teachers)
            else []
        )
        if not files or not os.path.isfile(test_tar):
            pytest.skip("cifar10-resnet-teachers / cifar10-jpeg not under SHARED_DATA")
        m = resnet20_a(weights=os.path.join(teachers, files[0])).eval()  # strict=True inside
        x, y, classes = qnet.data.read_image_archive(test_tar)
        assert x.shape == (10_000, 3, 32, 32) and x.dtype == torch.uint8 and classes[0] == "airplane"
        assert torch.equal(torch.bincount(y), torch.full((10,), 1000))
        idx = torch.arange(0, 10_000, 10)  # 1000 images, 100 per class
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        with torch.no_grad():
            pred = torch.cat([m((x[i].float() / 255 - mean) / std).argmax(1) for i in idx.split(500)])
        acc = float((pred == y[idx]).float().mean())
        # the teachers' README measured 81.03 % on all 10,000 JPEG test images with an independent
        # implementation; 1000 of them (100 per class) give it within ~3 points
        assert 0.77 < acc < 0.85, acc
