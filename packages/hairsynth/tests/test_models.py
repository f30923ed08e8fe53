"""Networks, registry, checkpoints, the Synthesizer and the perceptual loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hairsynth import (
    EditSession,
    HairSynthesisNet,
    PatchDiscriminator,
    PerceptualLoss,
    Stroke,
    Synthesizer,
    UNetGenerator,
    VGG19Features,
    create_model,
    list_models,
    load_checkpoint,
    save_checkpoint,
)


def _inputs(device, b=2, s=32, dtype=torch.float32):
    img = torch.rand(b, 3, s, s, device=device, dtype=dtype)
    m = torch.zeros(b, 1, s, s, device=device, dtype=dtype)
    m[..., 8:20, 10:22] = 1
    sc = torch.zeros(b, 3, s, s, device=device, dtype=dtype)
    sm = torch.zeros(b, 1, s, s, device=device, dtype=dtype)
    sm[..., 12, 10:22] = 1
    sc[:, 0:1][sm.bool()] = 0.6
    return img, m, sc, sm


class TestUNet:
    def test_shapes_and_range(self, device):
        net = UNetGenerator(8, 3, base_channels=4, num_downs=4, device=device)
        y = net(torch.rand(2, 8, 32, 48, device=device))
        assert y.shape == (2, 3, 32, 48) and y.min() >= 0 and y.max() <= 1
        assert "num_downs=4" in repr(net)

    def test_gradients_reach_every_parameter(self, device):
        net = UNetGenerator(8, 3, base_channels=4, num_downs=3, dropout=0.0, device=device)
        net(torch.rand(1, 8, 16, 16, device=device)).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())

    def test_gradcheck_float64(self, device):
        net = UNetGenerator(2, 1, base_channels=2, num_downs=2, norm="none", dropout=0.0, output="tanh")
        net = net.to(device=device, dtype=torch.float64)
        x = torch.rand(1, 2, 8, 8, device=device, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(net, (x,))

    def test_errors(self, device):
        net = UNetGenerator(8, 3, base_channels=4, num_downs=3, device=device)
        with pytest.raises(
            ValueError, match=r"UNetGenerator.forward: 'x' height and width must be multiples of 8"
        ):
            net(torch.rand(1, 8, 12, 16, device=device))
        with pytest.raises(ValueError, match=r"UNetGenerator.forward: 'x' must have shape \(B, 8, H, W\)"):
            net(torch.rand(1, 7, 16, 16, device=device))
        with pytest.raises(ValueError, match=r"UNetGenerator: 'norm' must be one of"):
            UNetGenerator(8, norm="group")
        with pytest.raises(ValueError, match=r"UNetGenerator: 'num_dropout' must be an int >= 0; got -1"):
            UNetGenerator(8, num_dropout=-1)


class TestDiscriminator:
    def test_shapes_and_features(self, device):
        d = PatchDiscriminator(11, base_channels=8, num_layers=3, device=device)
        feats = d.forward_features(torch.rand(2, 11, 64, 64, device=device))
        assert len(feats) == 5 and feats[-1].shape == (2, 1, 6, 6)
        d.eval()  # spectral norm runs a power iteration per training-mode forward; eval is deterministic
        z = torch.zeros(1, 11, 64, 64, device=device)
        assert torch.equal(d(z), d(z))

    def test_gradients_reach_input_and_every_parameter(self, device):
        d = PatchDiscriminator(11, base_channels=4, num_layers=2, device=device)
        x = torch.rand(2, 11, 32, 32, device=device, requires_grad=True)
        d(x).mean().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())

    def test_gradcheck_float64(self, device):
        # no spectral norm: its power iteration updates buffers on every forward, which gradcheck re-runs
        d = PatchDiscriminator(3, base_channels=2, num_layers=1, spectral_norm=False)
        d = d.to(device=device, dtype=torch.float64)
        x = torch.rand(1, 3, 16, 16, device=device, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(d, (x,))

    def test_errors(self, device):
        d = PatchDiscriminator(11, base_channels=4, num_layers=2, device=device)
        with pytest.raises(
            ValueError, match=r"PatchDiscriminator.forward_features: 'x' must have shape \(B, 11, H, W\)"
        ):
            d(torch.rand(1, 8, 32, 32, device=device))
        with pytest.raises(ValueError, match=r"PatchDiscriminator: 'num_layers' must be an int >= 1"):
            PatchDiscriminator(11, num_layers=0)
        with pytest.raises(
            ValueError, match=r"PatchDiscriminator: 'base_channels' must be an int >= 1; got 0"
        ):
            PatchDiscriminator(11, base_channels=0)


class TestHairSynthesisNet:
    @pytest.mark.parametrize("use_refinement", [True, False])
    def test_untouched_outside_blend_region(self, device, use_refinement):
        net = HairSynthesisNet(base_channels=4, num_downs=3, feather_radius=3, use_refinement=use_refinement)
        net = net.to(device)
        img, m, sc, sm = _inputs(device)
        out = net(img, m, sc, sm)
        region = out["blend_mask"] > 0
        outside = (~region).expand_as(img)
        assert torch.equal(out["output"][outside], img[outside])
        # default feather="inside": the blend region lies within the mask and holds every pixel whose
        # whole (2r+1)^2 window is inside it (the mask eroded by r); the mask itself without refinement
        if use_refinement:
            assert not (region & (m == 0)).any()
            eroded = 1 - torch.nn.functional.max_pool2d(1 - m, 7, 1, 3)
            assert region[eroded > 0].all()
        else:
            assert torch.equal(region.to(m.dtype), m)
        assert set(out) >= {"stage1", "composite1", "output", "blend_mask"}
        assert ("stage2" in out) == use_refinement

    def test_legacy_outside_feather_is_dilated_mask(self, device):
        net = HairSynthesisNet(base_channels=4, num_downs=3, feather_radius=3, feather="outside").to(device)
        img, m, sc, sm = _inputs(device)
        region = net(img, m, sc, sm)["blend_mask"] > 0
        assert torch.equal(region.to(m.dtype), torch.nn.functional.max_pool2d(m, 7, 1, 3))

    def test_feather_radius_zero_changes_only_the_mask(self, device):
        """With ``feather_radius=0`` the edit region is the mask itself: every pixel outside it is the input's."""
        net = HairSynthesisNet(base_channels=4, num_downs=3, feather_radius=0).to(device)
        img, m, sc, sm = _inputs(device)
        out = net(img, m, sc, sm)["output"]
        outside = (m == 0).expand_as(img)
        assert torch.equal(out[outside], img[outside])
        assert not torch.equal(out[~outside], img[~outside])  # the mask itself is re-synthesised

    def test_gradients_flow_to_both_stages(self, device):
        net = HairSynthesisNet(base_channels=4, num_downs=3, dropout=0.0).to(device)
        img, m, sc, sm = _inputs(device)
        net(img, m, sc, sm)["output"].mean().backward()
        assert net.synthesis.last_conv.weight.grad.abs().sum() > 0
        assert net.refinement is not None and net.refinement.last_conv.weight.grad.abs().sum() > 0

    def test_refine_false_skips_stage2(self, device):
        """``refine=False`` (synthesis-only training phase): stage 1 as in the full pass, output = C1."""
        net = HairSynthesisNet(base_channels=4, num_downs=3, dropout=0.0).to(device)
        img, m, sc, sm = _inputs(device)
        full = net(img, m, sc, sm)
        calls = []
        hook = net.refinement.register_forward_hook(lambda *a: calls.append(1))
        only1 = net(img, m, sc, sm, refine=False)
        hook.remove()
        assert calls == [] and "stage2" not in only1
        assert torch.equal(only1["stage1"], full["stage1"]) and torch.equal(
            only1["output"], full["composite1"]
        )
        assert torch.equal(only1["blend_mask"], m.expand_as(only1["blend_mask"]))

    def test_strokes_change_the_output(self, device):
        net = HairSynthesisNet(base_channels=4, num_downs=3, dropout=0.0).to(device).eval()
        img, m, sc, sm = _inputs(device)
        a = net(img, m, sc, sm)["output"]
        b = net(img, m, torch.zeros_like(sc), torch.zeros_like(sm))["output"]
        assert not torch.equal(a, b)

    def test_errors(self, device):
        net = HairSynthesisNet(base_channels=4, num_downs=3).to(device)
        img, m, sc, sm = _inputs(device)
        with pytest.raises(ValueError, match=r"synthesis_input: 'mask' must have shape \(B, 1, H, W\)"):
            net(img, m[:, :, :16], sc, sm)
        with pytest.raises(ValueError, match=r"synthesis_input: 'mask' must lie in \[0.0, 1.0\]"):
            net(img, m * 3, sc, sm)
        with pytest.raises(ValueError, match=r"HairSynthesisNet: 'feather_radius' must be an int >= 0"):
            HairSynthesisNet(feather_radius=-1)


