"""Preview rendering, export, interpolation, the generation pipeline and the CLI."""

from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh
from mf_helpers import grid_mesh

import morphface
from morphface import AttributeGenerator, FaceAsset, Upsampler, interpolate, project_points, render_preview
from morphface.checkpoint import save_checkpoint
from morphface.cli import main
from morphface.data import toy_face_model
from morphface.export import displacement_to_normal_map, linear_to_srgb
from morphface.fit import PerspectiveCamera
from morphface.geometry import subdivide
from morphface.io import write_obj
from morphface.pipeline import displace
from morphface.uv import rasterize_uv


class TestRender:
    def test_lambert_reference(self, device):
        # a large square facing the camera, light along the view axis: n.l = 1, specular off,
        # ambient 0, gamma 1 -> every covered pixel has exactly the albedo (hand computed)
        v = torch.tensor([[-1.0, -1, -5], [1, -1, -5], [1, 1, -5], [-1, 1, -5]], device=device)
        f = torch.tensor([[0, 1, 2], [0, 2, 3]], device=device)
        cam = PerspectiveCamera(focal=20.0, cx=8.0, cy=8.0)
        alb = torch.full((4, 3), 0.5, device=device)
        img = render_preview(
            v,
            f,
            resolution=16,
            albedo=alb,
            specular=0.0,
            camera=cam,
            light_dir=(0, 0, 1),
            ambient=0.0,
            gamma=1.0,
        )
        # square spans u in 8 +- 20/5 = [4, 12]: columns 4..11 covered
        torch.testing.assert_close(img[8, 4:12], torch.full((8, 3), 0.5, device=device))
        torch.testing.assert_close(img[0, 0], torch.ones(3, device=device))  # background
        # light at 60 degrees: cos = 0.5
        img2 = render_preview(
            v,
            f,
            resolution=16,
            albedo=alb,
            specular=0.0,
            camera=cam,
            light_dir=(math.sin(math.pi / 3), 0, math.cos(math.pi / 3)),
            ambient=0.0,
            gamma=1.0,
        )
        torch.testing.assert_close(img2[8, 6], torch.full((3,), 0.25, device=device))

    def test_depth_order(self, device):
        # two overlapping squares: the nearer (red) one must win wherever both cover
        sq = torch.tensor([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], device=device)
        v = torch.cat(
            [
                sq + torch.tensor([0, 0, -5.0], device=device),
                sq * 2 + torch.tensor([0, 0, -8.0], device=device),
            ]
        )
        f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], device=device)
        alb = torch.tensor([[1.0, 0, 0]] * 4 + [[0, 0, 1.0]] * 4, device=device)
        img = render_preview(
            v,
            f,
            resolution=16,
            albedo=alb,
            specular=0.0,
            camera=PerspectiveCamera(20.0, 8, 8),
            light_dir=(0, 0, 1),
            ambient=0.0,
            gamma=1.0,
        )
        assert float(img[8, 8, 0]) == pytest.approx(1.0) and float(img[8, 8, 2]) == pytest.approx(0.0)

    def test_uv_textured_and_errors(self, device):
        m = toy_face_model(grid=9, n_identity=2, device=device)
        alb = torch.rand(3, 8, 8, device=device)
        img = render_preview(m.mean, m.faces, resolution=32, albedo=alb, uvs=m.uvs, face_uvs=m.face_uvs)
        assert img.shape == (32, 32, 3) and float(img.min()) >= 0 and float(img.max()) <= 1
        with pytest.raises(ValueError, match="render_preview: UV-map albedo/specular need 'uvs'"):
            render_preview(m.mean, m.faces, albedo=alb)
        with pytest.raises(
            ValueError, match=r"render_preview: 'faces' must index the 81 vertices \(0 .. 80\)"
        ):
            render_preview(m.mean, m.faces + 1)
        with pytest.raises(TypeError, match="render_preview: 'faces' must be an integer tensor"):
            render_preview(m.mean, m.faces.float())
        with pytest.raises(TypeError, match="render_preview: 'resolution' must be an int; got float"):
            render_preview(m.mean, m.faces, resolution=32.0)
        with pytest.raises(ValueError, match="render_preview: 'specular' must be >= 0"):
            render_preview(m.mean, m.faces, specular=-0.5)


