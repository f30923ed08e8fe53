"""Camera distance from landmarks: the features, the perspective displacement, the estimator and its file."""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from undistort.camera import head_rotation
from undistort.landmark_distance import LandmarkDistanceEstimator, landmark_features, perspective_landmarks
from undistort.realpairs import HeadFit


def _face_points(g: np.random.Generator, n_ids: int) -> np.ndarray:
    """``(n_ids, 68, 3)`` toy faces (cm, anchor = eye centre, z towards the camera negative): a fixed
    layout with depth (nose in front, contour behind) plus per-identity noise."""
    base = np.zeros((68, 3))
    t = np.linspace(-1.2, 1.2, 17)
    base[:17] = np.stack(
        [7.0 * np.sin(t), 6.0 - 6.0 * np.cos(t) + 2.0, 6.0 * (1 - np.cos(t)) + 1.0], 1
    )  # jaw
    base[17:27, 0], base[17:27, 1], base[17:27, 2] = np.linspace(-5, 5, 10), -2.0, -1.0  # brows
    base[27:36, 0], base[27:36, 1] = np.linspace(-1.5, 1.5, 9), np.linspace(0.5, 4.0, 9)  # nose
    base[27:36, 2] = -2.5 * np.hanning(9) - 0.5
    for k, cx in ((36, -3.2), (42, 3.2)):  # eyes: 6 points on a small ellipse
        a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        base[k : k + 6] = np.stack([cx + 1.2 * np.cos(a), 0.4 * np.sin(a), np.zeros(6)], 1)
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)  # mouth
    base[48:68] = np.stack([2.5 * np.cos(a), 6.5 + 0.8 * np.sin(a), -0.8 + 0.3 * np.cos(a)], 1)
    return base[None] + 0.1 * g.standard_normal((n_ids, 68, 3))


