"""Modules: factor auto-encoder, translators, InheritExploreLoss, loss twins."""

from __future__ import annotations

import math

import pytest
import torch

import iekd
import iekd.functional as IF


class TestTranslatorAndAutoencoder:
    def test_shapes_dtype_device(self, device, dtype):
        ae = iekd.FactorAutoencoder(8, 0.5, device=device, dtype=dtype)
        out = ae(torch.randn(2, 8, 5, 5, device=device, dtype=dtype))
        assert out.factor.shape == (2, 4, 5, 5) and out.reconstruction.shape == (2, 8, 5, 5)
        assert out.factor.dtype == dtype and out.factor.device.type == device.type
        assert ae.factor_channels == 4

    def test_structure_and_init(self, device):
        # Authors' Coder: LReLU, then 3x (conv3x3 no bias -> BN -> LReLU(0.1)); channels in->in->out->out.
        t = iekd.Translator(6, 3, device=device)
        convs = [m for m in t.modules() if isinstance(m, torch.nn.Conv2d)]
        assert [(c.in_channels, c.out_channels) for c in convs] == [(6, 6), (6, 3), (3, 3)]
        assert all(c.bias is None for c in convs)
        big = iekd.Translator(64, 64, device=device)
        w = next(m for m in big.modules() if isinstance(m, torch.nn.Conv2d)).weight
        # He init N(0, sqrt(2 / (9 * C_out))): std = sqrt(2 / 576) ~ 0.0589 over 36864 draws.
        assert abs(w.std().item() - math.sqrt(2 / 576)) < 0.003

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"Translator: 'x' must have shape \(B, 6, H, W\)"):
            iekd.Translator(6, 3, device=device)(torch.randn(2, 5, 4, 4, device=device))
        with pytest.raises(ValueError, match="FactorAutoencoder: 'rate' must be > 0"):
            iekd.FactorAutoencoder(8, 0.0)
        with pytest.raises(TypeError, match="FactorAutoencoder: 'in_channels' must be an int"):
            iekd.FactorAutoencoder(8.0, 0.5)  # type: ignore[arg-type]

    def test_state_dict_and_checkpoint_roundtrip(self, device, tmp_path):
        ae = iekd.FactorAutoencoder(8, 0.5, device=device)
        ae.train()
        ae(torch.randn(4, 8, 3, 3, device=device))  # move BN running stats off their init
        path = tmp_path / "ae.pt"
        iekd.save_checkpoint(path, ae, config={"in_channels": 8, "rate": 0.5})
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
        ae2 = iekd.FactorAutoencoder(**ckpt["config"], device=device)
        ae2.load_state_dict(ckpt["state_dict"])
        ae.eval(), ae2.eval()
        x = torch.randn(2, 8, 3, 3, device=device)
        torch.testing.assert_close(ae(x).factor, ae2(x).factor)