class TestRegistryAndCheckpoint:
    def test_registry(self):
        assert {"hairsynth_unet256", "hairsynth_unet512", "hairsynth_small", "hairsynth_tiny"} <= set(
            list_models()
        )
        with pytest.raises(ValueError, match=r"create_model: unknown model 'nope'"):
            create_model("nope")
        with pytest.raises(TypeError, match=r"hairsynth_tiny: unknown argument\(s\) \['bogus'\]; valid: "):
            create_model("hairsynth_tiny", bogus=1)

    def test_checkpoint_roundtrip(self, tmp_path, device):
        model = create_model("hairsynth_tiny", feather_radius=2).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        img, m, sc, sm = _inputs(device)
        model(img, m, sc, sm)["output"].mean().backward()
        opt.step()
        path = tmp_path / "ck.pt"
        save_checkpoint(path, model, arch="hairsynth_tiny", config=model.config, optimizer=opt, step=7)
        ck = torch.load(path, weights_only=True, map_location="cpu")
        assert ck["step"] == 7 and ck["package"] == "hairsynth" and ck["config"]["feather_radius"] == 2
        back = create_model("hairsynth_tiny", weights=path).to(device).eval()
        model.eval()
        for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k  # weights round-trip exactly
        with torch.no_grad():  # outputs agree up to cuDNN algorithm choice (not bit-exact on CUDA)
            torch.testing.assert_close(back(img, m, sc, sm)["output"], model(img, m, sc, sm)["output"])
        assert back.feather_radius == 2
        with pytest.raises(ValueError, match=r"hairsynth_tiny: argument feather_radius=5 conflicts"):
            create_model("hairsynth_tiny", weights=path, feather_radius=5)
        assert not list(tmp_path.glob(".tmp-*"))  # the atomic write leaves no temp file

    def test_ddp_prefix_stripped_and_bad_files(self, tmp_path):
        model = create_model("hairsynth_tiny")
        wrapper = torch.nn.Module()
        wrapper.module = model
        save_checkpoint(tmp_path / "w.pt", wrapper, arch="hairsynth_tiny")
        assert not any(k.startswith("module.") for k in load_checkpoint(tmp_path / "w.pt")["state_dict"])
        torch.save({"state_dict": {}, "package": "other", "format_version": 1}, tmp_path / "o.pt")
        with pytest.raises(ValueError, match=r"written by package 'other', not 'hairsynth'"):
            load_checkpoint(tmp_path / "o.pt")
        with pytest.raises(FileNotFoundError, match=r"load_checkpoint: no checkpoint"):
            load_checkpoint(tmp_path / "missing.pt")
        torch.save({"state_dict": {}, "package": "hairsynth", "format_version": 99}, tmp_path / "v.pt")
        with pytest.raises(
            ValueError, match=r"has format_version 99; this hairsynth .* reads format_version 1"
        ):
            load_checkpoint(tmp_path / "v.pt")
        torch.save([1, 2], tmp_path / "l.pt")
        with pytest.raises(ValueError, match=r"is not a checkpoint dict with a 'state_dict'"):
            load_checkpoint(tmp_path / "l.pt")