def _project(
    points: np.ndarray, d: float, yaw: float, roll: float, scale: float, shift: np.ndarray
) -> np.ndarray:
    """Pinhole view from ``d`` with a face-anchored focal ``scale * d``, then an in-plane similarity."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    r = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    p = points @ r.T
    uv = scale * d * p[:, :2] / (p[:, 2:] + d)
    c, s = math.cos(roll), math.sin(roll)
    return uv @ np.array([[c, -s], [s, c]]).T + shift


def _samples(g: np.random.Generator, faces: np.ndarray, per_face: int) -> tuple[np.ndarray, np.ndarray]:
    lms, ds = [], []
    for f in faces:
        for d in np.exp(g.uniform(math.log(25.0), math.log(500.0), per_face)):
            lm = _project(
                f,
                float(d),
                g.uniform(-0.2, 0.2),
                g.uniform(-0.3, 0.3),
                g.uniform(1.0, 3.0),
                g.uniform(0, 64, 2),
            )
            lms.append(lm)
            ds.append(d)
    return np.stack(lms), np.asarray(ds)


def test_features_are_invariant_to_similarities_and_only_to_them():
    g = np.random.default_rng(0)
    lm = _project(_face_points(g, 1)[0], 60.0, 0.1, 0.0, 2.0, np.array([32.0, 30.0]))
    f0 = landmark_features(lm)
    assert f0.shape == (136,)
    for angle, k, t in ((0.7, 2.5, (10.0, -4.0)), (-2.0, 0.3, (-100.0, 7.0))):
        rot = k * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        moved = lm @ rot.T + np.asarray(t)
        np.testing.assert_allclose(landmark_features(moved), f0, atol=1e-10)
    # the eyes' centres land at (-0.5, 0) and (0.5, 0)
    f = f0.reshape(68, 2)
    np.testing.assert_allclose(f[36:42].mean(0), [-0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(f[42:48].mean(0), [0.5, 0.0], atol=1e-12)
    # a stretch is not a similarity: the features must change
    stretched = lm * np.array([1.0, 1.1])
    assert np.abs(landmark_features(stretched) - f0).max() > 0.02
    # batched = one by one, numpy = torch
    batch = np.stack([lm, stretched])
    np.testing.assert_allclose(landmark_features(batch)[1], landmark_features(stretched))
    np.testing.assert_allclose(landmark_features(torch.as_tensor(lm)), f0)


def test_perspective_landmarks_match_a_pinhole_projection_by_hand():
    g = np.random.default_rng(1)
    verts = torch.as_tensor(g.standard_normal((100, 3)) * 6.0, dtype=torch.float32)
    idx = torch.arange(10, 78)
    rot = head_rotation(yaw=0.3, pitch=-0.1, roll=0.05)
    fit = HeadFit(verts, rot, 2.2, torch.tensor([30.0, 35.0]), torch.zeros(1), torch.zeros(1), 0.0)
    heads = SimpleNamespace(landmarks=idx)
    h, w = 64, 80
    for d, d_ref in ((30.0, 500.0), (70.0, 200.0)):
        got = perspective_landmarks(fit, heads, d, image_size=(h, w), distance_ref=d_ref).double().numpy()  # type: ignore[arg-type]
        v = verts[idx].double().numpy() @ rot.double().numpy().T

        def view(dist: float, v=v) -> np.ndarray:
            # camera at the origin looking down +z, principal point at the image centre; the anchor (vertex
            # origin) sits at depth dist and projects to fit.center; focal 2.2 * dist keeps the anchor's scale
            f, cx, cy = 2.2 * dist, w / 2.0, h / 2.0
            anchor = np.array([(30.0 - cx) / 2.2, (35.0 - cy) / 2.2, dist])
            x = v + anchor
            return np.stack([f * x[:, 0] / x[:, 2] + cx, f * x[:, 1] / x[:, 2] + cy], 1)

        want = view(d) - view(d_ref)
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert np.abs(want).max() > 0.5  # the check is not vacuous
    assert perspective_landmarks(fit, heads, 500.0, image_size=(h, w)).abs().max() == 0  # type: ignore[arg-type]


def test_perspective_landmarks_agree_with_real_pair(shared_data):
    from undistort import load_ict_facekit
    from undistort.realpairs import fit_head, real_pair

    heads = load_ict_facekit(os.path.join(shared_data, "ict-facekit"))
    a = torch.randn(heads.num_identities, generator=torch.Generator().manual_seed(2)) * 0.5
    rot = head_rotation(yaw=0.2, pitch=0.05)
    lms = 1.6 * (heads.vertices(a)[heads.landmarks] @ rot.T)[:, :2] + torch.tensor([32.0, 30.0])
    fit = fit_head(heads, lms)
    pair = real_pair(torch.zeros(3, 64, 64), fit, heads.faces, 35.0, landmarks=heads.landmarks)
    want = pair["landmarks_distorted"] - pair["landmarks_corrected"]
    got = perspective_landmarks(fit, heads, 35.0, image_size=(64, 64))
    assert (got - want).abs().max() < 1e-3
    assert want.abs().max() > 0.5


def test_estimator_recovers_distance_on_held_out_faces_better_than_a_constant():
    g = np.random.default_rng(3)
    faces = _face_points(g, 80)
    xtr, dtr = _samples(g, faces[:60], 20)
    xte, dte = _samples(g, faces[60:], 20)  # other identities
    # log d needs more shrinkage: beyond ~1 m the landmarks hardly change while log d still spans a lot
    for target, ridge in (("inverse", 1e-2), ("log", 1e-1)):
        est = LandmarkDistanceEstimator.fit(xtr, dtr, ridge=ridge, target=target)
        pred = est.predict(xte)
        assert pred.shape == dte.shape
        assert ((pred >= 25.0 - 1e-9) & (pred <= 500.0 + 1e-9)).all()
        err = np.abs(np.log(pred) - np.log(dte)).mean()
        const = np.abs(np.log(dte) - np.log(dtr).mean()).mean()
        assert err < 0.5 * const, (target, err, const)
        near = dte < 60
        assert np.median(np.abs(pred[near] - dte[near]) / dte[near]) < 0.2
        # one sample -> a 0-d answer equal to the batched one
        np.testing.assert_allclose(est.predict(xte[0]), pred[0])


def test_correction_distance_is_a_dead_zone_in_inverse_distance():
    g = np.random.default_rng(6)
    x, d = _samples(g, _face_points(g, 20), 10)
    est = LandmarkDistanceEstimator.fit(x, d, ridge=1e-2)
    d_hat = est.predict(x)
    np.testing.assert_allclose(est.correction_distance(x), d_hat)  # margin 0: the raw estimate
    est.margin = 0.01
    got = est.correction_distance(x)
    want = 1.0 / (1.0 / 500.0 + np.maximum(1.0 / d_hat - 1.0 / 500.0 - 0.01, 0.0))  # by hand
    np.testing.assert_allclose(got, want)
    assert (got >= d_hat - 1e-9).all()  # never a stronger correction than the estimate
    assert ((got == 500.0) == (1.0 / d_hat - 1.0 / 500.0 <= 0.01)).all()  # inside the zone: left alone
    assert (got == 500.0).any() and (got < 500.0).any()
    est.margin = 1.0
    assert (est.correction_distance(x) == 500.0).all()


def test_save_load_round_trip_is_plain_json(tmp_path):
    g = np.random.default_rng(4)
    x, d = _samples(g, _face_points(g, 10), 6)
    est = LandmarkDistanceEstimator.fit(x, d, ridge=1e-3, meta={"note": "test"})
    est.margin = 0.003
    path = tmp_path / "est.json"
    est.save(path)
    raw = json.loads(path.read_text())  # plain JSON, no pickle
    assert raw["format"] == "undistort.LandmarkDistanceEstimator/1"
    back = LandmarkDistanceEstimator.load(path)
    np.testing.assert_array_equal(back.predict(x), est.predict(x))
    np.testing.assert_array_equal(back.correction_distance(x), est.correction_distance(x))
    assert back.margin == 0.003
    assert back.meta == {"note": "test"} and back.target == est.target and back.ridge == est.ridge
    assert not os.path.exists(str(path) + ".tmp")

    path.write_text(path.read_text()[:200])
    with pytest.raises(ValueError, match="not a valid undistort distance-estimator file"):
        LandmarkDistanceEstimator.load(path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a valid undistort distance-estimator file"):
        LandmarkDistanceEstimator.load(path)
    path.write_text(json.dumps({**raw, "margin": -1.0}))
    with pytest.raises(ValueError, match="'margin' must be >= 0"):
        LandmarkDistanceEstimator.load(path)
    raw["weights"] = raw["weights"][:10]
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="136 entries"):
        LandmarkDistanceEstimator.load(path)
    with pytest.raises(FileNotFoundError, match="no file"):
        LandmarkDistanceEstimator.load(tmp_path / "missing.json")


def test_errors_name_the_argument():
    g = np.random.default_rng(5)
    x, d = _samples(g, _face_points(g, 4), 3)
    with pytest.raises(ValueError, match="'landmarks' must have shape"):
        landmark_features(np.zeros((68, 3)))
    with pytest.raises(ValueError, match="'landmarks' must be finite"):
        landmark_features(np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match="'landmarks' has coinciding eye centres"):
        landmark_features(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="'landmarks' must have shape \\(N, 68, 2\\)"):
        LandmarkDistanceEstimator.fit(x[0], d[:1])
    with pytest.raises(ValueError, match="'distances' must have shape"):
        LandmarkDistanceEstimator.fit(x, d[:-1])
    with pytest.raises(ValueError, match="'distances' must be finite and > 0"):
        LandmarkDistanceEstimator.fit(x, -d)
    with pytest.raises(ValueError, match="'ridge'"):
        LandmarkDistanceEstimator.fit(x, d, ridge=-1.0)
    with pytest.raises(ValueError, match="'target'"):
        LandmarkDistanceEstimator.fit(x, d, target="linear")
    with pytest.raises(ValueError, match="'d_min' and 'd_max'"):
        LandmarkDistanceEstimator.fit(x, d, d_min=100.0, d_max=50.0)
    fit = HeadFit(torch.zeros(80, 3), torch.eye(3), 1.0, torch.zeros(2), torch.zeros(1), torch.zeros(1), 0.0)
    heads = SimpleNamespace(landmarks=torch.arange(68))
    with pytest.raises(ValueError, match="'distance' must be a finite number > 0"):
        perspective_landmarks(fit, heads, 0.0, image_size=(64, 64))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'distance_ref' must be a finite number > 0"):
        perspective_landmarks(fit, heads, 30.0, image_size=(64, 64), distance_ref=float("nan"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'image_size'"):
        perspective_landmarks(fit, heads, 30.0, image_size=(64, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'heads' must have 68 landmark vertices"):
        perspective_landmarks(fit, SimpleNamespace(landmarks=torch.arange(5)), 30.0, image_size=(64, 64))  # type: ignore[arg-type]


def test_shipped_estimator_tells_near_from_far_on_real_landmarks(shared_data):
    """The shipped file loads, says it beat the constant guess on validation, and on real dlib landmarks of
    test identities (never used to fit or choose it) moved to 30 cm by the fitted head it answers nearer
    than for the photos' own landmarks."""
    from undistort import load_ict_facekit
    from undistort.realpairs import fit_head, load_landmark_crops

    est = LandmarkDistanceEstimator.pretrained()
    meta = est.meta or {}
    assert meta["val_abs_inv_error"] < 0.6 * meta["val_abs_inv_error_constant"]
    heads = load_ict_facekit(os.path.join(shared_data, "ict-facekit"))
    ents = load_landmark_crops(os.path.join(shared_data, "celeba-id-crops"))
    ids = sorted({e[0] for e in ents}, key=int)[-40:]  # the test identities of reproduce/make_real_pairs.py
    picked = [e for e in ents if e[0] in set(ids)][::25][:16]
    near, far = [], []
    for _, _, lm in picked:
        lm64 = (torch.as_tensor(lm, dtype=torch.float64) + 0.5) * 0.5 - 0.5  # 128 -> 64 px, dlib coordinates
        fit = fit_head(heads, lm64, pixel_center=0.0)
        far.append(float(est.predict(lm64.numpy())))
        near.append(
            float(est.predict((lm64 + perspective_landmarks(fit, heads, 30.0, image_size=(64, 64))).numpy()))
        )
    near_a, far_a = np.array(near), np.array(far)
    assert (near_a < far_a).mean() >= 0.9
    assert np.median(np.abs(near_a - 30.0) / 30.0) < 0.35
    assert np.median(far_a) > 100.0
