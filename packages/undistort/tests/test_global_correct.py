"""`undistort.correct(method="global")`: the physical global warp through the whole-photo path."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import undistort
from undistort.realpairs import fit_head, load_landmark_crops, real_pair


@pytest.fixture(scope="module")
def near_case(shared_data):
    """A real test-identity crop (128 px) seen from 35 cm by its fitted head: the near image, its landmarks
    (the photo's dlib landmarks plus the exact perspective shift, dlib coordinates), the photo and the head mask."""
    root = shared_data
    heads = undistort.load_ict_facekit(os.path.join(root, "ict-facekit"))
    ents = load_landmark_crops(os.path.join(root, "celeba-id-crops"))
    test_ids = sorted({e[0] for e in ents}, key=int)[-40:]  # reproduce/make_real_pairs.py's test split
    _, path, lm = next(e for e in ents if e[0] == test_ids[3])
    with Image.open(path) as im:
        photo = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    fit = fit_head(heads, torch.as_tensor(lm), pixel_center=0.0)
    pair = real_pair(photo, fit, heads.faces, 35.0, landmarks=heads.landmarks)
    shift = (pair["landmarks_distorted"] - pair["landmarks_corrected"]).double().numpy()
    near = (pair["distorted"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return heads, near, lm + shift, photo.permute(1, 2, 0).numpy(), pair["mask_corrected"].numpy()


def _err(img: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(img.astype(np.float64) / 255.0 - ref)[mask].mean())


def test_global_method_undoes_a_known_near_view(near_case):
    heads, near, lms, ref, mask = near_case
    before = _err(near, ref, mask)
    out, info = undistort.correct(
        near, landmarks=lms, method="global", heads=heads, distance=35.0, return_info=True
    )
    assert out.shape == near.shape and out.dtype == np.uint8
    assert info["method"] == "global" and info["distance"] == 35.0
    assert _err(out, ref, mask) < 0.65 * before  # measured: 0.039 -> 0.021
    # the estimated distance is used and lies near the truth for these (exactly shifted) landmarks
    out_est, info_est = undistort.correct(
        near, landmarks=lms, method="global", heads=heads, distance="estimate", return_info=True
    )
    assert 35.0 < info_est["distance"] < 120.0  # the dead zone weakens the correction (estimate ~43 cm)
    assert _err(out_est, ref, mask) < before
    # half strength moves the photo half as far
    _, info_half = undistort.correct(
        near, landmarks=lms, method="global", heads=heads, distance=35.0, strength=0.5, return_info=True
    )
    torch.testing.assert_close(info_half["flow"] * 2, info["flow"])


def test_global_method_leaves_far_photos_exactly_alone(near_case):
    heads, near, lms, _, _ = near_case
    out, info = undistort.correct(
        near, landmarks=lms, method="global", heads=heads, distance=500.0, return_info=True
    )
    assert np.array_equal(out, near)
    assert float(info["flow"].abs().max()) == 0.0


def test_global_method_errors_name_the_argument(near_case):
    heads, near, lms, _, _ = near_case
    with pytest.raises(ValueError, match="'method' must be one of"):
        undistort.correct(near, landmarks=lms, method="physics")
    with pytest.raises(ValueError, match="needs 'heads'"):
        undistort.correct(near, landmarks=lms, method="global", distance=40.0)
    with pytest.raises(ValueError, match="needs 'distance'"):
        undistort.correct(near, landmarks=lms, method="global", heads=heads)
    for bad in (-3.0, float("nan"), "far"):
        with pytest.raises(ValueError, match="'distance' must be a finite number > 0"):
            undistort.correct(near, landmarks=lms, method="global", heads=heads, distance=bad)
    with pytest.raises(ValueError, match="'heads' and 'distance' are for method='global' only"):
        undistort.correct(near, landmarks=lms, distance=40.0)


def test_cli_correct_with_the_global_warp(shared_data, tmp_path, capsys):
    """`python -m undistort correct IN OUT --heads ICT --distance 35` on a real photo (dlib finds the face)."""
    pytest.importorskip("dlib")
    from undistort.cli import main

    src = os.path.join(shared_data, "celeb1k-hair", "test", "images", "28402.jpg")
    ict = os.path.join(shared_data, "ict-facekit")
    dst = tmp_path / "out.png"
    assert main(["correct", src, str(dst), "--heads", ict, "--distance", "35"]) == 0
    assert "global warp from 35 cm" in capsys.readouterr().out
    with Image.open(src) as a, Image.open(dst) as b:
        assert a.size == b.size
        diff = np.abs(np.asarray(a.convert("RGB"), dtype=np.float64) - np.asarray(b, dtype=np.float64))
    assert 0 < diff.mean() < 10  # it moved the face, and not much else
    assert main(["correct", src, str(dst), "--heads", ict]) == 1
    assert "--heads needs --distance" in capsys.readouterr().err
