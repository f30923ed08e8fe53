"""Arbitrary teacher/student pairs (spatial pooling, tuple outputs) and a guard against a broken IE term."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import iekd
import iekd.functional as IF
from iekd.data import TensorLoader
from iekd.recipes import distill, mutual, sgd


def _data(n=24, size=16, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return TensorLoader(x, y, batch_size=8, shuffle=True, augment=True, seed=seed)


class _TupleNet(nn.Module):
    """Returns ``(logits, features)`` like many distillation-ready networks."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.body = iekd.models.create_model(f"resnet{depth}", num_classes=3)
        self.feature_layer = "body.layer3"

    def forward(self, x):
        f = self.body.forward_features(x)
        return self.body.forward_head(f), f


@pytest.mark.parametrize("method", ["ce", "kd", "ie-kd", "at"])
def test_models_returning_logits_feature_tuples(method):
    torch.manual_seed(0)
    teacher, student = _TupleNet(14).eval(), _TupleNet(8)
    res = distill(student, teacher, _data(), method=method, epochs=1, factor_epochs=1, eval_loader=_data(8))
    assert all(torch.isfinite(torch.tensor(v)) for v in res.history[-1].values())
    out = mutual(_TupleNet(8), _TupleNet(8), _data(), epochs=1)
    assert 0.0 <= out.history[-1]["val_acc_a"] if "val_acc_a" in out.history[-1] else True


def test_bad_network_output_is_named():
    class Bad(nn.Module):
        feature_layer = "conv"

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return {"logits": self.conv(x).mean((2, 3))}

    with pytest.raises(
        TypeError,
        match=r"distill: the network must return a logits tensor or a \(logits, \.\.\.\) tuple; got dict",
    ):
        distill(Bad(), iekd.models.resnet8(num_classes=3), _data(), method="kd", epochs=1)


class TestSpatialPooling:
    def test_strict_names_the_mismatch_and_pool_trains(self):
        torch.manual_seed(0)
        teacher = iekd.models.resnet14(num_classes=3).eval()  # layer3: (B, 64, 4, 4) at 16 px
        student = iekd.models.resnet8(num_classes=3)  # layer2: (B, 32, 8, 8)
        with pytest.raises(ValueError, match=r"AT needs equal spatial sizes.*\(or pass spatial='pool'\)"):
            distill(student, teacher, _data(), method="at", student_layer="layer2", epochs=1)
        with pytest.raises(
            ValueError, match=r"factor methods need equal spatial sizes \(or pass spatial='pool'\)"
        ):
            distill(student, teacher, _data(), method="ie-kd", student_layer="layer2", epochs=1)
        with pytest.raises(ValueError, match=r"distill: 'spatial' must be one of"):
            distill(student, teacher, _data(), method="kd", spatial="crop", epochs=1)
        for method in ("at", "ft", "ie-kd", "ie-at"):
            res = distill(
                copy.deepcopy(student),
                teacher,
                _data(),
                method=method,
                student_layer="layer2",
                spatial="pool",
                epochs=1,
                factor_epochs=1,
            )
            assert torch.isfinite(torch.tensor(res.history[-1]["total"]))
        with pytest.raises(
            ValueError, match=r"OFD needs equal spatial sizes \(spatial='pool' is not supported"
        ):
            distill(
                student,
                teacher,
                _data(),
                method="ofd",
                student_layer="layer2.0.preact",
                spatial="pool",
                epochs=1,
            )

    def test_pooled_at_matches_the_functional_on_pooled_maps(self):
        # the adapter is plain average pooling: AT of pooled maps, computed independently here
        fs, ft = torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)
        pooled = torch.nn.functional.avg_pool2d(fs, 2)  # 8x8 -> 4x4 by 2x2 means
        manual = (IF.attention_map(pooled) - IF.attention_map(ft)).pow(2).mean()
        assert torch.allclose(
            IF.attention_transfer_loss(torch.nn.functional.adaptive_avg_pool2d(fs, 4), ft), manual
        )


class TestIETermIsAlive:
    """Fails when the IE term is dropped, detached, or its exploration sign is flipped."""

    def _train(self, method, **kw):
        torch.manual_seed(3)
        teacher = iekd.models.resnet14(num_classes=3).eval()
        factor = iekd.FactorAutoencoder(64, rate=0.5).eval()
        torch.manual_seed(7)
        student = iekd.models.resnet8(num_classes=3)
        distill(
            student, teacher, _data(seed=1), method=method, factor=factor, epochs=1, optimizer=sgd(0.05), **kw
        )
        return torch.cat([p.detach().flatten() for p in student.parameters()])

    def test_ie_kd_moves_the_student_differently_from_kd(self):
        kd = self._train("kd")
        assert torch.equal(kd, self._train("kd"))  # seeded: the comparison below is not noise
        ie = self._train("ie-kd")
        assert (ie - kd).abs().max() > 1e-4  # the IE term changed the student's updates
        # control: with zero IE weights the same run equals KD exactly, so the gap above is the IE term's
        zero = self._train("ie-kd", inherit_weight=0.0, explore_weight=0.0)
        assert torch.equal(zero, kd)

    @pytest.mark.parametrize("encoder", ["frozen", "trainable"])
    def test_exploration_term_increases_the_distance_it_measures(self, encoder):
        torch.manual_seed(0)
        feat = torch.randn(8, 16, 4, 4, requires_grad=True)  # stands in for the student's feature
        t_factor = torch.randn(8, 4, 4, 4)
        ie = iekd.InheritExploreLoss(16, 4, inherit_weight=0.0, explore_weight=50.0, explore_encoder=encoder)
        params = [feat] + [p for p in ie.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1.0)

        def distance():
            with torch.no_grad():
                was = ie.training
                ie.eval()
                _, f_exp = ie.encode(feat)
                ie.train(was)
                return float(IF.factor_distance(f_exp, t_factor))

        before = distance()
        for _ in range(20):
            out = ie(feat, t_factor)
            opt.zero_grad()
            out.total.backward()
            opt.step()
        assert distance() > 1.05 * before  # exploration pushes F_exp away from F_T
        # and the inheritance term pulls F_inh towards F_T
        ie2 = iekd.InheritExploreLoss(16, 4, inherit_weight=50.0, explore_weight=0.0)
        feat2 = torch.randn(8, 16, 4, 4, requires_grad=True)
        opt2 = torch.optim.SGD([feat2, *ie2.parameters()], lr=1.0)
        first = float(ie2(feat2, t_factor).inherit.detach())
        for _ in range(20):
            out = ie2(feat2, t_factor)
            opt2.zero_grad()
            out.total.backward()
            opt2.step()
        assert float(ie2(feat2, t_factor).inherit.detach()) < 0.95 * first
