"""The ``python -m undistort`` CLI end to end (tiny sizes) and the README quick start."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from undistort import PortraitPairs, Undistorter, load_ict_facekit
from undistort.cli import load_pairs, main

HERE = os.path.dirname(os.path.abspath(__file__))


def test_cli_synth_train_correct(shared_data, tmp_path, capsys, device):
    heads = os.path.join(shared_data, "ict-facekit")
    assert (
        main(
            ["synth", "--heads", heads, "--out", str(tmp_path / "g.png"), "--num", "2", "--image-size", "32"]
        )
        == 0
    )
    assert Image.open(tmp_path / "g.png").size == (96, 64)
    model = tmp_path / "m.pt"
    args = [
        "train",
        "--heads",
        heads,
        "--out",
        str(model),
        "--steps",
        "2",
        "--image-size",
        "32",
        "--train-size",
        "4",
    ]
    assert main([*args, "--batch-size", "2", "--identities", "3", "--device", device.type]) == 0
    for task in ("flow", "distance", "completion", "segmentation"):
        assert (tmp_path / f"m.{task}.pt").exists()
    # completion trains with its hinge GAN by default: the discriminator is in the checkpoint ...
    ckpt = torch.load(tmp_path / "m.completion.pt", weights_only=True)
    assert ckpt["extra"]["discriminator"]["arch"] == "completiondisc_small"
    # ... and --adversarial-weight 0 gives the L1-only variant (no discriminator stored)
    l1_args = [
        *args[:4],
        str(tmp_path / "l1.pt"),
        *args[5:],
        "--tasks",
        "completion",
        "--adversarial-weight",
        "0",
    ]
    assert main([*l1_args, "--batch-size", "2", "--identities", "3", "--device", device.type]) == 0
    assert "extra" not in torch.load(tmp_path / "l1.completion.pt", weights_only=True)
    und = Undistorter.load(model)
    assert und.seg_net is not None and und.completion_net is not None
    img = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    assert (
        main(
            [
                "correct",
                "--model",
                str(model),
                "--image",
                str(tmp_path / "in.png"),
                "--out",
                str(tmp_path / "o.png"),
                "--whole-image",
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "o.png").size == (40, 40)
    capsys.readouterr()
    assert main(["calibrate", "--model", str(model), "--image", str(tmp_path / "in.png")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(res) == {"distance", "focal", "focal_35mm"} and res["distance"] > 0


def test_cli_synth_writes_a_data_set_that_train_reads(shared_data, tmp_path):
    heads = os.path.join(shared_data, "ict-facekit")
    pairs = tmp_path / "pairs.pt"
    args = ["synth", "--heads", heads, "--out", str(pairs), "--num", "3", "--image-size", "32"]
    assert main([*args, "--identities", "2"]) == 0
    items, head_height = load_pairs(pairs)
    assert len(items) == 3 and head_height > 20.0
    # the file holds exactly what PortraitPairs renders (same seed and identity pool)
    ds = PortraitPairs(
        load_ict_facekit(heads), length=3, image_size=32, seed=0, num_identities=2, identity_seed=0
    )
    for k in ("distorted", "corrected", "flow", "valid", "holes", "distance", "landmarks_corrected"):
        assert torch.equal(items[2][k], ds[2][k]), k
    assert not list(tmp_path.glob(".tmp-*"))
    model = tmp_path / "m.pt"
    train_args = ["train", "--pairs", str(pairs), "--out", str(model), "--tasks", "flow,distance"]
    assert main([*train_args, "--steps", "1", "--batch-size", "2"]) == 0
    und = Undistorter.load(model)
    assert und.work_size == 32 and und.distance_net is not None and und.seg_net is None
    torch.save({"format": "other"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"load_pairs: .* is not a valid undistort pair file"):
        load_pairs(tmp_path / "x.pt")


def test_readme_quick_start_runs(tmp_path):
    text = open(os.path.join(HERE, "..", "README.md")).read()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "nose magnification at 30 cm: 1.50x" in res.stdout