class TestExport:
    def test_export_roundtrip(self, tmp_path, device):
        m = toy_face_model(grid=9, n_identity=2, device=device)
        g = torch.Generator().manual_seed(0)
        disp = torch.randn(1, 16, 16, generator=g).to(device) * 0.01
        face = FaceAsset(
            m.mean,
            m.faces,
            m.uvs,
            m.face_uvs,
            torch.rand(3, 16, 16, generator=g).to(device),
            torch.rand(1, 16, 16, generator=g).to(device),
            disp,
        )
        paths = morphface.export(face, tmp_path, name="f")
        tm = trimesh.load(paths["obj"], process=False, maintain_order=True, force="mesh")
        assert len(tm.vertices) == m.n_vertices and len(tm.faces) == m.faces.shape[0]
        spec = cv2.imread(paths["specular"], cv2.IMREAD_UNCHANGED)
        assert spec.dtype == np.uint16 and spec.shape == (16, 16)
        np.testing.assert_allclose(spec / 65535.0, face.specular[0].cpu().numpy(), atol=1e-4)
        d = cv2.imread(paths["displacement"], cv2.IMREAD_UNCHANGED)
        r = json.loads(open(paths["json"]).read())["displacement_range_cm"]
        np.testing.assert_allclose((d / 65535.0 - 0.5) * 2 * r, disp[0].cpu().numpy(), atol=2 * r / 65535)
        nrm = cv2.imread(paths["normal"], cv2.IMREAD_UNCHANGED)
        assert nrm.dtype == np.uint16 and nrm.shape == (16, 16, 3)
        alb = cv2.imread(paths["albedo"], cv2.IMREAD_UNCHANGED)
        assert alb.dtype == np.uint8 and alb.shape == (16, 16, 3)
        assert "map_Kd f_albedo.png" in open(paths["mtl"]).read()

    def test_srgb_and_normals_reference(self, device):
        # sRGB: 0.5 -> 1.055 * 0.5^(1/2.4) - 0.055 = 0.735357 (hand computed)
        assert linear_to_srgb(torch.tensor(0.5, device=device)).item() == pytest.approx(0.735357, abs=1e-5)
        # a ramp D = 0.1 * u (cm) across a 10 cm UV square: dD/du_cm = 0.1 / 10 -> n ~ (-0.01, 0, 1)
        w = 8
        u = (torch.arange(w, dtype=torch.float64, device=device) + 0.5) / w
        disp = (0.1 * u).view(1, 1, w).expand(1, w, w)
        n = displacement_to_normal_map(disp, uv_extent_cm=10.0)
        ref = torch.tensor([-0.01, 0.0, 1.0], dtype=torch.float64, device=device)
        torch.testing.assert_close(n[:, 4, 4], ref / ref.norm())


