"""CLI: train-encoder, train and complete end to end on a tiny synthetic folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from occfill.checkpoint import load_checkpoint
from occfill.cli import main


def test_cli_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    enc, gen = str(tmp_path / "enc.pt"), str(tmp_path / "g.pt")
    common = ["--data", str(root), "--size", "16", "--steps", "2", "--batch-size", "2", "--no-progress"]
    assert main(["train-encoder", *common, "--out", enc, "--base-channels", "4", "--embedding-dim", "8"]) == 0
    cfg = {"base_channels": 4, "depth": 2, "d_base_channels": 4, "d_layers": 2}
    assert main(["train", *common, "--out", gen, "--encoder", enc, "--config", json.dumps(cfg)]) == 0
    assert load_checkpoint(gen)["step"] == 2
    out = tmp_path / "out.png"
    img = str(root / "a" / "0.png")
    assert (
        main(
            [
                "complete",
                "--checkpoint",
                gen,
                "--image",
                img,
                "--reference",
                str(root / "a" / "1.png"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    a, b = np.asarray(Image.open(img)), np.asarray(Image.open(out))
    assert a.shape == b.shape and np.array_equal(a[:3], b[:3])  # rows above the eye box are untouched


def test_module_entry_point_help():
    res = subprocess.run(
        [sys.executable, "-m", "occfill", "--help"], capture_output=True, text=True, check=True
    )
    assert "train-encoder" in res.stdout
