"""Camera, dolly zoom, rasteriser and flow synthesis against closed-form geometry."""

from __future__ import annotations

import math

import pytest
import torch
from _scenes import plane_mesh, sphere_mesh

from undistort.camera import (
    PinholeCamera,
    dolly_zoom,
    head_rotation,
    magnification,
    project,
    rasterize,
    render,
    synthesize_pair,
)
from undistort.render import interpolate, vertex_normals


class TestProject:
    def test_reference_values(self, device):
        # u = f x / z + cx = 10 * 2 / 4 + 5 = 10; v = 10 * -1 / 4 + 6 = 3.5 (by hand)
        p = project(torch.tensor([[2.0, -1.0, 4.0]], device=device), 10.0, (5.0, 6.0))
        assert torch.allclose(p, torch.tensor([[10.0, 3.5, 4.0]], device=device))

    def test_errors(self, device):
        with pytest.raises(TypeError, match="project: 'points' must have a floating-point dtype"):
            project(torch.ones(2, 3, dtype=torch.long, device=device), 1.0)
        with pytest.raises(ValueError, match=r"project: 'points' must have shape \(\*, 3\)"):
            project(torch.ones(2, 2, device=device), 1.0)


class TestDollyZoom:
    def test_anchor_plane_is_invariant(self, device):
        # Points on the anchor plane (head z = 0) project to the same pixels in both views.
        rot = head_rotation(0.2, -0.1, 0.05, dtype=torch.float64).to(device)
        t = torch.tensor([1.0, -2.0, 40.0], dtype=torch.float64, device=device)
        f_ref, t_ref = dolly_zoom(600.0, t, 500.0)
        x = torch.tensor([[3.0, 2.0, 0.0], [-5.0, 1.0, 0.0]], dtype=torch.float64, device=device)
        # rotate within the anchor plane only: use the frontal rotation for an exact invariance
        rot = head_rotation(dtype=torch.float64).to(device)
        near = project(x @ rot.T + t, 600.0)
        ref = project(x @ rot.T + t_ref, f_ref)
        assert torch.allclose(near[:, :2], ref[:, :2], atol=1e-9)

    @pytest.mark.parametrize(("d", "expected"), [(30.0, 1.5), (160.0, 16.0 / 15.0)])
    def test_nose_magnification(self, device, d, expected):
        # Dossier section 4.2: a point 10 cm ahead of the anchor is magnified 1/(1 - z/d) for d_ref -> inf:
        # 1/(1 - 10/30) = 1.5 and 1/(1 - 10/160) = 16/15 = 1.0667 (by hand). Measured by projecting.
        rot = head_rotation(dtype=torch.float64).to(device)
        t = torch.tensor([0.0, 0.0, d], dtype=torch.float64, device=device)
        f = 500.0
        f_ref, t_ref = dolly_zoom(f, t, 1e9)
        nose = torch.tensor([[1.0, 0.0, 10.0]], dtype=torch.float64, device=device)
        u_near = project(nose @ rot.T + t, f)[0, 0]
        u_ref = project(nose @ rot.T + t_ref, f_ref)[0, 0]
        assert float(u_near / u_ref) == pytest.approx(expected, rel=1e-6)
        assert float(magnification(10.0, d)) == pytest.approx(expected, rel=1e-12)

    def test_ears_shrink(self):
        # z = -8 cm at d = 30 cm: 1 / (1 + 8/30) = 0.789 (dossier: 0.79x)
        assert float(magnification(-8.0, 30.0)) == pytest.approx(30.0 / 38.0)

    def test_errors(self):
        with pytest.raises(ValueError, match="dolly_zoom: 'distance_ref' must be > 0"):
            dolly_zoom(1.0, torch.tensor([0.0, 0.0, 1.0]), 0.0)
        with pytest.raises(ValueError, match=r"dolly_zoom: 'translation\[2\] \(distance\)' must be > 0"):
            dolly_zoom(1.0, torch.tensor([0.0, 0.0, -1.0]), 5.0)


