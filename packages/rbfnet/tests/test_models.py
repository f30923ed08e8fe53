"""Classifiers: invariances, chunked inference, parameter counts, registry and checkpoints."""

from __future__ import annotations

import pytest
import torch

import rbfnet
from rbfnet import PointNet, PointNet2SSG, RBFNet, count_parameters, create_model, list_models

SMALL = {"num_kernels": 16, "mlp": (8, 16), "head": (16,)}


def _cloud(device, b=3, n=64):
    return torch.rand(b, n, 3, device=device) * 2 - 1


def _normals(x):
    return torch.nn.functional.normalize(torch.randn_like(x), dim=-1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"scales": (0.5, 1.0, 2.0)},
        {"aggregation": "kernelwise"},
        {"aggregation": "kernelwise", "kernel_pool": "sum"},
        {"use_normals": True},
        {"use_normals": True, "normals_mode": "concat"},
        {"kernel": "inverse_multiquadric"},
    ],
)
def test_rbfnet_permutation_and_batch_invariance(device, kwargs):
    net = RBFNet(5, **SMALL, **kwargs, device=device).eval()
    x = _cloud(device)
    n = _normals(x) if net.uses_normals else None
    perm = torch.randperm(x.shape[1], device=device)
    with torch.no_grad():
        y = net(x, n)
        y_perm = net(x[:, perm], None if n is None else n[:, perm])
        y_one = net(x[1:2], None if n is None else n[1:2])
    assert y.shape == (3, 5)
    torch.testing.assert_close(y_perm, y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_one, y[1:2], atol=1e-5, rtol=1e-5)


def test_rbfnet_point_count_independence(device):
    # Max pooling: a cloud and the same cloud with every point duplicated (2N points) give the same logits;
    # any N is accepted.
    net = RBFNet(4, **SMALL, device=device).eval()
    x = _cloud(device, n=50)
    with torch.no_grad():
        torch.testing.assert_close(net(torch.cat([x, x], 1)), net(x), atol=1e-5, rtol=1e-5)
        assert net(_cloud(device, n=7)).shape == (3, 4)


def test_rbfnet_chunked_eval_equals_dense(device):
    net = RBFNet(4, **SMALL, chunk_size=13, device=device).eval()
    x = _cloud(device, n=100)
    with torch.no_grad():
        chunked = net(x)
        net.chunk_size = None
        dense = net(x)
    torch.testing.assert_close(chunked, dense, atol=1e-5, rtol=1e-5)


def test_rbfnet_trains_centres_and_widths(device):
    net = RBFNet(3, **SMALL, device=device).train()
    loss = torch.nn.functional.cross_entropy(net(_cloud(device)), torch.tensor([0, 1, 2], device=device))
    loss.backward()
    layer = net.rbf[0]
    assert float(layer.centers.grad.abs().sum()) > 0 and float(layer.log_widths.grad.abs().sum()) > 0


def test_parameter_counts_default_models():
    # Counted by hand from the layer widths (conv/linear without bias before BN; BN has 2 params/channel):
    # RBFNet M=300: kernels 300*3 + 300 = 1200; MLP 300*16+32 + 16*128+256 + 128*1024+2048 = 140256;
    # head 1024*512+1024 + 512*256+512 + 256*10+10 = 659466 -> 800922.
    # PointNet vanilla: MLP 3*64+128 + 2*(64*64+128) + 64*128+256 + 128*1024+2048 = 150336 -> 809802.
    # PointNet++ SSG: SA1 12992 + SA2 (131 in) 66944 + SA3 (259 in) 725248 = 805184 -> 1464650.
    head = 1024 * 512 + 1024 + 512 * 256 + 512 + 256 * 10 + 10
    assert count_parameters(RBFNet(10)) == 1200 + 140256 + head == 800922
    assert count_parameters(PointNet(10)) == 150336 + head == 809802
    assert count_parameters(PointNet2SSG(10)) == 805184 + head == 1464650
    # Variants, by hand from the same widths:
    # kernel-wise: kernels 1200 + BN(300) 600 + head from 300: 300*512+1024 + 512*256+512 + 2570 = 288778.
    assert count_parameters(RBFNet(10, aggregation="kernelwise")) == 1200 + 600 + 288778 == 290578
    # multi-scale: 3 x 1200 kernels; the MLP's first layer sees 900 channels: 900*16+32 = 14432 (not 4832).
    assert count_parameters(RBFNet(10, scales=(0.5, 1.0, 2.0))) == 3600 + 140256 - 4832 + 14432 + head
    # normals as 6-D kernels: 300*6 + 300 = 2100; normals concatenated: first MLP layer 303*16+32 = 4880.
    assert count_parameters(RBFNet(10, use_normals=True)) == 2100 + 140256 + head == 801822
    concat = RBFNet(10, use_normals=True, normals_mode="concat")
    assert count_parameters(concat) == 1200 + 140256 - 4832 + 4880 + head == 800970
    # fixed kernels: centres and widths are not trained, but still stored
    fixed = RBFNet(10, learn_centers=False, learn_widths=False)
    assert count_parameters(fixed) == 800922 - 1200
    assert count_parameters(fixed, trainable_only=False) == 800922
    # the registry builds the same models, and the paper's "far fewer parameters" comparison holds in size:
    # the single-layer RBFNet has 0.55x the parameters of PointNet++ SSG
    assert count_parameters(create_model("rbfnet_multiscale", num_classes=10)) == 812922
    assert count_parameters(create_model("pointnet2_ssg", num_classes=10)) == 1464650
    assert 800922 / 1464650 == pytest.approx(0.547, abs=1e-3)