class TestSynthesizer:
    def test_tensor_pil_numpy_and_exactness(self, device):
        from PIL import Image

        syn = Synthesizer(create_model("hairsynth_tiny", feather_radius=2), device=device)
        img = torch.rand(3, 37, 45, device=device)  # not a multiple of 16: padded internally
        m = torch.zeros(37, 45, device=device)
        m[10:25, 12:30] = 1
        strokes = [Stroke([(14, 12), (28, 22)], (0.3, 0.2, 0.1), 3.0)]
        out = syn.synthesize(img, m, strokes)
        assert out.shape == img.shape and out.device == img.device
        far = torch.nn.functional.max_pool2d(m[None, None], 5, 1, 2)[0, 0] == 0
        assert torch.equal(out[:, far], img[:, far])
        pil = Image.fromarray((img.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8))
        pm = Image.fromarray((m.cpu().numpy() * 255).astype(np.uint8))
        out_pil = syn.synthesize(pil, pm, strokes)
        assert isinstance(out_pil, Image.Image) and out_pil.size == (45, 37)
        a, b = np.asarray(out_pil), np.asarray(pil)
        assert np.array_equal(a[far.cpu().numpy()], b[far.cpu().numpy()])
        out_np = syn.synthesize(np.asarray(pil), np.asarray(pm), strokes)
        assert out_np.shape == (37, 45, 3)

    def test_batch_and_session(self, device):
        syn = Synthesizer(create_model("hairsynth_tiny"), device=device)
        img, m, _, _ = _inputs(device)
        s1 = [Stroke([(10, 10), (20, 18)], (0.2, 0.1, 0.0), 2.0)]
        out = syn.synthesize(img, m, [s1, []])
        assert out.shape == img.shape
        sess = syn.session(img[0], m[0])
        r0 = sess.render()
        sess.add_stroke(s1[0])
        r1 = sess.render()
        assert not torch.equal(r0, r1) and len(sess.history) == 2
        assert sess.undo() is s1[0] and sess.undo() is None

    def test_feather_radius_zero_is_mask_exact(self, device):
        syn = Synthesizer(create_model("hairsynth_tiny", feather_radius=0), device=device)
        img = torch.rand(3, 37, 45, device=device)
        m = torch.zeros(37, 45, device=device)
        m[10:25, 12:30] = 1
        out = syn.synthesize(img, m, [Stroke([(14, 12), (28, 22)], (0.3, 0.2, 0.1), 3.0)])
        assert torch.equal(out[:, m == 0], img[:, m == 0])

    def test_add_beard_to_clean_face(self, device):
        """Adding hair: a beard-preset region on a hairless face, strokes drawn in it; only that region changes."""
        from hairsynth import beard_mask

        syn = Synthesizer(create_model("hairsynth_tiny", feather_radius=0), device=device)
        face = torch.empty(3, 100, 100, device=device)
        face[0], face[1], face[2] = 0.85, 0.65, 0.55  # flat skin, no hair anywhere
        region = beard_mask(TestBeardMask._landmarks(), (100, 100), style="goatee").to(device)
        strokes = [Stroke([(45, 75), (50, 85), (55, 75)], (0.2, 0.12, 0.08), 3.0)]
        out = syn.synthesize(face, region, strokes)
        assert torch.equal(out[:, region == 0], face[:, region == 0])
        assert (out[:, region == 1] - face[:, region == 1]).abs().max() > 0.01

    def test_session_checks_inputs_up_front(self, device):
        syn = Synthesizer(create_model("hairsynth_tiny"), device=device)
        img = torch.rand(3, 32, 32, device=device)
        with pytest.raises(ValueError, match=r"EditSession: 'mask' must have shape \(H, W\)"):
            syn.session(img, torch.ones(16, 16, device=device))
        with pytest.raises(ValueError, match=r"EditSession: 'image' must be one image; got a batch of 2"):
            syn.session(torch.rand(2, 3, 32, 32, device=device), torch.ones(32, 32, device=device))
        with pytest.raises(ValueError, match=r"EditSession: 'image' must lie in \[0.0, 1.0\]"):
            syn.session(img * 255, torch.ones(32, 32, device=device))
        sess = syn.session(img, torch.ones(32, 32, device=device))
        with pytest.raises(ValueError, match=r"EditSession.set_mask: 'mask' must lie in \[0.0, 1.0\]"):
            sess.set_mask(torch.full((32, 32), 2.0, device=device))
        with pytest.raises(TypeError, match=r"EditSession.add_stroke: 'stroke' must be a Stroke; got list"):
            sess.add_stroke([(1, 2)])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"EditSession: 'synthesizer' must be a Synthesizer; got str"):
            EditSession("syn", img, torch.ones(32, 32, device=device))  # type: ignore[arg-type]

    def test_errors(self, device):
        syn = Synthesizer(create_model("hairsynth_tiny"), device=device)
        img = torch.rand(3, 32, 32, device=device)
        m = torch.ones(32, 32, device=device)
        with pytest.raises(ValueError, match=r"Synthesizer.synthesize: 'image' must lie in \[0.0, 1.0\]"):
            syn.synthesize(img * 255, m, [])  # a 0-255 float image is refused, not silently mis-scaled
        with pytest.raises(TypeError, match=r"Synthesizer: 'model' must be a HairSynthesisNet"):
            Synthesizer(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"Synthesizer: 'weights' is only used with a registry name"):
            Synthesizer(create_model("hairsynth_tiny"), weights="x.pt")
        with pytest.raises(ValueError, match=r"Synthesizer.synthesize: 'mask' must have shape \(H, W\)"):
            syn.synthesize(img, torch.ones(32, 31, device=device), [])
        with pytest.raises(ValueError, match=r"Synthesizer.synthesize: 'mask' must lie in \[0.0, 1.0\]"):
            syn.synthesize(img, m * 2, [])
        with pytest.raises(
            TypeError, match=r"Synthesizer.synthesize: a tensor 'mask' must be bool or floating"
        ):
            syn.synthesize(img, torch.ones(32, 32, dtype=torch.int64, device=device), [])
        with pytest.raises(
            TypeError, match=r"Synthesizer.synthesize: 'strokes\[0\]\[0\]' must be a Stroke; got tuple"
        ):
            syn.synthesize(img, m, [[(1, 2)]])
        with pytest.raises(
            TypeError, match=r"Synthesizer.synthesize: 'image' must be a torch.Tensor, PIL image"
        ):
            syn.synthesize("img.png", m, [])
        with pytest.raises(ValueError, match=r"got 2 stroke lists for a batch of 1 images"):
            syn.synthesize(img, m, [[], []])
        sc, sm = torch.zeros(3, 32, 32, device=device), torch.zeros(1, 32, 32, device=device)
        with pytest.raises(
            TypeError, match=r"Synthesizer.synthesize: 'strokes\[1\]' \(stroke_mask\) must be floating"
        ):
            syn.synthesize(img, m, (sc, sm.long()))
        with pytest.raises(
            ValueError, match=r"Synthesizer.synthesize: 'strokes\[1\]' \(stroke_mask\) must lie in"
        ):
            syn.synthesize(img, m, (sc, sm + 2))