class TestRasterize:
    def test_coverage_by_hand(self, device):
        # right triangle (0,0),(4,0),(0,4): pixel centres (j+.5, i+.5) inside iff i + j <= 3 -> 10 pixels
        v = torch.tensor([[0.0, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, 4.0, 1.0]], device=device)
        frag = rasterize(v, torch.tensor([[0, 1, 2]], device=device), 4, 4)
        ii, jj = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
        assert torch.equal(frag.mask.cpu(), (ii + jj) <= 3)

    def test_z_buffer_keeps_nearest(self, device):
        square = torch.tensor([[0.0, 0.0], [8.0, 0.0], [8.0, 8.0], [0.0, 8.0]], device=device)
        far = torch.cat([square, torch.full((4, 1), 5.0, device=device)], 1)
        near = torch.cat([square, torch.full((4, 1), 2.0, device=device)], 1)
        v = torch.cat([far, near])
        faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], device=device)
        frag = rasterize(v, faces, 8, 8)
        assert bool((frag.face_index >= 2).all())
        assert torch.allclose(frag.depth, torch.full((8, 8), 2.0, device=device))

    def test_perspective_correct_interpolation(self, device):
        # A tilted plane: interpolating camera-frame points must give points ON the viewing ray of each
        # pixel centre (exactly, up to float64 rounding), which screen-space interpolation would not.
        dt = torch.float64
        v, f = plane_mesh(4, 6.0, (0.6, 0.0), dtype=dt)
        cam = v.to(device) + torch.tensor([0.0, 0.0, 20.0], dtype=dt, device=device)
        c = PinholeCamera.centered(40.0, 32)
        frag = rasterize(c.project(cam), f.to(device), 32, 32)
        pts = interpolate(frag, f.to(device), cam)
        m = frag.mask
        jj = torch.arange(32, dtype=dt, device=device) + 0.5
        _, qx = torch.meshgrid(jj, jj, indexing="ij")
        u = 40.0 * pts[..., 0] / pts[..., 2] + 16.0
        assert m.sum() > 100
        assert torch.allclose(u[m], qx[m], atol=1e-8)

    def test_errors(self, device):
        v = torch.zeros(3, 3, device=device)
        with pytest.raises(ValueError, match=r"rasterize: 'faces' must index \[0, 2\]"):
            rasterize(v, torch.tensor([[0, 1, 3]], device=device), 4, 4)
        with pytest.raises(TypeError, match="rasterize: 'faces' must be an integer tensor"):
            rasterize(v, torch.zeros(1, 3, device=device), 4, 4)
        with pytest.raises(ValueError, match="rasterize: 'height' must be > 0"):
            rasterize(v, torch.tensor([[0, 1, 2]], device=device), 0, 4)


def _ray_plane_flow(q, cam_ref, rot, t_ref, t, f, tilt):
    """Closed-form backward flow for the head-frame plane z = a x + b y (independent of the rasteriser).

    Ray of reference pixel q: x_c = s * dir; head point X = R^T (x_c - t_ref); plane n . X = 0 with
    n = (a, b, -1) gives s = n . R^T t_ref / n . R^T dir.
    """
    qx, qy = q
    dirs = torch.stack(
        [(qx - cam_ref.cx) / cam_ref.focal, (qy - cam_ref.cy) / cam_ref.focal, torch.ones_like(qx)], -1
    )
    n = torch.tensor([tilt[0], tilt[1], -1.0], dtype=dirs.dtype, device=dirs.device)
    rn = rot @ n  # n . R^T y = (R n) . y
    s = (rn @ t_ref) / (dirs @ rn)
    x = (dirs * s[..., None] - t_ref) @ rot  # R^T (x_c - t_ref)
    p = project(x @ rot.T + t, f, (cam_ref.cx, cam_ref.cy))  # same principal point in both views
    return torch.stack([p[..., 0] - qx, p[..., 1] - qy], 0)


