"""Render the re-imported asset (issue 21): the eyes and the back of the head must not show the face tile.

The exported GLB and OBJ are read back with trimesh and rendered unlit (base colour only) with the package's
z-buffered rasteriser from a frontal and a back view: every pixel takes the colour of the nearest opaque
triangle, its material's ``baseColorTexture`` (sRGB bytes, decoded to linear) at the interpolated UV, or its
plain colour. Which part a pixel shows is NOT taken from the asset: a second render of the ORIGINAL mesh with
the model's own per-triangle parts labels the pixels. The face tile is a red/green checker, so a pixel that
samples the face tile is recognisable. Transparent overlays (alpha < 1, drawn blended by viewers) are left out
of both renders; that they carry no texture is checked separately.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import trimesh

from morphface import export
from morphface._raster import rasterize_triangles
from morphface.export import NEUTRAL_MATERIALS
from morphface.fit import project_points
from morphface.io import load_ict_npz, write_obj
from morphface.pipeline import generate_faces
from morphface.render import default_camera

RED, GREEN = (0.8, 0.1, 0.1), (0.1, 0.8, 0.1)  # linear colours of the face tile's checker
EYES = ("M_ScleraLeft", "M_ScleraRight", "M_IrisLeft", "M_IrisRight")
RES = 256


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


@pytest.fixture(scope="module")
def checker_asset(shared_data, tmp_path_factory):
    npz = os.path.join(shared_data, "ict-facekit", "ict_facekit_shapes.npz")
    if not os.path.isfile(os.path.join(shared_data, "ict-facekit", "FaceXModel", "generic_neutral_mesh.obj")):
        pytest.skip(f"ICT-FaceKit with its template OBJ missing under {shared_data}: asset render untested")
    model = load_ict_npz(npz, n_identity=3)
    face = generate_faces(model, torch.zeros(1, 3))[0]
    h = 64
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    red = ((ii // 8 + jj // 8) % 2 == 0)[None]
    face.albedo = torch.where(red, torch.tensor(RED)[:, None, None], torch.tensor(GREEN)[:, None, None])
    face.specular = torch.full((1, h, h), 0.3)
    paths = export(face, tmp_path_factory.mktemp("checker"), name="head")
    return model, face, paths


def _view(v: np.ndarray, back: bool) -> np.ndarray:
    return v * np.array([-1.0, 1.0, -1.0]) if back else v  # back view: half a turn about +y


def _raster(verts: np.ndarray, faces: np.ndarray, cam_verts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    cam, offset = default_camera(torch.from_numpy(cam_verts).double(), RES)
    eye = torch.from_numpy(verts).double() + offset
    pix = project_points(eye, cam)
    f = torch.from_numpy(faces).long()
    return rasterize_triangles(pix[f], RES, RES, depth=(-eye[:, 2])[f])


def _labels(face, back: bool) -> tuple[np.ndarray, list[str]]:
    """(H, W) part index per pixel from the ORIGINAL mesh and the model's parts (-1: background)."""
    fm, names, _ = face.materials()
    opaque = [i for i, n in enumerate(names) if NEUTRAL_MATERIALS.get(n, (None, 0, 1.0))[2] >= 1.0]
    keep = np.isin(fm.numpy(), opaque)
    v = _view(face.vertices.double().numpy(), back)
    fi, _ = _raster(v, face.faces.numpy()[keep], v)
    lab = np.where(fi.numpy() >= 0, fm.numpy()[keep][fi.numpy().clip(0)], -1)
    return lab, names


def _render(
    scene: trimesh.Scene | trimesh.Trimesh, to_cm: float, cam_verts: np.ndarray, back: bool
) -> np.ndarray:
    """(H, W, 3) linear base colour of the re-imported opaque geometry (NaN: background)."""
    geoms = scene.dump() if isinstance(scene, trimesh.Scene) else [scene]  # one material: a single Trimesh
    meshes = [g for g in geoms if getattr(g.visual.material, "alphaMode", None) != "BLEND"]
    meshes = [
        g
        for g in meshes
        if g.visual.material.name not in NEUTRAL_MATERIALS
        or NEUTRAL_MATERIALS[g.visual.material.name][2] >= 1.0
    ]
    face_tex = None
    for g in meshes:
        m = g.visual.material
        img = getattr(m, "baseColorTexture", None) or getattr(m, "image", None)
        if img is not None:
            face_tex = _srgb_to_linear(np.asarray(img.convert("RGB"), dtype=float) / 255)
    assert face_tex is not None, "no textured material was re-imported"
    verts, faces, uvs, colour, textured, n0 = [], [], [], [], [], 0
    for g in meshes:
        m = g.visual.material
        img = getattr(m, "baseColorTexture", None) or getattr(m, "image", None)
        verts.append(np.asarray(g.vertices) * to_cm)
        faces.append(np.asarray(g.faces) + n0)
        uvs.append(np.asarray(g.visual.uv, dtype=float))
        n0 += len(g.vertices)
        tex = img is not None
        if hasattr(m, "baseColorFactor") and m.baseColorFactor is not None:
            base = np.asarray(m.baseColorFactor, dtype=float)[:3] / 255
        else:
            base = np.asarray(getattr(m, "diffuse", [153, 153, 153, 255]), dtype=float)[:3] / 255
        colour.append(np.tile(base, (len(g.faces), 1)))
        textured.append(np.full(len(g.faces), tex))
    v, f, uv = np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs)
    fcol, ftex = np.concatenate(colour), np.concatenate(textured)
    fi, bary = _raster(_view(v, back), f, cam_verts)
    fi, bary = fi.numpy().reshape(-1), bary.numpy().reshape(-1, 3)
    hit = fi >= 0
    out = np.full((fi.size, 3), np.nan)
    out[hit] = fcol[fi[hit]]
    t = hit & ftex[fi.clip(0)]
    p_uv = (uv[f[fi[t]]] * bary[t][:, :, None]).sum(1) % 1.0  # glTF/OBJ UVs as trimesh gives them: v up
    th, tw = face_tex.shape[:2]
    col = (p_uv[:, 0] * tw).astype(int).clip(0, tw - 1)
    row = ((1 - p_uv[:, 1]) * th).astype(int).clip(0, th - 1)
    out[t] = face_tex[row, col]
    return out.reshape(RES, RES, 3)


