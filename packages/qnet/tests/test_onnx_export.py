"""Issue 17: standard ONNX QDQ export run by onnxruntime, compared with the frozen PyTorch model."""

from __future__ import annotations

import os

import pytest
import torch

import qnet
from qnet.models import IMAGENET_MEAN, IMAGENET_STD, resnet20_a, small_cnn

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _norm(x):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def _images(cifar_test, n, start=0):
    x, y = cifar_test
    idx = torch.arange(start, 10_000, 10_000 // n)[:n]  # every class
    return _norm(x[idx]), y[idx]


def _run_ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(s.run(None, {"input": x.numpy()})[0])


def _compare(q, x, path):
    info = qnet.export_onnx(q, x[:2], path)
    ref = q(x).detach()
    out = _run_ort(path, x)
    per_image = (out - ref).abs().amax(1) / ref.abs().max()
    agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
    return info, per_image, agree


def _check_match(per_image, agree, act):
    if act is None:  # weights only: float rounding only
        assert float(per_image.max()) < 1e-4, per_image.max()
        assert agree == 1.0
    else:
        # hard activation steps: a conv output within float rounding (~1e-6) of a threshold can take the
        # other code in onnxruntime and the difference then propagates; allow that for a few images
        assert float((per_image < 1e-4).float().mean()) >= 0.9, per_image
        assert agree >= 0.95


def _graph_ops(path):
    g = onnx.load(str(path))
    int8 = [i for i in g.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    return {n.op_type for n in g.graph.node}, int8


@pytest.mark.parametrize("act", [None, "uint2"], ids=["W2", "W2A2"])
def test_resnet20_pretrained_matches_onnxruntime(cifar_test, shared_data, tmp_path, act):
    teachers = os.path.join(shared_data, "cifar10-resnet-teachers")
    files = (
        sorted(f for f in os.listdir(teachers) if f.startswith("resnet20-"))
        if os.path.isdir(teachers)
        else []
    )
    if not files:
        pytest.skip("cifar10-resnet-teachers not under the shared data")
    net = resnet20_a(weights=os.path.join(teachers, files[0]))
    calib, _ = _images(cifar_test, 100, start=3)
    q = qnet.quantize(
        net,
        weight_levels="ternary",
        act_levels=act,
        calibration=[calib] if act else None,
        act_init="midpoint",
    )
    qnet.freeze(q, bn_loader=[calib])
    x, _ = _images(cifar_test, 40)
    info, per_image, agree = _compare(q, x, tmp_path / "r.onnx")
    ops, int8 = _graph_ops(tmp_path / "r.onnx")
    assert len(int8) == 18 and info["int8_weight_tensors"] == 18  # every quantized conv (first/last float)
    assert "DequantizeLinear" in ops and ("QuantizeLinear" in ops) == (act is not None)
    _check_match(per_image, agree, act)


@pytest.mark.parametrize(
    ("wl", "al", "method"), [("binary", None, "qn"), ("pm4", "uint2", "lsq"), ("ternary", "uint2", "ste")]
)
def test_small_cnn_matches_onnxruntime(cifar_test, tmp_path, wl, al, method):
    torch.manual_seed(0)
    net = small_cnn(num_classes=10, width=8)
    calib, _ = _images(cifar_test, 64, start=5)
    kw = {"act_init": "midpoint"} if method == "qn" else {}
    q = qnet.quantize(
        net, weight_levels=wl, act_levels=al, calibration=[calib] if al else None, method=method, **kw
    )
    qnet.freeze(q, bn_loader=[calib])
    x, _ = _images(cifar_test, 32)
    _, per_image, agree = _compare(q, x, tmp_path / "s.onnx")
    _check_match(per_image, agree, al)


class TestBadInput:
    def _frozen(self, **kw):
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.ReLU(),
            torch.nn.Conv2d(4, 4, 3),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(64, 2),
        )
        x = torch.randn(8, 3, 8, 8)
        q = qnet.quantize(net, calibration=[x] if kw.get("act_levels") else None, **kw)
        return q, x

    def _no_file(self, tmp_path):
        assert os.listdir(tmp_path) == []

    def test_training_mode(self, tmp_path):
        q, x = self._frozen(weight_levels="ternary")
        qnet.freeze(q)
        q.train()
        with pytest.raises(ValueError, match=r"export_onnx: 'model' is in training mode"):
            qnet.export_onnx(q, x, tmp_path / "m.onnx")
        self._no_file(tmp_path)

    def test_unfrozen(self, tmp_path):
        q, x = self._frozen(weight_levels="ternary")
        q.eval()
        with pytest.raises(ValueError, match=r"export_onnx: 'model' is not frozen.*call qnet.freeze first"):
            qnet.export_onnx(q, x, tmp_path / "m.onnx")
        self._no_file(tmp_path)

    def test_kmeans_activation_thresholds_cannot_map(self, tmp_path):
        q, x = self._frozen(weight_levels="ternary", act_levels="uint2")  # default act_init="paper" (k-means)
        qnet.freeze(q)
        with pytest.raises(
            ValueError, match=r"export_onnx: input quantizer of '2' has thresholds .* act_init='midpoint'"
        ):
            qnet.export_onnx(q, x, tmp_path / "m.onnx")
        self._no_file(tmp_path)

    def test_levels_outside_int8_cannot_map(self, tmp_path):
        q, x = self._frozen(weight_levels=qnet.Levels.symmetric(200))
        qnet.freeze(q)
        with pytest.raises(ValueError, match=r"export_onnx: weight levels .* leave the int8 range"):
            qnet.export_onnx(q, x, tmp_path / "m.onnx")
        self._no_file(tmp_path)

    def test_wrong_input_shape(self, tmp_path):
        q, _x = self._frozen(weight_levels="ternary")
        qnet.freeze(q)
        with pytest.raises(
            ValueError,
            match=r"export_onnx: 'example_input' must have shape \(B, 3, \.\.\.\).*got \(2, 1, 8, 8\)",
        ):
            qnet.export_onnx(q, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx")
        with pytest.raises(
            ValueError, match=r"export_onnx: 'example_input' of shape \(2, 3, 9, 9\) does not fit"
        ):
            qnet.export_onnx(q, torch.randn(2, 3, 9, 9), tmp_path / "m.onnx")
        self._no_file(tmp_path)


class TestPerChannel:
    def test_init_and_hard_values_by_hand(self):
        # ternary, 'paper' init: per channel beta_c = (5 * 1 / 4) / max|w_c|, alpha_c = 1 / beta_c,
        # thresholds +-0.05 in the beta domain (shared)
        w = torch.tensor([[2.0, -0.05, -1.0], [0.5, 0.25, -0.01]])
        q = qnet.Quantizer("ternary", channels=2)
        q.init_from(w)
        torch.testing.assert_close(q.beta.detach(), torch.tensor([1.25 / 2.0, 1.25 / 0.5]))
        torch.testing.assert_close(q.alpha.detach(), torch.tensor([2.0 / 1.25, 0.5 / 1.25]))
        # beta * w = [[1.25, -0.03125, -0.625], [1.25, 0.625, -0.025]] -> levels [[1, 0, -1], [1, 1, 0]]
        out = q.eval()(w).detach()
        torch.testing.assert_close(out, torch.tensor([[1.6, 0.0, -1.6], [0.4, 0.4, 0.0]]))

    def test_soft_gradients_reach_every_channel(self):
        q = qnet.Quantizer("ternary", channels=3)
        w = torch.randn(3, 4, requires_grad=True)
        q.init_from(w.detach())
        q.set_temperature(5.0)
        q.train()(w).sum().backward()
        assert q.alpha.grad.shape == (3,) and bool((q.beta.grad != 0).all())

    def test_quantize_freeze_export_load_onnx(self, tmp_path):
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 4, 3),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 3),
        )
        with torch.no_grad():
            net[3].weight[:4] *= 10  # channels of very different ranges
        x = torch.randn(32, 3, 8, 8)
        q = qnet.quantize(
            net,
            weight_levels="ternary",
            act_levels="uint2",
            act_init="midpoint",
            calibration=[x],
            per_channel=True,
        )
        qnet.freeze(q, bn_loader=[x])
        assert q[3].weight_scale.shape == (8,)
        ref = q(x)
        qnet.export(q, tmp_path / "m.safetensors")
        torch.testing.assert_close(qnet.load(tmp_path / "m.safetensors", net)(x), ref)
        qnet.export_onnx(q, x[:2], tmp_path / "m.onnx")
        torch.testing.assert_close(_run_ort(tmp_path / "m.onnx", x), ref.detach(), rtol=1e-5, atol=1e-5)
        g = onnx.load(str(tmp_path / "m.onnx"))
        dq_axes = [
            a.i
            for n in g.graph.node
            if n.op_type == "DequantizeLinear"
            for a in n.attribute
            if a.name == "axis"
        ]
        assert dq_axes.count(0) == 2  # the two quantized convs' weights, per output channel

    def test_per_channel_needs_qn(self):
        with pytest.raises(ValueError, match=r"quantize: 'per_channel' needs method 'qn'"):
            qnet.quantize(
                torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1)),
                keep_first_last=False,
                per_channel=True,
                method="lsq",
            )
