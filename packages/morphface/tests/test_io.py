"""Readers/writers, on real ICT-FaceKit files (skips loudly when ../shared/data is absent)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import trimesh
from mf_helpers import grid_mesh

from morphface import io


@pytest.fixture(scope="module")
def ict_dir(shared_data):
    d = os.path.join(shared_data, "ict-facekit")
    if not os.path.isdir(d):
        pytest.skip(f"ICT-FaceKit data missing at {d}: the reader is untested on real files")
    return d


class TestICTReader:
    def test_obj_format_matches_npz(self, ict_dir, device):
        with pytest.warns(UserWarning, match="expression OBJ"):
            obj_model = io.load_ict_facekit(ict_dir, device=device)
        npz_model = io.load_ict_npz(os.path.join(ict_dir, "ict_facekit_shapes.npz"), device=device)
        # facts of ICT-FaceKit Light (dossier 1.2/1.3): 26 719 vertices, 25 836 quads + 548 triangles
        assert obj_model.n_vertices == 26719 and obj_model.faces.shape[0] == 2 * 25836 + 548
        assert obj_model.uvs.shape == (28911, 2) and obj_model.landmark_indices.numel() == 68
        assert npz_model.n_identity == 100 and npz_model.n_expression == 53
        # the face tile (M_Face) covers exactly vertices 0..9408
        face_verts = obj_model.faces[obj_model.uv_face_mask].unique()
        assert int(face_verts.min()) == 0 and int(face_verts.max()) == 9408
        # the two formats agree on the 3 identities in the OBJ folder (exact float32 values)
        torch.testing.assert_close(obj_model.identity_basis, npz_model.identity_basis[:3], atol=0, rtol=0)
        assert torch.equal(obj_model.faces, npz_model.faces)
        j = npz_model.expression_names.index("jawOpen")
        k = obj_model.expression_names.index("jawOpen")
        torch.testing.assert_close(
            obj_model.expression_basis[k], npz_model.expression_basis[j], atol=0, rtol=0
        )
        # identity modes are scaled PCA modes: mode 0 has the largest norm, 61.3 (dossier 1.3)
        assert float(npz_model.identity_basis[0].norm()) == pytest.approx(61.3, abs=0.1)

    def test_strict_missing_expressions(self, ict_dir):
        with pytest.raises(ValueError, match="load_ict_facekit: 50 expression OBJ"):
            io.load_ict_facekit(ict_dir, strict=True)

    def test_missing_dir(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="load_ict_facekit: 'directory'"):
            io.load_ict_facekit(tmp_path)


class TestObj:
    def test_write_read_roundtrip(self, tmp_path, device):
        v, f, t, ft = grid_mesh(4, dtype=torch.float32, device=device)
        p = tmp_path / "m.obj"
        io.write_obj(p, v, f, uvs=t, face_uvs=ft, mtllib="m.mtl", material="skin")
        back = io.read_obj(p)
        torch.testing.assert_close(back.vertices, v.cpu(), atol=1e-6, rtol=0)
        assert torch.equal(back.faces, f.cpu()) and torch.equal(back.face_uvs, ft.cpu())
        assert back.materials == ["skin"] and back.mtllib == "m.mtl"
        tm = trimesh.load(p, process=False, force="mesh")
        assert len(tm.faces) == f.shape[0]

    @pytest.mark.parametrize("ext", ["ply", "obj"])
    def test_save_mesh_trimesh(self, tmp_path, ext, device):
        v, f, _, _ = grid_mesh(4, dtype=torch.float32, device=device)
        p = tmp_path / f"m.{ext}"
        io.save_mesh(p, v, f)
        tm = trimesh.load(p, process=False, force="mesh")
        assert len(tm.vertices) == v.shape[0]
        np.testing.assert_allclose(tm.vertices, v.cpu().numpy(), atol=1e-5)

    def test_read_quads_triangulated(self, tmp_path):
        p = tmp_path / "q.obj"
        p.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
        assert io.read_obj(p).faces.tolist() == [[0, 1, 2], [0, 2, 3]]

    def test_malformed(self, tmp_path):
        p = tmp_path / "bad.obj"
        p.write_text("v 0 0 0\nv 1 0\n")
        with pytest.raises(ValueError, match="read_obj: malformed line 2"):
            io.read_obj(p)
        p.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 7\n")
        with pytest.raises(ValueError, match=r"read_obj: .* face indices outside"):
            io.read_obj(p)
        with pytest.raises(ValueError, match="write_obj: 'faces' must index"):
            io.write_obj(tmp_path / "x.obj", torch.zeros(3, 3), torch.tensor([[0, 1, 3]]))
        with pytest.raises(ValueError, match=r"save_mesh: 'faces' must index the 3 vertices \(0 .. 2\)"):
            io.save_mesh(tmp_path / "x.ply", torch.zeros(3, 3), torch.tensor([[0, 1, 3]]))
        with pytest.raises(TypeError, match="save_mesh: 'faces' must be an integer tensor"):
            io.save_mesh(tmp_path / "x.ply", torch.zeros(3, 3), torch.tensor([[0.0, 1.0, 2.0]]))
        with pytest.raises(ValueError, match="save_mesh: 'path' must end in a mesh format trimesh can write"):
            io.save_mesh(tmp_path / "x.unknownfmt", torch.zeros(3, 3), torch.tensor([[0, 1, 2]]))
        assert not list(tmp_path.glob("x.*"))  # nothing written by the rejected calls


class TestICTFitting:
    def test_fit_real_render_landmarks(self, ict_dir, shared_data, device):
        # real task: the 68 landmarks stored with a real ICT render (ict-faces-128, known identity and focal
        # length); the fitted neutral face must be closer to the true identity than the mean face is.
        import json

        from morphface import PerspectiveCamera, fit
        from morphface.fit import umeyama

        meta_path = os.path.join(shared_data, "ict-faces-128", "meta.jsonl")
        if not os.path.isfile(meta_path):
            pytest.skip(f"ict-faces-128 missing at {meta_path}")
        model = io.load_ict_npz(
            os.path.join(ict_dir, "ict_facekit_shapes.npz"), expressions="all", device=device
        )
        with open(meta_path) as fh:
            rows = [json.loads(next(fh)) for _ in range(2)]
        coeffs = torch.from_numpy(
            np.load(os.path.join(shared_data, "ict-faces-128", "identity_coefficients.npy"))
        )
        face = torch.arange(9409, device=device)

        def err(pred, gt):  # mean distance after similarity alignment
            r, t, s = umeyama(pred[None], gt[None])
            return float(
                (s[:, None, None] * (pred[None] @ r.transpose(1, 2)) + t[:, None] - gt[None])
                .norm(dim=-1)
                .mean()
            )

        for row in rows:
            cam = PerspectiveCamera(row["focal_px"], 64.0, 64.0)
            out = fit(model, torch.tensor(row["landmarks68"], device=device), camera=cam, prior_weight=1.0)
            assert float(out.residuals.mean()) < 1.0  # pixels, in a 128 px image
            gt = model.vertices(coeffs[row["identity"]][None].float().to(device))[0, face]
            assert err(model.vertices(out.identity)[0, face], gt) < err(model.mean[face], gt)
