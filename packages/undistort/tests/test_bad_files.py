"""Issue 24: every loader names the file and says it is not a valid undistort checkpoint; atomic writes
have the usual permissions; the CLI prints one line for user errors and the traceback only with --verbose."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch

from undistort import Undistorter, create_model, load_checkpoint, save_checkpoint
from undistort.checkpoint import CheckpointError, atomic_torch_save
from undistort.cli import load_pairs, main

MSG = r"not a valid undistort .*\(truncated or not written by undistort"


def _tiny(tmp_path):
    und = Undistorter(create_model("flownet_small", widths=(4, 8), conditioning="none"), work_size=16)
    path = tmp_path / "good.pt"
    und.save(path)
    return path


def _bad_files(tmp_path, good):
    data = good.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(300))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    return [trunc, garbage, empty, foreign, text]


@pytest.mark.parametrize("loader", ["load_checkpoint", "Undistorter.load", "load_pairs", "create_model"])
def test_bad_files_name_the_file(tmp_path, loader):
    good = _tiny(tmp_path)
    for bad in _bad_files(tmp_path, good):
        with pytest.raises(CheckpointError, match=MSG) as info:
            if loader == "load_checkpoint":
                load_checkpoint(bad)
            elif loader == "Undistorter.load":
                Undistorter.load(bad)
            elif loader == "load_pairs":
                load_pairs(bad)
            else:
                create_model("flownet_small", weights=bad)
        assert str(bad) in str(info.value)
        assert isinstance(info.value, ValueError)  # callers catching ValueError keep working


def test_undistorter_load_rejects_malformed_config(tmp_path):
    save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(1, 1), arch="undistorter", config={"nope": 1})
    with pytest.raises(CheckpointError, match=r"Undistorter.load: .*x.pt.* not a valid undistort checkpoint"):
        Undistorter.load(tmp_path / "x.pt")


def test_atomic_write_has_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_torch_save({"a": torch.zeros(1)}, tmp_path / "a.pt")
        save_checkpoint(tmp_path / "b.pt", torch.nn.Linear(1, 1), arch="x")
    finally:
        os.umask(old)
    for name in ("a.pt", "b.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
    os.umask(0o027)
    try:
        atomic_torch_save({"a": torch.zeros(1)}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "c.pt").st_mode) == 0o640
    assert not list(tmp_path.glob(".tmp-*"))


def test_cli_user_errors_one_line(tmp_path, capsys):
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"\x00garbage")
    cases = [
        (
            ["correct", "--model", str(tmp_path / "missing.pt"), "--image", "x.jpg", "--out", "y.png"],
            "no file",
        ),
        (["correct", "--model", str(garbage), "--image", "x.jpg", "--out", "y.png"], "not a valid undistort"),
        (["calibrate", "--model", str(garbage), "--image", "x.jpg"], "not a valid undistort"),
        (["train", "--pairs", str(garbage), "--out", str(tmp_path / "m.pt")], "not a valid undistort pair"),
    ]
    for argv, match in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert match in err and str(argv[2]) in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (
        main(["correct", str(tmp_path / "nope.jpg"), str(tmp_path / "o.jpg"), "--model", str(garbage)]) == 1
    )
    assert "not a valid undistort checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "arguments are required" in err


def test_cli_verbose_shows_traceback(tmp_path):
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"\x00garbage")
    argv = ["correct", "--model", str(garbage), "--image", "x.jpg", "--out", "y.png"]
    # (the quiet path is checked in-process above; one subprocess checks the real entry point)
    loud = subprocess.run(
        [sys.executable, "-m", "undistort", "--verbose", *argv], capture_output=True, text=True
    )
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "CheckpointError" in loud.stderr
