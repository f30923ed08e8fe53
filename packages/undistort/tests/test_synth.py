"""PortraitPairs on the real ICT-FaceKit head model (shared data) and on user meshes."""

from __future__ import annotations

import os

import pytest
import torch
from _scenes import sphere_mesh

from undistort.functional import endpoint_error
from undistort.heads import HeadModel, load_ict_facekit, triangulate
from undistort.synth import PortraitPairs, collate_pairs
from undistort.warp import warp


@pytest.fixture(scope="module")
def ict(shared_data):
    return load_ict_facekit(os.path.join(shared_data, "ict-facekit"))


def test_ict_loader(ict):
    assert ict.neutral.shape == (24591, 3)
    assert ict.identity_basis.shape == (100, 24591, 3)
    assert ict.landmarks.shape == (68,)
    assert int(ict.faces.max()) < 24591
    # the ICT model is in cm: a head about 25 cm wide (data README: bounding box 24.8 cm)
    assert 20 < float(ict.neutral[:, 0].max() - ict.neutral[:, 0].min()) < 30


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="load_ict_facekit: no ICT-FaceKit archive"):
        load_ict_facekit(tmp_path)
    (tmp_path / "ict_facekit_shapes.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="load_ict_facekit: 'regions' must be a non-empty subset"):
        load_ict_facekit(tmp_path, regions=("hair",))


def test_triangulate_by_hand():
    assert triangulate(torch.tensor([[0, 1, 2, 3], [4, 5, 6, -1]])).tolist() == [
        [0, 1, 2],
        [4, 5, 6],
        [0, 2, 3],
    ]


class TestPortraitPairs:
    def test_item_contents(self, ict):
        ds = PortraitPairs(ict, length=4, image_size=64, seed=3)
        it = ds[1]
        assert it["distorted"].shape == (3, 64, 64) and it["flow"].shape == (2, 64, 64)
        assert it["landmarks_distorted"].shape == (68, 2)
        assert 25.0 <= float(it["distance"]) <= 160.0
        assert bool((it["valid"] <= it["mask_corrected"]).all())
        b = collate_pairs([ds[0], ds[1]])
        assert b["distorted"].shape == (2, 3, 64, 64)
        # deterministic per (seed, index)
        assert torch.equal(ds[1]["distorted"], it["distorted"])
        assert not torch.equal(ds[0]["distorted"], it["distorted"])

    def test_gt_flow_reconstructs_corrected_view(self, ict):
        # warping the distorted render with the exact flow reproduces the reference render on valid
        # pixels (up to shading differences of the moved viewpoint and bilinear resampling)
        ds = PortraitPairs(ict, length=2, image_size=96, distance_range=(28.0, 28.0), seed=1)
        it = ds[0]
        fixed = warp(it["distorted"][None], it["flow"][None])[0]
        v = it["valid"].bool().expand(3, -1, -1)
        err_fixed = (fixed - it["corrected"]).abs()[v].mean()
        err_raw = (it["distorted"] - it["corrected"]).abs()[v].mean()
        assert err_fixed < 0.5 * err_raw
        assert float(it["flow"].abs().max()) > 2.0

    def test_flow_vanishes_at_reference(self, ict):
        ds = PortraitPairs(ict, length=1, image_size=48, distance_range=(500.0, 500.0), distance_ref=500.0)
        it = ds[0]
        assert float(it["flow"].abs().max()) < 1e-3
        zero = torch.zeros_like(it["flow"])[None]
        assert float(endpoint_error(zero, it["flow"][None], it["valid"][None])) < 1e-3

    def test_identity_pool_holds_out(self, ict):
        tr = PortraitPairs(ict, length=4, image_size=32, num_identities=5, identity_seed=0)
        te = PortraitPairs(ict, length=4, image_size=32, num_identities=5, identity_seed=1)
        assert tr.identities is not None and te.identities is not None
        assert not torch.allclose(tr.identities, te.identities)

    def test_user_meshes(self, device):
        v, f = sphere_mesh(9.0, 8, 16, dtype=torch.float32)
        heads = HeadModel.from_meshes(torch.stack([v, v * 1.1]), f)
        ds = PortraitPairs(heads, length=2, image_size=32)
        assert ds[0]["corrected"].shape == (3, 32, 32)

    def test_errors(self, ict):
        with pytest.raises(TypeError, match="PortraitPairs: 'heads' must be a HeadModel"):
            PortraitPairs("ict")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="PortraitPairs: 'distance_range' must be"):
            PortraitPairs(ict, distance_range=(100.0, 50.0))
        with pytest.raises(IndexError, match="out of range"):
            PortraitPairs(ict, length=2)[2]
        with pytest.raises(ValueError, match=r"PortraitPairs: 'yaw' must be >= 0; got -0\.1"):
            PortraitPairs(ict, yaw=-0.1)
        with pytest.raises(ValueError, match="PortraitPairs: 'distance_range' and 'head_fraction' must be"):
            PortraitPairs(ict, distance_range=(25.0, 60.0, 160.0))  # type: ignore[arg-type]
        with pytest.raises(
            ValueError, match=r"HeadModel\.vertices: 'identity' must have shape \(100\); got \(3,\)"
        ):
            ict.vertices(torch.zeros(3))