class TestPerceptual:
    def test_loads_torchvision_style_keys(self, tmp_path, device):
        # a random VGG-19 trunk saved with torchvision's key names stands in for user-supplied weights
        sd = {f"features.{k}": v for k, v in VGG19Features((8,)).features.state_dict().items()}
        sd.update({k: torch.randn(2, 2) for k in ("classifier.0.weight",)})
        torch.save(sd, tmp_path / "vgg.pth")
        loss = PerceptualLoss(tmp_path / "vgg.pth", layers=(1, 6), layer_weights=(1.0, 0.5)).to(device)
        x = torch.rand(1, 3, 16, 16, device=device, requires_grad=True)
        assert loss(x, x.detach()).item() == 0.0
        v = loss(x, torch.rand(1, 3, 16, 16, device=device))
        v.backward()
        assert v.item() > 0 and x.grad is not None
        assert all(not p.requires_grad for p in loss.parameters())
        with pytest.raises(ValueError, match=r"PerceptualLoss: 'weights' lack VGG-19 keys"):
            PerceptualLoss({"features.0.weight": torch.zeros(64, 3, 3, 3)}, layers=(6,))


class TestBeardMask:
    @staticmethod
    def _landmarks():
        """A synthetic 68-point face: U-shaped jaw, lower nose at y~56, lips an ellipse at (50, 68)."""
        t = np.linspace(0, np.pi, 17)
        lm = np.zeros((68, 2))
        lm[:17] = np.stack([50 - 40 * np.cos(t), 40 + 45 * np.sin(t)], 1)
        lm[31:36] = [(40, 55), (45, 57), (50, 58), (55, 57), (60, 55)]
        a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        lm[48:60] = np.stack([50 + 12 * np.cos(a), 68 + 5 * np.sin(a)], 1)
        return lm

    def test_styles(self):
        from hairsynth import BEARD_STYLES, beard_mask

        lm = self._landmarks()
        masks = {s: beard_mask(lm, (100, 100), style=s) for s in BEARD_STYLES}
        for s, m in masks.items():
            assert m.shape == (100, 100) and m.sum() > 0, s
            assert m[68, 50] == 0 and m[68, 45] == 0, s  # lips excluded
            assert m[:50].sum() == 0, s  # nothing above the nose
        # by construction: moustache and goatee lie inside the full beard outline (+ 1 px polygon rasterisation)
        full = torch.nn.functional.max_pool2d(masks["full_beard"][None, None], 3, 1, 1)[0, 0]
        assert (masks["moustache"] <= full).all() and (masks["goatee"] <= full).all()
        assert masks["moustache"].sum() < masks["goatee"].sum() < masks["full_beard"].sum()
        assert (
            masks["moustache"][61, 50] == 1 and masks["moustache"][80, 50] == 0
        )  # above the lip, not the chin
        assert beard_mask(lm, (100, 100), grow=2).sum() > masks["full_beard"].sum()

    def test_errors(self):
        from hairsynth import beard_mask

        with pytest.raises(ValueError, match=r"beard_mask: 'landmarks' must have shape \(68, 2\)"):
            beard_mask(np.zeros((5, 2)), (10, 10))
        with pytest.raises(ValueError, match=r"beard_mask: 'style' must be one of"):
            beard_mask(self._landmarks(), (100, 100), style="mutton")
        with pytest.raises(ValueError, match=r"beard_mask: 'grow' must be an int >= 0"):
            beard_mask(self._landmarks(), (100, 100), grow=-1)


@pytest.mark.slow
def test_torch_compile_matches_eager(device):
    model = create_model("hairsynth_tiny", num_downs=3).to(device).eval()
    img, m, sc, sm = _inputs(device, b=1)
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(img, m, sc, sm)["output"], model(img, m, sc, sm)["output"], rtol=1e-4, atol=1e-5
        )
