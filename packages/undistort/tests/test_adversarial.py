"""The completion step's hinge GAN: losses by hand, the global + local discriminator, the recipe's GAN step."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from undistort import create_model, load_ict_facekit, train
from undistort.functional import completion_loss, hinge_discriminator_loss, hinge_generator_loss
from undistort.models import CompletionDiscriminator
from undistort.synth import PortraitPairs, collate_pairs
from undistort.warp import warp


class TestHingeLosses:
    def test_by_hand(self, device):
        # real logits (2, 0.5, -1): relu(1 - x) = (0, 0.5, 2) -> mean 2.5 / 3
        # fake logits (-2, 0, 1):   relu(1 + x) = (0, 1, 2)   -> mean 1
        real = torch.tensor([2.0, 0.5, -1.0], device=device)
        fake = torch.tensor([-2.0, 0.0, 1.0], device=device)
        assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(2.5 / 3 + 1.0)
        # generator: -mean(fake) = -(-2 + 0 + 1) / 3
        assert float(hinge_generator_loss(fake)) == pytest.approx(1.0 / 3)
        # a confident discriminator (real >= 1, fake <= -1) has zero loss
        assert float(hinge_discriminator_loss(real.abs() + 1, -fake.abs() - 1)) == 0.0

    def test_patch_maps_average_over_patches(self, device):
        # (B, 1, 2, 2) patch logits: the mean runs over every patch of the batch
        real = torch.zeros(2, 1, 2, 2, device=device)  # relu(1 - 0) = 1 everywhere
        fake = torch.full((2, 1, 2, 2), -3.0, device=device)  # relu(1 - 3) = 0
        assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(1.0)

    def test_gradcheck(self, device):
        # logits away from the hinge kinks (|x| != 1) so finite differences are valid
        real = torch.tensor([0.3, 2.5, -0.4], dtype=torch.float64, device=device, requires_grad=True)
        fake = torch.tensor([0.2, -2.0, 0.6], dtype=torch.float64, device=device, requires_grad=True)
        assert torch.autograd.gradcheck(hinge_discriminator_loss, (real, fake))
        assert torch.autograd.gradcheck(hinge_generator_loss, (fake,))

    def test_errors(self, device):
        with pytest.raises(ValueError, match="hinge_discriminator_loss: 'fake_logits' must be non-empty"):
            hinge_discriminator_loss(torch.ones(2, device=device), torch.ones(0, device=device))
        with pytest.raises(
            TypeError, match="hinge_generator_loss: 'fake_logits' must have a floating-point dtype"
        ):
            hinge_generator_loss(torch.ones(2, dtype=torch.long, device=device))


class TestCompletionDiscriminator:
    def test_shapes(self, device, dtype):
        d = CompletionDiscriminator(width=4, n_layers=2, device=device, dtype=dtype)
        img = torch.rand(3, 3, 32, 24, device=device, dtype=dtype)
        out = d(img, torch.zeros(3, 1, 32, 24, device=device, dtype=dtype))
        # global: 32x24 / 2**2; local: the 16x12 crop / 2**2
        assert out["global"].shape == (3, 1, 8, 6) and out["local"].shape == (3, 1, 4, 3)
        assert out["global"].dtype == dtype and out["global"].device.type == device.type
        d = CompletionDiscriminator(width=4, n_layers=3, local=False, device=device)
        out = d(torch.rand(1, 3, 16, 16, device=device), torch.zeros(1, 1, 16, 16, device=device))
        assert set(out) == {"global"} and out["global"].shape == (1, 1, 2, 2)

    def test_crop_follows_the_holes(self, device):
        d = CompletionDiscriminator(width=2, n_layers=1, device=device)
        x = torch.arange(16 * 16, dtype=torch.float32, device=device).view(1, 1, 16, 16)
        holes = torch.zeros(1, 1, 16, 16, device=device)
        holes[..., 0:4, 12:16] = 1  # top-right corner: centroid at pixel (x, y) = (14, 2)
        # an 8x8 crop centred there is shifted to stay inside: rows 0-7, columns 8-15; it samples
        # exactly at pixel centres (same density), so it equals the slice
        assert torch.equal(d.crop(x, holes), x[..., 0:8, 8:16])
        # no hole: the centre crop, rows and columns 4-11
        assert torch.equal(d.crop(x, torch.zeros_like(holes)), x[..., 4:12, 4:12])

    def test_gradient_reaches_the_image(self, device):
        d = CompletionDiscriminator(width=2, n_layers=2, device=device)
        img = torch.rand(2, 3, 16, 16, device=device, requires_grad=True)
        holes = torch.zeros(2, 1, 16, 16, device=device)
        holes[0, :, 2:6, 2:6] = 1
        out = d(img, holes)
        (out["global"].sum() + out["local"].sum()).backward()
        assert img.grad is not None and float(img.grad.abs().sum()) > 0

    def test_errors(self, device):
        d = CompletionDiscriminator(width=2, n_layers=3, device=device)
        with pytest.raises(ValueError, match=r"CompletionDiscriminator: 'image' must be at least 16x16"):
            d(torch.rand(1, 3, 8, 8, device=device), torch.zeros(1, 1, 8, 8, device=device))
        with pytest.raises(
            ValueError, match=r"CompletionDiscriminator: 'holes' must have shape \(B, 1, H, W\)"
        ):
            d(torch.rand(1, 3, 16, 16, device=device), torch.zeros(1, 2, 16, 16, device=device))
        with pytest.raises(ValueError, match=r"CompletionDiscriminator: 'crop_fraction' must be in \(0, 1\]"):
            CompletionDiscriminator(crop_fraction=0.0)

    def test_registry_and_checkpoint(self, device, tmp_path):
        d = create_model("completiondisc_small", width=4, n_layers=2).to(device)
        assert d.arch == "completiondisc_small" and d.config["width"] == 4
        assert create_model("completiondisc_paper").width == 64
        from undistort import save_checkpoint

        save_checkpoint(tmp_path / "d.pt", d, arch=d.arch, config=d.config)
        d2 = create_model("completiondisc_small", weights=tmp_path / "d.pt").to(device)
        x, h = torch.rand(1, 3, 16, 16, device=device), torch.zeros(1, 1, 16, 16, device=device)
        d.eval(), d2.eval()  # eval: spectral norm uses its stored vectors, no power iteration
        assert torch.equal(d(x, h)["global"], d2(x, h)["global"])


@pytest.fixture(scope="module")
def items(shared_data):
    heads = load_ict_facekit(os.path.join(shared_data, "ict-facekit"))
    ds = PortraitPairs(
        heads, length=16, image_size=32, head_fraction=(0.8, 0.9), distance_range=(25.0, 40.0), seed=0
    )
    return [ds[i] for i in range(len(ds))]


class TestAdversarialRecipe:
    def _nets(self, device):
        torch.manual_seed(0)
        g = create_model("completionnet_small", width=4, dilations=(2,)).to(device)
        d = create_model("completiondisc_small", width=4, n_layers=2).to(device)
        return g, d

    def test_one_step_moves_both_nets_and_losses_match_by_hand(self, items, device):
        g, d = self._nets(device)
        g0, d0 = copy.deepcopy(g), copy.deepcopy(d)
        batch = {k: v.to(device) for k, v in collate_pairs(items[:4]).items()}
        out = train("completion", g, items[:4], steps=1, batch_size=4, discriminator=d, device=device)
        m = out["history"][0]
        assert out["discriminator"] is d
        # every weight of both nets moved (the critics' last biases may not: at initialisation every logit
        # lies inside the hinge margin, so their real and fake gradients cancel exactly)
        for before, after in ((g0, g), (d0, d)):
            b_params = dict(before.named_parameters())
            for name, p in after.named_parameters():
                if "bias" not in name:
                    assert not torch.equal(p, b_params[name]), name
        assert not torch.equal(g.head.bias, g0.head.bias)
        # the step's losses recomputed from the nets before the step (the batch holds all four items,
        # and every loss is a mean over the batch, so the sampler's order does not matter)
        warped = warp(batch["distorted"], batch["flow"], padding_mode="border")
        with torch.no_grad():
            fake = g0(warped, batch["holes"], batch["mask_corrected"])
            hm = batch["holes"]
            real = warped * (1 - hm) + batch["corrected"] * hm  # reference pixels in the holes only
            lr, lf = d0(real, hm), d0(fake, hm)
            d_loss = sum(hinge_discriminator_loss(lr[k], lf[k]) for k in ("global", "local"))
            l1 = completion_loss(fake, batch["corrected"], hm, batch["mask_corrected"])
        assert m["d_loss"] == pytest.approx(float(d_loss), rel=1e-4)
        assert m["l1"] == pytest.approx(float(l1), rel=1e-4)
        # the generator term is scored by the *updated* discriminator; total = L1 + 0.01 * adv
        assert m["loss"] == pytest.approx(m["l1"] + 0.01 * m["adv_g"], rel=1e-5)

    def test_default_builds_a_discriminator_and_weight_zero_disables_it(self, items, device):
        g, _ = self._nets(device)
        out = train("completion", g, items[:4], steps=1, batch_size=4, device=device)
        assert isinstance(out["discriminator"], CompletionDiscriminator)
        assert out["discriminator"].arch == "completiondisc_small"
        g, _ = self._nets(device)
        out = train("completion", g, items[:4], steps=1, batch_size=4, device=device, adversarial_weight=0.0)
        assert out["discriminator"] is None and "d_loss" not in out["history"][0]

    def test_checkpoint_holds_and_restores_the_discriminator(self, items, device, tmp_path):
        g, d = self._nets(device)
        ckpt = tmp_path / "comp.pt"
        train(
            "completion", g, items[:4], steps=2, batch_size=2, discriminator=d, device=device, checkpoint=ckpt
        )
        saved = torch.load(ckpt, weights_only=True)["extra"]["discriminator"]
        assert saved["arch"] == "completiondisc_small" and "optimizer" in saved
        # resuming with no discriminator rebuilds it from the checkpoint (steps already done: no new step)
        g2 = create_model("completionnet_small", width=4, dilations=(2,)).to(device)
        out = train("completion", g2, items[:4], steps=2, batch_size=2, device=device, checkpoint=ckpt)
        assert out["history"] == [] and out["discriminator"].width == 4
        for k, v in d.state_dict().items():
            assert torch.equal(out["discriminator"].state_dict()[k], v), k

    def test_errors_before_work(self, items, device):
        g, d = self._nets(device)
        flow = create_model("flownet_small", widths=(4, 8))
        with pytest.raises(ValueError, match="train: 'discriminator' is only used by task 'completion'"):
            train("flow", flow, items, steps=1, discriminator=d)
        with pytest.raises(
            ValueError, match="train: a 'discriminator' was given but 'adversarial_weight' is 0"
        ):
            train("completion", g, items, steps=1, discriminator=d, adversarial_weight=0.0)
        with pytest.raises(ValueError, match="train: 'adversarial_weight' must be >= 0"):
            train("completion", g, items, steps=1, adversarial_weight=-0.1)
        with pytest.raises(TypeError, match=r"train: 'discriminator' must be an nn\.Module"):
            train("completion", g, items, steps=1, discriminator="patch")  # type: ignore[arg-type]

    def test_adversarial_training_learns_the_holes(self, items, device):
        # 40 seeded steps on real ICT-FaceKit renders (near distances, so there are holes): the L1 part
        # falls and the completion beats the border-warp baseline (hole pixels left as warped) on the
        # hole-weighted L1, while the discriminator trains alongside (seen: 0.040 vs 0.057).
        torch.manual_seed(0)
        g = create_model("completionnet_small", width=8, dilations=(2,)).to(device)
        d = create_model("completiondisc_small", width=4, n_layers=2).to(device)
        out = train(
            "completion", g, items, steps=40, batch_size=8, lr=3e-3, discriminator=d, device=device, seed=0
        )
        l1 = [h["l1"] for h in out["history"]]
        assert sum(l1[-8:]) / 8 < 0.8 * sum(l1[:8]) / 8
        b = {k: v.to(device) for k, v in collate_pairs(items).items()}
        warped = warp(b["distorted"], b["flow"], padding_mode="border")
        assert float(b["holes"].sum()) > 0
        g.eval()
        with torch.no_grad():
            ours = completion_loss(g(warped, b["holes"], b["mask_corrected"]), b["corrected"], b["holes"])
        base = completion_loss(warped, b["corrected"], b["holes"])
        assert float(ours) < float(base)
