"""Issue 17: BatchNorm folding for deployment."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import qnet
from qnet.models import CifarResNetA


def _randomise_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


class TestFoldBatchnorm:
    def test_resnet_outputs_unchanged(self):
        net = _randomise_bn(CifarResNetA(20))
        x = torch.randn(4, 3, 32, 32)
        folded = qnet.fold_batchnorm(net)
        assert not [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
        assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 19  # original untouched
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)

    def test_one_pair_by_hand(self):
        conv = nn.Conv2d(1, 1, 1, bias=False)
        conv.weight.data.fill_(2.0)
        bn = nn.BatchNorm2d(1, eps=0.0)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(4.0)
        bn.weight.data.fill_(3.0)
        bn.bias.data.fill_(0.5)
        folded = qnet.fold_batchnorm(nn.Sequential(conv, bn).eval())
        # w' = 2 * 3 / 2 = 3; b' = (0 - 1) * 3 / 2 + 0.5 = -1
        assert float(folded[0].weight) == 3.0 and float(folded[0].bias) == -1.0

    def test_conv_with_two_users_is_not_folded(self):
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(2, 2, 1)
                self.bn = nn.BatchNorm2d(2)

            def forward(self, x):
                y = self.conv(x)
                return self.bn(y) + y

        out = qnet.fold_batchnorm(Two().eval())
        assert isinstance(out.bn, nn.BatchNorm2d)

    def test_quantized_model_refused(self):
        net = nn.Sequential(
            nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2)
        )
        q = qnet.quantize(net, weight_levels="ternary", keep_first_last=False)
        with pytest.raises(
            ValueError, match=r"fold_batchnorm: '0' is a QConv2d; fold the float model before"
        ):
            qnet.fold_batchnorm(q)

    def test_not_a_module(self):
        with pytest.raises(TypeError, match=r"fold_batchnorm: 'model' must be an nn.Module; got int"):
            qnet.fold_batchnorm(3)
