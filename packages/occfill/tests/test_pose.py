"""Pose: rotation conventions, PnP recovery of known poses (synthetic and rendered), pose maps."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from occfill.pose import (
    PoseMap,
    angles_to_rotation,
    estimate_pose,
    landmark_heatmaps,
    pose_map,
    project_template,
    rotation_to_angles,
    smooth_angles,
)


class TestRotation:
    def test_against_independent_composition(self, device):
        # reference: rotation matrices written out by hand for Rz(r) Rx(p) Ry(y), composed with numpy
        p, y, r = 0.3, -0.4, 0.2
        rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
        ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
        want = torch.tensor(rz @ rx @ ry, device=device)
        got = angles_to_rotation(torch.tensor([[p, y, r]], dtype=torch.float64, device=device))[0]
        assert torch.allclose(got, want, atol=1e-12)

    def test_round_trip(self, device):
        a = (torch.rand(50, 3, dtype=torch.float64, device=device) - 0.5) * torch.tensor(
            [2.0, 2.0, 2.0], device=device
        )
        assert torch.allclose(rotation_to_angles(angles_to_rotation(a)), a, atol=1e-10)

    def test_gradcheck(self, device):
        a = torch.tensor([[0.1, 0.2, -0.3]], dtype=torch.float64, device=device, requires_grad=True)
        assert torch.autograd.gradcheck(angles_to_rotation, (a,))

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"angles_to_rotation: 'angles' must have shape \(B, 3\)"):
            angles_to_rotation(torch.zeros(2, device=device))
        with pytest.raises(
            TypeError, match="rotation_to_angles: 'rotation' must have a floating-point dtype"
        ):
            rotation_to_angles(torch.zeros(1, 3, 3, dtype=torch.int64, device=device))


class TestEstimatePose:
    def test_exact_on_projected_template(self, device):
        a = torch.tensor(
            [[0.2, 0.0, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, -0.15], [-0.2, -0.5, 0.1]], dtype=torch.float64
        )
        lm = project_template(a, (128, 128)).to(device)
        got = estimate_pose(lm, (128, 128))
        assert got.device.type == device.type and got.dtype == torch.float64
        assert torch.allclose(got.cpu(), a, atol=1e-5)

    def test_numpy_and_single_input(self):
        a = torch.tensor([[0.1, -0.2, 0.05]], dtype=torch.float64)
        lm = project_template(a, (64, 64), focal=150.0)[0].numpy()
        got = estimate_pose(lm, (64, 64), focal=150.0)
        assert got.shape == (1, 3) and got.dtype == torch.float32
        assert torch.allclose(got.double(), a, atol=1e-4)

    def test_recovers_rendered_poses(self, shared_data, device):
        """ICT-FaceKit renders: true angles in meta.jsonl, landmarks from other identities/expressions.

        Stated error: mean absolute error <= 0.04 rad (2.3 deg) per angle and every error <= 0.2 rad, with
        the default focal guess (measured: about 0.025 / 0.020 / 0.011 rad mean for pitch / yaw / roll).
        """
        with open(os.path.join(shared_data, "ict-faces-128", "meta.jsonl")) as fh:
            rows = [json.loads(line) for k, line in enumerate(fh) if k % 6 == 0]
        lm = torch.tensor([r["landmarks68"] for r in rows], dtype=torch.float64, device=device)
        true = torch.tensor([[r["pitch"], r["yaw"], r["roll"]] for r in rows], dtype=torch.float64)
        err = (estimate_pose(lm, (128, 128)).cpu() - true).abs()
        assert bool((err.mean(dim=0) <= 0.04).all()), err.mean(dim=0)
        assert float(err.max()) <= 0.2
        # and the recorded yaw range (+/- 0.5 rad) is really spanned, so the test is not trivial
        assert float(true[:, 1].abs().max()) > 0.35

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"estimate_pose: 'landmarks' must have shape \(B, 68, 2\)"):
            estimate_pose(torch.zeros(1, 5, 2, device=device), (64, 64))
        with pytest.raises(ValueError, match="'image_size' must be"):
            estimate_pose(torch.zeros(1, 68, 2, device=device), (0, 64))
        with pytest.raises(TypeError, match=r"estimate_pose: 'image_size' must be a pair \(H, W\)"):
            estimate_pose(torch.zeros(1, 68, 2, device=device), 64)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
            estimate_pose([[0.0, 0.0]] * 68, (64, 64))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="must be finite"):
            estimate_pose(torch.full((1, 68, 2), float("inf"), device=device), (64, 64))


class TestPoseMap:
    def test_reference_values(self, device, dtype):
        a = torch.tensor([[math.pi / 4, -math.pi / 2, 0.1]], device=device, dtype=dtype)
        m = pose_map(a, 3, 5)
        assert m.shape == (1, 3, 3, 5) and m.dtype == dtype
        # by hand: pi/4 / (pi/2) = 0.5; -pi/2 / (pi/2) = -1; 0.1 / (pi/2) = 0.0636620
        want = torch.tensor([0.5, -1.0, 0.1 / (math.pi / 2)], device=device, dtype=dtype)
        assert torch.allclose(m[0, :, 1, 2], want)
        assert torch.equal(m.amax(dim=(2, 3)), m.amin(dim=(2, 3)))

    def test_module_equals_functional(self, device):
        a = torch.randn(2, 3, device=device)
        mod = PoseMap(max_angle=1.0)
        assert torch.equal(mod(a, (4, 6)), pose_map(a, 4, 6, max_angle=1.0))
        assert "max_angle=1" in repr(mod) and mod.out_channels == 3

    def test_heatmaps(self, device):
        lm = torch.tensor([[[2.5, 1.5]]], device=device)
        h = landmark_heatmaps(lm, 4, 5, sigma=1.0)
        # by hand: pixel (i=1, j=2) centre (2.5, 1.5) -> 1; pixel (1, 3): dx = 1 -> exp(-0.5)
        assert torch.isclose(h[0, 0, 1, 2], torch.tensor(1.0, device=device))
        assert torch.isclose(h[0, 0, 1, 3], torch.tensor(math.exp(-0.5), device=device))
        mod = PoseMap("heatmaps", sigma=1.0, num_landmarks=1)
        assert torch.equal(mod(lm, (4, 5)), h) and mod.out_channels == 1

    def test_gradcheck(self, device):
        a = torch.randn(1, 3, dtype=torch.float64, device=device, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: pose_map(x, 2, 2), (a,))
        lm = (torch.rand(1, 2, 2, dtype=torch.float64, device=device) * 4).requires_grad_()
        assert torch.autograd.gradcheck(lambda x: landmark_heatmaps(x, 4, 4), (lm,))

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"pose_map: 'angles' must have shape \(B, 3\)"):
            pose_map(torch.zeros(1, 2, device=device), 4, 4)
        with pytest.raises(ValueError, match="'max_angle' must be > 0"):
            pose_map(torch.zeros(1, 3, device=device), 4, 4, max_angle=0.0)
        with pytest.raises(ValueError, match="PoseMap: 'encoding' must be one of"):
            PoseMap("mesh")
        with pytest.raises(ValueError, match=r"PoseMap: 'pose' must have shape \(B, 68, 2\)"):
            PoseMap("heatmaps")(torch.zeros(1, 3, device=device), (4, 4))
        with pytest.raises(TypeError, match="pose_map: 'height' must be an int; got float"):
            pose_map(torch.zeros(1, 3, device=device), 4.5, 4)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"PoseMap: 'size' must be a pair \(H, W\)"):
            PoseMap()(torch.zeros(1, 3, device=device), (4,))


class TestSmoothAngles:
    def test_reference_values(self, device, dtype):
        a = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], device=device, dtype=dtype)
        causal = smooth_angles(a, 0.5)
        # by hand: s0 = 0, s1 = 0.5 * 0 + 0.5 * 1 = 0.5, s2 = 0.5 * 0.5 + 0.5 * 1 = 0.75
        assert torch.allclose(causal[:, 1], torch.tensor([0.0, 0.5, 0.75], device=device, dtype=dtype))
        # backward pass over (0, 0.5, 0.75): r2 = 0.75, r1 = 0.5 * 0.75 + 0.5 * 0.5 = 0.625,
        # r0 = 0.5 * 0.625 + 0.5 * 0 = 0.3125
        both = smooth_angles(a, 0.5, causal=False)
        assert torch.allclose(both[:, 1], torch.tensor([0.3125, 0.625, 0.75], device=device, dtype=dtype))
        assert both.dtype == dtype and both.device == a.device
        assert torch.equal(smooth_angles(a, 0.0), a) and torch.equal(causal[:, 0], a[:, 0])

    def test_zero_phase_has_no_lag(self, device):
        # a head turning at a constant rate: the causal filter lags by strength / (1 - strength) = 3 frames
        # (in the steady state, s_t = a_t - rate * 3); the forward-backward filter is exact on a line
        # away from the ends
        t = torch.arange(60, dtype=torch.float64, device=device)
        a = torch.stack([t * 0.0, t * 0.01, t * 0.0], dim=1)
        lag = (a - smooth_angles(a, 0.75))[40:, 1]
        assert torch.allclose(lag, torch.full_like(lag, 0.03), atol=1e-5)
        assert float((a - smooth_angles(a, 0.75, causal=False))[25:35, 1].abs().max()) < 1e-4

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"smooth_angles: 'strength' must lie in \[0, 1\); got 1.0"):
            smooth_angles(torch.zeros(2, 3, device=device), 1.0)
        with pytest.raises(ValueError, match=r"smooth_angles: 'angles' must have shape \(T, 3\)"):
            smooth_angles(torch.zeros(2, 2, device=device), 0.5)
        with pytest.raises(TypeError, match="smooth_angles: 'angles' must have a floating-point dtype"):
            smooth_angles(torch.zeros(2, 3, dtype=torch.long, device=device), 0.5)
