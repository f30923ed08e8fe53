"""Issue 24: loaders, file permissions, opt-in finiteness checks and calibration data checks."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from torch import nn

import qnet
from qnet.checkpoint import load_checkpoint, save_checkpoint
from qnet.functional import hard_quantize, soft_quantize, ste_quantize


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2)
    )


def _umask_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _truncate(path, keep: int) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:keep])


class TestCheckpointFiles:
    def test_save_checkpoint_has_normal_permissions(self, tmp_path):
        p = tmp_path / "m.pt"
        save_checkpoint(p, _net())
        # mkstemp alone would give 0o600; a plain open() gives 0o666 minus the umask
        assert stat.S_IMODE(os.stat(p).st_mode) == _umask_mode()

    def test_export_has_normal_permissions(self, tmp_path):
        p = tmp_path / "m.safetensors"
        qnet.export(qnet.quantize(_net(), weight_levels="ternary", keep_first_last=False), p)
        assert stat.S_IMODE(os.stat(p).st_mode) == _umask_mode()

    @pytest.mark.parametrize("keep", [0, 10, 200, -50])
    def test_truncated_checkpoint(self, tmp_path, keep):
        p = tmp_path / "m.pt"
        save_checkpoint(p, _net())
        _truncate(p, keep if keep >= 0 else os.path.getsize(p) + keep)
        with pytest.raises(
            ValueError, match=r"load_checkpoint: '.*m\.pt' is not a valid qnet checkpoint \(truncated"
        ):
            load_checkpoint(p)

    def test_garbage_checkpoint(self, tmp_path):
        p = tmp_path / "g.pt"
        p.write_bytes(os.urandom(1000))
        with pytest.raises(
            ValueError, match=r"'.*g\.pt' is not a valid qnet checkpoint \(truncated or not written"
        ):
            load_checkpoint(p)

    def test_foreign_torch_file(self, tmp_path):
        p = tmp_path / "f.pt"
        torch.save({"state_dict": {}}, p)
        with pytest.raises(ValueError, match=r"'.*f\.pt' is not a valid qnet checkpoint"):
            load_checkpoint(p)

    def test_missing_checkpoint(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"load_checkpoint: 'path' '.*nope\.pt' does not exist"):
            load_checkpoint(tmp_path / "nope.pt")

    def test_create_model_with_garbage_weights(self, tmp_path):
        p = tmp_path / "w.pt"
        p.write_bytes(b"PK\x03\x04" + os.urandom(300))
        with pytest.raises(ValueError, match=r"'.*w\.pt' is not a valid qnet checkpoint"):
            qnet.models.create_model("small_cnn", weights=p)

    @pytest.mark.parametrize("keep", [5, 100, -20])
    def test_truncated_export(self, tmp_path, keep):
        p = tmp_path / "m.safetensors"
        qnet.export(qnet.quantize(_net(), weight_levels="ternary", keep_first_last=False), p)
        _truncate(p, keep if keep >= 0 else os.path.getsize(p) + keep)
        with pytest.raises(
            ValueError, match=r"load: '.*m\.safetensors' is not a valid qnet checkpoint \(truncated"
        ):
            qnet.load(p, _net())


class TestFiniteChecks:
    def test_soft_quantize_opt_in(self):
        x = torch.tensor([0.1, float("nan"), 0.3])
        thr, sc = torch.tensor([0.0]), torch.tensor([2.0])
        # default: no check (hot path), NaN propagates
        assert torch.isnan(soft_quantize(x, thr, sc, 10.0)).any()
        with pytest.raises(
            ValueError, match=r"soft_quantize: 'x' must be finite; got 1 NaN/inf value\(s\) of 3"
        ):
            soft_quantize(x, thr, sc, 10.0, check_finite=True)

    def test_hard_and_ste_opt_in(self):
        x = torch.tensor([float("inf"), 0.0])
        with pytest.raises(ValueError, match=r"hard_quantize: 'x' must be finite"):
            hard_quantize(x, torch.tensor([0.0]), torch.tensor([2.0]), check_finite=True)
        with pytest.raises(ValueError, match=r"ste_quantize: 'x' must be finite"):
            ste_quantize(x, torch.tensor([-1.0, 1.0]), check_finite=True)

    def test_quantizer_attribute(self):
        q = qnet.Quantizer("ternary")
        q.init_from(torch.tensor([-1.0, 0.0, 1.0]))
        q.check_finite = True
        with pytest.raises(ValueError, match=r"soft_quantize: 'x' must be finite"):
            q.train()(torch.tensor([float("nan")]))


class TestCalibrationData:
    def test_wrong_channels(self):
        calib = [(torch.randn(4, 1, 8, 8), torch.zeros(4))]
        with pytest.raises(
            ValueError,
            match=r"quantize: 'calibration' batches must have shape \(B, 3, \.\.\.\).*got \(4, 1, 8, 8\)",
        ):
            qnet.quantize(_net(), act_levels="uint2", calibration=calib)

    def test_uint8(self):
        calib = [torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)]
        with pytest.raises(
            TypeError, match=r"quantize: 'calibration' batches must be floating point.*torch\.uint8"
        ):
            qnet.quantize(_net(), act_levels="uint2", calibration=calib)

    def test_generator_checked_before_running(self):
        # a one-shot iterator cannot be peeked at; the check runs in calibrate before the batch is used
        calib = iter([torch.randn(2, 5, 8, 8)])
        with pytest.raises(ValueError, match=r"quantize: 'calibration' batches must have shape \(B, 3"):
            qnet.quantize(_net(), act_levels="uint2", calibration=calib)

    def test_calibrate_names_loader(self):
        q = qnet.quantize(_net(), act_levels="uint2", weight_levels=None)
        with pytest.raises(ValueError, match=r"calibrate: 'loader' batches must have shape"):
            qnet.calibrate(q, [torch.randn(2, 2, 8, 8)])


def test_read_image_archive_errors(tmp_path):
    from qnet.data import read_image_archive

    with pytest.raises(
        FileNotFoundError, match=r"read_image_archive: 'path' '.*nope\.tar\.gz' does not exist"
    ):
        read_image_archive(tmp_path / "nope.tar.gz")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(os.urandom(500))
    with pytest.raises(
        ValueError, match=r"read_image_archive: '.*bad\.tar\.gz' is not a readable tar archive"
    ):
        read_image_archive(bad)
