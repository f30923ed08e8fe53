"""The ternary ResNet-20 shipped in the wheel (issue 17): offline loading, ternary codes, model-card accuracy."""

from __future__ import annotations

import os
import re

import pytest
import torch

import qnet
from qnet.models import SHIPPED_WEIGHTS, create_model, resnet20_a_ternary, shipped_weights_path

CARD = SHIPPED_WEIGHTS["resnet20_a_ternary"]["cifar10"]
README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_shipped_file_is_small_and_inside_the_package():
    path = shipped_weights_path("resnet20_a_ternary", "cifar10")
    assert os.path.dirname(path).endswith(os.path.join("qnet", "models", "weights"))
    size = os.path.getsize(path)
    assert 20_000 < size < 150_000, size  # "tens of KB": 2-bit codes plus the float first conv, fc and BN


def test_shipped_model_loads_offline_with_ternary_weights():
    net = create_model("resnet20_a_ternary", weights="cifar10")
    assert not net.training
    layers = dict(qnet.quantized_layers(net))
    assert len(layers) == 18  # every block conv; first conv and last linear stay float (the paper's rule)
    assert isinstance(net.conv1, torch.nn.Conv2d) and not isinstance(net.conv1, qnet.QConv2d)
    assert isinstance(net.linear, torch.nn.Linear) and not isinstance(net.linear, qnet.QLinear)
    for name, layer in layers.items():
        vals = layer.weight.detach().abs().unique()
        # a per-layer scale alpha: |w| takes the values {0, alpha} only
        assert len(vals) == 2 and float(vals[0]) == 0.0, (name, vals)
    out = net(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # the builder and the registry give the same model
    same = resnet20_a_ternary(weights="cifar10")
    for (k, a), (_, b) in zip(net.state_dict().items(), same.state_dict().items()):
        assert torch.equal(a, b), k


def test_shipped_weights_bad_input():
    with pytest.raises(ValueError, match="'num_classes' is 10 for weights 'cifar10'; got 100"):
        create_model("resnet20_a_ternary", weights="cifar10", num_classes=100)
    with pytest.raises(FileNotFoundError, match="'weights' must be one of \\['cifar10'\\]"):
        create_model("resnet20_a_ternary", weights="cifar100")
    with pytest.raises(ValueError, match="no shipped weights 'x'"):
        shipped_weights_path("resnet20_a_ternary", "x")


def test_model_card_numbers_match_the_readme():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    acc = 100.0 * CARD["test_correct"] / CARD["test_images"]
    m = re.search(r"shipped ternary ResNet-20: \*\*([0-9.]+) %\*\*", text)
    assert m is not None, "the README model card states the shipped model's accuracy"
    assert float(m.group(1)) == pytest.approx(acc, abs=0.005)
    size = os.path.getsize(shipped_weights_path("resnet20_a_ternary", "cifar10"))
    assert f"{size:,} bytes" in text


def _correct(net, x, y):
    mean = torch.tensor(CARD["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(CARD["std"]).view(1, 3, 1, 1)
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], 500):
            xb = (x[i : i + 500].float() / 255.0 - mean) / std
            correct += int((net(xb).argmax(1) == y[i : i + 500]).sum())
    return correct


@pytest.mark.parametrize(
    "subset",
    [
        "subset",  # every 5th test image: 2,000 images, 200 per class (about 10 CPU-s on one thread)
        pytest.param("full", marks=pytest.mark.slow),  # all 10,000 (about 50 CPU-s on one thread)
    ],
)
def test_shipped_model_reaches_its_model_card_accuracy(cifar_test, subset):
    """The card's count of correct images on the cifar10-jpeg test split (README "Shipped pretrained model")."""
    x, y = cifar_test
    assert x.shape[0] == CARD["test_images"] == 10_000
    net = create_model("resnet20_a_ternary", weights="cifar10")
    if subset == "subset":
        stride = CARD["subset_stride"]
        x, y = x[::stride], y[::stride]
        assert torch.equal(torch.bincount(y), torch.full((10,), 200))  # the archive is sorted by class
        want = CARD["subset_correct"]
    else:
        want = CARD["test_correct"]
    correct = _correct(net, x, y)
    # the card's count, up to a handful of images whose top-2 logits tie within float rounding on another BLAS
    assert abs(correct - want) <= 2, (correct, want)
