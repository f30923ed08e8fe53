"""Masks: the paper's box, landmark boxes, headset shape, random variation, errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from occfill.masks import PAPER_EYE_BOX, box_masks, eye_box_from_landmarks, eye_box_mask, random_eye_masks


class TestBoxMasks:
    def test_reference_values(self, device):
        # hand-drawn: box x in [1, 3), y in [1, 2) covers pixel centres (1.5, 1.5) and (2.5, 1.5)
        m = box_masks(torch.tensor([[1.0, 1.0, 3.0, 2.0]], device=device), 3, 4)
        want = torch.zeros(1, 1, 3, 4, device=device)
        want[0, 0, 1, 1:3] = 1
        assert torch.equal(m, want)
        assert m.device.type == device.type

    def test_dtype_follows(self, device, dtype):
        m = box_masks(torch.tensor([[0.0, 0.0, 2.0, 2.0]], device=device, dtype=dtype), 4, 4)
        assert m.dtype == dtype

    def test_headset_is_inside_box_and_has_nose_notch(self, device):
        boxes = torch.tensor([[10.0, 10.0, 54.0, 40.0]], device=device)
        box = box_masks(boxes, 64, 64)
        hs = box_masks(boxes, 64, 64, shape="headset")
        assert bool((hs <= box).all())
        assert hs.sum() < box.sum()
        # the notch: bottom-centre pixel (x=32, y=39) is open, bottom at the side (x=20, y=35) covered
        assert hs[0, 0, 39, 32] == 0 and box[0, 0, 39, 32] == 1
        assert hs[0, 0, 35, 20] == 1
        # rounded corner: the corner pixel is open
        assert hs[0, 0, 10, 10] == 0

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"box_masks: 'boxes' must have shape \(B, 4\)"):
            box_masks(torch.zeros(4, device=device), 4, 4)
        with pytest.raises(ValueError, match="x0 < x1"):
            box_masks(torch.tensor([[3.0, 0.0, 1.0, 2.0]], device=device), 4, 4)
        with pytest.raises(TypeError, match="floating-point"):
            box_masks(torch.tensor([[0, 0, 2, 2]], device=device), 4, 4)
        with pytest.raises(ValueError, match="'shape' must be one of"):
            box_masks(torch.tensor([[0.0, 0.0, 2.0, 2.0]], device=device), 4, 4, shape="oval")
        with pytest.raises(ValueError, match="'height' must be > 0"):
            box_masks(torch.tensor([[0.0, 0.0, 2.0, 2.0]], device=device), 0, 4)


class TestEyeBoxMask:
    def test_paper_box_fraction(self, device):
        # figure: about 0.58 W x 0.44 H -> 100 x 100 image: 58 x 44 pixels
        m = eye_box_mask(100, 100, device=device)
        assert m.shape == (1, 1, 100, 100)
        assert int(m.sum()) == 58 * 44
        assert m[0, 0, 20, 24] == 1 and m[0, 0, 19, 24] == 0 and m[0, 0, 20, 23] == 0

    def test_aligned_arcface_eyes_are_covered(self, device):
        # standard ArcFace 112x112 5-point template eye centres (38.29, 51.70), (73.53, 51.50)
        m = eye_box_mask(112, 112, device=device)
        assert m[0, 0, 51, 38] == 1 and m[0, 0, 51, 73] == 1

    def test_errors(self):
        with pytest.raises(ValueError, match=r"eye_box_mask: 'box' must be 4 relative coordinates"):
            eye_box_mask(10, 10, box=(0.1, 0.1, 1.5, 0.5))
        with pytest.raises(ValueError, match=r"eye_box_mask: 'box' must be .* with x0 < x1"):
            eye_box_mask(10, 10, box=(0.5, 0.1, 0.4, 0.5))
        with pytest.raises(TypeError, match="eye_box_mask: 'width' must be an int; got float"):
            eye_box_mask(10, 10.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"eye_box_mask: 'dtype' must be a floating torch\.dtype"):
            eye_box_mask(10, 10, dtype=torch.int64)


class TestLandmarkBox:
    def test_covers_ocular_landmarks_on_renders(self, shared_data, device):
        rows = []
        with open(os.path.join(shared_data, "ict-faces-128", "meta.jsonl")) as fh:
            for k, line in enumerate(fh):
                if k % 20 == 0:
                    rows.append(json.loads(line))
        lm = torch.tensor([r["landmarks68"] for r in rows], device=device)
        boxes = eye_box_from_landmarks(lm)
        m = box_masks(boxes, 128, 128)
        ocular = torch.cat([lm[:, 17:27], lm[:, 36:48], lm[:, 27:30]], dim=1)  # brows, eyes, nose bridge
        ij = ocular.floor().long().clamp(0, 127)
        b = torch.arange(lm.shape[0], device=device)[:, None].expand_as(ij[..., 0])
        covered = m[b, 0, ij[..., 1], ij[..., 0]]
        assert bool((covered == 1).all())
        # the mouth stays visible
        mouth = lm[:, 48:68].floor().long().clamp(0, 127)
        assert bool((m[b[:, :20], 0, mouth[..., 1], mouth[..., 0]] == 0).all())

    def test_reference_value(self, device):
        lm = torch.zeros(1, 68, 2, device=device)
        lm[0, 17:27] = torch.tensor([12.0, 16.0], device=device)
        lm[0, 36:48] = torch.tensor([[10.0, 20.0], [30.0, 24.0]], device=device).repeat(6, 1)
        lm[0, 29] = torch.tensor([20.0, 30.0], device=device)
        # landmark box x [10, 30], y [16, 24]; pad_x 0.1 * 20 = 2; pad_top 0.5 * 8 = 4; bottom = nose y 30 + 0.25 * 8
        got = eye_box_from_landmarks(lm, pad_x=0.1, pad_top=0.5, pad_bottom=0.25)
        assert torch.allclose(got, torch.tensor([[8.0, 12.0, 32.0, 32.0]], device=device))

    def test_errors(self, device):
        with pytest.raises(
            ValueError, match=r"eye_box_from_landmarks: 'landmarks' must have shape \(B, 68, 2\)"
        ):
            eye_box_from_landmarks(torch.zeros(1, 5, 2, device=device))
        with pytest.raises(ValueError, match="must be finite"):
            eye_box_from_landmarks(torch.full((1, 68, 2), float("nan"), device=device))


class TestRandomMasks:
    def test_seeded_and_varied(self, device):
        a = random_eye_masks(4, 64, 64, generator=torch.Generator().manual_seed(1), device=device)
        b = random_eye_masks(4, 64, 64, generator=torch.Generator().manual_seed(1), device=device)
        c = random_eye_masks(4, 64, 64, generator=torch.Generator().manual_seed(2), device=device)
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert not torch.equal(a[0], a[1])
        base = eye_box_mask(64, 64, device=device)
        # each stays close to the paper's box (IoU > 0.6)
        inter = (a * base).sum(dim=(1, 2, 3))
        union = ((a + base) > 0).float().sum(dim=(1, 2, 3))
        assert bool((inter / union > 0.6).all())

    def test_headset_prob(self, device):
        g = torch.Generator().manual_seed(0)
        m = random_eye_masks(8, 32, 32, headset_prob=1.0, generator=g, device=device, shift=0.0, scale=0.0)
        hs = eye_box_mask(32, 32, shape="headset", batch=8, device=device)
        assert torch.equal(m, hs)

    def test_errors(self):
        with pytest.raises(ValueError, match="random_eye_masks: 'scale' must be < 1"):
            random_eye_masks(1, 8, 8, scale=1.0)
        with pytest.raises(ValueError, match="'headset_prob' must lie in"):
            random_eye_masks(1, 8, 8, headset_prob=2.0)
        with pytest.raises(ValueError, match=r"random_eye_masks: 'box' must be 4 relative coordinates"):
            random_eye_masks(1, 8, 8, box=(0.2, 0.2))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="random_eye_masks: 'height' must be an int; got float"):
            random_eye_masks(1, 8.0, 8)  # type: ignore[arg-type]
        with pytest.raises(
            TypeError, match=r"random_eye_masks: 'generator' must be a torch\.Generator or None; got int"
        ):
            random_eye_masks(1, 8, 8, generator=0)  # type: ignore[arg-type]


def test_paper_box_constant():
    x0, y0, x1, y1 = PAPER_EYE_BOX
    assert (round(x1 - x0, 2), round(y1 - y0, 2)) == (0.58, 0.44)
