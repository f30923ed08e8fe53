"""Pairs made from real photos: the fitter, the smooth flow extension, the inversion, and a synthetic
check of the whole path against an independent render and hand projections."""

from __future__ import annotations

import math
import os

import pytest
import torch

from undistort import load_ict_facekit
from undistort.camera import PinholeCamera, head_rotation, render
from undistort.heads import toy_head
from undistort.realpairs import HeadFit, fit_head, harmonic_fill, invert_flow, real_pair
from undistort.warp import warp


def test_harmonic_fill_reproduces_a_linear_field():
    # a linear function is discrete-harmonic: known on the frame only, the fill must reproduce it inside
    h = w = 24
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    f = (0.3 * xx - 0.2 * yy + 1.0)[None, None]
    known = torch.zeros(1, 1, h, w, dtype=torch.bool)
    known[..., 0, :] = known[..., -1, :] = known[..., :, 0] = known[..., :, -1] = True
    out = harmonic_fill(torch.where(known, f, torch.full_like(f, 99.0)), known, iters=400, border=None)
    assert (out - f).abs().max() < 1e-3
    assert torch.equal(out[known], f[known])
    with pytest.raises(ValueError, match="harmonic_fill: 'known' must have shape"):
        harmonic_fill(f, known[..., :5])


def test_invert_flow_of_a_zoom():
    # flow(q) = k (q - c): corrected(q) = distorted(q + k (q - c)); the inverse is g(p) = (p - c)(1/(1+k) - 1)
    h = w = 32
    k = 0.08
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    c = 16.0
    flow = torch.stack([k * (xs - c), k * (ys - c)])[None].double()
    g = invert_flow(flow, iters=60)
    want = torch.stack([(xs - c), (ys - c)])[None].double() * (1 / (1 + k) - 1)
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    assert (g - want)[inner].abs().max() < 1e-4


def test_fit_head_recovers_pose_and_scale(shared_data):
    heads = load_ict_facekit(os.path.join(shared_data, "ict-facekit"))
    g = torch.Generator().manual_seed(3)
    a = torch.randn(heads.num_identities, generator=g) * 0.5
    verts = heads.vertices(a)
    rot = head_rotation(yaw=0.25, pitch=-0.1, roll=0.05)
    scale, t = 3.1, torch.tensor([60.0, 70.0])
    lms = scale * (verts[heads.landmarks] @ rot.T)[:, :2] + t
    fit = fit_head(heads, lms)
    assert fit.rms < 0.8  # pixels (IOD ~28 px): the ridge and the [0, 1] expression clip leave a little
    # landmarks cannot tell head size from camera scale (the identity basis changes size): ~5-10 % bias
    assert abs(fit.scale - scale) / scale < 0.12
    assert (fit.rotation - rot).abs().max() < 0.03
    # the anchor is the eyes' centre: the fitted landmarks' eye mean projects to fit.center
    eyes = fit.vertices[heads.landmarks[36:48]].mean(0)
    assert eyes.abs().max() < 1e-4
    assert (fit.project(eyes[None])[0] - lms[36:48].mean(0)).abs().max() < 0.3
    with pytest.raises(ValueError, match=r"fit_head: 'landmarks' must have shape \(68, 2\)"):
        fit_head(heads, lms[:5])


