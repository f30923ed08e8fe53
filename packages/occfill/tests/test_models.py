"""Networks: shapes, gradients, options, registry, state_dict and checkpoint round-trips."""

from __future__ import annotations

import pytest
import torch

from occfill.checkpoint import clean_state_dict, load_checkpoint, save_checkpoint
from occfill.masks import eye_box_mask
from occfill.models import (
    CompletionGenerator,
    CosFaceHead,
    IdentityEncoder,
    LocalDiscriminator,
    PatchDiscriminator,
    PoseDiscriminator,
    create_model,
    list_models,
)


def _inputs(device, b=2, size=16, dtype=torch.float32):
    y = torch.rand(b, 3, size, size, device=device, dtype=dtype)
    s = torch.rand(b, 3, size, size, device=device, dtype=dtype)
    lmap = torch.zeros(b, 3, size, size, device=device, dtype=dtype)
    return y, s, lmap


class TestGenerator:
    def test_shapes_and_range(self, device):
        g = CompletionGenerator(base_channels=4, depth=2).to(device)
        y, s, lmap = _inputs(device)
        out = g(y, s, lmap)
        assert out.shape == y.shape and out.device.type == device.type
        assert bool(((out > 0) & (out < 1)).all())
        assert g.in_channels == 3 + 3 + 3 + 1  # M + S + L + one noise plane (the figure's inputs)

    def test_every_input_reaches_the_output(self, device):
        g = CompletionGenerator(base_channels=4, depth=2, mask_channel=True).to(device)
        y, s, lmap = _inputs(device, b=1)
        m = torch.zeros(1, 1, 16, 16, device=device)
        z = torch.randn(1, 1, 16, 16, device=device)
        for t in (y, s, lmap, m, z):
            t.requires_grad_(True)
        g(y, s, lmap, mask=m, noise=z).sum().backward()
        for t in (y, s, lmap, m, z):
            assert t.grad is not None and float(t.grad.abs().sum()) > 0
        assert all(p.grad is not None for p in g.parameters())

    def test_noise_controls_output(self, device):
        g = CompletionGenerator(base_channels=4, depth=2).to(device).eval()
        y, s, lmap = _inputs(device)
        z = torch.randn(2, 1, 16, 16, device=device)
        assert torch.equal(g(y, s, lmap, noise=z), g(y, s, lmap, noise=z))
        assert not torch.equal(g(y, s, lmap, noise=z), g(y, s, lmap, noise=-z))
        g0 = CompletionGenerator(base_channels=4, depth=2, noise="none").to(device).eval()
        assert torch.equal(g0(y, s, lmap), g0(y, s, lmap))

    def test_baseline_and_ablation_inputs(self, device):
        y, s, lmap = _inputs(device)
        base = CompletionGenerator(base_channels=4, depth=2, use_reference=False).to(device)
        assert base(y, None, lmap).shape == y.shape and base.in_channels == 7
        nopose = CompletionGenerator(base_channels=4, depth=2, pose_channels=0).to(device)
        assert nopose(y, s, None).shape == y.shape and nopose.in_channels == 7

    def test_identity_injection_option(self, device):
        g = CompletionGenerator(base_channels=4, depth=2, id_dim=5).to(device)
        y, s, lmap = _inputs(device)
        e = torch.randn(2, 5, device=device, requires_grad=True)
        g(y, s, lmap, id_embedding=e).sum().backward()
        assert e.grad is not None and float(e.grad.abs().sum()) > 0

    def test_gradcheck_float64(self, device):
        g = CompletionGenerator(base_channels=2, depth=1, noise="none").to(device).double()
        y, s, lmap = _inputs(device, b=1, size=4, dtype=torch.float64)
        y.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x: g(x, s, lmap), (y,), atol=1e-5)

    def test_errors(self, device):
        g = CompletionGenerator(base_channels=4, depth=2).to(device)
        y, s, lmap = _inputs(device)
        with pytest.raises(ValueError, match="CompletionGenerator: 'reference' is required"):
            g(y, None, lmap)
        with pytest.raises(ValueError, match=r"CompletionGenerator: 'pose' must have shape \(B, 3, H, W\)"):
            g(y, s, lmap[:, :2])
        with pytest.raises(ValueError, match="divisible by 2\\*\\*depth=4"):
            g(y[..., :14, :14], s[..., :14, :14], lmap[..., :14, :14])
        with pytest.raises(ValueError, match="CompletionGenerator: 'noise' must be one of"):
            CompletionGenerator(noise="bottleneck")
        with pytest.raises(TypeError, match="CompletionGenerator: 'depth' must be an int; got float"):
            CompletionGenerator(depth=2.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="list_models: 'pattern' must be a str; got int"):
            list_models(3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"'reference' must have shape \(B, 3, H, W\) with H=16"):
            g(y, s[..., :8, :], lmap)


