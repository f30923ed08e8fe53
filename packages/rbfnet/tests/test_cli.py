"""Command line: train, eval and bench on tiny inputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from rbfnet.cli import main


def _tree(root, n=4, points=48):
    rng = np.random.default_rng(0)
    for ci, cls in enumerate(("cone", "plate")):
        for split in ("train", "test"):
            os.makedirs(root / cls / split)
            for i in range(n):
                p = rng.standard_normal((points, 3)).astype(np.float32)
                p[:, 2] *= 0.1 if ci else 1.0  # flat plates vs round blobs
                np.save(root / cls / split / f"{cls}_{i}.npy", p / np.abs(p).max())


def test_train_then_eval(tmp_path, capsys, device):
    _tree(tmp_path / "d")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "d"), "--num-points", "32", "--batch-size", "4", "--device", str(device)]
    assert main(["train", *args, "--model", "pointnet", "--epochs", "1", "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    assert 0.0 <= res["final"]["overall_acc"] <= 1.0
    assert (out / "last.pt").is_file()
    capsys.readouterr()
    assert main(["eval", *args, "--weights", str(out / "last.pt")]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["num_samples"] == 8 and len(m["per_class_acc"]) == 2


def test_bench(tmp_path, capsys, device):
    out = tmp_path / "b.json"
    argv = ["bench", "--device", str(device), "--batch-size", "2", "--num-points", "64"]
    assert main([*argv, "--models", "rbfnet_kernelwise", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["model"] == "rbfnet_kernelwise" and rows[0]["params"] > 0
    assert "rbfnet_kernelwise" in capsys.readouterr().out


def test_unknown_model(tmp_path, capsys):
    _tree(tmp_path / "d", n=1)
    argv = ["train", "--data", str(tmp_path / "d"), "--model", "nope", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'nope'" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="unknown model 'nope'"):  # issue 24: traceback with --verbose
        main([*argv, "--verbose"])


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", None])
def test_eval_bad_weights_one_line(tmp_path, capsys, content):
    """Issue 24: a missing, empty or garbage checkpoint: one clear line naming the file, exit 2."""
    _tree(tmp_path / "d", n=1)
    w = tmp_path / "w.pt"
    if content is not None:
        w.write_bytes(content)
    argv = ["eval", "--data", str(tmp_path / "d"), "--weights", str(w), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(w) in err and "Traceback" not in err
    if content is not None:
        assert "not a valid rbfnet checkpoint (truncated or not written by rbfnet)" in err
    with pytest.raises((ValueError, FileNotFoundError), match=r"w\.pt"):
        main(["--verbose", *argv])


def test_cli_subprocess_exit_code(tmp_path):
    """The real entry point: one line on stderr, non-zero exit, no traceback."""
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rbfnet",
            "eval",
            "--data",
            str(tmp_path),
            "--weights",
            str(tmp_path / "no.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "no checkpoint at" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_rbfnet_under_torch_compile(device):
    from rbfnet import RBFNet

    net = RBFNet(3, num_kernels=8, mlp=(8,), head=(8,), device=device).eval()
    x = torch.rand(2, 32, 3, device=device)
    compiled = torch.compile(net)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_train_under_torchrun_two_processes(tmp_path):
    # `torchrun --nproc-per-node 2 -m rbfnet train ...` (CPU, gloo): the CLI joins the process group from
    # the environment, both ranks train on their shard, rank 0 alone writes the checkpoint and result.
    import subprocess
    import sys

    _tree(tmp_path / "d", n=8)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "rbfnet",
        "train",
        "--data",
        str(tmp_path / "d"),
        "--num-points",
        "32",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--model",
        "pointnet",
        "--epochs",
        "2",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one result line (rank 0), and 16 training clouds = 8 per rank = 2 steps of 4 per epoch
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["step"] == 4
    res = json.loads((out / "result.json").read_text())
    assert res["final"]["num_samples"] == 16  # the whole test split, evaluated once over both ranks