class TestDisplace:
    def test_subdivide_reference(self, device):
        # unit square of two triangles (hand-made): 4 corners + 5 unique edge midpoints, 8 triangles
        v = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [2, 2, 0]], dtype=torch.float64, device=device)
        f = torch.tensor([[0, 1, 2], [1, 3, 2]], device=device)
        # corner UVs with a seam along the shared edge: the second triangle has its own UV copies
        uvs = torch.tensor(
            [[0, 0], [1, 0], [0, 1], [1, 0], [1, 1], [0, 1]], dtype=torch.float64, device=device
        )
        fuv = torch.tensor([[0, 1, 2], [3, 4, 5]], device=device)
        v2, f2, uv2, fuv2 = subdivide(v, f, uvs=uvs, face_uvs=fuv)
        assert v2.shape == (9, 3) and f2.shape == (8, 3)
        assert uv2 is not None and fuv2 is not None
        assert uv2.shape == (6 + 6, 2)  # the seam edge is split on both sides: 3 + 3 UV midpoints
        # midpoints of the 5 edges, hand computed: (1,0), (0,1), (1,1), (2,1), (1,2) in some order
        mids = {tuple(x) for x in v2[4:, :2].tolist()}
        assert mids == {(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (1.0, 2.0)}
        # UV = position / 2 everywhere on this layout, so it must hold at every new corner too
        torch.testing.assert_close(uv2[fuv2.flatten()], v2[f2.flatten(), :2] / 2)
        # orientation kept: every sub-triangle has the parent's (+z) normal
        e1, e2 = v2[f2[:, 1]] - v2[f2[:, 0]], v2[f2[:, 2]] - v2[f2[:, 0]]
        assert bool((torch.linalg.cross(e1, e2)[:, 2] > 0).all())
        with pytest.raises(ValueError, match="subdivide: 'uvs' and 'face_uvs' must be given together"):
            subdivide(v, f, uvs=uvs)
        with pytest.raises(TypeError, match="subdivide: 'faces' must be an integer tensor"):
            subdivide(v, f.double())

    @pytest.mark.parametrize("levels", [0, 1])
    def test_displace_ramp_reference(self, device, levels):
        # flat grid in z = 0 with UV = (x, y) and outward normal +z; displacement ramp D = 0.1 * u sampled
        # at texel centres, which bilinear sampling reproduces exactly inside the grid's UV range
        # [0.1, 0.9]: every vertex must end at z = 0.1 * x (hand computed)
        v, f, uvs, fuv = grid_mesh(5, device=device)
        w = 16
        u = (torch.arange(w, dtype=torch.float64, device=device) + 0.5) / w
        disp = (0.1 * u).view(1, 1, w).expand(1, w, w).contiguous()
        out = displace(FaceAsset(v, f, uvs, fuv, displacement=disp), subdivisions=levels)
        assert out.faces.shape[0] == f.shape[0] * 4**levels
        torch.testing.assert_close(out.vertices[:, 2], 0.1 * out.vertices[:, 0])
        torch.testing.assert_close(out.vertices[:, :2], subdivide(v, f)[0][:, :2] if levels else v[:, :2])

    def test_displace_face_mask_and_gradcheck(self, device):
        v, f, uvs, fuv = grid_mesh(4, device=device)
        disp = torch.full((1, 8, 8), 0.2, dtype=torch.float64, device=device)
        keep = torch.zeros(f.shape[0], dtype=torch.bool, device=device)
        keep[:2] = True  # the two triangles of the first grid cell: vertices 0, 1, 4, 5
        out = displace(FaceAsset(v, f, uvs, fuv, displacement=disp), face_mask=keep, scale=0.5)
        moved = (out.vertices - v).norm(dim=-1) > 0
        assert sorted(torch.nonzero(moved).flatten().tolist()) == [0, 1, 4, 5]
        torch.testing.assert_close(out.vertices[0, 2], torch.tensor(0.1, dtype=torch.float64, device=device))

        def fn(d):
            return displace(FaceAsset(v, f, uvs, fuv, displacement=d)).vertices

        d0 = torch.rand(1, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
        assert torch.autograd.gradcheck(fn, (d0,))

    def test_displace_errors(self, device):
        v, f, uvs, fuv = grid_mesh(3, device=device)
        face = FaceAsset(
            v, f, uvs, fuv, displacement=torch.zeros(1, 4, 4, dtype=torch.float64, device=device)
        )
        with pytest.raises(ValueError, match="displace: 'face' has no displacement map"):
            displace(FaceAsset(v, f, uvs, fuv))
        with pytest.raises(ValueError, match="displace: 'subdivisions' must be an int >= 0"):
            displace(face, subdivisions=-1)
        with pytest.raises(TypeError, match="displace: 'face_mask' must be a bool tensor"):
            displace(face, face_mask=torch.ones(f.shape[0], device=device))
        with pytest.raises(ValueError, match=r"displace: 'face_mask' must have shape \(8\)"):
            displace(face, face_mask=torch.ones(3, dtype=torch.bool, device=device))
        with pytest.raises(TypeError, match="displace: 'face' must be a FaceAsset"):
            displace(v)

    def test_subdivide_index_errors(self, device):
        v = torch.zeros(3, 3, device=device)
        with pytest.raises(ValueError, match=r"subdivide: 'faces' must index the 3 vertices \(0 .. 2\); got"):
            subdivide(v, torch.tensor([[0, 1, 7]], device=device))
        uvs = torch.zeros(3, 2, device=device)
        with pytest.raises(ValueError, match=r"subdivide: 'face_uvs' must index the 3 uvs"):
            subdivide(
                v,
                torch.tensor([[0, 1, 2]], device=device),
                uvs=uvs,
                face_uvs=torch.tensor([[0, -1, 2]], device=device),
            )


class TestInterpolate:
    def test_linear_and_slerp(self, device, dtype):
        a = torch.tensor([1.0, 0.0], device=device, dtype=dtype)
        b = torch.tensor([0.0, 2.0], device=device, dtype=dtype)
        torch.testing.assert_close(
            interpolate(a, b, 0.25), torch.tensor([0.75, 0.5], device=device, dtype=dtype)
        )
        # slerp half way: direction at 45 degrees, norm (1 + 2) / 2 = 1.5 (hand computed)
        s = interpolate(a, b, torch.tensor([0.0, 0.5, 1.0]), mode="slerp")
        h = 1.5 / math.sqrt(2)
        torch.testing.assert_close(
            s, torch.tensor([[1.0, 0.0], [h, h], [0.0, 2.0]], device=device, dtype=dtype)
        )
        with pytest.raises(ValueError, match="interpolate: 'a' and 'b' must have the same shape"):
            interpolate(a, torch.zeros(3, device=device, dtype=dtype), 0.5)
        with pytest.raises(ValueError, match="interpolate: 'mode' must be"):
            interpolate(a, b, 0.5, mode="cubic")


class TestPipelineAndCLI:
    def test_generate_faces(self, device):
        m = toy_face_model(grid=9, n_identity=3, device=device)
        g = AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=4, device=device)
        faces = morphface.generate_faces(
            m, m.sample(2), attribute_generator=g, generator=torch.Generator(device).manual_seed(0)
        )
        assert (
            len(faces) == 2
            and faces[0].albedo.shape == (3, 16, 16)
            and faces[0].displacement.shape == (1, 16, 16)
        )
        assert faces[0].vertices.shape == (m.n_vertices, 3)

    def test_generate_faces_with_upsampler_cascade(self, device):
        m = toy_face_model(grid=9, n_identity=3, device=device)
        g = AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=4, device=device)
        stages = [
            Upsampler(5, scale=2, hidden=4, n_blocks=1, geometry_channels=6, device=device),
            Upsampler(5, scale=2, hidden=4, n_blocks=1, device=device),
        ]
        ident = m.sample(2)
        low = morphface.generate_faces(
            m, ident, attribute_generator=g, generator=torch.Generator(device).manual_seed(0)
        )
        high = morphface.generate_faces(
            m,
            ident,
            attribute_generator=g,
            upsamplers=stages,
            generator=torch.Generator(device).manual_seed(0),
        )
        assert high[0].albedo.shape == (3, 64, 64) and high[0].displacement.shape == (1, 64, 64)
        assert float(high[0].albedo.min()) >= 0 and float(high[0].albedo.max()) <= 1
        # untrained stages are bilinear x2 twice (zero-initialised output layers), then the 64 px face mask
        raster = rasterize_uv(m.uvs, m.face_uvs, 64, face_mask=m.uv_face_mask)
        lo = low[0].albedo[None]
        ref = F.interpolate(
            F.interpolate(lo, scale_factor=2.0, mode="bilinear"), scale_factor=2.0, mode="bilinear"
        )
        torch.testing.assert_close(high[0].albedo, (ref[0] * raster.mask).clamp(0, 1))
        # the mesh does not depend on the maps
        torch.testing.assert_close(high[1].vertices, low[1].vertices)

    def test_generate_faces_upsampler_errors(self, device):
        m = toy_face_model(grid=9, n_identity=3, device=device)
        g = AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=4, device=device)
        ident = torch.zeros(1, 3, device=device)
        with pytest.raises(ValueError, match="generate_faces: 'upsamplers' need an 'attribute_generator'"):
            morphface.generate_faces(m, ident, upsamplers=Upsampler(5, scale=2, hidden=4))
        with pytest.raises(ValueError, match=r"generate_faces: 'upsamplers\[0\]' takes 3 channels"):
            morphface.generate_faces(m, ident, attribute_generator=g, upsamplers=[Upsampler(3, scale=2)])
        with pytest.raises(ValueError, match=r"'upsamplers\[0\]' expects 4 geometry channels"):
            morphface.generate_faces(
                m, ident, attribute_generator=g, upsamplers=[Upsampler(5, scale=2, geometry_channels=4)]
            )
        with pytest.raises(TypeError, match=r"generate_faces: 'upsamplers\[1\]' must be an Upsampler"):
            morphface.generate_faces(m, ident, attribute_generator=g, upsamplers=[Upsampler(5), "x4"])


