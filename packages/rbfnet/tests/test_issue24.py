"""Issue 24 (rbfnet parts): invalid checkpoint files, file permissions, RBFLayer dimension messages."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
import torch

import rbfnet
from rbfnet._fileio import default_file_mode
from rbfnet.data import ModelNetMesh, read_point_file

SMALL = {"num_kernels": 8, "mlp": (8,), "head": (8,)}
INVALID = r"not a valid rbfnet checkpoint \(truncated or not written by rbfnet\)"


def _saved(tmp_path):
    path = tmp_path / "good.pt"
    model = rbfnet.create_model("rbfnet_kernelwise", num_classes=3, **SMALL)
    rbfnet.save_checkpoint(path, model)
    return path


def _bad_files(tmp_path):
    good = _saved(tmp_path).read_bytes()
    files = {
        "truncated.pt": good[: len(good) // 2],
        "empty.pt": b"",
        "garbage.pt": os.urandom(4096),
        "text.pt": b"hello, this is not a checkpoint\n",
    }
    out = []
    for name, content in files.items():
        p = tmp_path / name
        p.write_bytes(content)
        out.append(p)
    # a valid torch file that rbfnet did not write
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    out.append(foreign)
    # a pickle of code (weights_only refuses it)
    code = tmp_path / "code.pt"
    torch.save({"package": "rbfnet", "f": np.dtype("float32").type}, code)
    out.append(code)
    return out


def test_load_checkpoint_names_invalid_files(tmp_path):
    for p in _bad_files(tmp_path):
        with pytest.raises(ValueError, match=rf"load_checkpoint: '{re.escape(str(p))}' is {INVALID}"):
            rbfnet.load_checkpoint(p)


def test_create_model_weights_names_invalid_files(tmp_path):
    for p in _bad_files(tmp_path):
        with pytest.raises(ValueError, match=rf"'{re.escape(str(p))}' is {INVALID}"):
            rbfnet.create_model("rbfnet_kernelwise", weights=p)


def test_create_model_weights_with_wrong_tensors(tmp_path):
    """A checkpoint whose state dict does not fit the architecture (edited or corrupted): named, not a
    raw load_state_dict traceback."""
    path = _saved(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = {k: v[..., :1] if v.dim() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, path)
    with pytest.raises(
        ValueError, match=rf"rbfnet_kernelwise: '{re.escape(str(path))}' is not a valid rbfnet checkpoint"
    ):
        rbfnet.create_model("rbfnet_kernelwise", weights=path)


def test_load_checkpoint_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_checkpoint: no checkpoint at .*nothing\.pt"):
        rbfnet.load_checkpoint(tmp_path / "nothing.pt")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_checkpoint_has_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = _saved(tmp_path)
        assert _mode(path) == 0o644  # not the 0o600 of tempfile.mkstemp
        os.umask(0o077)
        rbfnet.save_checkpoint(path, rbfnet.create_model("pointnet", num_classes=2, mlp=(8,), head=(8,)))
        assert _mode(path) == 0o600  # follows the umask, as open() would
    finally:
        os.umask(old)
    assert default_file_mode() == 0o666 & ~old
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def _cube_off(path):
    verts = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    faces = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]  # fmt: skip
    lines = ["OFF", f"{len(verts)} {len(faces)} 0"]
    lines += [" ".join(str(v) for v in p) for p in verts]
    lines += ["3 " + " ".join(str(i) for i in f) for f in faces]
    path.write_text("\n".join(lines) + "\n")


def test_mesh_cache_permissions_and_truncated_cache(tmp_path, caplog):
    root = tmp_path / "mn"
    os.makedirs(root / "cube" / "train")
    _cube_off(root / "cube" / "train" / "cube_0001.off")
    cache = tmp_path / "cache"
    old = os.umask(0o022)
    try:
        ds = ModelNetMesh(root, "train", num_points=32, samples_per_mesh=64, cache_dir=cache)
        first = ds[0]["points"]
    finally:
        os.umask(old)
    files = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs]
    assert len(files) == 1 and _mode(files[0]) == 0o644
    # a truncated cache file is reported (named) and rewritten, not a raw numpy error
    with open(files[0], "r+b") as fh:
        fh.truncate(40)
    ds2 = ModelNetMesh(root, "train", num_points=32, samples_per_mesh=64, cache_dir=cache)
    with caplog.at_level("WARNING", logger="rbfnet.data.datasets"):
        again = ds2[0]["points"]
    assert "is not a valid rbfnet cache (truncated" in caplog.text and files[0] in caplog.text
    torch.testing.assert_close(again, first)
    assert np.load(files[0]).shape == (64, 6)


def test_read_point_file_truncated(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((10, 3), np.float32))
    p.write_bytes(p.read_bytes()[:70])
    with pytest.raises(
        ValueError, match=rf"read_point_file: '{re.escape(str(p))}' is not a valid \.npy point file"
    ):
        read_point_file(p)
    with pytest.raises(FileNotFoundError, match="read_point_file: no file at"):
        read_point_file(tmp_path / "missing.npy")


def test_rbf_layer_names_points_for_dimension_mismatch():
    layer = rbfnet.RBFLayer(8, in_dim=3)
    with pytest.raises(ValueError, match=r"RBFLayer: 'points' must have last dimension 3 .*got \(2, 5, 2\)"):
        layer(torch.rand(2, 5, 2))
    with pytest.raises(
        ValueError, match=r"rbf_activation: 'points' must have last dimension D=3 .*got \(2, 5, 2\)"
    ):
        rbfnet.rbf_activation(torch.rand(2, 5, 2), torch.rand(8, 3), torch.ones(8))