class TestHeadSources:
    def test_toy_head_is_closed_and_outward(self, device):
        from undistort.heads import toy_head
        from undistort.render import vertex_normals

        v, f = toy_head(8, 16)
        # UV sphere: 2 poles + 7 rings x 16 = 114 vertices; 16 + 16 + 6 * 32 = 224 triangles (by hand)
        assert v.shape == (114, 3) and f.shape == (224, 3)
        n = vertex_normals(v.to(device), f.to(device))
        assert bool(((n * v.to(device)).sum(-1) > 0).all())

    def test_from_files_obj_keeps_vertex_order(self, tmp_path):
        # a quad and a triangle; the OBJ has UVs (seams must not split vertices) and 1-based indices
        obj = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0.5 0.5\n"
        obj += "f 1/1 2/2 3/3 4/4\nf 2/5 5/1 3/2\n"
        (tmp_path / "a.obj").write_text(obj)
        (tmp_path / "b.obj").write_text(obj.replace("v 2 0 0", "v 3 0 0"))
        h = HeadModel.from_files([tmp_path / "a.obj", tmp_path / "b.obj"])
        assert h.meshes is not None and h.meshes.shape == (2, 5, 3)
        assert h.faces.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
        assert float(h.meshes[1, 4, 0]) == 3.0
        (tmp_path / "c.obj").write_text("v 0 0 0\nf 1 1 1\n")
        with pytest.raises(ValueError, match=r"HeadModel\.from_files: .* has 1 vertices; expected 5"):
            HeadModel.from_files([tmp_path / "a.obj", tmp_path / "c.obj"])

    def test_from_files_matches_ict_archive(self, shared_data, ict):
        import numpy as np

        folder = os.path.join(shared_data, "ict-facekit")
        h = HeadModel.from_files([os.path.join(folder, "FaceXModel", "generic_neutral_mesh.obj")])
        with np.load(os.path.join(folder, "ict_facekit_shapes.npz")) as z:
            assert np.array_equal(h.meshes[0].numpy(), z["neutral"])

    def test_from_files_ply_via_trimesh(self, tmp_path):
        import trimesh

        from undistort.heads import toy_head

        v, f = toy_head(6, 8)
        trimesh.Trimesh(v.numpy(), f.numpy(), process=False).export(tmp_path / "h.ply")
        h = HeadModel.from_files([tmp_path / "h.ply"])
        assert torch.allclose(h.meshes[0], v) and torch.equal(h.faces, f)


def test_face_anchor_keeps_the_face_size(ict):
    """Issue 18: the reference view keeps the face's size (inter-ocular distance), not the ears' axis."""
    from undistort.functional import landmark_nme

    for anchor, lo, hi in (("origin", 0.55, 0.8), ("face", 0.97, 1.03)):
        ds = PortraitPairs(
            ict, length=2, image_size=64, distance_range=(25.0, 25.0), anchor=anchor, yaw=0, pitch=0, roll=0
        )
        it = ds[0]
        ld, lc = it["landmarks_distorted"], it["landmarks_corrected"]
        ratio = float((lc[36] - lc[45]).norm() / (ld[36] - ld[45]).norm())
        assert lo < ratio < hi, (anchor, ratio)
    # face anchor (the last case): the shape (not the zoom) still changes at 25 cm: the shape-only error is well above zero
    assert float(landmark_nme(ld, lc, align="similarity")) > 1.0
    with pytest.raises(ValueError, match="PortraitPairs: 'anchor' must be 'face' or 'origin'"):
        PortraitPairs(ict, anchor="ears")
