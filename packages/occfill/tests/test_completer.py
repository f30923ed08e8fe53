"""Completer: exact preservation outside the mask, PIL I/O, pose sources, video mode, errors."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from PIL import Image

from occfill import Completer, CompletionGenerator, PoseMap
from occfill.data import pil_to_tensor, tensor_to_pil
from occfill.masks import eye_box_mask
from occfill.pose import estimate_pose, project_template, smooth_angles


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
        with pytest.raises(
            TypeError, match="Completer: 'generator' must be a CompletionGenerator; got Identity"
        ):
            Completer(torch.nn.Identity())  # type: ignore[arg-type]
        with pytest.raises(
            TypeError, match=r"Completer.complete: 'landmarks' must be a torch\.Tensor; got list"
        ):
            c.complete(x, m, x, [[0.0, 0.0]] * 68)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"Completer.complete: 'landmarks' must have shape \(1, K, 2\)"):
            c.complete(x, m, x, torch.zeros(2, 68, 2, device=device))
        with pytest.raises(
            TypeError, match=r"Completer\.complete: 'angles' must have a floating-point dtype"
        ):
            c.complete(x, m, x, angles=torch.zeros(1, 3, dtype=torch.long, device=device))

    def test_from_checkpoint_rejects_other_models(self, device, tmp_path):
        from occfill import PatchDiscriminator, save_checkpoint

        path = tmp_path / "d.pt"
        save_checkpoint(
            path, PatchDiscriminator(base_channels=4, n_layers=1), arch="occfill_global_discriminator"
        )
        with pytest.raises(
            ValueError, match=r"Completer.from_checkpoint: .* holds arch 'occfill_global_discriminator'"
        ):
            Completer.from_checkpoint(path)
        gen_path = tmp_path / "g.pt"
        g = CompletionGenerator(base_channels=4, depth=2)
        save_checkpoint(gen_path, g, arch="occfill_generator", config={"base_channels": 4, "depth": 2})
        c = Completer.from_checkpoint(gen_path, device=device)
        assert c.generator.base_channels == 4 and c.device.type == device.type


class TestResolution:
    """Issue 19: the checkpoint records its training resolution; inputs are resized to it and back."""

    def _ckpt(self, tmp_path, resolution):
        from occfill import save_checkpoint

        g = CompletionGenerator(base_channels=4, depth=2)
        path = tmp_path / "g.pt"
        save_checkpoint(
            path, g, arch="occfill_generator", config={"base_channels": 4, "depth": 2}, resolution=resolution
        )
        return path

    def test_checkpoint_resolution_drives_the_model_size(self, device, tmp_path):
        c = Completer.from_checkpoint(self._ckpt(tmp_path, (32, 32)), device=device)
        assert c.resolution == (32, 32)
        seen = []
        c.generator.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[-2:])))
        x = torch.rand(1, 3, 56, 72, device=device)
        m = torch.zeros(1, 1, 56, 72, device=device)
        m[..., 12:30, 10:60] = 1
        out = c.complete(
            x, m, torch.rand(1, 3, 40, 40, device=device), angles=torch.zeros(1, 3, device=device)
        )
        assert seen == [(32, 32)]  # the generator ran at its training resolution ...
        assert out.shape == x.shape  # ... and the completion came back at the photo's size
        keep = m.expand_as(x) == 0
        assert torch.equal(out[keep], x[keep])
        assert bool(torch.isfinite(out).all()) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
        # a completion at the training size is not resized at all
        seen.clear()
        c.complete(
            x[..., :32, :32], m[..., :32, :32], x[..., :32, :32], angles=torch.zeros(1, 3, device=device)
        )
        assert seen == [(32, 32)]

    def test_mask_is_shrunk_conservatively(self, device, tmp_path):
        """A one-pixel hole at 64 px still becomes a hole at 32 px (area > 0), so nothing occluded leaks."""
        c = Completer.from_checkpoint(self._ckpt(tmp_path, (32, 32)), device=device)
        masks = []
        c.generator.register_forward_hook(lambda mod, inp, out: masks.append(inp[0]))
        x = torch.full((1, 3, 64, 64), 0.5, device=device)
        m = torch.zeros(1, 1, 64, 64, device=device)
        m[..., 21, 41] = 1
        c.complete(x, m, x, angles=torch.zeros(1, 3, device=device))
        occluded_input = masks[0]  # occlude() zeroes the hole: pixel (10, 20) at 32 px
        assert float(occluded_input[0, :, 10, 20].abs().sum()) == 0.0

    def test_no_resolution_runs_at_input_size_and_bad_values(self, device, tmp_path):
        c = Completer.from_checkpoint(self._ckpt(tmp_path, None), device=device)
        assert c.resolution is None
        with pytest.raises(ValueError, match=r"Completer: 'resolution' must be a positive int"):
            Completer(CompletionGenerator(base_channels=4, depth=2), resolution=(0, 32))


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

    @staticmethod
    def _flicker(seq, m):
        """Mean absolute frame-to-frame change inside the mask, averaged over the T - 1 frame pairs."""
        diffs = [((b - a).abs() * m).sum() / (3 * m.sum()) for a, b in itertools.pairwise(seq)]
        return float(torch.stack(diffs).mean())

    @staticmethod
    def _turning_face(shared_data, device, frames=8):
        """A real face moving 1 px per frame (a 100 px window sliding over the 112 px crop, resized to 32 px)
        while its yaw turns by 0.02 rad per frame, and a reference photo of the same person."""
        root = os.path.join(shared_data, "faces-24id", "Barack_Obama")
        with Image.open(os.path.join(root, "0.jpg")) as im:
            im = im.convert("RGB")
            seq = [
                pil_to_tensor(
                    im.crop((t, t // 2, 100 + t, 100 + t // 2)).resize((32, 32), Image.Resampling.BICUBIC)
                )
                for t in range(frames)
            ]
        with Image.open(os.path.join(root, "1.jpg")) as im:
            ref = pil_to_tensor(im.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
        angles = torch.stack([torch.tensor([0.0, 0.02 * t, 0.0]) for t in range(frames)])
        return [f.to(device) for f in seq], ref.to(device), angles.to(device)

    def test_slowly_turning_real_face_is_coherent(self, shared_data, device):
        """Video mode (shared noise and reference) changes the completion from frame to frame less than the
        true face changes; per-frame random noise makes it flicker (measured, untrained generator: video
        0.009, ground truth 0.021, fresh noise 0.117 mean absolute change per frame in the hole)."""
        frames, ref, angles = self._turning_face(shared_data, device)
        m = eye_box_mask(32, 32, device=device)[0]
        c = _completer(device)
        video = c.complete_video(frames, [m] * len(frames), ref, angles=angles, seed=0)
        fresh = [
            c.complete(
                f, m, ref, angles=angles[t : t + 1], generator=torch.Generator(device=device).manual_seed(t)
            )
            for t, f in enumerate(frames)
        ]
        truth, coherent, flicker = (self._flicker(s, m) for s in (frames, video, fresh))
        assert coherent < truth
        assert coherent < 0.25 * flicker

    def test_pose_smoothing_removes_landmark_jitter(self, device):
        """Landmarks of a slowly turning head with 0.5 px detector jitter: smoothing the PnP angles brings
        them closer to the true pose and makes the completion of a still frame flicker less (measured:
        angle error 0.018 -> 0.008 rad, flicker / 10 with strength 0.5, zero-phase)."""
        n = 8
        true = torch.stack([torch.tensor([0.05, 0.02 * t, 0.0]) for t in range(n)]).double()
        lm = project_template(true, (32, 32))
        lm = (
            lm + torch.randn(lm.shape, generator=torch.Generator().manual_seed(0), dtype=lm.dtype) * 0.5
        ).float()
        raw = estimate_pose(lm, (32, 32))
        smooth = smooth_angles(raw, 0.5, causal=False)
        assert float((smooth - true).abs().mean()) < 0.7 * float((raw - true).abs().mean())
        c = _completer(device)
        x = torch.rand(3, 32, 32, device=device)
        m = eye_box_mask(32, 32, device=device)[0]
        lm = lm.to(device)
        plain = c.complete_video([x] * n, [m] * n, x, lm, seed=0)
        steady = c.complete_video([x] * n, [m] * n, x, lm, seed=0, pose_smoothing=0.5, causal=False)
        assert self._flicker(steady, m) < 0.5 * self._flicker(plain, m)
        # the same as feeding the smoothed angles directly
        direct = c.complete_video([x] * n, [m] * n, x, angles=smooth.to(device), seed=0)
        assert all(torch.allclose(a, b) for a, b in zip(steady, direct))

    def test_errors(self, device):
        c = _completer(device)
        x = torch.rand(3, 32, 32, device=device)
        with pytest.raises(ValueError, match=r"complete_video: 'angles' must have shape \(2, 3\)"):
            c.complete_video([x, x], [x[:1]] * 2, x, angles=torch.zeros(3, 3, device=device))
        with pytest.raises(ValueError, match=r"complete_video: 'landmarks' must have shape \(2, 68, 2\)"):
            c.complete_video([x, x], [x[:1]] * 2, x, torch.zeros(1, 68, 2, device=device))
        with pytest.raises(ValueError, match=r"complete_video: 'masks' must have one entry per frame \(2\)"):
            c.complete_video([x, x], [x[:1]], x)
        with pytest.raises(ValueError, match="'pose_smoothing' must lie in"):
            c.complete_video([x], [x[:1]], x, pose_smoothing=1.0)
        with pytest.raises(
            TypeError, match="complete_video: 'frames' must be a sequence of frames or a tensor"
        ):
            c.complete_video(None, [x[:1]], x)  # type: ignore[arg-type]
