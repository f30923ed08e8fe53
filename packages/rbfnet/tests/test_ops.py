"""Point ops against brute-force references, and the pytorch3d fast path faked present/absent."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rbfnet import _compat, ops


def _fps_reference(p: np.ndarray, s: int, start: int) -> list[int]:
    # Textbook FPS in numpy loops (independent of the torch implementation).
    chosen = [start]
    for _ in range(s - 1):
        d = np.array([min(float(((p[i] - p[j]) ** 2).sum()) for j in chosen) for i in range(len(p))])
        chosen.append(int(np.argmax(d)))
    return chosen


def _ball_reference(q: np.ndarray, p: np.ndarray, r: float, k: int) -> list[int]:
    inside = [i for i in range(len(p)) if float(((p[i] - q) ** 2).sum()) < r * r]
    if not inside:
        nearest = int(np.argmin(((p - q) ** 2).sum(1)))
        return [nearest] * k
    inside = inside[:k]
    return inside + [inside[0]] * (k - len(inside))


class TestFarthestPointSample:
    def test_against_reference(self, device):
        pts = torch.rand(2, 40, 3, device=device, dtype=torch.float64)
        for start in (0, 7):
            idx = ops.farthest_point_sample(pts, 10, start_index=start)
            for b in range(2):
                assert idx[b].tolist() == _fps_reference(pts[b].cpu().numpy(), 10, start)

    def test_errors(self, device):
        with pytest.raises(ValueError, match="farthest_point_sample: 'num_samples' must be <= N=4; got 5"):
            ops.farthest_point_sample(torch.rand(1, 4, 3, device=device), 5)
        with pytest.raises(ValueError, match="farthest_point_sample: 'points' must be finite"):
            ops.farthest_point_sample(torch.full((1, 4, 3), float("inf"), device=device), 2)


class TestKnn:
    def test_against_reference(self, device):
        q = torch.rand(2, 5, 3, device=device, dtype=torch.float64)
        p = torch.rand(2, 30, 3, device=device, dtype=torch.float64)
        d, idx = ops.knn(q, p, 4)
        for b in range(2):
            for s in range(5):
                dist = ((p[b] - q[b, s]) ** 2).sum(1).cpu().numpy()
                ref = np.argsort(dist, kind="stable")[:4]
                assert idx[b, s].tolist() == ref.tolist()
                np.testing.assert_allclose(d[b, s].cpu().numpy(), dist[ref], rtol=1e-12)

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"knn: 'points' must have shape \(B, N, D\) with B=1"):
            ops.knn(torch.rand(1, 2, 3, device=device), torch.rand(2, 5, 3, device=device), 1)


class TestBallQuery:
    def test_against_reference(self, device):
        q = torch.rand(2, 6, 3, device=device, dtype=torch.float64)
        q[0, 0] = 10.0  # a query with no neighbour inside the ball
        p = torch.rand(2, 40, 3, device=device, dtype=torch.float64)
        idx = ops.ball_query(q, p, 0.3, 8)
        for b in range(2):
            for s in range(6):
                ref = _ball_reference(q[b, s].cpu().numpy(), p[b].cpu().numpy(), 0.3, 8)
                assert idx[b, s].tolist() == ref

    def test_k_larger_than_n(self, device):
        p = torch.tensor([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]], device=device)
        assert ops.ball_query(p[:, :1], p, 1.0, 4).tolist() == [[[0, 1, 0, 0]]]

    def test_errors(self, device):
        with pytest.raises(
            ValueError, match=r"ball_query: 'radius' must be a finite number > 0\.0; got 0\.0"
        ):
            ops.ball_query(torch.rand(1, 2, 3, device=device), torch.rand(1, 5, 3, device=device), 0.0, 2)


def test_gather_points(device):
    pts = torch.arange(24.0, device=device).view(2, 4, 3)
    idx = torch.tensor([[[3, 0]], [[1, 1]]], device=device)
    out = ops.gather_points(pts, idx)
    assert out.shape == (2, 1, 2, 3)
    torch.testing.assert_close(out[1, 0, 0], pts[1, 1])
    with pytest.raises(ValueError, match="gather_points: 'idx' must be an integer tensor"):
        ops.gather_points(pts, idx.float())


def _fake_pytorch3d():
    """A stand-in for ``pytorch3d.ops`` with pytorch3d's documented conventions (squared distances,
    -1 padding in ball_query, FPS from index 0), built from brute force."""

    def sample_farthest_points(points, K, random_start_point=False):
        idx = torch.tensor([_fps_reference(p.cpu().numpy(), K, 0) for p in points], device=points.device)
        return ops.gather_points(points, idx), idx

    def knn_points(p1, p2, K, return_sorted=True):
        d = ((p1.unsqueeze(2) - p2.unsqueeze(1)) ** 2).sum(-1)
        vals, idx = d.sort(dim=-1, stable=True)
        return SimpleNamespace(dists=vals[..., :K], idx=idx[..., :K], knn=None)

    def ball_query(p1, p2, K, radius, return_nn=False):
        d = ((p1.unsqueeze(2) - p2.unsqueeze(1)) ** 2).sum(-1)
        idx = torch.full((*d.shape[:2], K), -1, dtype=torch.long, device=p1.device)
        for b in range(d.shape[0]):
            for s in range(d.shape[1]):
                inside = torch.nonzero(d[b, s] < radius * radius).flatten()[:K]
                idx[b, s, : inside.numel()] = inside
        return None, idx, None

    return SimpleNamespace(
        sample_farthest_points=sample_farthest_points, knn_points=knn_points, ball_query=ball_query
    )


def test_fast_path_absent_and_present_agree(device, monkeypatch):
    q = torch.rand(2, 6, 3, device=device, dtype=torch.float64)
    q[1, 2] = -5.0
    p = torch.rand(2, 50, 3, device=device, dtype=torch.float64)
    monkeypatch.setattr(_compat, "get_pytorch3d_ops", lambda: None)
    slow = (ops.farthest_point_sample(p, 12), ops.knn(q, p, 5), ops.ball_query(q, p, 0.35, 16))
    calls = {"n": 0}
    fake = _fake_pytorch3d()

    def provider():
        calls["n"] += 1
        return fake

    monkeypatch.setattr(_compat, "get_pytorch3d_ops", provider)
    fast = (ops.farthest_point_sample(p, 12), ops.knn(q, p, 5), ops.ball_query(q, p, 0.35, 16))
    assert calls["n"] == 3
    assert torch.equal(slow[0], fast[0])
    assert torch.equal(slow[1][1], fast[1][1])
    torch.testing.assert_close(slow[1][0], fast[1][0], rtol=0, atol=0)
    assert torch.equal(slow[2], fast[2])
    # use_fast_path=False never asks for pytorch3d
    ops.knn(q, p, 2, use_fast_path=False)
    assert calls["n"] == 3


def test_pointnet2_logits_identical_with_fast_path_faked_present(device, monkeypatch):
    # The model-level check of the fast path: PointNet++ SSG (FPS + ball query in both SA levels) gives
    # bit-identical logits whether pytorch3d is absent (the plain-torch path) or faked present.
    from rbfnet import PointNet2SSG

    torch.manual_seed(0)
    net = PointNet2SSG(
        4, sa1=(16, 0.4, 8), sa2=(6, 0.8, 8), mlps=((8,), (8,), (16,)), head=(8,), device=device
    ).eval()
    x = torch.rand(2, 64, 3, device=device) * 2 - 1
    monkeypatch.setattr(_compat, "get_pytorch3d_ops", lambda: None)
    with torch.no_grad():
        slow = net(x)
    calls = {"n": 0}
    fake = _fake_pytorch3d()

    def provider():
        calls["n"] += 1
        return fake

    monkeypatch.setattr(_compat, "get_pytorch3d_ops", provider)
    with torch.no_grad():
        fast = net(x)
    assert calls["n"] >= 4  # FPS and ball query of both SA levels went through the fake
    assert torch.equal(slow, fast)
