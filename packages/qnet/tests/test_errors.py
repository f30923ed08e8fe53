"""Every public entry point rejects bad arguments before doing work, naming the function and the argument."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import qnet
from qnet.checkpoint import load_checkpoint, save_checkpoint
from qnet.data import ImageFolderDataset, stratified_split
from qnet.models import SmallCNN, small_cnn
from qnet.recipes import evaluate, train


def _net(device):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
        nn.Linear(3, 2),
    ).to(device)


def _batches(device):
    return [(torch.randn(2, 3, 8, 8, device=device), torch.tensor([0, 1], device=device))]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda q, d: qnet.calibrate("m", []),
            TypeError,
            r"calibrate: 'model' must be an nn\.Module; got str",
        ),
        (
            lambda q, d: qnet.calibrate(q, None),
            TypeError,
            r"calibrate: 'loader' must be an iterable.*NoneType",
        ),
        (
            lambda q, d: qnet.recalibrate_bn("m", []),
            TypeError,
            r"recalibrate_bn: 'model' must be an nn\.Module",
        ),
        (
            lambda q, d: qnet.recalibrate_bn(q, 3),
            TypeError,
            r"recalibrate_bn: 'loader' must be an iterable.*int",
        ),
        (lambda q, d: qnet.freeze("m"), TypeError, r"freeze: 'model' must be an nn\.Module; got str"),
        (
            lambda q, d: qnet.freeze(q, bn_loader=5),
            TypeError,
            r"freeze: 'bn_loader' must be an iterable.*int",
        ),
        (lambda q, d: qnet.set_phase("m", 1), TypeError, r"set_phase: 'model' must be an nn\.Module"),
        (lambda q, d: qnet.quantizers("m"), TypeError, r"quantizers: 'model' must be an nn\.Module"),
        (
            lambda q, d: qnet.quantized_layers("m"),
            TypeError,
            r"quantized_layers: 'model' must be an nn\.Module",
        ),
        (
            lambda q, d: qnet.TemperatureSchedule("m", 1.0),
            TypeError,
            r"TemperatureSchedule: 'target' must be a model",
        ),
        (
            lambda q, d: qnet.TemperatureSchedule([nn.ReLU()], 1.0),
            TypeError,
            r"'target' must hold Quantizer.*ReLU",
        ),
        (lambda q, d: qnet.export("m", "x"), TypeError, r"export: 'model' must be an nn\.Module; got str"),
        (
            lambda q, d: qnet.export(q, 123),
            TypeError,
            r"export: 'path' must be a str or os\.PathLike; got int",
        ),
        (lambda q, d: qnet.load(123, q), TypeError, r"load: 'path' must be a str or os\.PathLike; got int"),
        (
            lambda q, d: qnet.load(os.path.join(d, "none"), "m"),
            TypeError,
            r"load: 'model' must be an nn\.Module",
        ),
        (
            lambda q, d: qnet.load(os.path.join(d, "none"), q),
            FileNotFoundError,
            r"load: 'path' .* is not a file",
        ),
        (
            lambda q, d: qnet.pack_codes(torch.rand(4), 2),
            TypeError,
            r"pack_codes: 'codes' must be an integer.*float32",
        ),
        (
            lambda q, d: qnet.unpack_codes(torch.zeros(1), 2, 4),
            TypeError,
            r"unpack_codes: 'packed'.*uint8.*float32",
        ),
        (
            lambda q, d: qnet.unpack_codes(torch.zeros(1, dtype=torch.uint8), 0, 4),
            ValueError,
            r"'bits' must be.*0",
        ),
        (lambda q, d: train("m", [], epochs=1), TypeError, r"train: 'model' must be an nn\.Module; got str"),
        (lambda q, d: train(q, 5, epochs=1), TypeError, r"train: 'train_loader' must be an iterable.*int"),
        (lambda q, d: train(q, [], epochs=0), ValueError, r"train: 'epochs' must be an int >= 1; got 0"),
        (lambda q, d: train(q, [], epochs=1, temperature=5), TypeError, r"train: 'temperature' must be.*int"),
        (
            lambda q, d: train(q, [], epochs=1, temperature=[1.0]),
            TypeError,
            r"'temperature' must hold.*float",
        ),
        (
            lambda q, d: train(q, [], epochs=1, resume=True),
            ValueError,
            r"train: 'resume=True' needs a 'checkpoint'",
        ),
        (
            lambda q, d: train(q, [], epochs=1, max_steps=0),
            ValueError,
            r"train: 'max_steps' must be an int >= 1",
        ),
        (
            lambda q, d: train(q, [], epochs=1),
            ValueError,
            r"train: 'train_loader' yielded no batch in epoch 0",
        ),
        (lambda q, d: evaluate("m", []), TypeError, r"evaluate: 'model' must be an nn\.Module; got str"),
        (lambda q, d: evaluate(q, 5), TypeError, r"evaluate: 'loader' must be an iterable.*int"),
        (lambda q, d: evaluate(q, []), ValueError, r"evaluate: 'loader' yielded no sample"),
        (lambda q, d: save_checkpoint(os.path.join(d, "c.pt"), "m"), TypeError, r"save_checkpoint: 'model'"),
        (lambda q, d: load_checkpoint(5), TypeError, r"load_checkpoint: 'path' must be a str"),
        (lambda q, d: stratified_split([0, 1], 0.5), TypeError, r"stratified_split: 'labels'.*integer.*list"),
        (
            lambda q, d: stratified_split(torch.zeros(4), 0.5),
            TypeError,
            r"'labels' must be an integer.*float32",
        ),
        (
            lambda q, d: stratified_split(torch.zeros(2, 2, dtype=torch.long), 0.5),
            ValueError,
            r"shape \(N,\)",
        ),
        (
            lambda q, d: ImageFolderDataset(d, size=0),
            ValueError,
            r"ImageFolderDataset: 'size' must be an int >= 1",
        ),
        (
            lambda q, d: SmallCNN(num_classes=0),
            ValueError,
            r"SmallCNN: 'num_classes' must be an int >= 1; got 0",
        ),
        (lambda q, d: small_cnn(width=2.5), ValueError, r"SmallCNN: 'width' must be an int >= 1; got 2\.5"),
    ],
)
def test_public_entry_points_reject_bad_arguments(call, exc, match, device, tmp_path):
    q = qnet.quantize(_net(device), weight_levels="ternary", keep_first_last=False)
    with pytest.raises(exc, match=match):
        call(q, str(tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"skip": 3},
            TypeError,
            r"quantize: 'skip' must be a layer name/pattern or an iterable of them; got 3",
        ),
        ({"skip": ["0", 1]}, TypeError, r"quantize: 'skip' must be a layer name/pattern"),
        ({"keep_first_last": "yes"}, TypeError, r"quantize: 'keep_first_last' must be a bool; got str"),
        (
            {"act_levels": "uint2", "calibration": 5},
            TypeError,
            r"quantize: 'calibration' must be an iterable.*int",
        ),
    ],
)
def test_quantize_rejects_bad_arguments(kwargs, exc, match, device):
    with pytest.raises(exc, match=match):
        qnet.quantize(_net(device), weight_levels="ternary", **kwargs)


def test_load_rejects_non_safetensors_file(device, tmp_path):
    p = os.path.join(tmp_path, "x.pt")
    torch.save({"a": 1}, p)
    with pytest.raises(ValueError, match=r"load: '.*x\.pt' is not a valid qnet checkpoint \(truncated"):
        qnet.load(p, _net(device))


def test_errors_are_raised_before_work(device, tmp_path):
    # a bad checkpoint argument must fail before a single optimizer step changes the model
    q = qnet.quantize(_net(device), weight_levels="ternary", keep_first_last=False)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    with pytest.raises(TypeError, match=r"train: 'checkpoint' must be a str or os\.PathLike; got int"):
        train(q, _batches(device), epochs=1, checkpoint=7)
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_diverged_scales_raise_a_named_error_not_an_aten_one(dtype):
    # The regime of a W2/A2 run that blew up (issue 16): beta ~ 1e37 at T = 60 gives a threshold slope
    # alpha * beta * T * s ~ 6e38, past float32's 3.4e38; float64 holds it, so only beta = 1e307 breaks it.
    from qnet.functional import soft_quantize

    beta = 1e37 if dtype == torch.float32 else 1e307
    x = torch.randn(64, dtype=dtype, requires_grad=True)
    steps = (torch.tensor([0.0, 1.0], dtype=dtype), torch.tensor([1.0, 1.0], dtype=dtype))
    with pytest.raises(FloatingPointError, match=r"alpha \* beta \* temperature .* beta=1e\+3"):
        soft_quantize(x, *steps, 60.0, alpha=1.0, beta=torch.tensor(beta, dtype=dtype))
    with pytest.raises(FloatingPointError, match="alpha = inf"):
        soft_quantize(x, *steps, 60.0, alpha=float("inf"), beta=1.0)
    # one decade inside the range still works and gives the exact hard steps (independent values)
    y = soft_quantize(x.detach(), *steps, 60.0, alpha=1.0, beta=beta / 100)
    assert torch.equal(y, (x.detach() > 0).to(dtype) + (x.detach() * beta / 100 > 1).to(dtype))
