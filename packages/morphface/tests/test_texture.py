"""Photo-to-UV texture projection with a visibility / confidence mask (issue 21), on synthetic renders where
the true texture is known: render a textured mesh (pure albedo: no shading), project the render back."""

from __future__ import annotations

import math
import os

import pytest
import torch
from mf_helpers import grid_mesh

from morphface import PerspectiveCamera, render_preview
from morphface.geometry import axis_angle_to_matrix
from morphface.texture import project_texture


def _true_texture(r: int) -> torch.Tensor:
    """A smooth colour ramp plus a low-frequency pattern, linear RGB in [0.1, 0.9]."""
    v, u = torch.meshgrid(torch.linspace(1, 0, r), torch.linspace(0, 1, r), indexing="ij")
    return torch.stack(
        [0.1 + 0.8 * u, 0.1 + 0.8 * v, 0.5 + 0.4 * torch.sin(2 * math.pi * u) * torch.cos(2 * math.pi * v)]
    ).double()


def _albedo_render(vertices, faces, uvs, face_uvs, albedo, cam, res, face_mask=None):
    # ambient 1, light from behind (n.l <= 0 on visible faces), no specular, gamma 1: colour = albedo
    img = render_preview(
        vertices,
        faces,
        resolution=res,
        albedo=albedo,
        specular=0.0,
        uvs=uvs,
        face_uvs=face_uvs,
        uv_face_mask=face_mask,
        camera=cam,
        light_dir=(0.0, 0.0, -1.0),
        ambient=1.0,
        gamma=1.0,
        background=(0.0, 0.0, 0.0),
    )
    return img.permute(2, 0, 1)


class TestProjectTextureSynthetic:
    def test_recovers_texture_and_masks_the_occluded_part(self):
        # a bumpy sheet (UV = xy) seen from 3 units away, with a small opaque card in front of its centre
        v, f, uv, fuv = grid_mesh(25)
        v = v.clone()
        v[:, 2] = 0.15 * torch.exp(-((v[:, 0] - 0.5) ** 2 + (v[:, 1] - 0.5) ** 2) / 0.05)
        card_v, card_f, _, _ = grid_mesh(3, margin=0.0)
        card_v = card_v * 0.2 + torch.tensor(
            [0.45, 0.2, 0.6], dtype=torch.float64
        )  # covers x .45-.65, y .2-.4
        verts = torch.cat([v, card_v]) - torch.tensor([0.5, 0.5, 3.0], dtype=torch.float64)
        faces = torch.cat([f, card_f + v.shape[0]])
        uvs = torch.cat([uv, torch.full((card_v.shape[0], 2), 0.01, dtype=torch.float64)])
        face_uvs = torch.cat([fuv, card_f + uv.shape[0]])
        sheet = torch.zeros(faces.shape[0], dtype=torch.bool)
        sheet[: f.shape[0]] = True
        truth = _true_texture(32)
        cam = PerspectiveCamera(300.0, 80.0, 80.0)
        photo = _albedo_render(verts, faces, uvs, face_uvs, truth, cam, 160, sheet)
        tex, conf = project_texture(photo, verts, faces, uvs, face_uvs, cam, 32, face_mask=sheet)
        assert tex.shape == (3, 32, 32) and conf.shape == (1, 32, 32)
        seen = conf[0] > 0.3
        assert int(seen.sum()) > 0.5 * 32 * 32
        err = (tex - truth).abs().mean(0)[seen]
        assert float(err.mean()) < 0.02 and float(err.max()) < 0.12  # bilinear resampling twice
        # texels behind the card (u .47-.63, v .22-.38 with some margin) are marked invisible
        r = torch.linspace(0, 1, 32)
        uu, vv = torch.meshgrid(r, r.flip(0), indexing="xy")
        behind = (uu > 0.5) & (uu < 0.6) & (vv > 0.25) & (vv < 0.35)
        assert int(behind.sum()) > 4 and float(conf[0][behind].max()) == 0.0
        # turned away: the back side gets no confidence at all
        flip = axis_angle_to_matrix(torch.tensor([0.0, math.pi, 0.0], dtype=torch.float64))
        back = (verts - verts.mean(0)) @ flip.T + verts.mean(0)
        _, conf_back = project_texture(photo, back, faces, uvs, face_uvs, cam, 32, face_mask=sheet)
        assert float(conf_back.max()) == 0.0

    def test_bad_input(self):
        v, f, uv, fuv = grid_mesh(4)
        cam = PerspectiveCamera(100.0, 8.0, 8.0)
        img = torch.rand(3, 16, 16, dtype=torch.float64)
        with pytest.raises(ValueError, match=r"project_texture: 'vertices' must lie in front of the camera"):
            project_texture(img, v, f, uv, fuv, cam, 8)
        with pytest.raises(ValueError, match=r"project_texture: 'image' must have shape \(3, H, W\)"):
            project_texture(img[0], v - 3, f, uv, fuv, cam, 8)
        with pytest.raises(TypeError, match=r"project_texture: 'camera' must be a PerspectiveCamera"):
            project_texture(img, v - 3, f, uv, fuv, None, 8)


class TestProjectTextureICT:
    def test_turned_real_head(self, shared_data):
        from morphface.io import load_ict_npz

        npz = os.path.join(shared_data, "ict-facekit", "ict_facekit_shapes.npz")
        if not os.path.isfile(
            os.path.join(shared_data, "ict-facekit", "FaceXModel", "generic_neutral_mesh.obj")
        ):
            pytest.skip(f"ICT-FaceKit missing under {shared_data}: projection untested on a real head")
        torch.set_num_threads(1)
        m = load_ict_npz(npz, n_identity=2, dtype=torch.float64)
        rot = axis_angle_to_matrix(torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64))  # head turned ~29 deg
        verts = m.mean @ rot.T + torch.tensor([0.0, -2.0, -75.0], dtype=torch.float64)
        cam = PerspectiveCamera(520.0, 80.0, 80.0)
        truth = _true_texture(48)
        photo = _albedo_render(verts, m.faces, m.uvs, m.face_uvs, truth, cam, 160, m.uv_face_mask)
        tex, conf = project_texture(
            photo, verts, m.faces, m.uvs, m.face_uvs, cam, 48, face_mask=m.uv_face_mask
        )
        seen = conf[0] > 0.3
        err = (tex - truth).abs().mean(0)[seen]
        assert int(seen.sum()) > 300 and float(err.mean()) < 0.03
        # the far side of the face is hidden: the two UV halves (ICT's face tile is left/right symmetric
        # around u = 0.5) are not seen equally
        left, right = conf[0][:, :24], conf[0][:, 24:]
        assert abs(float((left > 0).float().mean() - (right > 0).float().mean())) > 0.05
