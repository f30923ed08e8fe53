"""Quantizer modules and drop-in layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import qnet
from qnet import QConv2d, QLinear, Quantizer, STEQuantizer
from qnet import functional as QF


class TestQuantizer:
    def test_module_equals_functional(self, device, dtype):
        q = Quantizer("pm4", device=device, dtype=dtype)
        w = torch.randn(64, device=device, dtype=dtype)
        q.init_from(w)
        q.set_temperature(7.0)
        soft = QF.soft_quantize(w, q.thresholds, q.scales, 7.0, q.alpha, q.beta, q.offset)
        hard = QF.hard_quantize(w, q.thresholds, q.scales, q.alpha, q.beta, q.offset)
        torch.testing.assert_close(q.train()(w), soft)
        torch.testing.assert_close(q.eval()(w), hard)
        assert q(w).dtype == dtype and q(w).device.type == device.type

    def test_modes(self, device):
        q = Quantizer("ternary", device=device)
        x = torch.randn(10, device=device)
        q.set_mode("off")
        assert q(x) is x
        assert not bool(q.initialized)
        q.set_mode("hard")
        y = q.train()(x)  # hard even in training mode
        assert bool(q.initialized)  # lazy initialisation from the first input
        assert len(torch.unique(y)) <= 3
        with pytest.raises(ValueError, match=r"Quantizer.set_mode: 'mode' must be one of"):
            q.set_mode("fast")
        with pytest.raises(ValueError, match=r"set_temperature: 'value' must be finite and > 0"):
            q.set_temperature(0.0)

    def test_learnable_parameters(self, device):
        q = Quantizer("ternary", device=device)
        assert {n for n, p in q.named_parameters() if p.requires_grad} == {"alpha", "beta"}
        q2 = Quantizer("ternary", learn_thresholds=True, device=device)
        assert "thresholds" in dict(q2.named_parameters())
        x = torch.randn(50, device=device)
        q2.init_from(x)
        q2.train()(x).sum().backward()
        assert q2.thresholds.grad is not None and q2.alpha.grad is not None and q2.beta.grad is not None

    def test_state_dict_round_trip(self, device):
        q = Quantizer("pm4", device=device)
        q.init_from(torch.randn(100, device=device))
        q.set_temperature(12.0)
        q2 = Quantizer("pm4", device=device)
        q2.load_state_dict(q.state_dict())
        x = torch.randn(30, device=device)
        assert torch.equal(q.eval()(x), q2.eval()(x))
        assert bool(q2.initialized) and float(q2.temperature) == 12.0

    def test_repr_and_errors(self):
        assert "levels={-1,0,1}" in repr(Quantizer("ternary"))
        with pytest.raises(ValueError, match=r"Quantizer: 'init' must be"):
            Quantizer("ternary", init="lloyd")
        with pytest.raises(ValueError, match=r"unknown level set name"):
            Quantizer("septenary")


class TestSTEQuantizer:
    def test_binary_is_bwn(self, device):
        w = torch.randn(200, device=device, requires_grad=True)
        y = STEQuantizer("binary", device=device)(w)
        torch.testing.assert_close(y.detach(), torch.sign(w.detach()) * w.detach().abs().mean())
        y.sum().backward()
        assert w.grad is not None and bool((w.grad != 0).any())

    def test_activation_range(self, device):
        q = STEQuantizer("uint2", device=device)
        q.init_from(torch.tensor([0.0, 3.0], device=device))
        assert q(torch.tensor([-1.0, 0.4, 1.6, 9.0], device=device)).tolist() == [0.0, 0.0, 2.0, 3.0]

    def test_export_codes(self, device):
        q = STEQuantizer("pm4", device=device)
        w = torch.randn(300, device=device)
        codes, scale = q.export_codes(w)
        torch.testing.assert_close(q(w), q.values[codes] * scale)


class TestLayers:
    def test_quantization_off_equals_float(self, device):
        conv = nn.Conv2d(3, 5, 3, padding=1, device=device)
        qconv = QConv2d(3, 5, 3, padding=1, device=device, weight_levels=None)
        qconv.load_state_dict(conv.state_dict())
        x = torch.randn(2, 3, 6, 6, device=device)
        torch.testing.assert_close(qconv(x), conv(x))
        lin = nn.Linear(4, 3, device=device)
        qlin = QLinear.from_float(lin, weight_levels="ternary", act_levels="uint2")
        qlin.weight_quantizer.set_mode("off")
        qlin.input_quantizer.set_mode("off")
        x = torch.randn(5, 4, device=device)
        torch.testing.assert_close(qlin(x), lin(x))

    def test_from_float_to_float(self, device):
        conv = nn.Conv2d(3, 4, 3, stride=2, bias=True, device=device)
        q = QConv2d.from_float(conv, weight_levels="binary")
        assert torch.equal(q.weight, conv.weight) and q.stride == (2, 2)
        back = q.to_float()
        assert type(back) is nn.Conv2d and torch.equal(back.weight, conv.weight)
        with pytest.raises(TypeError, match=r"QConv2d.from_float: 'mod' must be an nn.Conv2d"):
            QConv2d.from_float(nn.Linear(2, 2))  # type: ignore[arg-type]

    def test_eval_uses_only_levels(self, device):
        q = QConv2d(3, 8, 3, device=device, weight_levels="pm4")
        w = q.eval().quantized_weight()
        allowed = q.weight_quantizer.alpha * q.weight_quantizer.values
        assert bool(torch.isclose(w.reshape(-1, 1), allowed, atol=1e-6, rtol=0).any(-1).all())
        assert q(torch.randn(1, 3, 5, 5, device=device)).shape == (1, 8, 3, 3)

    def test_gradients_flow(self, device):
        q = QLinear(6, 3, device=device, weight_levels="ternary", act_levels="uint2")
        x = torch.rand(4, 6, device=device)
        q.train()(x).sum().backward()
        assert q.weight.grad is not None and q.weight_quantizer.alpha.grad is not None
        assert q.input_quantizer.beta.grad is not None

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"QLinear: 'weight_levels' must be a signed set"):
            QLinear(3, 3, device=device, weight_levels="uint2")
        with pytest.raises(ValueError, match=r"QConv2d: 'method' must be 'qn', 'ste' or 'lsq'"):
            QConv2d(3, 3, 1, device=device, method="dorefa")

    def test_torch_compile(self, device):
        torch._dynamo.reset()
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).to(
            device
        )
        x = torch.rand(32, 8, device=device)
        qm = qnet.quantize(net, weight_levels="ternary", act_levels="uint2", calibration=[x])
        ref = qm(x)
        compiled = torch.compile(qm, backend="eager" if device.type == "cpu" else "inductor", fullgraph=True)
        torch.testing.assert_close(compiled(x), ref)
        compiled(x).sum().backward()
        q = qnet.quantizers(qm, "weight")[0]
        assert q.alpha.grad is not None


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager(device):
    # the real compiler (inductor, C++ on CPU / Triton on CUDA), forward and backward of a W2/A2 model
    torch._dynamo.reset()
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).to(
        device
    )
    x = torch.rand(32, 8, device=device)
    qm = qnet.quantize(net, weight_levels="ternary", act_levels="uint2", calibration=[x])
    for q in qnet.quantizers(qm):
        q.set_temperature(7.0)
    ref = qm(x)
    ref.square().sum().backward()
    want = {n: p.grad.clone() for n, p in qm.named_parameters() if p.grad is not None}
    qm.zero_grad(set_to_none=True)
    out = torch.compile(qm)(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    got = {n: p.grad for n, p in qm.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], atol=1e-4, rtol=1e-4, msg=n)


def test_unsorted_learned_thresholds_warn(device):
    q = Quantizer("ternary", learn_thresholds=True, device=device)
    q.init_from(torch.randn(20, device=device))
    with torch.no_grad():
        q.thresholds.copy_(torch.tensor([0.3, -0.3], device=device))
    with pytest.warns(UserWarning, match=r"thresholds are no longer sorted"):
        q.export_codes(torch.randn(5, device=device))