def test_real_pair_matches_an_independent_render_and_hand_projections():
    """The synthetic check: a rendered "photo" of a known head, moved to 30 cm by real_pair, equals the
    head rendered at 30 cm directly, and the flows agree with pinhole projections computed by hand."""
    v, faces = toy_head(48, 96)
    v = v.double()
    v = v - torch.tensor([0.0, 0.0, 8.0], dtype=v.dtype)  # anchor near the face (toy head front at z ~ 9)
    colors = (
        0.5
        + 0.4
        * torch.sin(v @ torch.tensor([[0.9, 0.1, 0.2], [0.3, 1.1, 0.1], [0.2, 0.4, 0.8]], dtype=v.dtype))
    ).clamp(0, 1)
    rot = head_rotation(yaw=0.2, pitch=0.05, dtype=torch.float64)
    size, scale, center = 96, 3.0, torch.tensor([49.0, 47.0], dtype=torch.float64)
    d, d_ref = 30.0, 500.0
    c = size / 2.0
    tx, ty = (float(center[0]) - c) / scale, (float(center[1]) - c) / scale
    bg = torch.full((3, size, size), 0.3, dtype=v.dtype)
    cam_ref = PinholeCamera(scale * d_ref, c, c, size, size)
    photo = render(
        v, faces, colors, cam_ref, rot, torch.tensor([tx, ty, d_ref], dtype=v.dtype), background=bg
    )
    fit = HeadFit(v, rot, scale, center, torch.zeros(0), torch.zeros(0), 0.0)
    pair = real_pair(photo["image"], fit, faces, d, distance_ref=d_ref)
    cam = PinholeCamera(scale * d, c, c, size, size)
    near = render(v, faces, colors, cam, rot, torch.tensor([tx, ty, d], dtype=v.dtype), background=bg)
    # (1) the made input equals the direct near render on the head's interior (away from silhouettes)
    inner = -torch.nn.functional.max_pool2d(-near["mask"][None, None].float(), 5, 1, 2)[0, 0] > 0.5
    made = pair["distorted"].double()
    err = (made - near["image"]).abs().mean(0)[inner].mean()
    before = (photo["image"] - near["image"]).abs().mean(0)[inner].mean()
    assert before > 0.02 and err < 0.25 * before, (float(err), float(before))
    # (2) hand projections of visible front vertices: flow(q_ref) = q_near - q_ref, inverse_flow(q_near) = -that
    front = (v @ rot.T.to(v))[:, 2] < -1.0  # facing the camera, ahead of the anchor
    x = v[front]
    xc = x @ rot.T

    def proj(f, t):
        p = xc + t
        return torch.stack([f * p[:, 0] / p[:, 2] + c, f * p[:, 1] / p[:, 2] + c], 1)

    q_near = proj(scale * d, torch.tensor([tx, ty, d], dtype=v.dtype))
    q_ref = proj(scale * d_ref, torch.tensor([tx, ty, d_ref], dtype=v.dtype))

    def sample(field, q):
        grid = torch.stack([q[:, 0] * 2 / size - 1, q[:, 1] * 2 / size - 1], -1)[None, :, None].to(field)
        return torch.nn.functional.grid_sample(field[None], grid, align_corners=False)[0, :, :, 0].T

    inside = pair["valid"][q_ref[:, 1].long(), q_ref[:, 0].long()]
    assert inside.sum() > 50
    want = (q_near - q_ref)[inside]
    assert want.norm(dim=1).max() > 0.5  # the check has something to find (10x the tolerance)
    assert (sample(pair["flow"].double(), q_ref[inside]) - want).norm(dim=1).max() < 0.05
    assert (sample(pair["inverse_flow"].double(), q_near[inside]) + want).norm(dim=1).max() < 0.05
    # (3) the extension is smooth and pinned: zero at the border, finite, and the round trip holds outside
    assert pair["flow"][:, 0].abs().max() < 0.5 and pair["flow"][:, :, 0].abs().max() < 0.5
    back = warp(pair["inverse_flow"][None].double(), pair["flow"][None].double(), padding_mode="border")[0]
    outside = ~pair["mask_corrected"]
    outside[:8] = outside[-8:] = False
    outside[:, :8] = outside[:, -8:] = False
    assert (back + pair["flow"].double()).norm(dim=0)[outside].max() < 0.05


def test_real_pair_identity_distance_is_identity():
    v, faces = toy_head(16, 32)
    fit = HeadFit(v, head_rotation(), 2.0, torch.tensor([32.0, 32.0]), torch.zeros(0), torch.zeros(0), 0.0)
    img = torch.rand(3, 64, 64)
    pair = real_pair(img, fit, faces, 500.0, distance_ref=500.0)
    assert pair["flow"].abs().max() == 0 and (pair["distorted"] - img).abs().max() < 1e-6
    with pytest.raises(ValueError, match="real_pair: 'distance' must be > 0"):
        real_pair(img, fit, faces, -1.0)
    assert math.isfinite(float(pair["distorted"].sum()))