class TestSynthesizePair:
    @pytest.mark.parametrize("d", [30.0, 80.0])
    def test_plane_flow_matches_closed_form(self, device, d):
        dt = torch.float64
        tilt = (0.4, -0.2)
        v, faces = plane_mesh(8, 10.0, tilt, dtype=dt)
        v, faces = v.to(device), faces.to(device)
        rot = head_rotation(0.15, 0.1, 0.0, dtype=dt).to(device)
        t = torch.tensor([0.5, -0.3, d], dtype=dt, device=device)
        s = 48
        f = 0.6 * s * d / 20.0
        cam = PinholeCamera.centered(f, s)
        out = synthesize_pair(v, faces, torch.full_like(v, 0.5), cam, rot, t, distance_ref=500.0)
        f_ref, t_ref = dolly_zoom(f, t, 500.0)
        cam_ref = PinholeCamera.centered(f_ref, s)
        jj = torch.arange(s, dtype=dt, device=device) + 0.5
        qy, qx = torch.meshgrid(jj, jj, indexing="ij")
        want = _ray_plane_flow((qx, qy), cam_ref, rot, t_ref, t, f, tilt)
        valid = out["valid"]
        assert valid.sum() > 0.8 * out["mask_corrected"].sum()
        assert out["flow"].abs().max() > 0.3  # the test is not vacuous (0.55 px at 80 cm, 4 px at 30 cm)
        assert torch.allclose(out["flow"][:, valid], want[:, valid], atol=1e-6)

    def test_zero_flow_at_reference_distance(self, device):
        v, faces = sphere_mesh(dtype=torch.float64)
        v, faces = v.to(device), faces.to(device)
        rot = head_rotation(0.3, 0.0, 0.0, dtype=torch.float64).to(device)
        t = torch.tensor([0.0, 0.0, 60.0], dtype=torch.float64, device=device)
        cam = PinholeCamera.centered(200.0, 40)
        out = synthesize_pair(v, faces, torch.full_like(v, 0.7), cam, rot, t, distance_ref=60.0)
        assert out["focal_ref"] == pytest.approx(200.0)
        assert float(out["flow"].abs().max()) < 1e-9
        # identical cameras: identical renders (up to CUDA's non-deterministic index_add_ in the normals)
        assert torch.allclose(out["distorted"], out["corrected"], atol=1e-6)
        assert int(out["holes"].sum()) == 0

    def test_sphere_hides_sides_at_close_range(self, device):
        # At 20 cm a radius-8 sphere shows less of its silhouette band than from 500 cm: the reference
        # view's rim is hidden in the near view -> holes at the rim and none at the centre.
        v, faces = sphere_mesh(dtype=torch.float64)
        v, faces = v.to(device), faces.to(device)
        rot = head_rotation(dtype=torch.float64).to(device)
        t = torch.tensor([0.0, 0.0, 20.0], dtype=torch.float64, device=device)
        cam = PinholeCamera.centered(40.0, 48)
        out = synthesize_pair(v, faces, torch.full_like(v, 0.7), cam, rot, t, distance_ref=500.0)
        holes = out["holes"]
        assert holes.sum() > 20
        assert not bool(holes[20:28, 20:28].any())

    def test_landmarks_follow_the_flow(self, device):
        v, faces = plane_mesh(8, 10.0, (0.3, 0.1), dtype=torch.float64)
        v, faces = v.to(device), faces.to(device)
        rot = head_rotation(dtype=torch.float64).to(device)
        t = torch.tensor([0.0, 0.0, 35.0], dtype=torch.float64, device=device)
        cam = PinholeCamera.centered(60.0, 40)
        lm = torch.tensor([40, 41, 50], device=device)
        out = synthesize_pair(v, faces, torch.full_like(v, 0.5), cam, rot, t, landmarks=lm)
        lc, ld = out["landmarks_corrected"], out["landmarks_distorted"]
        assert lc.shape == (3, 2)
        # forward flow at the near pixel of each landmark maps it (approximately: pixel sampling) to lc
        for k in range(3):
            j, i = int(ld[k, 0]), int(ld[k, 1])
            centre = torch.tensor([j + 0.5, i + 0.5], dtype=torch.float64, device=device)
            fwd = out["forward_flow"][:, i, j]
            assert torch.allclose(centre + fwd, lc[k], atol=1.0)

    def test_errors(self, device):
        v = torch.zeros(3, 3, device=device)
        cam = PinholeCamera.centered(10.0, 8)
        with pytest.raises(ValueError, match=r"synthesize_pair: 'translation\[2\] \(distance\)' must be > 0"):
            synthesize_pair(v, torch.tensor([[0, 1, 2]]), v, cam, torch.eye(3), torch.zeros(3))
        with pytest.raises(TypeError, match="synthesize_pair: 'camera' must be a PinholeCamera; got tuple"):
            synthesize_pair(v, torch.tensor([[0, 1, 2]]), v, (10.0, 8), torch.eye(3), torch.ones(3))  # type: ignore[arg-type]
        with pytest.raises(
            ValueError, match=r"render: 'camera' must have a finite focal > 0 .*got focal=-1\.0"
        ):
            render(
                v, torch.tensor([[0, 1, 2]]), v, PinholeCamera(-1.0, 4, 4, 8, 8), torch.eye(3), torch.ones(3)
            )
        with pytest.raises(ValueError, match="head_rotation: 'pitch' must be a finite angle"):
            head_rotation(0.0, math.inf)


