"""CIFAR ResNet / WRN families and the registry."""

from __future__ import annotations

import pytest
import torch

import iekd
from iekd.models import create_model, list_models


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_param_counts_match_published():
    # He et al. 2016, Table 6 (CIFAR-10, option A): ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M.
    assert abs(_n_params(iekd.models.resnet20()) - 0.27e6) < 0.01e6
    assert abs(_n_params(iekd.models.resnet56()) - 0.85e6) < 0.01e6
    assert abs(_n_params(iekd.models.resnet110()) - 1.73e6) < 0.02e6
    # Zagoruyko & Komodakis 2016: WRN-16-2 ~0.7M, WRN-40-2 ~2.2M (CIFAR-10 heads).
    assert abs(_n_params(iekd.models.wrn_16_2()) - 0.69e6) < 0.03e6
    assert abs(_n_params(iekd.models.wrn_40_2()) - 2.24e6) < 0.05e6


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "wrn_16_1"])
def test_forward_api(name, device, dtype):
    m = create_model(name, num_classes=5).to(device=device, dtype=dtype)
    x = torch.randn(2, 3, 32, 32, device=device, dtype=dtype)
    assert m(x).shape == (2, 5)
    feat = m.forward_features(x)
    assert feat.shape == (2, m.num_features, 8, 8) and feat.dtype == dtype
    assert m.forward_head(feat, pre_logits=True).shape == (2, m.num_features)
    inter = m.forward_intermediates(x)
    assert [t.shape[1] for t in inter] == [i["num_chs"] for i in m.feature_info]
    torch.testing.assert_close(inter[-1], feat)
    with iekd.FeatureTap(m, [m.feature_layer, m.pre_relu_layer]) as tap:
        m(x)
        torch.testing.assert_close(tap[m.feature_layer], feat)
        # the OFD tap point is the same feature before its last ReLU (and it does go negative)
        pre = tap[m.pre_relu_layer]
        torch.testing.assert_close(torch.relu(pre), feat)
        assert (pre < 0).any()
    bn = dict(m.named_modules())[m.pre_relu_bn]
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.num_features == m.num_features


def test_shortcut_b_and_width():
    a = iekd.models.resnet20()
    b = iekd.models.resnet20(shortcut="B")
    assert _n_params(b) > _n_params(a)
    assert iekd.models.resnet8(base_width=8).num_features == 32


def test_registry():
    assert {"resnet20", "resnet56", "resnet110", "wrn_40_2"} <= set(list_models())
    assert list_models("wrn_16*") == ["wrn_16_1", "wrn_16_2"]
    with pytest.raises(ValueError, match=r"create_model: unknown model 'resnet21'.*resnet20"):
        create_model("resnet21")
    with pytest.raises(ValueError, match="register_model: a model named 'resnet20' is already registered"):
        iekd.models.register_model(iekd.models.resnet20)
    with pytest.raises(ValueError, match="CifarResNet: 'depth' must be 6n \\+ 2"):
        iekd.models.CifarResNet(21)


def test_weights_roundtrip_and_conflict(tmp_path, device):
    m = iekd.models.resnet8(num_classes=7)
    m.train()
    m(torch.randn(4, 3, 16, 16))
    path = tmp_path / "r8.pt"
    iekd.save_checkpoint(path, m, arch="resnet8", config={"num_classes": 7})
    m2 = create_model("resnet8", weights=path).to(device)
    assert m2.num_classes == 7
    m = m.to(device)
    x = torch.randn(2, 3, 16, 16, device=device)
    m.eval(), m2.eval()
    torch.testing.assert_close(m(x), m2(x))
    with pytest.raises(
        ValueError, match="resnet8: argument num_classes=3 conflicts with the checkpoint's num_classes=7"
    ):
        iekd.models.resnet8(weights=path, num_classes=3)
    with pytest.raises(ValueError, match="holds arch 'resnet8'"):
        iekd.models.resnet14(weights=path)