@pytest.fixture
def cli_files(tmp_path):
    """A saved toy model, an attribute-generator checkpoint and an upsampler checkpoint."""
    m = toy_face_model(grid=9, n_identity=3)
    model_path = str(tmp_path / "toy.safetensors")
    m.save(model_path)
    g = AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=4)
    save_checkpoint(tmp_path / "gen.pt", {"generator": g})
    u = Upsampler(5, scale=2, hidden=4, n_blocks=1, geometry_channels=6)
    save_checkpoint(tmp_path / "up.pt", {"upsampler": u})
    return m, model_path, str(tmp_path / "gen.pt"), str(tmp_path / "up.pt")


class TestCLI:
    def test_sample(self, tmp_path, cli_files, device):
        m, mp, gen, up = cli_files
        out = tmp_path / "s"
        assert main(["sample", "--model", mp, "--n", "2", "--out", str(out), "--preview"]) == 0
        assert os.path.isfile(out / "face001.obj") and os.path.isfile(out / "face000.png")
        assert np.load(out / "identity.npy").shape == (2, 3)
        # with the attribute generator and one upsampler stage: 16 px maps -> 32 px
        out2 = tmp_path / "s2"
        args = [
            "sample",
            "--model",
            mp,
            "--n",
            "1",
            "--generator",
            gen,
            "--upsampler",
            up,
            "--device",  # the networks and the model on the test device (CLI default: cpu)
            str(device),
            "--out",
            str(out2),
        ]
        assert main(args) == 0
        assert cv2.imread(str(out2 / "face000_specular.png"), cv2.IMREAD_UNCHANGED).shape == (32, 32)
        tm = trimesh.load(out2 / "face000.obj", process=False, maintain_order=True, force="mesh")
        assert len(tm.vertices) == m.n_vertices
        with pytest.raises(SystemExit):  # an upsampler without a generator is a usage error
            main(["sample", "--model", mp, "--upsampler", up, "--out", str(out2)])

    def test_fit_3d_landmarks(self, tmp_path, cli_files):
        m, mp, _, _ = cli_files
        a = m.sample(1, generator=torch.Generator().manual_seed(3))
        np.save(tmp_path / "lm.npy", m.landmarks(m.vertices(a))[0].numpy())
        args = ["fit", "--model", mp, "--target", str(tmp_path / "lm.npy"), "--no-expression"]
        args += [
            "--out",
            str(tmp_path / "fit.json"),
            "--prior-weight",
            "0.0001",
            "--mesh-out",
            str(tmp_path / "f.obj"),
        ]
        assert main(args) == 0
        res = json.loads((tmp_path / "fit.json").read_text())
        # noise-free landmarks of a model sample: the fit reproduces them (the toy model's size is ~10)
        assert res["mean_residual"] < 0.05 and len(res["identity"]) == 3
        assert len(trimesh.load(tmp_path / "f.obj", process=False).vertices) == m.n_vertices

    def test_fit_2d_landmarks(self, tmp_path, cli_files):
        m, mp, _, _ = cli_files
        cam = PerspectiveCamera(focal=300.0, cx=64.0, cy=64.0)
        a = m.sample(1, generator=torch.Generator().manual_seed(4))
        pts = m.landmarks(m.vertices(a)) + torch.tensor([0.0, 0.0, -40.0])
        uv = project_points(pts, cam)[0]
        (tmp_path / "lm.json").write_text(json.dumps(uv.tolist()))
        args = [
            "fit",
            "--model",
            mp,
            "--target",
            str(tmp_path / "lm.json"),
            "--out",
            str(tmp_path / "fit.json"),
        ]
        with pytest.raises(SystemExit):  # 2D landmarks need the camera
            main(args)
        cam_args = ["--focal", "300", "--cx", "64", "--cy", "64", "--prior-weight", "0.01"]
        for solver in ([], ["--solver", "lbfgs"], ["--solver", "lm"]):
            assert main([*args, *cam_args, *solver]) == 0
            res = json.loads((tmp_path / "fit.json").read_text())
            assert res["mean_residual"] < 0.5, solver  # pixels, noise-free landmarks
            assert len(res["residuals"]) == uv.shape[0]
        with pytest.raises(SystemExit):  # an unknown solver is a usage error
            main([*args, *cam_args, "--solver", "newton"])

    def test_export(self, tmp_path, cli_files):
        m, mp, gen, up = cli_files
        ident = tmp_path / "id.npy"
        np.save(ident, np.array([[0.5, -1.0, 0.2]], dtype=np.float32))
        args = ["export", "--model", mp, "--identity", str(ident), "--generator", gen, "--upsampler", up]
        assert main([*args, "--albedo-bits", "16", "--out", str(tmp_path / "e")]) == 0
        for key in ("albedo", "specular", "displacement", "normal"):
            img = cv2.imread(str(tmp_path / "e" / f"face_{key}.png"), cv2.IMREAD_UNCHANGED)
            assert img.dtype == np.uint16 and img.shape[:2] == (32, 32), key
        tm = trimesh.load(tmp_path / "e" / "face.obj", process=False, maintain_order=True, force="mesh")
        assert len(tm.vertices) == m.n_vertices and tm.visual.material.image.size == (32, 32)
        # baked displacement: 1 subdivision level -> 4x triangles, no disp/normal maps (not applied twice)
        args = [
            "export",
            "--model",
            mp,
            "--identity",
            str(ident),
            "--generator",
            gen,
            "--bake-displacement",
            "1",
        ]
        assert main([*args, "--out", str(tmp_path / "b")]) == 0
        tm = trimesh.load(tmp_path / "b" / "face.obj", process=False, maintain_order=True, force="mesh")
        assert len(tm.faces) == 4 * m.faces.shape[0] and len(tm.vertices) > m.n_vertices
        base = m.vertices(torch.tensor([[0.5, -1.0, 0.2]]))[0].double().numpy()
        moved = np.linalg.norm(tm.vertices[: m.n_vertices] - base, axis=1) > 1e-5
        assert moved.any()  # the (untrained, nonzero) displacement moved the face-tile vertices
        assert not os.path.exists(tmp_path / "b" / "face_displacement.png")
        assert "disp " not in (tmp_path / "b" / "face.mtl").read_text()
        with pytest.raises(SystemExit):  # nothing to bake without a generator
            main(["export", "--model", mp, "--bake-displacement", "1", "--out", str(tmp_path / "y")])
        bad = tmp_path / "bad.npy"
        np.save(bad, np.zeros((1, 5), dtype=np.float32))
        with pytest.raises(SystemExit):
            main(["export", "--model", mp, "--identity", str(bad), "--out", str(tmp_path / "x")])

    def test_preview(self, tmp_path, cli_files):
        m, _, _, _ = cli_files
        write_obj(tmp_path / "m.obj", m.mean, m.faces)
        assert (
            main(
                [
                    "preview",
                    "--mesh",
                    str(tmp_path / "m.obj"),
                    "--resolution",
                    "32",
                    "--out",
                    str(tmp_path / "p.png"),
                ]
            )
            == 0
        )
        img = cv2.imread(str(tmp_path / "p.png"))
        assert img.shape == (32, 32, 3)
        # the face covers some pixels (not all background white)
        assert int((img < 250).any(-1).sum()) > 20


