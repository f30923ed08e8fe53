"""Networks: shapes, gradients, conditioning, registry, checkpoints."""

from __future__ import annotations

import pytest
import torch

import undistort
from undistort.checkpoint import load_checkpoint, save_checkpoint
from undistort.models import (
    CompletionNet,
    DistanceNet,
    FlowNet,
    SegNet,
    create_model,
    list_models,
    register_model,
)

TINY = (4, 8, 8)


class TestFlowNet:
    def test_shapes_and_grad(self, device):
        net = FlowNet(TINY, device=device)
        img = torch.rand(2, 3, 16, 16, device=device)
        mask = torch.ones(2, 1, 16, 16, device=device)
        out = net(img, mask, torch.tensor([30.0, 90.0], device=device))
        assert out["flow"].shape == (2, 2, 16, 16) and out["mask_logits"].shape == (2, 1, 16, 16)
        # zero-initialised head -> zero flow at start (the identity warp)
        assert torch.equal(out["flow"], torch.zeros_like(out["flow"]))
        loss = out["flow"].sum() + out["mask_logits"].sum()
        loss.backward()
        assert all(p.grad is not None for p in net.parameters())

    def test_flow_is_bounded_and_conditioned(self, device):
        net = FlowNet(TINY, max_flow=0.25, device=device)
        torch.nn.init.normal_(net.net.head.weight, std=5.0)
        img = torch.rand(1, 3, 16, 16, device=device)
        mask = torch.ones(1, 1, 16, 16, device=device)
        near = net(img, mask, torch.tensor([30.0], device=device))["flow"]
        far = net(img, mask, torch.tensor([150.0], device=device))["flow"]
        assert near.abs().max() <= 0.25 * 8 + 1e-5  # 0.25 of the half-size (8 px)
        assert not torch.allclose(near, far)

    def test_no_conditioning_ignores_distance(self, device):
        net = FlowNet(TINY, conditioning="none", device=device)
        img = torch.rand(1, 3, 16, 16, device=device)
        out = net(img, torch.ones(1, 1, 16, 16, device=device))
        assert out["flow"].shape == (1, 2, 16, 16)

    def test_errors(self, device):
        net = FlowNet(TINY, device=device)
        img = torch.rand(1, 3, 16, 16, device=device)
        with pytest.raises(ValueError, match="FlowNet: 'distance' is required"):
            net(img, torch.ones(1, 1, 16, 16, device=device))
        with pytest.raises(ValueError, match=r"FlowNet: 'image' must have shape \(B, 3, H, W\)"):
            net(
                torch.rand(1, 4, 16, 16, device=device),
                torch.ones(1, 1, 16, 16, device=device),
                torch.ones(1, device=device),
            )
        with pytest.raises(ValueError, match="FlowNet: 'image' height and width must be divisible by 4"):
            net(
                torch.rand(1, 3, 18, 16, device=device),
                torch.ones(1, 1, 18, 16, device=device),
                torch.ones(1, device=device),
            )
        with pytest.raises(ValueError, match="FlowNet: 'conditioning' must be"):
            FlowNet(TINY, conditioning="film")

    def test_gradcheck_float64(self, device):
        net = FlowNet((2, 2), device=device, dtype=torch.float64)
        torch.nn.init.normal_(net.net.head.weight, std=0.5)
        img = torch.rand(1, 3, 4, 4, device=device, dtype=torch.float64, requires_grad=True)
        mask = torch.ones(1, 1, 4, 4, device=device, dtype=torch.float64)
        d = torch.tensor([40.0], device=device, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda x: net(x, mask, d)["flow"], (img,))


class TestOtherNets:
    def test_distance_net(self, device):
        net = DistanceNet((4, 8), (1, 1), num_bins=5, device=device)
        out = net(torch.rand(3, 3, 32, 32, device=device), torch.ones(3, 1, 32, 32, device=device))
        assert out["logits"].shape == (3, 5) and out["distance"].shape == (3,)
        # regression bias starts at the log-midpoint of [25, 160]: sqrt(25 * 160) = 63.2 cm
        assert torch.allclose(out["distance"], torch.full((3,), (25 * 160) ** 0.5, device=device), rtol=1e-4)
        assert net.bin_centers().shape == (5,)
        with pytest.raises(ValueError, match="DistanceNet: 'mask' is required"):
            net(torch.rand(1, 3, 32, 32, device=device))

    def test_completion_keeps_known_pixels(self, device):
        net = CompletionNet(4, (2,), device=device)
        warped = torch.rand(1, 3, 16, 16, device=device)
        holes = torch.zeros(1, 1, 16, 16, device=device)
        holes[..., 4:8, 4:8] = 1
        out = net(warped, holes, torch.ones_like(holes))
        keep = holes == 0
        assert torch.equal(out.masked_select(keep), warped.masked_select(keep.expand_as(warped)))
        assert not torch.equal(out, warped)
        with pytest.raises(
            ValueError, match="CompletionNet: 'warped' height and width must be divisible by 8"
        ):
            net(torch.rand(1, 3, 12, 12, device=device), holes[..., :12, :12], holes[..., :12, :12])
        with pytest.raises(ValueError, match=r"CompletionNet: 'width' must be >= 1 .*got width=0"):
            CompletionNet(0)
        with pytest.raises(ValueError, match=r"CompletionNet: .*'dilations' non-empty.*dilations=\(\)"):
            CompletionNet(4, ())

    def test_seg_net(self, device):
        net = SegNet((4, 8), device=device)
        m = net.predict_mask(torch.rand(2, 3, 8, 8, device=device))
        assert m.shape == (2, 1, 8, 8) and bool(((m >= 0) & (m <= 1)).all())