class TestRender:
    def test_shapes_and_background(self, device):
        v, faces = sphere_mesh(4.0, 8, 16, dtype=torch.float32)
        v, faces = v.to(device), faces.to(device)
        cam = PinholeCamera.centered(100.0, 32)
        bg = torch.full((3, 32, 32), 0.25, device=device)
        out = render(
            v,
            faces,
            torch.full_like(v, 0.8),
            cam,
            head_rotation().to(device),
            torch.tensor([0.0, 0.0, 40.0], device=device),
            background=bg,
        )
        assert out["image"].shape == (3, 32, 32)
        assert torch.all(out["image"][:, 0, 0] == 0.25)
        assert bool(out["mask"][16, 16])
        n = vertex_normals(v, faces)
        assert torch.allclose(n.norm(dim=-1), torch.ones(len(v), device=device), atol=1e-5)

    def test_uv_texture(self, device):
        # A fronto-parallel plane x, y in [-10, 10] with uv = ((x + 10) / 20, (y + 10) / 20) and a texture
        # whose red channel is u (a horizontal ramp): the red albedo at each pixel must equal the u of
        # the surface point it sees (computed here from the interpolated head-frame point, independently).
        v, faces = plane_mesh(4, 10.0, dtype=torch.float64)
        v, faces = v.to(device), faces.to(device)
        uv = (v[:, :2] + 10.0) / 20.0
        tw = 256
        ramp = (torch.arange(tw, dtype=torch.float64, device=device) + 0.5) / tw
        tex = torch.stack(
            [
                ramp.expand(tw, tw),
                torch.zeros(tw, tw, device=device, dtype=torch.float64),
                torch.zeros(tw, tw, device=device, dtype=torch.float64),
            ]
        )
        cam = PinholeCamera.centered(60.0, 32)
        rot = head_rotation(dtype=torch.float64).to(device)
        t = torch.tensor([0.0, 0.0, 40.0], dtype=torch.float64, device=device)
        out = render(
            v,
            faces,
            None,
            cam,
            rot,
            t,
            uv=uv,
            texture=tex,
            ambient=1.0,
            specular=0.0,
            light_dir=torch.tensor([0.0, 0.0, 1.0]),
        )
        m = out["mask"]
        u_true = (out["points"][..., 0] + 10.0) / 20.0
        assert m.sum() > 100
        assert torch.allclose(out["image"][0][m], u_true[m], atol=2e-3)
        # per-corner uv (F, 3, 2) gives the same image
        out2 = render(
            v,
            faces,
            None,
            cam,
            rot,
            t,
            uv=uv[faces],
            texture=tex,
            ambient=1.0,
            specular=0.0,
            light_dir=torch.tensor([0.0, 0.0, 1.0]),
        )
        assert torch.allclose(out2["image"], out["image"], atol=1e-9)
        with pytest.raises(ValueError, match="render: 'uv' is required with 'texture'"):
            render(v, faces, None, cam, rot, t, texture=tex)
        with pytest.raises(ValueError, match="render: give 'colors' or 'uv' \\+ 'texture'"):
            render(v, faces, None, cam, rot, t)

    def test_errors(self, device):
        cam = PinholeCamera.centered(100.0, 8)
        v = torch.zeros(3, 3, device=device)
        with pytest.raises(ValueError, match=r"render: 'colors' must have shape \(V, 3\) with V=3"):
            render(
                v,
                torch.tensor([[0, 1, 2]]),
                torch.zeros(4, 3, device=device),
                cam,
                torch.eye(3),
                torch.ones(3),
            )
        with pytest.raises(ValueError, match="render: 'vertices' must be finite"):
            render(v * math.nan, torch.tensor([[0, 1, 2]]), v, cam, torch.eye(3), torch.ones(3))