def test_pipeline_and_export_errors(device, tmp_path):
    m = toy_face_model(grid=9, n_identity=3, device=device)
    with pytest.raises(ValueError, match=r"generate_faces: 'identity' must have shape \(B, 3\)"):
        morphface.generate_faces(m, torch.zeros(1, 4, device=device))
    with pytest.raises(TypeError, match="generate_faces: 'model' must be a LinearFaceModel"):
        morphface.generate_faces("m", torch.zeros(1, 3))
    ident = torch.zeros(1, 3, device=device)
    with pytest.raises(
        TypeError, match="generate_faces: 'attribute_generator' must be an AttributeGenerator"
    ):
        morphface.generate_faces(m, ident, attribute_generator="gen.pt")
    with pytest.raises(
        TypeError, match=r"generate_faces: 'generator' must be a torch\.Generator or None; got int"
    ):
        morphface.generate_faces(m, ident, generator=0)
    with pytest.raises(ValueError, match="generate_faces: 'displacement_scale' must be > 0"):
        morphface.generate_faces(m, ident, displacement_scale=0.0)
    with pytest.raises(TypeError, match=r"interpolate: 't' must be a float or a \(T,\) tensor; got str"):
        interpolate(ident, ident, "half")
    with pytest.raises(TypeError, match=r"save_checkpoint: 'networks\['g'\]' must be an nn\.Module; got str"):
        save_checkpoint(tmp_path / "x.pt", {"g": "not a module"})
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(TypeError, match="export: 'face' must be a FaceAsset"):
        morphface.export({"vertices": 1}, tmp_path)
    with pytest.raises(
        ValueError, match="export: 'name' must be a non-empty file stem without path separators"
    ):
        morphface.export(morphface.FaceAsset(m.mean, m.faces, m.uvs, m.face_uvs), tmp_path, name="../x")