def _is_face_tile(img: np.ndarray) -> np.ndarray:
    """(H, W) True where the colour is one of the checker's two colours (8-bit sRGB round trip)."""
    d = np.minimum(np.abs(img - RED).max(-1), np.abs(img - GREEN).max(-1))
    return d < 0.03


class TestRenderedAsset:
    @pytest.mark.parametrize("fmt", ["glb", "obj"])
    def test_eyes_and_back_of_head_do_not_show_the_face_tile(self, checker_asset, fmt):
        _, face, paths = checker_asset
        scene = trimesh.load(paths[fmt], process=False)
        to_cm = 100.0 if fmt == "glb" else 1.0  # the GLB is in metres, the OBJ in the model's cm
        cam_front = face.vertices.double().numpy()
        for back in (False, True):
            lab, names = _labels(face, back)
            img = _render(scene, to_cm, _view(cam_front, back), back)
            tile = _is_face_tile(img)
            on_face = lab == names.index("M_Face")
            # the face itself shows the checker (the test can see the face tile), with both colours
            assert on_face.sum() > (800 if not back else 0)
            if not back:
                assert tile[on_face].mean() > 0.95
                for c in (RED, GREEN):
                    assert (np.abs(img[on_face] - c).max(-1) < 0.03).mean() > 0.2
                eyes = np.isin(lab, [names.index(n) for n in EYES])
                assert eyes.sum() > 80, eyes.sum()  # visible sclera + iris pixels at 256 px
                assert tile[eyes].mean() < 0.02, tile[eyes].mean()
                if fmt == "glb":  # the plain glTF colours are linear: each eye pixel shows its part's colour
                    want = np.array([NEUTRAL_MATERIALS[names[i]][0] for i in lab[eyes]])
                    assert (np.abs(img[eyes] - want).max(-1) < 0.01).mean() > 0.95
            else:
                head = lab == names.index("M_BackHead")
                assert head.sum() > 8000, head.sum()  # most of a back view
                assert tile[head].mean() < 0.02, tile[head].mean()
                # one plain colour, the face tile's mean albedo (linear: between red and green)
                px = img[head]
                assert np.nanstd(px, 0).max() < 0.01
                if fmt == "glb":
                    np.testing.assert_allclose(np.nanmedian(px, 0), np.add(RED, GREEN) / 2, atol=0.01)

    def test_the_old_single_material_export_fails_these_checks(self, checker_asset, tmp_path):
        """Negative control: the 0.2 export (one ``skin`` material with the face maps over every triangle, ICT's
        own multi-tile UVs), written the way 0.2 wrote it and rendered the same way, shows the face tile on the
        eyes and the back of the head, so the checks above can fail."""
        _, face, paths = checker_asset
        mtl = tmp_path / "old.mtl"
        albedo = os.path.basename(paths["albedo"])
        shutil.copy(paths["albedo"], tmp_path / albedo)
        mtl.write_text(f"newmtl skin\nKa 0 0 0\nKd 1 1 1\nKs 1 1 1\nNs 32\nillum 2\nmap_Kd {albedo}\n")
        obj = tmp_path / "old.obj"
        write_obj(
            obj,
            face.vertices,
            face.faces,
            uvs=face.uvs,
            face_uvs=face.face_uvs,
            mtllib="old.mtl",
            material="skin",
        )
        scene = trimesh.load(obj, process=False)
        cam_front = face.vertices.double().numpy()
        lab, names = _labels(face, False)
        tile = _is_face_tile(_render(scene, 1.0, cam_front, False))
        eyes = np.isin(lab, [names.index(n) for n in EYES])
        assert tile[eyes].mean() > 0.5, tile[eyes].mean()
        lab, names = _labels(face, True)
        tile = _is_face_tile(_render(scene, 1.0, _view(cam_front, True), True))
        head = lab == names.index("M_BackHead")
        assert tile[head].mean() > 0.5, tile[head].mean()

    def test_transparent_overlays_carry_no_texture(self, checker_asset):
        _, _, paths = checker_asset
        scene = trimesh.load(paths["glb"], process=False)
        blended = [g for g in scene.geometry.values() if g.visual.material.alphaMode == "BLEND"]
        assert blended  # ICT's eye overlays
        assert all(g.visual.material.baseColorTexture is None for g in blended)
