"""The one-call path on raw photos (issue 19): ``Completer.pretrained().complete_photo(photo, reference)``.

Needs the optional ``occfill[landmarks]`` extra (dlib) for the photo tests, which are skipped with that reason
when it is absent; the missing-extra and no-face messages are tested either way.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from occfill import Completer
from occfill import landmarks as lmod

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec(
    "face_recognition_models"
)
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="needs the occfill[landmarks] extra (dlib-bin)")


@pytest.fixture(scope="module")
def photos(shared_data):
    folder = os.path.join(shared_data, "celeb1k-hair", "test", "images")
    if not os.path.isdir(folder):
        pytest.skip("celeb1k-hair not in the shared data")
    # two real 256-px CelebAMask-HQ photos (different people; the path is what is under test)
    return os.path.join(folder, "28402.jpg"), os.path.join(folder, "28404.jpg")


def test_pretrained_loads_offline_with_its_resolution():
    c = Completer.pretrained()
    assert c.resolution == (128, 128)
    assert c.generator.use_reference and c.generator.pose_channels == 3


@needs_dlib
def test_one_call_on_two_real_photos(photos):
    c = Completer.pretrained()
    photo, ref = photos
    out = c.complete_photo(photo, ref)
    src = np.array(Image.open(photo).convert("RGB"))
    got = np.asarray(out)
    assert got.shape == src.shape
    changed = np.abs(got.astype(int) - src.astype(int)).sum(-1) > 0
    ys, xs = np.nonzero(changed)
    # only the ocular band changed: between the brows and the nose, inside the face
    assert 0.03 < changed.mean() < 0.25
    lm = lmod.detect_landmarks(photo).numpy()
    assert ys.min() >= lm[17:27, 1].min() - 40 and ys.max() <= lm[33, 1] + 5
    assert xs.min() >= lm[:, 0].min() - 20 and xs.max() <= lm[:, 0].max() + 20
    # the fill is a plausible face region, not black blotches or noise: close in colour to the true eye region
    fill, true = got[changed].astype(float), src[changed].astype(float)
    assert np.abs(fill.mean(0) - true.mean(0)).max() < 40
    # tensors in, tensors out; untouched pixels exactly equal
    x = torch.from_numpy(src).permute(2, 0, 1).float() / 255.0
    t = c.complete_photo(x, ref)
    assert t.shape == x.shape and bool(torch.isfinite(t).all())
    assert torch.equal(t[:, ~torch.from_numpy(changed)], x[:, ~torch.from_numpy(changed)])


@needs_dlib
def test_no_face_is_a_clear_error(photos):
    blank = Image.new("RGB", (200, 200), (120, 120, 120))
    with pytest.raises(ValueError, match=r"no face found in 'photo' \(200x200 px\)"):
        Completer.pretrained().complete_photo(blank, photos[1])
    with pytest.raises(ValueError, match=r"no face found in 'reference'"):
        Completer.pretrained().complete_photo(photos[0], blank)


def test_missing_extra_names_it(monkeypatch):
    lmod._dlib_models.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    try:
        with pytest.raises(ImportError, match=r"pip install 'occfill\[landmarks\]'"):
            lmod.detect_landmarks(Image.new("RGB", (64, 64)))
    finally:
        lmod._dlib_models.cache_clear()
