"""Model conversion, calibration, temperature schedule, freezing, export and load."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

import qnet


def _net(device: torch.device) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Linear(16, 5),
    ).to(device)


class TestQuantize:
    def test_first_last_kept_and_copy(self, device):
        net = _net(device)
        q = qnet.quantize(net, weight_levels="ternary")
        kinds = [type(m).__name__ for m in q]
        assert (
            kinds[0] == "Conv2d" and kinds[3] == "QConv2d" and kinds[8] == "QLinear" and kinds[10] == "Linear"
        )
        assert type(net[3]) is nn.Conv2d  # original untouched
        q_all = qnet.quantize(net, weight_levels="binary", keep_first_last=False, skip=["8"])
        assert [n for n, _ in qnet.quantized_layers(q_all)] == ["0", "3", "10"]

    def test_weight_init_from_pretrained(self, device):
        net = _net(device)
        q = qnet.quantize(net, weight_levels="pm4")
        wq = q[3].weight_quantizer
        assert float(wq.beta.detach()) == pytest.approx(
            5 * 4 / (4 * float(net[3].weight.detach().abs().max())), rel=1e-6
        )
        assert float(wq.alpha.detach()) == pytest.approx(1 / float(wq.beta.detach()), rel=1e-6)

    def test_calibration(self, device):
        net = _net(device)
        x = torch.randn(40, 3, 8, 8, device=device)
        q = qnet.quantize(
            net, weight_levels="ternary", act_levels="uint2", calibration=[(x[:25], None), (x[25:], None)]
        )
        aq = q[3].input_quantizer
        # the input of layer 3 is ReLU(BN(conv0(x))) of the float model in eval mode: beta = 5*3 / (4 max)
        with torch.no_grad():
            act = net[:3].eval()(x)
        assert float(aq.beta.detach()) == pytest.approx(15 / (4 * float(act.max())), rel=1e-5)
        assert bool(aq.initialized) and aq.mode == "auto"

    def test_errors(self, device):
        net = _net(device)
        with pytest.raises(ValueError, match=r"quantize: 'weight_levels' must be a signed set"):
            qnet.quantize(net, weight_levels="uint2")
        with pytest.raises(ValueError, match=r"quantize: 'method' must be"):
            qnet.quantize(net, method="dorefa")
        with pytest.raises(ValueError, match=r"nothing to quantize"):
            qnet.quantize(net, weight_levels=None, act_levels=None)
        with pytest.raises(ValueError, match=r"every candidate layer was skipped"):
            qnet.quantize(net, skip=["*"])
        with pytest.raises(TypeError, match=r"quantize: 'model' must be an nn.Module"):
            qnet.quantize("net")  # type: ignore[arg-type]
        with pytest.warns(UserWarning, match=r"without calibration data"):
            qnet.quantize(net, act_levels="uint2")


class TestTemperatureSchedule:
    def test_paper_schedule(self, device):
        q = qnet.quantize(_net(device), weight_levels="ternary")
        sched = qnet.TemperatureSchedule(q, increment=5.0)
        assert sched.value == 5.0  # T = c * epoch, epochs counted from 1
        for _ in range(3):
            sched.step()
        assert sched.value == 20.0
        assert all(float(t.temperature) == 20.0 for t in qnet.quantizers(q))

    def test_per_step_cap_and_state(self):
        qs = [qnet.Quantizer("ternary")]
        sched = qnet.TemperatureSchedule(qs, increment=10.0, start=1.0, steps_per_epoch=4, cap=20.0)
        sched.step()
        assert sched.value == pytest.approx(3.5)
        for _ in range(20):
            sched.step()
        assert sched.value == 20.0
        other = qnet.TemperatureSchedule([qnet.Quantizer("binary")], increment=1.0)
        other.load_state_dict(sched.state_dict())
        assert other.value == 20.0 and float(other.quantizers[0].temperature) == 20.0
        with pytest.raises(ValueError, match=r"TemperatureSchedule: 'increment' must be finite and > 0"):
            qnet.TemperatureSchedule(qs, increment=0.0)
        with pytest.raises(
            ValueError, match=r"TemperatureSchedule: 'target' holds no quantizer of kind 'input'"
        ):
            qnet.TemperatureSchedule(qnet.quantize(_net(torch.device("cpu"))), increment=1.0, kind="input")


class TestFreezeExport:
    @pytest.mark.parametrize(
        ("wl", "al", "method"),
        [
            ("binary", None, "qn"),
            ("ternary", "uint2", "qn"),
            ("pm4", "uint1", "qn"),
            ("ternary", "uint2", "ste"),
        ],
    )
    def test_export_load_bit_exact(self, device, tmp_path, wl, al, method):
        net = _net(device)
        x = torch.randn(16, 3, 8, 8, device=device)
        q = qnet.quantize(net, weight_levels=wl, act_levels=al, calibration=[x], method=method)
        q.train()(x).sum().backward()  # a training step leaves latent weights and quantizers in use
        hard = q.eval()(x)
        path = os.path.join(tmp_path, "m.safetensors")
        sizes = qnet.export(q, path)
        # load into the float architecture (converted from the file) and into a converted copy
        for target in (
            copy.deepcopy(net),
            qnet.quantize(net, weight_levels=wl, act_levels=al, calibration=[x], method=method),
        ):
            loaded = qnet.load(path, target)
            assert torch.equal(loaded(x), hard)
        assert sizes["quantized_ratio"] > 32 / (qnet.Levels.parse(wl).bits + 1)

    def test_packing_sizes(self, device, tmp_path):
        for spec, bits in (("binary", 1), ("ternary", 2), ("pm4", 3)):
            codes = torch.randint(0, len(qnet.Levels.parse(spec).values), (1001,))
            packed = qnet.pack_codes(codes, bits)
            assert packed.dtype == torch.uint8 and packed.numel() == (1001 * bits + 7) // 8
            assert torch.equal(qnet.unpack_codes(packed, bits, 1001), codes)
        with pytest.raises(ValueError, match=r"pack_codes: codes must lie in"):
            qnet.pack_codes(torch.tensor([4]), 2)

    def test_frozen_equals_infinite_temperature_soft(self, device):
        net = _net(device).double()
        x = torch.randn(8, 3, 8, 8, device=device, dtype=torch.float64)
        q = qnet.quantize(net, weight_levels="pm4", act_levels="uint2", calibration=[x])
        for t in qnet.quantizers(q):
            t.set_temperature(1e7)
            t.set_mode("soft")
        q.eval()  # BN in eval; quantizers forced soft at T = 1e7
        soft = q(x)
        frozen = qnet.freeze(copy.deepcopy(q))
        for t in qnet.quantizers(frozen):
            t.set_mode("hard")
        torch.testing.assert_close(frozen(x), soft, atol=1e-5, rtol=1e-5)
        assert all(layer.weight_quantizer is None for _, layer in qnet.quantized_layers(frozen))
        assert all(layer.weight_codes.dtype == torch.uint8 for _, layer in qnet.quantized_layers(frozen))

    def test_load_errors(self, device, tmp_path):
        from safetensors.torch import save_file

        bad = os.path.join(tmp_path, "bad.safetensors")
        save_file({"a": torch.zeros(1)}, bad, metadata={"format": "other"})
        with pytest.raises(ValueError, match=r"is not a valid qnet checkpoint \(truncated"):
            qnet.load(bad, _net(device))
        q = qnet.quantize(_net(device), weight_levels="ternary")
        good = os.path.join(tmp_path, "good.safetensors")
        qnet.export(q, good)
        wrong = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
        with pytest.raises(ValueError, match=r"load: layer '3' weight shape"):
            qnet.load(good, wrong.to(device))
        with pytest.raises(ValueError, match=r"export: 'model' has no QConv2d/QLinear"):
            qnet.export(_net(device), good)

    def test_recalibrate_bn_changes_stats(self, device):
        net = _net(device)
        x = torch.randn(32, 3, 8, 8, device=device)
        q = qnet.quantize(net, weight_levels="binary", act_levels="uint1", calibration=[x])
        before = q[4].running_mean.clone()
        qnet.freeze(q, bn_loader=[x])
        with torch.no_grad():
            h = q[:4](x)  # BN4 input with the frozen (hard) model
        torch.testing.assert_close(q[4].running_mean, h.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
        assert not torch.equal(before, q[4].running_mean)


class TestPhases:
    def test_three_phases(self, device):
        x = torch.randn(8, 3, 8, 8, device=device)
        q = qnet.quantize(_net(device), weight_levels="ternary", act_levels="uint2", calibration=[x])
        layer = q[3]
        qnet.set_phase(q, 1)
        assert layer.input_quantizer.mode == "off" and layer.weight.requires_grad
        # unused input-quantizer parameters are frozen in phase 1 (DDP waits for every trainable one)
        assert not layer.input_quantizer.alpha.requires_grad and not layer.input_quantizer.beta.requires_grad
        q.train()(x).sum().backward()
        unused = [n for n, p in q.named_parameters() if p.requires_grad and p.grad is None]
        assert unused == []
        q.zero_grad(set_to_none=True)
        qnet.set_phase(q, 2)
        assert layer.weight_quantizer.mode == "hard" and not layer.weight.requires_grad
        assert not layer.weight_quantizer.alpha.requires_grad and layer.input_quantizer.beta.requires_grad
        q.train()(x).sum().backward()
        assert layer.weight.grad is None and layer.input_quantizer.beta.grad is not None
        qnet.set_phase(q, 3)
        assert layer.weight.requires_grad and layer.weight_quantizer.alpha.requires_grad
        assert layer.input_quantizer.alpha.requires_grad and layer.input_quantizer.beta.requires_grad
        assert not layer.weight_quantizer.thresholds.requires_grad  # frozen biases stay frozen
        assert layer.weight_quantizer.mode == "auto" and layer.input_quantizer.mode == "auto"
        with pytest.raises(ValueError, match=r"set_phase: 'phase' must be 1, 2 or 3"):
            qnet.set_phase(q, 4)