class TestInheritExploreLoss:
    def _make(self, device, **kw):
        return iekd.InheritExploreLoss(8, 4, device=device, **kw)

    def test_split_sizes_honoured(self, device):
        for split, n in ((0.5, 4), (0.25, 2), (3, 3), (0.75, 6)):
            ie = self._make(device, split=split)
            assert ie.inherit_channels == n and ie.explore_channels == 8 - n
            assert ie.inherit_encoder.in_channels == n and ie.explore_encoder.in_channels == 8 - n
            f_inh, f_exp = ie.split(torch.randn(2, 8, 3, 3, device=device))
            assert f_inh.shape[1] == n and f_exp.shape[1] == 8 - n

    def test_random_split_is_fixed_permutation_and_saved(self, device):
        g = torch.Generator().manual_seed(3)
        ie = self._make(device, split_mode="random", generator=g)
        idx = ie.split_index.cpu()
        assert sorted(idx.tolist()) == list(range(8)) and idx.tolist() != list(range(8))
        f = torch.arange(8.0, device=device).view(1, 8, 1, 1)
        a, _ = ie.split(f)
        assert a.flatten().tolist() == [float(i) for i in idx[:4]]
        ie2 = self._make(device, split_mode="random")
        ie2.load_state_dict(ie.state_dict())
        assert torch.equal(ie2.split_index.cpu(), idx)

    def test_module_equals_functional(self, device, dtype):
        ie = self._make(device, dtype=dtype, inherit_weight=2.0, explore_weight=3.0).eval()
        s = torch.randn(2, 8, 3, 3, device=device, dtype=dtype)
        t = torch.randn(2, 4, 3, 3, device=device, dtype=dtype)
        out = ie(s, t)
        f_inh, f_exp = IF.split_channels(s, 4)
        ref_inh = IF.inheritance_loss(ie.inherit_encoder(f_inh), t)
        ref_exp = IF.exploration_loss(ie.explore_encoder(f_exp), t)
        torch.testing.assert_close(out.inherit, ref_inh)
        torch.testing.assert_close(out.explore, ref_exp)
        torch.testing.assert_close(out.total, 2.0 * ref_inh + 3.0 * ref_exp)
        assert out.inherit.item() >= 0 and out.explore.item() <= 0

    def test_teacher_gets_no_gradient_and_frozen_explorer(self, device):
        ie = self._make(device, explore_encoder="frozen")
        s = torch.randn(2, 8, 3, 3, device=device, requires_grad=True)
        t = torch.randn(2, 4, 3, 3, device=device, requires_grad=True)
        ie(s, t).total.backward()
        assert t.grad is None
        assert s.grad is not None and s.grad[:, 4:].abs().sum() > 0  # exploration half gets a gradient
        assert all(p.grad is not None for p in ie.inherit_encoder.parameters())
        assert all(not p.requires_grad for p in ie.explore_encoder.parameters())
        ie.train()
        assert not ie.explore_encoder.training  # BN of the frozen explorer stays in eval mode

    def test_exploration_half_moves_not_only_the_encoder(self, device):
        # Collapse guard: minimising L_exp must change the student's exploration channels. With the frozen
        # explorer (default) only the feature can move; with the authors' trainable explorer we check that
        # the encoder does take part (that is the collapse risk the guard removes).
        torch.manual_seed(0)
        t = torch.randn(4, 4, 3, 3, device=device)
        for mode in ("frozen", "trainable"):
            ie = self._make(device, explore_encoder=mode, inherit_weight=0.0, explore_weight=1.0)
            feat = torch.randn(4, 8, 3, 3, device=device).abs().requires_grad_(True)
            start = feat.detach().clone()
            params = [feat] + [p for p in ie.parameters() if p.requires_grad]
            opt = torch.optim.SGD(params, lr=5.0)
            first = ie(feat, t).explore.item()
            for _ in range(20):
                opt.zero_grad()
                ie(feat, t).total.backward()
                opt.step()
            assert ie(feat, t).explore.item() < first  # the dis-similarity grew
            moved = (feat.detach() - start)[:, 4:].abs().sum().item()
            assert moved > 1e-3
            assert (feat.detach() - start)[:, :4].abs().sum().item() == 0.0  # inheritance half untouched
            trainable = [p for p in ie.explore_encoder.parameters() if p.requires_grad]
            assert (mode == "frozen") == (not trainable)

    def test_errors_name_layer_and_shapes(self, device):
        ie = self._make(device, layer="layer3")
        with pytest.raises(
            ValueError,
            match=r"InheritExploreLoss\(layer='layer3'\): 'student_feature' must have shape \(B, 8, H, W\); got \(2, 6, 3, 3\)",
        ):
            ie(torch.randn(2, 6, 3, 3, device=device), torch.randn(2, 4, 3, 3, device=device))
        with pytest.raises(
            ValueError, match=r"'teacher_factor' must have shape \(2, 4, 3, 3\).*got \(2, 4, 2, 2\)"
        ):
            ie(torch.randn(2, 8, 3, 3, device=device), torch.randn(2, 4, 2, 2, device=device))
        with pytest.raises(ValueError, match="must share a dtype"):
            ie(
                torch.randn(2, 8, 3, 3, device=device),
                torch.randn(2, 4, 3, 3, device=device, dtype=torch.float64),
            )
        with pytest.raises(ValueError, match="InheritExploreLoss: 'split' as a ratio must lie in"):
            iekd.InheritExploreLoss(8, 4, split=1.0)
        with pytest.raises(
            ValueError,
            match=r"InheritExploreLoss: 'split'=8 gives 8 inheritance channels of the student's 8; need 1\.\.7",
        ):
            iekd.InheritExploreLoss(8, 4, split=8)
        with pytest.raises(ValueError, match="'explore_encoder' must be"):
            iekd.InheritExploreLoss(8, 4, explore_encoder="shared")  # type: ignore[arg-type]

    def test_gradcheck_float64(self, device):
        ie = self._make(device, dtype=torch.float64, use_bn=False)
        s = torch.randn(2, 8, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
        t = torch.randn(2, 4, 2, 2, dtype=torch.float64, device=device)
        assert torch.autograd.gradcheck(lambda a: ie(a, t).total, (s,))

    def test_checkpoint_roundtrip(self, device, tmp_path):
        ie = self._make(device, split_mode="random", explore_encoder="trainable")
        iekd.save_checkpoint(tmp_path / "ie.pt", ie)
        ie2 = self._make(device, split_mode="random", explore_encoder="trainable")
        ie2.load_state_dict(iekd.load_checkpoint(tmp_path / "ie.pt")["state_dict"])
        s, t = torch.randn(2, 8, 3, 3, device=device), torch.randn(2, 4, 3, 3, device=device)
        ie.eval(), ie2.eval()
        torch.testing.assert_close(ie(s, t).total, ie2(s, t).total)


class TestTwins:
    def test_module_equals_functional(self, device):
        zs, zt = torch.randn(3, 5, device=device), torch.randn(3, 5, device=device)
        fs, ft = torch.randn(3, 4, 2, 2, device=device), torch.randn(3, 4, 2, 2, device=device)
        pairs = [
            (iekd.KDLoss(temperature=2.0)(zs, zt), IF.kd_loss(zs, zt, temperature=2.0)),
            (iekd.DMLLoss()(zs, zt), IF.dml_loss(zs, zt)),
            (iekd.AttentionTransferLoss()(fs, ft), IF.attention_transfer_loss(fs, ft)),
            (iekd.FactorTransferLoss(p=2)(fs, ft), IF.factor_transfer_loss(fs, ft, p=2)),
            (iekd.InheritanceLoss()(fs, ft), IF.inheritance_loss(fs, ft)),
            (iekd.ExplorationLoss()(fs, ft), IF.exploration_loss(fs, ft)),
            (iekd.ReconstructionLoss(p=2)(fs, ft), IF.reconstruction_loss(fs, ft, p=2)),
        ]
        for got, ref in pairs:
            torch.testing.assert_close(got, ref)

    def test_reprs_show_config(self):
        assert "temperature=2.0" in repr(iekd.KDLoss(temperature=2.0))
        assert "explore_encoder='trainable'" in repr(iekd.InheritExploreLoss(8, 4))
        assert "explore_encoder='frozen'" in repr(iekd.InheritExploreLoss(8, 4, explore_encoder="frozen"))


@pytest.mark.slow
def test_torch_compile_matches_eager(device):
    ie = iekd.InheritExploreLoss(8, 4, device=device).eval()
    s, t = torch.randn(2, 8, 4, 4, device=device), torch.randn(2, 4, 4, 4, device=device)
    ref = ie(s, t)
    out = torch.compile(ie)(s, t)
    torch.testing.assert_close(out.total, ref.total, rtol=1e-4, atol=1e-5)
    zs, zt = torch.randn(3, 5, device=device), torch.randn(3, 5, device=device)
    kd = torch.compile(iekd.KDLoss(temperature=4.0))
    torch.testing.assert_close(kd(zs, zt), IF.kd_loss(zs, zt, temperature=4.0), rtol=1e-4, atol=1e-5)


class TestOFDLoss:
    def test_module_equals_functional_and_roundtrip(self, device):
        margin = torch.tensor([-0.4, -0.8, -0.1], device=device)
        loss = iekd.OFDLoss(5, margin, device=device)
        assert loss.connector[0].weight.shape == (3, 5, 1, 1) and loss.connector[0].bias is None
        s, t = torch.randn(2, 5, 3, 3, device=device), torch.randn(2, 3, 3, 3, device=device)
        torch.testing.assert_close(loss(s, t), IF.ofd_loss(loss.connector(s), t, margin))
        other = iekd.OFDLoss(5, torch.zeros(3, device=device), device=device)
        other.load_state_dict(loss.state_dict())  # the margin is a buffer: saved and restored
        torch.testing.assert_close(other.margin, margin)
        torch.testing.assert_close(other(s, t), loss(s, t))
        assert "normalize=False" in repr(loss)

    def test_connector_init_and_errors(self, device):
        g = torch.Generator().manual_seed(0)
        conn = iekd.OFDConnector(64, 256, generator=g, device=device)
        # OFD code init: N(0, sqrt(2 / C_out)) -> std = sqrt(2 / 256) = 0.0884
        assert abs(conn[0].weight.std().item() - (2 / 256) ** 0.5) < 0.005
        with pytest.raises(ValueError, match=r"OFDLoss: 'margin' must have shape \(C\)"):
            iekd.OFDLoss(4, torch.zeros(2, 2))
        with pytest.raises(ValueError, match=r"OFDLoss: 'student_feature' must have shape \(B, 4, H, W\)"):
            iekd.OFDLoss(4, torch.zeros(3))(torch.zeros(1, 5, 2, 2), torch.zeros(1, 3, 2, 2))
        with pytest.raises(TypeError, match="OFDConnector: 'in_channels' must be an int"):
            iekd.OFDConnector(4.0, 3)  # type: ignore[arg-type]


class TestConstructorChecks:
    """Module twins reject bad configuration when built, not at the first forward (audit, issue 3)."""

    @pytest.mark.parametrize(
        ("build", "exc", "match"),
        [
            (
                lambda: iekd.InheritanceLoss(p=3),
                ValueError,
                r"InheritanceLoss: 'p' must be one of \(1, 2\); got 3",
            ),
            (
                lambda: iekd.ExplorationLoss(reduction="none"),
                ValueError,
                r"ExplorationLoss: 'reduction' must be one of \('mean', 'batchmean', 'sum'\); got 'none'",
            ),
            (
                lambda: iekd.FactorTransferLoss(p=0),
                ValueError,
                r"FactorTransferLoss: 'p' must be one of \(1, 2\); got 0",
            ),
            (
                lambda: iekd.ReconstructionLoss(p=3),
                ValueError,
                r"ReconstructionLoss: 'p' must be one of \(1, 2\); got 3",
            ),
            (
                lambda: iekd.AttentionTransferLoss(p=0.5),
                ValueError,
                r"AttentionTransferLoss: 'p' must be >= 1; got 0\.5",
            ),
            (
                lambda: iekd.KDLoss(temperature="4"),
                TypeError,
                r"KDLoss: 'temperature' must be a number; got str",
            ),
            (
                lambda: iekd.InheritExploreLoss(8, 4, inherit_weight="50"),
                TypeError,
                r"InheritExploreLoss: 'inherit_weight' must be a number; got str",
            ),
            (
                lambda: iekd.InheritExploreLoss(8, 4, explore_weight=-1.0),
                ValueError,
                r"InheritExploreLoss: 'explore_weight' must be >= 0\.0; got -1\.0",
            ),
            (
                lambda: iekd.FactorAutoencoder(8, rate=None),
                TypeError,
                r"FactorAutoencoder: 'rate' must be a number; got NoneType",
            ),
        ],
    )
    def test_bad_config_raises_at_construction(self, build, exc, match):
        with pytest.raises(exc, match=match):
            build()


def test_defaults_follow_the_cifar10_validation_choice():
    # The authors' code averages over every element ("mean"). The weights and the exploration encoder are the
    # best cell of the CIFAR-10 validation grid (lambda in {1, 10, 50} x frozen/trainable, ResNet-56 -> ResNet-20,
    # reports/iekd/report.md "Validation choice"): trainable encoder (the authors' code), lambda 10.
    ie = iekd.InheritExploreLoss(8, 4)
    assert (ie.reduction, ie.inherit_weight, ie.explore_weight, ie.p) == ("mean", 10.0, 10.0, 1)
    assert (ie.inherit_channels, ie.split_mode, ie.explore_encoder_mode) == (4, "natural", "trainable")
    assert any(p.requires_grad for p in ie.explore_encoder.parameters())
    import inspect

    from iekd.recipes import distill, mutual

    for fn in (distill, mutual):
        params = inspect.signature(fn).parameters
        assert params["inherit_weight"].default == params["explore_weight"].default == 10.0
        assert params["explore_encoder"].default == "trainable" and params["split"].default == 0.5


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    # A failure while writing must leave the previous checkpoint intact and no temporary file behind.
    path = tmp_path / "ck.pt"
    iekd.save_checkpoint(path, state_dict={"w": torch.ones(2)}, epoch=1)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        iekd.save_checkpoint(path, state_dict={"w": torch.zeros(2)}, epoch=2)
    monkeypatch.undo()
    ck = iekd.load_checkpoint(path)  # weights_only=True inside
    assert ck["epoch"] == 1 and torch.equal(ck["state_dict"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    torch.save({"package": "other"}, tmp_path / "x.pt")
    with pytest.raises(
        ValueError, match=r"load_checkpoint: .* is not a valid iekd checkpoint \(.*package='other'\)"
    ):
        iekd.load_checkpoint(tmp_path / "x.pt")
