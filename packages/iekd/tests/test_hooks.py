"""FeatureTap on plain, wrapped and model-zoo modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import iekd


def test_captures_named_outputs(device):
    net = iekd.models.resnet8(num_classes=3).to(device)
    x = torch.randn(2, 3, 16, 16, device=device)
    with iekd.FeatureTap(net, ["layer2", "layer3", "layer3.0.bn2"]) as tap:
        net(x)
        assert tap["layer3"].shape == (2, 64, 4, 4)
        assert tap["layer2"].shape == (2, 32, 8, 8)
        torch.testing.assert_close(tap["layer3"], net.forward_features(x))
    assert not tap.active and tap.features == {}


def test_remove_stops_recording(device):
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).to(device)
    tap = iekd.FeatureTap(net, "0")
    tap.remove()
    net(torch.randn(1, 4, device=device))
    assert tap.features == {}
    tap.remove()  # idempotent


def test_features_keep_graph(device):
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1)).to(device)
    with iekd.FeatureTap(net, "0") as tap:
        net(torch.randn(2, 4, device=device))
        tap["0"].sum().backward()
    assert net[0].weight.grad is not None


def test_wrapped_names_and_dataparallel(device):
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).to(device)
    wrapped = nn.DataParallel(net) if device.type == "cuda" else net
    with iekd.FeatureTap(wrapped, ["module.0"]) as tap:
        wrapped(torch.randn(2, 4, device=device))
        assert tap["module.0"].shape == (2, 3)


def test_unknown_layer_lists_close_matches():
    net = iekd.models.resnet8()
    with pytest.raises(
        ValueError,
        match=r"FeatureTap: layer 'layr3' does not exist in CifarResNet.*close matches: \['layer3'",
    ):
        iekd.FeatureTap(net, "layr3")
    with pytest.raises(TypeError, match=r"FeatureTap: 'model' must be a torch.nn.Module"):
        iekd.FeatureTap("net", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicated"):
        iekd.FeatureTap(net, ["layer3", "layer3"])


def test_missing_output_message():
    tap = iekd.FeatureTap(iekd.models.resnet8(), "layer3")
    with pytest.raises(KeyError, match="run a forward pass first"):
        tap["layer3"]
    tap.remove()


def test_non_string_and_empty_layer_names():
    net = iekd.models.resnet8()
    with pytest.raises(TypeError, match=r"FeatureTap: every layer name must be a str; got int"):
        iekd.FeatureTap(net, ["layer3", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"FeatureTap: 'layers' must name at least one submodule; got none"):
        iekd.FeatureTap(net, [])


def test_compile_and_ddp_wrapped_models(device, tmp_path):
    # README: names work before and after wrapping. torch.compile's wrapper (not compiled here: the inner module
    # runs eagerly) and a real DistributedDataParallel wrapper in a 1-process gloo group.
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).to(device)
    x = torch.randn(2, 4, device=device)
    with iekd.FeatureTap(torch.compile(net), ["_orig_mod.0", "1"]) as tap:
        net(x)
        assert tap["_orig_mod.0"].shape == (2, 3) and tap["1"].shape == (2, 3)
    import torch.distributed as dist

    dist.init_process_group(
        "gloo" if device.type == "cpu" else "nccl",
        init_method=f"file://{tmp_path / 'rdv'}",
        rank=0,
        world_size=1,
    )
    try:
        ddp = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
        with iekd.FeatureTap(ddp, ["module.0", "0"]) as tap:
            ddp(x).sum().backward()  # a DDP forward/backward with the hooks installed
            torch.testing.assert_close(tap["module.0"], tap["0"])
            assert tap["0"].shape == (2, 3)
    finally:
        dist.destroy_process_group()
