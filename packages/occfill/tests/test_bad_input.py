"""Issue 24: careless-user inputs give one clear error naming the argument or file (each with ``match=``)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from occfill import Completer, estimate_pose, load_checkpoint, save_checkpoint
from occfill.cli import main
from occfill.models import CompletionGenerator, create_model

_NOT_VALID = r"is not a valid occfill checkpoint \(truncated or not written by occfill\)"


@pytest.fixture
def good_checkpoint(tmp_path):
    g = CompletionGenerator(base_channels=4, depth=2)
    path = tmp_path / "good.pt"
    save_checkpoint(path, g, arch="occfill_generator", config={"base_channels": 4, "depth": 2})
    return path


def _truncated(src, dst):
    data = open(src, "rb").read()
    with open(dst, "wb") as fh:
        fh.write(data[: len(data) // 2])
    return dst


class TestBadCheckpointFiles:
    @pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "pickled-list"])
    def test_every_loader_names_the_file(self, kind, tmp_path, good_checkpoint):
        bad = tmp_path / f"{kind}.pt"
        if kind == "truncated":
            _truncated(good_checkpoint, bad)
        elif kind == "garbage":
            bad.write_bytes(os.urandom(3000))
        elif kind == "empty":
            bad.write_bytes(b"")
        else:
            torch.save([1, 2, 3], bad)
        pattern = rf"{kind}\.pt'? {_NOT_VALID}"
        with pytest.raises(ValueError, match=pattern):
            load_checkpoint(bad)
        with pytest.raises(ValueError, match=pattern):
            Completer.from_checkpoint(bad)
        with pytest.raises(ValueError, match=pattern):
            create_model("occfill_generator", weights=bad)

    def test_cli_one_line_and_nonzero_exit(self, tmp_path, good_checkpoint, capsys):
        bad = _truncated(good_checkpoint, tmp_path / "cut.pt")
        args = ["complete", "--checkpoint", str(bad), "--image", "x.png", "--reference", "y.png"]
        assert main([*args, "--out", str(tmp_path / "o.png")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "cut.pt" in err and "not a valid occfill checkpoint" in err and "Traceback" not in err

    def test_cli_missing_file_and_verbose_traceback(self, tmp_path):
        args = [
            "complete",
            "--checkpoint",
            str(tmp_path / "nope.pt"),
            "--image",
            "a.png",
            "--reference",
            "b.png",
        ]
        args += ["--out", str(tmp_path / "o.png")]
        res = subprocess.run([sys.executable, "-m", "occfill", *args], capture_output=True, text=True)
        assert res.returncode == 1
        assert res.stderr.strip().splitlines() == [res.stderr.strip()]
        assert "no checkpoint at" in res.stderr and "nope.pt" in res.stderr
        res = subprocess.run(
            [sys.executable, "-m", "occfill", "--verbose", *args], capture_output=True, text=True
        )
        assert res.returncode != 0 and "Traceback" in res.stderr

    def test_cli_bad_config_json(self, tmp_path, capsys):
        args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "g.pt"), "--config", "{bad"]
        assert main(args) == 1
        assert "occfill: error:" in capsys.readouterr().err


class TestCheckpointPermissions:
    def test_mode_follows_umask_not_mkstemp(self, tmp_path):
        old = os.umask(0o022)
        try:
            save_checkpoint(
                tmp_path / "a.pt", CompletionGenerator(base_channels=4, depth=2), arch="occfill_generator"
            )
            os.umask(0o027)
            save_checkpoint(
                tmp_path / "b.pt", CompletionGenerator(base_channels=4, depth=2), arch="occfill_generator"
            )
        finally:
            os.umask(old)
        assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o640


class TestNonFiniteAndIntegerInputs:
    def _setup(self):
        c = Completer(CompletionGenerator(base_channels=4, depth=2))
        x = torch.rand(1, 3, 16, 16)
        m = torch.zeros(1, 1, 16, 16)
        m[..., 4:8, 2:14] = 1
        return c, x, m

    @pytest.mark.parametrize("which", ["image", "reference", "mask"])
    def test_complete_rejects_nan(self, which):
        c, x, m = self._setup()
        args = {"image": x.clone(), "mask": m.clone(), "reference": x.clone()}
        args[which][0, 0, 5, 5] = float("nan")
        with pytest.raises(ValueError, match=rf"Completer.complete: '{which}' must be finite; got 1 NaN/inf"):
            c.complete(args["image"], args["mask"], args["reference"], angles=torch.zeros(1, 3))

    def test_complete_rejects_inf_angles(self):
        c, x, m = self._setup()
        with pytest.raises(ValueError, match="'angles' must be finite"):
            c.complete(x, m, x, angles=torch.tensor([[0.0, float("inf"), 0.0]]))

    def test_estimate_pose_rejects_integer_landmarks(self):
        lm = torch.randint(20, 100, (1, 68, 2))
        with pytest.raises(
            TypeError, match=r"estimate_pose: 'landmarks' must hold floating-point .* torch.int64"
        ):
            estimate_pose(lm, (128, 128))
        with pytest.raises(TypeError, match=r"estimate_pose: 'landmarks' .* got a int64 array"):
            estimate_pose(lm.numpy(), (128, 128))
        assert estimate_pose(lm.numpy().astype(np.float32), (128, 128)).shape == (1, 3)
