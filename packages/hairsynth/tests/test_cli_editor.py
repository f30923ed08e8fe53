"""Command-line interface and the local web editor."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from hairsynth import Synthesizer, create_model, load_strokes, save_checkpoint
from hairsynth.cli import main
from hairsynth.editor import make_server


@pytest.fixture
def photo(shared_data):
    root = os.path.join(shared_data, "figaro1k", "training")
    return os.path.join(root, "images", "Frame00001.jpg"), os.path.join(root, "masks", "Frame00001.png")


def test_cli_extract_and_synthesize(photo, tmp_path, capsys, device):
    img, mask = photo
    assert main(["list-models"]) == 0
    assert "hairsynth_tiny" in capsys.readouterr().out
    assert (
        main(
            [
                "extract-strokes",
                "--image",
                img,
                "--mask",
                mask,
                "--out",
                str(tmp_path / "s.json"),
                "--max-strokes",
                "5",
            ]
        )
        == 0
    )
    strokes = load_strokes(tmp_path / "s.json")
    assert 1 <= len(strokes) <= 5
    model = create_model("hairsynth_tiny", feather_radius=2)
    save_checkpoint(tmp_path / "m.pt", model, arch="hairsynth_tiny", config=model.config)
    out = tmp_path / "o.png"
    argv = ["synthesize", "--image", img, "--mask", mask, "--strokes", str(tmp_path / "s.json")]
    argv += ["--device", str(device)]
    assert main([*argv, "--out", str(out), "--weights", str(tmp_path / "m.pt")]) == 0
    a, b = np.asarray(Image.open(out)), np.asarray(Image.open(img).convert("RGB"))
    m = torch.from_numpy((np.asarray(Image.open(mask)) > 0).astype(np.float32))[None, None]
    far = (torch.nn.functional.max_pool2d(m, 5, 1, 2)[0, 0] == 0).numpy()
    assert a.shape == b.shape and np.array_equal(a[far], b[far])


def test_cli_train(shared_data, tmp_path, device):
    root = os.path.join(shared_data, "celeb1k-hair")
    argv = ["train", "--data", root, "--split", "val", "--out", str(tmp_path), "--arch", "hairsynth_tiny"]
    argv += ["--size", "32", "--steps", "2", "--batch-size", "2", "--device", str(device)]
    assert main([*argv, "--schedule", "staged", "--stage-steps", "1", "1"]) == 0
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["step"] == 2 and ck["config"]["train"]["schedule"] == "staged"
    assert ck["config"]["train"]["stage_steps"] == [1, 1]


def _data_url(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_editor_roundtrip(device):
    rng = np.random.default_rng(0)
    img = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    syn = Synthesizer(create_model("hairsynth_tiny", feather_radius=2), device=device)
    server = make_server(syn, img, port=0)
    port = server.server_address[1]
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        base = f"http://127.0.0.1:{port}"
        page = urllib.request.urlopen(base + "/").read().decode()
        assert "hairsynth editor" in page and "/synthesize" in page
        assert urllib.request.urlopen(base + "/image.png").read()[:4] == b"\x89PNG"
        rgba = np.zeros((40, 48, 4), np.uint8)
        rgba[10:30, 12:36] = (255, 0, 0, 90)  # painted region (alpha > 0)
        body = {
            "mask": _data_url(rgba),
            "strokes": [{"points": [[14, 12], [30, 26]], "color": [0.3, 0.2, 0.1], "width": 3}],
        }
        req = urllib.request.Request(
            base + "/synthesize", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        res = json.loads(urllib.request.urlopen(req).read())
        out = np.asarray(Image.open(io.BytesIO(base64.b64decode(res["image"].split(",", 1)[1]))))
        assert out.shape == img.shape and res["seconds"] >= 0
        assert np.array_equal(out[:5], img[:5]) and not np.array_equal(out[12:28, 14:34], img[12:28, 14:34])
        bad = dict(body, strokes=[{"points": [[1, 2, 3]]}])
        req = urllib.request.Request(
            base + "/synthesize", json.dumps(bad).encode(), {"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert (
            err.value.code == 400
            and "Stroke: 'points' must have shape" in json.loads(err.value.read())["error"]
        )
    finally:
        server.shutdown()
        server.server_close()


def test_make_server_errors(device):
    syn = Synthesizer(create_model("hairsynth_tiny"), device=device)
    img = np.zeros((16, 20, 3), np.uint8)
    with pytest.raises(TypeError, match=r"make_server: 'synthesizer' must be a Synthesizer; got str"):
        make_server("syn", img, port=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"make_server: an array 'image' must be \(H, W, 3\) uint8"):
        make_server(syn, img.astype(np.float32), port=0)
    with pytest.raises(ValueError, match=r"make_server: 'mask' must have shape \(16, 20\)"):
        make_server(syn, img, np.ones((16, 16)), port=0)
    with pytest.raises(TypeError, match=r"make_server: 'image' must be a PIL image or uint8 array; got str"):
        make_server(syn, "face.jpg", port=0)


@pytest.mark.slow
def test_cli_train_under_torchrun(shared_data, tmp_path):
    """``torchrun --nproc-per-node 2 -m hairsynth train``: the CLI joins one gloo group, rank 0 writes."""
    import subprocess
    import sys

    root = os.path.join(shared_data, "celeb1k-hair")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "hairsynth", "train", "--data", root, "--split", "val", "--out", str(tmp_path)]
    cmd += [
        "--arch",
        "hairsynth_tiny",
        "--size",
        "32",
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum('"step": 2' in line for line in proc.stdout.splitlines()) == 1  # rank 0 alone reports
    assert "rank 1 of 2 on cpu" in proc.stderr
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 2
