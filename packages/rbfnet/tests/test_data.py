"""Readers on small files written in tmp and on the real shared data; seeded transforms."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rbfnet.data import (
    Compose,
    Jitter,
    ModelNetMesh,
    ModelNetNormalResampled,
    NormalizeUnitSphere,
    PointCloudFolder,
    RandomPointDropout,
    RandomRotateUp,
    RandomScaleShift,
    default_train_transform,
    normalize_unit_sphere,
    read_off,
    sample_mesh_surface,
)

# A unit cube: 8 vertices, 6 quads (fan-triangulated into 12 triangles).
CUBE = """{header}
-0.5 -0.5 -0.5
0.5 -0.5 -0.5
0.5 0.5 -0.5
-0.5 0.5 -0.5
-0.5 -0.5 0.5
0.5 -0.5 0.5
0.5 0.5 0.5
-0.5 0.5 0.5
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 2 3 7 6
4 1 2 6 5
4 0 4 7 3
"""


def _write_cube(path, fused=False):
    header = "OFF8 6 0" if fused else "OFF\n8 6 0"
    path.write_text(CUBE.format(header=header))


class TestOff:
    @pytest.mark.parametrize("fused", [False, True])
    def test_read_off(self, tmp_path, fused):
        _write_cube(tmp_path / "c.off", fused)
        v, f = read_off(tmp_path / "c.off")
        assert v.shape == (8, 3) and f.shape == (12, 3)

    def test_bad_file(self, tmp_path):
        (tmp_path / "x.off").write_text("PLY\n")
        with pytest.raises(ValueError, match=r"read_off: .* does not start with 'OFF'"):
            read_off(tmp_path / "x.off")

    def test_surface_samples_lie_on_the_cube(self, tmp_path):
        _write_cube(tmp_path / "c.off")
        v, f = read_off(tmp_path / "c.off")
        pts, nrm = sample_mesh_surface(v, f, 3000, np.random.default_rng(0))
        # on the surface of the cube: max |coordinate| = 0.5 for every point
        np.testing.assert_allclose(np.abs(pts).max(1), 0.5, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-6)
        # area weighting: each of the 6 equal faces gets ~1/6 of the samples
        face = np.argmax(np.abs(pts) * (np.abs(np.abs(pts) - 0.5) < 1e-6), axis=1) * 2 + (
            pts[np.arange(3000), np.argmax(np.abs(pts) * (np.abs(np.abs(pts) - 0.5) < 1e-6), axis=1)] > 0
        )
        counts = np.bincount(face, minlength=6)
        assert counts.min() > 400 and counts.max() < 600

    def test_modelnet_mesh_dataset_caches(self, tmp_path):
        for cls in ("box", "crate"):
            for split in ("train", "test"):
                os.makedirs(tmp_path / "mn" / cls / split)
                _write_cube(tmp_path / "mn" / cls / split / f"{cls}_0001.off")
        ds = ModelNetMesh(
            tmp_path / "mn", "train", num_points=64, samples_per_mesh=128, cache_dir=tmp_path / "cache"
        )
        assert ds.classes == ["box", "crate"] and len(ds) == 2
        s = ds[1]
        assert s["points"].shape == (64, 3) and int(s["label"]) == 1
        cached = list((tmp_path / "cache").rglob("*.npy"))
        assert len(cached) == 1
        ds2 = ModelNetMesh(
            tmp_path / "mn",
            "train",
            num_points=64,
            samples_per_mesh=128,
            cache_dir=tmp_path / "cache",
            use_normals=True,
        )
        torch.testing.assert_close(ds2[1]["points"], s["points"])
        assert ds2[1]["normals"].shape == (64, 3)
        # the cached cloud is unit-sphere normalised
        arr = np.load(cached[0])
        assert np.linalg.norm(arr[:, :3], axis=1).max() == pytest.approx(1.0, abs=1e-5)


class TestPointCloudFolder:
    def test_npy_txt_ply_in_tmp(self, tmp_path):
        rng = np.random.default_rng(0)
        a = rng.random((20, 3)).astype(np.float32)
        os.makedirs(tmp_path / "a" / "train")
        os.makedirs(tmp_path / "b" / "train")
        np.save(tmp_path / "a" / "train" / "a_1.npy", a)
        np.savetxt(tmp_path / "b" / "train" / "b_1.txt", np.hstack([a, a]), delimiter=",")
        ds = PointCloudFolder(tmp_path, "train", num_points=None)
        assert ds.classes == ["a", "b"] and len(ds) == 2
        for i in range(2):
            torch.testing.assert_close(ds[i]["points"], torch.from_numpy(a), atol=1e-6, rtol=1e-6)
        assert ds.labels.tolist() == [0, 1]
        # repetition when the file has fewer points than asked
        assert PointCloudFolder(tmp_path, "train", num_points=50)[0]["points"].shape == (50, 3)

    def test_ply(self, tmp_path):
        trimesh = pytest.importorskip("trimesh")  # a declared dependency; absent only on ad-hoc GPU hosts
        a = np.random.default_rng(0).random((20, 3)).astype(np.float32)
        os.makedirs(tmp_path / "b" / "train")
        trimesh.PointCloud(a).export(tmp_path / "b" / "train" / "b_2.ply")
        ds = PointCloudFolder(tmp_path, "train", num_points=None)
        for i in range(1):
            torch.testing.assert_close(ds[i]["points"], torch.from_numpy(a), atol=1e-6, rtol=1e-6)

    def test_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="PointCloudFolder: 'root'"):
            PointCloudFolder(tmp_path / "nope")
        os.makedirs(tmp_path / "a" / "train")
        with pytest.raises(ValueError, match="PointCloudFolder: no"):
            PointCloudFolder(tmp_path, "train")
        with pytest.raises(ValueError, match="'sampling' must be 'first' or 'random'"):
            np.save(tmp_path / "a" / "train" / "x.npy", np.zeros((4, 3), np.float32))
            PointCloudFolder(tmp_path, "train", sampling="fps")

    def test_real_modelnet10(self, shared_data):
        root = os.path.join(shared_data, "modelnet10-pc1024")
        ds = PointCloudFolder(root, "test", max_per_class=2)
        assert len(ds.classes) == 10 and ds.classes[0] == "bathtub" and len(ds) == 20
        s = ds[0]
        assert s["points"].dtype == torch.float32 and s["points"].shape == (1024, 3)
        assert float(s["points"].norm(dim=1).max()) == pytest.approx(1.0, abs=1e-3)

    def test_real_modelnet40_subset(self, shared_data):
        ds = PointCloudFolder(os.path.join(shared_data, "modelnet40-pc1024-sub"), "train", max_per_class=1)
        assert len(ds.classes) == 40 and len(ds) == 40


class TestNormalResampled:
    def test_tmp_files(self, tmp_path):
        names = ["chair", "night_stand"]
        (tmp_path / "modelnet10_shape_names.txt").write_text("\n".join(names) + "\n")
        (tmp_path / "modelnet10_train.txt").write_text("night_stand_0001\nchair_0002\n")
        rng = np.random.default_rng(1)
        for shape in ("night_stand_0001", "chair_0002"):
            cls = shape.rsplit("_", 1)[0]
            os.makedirs(tmp_path / cls, exist_ok=True)
            arr = np.hstack([rng.random((30, 3)) * 4, np.tile([0.0, 0.0, 1.0], (30, 1))])
            np.savetxt(tmp_path / cls / f"{shape}.txt", arr, fmt="%.6f", delimiter=",")
        ds = ModelNetNormalResampled(tmp_path, "train", num_classes=10, num_points=16)
        assert [int(ds[i]["label"]) for i in range(2)] == [1, 0]
        s = ds[0]
        assert s["points"].shape == (16, 3) and s["normals"].shape == (16, 3)
        torch.testing.assert_close(s["normals"][:, 2], torch.ones(16))
        with pytest.raises(FileNotFoundError, match=r"modelnet10_test\.txt"):
            ModelNetNormalResampled(tmp_path, "test", num_classes=10)

    def test_real_mini(self, shared_data):
        root = os.path.join(shared_data, "modelnet40-normal-mini")
        tr = ModelNetNormalResampled(root, "train", num_points=1024)
        te = ModelNetNormalResampled(root, "test", num_points=1024)
        assert len(tr) == 127 and len(te) == 29 and len(tr.classes) == 40
        s = tr[0]
        assert tr.classes[int(s["label"])] == "airplane"
        n = s["normals"].norm(dim=1)
        assert float((n - 1).abs().max()) < 1e-2


class TestTransforms:
    def _sample(self):
        rng = np.random.default_rng(0)
        p = rng.standard_normal((100, 3)).astype(np.float32)
        n = p / np.linalg.norm(p, axis=1, keepdims=True)
        return {"points": p, "normals": n.astype(np.float32)}

    def test_seeded(self):
        t = default_train_transform(rotate=True)
        a = t(self._sample(), np.random.default_rng([0, 1, 2]))
        b = t(self._sample(), np.random.default_rng([0, 1, 2]))
        c = t(self._sample(), np.random.default_rng([0, 2, 2]))
        np.testing.assert_array_equal(a["points"], b["points"])
        assert not np.array_equal(a["points"], c["points"])

    def test_normalize(self):
        p = normalize_unit_sphere(np.array([[0, 0, 0], [2, 0, 0], [4, 0, 0]], dtype=np.float32))
        np.testing.assert_allclose(p[:, 0], [-1, 0, 1])
        assert (
            NormalizeUnitSphere()({"points": np.ones((1, 3))}, np.random.default_rng())["points"].sum() == 0
        )
        with pytest.raises(ValueError, match="normalize_unit_sphere: 'points' must have shape"):
            normalize_unit_sphere(np.zeros((0, 3)))

    def test_rotation_about_up_axis(self):
        s = self._sample()
        out = RandomRotateUp(up_axis=2)(s, np.random.default_rng(3))
        np.testing.assert_allclose(out["points"][:, 2], s["points"][:, 2], atol=1e-6)
        np.testing.assert_allclose(
            np.linalg.norm(out["points"], axis=1), np.linalg.norm(s["points"], axis=1), rtol=1e-5
        )
        # normals rotated with the points: the angle between point and normal is kept
        dots_in = (s["points"] * s["normals"]).sum(1)
        dots_out = (out["points"] * out["normals"]).sum(1)
        np.testing.assert_allclose(dots_in, dots_out, rtol=1e-4, atol=1e-5)

    def test_scale_shift_jitter_dropout(self):
        s = self._sample()
        out = RandomScaleShift(scale=(2.0, 2.0), shift=0.0)(s, np.random.default_rng(0))
        np.testing.assert_allclose(out["points"], 2 * s["points"], rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=1), 1.0, rtol=1e-5)
        j = Jitter(sigma=1.0, clip=0.05)(s, np.random.default_rng(0))
        assert np.abs(j["points"] - s["points"]).max() <= 0.05 + 1e-6
        d = RandomPointDropout(0.8)(s, np.random.default_rng(5))
        assert d["points"].shape == (100, 3)
        moved = ~np.all(d["points"] == s["points"], axis=1)
        assert moved.any() and np.all(d["points"][moved] == s["points"][0])
        with pytest.raises(ValueError, match="RandomPointDropout: 'max_ratio' must lie in"):
            RandomPointDropout(1.0)

    def test_compose_in_dataset_is_epoch_seeded(self, tmp_path):
        os.makedirs(tmp_path / "a" / "train")
        np.save(
            tmp_path / "a" / "train" / "x.npy", np.random.default_rng(0).random((40, 3)).astype(np.float32)
        )
        ds = PointCloudFolder(tmp_path, "train", num_points=32, transform=Compose([Jitter()]), seed=7)
        a, b = ds[0]["points"], ds[0]["points"]
        ds.set_epoch(1)
        c = ds[0]["points"]
        torch.testing.assert_close(a, b)
        assert not torch.equal(a, c)
