"""The reproduction's real-photo consistency helpers (``reproduce/real_photos.py``), without dlib."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reproduce", "real_photos.py")


@pytest.fixture(scope="module")
def rp():
    if not os.path.isfile(PATH):
        pytest.skip("reproduce/real_photos.py is not in this checkout (e.g. an sdist)")
    spec = importlib.util.spec_from_file_location("undistort_real_photos", PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks its module up
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def _shape(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(68, 2)) * 10 + 50


def test_dispersion_ignores_similarity_transforms(rp):
    s = _shape()
    c, sn = np.cos(0.3), np.sin(0.3)
    moved = 1.7 * s @ np.array([[c, -sn], [sn, c]]) + np.array([5.0, -3.0])
    assert rp.dispersion([s, moved, s + 1.0]) == pytest.approx(0.0, abs=1e-9)


def test_dispersion_of_two_shapes_matches_a_brute_force_search(rp):
    # independent computation for two shapes: normalise both (centred, unit norm), find the rotation of
    # one onto the other by a dense angle search (not an SVD), average them, and measure both shapes'
    # mean point distance to that mean, relative to the mean's outer-eye-corner distance
    a, b = _shape(0), _shape(0) + np.random.default_rng(2).normal(scale=2.0, size=(68, 2))

    def norm(x):
        x = x - x.mean(0)
        return x / np.linalg.norm(x)

    an, bn = norm(a), norm(b)
    th = np.linspace(-np.pi, np.pi, 200001)
    cost = [
        np.linalg.norm(an @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) - bn)
        for t in th[::100]
    ]
    t0 = th[::100][int(np.argmin(cost))]
    fine = th[np.abs(th - t0) < 0.01]
    rot = lambda t: np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # noqa: E731
    t = fine[int(np.argmin([np.linalg.norm(an @ rot(u) - bn) for u in fine]))]
    ar = an @ rot(t)
    # the mean sits halfway: rotate each by half the angle towards it
    a_half, b_half = an @ rot(t / 2), bn @ rot(-t / 2)
    m = (a_half + b_half) / 2
    m = m / np.linalg.norm(m)
    dist = (np.linalg.norm(a_half - m, axis=1).mean() + np.linalg.norm(b_half - m, axis=1).mean()) / 2
    expected = 100 * dist / np.linalg.norm(m[36] - m[45])
    assert np.linalg.norm(ar - bn) < np.linalg.norm(an - bn)  # the search did rotate
    assert rp.dispersion([a, b]) == pytest.approx(expected, rel=1e-3)


def test_dispersion_grows_with_noise(rp):
    s = _shape()
    rng = np.random.default_rng(1)
    small = rp.dispersion([s + rng.normal(scale=0.1, size=s.shape) for _ in range(5)])
    large = rp.dispersion([s + rng.normal(scale=1.0, size=s.shape) for _ in range(5)])
    assert 0 < small < large


def test_carry_inverts_a_constant_flow(rp):
    # backward flow of +3 px in x everywhere: corrected(q) = input(q + 3), so an input point p goes to p - 3
    flow = torch.zeros(2, 32, 32, dtype=torch.float64)
    flow[0] = 3.0
    pts = np.array([[10.0, 12.0], [20.0, 5.0]])
    assert np.allclose(rp.carry(pts, flow), pts - np.array([3.0, 0.0]), atol=1e-6)


def test_load_dlib_explains_a_missing_install(rp, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes "import dlib" raise ImportError
    tools, why = rp.load_dlib()
    assert tools is None and "dlib is not installed" in why and "pip install dlib-bin" in why
