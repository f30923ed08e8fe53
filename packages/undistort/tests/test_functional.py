"""Losses and distance coding, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from undistort.functional import (
    completion_loss,
    distance_bin_centers,
    distance_to_bin,
    distance_to_code,
    endpoint_error,
    total_variation,
)


class TestEndpointError:
    def test_by_hand(self, device):
        # pixel 0: (3, 4) -> 5; pixel 1: (0, 0) -> 0; mean 2.5; masked to pixel 0 -> 5
        pred = torch.zeros(1, 2, 1, 2, device=device)
        tgt = torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]]], device=device)
        assert float(endpoint_error(pred, tgt)) == pytest.approx(2.5, abs=1e-5)
        m = torch.tensor([[[[1.0, 0.0]]]], device=device)
        assert float(endpoint_error(pred, tgt, m)) == pytest.approx(5.0, abs=1e-5)
        assert endpoint_error(pred, tgt, m, reduction="per_sample").shape == (1,)
        assert endpoint_error(pred, tgt, reduction="none").shape == (1, 1, 2)

    def test_gradcheck(self, device):
        p = torch.randn(2, 2, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
        t = torch.randn(2, 2, 3, 3, dtype=torch.float64, device=device)
        assert torch.autograd.gradcheck(lambda x: endpoint_error(x, t), (p,))

    def test_errors(self, device):
        with pytest.raises(
            ValueError, match=r"endpoint_error: 'target' must have shape \(B, 2, H, W\) with H=3"
        ):
            endpoint_error(torch.zeros(1, 2, 3, 3, device=device), torch.zeros(1, 2, 4, 3, device=device))
        with pytest.raises(ValueError, match="endpoint_error: 'reduction' must be"):
            endpoint_error(
                torch.zeros(1, 2, 3, 3, device=device),
                torch.zeros(1, 2, 3, 3, device=device),
                reduction="sum",
            )
        with pytest.raises(ValueError, match="endpoint_error: 'mask' must have shape"):
            endpoint_error(
                torch.zeros(1, 2, 3, 3, device=device),
                torch.zeros(1, 2, 3, 3, device=device),
                torch.ones(1, 2, 3, 3, device=device),
            )


def test_total_variation_by_hand(device):
    # x = [[0, 1], [3, 5]]: |dx| = 1, 2 -> mean 1.5; |dy| = 3, 4 -> mean 3.5; TV = 5
    x = torch.tensor([[[[0.0, 1.0], [3.0, 5.0]]]], device=device)
    assert float(total_variation(x)) == pytest.approx(5.0)


def test_completion_loss_by_hand(device):
    # |pred - target| = [1, 2] (one channel); pixel 0 is a hole (weight 6), pixel 1 weight 1:
    # (6 * 1 + 1 * 2) / 7 = 8/7
    pred = torch.tensor([[[[1.0, 2.0]]]], device=device)
    tgt = torch.zeros_like(pred)
    holes = torch.tensor([[[[1.0, 0.0]]]], device=device)
    assert float(completion_loss(pred, tgt, holes)) == pytest.approx(8 / 7)
    with pytest.raises(ValueError, match="completion_loss: 'hole_weight' must be >= 0"):
        completion_loss(pred, tgt, holes, hole_weight=-1.0)


class TestDistanceCoding:
    def test_bin_centers_by_hand(self):
        # 2 log bins on [25, 100]: edges 25, 50, 100 -> geometric centres sqrt(1250), sqrt(5000)
        c = distance_bin_centers(2, 25.0, 100.0)
        assert torch.allclose(c, torch.tensor([1250.0**0.5, 5000.0**0.5], dtype=torch.float64))

    def test_bins_and_codes(self, device):
        d = torch.tensor([24.0, 49.0, 51.0, 200.0], device=device)
        assert distance_to_bin(d, 2, 25.0, 100.0).tolist() == [0, 0, 1, 1]
        oh = distance_to_code(d, 2, 25.0, 100.0, mode="onehot")
        assert oh.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1]]
        logd = distance_to_code(torch.tensor([25.0, 50.0, 100.0], device=device), 2, 25.0, 100.0, mode="logd")
        assert torch.allclose(logd[:, 0], torch.tensor([-1.0, 0.0, 1.0], device=device), atol=1e-6)
        soft = distance_to_code(torch.tensor([1250.0**0.5, 50.0], device=device), 2, 25.0, 100.0, mode="soft")
        assert torch.allclose(soft, torch.tensor([[1.0, 0.0], [0.5, 0.5]], device=device), atol=1e-5)
        assert distance_to_code(d, 2, 25.0, 100.0, mode="none").shape == (4, 0)

    def test_errors(self, device):
        with pytest.raises(ValueError, match="distance_bin_centers: 'd_max' must be > 'd_min'"):
            distance_bin_centers(4, 10.0, 5.0)
        with pytest.raises(ValueError, match="distance_to_bin: 'distance' must be > 0"):
            distance_to_bin(torch.tensor([0.0], device=device), 4, 10.0, 50.0)
        with pytest.raises(ValueError, match="distance_to_code: 'mode' must be"):
            distance_to_code(torch.tensor([10.0], device=device), 4, 10.0, 50.0, mode="bins")


def test_landmark_nme_raw_and_shape_only():
    from undistort.functional import landmark_nme

    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 68, 2, generator=g, dtype=torch.float64) * 50
    # a similarity of the target: shape-only error 0, raw error large
    ang = 0.3
    rot = torch.tensor([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]], dtype=torch.float64)
    p = 1.3 * t @ rot.T + torch.tensor([4.0, -2.0], dtype=torch.float64)
    assert landmark_nme(p, t, align="similarity").abs().max() < 1e-9
    assert landmark_nme(p, t).min() > 10
    # hand value: shifting every point by 3 px with an IOD of 30 px gives 10 %
    t2 = torch.zeros(68, 2, dtype=torch.float64)
    t2[45, 0] = 30.0
    assert abs(float(landmark_nme(t2 + torch.tensor([3.0, 0.0], dtype=torch.float64), t2)) - 10.0) < 1e-9
    # a non-similar deformation survives the alignment
    q = t.clone()
    q[:, :10] += 5.0
    assert landmark_nme(q, t, align="similarity").min() > 0.5
    with pytest.raises(ValueError, match="landmark_nme: 'align' must be"):
        landmark_nme(p, t, align="affine")
