"""The ModelNet10 weights shipped in the wheel: offline loading, their cards, and the cards' accuracy."""

from __future__ import annotations

import os

import pytest
import torch

import rbfnet
from rbfnet.data import PointCloudFolder

SHIPPED = ("rbfnet_single", "rbfnet_kernelwise", "pointnet")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_offline_with_a_card(name):
    path = rbfnet.models.shipped_weights()[f"{name}-modelnet10"]
    assert os.path.getsize(path) < 3_000_000  # float16 parameters: a few MB for all three
    model = rbfnet.create_model(name, weights="modelnet10")
    assert model.arch == name and model.num_classes == 10
    assert all(p.dtype == torch.float32 for p in model.parameters())  # stored in float16, loaded as float32
    card = rbfnet.load_checkpoint(path)["card"]
    for key in ("data", "recipe", "epochs", "points", "test_overall_acc", "commit", "classes", "seed"):
        assert key in card, key
    assert "ModelNet" in card["data"] and "academic research use" in card["data"]
    assert len(card["classes"]) == 10
    with pytest.raises(ValueError, match=r"conflicts with the checkpoint's num_classes=10"):
        rbfnet.create_model(name, weights="modelnet10", num_classes=40)


def test_no_shipped_weights_for_other_models():
    with pytest.raises(
        ValueError, match=r"pointnet2_ssg: no shipped 'modelnet10' weights for 'pointnet2_ssg'"
    ):
        rbfnet.create_model("pointnet2_ssg", weights="modelnet10")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reproduce_their_card(name, shared_data):
    """The card's overall accuracy on the shared ModelNet10 test split (908 clouds), re-measured."""
    root = os.path.join(shared_data, "modelnet10-pc1024")
    if not os.path.isdir(root):
        pytest.skip(f"{root} not found (SHARED_DATA holds no modelnet10-pc1024)")
    path = rbfnet.models.shipped_weights()[f"{name}-modelnet10"]
    card = rbfnet.load_checkpoint(path)["card"]
    te = PointCloudFolder(root, "test", num_points=card["points"])  # the first points of each file
    assert te.classes == card["classes"]
    model = rbfnet.create_model(name, weights="modelnet10").eval()
    m = rbfnet.evaluate(model, te, batch_size=64)
    assert m["num_samples"] == card["test_num_samples"] == 908
    # the same predictions up to float summation order: at most one cloud of 908 may flip
    assert abs(m["overall_acc"] - card["test_overall_acc"]) <= 1.5 / 908