def test_baselines_forward(device):
    x = _cloud(device, b=2, n=128)
    for net in (
        PointNet(6, mlp=(8, 16), head=(8,), device=device),
        PointNet2SSG(
            6, sa1=(32, 0.4, 8), sa2=(8, 0.8, 8), mlps=((8,), (8,), (16,)), head=(8,), device=device
        ),
        PointNet2SSG(
            6, use_normals=True, sa1=(32, 0.4, 8), sa2=(8, 0.8, 8), mlps=((8,), (8,), (16,)), device=device
        ),
    ):
        net.eval()
        n = _normals(x) if net.uses_normals else None
        with torch.no_grad():
            y = net(x, n)
            perm = torch.randperm(128, device=device)
            yp = net(x[:, perm], None if n is None else n[:, perm])
        assert y.shape == (2, 6)
        if isinstance(net, PointNet):  # FPS starts at index 0, so PointNet++ depends on the order
            torch.testing.assert_close(yp, y, atol=1e-5, rtol=1e-5)


def test_bad_clouds_raise(device):
    net = RBFNet(3, **SMALL, device=device)
    with pytest.raises(ValueError, match=r"RBFNet.forward_features: 'points' must have last dimension 3"):
        net(torch.rand(2, 10, 4, device=device))
    with pytest.raises(ValueError, match=r"RBFNet\.forward_features: 'points' must hold at least one point"):
        net(torch.rand(2, 0, 3, device=device))
    bad = torch.rand(2, 10, 3, device=device)
    bad[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"RBFNet\.forward_features: 'points' must be finite"):
        net(bad)
    with pytest.raises(
        ValueError, match=r"RBFNet\.forward_features: this model was built with use_normals=True"
    ):
        RBFNet(3, **SMALL, use_normals=True, device=device)(torch.rand(2, 10, 3, device=device))
    nm = RBFNet(3, **SMALL, use_normals=True, device=device)
    pts = torch.rand(2, 10, 3, device=device)
    with pytest.raises(
        ValueError, match=r"RBFNet\.forward_features: 'normals' must have shape \(B, N, D\) with N=10"
    ):
        nm(pts, torch.rand(2, 9, 3, device=device))  # one normal short
    bad_n = _normals(pts)
    bad_n[0, 0, 1] = float("inf")
    with pytest.raises(ValueError, match=r"RBFNet\.forward_features: 'normals' must be finite"):
        nm(pts, bad_n)
    with pytest.raises(ValueError, match=r"PointNet\.forward_features: 'points' must have last dimension 3"):
        PointNet(3, device=device)(torch.rand(2, 10, 2, device=device))
    with pytest.raises(ValueError, match="RBFNet: normals_mode='concat' needs aggregation='pointwise'"):
        RBFNet(3, aggregation="kernelwise", use_normals=True, normals_mode="concat")
    with pytest.raises(ValueError, match="RBFNet: 'num_classes' must be >= 2; got 1"):
        RBFNet(1)


def test_registry_and_builders():
    assert list_models("rbfnet_*") == [
        "rbfnet_kernelwise",
        "rbfnet_multiscale",
        "rbfnet_normals",
        "rbfnet_single",
    ]
    assert set(list_models()) >= {"pointnet", "pointnet2_ssg"}
    m = create_model("rbfnet_multiscale", num_classes=4, num_kernels=8, dropout=None)
    assert len(m.rbf) == 3 and m.config["scales"] == [0.5, 1.0, 2.0]
    with pytest.raises(ValueError, match="create_model: unknown model 'rbfnet_big'"):
        create_model("rbfnet_big", num_classes=3)
    with pytest.raises(ValueError, match="register_model: a model named 'pointnet' is already registered"):
        rbfnet.models.register_model(rbfnet.models.pointnet)
    with pytest.raises(ValueError, match="rbfnet_single: 'num_classes' is required"):
        create_model("rbfnet_single")


def test_checkpoint_round_trip(tmp_path, device):
    m = create_model("rbfnet_single", num_classes=4, **SMALL).to(device).eval()
    path = tmp_path / "m.pt"
    rbfnet.save_checkpoint(path, m, epoch=3, metrics={"acc": 0.5})
    raw = torch.load(path, weights_only=True)
    assert raw["arch"] == "rbfnet_single" and raw["epoch"] == 3 and raw["package"] == "rbfnet"
    m2 = create_model("rbfnet_single", weights=path).to(device).eval()
    x = _cloud(device)
    with torch.no_grad():
        torch.testing.assert_close(m2(x), m(x))
    with pytest.raises(ValueError, match="conflicts with the checkpoint's num_classes=4"):
        create_model("rbfnet_single", weights=path, num_classes=5)
    with pytest.raises(ValueError, match="holds arch 'rbfnet_single', not 'pointnet'"):
        create_model("pointnet", weights=path)
    torch.save({"package": "other"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="is not a valid rbfnet checkpoint"):
        rbfnet.load_checkpoint(tmp_path / "x.pt")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_state_dict_strips_ddp_prefix():
    m = RBFNet(3, **SMALL)
    wrapped = {"module." + k: v for k, v in m.state_dict().items()}
    clean = rbfnet.checkpoint.clean_state_dict(wrapped)
    RBFNet(3, **SMALL).load_state_dict(clean)


def test_forward_head_pre_logits(device):
    net = RBFNet(3, **SMALL, device=device).eval()
    f = net.forward_features(_cloud(device))
    assert f.shape == (3, 16) and net.forward_head(f, pre_logits=True).shape == (3, 16)
    assert net.feature_info[0]["num_chs"] == 16