class TestRegistryAndCheckpoints:
    def test_registry(self):
        assert {
            "flownet_small",
            "flownet_paper",
            "distancenet_small",
            "completionnet_small",
            "segnet_small",
        } <= set(list_models())
        assert list_models("flownet*") == ["flownet_paper", "flownet_small"]
        with pytest.raises(ValueError, match="create_model: unknown model 'nope'"):
            create_model("nope")
        with pytest.raises(
            ValueError, match="register_model: a model named 'flownet_small' is already registered"
        ):
            register_model(undistort.models.flownet_small)

    def test_checkpoint_roundtrip(self, device, tmp_path):
        net = create_model("flownet_small", widths=TINY, conditioning="logd").to(device)
        torch.nn.init.normal_(net.net.head.weight)
        path = tmp_path / "flow.pt"
        save_checkpoint(path, net, arch=net.arch, config=net.config, step=3)
        ckpt = load_checkpoint(path)
        assert ckpt["step"] == 3 and ckpt["package"] == "undistort" and ckpt["arch"] == "flownet_small"
        # reload via the builder; the stored config wins, a conflicting argument raises
        net2 = create_model("flownet_small", weights=path).to(device)
        assert net2.conditioning == "logd"
        x = torch.rand(1, 3, 16, 16, device=device)
        m = torch.ones(1, 1, 16, 16, device=device)
        d = torch.tensor([50.0], device=device)
        assert torch.allclose(net(x, m, d)["flow"], net2(x, m, d)["flow"])
        with pytest.raises(ValueError, match="conflicts with the checkpoint's conditioning='logd'"):
            create_model("flownet_small", weights=path, conditioning="onehot")
        with pytest.raises(ValueError, match="holds arch 'flownet_small', not 'segnet_small'"):
            create_model("segnet_small", weights=path)
        assert not list(tmp_path.glob(".tmp-*"))  # atomic write left no temp file

    def test_interrupted_save_keeps_the_previous_checkpoint(self, device, tmp_path, monkeypatch):
        # Atomicity: a save that dies half-way (here torch.save writes some bytes, then raises) must
        # leave the previous checkpoint readable and unchanged, and no temp file behind.
        net = create_model("flownet_small", widths=TINY).to(device)
        path = tmp_path / "flow.pt"
        save_checkpoint(path, net, arch=net.arch, config=net.config, step=1)
        before = path.read_bytes()

        def dying_save(obj, fh, *args, **kwargs):
            fh.write(b"partial")
            raise OSError("disk full")

        monkeypatch.setattr(undistort.checkpoint.torch, "save", dying_save)
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(path, net, arch=net.arch, config=net.config, step=2)
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert load_checkpoint(path)["step"] == 1
        assert not list(tmp_path.glob(".tmp-*"))

    def test_foreign_checkpoint_rejected(self, tmp_path):
        torch.save({"package": "other"}, tmp_path / "x.pt")
        with pytest.raises(ValueError, match="is not a valid undistort checkpoint"):
            load_checkpoint(tmp_path / "x.pt")

    def test_state_dict_roundtrip(self, device):
        a = DistanceNet((4, 8), (1, 1), device=device)
        b = DistanceNet((4, 8), (1, 1), device=device)
        b.load_state_dict(a.state_dict())
        x, m = torch.rand(1, 3, 16, 16, device=device), torch.ones(1, 1, 16, 16, device=device)
        assert torch.equal(a(x, m)["logits"], b(x, m)["logits"])


@pytest.mark.slow
def test_flownet_under_torch_compile(device):
    net = FlowNet(TINY, device=device).eval()
    torch.nn.init.normal_(net.net.head.weight, std=0.5)
    img = torch.rand(2, 3, 16, 16, device=device)
    mask = torch.ones(2, 1, 16, 16, device=device)
    d = torch.tensor([30.0, 90.0], device=device)
    compiled = torch.compile(net)
    with torch.no_grad():
        assert torch.allclose(compiled(img, mask, d)["flow"], net(img, mask, d)["flow"], atol=1e-4)
