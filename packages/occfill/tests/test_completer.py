"""Completer: exact preservation outside the mask, PIL I/O, pose sources, video mode, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from occfill import Completer, CompletionGenerator, PoseMap
from occfill.data import tensor_to_pil
from occfill.masks import eye_box_mask
from occfill.pose import project_template


def _completer(device, **kw):
    return Completer(CompletionGenerator(base_channels=4, depth=2, **kw).to(device))


class TestComplete:
    def test_outside_mask_unchanged_tensor(self, device):
        c = _completer(device)
        x = torch.rand(2, 3, 32, 32, device=device)
        s = torch.rand(2, 3, 32, 32, device=device)
        m = eye_box_mask(32, 32, batch=2, device=device)
        out = c.complete(x, m, s, angles=torch.zeros(2, 3, device=device))
        keep = m.expand_as(x) == 0
        assert torch.equal(out[keep], x[keep])
        assert not torch.equal(out[~keep], x[~keep])

    def test_unaligned_size_is_padded_and_cropped(self, device):
        c = _completer(device)
        x = torch.rand(3, 30, 26, device=device)
        m = torch.zeros(1, 30, 26, device=device)
        m[:, 8:16, 5:20] = 1
        out = c.complete(x, m, x)
        assert out.shape == x.shape
        assert torch.equal(out[:, m[0] == 0], x[:, m[0] == 0])

    def test_pil_round_trip(self, device):
        c = _completer(device)
        x = tensor_to_pil(torch.rand(3, 32, 32))
        m = Image.new("L", (32, 32), 0)
        m.paste(255, (8, 6, 24, 20))
        out = c.complete(x, m, x)
        assert isinstance(out, Image.Image) and out.size == (32, 32)
        a, b = np.asarray(x), np.asarray(out)
        inside = np.asarray(m) > 0
        assert np.array_equal(a[~inside], b[~inside])

    def test_landmarks_give_the_pose(self, device):
        c = _completer(device)
        angles = torch.tensor([[0.1, 0.4, 0.0]], dtype=torch.float64)
        lm = project_template(angles, (32, 32)).float().to(device)
        x = torch.rand(1, 3, 32, 32, device=device)
        m = eye_box_mask(32, 32, device=device)
        z = torch.randn(1, 1, 32, 32, device=device)
        a = c.complete(x, m, x, lm, noise=z)
        b = c.complete(x, m, x, angles=angles.float().to(device), noise=z)
        frontal = c.complete(x, m, x, angles=torch.zeros(1, 3, device=device), noise=z)
        assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, frontal)

    def test_heatmap_pose_map_option(self, device):
        gen = CompletionGenerator(base_channels=4, depth=2, pose_channels=68).to(device)
        c = Completer(gen, pose_map=PoseMap("heatmaps"))
        lm = project_template(torch.zeros(1, 3, dtype=torch.float64), (32, 32)).float().to(device)
        x = torch.rand(1, 3, 32, 32, device=device)
        assert c.complete(x, eye_box_mask(32, 32, device=device), x, lm).shape == x.shape
        with pytest.raises(ValueError, match="heatmap pose map needs 'landmarks'"):
            c.complete(x, eye_box_mask(32, 32, device=device), x)

    def test_errors(self, device):
        c = _completer(device)
        x = torch.rand(1, 3, 32, 32, device=device)
        m = eye_box_mask(32, 32, device=device)
        with pytest.raises(ValueError, match=r"Completer.complete: 'image' must lie in \[0.0, 1.0\]"):
            c.complete(x * 3, m, x)
        with pytest.raises(ValueError, match=r"Completer.complete: 'mask' must have shape \(B, 1, H, W\)"):
            c.complete(x, m[..., :16], x)
        with pytest.raises(TypeError, match=r"Completer.complete: 'image' must be a torch\.Tensor"):
            c.complete([1, 2], m, x)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="generator expects 3 pose channels but the pose map gives 68"):
            Completer(CompletionGenerator(base_channels=4, depth=2), pose_map=PoseMap("heatmaps"))


class TestVideo:
    def test_shared_noise_makes_frames_coherent(self, device):
        c = _completer(device)
        x = torch.rand(3, 32, 32, device=device)
        m = eye_box_mask(32, 32, device=device)[0]
        frames = [x, x.clone(), (x + 0.01).clamp(0, 1)]
        angles = torch.zeros(3, 3, device=device)
        out = c.complete_video(frames, [m] * 3, x, angles=angles, seed=1)
        assert torch.equal(out[0], out[1])  # identical frames -> identical completions
        # a small change of the frame changes the completion little compared with fresh noise per frame
        fresh = c.complete(
            frames[2], m, x, angles=angles[:1], generator=torch.Generator(device=device).manual_seed(5)
        )
        assert (out[2] - out[0]).abs().mean() < (fresh - out[0]).abs().mean()
        again = c.complete_video(frames, [m] * 3, x, angles=angles, seed=1)
        assert all(torch.equal(a, b) for a, b in zip(out, again))

    def test_errors(self, device):
        c = _completer(device)
        x = torch.rand(3, 32, 32, device=device)
        with pytest.raises(ValueError, match=r"complete_video: 'masks' must have one entry per frame \(2\)"):
            c.complete_video([x, x], [x[:1]], x)
        with pytest.raises(ValueError, match="'pose_smoothing' must lie in"):
            c.complete_video([x], [x[:1]], x, pose_smoothing=1.0)