class TestDiscriminators:
    def test_shapes_and_gradients(self, device):
        y, _, lmap = _inputs(device, size=32)
        y.requires_grad_(True)
        dg = PatchDiscriminator(base_channels=4, n_layers=2).to(device)
        dp = PoseDiscriminator(base_channels=4, n_layers=2).to(device)
        dl = LocalDiscriminator(crop_size=16, base_channels=4, n_layers=2).to(device)
        m = eye_box_mask(32, 32, batch=2, device=device)
        outs = [dg(y), dp(y, lmap), dl(y, m)]
        assert [tuple(o.shape) for o in outs] == [(2, 1, 8, 8), (2, 1, 8, 8), (2, 1, 4, 4)]
        sum(o.sum() for o in outs).backward()
        assert y.grad is not None and float(y.grad.abs().sum()) > 0

    def test_pose_map_changes_pose_d_output(self, device):
        y, _, lmap = _inputs(device)
        dp = PoseDiscriminator(base_channels=4, n_layers=2).to(device)
        assert not torch.allclose(dp(y, lmap), dp(y, lmap + 0.5))

    def test_local_crop_is_the_mask_box(self, device):
        # an image whose value is its column index: the crop of a box over columns [4, 12) resized to 8
        # must hold the column centres 4.5 ... 11.5 - 0.5 = 4 .. 11 (bilinear at pixel centres)
        img = torch.arange(16.0, device=device).view(1, 1, 1, 16).expand(1, 3, 16, 16).contiguous()
        m = torch.zeros(1, 1, 16, 16, device=device)
        m[..., 2:10, 4:12] = 1
        crop = LocalDiscriminator.crop(img, m, 8)
        assert torch.allclose(crop[0, 0, 0], torch.arange(4.0, 12.0, device=device), atol=1e-5)

    def test_gradcheck_float64(self, device):
        d = PatchDiscriminator(base_channels=2, n_layers=1, spectral_norm=False).to(device).double()
        x = torch.rand(1, 3, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
        assert torch.autograd.gradcheck(d, (x,))

    def test_errors(self, device):
        dp = PoseDiscriminator(base_channels=4, n_layers=2).to(device)
        y, _, lmap = _inputs(device)
        with pytest.raises(ValueError, match=r"PoseDiscriminator: 'pose' must have shape \(B, 3, H, W\)"):
            dp(y, lmap[..., :8])
        with pytest.raises(ValueError, match=r"PatchDiscriminator: 'image' must have shape \(B, 3, H, W\)"):
            PatchDiscriminator(base_channels=4).to(device)(lmap[:, :1])


class TestEncoder:
    def test_unit_embeddings_any_size(self, device):
        enc = IdentityEncoder(16, base_channels=4, input_size=32).to(device).eval()
        for size in (32, 48):
            e = enc(torch.rand(3, 3, size, size, device=device))
            assert e.shape == (3, 16) and torch.allclose(
                e.norm(dim=1), torch.ones(3, device=device), atol=1e-5
            )
        feats = enc.forward_intermediates(torch.rand(1, 3, 32, 32, device=device))
        assert [f.shape[1] for f in feats] == [i["num_chs"] for i in enc.feature_info]
        assert enc.forward_head(feats[-1], pre_logits=True).shape == (1, 32)

    def test_cosface_reference(self, device):
        head = CosFaceHead(2, 2, scale=10.0, margin=0.5).to(device)
        with torch.no_grad():
            head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]], device=device))
        # by hand: e = (1, 1)/sqrt2 -> cos = (0.7071, 0.7071); label 0 -> (0.2071, 0.7071) * 10
        got = head(torch.tensor([[2.0, 2.0]], device=device), torch.tensor([0], device=device))
        assert torch.allclose(got, torch.tensor([[2.0711, 7.0711]], device=device), atol=1e-4)


class TestRegistryAndCheckpoint:
    def test_registry(self):
        names = list_models("occfill_*")
        assert "occfill_generator" in names and "occfill_pose_discriminator" in names
        with pytest.raises(ValueError, match="create_model: unknown model 'nope'"):
            create_model("nope")
        with pytest.raises(ValueError, match="use_reference=True conflicts"):
            create_model("occfill_inpainting_baseline", use_reference=True)

    def test_state_dict_round_trip(self, device):
        a = CompletionGenerator(base_channels=4, depth=2, noise="none").to(device).eval()
        b = CompletionGenerator(base_channels=4, depth=2, noise="none").to(device).eval()
        b.load_state_dict(a.state_dict())
        y, s, lmap = _inputs(device)
        assert torch.equal(a(y, s, lmap), b(y, s, lmap))

    def test_checkpoint_round_trip(self, device, tmp_path):
        cfg = {"base_channels": 4, "depth": 2, "noise": "none"}
        g = create_model("occfill_generator", **cfg).to(device).eval()
        d = PoseDiscriminator(base_channels=4, n_layers=2)
        path = tmp_path / "g.pt"
        save_checkpoint(path, g, arch="occfill_generator", config=cfg, modules={"pose": d}, step=7)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
        raw = torch.load(path, weights_only=True)
        assert raw["step"] == 7 and raw["package"] == "occfill" and "pose" in raw["modules"]
        g2 = create_model("occfill_generator", weights=path).to(device).eval()
        y, s, lmap = _inputs(device)
        assert torch.equal(g(y, s, lmap), g2(y, s, lmap))
        with pytest.raises(ValueError, match="conflicts with the checkpoint's depth=2"):
            create_model("occfill_generator", weights=path, depth=3)
        with pytest.raises(ValueError, match="holds arch 'occfill_generator'"):
            create_model("occfill_pose_discriminator", weights=path)

    def test_load_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="load_checkpoint: no checkpoint"):
            load_checkpoint(tmp_path / "missing.pt")
        torch.save({"package": "other"}, tmp_path / "x.pt")
        with pytest.raises(ValueError, match="is not a valid occfill checkpoint"):
            load_checkpoint(tmp_path / "x.pt")

    def test_clean_state_dict(self):
        assert clean_state_dict({"module.a": 1, "_orig_mod.b": 2, "c": 3}) == {"a": 1, "b": 2, "c": 3}

    def test_ddp_wrapped_model_saves_clean_keys(self, tmp_path):
        g = CompletionGenerator(base_channels=4, depth=2)

        class Wrapper(torch.nn.Module):
            def __init__(self, module):
                super().__init__()
                self.module = module

        save_checkpoint(tmp_path / "w.pt", Wrapper(g), arch="occfill_generator")
        keys = list(load_checkpoint(tmp_path / "w.pt")["state_dict"])
        assert keys == list(g.state_dict())
