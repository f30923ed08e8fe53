"""UV rasterisation, interpolation and sampling."""

from __future__ import annotations

import pytest
import torch
from mf_helpers import grid_mesh

from morphface import uv


class TestRasterizeUV:
    def test_single_triangle_count(self, device):
        # lower-left half triangle of the unit square at 4x4: texel centres (i+.5)/4 with u + v <= 1.
        # Hand count: rows from the bottom have 4, 3, 2, 1 centres with u+v < 1, plus none on the diagonal
        # (u+v = (i+j+1)/4 is 1 for i+j = 3: those 4 centres lie exactly on the edge and are included).
        t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], device=device)
        r = uv.rasterize_uv(t, torch.tensor([[0, 1, 2]], device=device), 4)
        assert int(r.mask.sum()) == 10
        # row 0 is the top (v = 7/8): only the leftmost texel centre (u = 1/8) is inside
        assert r.mask[0].tolist() == [True, False, False, False]
        torch.testing.assert_close(r.bary.sum(-1)[r.mask], torch.ones(10, device=device, dtype=torch.float32))

    def test_linear_attribute_exact(self, device, dtype):
        v, f, t, ft = grid_mesh(5, dtype=dtype, device=device)
        r = uv.rasterize_uv(t, ft, 32)
        # attribute a linear function of position -> barycentric interpolation reproduces it exactly
        attr = (2.0 * v[:, :1] - 3.0 * v[:, 1:2] + 0.5).unsqueeze(0)
        maps, mask = uv.uv_maps(attr, f, r)
        assert maps.shape == (1, 1, 32, 32) and maps.dtype == dtype
        cols = (torch.arange(32, device=device, dtype=dtype) + 0.5) / 32
        uu = cols.view(1, 32).expand(32, 32)
        vv = (1 - cols).view(32, 1).expand(32, 32)
        ref = 2.0 * uu - 3.0 * vv + 0.5
        torch.testing.assert_close(maps[0, 0][mask], ref[mask])
        assert float(maps[0, 0][~mask].abs().max()) == 0.0
        # coverage: texel centres inside [0.1, 0.9]^2 -> columns 3..28 (26 per axis)
        assert int(mask.sum()) == 26 * 26

    def test_roundtrip_rasterise_sample(self, device):
        v, f, t, ft = grid_mesh(9, dtype=torch.float64, device=device)
        r = uv.rasterize_uv(t, ft, 64)
        pos = v + torch.stack([v[:, 0] * v[:, 1], v[:, 1] ** 2, v[:, 0]], -1)  # non-linear positions
        maps, mask = uv.uv_maps(pos.unsqueeze(0), f, r)
        maps = uv.fill_uv_holes(maps, mask)
        back = uv.sample_uv(maps, uv.vertex_uvs(f, ft, t, v.shape[0]))
        # piecewise-linear map sampled bilinearly at the vertices: error bounded by the texel size (1/64)
        err = (back[0] - pos).abs().max()
        assert float(err) < 0.02

    def test_sample_uv_reference(self, device):
        m = torch.tensor([[0.0, 1.0], [2.0, 3.0]], device=device).view(1, 1, 2, 2)
        # centre of the map: average of 4 texels = 1.5 (bilinear, hand computed)
        out = uv.sample_uv(m, torch.tensor([[0.5, 0.5], [0.75, 0.25]], device=device))
        torch.testing.assert_close(out.flatten(), torch.tensor([1.5, 3.0], device=device))

    def test_gradcheck(self, device):
        v, f, t, ft = grid_mesh(4, dtype=torch.float64, device=device)
        r = uv.rasterize_uv(t, ft, 8)
        attr = torch.randn(1, v.shape[0], 2, dtype=torch.float64, device=device, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a: uv.uv_maps(a, f, r)[0], (attr,))
        maps = torch.randn(1, 2, 8, 8, dtype=torch.float64, device=device, requires_grad=True)
        q = torch.rand(5, 2, dtype=torch.float64, device=device) * 0.8 + 0.1
        assert torch.autograd.gradcheck(lambda x: uv.sample_uv(x, q), (maps,))

    def test_module_equals_functional(self, device):
        v, f, t, ft = grid_mesh(5, device=device, dtype=torch.float32)
        mod = uv.UVRasterizer(f, t, ft, 16, device=device)
        attr = torch.randn(2, v.shape[0], 3, device=device)
        torch.testing.assert_close(mod(attr), uv.uv_maps(attr, f, uv.rasterize_uv(t, ft, 16))[0])
        assert "resolution=(16, 16)" in repr(mod)

    def test_face_mask_and_tile(self, device):
        _, f, t, ft = grid_mesh(5, device=device, dtype=torch.float32)
        keep = torch.zeros(f.shape[0], dtype=torch.bool, device=device)
        keep[:2] = True
        r = uv.rasterize_uv(t, ft, 32, face_mask=keep)
        assert set(r.face_index[r.mask].unique().tolist()) <= {0, 1}
        r2 = uv.rasterize_uv(t + torch.tensor([1.0, 0.0], device=device), ft, 32, tile=1)
        assert torch.equal(r2.face_index, uv.rasterize_uv(t, ft, 32).face_index)

    def test_geometry_maps_normals(self, device):
        v, f, t, ft = grid_mesh(5, device=device, dtype=torch.float32)
        _, nrm, mask = uv.geometry_maps(v.unsqueeze(0), f, uv.rasterize_uv(t, ft, 16))
        # flat grid in the z = 0 plane with counter-clockwise faces: normal +z everywhere
        torch.testing.assert_close(nrm[0, 2][mask], torch.ones(int(mask.sum()), device=device))

    def test_errors(self, device):
        t = torch.rand(3, 2, device=device)
        with pytest.raises(ValueError, match=r"rasterize_uv: 'face_uvs' must index \[0, 2\]"):
            uv.rasterize_uv(t, torch.tensor([[0, 1, 3]], device=device), 8)
        with pytest.raises(ValueError, match=r"rasterize_uv: 'resolution' must be a positive int"):
            uv.rasterize_uv(t, torch.tensor([[0, 1, 2]], device=device), 0)
        with pytest.raises(TypeError, match=r"rasterize_uv: 'uvs' must have a floating-point dtype"):
            uv.rasterize_uv(t.long(), torch.tensor([[0, 1, 2]], device=device), 8)
        with pytest.raises(ValueError, match=r"sample_uv: 'maps' must have shape \(B, C, H, W\)"):
            uv.sample_uv(torch.zeros(2, 2, device=device), t)
        with pytest.raises(ValueError, match=r"sample_uv: 'mode' must be"):
            uv.sample_uv(torch.zeros(1, 1, 2, 2, device=device), t, mode="cubic")
        # uv_maps: faces must index the attributes and match the rasterised triangles
        f = torch.tensor([[0, 1, 2]], device=device)
        r = uv.rasterize_uv(t, f, 8)
        attr = torch.rand(3, 2, device=device)
        with pytest.raises(
            ValueError, match=r"uv_maps: 'faces' must index the 3 vertices \(0 .. 2\); got \[0, 5\]"
        ):
            uv.uv_maps(attr, torch.tensor([[0, 1, 5]], device=device), r)
        if bool(r.mask.any()):
            with pytest.raises(ValueError, match=r"uv_maps: 'raster' refers to triangle 0 but 'faces' has 0"):
                uv.uv_maps(attr, f[:0], r)
        with pytest.raises(
            ValueError, match=r"fill_uv_holes: 'mask' must have shape \(8, 8\) or \(1, 1, 8, 8\)"
        ):
            uv.fill_uv_holes(
                torch.zeros(1, 1, 8, 8, device=device), torch.ones(4, 4, dtype=torch.bool, device=device)
            )
        with pytest.raises(ValueError, match=r"fill_uv_holes: 'iterations' must be an int >= 0; got -1"):
            uv.fill_uv_holes(
                torch.zeros(1, 1, 8, 8, device=device),
                torch.ones(8, 8, dtype=torch.bool, device=device),
                iterations=-1,
            )
